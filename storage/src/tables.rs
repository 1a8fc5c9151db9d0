//! The tables of a shard file.

use redb::TableDefinition;

/// doc id -> encoded `DocInfo` (rev tree, latest seq, winner size).
pub(crate) const BY_ID: TableDefinition<&str, &[u8]> = TableDefinition::new("by_id");
/// update seq -> doc id; one entry per document, at its latest seq.
pub(crate) const BY_SEQ: TableDefinition<u64, &str> = TableDefinition::new("by_seq");
/// (doc id, rev string) -> encoded `RevBody`.
pub(crate) const BODIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("bodies");
/// `_local/` doc id -> encoded `LocalDoc`.
pub(crate) const LOCAL: TableDefinition<&str, &[u8]> = TableDefinition::new("local");
/// md5 digest of stored (possibly encoded) attachment data -> encoded `BlobRef`:
/// where its chunks are. Content-addressed: one entry per distinct data.
pub(crate) const ATTACHMENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("att_index");
/// (blob id, chunk number) -> up to `ATT_CHUNK` bytes of attachment data. A blob
/// id is the data's digest when written whole, or an upload id when streamed.
pub(crate) const ATT_CHUNKS: TableDefinition<(&[u8], u32), &[u8]> =
    TableDefinition::new("att_chunks");
/// purge seq -> encoded `PurgeInfo`.
pub(crate) const PURGED: TableDefinition<u64, &[u8]> = TableDefinition::new("purged");
/// Shard-wide values: sequences, counters, security object, revs limit, uuid.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
