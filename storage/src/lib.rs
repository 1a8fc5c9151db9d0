//! Shard storage for Chaise.
//!
//! One shard copy is one redb file holding documents with their full revision
//! trees, the by-sequence index that feeds `_changes`, `_local` documents,
//! content-addressed attachments and the purge log. Writes from many concurrent
//! callers are group-committed: one fsync serves a whole batch, and ordinary
//! writes reach the disk through a sequential commit log rather than B-tree pages.
//!
//! This crate knows nothing of HTTP, of other nodes or of how shards are placed;
//! the coordinator in `chaise-cluster` decides which shard a request goes to.

mod blob;
mod codec;
mod commit_log;
pub mod document;
mod error;
pub mod rev_id;
pub mod rev_tree;
mod shard;
mod tables;
mod writer;

pub use blob::ATT_CHUNK;
pub use document::{
    AttachmentInfo, BlobRef, ChangeRow, DocInfo, DocUpdate, EditKind, LocalDoc, NewAttachment,
    PurgeInfo, RevBody, ShardInfo, StagedBlob, UpdateResult,
};
pub use error::{DocError, StorageError};
pub use rev_tree::{Leaf, MergeOutcome, Rev, RevTree};
pub use shard::{AllDocsRange, Shard, ShardReader};
