//! `_all_docs`, `_design_docs`, `_local_docs` and their `/queries` forms.

use crate::doc_json::{render_doc, render_local, RenderOpts, RenderRev};
use crate::error::{ApiError, ApiResult};
use crate::handlers::document::inline_data;
use crate::request::{parse_bool, Req};
use crate::response::{json_bytes, push_json, push_str};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaise_cluster::{AllDocsQuery, AllDocsRow};
use chaise_storage::AllDocsRange;
use serde_json::{json, Value};

/// Which id space a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every document.
    All,
    /// `_design/` documents.
    Design,
    /// `_local/` documents.
    Local,
}

/// View-style query parameters of one listing.
#[derive(Debug, Default)]
struct Params {
    keys: Option<Vec<Value>>,
    start: Option<Value>,
    end: Option<Value>,
    inclusive_end: bool,
    descending: bool,
    limit: usize,
    skip: usize,
    include_docs: bool,
    update_seq: bool,
    opts: RenderOpts,
}

fn query_error(reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "query_parse_error", reason)
}

/// Reads parameters from name/value pairs whose values are query-string text.
fn parse_params(pairs: &[(String, String)]) -> ApiResult<Params> {
    let get = |n: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let json_of = |n: &str| -> ApiResult<Option<Value>> {
        get(n)
            .map(|v| {
                serde_json::from_str(v)
                    .map_err(|_| query_error(format!("Invalid value for `{n}`: {v}")))
            })
            .transpose()
    };
    let boolean = |n: &str, d: bool| get(n).map_or(Ok(d), |v| parse_bool(n, v));
    let uint = |n: &str| -> ApiResult<Option<usize>> {
        get(n)
            .map(|v| {
                v.parse::<usize>().map_err(|_| {
                    query_error(format!("Invalid value for positive integer: \"{v}\""))
                })
            })
            .transpose()
    };
    let key = json_of("key")?;
    let keys = match json_of("keys")? {
        None => None,
        Some(Value::Array(a)) => Some(a),
        Some(_) => return Err(query_error("`keys` must be an array")),
    };
    let start = json_of("startkey")?.or(json_of("start_key")?);
    let end = json_of("endkey")?.or(json_of("end_key")?);
    if keys.is_some() && (key.is_some() || start.is_some() || end.is_some()) {
        return Err(query_error(
            "`keys` is incompatible with `key`, `start_key` and `end_key`",
        ));
    }
    let (start, end) = match key {
        Some(k) => (Some(k.clone()), Some(k)),
        None => (start, end),
    };
    let meta = boolean("meta", false)?;
    Ok(Params {
        keys,
        start,
        end,
        inclusive_end: boolean("inclusive_end", true)?,
        descending: boolean("descending", false)?,
        limit: uint("limit")?.unwrap_or(usize::MAX),
        skip: uint("skip")?.unwrap_or(0),
        include_docs: boolean("include_docs", false)?,
        update_seq: boolean("update_seq", false)?,
        opts: RenderOpts {
            conflicts: meta || boolean("conflicts", false)?,
            attachments: boolean("attachments", false)?,
            att_encoding_info: boolean("att_encoding_info", false)?,
            ..Default::default()
        },
    })
}

/// Turns a JSON query object (`/queries`, POST bodies) into query-string pairs.
fn pairs_of(obj: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    obj.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) if !is_json_param(k) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

fn is_json_param(k: &str) -> bool {
    matches!(
        k,
        "key" | "keys" | "startkey" | "start_key" | "endkey" | "end_key"
    )
}

fn key_string(v: &Option<Value>) -> Option<String> {
    v.as_ref().and_then(|v| v.as_str().map(str::to_string))
}

