//! The records a shard stores and the requests and answers that cross its API.

use crate::rev_tree::{Rev, RevTree};
use crate::DocError;
use serde::{Deserialize, Serialize};

/// Everything the shard knows about one document id, stored in `by_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocInfo {
    /// The full revision tree.
    pub tree: RevTree,
    /// The shard update sequence of the document's latest change.
    pub seq: u64,
    /// Size in bytes of the winning revision's body (for the `external` size).
    pub winner_size: u64,
}

impl DocInfo {
    /// Whether the winning revision is a tombstone (or the tree is empty).
    pub fn is_deleted(&self) -> bool {
        self.tree.winner().is_none_or(|l| l.deleted)
    }
}

/// Metadata of one attachment of one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// Attachment name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// MD5 of the data (as stored): the content address.
    pub digest: [u8; 16],
    /// Length of the decoded data.
    pub length: u64,
    /// Generation of the revision in which this attachment last changed.
    pub revpos: u64,
    /// Encoding of the stored data (`gzip`), if any.
    pub encoding: Option<String>,
    /// Length of the stored (encoded) data, when encoded.
    pub encoded_length: Option<u64>,
}

/// The stored content of one revision: JSON body without the underscore fields,
/// plus attachment metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevBody {
    /// Compact JSON object bytes, user fields only.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Attachments of this revision.
    pub attachments: Vec<AttachmentInfo>,
}

/// Where the chunks of one stored attachment data are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Blob id: the first key part of its chunks in `att_chunks`.
    pub blob: [u8; 16],
    /// Stored (possibly encoded) length in bytes.
    pub length: u64,
}

/// What a finished streamed upload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedBlob {
    /// MD5 of the bytes appended.
    pub digest: [u8; 16],
    /// Number of bytes appended.
    pub length: u64,
}

/// An attachment as it arrives in a write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NewAttachment {
    /// New data.
    Data {
        /// Attachment name.
        name: String,
        /// MIME type.
        content_type: String,
        /// The bytes as stored (encoded when `encoding` is set).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// Encoding of `data` (`gzip`), if any.
        encoding: Option<String>,
        /// Decoded length of the data.
        length: u64,
    },
    /// Data already streamed into the shard under an upload id (see
    /// `Shard::stage_begin`); `info.digest` must be the upload's digest.
    Staged {
        /// Metadata; `revpos` is set by the write (kept for replicated edits when
        /// not 0).
        info: AttachmentInfo,
        /// The upload id.
        upload: [u8; 16],
    },
    /// A copy of a stored attachment (internal replication, read repair): its
    /// metadata is kept as it is, revpos included.
    Replica {
        /// The attachment's metadata on the source copy.
        info: AttachmentInfo,
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// `"stub": true`: keep the attachment of the parent revision (interactive), or
    /// one whose data the shard already holds (replicated).
    Stub {
        /// Attachment name.
        name: String,
        /// Stored metadata sent with a replicated stub, if any.
        info: Option<AttachmentInfo>,
    },
}

impl NewAttachment {
    /// The attachment's name.
    pub fn name(&self) -> &str {
        match self {
            NewAttachment::Data { name, .. } | NewAttachment::Stub { name, .. } => name,
            NewAttachment::Replica { info, .. } | NewAttachment::Staged { info, .. } => &info.name,
        }
    }

    /// New identity-encoded data.
    pub fn data(name: String, content_type: String, data: Vec<u8>) -> Self {
        let length = data.len() as u64;
        NewAttachment::Data {
            name,
            content_type,
            data,
            encoding: None,
            length,
        }
    }
}

/// How an update relates to the existing tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EditKind {
    /// An interactive edit (`new_edits=true`): must extend `parent`, or create the
    /// document when `parent` is `None`. The shard computes the new revision id.
    Interactive {
        /// The revision being edited.
        parent: Option<Rev>,
    },
    /// A replicated revision (`new_edits=false`): merged verbatim. `ids[0]` is the
    /// revision at generation `pos`, then its ancestors.
    Replicated {
        /// Generation of `ids[0]`.
        pos: u64,
        /// Revision ids, newest first.
        ids: Vec<String>,
    },
}

/// One document write as sent to a shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocUpdate {
    /// Document id.
    pub id: String,
    /// Interactive or replicated.
    pub kind: EditKind,
    /// Whether the new revision is a tombstone.
    pub deleted: bool,
    /// Compact JSON object bytes (user fields only).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Attachments of the new revision.
    pub attachments: Vec<NewAttachment>,
}

/// The answer for one `DocUpdate`: the new (or, for replicated edits, merged) revision.
pub type UpdateResult = Result<Rev, DocError>;

/// A `_local` document: no revision tree, a counter instead.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalDoc {
    /// The counter behind `"0-N"`.
    pub rev: u64,
    /// Compact JSON object bytes (user fields only).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// One row of a shard's changes feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeRow {
    /// Shard-local sequence of this change.
    pub seq: u64,
    /// Document id.
    pub id: String,
    /// Leaves, winner first.
    pub leaves: Vec<crate::Leaf>,
    /// Whether the document's winner is deleted.
    pub deleted: bool,
}

/// One purge request as kept in the purge log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PurgeInfo {
    /// Purge request uuid.
    pub uuid: String,
    /// Document id.
    pub id: String,
    /// The revisions purged.
    pub revs: Vec<String>,
}

/// Counters and sizes of a shard.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Non-deleted documents.
    pub doc_count: u64,
    /// Deleted documents (tombstones).
    pub doc_del_count: u64,
    /// Current update sequence.
    pub update_seq: u64,
    /// Current purge sequence.
    pub purge_seq: u64,
    /// Size of the file on disk.
    pub file_size: u64,
    /// Uncompressed size of the current documents' bodies.
    pub external_size: u64,
    /// Live data in the file (approximated by external + attachment bytes).
    pub active_size: u64,
    /// Shard file uuid.
    pub uuid: String,
}
