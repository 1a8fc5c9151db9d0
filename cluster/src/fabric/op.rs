//! Shard operations: what a coordinator asks of one shard copy. The same code runs
//! them for a local copy and, behind the fabric, for a remote one.

use crate::coordinator::{AllDocsRow, OpenedDoc, OpenedRev, RevSelector, RevsDiff};
use crate::ClusterError;
use chaise_storage::{
    AllDocsRange, ChangeRow, DocError, DocInfo, DocUpdate, LocalDoc, PurgeInfo, Rev, RevBody,
    Shard, ShardInfo, ShardReader, StagedBlob, UpdateResult,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One operation on one shard copy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardOp {
    /// Write documents.
    UpdateDocs(Vec<DocUpdate>),
    /// Open a document's revisions.
    OpenDoc {
        /// Document id.
        id: String,
        /// Which revisions.
        sel: RevSelector,
    },
    /// Trees (and winner bodies) of ids, in order.
    DocsById {
        /// Ids.
        ids: Vec<String>,
        /// Load winner bodies.
        include_docs: bool,
    },
    /// An `_all_docs` scan.
    AllDocs {
        /// Range, order and limit.
        range: AllDocsRange,
        /// Load winner bodies.
        include_docs: bool,
    },
    /// Changes after a sequence.
    Changes {
        /// Start after this shard sequence.
        since: u64,
        /// Most rows.
        limit: usize,
        /// Newest first.
        descending: bool,
        /// Load winner bodies and trees.
        include_docs: bool,
        /// Only these ids.
        doc_ids: Option<Vec<String>>,
        /// Only design documents.
        design_only: bool,
    },
    /// Which of these revisions are missing.
    RevsDiff(Vec<(String, Vec<Rev>)>),
    /// Purge leaf revisions.
    Purge(Vec<(String, Vec<Rev>)>),
    /// The purge log.
    PurgedInfos,
    /// Read a `_local` document.
    GetLocal(String),
    /// Write or delete a `_local` document.
    WriteLocal {
        /// Full id.
        id: String,
        /// Expected counter.
        rev: Option<u64>,
        /// New body, `None` to delete.
        body: Option<Vec<u8>>,
    },
    /// `_local` documents in a range.
    LocalDocs(AllDocsRange),
    /// A shard-wide setting.
    GetMeta(String),
    /// Set a shard-wide setting.
    SetMeta {
        /// Key (`security`, `revs_limit`, `purged_infos_limit`).
        key: String,
        /// Value.
        value: Vec<u8>,
    },
    /// Compact the shard.
    Compact,
    /// Counters and sizes.
    Info,
    /// Attachment bytes by digest.
    AttachmentData([u8; 16]),
    /// Part of an attachment's stored bytes.
    AttachmentRange {
        /// Digest.
        digest: [u8; 16],
        /// First byte.
        offset: u64,
        /// Most bytes.
        len: u64,
    },
    /// Start a streamed attachment upload with this id.
    StageBegin([u8; 16]),
    /// Append bytes to an upload.
    StageAppend {
        /// Upload id.
        upload: [u8; 16],
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Finish an upload: its digest and length.
    StageFinish([u8; 16]),
    /// Drop an upload no write used.
    StageAbort([u8; 16]),
}

/// One row of a shard's changes, with what the coordinator needs to render it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardChange {
    /// The row.
    pub row: ChangeRow,
    /// Winner body, when asked.
    pub body: Option<RevBody>,
    /// Document info, when asked.
    pub info: Option<DocInfo>,
}

/// The answer of a shard operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardReply {
    /// Per-document write results.
    Updated(Vec<UpdateResult>),
    /// An opened document.
    Doc(Option<OpenedDoc>),
    /// Rows by id.
    Rows(Vec<Option<AllDocsRow>>),
    /// An `_all_docs` scan.
    AllDocs {
        /// Documents in the shard.
        total: u64,
        /// Documents before the range start.
        before: u64,
        /// The rows.
        rows: Vec<AllDocsRow>,
    },
    /// Changes.
    Changes {
        /// Rows in order.
        rows: Vec<ShardChange>,
        /// The shard's update sequence when read.
        update_seq: u64,
        /// Changes left after the last row.
        pending: u64,
    },
    /// Missing revisions.
    RevsDiff(Vec<(String, RevsDiff)>),
    /// Purged revisions.
    Purged(Vec<(String, Vec<Rev>)>),
    /// The purge log.
    PurgedInfos(Vec<PurgeInfo>),
    /// A `_local` document.
    Local(Option<LocalDoc>),
    /// Result of a `_local` write.
    LocalWritten(Result<u64, DocError>),
    /// `_local` documents.
    LocalDocs(Vec<(String, LocalDoc)>),
    /// Raw bytes, if present.
    Bytes(Option<Vec<u8>>),
    /// Counters and sizes.
    Info(ShardInfo),
    /// Done.
    Unit,
    /// A finished upload.
    Staged(StagedBlob),
}

