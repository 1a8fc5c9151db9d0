//! Attachment data in chunks: a blob is the sequence of rows `(blob id, n)` of
//! `att_chunks`, each holding up to [`ATT_CHUNK`] bytes, so that large
//! attachments are written and read a piece at a time.

use crate::codec::decode;
use crate::document::BlobRef;
use crate::StorageError;
use redb::{ReadableTable, Table};

/// Size of one stored chunk of attachment data.
pub const ATT_CHUNK: usize = 256 * 1024;

/// The chunks table in a read transaction.
pub(crate) type ReadChunkTable = redb::ReadOnlyTable<(&'static [u8], u32), &'static [u8]>;

/// The chunks table in a write transaction.
pub(crate) type ChunkTable<'t> = Table<'t, (&'static [u8], u32), &'static [u8]>;

/// Writes `data` as chunks `first, first + 1, ...` of `blob`.
pub(crate) fn write_chunks(
    chunks: &mut ChunkTable<'_>,
    blob: &[u8; 16],
    first: u32,
    data: &[u8],
) -> Result<(), StorageError> {
    for (i, piece) in data.chunks(ATT_CHUNK).enumerate() {
        let n = u32::try_from(i)
            .ok()
            .and_then(|i| first.checked_add(i))
            .ok_or_else(|| StorageError::Corrupt("attachment has too many chunks".into()))?;
        chunks.insert((blob.as_slice(), n), piece)?;
    }
    Ok(())
}

/// Removes every chunk of `blob`.
pub(crate) fn drop_blob(chunks: &mut ChunkTable<'_>, blob: &[u8; 16]) -> Result<(), StorageError> {
    let lo = (blob.as_slice(), 0u32);
    let hi = (blob.as_slice(), u32::MAX);
    chunks.retain_in(lo..=hi, |_, _| false)?;
    Ok(())
}

/// Decodes an index entry.
pub(crate) fn blob_ref(bytes: &[u8]) -> Result<BlobRef, StorageError> {
    decode(bytes)
}

/// Reads `len` bytes of a blob from `offset` (fewer at its end).
pub(crate) fn read_range(
    chunks: &impl ReadableTable<(&'static [u8], u32), &'static [u8]>,
    blob: &BlobRef,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, StorageError> {
    let end = offset.saturating_add(len).min(blob.length);
    if offset >= end {
        return Ok(Vec::new());
    }
    let chunk = ATT_CHUNK as u64;
    let first = u32::try_from(offset / chunk).map_err(|_| corrupt())?;
    let last = u32::try_from((end - 1) / chunk).map_err(|_| corrupt())?;
    let mut out = Vec::with_capacity((end - offset) as usize);
    let lo = (blob.blob.as_slice(), first);
    let hi = (blob.blob.as_slice(), last);
    for (expected, item) in (first..).zip(chunks.range(lo..=hi)?) {
        let (k, v) = item?;
        let n = k.value().1;
        if n != expected {
            return Err(corrupt());
        }
        let start = u64::from(n) * chunk;
        let data = v.value();
        let from = offset.saturating_sub(start) as usize;
        let to = ((end - start) as usize).min(data.len());
        if from < to {
            out.extend_from_slice(&data[from..to]);
        }
    }
    if out.len() as u64 != end - offset {
        return Err(corrupt());
    }
    Ok(out)
}

fn corrupt() -> StorageError {
    StorageError::Corrupt("attachment chunks missing".into())
}

/// A streamed upload in progress (or finished and waiting for the write that
/// uses it): hashing state and the bytes not yet making up a whole chunk.
pub(crate) struct Upload {
    pub(crate) md5: md5::Md5,
    pub(crate) buf: Vec<u8>,
    pub(crate) next_chunk: u32,
    pub(crate) length: u64,
    pub(crate) done: Option<crate::StagedBlob>,
}

impl Upload {
    pub(crate) fn new() -> Self {
        Upload {
            md5: md5::Digest::new(),
            buf: Vec::new(),
            next_chunk: 0,
            length: 0,
            done: None,
        }
    }
}

/// Uploads of a shard by upload id, shared by its handle and its writer (whose
/// compaction must not collect their chunks).
pub(crate) type Uploads =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<[u8; 16], Upload>>>;
