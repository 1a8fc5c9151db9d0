//! `/_session`: cookie login, session info and logout.

use crate::auth::{check_password, now_secs, session_cookie};
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
            let resp = json(StatusCode::OK, &json!({"ok": true}));
            Ok(with_header(
                resp,
                "set-cookie",
                &session_cookie::clear_cookie_header(),
            ))
        }
        _ => Err(not_allowed("GET,HEAD,POST,DELETE")),
    }
}

fn info(_state: &AppState, req: &Req) -> ApiResult<Response> {
    if req.user.name.is_none() && req.bool_param("basic", false)? {
        return Err(ApiError::unauthorized("Name or password is incorrect."));
    }
    let mut info = Map::new();
    info.insert(
        "authentication_handlers".into(),
        json!(["cookie", "default"]),
    );
    if let Some(a) = req.user.authenticated {
        info.insert("authenticated".into(), json!(a));
    }
    info.insert("authentication_db".into(), json!("_users"));
    Ok(json(
        StatusCode::OK,
        &json!({
            "ok": true,
            "userCtx": {"name": req.user.name, "roles": req.user.roles},
            "info": info,
        }),
    ))
}

async fn login(state: &AppState, req: &Req) -> ApiResult<Response> {
    let ctype = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let (name, password) = if ctype.starts_with("application/x-www-form-urlencoded") {
        let mut name = None;
        let mut pw = None;
        for (k, v) in form_urlencoded::parse(&req.body) {
            match k.as_ref() {
                "name" | "username" => name = Some(v.into_owned()),
                "password" => pw = Some(v.into_owned()),
                _ => {}
            }
        }
        (name, pw)
    } else if ctype.starts_with("application/json") {
        let body = req.json_object()?;
        let get = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        (get("name").or_else(|| get("username")), get("password"))
    } else {
        return Err(ApiError::bad_content_type());
    };
    let (Some(name), Some(password)) = (name, password) else {
        return Err(ApiError::unauthorized("Name or password is incorrect."));
    };
    let Some((roles, salt)) = check_password(state, &name, &password).await else {
        return Err(ApiError::unauthorized("Name or password is incorrect."));
    };
    let secret = state.secret();
    if secret.is_empty() {
        return Err(ApiError::internal("cookie auth secret is not set"));
    }
    let token = session_cookie::make_token(&name, &secret, &salt, now_secs());
    let persistent = state
        .config
        .get_or("chttpd_auth", "allow_persistent_cookies", "true")
        == "true";
    let cookie =
        session_cookie::set_cookie_header(&token, persistent.then(|| state.session_timeout()));
    let resp = match req.param("next") {
        Some(next) => {
            let r = crate::response::empty(StatusCode::FOUND);
            with_header(r, "location", next)
        }
        None => json(
            StatusCode::OK,
            &json!({"ok": true, "name": name, "roles": roles}),
        ),
    };
    Ok(with_header(resp, "set-cookie", &cookie))
}
