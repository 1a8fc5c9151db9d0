//! Document endpoints: `GET|HEAD|PUT|DELETE|COPY /{db}/{docid}`, `_design/` and
//! `_local/` documents, and the write path shared with `POST /{db}`.

use crate::doc_json::{
    self, parse_rev, render_doc, render_local, ParsedDoc, RenderOpts, RenderRev,
};
use crate::error::{doc_error_code, ApiError, ApiResult};
use crate::handlers::users;
use crate::request::Req;
use crate::response::{empty, head_of, json, json_bytes, with_header};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaise_cluster::{OpenedDoc, RevSelector};
use chaise_storage::{DocError, NewAttachment, Rev};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Dispatches a request on a regular or design document.
pub async fn handle(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    match req.method {
        Method::GET => get(state, req, ctx, id).await,
        Method::HEAD => Ok(head_of(get(state, req, ctx, id).await?)),
        Method::PUT => put(state, req, ctx, id).await,
        Method::DELETE => delete(state, req, ctx, id).await,
        ref m if m.as_str() == "COPY" => copy(state, req, ctx, id).await,
        _ => Err(not_allowed("GET,HEAD,PUT,DELETE,COPY")),
    }
}

/// Render options from the query string.
pub fn render_opts(req: &Req) -> ApiResult<RenderOpts> {
    let meta = req.bool_param("meta", false)?;
    let atts_since = match req.json_param("atts_since")? {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|r| {
                    r.as_str()
                        .ok_or_else(|| ApiError::bad_request("Invalid rev format"))
                        .and_then(parse_rev)
                })
                .collect::<ApiResult<Vec<_>>>()?,
        ),
        Some(_) => return Err(ApiError::bad_request("atts_since must be a list of revs")),
    };
    Ok(RenderOpts {
        revs: req.bool_param("revs", false)?,
        revs_info: meta || req.bool_param("revs_info", false)?,
        conflicts: meta || req.bool_param("conflicts", false)?,
        deleted_conflicts: meta || req.bool_param("deleted_conflicts", false)?,
        local_seq: req.bool_param("local_seq", false)?,
        attachments: req.bool_param("attachments", false)? || atts_since.is_some(),
        atts_since,
        att_encoding_info: req.bool_param("att_encoding_info", false)?,
    })
}

/// Fetches the data of the attachments that `opts` inlines.
pub async fn inline_data(
    state: &AppState,
    db: &str,
    id: &str,
    atts: &[chaise_storage::AttachmentInfo],
    opts: &RenderOpts,
) -> ApiResult<HashMap<[u8; 16], Vec<u8>>> {
    let mut data = HashMap::new();
    for a in atts.iter().filter(|a| opts.inline(a)) {
        if let Some(bytes) = state.coordinator.attachment_data(db, id, a.digest).await? {
            data.insert(a.digest, bytes);
        }
    }
    Ok(data)
}

/// Renders one opened revision (with its attachments' data when asked).
pub async fn render_rev(
    state: &AppState,
    db: &str,
    id: &str,
    doc: &OpenedDoc,
    rev: &chaise_cluster::OpenedRev,
    opts: &RenderOpts,
    out: &mut Vec<u8>,
) -> ApiResult<()> {
    let (body, atts): (&[u8], &[chaise_storage::AttachmentInfo]) = match &rev.body {
        Some(b) => (&b.body, &b.attachments),
        None => (b"{}", &[]),
    };
    let data = inline_data(state, db, id, atts, opts).await?;
    render_doc(
        out,
        &RenderRev {
            id,
            rev: &rev.rev,
            deleted: rev.deleted,
            body,
            attachments: atts,
            info: &doc.info,
        },
        opts,
        &data,
    );
    Ok(())
}

