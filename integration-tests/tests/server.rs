//! Server-level endpoints: `/`, `/_up`, `/_uuids`, `/_all_dbs`, `/_dbs_info`,
//! `/_active_tasks`, `/_membership`, `/_node/...` and unknown `/_xxx` paths, checked
//! against CouchDB 3.5's exact shapes, status codes and error strings.

use chaise_integration_tests::helpers::{
    call_with_headers, header, no_db, not_admin, set_config_in_memory,
};
use chaise_integration_tests::{call, Node, NodeOptions};
use serde_json::{json, Value};

fn is_hex32(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

fn method_not_allowed(allowed: &str) -> Value {
    json!({"error": "method_not_allowed", "reason": format!("Only {allowed} allowed")})
}

// ---------------------------------------------------------------------------
// GET / HEAD /
// ---------------------------------------------------------------------------

#[test]
fn root_welcome_has_couchdb_fields_and_headers() {
    let node = Node::start();
    // The welcome page needs no credentials.
    let (s, h, b) = call_with_headers(node.anon("GET", "/"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["couchdb"], "Welcome");
    assert_eq!(b["version"], "3.5.2");
    assert!(b["git_sha"].is_string(), "{b}");
    assert!(is_hex32(&b["uuid"]), "uuid: {b}");
    let features = b["features"].as_array().expect("features array");
    for f in [
        "access-ready",
        "partitioned",
        "pluggable-storage-engines",
        "reshard",
        "scheduler",
    ] {
        assert!(features.contains(&json!(f)), "feature {f} missing: {b}");
    }
    assert!(b["vendor"]["name"].is_string(), "{b}");
    let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["couchdb", "version", "git_sha", "uuid", "features", "vendor"],
        "field order"
    );
    assert_eq!(
        header(&h, "content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(
        header(&h, "cache-control").as_deref(),
        Some("must-revalidate")
    );
    assert!(
        header(&h, "server").is_some_and(|v| v.starts_with("CouchDB/3.5.2")),
        "{h:?}"
    );
    let rid = header(&h, "x-couch-request-id").expect("request id");
    assert_eq!(rid.len(), 10, "{rid}");
    assert!(rid.bytes().all(|c| c.is_ascii_hexdigit()), "{rid}");
    assert!(header(&h, "x-couchdb-body-time").is_some());
}

#[test]
fn root_uuid_is_stable_across_restart() {
    let node = Node::start();
    let (_, b1) = call(node.anon("GET", "/"));
    let (_, b2) = call(node.anon("GET", "/"));
    assert_eq!(b1["uuid"], b2["uuid"]);
    let (_, u) = node.get("/_node/_local/_config/couchdb/uuid");
    assert_eq!(u, b1["uuid"], "the server uuid is [couchdb] uuid");
    let node = node.restart(NodeOptions::default());
    let (_, b3) = call(node.anon("GET", "/"));
    assert_eq!(b1["uuid"], b3["uuid"]);
}

#[test]
fn root_vendor_comes_from_vendor_section() {
    let node = Node::start();
    set_config_in_memory(&node, "vendor", "name", "ACME");
    set_config_in_memory(&node, "vendor", "version", "7");
    let (_, b) = call(node.anon("GET", "/"));
    assert_eq!(b["vendor"], json!({"name": "ACME", "version": "7"}));
}

#[test]
fn root_head_has_no_body() {
    let node = Node::start();
    let resp = node.anon("HEAD", "/").send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.bytes().unwrap().is_empty());
}

#[test]
fn root_other_methods_are_405_with_allow() {
    let node = Node::start();
    for m in ["POST", "PUT", "DELETE"] {
        let (s, h, b) = call_with_headers(
            node.req(m, "/")
                .header("content-type", "application/json")
                .body("{}"),
        );
        assert_eq!(s, 405, "{m}: {b}");
        assert_eq!(b, method_not_allowed("GET,HEAD"), "{m}");
        assert_eq!(header(&h, "allow").as_deref(), Some("GET,HEAD"), "{m}");
    }
}

// ---------------------------------------------------------------------------
// /_up
// ---------------------------------------------------------------------------

#[test]
fn up_is_public_and_reports_ok() {
    let node = Node::start();
    let (s, b) = call(node.anon("GET", "/_up"));
    assert_eq!(s, 200);
    assert_eq!(b, json!({"status": "ok", "seeds": {}}));
    let (s, h, b) = call_with_headers(node.req("POST", "/_up"));
    assert_eq!(s, 405);
    assert_eq!(b, method_not_allowed("GET,HEAD"));
    assert_eq!(header(&h, "allow").as_deref(), Some("GET,HEAD"));
}

#[test]
fn up_reports_maintenance_mode() {
    let node = Node::start();
    set_config_in_memory(&node, "couchdb", "maintenance_mode", "true");
    let (s, b) = call(node.anon("GET", "/_up"));
    assert_eq!((s, b), (404, json!({"status": "maintenance_mode"})));
    set_config_in_memory(&node, "couchdb", "maintenance_mode", "nolb");
    let (s, b) = call(node.anon("GET", "/_up"));
    assert_eq!((s, b), (404, json!({"status": "nolb"})));
    set_config_in_memory(&node, "couchdb", "maintenance_mode", "false");
    let (s, _) = call(node.anon("GET", "/_up"));
    assert_eq!(s, 200);
}

// ---------------------------------------------------------------------------
// /_uuids
// ---------------------------------------------------------------------------

#[test]
fn uuids_default_is_one_with_no_cache_headers() {
    let node = Node::start();
    let (s, h, b) = call_with_headers(node.anon("GET", "/_uuids"));
    assert_eq!(s, 200, "{b}");
    let ids = b["uuids"].as_array().expect("uuids array");
    assert_eq!(ids.len(), 1);
    assert!(is_hex32(&ids[0]), "{b}");
    assert_eq!(b.as_object().unwrap().len(), 1, "{b}");
    assert_eq!(
        header(&h, "cache-control").as_deref(),
        Some("must-revalidate, no-cache")
    );
    assert_eq!(header(&h, "pragma").as_deref(), Some("no-cache"));
    assert_eq!(
        header(&h, "expires").as_deref(),
        Some("Mon, 01 Jan 1990 00:00:00 GMT")
    );
    let etag = header(&h, "etag").expect("etag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
}

#[test]
fn uuids_count_returns_distinct_sequential_ids() {
    let node = Node::start();
    let (s, b) = call(node.anon("GET", "/_uuids?count=10"));
    assert_eq!(s, 200);
    let ids: Vec<&str> = b["uuids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 10);
    let mut dedup = ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 10, "{ids:?}");
    // `sequential`: a shared 26-hex prefix and a growing 6-hex suffix (the prefix
    // may roll over, after which the order restarts).
    for w in ids.windows(2) {
        assert!(w[0][..26] != w[1][..26] || w[0] < w[1], "{ids:?}");
    }
    let (s, b) = call(node.anon("GET", "/_uuids?count=1000"));
    assert_eq!(s, 200);
    assert_eq!(b["uuids"].as_array().unwrap().len(), 1000);
    let (s, b) = call(node.anon("GET", "/_uuids?count=0"));
    assert_eq!((s, b), (200, json!({"uuids": []})));
}

#[test]
fn uuids_count_errors() {
    let node = Node::start();
    let (s, b) = call(node.anon("GET", "/_uuids?count=1001"));
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "count parameter too large"})
    );
    for bad in ["abc", "-1", "1.5", ""] {
        let (s, b) = call(node.anon("GET", &format!("/_uuids?count={bad}")));
        assert_eq!(s, 400, "count={bad}");
        assert_eq!(
            b,
            json!({"error": "bad_request", "reason": "count must be a positive integer"}),
            "count={bad}"
        );
    }
    // The limit is [uuids] max_count.
    set_config_in_memory(&node, "uuids", "max_count", "5");
    let (s, _) = call(node.anon("GET", "/_uuids?count=5"));
    assert_eq!(s, 200);
    let (s, b) = call(node.anon("GET", "/_uuids?count=6"));
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["reason"], "count parameter too large");
}

