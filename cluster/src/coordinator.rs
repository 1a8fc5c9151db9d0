//! The coordinator: every database and document operation the HTTP layer needs,
//! routed to shard copies and merged into one answer.

use crate::fabric::client::FabricClients;
use crate::fabric::op::{execute, LocalScan, ShardOp, ShardReply};
use crate::fabric::pb::ShardRef;
use crate::fabric::server::{FabricService, ShardHandler};
use crate::local_shards::LocalShards;
use crate::quorum;
use crate::raft::{Member, MetaCommand, MetaReply, Metadata};
use crate::scan::{AllDocsCursor, ChangesCursor, ScanSource, SCAN_AHEAD};
use crate::seq::{SeqEntry, SeqVector, UUID_PREFIX_LEN};
use crate::shard_map::{doc_hash, ShardMap, ShardRange};
use crate::ClusterError;
use chaise_storage::{
    AllDocsRange, AttachmentInfo, DocError, DocInfo, DocUpdate, EditKind, Leaf, LocalDoc,
    NewAttachment, PurgeInfo, Rev, RevBody, ShardInfo, UpdateResult,
};
use serde_json::{Map, Value};
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

/// What a node needs to know to open its coordinator.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Data directory.
    pub data_dir: std::path::PathBuf,
    /// Node name, `name@host`.
    pub node: String,
    /// Where other nodes reach this node's fabric (`host:port`).
    pub fabric_addr: String,
    /// Where clients reach this node's HTTP API (`host:port`).
    pub http_addr: String,
    /// The cluster secret (node-to-node authentication).
    pub secret: String,
    /// TLS for node-to-node calls, if configured.
    pub tls: Option<crate::fabric::FabricTls>,
    /// Default shard ranges per new database.
    pub q: u32,
    /// Default copies per range.
    pub n: usize,
}

/// The request coordinator of one node.
pub struct Coordinator {
    node: String,
    meta: Metadata,
    shards: Arc<LocalShards>,
    clients: Arc<FabricClients>,
    secret: Arc<RwLock<String>>,
    defaults: RwLock<(u32, usize)>,
    /// Ranges whose copies missed a write and should be synced soon.
    sync_wanted: tokio::sync::Notify,
    /// Raised when the node stops: live feeds end.
    feeds_stop: tokio::sync::watch::Sender<bool>,
}

/// Where a shard operation runs.
fn shard_ref(map: &ShardMap, range: &ShardRange) -> ShardRef {
    ShardRef {
        db: map.db.clone(),
        range_begin: range.begin,
        range_end: range.end,
        suffix: map.suffix.clone(),
    }
}

fn unexpected(reply: ShardReply) -> ClusterError {
    ClusterError::Internal(format!(
        "unexpected shard reply {:?}",
        std::mem::discriminant(&reply)
    ))
}

/// Orders two opened documents by their winners, as CouchDB's winner rule does.
fn winner_key(doc: &Option<OpenedDoc>) -> Option<(bool, u64, String)> {
    let w = doc.as_ref()?.info.tree.winner()?;
    Some((!w.deleted, w.rev.pos, w.rev.id))
}

impl Coordinator {
    /// Opens the node's metadata (Raft) and shard files.
    pub async fn open(config: NodeConfig) -> Result<Arc<Self>, ClusterError> {
        let shards = Arc::new(LocalShards::new(&config.data_dir));
        let clients = Arc::new(FabricClients::new(&config.node, &config.secret, config.tls));
        let meta = Metadata::open(
            &config.data_dir,
            &config.node,
            &config.fabric_addr,
            Some(config.http_addr),
            shards.clone(),
            clients.clone(),
        )
        .await?;
        Ok(Arc::new(Coordinator {
            node: config.node,
            meta,
            shards,
            clients,
            secret: Arc::new(RwLock::new(config.secret)),
            defaults: RwLock::new((config.q.max(1), config.n.max(1))),
            sync_wanted: tokio::sync::Notify::new(),
            feeds_stop: tokio::sync::watch::Sender::new(false),
        }))
    }

    /// The fabric service answering other nodes with this node's Raft and shards.
    pub fn fabric_service(self: &Arc<Self>) -> FabricService {
        FabricService::new(self.meta.raft().clone(), self.secret.clone(), self.clone())
    }

    /// Changes the cluster secret (node-to-node authentication).
    pub fn set_secret(&self, secret: &str) {
        if let Ok(mut s) = self.secret.write() {
            *s = secret.to_string();
        }
        self.clients.set_secret(secret);
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

    /// Members of the cluster (node names, sorted).
    pub fn cluster_nodes(&self) -> Vec<String> {
        self.meta.members().into_iter().map(|m| m.name).collect()
    }

    /// Members this node can reach now (itself included), sorted.
    pub async fn connected_nodes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in self.meta.members() {
            if m.name == self.node
                || self
                    .clients
                    .raft(&m.fabric, "ping", Vec::new())
                    .await
                    .is_ok()
            {
                out.push(m.name);
            }
        }
        out
    }

    /// Whether this node is in a cluster with other nodes or has metadata yet.
    pub async fn is_initialized(&self) -> bool {
        self.meta.is_initialized().await
    }

    /// Adds the node whose fabric listens at `fabric_addr` to the cluster. It must
    /// be a fresh node (no cluster metadata); `expected_name`, if given, must be
    /// its name. Returns its name.
    pub async fn add_node(
        &self,
        fabric_addr: &str,
        expected_name: Option<&str>,
    ) -> Result<String, ClusterError> {
        let status = self
            .clients
            .raft(fabric_addr, "status", Vec::new())
            .await
            .map_err(|e| {
                ClusterError::BadRequest(format!(
                    "Add node failed. Invalid Host and/or Port. ({e})"
                ))
            })?;
        let status: NodeStatus =
            serde_json::from_slice(&status).map_err(|e| ClusterError::Meta(e.to_string()))?;
        if let Some(name) = expected_name {
            if status.name != name {
                return Err(ClusterError::BadRequest(format!(
                    "Add node failed. The node at {fabric_addr} is named {}, not {name}.",
                    status.name
                )));
            }
        }
        if self.cluster_nodes().contains(&status.name) {
            return Ok(status.name);
        }
        if status.initialized {
            return Err(ClusterError::BadRequest(
                "Add node failed. The node already belongs to a cluster or holds databases.".into(),
            ));
        }
        self.meta
            .add_member(&Member {
                name: status.name.clone(),
                fabric: fabric_addr.to_string(),
                http: status.http,
            })
            .await?;
        Ok(status.name)
    }

