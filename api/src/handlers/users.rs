//! The `_users` database: credentials of non-admin users, and the password
//! hashing CouchDB applies when a user document is written.

use crate::auth::password;
use crate::doc_json::ParsedDoc;
use crate::AppState;
use chaise_cluster::RevSelector;
use serde_json::Value;

/// The name of the authentication database.
pub const USERS_DB: &str = "_users";

/// The stored user document of `name`, if any (and not deleted).
pub async fn user_doc(state: &AppState, name: &str) -> Option<Value> {
    let id = format!("org.couchdb.user:{name}");
    let opened = state
        .coordinator
        .open_doc(USERS_DB, &id, RevSelector::Winner)
        .await
        .ok()??;
    let rev = opened.revs.into_iter().next()?.ok()?;
    if rev.deleted {
        return None;
    }
    serde_json::from_slice(&rev.body?.body).ok()
}

/// Replaces a plain `password` field of a user document by its PBKDF2 hash, as
/// CouchDB's `before_doc_update` hook does.
pub fn hash_password(state: &AppState, doc: &mut ParsedDoc) {
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
