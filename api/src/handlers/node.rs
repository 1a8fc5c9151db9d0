//! `/_node/{node}/...`: configuration, versions and the node-local shard maps.

use crate::auth::require_admin;
use crate::config_store::ConfigError;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;
use crate::response::json;
use crate::routes::not_allowed;
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// Config sections CouchDB refuses to change over HTTP
/// (`couch_util:check_config_blacklist`).
const BLACKLISTED_SECTIONS: [&str; 9] = [
    "daemons",
    "external",
    "httpd_design_handlers",
    "httpd_db_handlers",
    "httpd_global_handlers",
    "native_query_servers",
    "os_daemons",
    "query_servers",
    "feature_flags",
];

/// Dispatches a `/_node/{node}/...` request.
pub async fn handle(state: &AppState, req: &Req, node: &str, rest: &[&str]) -> ApiResult<Response> {
    require_admin(&req.user)?;
    if node != "_local" && node != state.coordinator.node_name() {
        return match state.coordinator.http_addr_of(node) {
            Some(addr) => proxy(req, &addr, rest).await,
            None => Err(ApiError::not_found(format!("no such node: {node}"))),
        };
    }
    match rest {
        [] => Ok(json(
            StatusCode::OK,
            &json!({"name": state.coordinator.node_name()}),
        )),
        ["_config"] => {
            get(req, "GET")?;
            Ok(json(StatusCode::OK, &json!(state.config.all())))
        }
        ["_config", "_reload"] => match req.method {
            Method::POST => {
                state
                    .config
                    .reload()
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                apply_live(state, "cluster", "q");
                Ok(json(StatusCode::OK, &json!({"ok": true})))
            }
            _ => Err(not_allowed("POST")),
        },
        ["_config", section] => {
            get(req, "GET")?;
            Ok(json(StatusCode::OK, &json!(state.config.section(section))))
        }
        ["_config", section, key] => config_key(state, req, section, key),
        ["_stats", path @ ..] => crate::handlers::changes::stats(req, path),
        ["_versions"] => {
            get(req, "GET")?;
            Ok(json(
                StatusCode::OK,
                &json!({
                    "chaise_version": env!("CARGO_PKG_VERSION"),
                    "javascript_engine": {"name": "none", "version": "0"},
                    "collation_driver": {"name": "raw", "library_version": "0", "collator_version": "0", "collation_algorithm_version": "0"},
                    "supported_hashes": ["sha", "sha224", "sha256", "sha384", "sha512"],
                }),
            ))
        }
        ["_dbs", db] => {
            get(req, "GET,HEAD")?;
            let map = state
                .coordinator
                .shard_map(db)
                .ok_or_else(|| ApiError::not_found("missing"))?;
            Ok(json(StatusCode::OK, &map.to_couch_doc()))
        }
        ["_nodes", "_all_docs"] => {
            get(req, "GET,HEAD")?;
            let rows: Vec<Value> = state
                .coordinator
                .cluster_nodes()
                .into_iter()
                .map(|n| json!({"id": n, "key": n, "value": {"rev": node_rev(&n)}}))
                .collect();
            Ok(json(
                StatusCode::OK,
                &json!({"total_rows": rows.len(), "offset": 0, "rows": rows}),
            ))
        }
        ["_nodes", name] => nodes_doc(state, req, name).await,
        _ => Err(ApiError::not_found("missing")),
    }
}

/// The (stable) revision shown for a member's `_nodes` document.
fn node_rev(name: &str) -> String {
    use md5::{Digest, Md5};
    format!("1-{}", hex::encode(Md5::digest(name.as_bytes())))
}

/// `/_node/_local/_nodes/{name}`: cluster members as CouchDB's `_nodes` documents.
/// PUT adds a node (reached at its host and this node's cluster port), DELETE
/// removes it from the cluster.
async fn nodes_doc(state: &AppState, req: &Req, name: &str) -> ApiResult<Response> {
    let member = state.coordinator.cluster_nodes().iter().any(|n| n == name);
    match req.method {
        Method::GET | Method::HEAD if member => Ok(json(
            StatusCode::OK,
            &json!({"_id": name, "_rev": node_rev(name)}),
        )),
        Method::GET | Method::HEAD => Err(ApiError::not_found("missing")),
        Method::PUT => {
            let host = name
                .split_once('@')
                .map(|(_, h)| h)
                .ok_or_else(|| ApiError::bad_request("Node names look like name@host"))?;
            let port = state.config_u64("chaise", "cluster_port", 9100);
            let added = state
                .coordinator
                .add_node(&format!("{host}:{port}"), Some(name))
                .await?;
            Ok(json(
                StatusCode::CREATED,
                &json!({"ok": true, "id": added, "rev": node_rev(&added)}),
            ))
        }
        Method::DELETE if member => {
            state.coordinator.remove_node(name).await?;
            Ok(json(
                StatusCode::OK,
                &json!({"ok": true, "id": name, "rev": node_rev(name)}),
            ))
        }
        Method::DELETE => Err(ApiError::not_found("missing")),
        _ => Err(not_allowed("GET,HEAD,PUT,DELETE")),
    }
}

