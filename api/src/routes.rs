//! Request routing: CouchDB paths (with `_design/` and `_local/` ids, attachment
//! names containing `/`) mapped to handlers.

use crate::auth::{self, UserCtx};
use crate::error::{ApiError, ApiResult};
use crate::handlers::{
    all_docs, attachment, bulk, changes, cluster_setup, database, document, node, server, session,
};
use crate::request::Req;
use crate::AppState;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use percent_encoding::percent_decode_str;

/// System databases whose names may start with `_`.
pub const SYSTEM_DBS: [&str; 3] = ["_users", "_replicator", "_global_changes"];

/// Whether `name` is a valid database name.
pub fn valid_db_name(name: &str) -> bool {
    if SYSTEM_DBS.contains(&name) {
        return true;
    }
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '$' | '(' | ')' | '+' | '-' | '/'))
        && name.split('/').all(|seg| seg.len() < 240)
}

fn decode_segments(path: &str) -> ApiResult<Vec<String>> {
    let mut segs: Vec<String> = Vec::new();
    for raw in path.split('/').skip(1) {
        let s = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| ApiError::bad_request("URL is not valid UTF-8"))?;
        segs.push(s.into_owned());
    }
    if segs.last().is_some_and(|s| s.is_empty()) {
        segs.pop();
    }
    Ok(segs)
}

/// Parses, authenticates and routes one request. Returns the response and a
/// refreshed session cookie to set, if any.
pub async fn handle(state: &AppState, req: Request<Body>) -> ApiResult<(Response, Option<String>)> {
    let (parts, body) = req.into_parts();
    let limit = state.config_u64("chttpd", "max_http_request_size", 4_294_967_296) as usize;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request entity is too large",
        )
    };
    let declared = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let raw_path = parts.uri.path();
    if raw_path.len() > state.config_u64("chttpd", "max_uri_length", 8000) as usize {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "too_long",
            "URL too long",
        ));
    }
    let segments = decode_segments(raw_path)?;
    // Attachment uploads are read as they arrive, by their handlers; every other
    // body is read whole here.
    let (body, stream) = if streams_body(&parts.method, &parts.headers, &segments) {
        let limited = http_body_util::Limited::new(body, limit);
        (bytes::Bytes::new(), Some(Body::new(limited)))
    } else {
        let body = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| too_large())?;
        (body, None)
    };
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let user = auth::authenticate(state, &parts.headers, peer).await?;
    auth::require_valid_user(state, &user, &parts.method, &segments)?;
    let cookie = user.refreshed_cookie.clone();
    let req = Req {
        method: parts.method,
        segments,
        query,
        headers: parts.headers,
        body,
        stream: std::sync::Mutex::new(stream),
        user,
        peer,
    };
    let resp = route(state, req).await?;
    Ok((resp, cookie))
}

/// Whether a request's body is left for its handler to stream: a standalone
/// attachment PUT, or a document PUT as `multipart/related`.
fn streams_body(method: &Method, headers: &axum::http::HeaderMap, segs: &[String]) -> bool {
    if method != Method::PUT {
        return false;
    }
    let multipart = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| crate::multipart::media_type(c) == "multipart/related");
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        [db, ..] if db.starts_with('_') && !SYSTEM_DBS.contains(db) => false,
        [_, "_local", ..] => false,
        [_, "_design", _] | [_, _] => multipart,
        [_, "_design", _, _, ..] => true,
        [_, id, _, ..] => !id.starts_with('_'),
        _ => false,
    }
}

async fn route(state: &AppState, req: Req) -> ApiResult<Response> {
    let segs: Vec<String> = req.segments.clone();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        [] => server::root(state, &req),
        ["_up"] => server::up(state, &req).await,
        ["_uuids"] => server::uuids(state, &req),
        ["_session"] => session::handle(state, &req).await,
        ["_all_dbs"] => server::all_dbs(state, &req).await,
        ["_dbs_info"] => server::dbs_info(state, &req).await,
        ["_active_tasks"] => server::active_tasks(state, &req),
        ["_db_updates"] => crate::handlers::db_updates::db_updates(state, &req).await,
        ["_membership"] => server::membership(state, &req).await,
        ["_cluster_setup"] => cluster_setup::handle(state, &req).await,
        ["_node"] => {
            auth::require_admin(&req.user)?;
            Err(ApiError::bad_request("Incomplete path to _node request"))
        }
        ["_node", node_name, rest @ ..] => node::handle(state, &req, node_name, rest).await,
        ["favicon.ico"] => Err(ApiError::not_found("missing")),
        [db, rest @ ..] => {
            if !valid_db_name(db) {
                return Err(illegal_db(&req, db, rest));
            }
            db_route(state, req, db, rest).await
        }
    }
}

/// A request for a database whose name is not valid. As in CouchDB, any other
/// `/_xxx` path is server-admin only, only a create is refused as illegal, and
/// anything else finds no such database.
fn illegal_db(req: &Req, db: &str, rest: &[&str]) -> ApiError {
    let creates_or_deletes = rest.is_empty() && matches!(req.method, Method::PUT | Method::DELETE);
    if db.starts_with('_') || creates_or_deletes {
        if let Err(e) = auth::require_admin(&req.user) {
            return e;
        }
    }
    if rest.is_empty() && req.method == Method::PUT {
        ApiError::illegal_db_name(db)
    } else {
        ApiError::no_db()
    }
}

