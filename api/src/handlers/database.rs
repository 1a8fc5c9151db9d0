//! Database endpoints: create, info, delete, and the per-database settings and
//! maintenance calls (`_security`, `_revs_limit`, `_purge`, `_revs_diff`, ...).

use crate::doc_json::{self, parse_rev};
use crate::error::{ApiError, ApiResult};
use crate::handlers::document;
use crate::request::Req;
use crate::response::{json, json_bytes, ok, with_header};
use crate::routes::{not_allowed, DbCtx};
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaise_cluster::{quorum, DbInfo, RevSelector};
use chaise_storage::Rev;
use serde_json::{json, Map, Value};

/// CouchDB's db info object.
pub fn db_info_json(info: &DbInfo) -> Value {
    let q = quorum::default_quorum(info.n);
    json!({
        "db_name": info.name,
        "purge_seq": info.purge_seq,
        "update_seq": info.update_seq,
        "sizes": {
            "file": info.totals.file_size,
            "external": info.totals.external_size,
            "active": info.totals.active_size,
        },
        "props": info.props,
        "doc_del_count": info.totals.doc_del_count,
        "doc_count": info.totals.doc_count,
        "disk_format_version": 8,
        "compact_running": false,
        "cluster": {"q": info.q, "n": info.n, "w": q, "r": q},
        "instance_start_time": "0",
    })
}

/// The security object new databases get (`[couchdb] default_security`).
fn default_security(state: &AppState) -> Value {
    if state
        .config
        .get_or("couchdb", "default_security", "admin_only")
        == "everyone"
    {
        json!({})
    } else {
        json!({"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}})
    }
}

/// A `q`/`n` creation parameter: a positive integer, with CouchDB's message.
fn shards_param(req: &Req, name: &str) -> ApiResult<Option<u32>> {
    match req.param(name) {
        None => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "The `{name}` value should be a positive integer."
            ))),
        },
    }
}

/// The absolute URL of `path` as the client addressed this server (CouchDB's
/// `absolute_uri`: `X-Forwarded-Host`/`Host`, `X-Forwarded-Ssl`/`X-Forwarded-Proto`).
fn absolute_uri(req: &Req, path: &str) -> String {
    let host = req
        .header("x-forwarded-host")
        .or_else(|| req.header("host"))
        .unwrap_or("127.0.0.1");
    let scheme = if req.header("x-forwarded-ssl") == Some("on") {
        "https"
    } else {
        match req.header("x-forwarded-proto") {
            Some(p) if !p.is_empty() => p,
            _ => "http",
        }
    };
    format!("{scheme}://{host}{path}")
}

/// `PUT /{db}`.
pub async fn create(state: &AppState, req: &Req, db: &str) -> ApiResult<Response> {
    let q = shards_param(req, "q")?;
    let n = shards_param(req, "n")?.map(|n| n as usize);
    let mut props = Map::new();
    match req.param("partitioned") {
        None | Some("false") => {}
        Some("true") => {
            props.insert("partitioned".into(), Value::Bool(true));
        }
        Some(_) => return Err(ApiError::bad_request("Invalid `partitioned` parameter")),
    }
    let security = serde_json::to_vec(&default_security(state)).unwrap_or_default();
    state.forget_security(db);
    let complete = state
        .coordinator
        .create_db(db, q, n, props, security)
        .await?;
    // 202 when some owner has not created its copy yet, as CouchDB does.
    let status = if complete {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    let resp = json(status, &json!({"ok": true}));
    let location = absolute_uri(req, &format!("/{}", document::url_encode(db)));
    Ok(with_header(resp, "location", &location))
}

/// `GET|HEAD|DELETE|POST /{db}`.
pub async fn handle(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    match req.method {
        Method::GET | Method::HEAD => {
            let info = state.coordinator.db_info(ctx.db).await?;
            let resp = json(StatusCode::OK, &db_info_json(&info));
            Ok(if req.method == Method::HEAD {
                crate::response::head_of(resp)
            } else {
                resp
            })
        }
        Method::DELETE => {
            refuse_delete_with_rev(req)?;
            state.coordinator.delete_db(ctx.db).await?;
            state.forget_security(ctx.db);
            Ok(ok(StatusCode::OK))
        }
        Method::POST => {
            req.require_json()?;
            let Value::Object(body) = req.json_body()? else {
                return Err(ApiError::bad_request("Document must be a JSON object"));
            };
            let mut parsed = doc_json::parse_doc(body)?;
            doc_json::validate_attachment_names(&parsed)?;
            let id = match parsed.id.take() {
                Some(id) => id,
                None => state.uuids.next(),
            };
            // chttpd_db answers a POST with a Location but, unlike PUT, no ETag.
            let saved = document::write(state, req, ctx, parsed, id, true).await?;
            if saved.rev.is_none() {
                return Ok(saved.response(false, None));
            }
            let location = req.absolute_uri(&format!(
                "/{}/{}",
                document::url_encode(ctx.db),
                document::url_encode(&saved.id)
            ))?;
            Ok(saved.response(false, Some(&location)))
        }
        _ => Err(not_allowed("DELETE,GET,HEAD,POST")),
    }
}

/// `DELETE /{db}?rev=...` is almost certainly a document delete with an empty id;
/// CouchDB refuses it (before looking the database up), typo included.
pub fn refuse_delete_with_rev(req: &Req) -> ApiResult<()> {
    if req.param("rev").is_some() {
        return Err(ApiError::bad_request(
            "You tried to DELETE a database with a ?=rev parameter. Did you mean to DELETE a document instead?",
        ));
    }
    Ok(())
}

/// Database admin check of `_compact` and `_view_cleanup` (CouchDB's
/// `chttpd_auth_request:require_db_admin`: a 401 for everyone).
fn require_db_admin_401(req: &Req, ctx: &DbCtx<'_>) -> ApiResult<()> {
    if crate::auth::is_db_admin(ctx.security, &req.user) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("You are not a server or db admin."))
    }
}