/// Keys of shard-wide settings a caller may set.
fn meta_key(key: &str) -> Result<&'static str, ClusterError> {
    match key {
        "security" => Ok("security"),
        "revs_limit" => Ok("revs_limit"),
        "purged_infos_limit" => Ok("purged_infos_limit"),
        other => Err(ClusterError::BadRequest(format!(
            "unknown shard setting {other}"
        ))),
    }
}

/// Runs an operation on a local shard copy.
pub async fn execute(shard: &Shard, op: ShardOp) -> Result<ShardReply, ClusterError> {
    Ok(match op {
        ShardOp::UpdateDocs(updates) => ShardReply::Updated(shard.update_docs(updates).await?),
        ShardOp::Purge(request) => ShardReply::Purged(shard.purge(request).await?),
        ShardOp::WriteLocal { id, rev, body } => {
            ShardReply::LocalWritten(shard.write_local(id, rev, body).await?)
        }
        ShardOp::SetMeta { key, value } => {
            shard.set_meta(meta_key(&key)?, value).await?;
            ShardReply::Unit
        }
        ShardOp::Compact => {
            shard.compact().await?;
            ShardReply::Unit
        }
        ShardOp::StageBegin(upload) => {
            shard.stage_begin(upload)?;
            ShardReply::Unit
        }
        ShardOp::StageAppend { upload, data } => {
            shard.stage_append(upload, &data).await?;
            ShardReply::Unit
        }
        ShardOp::StageFinish(upload) => ShardReply::Staged(shard.stage_finish(upload).await?),
        ShardOp::StageAbort(upload) => {
            shard.stage_abort(upload).await?;
            ShardReply::Unit
        }
        read => read_op(&shard.reader()?, read)?,
    })
}

/// Rows one message of a streamed scan carries at most: bounds what either side of
/// a long `_changes` or `_all_docs` scan holds at once.
pub const SCAN_BATCH: usize = 1000;

/// A long read on a local shard copy, read one batch per [`LocalScan::next`]: the
/// reader pulls, so the scan never holds more than one batch and a slow reader
/// slows it down. Each batch reads a fresh snapshot (no read transaction stays open
/// between batches). Changes continue after the last sequence read, `_all_docs`
/// after the last id; every other operation, and changes filtered by id or read
/// newest first, answer in one batch. Only the first `_all_docs` batch counts
/// `total` and `before`.
pub struct LocalScan {
    shard: Arc<Shard>,
    next: ScanStep,
}

/// What a [`LocalScan`] reads next.
enum ScanStep {
    /// Changes after `since`, `left` rows still wanted.
    Changes {
        since: u64,
        left: usize,
        include_docs: bool,
    },
    /// `_all_docs` from `range.start` (dropping `after`, the id the previous
    /// batch ended on), `left` rows still wanted.
    AllDocs {
        range: AllDocsRange,
        after: Option<String>,
        left: usize,
        include_docs: bool,
    },
    /// An operation answered in one batch.
    Once(ShardOp),
    /// Nothing: the scan ended.
    Done,
}

