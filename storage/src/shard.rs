//! A shard copy: one redb file, read from any thread, written by its writer thread.

use crate::blob::{blob_ref, read_range, ReadChunkTable, Upload, Uploads, ATT_CHUNK};
use crate::codec::decode;
use crate::commit_log;
use crate::document::{
    BlobRef, ChangeRow, DocInfo, LocalDoc, PurgeInfo, RevBody, ShardInfo, StagedBlob,
};
use crate::rev_tree::Rev;
use crate::tables::{ATTACHMENTS, ATT_CHUNKS, BODIES, BY_ID, BY_SEQ, LOCAL, META, PURGED};
use crate::writer::{self, WriteOp, Writer};
use crate::{DocError, DocUpdate, StorageError, UpdateResult};
use redb::{
    AccessGuard, Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTableMetadata,
};
use std::cell::OnceCell;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::{oneshot, watch};

/// Key range and order of an `_all_docs` scan over one shard.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AllDocsRange {
    /// First id (in scan order) to include.
    pub start: Option<String>,
    /// Last id (in scan order).
    pub end: Option<String>,
    /// Whether `end` itself is included.
    pub inclusive_end: bool,
    /// Scan from the highest id down.
    pub descending: bool,
    /// Stop after this many rows.
    pub limit: usize,
}

/// One open shard copy.
pub struct Shard {
    db: Arc<Database>,
    path: PathBuf,
    uuid: String,
    ops: Mutex<Option<mpsc::Sender<WriteOp>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    seq_watch: watch::Receiver<u64>,
    uploads: Uploads,
}

/// Memory redb may use to cache pages of one shard file.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("path", &self.path).finish()
    }
}

