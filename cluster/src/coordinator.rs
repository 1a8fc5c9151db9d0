//! The coordinator: every database and document operation the HTTP layer needs,
//! routed to shard copies and merged into one answer.

use crate::local_shards::LocalShards;
use crate::metadata::{MetaCommand, MetaStore};
use crate::quorum;
use crate::seq::{SeqEntry, SeqVector, UUID_PREFIX_LEN};
use crate::shard_map::{ShardMap, ShardRange};
use crate::ClusterError;
use chaise_storage::{
    AllDocsRange, DocError, DocInfo, DocUpdate, Leaf, LocalDoc, PurgeInfo, Rev, RevBody, Shard,
    ShardInfo, UpdateResult,
};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The outcome of one document write across its copies.
#[derive(Debug, Clone)]
pub struct DocWriteResult {
    /// The new revision, or why the document was refused.
    pub result: UpdateResult,
    /// Written to at least one copy but fewer than `w`: HTTP 202.
    pub accepted: bool,
}

/// Which revisions of a document to open.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum RevSelector {
    /// The winning revision.
    Winner,
    /// One revision; with `latest`, the leaves descending from it instead.
    Rev {
        /// The revision.
        rev: Rev,
        /// Replace by descending leaves.
        latest: bool,
    },
    /// Every leaf (`open_revs=all`).
    AllLeaves,
    /// A list (`open_revs=[...]`).
    Revs {
        /// The revisions.
        revs: Vec<Rev>,
        /// Replace each by its descending leaves.
        latest: bool,
    },
}

/// One opened revision.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OpenedRev {
    /// The revision.
    pub rev: Rev,
    /// Whether it is a tombstone.
    pub deleted: bool,
    /// Its stored body; `None` when not kept (interior revision) or unknown.
    pub body: Option<RevBody>,
}

/// A document with the revisions asked for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OpenedDoc {
    /// Tree and sequence.
    pub info: DocInfo,
    /// Requested revisions: `Ok` if in the tree, `Err(rev)` if unknown ("missing").
    pub revs: Vec<Result<OpenedRev, Rev>>,
}

/// Parameters of an `_all_docs` scan.
#[derive(Debug, Clone, Default)]
pub struct AllDocsQuery {
    /// Key range and direction; its `limit` is the number of rows wanted.
    pub range: AllDocsRange,
    /// Rows to skip after merging.
    pub skip: usize,
    /// Load the winning revision's body of every row.
    pub include_docs: bool,
}

/// One `_all_docs` row.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AllDocsRow {
    /// Document id.
    pub id: String,
    /// Tree and sequence.
    pub info: DocInfo,
    /// Winner body, when asked for.
    pub body: Option<RevBody>,
}

/// The merged `_all_docs` answer.
#[derive(Debug, Clone)]
pub struct AllDocsResult {
    /// Documents in the database.
    pub total_rows: u64,
    /// Rows before the first returned.
    pub offset: u64,
    /// The rows.
    pub rows: Vec<AllDocsRow>,
}

/// Parameters of a changes request.
#[derive(Debug, Clone, Default)]
pub struct ChangesQuery {
    /// Start after this position.
    pub since: SeqVector,
    /// Most rows.
    pub limit: usize,
    /// Newest first.
    pub descending: bool,
    /// Load winner bodies.
    pub include_docs: bool,
    /// Only these ids (`filter=_doc_ids`).
    pub doc_ids: Option<Vec<String>>,
    /// Only design documents (`filter=_design`).
    pub design_only: bool,
}

/// One merged changes row.
#[derive(Debug, Clone)]
pub struct ChangesRow {
    /// Opaque clustered sequence after this row.
    pub seq: String,
    /// Document id.
    pub id: String,
    /// Leaves, winner first.
    pub leaves: Vec<Leaf>,
    /// Whether the winner is deleted.
    pub deleted: bool,
    /// Winner body, when asked for.
    pub body: Option<RevBody>,
    /// Full info (for conflicts).
    pub info: Option<DocInfo>,
}

