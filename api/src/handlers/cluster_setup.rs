//! `/_cluster_setup`: CouchDB's set-up wizard, so the usual curl workflow forms a
//! cluster: `enable_cluster` on each node, `add_node` for every other node on the
//! seed, then `finish_cluster`.

use crate::auth::require_admin;
use crate::error::{ApiError, ApiResult};
use crate::request::Req;
use crate::response::json;
use crate::routes::not_allowed;
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

const SYSTEM_DBS: [&str; 2] = ["_users", "_replicator"];

/// Dispatches `/_cluster_setup`.
pub async fn handle(state: &AppState, req: &Req) -> ApiResult<Response> {
    require_admin(&req.user)?;
    match req.method {
        Method::GET | Method::HEAD => {
            let mut dbs: Vec<String> = SYSTEM_DBS.iter().map(|s| s.to_string()).collect();
            if let Some(Value::Array(list)) = req.json_param("ensure_dbs_exist")? {
                dbs = list
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
            }
            Ok(json(
                StatusCode::OK,
                &json!({ "state": setup_state(state, &dbs) }),
            ))
        }
        Method::POST => {
            req.require_json()?;
            let body = req.json_object()?;
            let action = body.get("action").and_then(Value::as_str).unwrap_or("");
            match action {
                "enable_cluster" => enable_cluster(state, &body).await?,
                "enable_single_node" => enable_single_node(state, &body).await?,
                "add_node" => add_node(state, &body).await?,
                "finish_cluster" => finish_cluster(state, &body).await?,
                "receive_cookie" => {
                    let cookie = body
                        .get("cookie")
                        .and_then(Value::as_str)
                        .ok_or_else(|| ApiError::bad_request("cookie required"))?;
                    set(state, "chttpd_auth", "secret", cookie)?;
                    state.coordinator.set_secret(cookie);
                }
                "remove_node" => {}
                _ => return Err(ApiError::bad_request("Invalid Action'")),
            }
            Ok(json(StatusCode::CREATED, &json!({"ok": true})))
        }
        _ => Err(not_allowed("GET,HEAD,POST")),
    }
}

/// The setup state, derived from configuration and existing databases as CouchDB's
/// `setup:is_cluster_enabled` / `is_single_node_enabled` do.
fn setup_state(state: &AppState, dbs: &[String]) -> &'static str {
    let dbs_exist = dbs.iter().all(|d| state.coordinator.db_exists(d));
    let n = state.config_u64("cluster", "n", 3);
    let admins = !state.config.section("admins").is_empty();
    if state.config.get_or("couchdb", "single_node", "true") == "true" {
        return "single_node_enabled";
    }
    if n == 1 {
        return if admins && dbs_exist {
            "single_node_enabled"
        } else {
            "single_node_disabled"
        };
    }
    if !cluster_enabled(state) {
        "cluster_disabled"
    } else if dbs_exist {
        "cluster_finished"
    } else {
        "cluster_enabled"
    }
}

fn cluster_enabled(state: &AppState) -> bool {
    let bind = state.config.get_or("chttpd", "bind_address", "127.0.0.1");
    bind != "127.0.0.1" && !state.config.section("admins").is_empty()
}

