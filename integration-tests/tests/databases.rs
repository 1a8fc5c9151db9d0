//! Database-level endpoints, black-box over real sockets: create/info/delete, names,
//! sharding parameters, `_security`, `_revs_limit`, `_purged_infos_limit`,
//! `_compact`, `_view_cleanup`, `_ensure_full_commit`, `_purge`, `_purged_infos`,
//! `_revs_diff`, `_missing_revs`, `_shards`, and the error shapes CouchDB uses for
//! wrong content types, bad bodies and wrong methods.

use base64::Engine;
use chaise_integration_tests::helpers::{row_ids, seq_num};
use chaise_integration_tests::{body_json, call, Node, ADMIN, PASSWORD};
use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const ILLEGAL_REASON_TAIL: &str = "Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.";
const NO_DB: &str = "Database does not exist.";

// ---------------------------------------------------------------- helpers

/// Sends a request; returns status, `Allow` header (if any) and JSON body.
fn send(r: RequestBuilder) -> (u16, Option<String>, Value) {
    let resp = r.send().expect("request");
    let status = resp.status().as_u16();
    let allow = resp
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, allow, body_json(resp))
}

/// Admin request with a raw body and a JSON content type.
fn raw_json(node: &Node, method: &str, path: &str, body: &str) -> (u16, Value) {
    call(
        node.req(method, path)
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
}

/// Asserts a CouchDB error body.
fn assert_err(status: u16, body: &Value, want_status: u16, error: &str, reason: &str) {
    assert_eq!(status, want_status, "status; body {body}");
    assert_eq!(
        body,
        &json!({"error": error, "reason": reason}),
        "error body (status {status})"
    );
}

fn illegal_reason(name: &str) -> String {
    format!("Name: '{name}'. {ILLEGAL_REASON_TAIL}")
}

/// Creates a `_users` entry and returns (name, password).
fn make_user(node: &Node, name: &str) -> (String, String) {
    let pw = format!("{name}-pw");
    let (s, b) = node.put(
        &format!("/_users/org.couchdb.user:{name}"),
        json!({"name": name, "password": pw, "roles": [], "type": "user"}),
    );
    assert_eq!(s, 201, "create user {name}: {b}");
    (name.to_string(), pw)
}

/// A request authenticated as a (non-admin) user.
fn as_user(node: &Node, user: &(String, String), method: &str, path: &str) -> RequestBuilder {
    node.anon(method, path).basic_auth(&user.0, Some(&user.1))
}

/// Writes a doc; returns its new rev.
fn put_doc(node: &Node, db: &str, id: &str, body: Value) -> String {
    let (s, b) = node.put(&format!("/{db}/{id}"), body);
    assert!(s == 201 || s == 200, "put {id}: {s} {b}");
    b["rev"].as_str().expect("rev").to_string()
}

/// Writes `n` successive revisions of a doc (`{"i": 0}` .. `{"i": n-1}`); returns
/// every rev, oldest first.
fn edit_n_times(node: &Node, db: &str, id: &str, n: usize) -> Vec<String> {
    let mut revs = vec![put_doc(node, db, id, json!({"i": 0}))];
    for i in 1..n {
        let parent = revs[i - 1].clone();
        revs.push(put_doc(node, db, id, json!({"_rev": parent, "i": i})));
    }
    revs
}

/// Sorts every array in a `_revs_diff`/`_missing_revs` answer: they are sets, and
/// CouchDB's order comes from a rev-tree walk.
fn sorted_lists(v: &Value) -> Value {
    match v {
        Value::Array(a) => {
            let mut a: Vec<Value> = a.iter().map(sorted_lists).collect();
            a.sort_by_key(|x| x.to_string());
            Value::Array(a)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), sorted_lists(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Every path (relative) under `root`.
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Sends a request line verbatim over TCP (no client-side path normalisation) as
/// the admin; returns status and JSON body.
fn raw_http(node: &Node, method: &str, target: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", node.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{ADMIN}:{PASSWORD}"));
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        node.port
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// CRC-32 (IEEE, as zlib and Erlang's `erlang:crc32/1`).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn all_dbs(node: &Node) -> Vec<String> {
    let (s, b) = node.get("/_all_dbs");
    assert_eq!(s, 200, "{b}");
    serde_json::from_value(b).expect("db list")
}

fn info(node: &Node, db: &str) -> Value {
    let (s, b) = node.get(&format!("/{db}"));
    assert_eq!(s, 200, "info {db}: {b}");
    b
}

// ---------------------------------------------------------------- PUT /{db}

#[test]
fn create_returns_201_with_absolute_location_then_412() {
    let node = Node::start();
    let resp = node.req("PUT", "/newdb").send().expect("put");
    assert_eq!(resp.status().as_u16(), 201);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(
        location.as_deref(),
        Some(format!("{}/newdb", node.base()).as_str()),
        "CouchDB's Location is the absolute URL of the database"
    );
    assert_eq!(body_json(resp), json!({"ok": true}));
    assert!(all_dbs(&node).contains(&"newdb".to_string()));

    let (s, b) = node.json("PUT", "/newdb", None);
    assert_err(
        s,
        &b,
        412,
        "file_exists",
        "The database could not be created, the file already exists.",
    );
}

#[test]
fn illegal_names_are_rejected_and_touch_nothing_on_disk() {
    let node = Node::start();
    let root = node.data_dir.parent().expect("tmp root").to_path_buf();
    let before = tree(&root);
    let dbs_before = all_dbs(&node);
    // (path segment as sent, decoded name CouchDB reports)
    let cases = [
        ("..%2Fx", "../x"),
        ("..%2F..%2F..%2Fescape", "../../../escape"),
        ("a%2F..%2F..%2F..%2Fescape", "a/../../../escape"),
        (".hidden", ".hidden"),
        ("Uppercase", "Uppercase"),
        ("mixedCase", "mixedCase"),
        ("1leadingdigit", "1leadingdigit"),
        ("_foo", "_foo"),
        ("_users2", "_users2"),
        ("a%20b", "a b"),
        ("a.b", "a.b"),
        ("a%5Cb", "a\\b"),
        ("caf%C3%A9", "café"),
        ("%2Fabs", "/abs"),
        ("-dash", "-dash"),
    ];
    for (seg, name) in cases {
        let (s, b) = node.json("PUT", &format!("/{seg}"), None);
        assert_err(s, &b, 400, "illegal_database_name", &illegal_reason(name));
    }
    // Without client-side dot-segment normalisation: `%2e%2e` decodes to `..`.
    let (s, b) = raw_http(&node, "PUT", "/%2e%2e");
    assert_err(s, &b, 400, "illegal_database_name", &illegal_reason(".."));
    let (s, b) = raw_http(&node, "PUT", "/..%2Fx");
    assert_err(s, &b, 400, "illegal_database_name", &illegal_reason("../x"));
    // A literal `/../x` is the document `x` in the (never existing) database `..`,
    // as in CouchDB (mochiweb splits the raw path on `/`).
    let (s, b) = raw_http(&node, "PUT", "/../x");
    assert_err(s, &b, 404, "not_found", NO_DB);

    assert_eq!(all_dbs(&node), dbs_before, "no database was created");
    // Only the node's own log files may change names under the temp root.
    let after: BTreeSet<String> = tree(&root)
        .into_iter()
        .filter(|p| !p.ends_with(".log"))
        .collect();
    let before: BTreeSet<String> = before
        .into_iter()
        .filter(|p| !p.ends_with(".log"))
        .collect();
    assert_eq!(before, after, "illegal names created files");
    assert!(!root.join("escape").exists());
    assert!(!root.parent().unwrap().join("escape").exists());
}

#[test]
fn illegal_names_on_other_methods_are_missing_databases() {
    // CouchDB validates names only on creation; any other request for a name that
    // cannot exist is a missing database.
    let node = Node::start();
    for path in [
        "/Uppercase",
        "/1abc",
        "/..%2Fx",
        "/Uppercase/_all_docs",
        "/Abc/doc",
    ] {
        let (s, b) = node.get(path);
        assert_err(s, &b, 404, "not_found", NO_DB);
    }
    let (s, b) = node.delete("/Uppercase");
    assert_err(s, &b, 404, "not_found", NO_DB);
}

#[test]
fn names_with_allowed_special_characters() {
    let node = Node::start();
    let encoded = "a%24b%28c%29%2Bd-e%2Ff";
    let name = "a$b(c)+d-e/f";
    let resp = node.req("PUT", &format!("/{encoded}")).send().expect("put");
    assert_eq!(resp.status().as_u16(), 201);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // couch_util:url_encode keeps only [A-Za-z0-9_.:-].
    assert_eq!(
        location.as_deref(),
        Some(format!("{}/a%24b%28c%29%2Bd-e%2Ff", node.base()).as_str())
    );
    let i = info(&node, encoded);
    assert_eq!(i["db_name"], name);
    assert!(all_dbs(&node).contains(&name.to_string()));
    // Documents work inside it.
    let rev = put_doc(&node, encoded, "doc", json!({"v": 1}));
    let (s, b) = node.get(&format!("/{encoded}/doc"));
    assert_eq!(s, 200);
    assert_eq!(b, json!({"_id": "doc", "_rev": rev, "v": 1}));
    // Every shard file stays inside the data directory.
    for p in tree(&node.data_dir) {
        assert!(!p.contains(".."), "{p}");
    }
    let (s, b) = node.delete(&format!("/{encoded}"));
    assert_eq!((s, b), (200, json!({"ok": true})));
    assert!(!all_dbs(&node).contains(&name.to_string()));
    let (s, b) = node.get(&format!("/{encoded}"));
    assert_err(s, &b, 404, "not_found", NO_DB);
}

#[test]
fn q_parameter_sets_cluster_q_and_shard_ranges() {
    let node = Node::start();
    let (s, _) = node.json("PUT", "/q4?q=4", None);
    assert_eq!(s, 201);
    assert_eq!(info(&node, "q4")["cluster"]["q"], 4);
    let (s, b) = node.get("/q4/_shards");
    assert_eq!(s, 200);
    let ranges: Vec<&String> = b["shards"].as_object().expect("shards").keys().collect();
    assert_eq!(
        ranges,
        [
            "00000000-3fffffff",
            "40000000-7fffffff",
            "80000000-bfffffff",
            "c0000000-ffffffff"
        ]
    );
    for (_, nodes) in b["shards"].as_object().unwrap() {
        let nodes = nodes.as_array().expect("node list");
        assert_eq!(nodes.len(), 1, "single node: one copy per range");
        assert!(nodes[0].as_str().unwrap().contains('@'), "{nodes:?}");
    }

    let (s, _) = node.json("PUT", "/q1?q=1", None);
    assert_eq!(s, 201);
    assert_eq!(info(&node, "q1")["cluster"]["q"], 1);
    let (_, b) = node.get("/q1/_shards");
    let ranges: Vec<&String> = b["shards"].as_object().unwrap().keys().collect();
    assert_eq!(ranges, ["00000000-ffffffff"]);

    let (s, _) = node.json("PUT", "/q3?q=3", None);
    assert_eq!(s, 201);
    let (_, b) = node.get("/q3/_shards");
    let ranges: Vec<&String> = b["shards"].as_object().unwrap().keys().collect();
    assert_eq!(
        ranges,
        [
            "00000000-55555554",
            "55555555-aaaaaaa9",
            "aaaaaaaa-ffffffff"
        ]
    );

    // Default q is 2.
    node.create_db("qdefault");
    assert_eq!(info(&node, "qdefault")["cluster"]["q"], 2);

    for bad in ["0", "-1", "abc", "1.5"] {
        let (s, b) = node.json("PUT", &format!("/qbad?q={bad}"), None);
        assert_err(
            s,
            &b,
            400,
            "bad_request",
            "The `q` value should be a positive integer.",
        );
    }
    let (s, b) = node.json("PUT", "/qbad?n=0", None);
    assert_err(
        s,
        &b,
        400,
        "bad_request",
        "The `n` value should be a positive integer.",
    );
    let (s, b) = node.json("PUT", "/qbad?partitioned=yes", None);
    assert_err(s, &b, 400, "bad_request", "Invalid `partitioned` parameter");
    assert!(!all_dbs(&node).contains(&"qbad".to_string()));
}

// ---------------------------------------------------------------- HEAD / GET

#[test]
fn head_database() {
    let node = Node::start();
    node.create_db("headdb");
    let resp = node.req("HEAD", "/headdb").send().expect("head");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.bytes().unwrap().is_empty(), "HEAD has no body");
    let resp = node.req("HEAD", "/nosuchdb").send().expect("head");
    assert_eq!(resp.status().as_u16(), 404);
    assert!(resp.bytes().unwrap().is_empty(), "HEAD has no body");
}

#[test]
fn info_has_every_couchdb_field() {
    let node = Node::start();
    node.create_db("infodb");
    let i = info(&node, "infodb");
    let keys: BTreeSet<&str> = i.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "db_name",
        "purge_seq",
        "update_seq",
        "sizes",
        "props",
        "doc_del_count",
        "doc_count",
        "disk_format_version",
        "compact_running",
        "cluster",
        "instance_start_time",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, want, "{i}");
    assert_eq!(i["db_name"], "infodb");
    assert!(
        i["purge_seq"].is_string(),
        "purge_seq is a clustered string: {i}"
    );
    assert!(
        i["update_seq"].is_string(),
        "update_seq is a clustered string: {i}"
    );
    assert_eq!(seq_num(&i["update_seq"]), 0);
    assert_eq!(seq_num(&i["purge_seq"]), 0);
    let sizes = i["sizes"].as_object().expect("sizes object");
    let size_keys: BTreeSet<&str> = sizes.keys().map(String::as_str).collect();
    assert_eq!(
        size_keys,
        ["active", "external", "file"].into_iter().collect()
    );
    for v in sizes.values() {
        assert!(v.is_u64(), "sizes are integers: {i}");
    }
    assert_eq!(i["props"], json!({}));
    assert_eq!(i["doc_count"], 0);
    assert_eq!(i["doc_del_count"], 0);
    assert_eq!(i["disk_format_version"], 8);
    assert_eq!(i["compact_running"], false);
    assert_eq!(i["cluster"], json!({"q": 2, "n": 1, "w": 1, "r": 1}));
    assert_eq!(i["instance_start_time"], "0");

    // partitioned=true shows in props.
    let (s, _) = node.json("PUT", "/partdb?partitioned=true", None);
    assert_eq!(s, 201);
    assert_eq!(info(&node, "partdb")["props"], json!({"partitioned": true}));
}