    /// Removes a node from the cluster. Its shard copies stay in the shard maps
    /// (and are skipped while unreachable) until shards are moved, as in CouchDB.
    pub async fn remove_node(&self, name: &str) -> Result<(), ClusterError> {
        if name == self.node {
            return Err(ClusterError::BadRequest(
                "A node cannot remove itself".into(),
            ));
        }
        self.meta.remove_member(name).await
    }

    /// What this node tells a node that wants to add it.
    pub async fn status(&self) -> NodeStatus {
        NodeStatus {
            name: self.node.clone(),
            initialized: self.meta.is_initialized().await,
            http: self.meta.own_http(),
        }
    }

    /// Whether this node has caught up with the cluster metadata (for `/_up`).
    pub async fn readiness(&self) -> crate::raft::Readiness {
        self.meta.readiness().await
    }

    /// The HTTP address of a member, for requests addressed to `/_node/{name}/...`.
    pub fn http_addr_of(&self, node: &str) -> Option<String> {
        self.meta
            .members()
            .into_iter()
            .find(|m| m.name == node)?
            .http
    }

    /// Stops Raft and closes every shard after its queued writes (at shutdown).
    pub async fn shutdown(&self) {
        self.meta.shutdown().await;
        self.shards.close_all();
    }

    pub(crate) fn map(&self, db: &str) -> Result<Arc<ShardMap>, ClusterError> {
        self.meta
            .state()
            .dbs
            .get(db)
            .cloned()
            .ok_or(ClusterError::NoDb)
    }

    fn addr_of(&self, node: &str) -> Result<String, ClusterError> {
        self.meta
            .members()
            .into_iter()
            .find(|m| m.name == node)
            .map(|m| m.fabric)
            .ok_or_else(|| ClusterError::Internal(format!("unknown node {node}")))
    }

    /// Runs one operation on the copy of `range` held by `node`.
    pub(crate) async fn call(
        &self,
        map: &ShardMap,
        range: &ShardRange,
        node: &str,
        op: ShardOp,
    ) -> Result<ShardReply, ClusterError> {
        if node == self.node {
            let shard = self.shards.get(map, range, false)?;
            let writes = writes_docs(&op);
            let reply = execute(&shard, op).await;
            if writes && reply.is_ok() {
                self.shards.db_updates.note_updated(&map.db);
            }
            return reply;
        }
        let addr = self.addr_of(node)?;
        let bytes = postcard::to_stdvec(&op).map_err(|e| ClusterError::Internal(e.to_string()))?;
        let reply = self
            .clients
            .shard(&addr, shard_ref(map, range), bytes)
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        decode_reply(&reply)
    }

