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

/// Whether the request's `Accept` header names this media type (literally: no
/// wildcards, no q-values; a missing header names nothing).
pub fn accepts(req: &Req, media: &str) -> bool {
    req.header("accept").is_some_and(|a| {
        a.split(',')
            .any(|t| media_type(t).eq_ignore_ascii_case(media))
    })
}

/// Whether the request accepts this media type as mochiweb's
/// `accepts_content_type` decides (what CouchDB asks before choosing a response
/// format): a missing `Accept` header is `*/*`; `*/*` and `type/*` match when
/// their q-value is above 0, and an explicit `q=0` for the type (or `type/*`)
/// refuses it. An unparsable header accepts nothing.
pub fn accepts_content_type(req: &Req, media: &str) -> bool {
    let header = req.header("accept").unwrap_or("*/*").to_ascii_lowercase();
    let Some(qvalues) = parse_qvalues(&header) else {
        return false;
    };
    let media = media.to_ascii_lowercase();
    let super_type = format!("{}/*", media.split('/').next().unwrap_or(""));
    let refused = |t: &str| qvalues.iter().any(|(m, q)| m == t && *q == 0.0);
    qvalues
        .iter()
        .any(|(m, q)| *q > 0.0 && (m == "*/*" || *m == media || *m == super_type))
        && !refused(&media)
        && !refused(&super_type)
}

/// `mochiweb_util:parse_qvalues` on a lowercased header: each element's media
/// type (with its parameters other than `q`, whitespace removed, joined by `;`)
/// and its q-value (1 when absent). `None` when a parameter is not `name=value`
/// or a q-value is not `0`/`1` with at most three decimals.
fn parse_qvalues(header: &str) -> Option<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for element in header.split(',').filter(|e| !e.is_empty()) {
        let mut tokens = element.split(';').filter(|t| !t.is_empty());
        let Some(media) = tokens.next() else {
            continue;
        };
        let mut name = media.trim().to_string();
        let mut q = 1.0;
        for param in tokens {
            let param: String = param.chars().filter(|c| !c.is_whitespace()).collect();
            match param.split_once('=') {
                Some((k, v)) if k.is_empty() || v.is_empty() || v.contains('=') => return None,
                Some(("q", v)) => q = parse_q(v)?,
                Some(_) => {
                    name.push(';');
                    name.push_str(&param);
                }
                None => return None,
            }
        }
        out.push((name, q));
    }
    Some(out)
}

/// A q-value as mochiweb reads it: `0` or `1`, optionally with 1 to 3 decimals.
fn parse_q(v: &str) -> Option<f64> {
    let (int, frac) = v.split_once('.').unwrap_or((v, "0"));
    let ok = matches!(int, "0" | "1")
        && (1..=3).contains(&frac.len())
        && frac.bytes().all(|b| b.is_ascii_digit());
    let q: f64 = v.parse().ok().filter(|_| ok)?;
    (q <= 1.0).then_some(q)
}

/// A `multer` failure as CouchDB's 400.
pub fn parse_error(e: multer::Error) -> ApiError {
    ApiError::bad_request(format!("malformed multipart body: {e}"))
}

/// How [`doc_parts`] wrote a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocBody {
    /// The JSON document alone: no attachment follows.
    Json,
    /// A `multipart/related` body: the JSON document, then one part per attachment.
    Related,
}

impl DocBody {
    /// The `Content-Type` of the body as `couch_doc:len_doc_to_multi_part_stream`
    /// gives it (`boundary` is the one the parts were written with).
    pub fn content_type(self, boundary: &str) -> String {
        match self {
            DocBody::Json => "application/json".into(),
            DocBody::Related => content_type("related", boundary),
        }
    }
}

/// One document as `couch_doc:doc_to_multi_part_stream` sends it: its JSON alone
/// when no attachment follows, else a JSON part and one part per attachment in
/// `follows`, closed with `--`. Returns which of the two was written.
/// `encoded` sends gzip-stored data as stored (with `Content-Encoding`).
pub fn doc_parts(
    boundary: &str,
    json: Vec<u8>,
    follows: &[&AttachmentInfo],
    encoded: bool,
    out: &mut Vec<Piece>,
) -> DocBody {
    if follows.is_empty() {
        out.push(Piece::Bytes(json));
        return DocBody::Json;
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
    DocBody::Related
}
