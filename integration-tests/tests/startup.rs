//! Node start-up: the server admin from the environment or a generated one, the
//! cookie secret, ini files given with `--config` (and their precedence against
//! flags and each other), the node name, the system databases, and a clean
//! shutdown on SIGTERM.

use chaise_integration_tests::helpers::{ini_value, local_ini};
use chaise_integration_tests::{
    call, chaise_bin, free_port, wait_exit, Node, NodeOptions, ADMIN, PASSWORD,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Writes an ini file into `dir` and returns its path.
fn write_ini(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn config_args(files: &[&Path]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| ["--config".to_string(), f.display().to_string()])
        .collect()
}

fn session_as(node: &Node, name: &str, pw: &str) -> (u16, Value) {
    call(node.anon("GET", "/_session").basic_auth(name, Some(pw)))
}

fn membership(node: &Node) -> Value {
    let (s, b) = node.get("/_membership");
    assert_eq!(s, 200, "{b}");
    b
}

/// A `chaise` process started by hand (killed when dropped).
struct Proc {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Runs the binary with exactly `args` (no harness flags) in `cwd`.
    fn spawn(cwd: &Path, args: &[String], env: &[(&str, &str)]) -> Proc {
        let stdout = cwd.join("proc-stdout.log");
        let stderr = cwd.join("proc-stderr.log");
        let mut cmd = Command::new(chaise_bin());
        cmd.current_dir(cwd)
            .args(args)
            .env_remove("COUCHDB_USER")
            .env_remove("COUCHDB_PASSWORD")
            .env_remove("COUCHDB_SECRET")
            .env_remove("NODENAME")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().expect("spawn chaise"),
            stdout,
            stderr,
        }
    }

    fn logs(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits until `GET /_up` answers 200 on `port`.
    fn wait_up(&mut self, port: u16) {
        let client = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/_up")).send() {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chaise exited with {status}: {}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "chaise did not come up: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit by itself; its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        wait_exit(&mut self.child)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin_get(port: u16, path: &str) -> (u16, Value) {
    let client = reqwest::blocking::Client::new();
    call(
        client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .basic_auth(ADMIN, Some(PASSWORD)),
    )
}

// ---------------------------------------------------------------------------
// Server admin and secret
// ---------------------------------------------------------------------------

#[test]
fn env_admin_is_created_and_stored_hashed() {
    let node = Node::start();
    let (s, b) = session_as(&node, ADMIN, PASSWORD);
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"], json!({"name": ADMIN, "roles": ["_admin"]}));
    let ini = local_ini(&node.data_dir);
    assert!(
        !ini.contains(PASSWORD),
        "plaintext password in local.ini: {ini}"
    );
    let hash = ini_value(&ini, "admins", ADMIN).expect("admin in local.ini");
    assert!(hash.starts_with("-pbkdf2:sha256-"), "{hash}");
    // Nothing is printed about a generated password.
    assert!(!node.logs().contains("with password"), "{}", node.logs());
    // Restarting with the same environment keeps the same hash.
    let node = node.restart(NodeOptions::default());
    assert_eq!(
        ini_value(&local_ini(&node.data_dir), "admins", ADMIN).as_deref(),
        Some(hash.as_str())
    );
    let (s, _) = session_as(&node, ADMIN, PASSWORD);
    assert_eq!(s, 200);
}

#[test]
fn env_admin_password_change_applies_on_restart() {
    let node = Node::start();
    let node = node.restart(NodeOptions {
        env: vec![("COUCHDB_PASSWORD".into(), "changed".into())],
        ..Default::default()
    });
    let (s, _) = session_as(&node, ADMIN, PASSWORD);
    assert_eq!(s, 401);
    let (s, b) = session_as(&node, ADMIN, "changed");
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"]["roles"], json!(["_admin"]));
    assert!(!local_ini(&node.data_dir).contains("changed"));
}

/// The admin name and password a node printed on stdout.
fn printed_credentials(logs: &str) -> (String, String) {
    let line = logs
        .lines()
        .find(|l| l.contains("password '"))
        .unwrap_or_else(|| panic!("no generated password printed: {logs}"));
    let quoted: Vec<&str> = line.split('\'').collect();
    // ... admin '<name>' with password '<pw>' ...
    assert!(quoted.len() >= 5, "{line}");
    (quoted[1].to_string(), quoted[3].to_string())
}

#[test]
fn without_admin_a_password_is_generated_and_printed() {
    let node = Node::start_with(NodeOptions {
        no_admin_env: true,
        ..Default::default()
    });
    let stdout = std::fs::read_to_string(&node.stdout_path).unwrap();
    let (name, pw) = printed_credentials(&stdout);
    assert!(pw.len() >= 16, "weak generated password {pw:?}");
    let (s, b) = session_as(&node, &name, &pw);
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["userCtx"], json!({"name": name, "roles": ["_admin"]}));
    let (s, _) = session_as(&node, &name, "wrong");
    assert_eq!(s, 401);
    let ini = local_ini(&node.data_dir);
    assert!(
        !ini.contains(&pw),
        "plaintext generated password in local.ini"
    );
    assert!(ini_value(&ini, "admins", &name)
        .unwrap()
        .starts_with("-pbkdf2:"));
    // The next start finds the admin: no new password, the old one still works.
    let node = node.restart(NodeOptions {
        no_admin_env: true,
        ..Default::default()
    });
    let stdout = std::fs::read_to_string(&node.stdout_path).unwrap();
    assert!(!stdout.contains("password '"), "{stdout}");
    let (s, _) = session_as(&node, &name, &pw);
    assert_eq!(s, 200);
}

#[test]
fn couchdb_secret_sets_the_cookie_secret() {
    let node = Node::start_with(NodeOptions {
        env: vec![("COUCHDB_SECRET".into(), "0123456789abcdef".into())],
        ..Default::default()
    });
    let (s, v) = node.get("/_node/_local/_config/chttpd_auth/secret");
    assert_eq!((s, v), (200, json!("0123456789abcdef")));
}

#[test]
fn generated_secret_is_persisted_and_cookies_survive_restart() {
    let node = Node::start();
    let (s, secret) = node.get("/_node/_local/_config/chttpd_auth/secret");
    assert_eq!(s, 200);
    let secret = secret.as_str().unwrap().to_string();
    assert!(secret.len() >= 16, "{secret}");
    let resp = node
        .anon("POST", "/_session")
        .header("content-type", "application/json")
        .body(json!({"name": ADMIN, "password": PASSWORD}).to_string())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let pair = cookie.split(';').next().unwrap().to_string();
    let node = node.restart(NodeOptions::default());
    let (_, again) = node.get("/_node/_local/_config/chttpd_auth/secret");
    assert_eq!(again, json!(secret));
    let (s, b) = call(node.anon("GET", "/_session").header("cookie", &pair));
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"]["name"], ADMIN, "cookie survives a restart");
}

#[test]
fn nodes_sharing_secret_and_admin_hash_accept_each_others_cookies() {
    let a = Node::start_with(NodeOptions {
        env: vec![("COUCHDB_SECRET".into(), "shared-secret".into())],
        ..Default::default()
    });
    let hash = ini_value(&local_ini(&a.data_dir), "admins", ADMIN).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ini = write_ini(
        dir.path(),
        "admins.ini",
        &format!("[admins]\n{ADMIN} = {hash}\n"),
    );
    let start_b = |secret: &str| {
        Node::start_with(NodeOptions {
            no_admin_env: true,
            args: config_args(&[&ini]),
            env: vec![("COUCHDB_SECRET".into(), secret.into())],
            ..Default::default()
        })
    };
    let b = start_b("shared-secret");
    let c = start_b("another-secret");
    let resp = a
        .anon("POST", "/_session")
        .header("content-type", "application/json")
        .body(json!({"name": ADMIN, "password": PASSWORD}).to_string())
        .send()
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let pair = cookie.split(';').next().unwrap().to_string();
    let (s, body) = call(b.anon("GET", "/_all_dbs").header("cookie", &pair));
    assert_eq!(s, 200, "{body}");
    let (_, body) = call(c.anon("GET", "/_session").header("cookie", &pair));
    assert_eq!(body["userCtx"]["name"], Value::Null, "other secret: {body}");
}

// ---------------------------------------------------------------------------
// --config ini files
// ---------------------------------------------------------------------------

#[test]
fn ini_provides_port_and_database_dir() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("ini-data");
    let ini = write_ini(
        dir.path(),
        "node.ini",
        &format!(
            "; comment\n[chttpd]\nport = {port}\nbind_address = 127.0.0.1\n\n[couchdb]\ndatabase_dir = {}\n\n[chttpd_auth]\niterations = 1000\n\n[chaise]\ncluster_port = {}\n",
            data.display(),
            free_port()
        ),
    );
    let mut p = Proc::spawn(
        dir.path(),
        &config_args(&[&ini]),
        &[("COUCHDB_USER", ADMIN), ("COUCHDB_PASSWORD", PASSWORD)],
    );
    p.wait_up(port);
    let (s, v) = admin_get(port, "/_node/_local/_config/chttpd/port");
    assert_eq!((s, v), (200, json!(port.to_string())), "{}", p.logs());
    assert!(data.join("local.ini").exists(), "{}", p.logs());
    assert!(ini_value(&local_ini(&data), "admins", ADMIN).is_some());
    assert!(!dir.path().join("data").exists(), "./data must not be used");
    let (s, v) = admin_get(port, "/_node/_local/_config/couchdb/database_dir");
    assert_eq!(s, 200);
    assert_eq!(PathBuf::from(v.as_str().unwrap()), data);
}

#[test]
fn invalid_port_in_ini_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write_ini(
        dir.path(),
        "bad.ini",
        &format!(
            "[chttpd]\nport = notaport\n[couchdb]\ndatabase_dir = {}\n",
            dir.path().join("d").display()
        ),
    );
    let mut p = Proc::spawn(
        dir.path(),
        &config_args(&[&ini]),
        &[("COUCHDB_USER", ADMIN), ("COUCHDB_PASSWORD", PASSWORD)],
    );
    let code = p.wait_exit();
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}: {}",
        p.logs()
    );
    assert!(p.logs().contains("port"), "{}", p.logs());
}

