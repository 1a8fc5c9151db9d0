//! `/_node/{node}/_config`: reading, writing (with and without persistence to
//! `<data_dir>/local.ini`), deleting, reloading, and the hashing of `[admins]`.

use chaise_integration_tests::helpers::{ini_section, ini_value, local_ini};
use chaise_integration_tests::{call, Node, NodeOptions};
use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};

fn put_raw(node: &Node, path: &str, body: &str) -> RequestBuilder {
    node.req("PUT", path)
        .header("content-type", "application/json")
        .body(body.to_string())
}

fn put_value(node: &Node, section: &str, key: &str, value: &str, persist: bool) -> (u16, Value) {
    let mut r = put_raw(
        node,
        &format!("/_node/_local/_config/{section}/{key}"),
        &json!(value).to_string(),
    );
    if !persist {
        r = r.header("x-couch-persist", "false");
    }
    call(r)
}

fn unknown_value() -> Value {
    json!({"error": "not_found", "reason": "unknown_config_value"})
}

#[test]
fn get_all_section_and_key() {
    let node = Node::start();
    let (s, all) = node.get("/_node/_local/_config");
    assert_eq!(s, 200, "{all}");
    let all = all.as_object().expect("object of sections");
    for (section, kvs) in all {
        let kvs = kvs
            .as_object()
            .unwrap_or_else(|| panic!("[{section}] is not an object"));
        for (k, v) in kvs {
            assert!(v.is_string(), "[{section}] {k} = {v} is not a string");
        }
    }
    // The harness's test.ini and the admin from COUCHDB_USER.
    assert_eq!(all["chttpd_auth"]["iterations"], "1000");
    assert!(all["admins"]["admin"]
        .as_str()
        .unwrap()
        .starts_with("-pbkdf2:"));
    let (s, sec) = node.get("/_node/_local/_config/chttpd_auth");
    assert_eq!(s, 200);
    assert_eq!(sec, all["chttpd_auth"]);
    let (s, v) = node.get("/_node/_local/_config/chttpd_auth/iterations");
    assert_eq!((s, v), (200, json!("1000")));
    // The port the node runs on is visible.
    let (s, v) = node.get("/_node/_local/_config/chttpd/port");
    assert_eq!((s, v), (200, json!(node.port.to_string())));
    // A missing section is empty, a missing key a 404.
    let (s, v) = node.get("/_node/_local/_config/no_such_section");
    assert_eq!((s, v), (200, json!({})));
    let (s, v) = node.get("/_node/_local/_config/chttpd_auth/no_such_key");
    assert_eq!((s, v), (404, unknown_value()));
    let (s, v) = node.get("/_node/_local/_config/no_such_section/no_such_key");
    assert_eq!((s, v), (404, unknown_value()));
}

#[test]
fn put_returns_old_value_and_persists() {
    let node = Node::start();
    let (s, old) = put_value(&node, "testsec", "color", "red", true);
    assert_eq!((s, old), (200, json!("")));
    let (s, old) = put_value(&node, "testsec", "color", "blue", true);
    assert_eq!((s, old), (200, json!("red")));
    let (s, v) = node.get("/_node/_local/_config/testsec/color");
    assert_eq!((s, v), (200, json!("blue")));
    let (_, sec) = node.get("/_node/_local/_config/testsec");
    assert_eq!(sec, json!({"color": "blue"}));
    let ini = local_ini(&node.data_dir);
    assert_eq!(
        ini_value(&ini, "testsec", "color").as_deref(),
        Some("blue"),
        "{ini}"
    );
    assert_eq!(
        ini_section(&ini, "testsec").len(),
        1,
        "a key is written once: {ini}"
    );
}