#[test]
fn uuids_only_get() {
    let node = Node::start();
    let (s, h, b) = call_with_headers(node.req("POST", "/_uuids"));
    assert_eq!(s, 405);
    assert_eq!(b, method_not_allowed("GET"));
    assert_eq!(header(&h, "allow").as_deref(), Some("GET"));
}

// ---------------------------------------------------------------------------
// /_all_dbs
// ---------------------------------------------------------------------------

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn all_dbs(node: &Node, query: &str) -> Vec<String> {
    let (s, b) = node.get(&format!("/_all_dbs{query}"));
    assert_eq!(s, 200, "{query}: {b}");
    names(&b)
}

/// A node holding the system dbs plus db-a .. db-d.
fn node_with_four_dbs() -> Node {
    let node = Node::start();
    // Created out of order: the listing is sorted.
    for d in ["db-c", "db-a", "db-d", "db-b"] {
        node.create_db(d);
    }
    node
}

#[test]
fn all_dbs_lists_sorted_names_including_system_dbs() {
    let node = node_with_four_dbs();
    assert_eq!(
        all_dbs(&node, ""),
        ["_replicator", "_users", "db-a", "db-b", "db-c", "db-d"]
    );
    let (s, _) = node.delete("/db-b");
    assert_eq!(s, 200);
    assert_eq!(
        all_dbs(&node, ""),
        ["_replicator", "_users", "db-a", "db-c", "db-d"]
    );
}

