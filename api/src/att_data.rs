//! Attachment data between HTTP and the coordinator: compression as CouchDB's
//! `[attachments]` settings ask, uploads streamed into the shard copies a piece
//! at a time, and response bodies streamed out of them.

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;
use chaise_cluster::{AttUpload, Coordinator};
use chaise_storage::{AttachmentInfo, NewAttachment, ATT_CHUNK};
use flate2::write::{GzDecoder, GzEncoder};
use futures_util::{Stream, StreamExt};
use std::io::Write;
use std::sync::Arc;

/// Bytes read from the shard copies per request while streaming out.
const READ_PIECE: u64 = 4 * ATT_CHUNK as u64;

/// Which attachments are stored gzip-encoded, and how hard they are compressed.
#[derive(Debug, Clone)]
pub struct Compression {
    types: Vec<String>,
    level: u32,
}

impl Compression {
    /// Never compresses: for data that is copied as it is stored.
    pub fn never() -> Self {
        Compression {
            types: Vec::new(),
            level: 0,
        }
    }

    /// `[attachments] compressible_types` and `compression_level` (0 = never).
    pub fn from_config(state: &AppState) -> Self {
        let types = state
            .config
            .get("attachments", "compressible_types")
            .unwrap_or_else(|| {
                "text/*, application/javascript, application/json, application/xml".into()
            });
        Compression {
            types: types
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect(),
            level: state
                .config_u64("attachments", "compression_level", 8)
                .min(9) as u32,
        }
    }

    /// Whether data of this MIME type is stored compressed.
    pub fn applies(&self, content_type: &str) -> bool {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.level > 0
            && self.types.iter().any(|t| match t.strip_suffix('*') {
                Some(prefix) => ct.starts_with(prefix),
                None => *t == ct,
            })
    }

    fn encoder(&self) -> GzEncoder<Vec<u8>> {
        GzEncoder::new(Vec::new(), flate2::Compression::new(self.level))
    }
}

/// Runs bytes through a streaming gzip encoder or decoder, returning what it
/// produced so far.
fn push<W: Write>(
    w: &mut W,
    out: impl FnOnce(&mut W) -> Vec<u8>,
    data: &[u8],
) -> ApiResult<Vec<u8>> {
    w.write_all(data)
        .map_err(|e| ApiError::internal(format!("attachment encoding: {e}")))?;
    Ok(out(w))
}

/// Decodes whole gzip data.
pub fn gunzip(data: &[u8]) -> ApiResult<Vec<u8>> {
    let mut d = GzDecoder::new(Vec::new());
    let mut out = push(&mut d, |d| std::mem::take(d.get_mut()), data)?;
    out.extend(
        d.finish()
            .map_err(|e| ApiError::internal(format!("attachment decoding: {e}")))?,
    );
    Ok(out)
}

/// Stored bytes decoded for a client: as they are unless gzip-encoded.
pub fn decoded(att: &AttachmentInfo, data: Vec<u8>) -> ApiResult<Vec<u8>> {
    match att.encoding.as_deref() {
        Some("gzip") => gunzip(&data),
        _ => Ok(data),
    }
}

/// New attachment data held whole, compressed when its type asks for it.
pub fn new_data(
    comp: &Compression,
    name: String,
    content_type: String,
    raw: Vec<u8>,
) -> ApiResult<NewAttachment> {
    if !comp.applies(&content_type) {
        return Ok(NewAttachment::data(name, content_type, raw));
    }
    let mut e = comp.encoder();
    push(&mut e, |_| Vec::new(), &raw)?;
    let data = e
        .finish()
        .map_err(|err| ApiError::internal(format!("attachment encoding: {err}")))?;
    Ok(NewAttachment::Data {
        name,
        content_type,
        data,
        encoding: Some("gzip".into()),
        length: raw.len() as u64,
    })
}

/// Drops an upload when the request that made it is over, used or not: a
/// write that used it took it already, and a request cut short leaves nothing.
pub struct UploadGuard {
    coordinator: Arc<Coordinator>,
    upload: Option<AttUpload>,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        let (Some(up), Ok(rt)) = (self.upload.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let coordinator = self.coordinator.clone();
        rt.spawn(async move { coordinator.upload_abort(&up).await });
    }
}

