//! Authentication (basic and cookie) and the authorization rules of CouchDB 3.

pub mod lockout;
pub mod password;
pub mod session_cookie;

use crate::auth::password::HashAlg;
use crate::auth::session_cookie::{CookieError, CookieOptions, SameSite};
use crate::error::{ApiError, ApiResult};
use crate::AppState;
use axum::http::{HeaderMap, Method};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use std::net::IpAddr;

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
/// Wrong basic credentials are a 401; a cookie that is not `name:time:mac` is a
/// 400; a forged or expired cookie means anonymous.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> ApiResult<UserCtx> {
    let cookie = cookie_value(headers, session_cookie::COOKIE_NAME);
    if let Some(token) = &cookie {
        if let Err(e @ CookieError::Malformed) = session_cookie::parse_token(token) {
            return Err(ApiError::bad_request(e.to_string()));
        }
    }
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
                    ApiError::bad_request("Authorization header has invalid base64 value")
                })?;
            // As CouchDB: no `:` or the special `_:_` (logout) means anonymous.
            let pair = decoded.split_once(':').filter(|p| *p != ("_", "_"));
            let Some((name, pw)) = pair else {
                return Ok(UserCtx::default());
            };
            let Some(creds) = lookup(state, name).await else {
                return Err(ApiError::unauthorized("Name or password is incorrect."));
            };
            return if verify_with_lockout(state, peer, name, pw, Some(&creds))? {
                Ok(UserCtx {
                    name: Some(name.to_string()),
                    roles: creds.roles(),
                    authenticated: Some("default"),
                    refreshed_cookie: None,
                })
            } else {
                Err(ApiError::unauthorized("Name or password is incorrect."))
            };
        }
    }
    if let Some(token) = cookie {
        if let Some(user) = cookie_user(state, &token).await {
            return Ok(user);
        }
    }
    Ok(UserCtx::default())
}

async fn cookie_user(state: &AppState, token: &str) -> Option<UserCtx> {
    let (name, _) = session_cookie::decode_token(token)?;
    let secret = state.secret();
    if secret.is_empty() {
        return None;
    }
    let creds = lookup(state, &name).await?;
    let salt = creds.salt().unwrap_or_default();
    let info = session_cookie::verify_token_with(
        token,
        &[secret.as_str()],
        &hash_algorithms(state),
        &salt,
        now_secs(),
        state.session_timeout(),
    )
    .ok()?;
    let refreshed_cookie = info
        .needs_refresh
        .then(|| session_set_cookie(state, &name, &salt));
    Some(UserCtx {
        name: Some(name),
        roles: creds.roles(),
        authenticated: Some("cookie"),
        refreshed_cookie,
    })
}

/// Verifies a password, refusing (403) while the user is locked out from
/// `peer` and counting a failure otherwise. Unknown users (`None`) never match.
fn verify_with_lockout(
    state: &AppState,
    peer: Option<IpAddr>,
    name: &str,
    pw: &str,
    creds: Option<&Credentials>,
) -> ApiResult<bool> {
    let salt = creds.and_then(Credentials::salt).unwrap_or_default();
    if state
        .lockout
        .is_locked_out(&state.config, peer, name, &salt)
    {
        tracing::warn!(
            user = name,
            ?peer,
            "authentication refused: account locked out"
        );
        return Err(ApiError::forbidden(lockout::LOCKOUT_MSG));
    }
    let ok = creds.is_some_and(|c| c.verify(state, name, pw));
    if !ok {
        tracing::warn!(user = name, ?peer, "authentication failure");
        state
            .lockout
            .record_failure(&state.config, peer, name, &salt);
    }
    Ok(ok)
}

/// Checks a name and password from `peer` (for `POST /_session`); returns the
/// user's roles and the salt that keys their cookie, `None` for wrong
/// credentials, and a 403 while the user is locked out.
pub async fn check_password(
    state: &AppState,
    name: &str,
    pw: &str,
    peer: Option<IpAddr>,
) -> ApiResult<Option<(Vec<String>, String)>> {
    let creds = lookup(state, name).await;
    if verify_with_lockout(state, peer, name, pw, creds.as_ref())? {
        Ok(creds.map(|c| (c.roles(), c.salt().unwrap_or_default())))
    } else {
        Ok(None)
    }
}