fn open_revs_param(req: &Req) -> ApiResult<Option<RevSelector>> {
    let Some(raw) = req.param("open_revs") else {
        return Ok(None);
    };
    let latest = req.bool_param("latest", false)?;
    if raw == "all" {
        return Ok(Some(RevSelector::AllLeaves));
    }
    let list: Value = serde_json::from_str(raw)
        .map_err(|_| ApiError::bad_request("Invalid JSON in open_revs"))?;
    let revs = list
        .as_array()
        .ok_or_else(|| ApiError::bad_request("open_revs must be a list of revs or \"all\""))?
        .iter()
        .map(|r| {
            r.as_str()
                .ok_or_else(|| ApiError::bad_request("Invalid rev format"))
                .and_then(parse_rev)
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Some(RevSelector::Revs { revs, latest }))
}

async fn get(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    let opts = render_opts(req)?;
    if let Some(sel) = open_revs_param(req)? {
        let all = matches!(sel, RevSelector::AllLeaves);
        let requested: Vec<Rev> = match &sel {
            RevSelector::Revs { revs, .. } => revs.clone(),
            _ => Vec::new(),
        };
        let opened = state.coordinator.open_doc(ctx.db, id, sel).await?;
        let mut out = b"[".to_vec();
        match opened {
            None if all => return Err(ApiError::not_found("missing")),
            None => {
                for (i, r) in requested.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(
                        &serde_json::to_vec(&json!({"missing": r.to_string()})).unwrap_or_default(),
                    );
                }
            }
            Some(doc) => {
                for (i, r) in doc.revs.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    match r {
                        Ok(rev) if rev.body.is_some() || rev.deleted => {
                            out.extend_from_slice(b"{\"ok\":");
                            render_rev(state, ctx.db, id, &doc, rev, &opts, &mut out).await?;
                            out.push(b'}');
                        }
                        Ok(rev) => out.extend_from_slice(
                            &serde_json::to_vec(&json!({"missing": rev.rev.to_string()}))
                                .unwrap_or_default(),
                        ),
                        Err(rev) => out.extend_from_slice(
                            &serde_json::to_vec(&json!({"missing": rev.to_string()}))
                                .unwrap_or_default(),
                        ),
                    }
                }
            }
        }
        out.extend_from_slice(b"]\n");
        return Ok(json_bytes(StatusCode::OK, out));
    }
    let wanted = match req.param("rev") {
        Some(r) => Some(parse_rev(r)?),
        None => None,
    };
    let sel = match &wanted {
        Some(rev) => RevSelector::Rev {
            rev: rev.clone(),
            latest: req.bool_param("latest", false)?,
        },
        None => RevSelector::Winner,
    };
    let doc = state
        .coordinator
        .open_doc(ctx.db, id, sel)
        .await?
        .ok_or_else(|| ApiError::not_found("missing"))?;
    let rev = match doc.revs.first() {
        Some(Ok(r)) => r.clone(),
        _ => return Err(ApiError::not_found("missing")),
    };
    if wanted.is_none() && rev.deleted {
        return Err(ApiError::not_found("deleted"));
    }
    if rev.body.is_none() && !rev.deleted {
        return Err(ApiError::not_found("missing"));
    }
    let plain = !(opts.revs
        || opts.revs_info
        || opts.conflicts
        || opts.deleted_conflicts
        || opts.local_seq
        || opts.attachments);
    let etag = format!("\"{}\"", rev.rev);
    if plain && if_none_match(req, &etag) {
        return Ok(with_header(empty(StatusCode::NOT_MODIFIED), "etag", &etag));
    }
    let mut out = Vec::with_capacity(256);
    render_rev(state, ctx.db, id, &doc, &rev, &opts, &mut out).await?;
    out.push(b'\n');
    let resp = json_bytes(StatusCode::OK, out);
    Ok(if plain {
        with_header(resp, "etag", &etag)
    } else {
        resp
    })
}