    /// Starts a streamed read (changes, all_docs) on the copy of `range` held by
    /// `node`: a local copy is read a batch at a time as the reader asks; a remote
    /// one streams its batches, at most [`SCAN_AHEAD`] ahead of the reader.
    pub(crate) async fn open_scan(
        &self,
        map: &ShardMap,
        range: &ShardRange,
        node: &str,
        op: ShardOp,
    ) -> Result<ScanSource, ClusterError> {
        if node == self.node {
            let shard = self.shards.get(map, range, false)?;
            return Ok(ScanSource::Local(LocalScan::new(shard, op)));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(SCAN_AHEAD);
        let addr = self.addr_of(node)?;
        let bytes = postcard::to_stdvec(&op).map_err(|e| ClusterError::Internal(e.to_string()))?;
        let mut stream = self
            .clients
            .shard_stream(&addr, shard_ref(map, range), bytes)
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        tokio::spawn(async move {
            loop {
                let reply = match stream.message().await {
                    Ok(Some(msg)) => decode_reply(&msg.reply),
                    Ok(None) => return,
                    Err(status) => Err(ClusterError::Unavailable(
                        FabricClients::status_error(&addr, status).to_string(),
                    )),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(ScanSource::Remote(rx))
    }

    /// [`Coordinator::open_scan`] on one copy of `range`: this node's if it has
    /// one, else the first other copy that answers.
    pub(crate) async fn open_scan_any(
        &self,
        map: &ShardMap,
        range: &ShardRange,
        op: ShardOp,
    ) -> Result<ScanSource, ClusterError> {
        let mut last = ClusterError::Unavailable(format!("no copy of {} {}", map.db, range.name()));
        for node in self.copies(range) {
            match self.open_scan(map, range, &node, op.clone()).await {
                Ok(rx) => return Ok(rx),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Copies of a range, this node's first.
    pub(crate) fn copies(&self, range: &ShardRange) -> Vec<String> {
        let mut nodes = range.nodes.clone();
        nodes.sort_by_key(|n| n != &self.node);
        nodes
    }

    /// Runs a read on one copy of a range: this node's if it has one, else the
    /// first other copy that answers. `prefer` names a copy to try first.
    async fn call_one(
        &self,
        map: &ShardMap,
        range: &ShardRange,
        op: ShardOp,
        prefer: Option<&str>,
    ) -> Result<(String, ShardReply), ClusterError> {
        let mut nodes = self.copies(range);
        if let Some(p) = prefer {
            nodes.sort_by_key(|n| n != p);
        }
        let mut last = ClusterError::Unavailable(format!("no copy of {} {}", map.db, range.name()));
        for node in nodes {
            match self.call(map, range, &node, op.clone()).await {
                Ok(r) => return Ok((node, r)),
                Err(e) => {
                    tracing::debug!(db = %map.db, range = %range.name(), %node, error = %e, "copy failed, trying another");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Runs an operation on every copy of a range at once and returns the answers
    /// as they arrive, stopping after `enough` successes (the rest keep running).
    async fn call_all(
        self: &Arc<Self>,
        map: &ShardMap,
        range: &ShardRange,
        op: ShardOp,
        enough: impl Fn(&[(String, ShardReply)]) -> bool,
    ) -> (Vec<(String, ShardReply)>, Vec<(String, ClusterError)>) {
        self.call_nodes(map, range, self.copies(range), op, enough)
            .await
    }

    /// [`Coordinator::call_all`] on the given copies only.
    async fn call_nodes(
        self: &Arc<Self>,
        map: &ShardMap,
        range: &ShardRange,
        nodes: Vec<String>,
        op: ShardOp,
        enough: impl Fn(&[(String, ShardReply)]) -> bool,
    ) -> (Vec<(String, ShardReply)>, Vec<(String, ClusterError)>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(nodes.len().max(1));
        for node in nodes.iter().cloned() {
            let me = self.clone();
            let (map, range, op, tx) = (map.clone(), range.clone(), op.clone(), tx.clone());
            tokio::spawn(async move {
                let r = me.call(&map, &range, &node, op).await;
                if r.is_err() {
                    // A copy missed this call (maybe a write): internal replication
                    // catches it up as soon as it can.
                    me.sync_wanted.notify_one();
                }
                let _ = tx.send((node, r)).await;
            });
        }
        drop(tx);
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        while let Some((node, r)) = rx.recv().await {
            match r {
                Ok(reply) => ok.push((node, reply)),
                Err(e) => failed.push((node, e)),
            }
            if enough(&ok) {
                break;
            }
        }
        (ok, failed)
    }

    /// One copy per range, in range order.
    async fn each_range(
        &self,
        map: &ShardMap,
        op: impl Fn(&ShardRange) -> ShardOp,
    ) -> Result<Vec<(String, ShardReply)>, ClusterError> {
        let mut out = Vec::with_capacity(map.ranges.len());
        for range in &map.ranges {
            out.push(self.call_one(map, range, op(range), None).await?);
        }
        Ok(out)
    }

    /// The shard map of a database.
    pub fn shard_map(&self, db: &str) -> Option<Arc<ShardMap>> {
        self.meta.state().dbs.get(db).cloned()
    }

    /// Whether a database exists.
    pub fn db_exists(&self, db: &str) -> bool {
        self.meta.state().dbs.contains_key(db)
    }

    /// All database names, sorted.
    pub fn all_dbs(&self) -> Vec<String> {
        self.meta.state().dbs.keys().cloned().collect()
    }

    /// Creates a database: its shard map (copies placed on the ring of members) is
    /// written through Raft; every owner creates its files when it applies it.
    /// Returns whether every copy exists when this returns.
    pub async fn create_db(
        &self,
        name: &str,
        q: Option<u32>,
        n: Option<usize>,
        props: Map<String, Value>,
        security: Vec<u8>,
    ) -> Result<bool, ClusterError> {
        if self.db_exists(name) {
            return Err(ClusterError::DbExists);
        }
        self.meta.ensure_initialized().await?;
        let (dq, dn) = self.defaults.read().map(|d| *d).unwrap_or((2, 3));
        let nodes = self.cluster_nodes();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut map = ShardMap::new(name, q.unwrap_or(dq), &[], format!(".{secs}"), props);
        let names: Vec<String> = map.ranges.iter().map(|r| r.name()).collect();
        let placement = crate::ring::place(&nodes, name, &names, n.unwrap_or(dn));
        for (range, copies) in map.ranges.iter_mut().zip(placement) {
            range.nodes = copies;
        }
        map.n = map.ranges.first().map_or(1, |r| r.nodes.len());
        match self
            .meta
            .write(MetaCommand::CreateDb {
                map: map.clone(),
                security,
            })
            .await?
        {
            MetaReply::Ok => Ok(self.wait_for_copies(&map).await),
            MetaReply::DbExists => Err(ClusterError::DbExists),
            MetaReply::NoDb => Err(ClusterError::NoDb),
        }
    }

    /// Waits (briefly) until every owner has applied a new database and opened
    /// its copies. Returns whether all did: CouchDB answers 202 otherwise.
    async fn wait_for_copies(&self, map: &ShardMap) -> bool {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut complete = true;
        for range in &map.ranges {
            for node in &range.nodes {
                loop {
                    match self.call(map, range, node, ShardOp::Info).await {
                        Ok(_) => break,
                        // A node that is down will catch up when it returns.
                        Err(ClusterError::Unavailable(_)) => {
                            complete = false;
                            break;
                        }
                        Err(_) if tokio::time::Instant::now() >= deadline => return false,
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                    }
                }
            }
        }
        complete
    }

    /// Deletes a database; every owner deletes its files when it applies this.
    pub async fn delete_db(&self, name: &str) -> Result<(), ClusterError> {
        self.map(name)?;
        match self
            .meta
            .write(MetaCommand::DeleteDb(name.to_string()))
            .await?
        {
            MetaReply::Ok => Ok(()),
            MetaReply::NoDb => Err(ClusterError::NoDb),
            MetaReply::DbExists => Err(ClusterError::DbExists),
        }
    }

    /// Writes documents to every copy; one result per update, in order. A result is
    /// `accepted` (HTTP 202) when fewer than `w` copies wrote it.
    pub async fn update_docs(
        self: &Arc<Self>,
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
            let me = self.clone();
            let map = map.clone();
            tasks.push(tokio::spawn(async move {
                let range = &map.ranges[r];
                let res = me.write_range(&map, range, batch, w).await;
                (idx, res)
            }));
        }
        for task in tasks {
            let (idx, results) = task.await?;
            for (i, result) in idx.into_iter().zip(results?) {
                out[i] = Some(result);
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

    /// Writes a batch to every copy of one range and counts acknowledgements.
    async fn write_range(
        self: &Arc<Self>,
        map: &ShardMap,
        range: &ShardRange,
        batch: Vec<DocUpdate>,
        w: Option<usize>,
    ) -> Result<Vec<DocWriteResult>, ClusterError> {
        let w = quorum::effective(w, range.nodes.len());
        let n_docs = batch.len();
        let (ok, failed) = self
            .call_all(map, range, ShardOp::UpdateDocs(batch), |ok| ok.len() >= w)
            .await;
        let replies: Vec<Vec<UpdateResult>> = ok
            .into_iter()
            .filter_map(|(_, r)| match r {
                ShardReply::Updated(v) if v.len() == n_docs => Some(v),
                _ => None,
            })
            .collect();
        if replies.is_empty() {
            let reason = failed
                .first()
                .map(|(n, e)| format!("{n}: {e}"))
                .unwrap_or_else(|| "no copy answered".into());
            return Err(ClusterError::Unavailable(reason));
        }
        Ok((0..n_docs)
            .map(|i| {
                let oks: Vec<&Rev> = replies.iter().filter_map(|r| r[i].as_ref().ok()).collect();
                match oks.first() {
                    Some(rev) => DocWriteResult {
                        result: Ok((*rev).clone()),
                        accepted: !quorum::write_complete(
                            oks.iter().filter(|r| r == &rev).count(),
                            w,
                        ),
                    },
                    None => DocWriteResult {
                        result: replies[0][i].clone(),
                        accepted: false,
                    },
                }
            })
            .collect())
    }

    /// Opens a document and the selected revisions from `r` copies; the best answer
    /// wins and copies that disagree are repaired. `None` if the id is unknown.
    pub async fn open_doc(
        self: &Arc<Self>,
        db: &str,
        id: &str,
        sel: RevSelector,
    ) -> Result<Option<OpenedDoc>, ClusterError> {
        self.open_doc_r(db, id, sel, None).await
    }

    /// `open_doc` with an explicit read quorum.
    pub async fn open_doc_r(
        self: &Arc<Self>,
        db: &str,
        id: &str,
        sel: RevSelector,
        r: Option<usize>,
    ) -> Result<Option<OpenedDoc>, ClusterError> {
        let map = self.map(db)?;
        let range = &map.ranges[map.range_index(id)];
        let op = ShardOp::OpenDoc {
            id: id.to_string(),
            sel: sel.clone(),
        };
        if range.nodes.len() == 1 {
            return match self.call_one(&map, range, op, None).await?.1 {
                ShardReply::Doc(d) => Ok(d),
                other => Err(unexpected(other)),
            };
        }
        let r = quorum::effective(r, range.nodes.len());
        // Ask `r` copies (this node's first); only if some fail, ask the others.
        // Copies the read does not see are kept equal by internal replication.
        let mut nodes = self.copies(range);
        let rest = nodes.split_off(r.min(nodes.len()));
        let (mut ok, mut failed) = self
            .call_nodes(&map, range, nodes, op.clone(), |ok| ok.len() >= r)
            .await;
        if ok.len() < r && !rest.is_empty() {
            let want = r - ok.len();
            let (more, more_failed) = self
                .call_nodes(&map, range, rest, op, |ok| ok.len() >= want)
                .await;
            ok.extend(more);
            failed.extend(more_failed);
        }
        let mut docs: Vec<Option<OpenedDoc>> = Vec::with_capacity(ok.len());
        for (_, reply) in ok {
            match reply {
                ShardReply::Doc(d) => docs.push(d),
                other => return Err(unexpected(other)),
            }
        }
        if docs.is_empty() {
            let reason = failed
                .first()
                .map(|(n, e)| format!("{n}: {e}"))
                .unwrap_or_default();
            return Err(ClusterError::Unavailable(reason));
        }
        let agree = docs
            .iter()
            .all(|d| d.as_ref().map(|d| &d.info.tree) == docs[0].as_ref().map(|d| &d.info.tree));
        if !agree {
            let me = self.clone();
            let (db, id) = (db.to_string(), id.to_string());
            tokio::spawn(async move {
                if let Err(e) = me.repair_doc(&db, &id).await {
                    tracing::warn!(%db, %id, error = %e, "read repair failed");
                }
            });
        }
        let best = docs.iter().max_by_key(|d| winner_key(d)).cloned().flatten();
        Ok(match (sel, best) {
            (RevSelector::AllLeaves | RevSelector::Revs { .. }, Some(mut best)) => {
                // Every leaf any copy knows, with a body from whoever has one.
                for d in docs.iter().flatten() {
                    for rev in d.revs.iter().flatten() {
                        let known = best.revs.iter().any(|r| match r {
                            Ok(o) => o.rev == rev.rev,
                            Err(_) => false,
                        });
                        if !known {
                            best.revs.retain(|r| r.as_ref().err() != Some(&rev.rev));
                            best.revs.push(Ok(rev.clone()));
                        }
                    }
                }
                Some(best)
            }
            (_, best) => best,
        })
    }

    /// Makes every copy of a document hold every revision any copy holds.
    pub async fn repair_doc(self: &Arc<Self>, db: &str, id: &str) -> Result<(), ClusterError> {
        let map = self.map(db)?;
        let range = map.ranges[map.range_index(id)].clone();
        let op = ShardOp::OpenDoc {
            id: id.to_string(),
            sel: RevSelector::AllLeaves,
        };
        let (ok, _) = self.call_all(&map, &range, op, |_| false).await;
        let copies: Vec<(String, Option<OpenedDoc>)> = ok
            .into_iter()
            .filter_map(|(n, r)| match r {
                ShardReply::Doc(d) => Some((n, d)),
                _ => None,
            })
            .collect();
        for (source, doc) in &copies {
            let Some(doc) = doc else { continue };
            for (target, other) in &copies {
                if target == source {
                    continue;
                }
                let missing: Vec<&OpenedRev> = doc
                    .revs
                    .iter()
                    .flatten()
                    .filter(|r| !other.as_ref().is_some_and(|o| o.info.tree.contains(&r.rev)))
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                let copy = Copy { source, target };
                let updates = self
                    .replica_updates(&map, &range, copy, id, &doc.info, &missing)
                    .await?;
                self.call(&map, &range, target, ShardOp::UpdateDocs(updates))
                    .await?;
            }
        }
        Ok(())
    }

    /// Replicated-edit updates that carry `revs` of a document (with their paths,
    /// bodies and attachment data) from the copy on `source`.
    async fn replica_updates(
        &self,
        map: &ShardMap,
        range: &ShardRange,
        copy: Copy<'_>,
        id: &str,
        info: &DocInfo,
        revs: &[&OpenedRev],
    ) -> Result<Vec<DocUpdate>, ClusterError> {
        let mut updates = Vec::with_capacity(revs.len());
        for rev in revs {
            let ids: Vec<String> = info
                .tree
                .path_to(&rev.rev)
                .unwrap_or_default()
                .into_iter()
                .map(|(r, _)| r.id)
                .collect();
            let body = rev.body.clone().unwrap_or_else(|| RevBody {
                body: b"{}".to_vec(),
                attachments: Vec::new(),
            });
            let mut attachments = Vec::with_capacity(body.attachments.len());
            for att in body.attachments {
                attachments.extend(self.copy_attachment(map, range, copy, att).await?);
            }
            updates.push(DocUpdate {
                id: id.to_string(),
                kind: EditKind::Replicated {
                    pos: rev.rev.pos,
                    ids,
                },
                deleted: rev.deleted,
                body: body.body,
                attachments,
            });
        }
        Ok(updates)
    }

    /// An attachment of a revision being copied between two copies of a range: a
    /// stub when the target holds its data already, else its data streamed from
    /// the source into an upload on the target, a piece at a time, so no node
    /// holds a large attachment whole. `None` if the source lost the data.
    async fn copy_attachment(
        &self,
        map: &ShardMap,
        range: &ShardRange,
        copy: Copy<'_>,
        info: AttachmentInfo,
    ) -> Result<Option<NewAttachment>, ClusterError> {
        let probe = ShardOp::AttachmentRange {
            digest: info.digest,
            offset: 0,
            len: 0,
        };
        let target_has = self.call(map, range, copy.target, probe).await?;
        if matches!(target_has, ShardReply::Bytes(Some(_))) {
            return Ok(Some(NewAttachment::Stub {
                name: info.name.clone(),
                info: Some(info),
            }));
        }
        let index = map
            .ranges
            .iter()
            .position(|r| r == range)
            .ok_or_else(|| ClusterError::Internal("range not in its map".into()))?;
        let target = vec![copy.target.to_string()];
        let mut up = self
            .upload_begin_on(Arc::new(map.clone()), index, target)
            .await?;
        let stored = info.encoded_length.unwrap_or(info.length);
        let mut offset = 0u64;
        while offset < stored {
            let op = ShardOp::AttachmentRange {
                digest: info.digest,
                offset,
                len: COPY_PIECE,
            };
            let piece = match self.call(map, range, copy.source, op).await {
                Ok(ShardReply::Bytes(Some(piece))) if !piece.is_empty() => piece,
                other => {
                    self.upload_abort(&up).await;
                    return other.map(|_| None);
                }
            };
            offset += piece.len() as u64;
            self.upload_append(&mut up, &piece).await?;
        }
        let staged = self.upload_finish(&mut up).await?;
        if staged.digest == info.digest {
            let upload = up.id();
            return Ok(Some(NewAttachment::Staged { info, upload }));
        }
        // Data stored under a digest that is not its MD5 (kept as a replicator
        // sent it): copied as it is, whole.
        self.upload_abort(&up).await;
        match self
            .call(
                map,
                range,
                copy.source,
                ShardOp::AttachmentData(info.digest),
            )
            .await?
        {
            ShardReply::Bytes(Some(data)) => Ok(Some(NewAttachment::Replica { info, data })),
            _ => Ok(None),
        }
    }

    /// Pushes to `target` every revision its copy of `range` lacks, from this
    /// node's copy, starting at the last checkpoint. Returns how many revisions
    /// were sent.
    pub async fn sync_range(
        &self,
        map: &ShardMap,
        range: &ShardRange,
        target: &str,
    ) -> Result<usize, ClusterError> {
        let local = self.shards.get(map, range, false)?;
        let checkpoint_id = format!("_local/shard-sync-{}", hex::encode(target.as_bytes()));
        let checkpoint = local.reader()?.local_doc(&checkpoint_id)?;
        let (mut since, mut cp_rev) = match &checkpoint {
            Some(doc) => {
                let v: Value = serde_json::from_slice(&doc.body).unwrap_or(Value::Null);
                let same_file = v["source_uuid"].as_str() == Some(local.uuid());
                (
                    if same_file {
                        v["seq"].as_u64().unwrap_or(0)
                    } else {
                        0
                    },
                    Some(doc.rev),
                )
            }
            None => (0, None),
        };
        let mut sent = 0;
        loop {
            let rows = local.reader()?.changes(since, 500, false)?;
            if rows.is_empty() {
                return Ok(sent);
            }
            let last = rows.last().map_or(since, |r| r.seq);
            let request: Vec<(String, Vec<Rev>)> = rows
                .iter()
                .map(|r| {
                    (
                        r.id.clone(),
                        r.leaves.iter().map(|l| l.rev.clone()).collect(),
                    )
                })
                .collect();
            let missing = match self
                .call(map, range, target, ShardOp::RevsDiff(request))
                .await?
            {
                ShardReply::RevsDiff(m) => m,
                other => return Err(unexpected(other)),
            };
            let mut updates = Vec::new();
            for (id, diff) in missing {
                let opened = execute(
                    &local,
                    ShardOp::OpenDoc {
                        id: id.clone(),
                        sel: RevSelector::Revs {
                            revs: diff.missing.clone(),
                            latest: false,
                        },
                    },
                )
                .await?;
                let ShardReply::Doc(Some(doc)) = opened else {
                    continue;
                };
                let revs: Vec<&OpenedRev> = doc.revs.iter().flatten().collect();
                let copy = Copy {
                    source: &self.node,
                    target,
                };
                updates.extend(
                    self.replica_updates(map, range, copy, &id, &doc.info, &revs)
                        .await?,
                );
            }
            if !updates.is_empty() {
                sent += updates.len();
                match self
                    .call(map, range, target, ShardOp::UpdateDocs(updates))
                    .await?
                {
                    ShardReply::Updated(results) => {
                        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                            tracing::warn!(db = %map.db, %target, error = %e, "internal replication refused a revision");
                        }
                    }
                    other => return Err(unexpected(other)),
                }
            }
            since = last;
            let body = serde_json::to_vec(&serde_json::json!({
                "seq": since,
                "source_uuid": local.uuid(),
                "target_node": target,
            }))
            .map_err(|e| ClusterError::Internal(e.to_string()))?;
            cp_rev = local
                .write_local(checkpoint_id.clone(), cp_rev, Some(body))
                .await?
                .ok();
        }
    }

    /// Pushes missing revisions from every local shard copy to its peer copies.
    pub async fn sync_all(&self) -> usize {
        let dbs: Vec<Arc<ShardMap>> = self.meta.state().dbs.values().cloned().collect();
        let mut sent = 0;
        for map in dbs {
            for range in map.ranges.iter().filter(|r| r.nodes.contains(&self.node)) {
                for target in range.nodes.iter().filter(|n| *n != &self.node) {
                    match self.sync_range(&map, range, target).await {
                        Ok(n) => sent += n,
                        Err(e) => {
                            tracing::debug!(db = %map.db, range = %range.name(), %target, error = %e, "shard sync postponed")
                        }
                    }
                }
            }
        }
        sent
    }

    /// Internal replication, forever: after writes that missed a copy and every
    /// few seconds, every local copy pushes what its peers lack.
    pub async fn run_internal_replication(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                self.sync_wanted.notified(),
            )
            .await;
            if self.cluster_nodes().len() > 1 {
                let sent = self.sync_all().await;
                if sent > 0 {
                    tracing::info!(
                        revisions = sent,
                        "internal replication caught up peer copies"
                    );
                }
            }
        }
    }

    /// Attachment bytes by digest, from a copy of the shard holding document `id`.
    pub async fn attachment_data(
        &self,
        db: &str,
        id: &str,
        digest: [u8; 16],
    ) -> Result<Option<Vec<u8>>, ClusterError> {
        let map = self.map(db)?;
        let range = &map.ranges[map.range_index(id)];
        for node in self.copies(range) {
            if let Ok(ShardReply::Bytes(Some(d))) = self
                .call(&map, range, &node, ShardOp::AttachmentData(digest))
                .await
            {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Trees (and optionally winner bodies) of the given ids, in order.
    pub async fn docs_by_id(
        &self,
        db: &str,
        ids: Vec<String>,
        include_docs: bool,
    ) -> Result<Vec<Option<AllDocsRow>>, ClusterError> {
        let map = self.map(db)?;
        let mut per_range: Vec<(Vec<usize>, Vec<String>)> = vec![Default::default(); map.q()];
        for (i, id) in ids.iter().enumerate() {
            let r = map.range_index(id);
            per_range[r].0.push(i);
            per_range[r].1.push(id.clone());
        }
        let mut out: Vec<Option<AllDocsRow>> = vec![None; ids.len()];
        for (r, (idx, ids)) in per_range.into_iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let op = ShardOp::DocsById { ids, include_docs };
            match self.call_one(&map, &map.ranges[r], op, None).await?.1 {
                ShardReply::Rows(rows) => {
                    for (i, row) in idx.into_iter().zip(rows) {
                        out[i] = row;
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
        Ok(out)
    }

    /// `_all_docs` over one copy of every range, merged in id order, as a cursor
    /// that yields rows a batch at a time.
    pub async fn all_docs_cursor(
        &self,
        db: &str,
        q: AllDocsQuery,
    ) -> Result<AllDocsCursor, ClusterError> {
        let map = self.map(db)?;
        let mut range = q.range.clone();
        range.limit = q.range.limit.saturating_add(q.skip);
        let mut scans = Vec::with_capacity(map.ranges.len());
        for r in &map.ranges {
            let op = ShardOp::AllDocs {
                range: range.clone(),
                include_docs: q.include_docs,
            };
            scans.push(self.open_scan_any(&map, r, op).await?);
        }
        AllDocsCursor::open(&q, scans).await
    }

    /// `_all_docs` over one copy of every range, merged in id order.
    pub async fn all_docs(&self, db: &str, q: AllDocsQuery) -> Result<AllDocsResult, ClusterError> {
        let mut cursor = self.all_docs_cursor(db, q).await?;
        let mut rows = Vec::new();
        while let Some(batch) = cursor.next_batch().await? {
            rows.extend(batch);
        }
        Ok(AllDocsResult {
            total_rows: cursor.total_rows,
            offset: cursor.offset,
            rows,
        })
    }

    /// The current clustered update sequence (for `since=now` and db info).
    pub async fn current_seq(&self, db: &str) -> Result<SeqVector, ClusterError> {
        let map = self.map(db)?;
        let mut v = Vec::new();
        for (range, (node, reply)) in map
            .ranges
            .iter()
            .zip(self.each_range(&map, |_| ShardOp::Info).await?)
        {
            match reply {
                ShardReply::Info(i) => v.push(seq_entry(&node, range, &i.uuid, i.update_seq)),
                other => return Err(unexpected(other)),
            }
        }
        Ok(SeqVector(v))
    }

    /// This node's log of database events (`/_db_updates`).
    pub fn db_updates(&self) -> &crate::db_updates::DbUpdates {
        &self.shards.db_updates
    }

    /// Ends every live feed (the node is stopping).
    pub fn stop_feeds(&self) {
        self.feeds_stop.send_replace(true);
    }

    /// A receiver that turns `true` when live feeds must end.
    pub fn feeds_stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.feeds_stop.subscribe()
    }

    /// The update-sequence watchers of this node's shard copies (for live feeds).
    pub fn watch_db(
        &self,
        db: &str,
    ) -> Result<Vec<tokio::sync::watch::Receiver<u64>>, ClusterError> {
        let map = self.map(db)?;
        Ok(map
            .ranges
            .iter()
            .filter(|r| r.nodes.contains(&self.node))
            .filter_map(|r| self.shards.get(&map, r, false).ok())
            .map(|s| s.watch_seq())
            .collect())
    }

    /// Changes since a position, from one copy of every range, as a cursor that
    /// yields rows a batch at a time. A range whose copy in `since` is gone
    /// restarts on another copy from 0: clients may see repeats, never gaps.
    pub async fn changes_cursor(
        &self,
        db: &str,
        q: &ChangesQuery,
    ) -> Result<ChangesCursor, ClusterError> {
        let map = self.map(db)?;
        let mut scans = Vec::with_capacity(map.ranges.len());
        let mut vector = Vec::with_capacity(map.ranges.len());
        for range in &map.ranges {
            let prefer = q
                .since
                .0
                .iter()
                .find(|e| e.begin == range.begin && e.end == range.end)
                .map(|e| e.node.clone());
            // The position only holds on the copy it was taken from; ask that copy
            // first, and learn its file uuid to check the position still applies.
            let (node, info) = match self
                .call_one(&map, range, ShardOp::Info, prefer.as_deref())
                .await?
            {
                (node, ShardReply::Info(i)) => (node, i),
                (_, other) => return Err(unexpected(other)),
            };
            let since = if q.descending {
                0
            } else {
                q.since
                    .0
                    .iter()
                    .find(|e| {
                        e.node == node
                            && e.begin == range.begin
                            && e.end == range.end
                            && info.uuid.starts_with(&e.uuid)
                    })
                    .map_or(0, |e| e.seq)
            };
            let op = ShardOp::Changes {
                since,
                limit: q.limit,
                descending: q.descending,
                include_docs: q.include_docs,
                doc_ids: q.doc_ids.as_ref().map(|ids| {
                    ids.iter()
                        .filter(|id| range.contains(doc_hash(id)))
                        .cloned()
                        .collect()
                }),
                design_only: q.design_only,
            };
            scans.push(self.open_scan(&map, range, &node, op).await?);
            let start = if q.descending { info.update_seq } else { since };
            vector.push(seq_entry(&node, range, &info.uuid, start));
        }
        Ok(ChangesCursor::new(q, scans, vector))
    }

    /// `_revs_diff`: for each id, the requested revisions the database lacks.
    pub async fn revs_diff(
        &self,
        db: &str,
        request: Vec<(String, Vec<Rev>)>,
    ) -> Result<Vec<(String, RevsDiff)>, ClusterError> {
        let map = self.map(db)?;
        let (order, per_range) = by_range(&map, request);
        let mut found = std::collections::HashMap::new();
        for (r, req) in per_range.into_iter().enumerate() {
            if req.is_empty() {
                continue;
            }
            match self
                .call_one(&map, &map.ranges[r], ShardOp::RevsDiff(req), None)
                .await?
                .1
            {
                ShardReply::RevsDiff(d) => found.extend(d),
                other => return Err(unexpected(other)),
            }
        }
        Ok(order
            .into_iter()
            .filter_map(|id| found.remove(&id).map(|d| (id, d)))
            .collect())
    }

    /// Purges leaf revisions on every copy; returns what was purged per id.
    pub async fn purge(
        self: &Arc<Self>,
        db: &str,
        request: Vec<(String, Vec<Rev>)>,
    ) -> Result<Vec<(String, Vec<Rev>)>, ClusterError> {
        let map = self.map(db)?;
        let (order, per_range) = by_range(&map, request);
        let mut purged = std::collections::HashMap::new();
        for (r, reqs) in per_range.into_iter().enumerate() {
            if reqs.is_empty() {
                continue;
            }
            let (ok, failed) = self
                .call_all(&map, &map.ranges[r], ShardOp::Purge(reqs), |_| false)
                .await;
            if ok.is_empty() {
                let reason = failed
                    .first()
                    .map(|(n, e)| format!("{n}: {e}"))
                    .unwrap_or_default();
                return Err(ClusterError::Unavailable(reason));
            }
            for (_, reply) in ok {
                if let ShardReply::Purged(list) = reply {
                    for (id, revs) in list {
                        let entry: &mut Vec<Rev> = purged.entry(id).or_default();
                        for rev in revs {
                            if !entry.contains(&rev) {
                                entry.push(rev);
                            }
                        }
                    }
                }
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

    /// The purge log of every range.
    pub async fn purged_infos(&self, db: &str) -> Result<Vec<PurgeInfo>, ClusterError> {
        let map = self.map(db)?;
        let mut out = Vec::new();
        for (_, reply) in self.each_range(&map, |_| ShardOp::PurgedInfos).await? {
            match reply {
                ShardReply::PurgedInfos(p) => out.extend(p),
                other => return Err(unexpected(other)),
            }
        }
        Ok(out)
    }

    /// A `_local` document.
    pub async fn get_local(&self, db: &str, id: &str) -> Result<Option<LocalDoc>, ClusterError> {
        let map = self.map(db)?;
        let range = &map.ranges[map.range_index(id)];
        match self
            .call_one(&map, range, ShardOp::GetLocal(id.to_string()), None)
            .await?
            .1
        {
            ShardReply::Local(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// Writes or (with `body` None) deletes a `_local` document on every copy.
    pub async fn write_local(
        self: &Arc<Self>,
        db: &str,
        id: &str,
        rev: Option<u64>,
        body: Option<Vec<u8>>,
    ) -> Result<Result<u64, DocError>, ClusterError> {
        let map = self.map(db)?;
        let range = &map.ranges[map.range_index(id)];
        let op = ShardOp::WriteLocal {
            id: id.to_string(),
            rev,
            body,
        };
        let (ok, failed) = self.call_all(&map, range, op, |_| false).await;
        let mut first_err = None;
        for node in self.copies(range) {
            if let Some((_, ShardReply::LocalWritten(r))) = ok.iter().find(|(n, _)| n == &node) {
                match r {
                    Ok(v) => return Ok(Ok(*v)),
                    Err(e) if first_err.is_none() => first_err = Some(e.clone()),
                    Err(_) => {}
                }
            }
        }
        match first_err {
            Some(e) => Ok(Err(e)),
            None => Err(ClusterError::Unavailable(
                failed
                    .first()
                    .map(|(n, e)| format!("{n}: {e}"))
                    .unwrap_or_default(),
            )),
        }
    }

    /// `_local` documents of every range merged in id order.
    pub async fn local_docs(
        &self,
        db: &str,
        range: AllDocsRange,
        skip: usize,
    ) -> Result<Vec<(String, LocalDoc)>, ClusterError> {
        let map = self.map(db)?;
        let mut r = range.clone();
        r.limit = range.limit.saturating_add(skip);
        let mut rows = Vec::new();
        for (_, reply) in self
            .each_range(&map, |_| ShardOp::LocalDocs(r.clone()))
            .await?
        {
            match reply {
                ShardReply::LocalDocs(d) => rows.extend(d),
                other => return Err(unexpected(other)),
            }
        }
        if range.descending {
            rows.sort_by(|a, b| b.0.cmp(&a.0));
        } else {
            rows.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(rows.into_iter().skip(skip).take(range.limit).collect())
    }

    /// A database-wide setting as stored with the first range.
    pub async fn get_db_meta(
        &self,
        db: &str,
        key: &'static str,
    ) -> Result<Option<Vec<u8>>, ClusterError> {
        let map = self.map(db)?;
        match self
            .call_one(
                &map,
                &map.ranges[0],
                ShardOp::GetMeta(key.to_string()),
                None,
            )
            .await?
            .1
        {
            ShardReply::Bytes(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Sets a database-wide setting on every copy of every range.
    pub async fn set_db_meta(
        self: &Arc<Self>,
        db: &str,
        key: &'static str,
        value: Vec<u8>,
    ) -> Result<(), ClusterError> {
        let map = self.map(db)?;
        for range in &map.ranges {
            let op = ShardOp::SetMeta {
                key: key.to_string(),
                value: value.clone(),
            };
            let (_, failed) = self.call_all(&map, range, op, |_| false).await;
            if let Some((node, e)) = failed.into_iter().next() {
                return Err(ClusterError::Unavailable(format!("{node}: {e}")));
            }
        }
        Ok(())
    }

    /// Compacts every copy of every range.
    pub async fn compact(self: &Arc<Self>, db: &str) -> Result<(), ClusterError> {
        let map = self.map(db)?;
        for range in &map.ranges {
            self.call_all(&map, range, ShardOp::Compact, |_| false)
                .await;
        }
        Ok(())
    }

    /// Counters and sequences of a database, from one copy of every range.
    pub async fn db_info(&self, db: &str) -> Result<DbInfo, ClusterError> {
        let map = self.map(db)?;
        let mut totals = ShardInfo::default();
        let mut seqs = Vec::new();
        let mut purge_seqs = Vec::new();
        for (range, (node, reply)) in map
            .ranges
            .iter()
            .zip(self.each_range(&map, |_| ShardOp::Info).await?)
        {
            let ShardReply::Info(i) = reply else {
                return Err(unexpected(reply));
            };
            totals.doc_count += i.doc_count;
            totals.doc_del_count += i.doc_del_count;
            totals.update_seq += i.update_seq;
            totals.purge_seq += i.purge_seq;
            totals.file_size += i.file_size;
            totals.external_size += i.external_size;
            totals.active_size += i.active_size;
            seqs.push(seq_entry(&node, range, &i.uuid, i.update_seq));
            purge_seqs.push(seq_entry(&node, range, &i.uuid, i.purge_seq));
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
    }
}

/// What a node says about itself to a node that wants to add it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// Its node name.
    pub name: String,
    /// Whether it already has cluster metadata.
    pub initialized: bool,
    /// Where its HTTP API listens.
    pub http: Option<String>,
}

#[tonic::async_trait]
impl ShardHandler for Coordinator {
    async fn handle(&self, call: crate::fabric::pb::ShardCall) -> Result<Vec<u8>, String> {
        let result: Result<ShardReply, String> = async {
            let (map, local, op) = self.resolve_call(&call)?;
            let writes = writes_docs(&op);
            let reply = execute(&local, op).await.map_err(|e| e.to_string())?;
            if writes {
                self.shards.db_updates.note_updated(&map.db);
            }
            Ok(reply)
        }
        .await;
        postcard::to_stdvec(&result).map_err(|e| e.to_string())
    }

    async fn handle_stream(
        &self,
        call: crate::fabric::pb::ShardCall,
    ) -> Result<tokio::sync::mpsc::Receiver<Vec<u8>>, String> {
        let (_, local, op) = self.resolve_call(&call)?;
        let mut scan = LocalScan::new(local, op);
        let (out, rx) = tokio::sync::mpsc::channel(SCAN_AHEAD);
        tokio::spawn(async move {
            while let Some(reply) = scan.next().await {
                let reply = reply.map_err(|e| e.to_string());
                let Ok(bytes) = postcard::to_stdvec(&reply) else {
                    return;
                };
                if out.send(bytes).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn status(&self) -> Vec<u8> {
        serde_json::to_vec(&Coordinator::status(self).await).unwrap_or_default()
    }
}

impl Coordinator {
    /// The local copy a fabric call addresses, and its decoded operation.
    fn resolve_call(
        &self,
        call: &crate::fabric::pb::ShardCall,
    ) -> Result<(Arc<ShardMap>, Arc<chaise_storage::Shard>, ShardOp), String> {
        let shard = call.shard.as_ref().ok_or("missing shard")?;
        let map = self.map(&shard.db).map_err(|e| e.to_string())?;
        if map.suffix != shard.suffix {
            return Err(format!("no such shard of {} (recreated?)", shard.db));
        }
        let range = map
            .ranges
            .iter()
            .find(|r| r.begin == shard.range_begin && r.end == shard.range_end)
            .ok_or("no such range")?;
        let op: ShardOp = postcard::from_bytes(&call.op).map_err(|e| e.to_string())?;
        let local = self
            .shards
            .get(&map, range, false)
            .map_err(|e| e.to_string())?;
        Ok((map, local, op))
    }
}

/// The two ends of copying revisions between copies of a range (internal
/// replication, read repair).
#[derive(Debug, Clone, Copy)]
struct Copy<'a> {
    source: &'a str,
    target: &'a str,
}

/// Bytes of attachment data one fabric call carries when copies are equalised.
const COPY_PIECE: u64 = 1024 * 1024;

/// A remote copy's encoded answer.
fn decode_reply(bytes: &[u8]) -> Result<ShardReply, ClusterError> {
    let reply: Result<ShardReply, String> =
        postcard::from_bytes(bytes).map_err(|e| ClusterError::Internal(e.to_string()))?;
    reply.map_err(ClusterError::Internal)
}

/// Whether an operation changes a shard's documents (an `updated` db event).
fn writes_docs(op: &ShardOp) -> bool {
    matches!(op, ShardOp::UpdateDocs(_) | ShardOp::Purge(_))
}

/// Splits `(doc id, revs)` requests by the range holding each id; also returns
/// the ids in request order, to put the answers back in that order.
#[allow(clippy::type_complexity)]
fn by_range(
    map: &ShardMap,
    request: Vec<(String, Vec<Rev>)>,
) -> (Vec<String>, Vec<Vec<(String, Vec<Rev>)>>) {
    let order = request.iter().map(|(id, _)| id.clone()).collect();
    let mut per_range = vec![Vec::new(); map.q()];
    for (id, revs) in request {
        per_range[map.range_index(&id)].push((id, revs));
    }
    (order, per_range)
}

fn seq_entry(node: &str, range: &ShardRange, uuid: &str, seq: u64) -> SeqEntry {
    SeqEntry {
        node: node.to_string(),
        begin: range.begin,
        end: range.end,
        seq,
        uuid: uuid.chars().take(UUID_PREFIX_LEN).collect(),
    }
}
