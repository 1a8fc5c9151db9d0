//! HTTP access to one CouchDB-compatible server: URL and credential handling,
//! a keep-alive connection pool, status-checked requests, and live feeds.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, ClientBuilder, Method, Response, StatusCode, Url};
use serde_json::Value;

/// Longest piece of an unexpected response body quoted in an error message.
const BODY_SNIPPET: usize = 200;

/// One server under test: its base URL (without credentials) and a pooled
/// client that sends the URL's credentials as Basic auth on every request.
#[derive(Clone)]
pub struct Target {
    /// The URL as shown to people, with the password masked.
    pub label: String,
    base: String,
    client: Client,
    /// A client for live feeds: no total time limit, no idle connections.
    feeds: Client,
    timeout: Duration,
}

impl Target {
    /// Parses `url` (`http://user:password@host:port[/prefix]`) and builds a
    /// client that keeps up to `pool_size` idle connections to the host.
    pub fn new(url: &str, pool_size: usize, timeout: Duration) -> Result<Self> {
        let mut url = Url::parse(url).with_context(|| format!("invalid URL {url:?}"))?;
        match url.scheme() {
            "http" => {}
            "https" => bail!("{url}: https is not supported (this tool is built without TLS)"),
            other => bail!("{url}: unsupported scheme {other:?}, expected http"),
        }
        if url.query().is_some() || url.fragment().is_some() {
            bail!("{url}: the base URL must not have a query or fragment");
        }

        let user = decode(url.username())?;
        let password = url.password().map(decode).transpose()?;
        let mut headers = HeaderMap::new();
        if !user.is_empty() || password.is_some() {
            let credentials = format!("{user}:{}", password.as_deref().unwrap_or(""));
            let token = base64::engine::general_purpose::STANDARD.encode(credentials);
            let mut value = HeaderValue::from_str(&format!("Basic {token}"))
                .context("credentials do not fit in an HTTP header")?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }

        let mut shown = url.clone();
        if password.is_some() {
            shown
                .set_password(Some("***"))
                .map_err(|()| anyhow!("{url}: cannot mask the password"))?;
        }
        url.set_username("")
            .and_then(|()| url.set_password(None))
            .map_err(|()| anyhow!("cannot strip the credentials from the URL"))?;

        let builder = || {
            Client::builder()
                .default_headers(headers.clone())
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(10))
        };
        let build =
            |builder: ClientBuilder| builder.build().context("cannot build the HTTP client");
        let client = build(builder().pool_max_idle_per_host(pool_size).timeout(timeout))?;
        // A feed holds its connection until dropped, and then the connection
        // is closed: HTTP/1.1 cannot share it, and nothing is kept idle.
        let feeds = build(builder().pool_max_idle_per_host(0))?;
        Ok(Self {
            label: shown.as_str().trim_end_matches('/').to_string(),
            base: url.as_str().trim_end_matches('/').to_string(),
            client,
            feeds,
            timeout,
        })
    }

    /// Sends `method path` (path starts with `/`, relative to the base URL)
    /// with an optional JSON body and returns the whole response body if the
    /// status is one of `ok`; any other status is an error quoting the body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        ok: &[StatusCode],
    ) -> Result<Bytes> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("{method} {path}: reading the body"))?;
        if !ok.contains(&status) {
            let text = String::from_utf8_lossy(&bytes);
            let snippet: String = text.chars().take(BODY_SNIPPET).collect();
            bail!("{method} {path}: HTTP {status}: {}", snippet.trim_end());
        }
        Ok(bytes)
    }

    /// Opens the live feed `GET path` on a connection of its own and returns
    /// the response as soon as its headers arrived with status `200`, for its
    /// body to be read as it comes (with no time limit). The headers must
    /// come within the request timeout; any other status is an error quoting
    /// the body. Dropping the response closes the connection.
    pub async fn open_feed(&self, path: &str) -> Result<Response> {
        let request = self.feeds.get(format!("{}{path}", self.base)).send();
        let response = tokio::time::timeout(self.timeout, request)
            .await
            .map_err(|_| {
                anyhow!(
                    "GET {path}: no response headers within {} s",
                    self.timeout.as_secs()
                )
            })?
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        if status != StatusCode::OK {
            let text = tokio::time::timeout(self.timeout, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let snippet: String = text.chars().take(BODY_SNIPPET).collect();
            bail!("GET {path}: HTTP {status}: {}", snippet.trim_end());
        }
        Ok(response)
    }

    /// Reads the server's welcome document (`GET /`) and describes it as
    /// `vendor version`.
    pub async fn describe_server(&self) -> Result<String> {
        let body = self.send(Method::GET, "/", None, &[StatusCode::OK]).await?;
        let welcome = parse_json(&body, "GET /")?;
        let field = |pointer: &str| welcome.pointer(pointer).and_then(Value::as_str);
        let vendor = field("/vendor/name").unwrap_or("unknown vendor");
        let version = field("/version").unwrap_or("unknown version");
        Ok(format!("{vendor} {version}"))
    }

    /// Creates a database with a fresh random name `bench-<hex>` and returns
    /// its name.
    pub async fn create_db(&self) -> Result<String> {
        let name = format!("bench-{:016x}", rand::thread_rng().gen::<u64>());
        let ok = [StatusCode::CREATED, StatusCode::ACCEPTED];
        self.send(Method::PUT, &format!("/{name}"), None, &ok)
            .await
            .context("creating the benchmark database")?;
        Ok(name)
    }

    /// Deletes database `name`.
    pub async fn delete_db(&self, name: &str) -> Result<()> {
        let ok = [StatusCode::OK, StatusCode::ACCEPTED];
        self.send(Method::DELETE, &format!("/{name}"), None, &ok)
            .await
            .context("deleting the benchmark database")?;
        Ok(())
    }
}

/// Parses a response body as JSON; `what` names the request in the error.
pub fn parse_json(body: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(body).with_context(|| format!("{what}: response is not valid JSON"))
}

/// Percent-decodes one part of the URL's userinfo.
fn decode(part: &str) -> Result<String> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .context("credentials in the URL are not valid UTF-8")
}