#[test]
fn info_counts_follow_writes_and_deletes() {
    let node = Node::start();
    node.create_db("counts");
    let mut revs = Vec::new();
    for k in 0..5 {
        revs.push(put_doc(&node, "counts", &format!("d{k}"), json!({"k": k})));
    }
    let i = info(&node, "counts");
    assert_eq!(i["doc_count"], 5);
    assert_eq!(i["doc_del_count"], 0);
    assert_eq!(seq_num(&i["update_seq"]), 5);
    assert!(i["sizes"]["external"].as_u64().unwrap() > 0, "{i}");

    for (k, rev) in revs.iter().enumerate().take(2) {
        let (s, b) = node.delete(&format!("/counts/d{k}?rev={rev}"));
        assert_eq!(s, 200, "{b}");
    }
    let i = info(&node, "counts");
    assert_eq!(i["doc_count"], 3);
    assert_eq!(i["doc_del_count"], 2);
    assert_eq!(seq_num(&i["update_seq"]), 7);

    // An update does not change the counts; local docs are not counted.
    put_doc(&node, "counts", "d4", json!({"_rev": revs[4], "k": 44}));
    put_doc(&node, "counts", "_local/l", json!({"x": 1}));
    let i = info(&node, "counts");
    assert_eq!(i["doc_count"], 3);
    assert_eq!(i["doc_del_count"], 2);
    assert_eq!(seq_num(&i["update_seq"]), 8);
}

