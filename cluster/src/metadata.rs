//! The node-local metadata store: shard maps of every database.
//!
//! Changes are expressed as [`MetaCommand`]s applied in order, the shape of a Raft
//! state machine, so that the cluster's Raft log can later own this state without
//! changing its readers.

use crate::shard_map::ShardMap;
use crate::ClusterError;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

const DBS: TableDefinition<&str, &[u8]> = TableDefinition::new("dbs");

/// A change to cluster metadata.
#[derive(Debug, Clone)]
pub enum MetaCommand {
    /// Record a new database's shard map.
    CreateDb(ShardMap),
    /// Forget a database.
    DeleteDb(String),
}

/// Shard maps, persisted in `_meta.redb` and cached in memory.
pub struct MetaStore {
    db: Database,
    dbs: RwLock<BTreeMap<String, ShardMap>>,
}

fn meta_err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Meta(e.to_string())
}

impl MetaStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<MetaStore, ClusterError> {
        std::fs::create_dir_all(dir).map_err(meta_err)?;
        let db = Database::create(dir.join("_meta.redb")).map_err(meta_err)?;
        let txn = db.begin_write().map_err(meta_err)?;
        txn.open_table(DBS).map_err(meta_err)?;
        txn.commit().map_err(meta_err)?;
        let mut dbs = BTreeMap::new();
        {
            let txn = db.begin_read().map_err(meta_err)?;
            let table = txn.open_table(DBS).map_err(meta_err)?;
            for item in table.iter().map_err(meta_err)? {
                let (k, v) = item.map_err(meta_err)?;
                let map: ShardMap = serde_json::from_slice(v.value()).map_err(meta_err)?;
                dbs.insert(k.value().to_string(), map);
            }
        }
        Ok(MetaStore {
            db,
            dbs: RwLock::new(dbs),
        })
    }

    /// Applies a command durably. Creating an existing db fails with `DbExists`,
    /// deleting a missing one with `NoDb`.
    pub fn apply(&self, cmd: MetaCommand) -> Result<(), ClusterError> {
        let mut dbs = self.dbs.write().map_err(meta_err)?;
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
            let mut table = txn.open_table(DBS).map_err(meta_err)?;
            match &cmd {
                MetaCommand::CreateDb(map) => {
                    if dbs.contains_key(&map.db) {
                        return Err(ClusterError::DbExists);
                    }
                    let bytes = serde_json::to_vec(map).map_err(meta_err)?;
                    table
                        .insert(map.db.as_str(), bytes.as_slice())
                        .map_err(meta_err)?;
                }
                MetaCommand::DeleteDb(name) => {
                    if !dbs.contains_key(name) {
                        return Err(ClusterError::NoDb);
                    }
                    table.remove(name.as_str()).map_err(meta_err)?;
                }
            }
        }
        txn.commit().map_err(meta_err)?;
        match cmd {
            MetaCommand::CreateDb(map) => {
                dbs.insert(map.db.clone(), map);
            }
            MetaCommand::DeleteDb(name) => {
                dbs.remove(&name);
            }
        }
        Ok(())
    }

    /// The shard map of a database.
    pub fn shard_map(&self, db: &str) -> Option<ShardMap> {
        self.dbs.read().ok()?.get(db).cloned()
    }

    /// All database names, sorted.
    pub fn db_names(&self) -> Vec<String> {
        self.dbs
            .read()
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default()
    }
}