/// The merged changes answer.
#[derive(Debug, Clone)]
pub struct ChangesResult {
    /// Rows.
    pub rows: Vec<ChangesRow>,
    /// Position after the last row.
    pub last_seq: String,
    /// Changes left after `last_seq`.
    pub pending: u64,
}

/// `_revs_diff` answer for one document.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RevsDiff {
    /// Requested revisions the database lacks.
    pub missing: Vec<Rev>,
    /// Leaves that may be ancestors of the missing ones.
    pub possible_ancestors: Vec<Rev>,
}

/// Database information summed over one copy of every range.
#[derive(Debug, Clone)]
pub struct DbInfo {
    /// Name.
    pub name: String,
    /// Sums of the shard counters.
    pub totals: ShardInfo,
    /// Clustered update sequence.
    pub update_seq: String,
    /// Clustered purge sequence.
    pub purge_seq: String,
    /// Ranges.
    pub q: usize,
    /// Copies.
    pub n: usize,
    /// Properties.
    pub props: Map<String, Value>,
}

/// Runs a short point read (a few B-tree lookups) right on the calling task: cheaper
/// than a hop to the blocking pool, and short enough not to stall the runtime.
async fn point_read<T>(f: impl FnOnce() -> Result<T, ClusterError>) -> Result<T, ClusterError> {
    f()
}

/// Runs blocking storage work (scans, large values) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ClusterError> + Send + 'static,
) -> Result<T, ClusterError> {
    tokio::task::spawn_blocking(f).await?
}

/// The request coordinator of one node.
pub struct Coordinator {
    node: String,
    meta: MetaStore,
    shards: LocalShards,
    defaults: RwLock<(u32, usize)>,
}

