//! `_bulk_docs` and `_bulk_get`: the batch write and read calls of replicators.

use crate::att_data::{stream_body, Piece};
use crate::auth::UserCtx;
use crate::doc_json::{self, parse_rev, RenderOpts};
use crate::error::{doc_error_code, ApiError, ApiResult};
use crate::handlers::document::{multipart_rev, render_opts, render_rev, without_meta};
use crate::handlers::users;
use crate::multipart::{self, DocBody};
use crate::request::Req;
use crate::response::{json, json_bytes, push_json, with_header};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaise_cluster::{OpenedDoc, OpenedRev, RevSelector};
use chaise_storage::{DocError, Rev};
use serde_json::{json, Value};

fn error_item(id: &str, e: &DocError) -> Value {
    let (_, error) = doc_error_code(e);
    json!({"id": id, "error": error, "reason": e.to_string()})
}

/// `POST /{db}/_bulk_docs`.
pub async fn bulk_docs(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    if req.method != Method::POST {
        return Err(not_allowed("POST"));
    }
    req.require_json()?;
    let mut body = req.json_object()?;
    let docs = match body.remove("docs") {
        Some(Value::Array(docs)) => docs,
        Some(_) => return Err(ApiError::bad_request("`docs` parameter must be an array.")),
        None => {
            return Err(ApiError::bad_request(
                "POST body must include `docs` parameter.",
            ))
        }
    };
    let new_edits = match body.get("new_edits") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`new_edits` parameter must be a boolean.",
            ))
        }
    };
    if new_edits && body.get("all_or_nothing") == Some(&Value::Bool(true)) {
        return all_or_nothing(state, docs);
    }
    let w = match body.get("w") {
        Some(v) => v.as_u64().map(|w| w as usize),
        None => req.uint_param("w")?.map(|w| w as usize),
    };
    let max = state.config_u64("couchdb", "max_document_size", 8_000_000) as usize;
    let mut updates = Vec::with_capacity(docs.len());
    // Position of each doc in the answer: Ok(index into updates) or a ready answer.
    let mut slots: Vec<Result<usize, Value>> = Vec::with_capacity(docs.len());
    let comp = crate::att_data::Compression::from_config(state);
    for doc in docs {
        let Value::Object(obj) = doc else {
            return Err(ApiError::bad_request("Document must be a JSON object"));
        };
        let mut parsed = doc_json::parse_doc(obj)?;
        let id = match parsed.id.take() {
            Some(id) => id,
            None if new_edits => state.uuids.next(),
            None => return Err(ApiError::bad_request("Document id must be a string")),
        };
        doc_json::validate_doc_id(&id)?;
        if parsed.body.len() > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "document_too_large",
                id,
            ));
        }
        if id.starts_with("_design/") && ctx.require_admin(&req.user).is_err() {
            slots.push(Err(json!({"id": id, "error": "unauthorized",
                "reason": "You are not a db or server admin."})));
            continue;
        }
        if id.starts_with("_local/") {
            let rev = match parsed.rev.as_ref() {
                Some(r) if r.pos == 0 => r.id.parse::<u64>().ok(),
                _ => None,
            };
            let body = (!parsed.deleted).then_some(parsed.body);
            let item = match state
                .coordinator
                .write_local(ctx.db, &id, rev, body)
                .await?
            {
                Ok(n) => json!({"ok": true, "id": id, "rev": format!("0-{n}")}),
                Err(e) => error_item(&id, &e),
            };
            slots.push(Err(item));
            continue;
        }
        if ctx.db == users::USERS_DB {
            if let Err(e) = users::before_write(state, ctx, &req.user, &id, &mut parsed).await {
                slots.push(Err(json!({"id": id, "error": e.error, "reason": e.reason})));
                continue;
            }
        }
        slots.push(Ok(updates.len()));
        updates.push(doc_json::to_update(parsed, id, new_edits, &comp)?);
    }
    let ids: Vec<String> = updates.iter().map(|u| u.id.clone()).collect();
    let results = state.coordinator.update_docs(ctx.db, updates, w).await?;
    let mut accepted_any = false;
    let mut out = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Err(item) => {
                if !new_edits && item.get("error").is_none() {
                    continue;
                }
                out.push(item)
            }
            Ok(i) => {
                let id = &ids[i];
                let r = &results[i];
                match &r.result {
                    Ok(rev) => {
                        accepted_any |= r.accepted;
                        if new_edits {
                            out.push(json!({"ok": true, "id": id, "rev": rev.to_string()}));
                        }
                    }
                    Err(e) => out.push(error_item(id, e)),
                }
            }
        }
    }
    let status = if accepted_any {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok(json(status, &Value::Array(out)))
}