/// `POST /{db}/_compact[/{ddoc}]`: starts compaction in the background.
pub async fn compact(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    require_db_admin_401(req, ctx)?;
    if req.method != Method::POST {
        return Err(not_allowed("POST"));
    }
    req.require_json()?;
    // `/_compact/{ddoc}` needs the design document (CouchDB opens it first).
    if let Some(name) = req.segments.get(2) {
        let id = format!("_design/{name}");
        let opened = state
            .coordinator
            .open_doc(ctx.db, &id, RevSelector::Winner)
            .await?;
        let deleted = match opened.as_ref().and_then(|d| d.revs.first()) {
            Some(Ok(rev)) => rev.deleted,
            _ => return Err(ApiError::not_found("missing")),
        };
        if deleted {
            return Err(ApiError::not_found("deleted"));
        }
    }
    let coordinator = state.coordinator.clone();
    let db = ctx.db.to_string();
    tokio::spawn(async move {
        if let Err(e) = coordinator.compact(&db).await {
            tracing::error!(db, error = %e, "compaction failed");
        }
    });
    Ok(ok(StatusCode::ACCEPTED))
}

/// `POST /{db}/_view_cleanup` (CouchDB does not check the content type here).
pub async fn view_cleanup(_state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    require_db_admin_401(req, ctx)?;
    if req.method != Method::POST {
        return Err(not_allowed("POST"));
    }
    Ok(ok(StatusCode::ACCEPTED))
}

/// `POST /{db}/_ensure_full_commit`: every write is already durable.
pub async fn ensure_full_commit(
    _state: &AppState,
    req: &Req,
    _ctx: &DbCtx<'_>,
) -> ApiResult<Response> {
    if req.method != Method::POST {
        return Err(not_allowed("POST"));
    }
    req.require_json()?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"ok": true, "instance_start_time": "0"}),
    ))
}

fn valid_security_section(v: Option<&Value>) -> bool {
    match v {
        None => true,
        Some(Value::Object(m)) => ["names", "roles"].iter().all(|k| match m.get(*k) {
            None => true,
            Some(Value::Array(a)) => a.iter().all(Value::is_string),
            Some(_) => false,
        }),
        Some(_) => false,
    }
}

/// `GET|PUT /{db}/_security`.
pub async fn security(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    match req.method {
        Method::GET | Method::HEAD => Ok(json(StatusCode::OK, ctx.security)),
        Method::PUT => {
            ctx.require_admin(&req.user)?;
            if ctx.db == "_users"
                && state
                    .config
                    .get_or("couchdb", "users_db_security_editable", "false")
                    != "true"
            {
                return Err(ApiError::forbidden(
                    "You can't edit the security object of the user database.",
                ));
            }
            let body = req.json_body()?;
            let valid = body.is_object()
                && valid_security_section(body.get("admins"))
                && valid_security_section(body.get("members"));
            if !valid {
                return Err(ApiError::bad_request("Invalid security object"));
            }
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            state
                .coordinator
                .set_db_meta(ctx.db, "security", bytes)
                .await?;
            state.forget_security(ctx.db);
            Ok(ok(StatusCode::OK))
        }
        _ => Err(not_allowed("PUT,GET")),
    }
}

async fn int_setting(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    key: &'static str,
    default: u64,
    allowed: &str,
) -> ApiResult<Response> {
    match req.method {
        Method::GET | Method::HEAD => {
            let v = state
                .coordinator
                .get_db_meta(ctx.db, key)
                .await?
                .and_then(|b| String::from_utf8(b).ok()?.trim().parse::<u64>().ok())
                .unwrap_or(default);
            Ok(json_bytes(StatusCode::OK, format!("{v}\n").into_bytes()))
        }
        Method::PUT => {
            ctx.require_admin(&req.user)?;
            let n = match req.json_body()? {
                Value::Number(n) => n.as_u64().filter(|n| *n > 0),
                _ => None,
            }
            .ok_or_else(|| ApiError::bad_request(format!("`{key}` must be positive integer")))?;
            state
                .coordinator
                .set_db_meta(ctx.db, key, n.to_string().into_bytes())
                .await?;
            Ok(ok(StatusCode::OK))
        }
        _ => Err(not_allowed(allowed)),
    }
}

