//! Standalone attachments: `GET|HEAD|PUT|DELETE /{db}/{docid}/{attname}`.

use crate::doc_json::{self, parse_rev, ParsedDoc};
use crate::error::{ApiError, ApiResult};
use crate::handlers::document::{agreed_rev, if_none_match, url_encode, write, Saved};
use crate::request::Req;
use crate::response::{empty, head_of, with_header};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chaise_cluster::RevSelector;
use chaise_storage::{NewAttachment, Rev, RevBody};

/// Dispatches an attachment request.
pub async fn handle(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    id: &str,
    name: &str,
) -> ApiResult<Response> {
    match req.method {
        Method::GET => get(state, req, ctx, id, name).await,
        Method::HEAD => Ok(head_of(get(state, req, ctx, id, name).await?)),
        Method::PUT => {
            let content_type = req
                .header("content-type")
                .unwrap_or("application/octet-stream")
                .to_string();
            let data = req.body.to_vec();
            let max = state.config_u64("couchdb", "max_attachment_size", 1_073_741_824);
            if data.len() as u64 > max {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "attachment_too_large",
                    format!("{id}/{name}"),
                ));
            }
            let new = NewAttachment::Data {
                name: name.to_string(),
                content_type,
                data,
            };
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
) -> ApiResult<Option<(Rev, bool, RevBody)>> {
    let sel = match rev {
        Some(rev) => RevSelector::Rev { rev, latest: false },
        None => RevSelector::Winner,
    };
    let Some(doc) = state.coordinator.open_doc(ctx.db, id, sel).await? else {
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
    let (_, deleted, body) = open(state, ctx, id, rev)
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
    let data = state
        .coordinator
        .attachment_data(ctx.db, id, att.digest)
        .await?
        .ok_or_else(|| ApiError::internal("attachment data missing"))?;
    let resp = Response::new(Body::from(data));
    let resp = with_header(resp, "content-type", &att.content_type);
    let resp = with_header(resp, "etag", &etag);
    let resp = with_header(resp, "content-md5", &STANDARD.encode(att.digest));
    let resp = with_header(resp, "cache-control", "must-revalidate");
    Ok(with_header(resp, "accept-ranges", "none"))
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
                let doc = state
                    .coordinator
                    .open_doc(ctx.db, id, RevSelector::Winner)
                    .await?
                    .ok_or_else(|| ApiError::not_found("missing"))?;
                match doc.revs.into_iter().next() {
                    Some(Ok(r)) if r.deleted => return Err(ApiError::not_found("deleted")),
                    Some(Ok(r)) => {
                        let atts = r.body.map(|b| b.attachments).unwrap_or_default();
                        if !atts.iter().any(|a| a.name == name) {
                            return Err(missing_att());
                        }
                    }
                    _ => return Err(ApiError::not_found("missing")),
                }
            }
            (b"{}".to_vec(), Vec::new())
        }
        Some(r) => {
            // The revision must be one the database can open (else 409 missing_rev).
            let (_, _, parent) = open(state, ctx, id, Some(r.clone()))
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