#[test]
fn put_trims_value_and_keeps_inner_text() {
    let node = Node::start();
    let (s, _) = put_value(&node, "testsec", "spaced", "  a b  c \t", true);
    assert_eq!(s, 200);
    let (_, v) = node.get("/_node/_local/_config/testsec/spaced");
    assert_eq!(v, json!("a b  c"));
    let (s, _) = put_value(&node, "testsec", "url", "http://x.example/a=b?c=d", true);
    assert_eq!(s, 200);
    let (_, v) = node.get("/_node/_local/_config/testsec/url");
    assert_eq!(v, json!("http://x.example/a=b?c=d"));
    let node = node.restart(NodeOptions::default());
    let (_, v) = node.get("/_node/_local/_config/testsec/url");
    assert_eq!(
        v,
        json!("http://x.example/a=b?c=d"),
        "survives the ini round trip"
    );
}

#[test]
fn put_needs_a_json_string() {
    let node = Node::start();
    for body in ["5", "true", "null", "{\"a\":\"b\"}", "[\"x\"]"] {
        let (s, b) = call(put_raw(&node, "/_node/_local/_config/testsec/k", body));
        assert_eq!(s, 400, "{body}");
        assert_eq!(
            b,
            json!({"error": "bad_request", "reason": "a JSON string expected"}),
            "{body}"
        );
    }
    let (s, b) = call(put_raw(
        &node,
        "/_node/_local/_config/testsec/k",
        "\"unterminated",
    ));
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"], "bad_request");
    let (s, _) = node.get("/_node/_local/_config/testsec/k");
    assert_eq!(s, 404, "nothing was set");
}

#[test]
fn delete_returns_old_value() {
    let node = Node::start();
    put_value(&node, "testsec", "gone", "soon", true);
    put_value(&node, "testsec", "stays", "here", true);
    assert!(local_ini(&node.data_dir).contains("gone = soon"));
    let (s, v) = node.delete("/_node/_local/_config/testsec/gone");
    assert_eq!((s, v), (200, json!("soon")));
    let (s, v) = node.get("/_node/_local/_config/testsec/gone");
    assert_eq!((s, v), (404, unknown_value()));
    let (s, v) = node.delete("/_node/_local/_config/testsec/gone");
    assert_eq!((s, v), (404, unknown_value()));
    let (s, v) = node.delete("/_node/_local/_config/nosec/nokey");
    assert_eq!((s, v), (404, unknown_value()));
    let ini = local_ini(&node.data_dir);
    assert_eq!(ini_value(&ini, "testsec", "gone"), None, "{ini}");
    assert_eq!(ini_value(&ini, "testsec", "stays").as_deref(), Some("here"));
    let node = node.restart(NodeOptions::default());
    let (s, _) = node.get("/_node/_local/_config/testsec/gone");
    assert_eq!(s, 404);
    let (_, v) = node.get("/_node/_local/_config/testsec/stays");
    assert_eq!(v, json!("here"));
}

#[test]
fn persist_false_stays_in_memory() {
    let node = Node::start();
    let (s, old) = put_value(&node, "testsec", "volatile", "v1", false);
    assert_eq!((s, old), (200, json!("")));
    let (s, old) = put_value(&node, "testsec", "durable", "d1", true);
    assert_eq!((s, old), (200, json!("")));
    let (_, v) = node.get("/_node/_local/_config/testsec/volatile");
    assert_eq!(v, json!("v1"));
    let ini = local_ini(&node.data_dir);
    assert!(!ini.contains("volatile"), "{ini}");
    assert_eq!(ini_value(&ini, "testsec", "durable").as_deref(), Some("d1"));
    // An in-memory value shadows the file; deleting it without persisting leaves
    // the file alone.
    let (s, old) = put_value(&node, "testsec", "durable", "d2", false);
    assert_eq!((s, old), (200, json!("d1")));
    assert_eq!(
        ini_value(&local_ini(&node.data_dir), "testsec", "durable").as_deref(),
        Some("d1")
    );
    let node = node.restart(NodeOptions::default());
    let (s, v) = node.get("/_node/_local/_config/testsec/volatile");
    assert_eq!((s, v), (404, unknown_value()));
    let (_, v) = node.get("/_node/_local/_config/testsec/durable");
    assert_eq!(v, json!("d1"));
}

