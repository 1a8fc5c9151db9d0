//! Errors of the storage layer.

/// A failure of the shard file itself (I/O, corruption, closed shard).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// redb reported an error.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The shard's writer has stopped (shutting down or deleted).
    #[error("shard is closed")]
    Closed,
    /// File system error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

macro_rules! engine_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Engine(e.to_string())
            }
        }
    )*};
}
engine_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Why one document of a write was refused. The write of other documents in the
/// same batch is unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum DocError {
    /// The edit does not extend a current leaf (409).
    #[error("Document update conflict.")]
    Conflict,
    /// An attachment stub names an attachment the parent revision lacks (412).
    #[error("Invalid attachment stub in {id} for {name}")]
    MissingStub {
        /// Document id.
        id: String,
        /// Attachment name.
        name: String,
    },
    /// The update is malformed in a way only the shard can see.
    #[error("{0}")]
    BadRequest(String),
    /// A local document's rev does not match.
    #[error("Document update conflict.")]
    LocalConflict,
    /// The document (a `_local` one being deleted) does not exist (404).
    #[error("missing")]
    NotFound,
    /// The shard failed while writing.
    #[error("{0}")]
    Internal(String),
}
