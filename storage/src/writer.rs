//! The shard writer: one thread per shard that group-commits queued writes.
//!
//! Callers queue operations; the writer drains everything queued, applies it in one
//! redb write transaction, makes it durable once and only then answers every caller.
//! Many concurrent clients therefore share few fsyncs, and an answer always means
//! the write is on disk. Document and `_local` writes are made durable by the
//! shard's commit log (see `commit_log.rs`); anything else, and a checkpoint now and
//! then, by a durable redb commit.

use crate::blob::{blob_ref, drop_blob, write_chunks, ChunkTable, Uploads};
use crate::codec::{decode, encode};
use crate::commit_log::CommitLog;
use crate::document::{
    AttachmentInfo, BlobRef, DocInfo, LocalDoc, NewAttachment, PurgeInfo, RevBody,
};
use crate::rev_id::{md5_digest, new_rev_id};
use crate::rev_tree::{MergeOutcome, Rev};
use crate::tables::{ATTACHMENTS, ATT_CHUNKS, BODIES, BY_ID, BY_SEQ, LOCAL, META, PURGED};
use crate::{DocError, DocUpdate, EditKind, StorageError, UpdateResult};
use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

pub(crate) const META_UPDATE_SEQ: &str = "update_seq";
pub(crate) const META_PURGE_SEQ: &str = "purge_seq";
pub(crate) const META_DOC_COUNT: &str = "doc_count";
pub(crate) const META_DEL_COUNT: &str = "doc_del_count";
pub(crate) const META_EXTERNAL: &str = "external";
const META_UUID: &str = "uuid";
/// Meta key of the commit log generation whose records are not yet checkpointed.
const META_LOG_GENERATION: &str = "log_generation";
/// Log size that triggers a checkpoint. Between checkpoints redb cannot reuse the
/// pages it freed, so this also bounds how far the file grows ahead of them, and
/// it bounds the disk a busy shard's log takes.
const LOG_LIMIT: u64 = 256 << 10;
/// A writer idle this long checkpoints what its log holds and frees the log's space.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);
/// Meta key of the revs limit (decimal text).
pub const META_REVS_LIMIT: &str = "revs_limit";
const DEFAULT_REVS_LIMIT: usize = 1000;
/// Most operations applied in one transaction.
const MAX_BATCH: usize = 4096;

type Reply<T> = oneshot::Sender<Result<T, StorageError>>;

/// A queued write.
pub(crate) enum WriteOp {
    Docs {
        updates: Vec<DocUpdate>,
        reply: Reply<Vec<UpdateResult>>,
    },
    Local {
        id: String,
        rev: Option<u64>,
        body: Option<Vec<u8>>,
        reply: Reply<Result<u64, DocError>>,
    },
    Purge {
        requests: Vec<(String, Vec<Rev>)>,
        reply: Reply<Vec<(String, Vec<Rev>)>>,
    },
    SetMeta {
        key: &'static str,
        value: Vec<u8>,
        reply: Reply<()>,
    },
    Compact {
        reply: Reply<()>,
    },
    /// Chunks of a streamed upload (not fsynced on their own: the write that
    /// uses the upload makes them durable).
    StageChunks {
        blob: [u8; 16],
        first: u32,
        data: Vec<u8>,
        reply: Reply<()>,
    },
    /// Drops the chunks of an abandoned upload.
    DropBlob {
        blob: [u8; 16],
        reply: Reply<()>,
    },
}

/// The part of a `WriteOp` the commit log keeps: enough to apply it again.
#[derive(Serialize, Deserialize)]
enum LoggedOp<'a> {
    Docs(Cow<'a, [DocUpdate]>),
    Local {
        id: Cow<'a, str>,
        rev: Option<u64>,
        body: Option<Cow<'a, [u8]>>,
    },
}

impl WriteOp {
    /// The op as a log record, if the log may make it durable: document writes that
    /// use no streamed upload (its chunks are not in the log) and `_local` writes.
    fn logged(&self) -> Option<LoggedOp<'_>> {
        match self {
            WriteOp::Docs { updates, .. } => {
                let staged = updates.iter().any(|u| {
                    u.attachments
                        .iter()
                        .any(|a| matches!(a, NewAttachment::Staged { .. }))
                });
                (!staged).then_some(LoggedOp::Docs(Cow::Borrowed(updates)))
            }
            WriteOp::Local { id, rev, body, .. } => Some(LoggedOp::Local {
                id: Cow::Borrowed(id),
                rev: *rev,
                body: body.as_deref().map(Cow::Borrowed),
            }),
            _ => None,
        }
    }
}