#[test]
fn all_dbs_limit_skip() {
    let node = node_with_four_dbs();
    assert_eq!(all_dbs(&node, "?limit=2"), ["_replicator", "_users"]);
    assert_eq!(all_dbs(&node, "?skip=2&limit=2"), ["db-a", "db-b"]);
    assert_eq!(all_dbs(&node, "?skip=5"), ["db-d"]);
    assert_eq!(all_dbs(&node, "?skip=10"), Vec::<String>::new());
    assert_eq!(all_dbs(&node, "?limit=0"), Vec::<String>::new());
}

#[test]
fn all_dbs_key_ranges() {
    let node = node_with_four_dbs();
    assert_eq!(
        all_dbs(&node, "?startkey=\"db-b\""),
        ["db-b", "db-c", "db-d"]
    );
    assert_eq!(
        all_dbs(&node, "?start_key=\"db-b\""),
        ["db-b", "db-c", "db-d"]
    );
    assert_eq!(
        all_dbs(&node, "?endkey=\"db-b\""),
        ["_replicator", "_users", "db-a", "db-b"]
    );
    assert_eq!(
        all_dbs(&node, "?end_key=\"db-b\""),
        ["_replicator", "_users", "db-a", "db-b"]
    );
    assert_eq!(
        all_dbs(&node, "?startkey=\"db-a\"&endkey=\"db-c\""),
        ["db-a", "db-b", "db-c"]
    );
    assert_eq!(
        all_dbs(
            &node,
            "?startkey=\"db-a\"&endkey=\"db-c\"&inclusive_end=false"
        ),
        ["db-a", "db-b"]
    );
    // Keys need not name an existing db.
    assert_eq!(
        all_dbs(&node, "?startkey=\"db-bb\"&endkey=\"db-z\""),
        ["db-c", "db-d"]
    );
    assert_eq!(
        all_dbs(&node, "?startkey=\"db-a\"&endkey=\"db-c\"&skip=1&limit=1"),
        ["db-b"]
    );
}