/// Where incoming attachment data goes and the limits it must keep.
pub struct Incoming<'a> {
    /// Database.
    pub db: &'a str,
    /// Document the attachment belongs to.
    pub doc_id: &'a str,
    /// Attachment name.
    pub name: String,
    /// MIME type.
    pub content_type: String,
    /// Encoding the client already applied (`gzip`) with the decoded length:
    /// the bytes are then stored as they come.
    pub encoded: Option<(String, u64)>,
    /// Most bytes accepted (`[couchdb] max_attachment_size`).
    pub max: u64,
}

/// Reads attachment data from a stream. Data that fits in one chunk is kept
/// whole (`NewAttachment::Data`); more is streamed into an upload on the shard
/// copies (`NewAttachment::Staged`) and never held whole. Compressible types are
/// gzip-encoded on the way in. The guard drops the upload once the caller is done.
pub async fn receive<E: std::fmt::Display>(
    state: &AppState,
    comp: &Compression,
    inc: Incoming<'_>,
    stream: impl Stream<Item = Result<Bytes, E>>,
) -> ApiResult<(NewAttachment, Option<UploadGuard>)> {
    let mut stream = std::pin::pin!(stream);
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "attachment_too_large",
            format!("{}/{}", inc.doc_id, inc.name),
        )
    };
    let read_err = |e: E| ApiError::bad_request(format!("error reading attachment data: {e}"));
    // Small data: held whole.
    let mut first = Vec::new();
    let mut more = None;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(read_err)?;
        if (first.len() + piece.len()) as u64 > inc.max {
            return Err(too_large());
        }
        if first.len() + piece.len() > ATT_CHUNK {
            more = Some(piece);
            break;
        }
        first.extend_from_slice(&piece);
    }
    let Some(next) = more else {
        return Ok((whole(comp, inc, first)?, None));
    };
    let mut guard = UploadGuard {
        coordinator: state.coordinator.clone(),
        upload: Some(state.coordinator.upload_begin(inc.db, inc.doc_id).await?),
    };
    let compress = inc.encoded.is_none() && comp.applies(&inc.content_type);
    let mut encoder = compress.then(|| comp.encoder());
    let mut raw_len = 0u64;
    let mut pending: Vec<u8> = Vec::with_capacity(2 * ATT_CHUNK);
    let mut piece = Some(Bytes::from(first));
    let mut next = Some(next);
    loop {
        let Some(data) = piece.take() else { break };
        raw_len += data.len() as u64;
        if raw_len > inc.max {
            return Err(too_large());
        }
        match &mut encoder {
            Some(e) => pending.extend(push(e, |e| std::mem::take(e.get_mut()), &data)?),
            None => pending.extend_from_slice(&data),
        }
        if pending.len() >= ATT_CHUNK {
            let up = guard
                .upload
                .as_mut()
                .ok_or_else(|| ApiError::internal("no upload"))?;
            state.coordinator.upload_append(up, &pending).await?;
            pending.clear();
        }
        piece = match next.take() {
            Some(n) => Some(n),
            None => stream.next().await.transpose().map_err(read_err)?,
        };
    }
    if let Some(e) = encoder.take() {
        pending.extend(
            e.finish()
                .map_err(|err| ApiError::internal(format!("attachment encoding: {err}")))?,
        );
    }
    let up = guard
        .upload
        .as_mut()
        .ok_or_else(|| ApiError::internal("no upload"))?;
    if !pending.is_empty() {
        state.coordinator.upload_append(up, &pending).await?;
    }
    let staged = state.coordinator.upload_finish(up).await?;
    let (encoding, length) = match (&inc.encoded, compress) {
        (Some((enc, len)), _) => (Some(enc.clone()), *len),
        (None, true) => (Some("gzip".to_string()), raw_len),
        (None, false) => (None, raw_len),
    };
    let info = AttachmentInfo {
        name: inc.name,
        content_type: inc.content_type,
        digest: staged.digest,
        length,
        revpos: 0,
        encoded_length: encoding.as_ref().map(|_| staged.length),
        encoding,
    };
    let upload = up.id();
    Ok((NewAttachment::Staged { info, upload }, Some(guard)))
}

