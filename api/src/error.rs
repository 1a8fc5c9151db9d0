//! The one place where every failure becomes CouchDB's error JSON and status.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chaise_cluster::ClusterError;
use chaise_storage::{DocError, StorageError};
use serde_json::json;

/// An HTTP error in CouchDB's shape: `{"error": ..., "reason": ...}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short error code (`not_found`, `conflict`, ...).
    pub error: String,
    /// Human-readable reason.
    pub reason: String,
    /// Extra headers (`Allow`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with the given status, code and reason.
    pub fn new(status: StatusCode, error: &str, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.to_string(),
            reason: reason.into(),
            headers: Vec::new(),
        }
    }

    /// The same error with an extra response header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 400 `bad_request`.
    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// 404 `not_found`.
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", reason)
    }

    /// 404 for a missing database.
    pub fn no_db() -> Self {
        Self::not_found("Database does not exist.")
    }

    /// 409 `conflict`.
    pub fn conflict() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "conflict",
            "Document update conflict.",
        )
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", reason)
    }

    /// 403 `forbidden`.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", reason)
    }

    /// 405 with the `Allow` header.
    pub fn method_not_allowed(allowed: &str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("Only {allowed} allowed"),
        );
        e.headers.push(("allow", allowed.to_string()));
        e
    }

    /// 415 for a body that is not `application/json`.
    pub fn bad_content_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "Content-Type must be application/json",
        )
    }

    /// 400 `illegal_database_name`.
    pub fn illegal_db_name(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "illegal_database_name",
            format!(
                "Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter."
            ),
        )
    }

    /// 400 `illegal_docid`.
    pub fn illegal_docid(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "illegal_docid", reason)
    }

    /// 400 `doc_validation`.
    pub fn doc_validation(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "doc_validation", reason)
    }

    /// 500 `unknown_error` for internal failures.
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "unknown_error", reason)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": self.error, "reason": self.reason})
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::NoDb => ApiError::no_db(),
            ClusterError::DbExists => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "file_exists",
                "The database could not be created, the file already exists.",
            ),
            ClusterError::BadRequest(r) => ApiError::bad_request(r),
            ClusterError::Unavailable(r) => {
                tracing::warn!(reason = %r, "no shard copy answered");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "service unavailable", r)
            }
            ClusterError::Storage(e) => e.into(),
            other => {
                tracing::error!(error = %other, "cluster error");
                ApiError::internal(other.to_string())
            }
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        tracing::error!(error = %e, "storage error");
        ApiError::internal(e.to_string())
    }
}

impl From<DocError> for ApiError {
    fn from(e: DocError) -> Self {
        let (status, error) = doc_error_code(&e);
        ApiError::new(status, error, doc_error_reason(&e))
    }
}

/// Status and error code of a per-document refusal.
pub fn doc_error_code(e: &DocError) -> (StatusCode, &'static str) {
    match e {
        DocError::Conflict | DocError::LocalConflict => (StatusCode::CONFLICT, "conflict"),
        DocError::MissingStub { .. } => (StatusCode::PRECONDITION_FAILED, "missing_stub"),
        DocError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        DocError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        DocError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "unknown_error"),
    }
}

/// Reason text of a per-document refusal.
pub fn doc_error_reason(e: &DocError) -> String {
    e.to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::to_vec(&self.body()).unwrap_or_default();
        body.push(b'\n');
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("cache-control", HeaderValue::from_static("must-revalidate"));
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        resp
    }
}
