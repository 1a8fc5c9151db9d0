//! Encoding of stored records (postcard) with corruption mapped to `StorageError`.

use crate::StorageError;
use serde::{de::DeserializeOwned, Serialize};

/// Encodes a record for storage.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_stdvec(value).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// Decodes a stored record.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    postcard::from_bytes(bytes).map_err(|e| StorageError::Corrupt(e.to_string()))
}