/// Whether `If-None-Match` names this ETag.
pub fn if_none_match(req: &Req, etag: &str) -> bool {
    req.header("if-none-match")
        .is_some_and(|h| h.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// The revision a write names in `?rev=`, the body's `_rev` and `If-Match`; they
/// must agree.
fn agreed_rev(req: &Req, body_rev: Option<Rev>) -> ApiResult<Option<Rev>> {
    let query = req.param("rev").map(parse_rev).transpose()?;
    let if_match = req
        .header("if-match")
        .map(|h| parse_rev(h.trim().trim_matches('"')))
        .transpose()?;
    let rev = match (query, body_rev) {
        (Some(q), Some(b)) if q != b => {
            return Err(ApiError::bad_request(
                "Document rev from request body and query string have different values",
            ))
        }
        (q, b) => q.or(b),
    };
    match (rev, if_match) {
        (Some(r), Some(m)) if r != m => Err(ApiError::bad_request(
            "Document rev and etag have different values",
        )),
        (r, m) => Ok(r.or(m)),
    }
}

fn w_param(req: &Req) -> ApiResult<Option<usize>> {
    Ok(req.uint_param("w")?.map(|w| w as usize))
}

async fn put(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    let body = req.json_object()?;
    let mut parsed = doc_json::parse_doc(body)?;
    let new_edits = req.bool_param("new_edits", true)?;
    if new_edits {
        parsed.rev = agreed_rev(req, parsed.rev.take())?;
    }
    save(state, req, ctx, parsed, id.to_string(), new_edits).await
}

async fn delete(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    let rev = agreed_rev(req, None)?;
    let Some(rev) = rev else {
        return Err(ApiError::conflict());
    };
    let parsed = ParsedDoc {
        rev: Some(rev),
        deleted: true,
        body: b"{}".to_vec(),
        ..Default::default()
    };
    save(state, req, ctx, parsed, id.to_string(), true).await
}

async fn copy(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    let dest = req
        .header("destination")
        .ok_or_else(|| ApiError::bad_request("Destination header is mandatory for COPY."))?;
    let (dest_id, dest_rev) = match dest.split_once("?rev=") {
        Some((d, r)) => (d.to_string(), Some(parse_rev(r)?)),
        None => (dest.to_string(), None),
    };
    let dest_id = percent_encoding::percent_decode_str(&dest_id)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("Destination is not valid UTF-8"))?
        .into_owned();
    let sel = match req.param("rev") {
        Some(r) => RevSelector::Rev {
            rev: parse_rev(r)?,
            latest: false,
        },
        None => RevSelector::Winner,
    };
    let doc = state
        .coordinator
        .open_doc(ctx.db, id, sel)
        .await?
        .ok_or_else(|| ApiError::not_found("missing"))?;
    let src = match doc.revs.first() {
        Some(Ok(r)) if !r.deleted && r.body.is_some() => r.clone(),
        _ => return Err(ApiError::not_found("missing")),
    };
    let body = src.body.unwrap_or_else(|| chaise_storage::RevBody {
        body: b"{}".to_vec(),
        attachments: Vec::new(),
    });
    let mut attachments = Vec::with_capacity(body.attachments.len());
    for a in &body.attachments {
        let data = state
            .coordinator
            .attachment_data(ctx.db, id, a.digest)
            .await?
            .ok_or_else(|| ApiError::internal("attachment data missing"))?;
        attachments.push(NewAttachment::Data {
            name: a.name.clone(),
            content_type: a.content_type.clone(),
            data,
        });
    }
    let parsed = ParsedDoc {
        rev: dest_rev,
        body: body.body,
        attachments,
        ..Default::default()
    };
    save(state, req, ctx, parsed, dest_id, true).await
}

/// Writes one document and answers as CouchDB does (201/202/200, ETag, Location).
pub async fn save(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    mut parsed: ParsedDoc,
    id: String,
    new_edits: bool,
) -> ApiResult<Response> {
    doc_json::validate_doc_id(&id)?;
    if id.starts_with("_local/") {
        return write_local(state, ctx, &id, parsed).await;
    }
    if id.starts_with("_design/") {
        ctx.require_admin(&req.user)?;
    }
    if ctx.db == users::USERS_DB {
        users::hash_password(state, &mut parsed);
    }
    let max = state.config_u64("couchdb", "max_document_size", 8_000_000) as usize;
    if parsed.body.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "document_too_large",
            id,
        ));
    }
    let deleted = parsed.deleted;
    let batch = req.param("batch") == Some("ok");
    let update = doc_json::to_update(parsed, id.clone(), new_edits)?;
    let w = w_param(req)?;
    let result = state
        .coordinator
        .update_docs(ctx.db, vec![update], w)
        .await?
        .pop()
        .ok_or_else(|| ApiError::internal("no write result"))?;
    let rev = result.result.map_err(ApiError::from)?;
    if batch {
        return Ok(json(StatusCode::ACCEPTED, &json!({"ok": true, "id": id})));
    }
    let status = if result.accepted {
        StatusCode::ACCEPTED
    } else if deleted {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let rev_s = rev.to_string();
    let resp = json(status, &json!({"ok": true, "id": id, "rev": rev_s}));
    let resp = with_header(resp, "etag", &format!("\"{rev_s}\""));
    Ok(with_header(
        resp,
        "location",
        &format!("/{}/{}", ctx.db, id),
    ))
}