impl Shard {
    /// Opens the shard file at `path`, creating it (and its folder) when `create`.
    pub fn open(path: &Path, create: bool) -> Result<Arc<Shard>, StorageError> {
        if !create && !path.exists() {
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no shard file {}", path.display()),
            )));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log_path = commit_log::log_path(path);
        if !path.exists() {
            remove_if_present(&log_path)?;
        }
        let db = Arc::new(
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)?,
        );
        let uploads = Uploads::default();
        let (writer, uuid) = Writer::init(db.clone(), uploads.clone(), &log_path)?;
        let update_seq = writer.update_seq();
        let (seq_tx, seq_watch) = watch::channel(update_seq);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("shard-writer".into())
            .spawn(move || writer.run(rx, seq_tx))?;
        Ok(Arc::new(Shard {
            db,
            path: path.to_path_buf(),
            uuid,
            ops: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            seq_watch,
            uploads,
        }))
    }

    /// Deletes the files of the (closed) shard at `path`; missing ones are fine.
    pub fn remove_files(path: &Path) -> Result<(), StorageError> {
        remove_if_present(path)?;
        remove_if_present(&commit_log::log_path(path))
    }

    /// The file this shard lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shard file's uuid (changes when a database is re-created).
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// A receiver that sees the update sequence after every commit (for live feeds).
    pub fn watch_seq(&self) -> watch::Receiver<u64> {
        self.seq_watch.clone()
    }

    /// Stops the writer after the writes already queued; later writes fail with `Closed`.
    pub fn close(&self) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StorageError>>) -> WriteOp,
    ) -> Result<T, StorageError> {
        let (tx, rx) = oneshot::channel();
        {
            let ops = self.ops.lock().map_err(|_| StorageError::Closed)?;
            let sender = ops.as_ref().ok_or(StorageError::Closed)?;
            sender.send(make(tx)).map_err(|_| StorageError::Closed)?;
        }
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// Writes documents; returns once they are durable. One result per update, in order.
    pub async fn update_docs(
        &self,
        updates: Vec<DocUpdate>,
    ) -> Result<Vec<UpdateResult>, StorageError> {
        self.submit(|reply| WriteOp::Docs { updates, reply }).await
    }

    /// Writes (`body` Some) or deletes a `_local` document. `rev` is the expected
    /// current counter (0 or None for a new doc). Returns the new counter.
    pub async fn write_local(
        &self,
        id: String,
        rev: Option<u64>,
        body: Option<Vec<u8>>,
    ) -> Result<Result<u64, DocError>, StorageError> {
        self.submit(|reply| WriteOp::Local {
            id,
            rev,
            body,
            reply,
        })
        .await
    }

    /// Purges leaf revisions. Returns, per document, the revisions actually purged.
    pub async fn purge(
        &self,
        requests: Vec<(String, Vec<Rev>)>,
    ) -> Result<Vec<(String, Vec<Rev>)>, StorageError> {
        self.submit(|reply| WriteOp::Purge { requests, reply })
            .await
    }

    /// Stores a shard-wide setting (`security`, `revs_limit`, `purged_infos_limit`).
    pub async fn set_meta(&self, key: &'static str, value: Vec<u8>) -> Result<(), StorageError> {
        self.submit(|reply| WriteOp::SetMeta { key, value, reply })
            .await
    }

    /// Drops bodies of non-leaf revisions and attachments no revision refers to.
    pub async fn compact(&self) -> Result<(), StorageError> {
        self.submit(|reply| WriteOp::Compact { reply }).await
    }

    fn uploads(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 16], Upload>>, StorageError>
    {
        self.uploads
            .lock()
            .map_err(|_| StorageError::Engine("uploads lock poisoned".into()))
    }

    /// Starts a streamed upload of attachment data under `upload` (an id the
    /// caller picks at random; the same on every copy of the shard).
    pub fn stage_begin(&self, upload: [u8; 16]) -> Result<(), StorageError> {
        match self.uploads()?.entry(upload) {
            std::collections::hash_map::Entry::Occupied(_) => {
                Err(StorageError::Engine("upload id already in use".into()))
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(Upload::new());
                Ok(())
            }
        }
    }

    /// Appends bytes to an upload; whole chunks are written as they fill.
    pub async fn stage_append(&self, upload: [u8; 16], data: &[u8]) -> Result<(), StorageError> {
        let (first, full) = {
            let mut uploads = self.uploads()?;
            let u = uploads
                .get_mut(&upload)
                .filter(|u| u.done.is_none())
                .ok_or_else(|| StorageError::Engine("no such upload".into()))?;
            md5::Digest::update(&mut u.md5, data);
            u.length += data.len() as u64;
            u.buf.extend_from_slice(data);
            let whole = u.buf.len() / ATT_CHUNK;
            if whole == 0 {
                return Ok(());
            }
            let rest = u.buf.split_off(whole * ATT_CHUNK);
            let full = std::mem::replace(&mut u.buf, rest);
            let first = u.next_chunk;
            u.next_chunk += whole as u32;
            (first, full)
        };
        self.submit(|reply| WriteOp::StageChunks {
            blob: upload,
            first,
            data: full,
            reply,
        })
        .await
    }

    /// Writes the last partial chunk of an upload and returns its digest and
    /// length. The upload then waits for the document write that uses it (as
    /// `NewAttachment::Staged`) or for [`Shard::stage_abort`].
    pub async fn stage_finish(&self, upload: [u8; 16]) -> Result<StagedBlob, StorageError> {
        let (first, rest, staged) = {
            let mut uploads = self.uploads()?;
            let u = uploads
                .get_mut(&upload)
                .filter(|u| u.done.is_none())
                .ok_or_else(|| StorageError::Engine("no such upload".into()))?;
            let md5 = std::mem::replace(&mut u.md5, md5::Digest::new());
            let staged = StagedBlob {
                digest: md5::Digest::finalize(md5).into(),
                length: u.length,
            };
            u.done = Some(staged);
            (u.next_chunk, std::mem::take(&mut u.buf), staged)
        };
        if !rest.is_empty() {
            self.submit(|reply| WriteOp::StageChunks {
                blob: upload,
                first,
                data: rest,
                reply,
            })
            .await?;
        }
        Ok(staged)
    }

    /// Forgets an upload no write used, dropping its chunks. Does nothing for an
    /// upload a write already took.
    pub async fn stage_abort(&self, upload: [u8; 16]) -> Result<(), StorageError> {
        if self.uploads()?.remove(&upload).is_none() {
            return Ok(());
        }
        self.submit(|reply| WriteOp::DropBlob {
            blob: upload,
            reply,
        })
        .await
    }

    /// A consistent read view of the shard. Tables are opened when first used.
    pub fn reader(&self) -> Result<ShardReader, StorageError> {
        Ok(ShardReader {
            txn: self.db.begin_read()?,
            by_id: OnceCell::new(),
            by_seq: OnceCell::new(),
            bodies: OnceCell::new(),
            local: OnceCell::new(),
            attachments: OnceCell::new(),
            att_chunks: OnceCell::new(),
            purged: OnceCell::new(),
            meta: OnceCell::new(),
            path: self.path.clone(),
            uuid: self.uuid.clone(),
        })
    }
}

