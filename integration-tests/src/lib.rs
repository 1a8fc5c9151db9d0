//! Test harness: starts real `chaise` processes on free ports with their own data
//! directories and talks to them over HTTP.
//!
//! The binary is the one `cargo test` builds for the workspace (`target/<profile>/chaise`),
//! or the path in `CHAISE_BIN`.

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::Method;
use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod helpers;

/// Admin user every test node is started with.
pub const ADMIN: &str = "admin";
/// Its password.
pub const PASSWORD: &str = "s3cret";

/// Path of the `chaise` binary under test.
pub fn chaise_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CHAISE_BIN") {
        return PathBuf::from(p);
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_chaise") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>/chaise
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = profile_dir.join("chaise");
    assert!(
        bin.exists(),
        "chaise binary not found at {}; run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// A free TCP port on 127.0.0.1, never one this process handed out before: the
/// kernel may offer a just-released port again, and a node given the same port
/// for HTTP and the cluster cannot start.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// How to start a node.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Do not pass COUCHDB_USER/COUCHDB_PASSWORD.
    pub no_admin_env: bool,
    /// Reuse this data directory (for restarts).
    pub data_dir: Option<PathBuf>,
    /// Use this port instead of a fresh one.
    pub port: Option<u16>,
    /// Use this cluster (fabric) port instead of a fresh one.
    pub cluster_port: Option<u16>,
    /// Loopback address to bind and name the node after (`chaise@<host>`), for
    /// clusters of several "hosts" on one machine; 127.0.0.1 by default.
    pub host: Option<String>,
}

/// A running `chaise` process, killed when dropped.
pub struct Node {
    /// The process.
    pub child: Child,
    /// Its HTTP port.
    pub port: u16,
    /// The address it listens on.
    pub host: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// Captured stdout (the generated admin password is printed there).
    pub stdout_path: PathBuf,
    /// Captured stderr (logs).
    pub stderr_path: PathBuf,
    client: Client,
}

impl Node {
    /// Starts a node with the default admin and waits until it answers.
    pub fn start() -> Node {
        Node::start_with(NodeOptions::default())
    }

    /// Starts a node with options and waits until it answers.
    pub fn start_with(opts: NodeOptions) -> Node {
        let (tmp, data_dir) = match &opts.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let d = t.path().join("data");
                (Some(t), d)
            }
        };
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let port = opts.port.unwrap_or_else(free_port);
        let host = opts.host.clone().unwrap_or_else(|| "127.0.0.1".to_string());
        let logs = data_dir.parent().unwrap_or(&data_dir).to_path_buf();
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let stdout_path = logs.join(format!("stdout-{port}-{n}.log"));
        let stderr_path = logs.join(format!("stderr-{port}-{n}.log"));
        // Fewer PBKDF2 iterations than production keeps node start-up fast in tests.
        let test_ini = logs.join("test.ini");
        std::fs::write(&test_ini, "[chttpd_auth]\niterations = 1000\n").expect("test.ini");
        let mut cmd = Command::new(chaise_bin());
        cmd.arg("--config")
            .arg(&test_ini)
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--port")
            .arg(port.to_string())
            .arg("--cluster-port")
            .arg(opts.cluster_port.unwrap_or_else(free_port).to_string())
            .args(&opts.args)
            .env_remove("COUCHDB_USER")
            .env_remove("COUCHDB_PASSWORD")
            .env_remove("NODENAME")
            .env(
                "RUST_LOG",
                std::env::var("CHAISE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
        if opts.host.is_some() {
            cmd.arg("--bind-address")
                .arg(&host)
                .arg("--node-name")
                .arg(format!("chaise@{host}"));
        }
        if !opts.no_admin_env {
            cmd.env("COUCHDB_USER", ADMIN)
                .env("COUCHDB_PASSWORD", PASSWORD);
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn chaise");
        let node = Node {
            child,
            port,
            host,
            data_dir,
            _tmp: tmp,
            stdout_path,
            stderr_path,
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        };
        node.wait_up();
        node
    }

    /// Restarts the node on the same port and data directory (after a kill or stop).
    pub fn restart(mut self, opts: NodeOptions) -> Node {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let tmp = self._tmp.take();
        let mut opts = opts;
        opts.data_dir = Some(self.data_dir.clone());
        opts.port = Some(self.port);
        if opts.host.is_none() && self.host != "127.0.0.1" {
            opts.host = Some(self.host.clone());
        }
        let mut node = Node::start_with(opts);
        node._tmp = tmp;
        node
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // A node answering 404 (seeding, maintenance) is serving HTTP too.
            if let Ok(r) = self.client.get(self.url("/_up")).send() {
                if r.status().is_success() || r.status().as_u16() == 404 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chaise did not come up: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the node logged so far.
    pub fn logs(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&self.stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
        )
    }

    /// Base URL without credentials.
    pub fn base(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    /// A request as the admin.
    pub fn req(&self, method: &str, path: &str) -> RequestBuilder {
        self.anon(method, path).basic_auth(ADMIN, Some(PASSWORD))
    }

    /// A request without credentials.
    pub fn anon(&self, method: &str, path: &str) -> RequestBuilder {
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        self.client.request(m, self.url(path))
    }

    /// Admin request with a JSON body; returns (status, JSON body).
    pub fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b).expect("json"));
        }
        call(r)
    }

    /// GET as admin.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.json("GET", path, None)
    }

    /// PUT JSON as admin.
    pub fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.json("PUT", path, Some(body))
    }

    /// POST JSON as admin.
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.json("POST", path, Some(body))
    }

    /// DELETE as admin.
    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.json("DELETE", path, None)
    }

    /// Creates a database (asserting 201) and returns its name.
    pub fn create_db(&self, name: &str) -> String {
        let (s, b) = self.json("PUT", &format!("/{name}"), None);
        assert_eq!(s, 201, "create {name}: {b}");
        name.to_string()
    }

    /// Sends SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        wait_exit(&mut self.child)
    }
}

/// Waits up to 30 s for a process to exit by itself; its exit code (`None` if it
/// did not exit in time or was killed by a signal).
pub fn wait_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a request; returns status and the body parsed as JSON (`Value::Null` if empty
/// or not JSON).
pub fn call(r: RequestBuilder) -> (u16, Value) {
    let resp = r.send().expect("request");
    let status = resp.status().as_u16();
    (status, body_json(resp))
}

/// A response's body as JSON.
pub fn body_json(resp: Response) -> Value {
    let bytes = resp.bytes().unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// A unique database name for a test.
pub fn db_name(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    n ^ std::process::id().rotate_left(16)
}

/// A response kept whole: status, headers and raw body.
pub struct Raw {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Raw body bytes.
    pub body: Vec<u8>,
}

impl Raw {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The body parsed as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends a request and keeps the whole response.
pub fn raw(r: RequestBuilder) -> Raw {
    let resp = r.send().expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().map(|b| b.to_vec()).unwrap_or_default();
    Raw {
        status,
        headers,
        body,
    }
}

/// Peak resident memory (`VmHWM`) of a process, in KiB (Linux).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Sets a config value on a node through `/_node/_local/_config`.
pub fn set_config(node: &Node, section: &str, key: &str, value: &str) {
    let (s, b) = node.json(
        "PUT",
        &format!("/_node/_local/_config/{section}/{key}"),
        Some(Value::String(value.to_string())),
    );
    assert_eq!(s, 200, "set [{section}] {key}: {b}");
}
