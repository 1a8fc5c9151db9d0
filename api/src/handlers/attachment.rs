//! Standalone attachments: `GET|HEAD|PUT|DELETE /{db}/{docid}/{attname}`.

use crate::att_data::{pieces_len, receive, stream_body, Compression, Incoming, Piece};
use crate::doc_json::{self, parse_rev, ParsedDoc};
use crate::error::{ApiError, ApiResult};
use crate::handlers::document::{
    agreed_rev, if_none_match, open_winner, r_param, url_encode, write, Saved,
};
use crate::handlers::users;
use crate::multipart;
use crate::request::Req;
use crate::response::{empty, head_of, with_header};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chaise_cluster::RevSelector;
use chaise_storage::{AttachmentInfo, NewAttachment, Rev, RevBody};

/// Dispatches an attachment request.
pub async fn handle(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    id: &str,
    name: &str,
) -> ApiResult<Response> {
    // A user document's attachments are its user's (and the admins'), like the
    // document itself.
    if ctx.db == users::USERS_DB {
        users::check_read(ctx, &req.user, id)?;
    }
    match req.method {
        Method::GET => get(state, req, ctx, id, name).await,
        Method::HEAD => Ok(head_of(get(state, req, ctx, id, name).await?)),
        Method::PUT => {
            doc_json::validate_attachment_name(name)?;
            let content_type = req
                .header("content-type")
                .unwrap_or("application/octet-stream")
                .to_string();
            let max = state.config_u64("couchdb", "max_attachment_size", 1_073_741_824);
            let declared = req
                .header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > max) {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "attachment_too_large",
                    format!("{id}/{name}"),
                ));
            }
            let incoming = Incoming {
                db: ctx.db,
                doc_id: id,
                name: name.to_string(),
                content_type,
                encoded: None,
                max,
            };
            let comp = Compression::from_config(state);
            let (new, _guard) = receive(state, &comp, incoming, req.take_stream()).await?;
            edit(state, req, ctx, id, name, Some(new)).await
        }
        Method::DELETE => edit(state, req, ctx, id, name, None).await,
        _ => Err(not_allowed("DELETE,GET,HEAD,PUT")),
    }
}

async fn open(
    state: &AppState,
    ctx: &DbCtx<'_>,
    id: &str,
    rev: Option<Rev>,
    r: Option<usize>,
) -> ApiResult<Option<(Rev, bool, RevBody)>> {
    let sel = match rev {
        Some(rev) => RevSelector::Rev { rev, latest: false },
        None => RevSelector::Winner,
    };
    let Some(doc) = state.coordinator.open_doc_r(ctx.db, id, sel, r).await? else {
        return Ok(None);
    };
    Ok(match doc.revs.into_iter().next() {
        Some(Ok(r)) => r.body.map(|b| (r.rev, r.deleted, b)),
        _ => None,
    })
}

async fn get(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    id: &str,
    name: &str,
) -> ApiResult<Response> {
    let rev = req.param("rev").map(parse_rev).transpose()?;
    let explicit = rev.is_some();
    let (_, deleted, body) = open(state, ctx, id, rev, r_param(req)?)
        .await?
        .ok_or_else(|| ApiError::not_found("missing"))?;
    if deleted && !explicit {
        return Err(ApiError::not_found("deleted"));
    }
    let att = body
        .attachments
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::not_found("Document is missing attachment"))?;
    let etag = format!("\"{}\"", STANDARD.encode(att.digest));
    if if_none_match(req, &etag) {
        return Ok(with_header(empty(StatusCode::NOT_MODIFIED), "etag", &etag));
    }
    let encoded = att.encoding.is_some();
    let send_encoded = encoded && accepts_gzip(req);
    let stored = att.encoded_length.unwrap_or(att.length);
    let whole = |send: bool| -> Piece {
        Piece::Att {
            digest: att.digest,
            from: 0,
            to: stored,
            gunzip: encoded && !send,
        }
    };
    let ranges = if encoded {
        None
    } else {
        req.header("range")
            .and_then(|r| parse_ranges(r, att.length))
    };
    let (status, pieces, length, content_type) = match ranges {
        None => {
            let length = if send_encoded { stored } else { att.length };
            (
                StatusCode::OK,
                vec![whole(send_encoded)],
                length,
                att.content_type.clone(),
            )
        }
        Some(Err(())) => {
            let e = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "requested_range_not_satisfiable",
                "Requested range not satisfiable",
            );
            return Err(e.with_header("content-range", format!("bytes */{}", att.length)));
        }
        Some(Ok(ranges)) if ranges.len() == 1 => {
            let (from, to) = ranges[0];
            let piece = Piece::Att {
                digest: att.digest,
                from,
                to: to + 1,
                gunzip: false,
            };
            (
                StatusCode::PARTIAL_CONTENT,
                vec![piece],
                to + 1 - from,
                att.content_type.clone(),
            )
        }
        Some(Ok(ranges)) => {
            let (pieces, length, ct) = byteranges(att, &ranges);
            (StatusCode::PARTIAL_CONTENT, pieces, length, ct)
        }
    };
    let single_range = status == StatusCode::PARTIAL_CONTENT && pieces.len() == 1;
    let content_range = match (single_range, pieces.first()) {
        (true, Some(Piece::Att { from, to, .. })) => {
            Some(format!("bytes {from}-{}/{}", to - 1, att.length))
        }
        _ => None,
    };
    let mut resp = Response::new(stream_body(state, ctx.db, id, pieces));
    *resp.status_mut() = status;
    let mut resp = with_header(resp, "content-type", &content_type);
    resp = with_header(resp, "content-length", &length.to_string());
    resp = with_header(resp, "etag", &etag);
    resp = with_header(resp, "cache-control", "must-revalidate");
    resp = with_header(
        resp,
        "accept-ranges",
        if encoded { "none" } else { "bytes" },
    );
    if let Some(cr) = content_range {
        resp = with_header(resp, "content-range", &cr);
    }
    if status == StatusCode::OK && (send_encoded || !encoded) {
        resp = with_header(resp, "content-md5", &STANDARD.encode(att.digest));
    }
    if send_encoded {
        resp = with_header(resp, "content-encoding", "gzip");
    }
    Ok(resp)
}