fn remove_if_present(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.close();
    }
}

/// A snapshot of a shard for reading.
pub struct ShardReader {
    txn: ReadTransaction,
    by_id: OnceCell<ReadOnlyTable<&'static str, &'static [u8]>>,
    by_seq: OnceCell<ReadOnlyTable<u64, &'static str>>,
    bodies: OnceCell<ReadOnlyTable<(&'static str, &'static str), &'static [u8]>>,
    local: OnceCell<ReadOnlyTable<&'static str, &'static [u8]>>,
    attachments: OnceCell<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    att_chunks: OnceCell<ReadChunkTable>,
    purged: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
    meta: OnceCell<ReadOnlyTable<&'static str, &'static [u8]>>,
    path: PathBuf,
    uuid: String,
}

/// Opens a table of a read transaction once and keeps it.
fn table<'c, K: redb::Key + 'static, V: redb::Value + 'static>(
    cell: &'c OnceCell<ReadOnlyTable<K, V>>,
    txn: &ReadTransaction,
    def: redb::TableDefinition<K, V>,
) -> Result<&'c ReadOnlyTable<K, V>, StorageError> {
    if let Some(t) = cell.get() {
        return Ok(t);
    }
    let t = txn.open_table(def)?;
    Ok(cell.get_or_init(|| t))
}