#[test]
fn all_dbs_descending() {
    let node = node_with_four_dbs();
    assert_eq!(
        all_dbs(&node, "?descending=true"),
        ["db-d", "db-c", "db-b", "db-a", "_users", "_replicator"]
    );
    // Descending: startkey is the high end, endkey the low end.
    assert_eq!(
        all_dbs(&node, "?descending=true&startkey=\"db-c\""),
        ["db-c", "db-b", "db-a", "_users", "_replicator"]
    );
    assert_eq!(
        all_dbs(&node, "?descending=true&endkey=\"db-b\""),
        ["db-d", "db-c", "db-b"]
    );
    assert_eq!(
        all_dbs(
            &node,
            "?descending=true&endkey=\"db-b\"&inclusive_end=false"
        ),
        ["db-d", "db-c"]
    );
    assert_eq!(
        all_dbs(
            &node,
            "?descending=true&startkey=\"db-c\"&endkey=\"db-a\"&limit=2"
        ),
        ["db-c", "db-b"]
    );
    // A reversed range is empty.
    assert_eq!(
        all_dbs(&node, "?startkey=\"db-c\"&endkey=\"db-a\""),
        Vec::<String>::new()
    );
}

#[test]
fn all_dbs_etag_and_if_none_match() {
    let node = Node::start();
    node.create_db("etag-a");
    let (s, h, b) = call_with_headers(node.req("GET", "/_all_dbs"));
    assert_eq!(s, 200);
    let etag = header(&h, "etag").expect("etag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let resp = node
        .req("GET", "/_all_dbs")
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 304);
    assert!(resp.bytes().unwrap().is_empty());
    // Any entry of a list matches.
    let (s, _, _) = call_with_headers(
        node.req("GET", "/_all_dbs")
            .header("if-none-match", format!("\"other\", {etag}")),
    );
    assert_eq!(s, 304);
    // A new database changes it.
    node.create_db("etag-b");
    let (s, h, b2) = call_with_headers(node.req("GET", "/_all_dbs").header("if-none-match", &etag));
    assert_eq!(s, 200);
    assert_ne!(header(&h, "etag").unwrap(), etag);
    assert_ne!(b, b2);
}

#[test]
fn all_dbs_bad_params_and_methods() {
    let node = Node::start();
    let (s, b) = node.get("/_all_dbs?limit=-1");
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "query_parse_error", "reason": "Invalid value for positive integer: \"-1\""})
    );
    let (s, b) = node.get("/_all_dbs?limit=abc");
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "query_parse_error", "reason": "Invalid value for integer: \"abc\""})
    );
    let (s, b) = node.get("/_all_dbs?descending=yes");
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"], "query_parse_error");
    let (s, h, b) = call_with_headers(node.req("POST", "/_all_dbs"));
    assert_eq!(s, 405);
    assert_eq!(b, method_not_allowed("GET,HEAD"));
    assert_eq!(header(&h, "allow").as_deref(), Some("GET,HEAD"));
}

#[test]
fn all_dbs_is_admin_only_by_default() {
    let node = Node::start();
    let (s, b) = call(node.anon("GET", "/_all_dbs"));
    assert_eq!((s, b), (401, not_admin()));
    let (s, b) = call(node.anon("GET", "/_dbs_info"));
    assert_eq!((s, b), (401, not_admin()));
    set_config_in_memory(&node, "chttpd", "admin_only_all_dbs", "false");
    let (s, b) = call(node.anon("GET", "/_all_dbs"));
    assert_eq!(s, 200);
    assert_eq!(names(&b), ["_replicator", "_users"]);
    let (s, _) = call(node.anon("GET", "/_dbs_info"));
    assert_eq!(s, 200);
}

// ---------------------------------------------------------------------------
// /_dbs_info
// ---------------------------------------------------------------------------

fn assert_db_info(entry: &Value, name: &str) {
    assert_eq!(entry["key"], name, "{entry}");
    let info = &entry["info"];
    assert_eq!(info["db_name"], name, "{entry}");
    for k in [
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
    ] {
        assert!(info.get(k).is_some(), "{k} missing in {entry}");
    }
    assert_eq!(info["instance_start_time"], "0");
    assert!(info["update_seq"].is_string(), "{entry}");
    assert!(entry.get("error").is_none(), "{entry}");
}