impl LocalScan {
    /// A scan of `op` on `shard`; nothing is read until [`LocalScan::next`].
    pub fn new(shard: Arc<Shard>, op: ShardOp) -> Self {
        let next = match op {
            ShardOp::Changes {
                since,
                limit,
                descending: false,
                include_docs,
                doc_ids: None,
                design_only: false,
            } => ScanStep::Changes {
                since,
                left: limit,
                include_docs,
            },
            ShardOp::AllDocs {
                range,
                include_docs,
            } => ScanStep::AllDocs {
                left: range.limit,
                range,
                after: None,
                include_docs,
            },
            op => ScanStep::Once(op),
        };
        LocalScan { shard, next }
    }

    /// The next batch; `None` once the scan ended.
    pub async fn next(&mut self) -> Option<Result<ShardReply, ClusterError>> {
        let step = std::mem::replace(&mut self.next, ScanStep::Done);
        let reply = match step {
            ScanStep::Done => return None,
            ScanStep::Once(op) => execute(&self.shard, op).await,
            ScanStep::Changes {
                since,
                left,
                include_docs,
            } => {
                let batch = left.min(SCAN_BATCH);
                let reply = self
                    .shard
                    .reader()
                    .map_err(ClusterError::from)
                    .and_then(|r| changes(&r, since, batch, false, include_docs, None, false));
                if let Ok(ShardReply::Changes { rows, .. }) = &reply {
                    match rows.last() {
                        Some(last) if rows.len() == batch && left > batch => {
                            self.next = ScanStep::Changes {
                                since: last.row.seq,
                                left: left - batch,
                                include_docs,
                            }
                        }
                        _ => {}
                    }
                }
                reply
            }
            ScanStep::AllDocs {
                mut range,
                after,
                left,
                include_docs,
            } => {
                let batch = left.min(SCAN_BATCH);
                range.limit = batch.saturating_add(usize::from(after.is_some()));
                let reply = self
                    .shard
                    .reader()
                    .map_err(ClusterError::from)
                    .and_then(|r| all_docs_batch(&r, &range, include_docs, after.as_deref()));
                if let Ok(ShardReply::AllDocs { rows, .. }) = &reply {
                    match rows.last() {
                        Some(last) if rows.len() == batch && left > batch => {
                            range.start = Some(last.id.clone());
                            self.next = ScanStep::AllDocs {
                                after: Some(last.id.clone()),
                                range,
                                left: left - batch,
                                include_docs,
                            }
                        }
                        _ => {}
                    }
                }
                reply
            }
        };
        Some(reply)
    }
}

/// The rows of an `_all_docs` range. A batch that continues a scan (`after` is the
/// id the previous batch ended on, where this one starts) drops that id and does
/// not count `total` and `before` again.
fn all_docs_batch(
    reader: &ShardReader,
    range: &AllDocsRange,
    include_docs: bool,
    after: Option<&str>,
) -> Result<ShardReply, ClusterError> {
    let (total, before) = match (after, &range.start) {
        (Some(_), _) => (0, 0),
        (None, Some(start)) => (
            reader.info()?.doc_count,
            reader.count_before(start, range.descending)?,
        ),
        (None, None) => (reader.info()?.doc_count, 0),
    };
    let mut rows = Vec::new();
    for (id, info) in reader.all_docs(range)? {
        if after == Some(id.as_str()) {
            continue;
        }
        let body = winner_body(reader, &id, &info, include_docs)?;
        rows.push(AllDocsRow { id, info, body });
    }
    // A continuing batch asked for one row more than it keeps (the `after` row),
    // which may have been deleted since.
    rows.truncate(range.limit.saturating_sub(usize::from(after.is_some())));
    Ok(ShardReply::AllDocs {
        total,
        before,
        rows,
    })
}