// ---------------------------------------------------------------- DELETE /{db}

#[test]
fn delete_database() {
    let node = Node::start();
    node.create_db("gone");
    put_doc(&node, "gone", "doc", json!({}));

    let (s, b) = node.delete("/gone?rev=1-abc");
    let rev_reason = "You tried to DELETE a database with a ?=rev parameter. Did you mean to DELETE a document instead?";
    assert_err(s, &b, 400, "bad_request", rev_reason);
    assert_eq!(info(&node, "gone")["doc_count"], 1, "?rev= must not delete");
    // The check comes before the existence check, as in CouchDB.
    let (s, b) = node.delete("/neverexisted?rev=1-abc");
    assert_err(s, &b, 400, "bad_request", rev_reason);

    let (s, b) = node.delete("/gone");
    assert_eq!((s, b), (200, json!({"ok": true})));
    let (s, b) = node.get("/gone");
    assert_err(s, &b, 404, "not_found", NO_DB);
    let (s, b) = node.get("/gone/doc");
    assert_err(s, &b, 404, "not_found", NO_DB);
    assert!(!all_dbs(&node).contains(&"gone".to_string()));
    let (s, b) = node.delete("/gone");
    assert_err(s, &b, 404, "not_found", NO_DB);

    // Re-creating gives an empty database.
    node.create_db("gone");
    assert_eq!(info(&node, "gone")["doc_count"], 0);
    let (s, b) = node.get("/gone/doc");
    assert_err(s, &b, 404, "not_found", "missing");
}