#[test]
fn dbs_info_get_lists_all_with_info() {
    let node = node_with_four_dbs();
    let (s, b) = node.put("/db-a/doc1", json!({"x": 1}));
    assert_eq!(s, 201, "{b}");
    let (s, b) = node.get("/_dbs_info");
    assert_eq!(s, 200, "{b}");
    let rows = b.as_array().unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        ["_replicator", "_users", "db-a", "db-b", "db-c", "db-d"]
    );
    for r in rows {
        assert_db_info(r, r["key"].as_str().unwrap());
    }
    assert_eq!(rows[2]["info"]["doc_count"], 1);
    // Same parameters as _all_dbs.
    let (_, b) = node.get("/_dbs_info?startkey=\"db-b\"&limit=2");
    let keys: Vec<&str> = b
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["db-b", "db-c"]);
    let (_, b) = node.get("/_dbs_info?descending=true&skip=1&limit=1");
    assert_eq!(b.as_array().unwrap().len(), 1);
    assert_eq!(b[0]["key"], "db-c");
}

#[test]
fn dbs_info_post_keys_in_order_with_missing() {
    let node = node_with_four_dbs();
    let (s, b) = node.post(
        "/_dbs_info",
        json!({"keys": ["db-c", "no-such-db", "db-a", "db-c"]}),
    );
    assert_eq!(s, 200, "{b}");
    let rows = b.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_db_info(&rows[0], "db-c");
    assert_eq!(rows[1], json!({"key": "no-such-db", "error": "not_found"}));
    assert_db_info(&rows[2], "db-a");
    assert_db_info(&rows[3], "db-c");
    let (s, b) = node.post("/_dbs_info", json!({"keys": []}));
    assert_eq!((s, b), (200, json!([])));
}

#[test]
fn dbs_info_post_key_limit() {
    let node = Node::start();
    let keys: Vec<String> = (0..100).map(|i| format!("db{i}")).collect();
    let (s, b) = node.post("/_dbs_info", json!({ "keys": keys }));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b.as_array().unwrap().len(), 100);
    assert_eq!(b[99], json!({"key": "db99", "error": "not_found"}));
    let keys: Vec<String> = (0..101).map(|i| format!("db{i}")).collect();
    let (s, b) = node.post("/_dbs_info", json!({ "keys": keys }));
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "too_many_keys"})
    );
    // The limit is [chttpd] max_db_number_for_dbs_info_req.
    set_config_in_memory(&node, "chttpd", "max_db_number_for_dbs_info_req", "1");
    let (s, b) = node.post("/_dbs_info", json!({"keys": ["a", "b"]}));
    assert_eq!((s, b["reason"].clone()), (400, json!("too_many_keys")));
}

#[test]
fn dbs_info_post_bad_requests() {
    let node = Node::start();
    let (s, b) = node.post("/_dbs_info", json!({"other": ["a"]}));
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "`keys` member must exist."})
    );
    let (s, b) = node.post("/_dbs_info", json!({"keys": "a"}));
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "`keys` member must be an array."})
    );
    let (s, b) = call(
        node.req("POST", "/_dbs_info")
            .header("content-type", "text/plain")
            .body(r#"{"keys":["a"]}"#),
    );
    assert_eq!(s, 415);
    assert_eq!(
        b,
        json!({"error": "bad_content_type", "reason": "Content-Type must be application/json"})
    );
    let (s, h, b) = call_with_headers(node.req("PUT", "/_dbs_info"));
    assert_eq!(s, 405);
    assert_eq!(b, method_not_allowed("GET,HEAD,POST"));
    assert_eq!(header(&h, "allow").as_deref(), Some("GET,HEAD,POST"));
}

// ---------------------------------------------------------------------------
// /_active_tasks, /_membership
// ---------------------------------------------------------------------------

#[test]
fn active_tasks_is_admin_array() {
    let node = Node::start();
    let (s, b) = node.get("/_active_tasks");
    assert_eq!(s, 200);
    assert!(b.is_array(), "{b}");
    let (s, b) = call(node.anon("GET", "/_active_tasks"));
    assert_eq!((s, b), (401, not_admin()));
    let (s, h, b) = call_with_headers(node.req("POST", "/_active_tasks"));
    assert_eq!(s, 405);
    assert_eq!(b, method_not_allowed("GET,HEAD"));
    assert_eq!(header(&h, "allow").as_deref(), Some("GET,HEAD"));
}