/// `GET|PUT /{db}/_revs_limit`.
pub async fn revs_limit(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    int_setting(state, req, ctx, "revs_limit", 1000, "PUT,GET").await
}

/// `GET|PUT /{db}/_purged_infos_limit`.
pub async fn purged_infos_limit(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
) -> ApiResult<Response> {
    int_setting(state, req, ctx, "purged_infos_limit", 1000, "GET,PUT").await
}

/// `GET /{db}/_purged_infos` (readers may list them, as in CouchDB).
pub async fn purged_infos(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    if !matches!(req.method, Method::GET | Method::HEAD) {
        return Err(not_allowed("GET"));
    }
    let infos = state.coordinator.purged_infos(ctx.db).await?;
    let list: Vec<Value> = infos
        .into_iter()
        .map(|p| json!({"id": p.id, "revs": p.revs}))
        .collect();
    Ok(json(StatusCode::OK, &json!({"purged_infos": list})))
}

/// Reads a `{"docid": ["rev", ...]}` body.
fn id_revs_body(req: &Req) -> ApiResult<Vec<(String, Vec<Rev>)>> {
    let body = req.json_object()?;
    let mut out = Vec::with_capacity(body.len());
    for (id, revs) in body {
        let revs = revs
            .as_array()
            .ok_or_else(|| ApiError::bad_request(format!("Revisions for {id} must be a list")))?
            .iter()
            .map(|r| {
                r.as_str()
                    .ok_or_else(|| ApiError::bad_request("Invalid rev format"))
                    .and_then(parse_rev)
            })
            .collect::<ApiResult<Vec<_>>>()?;
        out.push((id, revs));
    }
    Ok(out)
}

/// `POST /{db}/_purge`.
pub async fn purge(state: &AppState, req: &Req, ctx: &DbCtx<'_>) -> ApiResult<Response> {
    if req.method != Method::POST {
        return Err(not_allowed("POST"));
    }
    req.require_json()?;
    let request = id_revs_body(req)?;
    // `[purge] max_revisions_number` (default infinity) caps the revisions of one
    // request.
    let max = state
        .config
        .get("purge", "max_revisions_number")
        .and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(max) = max {
        let revs: usize = request.iter().map(|(_, revs)| revs.len()).sum();
        if revs > max {
            return Err(ApiError::bad_request(
                "Exceeded maximum number of revisions.",
            ));
        }
    }
    let purged = state.coordinator.purge(ctx.db, request).await?;
    let mut out = Map::new();
    for (id, revs) in purged {
        out.insert(
            id,
            json!(revs.iter().map(|r| r.to_string()).collect::<Vec<_>>()),
        );
    }
    Ok(json(
        StatusCode::CREATED,
        &json!({"purge_seq": null, "purged": out}),
    ))
}

/// `POST /{db}/_revs_diff` (or `_missing_revs` when `missing_revs_shape`).
pub async fn revs_diff(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    missing_revs_shape: bool,
) -> ApiResult<Response> {
    if req.method != Method::POST {
        return Err(not_allowed("POST"));
    }
    req.require_json()?;
    let request = id_revs_body(req)?;
    let diffs = state.coordinator.revs_diff(ctx.db, request).await?;
    let mut out = Map::new();
    for (id, d) in diffs {
        let missing: Vec<String> = d.missing.iter().map(|r| r.to_string()).collect();
        if missing_revs_shape {
            out.insert(id, json!(missing));
        } else {
            let mut entry = Map::new();
            entry.insert("missing".into(), json!(missing));
            if !d.possible_ancestors.is_empty() {
                let pa: Vec<String> = d.possible_ancestors.iter().map(|r| r.to_string()).collect();
                entry.insert("possible_ancestors".into(), json!(pa));
            }
            out.insert(id, Value::Object(entry));
        }
    }
    let body = if missing_revs_shape {
        json!({ "missing_revs": out })
    } else {
        Value::Object(out)
    };
    Ok(json(StatusCode::OK, &body))
}

/// `GET /{db}/_shards[/{docid}]`.
pub async fn shards(
    state: &AppState,
    req: &Req,
    ctx: &DbCtx<'_>,
    doc: Option<&str>,
) -> ApiResult<Response> {
    if !matches!(req.method, Method::GET | Method::HEAD) {
        return Err(not_allowed("GET"));
    }
    let map = state
        .coordinator
        .shard_map(ctx.db)
        .ok_or_else(ApiError::no_db)?;
    match doc {
        Some(id) => {
            let r = &map.ranges[map.range_index(id)];
            Ok(json(
                StatusCode::OK,
                &json!({"range": r.name(), "nodes": r.nodes}),
            ))
        }
        None => {
            let mut m = Map::new();
            for r in &map.ranges {
                m.insert(r.name(), json!(r.nodes));
            }
            Ok(json(StatusCode::OK, &json!({ "shards": m })))
        }
    }
}