async fn db_route(state: &AppState, req: Req, db: &str, rest: &[&str]) -> ApiResult<Response> {
    // Server-admin-only endpoints are checked before the database's security.
    let server_admin_only = matches!(rest, [] if matches!(req.method, Method::PUT | Method::DELETE))
        || matches!(rest, ["_purge" | "_purged_infos_limit", ..])
        // chttpd_auth_request: listing the users database is for server admins.
        || (db == crate::handlers::users::USERS_DB && matches!(rest, ["_all_docs" | "_changes", ..]));
    if server_admin_only {
        auth::require_admin(&req.user)?;
    }
    if rest.is_empty() && req.method == Method::PUT {
        return database::create(state, &req, db).await;
    }
    if rest.is_empty() && req.method == Method::DELETE {
        database::refuse_delete_with_rev(&req)?;
    }
    if !state.coordinator.db_exists(db) {
        return Err(ApiError::no_db());
    }
    let security = state.security(db).await?;
    auth::require_reader(&security, &req.user)?;
    let ctx = DbCtx {
        db,
        security: &security,
    };
    match rest {
        [] => database::handle(state, &req, &ctx).await,
        ["_all_docs"] => all_docs::all_docs(state, &req, &ctx, all_docs::Kind::All).await,
        ["_all_docs", "queries"] => all_docs::queries(state, &req, &ctx, all_docs::Kind::All).await,
        ["_design_docs"] => all_docs::all_docs(state, &req, &ctx, all_docs::Kind::Design).await,
        ["_design_docs", "queries"] => {
            all_docs::queries(state, &req, &ctx, all_docs::Kind::Design).await
        }
        ["_local_docs"] => all_docs::local_docs(state, &req, &ctx).await,
        ["_local_docs", "queries"] => {
            all_docs::queries(state, &req, &ctx, all_docs::Kind::Local).await
        }
        ["_bulk_docs"] => bulk::bulk_docs(state, &req, &ctx).await,
        ["_bulk_get"] => bulk::bulk_get(state, &req, &ctx).await,
        ["_changes"] => changes::changes(state, &req, &ctx).await,
        ["_compact", ..] => database::compact(state, &req, &ctx).await,
        ["_view_cleanup"] => database::view_cleanup(state, &req, &ctx).await,
        ["_ensure_full_commit"] => database::ensure_full_commit(state, &req, &ctx).await,
        ["_security"] => database::security(state, &req, &ctx).await,
        ["_revs_limit"] => database::revs_limit(state, &req, &ctx).await,
        ["_purged_infos_limit"] => database::purged_infos_limit(state, &req, &ctx).await,
        ["_purged_infos"] => database::purged_infos(state, &req, &ctx).await,
        ["_purge"] => database::purge(state, &req, &ctx).await,
        ["_revs_diff"] => database::revs_diff(state, &req, &ctx, false).await,
        ["_missing_revs"] => database::revs_diff(state, &req, &ctx, true).await,
        ["_shards", rest @ ..] => database::shards(state, &req, &ctx, rest.first().copied()).await,
        ["_temp_view"] => Err(ApiError::new(
            StatusCode::GONE,
            "gone",
            "Temporary views are not supported in CouchDB",
        )),
        ["_design", name] => document::handle(state, &req, &ctx, &format!("_design/{name}")).await,
        ["_design", name, att @ ..] => {
            attachment::handle(
                state,
                &req,
                &ctx,
                &format!("_design/{name}"),
                &att.join("/"),
            )
            .await
        }
        ["_local", name] => document::local(state, &req, &ctx, &format!("_local/{name}")).await,
        ["_local", ..] => Err(ApiError::bad_request(
            "_local documents do not accept attachments.",
        )),
        [id] if id.starts_with("_design/") => {
            // CouchDB redirects an encoded design doc id to the slash form.
            if req.method == Method::GET {
                // chttpd:send_redirect: an absolute URL.
                let name = &id["_design/".len()..];
                let location = req.absolute_uri(&format!(
                    "/{}/_design/{}",
                    document::url_encode(db),
                    document::url_encode(name)
                ))?;
                let resp = crate::response::empty(StatusCode::MOVED_PERMANENTLY);
                return Ok(crate::response::with_header(resp, "location", &location));
            }
            document::handle(state, &req, &ctx, id).await
        }
        [id] if id.starts_with("_local/") => document::local(state, &req, &ctx, id).await,
        [id] if id.starts_with('_') => Err(ApiError::illegal_docid(
            "Only reserved document ids may start with underscore.",
        )),
        [id] => document::handle(state, &req, &ctx, id).await,
        [id, att @ ..] => {
            if id.starts_with('_') {
                return Err(ApiError::illegal_docid(
                    "Only reserved document ids may start with underscore.",
                ));
            }
            attachment::handle(state, &req, &ctx, id, &att.join("/")).await
        }
    }
}

/// The database a request addresses, with its security object.
pub struct DbCtx<'a> {
    /// Database name.
    pub db: &'a str,
    /// Its `_security` object.
    pub security: &'a serde_json::Value,
}

impl DbCtx<'_> {
    /// Requires database admin rights for this request's user.
    pub fn require_admin(&self, user: &UserCtx) -> ApiResult<()> {
        auth::require_db_admin(self.security, user)
    }
}

/// The 405 for a method a path does not support.
pub fn not_allowed(allowed: &str) -> ApiError {
    ApiError::method_not_allowed(allowed)
}