#[test]
fn membership_lists_this_node() {
    let node = Node::start();
    let (s, b) = node.get("/_membership");
    assert_eq!(s, 200, "{b}");
    let obj = b.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{b}");
    let all = names(&b["all_nodes"]);
    let cluster = names(&b["cluster_nodes"]);
    assert_eq!(all.len(), 1, "{b}");
    assert_eq!(all, cluster);
    assert!(all[0].contains('@'), "{b}");
    // `_local` names the same node.
    let (s, me) = node.get("/_node/_local");
    assert_eq!(s, 200);
    assert_eq!(me, json!({"name": all[0]}));
    let (s, b) = call(node.anon("GET", "/_membership"));
    assert_eq!((s, b), (401, not_admin()));
    let (s, h, b) = call_with_headers(node.req("POST", "/_membership"));
    assert_eq!(s, 405);
    assert_eq!(b, method_not_allowed("GET"));
    assert_eq!(header(&h, "allow").as_deref(), Some("GET"));
}

// ---------------------------------------------------------------------------
// /_node/...
// ---------------------------------------------------------------------------

#[test]
fn node_versions_shape() {
    let node = Node::start();
    let (s, b) = node.get("/_node/_local/_versions");
    assert_eq!(s, 200, "{b}");
    assert!(b["javascript_engine"]["name"].is_string(), "{b}");
    let cd = &b["collation_driver"];
    for k in [
        "name",
        "library_version",
        "collation_algorithm_version",
        "collator_version",
    ] {
        assert!(cd[k].is_string(), "collation_driver.{k}: {b}");
    }
    // The node's own name works like `_local`.
    let (_, me) = node.get("/_node/_local");
    let name = me["name"].as_str().unwrap().to_string();
    let (s, b2) = node.get(&format!("/_node/{name}/_versions"));
    assert_eq!((s, b2), (200, b));
    let (s, b) = call(node.anon("GET", "/_node/_local/_versions"));
    assert_eq!((s, b), (401, not_admin()));
    let (s, h, b) = call_with_headers(node.req("POST", "/_node/_local/_versions"));
    assert_eq!(s, 405);
    assert_eq!(b, method_not_allowed("GET"));
    assert_eq!(header(&h, "allow").as_deref(), Some("GET"));
}

fn suffix_string(doc: &Value) -> String {
    doc["shard_suffix"]
        .as_array()
        .unwrap_or_else(|| panic!("shard_suffix is not an array: {doc}"))
        .iter()
        .map(|c| char::from(u8::try_from(c.as_u64().expect("char code")).unwrap()))
        .collect()
}

#[test]
fn node_local_dbs_doc_shape() {
    let node = Node::start();
    let (s, b) = node.json("PUT", "/sharded?q=3", None);
    assert_eq!(s, 201, "{b}");
    let (_, me) = node.get("/_node/_local");
    let me = me["name"].as_str().unwrap().to_string();
    let (s, doc) = node.get("/_node/_local/_dbs/sharded");
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["_id"], "sharded");
    let suffix = suffix_string(&doc);
    assert!(suffix.starts_with('.'), "{suffix}");
    let secs: u64 = suffix[1..].parse().expect("unix seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(secs <= now && now - secs < 3600, "{suffix}");
    let ranges = [
        "00000000-55555554",
        "55555555-aaaaaaa9",
        "aaaaaaaa-ffffffff",
    ];
    let changelog: Vec<Value> = ranges.iter().map(|r| json!(["add", r, me])).collect();
    assert_eq!(doc["changelog"], json!(changelog));
    assert_eq!(doc["by_node"], json!({ me.clone(): ranges }));
    let by_range: serde_json::Map<String, Value> = ranges
        .iter()
        .map(|r| (r.to_string(), json!([me])))
        .collect();
    assert_eq!(doc["by_range"], Value::Object(by_range));
    // `props` only when non-empty.
    assert!(doc.get("props").is_none(), "{doc}");
    // The database's own shard listing agrees.
    let (s, shards) = node.get("/sharded/_shards");
    assert_eq!(s, 200);
    assert_eq!(shards["shards"], doc["by_range"]);
}