impl LoggedOp<'_> {
    /// The op again, for recovery; nobody waits for its answer.
    fn into_op(self) -> WriteOp {
        match self {
            LoggedOp::Docs(updates) => WriteOp::Docs {
                updates: updates.into_owned(),
                reply: oneshot::channel().0,
            },
            LoggedOp::Local { id, rev, body } => WriteOp::Local {
                id: id.into_owned(),
                rev,
                body: body.map(Cow::into_owned),
                reply: oneshot::channel().0,
            },
        }
    }
}

/// How a batch is made durable.
enum Commit {
    /// Upload chunks only: not yet (the write that uses them will be).
    Staged,
    /// By appending this record to the commit log.
    Logged(Vec<u8>),
    /// By a durable redb commit, which also checkpoints the log.
    Checkpoint,
}

/// An answer computed inside a transaction, sent only after the commit.
enum Pending {
    Docs(Reply<Vec<UpdateResult>>, Vec<UpdateResult>),
    Local(Reply<Result<u64, DocError>>, Result<u64, DocError>),
    Purge(Reply<Vec<(String, Vec<Rev>)>>, Vec<(String, Vec<Rev>)>),
    Unit(Reply<()>),
}

impl Pending {
    fn send(self, outcome: Result<(), &StorageError>) {
        let err = |e: &StorageError| StorageError::Engine(e.to_string());
        match self {
            Pending::Docs(r, v) => drop(r.send(outcome.map(|_| v).map_err(err))),
            Pending::Local(r, v) => drop(r.send(outcome.map(|_| v).map_err(err))),
            Pending::Purge(r, v) => drop(r.send(outcome.map(|_| v).map_err(err))),
            Pending::Unit(r) => drop(r.send(outcome.map_err(err))),
        }
    }
}

/// Shard-wide counters, kept in memory by the writer and saved with every commit.
#[derive(Debug, Clone, Default)]
struct Counters {
    update_seq: u64,
    purge_seq: u64,
    doc_count: u64,
    del_count: u64,
    external: u64,
    revs_limit: usize,
}

pub(crate) fn read_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_le_bytes).unwrap_or_default()
}

/// The state owned by a shard's writer thread.
pub(crate) struct Writer {
    db: Arc<Database>,
    counters: Counters,
    uploads: Uploads,
    log: CommitLog,
}

impl Writer {
    /// Creates the tables if needed, loads the counters and applies again what the
    /// commit log at `log_path` holds beyond the last checkpoint; returns the shard uuid.
    pub(crate) fn init(
        db: Arc<Database>,
        uploads: Uploads,
        log_path: &Path,
    ) -> Result<(Writer, String), StorageError> {
        let txn = db.begin_write()?;
        let uuid;
        let generation;
        {
            txn.open_table(BY_ID)?;
            txn.open_table(BY_SEQ)?;
            txn.open_table(BODIES)?;
            txn.open_table(LOCAL)?;
            txn.open_table(ATTACHMENTS)?;
            txn.open_table(ATT_CHUNKS)?;
            txn.open_table(PURGED)?;
            let mut meta = txn.open_table(META)?;
            let existing = meta.get(META_UUID)?.map(|v| v.value().to_vec());
            uuid = match existing {
                Some(u) => String::from_utf8_lossy(&u).into_owned(),
                None => {
                    let u = hex::encode(rand::random::<[u8; 16]>());
                    meta.insert(META_UUID, u.as_bytes())?;
                    u
                }
            };
            // A new shard starts at a random generation, so that a stray log left by
            // an earlier file of the same name is never taken for its own.
            let stored = meta.get(META_LOG_GENERATION)?.map(|v| read_u64(v.value()));
            generation = match stored {
                Some(g) => g,
                None => {
                    let g = rand::random::<u64>() >> 1;
                    meta.insert(META_LOG_GENERATION, g.to_le_bytes().as_slice())?;
                    g
                }
            };
        }
        txn.commit()?;
        let (log, records) = CommitLog::open(log_path, generation)?;
        let mut w = Writer {
            db,
            counters: Counters::default(),
            uploads,
            log,
        };
        w.reload_counters()?;
        w.replay(records)?;
        Ok((w, uuid))
    }

    /// Applies the log's records on top of the last checkpoint, then checkpoints.
    fn replay(&mut self, records: Vec<Vec<u8>>) -> Result<(), StorageError> {
        if records.is_empty() {
            return Ok(());
        }
        tracing::info!(records = records.len(), "replaying shard commit log");
        self.durable_commit(|w, t| {
            for record in records {
                let ops: Vec<LoggedOp<'static>> = decode(&record)?;
                for op in ops {
                    w.apply(t, op.into_op())?;
                }
            }
            w.save_counters(t)
        })
    }