#[test]
fn port_in_use_fails_start() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut p = Proc::spawn(
        dir.path(),
        &args(&[
            "--port",
            &port.to_string(),
            "--cluster-port",
            &free_port().to_string(),
            "--data-dir",
            &dir.path().join("d").display().to_string(),
        ]),
        &[("COUCHDB_USER", ADMIN), ("COUCHDB_PASSWORD", PASSWORD)],
    );
    let code = p.wait_exit();
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit {code:?}: {}",
        p.logs()
    );
    assert!(p.logs().contains(&format!(":{port}")), "{}", p.logs());
    drop(listener);
}

#[test]
fn ini_max_document_size_and_admins() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write_ini(
        dir.path(),
        "extra.ini",
        "[couchdb]\nmax_document_size = 100\n\n[admins]\nalice = alicepw\n",
    );
    let node = Node::start_with(NodeOptions {
        args: config_args(&[&ini]),
        ..Default::default()
    });
    node.create_db("docs");
    let (s, b) = node.put("/docs/big", json!({"data": "x".repeat(300)}));
    assert_eq!(s, 413, "{b}");
    assert_eq!(b, json!({"error": "document_too_large", "reason": "big"}));
    let (s, _) = node.put("/docs/small", json!({"a": 1}));
    assert_eq!(s, 201);
    // The ini admin works and its hash is persisted, never the plaintext.
    let (s, b) = session_as(&node, "alice", "alicepw");
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"]["roles"], json!(["_admin"]));
    let ini_text = local_ini(&node.data_dir);
    assert!(ini_value(&ini_text, "admins", "alice")
        .unwrap()
        .starts_with("-pbkdf2:"));
    assert!(!ini_text.contains("alicepw"));
    let (_, v) = node.get("/_node/_local/_config/admins/alice");
    assert!(v.as_str().unwrap().starts_with("-pbkdf2:"), "{v}");
}