impl ShardReader {
    /// The document's tree and sequence, if the id was ever written (and not purged).
    pub fn doc_info(&self, id: &str) -> Result<Option<DocInfo>, StorageError> {
        match table(&self.by_id, &self.txn, BY_ID)?.get(id)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// The stored body of one revision, if kept.
    pub fn rev_body(&self, id: &str, rev: &Rev) -> Result<Option<RevBody>, StorageError> {
        let rev = rev.to_string();
        match table(&self.bodies, &self.txn, BODIES)?.get((id, rev.as_str()))? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// Where the stored data with this digest is, if stored.
    pub fn attachment_ref(&self, digest: &[u8; 16]) -> Result<Option<BlobRef>, StorageError> {
        match table(&self.attachments, &self.txn, ATTACHMENTS)?.get(digest.as_slice())? {
            Some(v) => Ok(Some(blob_ref(v.value())?)),
            None => Ok(None),
        }
    }

    /// Attachment bytes (as stored) by digest, whole.
    pub fn attachment(&self, digest: &[u8; 16]) -> Result<Option<Vec<u8>>, StorageError> {
        self.attachment_range(digest, 0, u64::MAX)
    }

    /// Up to `len` stored bytes of an attachment from `offset`.
    pub fn attachment_range(
        &self,
        digest: &[u8; 16],
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(blob) = self.attachment_ref(digest)? else {
            return Ok(None);
        };
        let chunks = table(&self.att_chunks, &self.txn, ATT_CHUNKS)?;
        Ok(Some(read_range(chunks, &blob, offset, len)?))
    }

    /// Whether attachment data with this digest is stored.
    pub fn has_attachment(&self, digest: &[u8; 16]) -> Result<bool, StorageError> {
        Ok(self.attachment_ref(digest)?.is_some())
    }

    /// A `_local` document by id (without the `_local/` prefix handling: the full id).
    pub fn local_doc(&self, id: &str) -> Result<Option<LocalDoc>, StorageError> {
        match table(&self.local, &self.txn, LOCAL)?.get(id)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// `_local` documents in id order within the range.
    pub fn local_docs(
        &self,
        range: &AllDocsRange,
    ) -> Result<Vec<(String, LocalDoc)>, StorageError> {
        let mut out = Vec::new();
        let Some(b) = bounds(range) else {
            return Ok(out);
        };
        let iter = table(&self.local, &self.txn, LOCAL)?.range::<&str>(b)?;
        let mut push = |k: &str, v: &[u8]| -> Result<bool, StorageError> {
            out.push((k.to_string(), decode(v)?));
            Ok(out.len() < range.limit)
        };
        if range.limit == 0 {
            return Ok(out);
        }
        scan(iter, range.descending, |k, v| push(k.value(), v.value()))?;
        Ok(out)
    }

    /// Non-deleted documents in id order within the range, up to `limit`.
    pub fn all_docs(&self, range: &AllDocsRange) -> Result<Vec<(String, DocInfo)>, StorageError> {
        let mut out = Vec::new();
        if range.limit == 0 {
            return Ok(out);
        }
        let Some(b) = bounds(range) else {
            return Ok(out);
        };
        let iter = table(&self.by_id, &self.txn, BY_ID)?.range::<&str>(b)?;
        let mut push = |k: &str, v: &[u8]| -> Result<bool, StorageError> {
            let info: DocInfo = decode(v)?;
            if !info.is_deleted() {
                out.push((k.to_string(), info));
            }
            Ok(out.len() < range.limit)
        };
        scan(iter, range.descending, |k, v| push(k.value(), v.value()))?;
        Ok(out)
    }

    /// Number of non-deleted documents before `key` in id order (the `offset` of a scan).
    pub fn count_before(&self, key: &str, descending: bool) -> Result<u64, StorageError> {
        let mut n = 0;
        let iter = if descending {
            table(&self.by_id, &self.txn, BY_ID)?
                .range::<&str>((Bound::Excluded(key), Bound::Unbounded))?
        } else {
            table(&self.by_id, &self.txn, BY_ID)?
                .range::<&str>((Bound::Unbounded, Bound::Excluded(key)))?
        };
        for item in iter {
            let (_, v) = item?;
            let info: DocInfo = decode(v.value())?;
            if !info.is_deleted() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Changes after `since`, one row per document at its latest sequence.
    pub fn changes(
        &self,
        since: u64,
        limit: usize,
        descending: bool,
    ) -> Result<Vec<ChangeRow>, StorageError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let iter = table(&self.by_seq, &self.txn, BY_SEQ)?
            .range::<u64>((Bound::Excluded(since), Bound::Unbounded))?;
        let mut push = |seq: u64, id: &str| -> Result<bool, StorageError> {
            if let Some(info) = self.doc_info(id)? {
                let leaves = info.tree.leaves();
                let deleted = leaves.first().is_none_or(|l| l.deleted);
                out.push(ChangeRow {
                    seq,
                    id: id.to_string(),
                    leaves,
                    deleted,
                });
            }
            Ok(out.len() < limit)
        };
        scan(iter, descending, |k, v| push(k.value(), v.value()))?;
        Ok(out)
    }

    /// Number of changes after `since` (for `pending`).
    pub fn count_changes_after(&self, since: u64) -> Result<u64, StorageError> {
        let mut n = 0;
        for item in table(&self.by_seq, &self.txn, BY_SEQ)?
            .range::<u64>((Bound::Excluded(since), Bound::Unbounded))?
        {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// The purge log from `since` (exclusive), oldest first.
    pub fn purged_infos(&self, since: u64) -> Result<Vec<(u64, PurgeInfo)>, StorageError> {
        let mut out = Vec::new();
        for item in table(&self.purged, &self.txn, PURGED)?
            .range::<u64>((Bound::Excluded(since), Bound::Unbounded))?
        {
            let (k, v) = item?;
            out.push((k.value(), decode(v.value())?));
        }
        Ok(out)
    }

    /// A raw shard-wide setting.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(table(&self.meta, &self.txn, META)?
            .get(key)?
            .map(|v| v.value().to_vec()))
    }

    /// Counters and sizes.
    pub fn info(&self) -> Result<ShardInfo, StorageError> {
        let get = |k: &str| -> Result<u64, StorageError> {
            Ok(table(&self.meta, &self.txn, META)?
                .get(k)?
                .map(|v| writer::read_u64(v.value()))
                .unwrap_or(0))
        };
        let external = get(writer::META_EXTERNAL)?;
        let att_bytes = table(&self.att_chunks, &self.txn, ATT_CHUNKS)?
            .stats()?
            .stored_bytes();
        Ok(ShardInfo {
            doc_count: get(writer::META_DOC_COUNT)?,
            doc_del_count: get(writer::META_DEL_COUNT)?,
            update_seq: get(writer::META_UPDATE_SEQ)?,
            purge_seq: get(writer::META_PURGE_SEQ)?,
            file_size: std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
            external_size: external,
            active_size: external + att_bytes,
            uuid: self.uuid.clone(),
        })
    }
}

/// Feeds the entries of a range to `push`, from the highest key down when
/// `descending`, until it returns `false` or the range ends.
fn scan<'a, K: redb::Key + 'static, V: redb::Value + 'static>(
    iter: redb::Range<'a, K, V>,
    descending: bool,
    push: impl FnMut(AccessGuard<'a, K>, AccessGuard<'a, V>) -> Result<bool, StorageError>,
) -> Result<(), StorageError> {
    fn feed<'a, K: redb::Key + 'static, V: redb::Value + 'static>(
        items: impl Iterator<
            Item = Result<(AccessGuard<'a, K>, AccessGuard<'a, V>), redb::StorageError>,
        >,
        mut push: impl FnMut(AccessGuard<'a, K>, AccessGuard<'a, V>) -> Result<bool, StorageError>,
    ) -> Result<(), StorageError> {
        for item in items {
            let (k, v) = item?;
            if !push(k, v)? {
                break;
            }
        }
        Ok(())
    }
    if descending {
        feed(iter.rev(), push)
    } else {
        feed(iter, push)
    }
}

/// The key bounds of a scan; `None` when the range is empty (start past end).
fn bounds(range: &AllDocsRange) -> Option<(Bound<&str>, Bound<&str>)> {
    let end = |k| {
        if range.inclusive_end {
            Bound::Included(k)
        } else {
            Bound::Excluded(k)
        }
    };
    let (lo, hi) = if range.descending {
        (
            range.end.as_deref().map(end),
            range.start.as_deref().map(Bound::Included),
        )
    } else {
        (
            range.start.as_deref().map(Bound::Included),
            range.end.as_deref().map(end),
        )
    };
    let lo = lo.unwrap_or(Bound::Unbounded);
    let hi = hi.unwrap_or(Bound::Unbounded);
    if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
        (lo, hi)
    {
        let both_inclusive = matches!((lo, hi), (Bound::Included(_), Bound::Included(_)));
        if a > b || (a == b && !both_inclusive) {
            return None;
        }
    }
    Some((lo, hi))
}