/// `[chttpd_auth] hash_algorithms`: the first signs new session cookies, any
/// of them verifies one.
fn hash_algorithms(state: &AppState) -> Vec<HashAlg> {
    session_cookie::parse_hash_algorithms(&state.config.get_or(
        "chttpd_auth",
        "hash_algorithms",
        "sha256, sha",
    ))
}

/// The cookie signing secret, created (and persisted) if none is configured, as
/// CouchDB's `ensure_cookie_auth_secret`.
pub fn ensure_secret(state: &AppState) -> String {
    let secret = state.secret();
    if !secret.is_empty() {
        return secret;
    }
    let secret = hex::encode(rand::random::<[u8; 16]>());
    if let Err(e) = state.config.set("chttpd_auth", "secret", &secret, true) {
        tracing::warn!(error = %e, "could not persist the new cookie secret");
        state.config.set_in_memory("chttpd_auth", "secret", &secret);
    }
    secret
}

/// Attributes of the `AuthSession` cookie from `[chttpd_auth]`
/// (`allow_persistent_cookies`, `timeout`, `cookie_domain`, `same_site`).
pub fn cookie_options(state: &AppState) -> CookieOptions {
    let persistent = state
        .config
        .get_bool("chttpd_auth", "allow_persistent_cookies", true);
    CookieOptions {
        max_age: persistent.then(|| state.session_timeout()),
        secure: false,
        domain: state
            .config
            .get("chttpd_auth", "cookie_domain")
            .filter(|d| !d.trim().is_empty()),
        same_site: state
            .config
            .get("chttpd_auth", "same_site")
            .and_then(|v| SameSite::parse(&v)),
    }
}

/// The `Set-Cookie` value of a new session of `name` (whose cookies are keyed by
/// `salt`).
pub fn session_set_cookie(state: &AppState, name: &str, salt: &str) -> String {
    let secret = ensure_secret(state);
    let alg = hash_algorithms(state)
        .first()
        .copied()
        .unwrap_or(HashAlg::Sha256);
    let now = now_secs();
    let token = session_cookie::make_token_with(alg, name, &secret, salt, now);
    session_cookie::set_cookie_header_with(&token, &cookie_options(state), now)
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_session_cookie(state: &AppState) -> String {
    session_cookie::clear_cookie_header_with(&cookie_options(state), now_secs())
}

/// `[chttpd] require_valid_user` (and `require_valid_user_except_for_up`):
/// anonymous requests get 401 "Authentication required.". Logging in with
/// `POST /_session` is always possible.
pub fn require_valid_user(
    state: &AppState,
    user: &UserCtx,
    method: &Method,
    segments: &[String],
) -> ApiResult<()> {
    if user.name.is_some() {
        return Ok(());
    }
    let all = state.config.get_bool("chttpd", "require_valid_user", false);
    let except_up = state
        .config
        .get_bool("chttpd", "require_valid_user_except_for_up", false);
    let required = match segments {
        [s] if s == "_session" && *method == Method::POST => false,
        [s] if s == "_up" => all && !except_up,
        _ => all || except_up,
    };
    if required {
        Err(ApiError::unauthorized("Authentication required."))
    } else {
        Ok(())
    }
}

/// The `WWW-Authenticate` header of a 401 error: the request's
/// `X-CouchDB-WWW-Authenticate`, else `[chttpd] WWW-Authenticate`, else the
/// basic-auth challenge when `require_valid_user` is on.
pub fn www_authenticate(state: &AppState, requested: Option<String>) -> Option<String> {
    requested
        .or_else(|| state.config.get("chttpd", "WWW-Authenticate"))
        .or_else(|| {
            state
                .config
                .get_bool("chttpd", "require_valid_user", false)
                .then(|| "Basic realm=\"server\"".to_string())
        })
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

/// Requires a server admin. Unlike database access checks this is a 401 even
/// for a signed-in user, as CouchDB's `verify_is_server_admin`.
pub fn require_admin(user: &UserCtx) -> ApiResult<()> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(ApiError::unauthorized("You are not a server admin."))
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
