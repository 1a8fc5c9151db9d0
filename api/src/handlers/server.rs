//! Server-level endpoints: `/`, `/_up`, `/_uuids`, `/_all_dbs`, `/_dbs_info`,
//! `/_active_tasks`, `/_membership`.

use crate::auth::require_admin;
use crate::error::{ApiError, ApiResult};
use crate::handlers::database::db_info_json;
use crate::request::Req;
use crate::response::{json, with_header};
use crate::routes::not_allowed;
use crate::{AppState, COUCHDB_VERSION};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use chaise_cluster::raft::Readiness;
use serde_json::{json, Value};

fn get_only(req: &Req) -> ApiResult<()> {
    match req.method {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(not_allowed("GET,HEAD")),
    }
}

/// `GET /`: the welcome object.
pub fn root(state: &AppState, req: &Req) -> ApiResult<Response> {
    get_only(req)?;
    let vendor: serde_json::Map<String, Value> = state
        .config
        .section("vendor")
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let mut vendor = vendor;
    vendor
        .entry("name")
        .or_insert_with(|| Value::String("Chaise".into()));
    Ok(json(
        StatusCode::OK,
        &json!({
            "couchdb": "Welcome",
            "version": COUCHDB_VERSION,
            "git_sha": env!("CARGO_PKG_VERSION"),
            "uuid": state.server_uuid,
            "features": ["access-ready", "partitioned", "pluggable-storage-engines", "reshard", "scheduler"],
            "vendor": vendor,
        }),
    ))
}

/// `GET /_up`.
pub async fn up(state: &AppState, req: &Req) -> ApiResult<Response> {
    get_only(req)?;
    match state.config.get("couchdb", "maintenance_mode").as_deref() {
        Some("true") => Ok(json(
            StatusCode::NOT_FOUND,
            &json!({"status": "maintenance_mode"}),
        )),
        Some("nolb") => Ok(json(StatusCode::NOT_FOUND, &json!({"status": "nolb"}))),
        _ => Ok(match state.coordinator.readiness().await {
            Readiness::Ready => json(StatusCode::OK, &json!({"status": "ok", "seeds": {}})),
            Readiness::Seeding { leader, pending } => {
                let mut seeds = serde_json::Map::new();
                if let Some(leader) = leader {
                    seeds.insert(leader, json!({"pending_updates": pending}));
                }
                json(
                    StatusCode::NOT_FOUND,
                    &json!({"status": "seeding", "seeds": seeds}),
                )
            }
        }),
    }
}

/// `GET /_uuids?count=N`.
pub fn uuids(state: &AppState, req: &Req) -> ApiResult<Response> {
    if !matches!(req.method, Method::GET | Method::HEAD) {
        return Err(not_allowed("GET"));
    }
    let max = state.config_u64("uuids", "max_count", 1000);
    let count = match req.param("count") {
        None => 1,
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("count must be a positive integer"))?,
    };
    if count > max {
        return Err(ApiError::bad_request("count parameter too large"));
    }
    let ids: Vec<String> = (0..count).map(|_| state.uuids.next()).collect();
    let etag = {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        for id in &ids {
            h.update(id.as_bytes());
        }
        format!("\"{}\"", hex::encode(h.finalize()))
    };
    let resp = json(StatusCode::OK, &json!({ "uuids": ids }));
    let resp = with_header(resp, "cache-control", "must-revalidate, no-cache");
    // A date in the past, on purpose (as CouchDB).
    let resp = with_header(resp, "expires", "Mon, 01 Jan 1990 00:00:00 GMT");
    let resp = with_header(resp, "etag", &etag);
    Ok(with_header(resp, "pragma", "no-cache"))
}

/// Key range parameters shared by `_all_dbs` and `_dbs_info`.
fn select_dbs(state: &AppState, req: &Req) -> ApiResult<Vec<String>> {
    select_from(state.coordinator.all_dbs(), req)
}