#[test]
fn missing_database_is_404_on_every_endpoint() {
    let node = Node::start();
    let gets = [
        "/nodb",
        "/nodb/_all_docs",
        "/nodb/_changes",
        "/nodb/_security",
        "/nodb/_revs_limit",
        "/nodb/_purged_infos_limit",
        "/nodb/_purged_infos",
        "/nodb/_shards",
        "/nodb/_shards/foo",
        "/nodb/_design_docs",
        "/nodb/_local_docs",
        "/nodb/somedoc",
        "/nodb/_design/dd",
        "/nodb/_local/x",
        "/nodb/somedoc/att.txt",
    ];
    for p in gets {
        let (s, b) = node.get(p);
        assert_err(s, &b, 404, "not_found", NO_DB);
    }
    let posts = [
        ("/nodb", json!({"a": 1})),
        ("/nodb/_bulk_docs", json!({"docs": []})),
        ("/nodb/_all_docs", json!({"keys": []})),
        ("/nodb/_compact", json!({})),
        ("/nodb/_view_cleanup", json!({})),
        ("/nodb/_ensure_full_commit", json!({})),
        ("/nodb/_purge", json!({})),
        ("/nodb/_revs_diff", json!({})),
        ("/nodb/_missing_revs", json!({})),
        ("/nodb/_bulk_get", json!({"docs": []})),
    ];
    for (p, body) in posts {
        let (s, b) = node.post(p, body);
        assert_err(s, &b, 404, "not_found", NO_DB);
    }
    for (p, body) in [
        ("/nodb/doc", json!({})),
        ("/nodb/_security", json!({})),
        ("/nodb/_revs_limit", json!(10)),
        ("/nodb/_purged_infos_limit", json!(10)),
    ] {
        let (s, b) = node.put(p, body);
        assert_err(s, &b, 404, "not_found", NO_DB);
    }
    let (s, b) = node.delete("/nodb");
    assert_err(s, &b, 404, "not_found", NO_DB);
    // Anonymous users also learn only that the database does not exist.
    let (s, b) = call(node.anon("GET", "/nodb"));
    assert_err(s, &b, 404, "not_found", NO_DB);
    assert!(!all_dbs(&node).contains(&"nodb".to_string()));
}

// ---------------------------------------------------------------- authorization

#[test]
fn only_server_admins_create_and_delete_databases() {
    let node = Node::start();
    node.create_db("keep");
    let bob = make_user(&node, "bob");
    let reason = "You are not a server admin.";

    let (s, b) = call(node.anon("PUT", "/anondb"));
    assert_err(s, &b, 401, "unauthorized", reason);
    let (s, b) = call(node.anon("DELETE", "/keep"));
    assert_err(s, &b, 401, "unauthorized", reason);
    // CouchDB's verify_is_server_admin answers 401 to signed-in users too.
    let (s, b) = call(as_user(&node, &bob, "PUT", "/bobdb"));
    assert_err(s, &b, 401, "unauthorized", reason);
    let (s, b) = call(as_user(&node, &bob, "DELETE", "/keep"));
    assert_err(s, &b, 401, "unauthorized", reason);
    // Wrong password.
    let (s, b) = call(node.anon("PUT", "/baddb").basic_auth(ADMIN, Some("wrong")));
    assert_err(s, &b, 401, "unauthorized", "Name or password is incorrect.");

    let dbs = all_dbs(&node);
    assert!(dbs.contains(&"keep".to_string()));
    for d in ["anondb", "bobdb", "baddb"] {
        assert!(!dbs.contains(&d.to_string()), "{d} was created");
    }

    // Server-admin-only database endpoints.
    for (m, p) in [
        ("POST", "/keep/_purge"),
        ("GET", "/keep/_purged_infos_limit"),
        ("PUT", "/keep/_purged_infos_limit"),
    ] {
        let (s, b) = call(
            as_user(&node, &bob, m, p)
                .header("content-type", "application/json")
                .body("{}"),
        );
        assert_err(s, &b, 401, "unauthorized", reason);
    }
}

#[test]
fn new_database_defaults_to_admin_only_security() {
    let node = Node::start();
    node.create_db("private");
    put_doc(&node, "private", "doc", json!({"secret": true}));
    let (s, b) = node.get("/private/_security");
    assert_eq!(s, 200);
    assert_eq!(
        b,
        json!({"members": {"roles": ["_admin"]}, "admins": {"roles": ["_admin"]}})
    );

    let anon_reason = "You are not authorized to access this db.";
    for (m, p) in [
        ("GET", "/private"),
        ("GET", "/private/doc"),
        ("GET", "/private/_all_docs"),
        ("GET", "/private/_security"),
        ("GET", "/private/_changes"),
        ("PUT", "/private/newdoc"),
    ] {
        let (s, b) = call(
            node.anon(m, p)
                .header("content-type", "application/json")
                .body("{}"),
        );
        assert_err(s, &b, 401, "unauthorized", anon_reason);
    }
    let bob = make_user(&node, "bob");
    let (s, b) = call(as_user(&node, &bob, "GET", "/private/doc"));
    assert_err(
        s,
        &b,
        403,
        "forbidden",
        "You are not allowed to access this db.",
    );
    let (s, b) = node.get("/private/newdoc");
    assert_err(s, &b, 404, "not_found", "missing");
}

