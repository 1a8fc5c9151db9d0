//! The `_users` database: credentials of non-admin users, the password hashing
//! CouchDB applies when a user document is written, and its rules on who may read
//! and write which user document.

use crate::auth::{self, password, UserCtx};
use crate::doc_json::ParsedDoc;
use crate::error::{ApiError, ApiResult};
use crate::routes::DbCtx;
use crate::AppState;
use chaise_cluster::RevSelector;
use serde_json::{Map, Value};

/// The name of the authentication database.
pub const USERS_DB: &str = "_users";

/// The stored user document of `name`, if any (and not deleted).
pub async fn user_doc(state: &AppState, name: &str) -> Option<Value> {
    current_doc(state, &format!("{USER_ID_PREFIX}{name}"))
        .await
        .map(Value::Object)
}

/// Replaces a plain `password` field of a user document by its PBKDF2 hash, as
/// CouchDB's `before_doc_update` hook does.
fn hash_password(state: &AppState, doc: &mut ParsedDoc) {
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&doc.body) else {
        return;
    };
    if !body.contains_key("password") {
        return;
    }
    let iterations = state.config_u64("chttpd_auth", "iterations", 600_000) as u32;
    password::hash_user_doc_password(&mut body, iterations);
    if let Ok(b) = serde_json::to_vec(&Value::Object(body)) {
        doc.body = b;
    }
}

/// The user a `_users` document id names (`org.couchdb.user:<name>`).
fn name_of_id(id: &str) -> Option<&str> {
    id.strip_prefix(USER_ID_PREFIX)
}

/// Id prefix of user documents.
const USER_ID_PREFIX: &str = "org.couchdb.user:";

/// CouchDB's `after_doc_read` for `_users`: design documents are for database
/// admins only, and a user document only for its own user (others get 404).
pub fn check_read(ctx: &DbCtx<'_>, user: &UserCtx, id: &str) -> ApiResult<()> {
    if auth::is_db_admin(ctx.security, user) {
        return Ok(());
    }
    if id.starts_with("_design/") {
        return Err(ApiError::forbidden(
            "Only administrators can view design docs in the users database.",
        ));
    }
    match (&user.name, name_of_id(id)) {
        (Some(name), Some(owner)) if name == owner => Ok(()),
        _ => Err(ApiError::not_found("missing")),
    }
}

/// What CouchDB does to a write to `_users` before it is stored: the
/// `before_doc_update` hook (the password is hashed; a signed-in user writes only
/// their own document, an anonymous one may sign up), then the built-in `_auth`
/// validation function.
pub async fn before_write(
    state: &AppState,
    ctx: &DbCtx<'_>,
    user: &UserCtx,
    id: &str,
    doc: &mut ParsedDoc,
) -> ApiResult<()> {
    hash_password(state, doc);
    // Design documents are checked for admin rights alone, as for any database.
    if id.starts_with("_design/") {
        return Ok(());
    }
    let db_admin = auth::is_db_admin(ctx.security, user);
    if let Some(name) = &user.name {
        if !db_admin && name_of_id(id) != Some(name.as_str()) {
            return Err(ApiError::not_found("missing"));
        }
    }
    let new = match serde_json::from_slice::<Value>(&doc.body) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let old = current_doc(state, id).await;
    validate_user_doc(id, &new, doc.deleted, old.as_ref(), user, db_admin)
        .map_err(ApiError::forbidden)
}

/// The current (not deleted) body of `_users` document `id`.
async fn current_doc(state: &AppState, id: &str) -> Option<Map<String, Value>> {
    let opened = state
        .coordinator
        .open_doc(USERS_DB, id, RevSelector::Winner)
        .await
        .ok()??;
    let rev = opened.revs.into_iter().next()?.ok()?;
    if rev.deleted {
        return None;
    }
    match serde_json::from_slice(&rev.body?.body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// JavaScript truthiness of an optional field, as the validation function tests it.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(_) | Value::Object(_)) => true,
    }
}

/// A value as JavaScript's `+` would put it into a string (the id check).
fn js_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The rules of CouchDB's `_auth` design document (`couch_js_functions.hrl`), in
/// its order and with its messages; `Err` is the `forbidden` reason.
/// `db_admin` is the validation function's `is_server_or_database_admin`.
fn validate_user_doc(
    id: &str,
    new: &Map<String, Value>,
    deleted: bool,
    old: Option<&Map<String, Value>>,
    user: &UserCtx,
    db_admin: bool,
) -> Result<(), String> {
    let user_name = user.name.clone().map_or(Value::Null, Value::String);
    if deleted {
        // Deletes by admins and by the user themself skip the other checks.
        let old_name = old.and_then(|o| o.get("name")).unwrap_or(&Value::Null);
        return if user.is_admin() || *old_name == user_name {
            Ok(())
        } else {
            Err("Only admins may delete other user docs.".into())
        };
    }
    if new.get("type").and_then(Value::as_str) != Some("user") {
        return Err("doc.type must be user".into());
    }
    if !truthy(new.get("name")) {
        return Err("doc.name is required".into());
    }
    let name = &new["name"];
    if !truthy(new.get("roles")) {
        return Err("doc.roles must exist".into());
    }
    let Some(roles) = new.get("roles").and_then(Value::as_array) else {
        return Err("doc.roles must be an array".into());
    };
    let Some(mut roles) = roles
        .iter()
        .map(Value::as_str)
        .collect::<Option<Vec<&str>>>()
    else {
        return Err("doc.roles can only contain strings".into());
    };
    if id != format!("{USER_ID_PREFIX}{}", js_text(name)) {
        return Err("Doc ID must be of the form org.couchdb.user:name".into());
    }
    if let Some(old) = old {
        if old.get("name") != Some(name) {
            return Err("Usernames can not be changed.".into());
        }
    }
    if truthy(new.get("password_sha")) && !truthy(new.get("salt")) {
        return Err(
            "Users with password_sha must have a salt.See /_utils/script/couch.js for example code."
                .into(),
        );
    }
    let scheme = new.get("password_scheme");
    if truthy(scheme)
        && !matches!(
            scheme.and_then(Value::as_str),
            Some("simple" | "pbkdf2" | "simple+pbkdf2")
        )
    {
        let scheme = scheme.map(js_text).unwrap_or_default();
        return Err(format!("Password scheme `{scheme}` not supported."));
    }
    if scheme.and_then(Value::as_str) == Some("pbkdf2") {
        if !new.get("iterations").is_some_and(Value::is_number) {
            return Err("iterations must be a number.".into());
        }
        if !new.get("derived_key").is_some_and(Value::is_string) {
            return Err("derived_key must be a string.".into());
        }
    }
    if !db_admin {
        match old {
            Some(old) => {
                if *name != user_name {
                    return Err("You may only update your own user document.".into());
                }
                let mut old_roles: Vec<String> = match old.get("roles") {
                    Some(Value::Array(r)) => r.iter().map(js_text).collect(),
                    _ => Vec::new(),
                };
                old_roles.sort();
                roles.sort();
                if old_roles != roles {
                    return Err("Only _admin may edit roles".into());
                }
            }
            None if !roles.is_empty() => return Err("Only _admin may set roles".into()),
            None => {}
        }
    }
    if roles.iter().any(|r| *r != "_metrics" && r.starts_with('_')) {
        return Err("No system roles (starting with underscore) in users db.".into());
    }
    if let Value::String(name) = name {
        if name.starts_with('_') {
            return Err("Username may not start with underscore.".into());
        }
        if name.contains(':') {
            return Err("Character `:` is not allowed in usernames.".into());
        }
    }
    Ok(())
}