#[test]
fn admins_are_stored_hashed() {
    let node = Node::start();
    let (s, old) = put_value(&node, "admins", "alice", "alicepw", true);
    assert_eq!((s, old), (200, json!("")));
    let ini = local_ini(&node.data_dir);
    assert!(!ini.contains("alicepw"), "plaintext in local.ini: {ini}");
    let stored = ini_value(&ini, "admins", "alice").expect("alice in local.ini");
    // -pbkdf2:sha256-<64 hex>,<32 hex salt>,<iterations>
    let rest = stored
        .strip_prefix("-pbkdf2:sha256-")
        .unwrap_or_else(|| panic!("{stored}"));
    let parts: Vec<&str> = rest.split(',').collect();
    assert_eq!(parts.len(), 3, "{stored}");
    assert_eq!(parts[0].len(), 64, "{stored}");
    assert_eq!(parts[1].len(), 32, "{stored}");
    assert_eq!(parts[2], "1000", "{stored}");
    // The API shows the hash, never the password.
    let (_, v) = node.get("/_node/_local/_config/admins/alice");
    assert_eq!(v, json!(stored));
    // Replacing returns the old hash.
    let (s, old) = put_value(&node, "admins", "alice", "newpw", true);
    assert_eq!((s, old), (200, json!(stored)));
    let (s, b) = call(
        node.anon("GET", "/_session")
            .basic_auth("alice", Some("newpw")),
    );
    assert_eq!(s, 200);
    assert_eq!(b["userCtx"]["roles"], json!(["_admin"]));
    // An already-hashed value is stored as given.
    let (s, _) = put_value(&node, "admins", "copy", &stored, true);
    assert_eq!(s, 200);
    let (_, v) = node.get("/_node/_local/_config/admins/copy");
    assert_eq!(v, json!(stored));
    let (s, _) = call(
        node.anon("GET", "/_session")
            .basic_auth("copy", Some("alicepw")),
    );
    assert_eq!(s, 200);
    // Also with X-Couch-Persist: false.
    let (s, _) = put_value(&node, "admins", "temp", "temppw", false);
    assert_eq!(s, 200);
    let (_, v) = node.get("/_node/_local/_config/admins/temp");
    assert!(v.as_str().unwrap().starts_with("-pbkdf2:"), "{v}");
    assert!(!local_ini(&node.data_dir).contains("temp"));
}

#[test]
fn blacklisted_sections_cannot_be_changed() {
    let node = Node::start();
    let forbidden = json!({"error": "forbidden", "reason": "Config section blacklisted for modification over HTTP API."});
    for section in [
        "daemons",
        "external",
        "httpd_design_handlers",
        "httpd_db_handlers",
        "httpd_global_handlers",
        "native_query_servers",
        "os_daemons",
        "query_servers",
        "feature_flags",
    ] {
        let (s, b) = put_value(&node, section, "x", "y", true);
        assert_eq!((s, b), (403, forbidden.clone()), "PUT [{section}]");
        let (s, b) = node.delete(&format!("/_node/_local/_config/{section}/x"));
        assert_eq!((s, b), (403, forbidden.clone()), "DELETE [{section}]");
        // Reading is fine.
        let (s, _) = node.get(&format!("/_node/_local/_config/{section}"));
        assert_eq!(s, 200);
    }
    assert!(!local_ini(&node.data_dir).contains("[daemons]"));
}