/// Clamps a user range to the id space of `kind`.
fn range_for(kind: Kind, p: &Params) -> AllDocsRange {
    let mut start = key_string(&p.start);
    let mut end = key_string(&p.end);
    let mut inclusive_end = p.inclusive_end;
    let (lo, hi) = match kind {
        Kind::Design => ("_design/", "_design0"),
        Kind::Local => ("_local/", "_local0"),
        Kind::All => ("", ""),
    };
    if kind != Kind::All {
        let (first, last) = if p.descending { (hi, lo) } else { (lo, hi) };
        let later = |a: &str, b: &str| if p.descending { a < b } else { a > b };
        start = Some(match start {
            Some(s) if later(&s, first) => s,
            _ => first.to_string(),
        });
        end = Some(match end {
            Some(e) if !later(&e, last) => e,
            _ => {
                inclusive_end = p.descending;
                last.to_string()
            }
        });
    }
    AllDocsRange {
        start,
        end,
        inclusive_end,
        descending: p.descending,
        limit: p.limit,
    }
}

/// `GET|POST /{db}/_all_docs` and `_design_docs`.
pub async fn all_docs(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    kind: Kind,
) -> ApiResult<Response> {
    let pairs = request_pairs(req)?;
    let body = run(state, ctx, kind, &pairs).await?;
    let mut out = body;
    out.push(b'\n');
    Ok(json_bytes(StatusCode::OK, out))
}

/// `GET|POST /{db}/_local_docs`.
pub async fn local_docs(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    all_docs(state, req, ctx, Kind::Local).await
}

/// The parameters of a listing request: query string, plus a POST body's fields.
fn request_pairs(req: &Req) -> ApiResult<Vec<(String, String)>> {
    let mut pairs = req.query.clone();
    match req.method {
        Method::GET | Method::HEAD => {}
        Method::POST => {
            let body = req.json_object()?;
            if let Some(keys) = body.get("keys") {
                if !keys.is_array() {
                    return Err(ApiError::bad_request(
                        "`keys` body member must be an array.",
                    ));
                }
            }
            pairs.extend(pairs_of(&body));
        }
        _ => return Err(not_allowed("GET,HEAD,POST")),
    }
    Ok(pairs)
}

/// `POST /{db}/_all_docs/queries` (and the design/local forms).
pub async fn queries(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    kind: Kind,
) -> ApiResult<Response> {
    if req.method != Method::POST {
        return Err(not_allowed("POST"));
    }
    let body = req.json_object()?;
    let Some(Value::Array(queries)) = body.get("queries") else {
        return Err(ApiError::bad_request("Missing JSON list of 'queries'."));
    };
    let mut out = b"{\"results\":[".to_vec();
    for (i, q) in queries.iter().enumerate() {
        let Value::Object(q) = q else {
            return Err(ApiError::bad_request("Each query must be a JSON object"));
        };
        if i > 0 {
            out.push(b',');
        }
        out.extend(run(state, ctx, kind, &pairs_of(q)).await?);
    }
    out.extend_from_slice(b"]}\n");
    Ok(json_bytes(StatusCode::OK, out))
}

