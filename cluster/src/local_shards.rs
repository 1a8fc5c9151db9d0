//! The shard copies held by this node: file paths and the cache of open shards.

use crate::shard_map::{ShardMap, ShardRange};
use chaise_storage::{Shard, StorageError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Open shard files of this node, by path.
pub(crate) struct LocalShards {
    root: PathBuf,
    open: Mutex<HashMap<PathBuf, Arc<Shard>>>,
    /// This node's log of database events (`/_db_updates`).
    pub(crate) db_updates: Arc<crate::db_updates::DbUpdates>,
}

impl LocalShards {
    pub(crate) fn new(data_dir: &Path) -> Self {
        LocalShards {
            root: data_dir.join("shards"),
            open: Mutex::new(HashMap::new()),
            db_updates: Arc::default(),
        }
    }

    /// `shards/<range>/<db><suffix>.redb`, as CouchDB lays out its `.couch` files.
    pub(crate) fn path(&self, map: &ShardMap, range: &ShardRange) -> PathBuf {
        self.root
            .join(range.name())
            .join(format!("{}{}.redb", map.db, map.suffix))
    }

    /// The open shard for a range, opening (or, with `create`, creating) its file.
    pub(crate) fn get(
        &self,
        map: &ShardMap,
        range: &ShardRange,
        create: bool,
    ) -> Result<Arc<Shard>, StorageError> {
        let path = self.path(map, range);
        let mut open = self.open.lock().map_err(|_| StorageError::Closed)?;
        if let Some(s) = open.get(&path) {
            return Ok(s.clone());
        }
        let shard = Shard::open(&path, create)?;
        open.insert(path, shard.clone());
        Ok(shard)
    }

    /// Closes and deletes the files of a database.
    pub(crate) fn delete(&self, map: &ShardMap) -> Result<(), StorageError> {
        for range in &map.ranges {
            let path = self.path(map, range);
            let shard = self
                .open
                .lock()
                .map_err(|_| StorageError::Closed)?
                .remove(&path);
            if let Some(s) = shard {
                s.close();
            }
            Shard::remove_files(&path)?;
        }
        Ok(())
    }

    /// Closes every open shard (at shutdown), letting queued writes finish.
    pub(crate) fn close_all(&self) {
        let shards: Vec<Arc<Shard>> = match self.open.lock() {
            Ok(mut open) => open.drain().map(|(_, s)| s).collect(),
            Err(_) => return,
        };
        for s in shards {
            s.close();
        }
    }
}