#[test]
fn ini_cluster_q_sets_default_shards() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write_ini(dir.path(), "q.ini", "[cluster]\nq = 4\n");
    let node = Node::start_with(NodeOptions {
        args: config_args(&[&ini]),
        ..Default::default()
    });
    node.create_db("fourway");
    let (_, info) = node.get("/fourway");
    assert_eq!(info["cluster"]["q"], 4, "{info}");
    let (_, map) = node.get("/_node/_local/_dbs/fourway");
    let ranges: Vec<&String> = map["by_range"].as_object().unwrap().keys().collect();
    assert_eq!(
        ranges,
        [
            "00000000-3fffffff",
            "40000000-7fffffff",
            "80000000-bfffffff",
            "c0000000-ffffffff"
        ]
    );
    // ?q= still wins for one database.
    let (s, _) = node.json("PUT", "/oneway?q=1", None);
    assert_eq!(s, 201);
    let (_, info) = node.get("/oneway");
    assert_eq!(info["cluster"]["q"], 1);
    // The system databases created at first start are not affected by later edits.
    let (_, users) = node.get("/_users");
    assert!(users["cluster"]["q"].is_u64(), "{users}");
}

#[test]
fn flags_beat_ini_values() {
    let dir = tempfile::tempdir().unwrap();
    let ini_port = free_port();
    let ini_data = dir.path().join("ini-data");
    let ini = write_ini(
        dir.path(),
        "flags.ini",
        &format!(
            "[chttpd]\nport = {ini_port}\n[couchdb]\ndatabase_dir = {}\n",
            ini_data.display()
        ),
    );
    // The harness passes --data-dir and --port, which must win.
    let node = Node::start_with(NodeOptions {
        args: config_args(&[&ini]),
        ..Default::default()
    });
    let (_, v) = node.get("/_node/_local/_config/chttpd/port");
    assert_eq!(v, json!(node.port.to_string()));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", ini_port)).is_err(),
        "the ini port must not be used"
    );
    assert!(node.data_dir.join("local.ini").exists());
    assert!(!ini_data.exists(), "the ini database_dir must not be used");
    let (_, v) = node.get("/_node/_local/_config/couchdb/database_dir");
    assert_eq!(PathBuf::from(v.as_str().unwrap()), node.data_dir);
}