    /// Records, in a transaction about to commit durably, that the log's records so
    /// far are redundant; `log.restart` the returned generation once it committed.
    fn next_generation(&self, t: &mut Tables<'_>) -> Result<u64, StorageError> {
        let next = (self.log.generation() + 1) & (u64::MAX >> 1);
        t.meta
            .insert(META_LOG_GENERATION, next.to_le_bytes().as_slice())?;
        Ok(next)
    }

    /// Commits `fill`'s writes durably, which makes the log's records redundant,
    /// and starts the log's next generation.
    fn durable_commit(
        &mut self,
        fill: impl FnOnce(&mut Self, &mut Tables<'_>) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let txn = self.db.begin_write()?;
        let generation = {
            let mut t = Tables::open(&txn)?;
            fill(self, &mut t)?;
            self.next_generation(&mut t)?
        };
        txn.commit()?;
        self.log.restart(generation);
        Ok(())
    }

    /// Makes everything the log holds durable in redb and empties the log.
    fn checkpoint(&mut self) {
        if self.log.len() > 0 {
            if let Err(e) = self.durable_commit(|_, _| Ok(())) {
                tracing::error!(error = %e, "shard checkpoint failed");
            }
        }
    }

    fn reload_counters(&mut self) -> Result<(), StorageError> {
        let txn = self.db.begin_write()?;
        let c = {
            let meta = txn.open_table(META)?;
            let get = |k: &str| -> Result<u64, StorageError> {
                Ok(meta.get(k)?.map(|v| read_u64(v.value())).unwrap_or(0))
            };
            let revs_limit = meta
                .get(META_REVS_LIMIT)?
                .and_then(|v| std::str::from_utf8(v.value()).ok()?.trim().parse().ok())
                .unwrap_or(DEFAULT_REVS_LIMIT);
            Counters {
                update_seq: get(META_UPDATE_SEQ)?,
                purge_seq: get(META_PURGE_SEQ)?,
                doc_count: get(META_DOC_COUNT)?,
                del_count: get(META_DEL_COUNT)?,
                external: get(META_EXTERNAL)?,
                revs_limit,
            }
        };
        txn.abort()?;
        self.counters = c;
        Ok(())
    }

    pub(crate) fn update_seq(&self) -> u64 {
        self.counters.update_seq
    }

    /// The writer loop: runs until every sender is gone.
    pub(crate) fn run(mut self, rx: mpsc::Receiver<WriteOp>, seq_tx: watch::Sender<u64>) {
        loop {
            let next = if self.log.len() > 0 {
                rx.recv_timeout(IDLE_CHECKPOINT)
            } else {
                rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
            };
            let first = match next {
                Ok(op) => op,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.checkpoint_and_release();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let before = self.counters.clone();
            match self.apply_batch(batch) {
                Ok(pending) => {
                    for p in pending {
                        p.send(Ok(()));
                    }
                    if self.counters.update_seq != before.update_seq {
                        seq_tx.send_replace(self.counters.update_seq);
                    }
                }
                Err((e, pending)) => {
                    tracing::error!(error = %e, "shard write batch failed");
                    for p in pending {
                        p.send(Err(&e));
                    }
                    self.counters = before;
                    if let Err(e) = self.reload_counters() {
                        tracing::error!(error = %e, "could not reload shard counters");
                    }
                }
            }
            if self.log.len() >= LOG_LIMIT {
                self.checkpoint();
            }
        }
        self.checkpoint_and_release();
    }

    #[allow(clippy::type_complexity)]
    fn apply_batch(
        &mut self,
        batch: Vec<WriteOp>,
    ) -> Result<Vec<Pending>, (StorageError, Vec<Pending>)> {
        let mut pending = Vec::with_capacity(batch.len());
        let unapplied_all = |e: StorageError, batch: Vec<WriteOp>| {
            Err((e, batch.into_iter().map(unapplied).collect()))
        };
        let commit = if batch
            .iter()
            .all(|op| matches!(op, WriteOp::StageChunks { .. }))
        {
            Commit::Staged
        } else {
            match batch
                .iter()
                .map(WriteOp::logged)
                .collect::<Option<Vec<_>>>()
            {
                Some(ops) => match encode(&ops) {
                    Ok(record) => Commit::Logged(record),
                    Err(e) => return unapplied_all(e, batch),
                },
                None => Commit::Checkpoint,
            }
        };
        let txn = match self.db.begin_write() {
            Ok(mut t) => {
                if !matches!(commit, Commit::Checkpoint) {
                    if let Err(e) = t.set_durability(Durability::None) {
                        return unapplied_all(StorageError::Engine(e.to_string()), batch);
                    }
                }
                t
            }
            Err(e) => return unapplied_all(e.into(), batch),
        };
        let mut ops = batch.into_iter();
        let result = (|| -> Result<Option<u64>, StorageError> {
            let mut t = Tables::open(&txn)?;
            for op in ops.by_ref() {
                pending.push(self.apply(&mut t, op)?);
            }
            self.save_counters(&mut t)?;
            match commit {
                Commit::Checkpoint => Ok(Some(self.next_generation(&mut t)?)),
                _ => Ok(None),
            }
        })();
        // Ops not reached because of an error still need an answer.
        pending.extend(ops.map(unapplied));
        let generation = match result {
            Ok(g) => g,
            Err(e) => {
                let _ = txn.abort();
                return Err((e, pending));
            }
        };
        if let Commit::Logged(record) = &commit {
            if let Err(e) = self.log.append(record) {
                let _ = txn.abort();
                return Err((e.into(), pending));
            }
        }
        if let Err(e) = txn.commit() {
            if matches!(commit, Commit::Logged(_)) {
                self.take_back_record();
            }
            return Err((e.into(), pending));
        }
        if let Some(g) = generation {
            self.log.restart(g);
        }
        Ok(pending)
    }

    /// Checkpoints and gives the log's disk space back, for a writer going idle.
    fn checkpoint_and_release(&mut self) {
        self.checkpoint();
        if self.log.len() == 0 {
            if let Err(e) = self.log.release() {
                tracing::warn!(error = %e, "cannot shrink a shard commit log");
            }
        }
    }

    /// Voids the record of a batch whose commit failed after it was logged, so that
    /// recovery does not apply what callers were told failed.
    fn take_back_record(&mut self) {
        if let Err(e) = self.log.undo_last() {
            tracing::error!(error = %e, "cannot take back a commit log record; checkpointing");
            self.checkpoint();
        }
    }

    fn save_counters(&self, t: &mut Tables<'_>) -> Result<(), StorageError> {
        let c = &self.counters;
        for (k, v) in [
            (META_UPDATE_SEQ, c.update_seq),
            (META_PURGE_SEQ, c.purge_seq),
            (META_DOC_COUNT, c.doc_count),
            (META_DEL_COUNT, c.del_count),
            (META_EXTERNAL, c.external),
        ] {
            t.meta.insert(k, v.to_le_bytes().as_slice())?;
        }
        Ok(())
    }

    fn apply(&mut self, t: &mut Tables<'_>, op: WriteOp) -> Result<Pending, StorageError> {
        Ok(match op {
            WriteOp::Docs { updates, reply } => {
                let mut results = Vec::with_capacity(updates.len());
                for u in updates {
                    results.push(self.apply_doc(t, u)?);
                }
                Pending::Docs(reply, results)
            }
            WriteOp::Local {
                id,
                rev,
                body,
                reply,
            } => {
                let r = apply_local(t, &id, rev, body)?;
                Pending::Local(reply, r)
            }
            WriteOp::Purge { requests, reply } => {
                let r = self.apply_purge(t, requests)?;
                Pending::Purge(reply, r)
            }
            WriteOp::SetMeta { key, value, reply } => {
                t.meta.insert(key, value.as_slice())?;
                if key == META_REVS_LIMIT {
                    if let Some(n) = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                    {
                        self.counters.revs_limit = n;
                    }
                }
                Pending::Unit(reply)
            }
            WriteOp::Compact { reply } => {
                compact(t, self.counters.revs_limit.max(1), &self.uploads)?;
                Pending::Unit(reply)
            }
            WriteOp::StageChunks {
                blob,
                first,
                data,
                reply,
            } => {
                write_chunks(&mut t.att_chunks, &blob, first, &data)?;
                Pending::Unit(reply)
            }
            WriteOp::DropBlob { blob, reply } => {
                drop_blob(&mut t.att_chunks, &blob)?;
                Pending::Unit(reply)
            }
        })
    }

    /// Applies one document update. `Ok(Err(_))` is a refusal of this document only.
    fn apply_doc(
        &mut self,
        t: &mut Tables<'_>,
        u: DocUpdate,
    ) -> Result<UpdateResult, StorageError> {
        let existing: Option<DocInfo> = match t.by_id.get(u.id.as_str())? {
            Some(v) => Some(decode(v.value())?),
            None => None,
        };
        let was = existing.as_ref().map(|d| d.is_deleted());
        let (mut tree, old_seq, old_size) = match existing {
            Some(d) => (d.tree, Some(d.seq), d.winner_size),
            None => (Default::default(), None, 0),
        };
        let old_leaves: Vec<Rev> = tree.leaves().into_iter().map(|l| l.rev).collect();

        let (new_rev, attachments) = match &u.kind {
            EditKind::Interactive { parent } => {
                let parent = match parent {
                    Some(p) => {
                        if tree.leaf_deleted(p).is_none() {
                            return Ok(Err(DocError::Conflict));
                        }
                        Some(p.clone())
                    }
                    None => match tree.winner() {
                        None => None,
                        Some(w) if w.deleted => Some(w.rev),
                        Some(_) => return Ok(Err(DocError::Conflict)),
                    },
                };
                let parent_atts = match &parent {
                    Some(p) => get_body(t, &u.id, p)?
                        .map(|b| b.attachments)
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                let pos = parent.as_ref().map_or(1, |p| p.pos + 1);
                let atts = match resolve_interactive_atts(t, &self.uploads, &u, &parent_atts, pos)?
                {
                    Ok(a) => a,
                    Err(e) => return Ok(Err(e)),
                };
                let digests: Vec<(&str, &str, [u8; 16])> = atts
                    .iter()
                    .map(|a| (a.name.as_str(), a.content_type.as_str(), a.digest))
                    .collect();
                let id = new_rev_id(u.deleted, parent.as_ref(), &u.body, &digests);
                let mut ids = vec![id.clone()];
                if let Some(p) = &parent {
                    match tree.path_to(p) {
                        Some(path) => ids.extend(path.into_iter().map(|(r, _)| r.id)),
                        None => return Ok(Err(DocError::Conflict)),
                    }
                }
                if tree.merge_path(pos, &ids, u.deleted) == MergeOutcome::AlreadyPresent {
                    return Ok(Err(DocError::Conflict));
                }
                (Rev { pos, id }, atts)
            }
            EditKind::Replicated { pos, ids } => {
                let Some(first) = ids.first() else {
                    return Ok(Err(DocError::BadRequest("empty revision path".into())));
                };
                if *pos == 0 || (ids.len() as u64) > *pos {
                    return Ok(Err(DocError::BadRequest("Invalid rev format".into())));
                }
                let rev = Rev {
                    pos: *pos,
                    id: first.clone(),
                };
                if tree.contains(&rev) {
                    // Already have it: nothing to do, and no new sequence.
                    return Ok(Ok(rev));
                }
                // Stubs refer to attachments of revisions already here (CouchDB's
                // merge_stubs): take their stored metadata, not the sender's.
                let mut prior = Vec::new();
                for leaf in &old_leaves {
                    if let Some(b) = get_body(t, &u.id, leaf)? {
                        prior.extend(b.attachments);
                    }
                }
                let atts = match resolve_replicated_atts(t, &self.uploads, &u, *pos, &prior)? {
                    Ok(a) => a,
                    Err(e) => return Ok(Err(e)),
                };
                tree.merge_path(*pos, ids, u.deleted);
                (rev, atts)
            }
        };

        let limit = self.counters.revs_limit.max(1);
        tree.stem(limit);

        // Keep bodies of leaves only: replaced leaves lose theirs now, so the file
        // does not grow with history.
        let new_leaves: HashSet<Rev> = tree.leaves().into_iter().map(|l| l.rev).collect();
        for old in &old_leaves {
            if !new_leaves.contains(old) {
                let key = old.to_string();
                t.bodies.remove((u.id.as_str(), key.as_str()))?;
            }
        }
        if new_leaves.contains(&new_rev) {
            let body = RevBody {
                body: u.body,
                attachments,
            };
            let key = new_rev.to_string();
            t.bodies
                .insert((u.id.as_str(), key.as_str()), encode(&body)?.as_slice())?;
        }

        let winner = tree.winner();
        let now_deleted = winner.as_ref().is_none_or(|w| w.deleted);
        let winner_size = match &winner {
            Some(w) if !w.deleted => get_body(t, &u.id, &w.rev)?.map_or(0, |b| b.body.len() as u64),
            _ => 0,
        };
        self.adjust_counts(was, Some(now_deleted), old_size, winner_size);

        self.counters.update_seq += 1;
        let seq = self.counters.update_seq;
        if let Some(old) = old_seq {
            t.by_seq.remove(old)?;
        }
        t.by_seq.insert(seq, u.id.as_str())?;
        let info = DocInfo {
            tree,
            seq,
            winner_size,
        };
        t.by_id.insert(u.id.as_str(), encode(&info)?.as_slice())?;
        Ok(Ok(new_rev))
    }

    /// Moves the doc/tombstone counters and external size from one state to another
    /// (`None` = document absent).
    fn adjust_counts(
        &mut self,
        was: Option<bool>,
        now: Option<bool>,
        old_size: u64,
        new_size: u64,
    ) {
        let c = &mut self.counters;
        match was {
            Some(false) => c.doc_count = c.doc_count.saturating_sub(1),
            Some(true) => c.del_count = c.del_count.saturating_sub(1),
            None => {}
        }
        match now {
            Some(false) => c.doc_count += 1,
            Some(true) => c.del_count += 1,
            None => {}
        }
        c.external = c.external.saturating_sub(old_size) + new_size;
    }

    fn apply_purge(
        &mut self,
        t: &mut Tables<'_>,
        requests: Vec<(String, Vec<Rev>)>,
    ) -> Result<Vec<(String, Vec<Rev>)>, StorageError> {
        let mut out = Vec::with_capacity(requests.len());
        for (id, revs) in requests {
            let existing: Option<DocInfo> = match t.by_id.get(id.as_str())? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            self.counters.purge_seq += 1;
            let Some(mut info) = existing else {
                out.push((id, Vec::new()));
                continue;
            };
            let was = Some(info.is_deleted());
            let removed = info.tree.remove_leaves(&revs);
            for r in &removed {
                let key = r.to_string();
                t.bodies.remove((id.as_str(), key.as_str()))?;
            }
            let purge = PurgeInfo {
                uuid: hex::encode(rand::random::<[u8; 16]>()),
                id: id.clone(),
                revs: removed.iter().map(|r| r.to_string()).collect(),
            };
            t.purged
                .insert(self.counters.purge_seq, encode(&purge)?.as_slice())?;
            if !removed.is_empty() {
                t.by_seq.remove(info.seq)?;
                self.counters.update_seq += 1;
                if info.tree.is_empty() {
                    t.by_id.remove(id.as_str())?;
                    self.adjust_counts(was, None, info.winner_size, 0);
                } else {
                    let winner = info.tree.winner();
                    let size = match &winner {
                        Some(w) if !w.deleted => {
                            get_body(t, &id, &w.rev)?.map_or(0, |b| b.body.len() as u64)
                        }
                        _ => 0,
                    };
                    self.adjust_counts(was, Some(info.is_deleted()), info.winner_size, size);
                    info.winner_size = size;
                    info.seq = self.counters.update_seq;
                    t.by_seq.insert(info.seq, id.as_str())?;
                    t.by_id.insert(id.as_str(), encode(&info)?.as_slice())?;
                }
            }
            out.push((id, removed));
        }
        Ok(out)
    }
}

fn unapplied(op: WriteOp) -> Pending {
    match op {
        WriteOp::Docs { reply, .. } => Pending::Docs(reply, Vec::new()),
        WriteOp::Local { reply, .. } => {
            Pending::Local(reply, Err(DocError::Internal("not applied".into())))
        }
        WriteOp::Purge { reply, .. } => Pending::Purge(reply, Vec::new()),
        WriteOp::SetMeta { reply, .. }
        | WriteOp::Compact { reply }
        | WriteOp::StageChunks { reply, .. }
        | WriteOp::DropBlob { reply, .. } => Pending::Unit(reply),
    }
}

/// The tables of one write transaction.
struct Tables<'t> {
    by_id: Table<'t, &'static str, &'static [u8]>,
    by_seq: Table<'t, u64, &'static str>,
    bodies: Table<'t, (&'static str, &'static str), &'static [u8]>,
    local: Table<'t, &'static str, &'static [u8]>,
    attachments: Table<'t, &'static [u8], &'static [u8]>,
    att_chunks: ChunkTable<'t>,
    purged: Table<'t, u64, &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StorageError> {
        Ok(Tables {
            by_id: txn.open_table(BY_ID)?,
            by_seq: txn.open_table(BY_SEQ)?,
            bodies: txn.open_table(BODIES)?,
            local: txn.open_table(LOCAL)?,
            attachments: txn.open_table(ATTACHMENTS)?,
            att_chunks: txn.open_table(ATT_CHUNKS)?,
            purged: txn.open_table(PURGED)?,
            meta: txn.open_table(META)?,
        })
    }
}

fn get_body(t: &Tables<'_>, id: &str, rev: &Rev) -> Result<Option<RevBody>, StorageError> {
    let key = rev.to_string();
    match t.bodies.get((id, key.as_str()))? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

/// Indexes data with this digest at `blob`, unless the digest is already stored.
/// Returns whether it was new.
fn index_blob(t: &mut Tables<'_>, digest: &[u8; 16], blob: BlobRef) -> Result<bool, StorageError> {
    if t.attachments.get(digest.as_slice())?.is_some() {
        return Ok(false);
    }
    t.attachments
        .insert(digest.as_slice(), encode(&blob)?.as_slice())?;
    Ok(true)
}

/// Stores whole data (content-addressed: its chunks are keyed by its digest).
fn store_data(t: &mut Tables<'_>, digest: [u8; 16], data: &[u8]) -> Result<(), StorageError> {
    let blob = BlobRef {
        blob: digest,
        length: data.len() as u64,
    };
    if index_blob(t, &digest, blob)? {
        write_chunks(&mut t.att_chunks, &digest, 0, data)?;
    }
    Ok(())
}

/// Makes a finished upload the stored data of its digest (or drops its chunks
/// when that data is already stored).
fn promote_upload(
    t: &mut Tables<'_>,
    uploads: &Uploads,
    upload: &[u8; 16],
    digest: &[u8; 16],
) -> Result<Result<(), DocError>, StorageError> {
    let done = uploads
        .lock()
        .map_err(|_| StorageError::Engine("uploads lock poisoned".into()))?
        .remove(upload)
        .and_then(|u| u.done);
    let Some(done) = done.filter(|d| &d.digest == digest) else {
        return Ok(Err(DocError::BadRequest(
            "attachment upload is missing or unfinished".into(),
        )));
    };
    let blob = BlobRef {
        blob: *upload,
        length: done.length,
    };
    if !index_blob(t, digest, blob)? {
        drop_blob(&mut t.att_chunks, upload)?;
    }
    Ok(Ok(()))
}

/// Stores the data of a new, staged or replica attachment and returns its
/// metadata; `None` for a stub. `keep_revpos` keeps a staged attachment's given
/// revpos (replicated edits).
fn store_new(
    t: &mut Tables<'_>,
    uploads: &Uploads,
    a: &NewAttachment,
    pos: u64,
    keep_revpos: bool,
) -> Result<Result<Option<AttachmentInfo>, DocError>, StorageError> {
    Ok(Ok(match a {
        NewAttachment::Data {
            name,
            content_type,
            data,
            encoding,
            length,
        } => {
            let digest = md5_digest(data);
            store_data(t, digest, data)?;
            Some(AttachmentInfo {
                name: name.clone(),
                content_type: content_type.clone(),
                digest,
                length: *length,
                revpos: pos,
                encoded_length: encoding.as_ref().map(|_| data.len() as u64),
                encoding: encoding.clone(),
            })
        }
        NewAttachment::Staged { info, upload } => {
            if let Err(e) = promote_upload(t, uploads, upload, &info.digest)? {
                return Ok(Err(e));
            }
            let mut info = info.clone();
            if !keep_revpos || info.revpos == 0 {
                info.revpos = pos;
            }
            Some(info)
        }
        NewAttachment::Replica { info, data } => {
            store_data(t, info.digest, data)?;
            Some(info.clone())
        }
        NewAttachment::Stub { .. } => None,
    }))
}

fn resolve_interactive_atts(
    t: &mut Tables<'_>,
    uploads: &Uploads,
    u: &DocUpdate,
    parent_atts: &[AttachmentInfo],
    pos: u64,
) -> Result<Result<Vec<AttachmentInfo>, DocError>, StorageError> {
    let mut out = Vec::with_capacity(u.attachments.len());
    for a in &u.attachments {
        match a {
            NewAttachment::Stub { name, info } => {
                match stored_stub(parent_atts, name, info.as_ref()) {
                    Some(p) => out.push(p.clone()),
                    None => {
                        return Ok(Err(DocError::MissingStub {
                            id: u.id.clone(),
                            name: name.clone(),
                        }))
                    }
                }
            }
            new => match store_new(t, uploads, new, pos, false)? {
                Ok(info) => out.extend(info),
                Err(e) => return Ok(Err(e)),
            },
        }
    }
    Ok(Ok(out))
}

fn resolve_replicated_atts(
    t: &mut Tables<'_>,
    uploads: &Uploads,
    u: &DocUpdate,
    pos: u64,
    prior: &[AttachmentInfo],
) -> Result<Result<Vec<AttachmentInfo>, DocError>, StorageError> {
    let mut out = Vec::with_capacity(u.attachments.len());
    for a in &u.attachments {
        match a {
            NewAttachment::Stub { name, info } => {
                match (stored_stub(prior, name, info.as_ref()), info) {
                    (Some(stored), _) => out.push(stored.clone()),
                    (None, Some(info)) if t.attachments.get(info.digest.as_slice())?.is_some() => {
                        out.push(info.clone())
                    }
                    _ => {
                        return Ok(Err(DocError::MissingStub {
                            id: u.id.clone(),
                            name: name.clone(),
                        }))
                    }
                }
            }
            new => match store_new(t, uploads, new, pos, true)? {
                Ok(info) => out.extend(info),
                Err(e) => return Ok(Err(e)),
            },
        }
    }
    Ok(Ok(out))
}

/// The stored attachment a replicated stub names: same name, and the same revpos
/// when the stub gives one (as couch_att:merge_stubs matches them).
fn stored_stub<'a>(
    prior: &'a [AttachmentInfo],
    name: &str,
    stub: Option<&AttachmentInfo>,
) -> Option<&'a AttachmentInfo> {
    prior
        .iter()
        .find(|p| p.name == name && stub.is_none_or(|s| s.revpos == 0 || s.revpos == p.revpos))
}