/// Applies the `_all_dbs` parameters to the sorted list of all names.
fn select_from(mut names: Vec<String>, req: &Req) -> ApiResult<Vec<String>> {
    let key = |names: &[&str]| -> ApiResult<Option<String>> {
        for n in names {
            if let Some(v) = req.json_param(n)? {
                return match v {
                    Value::String(s) => Ok(Some(s)),
                    _ => Err(ApiError::bad_request(format!(
                        "`{n}` must be a JSON string"
                    ))),
                };
            }
        }
        Ok(None)
    };
    let start = key(&["startkey", "start_key"])?;
    let end = key(&["endkey", "end_key"])?;
    let descending = req.bool_param("descending", false)?;
    let inclusive_end = req.bool_param("inclusive_end", true)?;
    let skip = req.uint_param("skip")?.unwrap_or(0) as usize;
    let limit = req.uint_param("limit")?.map_or(usize::MAX, |l| l as usize);
    if descending {
        names.reverse();
    }
    let in_range = |n: &String| {
        let after_start = match &start {
            Some(s) if descending => n <= s,
            Some(s) => n >= s,
            None => true,
        };
        let before_end = match &end {
            Some(e) if descending => {
                if inclusive_end {
                    n >= e
                } else {
                    n > e
                }
            }
            Some(e) => {
                if inclusive_end {
                    n <= e
                } else {
                    n < e
                }
            }
            None => true,
        };
        after_start && before_end
    };
    Ok(names
        .into_iter()
        .filter(in_range)
        .skip(skip)
        .take(limit)
        .collect())
}

fn require_all_dbs_access(state: &AppState, req: &Req) -> ApiResult<()> {
    if state.config.get_or("chttpd", "admin_only_all_dbs", "true") == "true" {
        require_admin(&req.user)?;
    }
    Ok(())
}

/// `GET /_all_dbs`.
pub async fn all_dbs(state: &AppState, req: &Req) -> ApiResult<Response> {
    require_all_dbs_access(state, req)?;
    get_only(req)?;
    let names = state.coordinator.all_dbs();
    // Like CouchDB's hash of the `_dbs` info, the ETag changes with the set of
    // databases, whatever the parameters.
    let etag = {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        for n in &names {
            h.update(n.as_bytes());
            h.update(b"\n");
        }
        format!("\"{}\"", hex::encode(h.finalize()))
    };
    if crate::handlers::document::if_none_match(req, &etag) {
        let resp = crate::response::empty(StatusCode::NOT_MODIFIED);
        return Ok(with_header(resp, "etag", &etag));
    }
    let resp = json(StatusCode::OK, &json!(select_from(names, req)?));
    Ok(with_header(resp, "etag", &etag))
}

/// `GET|POST /_dbs_info`.
pub async fn dbs_info(state: &AppState, req: &Req) -> ApiResult<Response> {
    require_all_dbs_access(state, req)?;
    let names = match req.method {
        Method::GET | Method::HEAD => select_dbs(state, req)?,
        Method::POST => {
            req.require_json()?;
            let body = req.json_object()?;
            let keys = match body.get("keys") {
                None => return Err(ApiError::bad_request("`keys` member must exist.")),
                Some(Value::Array(keys)) => keys,
                Some(_) => return Err(ApiError::bad_request("`keys` member must be an array.")),
            };
            let max = state.config_u64("chttpd", "max_db_number_for_dbs_info_req", 100);
            if keys.len() as u64 > max {
                return Err(ApiError::bad_request("too_many_keys"));
            }
            // CouchDB answers `not_found` for any key it cannot open, strings or not.
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let info = match key.as_str() {
                    Some(name) => match state.coordinator.db_info(name).await {
                        Ok(info) => Some(info),
                        Err(chaise_cluster::ClusterError::NoDb) => None,
                        Err(e) => return Err(e.into()),
                    },
                    None => None,
                };
                out.push(match info {
                    Some(info) => json!({"key": key, "info": db_info_json(&info)}),
                    None => json!({"key": key, "error": "not_found"}),
                });
            }
            return Ok(json(StatusCode::OK, &Value::Array(out)));
        }
        _ => return Err(not_allowed("GET,HEAD,POST")),
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        // A database deleted while listing is skipped, as CouchDB does.
        match state.coordinator.db_info(&name).await {
            Ok(info) => out.push(json!({"key": name, "info": db_info_json(&info)})),
            Err(chaise_cluster::ClusterError::NoDb) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json(StatusCode::OK, &Value::Array(out)))
}

/// `GET /_active_tasks`: background tasks (none are long-running yet).
pub fn active_tasks(_state: &AppState, req: &Req) -> ApiResult<Response> {
    require_admin(&req.user)?;
    get_only(req)?;
    Ok(json(StatusCode::OK, &json!([])))
}

/// `GET /_membership`.
pub async fn membership(state: &AppState, req: &Req) -> ApiResult<Response> {
    require_admin(&req.user)?;
    if !matches!(req.method, Method::GET | Method::HEAD) {
        return Err(not_allowed("GET"));
    }
    Ok(json(
        StatusCode::OK,
        &json!({
            "all_nodes": state.coordinator.connected_nodes().await,
            "cluster_nodes": state.coordinator.cluster_nodes(),
        }),
    ))
}
