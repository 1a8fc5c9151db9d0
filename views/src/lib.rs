//! Indexes over shard contents: CouchDB collation, JavaScript map/reduce views,
//! Mango json indexes and full-text search, each built per shard from its by-seq
//! index.
//!
//! Its place in the dependency chain is fixed (`cluster -> views -> storage`); the
//! indexes themselves arrive with the views issue. Nothing here may know about
//! HTTP or other nodes.