fn apply_local(
    t: &mut Tables<'_>,
    id: &str,
    rev: Option<u64>,
    body: Option<Vec<u8>>,
) -> Result<Result<u64, DocError>, StorageError> {
    let current: Option<LocalDoc> = match t.local.get(id)? {
        Some(v) => Some(decode(v.value())?),
        None => None,
    };
    let current_rev = current.as_ref().map(|d| d.rev);
    let expected = rev.filter(|r| *r != 0);
    match body {
        Some(body) => {
            if current_rev != expected && !(current_rev.is_none() && expected.is_none()) {
                return Ok(Err(DocError::LocalConflict));
            }
            let next = current_rev.unwrap_or(0) + 1;
            let doc = LocalDoc { rev: next, body };
            t.local.insert(id, encode(&doc)?.as_slice())?;
            Ok(Ok(next))
        }
        None => {
            let Some(cur) = current_rev else {
                return Ok(Err(DocError::NotFound));
            };
            if expected != Some(cur) {
                return Ok(Err(DocError::LocalConflict));
            }
            t.local.remove(id)?;
            Ok(Ok(0))
        }
    }
}

/// Stems every revision tree to `revs_limit` (as CouchDB's compactor does, so a
/// lowered limit reaches documents not edited since), then drops bodies of
/// revisions that are no longer leaves and attachments that no stored revision
/// refers to.
fn compact(t: &mut Tables<'_>, revs_limit: usize, uploads: &Uploads) -> Result<(), StorageError> {
    let mut stemmed: Vec<(String, Vec<u8>)> = Vec::new();
    for item in t.by_id.iter()? {
        let (k, v) = item?;
        let mut info: DocInfo = decode(v.value())?;
        let before = info.tree.clone();
        info.tree.stem(revs_limit);
        if info.tree != before {
            stemmed.push((k.value().to_string(), encode(&info)?));
        }
    }
    for (id, bytes) in &stemmed {
        t.by_id.insert(id.as_str(), bytes.as_slice())?;
    }

    let mut referenced: HashSet<[u8; 16]> = HashSet::new();
    let mut stale: Vec<(String, String)> = Vec::new();
    let mut current_id = String::new();
    let mut leaves: HashSet<String> = HashSet::new();
    for item in t.bodies.iter()? {
        let (k, v) = item?;
        let (id, rev) = k.value();
        if id != current_id {
            current_id = id.to_string();
            leaves = match t.by_id.get(id)? {
                Some(info) => decode::<DocInfo>(info.value())?
                    .tree
                    .leaves()
                    .into_iter()
                    .map(|l| l.rev.to_string())
                    .collect(),
                None => HashSet::new(),
            };
        }
        if leaves.contains(rev) {
            let body: RevBody = decode(v.value())?;
            referenced.extend(body.attachments.iter().map(|a| a.digest));
        } else {
            stale.push((id.to_string(), rev.to_string()));
        }
    }
    for (id, rev) in &stale {
        t.bodies.remove((id.as_str(), rev.as_str()))?;
    }
    let mut orphans: Vec<Vec<u8>> = Vec::new();
    for item in t.attachments.iter()? {
        let (k, _) = item?;
        let key = k.value();
        let known = <[u8; 16]>::try_from(key).is_ok_and(|d| referenced.contains(&d));
        if !known {
            orphans.push(key.to_vec());
        }
    }
    for k in &orphans {
        t.attachments.remove(k.as_slice())?;
    }
    // Chunks belong to an indexed blob or to an upload in progress; any other
    // blob (an abandoned upload, data just unindexed) is dropped.
    let mut live: HashSet<[u8; 16]> = uploads
        .lock()
        .map_err(|_| StorageError::Engine("uploads lock poisoned".into()))?
        .keys()
        .copied()
        .collect();
    for item in t.attachments.iter()? {
        let (_, v) = item?;
        live.insert(blob_ref(v.value())?.blob);
    }
    // Visit one key per blob, skipping over the rest of its chunks.
    let mut dead: Vec<[u8; 16]> = Vec::new();
    let mut after: Option<[u8; 16]> = None;
    loop {
        let lower = match &after {
            Some(b) => std::ops::Bound::Excluded((b.as_slice(), u32::MAX)),
            None => std::ops::Bound::Unbounded,
        };
        let next = match t
            .att_chunks
            .range::<(&[u8], u32)>((lower, std::ops::Bound::Unbounded))?
            .next()
        {
            Some(item) => item?.0.value().0.to_vec(),
            None => break,
        };
        let blob = <[u8; 16]>::try_from(next.as_slice())
            .map_err(|_| StorageError::Corrupt("bad attachment chunk key".into()))?;
        if !live.contains(&blob) {
            dead.push(blob);
        }
        after = Some(blob);
    }
    for blob in &dead {
        drop_blob(&mut t.att_chunks, blob)?;
    }
    Ok(())
}