/// `all_or_nothing: true`: CouchDB 3.x validates the documents, then refuses the whole
/// batch with 417 and one `not_implemented` item per document (fabric_doc_update).
fn all_or_nothing(state: &AppState, docs: Vec<Value>) -> ApiResult<Response> {
    let mut items = Vec::with_capacity(docs.len());
    for doc in docs {
        let Value::Object(obj) = doc else {
            return Err(ApiError::bad_request("Document must be a JSON object"));
        };
        let parsed = doc_json::parse_doc(obj)?;
        let id = match parsed.id {
            Some(id) => id,
            None => state.uuids.next(),
        };
        doc_json::validate_doc_id(&id)?;
        // A new document has no revision: `couch_doc:rev_to_str({0, <<>>})`.
        let rev = parsed
            .rev
            .map_or_else(|| "0-".to_string(), |r| r.to_string());
        items.push(json!({"id": id, "rev": rev, "error": "not_implemented",
                          "reason": "all_or_nothing is not supported"}));
    }
    Ok(json(StatusCode::EXPECTATION_FAILED, &Value::Array(items)))
}

/// Query parameters `_bulk_get` refuses: they belong in the per-document items.
const BULK_GET_REFUSED: [&str; 5] = ["open_revs", "new_edits", "w", "rev", "atts_since"];

/// An error answering a whole `_bulk_get` item or one of its revisions
/// (`chttpd_db:bulk_get_json_error_map`).
struct ItemError {
    id: Value,
    rev: Value,
    error: String,
    reason: String,
}

impl ItemError {
    fn new(id: Value, rev: Value, error: &str, reason: &str) -> Self {
        ItemError {
            id,
            rev,
            error: error.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A revision that is not there.
    fn missing(id: &str, rev: Value) -> Self {
        ItemError::new(json!(id), rev, "not_found", "missing")
    }

    /// The error object. CouchDB builds it as an Erlang map, which jiffy writes
    /// in reverse key order: `rev`, `reason`, `id`, `error`.
    fn push_json(&self, out: &mut Vec<u8>) {
        push_json(
            out,
            &json!({"rev": self.rev, "reason": self.reason, "id": self.id, "error": self.error}),
        );
    }
}

/// One `_bulk_get` item as `chttpd_db:bulk_get_parse_arg` reads it.
enum Arg<'a> {
    /// Refused before anything is opened.
    Refused(ItemError),
    /// A document to open: one revision (all leaves when `None`), and the
    /// revisions the client has attachments of.
    Open {
        id: &'a str,
        rev: Option<Rev>,
        atts_since: Option<Vec<Rev>>,
    },
}

/// Refuses, in `_users`, the documents this user may not read (`after_doc_read`).
fn readable<'a>(ctx: &DbCtx<'_>, user: &UserCtx, arg: Arg<'a>) -> Arg<'a> {
    if ctx.db != users::USERS_DB {
        return arg;
    }
    let Arg::Open { id, rev, .. } = &arg else {
        return arg;
    };
    match users::check_read(ctx, user, id) {
        Ok(()) => arg,
        Err(e) => {
            let rev = rev.as_ref().map_or(Value::Null, |r| json!(r.to_string()));
            Arg::Refused(ItemError::new(json!(id), rev, &e.error, &e.reason))
        }
    }
}

/// Reads one item of `docs` (`bulk_get_parse_doc_id`, `bulk_get_parse_revs`,
/// `bulk_get_parse_atts_since`): an empty `atts_since` is as none.
fn parse_arg(item: &Value) -> Arg<'_> {
    let refused = |id: Value, rev: Value, error: &str, reason: &str| {
        Arg::Refused(ItemError::new(id, rev, error, reason))
    };
    let obj = match item {
        Value::Object(obj) if !obj.is_empty() => obj,
        _ => {
            return refused(
                Value::Null,
                Value::Null,
                "bad_request",
                "document must be a JSON object",
            )
        }
    };
    let id = match obj.get("id") {
        None => {
            return refused(
                Value::Null,
                Value::Null,
                "bad_request",
                "document id missed",
            )
        }
        Some(Value::String(id)) => id.as_str(),
        Some(other) => {
            return refused(
                other.clone(),
                Value::Null,
                "illegal_docid",
                "Document id must be a string",
            )
        }
    };
    if let Err(e) = doc_json::validate_doc_id(id) {
        return refused(json!(id), Value::Null, &e.error, &e.reason);
    }
    let parse = |v: &Value| v.as_str().and_then(|r| parse_rev(r).ok());
    let rev = match obj.get("rev") {
        None => None,
        Some(v) => match parse(v) {
            Some(rev) => Some(rev),
            None => return refused(json!(id), v.clone(), "bad_request", "Invalid rev format"),
        },
    };
    let atts_since = match obj.get("atts_since") {
        None => None,
        Some(Value::Array(list)) if list.is_empty() => None,
        Some(Value::Array(list)) => {
            let mut revs = Vec::with_capacity(list.len());
            for v in list {
                match parse(v) {
                    Some(rev) => revs.push(rev),
                    None => {
                        return refused(json!(id), v.clone(), "bad_request", "Invalid rev format")
                    }
                }
            }
            Some(revs)
        }
        Some(other) => {
            return refused(
                json!(id),
                other.clone(),
                "bad_request",
                "att_since value must be array of revs.",
            )
        }
    };
    Arg::Open {
        id,
        rev,
        atts_since,
    }
}

