//! MIME multipart as CouchDB speaks it: reading `multipart/related` document
//! uploads (with the `multer` parser) and writing `multipart/related`,
//! `multipart/mixed` and `multipart/byteranges` responses
//! (`couch_doc:doc_to_multi_part_stream`).

use crate::att_data::Piece;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;
use chaise_storage::AttachmentInfo;

/// A fresh random boundary.
pub fn boundary() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The `Content-Type` of a multipart body of `kind` (`related`, `mixed`, ...).
pub fn content_type(kind: &str, boundary: &str) -> String {
    format!("multipart/{kind}; boundary=\"{boundary}\"")
}

/// The media type of a `Content-Type` value, lowercased, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The `boundary` parameter of a `Content-Type` value.
pub fn boundary_of(content_type: &str) -> ApiResult<String> {
    content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ApiError::bad_request("multipart body without a boundary"))
}

/// Whether the request's `Accept` header names this media type.
pub fn accepts(req: &Req, media: &str) -> bool {
    req.header("accept").is_some_and(|a| {
        a.split(',')
            .any(|t| media_type(t).eq_ignore_ascii_case(media))
    })
}

/// A `multer` failure as CouchDB's 400.
pub fn parse_error(e: multer::Error) -> ApiError {
    ApiError::bad_request(format!("malformed multipart body: {e}"))
}

/// One document as `couch_doc:doc_to_multi_part_stream` sends it: its JSON alone
/// when no attachment follows, else a JSON part and one part per attachment in
/// `follows`, closed with `--`. Returns the `Content-Type` of what was written.
/// `encoded` sends gzip-stored data as stored (with `Content-Encoding`).
pub fn doc_parts(
    boundary: &str,
    json: Vec<u8>,
    follows: &[&AttachmentInfo],
    encoded: bool,
    out: &mut Vec<Piece>,
) -> String {
    if follows.is_empty() {
        out.push(Piece::Bytes(json));
        return "application/json".into();
    }
    let mut head = format!("--{boundary}\r\nContent-Type: application/json\r\n\r\n").into_bytes();
    head.extend_from_slice(&json);
    head.extend_from_slice(format!("\r\n--{boundary}").as_bytes());
    out.push(Piece::Bytes(head));
    for a in follows {
        let stored = a.encoded_length.unwrap_or(a.length);
        let send_encoded = encoded && a.encoding.is_some();
        let mut h = format!(
            "\r\nContent-Disposition: attachment; filename=\"{}\"\r\nContent-Type: {}\r\nContent-Length: {}",
            a.name.replace('"', "\\\""),
            a.content_type,
            if send_encoded { stored } else { a.length }
        );
        if let (true, Some(enc)) = (send_encoded, &a.encoding) {
            h.push_str(&format!("\r\nContent-Encoding: {enc}"));
        }
        h.push_str("\r\n\r\n");
        out.push(Piece::Bytes(h.into_bytes()));
        out.push(Piece::Att {
            digest: a.digest,
            from: 0,
            to: stored,
            gunzip: a.encoding.as_deref() == Some("gzip") && !send_encoded,
        });
        out.push(Piece::Bytes(format!("\r\n--{boundary}").into_bytes()));
    }
    out.push(Piece::Bytes(b"--".to_vec()));
    content_type("related", boundary)
}