#[test]
fn config_methods() {
    let node = Node::start();
    let not_allowed = |allowed: &str| json!({"error": "method_not_allowed", "reason": format!("Only {allowed} allowed")});
    for (m, path, allowed) in [
        ("POST", "/_node/_local/_config", "GET"),
        ("PUT", "/_node/_local/_config", "GET"),
        ("PUT", "/_node/_local/_config/testsec", "GET"),
        ("DELETE", "/_node/_local/_config/testsec", "GET"),
        ("POST", "/_node/_local/_config/testsec/k", "GET,PUT,DELETE"),
        ("GET", "/_node/_local/_config/_reload", "POST"),
    ] {
        let resp = node
            .req(m, path)
            .header("content-type", "application/json")
            .body("\"v\"")
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{m} {path}");
        let allow = resp
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(allow.as_deref(), Some(allowed), "{m} {path}");
        let b: Value = resp.json().unwrap();
        assert_eq!(b, not_allowed(allowed), "{m} {path}");
    }
    // The node's own name works like `_local`.
    let (_, me) = node.get("/_node/_local");
    let name = me["name"].as_str().unwrap().to_string();
    let (s, v) = node.get(&format!("/_node/{name}/_config/chttpd_auth/iterations"));
    assert_eq!((s, v), (200, json!("1000")));
    let (s, b) = node.get("/_node/other@host/_config");
    assert_eq!(s, 404);
    assert_eq!(b["reason"], "no such node: other@host");
}

#[test]
fn anonymous_cannot_touch_config() {
    let node = Node::start();
    let not_admin = json!({"error": "unauthorized", "reason": "You are not a server admin."});
    for (m, path) in [
        ("GET", "/_node/_local/_config"),
        ("GET", "/_node/_local/_config/admins"),
        ("GET", "/_node/_local/_config/chttpd_auth/secret"),
        ("PUT", "/_node/_local/_config/admins/evil"),
        ("DELETE", "/_node/_local/_config/admins/admin"),
        ("POST", "/_node/_local/_config/_reload"),
    ] {
        let (s, b) = call(
            node.anon(m, path)
                .header("content-type", "application/json")
                .body("\"pw\""),
        );
        assert_eq!((s, b), (401, not_admin.clone()), "{m} {path}");
    }
    let (_, admins) = node.get("/_node/_local/_config/admins");
    assert_eq!(admins.as_object().unwrap().len(), 1, "{admins}");
}

#[test]
fn reload_reads_edits_of_local_ini() {
    let node = Node::start();
    put_value(&node, "testsec", "edited", "before", true);
    let path = node.data_dir.join("local.ini");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("edited = before", "edited = after")).unwrap();
    let (_, v) = node.get("/_node/_local/_config/testsec/edited");
    assert_eq!(v, json!("before"), "not re-read by itself");
    let (s, b) = node.post("/_node/_local/_config/_reload", json!({}));
    assert_eq!((s, b), (200, json!({"ok": true})));
    let (_, v) = node.get("/_node/_local/_config/testsec/edited");
    assert_eq!(v, json!("after"));
}

#[test]
fn settings_take_effect_at_once() {
    let node = Node::start();
    node.create_db("limits");
    // [couchdb] max_document_size
    let (s, _) = put_value(&node, "couchdb", "max_document_size", "64", false);
    assert_eq!(s, 200);
    let big = "x".repeat(200);
    let (s, b) = node.put("/limits/bigdoc", json!({ "data": big }));
    assert_eq!(s, 413, "{b}");
    assert_eq!(
        b,
        json!({"error": "document_too_large", "reason": "bigdoc"})
    );
    let (s, _) = node.put("/limits/small", json!({"a": 1}));
    assert_eq!(s, 201);
    // [cluster] q for new databases.
    let (s, _) = put_value(&node, "cluster", "q", "3", false);
    assert_eq!(s, 200);
    node.create_db("threeway");
    let (_, info) = node.get("/threeway");
    assert_eq!(info["cluster"]["q"], 3, "{info}");
    // [uuids] max_count
    let (s, _) = put_value(&node, "uuids", "max_count", "2", false);
    assert_eq!(s, 200);
    let (s, _) = call(node.anon("GET", "/_uuids?count=3"));
    assert_eq!(s, 400);
}