#[test]
fn node_local_dbs_partitioned_props() {
    let node = Node::start();
    let (s, b) = node.json("PUT", "/parted?partitioned=true", None);
    assert_eq!(s, 201, "{b}");
    let (s, doc) = node.get("/_node/_local/_dbs/parted");
    assert_eq!(s, 200);
    assert_eq!(doc["props"]["partitioned"], true, "{doc}");
    assert_eq!(
        doc["props"]["hash"],
        json!(["couch_partition", "hash", []]),
        "{doc}"
    );
}

#[test]
fn node_local_dbs_missing_and_forbidden() {
    let node = Node::start();
    let (s, b) = node.get("/_node/_local/_dbs/nope");
    assert_eq!(s, 404);
    assert_eq!(b, json!({"error": "not_found", "reason": "missing"}));
    node.create_db("mine");
    let (s, b) = call(node.anon("GET", "/_node/_local/_dbs/mine"));
    assert_eq!((s, b), (401, not_admin()));
}

#[test]
fn node_unknown_node_and_paths() {
    let node = Node::start();
    let (s, b) = node.get("/_node/nobody@nowhere/_config");
    assert_eq!(s, 404);
    assert_eq!(
        b,
        json!({"error": "not_found", "reason": "no such node: nobody@nowhere"})
    );
    let (s, b) = node.get("/_node/nobody@nowhere/_versions");
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["reason"], "no such node: nobody@nowhere");
    let (s, b) = node.get("/_node");
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "Incomplete path to _node request"})
    );
    let (s, b) = node.get("/_node/_local/_config/couchdb/uuid/extra");
    assert_eq!(s, 404, "{b}");
    assert_eq!(b, json!({"error": "not_found", "reason": "missing"}));
}

// ---------------------------------------------------------------------------
// Unknown `/_xxx` paths and illegal database names
// ---------------------------------------------------------------------------

#[test]
fn unknown_underscore_path() {
    let node = Node::start();
    // Any other `/_xxx` path is server-admin only...
    let (s, b) = call(node.anon("GET", "/_foo"));
    assert_eq!((s, b), (401, not_admin()));
    // ...and then treated as a database that does not exist.
    assert_eq!(node.get("/_foo"), (404, no_db()));
    let (s, b) = node.get("/_foo/some/doc");
    assert_eq!(s, 404, "{b}");
    assert_eq!(b["reason"], "Database does not exist.");
    let (s, b) = node.json("PUT", "/_foo", None);
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "illegal_database_name", "reason": "Name: '_foo'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter."})
    );
}

#[test]
fn illegal_database_names() {
    let node = Node::start();
    for (raw, name) in [
        ("Abc", "Abc"),
        ("1db", "1db"),
        ("db%20space", "db space"),
        ("db%21", "db!"),
    ] {
        let (s, b) = node.json("PUT", &format!("/{raw}"), None);
        assert_eq!(s, 400, "{raw}: {b}");
        assert_eq!(b["error"], "illegal_database_name", "{raw}");
        assert_eq!(
            b["reason"],
            format!("Name: '{name}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter."),
        );
        // Reading a database that cannot exist is a plain 404.
        let (s, b) = node.get(&format!("/{raw}"));
        assert_eq!(s, 404, "{raw}: {b}");
        assert_eq!(b["reason"], "Database does not exist.");
    }
    // Legal special characters and an encoded slash.
    for raw in ["a$()+-_b", "a%2Fb"] {
        let (s, b) = node.json("PUT", &format!("/{raw}"), None);
        assert_eq!(s, 201, "{raw}: {b}");
        let (s, _) = node.get(&format!("/{raw}"));
        assert_eq!(s, 200, "{raw}");
    }
    assert!(all_dbs(&node, "").contains(&"a/b".to_string()));
}