fn local_rev(rev: Option<&Rev>) -> ApiResult<Option<u64>> {
    match rev {
        None => Ok(None),
        Some(r) if r.pos == 0 => {
            r.id.parse::<u64>()
                .map(Some)
                .map_err(|_| ApiError::bad_request("Invalid rev format"))
        }
        Some(_) => Err(ApiError::conflict()),
    }
}

async fn write_local(
    state: &AppState,
    ctx: &DbCtx<'_>,
    id: &str,
    parsed: ParsedDoc,
) -> ApiResult<Response> {
    if !parsed.attachments.is_empty() {
        return Err(ApiError::bad_request(
            "_local documents do not accept attachments.",
        ));
    }
    let rev = local_rev(parsed.rev.as_ref())?;
    let body = (!parsed.deleted).then_some(parsed.body);
    let deleting = body.is_none();
    match state.coordinator.write_local(ctx.db, id, rev, body).await? {
        Ok(n) => {
            let status = if deleting {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(json(
                status,
                &json!({"ok": true, "id": id, "rev": format!("0-{n}")}),
            ))
        }
        Err(DocError::NotFound) => Err(ApiError::not_found("missing")),
        Err(e) => {
            let (status, error) = doc_error_code(&e);
            Err(ApiError::new(status, error, e.to_string()))
        }
    }
}

/// Requests on `/{db}/_local/{id}`.
pub async fn local(state: &AppState, req: &Req, ctx: &DbCtx<'_>, id: &str) -> ApiResult<Response> {
    match req.method {
        Method::GET | Method::HEAD => {
            let doc = state
                .coordinator
                .get_local(ctx.db, id)
                .await?
                .ok_or_else(|| ApiError::not_found("missing"))?;
            let mut out = Vec::new();
            render_local(&mut out, id, doc.rev, &doc.body);
            out.push(b'\n');
            let resp = json_bytes(StatusCode::OK, out);
            Ok(if req.method == Method::HEAD {
                head_of(resp)
            } else {
                resp
            })
        }
        Method::PUT => {
            let mut parsed = doc_json::parse_doc(req.json_object()?)?;
            parsed.rev = agreed_rev(req, parsed.rev.take())?;
            write_local(state, ctx, id, parsed).await
        }
        Method::DELETE => {
            let rev = agreed_rev(req, None)?;
            let parsed = ParsedDoc {
                rev,
                deleted: true,
                ..Default::default()
            };
            write_local(state, ctx, id, parsed).await
        }
        _ => Err(not_allowed("GET,HEAD,PUT,DELETE")),
    }
}
