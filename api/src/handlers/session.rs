//! `/_session`: cookie login, session info and logout
//! (`couch_httpd_auth:handle_session_req`).

use crate::auth::{check_password, clear_session_cookie, session_set_cookie};
use crate::error::{ApiError, ApiResult};
use crate::request::Req;
use crate::response::{json, with_header};
use crate::routes::not_allowed;
use crate::AppState;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

/// Dispatches `/_session` by method.
pub async fn handle(state: &AppState, req: &Req) -> ApiResult<Response> {
    match req.method {
        Method::GET | Method::HEAD => info(state, req),
        Method::POST => login(state, req).await,
        Method::DELETE => {
            let (status, location) = redirect(req, "next")?;
            let resp = json(status, &json!({"ok": true}));
            let resp = with_header(resp, "set-cookie", &clear_session_cookie(state));
            Ok(with_location(resp, location))
        }
        _ => Err(not_allowed("GET,HEAD,POST,DELETE")),
    }
}

/// 302 to the absolute form of the `param` query parameter when present,
/// else 200.
fn redirect(req: &Req, param: &str) -> ApiResult<(StatusCode, Option<String>)> {
    match req.param(param) {
        Some(path) => Ok((StatusCode::FOUND, Some(req.absolute_uri(path)?))),
        None => Ok((StatusCode::OK, None)),
    }
}

fn with_location(resp: Response, location: Option<String>) -> Response {
    match location {
        Some(l) => with_header(resp, "location", &l),
        None => resp,
    }
}

fn info(state: &AppState, req: &Req) -> ApiResult<Response> {
    if req.user.name.is_none() && req.param("basic") == Some("true") {
        return Err(ApiError::unauthorized("Please login."));
    }
    let mut info = Map::new();
    info.insert(
        "authentication_handlers".into(),
        json!(["cookie", "default"]),
    );
    if let Some(a) = req.user.authenticated {
        info.insert("authenticated".into(), json!(a));
    }
    // Only when configured: CouchDB 3's default.ini leaves it commented out.
    if let Some(db) = state.config.get("chttpd_auth", "authentication_db") {
        info.insert("authentication_db".into(), json!(db));
    }
    Ok(json(
        StatusCode::OK,
        &json!({
            "ok": true,
            "userCtx": {"name": req.user.name, "roles": req.user.roles},
            "info": info,
        }),
    ))
}

/// The login form's fields: from `application/x-www-form-urlencoded` or a JSON
/// object (whose non-string values are ignored).
fn form_fields(req: &Req) -> ApiResult<Vec<(String, String)>> {
    let ctype = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("application/x-www-form-urlencoded") {
        Ok(form_urlencoded::parse(&req.body).into_owned().collect())
    } else if ctype.starts_with("application/json") {
        Ok(req
            .json_object()?
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "Content-Type must be 'application/x-www-form-urlencoded' or 'application/json'",
        ))
    }
}

/// `name` or `username` (they must agree when both are given).
fn username(form: &[(String, String)]) -> ApiResult<String> {
    let get = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    match (get("name"), get("username")) {
        (None, None) => Err(ApiError::bad_request(
            "request body must contain a username",
        )),
        (Some(n), None) | (None, Some(n)) => Ok(n),
        (Some(n), Some(u)) if n == u => Ok(n),
        _ => Err(ApiError::bad_request(
            "request body contains different usernames",
        )),
    }
}

async fn login(state: &AppState, req: &Req) -> ApiResult<Response> {
    let form = form_fields(req)?;
    let name = username(&form)?;
    let password = form
        .iter()
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let Some((roles, salt)) = check_password(state, &name, password, req.peer).await? else {
        let (status, location) = match redirect(req, "fail")? {
            (StatusCode::OK, _) => (StatusCode::UNAUTHORIZED, None),
            other => other,
        };
        let resp = json(
            status,
            &json!({"error": "unauthorized", "reason": "Name or password is incorrect."}),
        );
        let resp = with_header(resp, "set-cookie", &clear_session_cookie(state));
        return Ok(with_location(resp, location));
    };
    let (status, location) = redirect(req, "next")?;
    let resp = json(status, &json!({"ok": true, "name": name, "roles": roles}));
    let resp = with_header(resp, "set-cookie", &session_set_cookie(state, &name, &salt));
    Ok(with_location(resp, location))
}