#[test]
fn later_config_files_win() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_ini(
        dir.path(),
        "a.ini",
        "[couchdb]\nmax_document_size = 111\n[testsec]\nonly_a = 1\nboth = a\n",
    );
    let b = write_ini(
        dir.path(),
        "b.ini",
        "[couchdb]\nmax_document_size = 222\n[testsec]\nonly_b = 2\nboth = b\n",
    );
    let node = Node::start_with(NodeOptions {
        args: config_args(&[&a, &b]),
        ..Default::default()
    });
    let (_, v) = node.get("/_node/_local/_config/couchdb/max_document_size");
    assert_eq!(v, json!("222"));
    let (_, sec) = node.get("/_node/_local/_config/testsec");
    assert_eq!(sec, json!({"both": "b", "only_a": "1", "only_b": "2"}));
    // Persisted values (local.ini) beat every --config file.
    let (s, _) = call(
        node.req("PUT", "/_node/_local/_config/testsec/both")
            .header("content-type", "application/json")
            .body("\"local\""),
    );
    assert_eq!(s, 200);
    let node = node.restart(NodeOptions {
        args: config_args(&[&b, &a]),
        ..Default::default()
    });
    let (_, v) = node.get("/_node/_local/_config/couchdb/max_document_size");
    assert_eq!(v, json!("111"), "order reversed");
    let (_, v) = node.get("/_node/_local/_config/testsec/both");
    assert_eq!(v, json!("local"));
}