/// What one item resolves to (`chttpd_db:bulk_get_docs`), shared by the JSON and
/// the multipart answers.
enum Resolved<'a> {
    /// An error for the whole item.
    Error(ItemError),
    /// Its revisions in order, each opened (an index into `doc.revs`) or missing,
    /// and the options to render them with.
    Revs {
        id: &'a str,
        doc: Option<OpenedDoc>,
        revs: Vec<Result<usize, Rev>>,
        opts: RenderOpts,
    },
}

impl Resolved<'_> {
    /// The item's `id` as CouchDB reports it.
    fn id(&self) -> Value {
        match self {
            Resolved::Error(e) => e.id.clone(),
            Resolved::Revs { id, .. } => json!(id),
        }
    }
}

/// Reads one item of `docs` and opens the revisions it asks for, if `user` may
/// read them. `base` holds the query's render options; an item's `atts_since`
/// adds `attachments` (`[{atts_since, Revs}, attachments]`). An unknown document
/// asked without a revision is an error for the whole item, with `rev`
/// `"undefined"`; asked with one, that revision is missing.
async fn resolve<'a>(
    state: &AppState,
    ctx: &DbCtx<'_>,
    user: &UserCtx,
    item: &'a Value,
    base: &RenderOpts,
    latest: bool,
) -> ApiResult<Resolved<'a>> {
    let (id, rev, atts_since) = match readable(ctx, user, parse_arg(item)) {
        Arg::Refused(e) => return Ok(Resolved::Error(e)),
        Arg::Open {
            id,
            rev,
            atts_since,
        } => (id, rev, atts_since),
    };
    let opts = match atts_since {
        Some(since) => RenderOpts {
            attachments: true,
            atts_since: Some(since),
            ..base.clone()
        },
        None => base.clone(),
    };
    let sel = match &rev {
        Some(r) => RevSelector::Revs {
            revs: vec![r.clone()],
            latest,
        },
        None => RevSelector::AllLeaves,
    };
    let doc = state.coordinator.open_doc(ctx.db, id, sel).await?;
    let revs: Vec<Result<usize, Rev>> = match &doc {
        None => rev.iter().cloned().map(Err).collect(),
        Some(doc) => doc
            .revs
            .iter()
            .enumerate()
            .map(|(i, r)| match r {
                Ok(opened) if opened.body.is_some() || opened.deleted => Ok(i),
                Ok(opened) => Err(opened.rev.clone()),
                Err(rev) => Err(rev.clone()),
            })
            .collect(),
    };
    if revs.is_empty() {
        let rev = rev.map_or_else(|| json!("undefined"), |r| json!(r.to_string()));
        return Ok(Resolved::Error(ItemError::missing(id, rev)));
    }
    Ok(Resolved::Revs {
        id,
        doc,
        revs,
        opts,
    })
}

/// The opened revision at `i` of an item's document.
fn opened_rev(doc: &Option<OpenedDoc>, i: usize) -> ApiResult<(&OpenedDoc, &OpenedRev)> {
    match doc {
        Some(doc) => match doc.revs.get(i) {
            Some(Ok(rev)) => Ok((doc, rev)),
            _ => Err(ApiError::internal("opened revision lost")),
        },
        None => Err(ApiError::internal("opened revision lost")),
    }
}