/// Runs a read operation on a snapshot of a shard.
fn read_op(reader: &ShardReader, op: ShardOp) -> Result<ShardReply, ClusterError> {
    Ok(match op {
        ShardOp::OpenDoc { id, sel } => ShardReply::Doc(open_doc(reader, &id, &sel)?),
        ShardOp::DocsById { ids, include_docs } => {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(match reader.doc_info(&id)? {
                    Some(info) => {
                        let body = winner_body(reader, &id, &info, include_docs)?;
                        Some(AllDocsRow { id, info, body })
                    }
                    None => None,
                });
            }
            ShardReply::Rows(out)
        }
        ShardOp::AllDocs {
            range,
            include_docs,
        } => all_docs_batch(reader, &range, include_docs, None)?,
        ShardOp::Changes {
            since,
            limit,
            descending,
            include_docs,
            doc_ids,
            design_only,
        } => changes(
            reader,
            since,
            limit,
            descending,
            include_docs,
            doc_ids,
            design_only,
        )?,
        ShardOp::RevsDiff(request) => ShardReply::RevsDiff(revs_diff(reader, request)?),
        ShardOp::PurgedInfos => ShardReply::PurgedInfos(
            reader
                .purged_infos(0)?
                .into_iter()
                .map(|(_, p)| p)
                .collect(),
        ),
        ShardOp::GetLocal(id) => ShardReply::Local(reader.local_doc(&id)?),
        ShardOp::LocalDocs(range) => ShardReply::LocalDocs(reader.local_docs(&range)?),
        ShardOp::GetMeta(key) => ShardReply::Bytes(reader.meta(&key)?),
        ShardOp::Info => ShardReply::Info(reader.info()?),
        ShardOp::AttachmentData(digest) => ShardReply::Bytes(reader.attachment(&digest)?),
        ShardOp::AttachmentRange {
            digest,
            offset,
            len,
        } => ShardReply::Bytes(reader.attachment_range(&digest, offset, len)?),
        ShardOp::UpdateDocs(_)
        | ShardOp::Purge(_)
        | ShardOp::WriteLocal { .. }
        | ShardOp::SetMeta { .. }
        | ShardOp::Compact
        | ShardOp::StageBegin(_)
        | ShardOp::StageAppend { .. }
        | ShardOp::StageFinish(_)
        | ShardOp::StageAbort(_) => {
            return Err(ClusterError::Internal("write sent to the read path".into()))
        }
    })
}

fn winner_body(
    reader: &ShardReader,
    id: &str,
    info: &DocInfo,
    include_docs: bool,
) -> Result<Option<RevBody>, ClusterError> {
    Ok(match (include_docs, info.tree.winner()) {
        (true, Some(w)) if !w.deleted => reader.rev_body(id, &w.rev)?,
        _ => None,
    })
}

fn open_doc(
    reader: &ShardReader,
    id: &str,
    sel: &RevSelector,
) -> Result<Option<OpenedDoc>, ClusterError> {
    let Some(info) = reader.doc_info(id)? else {
        return Ok(None);
    };
    let mut wanted: Vec<Rev> = Vec::new();
    let mut unknown: Vec<Rev> = Vec::new();
    match sel {
        RevSelector::Winner => wanted.extend(info.tree.winner().map(|l| l.rev)),
        RevSelector::AllLeaves => wanted.extend(info.tree.leaves().into_iter().map(|l| l.rev)),
        RevSelector::Rev { rev, latest } => expand(&info, rev, *latest, &mut wanted, &mut unknown),
        RevSelector::Revs { revs, latest } => {
            for rev in revs {
                expand(&info, rev, *latest, &mut wanted, &mut unknown)
            }
        }
    }
    let mut revs = Vec::with_capacity(wanted.len() + unknown.len());
    for rev in wanted {
        let deleted = info
            .tree
            .path_to(&rev)
            .and_then(|p| p.first().map(|(_, d)| *d))
            .unwrap_or(false);
        let body = reader.rev_body(id, &rev)?;
        revs.push(Ok(OpenedRev { rev, deleted, body }));
    }
    revs.extend(unknown.into_iter().map(Err));
    Ok(Some(OpenedDoc { info, revs }))
}

