//! `_all_docs`, `_design_docs`, `_local_docs` and their `/queries` forms.

use crate::doc_json::{render_doc, render_local, RenderOpts, RenderRev};
use crate::error::{ApiError, ApiResult};
use crate::handlers::changes::{send, spawn_body, BodySender, Feed};
use crate::handlers::document::inline_data;
use crate::request::Req;
use crate::response::{json_bytes, push_json, push_str};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaise_cluster::{AllDocsCursor, AllDocsQuery, AllDocsRow};
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

/// `couch_mrview_http:parse_boolean`: case-insensitive `true`/`false`.
fn mr_bool(v: &str) -> ApiResult<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(query_error(format!("Invalid boolean parameter: \"{v}\""))),
    }
}

/// `couch_mrview_http:parse_pos_int`: a non-integer and a negative integer get
/// different messages.
fn mr_pos_int(v: &str) -> ApiResult<usize> {
    match v.parse::<i128>() {
        Ok(n) if n >= 0 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Ok(_) => Err(query_error(format!(
            "Invalid value for positive integer: \"{v}\""
        ))),
        Err(_) => Err(query_error(format!("Invalid value for integer: \"{v}\""))),
    }
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
    // Key parameters are JSON; CouchDB's decoder throws `invalid_json`.
    let json_of = |n: &str| -> ApiResult<Option<Value>> {
        get(n)
            .map(|v| {
                serde_json::from_str(v).map_err(|_| ApiError::bad_request("invalid UTF-8 JSON"))
            })
            .transpose()
    };
    let boolean = |n: &str, d: bool| get(n).map_or(Ok(d), mr_bool);
    let uint = |n: &str| -> ApiResult<Option<usize>> { get(n).map(mr_pos_int).transpose() };
    let key = json_of("key")?;
    let keys = match json_of("keys")? {
        None => None,
        Some(Value::Array(a)) => Some(a),
        Some(_) => return Err(ApiError::bad_request("`keys` parameter must be an array.")),
    };
    let start = json_of("startkey")?.or(json_of("start_key")?);
    let end = json_of("endkey")?.or(json_of("end_key")?);
    let (start, end) = match key {
        Some(k) => (Some(k.clone()), Some(k)),
        None => (start, end),
    };
    // couch_mrview_util:validate_args: an empty key list, or a single key equal to
    // `key`, may be combined with a range.
    if let Some(keys) = &keys {
        let ok = match (keys.as_slice(), &start, &end) {
            ([], _, _) | ([_, ..], None, None) => true,
            ([k], Some(s), Some(e)) => k == s && k == e,
            _ => false,
        };
        if !ok {
            return Err(query_error(
                "`keys` is incompatible with `key`, `start_key` and `end_key`",
            ));
        }
    }
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
    let Listing { mut head, rows, p } = listing(state, ctx, kind, &pairs).await?;
    let cursor = match rows {
        Rows::Rendered(rows) => {
            write_rendered(&mut head, &rows);
            head.extend_from_slice(LISTING_CLOSE);
            head.push(b'\n');
            return Ok(json_bytes(StatusCode::OK, head));
        }
        Rows::Cursor(cursor) => cursor,
    };
    let db = ctx.db.to_string();
    spawn_body(state, Feed::Normal, move |state, tx| async move {
        let mut out = head;
        match write_cursor(&state, &db, &p, cursor, &mut out, Some(&tx)).await {
            Ok(true) => {
                out.extend_from_slice(LISTING_CLOSE);
                out.push(b'\n');
                send(&tx, out).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(%db, error = %e.reason, "_all_docs cut short"),
        }
    })
}

/// The end of a listing (couch_mrview_http closes it with "\r\n]}").
const LISTING_CLOSE: &[u8] = b"\r\n]}";

/// Bytes a streamed listing gathers before sending them on.
const SEND_AT: usize = 64 * 1024;

/// A listing's rows: rendered already, or still to read from the shards.
enum Rows {
    Rendered(Vec<Vec<u8>>),
    Cursor(AllDocsCursor),
}

/// A listing before its rows: the opening up to `"rows":[`, the rows, and the
/// parameters that render them.
struct Listing {
    head: Vec<u8>,
    rows: Rows,
    p: Params,
}

/// Appends rendered rows, separated as couch_mrview_http does (",\r\n").
fn write_rendered(out: &mut Vec<u8>, rows: &[Vec<u8>]) {
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b",\r\n");
        }
        out.extend_from_slice(row);
    }
}