// ---------------------------------------------------------------------------
// Node name
// ---------------------------------------------------------------------------

#[test]
fn node_name_flag() {
    let node = Node::start_with(NodeOptions {
        args: args(&["--node-name", "alpha@example.test"]),
        ..Default::default()
    });
    assert_eq!(
        membership(&node),
        json!({"all_nodes": ["alpha@example.test"], "cluster_nodes": ["alpha@example.test"]})
    );
    let (_, me) = node.get("/_node/_local");
    assert_eq!(me, json!({"name": "alpha@example.test"}));
    let (s, _) = node.get("/_node/alpha@example.test/_config/chttpd_auth");
    assert_eq!(s, 200);
    node.create_db("named");
    let (_, map) = node.get("/_node/_local/_dbs/named");
    assert_eq!(
        map["by_node"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["alpha@example.test"]
    );
}

#[test]
fn nodename_env() {
    let node = Node::start_with(NodeOptions {
        env: vec![("NODENAME".into(), "beta@example.test".into())],
        ..Default::default()
    });
    assert_eq!(membership(&node)["all_nodes"], json!(["beta@example.test"]));
    // The flag beats the environment.
    let node = Node::start_with(NodeOptions {
        env: vec![("NODENAME".into(), "beta@example.test".into())],
        args: args(&["--node-name", "gamma@example.test"]),
        ..Default::default()
    });
    assert_eq!(
        membership(&node)["all_nodes"],
        json!(["gamma@example.test"])
    );
}

// ---------------------------------------------------------------------------
// System databases, shutdown
// ---------------------------------------------------------------------------

#[test]
fn system_dbs_exist_after_first_start() {
    let node = Node::start();
    for db in ["_users", "_replicator"] {
        let (s, info) = node.get(&format!("/{db}"));
        assert_eq!(s, 200, "{db}: {info}");
        assert_eq!(info["db_name"], db);
        // Only server admins by default.
        let (s, _) = call(node.anon("GET", &format!("/{db}/_all_docs")));
        assert_eq!(s, 401, "{db}");
    }
    let (_, dbs) = node.get("/_all_dbs");
    assert_eq!(dbs, json!(["_replicator", "_users"]));
    // A restart neither fails nor duplicates them.
    let node = node.restart(NodeOptions::default());
    let (_, dbs) = node.get("/_all_dbs");
    assert_eq!(dbs, json!(["_replicator", "_users"]));
}

#[test]
fn sigterm_exits_zero_and_keeps_data() {
    let mut node = Node::start();
    node.create_db("kept");
    let mut revs = Vec::new();
    for i in 0..20 {
        let (s, b) = node.put(&format!("/kept/doc{i}"), json!({"i": i}));
        assert_eq!(s, 201, "{b}");
        revs.push(b["rev"].clone());
    }
    let (s, b) = node.put(
        "/kept/_security",
        json!({"members": {"names": ["someone"], "roles": []}, "admins": {"names": [], "roles": []}}),
    );
    assert_eq!(s, 200, "{b}");
    let (s, _) = call(
        node.req("PUT", "/_node/_local/_config/testsec/kept")
            .header("content-type", "application/json")
            .body("\"yes\""),
    );
    assert_eq!(s, 200);
    let code = node.terminate();
    assert_eq!(code, Some(0), "{}", node.logs());
    let node = node.restart(NodeOptions::default());
    let (_, info) = node.get("/kept");
    assert_eq!(info["doc_count"], 20, "{info}");
    for (i, rev) in revs.iter().enumerate() {
        let (s, doc) = node.get(&format!("/kept/doc{i}"));
        assert_eq!(s, 200);
        assert_eq!(doc["_rev"], *rev);
        assert_eq!(doc["i"], i);
    }
    let (_, sec) = node.get("/kept/_security");
    assert_eq!(sec["members"]["names"], json!(["someone"]));
    let (_, v) = node.get("/_node/_local/_config/testsec/kept");
    assert_eq!(v, json!("yes"));
}
