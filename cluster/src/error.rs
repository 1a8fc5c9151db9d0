//! Errors of the cluster layer.

use chaise_storage::StorageError;

/// What can go wrong when the coordinator runs an operation.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The database does not exist.
    #[error("Database does not exist.")]
    NoDb,
    /// The database already exists.
    #[error("The database could not be created, the file already exists.")]
    DbExists,
    /// A request parameter is invalid (e.g. a malformed `since`).
    #[error("{0}")]
    BadRequest(String),
    /// A shard failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The node-local metadata store failed.
    #[error("metadata store error: {0}")]
    Meta(String),
    /// No copy of a shard could answer (nodes down or unreachable).
    #[error("{0}")]
    Unavailable(String),
    /// A background task died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<tokio::task::JoinError> for ClusterError {
    fn from(e: tokio::task::JoinError) -> Self {
        ClusterError::Internal(e.to_string())
    }
}
