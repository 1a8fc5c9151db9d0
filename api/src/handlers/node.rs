//! `/_node/{node}/...`: configuration, versions and the node-local shard maps.

use crate::auth::require_admin;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;
use crate::response::json;
use crate::routes::not_allowed;
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

/// Dispatches a `/_node/{node}/...` request.
pub async fn handle(state: &AppState, req: &Req, node: &str, rest: &[&str]) -> ApiResult<Response> {
    require_admin(&req.user)?;
    if node != "_local" && node != state.coordinator.node_name() {
        return Err(ApiError::not_found(format!(
            "Node {node} is not a member of this cluster"
        )));
    }
    match rest {
        ["_config"] => {
            get(req)?;
            Ok(json(StatusCode::OK, &json!(state.config.all())))
        }
        ["_config", "_reload"] => match req.method {
            Method::POST => Ok(json(StatusCode::OK, &json!({"ok": true}))),
            _ => Err(not_allowed("POST")),
        },
        ["_config", section] => {
            get(req)?;
            Ok(json(StatusCode::OK, &json!(state.config.section(section))))
        }
        ["_config", section, key] => config_key(state, req, section, key),
        ["_versions"] => {
            get(req)?;
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
            get(req)?;
            let map = state
                .coordinator
                .shard_map(db)
                .ok_or_else(|| ApiError::not_found("missing"))?;
            Ok(json(StatusCode::OK, &map.to_couch_doc()))
        }
        _ => Err(ApiError::not_found("missing")),
    }
}

fn get(req: &Req) -> ApiResult<()> {
    match req.method {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(not_allowed("GET,HEAD")),
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
            let value = match req.json_body()? {
                Value::String(s) => s,
                _ => return Err(ApiError::bad_request("Value must be a JSON string")),
            };
            let old = state
                .config
                .set(section, key, &value, persist)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            apply_live(state, section, key);
            Ok(json(
                StatusCode::OK,
                &Value::String(old.unwrap_or_default()),
            ))
        }
        Method::DELETE => {
            let old = state
                .config
                .delete(section, key, persist)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            apply_live(state, section, key);
            match old {
                Some(v) => Ok(json(StatusCode::OK, &Value::String(v))),
                None => Err(ApiError::not_found("unknown_config_value")),
            }
        }
        _ => Err(not_allowed("GET,HEAD,PUT,DELETE")),
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