/// Renders the rows of a cursor into `out`, sending `out` on to `tx` whenever it
/// fills up (when streaming). `false` when the client went away.
async fn write_cursor(
    state: &AppState,
    db: &str,
    p: &Params,
    mut cursor: AllDocsCursor,
    out: &mut Vec<u8>,
    tx: Option<&BodySender>,
) -> ApiResult<bool> {
    let mut first = true;
    while let Some(rows) = cursor.next_batch().await? {
        for r in &rows {
            if !first {
                out.extend_from_slice(b",\r\n");
            }
            first = false;
            render_row(state, db, r, p, out).await?;
        }
        if let Some(tx) = tx {
            if out.len() >= SEND_AT && !send(tx, std::mem::take(out)).await {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// `GET|POST /{db}/_local_docs`.
pub async fn local_docs(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    all_docs(state, req, ctx, Kind::Local).await
}

/// The parameters of a listing request: a POST body's fields, then the query string
/// (which CouchDB parses last, so it wins).
fn request_pairs(req: &Req) -> ApiResult<Vec<(String, String)>> {
    match req.method {
        Method::GET | Method::HEAD => Ok(req.query.clone()),
        Method::POST => {
            req.require_json()?;
            let body = req.json_object()?;
            if let Some(keys) = body.get("keys") {
                if !keys.is_array() {
                    return Err(ApiError::bad_request(
                        "`keys` body member must be an array.",
                    ));
                }
            }
            let mut pairs = pairs_of(&body);
            pairs.extend(req.query.iter().cloned());
            Ok(pairs)
        }
        _ => Err(not_allowed("GET,HEAD,POST")),
    }
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
        return Err(ApiError::bad_request(
            "POST body must include `queries` parameter.",
        ));
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

/// Whether `id` belongs to the id space of `kind`.
fn in_namespace(kind: Kind, id: &str) -> bool {
    match kind {
        Kind::All => true,
        Kind::Design => id.starts_with("_design/"),
        Kind::Local => id.starts_with("_local/"),
    }
}

/// The row of a `_local` document.
fn local_row(id: &str, doc: &chaise_storage::LocalDoc, include_docs: bool) -> Vec<u8> {
    let mut row = b"{\"id\":".to_vec();
    push_str(&mut row, id);
    row.extend_from_slice(b",\"key\":");
    push_str(&mut row, id);
    row.extend_from_slice(b",\"value\":{\"rev\":");
    push_str(&mut row, &format!("0-{}", doc.rev));
    row.push(b'}');
    if include_docs {
        row.extend_from_slice(b",\"doc\":");
        render_local(&mut row, id, doc.rev, &doc.body);
    }
    row.push(b'}');
    row
}

/// Number of live design documents: `total_rows` of `_design_docs`
/// (`couch_db:get_design_doc_count`).
async fn design_doc_count(state: &AppState, ctx: &DbCtx<'_>) -> ApiResult<u64> {
    let range = AllDocsRange {
        start: Some("_design/".into()),
        end: Some("_design0".into()),
        inclusive_end: false,
        descending: false,
        limit: usize::MAX,
    };
    let q = AllDocsQuery {
        range,
        skip: 0,
        include_docs: false,
    };
    Ok(state.coordinator.all_docs(ctx.db, q).await?.rows.len() as u64)
}

/// One listing, whole (for `/queries`).
async fn run(
    state: &AppState,
    ctx: &DbCtx<'_>,
    kind: Kind,
    pairs: &[(String, String)],
) -> ApiResult<Vec<u8>> {
    let Listing { mut head, rows, p } = listing(state, ctx, kind, pairs).await?;
    match rows {
        Rows::Rendered(rows) => write_rendered(&mut head, &rows),
        Rows::Cursor(cursor) => {
            write_cursor(state, ctx.db, &p, cursor, &mut head, None).await?;
        }
    }
    head.extend_from_slice(LISTING_CLOSE);
    Ok(head)
}

/// Parses a listing request and reads what comes before its rows.
async fn listing(
    state: &AppState,
    ctx: &DbCtx<'_>,
    kind: Kind,
    pairs: &[(String, String)],
) -> ApiResult<Listing> {
    let p = parse_params(pairs)?;
    let mut out = Vec::with_capacity(4096);
    let mut rows: Vec<Vec<u8>> = Vec::new();
    let mut cursor = None;
    let (total, offset): (Option<u64>, Option<u64>);
    // `Some(None)` renders `"update_seq":null`.
    let mut update_seq: Option<Option<String>> = None;
    if let Some(keys) = &p.keys {
        // fabric_view_all_docs: reverse for descending, then skip and limit, then
        // drop keys outside the namespace.
        let mut keys: Vec<Value> = keys.clone();
        if p.descending {
            keys.reverse();
        }
        let keys: Vec<Value> = keys
            .into_iter()
            .skip(p.skip)
            .take(p.limit)
            .filter(|k| kind == Kind::All || k.as_str().is_some_and(|id| in_namespace(kind, id)))
            .collect();
        let not_found = |key: &Value| {
            let mut v = b"{\"key\":".to_vec();
            push_json(&mut v, key);
            v.extend_from_slice(b",\"error\":\"not_found\"}");
            v
        };
        if kind == Kind::Local {
            for key in &keys {
                let id = key.as_str().unwrap_or_default();
                match state.coordinator.get_local(ctx.db, id).await? {
                    Some(doc) => rows.push(local_row(id, &doc, p.include_docs)),
                    None => rows.push(not_found(key)),
                }
            }
        } else {
            let ids: Vec<String> = keys
                .iter()
                .map(|k| k.as_str().unwrap_or_default().to_string())
                .collect();
            let found = state
                .coordinator
                .docs_by_id(ctx.db, ids, p.include_docs)
                .await?;
            for (key, row) in keys.iter().zip(found) {
                rows.push(match row {
                    Some(r) => {
                        let mut out = Vec::new();
                        render_row(state, ctx.db, &r, &p, &mut out).await?;
                        out
                    }
                    None => not_found(key),
                });
            }
        }
        total = match kind {
            Kind::Local => None,
            Kind::Design => Some(design_doc_count(state, ctx).await?),
            Kind::All => Some(state.coordinator.db_info(ctx.db).await?.totals.doc_count),
        };
        offset = None;
        if p.update_seq {
            update_seq = Some(None);
        }
    } else if kind == Kind::Local {
        let range = range_for(kind, &p);
        let docs = state.coordinator.local_docs(ctx.db, range, p.skip).await?;
        for (id, doc) in docs {
            rows.push(local_row(&id, &doc, p.include_docs));
        }
        total = None;
        offset = None;
        if p.update_seq {
            update_seq = Some(None);
        }
    } else {
        let range = range_for(kind, &p);
        let c = state
            .coordinator
            .all_docs_cursor(
                ctx.db,
                AllDocsQuery {
                    range,
                    skip: p.skip,
                    include_docs: p.include_docs,
                },
            )
            .await?;
        if kind == Kind::Design {
            // The offset counts every document before the first row, capped by the
            // total as fabric does.
            let n = design_doc_count(state, ctx).await?;
            total = Some(n);
            offset = Some(c.offset.min(n));
        } else {
            total = Some(c.total_rows);
            offset = Some(c.offset);
        }
        cursor = Some(c);
        if p.update_seq {
            let seq = state.coordinator.current_seq(ctx.db).await?.encode();
            update_seq = Some(Some(seq));
        }
    }
    out.extend_from_slice(b"{\"total_rows\":");
    push_json(&mut out, &json!(total));
    out.extend_from_slice(b",\"offset\":");
    push_json(&mut out, &json!(offset));
    if let Some(seq) = update_seq {
        out.extend_from_slice(b",\"update_seq\":");
        push_json(&mut out, &json!(seq));
    }
    // couch_mrview_http: the meta chunk ends in "[\r\n", rows are separated by
    // ",\r\n" and the listing closes with "\r\n]}".
    out.extend_from_slice(b",\"rows\":[\r\n");
    let rows = match cursor {
        Some(c) => Rows::Cursor(c),
        None => Rows::Rendered(rows),
    };
    Ok(Listing { head: out, rows, p })
}

/// Appends one `_all_docs` row.
async fn render_row(
    state: &AppState,
    db: &str,
    r: &AllDocsRow,
    p: &Params,
    row: &mut Vec<u8>,
) -> ApiResult<()> {
    row.extend_from_slice(b"{\"id\":");
    push_str(row, &r.id);
    row.extend_from_slice(b",\"key\":");
    push_str(row, &r.id);
    let winner = r.info.tree.winner();
    row.extend_from_slice(b",\"value\":{\"rev\":");
    let rev = winner
        .as_ref()
        .map(|w| w.rev.to_string())
        .unwrap_or_default();
    push_str(row, &rev);
    let deleted = winner.as_ref().is_none_or(|w| w.deleted);
    if deleted {
        row.extend_from_slice(b",\"deleted\":true");
    }
    row.push(b'}');
    if p.include_docs {
        row.extend_from_slice(b",\"doc\":");
        match (&r.body, &winner) {
            (Some(body), Some(w)) if !deleted => {
                let data = inline_data(state, db, &r.id, &body.attachments, &p.opts).await?;
                render_doc(
                    row,
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
    row.push(b'}');
    Ok(())
}
