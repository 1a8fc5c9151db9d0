//! A parsed HTTP request: decoded path segments, query parameters, headers, body
//! and the authenticated user, with CouchDB's parameter parsing rules.

use crate::auth::UserCtx;
use crate::error::{ApiError, ApiResult};
use axum::http::{HeaderMap, Method};
use bytes::Bytes;
use serde_json::Value;

/// One request as the handlers see it.
pub struct Req {
    /// HTTP method.
    pub method: Method,
    /// Percent-decoded path segments.
    pub segments: Vec<String>,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole body (empty when the body is left as a stream, see
    /// [`Req::take_stream`]).
    pub body: Bytes,
    /// The body not yet read, for requests whose data may be large.
    pub stream: std::sync::Mutex<Option<axum::body::Body>>,
    /// Who is asking.
    pub user: UserCtx,
    /// The client's address, when known.
    pub peer: Option<std::net::IpAddr>,
}

impl Req {
    /// The last value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter (`true`/`false`), `default` when absent.
    pub fn bool_param(&self, name: &str, default: bool) -> ApiResult<bool> {
        match self.param(name) {
            None => Ok(default),
            Some(v) => parse_bool(name, v),
        }
    }

    /// A non-negative integer parameter.
    pub fn uint_param(&self, name: &str) -> ApiResult<Option<u64>> {
        match self.param(name) {
            None => Ok(None),
            // As couch_mrview_http: a non-integer and a negative integer get
            // different messages.
            Some(v) => match v.trim().parse::<i128>() {
                Ok(n) => u64::try_from(n).map(Some).map_err(|_| {
                    ApiError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "query_parse_error",
                        format!("Invalid value for positive integer: \"{v}\""),
                    )
                }),
                Err(_) => Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "query_parse_error",
                    format!("Invalid value for integer: \"{v}\""),
                )),
            },
        }
    }

    /// A JSON-valued parameter (`key="a"`, `keys=[...]`, `open_revs=[...]`).
    pub fn json_param(&self, name: &str) -> ApiResult<Option<Value>> {
        match self.param(name) {
            None => Ok(None),
            Some(v) => serde_json::from_str(v).map(Some).map_err(|_| {
                ApiError::bad_request(format!("Invalid JSON in query parameter `{name}`: {v}"))
            }),
        }
    }

    /// The body as a stream of bytes: the unread body when it was left as a
    /// stream, else the buffered body. Only the first call gets the stream.
    pub fn take_stream(
        &self,
    ) -> impl futures_util::Stream<Item = Result<Bytes, axum::Error>> + Send + 'static {
        let body = self
            .stream
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .unwrap_or_else(|| axum::body::Body::from(self.body.clone()));
        body.into_data_stream()
    }

    /// A request header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `path` as an absolute URL on this server, as CouchDB's
    /// `couch_httpd:absolute_uri`: host from `X-Forwarded-Host` or `Host`,
    /// scheme `https` when `X-Forwarded-Ssl: on` or `X-Forwarded-Proto: https`.
    /// A path not starting with `/` is a 400.
    pub fn absolute_uri(&self, path: &str) -> ApiResult<String> {
        if !path.starts_with('/') {
            return Err(ApiError::bad_request("path must begin with a /."));
        }
        let host = self
            .header("x-forwarded-host")
            .or_else(|| self.header("host"))
            .unwrap_or("localhost");
        let https = self.header("x-forwarded-ssl") == Some("on")
            || self.header("x-forwarded-proto") == Some("https");
        let scheme = if https { "https" } else { "http" };
        Ok(format!("{scheme}://{host}{path}"))
    }

    /// Whether the body is declared as JSON.
    pub fn is_json(&self) -> bool {
        self.header("content-type")
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false)
    }

    /// Refuses a body not declared as `application/json` (415), as CouchDB does for
    /// most POST endpoints.
    pub fn require_json(&self) -> ApiResult<()> {
        if self.is_json() {
            Ok(())
        } else {
            Err(ApiError::bad_content_type())
        }
    }

    /// The body parsed as JSON.
    pub fn json_body(&self) -> ApiResult<Value> {
        parse_json(&self.body)
    }

    /// The body parsed as a JSON object.
    pub fn json_object(&self) -> ApiResult<serde_json::Map<String, Value>> {
        match self.json_body()? {
            Value::Object(m) => Ok(m),
            _ => Err(ApiError::bad_request("Request body must be a JSON object")),
        }
    }
}

/// Parses JSON bytes with CouchDB's error for malformed input.
pub fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes).map_err(|_| ApiError::bad_request("invalid UTF-8 JSON"))
}

/// Parses `true`/`false` as CouchDB does.
pub fn parse_bool(name: &str, v: &str) -> ApiResult<bool> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "query_parse_error",
            format!("Invalid boolean parameter: \"{v}\" for `{name}`"),
        )),
    }
}
