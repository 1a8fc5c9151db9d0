//! Building CouchDB-shaped responses.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

/// A JSON response with CouchDB's headers and trailing newline.
pub fn json(status: StatusCode, value: &Value) -> Response {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    json_bytes(status, bytes)
}

/// A response whose body is already-encoded JSON.
pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("cache-control", HeaderValue::from_static("must-revalidate"));
    resp
}

/// `{"ok":true}` with the given status.
pub fn ok(status: StatusCode) -> Response {
    json_bytes(status, b"{\"ok\":true}\n".to_vec())
}

/// Adds a header to a response (ignored if the value is not a valid header).
pub fn with_header(mut resp: Response, name: &'static str, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

/// An empty-bodied response (HEAD, 304).
pub fn empty(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// Turns a GET response into its HEAD form: same status and headers, no body.
pub fn head_of(resp: Response) -> Response {
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, Body::empty())
}

/// Appends a JSON string to a buffer.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends any JSON value to a buffer.
pub fn push_json(out: &mut Vec<u8>, v: &Value) {
    let _ = serde_json::to_writer(&mut *out, v);
}