/// Allows GET and HEAD only; the 405 names `allowed`, as CouchDB's message for
/// that path does.
fn get(req: &Req, allowed: &str) -> ApiResult<()> {
    match req.method {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(not_allowed(allowed)),
    }
}

fn check_blacklist(section: &str) -> ApiResult<()> {
    if BLACKLISTED_SECTIONS.contains(&section) {
        Err(ApiError::forbidden(
            "Config section blacklisted for modification over HTTP API.",
        ))
    } else {
        Ok(())
    }
}

fn config_key(state: &AppState, req: &Req, section: &str, key: &str) -> ApiResult<Response> {
    let persist = req.header("x-couch-persist") != Some("false");
    match req.method {
        Method::GET | Method::HEAD => match state.config.get(section, key) {
            Some(v) => Ok(json(StatusCode::OK, &Value::String(v))),
            None => Err(ApiError::not_found("unknown_config_value")),
        },
        Method::PUT => {
            check_blacklist(section)?;
            let value = match req.json_body()? {
                Value::String(s) => s.trim().to_string(),
                _ => return Err(ApiError::bad_request("a JSON string expected")),
            };
            let old = state
                .config
                .set(section, key, &value, persist)
                .map_err(config_error)?;
            apply_live(state, section, key);
            Ok(json(
                StatusCode::OK,
                &Value::String(old.unwrap_or_default()),
            ))
        }
        Method::DELETE => {
            check_blacklist(section)?;
            let old = state
                .config
                .delete(section, key, persist)
                .map_err(config_error)?;
            apply_live(state, section, key);
            match old {
                Some(v) => Ok(json(StatusCode::OK, &Value::String(v))),
                None => Err(ApiError::not_found("unknown_config_value")),
            }
        }
        _ => Err(not_allowed("GET,PUT,DELETE")),
    }
}

/// Invalid names and values are the client's fault (400, as CouchDB's
/// `{error, Reason}` from `config:set`); failing to write the file is ours.
fn config_error(e: ConfigError) -> ApiError {
    match e {
        ConfigError::Io { .. } => ApiError::internal(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Applies a changed setting that running components read at start.
fn apply_live(state: &AppState, section: &str, key: &str) {
    if section == "cluster" && (key == "q" || key == "n") {
        let get = |k: &str| {
            state
                .config
                .get("cluster", k)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        state
            .coordinator
            .set_defaults(get("q").map(|q| q as u32), get("n").map(|n| n as usize));
    }
}

/// Forwards a `/_node/{other}/...` request to that member's HTTP API (as its
/// `/_node/_local/...`) with the caller's credentials, and relays the answer.
async fn proxy(req: &Req, addr: &str, rest: &[&str]) -> ApiResult<Response> {
    let mut path = String::from("/_node/_local");
    for seg in rest {
        path.push('/');
        path.extend(percent_encoding::utf8_percent_encode(
            seg,
            percent_encoding::NON_ALPHANUMERIC,
        ));
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(req.query.iter())
        .finish();
    let url = if query.is_empty() {
        format!("http://{addr}{path}")
    } else {
        format!("http://{addr}{path}?{query}")
    };
    let method = reqwest::Method::from_bytes(req.method.as_str().as_bytes())
        .map_err(|_| ApiError::bad_request("bad method"))?;
    let mut out = reqwest::Client::new()
        .request(method, url)
        .body(req.body.to_vec());
    for h in [
        "authorization",
        "cookie",
        "content-type",
        "accept",
        "x-couch-persist",
    ] {
        if let Some(v) = req.header(h) {
            out = out.header(h, v);
        }
    }
    let resp = out
        .send()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "nodedown", e.to_string()))?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "nodedown", e.to_string()))?;
    let mut r = crate::response::json_bytes(status, body.to_vec());
    if let Ok(v) = axum::http::HeaderValue::from_str(&content_type) {
        r.headers_mut().insert("content-type", v);
    }
    Ok(r)
}
