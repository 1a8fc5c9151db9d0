//! The CouchDB 3.x HTTP API of a Chaise node.
//!
//! Requests are parsed and authenticated here, routed to handlers, and answered
//! in CouchDB's exact shapes. Every data operation goes through the
//! [`chaise_cluster::Coordinator`]; this crate never touches shard files. Errors of
//! every layer become CouchDB's error JSON in one place ([`error`]).

mod att_data;
pub mod auth;
pub mod config_store;
mod doc_json;
pub mod error;
mod handlers;
mod multipart;
mod request;
mod response;
mod routes;
mod uuids;

use crate::auth::password::CredentialCache;
use crate::config_store::ConfigStore;
use crate::error::ApiResult;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chaise_cluster::Coordinator;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use uuids::UuidGenerator;

/// The version of CouchDB whose API Chaise speaks.
pub const COUCHDB_VERSION: &str = "3.5.2";

/// Shared state of the HTTP layer.
pub struct AppState {
    /// The coordinator every data operation goes through.
    pub coordinator: Arc<Coordinator>,
    /// Layered ini configuration.
    pub config: Arc<ConfigStore>,
    /// Memo of verified passwords (PBKDF2 is deliberately slow).
    pub credentials: CredentialCache,
    /// Generator behind `/_uuids` and new document ids.
    pub uuids: UuidGenerator,
    /// The server's uuid (`GET /`).
    pub server_uuid: String,
    /// Counters of failed logins (`[chttpd_auth_lockout]`).
    pub lockout: auth::lockout::Lockout,
    security_cache: RwLock<HashMap<String, Arc<Value>>>,
    request_ids: AtomicU64,
    this: std::sync::Weak<AppState>,
}

impl AppState {
    /// Builds the state.
    pub fn new(
        coordinator: Arc<Coordinator>,
        config: Arc<ConfigStore>,
        server_uuid: String,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| AppState {
            this: this.clone(),
            coordinator,
            config,
            credentials: CredentialCache::default(),
            uuids: UuidGenerator::new(),
            server_uuid,
            lockout: Default::default(),
            security_cache: RwLock::new(HashMap::new()),
            request_ids: AtomicU64::new(rand::random::<u32>() as u64),
        })
    }

    /// A shared handle on this state, for work that outlives a request (live
    /// feeds stream their bodies from a task of their own).
    pub fn shared(&self) -> Option<Arc<AppState>> {
        self.this.upgrade()
    }

    /// The cookie signing secret (`[chttpd_auth] secret`).
    pub fn secret(&self) -> String {
        self.config.get("chttpd_auth", "secret").unwrap_or_default()
    }

    /// Session lifetime in seconds (`[chttpd_auth] timeout`).
    pub fn session_timeout(&self) -> u64 {
        self.config_u64("chttpd_auth", "timeout", 600)
    }

    /// A numeric config value with a default.
    pub fn config_u64(&self, section: &str, key: &str, default: u64) -> u64 {
        self.config
            .get(section, key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    /// The security object of a database (cached).
    pub async fn security(&self, db: &str) -> ApiResult<Arc<Value>> {
        if let Some(s) = self
            .security_cache
            .read()
            .ok()
            .and_then(|c| c.get(db).cloned())
        {
            return Ok(s);
        }
        let raw = self.coordinator.get_db_meta(db, "security").await?;
        let value = raw
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        let value = Arc::new(value);
        if let Ok(mut c) = self.security_cache.write() {
            c.insert(db.to_string(), value.clone());
        }
        Ok(value)
    }

    /// Forgets a cached security object (after a change or a db deletion).
    pub fn forget_security(&self, db: &str) {
        if let Ok(mut c) = self.security_cache.write() {
            c.remove(db);
        }
    }
}

/// The axum router serving the whole API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(state): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let started = std::time::Instant::now();
    let id = state.request_ids.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let www_auth_requested = req
        .headers()
        .get("x-couchdb-www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut resp = match routes::handle(&state, req).await {
        Ok((r, cookie)) => {
            let mut r = r;
            if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
                r.headers_mut().append("set-cookie", c);
            }
            r
        }
        Err(mut e) => {
            if e.status == axum::http::StatusCode::UNAUTHORIZED {
                if let Some(v) = auth::www_authenticate(&state, www_auth_requested) {
                    e.headers.push(("www-authenticate", v));
                }
            }
            e.into_response()
        }
    };
    let status = resp.status();
    if status.is_server_error() {
        tracing::warn!(%method, %path, %status, "request failed");
    } else {
        tracing::debug!(%method, %path, %status, "request");
    }
    let h = resp.headers_mut();
    h.insert("server", HeaderValue::from_static("CouchDB/3.5.2 (Chaise)"));
    if let Ok(v) = HeaderValue::from_str(&format!("{:010x}", id & 0xff_ffff_ffff)) {
        h.insert("x-couch-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&started.elapsed().as_millis().to_string()) {
        h.insert("x-couchdb-body-time", v);
    }
    resp
}

/// Serves the API on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The client address feeds the authentication lockout.
    let service = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Streamed bodies go out in several writes: without NODELAY the last one
    // waits for the client's delayed ACK (40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}
