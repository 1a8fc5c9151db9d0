//! Authentication (basic and cookie) and the authorization rules of CouchDB 3.

pub mod password;
pub mod session_cookie;

use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

/// The user behind a request (CouchDB's `userCtx`).
#[derive(Debug, Clone, Default)]
pub struct UserCtx {
    /// User name; `None` for anonymous.
    pub name: Option<String>,
    /// Roles (`_admin` for server admins).
    pub roles: Vec<String>,
    /// How the user authenticated: `default` (basic) or `cookie`.
    pub authenticated: Option<&'static str>,
    /// A refreshed session cookie to send back, if the old one is ageing.
    pub refreshed_cookie: Option<String>,
}

impl UserCtx {
    /// Whether the user is a server admin.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "_admin")
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where a user's password hash lives.
enum Credentials {
    Admin(String),
    User(Value),
}

impl Credentials {
    fn salt(&self) -> Option<String> {
        match self {
            Credentials::Admin(h) => password::salt_of(h),
            Credentials::User(doc) => doc.get("salt").and_then(|s| s.as_str()).map(str::to_string),
        }
    }

    fn roles(&self) -> Vec<String> {
        match self {
            Credentials::Admin(_) => vec!["_admin".to_string()],
            Credentials::User(doc) => doc
                .get("roles")
                .and_then(|r| r.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn verify(&self, state: &AppState, name: &str, pw: &str) -> bool {
        match self {
            Credentials::Admin(stored) => state.credentials.verify(name, pw, stored, || {
                password::verify_admin_password(pw, stored)
            }),
            Credentials::User(doc) => {
                let stored = doc.get("derived_key").or_else(|| doc.get("password_sha"));
                let key = stored.map(|s| s.to_string()).unwrap_or_default();
                state.credentials.verify(name, pw, &key, || {
                    password::verify_user_doc_password(pw, doc)
                })
            }
        }
    }
}

async fn lookup(state: &AppState, name: &str) -> Option<Credentials> {
    if let Some(h) = state.config.get("admins", name) {
        return Some(Credentials::Admin(h));
    }
    let doc = crate::handlers::users::user_doc(state, name).await?;
    Some(Credentials::User(doc))
}

/// Authenticates a request from its `Authorization` header or `AuthSession` cookie.
/// Wrong basic credentials are a 401; a bad or expired cookie means anonymous.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<UserCtx> {
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        if let Some(b64) = auth
            .strip_prefix("Basic ")
            .or_else(|| auth.strip_prefix("basic "))
        {
            let decoded = STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Authorization header has invalid encoding.")
                })?;
            let (name, pw) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
            let creds = lookup(state, name).await;
            return match creds {
                Some(c) if c.verify(state, name, pw) => Ok(UserCtx {
                    name: Some(name.to_string()),
                    roles: c.roles(),
                    authenticated: Some("default"),
                    refreshed_cookie: None,
                }),
                _ => Err(ApiError::unauthorized("Name or password is incorrect.")),
            };
        }
    }
    if let Some(token) = cookie_value(headers, "AuthSession") {
        if let Some(user) = cookie_user(state, &token).await {
            return Ok(user);
        }
    }
    Ok(UserCtx::default())
}

async fn cookie_user(state: &AppState, token: &str) -> Option<UserCtx> {
    let (name, _) = session_cookie::decode_token(token)?;
    let creds = lookup(state, &name).await?;
    let salt = creds.salt().unwrap_or_default();
    let secret = state.secret();
    let info =
        session_cookie::verify_token(token, &secret, &salt, now_secs(), state.session_timeout())
            .ok()?;
    let refreshed_cookie = info.needs_refresh.then(|| {
        session_cookie::set_cookie_header(
            &session_cookie::make_token(&name, &secret, &salt, now_secs()),
            Some(state.session_timeout()),
        )
    });
    Some(UserCtx {
        name: Some(name),
        roles: creds.roles(),
        authenticated: Some("cookie"),
        refreshed_cookie,
    })
}

/// Checks a name and password (for `POST /_session`); returns the user's roles and
/// the salt that keys their cookie.
pub async fn check_password(
    state: &AppState,
    name: &str,
    pw: &str,
) -> Option<(Vec<String>, String)> {
    let creds = lookup(state, name).await?;
    if creds.verify(state, name, pw) {
        Some((creds.roles(), creds.salt().unwrap_or_default()))
    } else {
        None
    }
}

/// A cookie's value from the `Cookie` header.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    for h in headers.get_all("cookie") {
        let Ok(s) = h.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == name && !v.is_empty() {
                    return Some(v.to_string());
                }
            }
        }
    }
    None
}

/// 401 for anonymous, 403 for a signed-in user who lacks the right.
fn denied(user: &UserCtx, anon_reason: &str, reason: &str) -> ApiError {
    if user.name.is_none() {
        ApiError::unauthorized(anon_reason)
    } else {
        ApiError::forbidden(reason)
    }
}

/// Requires a server admin.
pub fn require_admin(user: &UserCtx) -> ApiResult<()> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(denied(
            user,
            "You are not a server admin.",
            "You are not a server admin.",
        ))
    }
}

fn listed(section: Option<&Value>, user: &UserCtx) -> bool {
    let Some(s) = section else { return false };
    let names = s.get("names").and_then(|v| v.as_array());
    let roles = s.get("roles").and_then(|v| v.as_array());
    let by_name = match (&user.name, names) {
        (Some(n), Some(names)) => names.iter().any(|x| x.as_str() == Some(n.as_str())),
        _ => false,
    };
    let by_role = roles.is_some_and(|roles| {
        roles.iter().any(|r| {
            r.as_str()
                .is_some_and(|r| user.roles.iter().any(|u| u == r))
        })
    });
    by_name || by_role
}

fn empty(section: Option<&Value>) -> bool {
    let len = |k: &str| {
        section
            .and_then(|s| s.get(k))
            .and_then(|v| v.as_array())
            .map_or(0, |a| a.len())
    };
    len("names") == 0 && len("roles") == 0
}

/// Whether the user is an admin of a database with this security object.
pub fn is_db_admin(security: &Value, user: &UserCtx) -> bool {
    user.is_admin() || listed(security.get("admins"), user)
}

/// Requires read access (member, db admin, or a public database).
pub fn require_reader(security: &Value, user: &UserCtx) -> ApiResult<()> {
    let members = security.get("members");
    if user.is_admin() || empty(members) || listed(members, user) || is_db_admin(security, user) {
        Ok(())
    } else {
        Err(denied(
            user,
            "You are not authorized to access this db.",
            "You are not allowed to access this db.",
        ))
    }
}

/// Requires database admin rights.
pub fn require_db_admin(security: &Value, user: &UserCtx) -> ApiResult<()> {
    if is_db_admin(security, user) {
        Ok(())
    } else {
        Err(denied(
            user,
            "You are not a db or server admin.",
            "You are not a db or server admin.",
        ))
    }
}