/// Whether the client takes gzip-encoded bodies (`Accept-Encoding`, with a
/// non-zero quality).
fn accepts_gzip(req: &Req) -> bool {
    req.header("accept-encoding").is_some_and(|h| {
        h.split(',').any(|t| {
            let mut parts = t.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    == Some(0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
    })
}

/// Most ranges served as `multipart/byteranges`; more get the whole data, as in
/// CouchDB.
const MAX_RANGES: usize = 10;

/// A `Range` header over data of `len` bytes, as CouchDB's `parse_ranges`:
/// `None` to send the whole data (no usable header, `bytes=0-`, too many
/// ranges), `Err` for 416, else inclusive `(from, to)` pairs.
fn parse_ranges(header: &str, len: u64) -> Option<Result<Vec<(u64, u64)>, ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    let mut raw: Vec<(Option<u64>, Option<u64>)> = Vec::new();
    for r in spec.split(',') {
        let (a, b) = r.trim().split_once('-')?;
        let num = |s: &str| -> Option<Option<u64>> {
            let s = s.trim();
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let (a, b) = (num(a)?, num(b)?);
        if a.is_none() && b.is_none() {
            return None;
        }
        raw.push((a, b));
    }
    if raw.first() == Some(&(Some(0), None)) || raw.len() >= MAX_RANGES {
        return None;
    }
    let last = len.checked_sub(1);
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let (from, to) = match r {
            (Some(f), Some(t)) => (f, t),
            (None, Some(suffix)) => (len.saturating_sub(suffix), last.unwrap_or(0)),
            (Some(f), None) => (f, last.unwrap_or(0)),
            (None, None) => return None,
        };
        let Some(last) = last else {
            return Some(Err(()));
        };
        let to = to.min(last);
        if to < from {
            return Some(Err(()));
        }
        out.push((from, to));
    }
    Some(Ok(out))
}

/// A `multipart/byteranges` body (as CouchDB's `send_ranges_multipart`): its
/// pieces, length and content type.
fn byteranges(att: &AttachmentInfo, ranges: &[(u64, u64)]) -> (Vec<Piece>, u64, String) {
    let b = multipart::boundary();
    let mut pieces = vec![Piece::Bytes(format!("--{b}").into_bytes())];
    for &(from, to) in ranges {
        pieces.push(Piece::Bytes(
            format!(
                "\r\nContent-Type: {}\r\nContent-Range: bytes {from}-{to}/{}\r\n\r\n",
                att.content_type, att.length
            )
            .into_bytes(),
        ));
        pieces.push(Piece::Att {
            digest: att.digest,
            from,
            to: to + 1,
            gunzip: false,
        });
        pieces.push(Piece::Bytes(format!("\r\n--{b}").into_bytes()));
    }
    pieces.push(Piece::Bytes(b"--".to_vec()));
    let length = pieces_len(&pieces).unwrap_or(0);
    (pieces, length, multipart::content_type("byteranges", &b))
}

/// Writes a new revision with attachment `name` replaced (`Some`) or removed, as
/// `chttpd_db:db_attachment_req` does.
async fn edit(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    id: &str,
    name: &str,
    new: Option<NewAttachment>,
) -> ApiResult<Response> {
    doc_json::validate_attachment_name(name)?;
    let deleting = new.is_none();
    let missing_att = || ApiError::not_found("Document is missing attachment");
    let rev = agreed_rev(req, None)?;
    let (body, mut attachments) = match &rev {
        None => {
            // A new document; deleting needs the document and the attachment to
            // exist (and then conflicts for want of a rev).
            if deleting {
                let r = open_winner(state, ctx, id).await?;
                let atts = r.body.map(|b| b.attachments).unwrap_or_default();
                if !atts.iter().any(|a| a.name == name) {
                    return Err(missing_att());
                }
            }
            (b"{}".to_vec(), Vec::new())
        }
        Some(r) => {
            // The revision must be one the database can open (else 409 missing_rev).
            let (_, _, parent) = open(state, ctx, id, Some(r.clone()), None)
                .await?
                .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "not_found", "missing_rev"))?;
            if deleting && !parent.attachments.iter().any(|a| a.name == name) {
                return Err(missing_att());
            }
            let stubs: Vec<NewAttachment> = parent
                .attachments
                .iter()
                .filter(|a| a.name != name)
                .map(|a| NewAttachment::Stub {
                    name: a.name.clone(),
                    info: None,
                })
                .collect();
            (parent.body, stubs)
        }
    };
    attachments.splice(0..0, new);
    let parsed = ParsedDoc {
        rev,
        body,
        attachments,
        ..Default::default()
    };
    let saved = write(state, req, ctx, parsed, id.to_string(), true).await?;
    if deleting {
        let saved = Saved {
            status: StatusCode::OK,
            ..saved
        };
        return Ok(saved.response(false, None));
    }
    let location = req.absolute_uri(&format!(
        "/{}/{}/{}",
        ctx.db,
        url_encode(id),
        url_encode(name)
    ))?;
    Ok(saved.response(false, Some(&location)))
}