/// `POST /{db}/_bulk_get`: JSON, or multipart when the client accepts
/// `multipart/mixed` or `multipart/related` but not `application/json`
/// (`chttpd_db:bulk_get_is_multipart`).
pub async fn bulk_get(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    if req.method != Method::POST {
        return Err(not_allowed("POST"));
    }
    req.require_json()?;
    let body = req.json_object()?;
    let Some(Value::Array(docs)) = body.get("docs") else {
        return Err(ApiError::bad_request("Missing JSON list of 'docs'."));
    };
    if let Some((k, _)) = req
        .query
        .iter()
        .find(|(k, _)| BULK_GET_REFUSED.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "\"{k}\" query parameter is not acceptable"
        )));
    }
    // Revisions are opened as `open_revs` does: without the winner's meta fields.
    let base = without_meta(&render_opts(req)?);
    let latest = req.bool_param("latest", false)?;
    let mixed = multipart::accepts_content_type(req, "multipart/mixed");
    if !multipart::accepts_content_type(req, "application/json")
        && (mixed || multipart::accepts_content_type(req, "multipart/related"))
    {
        let kind = if mixed { "mixed" } else { "related" };
        return bulk_get_multipart(state, ctx, &req.user, docs, &base, latest, kind).await;
    }
    let mut out = b"{\"results\":[".to_vec();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let item = resolve(state, ctx, &req.user, d, &base, latest).await?;
        out.extend_from_slice(b"{\"id\":");
        push_json(&mut out, &item.id());
        out.extend_from_slice(b",\"docs\":[");
        match &item {
            Resolved::Error(e) => {
                out.extend_from_slice(b"{\"error\":");
                e.push_json(&mut out);
                out.push(b'}');
            }
            Resolved::Revs {
                id,
                doc,
                revs,
                opts,
            } => {
                for (j, r) in revs.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    match r {
                        Ok(i) => {
                            let (doc, rev) = opened_rev(doc, *i)?;
                            out.extend_from_slice(b"{\"ok\":");
                            render_rev(state, ctx.db, id, doc, rev, opts, &mut out).await?;
                            out.push(b'}');
                        }
                        Err(rev) => {
                            out.extend_from_slice(b"{\"error\":");
                            ItemError::missing(id, json!(rev.to_string())).push_json(&mut out);
                            out.push(b'}');
                        }
                    }
                }
            }
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}\n");
    Ok(json_bytes(StatusCode::OK, out))
}

/// `_bulk_get` as `multipart/{kind}` (`chttpd_db:bulk_get_ret_multipart` and
/// `send_docs_multipart_bulk_get`). Boundaries are `--` and a random uuid
/// (`bulk_get_multipart_boundary`); every part starts with `\r\n--boundary`,
/// and the body ends with `\r\n--boundary--\r\n` unless there are no items.
/// Each opened revision is one part: its JSON (`Content-Type:
/// application/json`) when no attachment follows, else `X-Doc-Id`, `X-Rev-Id`
/// and a `multipart/related` body (unquoted boundary, one per item) with the
/// JSON and each attachment, streamed from storage. An error for the whole item
/// is its error object; a missing revision is `{"rev","error","reason"}`; both
/// with `Content-Type: application/json; error="true"`.
async fn bulk_get_multipart(
    state: &AppState,
    ctx: &DbCtx<'_>,
    user: &UserCtx,
    docs: &[Value],
    base: &RenderOpts,
    latest: bool,
    kind: &str,
) -> ApiResult<Response> {
    const ERROR_HEAD: &str = "Content-Type: application/json; error=\"true\"\r\n\r\n";
    let db = ctx.db;
    let boundary = format!("--{}", multipart::boundary());
    let mut pieces = Vec::new();
    for d in docs {
        match resolve(state, ctx, user, d, base, latest).await? {
            Resolved::Error(e) => {
                let mut part = format!("\r\n--{boundary}\r\n{ERROR_HEAD}").into_bytes();
                e.push_json(&mut part);
                pieces.push(Piece::Bytes(part));
            }
            Resolved::Revs {
                id,
                doc,
                revs,
                opts,
            } => {
                let inner = format!("--{}", multipart::boundary());
                pieces.push(Piece::Doc(id.to_string()));
                for r in &revs {
                    let (item_doc, opened) = match r {
                        Ok(i) => opened_rev(&doc, *i)?,
                        Err(rev) => {
                            let mut part = format!("\r\n--{boundary}\r\n{ERROR_HEAD}").into_bytes();
                            push_json(
                                &mut part,
                                &json!({"rev": rev.to_string(), "error": "not_found",
                                        "reason": "missing"}),
                            );
                            pieces.push(Piece::Bytes(part));
                            continue;
                        }
                    };
                    let mut parts = Vec::new();
                    let written =
                        multipart_rev(state, db, id, item_doc, opened, &opts, &inner, &mut parts)
                            .await?;
                    let head = match written {
                        DocBody::Json => {
                            format!("\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n")
                        }
                        DocBody::Related => format!(
                            "\r\n--{boundary}\r\nX-Doc-Id: {id}\r\nX-Rev-Id: {}\r\n\
                             Content-Type: multipart/related; boundary={inner}\r\n\r\n",
                            opened.rev
                        ),
                    };
                    pieces.push(Piece::Bytes(head.into_bytes()));
                    pieces.extend(parts);
                }
            }
        }
    }
    if !docs.is_empty() {
        pieces.push(Piece::Bytes(format!("\r\n--{boundary}--\r\n").into_bytes()));
    }
    let resp = Response::new(stream_body(state, db, "", pieces));
    Ok(with_header(
        resp,
        "content-type",
        &multipart::content_type(kind, &boundary),
    ))
}