/// Adds `rev` (or with `latest`, its descending leaves) to `wanted`, or to
/// `unknown` when the tree lacks it.
fn expand(info: &DocInfo, rev: &Rev, latest: bool, wanted: &mut Vec<Rev>, unknown: &mut Vec<Rev>) {
    if !info.tree.contains(rev) {
        unknown.push(rev.clone());
    } else if latest {
        for l in info.tree.leaves_under(rev) {
            if !wanted.contains(&l.rev) {
                wanted.push(l.rev);
            }
        }
    } else if !wanted.contains(rev) {
        wanted.push(rev.clone());
    }
}

#[allow(clippy::too_many_arguments)]
fn changes(
    reader: &ShardReader,
    since: u64,
    limit: usize,
    descending: bool,
    include_docs: bool,
    doc_ids: Option<Vec<String>>,
    design_only: bool,
) -> Result<ShardReply, ClusterError> {
    let rows: Vec<ChangeRow> = match doc_ids {
        Some(ids) => {
            let mut found = Vec::new();
            for id in ids {
                if let Some(info) = reader.doc_info(&id)? {
                    if info.seq > since {
                        let leaves = info.tree.leaves();
                        let deleted = leaves.first().is_none_or(|l| l.deleted);
                        found.push(ChangeRow {
                            seq: info.seq,
                            id,
                            leaves,
                            deleted,
                        });
                    }
                }
            }
            found.sort_by_key(|r| r.seq);
            found.dedup_by(|a, b| a.id == b.id);
            if descending {
                found.reverse();
            }
            found.truncate(limit);
            found
        }
        None if design_only => reader
            .changes(since, usize::MAX, descending)?
            .into_iter()
            .filter(|r| r.id.starts_with("_design/"))
            .take(limit)
            .collect(),
        None => reader.changes(since, limit, descending)?,
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (body, info) = if include_docs {
            let info = reader.doc_info(&row.id)?;
            let body = match row.leaves.first() {
                Some(w) => reader.rev_body(&row.id, &w.rev)?,
                None => None,
            };
            (body, info)
        } else {
            (None, None)
        };
        out.push(ShardChange { row, body, info });
    }
    let update_seq = reader.info()?.update_seq;
    // Changes after `since` that this reply does not carry. A descending walk starts
    // at the top, so everything it did not return is left.
    let pending = match out.last() {
        _ if descending => reader
            .count_changes_after(0)?
            .saturating_sub(out.len() as u64),
        Some(last) => reader.count_changes_after(last.row.seq)?,
        None => reader.count_changes_after(since)?,
    };
    Ok(ShardReply::Changes {
        rows: out,
        update_seq,
        pending,
    })
}

fn revs_diff(
    reader: &ShardReader,
    request: Vec<(String, Vec<Rev>)>,
) -> Result<Vec<(String, RevsDiff)>, ClusterError> {
    let mut out = Vec::new();
    for (id, revs) in request {
        let info = reader.doc_info(&id)?;
        let missing: Vec<Rev> = revs
            .iter()
            .filter(|r| !info.as_ref().is_some_and(|i| i.tree.contains(r)))
            .cloned()
            .collect();
        if missing.is_empty() {
            continue;
        }
        let max_pos = missing.iter().map(|r| r.pos).max().unwrap_or(0);
        let possible_ancestors = info
            .map(|i| {
                i.tree
                    .leaves()
                    .into_iter()
                    .filter(|l| l.rev.pos < max_pos)
                    .map(|l| l.rev)
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            id,
            RevsDiff {
                missing,
                possible_ancestors,
            },
        ));
    }
    Ok(out)
}