/// Data received whole: as the client encoded it, or compressed per its type.
fn whole(comp: &Compression, inc: Incoming<'_>, data: Vec<u8>) -> ApiResult<NewAttachment> {
    Ok(match inc.encoded {
        Some((enc, length)) => NewAttachment::Data {
            name: inc.name,
            content_type: inc.content_type,
            data,
            encoding: Some(enc),
            length,
        },
        None => new_data(comp, inc.name, inc.content_type, data)?,
    })
}

/// One piece of a streamed response body.
pub enum Piece {
    /// Bytes as they are.
    Bytes(Vec<u8>),
    /// Stored bytes `from..to` of an attachment, decoded on the way when `gunzip`.
    Att {
        /// Digest of the stored data.
        digest: [u8; 16],
        /// First stored byte.
        from: u64,
        /// End (exclusive).
        to: u64,
        /// Decode gzip data.
        gunzip: bool,
    },
    /// Sends nothing: the `Att` pieces after it read the attachments of this
    /// document (a body that carries several documents, as `_bulk_get`'s).
    Doc(String),
}

/// The number of bytes `pieces` send, when known (nothing is decoded on the way).
pub fn pieces_len(pieces: &[Piece]) -> Option<u64> {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Bytes(b) => Some(b.len() as u64),
            Piece::Doc(_) => Some(0),
            Piece::Att { gunzip: true, .. } => None,
            Piece::Att { from, to, .. } => Some(to - from),
        })
        .sum()
}

/// A response body that sends `pieces` in order, reading attachment data from
/// the shard copies of document `doc_id` (or of the one the last `Piece::Doc`
/// named) a piece at a time.
pub fn stream_body(state: &AppState, db: &str, doc_id: &str, pieces: Vec<Piece>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let coordinator = state.coordinator.clone();
    let (db, doc_id) = (db.to_string(), doc_id.to_string());
    tokio::spawn(async move {
        if let Err(e) = send_pieces(&coordinator, &db, &doc_id, pieces, &tx).await {
            tracing::warn!(db, doc_id, error = %e.reason, "attachment stream failed");
            let _ = tx.send(Err(std::io::Error::other(e.reason))).await;
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

async fn send_pieces(
    coordinator: &Coordinator,
    db: &str,
    doc_id: &str,
    pieces: Vec<Piece>,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> ApiResult<()> {
    let gone = || ApiError::internal("client went away");
    let mut doc_id = doc_id.to_string();
    for piece in pieces {
        let (digest, from, to, gunzip) = match piece {
            Piece::Bytes(b) => {
                tx.send(Ok(Bytes::from(b))).await.map_err(|_| gone())?;
                continue;
            }
            Piece::Doc(id) => {
                doc_id = id;
                continue;
            }
            Piece::Att {
                digest,
                from,
                to,
                gunzip,
            } => (digest, from, to, gunzip),
        };
        let mut decoder = gunzip.then(|| GzDecoder::new(Vec::new()));
        let mut at = from;
        while at < to {
            let len = READ_PIECE.min(to - at);
            let data = coordinator
                .attachment_range(db, &doc_id, digest, at, len)
                .await?
                .filter(|d| !d.is_empty())
                .ok_or_else(|| ApiError::internal("attachment data missing"))?;
            at += data.len() as u64;
            let out = match &mut decoder {
                Some(d) => push(d, |d| std::mem::take(d.get_mut()), &data)?,
                None => data,
            };
            if !out.is_empty() {
                tx.send(Ok(Bytes::from(out))).await.map_err(|_| gone())?;
            }
        }
        if let Some(d) = decoder {
            let rest = d
                .finish()
                .map_err(|e| ApiError::internal(format!("attachment decoding: {e}")))?;
            if !rest.is_empty() {
                tx.send(Ok(Bytes::from(rest))).await.map_err(|_| gone())?;
            }
        }
    }
    Ok(())
}
