//! `GET|POST /{db}/_changes` (normal feed).

use crate::doc_json::{render_doc, RenderOpts, RenderRev};
use crate::error::{ApiError, ApiResult};
use crate::handlers::document::inline_data;
use crate::request::Req;
use crate::response::{json_bytes, push_json, push_str};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaise_cluster::seq::SeqVector;
use chaise_cluster::{ChangesQuery, ChangesRow};
use serde_json::Value;

const FEEDS: [&str; 5] = ["normal", "continuous", "live", "longpoll", "eventsource"];

/// `GET|POST /{db}/_changes`.
pub async fn changes(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    if !matches!(req.method, Method::GET | Method::HEAD | Method::POST) {
        return Err(not_allowed("GET,HEAD,POST"));
    }
    let feed = req.param("feed").unwrap_or("normal");
    if !FEEDS.contains(&feed) {
        return Err(ApiError::bad_request(
            "Supported `feed` types: normal, continuous, live, longpoll, eventsource",
        ));
    }
    let body = if req.method == Method::POST {
        req.require_json()?;
        if req.body.is_empty() {
            None
        } else {
            Some(req.json_object()?)
        }
    } else {
        None
    };
    // chttpd_db:parse_changes_query honours only the exact value "true" for flags.
    let flag = |name: &str| req.param(name) == Some("true");
    let filter = req.param("filter");
    let mut doc_ids = None;
    let mut design_only = false;
    match filter {
        None => {}
        Some("_doc_ids") => {
            let list = match &body {
                Some(b) => b.get("doc_ids").cloned().unwrap_or(Value::Null),
                None => match req.param("doc_ids") {
                    Some(v) => serde_json::from_str(v)
                        .map_err(|_| ApiError::bad_request("invalid UTF-8 JSON"))?,
                    None => Value::Null,
                },
            };
            let ids = list
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|i| i.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| {
                    ApiError::bad_request("`doc_ids` filter parameter is not a list of doc ids.")
                })?;
            doc_ids = Some(ids);
        }
        Some("_design") => design_only = true,
        Some(f) if f.starts_with('_') => {
            return Err(ApiError::bad_request("unknown builtin filter name"))
        }
        Some(_) => return Err(ApiError::not_found("missing")),
    }
    let since = match req.param("since") {
        None | Some("0") => SeqVector::default(),
        Some("now") => state.coordinator.current_seq(ctx.db).await?,
        Some(s) => SeqVector::decode(s).map_err(|e| ApiError::bad_request(e.to_string()))?,
    };
    let limit = req.uint_param("limit")?.map_or(usize::MAX, |l| l as usize);
    let include_docs = flag("include_docs");
    let all_leaves = match req.param("style") {
        None | Some("main_only") => false,
        Some("all_docs") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "Supported `style` values: main_only, all_docs",
            ))
        }
    };
    let opts = RenderOpts {
        conflicts: flag("conflicts"),
        attachments: flag("attachments"),
        att_encoding_info: flag("att_encoding_info"),
        ..Default::default()
    };
    let seq_interval = req.uint_param("seq_interval")?.filter(|n| *n > 0);
    let result = state
        .coordinator
        .changes(
            ctx.db,
            ChangesQuery {
                since,
                limit,
                descending: flag("descending"),
                include_docs,
                doc_ids,
                design_only,
            },
        )
        .await?;
    let mut out = Vec::with_capacity(64 + result.rows.len() * 96);
    // chttpd_db:changes_callback: "{\"results\":[\n", rows joined by ",\n", then
    // "\n],\n\"last_seq\":...".
    out.extend_from_slice(b"{\"results\":[\n");
    let n = result.rows.len();
    for (i, row) in result.rows.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b",\n");
        }
        let show_seq = seq_interval.is_none_or(|k| (i + 1) % (k as usize) == 0 || i + 1 == n);
        render_row(
            state,
            ctx,
            row,
            &opts,
            include_docs,
            all_leaves,
            show_seq,
            &mut out,
        )
        .await?;
    }
    out.extend_from_slice(b"\n],\n\"last_seq\":");
    push_str(&mut out, &result.last_seq);
    out.extend_from_slice(b",\"pending\":");
    out.extend_from_slice(result.pending.to_string().as_bytes());
    out.extend_from_slice(b"}\n");
    Ok(json_bytes(StatusCode::OK, out))
}

#[allow(clippy::too_many_arguments)]
async fn render_row(
    state: &AppState,
    ctx: &DbCtx<'_>,
    row: &ChangesRow,
    opts: &RenderOpts,
    include_docs: bool,
    all_leaves: bool,
    show_seq: bool,
    out: &mut Vec<u8>,
) -> ApiResult<()> {
    out.extend_from_slice(b"{\"seq\":");
    if show_seq {
        push_str(out, &row.seq);
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"id\":");
    push_str(out, &row.id);
    out.extend_from_slice(b",\"changes\":[");
    let leaves = if all_leaves {
        &row.leaves[..]
    } else {
        &row.leaves[..row.leaves.len().min(1)]
    };
    for (i, l) in leaves.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"rev\":");
        push_str(out, &l.rev.to_string());
        out.push(b'}');
    }
    out.push(b']');
    if row.deleted {
        out.extend_from_slice(b",\"deleted\":true");
    }
    if include_docs {
        out.extend_from_slice(b",\"doc\":");
        match (row.leaves.first(), &row.info) {
            (Some(w), Some(info)) => {
                let (body, atts): (&[u8], &[chaise_storage::AttachmentInfo]) = match &row.body {
                    Some(b) => (&b.body, &b.attachments),
                    None => (b"{}", &[]),
                };
                let data = inline_data(state, ctx.db, &row.id, atts, opts).await?;
                render_doc(
                    out,
                    &RenderRev {
                        id: &row.id,
                        rev: &w.rev,
                        deleted: w.deleted,
                        body,
                        attachments: atts,
                        info,
                    },
                    opts,
                    &data,
                );
            }
            _ => push_json(out, &Value::Null),
        }
    }
    out.push(b'}');
    Ok(())
}
