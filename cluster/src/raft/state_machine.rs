//! The replicated state: shard maps of every database. Applying a command also
//! creates or deletes this node's shard files, so "the owners create their files"
//! happens exactly when the creation is committed.

use super::TypeConfig;
use crate::local_shards::LocalShards;
use crate::shard_map::ShardMap;
use crate::ClusterError;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, RwLock};

const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_state");

type StorageResult<T> = Result<T, StorageError<u64>>;

fn io_err(e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::write_state_machine(openraft::AnyError::error(e.to_string())).into()
}

/// A change to cluster metadata, as carried by the Raft log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Record a new database and create its shard copies (with this security object).
    CreateDb {
        /// Where its shards live.
        map: ShardMap,
        /// The `_security` object of the new shards.
        security: Vec<u8>,
    },
    /// Forget a database and delete its shard copies.
    DeleteDb(String),
}

/// The outcome of a command, the same on every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaReply {
    /// Applied.
    Ok,
    /// The database already exists.
    DbExists,
    /// The database does not exist.
    NoDb,
}

/// What the metadata group replicates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetaState {
    /// Shard map of every database, by name.
    pub dbs: BTreeMap<String, Arc<ShardMap>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Persisted {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    state: MetaState,
}

/// The state machine of this node.
pub struct StateMachine {
    db: Arc<Database>,
    state: Arc<RwLock<MetaState>>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    shards: Arc<LocalShards>,
    node: String,
}

impl StateMachine {
    pub async fn open(
        db: Arc<Database>,
        state: Arc<RwLock<MetaState>>,
        shards: Arc<LocalShards>,
        node: String,
    ) -> Result<StateMachine, ClusterError> {
        let txn = db.begin_write().map_err(super::raft_err)?;
        txn.open_table(SM).map_err(super::raft_err)?;
        txn.commit().map_err(super::raft_err)?;
        let persisted: Persisted = {
            let txn = db.begin_read().map_err(super::raft_err)?;
            let table = txn.open_table(SM).map_err(super::raft_err)?;
            match table.get("state").map_err(super::raft_err)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(super::raft_err)?,
                None => Persisted::default(),
            }
        };
        set_state(&state, persisted.state);
        let mut sm = StateMachine {
            db,
            state,
            last_applied: persisted.last_applied,
            membership: persisted.membership,
            shards,
            node,
        };
        sm.reconcile().await;
        Ok(sm)
    }

    fn persisted(&self) -> Persisted {
        Persisted {
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            state: read_state(&self.state),
        }
    }

    fn save(&self) -> StorageResult<()> {
        let bytes = serde_json::to_vec(&self.persisted()).map_err(io_err)?;
        let txn = self.db.begin_write().map_err(io_err)?;
        txn.open_table(SM)
            .map_err(io_err)?
            .insert("state", bytes.as_slice())
            .map_err(io_err)?;
        txn.commit().map_err(io_err)
    }

    /// Makes sure every shard this node should hold exists (after a restart or a
    /// snapshot install).
    async fn reconcile(&mut self) {
        let dbs: Vec<Arc<ShardMap>> = read_state(&self.state).dbs.values().cloned().collect();
        for map in dbs {
            for range in map.ranges.iter().filter(|r| r.nodes.contains(&self.node)) {
                if let Err(e) = self.shards.get(&map, range, true) {
                    tracing::error!(db = %map.db, error = %e, "cannot open shard");
                }
            }
        }
    }

    async fn apply_command(&mut self, cmd: MetaCommand) -> MetaReply {
        match cmd {
            MetaCommand::CreateDb { map, security } => {
                if contains_db(&self.state, &map.db) {
                    return MetaReply::DbExists;
                }
                for range in map.ranges.iter().filter(|r| r.nodes.contains(&self.node)) {
                    // Leftovers of an earlier database of the same name and second go first.
                    let path = self.shards.path(&map, range);
                    let _ = chaise_storage::Shard::remove_files(&path);
                    match self.shards.get(&map, range, true) {
                        Ok(shard) => {
                            if let Err(e) = shard.set_meta("security", security.clone()).await {
                                tracing::error!(db = %map.db, error = %e, "cannot set shard security");
                            }
                        }
                        Err(e) => tracing::error!(db = %map.db, error = %e, "cannot create shard"),
                    }
                }
                self.shards
                    .db_updates
                    .record(&map.db, crate::db_updates::DbEventKind::Created);
                if let Ok(mut s) = self.state.write() {
                    s.dbs.insert(map.db.clone(), Arc::new(map));
                }
                MetaReply::Ok
            }
            MetaCommand::DeleteDb(name) => {
                let removed = self
                    .state
                    .write()
                    .ok()
                    .and_then(|mut s| s.dbs.remove(&name));
                match removed {
                    Some(map) => {
                        if let Err(e) = self.shards.delete(&map) {
                            tracing::error!(db = %name, error = %e, "cannot delete shard files");
                        }
                        self.shards
                            .db_updates
                            .record(&name, crate::db_updates::DbEventKind::Deleted);
                        MetaReply::Ok
                    }
                    None => MetaReply::NoDb,
                }
            }
        }
    }
}

fn contains_db(state: &RwLock<MetaState>, db: &str) -> bool {
    match state.read() {
        Ok(s) => s.dbs.contains_key(db),
        Err(p) => p.into_inner().dbs.contains_key(db),
    }
}

fn read_state(state: &RwLock<MetaState>) -> MetaState {
    match state.read() {
        Ok(s) => s.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn set_state(state: &RwLock<MetaState>, value: MetaState) {
    match state.write() {
        Ok(mut s) => *s = value,
        Err(p) => *p.into_inner() = value,
    }
}

impl StateMachine {
    /// A snapshot of the state as applied so far.
    fn snapshot(&self) -> StorageResult<Snapshot<TypeConfig>> {
        let bytes = serde_json::to_vec(&self.persisted()).map_err(io_err)?;
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: self
                .last_applied
                .map(|l| format!("{}-{}", l.leader_id, l.index))
                .unwrap_or_default(),
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        self.snapshot()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<MetaReply>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => replies.push(MetaReply::Ok),
                EntryPayload::Normal(cmd) => replies.push(self.apply_command(cmd).await),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    replies.push(MetaReply::Ok);
                }
            }
        }
        self.save()?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        StateMachine {
            db: self.db.clone(),
            state: Arc::new(RwLock::new(read_state(&self.state))),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            shards: self.shards.clone(),
            node: self.node.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let persisted: Persisted = serde_json::from_slice(&bytes).map_err(io_err)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        set_state(&self.state, persisted.state);
        self.save()?;
        self.reconcile().await;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        if self.last_applied.is_none() {
            return Ok(None);
        }
        self.snapshot().map(Some)
    }
}