#[test]
fn security_object_controls_access() {
    let node = Node::start();
    node.create_db("sec");
    put_doc(&node, "sec", "doc", json!({"v": 1}));
    let bob = make_user(&node, "bob");
    let eve = make_user(&node, "eve");

    // An empty security object makes the database public.
    let (s, b) = node.put("/sec/_security", json!({}));
    assert_eq!((s, b), (200, json!({"ok": true})));
    let (s, b) = node.get("/sec/_security");
    assert_eq!((s, b), (200, json!({})));
    let (s, b) = call(node.anon("GET", "/sec"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["db_name"], "sec");
    let (s, b) = call(node.anon("GET", "/sec/doc"));
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(
        node.anon("PUT", "/sec/anondoc")
            .header("content-type", "application/json")
            .body(r#"{"by":"anon"}"#),
    );
    assert_eq!(s, 201, "{b}");
    // ... but not for db admin work.
    let (s, b) = call(
        node.anon("PUT", "/sec/_security")
            .header("content-type", "application/json")
            .body("{}"),
    );
    assert_err(
        s,
        &b,
        401,
        "unauthorized",
        "You are not a db or server admin.",
    );

    // Members with empty lists are public too.
    let (s, _) = node.put(
        "/sec/_security",
        json!({"admins": {"names": [], "roles": []}, "members": {"names": [], "roles": []}}),
    );
    assert_eq!(s, 200);
    let (s, _) = call(node.anon("GET", "/sec/doc"));
    assert_eq!(s, 200);

    // Named members: bob may read, eve and anonymous may not.
    let sec =
        json!({"admins": {"names": [], "roles": []}, "members": {"names": ["bob"], "roles": []}});
    let (s, _) = node.put("/sec/_security", sec.clone());
    assert_eq!(s, 200);
    assert_eq!(node.get("/sec/_security").1, sec);
    let (s, b) = call(as_user(&node, &bob, "GET", "/sec/doc"));
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(as_user(&node, &eve, "GET", "/sec/doc"));
    assert_err(
        s,
        &b,
        403,
        "forbidden",
        "You are not allowed to access this db.",
    );
    let (s, b) = call(node.anon("GET", "/sec/doc"));
    assert_err(
        s,
        &b,
        401,
        "unauthorized",
        "You are not authorized to access this db.",
    );
    // A member is not a db admin.
    let (s, b) = call(
        as_user(&node, &bob, "PUT", "/sec/_security")
            .header("content-type", "application/json")
            .body("{}"),
    );
    assert_err(s, &b, 403, "forbidden", "You are not a db or server admin.");
    assert_eq!(node.get("/sec/_security").1, sec, "unchanged");
}

#[test]
fn invalid_security_objects_are_rejected() {
    let node = Node::start();
    node.create_db("badsec");
    let original = node.get("/badsec/_security").1;
    for body in [
        "[1]",
        "\"x\"",
        "42",
        "null",
        r#"{"admins":{"names":"bob"}}"#,
        r#"{"admins":{"roles":[1]}}"#,
        r#"{"members":{"names":[null]}}"#,
        r#"{"members":{"roles":{"a":1}}}"#,
        r#"{"admins":[]}"#,
        r#"{"members":"bob"}"#,
    ] {
        let (s, b) = raw_json(&node, "PUT", "/badsec/_security", body);
        assert_eq!(s, 400, "{body} -> {b}");
        assert_eq!(b["error"], "bad_request", "{body} -> {b}");
    }
    for body in ["{bad", "", "{\"admins\":"] {
        let (s, b) = raw_json(&node, "PUT", "/badsec/_security", body);
        assert_err(s, &b, 400, "bad_request", "invalid UTF-8 JSON");
    }
    assert_eq!(node.get("/badsec/_security").1, original, "unchanged");
}

// ---------------------------------------------------------------- _revs_limit

#[test]
fn revs_limit_get_and_put() {
    let node = Node::start();
    node.create_db("rl");
    let resp = node.req("GET", "/rl/_revs_limit").send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().unwrap().trim(), "1000", "bare integer");

    let (s, b) = raw_json(&node, "PUT", "/rl/_revs_limit", "5");
    assert_eq!((s, b), (200, json!({"ok": true})));
    assert_eq!(node.get("/rl/_revs_limit"), (200, json!(5)));

    for bad in ["0", "-1", "\"7\"", "{}", "[3]", "2.5", "null"] {
        let (s, b) = raw_json(&node, "PUT", "/rl/_revs_limit", bad);
        assert_eq!(s, 400, "{bad} -> {b}");
        assert_eq!(b["error"], "bad_request", "{bad} -> {b}");
    }
    let (s, b) = raw_json(&node, "PUT", "/rl/_revs_limit", "five");
    assert_err(s, &b, 400, "bad_request", "invalid UTF-8 JSON");
    assert_eq!(node.get("/rl/_revs_limit"), (200, json!(5)), "unchanged");

    // Survives a restart.
    let node = node.restart(Default::default());
    assert_eq!(node.get("/rl/_revs_limit"), (200, json!(5)));
}

#[test]
fn revs_limit_stems_revision_history() {
    let node = Node::start();
    node.create_db("stem");
    let (s, _) = raw_json(&node, "PUT", "/stem/_revs_limit", "3");
    assert_eq!(s, 200);
    let revs = edit_n_times(&node, "stem", "d", 6);
    let last = revs[5].clone();
    assert!(last.starts_with("6-"), "{last}");
    let (s, b) = node.get("/stem/d?revs=true");
    assert_eq!(s, 200);
    assert_eq!(b["_revisions"]["start"], 6);
    let ids = b["_revisions"]["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 3, "{b}");
    assert_eq!(ids[0], last.split_once('-').unwrap().1);
    let (_, b) = node.get("/stem/d?revs_info=true");
    assert_eq!(b["_revs_info"].as_array().unwrap().len(), 3, "{b}");
    // Revisions stemmed away are unknown now; the kept ones are known.
    let (s, b) = node.post(
        "/stem/_revs_diff",
        json!({"d": [revs[0].clone(), revs[3].clone(), last.clone()]}),
    );
    assert_eq!((s, b), (200, json!({"d": {"missing": [revs[0].clone()]}})));

    // The default limit keeps everything.
    node.create_db("nostem");
    edit_n_times(&node, "nostem", "d", 6);
    let (_, b) = node.get("/nostem/d?revs=true");
    assert_eq!(b["_revisions"]["ids"].as_array().unwrap().len(), 6, "{b}");
}

#[test]
fn lowered_revs_limit_stems_existing_docs_on_compaction() {
    let node = Node::start();
    node.create_db("late");
    let last = edit_n_times(&node, "late", "d", 6)[5].clone();
    let (s, _) = raw_json(&node, "PUT", "/late/_revs_limit", "2");
    assert_eq!(s, 200);
    let (s, _) = node.post("/late/_compact", json!({}));
    assert_eq!(s, 202);
    let mut ids = 0;
    for _ in 0..100 {
        let (_, b) = node.get("/late/d?revs=true");
        ids = b["_revisions"]["ids"].as_array().map_or(0, Vec::len);
        if ids == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ids, 2, "compaction stems to the revs limit");
    let (s, b) = node.get("/late/d");
    assert_eq!(s, 200);
    assert_eq!(b["_rev"], last);
    assert_eq!(b["i"], 5);
}

// ---------------------------------------------------------------- _purged_infos_limit

#[test]
fn purged_infos_limit_get_and_put() {
    let node = Node::start();
    node.create_db("pil");
    assert_eq!(node.get("/pil/_purged_infos_limit"), (200, json!(1000)));
    let (s, b) = raw_json(&node, "PUT", "/pil/_purged_infos_limit", "50");
    assert_eq!((s, b), (200, json!({"ok": true})));
    assert_eq!(node.get("/pil/_purged_infos_limit"), (200, json!(50)));
    for bad in ["0", "-3", "\"5\"", "{}"] {
        let (s, b) = raw_json(&node, "PUT", "/pil/_purged_infos_limit", bad);
        assert_err(
            s,
            &b,
            400,
            "bad_request",
            "`purged_infos_limit` must be positive integer",
        );
    }
    assert_eq!(node.get("/pil/_purged_infos_limit"), (200, json!(50)));
    let (s, b) = call(node.anon("GET", "/pil/_purged_infos_limit"));
    assert_err(s, &b, 401, "unauthorized", "You are not a server admin.");
}

// ---------------------------------------------------------------- maintenance

#[test]
fn compact_requires_json_and_keeps_data() {
    let node = Node::start();
    node.create_db("cmp");
    let mut revs = Vec::new();
    for k in 0..20 {
        revs.push(edit_n_times(&node, "cmp", &format!("d{k}"), 3)[2].clone());
    }
    let (s, b) = call(node.req("POST", "/cmp/_compact"));
    assert_err(
        s,
        &b,
        415,
        "bad_content_type",
        "Content-Type must be application/json",
    );
    let (s, b) = call(
        node.req("POST", "/cmp/_compact")
            .header("content-type", "text/plain")
            .body("{}"),
    );
    assert_err(
        s,
        &b,
        415,
        "bad_content_type",
        "Content-Type must be application/json",
    );
    let (s, b) = node.post("/cmp/_compact", json!({}));
    assert_eq!((s, b), (202, json!({"ok": true})));
    // Let the background compaction finish.
    for _ in 0..100 {
        if info(&node, "cmp")["compact_running"] == false {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    for (k, rev) in revs.iter().enumerate() {
        let (s, b) = node.get(&format!("/cmp/d{k}"));
        assert_eq!(s, 200, "{b}");
        assert_eq!(b, json!({"_id": format!("d{k}"), "_rev": rev, "i": 2}));
    }
    assert_eq!(info(&node, "cmp")["doc_count"], 20);
    // Still writable afterwards.
    put_doc(&node, "cmp", "d0", json!({"_rev": revs[0], "i": 3}));
}

#[test]
fn compact_design_doc_needs_the_design_doc() {
    let node = Node::start();
    node.create_db("cdd");
    let (s, b) = node.post("/cdd/_compact/nosuch", json!({}));
    assert_err(s, &b, 404, "not_found", "missing");
    let rev = put_doc(
        &node,
        "cdd",
        "_design/dd",
        json!({"views": {"v": {"map": "function(doc){emit(doc._id, null)}"}}}),
    );
    let (s, b) = node.post("/cdd/_compact/dd", json!({}));
    assert_eq!((s, b), (202, json!({"ok": true})));
    let (s, _) = node.delete(&format!("/cdd/_design/dd?rev={rev}"));
    assert_eq!(s, 200);
    let (s, b) = node.post("/cdd/_compact/dd", json!({}));
    assert_err(s, &b, 404, "not_found", "deleted");
}

#[test]
fn compact_and_view_cleanup_need_a_db_admin() {
    let node = Node::start();
    node.create_db("adm");
    let bob = make_user(&node, "bob");
    let (s, _) = node.put(
        "/adm/_security",
        json!({"members": {"names": ["bob"]}, "admins": {"names": []}}),
    );
    assert_eq!(s, 200);
    for p in ["/adm/_compact", "/adm/_view_cleanup"] {
        let (s, b) = call(
            as_user(&node, &bob, "POST", p)
                .header("content-type", "application/json")
                .body("{}"),
        );
        assert_err(
            s,
            &b,
            401,
            "unauthorized",
            "You are not a server or db admin.",
        );
    }
    // A db admin by name may compact.
    let (s, _) = node.put(
        "/adm/_security",
        json!({"members": {"names": ["bob"]}, "admins": {"names": ["bob"]}}),
    );
    assert_eq!(s, 200);
    let (s, b) = call(
        as_user(&node, &bob, "POST", "/adm/_compact")
            .header("content-type", "application/json")
            .body("{}"),
    );
    assert_eq!((s, b), (202, json!({"ok": true})));
}

#[test]
fn view_cleanup_and_ensure_full_commit() {
    let node = Node::start();
    node.create_db("misc");
    let (s, b) = node.post("/misc/_view_cleanup", json!({}));
    assert_eq!((s, b), (202, json!({"ok": true})));
    // CouchDB 3.5 does not check the content type of _view_cleanup.
    let (s, b) = call(node.req("POST", "/misc/_view_cleanup"));
    assert_eq!((s, b), (202, json!({"ok": true})));

    let (s, b) = node.post("/misc/_ensure_full_commit", json!({}));
    assert_eq!(
        (s, b),
        (201, json!({"ok": true, "instance_start_time": "0"}))
    );
    let (s, b) = call(node.req("POST", "/misc/_ensure_full_commit"));
    assert_err(
        s,
        &b,
        415,
        "bad_content_type",
        "Content-Type must be application/json",
    );
}

// ---------------------------------------------------------------- _purge

#[test]
fn purge_only_leaf_removes_the_document() {
    let node = Node::start();
    node.create_db("pg");
    let rev = put_doc(&node, "pg", "victim", json!({"v": 1}));
    put_doc(&node, "pg", "other", json!({"v": 2}));
    let before = info(&node, "pg");
    assert_eq!(before["doc_count"], 2);

    let (s, b) = node.post("/pg/_purge", json!({"victim": [rev.clone()]}));
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b,
        json!({"purge_seq": null, "purged": {"victim": [rev.clone()]}})
    );

    let (s, b) = node.get("/pg/victim");
    assert_err(s, &b, 404, "not_found", "missing");
    let after = info(&node, "pg");
    assert_eq!(after["doc_count"], 1);
    assert_eq!(after["doc_del_count"], 0, "purge leaves no tombstone");
    assert!(seq_num(&after["purge_seq"]) > seq_num(&before["purge_seq"]));
    let (_, b) = node.get("/pg/_all_docs");
    let ids = row_ids(&b);
    assert_eq!(ids, ["other"]);
    // The id can be created again from scratch.
    let new = put_doc(&node, "pg", "victim", json!({"v": 3}));
    assert!(new.starts_with("1-"), "{new}");

    // A non-leaf rev, an unknown rev and an unknown doc purge nothing.
    let r1 = put_doc(&node, "pg", "multi", json!({"n": 1}));
    let r2 = put_doc(&node, "pg", "multi", json!({"_rev": r1, "n": 2}));
    let (s, b) = node.post(
        "/pg/_purge",
        json!({"multi": [r1.clone(), "9-deadbeef"], "nosuchdoc": ["1-abc"]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b,
        json!({"purge_seq": null, "purged": {"multi": [], "nosuchdoc": []}})
    );
    let (s, b) = node.get("/pg/multi");
    assert_eq!(s, 200);
    assert_eq!(b["_rev"], r2);
}

#[test]
fn purge_one_of_two_conflicting_leaves() {
    let node = Node::start();
    node.create_db("pgc");
    let (s, b) = node.post(
        "/pgc/_bulk_docs",
        json!({"new_edits": false, "docs": [
            {"_id": "c", "_rev": "1-aaaa", "side": "a"},
            {"_id": "c", "_rev": "1-bbbb", "side": "b"}
        ]}),
    );
    assert_eq!(s, 201, "{b}");
    let (_, b) = node.get("/pgc/c?conflicts=true");
    assert_eq!(b["_rev"], "1-bbbb");
    assert_eq!(b["_conflicts"], json!(["1-aaaa"]));

    let (s, b) = node.post("/pgc/_purge", json!({"c": ["1-bbbb"]}));
    assert_eq!(s, 201);
    assert_eq!(b, json!({"purge_seq": null, "purged": {"c": ["1-bbbb"]}}));
    let (s, b) = node.get("/pgc/c?conflicts=true");
    assert_eq!(s, 200);
    assert_eq!(b, json!({"_id": "c", "_rev": "1-aaaa", "side": "a"}));
    assert_eq!(info(&node, "pgc")["doc_count"], 1);
    let (s, b) = node.get("/pgc/c?rev=1-bbbb");
    assert_err(s, &b, 404, "not_found", "missing");
}

#[test]
fn purge_request_validation() {
    let node = Node::start();
    node.create_db("pgv");
    let (s, b) = call(node.req("POST", "/pgv/_purge").body("{}"));
    assert_err(
        s,
        &b,
        415,
        "bad_content_type",
        "Content-Type must be application/json",
    );
    let (s, b) = raw_json(&node, "POST", "/pgv/_purge", "{oops");
    assert_err(s, &b, 400, "bad_request", "invalid UTF-8 JSON");
    let (s, b) = raw_json(&node, "POST", "/pgv/_purge", "[\"a\"]");
    assert_err(
        s,
        &b,
        400,
        "bad_request",
        "Request body must be a JSON object",
    );
    let (s, b) = node.post("/pgv/_purge", json!({}));
    assert_eq!((s, b), (201, json!({"purge_seq": null, "purged": {}})));

    // [purge] max_revisions_number caps the revisions of one request.
    let (s, b) = node.put(
        "/_node/_local/_config/purge/max_revisions_number",
        json!("2"),
    );
    assert_eq!(s, 200, "{b}");
    let (s, b) = node.post("/pgv/_purge", json!({"a": ["1-a", "2-b"], "b": ["1-c"]}));
    assert_err(
        s,
        &b,
        400,
        "bad_request",
        "Exceeded maximum number of revisions.",
    );
    let (s, _) = node.post("/pgv/_purge", json!({"a": ["1-a"], "b": ["1-c"]}));
    assert_eq!(s, 201);
}

#[test]
fn purged_infos_lists_purges() {
    let node = Node::start();
    node.create_db("pinf");
    assert_eq!(
        node.get("/pinf/_purged_infos"),
        (200, json!({"purged_infos": []}))
    );
    let ra = put_doc(&node, "pinf", "a", json!({}));
    let rb = put_doc(&node, "pinf", "b", json!({}));
    let (s, _) = node.post("/pinf/_purge", json!({"a": [ra.clone()]}));
    assert_eq!(s, 201);
    let (s, _) = node.post("/pinf/_purge", json!({"b": [rb.clone()]}));
    assert_eq!(s, 201);
    let (s, b) = node.get("/pinf/_purged_infos");
    assert_eq!(s, 200);
    let mut infos = b["purged_infos"].as_array().expect("list").clone();
    infos.sort_by_key(|v| v["id"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        infos,
        vec![
            json!({"id": "a", "revs": [ra]}),
            json!({"id": "b", "revs": [rb]})
        ]
    );
    // Readable by members (only the db's security applies).
    let (s, _) = node.put("/pinf/_security", json!({}));
    assert_eq!(s, 200);
    let (s, b) = call(node.anon("GET", "/pinf/_purged_infos"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["purged_infos"].as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------- _revs_diff / _missing_revs

#[test]
fn revs_diff_and_missing_revs() {
    let node = Node::start();
    node.create_db("rd");
    let r1 = put_doc(&node, "rd", "d", json!({"n": 1}));
    let r2 = put_doc(&node, "rd", "d", json!({"_rev": r1, "n": 2}));
    let full = put_doc(&node, "rd", "full", json!({}));

    let body = json!({
        "d": [r1.clone(), r2.clone(), "3-abc", "1-zzz"],
        "full": [full.clone()],
        "unknown": ["1-a", "2-b"],
    });
    let (s, b) = node.post("/rd/_revs_diff", body.clone());
    assert_eq!(s, 200);
    assert_eq!(
        sorted_lists(&b),
        json!({
            // r1 is an interior node (present); 3-abc has the leaf r2 as a possible
            // ancestor; 1-zzz alone would have none.
            "d": {"missing": ["1-zzz", "3-abc"], "possible_ancestors": [r2.clone()]},
            // possible_ancestors is omitted when empty; "full" has nothing missing.
            "unknown": {"missing": ["1-a", "2-b"]}
        })
    );
    let (s, b) = node.post("/rd/_revs_diff", json!({"d": ["1-zzz"]}));
    assert_eq!((s, b), (200, json!({"d": {"missing": ["1-zzz"]}})));

    let (s, b) = node.post("/rd/_missing_revs", body);
    assert_eq!(s, 200);
    assert_eq!(
        sorted_lists(&b),
        json!({"missing_revs": {"d": ["1-zzz", "3-abc"], "unknown": ["1-a", "2-b"]}})
    );
    let (s, b) = node.post("/rd/_missing_revs", json!({"full": [full]}));
    assert_eq!((s, b), (200, json!({"missing_revs": {}})));

    for p in ["/rd/_revs_diff", "/rd/_missing_revs"] {
        let (s, b) = call(node.req("POST", p).body("{}"));
        assert_err(
            s,
            &b,
            415,
            "bad_content_type",
            "Content-Type must be application/json",
        );
        let (s, b) = raw_json(&node, "POST", p, "{nope");
        assert_err(s, &b, 400, "bad_request", "invalid UTF-8 JSON");
        let (s, b) = raw_json(&node, "POST", p, "[]");
        assert_err(
            s,
            &b,
            400,
            "bad_request",
            "Request body must be a JSON object",
        );
    }
}

// ---------------------------------------------------------------- _shards

#[test]
fn shards_of_a_document_follow_crc32() {
    assert_eq!(crc32(b"foo"), 0x8c73_6521, "test helper sanity");
    let node = Node::start();
    node.create_db("sh");
    let (s, b) = node.get("/sh/_shards");
    assert_eq!(s, 200);
    let shards = b["shards"].as_object().expect("shards");
    let ranges: Vec<&String> = shards.keys().collect();
    assert_eq!(ranges, ["00000000-7fffffff", "80000000-ffffffff"]);
    let node_name = shards["00000000-7fffffff"][0].clone();

    let (s, b) = node.get("/sh/_shards/foo");
    assert_eq!(s, 200);
    assert_eq!(
        b,
        json!({"range": "80000000-ffffffff", "nodes": [node_name.clone()]})
    );
    // crc32("bar") = 0x76ff8caa.
    let (_, b) = node.get("/sh/_shards/bar");
    assert_eq!(b["range"], "00000000-7fffffff");
    // The document need not exist; check several ids against our own crc32.
    let (s, _) = node.json("PUT", "/sh8?q=8", None);
    assert_eq!(s, 201);
    for id in ["a", "b", "c", "d", "doc1", "zzz", "with%2Fslash"] {
        let decoded = id.replace("%2F", "/");
        let h = crc32(decoded.as_bytes());
        let k = h / 0x2000_0000;
        let want = format!(
            "{:08x}-{:08x}",
            k * 0x2000_0000,
            k * 0x2000_0000 + 0x1fff_ffff
        );
        let (s, b) = node.get(&format!("/sh8/_shards/{id}"));
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["range"], want, "id {decoded} crc {h:08x}");
    }
}

// ---------------------------------------------------------------- POST /{db}, bodies

#[test]
fn post_to_database_bodies_and_content_type() {
    let node = Node::start();
    node.create_db("pdb");
    let (s, b) = call(node.req("POST", "/pdb").body(r#"{"a":1}"#));
    assert_err(
        s,
        &b,
        415,
        "bad_content_type",
        "Content-Type must be application/json",
    );
    let (s, b) = call(
        node.req("POST", "/pdb")
            .header("content-type", "text/plain")
            .body(r#"{"a":1}"#),
    );
    assert_err(
        s,
        &b,
        415,
        "bad_content_type",
        "Content-Type must be application/json",
    );
    for bad in ["{bad json", "", "{\"a\":", "\u{feff}{}", "[1,]"] {
        let (s, b) = raw_json(&node, "POST", "/pdb", bad);
        assert_err(s, &b, 400, "bad_request", "invalid UTF-8 JSON");
    }
    let (s, b) = call(
        node.req("POST", "/pdb")
            .header("content-type", "application/json")
            .body(vec![b'{', b'"', 0xff, b'"', b':', b'1', b'}']),
    );
    assert_err(s, &b, 400, "bad_request", "invalid UTF-8 JSON");
    for non_object in ["[1]", "\"str\"", "12", "null", "true"] {
        let (s, b) = raw_json(&node, "POST", "/pdb", non_object);
        assert_err(s, &b, 400, "bad_request", "Document must be a JSON object");
    }
    assert_eq!(info(&node, "pdb")["doc_count"], 0);

    // Charset parameters are fine; the id is generated when missing.
    let resp = node
        .req("POST", "/pdb")
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"a":1}"#)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let b = body_json(resp);
    assert_eq!(b["ok"], true);
    let id = b["id"].as_str().unwrap();
    assert_eq!(id.len(), 32, "uuid id: {id}");
    assert!(b["rev"].as_str().unwrap().starts_with("1-"));
    let (s, b) = node.post("/pdb", json!({"_id": "given", "a": 2}));
    assert_eq!(s, 201);
    assert_eq!(b["id"], "given");
    assert_eq!(info(&node, "pdb")["doc_count"], 2);
}

// ---------------------------------------------------------------- 405

#[test]
fn wrong_methods_get_405_with_allow_header() {
    let node = Node::start();
    node.create_db("m");
    let cases = [
        ("PATCH", "/m", "DELETE,GET,HEAD,POST"),
        ("GET", "/m/_compact", "POST"),
        ("PUT", "/m/_compact", "POST"),
        ("GET", "/m/_view_cleanup", "POST"),
        ("GET", "/m/_ensure_full_commit", "POST"),
        ("GET", "/m/_purge", "POST"),
        ("GET", "/m/_revs_diff", "POST"),
        ("GET", "/m/_missing_revs", "POST"),
        ("DELETE", "/m/_security", "PUT,GET"),
        ("POST", "/m/_security", "PUT,GET"),
        ("POST", "/m/_revs_limit", "PUT,GET"),
        ("DELETE", "/m/_purged_infos_limit", "GET,PUT"),
        ("POST", "/m/_purged_infos", "GET"),
        ("POST", "/m/_shards", "GET"),
        ("PUT", "/m/_shards/foo", "GET"),
    ];
    for (method, path, allow) in cases {
        let (s, got_allow, b) = send(
            node.req(method, path)
                .header("content-type", "application/json")
                .body("{}"),
        );
        assert_eq!(s, 405, "{method} {path}: {b}");
        assert_eq!(
            b,
            json!({"error": "method_not_allowed", "reason": format!("Only {allow} allowed")}),
            "{method} {path}"
        );
        assert_eq!(got_allow.as_deref(), Some(allow), "{method} {path}");
    }
    // The database is untouched.
    assert_eq!(info(&node, "m")["doc_count"], 0);
}
