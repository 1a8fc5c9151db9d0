//! The cluster layer of Chaise: where data lives and how a request reaches it.
//!
//! Databases are split into `q` shard ranges of the 32-bit `crc32(doc id)` space,
//! each kept on `n` nodes per the database's shard map. The [`Coordinator`] is the
//! one interface the HTTP layer calls for every database and document operation:
//! it routes each request to the shard copies, waits for the quorum and merges
//! their answers. A single node is a cluster of one: every copy is local.
//!
//! This crate knows nothing of HTTP; it must not call back into `chaise-api`.

mod attachments;
mod coordinator;
pub mod db_updates;
mod error;
pub mod fabric;
mod local_shards;
pub mod quorum;
pub mod raft;
pub mod ring;
mod scan;
pub mod seq;
pub mod shard_map;

pub use attachments::AttUpload;
pub use coordinator::{
    AllDocsQuery, AllDocsResult, AllDocsRow, ChangesQuery, ChangesRow, Coordinator, DbInfo,
    DocWriteResult, NodeConfig, NodeStatus, OpenedDoc, OpenedRev, RevSelector, RevsDiff,
};
pub use error::ClusterError;
pub use raft::{MetaCommand, MetaReply};
pub use scan::{AllDocsCursor, ChangesCursor};
pub use shard_map::{ShardMap, ShardRange};
