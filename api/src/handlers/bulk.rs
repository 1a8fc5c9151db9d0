//! `_bulk_docs` and `_bulk_get`: the batch write and read calls of replicators.

use crate::doc_json::{self, parse_rev, RenderOpts};
use crate::error::{doc_error_code, ApiError, ApiResult};
use crate::handlers::document::{render_opts, render_rev};
use crate::handlers::users;
use crate::request::Req;
use crate::response::{json, json_bytes};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaise_cluster::RevSelector;
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
            users::hash_password(state, &mut parsed);
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

/// `POST /{db}/_bulk_get`.
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
    let base = render_opts(req)?;
    let latest = req.bool_param("latest", false)?;
    let mut out = b"{\"results\":[".to_vec();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let id = d.get("id").and_then(Value::as_str);
        let rev_str = d.get("rev").and_then(Value::as_str);
        // Items CouchDB rejects before opening anything (chttpd_db:bulk_get_parse_arg).
        let early = match (d, id) {
            (Value::Object(_), Some(id)) => match doc_json::validate_doc_id(id) {
                Ok(()) => None,
                Err(e) => Some((json!(id), e.error, e.reason)),
            },
            (Value::Object(_), None) => Some((
                Value::Null,
                "bad_request".to_string(),
                "document id missed".to_string(),
            )),
            _ => Some((
                Value::Null,
                "bad_request".to_string(),
                "document must be a JSON object".to_string(),
            )),
        };
        if let Some((item_id, error, reason)) = early {
            let item = json!({"id": item_id, "docs": [{"error": {"id": item_id, "rev": null,
                "error": error, "reason": reason}}]});
            out.extend_from_slice(&serde_json::to_vec(&item).unwrap_or_default());
            continue;
        }
        let Some(id) = id else {
            continue;
        };
        let mut opts: RenderOpts = base.clone();
        if let Some(Value::Array(since)) = d.get("atts_since") {
            let revs: Vec<Rev> = since
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|r| parse_rev(r).ok())
                .collect();
            opts.atts_since = Some(revs);
            opts.attachments = true;
        }
        let sel = match rev_str {
            Some(r) => match parse_rev(r) {
                Ok(rev) => RevSelector::Revs {
                    revs: vec![rev],
                    latest,
                },
                Err(_) => {
                    let item = json!({"id": id, "docs": [{"error": {"id": id, "rev": r,
                        "error": "bad_request", "reason": "Invalid rev format"}}]});
                    out.extend_from_slice(&serde_json::to_vec(&item).unwrap_or_default());
                    continue;
                }
            },
            None => RevSelector::AllLeaves,
        };
        out.extend_from_slice(b"{\"id\":");
        crate::response::push_str(&mut out, id);
        out.extend_from_slice(b",\"docs\":[");
        let opened = state.coordinator.open_doc(ctx.db, id, sel).await?;
        let missing = |out: &mut Vec<u8>, rev: Option<String>| {
            let e = json!({"error": {"id": id, "rev": rev.unwrap_or_else(|| "undefined".into()),
                "error": "not_found", "reason": "missing"}});
            out.extend_from_slice(&serde_json::to_vec(&e).unwrap_or_default());
        };
        match opened {
            None => missing(&mut out, rev_str.map(str::to_string)),
            Some(doc) => {
                for (j, r) in doc.revs.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    match r {
                        Ok(rev) if rev.body.is_some() || rev.deleted => {
                            out.extend_from_slice(b"{\"ok\":");
                            render_rev(state, ctx.db, id, &doc, rev, &opts, &mut out).await?;
                            out.push(b'}');
                        }
                        Ok(rev) => missing(&mut out, Some(rev.rev.to_string())),
                        Err(rev) => missing(&mut out, Some(rev.to_string())),
                    }
                }
            }
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}\n");
    Ok(json_bytes(StatusCode::OK, out))
}