impl Coordinator {
    /// Opens the node's metadata and shard files under `data_dir`.
    pub fn open(data_dir: &Path, node: &str, q: u32, n: usize) -> Result<Arc<Self>, ClusterError> {
        Ok(Arc::new(Coordinator {
            node: node.to_string(),
            meta: MetaStore::open(data_dir)?,
            shards: LocalShards::new(data_dir),
            defaults: RwLock::new((q.max(1), n.max(1))),
        }))
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// Changes the default `q` and `n` for databases created from now on.
    pub fn set_defaults(&self, q: Option<u32>, n: Option<usize>) {
        if let Ok(mut d) = self.defaults.write() {
            if let Some(q) = q {
                d.0 = q.max(1);
            }
            if let Some(n) = n {
                d.1 = n.max(1);
            }
        }
    }

    /// Members of the cluster: just this node for now.
    pub fn cluster_nodes(&self) -> Vec<String> {
        vec![self.node.clone()]
    }

    /// Closes every shard after its queued writes (at shutdown).
    pub fn shutdown(&self) {
        self.shards.close_all();
    }

    fn map(&self, db: &str) -> Result<ShardMap, ClusterError> {
        self.meta.shard_map(db).ok_or(ClusterError::NoDb)
    }

    fn shard(&self, map: &ShardMap, range: &ShardRange) -> Result<Arc<Shard>, ClusterError> {
        Ok(self.shards.get(map, range, false)?)
    }

    /// One copy of every range (the local one), in range order.
    fn all_shards(&self, map: &ShardMap) -> Result<Vec<(ShardRange, Arc<Shard>)>, ClusterError> {
        map.ranges
            .iter()
            .map(|r| Ok((r.clone(), self.shard(map, r)?)))
            .collect()
    }

    fn doc_shard(&self, map: &ShardMap, id: &str) -> Result<Arc<Shard>, ClusterError> {
        let r = &map.ranges[map.range_index(id)];
        self.shard(map, r)
    }

    /// The shard map of a database.
    pub fn shard_map(&self, db: &str) -> Option<ShardMap> {
        self.meta.shard_map(db)
    }

    /// Whether a database exists.
    pub fn db_exists(&self, db: &str) -> bool {
        self.meta.shard_map(db).is_some()
    }

    /// All database names, sorted.
    pub fn all_dbs(&self) -> Vec<String> {
        self.meta.db_names()
    }

    /// Creates a database: records its shard map, then creates the shard files.
    /// `security` is stored in every new shard.
    pub async fn create_db(
        &self,
        name: &str,
        q: Option<u32>,
        n: Option<usize>,
        props: Map<String, Value>,
        security: Vec<u8>,
    ) -> Result<(), ClusterError> {
        if self.db_exists(name) {
            return Err(ClusterError::DbExists);
        }
        let (dq, dn) = self.defaults.read().map(|d| *d).unwrap_or((2, 1));
        let nodes = self.cluster_nodes();
        let n = n.unwrap_or(dn).clamp(1, nodes.len());
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let map = ShardMap::new(
            name,
            q.unwrap_or(dq),
            &nodes[..n],
            format!(".{secs}"),
            props,
        );
        // Remove leftovers of an earlier database of the same name and second.
        self.shards.delete(&map)?;
        self.meta.apply(MetaCommand::CreateDb(map.clone()))?;
        for range in &map.ranges {
            let shard = self.shards.get(&map, range, true)?;
            shard.set_meta("security", security.clone()).await?;
        }
        Ok(())
    }

    /// Deletes a database and its files.
    pub async fn delete_db(&self, name: &str) -> Result<(), ClusterError> {
        let map = self.map(name)?;
        self.meta.apply(MetaCommand::DeleteDb(name.to_string()))?;
        Ok(self.shards.delete(&map)?)
    }

    /// Writes documents; one result per update, in order.
    pub async fn update_docs(
        &self,
        db: &str,
        updates: Vec<DocUpdate>,
        w: Option<usize>,
    ) -> Result<Vec<DocWriteResult>, ClusterError> {
        let map = self.map(db)?;
        let mut per_range: Vec<(Vec<usize>, Vec<DocUpdate>)> = vec![Default::default(); map.q()];
        for (i, u) in updates.into_iter().enumerate() {
            let r = map.range_index(&u.id);
            per_range[r].0.push(i);
            per_range[r].1.push(u);
        }
        let total: usize = per_range.iter().map(|p| p.0.len()).sum();
        let mut out: Vec<Option<DocWriteResult>> = vec![None; total];
        let mut tasks = Vec::new();
        for (r, (idx, batch)) in per_range.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let range = &map.ranges[r];
            let copies = range.nodes.len();
            let w = quorum::effective(w, copies);
            let shard = self.shard(&map, range)?;
            tasks.push(tokio::spawn(async move {
                let results = shard.update_docs(batch).await?;
                let acks = 1;
                Ok::<_, ClusterError>((idx, results, !quorum::write_complete(acks, w)))
            }));
        }
        for task in tasks {
            let (idx, results, short) = task.await??;
            for (i, result) in idx.into_iter().zip(results) {
                let accepted = short && result.is_ok();
                out[i] = Some(DocWriteResult { result, accepted });
            }
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or(DocWriteResult {
                    result: Err(DocError::Internal("no reply".into())),
                    accepted: false,
                })
            })
            .collect())
    }

    /// Opens a document and the selected revisions; `None` if the id is unknown.
    pub async fn open_doc(
        &self,
        db: &str,
        id: &str,
        sel: RevSelector,
    ) -> Result<Option<OpenedDoc>, ClusterError> {
        let map = self.map(db)?;
        let shard = self.doc_shard(&map, id)?;
        let id = id.to_string();
        point_read(move || {
            let reader = shard.reader()?;
            let Some(info) = reader.doc_info(&id)? else {
                return Ok(None);
            };
            let open = |rev: &Rev| -> Result<Result<OpenedRev, Rev>, ClusterError> {
                match info.tree.path_to(rev) {
                    Some(path) => {
                        let deleted = path.first().is_some_and(|(_, d)| *d);
                        Ok(Ok(OpenedRev {
                            rev: rev.clone(),
                            deleted,
                            body: reader.rev_body(&id, rev)?,
                        }))
                    }
                    None => Ok(Err(rev.clone())),
                }
            };
            let mut wanted: Vec<Rev> = Vec::new();
            let mut unknown: Vec<Rev> = Vec::new();
            match &sel {
                RevSelector::Winner => wanted.extend(info.tree.winner().map(|l| l.rev)),
                RevSelector::AllLeaves => {
                    wanted.extend(info.tree.leaves().into_iter().map(|l| l.rev))
                }
                RevSelector::Rev { rev, latest } => {
                    expand(&info, rev, *latest, &mut wanted, &mut unknown)
                }
                RevSelector::Revs { revs, latest } => {
                    for rev in revs {
                        expand(&info, rev, *latest, &mut wanted, &mut unknown)
                    }
                }
            }
            let mut revs = Vec::with_capacity(wanted.len() + unknown.len());
            for rev in &wanted {
                revs.push(open(rev)?);
            }
            revs.extend(unknown.into_iter().map(Err));
            Ok(Some(OpenedDoc { info, revs }))
        })
        .await
    }

    /// Attachment bytes by digest, from the shard holding document `id`.
    pub async fn attachment_data(
        &self,
        db: &str,
        id: &str,
        digest: [u8; 16],
    ) -> Result<Option<Vec<u8>>, ClusterError> {
        let map = self.map(db)?;
        let shard = self.doc_shard(&map, id)?;
        blocking(move || Ok(shard.reader()?.attachment(&digest)?)).await
    }

    /// Trees (and optionally winner bodies) of the given ids, in order.
    pub async fn docs_by_id(
        &self,
        db: &str,
        ids: Vec<String>,
        include_docs: bool,
    ) -> Result<Vec<Option<AllDocsRow>>, ClusterError> {
        let map = self.map(db)?;
        let shards = self.all_shards(&map)?;
        blocking(move || {
            let readers = shards
                .iter()
                .map(|(_, s)| s.reader())
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let reader = &readers[map.range_index(&id)];
                let row = match reader.doc_info(&id)? {
                    Some(info) => {
                        let body = match (include_docs, info.tree.winner()) {
                            (true, Some(w)) if !w.deleted => reader.rev_body(&id, &w.rev)?,
                            _ => None,
                        };
                        Some(AllDocsRow { id, info, body })
                    }
                    None => None,
                };
                out.push(row);
            }
            Ok(out)
        })
        .await
    }

    /// `_all_docs` over every range, merged in id order.
    pub async fn all_docs(&self, db: &str, q: AllDocsQuery) -> Result<AllDocsResult, ClusterError> {
        let map = self.map(db)?;
        let shards = self.all_shards(&map)?;
        blocking(move || {
            let mut range = q.range.clone();
            range.limit = q.range.limit.saturating_add(q.skip);
            let mut rows: Vec<(String, DocInfo, usize)> = Vec::new();
            let mut total = 0;
            let mut offset = 0;
            let readers = shards
                .iter()
                .map(|(_, s)| s.reader())
                .collect::<Result<Vec<_>, _>>()?;
            for (i, reader) in readers.iter().enumerate() {
                total += reader.info()?.doc_count;
                if let Some(start) = &range.start {
                    offset += reader.count_before(start, range.descending)?;
                }
                rows.extend(
                    reader
                        .all_docs(&range)?
                        .into_iter()
                        .map(|(id, info)| (id, info, i)),
                );
            }
            if range.descending {
                rows.sort_by(|a, b| b.0.cmp(&a.0));
            } else {
                rows.sort_by(|a, b| a.0.cmp(&b.0));
            }
            let mut out = Vec::new();
            for (id, info, i) in rows.into_iter().skip(q.skip).take(q.range.limit) {
                let body = match (q.include_docs, info.tree.winner()) {
                    (true, Some(w)) => readers[i].rev_body(&id, &w.rev)?,
                    _ => None,
                };
                out.push(AllDocsRow { id, info, body });
            }
            Ok(AllDocsResult {
                total_rows: total,
                offset: (offset + q.skip as u64).min(total),
                rows: out,
            })
        })
        .await
    }

    /// The current clustered update sequence (for `since=now` and db info).
    pub async fn current_seq(&self, db: &str) -> Result<SeqVector, ClusterError> {
        let map = self.map(db)?;
        let shards = self.all_shards(&map)?;
        let node = self.node.clone();
        point_read(move || {
            let mut v = Vec::new();
            for (range, shard) in &shards {
                let info = shard.reader()?.info()?;
                v.push(seq_entry(&node, range, shard, info.update_seq));
            }
            Ok(SeqVector(v))
        })
        .await
    }

    /// The update-sequence watchers of every shard (for live feeds).
    pub fn watch_db(
        &self,
        db: &str,
    ) -> Result<Vec<tokio::sync::watch::Receiver<u64>>, ClusterError> {
        let map = self.map(db)?;
        Ok(self
            .all_shards(&map)?
            .into_iter()
            .map(|(_, s)| s.watch_seq())
            .collect())
    }

    /// Changes since a position, merged over every range.
    pub async fn changes(&self, db: &str, q: ChangesQuery) -> Result<ChangesResult, ClusterError> {
        let map = self.map(db)?;
        let shards = self.all_shards(&map)?;
        let node = self.node.clone();
        blocking(move || {
            let readers = shards
                .iter()
                .map(|(_, s)| s.reader())
                .collect::<Result<Vec<_>, _>>()?;
            // Starting positions, per range. A descending feed starts at the current
            // end of every range whatever `since` says (fabric_view_changes:get_start_seq)
            // and walks down from there.
            let mut vector: Vec<SeqEntry> = Vec::with_capacity(shards.len());
            for ((range, shard), reader) in shards.iter().zip(&readers) {
                let pos = if q.descending {
                    reader.info()?.update_seq
                } else {
                    q.since.position(range.begin, range.end, shard.uuid())
                };
                vector.push(seq_entry(&node, range, shard, pos));
            }
            let mut rows = Vec::new();
            for (i, reader) in readers.iter().enumerate() {
                if rows.len() >= q.limit {
                    break;
                }
                let since = if q.descending { 0 } else { vector[i].seq };
                let want = q.limit - rows.len();
                let shard_rows = match &q.doc_ids {
                    Some(ids) => {
                        let mut found = Vec::new();
                        for id in ids {
                            if map.range_index(id) != i {
                                continue;
                            }
                            if let Some(info) = reader.doc_info(id)? {
                                if info.seq > since {
                                    let leaves = info.tree.leaves();
                                    let deleted = leaves.first().is_none_or(|l| l.deleted);
                                    found.push(chaise_storage::ChangeRow {
                                        seq: info.seq,
                                        id: id.clone(),
                                        leaves,
                                        deleted,
                                    });
                                }
                            }
                        }
                        found.sort_by_key(|r| r.seq);
                        found.dedup_by(|a, b| a.id == b.id);
                        if q.descending {
                            found.reverse();
                        }
                        found.truncate(want);
                        found
                    }
                    None if q.design_only => reader
                        .changes(since, usize::MAX, q.descending)?
                        .into_iter()
                        .filter(|r| r.id.starts_with("_design/"))
                        .take(want)
                        .collect(),
                    None => reader.changes(since, want, q.descending)?,
                };
                for r in shard_rows {
                    vector[i].seq = r.seq;
                    let (body, info) = if q.include_docs {
                        let info = reader.doc_info(&r.id)?;
                        let body = match r.leaves.first() {
                            Some(w) => reader.rev_body(&r.id, &w.rev)?,
                            None => None,
                        };
                        (body, info)
                    } else {
                        (None, None)
                    };
                    rows.push(ChangesRow {
                        seq: SeqVector(vector.clone()).encode(),
                        id: r.id,
                        leaves: r.leaves,
                        deleted: r.deleted,
                        body,
                        info,
                    });
                }
            }
            let mut pending = 0;
            if q.doc_ids.is_none() {
                if q.descending {
                    // Each range was walked down from its top: what is left is every
                    // change not returned.
                    let mut total = 0;
                    for reader in &readers {
                        total += reader.count_changes_after(0)?;
                    }
                    pending = total.saturating_sub(rows.len() as u64);
                } else {
                    for (i, reader) in readers.iter().enumerate() {
                        pending += reader.count_changes_after(vector[i].seq)?;
                    }
                }
            }
            if !q.descending && rows.len() < q.limit {
                // Everything was seen: the feed ends at the current end of every range.
                for (i, reader) in readers.iter().enumerate() {
                    vector[i].seq = vector[i].seq.max(reader.info()?.update_seq);
                }
            }
            Ok(ChangesResult {
                rows,
                last_seq: SeqVector(vector).encode(),
                pending,
            })
        })
        .await
    }

    /// `_revs_diff`: for each id, the requested revisions the database lacks.
    pub async fn revs_diff(
        &self,
        db: &str,
        request: Vec<(String, Vec<Rev>)>,
    ) -> Result<Vec<(String, RevsDiff)>, ClusterError> {
        let map = self.map(db)?;
        let shards = self.all_shards(&map)?;
        blocking(move || {
            let readers = shards
                .iter()
                .map(|(_, s)| s.reader())
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::new();
            for (id, revs) in request {
                let info = readers[map.range_index(&id)].doc_info(&id)?;
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
        })
        .await
    }

    /// Purges leaf revisions; returns what was purged per id.
    pub async fn purge(
        &self,
        db: &str,
        request: Vec<(String, Vec<Rev>)>,
    ) -> Result<Vec<(String, Vec<Rev>)>, ClusterError> {
        let map = self.map(db)?;
        let mut per_range: Vec<Vec<(String, Vec<Rev>)>> = vec![Vec::new(); map.q()];
        let order: Vec<String> = request.iter().map(|(id, _)| id.clone()).collect();
        for (id, revs) in request {
            per_range[map.range_index(&id)].push((id, revs));
        }
        let mut purged = std::collections::HashMap::new();
        for (r, reqs) in per_range.into_iter().enumerate() {
            if reqs.is_empty() {
                continue;
            }
            let shard = self.shard(&map, &map.ranges[r])?;
            for (id, revs) in shard.purge(reqs).await? {
                purged.insert(id, revs);
            }
        }
        Ok(order
            .into_iter()
            .map(|id| {
                let revs = purged.remove(&id).unwrap_or_default();
                (id, revs)
            })
            .collect())
    }

    /// The purge log of every range, oldest first per range.
    pub async fn purged_infos(&self, db: &str) -> Result<Vec<PurgeInfo>, ClusterError> {
        let map = self.map(db)?;
        let shards = self.all_shards(&map)?;
        blocking(move || {
            let mut out = Vec::new();
            for (_, s) in &shards {
                out.extend(s.reader()?.purged_infos(0)?.into_iter().map(|(_, p)| p));
            }
            Ok(out)
        })
        .await
    }

    /// A `_local` document.
    pub async fn get_local(&self, db: &str, id: &str) -> Result<Option<LocalDoc>, ClusterError> {
        let map = self.map(db)?;
        let shard = self.doc_shard(&map, id)?;
        let id = id.to_string();
        point_read(move || Ok(shard.reader()?.local_doc(&id)?)).await
    }

    /// Writes or (with `body` None) deletes a `_local` document.
    pub async fn write_local(
        &self,
        db: &str,
        id: &str,
        rev: Option<u64>,
        body: Option<Vec<u8>>,
    ) -> Result<Result<u64, DocError>, ClusterError> {
        let map = self.map(db)?;
        let shard = self.doc_shard(&map, id)?;
        Ok(shard.write_local(id.to_string(), rev, body).await?)
    }

    /// `_local` documents of every range merged in id order.
    pub async fn local_docs(
        &self,
        db: &str,
        range: AllDocsRange,
        skip: usize,
    ) -> Result<Vec<(String, LocalDoc)>, ClusterError> {
        let map = self.map(db)?;
        let shards = self.all_shards(&map)?;
        blocking(move || {
            let mut r = range.clone();
            r.limit = range.limit.saturating_add(skip);
            let mut rows = Vec::new();
            for (_, s) in &shards {
                rows.extend(s.reader()?.local_docs(&r)?);
            }
            if range.descending {
                rows.sort_by(|a, b| b.0.cmp(&a.0));
            } else {
                rows.sort_by(|a, b| a.0.cmp(&b.0));
            }
            Ok(rows.into_iter().skip(skip).take(range.limit).collect())
        })
        .await
    }

    /// A database-wide setting as stored in the first range (all ranges agree).
    pub async fn get_db_meta(
        &self,
        db: &str,
        key: &'static str,
    ) -> Result<Option<Vec<u8>>, ClusterError> {
        let map = self.map(db)?;
        let shard = self.shard(&map, &map.ranges[0])?;
        point_read(move || Ok(shard.reader()?.meta(key)?)).await
    }

    /// Sets a database-wide setting on every range.
    pub async fn set_db_meta(
        &self,
        db: &str,
        key: &'static str,
        value: Vec<u8>,
    ) -> Result<(), ClusterError> {
        let map = self.map(db)?;
        for (_, shard) in self.all_shards(&map)? {
            shard.set_meta(key, value.clone()).await?;
        }
        Ok(())
    }

    /// Compacts every range.
    pub async fn compact(&self, db: &str) -> Result<(), ClusterError> {
        let map = self.map(db)?;
        for (_, shard) in self.all_shards(&map)? {
            shard.compact().await?;
        }
        Ok(())
    }

    /// Counters and sequences of a database.
    pub async fn db_info(&self, db: &str) -> Result<DbInfo, ClusterError> {
        let map = self.map(db)?;
        let shards = self.all_shards(&map)?;
        let node = self.node.clone();
        point_read(move || {
            let mut totals = ShardInfo::default();
            let mut seqs = Vec::new();
            let mut purge_seqs = Vec::new();
            for (range, shard) in &shards {
                let i = shard.reader()?.info()?;
                totals.doc_count += i.doc_count;
                totals.doc_del_count += i.doc_del_count;
                totals.update_seq += i.update_seq;
                totals.purge_seq += i.purge_seq;
                totals.file_size += i.file_size;
                totals.external_size += i.external_size;
                totals.active_size += i.active_size;
                seqs.push(seq_entry(&node, range, shard, i.update_seq));
                purge_seqs.push(seq_entry(&node, range, shard, i.purge_seq));
            }
            Ok(DbInfo {
                name: map.db.clone(),
                totals,
                update_seq: SeqVector(seqs).encode(),
                purge_seq: SeqVector(purge_seqs).encode(),
                q: map.q(),
                n: map.n,
                props: map.props.clone(),
            })
        })
        .await
    }
}

fn seq_entry(node: &str, range: &ShardRange, shard: &Shard, seq: u64) -> SeqEntry {
    SeqEntry {
        node: node.to_string(),
        begin: range.begin,
        end: range.end,
        seq,
        uuid: shard.uuid().chars().take(UUID_PREFIX_LEN).collect(),
    }
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