async fn run(
    state: &AppState,
    ctx: &DbCtx<'_>,
    kind: Kind,
    pairs: &[(String, String)],
) -> ApiResult<Vec<u8>> {
    let p = parse_params(pairs)?;
    let mut out = Vec::with_capacity(4096);
    let mut rows: Vec<Vec<u8>> = Vec::new();
    let (total, offset): (Option<u64>, Option<u64>);
    if kind == Kind::Local {
        let range = range_for(kind, &p);
        let docs = state.coordinator.local_docs(ctx.db, range, p.skip).await?;
        for (id, doc) in docs {
            let mut row = b"{\"id\":".to_vec();
            push_str(&mut row, &id);
            row.extend_from_slice(b",\"key\":");
            push_str(&mut row, &id);
            row.extend_from_slice(b",\"value\":{\"rev\":");
            push_str(&mut row, &format!("0-{}", doc.rev));
            row.push(b'}');
            if p.include_docs {
                row.extend_from_slice(b",\"doc\":");
                render_local(&mut row, &id, doc.rev, &doc.body);
            }
            row.push(b'}');
            rows.push(row);
        }
        total = None;
        offset = None;
    } else if let Some(keys) = &p.keys {
        let ids: Vec<String> = keys
            .iter()
            .map(|k| k.as_str().unwrap_or("").to_string())
            .collect();
        let found = state
            .coordinator
            .docs_by_id(ctx.db, ids, p.include_docs)
            .await?;
        let mut items: Vec<(Value, Option<AllDocsRow>)> = keys.iter().cloned().zip(found).collect();
        if p.descending {
            items.reverse();
        }
        for (key, row) in items.into_iter().skip(p.skip).take(p.limit) {
            let keep = match (&row, kind) {
                (Some(r), Kind::Design) => r.id.starts_with("_design/"),
                _ => true,
            };
            if !keep {
                continue;
            }
            rows.push(match row {
                Some(r) => render_row(state, ctx, &r, &p, true).await?,
                None => {
                    let mut v = b"{\"key\":".to_vec();
                    push_json(&mut v, &key);
                    v.extend_from_slice(b",\"error\":\"not_found\"}");
                    v
                }
            });
        }
        let info = state.coordinator.db_info(ctx.db).await?;
        total = Some(info.totals.doc_count);
        offset = None;
    } else {
        let range = range_for(kind, &p);
        let result = state
            .coordinator
            .all_docs(
                ctx.db,
                AllDocsQuery {
                    range,
                    skip: p.skip,
                    include_docs: p.include_docs,
                },
            )
            .await?;
        for r in &result.rows {
            rows.push(render_row(state, ctx, r, &p, false).await?);
        }
        total = Some(result.total_rows);
        offset = Some(result.offset);
    }
    out.extend_from_slice(b"{\"total_rows\":");
    push_json(&mut out, &json!(total));
    out.extend_from_slice(b",\"offset\":");
    push_json(&mut out, &json!(offset));
    if p.update_seq && kind != Kind::Local {
        out.extend_from_slice(b",\"update_seq\":");
        let seq = state.coordinator.current_seq(ctx.db).await?.encode();
        push_str(&mut out, &seq);
    }
    out.extend_from_slice(b",\"rows\":[");
    for (i, row) in rows.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\r\n" } else { b",\r\n" });
        out.extend_from_slice(row);
    }
    out.extend_from_slice(b"\r\n]}");
    Ok(out)
}

async fn render_row(
    state: &AppState,
    ctx: &DbCtx<'_>,
    r: &AllDocsRow,
    p: &Params,
    by_key: bool,
) -> ApiResult<Vec<u8>> {
    let mut row = b"{\"id\":".to_vec();
    push_str(&mut row, &r.id);
    row.extend_from_slice(b",\"key\":");
    push_str(&mut row, &r.id);
    let winner = r.info.tree.winner();
    row.extend_from_slice(b",\"value\":{\"rev\":");
    let rev = winner
        .as_ref()
        .map(|w| w.rev.to_string())
        .unwrap_or_default();
    push_str(&mut row, &rev);
    let deleted = winner.as_ref().is_none_or(|w| w.deleted);
    if deleted {
        row.extend_from_slice(b",\"deleted\":true");
    }
    row.push(b'}');
    if p.include_docs {
        row.extend_from_slice(b",\"doc\":");
        match (&r.body, &winner) {
            (Some(body), Some(w)) if !deleted => {
                let data = inline_data(state, ctx.db, &r.id, &body.attachments, &p.opts).await?;
                render_doc(
                    &mut row,
                    &RenderRev {
                        id: &r.id,
                        rev: &w.rev,
                        deleted: false,
                        body: &body.body,
                        attachments: &body.attachments,
                        info: &r.info,
                    },
                    &p.opts,
                    &data,
                );
            }
            _ => row.extend_from_slice(b"null"),
        }
    }
    let _ = by_key;
    row.push(b'}');
    Ok(row)
}