fn set(state: &AppState, section: &str, key: &str, value: &str) -> ApiResult<()> {
    state
        .config
        .set(section, key, value, true)
        .map(|_| ())
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn str_field<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// A number that may arrive as a JSON number or string (`"port": "5984"`).
fn num_field(body: &Map<String, Value>, key: &str) -> Option<u64> {
    match body.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Sets the admin named in a set-up request (unless it already exists).
fn set_admin(state: &AppState, body: &Map<String, Value>) -> ApiResult<()> {
    let user = str_field(body, "username");
    let password = str_field(body, "password").or_else(|| str_field(body, "password_hash"));
    match (user, password) {
        (Some(u), Some(p)) => {
            if state.config.get("admins", u).is_none() {
                set(state, "admins", u, p)?;
            }
            Ok(())
        }
        _ if !state.config.section("admins").is_empty() => Ok(()),
        _ => Err(ApiError::bad_request(
            "Cluster setup requires username and password",
        )),
    }
}

async fn enable_cluster(state: &AppState, body: &Map<String, Value>) -> ApiResult<()> {
    if let Some(remote) = str_field(body, "remote_node") {
        return forward_enable(body, remote).await;
    }
    if cluster_enabled(state) && state.config.get_or("couchdb", "single_node", "true") != "true" {
        return Err(ApiError::bad_request("Cluster is already enabled"));
    }
    set_admin(state, body)?;
    if let Some(bind) = str_field(body, "bind_address") {
        set(state, "chttpd", "bind_address", bind)?;
    }
    if let Some(port) = num_field(body, "port") {
        set(state, "chttpd", "port", &port.to_string())?;
    }
    if let Some(n) = num_field(body, "node_count") {
        set(state, "cluster", "n", &n.to_string())?;
        state.coordinator.set_defaults(None, Some(n as usize));
    }
    set(state, "couchdb", "single_node", "false")?;
    Ok(())
}

/// Sends `enable_cluster` to another node with that node's current credentials.
async fn forward_enable(body: &Map<String, Value>, remote: &str) -> ApiResult<()> {
    let port = num_field(body, "port").unwrap_or(5984);
    let user = str_field(body, "remote_current_user").unwrap_or("");
    let pw = str_field(body, "remote_current_password").unwrap_or("");
    let mut fwd = body.clone();
    for k in [
        "remote_node",
        "remote_current_user",
        "remote_current_password",
    ] {
        fwd.remove(k);
    }
    let resp = reqwest::Client::new()
        .post(format!("http://{remote}:{port}/_cluster_setup"))
        .basic_auth(user, Some(pw))
        .json(&Value::Object(fwd))
        .send()
        .await
        .map_err(|_| ApiError::bad_request("Cluster setup unable to reach remote node"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        let reason = resp
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "remote enable_cluster failed".into());
        Err(ApiError::bad_request(reason))
    }
}

async fn enable_single_node(state: &AppState, body: &Map<String, Value>) -> ApiResult<()> {
    set_admin(state, body)?;
    if let Some(bind) = str_field(body, "bind_address") {
        set(state, "chttpd", "bind_address", bind)?;
    }
    if let Some(port) = num_field(body, "port") {
        set(state, "chttpd", "port", &port.to_string())?;
    }
    set(state, "couchdb", "single_node", "true")?;
    set(state, "cluster", "n", "1")?;
    state.coordinator.set_defaults(None, Some(1));
    ensure_dbs(state, &SYSTEM_DBS.map(str::to_string)).await
}

async fn add_node(state: &AppState, body: &Map<String, Value>) -> ApiResult<()> {
    if !cluster_enabled(state) {
        return Err(ApiError::bad_request("Cluster is not enabled."));
    }
    let invalid = || ApiError::bad_request("Add node failed. Invalid Host and/or Port.");
    let host = str_field(body, "host").ok_or_else(invalid)?;
    let port = num_field(body, "port").unwrap_or(5984);
    let name = format!("{}@{host}", str_field(body, "name").unwrap_or("chaise"));
    // The node must answer over HTTP with the credentials given, like CouchDB's check.
    let mut http = reqwest::Client::new().get(format!(
        "http://{host}:{port}/_node/_local/_config/chaise/cluster_port"
    ));
    if let (Some(u), Some(p)) = (str_field(body, "username"), str_field(body, "password")) {
        http = http.basic_auth(u, Some(p));
    }
    let resp = http.send().await.map_err(|_| invalid())?;
    if !resp.status().is_success() {
        return Err(invalid());
    }
    let cluster_port = resp
        .json::<Value>()
        .await
        .ok()
        .and_then(|v| v.as_str().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(9100);
    state
        .coordinator
        .add_node(&format!("{host}:{cluster_port}"), Some(&name))
        .await?;
    Ok(())
}

async fn ensure_dbs(state: &AppState, dbs: &[String]) -> ApiResult<()> {
    let security = br#"{"members":{"roles":["_admin"]},"admins":{"roles":["_admin"]}}"#.to_vec();
    for db in dbs {
        match state
            .coordinator
            .create_db(db, None, None, Map::new(), security.clone())
            .await
        {
            Ok(_) | Err(chaise_cluster::ClusterError::DbExists) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn finish_cluster(state: &AppState, body: &Map<String, Value>) -> ApiResult<()> {
    let mut dbs: Vec<String> = SYSTEM_DBS.iter().map(|s| s.to_string()).collect();
    if let Some(Value::Array(list)) = body.get("ensure_dbs_exist") {
        dbs = list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
    }
    if dbs.iter().all(|d| state.coordinator.db_exists(d)) {
        return Err(ApiError::bad_request("Cluster is already finished"));
    }
    ensure_dbs(state, &dbs).await
}
