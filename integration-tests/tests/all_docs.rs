//! `_all_docs`, `_design_docs`, `_local_docs` and their `/queries` forms, checked
//! against CouchDB 3.x (`chttpd_db`, `couch_mrview_http`, `fabric_view_all_docs`).

use chaise_integration_tests::helpers::{create_q, hex_rev, no_db, put_doc, strs, urlencode};
use chaise_integration_tests::{call, Node};
use serde_json::{json, Value};

/// Writes many docs through `_bulk_docs`; returns the revs in order.
fn bulk(node: &Node, db: &str, docs: Vec<Value>) -> Vec<String> {
    let (s, b) = node.post(&format!("/{db}/_bulk_docs"), json!({ "docs": docs }));
    assert_eq!(s, 201, "bulk: {b}");
    b.as_array()
        .expect("array")
        .iter()
        .map(|r| {
            assert_eq!(r["ok"], true, "{r}");
            r["rev"].as_str().expect("rev").to_string()
        })
        .collect()
}

/// Ids of a listing's rows.
fn ids(b: &Value) -> Vec<String> {
    b["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {b}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("<none>").to_string())
        .collect()
}

/// A db with docs `a`..`j` (rev of each returned in order).
fn ten_docs(node: &Node, name: &str) -> (String, Vec<String>) {
    let db = node.create_db(name);
    let docs: Vec<Value> = "abcdefghij"
        .chars()
        .map(|c| json!({"_id": c.to_string(), "n": c.to_string()}))
        .collect();
    let revs = bulk(node, &db, docs);
    (db, revs)
}

#[test]
fn listing_shape_and_rows() {
    let node = Node::start();
    let db = node.create_db("ad-shape");
    let rb = put_doc(&node, &db, "b", json!({"v": 2}));
    let ra = put_doc(&node, &db, "a", json!({"v": 1}));
    let rc = put_doc(&node, &db, "c", json!({"v": 3}));
    let (s, b) = node.get(&format!("/{db}/_all_docs"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"total_rows": 3, "offset": 0, "rows": [
            {"id": "a", "key": "a", "value": {"rev": ra}},
            {"id": "b", "key": "b", "value": {"rev": rb}},
            {"id": "c", "key": "c", "value": {"rev": rc}},
        ]})
    );
    // An empty database.
    let empty = node.create_db("ad-shape-empty");
    let (s, b) = node.get(&format!("/{empty}/_all_docs"));
    assert_eq!(s, 200);
    assert_eq!(b, json!({"total_rows": 0, "offset": 0, "rows": []}));
    // Missing database.
    assert_eq!(node.get("/ad-no-such-db/_all_docs"), (404, no_db()));
}

#[test]
fn raw_body_uses_couchdb_row_separators() {
    let node = Node::start();
    let db = node.create_db("ad-raw");
    put_doc(&node, &db, "a", json!({}));
    put_doc(&node, &db, "b", json!({}));
    let resp = node
        .req("GET", &format!("/{db}/_all_docs"))
        .send()
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/json"), "content-type {ct}");
    let text = resp.text().expect("body");
    // {"total_rows":2,"offset":0,"rows":[\r\n{row},\r\n{row}\r\n]}
    assert!(
        text.starts_with("{\"total_rows\":2,\"offset\":0,\"rows\":[\r\n{\"id\":\"a\""),
        "{text:?}"
    );
    assert!(text.contains("},\r\n{\"id\":\"b\""), "{text:?}");
    assert!(text.trim_end_matches('\n').ends_with("}\r\n]}"), "{text:?}");
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(2));

    // Empty listing: CouchDB sends the meta chunk ending in "[\r\n" then "\r\n]}".
    let empty = node.create_db("ad-raw-empty");
    let text = node
        .req("GET", &format!("/{empty}/_all_docs"))
        .send()
        .expect("request")
        .text()
        .expect("body");
    assert_eq!(
        text.trim_end_matches('\n'),
        "{\"total_rows\":0,\"offset\":0,\"rows\":[\r\n\r\n]}"
    );
    serde_json::from_str::<Value>(&text).expect("valid JSON");

    // The multi-query form is valid JSON too.
    let text = node
        .req("POST", &format!("/{db}/_all_docs/queries"))
        .header("content-type", "application/json")
        .body(r#"{"queries":[{},{"limit":1}]}"#)
        .send()
        .expect("request")
        .text()
        .expect("body");
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(2), "{text:?}");
}

#[test]
fn offset_with_startkey_skip_and_limit() {
    let node = Node::start();
    let (db, _) = ten_docs(&node, "ad-offset");
    let get = |q: &str| {
        let (s, b) = node.get(&format!("/{db}/_all_docs?{q}"));
        assert_eq!(s, 200, "{q}: {b}");
        b
    };
    let b = get("startkey=%22c%22");
    assert_eq!(b["total_rows"], 10);
    assert_eq!(b["offset"], 2);
    assert_eq!(ids(&b), strs(&["c", "d", "e", "f", "g", "h", "i", "j"]));

    let b = get("skip=3");
    assert_eq!(b["offset"], 3);
    assert_eq!(ids(&b)[0], "d");

    let b = get("startkey=%22c%22&skip=2&limit=3");
    assert_eq!(b["offset"], 4);
    assert_eq!(b["total_rows"], 10);
    assert_eq!(ids(&b), strs(&["e", "f", "g"]));

    // A start key between ids counts the ids before it.
    let b = get("startkey=%22cc%22&limit=1");
    assert_eq!(b["offset"], 3);
    assert_eq!(ids(&b), strs(&["d"]));

    let b = get("limit=2");
    assert_eq!(b["offset"], 0);
    assert_eq!(ids(&b), strs(&["a", "b"]));

    let b = get("limit=0");
    assert_eq!(b["total_rows"], 10);
    assert_eq!(b["rows"], json!([]));

    // Skipping past the end: offset is capped at total_rows.
    let b = get("skip=50");
    assert_eq!(b["offset"], 10);
    assert_eq!(b["rows"], json!([]));

    // Descending: the offset counts rows after the start key.
    let b = get("descending=true&startkey=%22h%22&limit=3");
    assert_eq!(b["offset"], 2);
    assert_eq!(ids(&b), strs(&["h", "g", "f"]));

    let b = get("descending=true&skip=1&limit=2");
    assert_eq!(b["offset"], 1);
    assert_eq!(ids(&b), strs(&["i", "h"]));
}

#[test]
fn key_ranges_and_spellings() {
    let node = Node::start();
    let (db, revs) = ten_docs(&node, "ad-range");
    let get = |q: &str| {
        let (s, b) = node.get(&format!("/{db}/_all_docs?{q}"));
        assert_eq!(s, 200, "{q}: {b}");
        ids(&b)
    };
    let (_, b) = node.get(&format!("/{db}/_all_docs?key=%22d%22"));
    assert_eq!(
        b["rows"],
        json!([{"id": "d", "key": "d", "value": {"rev": revs[3]}}])
    );
    assert_eq!(b["offset"], 3);
    assert_eq!(get("key=%22dd%22"), Vec::<String>::new());

    assert_eq!(
        get("startkey=%22b%22&endkey=%22d%22"),
        strs(&["b", "c", "d"])
    );
    assert_eq!(
        get("start_key=%22b%22&end_key=%22d%22"),
        strs(&["b", "c", "d"])
    );
    assert_eq!(
        get("startkey=%22b%22&end_key=%22d%22"),
        strs(&["b", "c", "d"])
    );
    assert_eq!(
        get("startkey=%22b%22&endkey=%22d%22&inclusive_end=false"),
        strs(&["b", "c"])
    );
    assert_eq!(get("endkey=%22b%22"), strs(&["a", "b"]));
    assert_eq!(get("endkey=%22b%22&inclusive_end=false"), strs(&["a"]));
    // Descending: startkey is the high end.
    assert_eq!(
        get("descending=true&startkey=%22d%22&endkey=%22b%22"),
        strs(&["d", "c", "b"])
    );
    assert_eq!(
        get("descending=true&startkey=%22d%22&endkey=%22b%22&inclusive_end=false"),
        strs(&["d", "c"])
    );
    assert_eq!(
        get("descending=true"),
        strs(&["j", "i", "h", "g", "f", "e", "d", "c", "b", "a"])
    );
    // A reversed range in _all_docs is not an error, just empty.
    assert_eq!(get("startkey=%22d%22&endkey=%22b%22"), Vec::<String>::new());
    // Booleans are case-insensitive in CouchDB.
    assert_eq!(get("descending=TRUE&limit=1"), strs(&["j"]));
}

#[test]
fn keys_lookup_get_and_post() {
    let node = Node::start();
    let db = node.create_db("ad-keys");
    let ra = put_doc(&node, &db, "a", json!({"v": 1}));
    let rc = put_doc(&node, &db, "c", json!({"v": 3}));
    let rd = put_doc(&node, &db, "d", json!({}));
    let (s, del) = node.delete(&format!("/{db}/d?rev={rd}"));
    assert_eq!(s, 200, "{del}");
    let rd2 = del["rev"].as_str().expect("rev").to_string();
    assert!(rd2.starts_with("2-"));

    let expected = json!({"total_rows": 2, "offset": null, "rows": [
        {"id": "c", "key": "c", "value": {"rev": rc}},
        {"key": "missing", "error": "not_found"},
        {"id": "a", "key": "a", "value": {"rev": ra}},
        {"id": "d", "key": "d", "value": {"rev": rd2, "deleted": true}},
        {"id": "a", "key": "a", "value": {"rev": ra}},
    ]});
    let keys = json!(["c", "missing", "a", "d", "a"]);
    let (s, b) = node.post(&format!("/{db}/_all_docs"), json!({ "keys": keys }));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, expected);

    let (s, b) = node.get(&format!(
        "/{db}/_all_docs?keys=%5B%22c%22,%22missing%22,%22a%22,%22d%22,%22a%22%5D"
    ));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, expected);

    // A single key still uses the keys path (offset null, error rows).
    let (s, b) = node.post(&format!("/{db}/_all_docs"), json!({"keys": ["zz"]}));
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"total_rows": 2, "offset": null, "rows": [{"key": "zz", "error": "not_found"}]})
    );

    // include_docs: deleted -> doc null, missing stays an error row.
    let (s, b) = node.post(
        &format!("/{db}/_all_docs?include_docs=true"),
        json!({"keys": ["a", "d", "nope"]}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["rows"],
        json!([
            {"id": "a", "key": "a", "value": {"rev": ra}, "doc": {"_id": "a", "_rev": ra, "v": 1}},
            {"id": "d", "key": "d", "value": {"rev": rd2, "deleted": true}, "doc": null},
            {"key": "nope", "error": "not_found"},
        ])
    );
    // include_docs in the POST body works the same.
    let (_, b2) = node.post(
        &format!("/{db}/_all_docs"),
        json!({"keys": ["a", "d", "nope"], "include_docs": true}),
    );
    assert_eq!(b2["rows"], b["rows"]);

    // descending reverses the keys; skip and limit apply to the key list.
    let (_, b) = node.post(
        &format!("/{db}/_all_docs?descending=true"),
        json!({"keys": ["a", "c", "missing"]}),
    );
    assert_eq!(
        b["rows"],
        json!([
            {"key": "missing", "error": "not_found"},
            {"id": "c", "key": "c", "value": {"rev": rc}},
            {"id": "a", "key": "a", "value": {"rev": ra}},
        ])
    );
    let (_, b) = node.post(
        &format!("/{db}/_all_docs?skip=1&limit=1"),
        json!({"keys": ["a", "c", "missing"]}),
    );
    assert_eq!(
        b["rows"],
        json!([{"id": "c", "key": "c", "value": {"rev": rc}}])
    );
    assert_eq!(b["offset"], Value::Null);

    // An empty key list returns no rows.
    let (s, b) = node.post(&format!("/{db}/_all_docs"), json!({"keys": []}));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["rows"], json!([]));
}

#[test]
fn parameter_errors() {
    let node = Node::start();
    let (db, _) = ten_docs(&node, "ad-errors");
    let check = |path: &str, status: u16, error: &str, reason: &str| {
        let (s, b) = node.get(&format!("/{db}/{path}"));
        assert_eq!(s, status, "{path}: {b}");
        assert_eq!(b, json!({"error": error, "reason": reason}), "{path}");
    };
    let incompatible = "`keys` is incompatible with `key`, `start_key` and `end_key`";
    check(
        "_all_docs?keys=%5B%22a%22,%22b%22%5D&key=%22a%22",
        400,
        "query_parse_error",
        incompatible,
    );
    check(
        "_all_docs?keys=%5B%22a%22,%22b%22%5D&startkey=%22a%22",
        400,
        "query_parse_error",
        incompatible,
    );
    check(
        "_all_docs?limit=abc",
        400,
        "query_parse_error",
        "Invalid value for integer: \"abc\"",
    );
    check(
        "_all_docs?limit=-1",
        400,
        "query_parse_error",
        "Invalid value for positive integer: \"-1\"",
    );
    check(
        "_all_docs?skip=x",
        400,
        "query_parse_error",
        "Invalid value for integer: \"x\"",
    );
    check(
        "_all_docs?include_docs=maybe",
        400,
        "query_parse_error",
        "Invalid boolean parameter: \"maybe\"",
    );
    check(
        "_all_docs?startkey=abc",
        400,
        "bad_request",
        "invalid UTF-8 JSON",
    );
    check(
        "_all_docs?keys=%22a%22",
        400,
        "bad_request",
        "`keys` parameter must be an array.",
    );

    // POST: keys + key in the body.
    let (s, b) = node.post(
        &format!("/{db}/_all_docs"),
        json!({"keys": ["a", "b"], "key": "a"}),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "query_parse_error", "reason": incompatible})
    );
    // POST: keys not an array.
    let (s, b) = node.post(&format!("/{db}/_all_docs"), json!({"keys": "a"}));
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "`keys` body member must be an array."})
    );
    // POST needs a JSON content type.
    let (s, b) = call(
        node.req("POST", &format!("/{db}/_all_docs"))
            .header("content-type", "text/plain")
            .body(r#"{"keys":["a"]}"#),
    );
    assert_eq!(s, 415, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_content_type", "reason": "Content-Type must be application/json"})
    );
    // Malformed JSON body.
    let (s, b) = call(
        node.req("POST", &format!("/{db}/_all_docs"))
            .header("content-type", "application/json")
            .body("{\"keys\":"),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "invalid UTF-8 JSON"})
    );
    // Wrong method.
    let (s, b) = node.delete(&format!("/{db}/_all_docs"));
    assert_eq!(s, 405, "{b}");
    assert_eq!(b["error"], "method_not_allowed");
}

#[test]
fn include_docs_and_conflicts() {
    let node = Node::start();
    let db = node.create_db("ad-docs");
    let ra = put_doc(&node, &db, "a", json!({"x": [1, 2], "s": "t"}));
    // A conflicted doc: two revision-1 leaves.
    let low = hex_rev(1, 'a');
    let high = hex_rev(1, 'b');
    let (s, b) = node.post(
        &format!("/{db}/_bulk_docs"),
        json!({"new_edits": false, "docs": [
            {"_id": "c", "_rev": low, "side": "low"},
            {"_id": "c", "_rev": high, "side": "high"},
        ]}),
    );
    assert_eq!(s, 201, "{b}");

    let (s, b) = node.get(&format!("/{db}/_all_docs?include_docs=true"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["rows"],
        json!([
            {"id": "a", "key": "a", "value": {"rev": ra},
             "doc": {"_id": "a", "_rev": ra, "x": [1, 2], "s": "t"}},
            {"id": "c", "key": "c", "value": {"rev": high},
             "doc": {"_id": "c", "_rev": high, "side": "high"}},
        ])
    );
    let (s, b) = node.get(&format!("/{db}/_all_docs?include_docs=true&conflicts=true"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["rows"][1]["doc"],
        json!({"_id": "c", "_rev": high, "side": "high", "_conflicts": [low]})
    );
    assert!(b["rows"][0]["doc"].get("_conflicts").is_none(), "{b}");
    // Same through the keys path.
    let (s, b) = node.post(
        &format!("/{db}/_all_docs?include_docs=true&conflicts=true"),
        json!({"keys": ["c"]}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["rows"][0]["doc"],
        json!({"_id": "c", "_rev": high, "side": "high", "_conflicts": [low]})
    );
    // Without include_docs, conflicts has no effect on rows.
    let (_, b) = node.get(&format!("/{db}/_all_docs?conflicts=true"));
    assert!(b["rows"][0].get("doc").is_none(), "{b}");
}

#[test]
fn deleted_docs_are_not_listed() {
    let node = Node::start();
    let db = node.create_db("ad-deleted");
    put_doc(&node, &db, "a", json!({}));
    let rb = put_doc(&node, &db, "b", json!({}));
    put_doc(&node, &db, "c", json!({}));
    let (s, _) = node.delete(&format!("/{db}/b?rev={rb}"));
    assert_eq!(s, 200);
    let (_, b) = node.get(&format!("/{db}/_all_docs"));
    assert_eq!(ids(&b), strs(&["a", "c"]));
    assert_eq!(b["total_rows"], 2);
    // Offsets do not count the tombstone.
    let (_, b) = node.get(&format!("/{db}/_all_docs?startkey=%22c%22"));
    assert_eq!(b["offset"], 1);
}

#[test]
fn update_seq_option() {
    let node = Node::start();
    let (db, _) = ten_docs(&node, "ad-seq");
    let (_, b) = node.get(&format!("/{db}/_all_docs?limit=1"));
    assert!(b.get("update_seq").is_none(), "{b}");
    let (s, b) = node.get(&format!("/{db}/_all_docs?update_seq=true&limit=1"));
    assert_eq!(s, 200, "{b}");
    let seq = b["update_seq"]
        .as_str()
        .expect("update_seq string")
        .to_string();
    assert!(seq.starts_with("10-"), "{seq}");
    // Key order of the envelope: total_rows, offset, update_seq, rows.
    let text = node
        .req("GET", &format!("/{db}/_all_docs?update_seq=true&limit=1"))
        .send()
        .expect("request")
        .text()
        .expect("body");
    let t = text.find("\"total_rows\"").expect("total_rows");
    let o = text.find("\"offset\"").expect("offset");
    let u = text.find("\"update_seq\"").expect("update_seq");
    let r = text.find("\"rows\"").expect("rows");
    assert!(t < o && o < u && u < r, "{text}");
    // The sequence is a usable `since`: nothing changed after it.
    let (s, ch) = node.get(&format!("/{db}/_changes?since={seq}"));
    assert_eq!(s, 200, "{ch}");
    assert_eq!(ch["results"], json!([]));
    // With keys CouchDB reports update_seq null.
    let (s, b) = node.post(
        &format!("/{db}/_all_docs?update_seq=true"),
        json!({"keys": ["a"]}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["update_seq"], Value::Null);
    assert!(b.get("update_seq").is_some(), "{b}");
}

#[test]
fn byte_order_across_shards() {
    let node = Node::start();
    let db = create_q(&node, "ad-order", 4);
    let mut all: Vec<String> = Vec::new();
    for i in 0..60 {
        all.push(format!("doc{i}"));
        all.push(format!("Doc{i}"));
        all.push(format!("{i:03}"));
    }
    for extra in [
        "a", "A", "b", "B", "é", "e", "z", "~tilde", "-dash", "ä", "日本", "Z",
    ] {
        all.push(extra.to_string());
    }
    all.push("_design/dd".to_string());
    let docs: Vec<Value> = all.iter().map(|id| json!({"_id": id})).collect();
    bulk(&node, &db, docs);
    let mut sorted = all.clone();
    sorted.sort(); // Rust String order is UTF-8 byte order.

    let (s, b) = node.get(&format!("/{db}/_all_docs"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["total_rows"], all.len());
    assert_eq!(ids(&b), sorted);
    // The design doc sorts by bytes: after upper case, before lower case.
    let pos = sorted.iter().position(|i| i == "_design/dd").expect("ddoc");
    assert!(sorted[pos - 1].starts_with('Z') && sorted[pos + 1].starts_with('a'));

    let (_, b) = node.get(&format!("/{db}/_all_docs?descending=true"));
    let mut rev = sorted.clone();
    rev.reverse();
    assert_eq!(ids(&b), rev);

    // Paging with startkey/skip returns consecutive slices with matching offsets.
    let mut seen = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let q = match &start {
            None => "limit=25".to_string(),
            Some(k) => format!(
                "limit=25&skip=1&startkey={}",
                urlencode(&serde_json::to_string(k).expect("json"))
            ),
        };
        let (s, b) = node.get(&format!("/{db}/_all_docs?{q}"));
        assert_eq!(s, 200, "{q}: {b}");
        let page = ids(&b);
        if page.is_empty() {
            break;
        }
        assert_eq!(b["offset"], seen.len(), "{q}");
        seen.extend(page.iter().cloned());
        start = page.last().cloned();
    }
    assert_eq!(seen, sorted);

    // A start key in the middle: offset is the number of ids before it.
    let mid = &sorted[77];
    let (_, b) = node.get(&format!(
        "/{db}/_all_docs?limit=3&startkey={}",
        urlencode(&serde_json::to_string(mid).expect("json"))
    ));
    assert_eq!(b["offset"], 77);
    assert_eq!(ids(&b), sorted[77..80].to_vec());
}

#[test]
fn design_docs_listing() {
    let node = Node::start();
    let db = node.create_db("ad-design");
    let ddoc = json!({"views": {"v": {"map": "function(doc){emit(doc._id, 1)}"}}});
    let r1 = put_doc(&node, &db, "_design/one", ddoc.clone());
    let r2 = put_doc(&node, &db, "_design/two", ddoc.clone());
    put_doc(&node, &db, "A", json!({}));
    put_doc(&node, &db, "a", json!({}));
    put_doc(&node, &db, "b", json!({}));

    // Design docs are part of _all_docs.
    let (_, b) = node.get(&format!("/{db}/_all_docs"));
    assert_eq!(
        ids(&b),
        strs(&["A", "_design/one", "_design/two", "a", "b"])
    );
    assert_eq!(b["total_rows"], 5);

    let (s, b) = node.get(&format!("/{db}/_design_docs"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"total_rows": 2, "offset": 1, "rows": [
            {"id": "_design/one", "key": "_design/one", "value": {"rev": r1}},
            {"id": "_design/two", "key": "_design/two", "value": {"rev": r2}},
        ]})
    );
    let (_, b) = node.get(&format!("/{db}/_design_docs?descending=true"));
    assert_eq!(ids(&b), strs(&["_design/two", "_design/one"]));
    let (_, b) = node.get(&format!("/{db}/_design_docs?include_docs=true&limit=1"));
    assert_eq!(b["rows"][0]["doc"]["_id"], "_design/one");
    assert_eq!(b["rows"][0]["doc"]["views"], ddoc["views"]);
    assert_eq!(b["rows"].as_array().map(Vec::len), Some(1));
    let (_, b) = node.get(&format!("/{db}/_design_docs?startkey=%22_design%2Ftwo%22"));
    assert_eq!(ids(&b), strs(&["_design/two"]));

    // keys: non-design keys are dropped, missing design keys are errors.
    let (s, b) = node.post(
        &format!("/{db}/_design_docs"),
        json!({"keys": ["_design/two", "a", "_design/nope"]}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"total_rows": 2, "offset": null, "rows": [
            {"id": "_design/two", "key": "_design/two", "value": {"rev": r2}},
            {"key": "_design/nope", "error": "not_found"},
        ]})
    );
}

#[test]
fn local_docs_listing() {
    let node = Node::start();
    let db = node.create_db("ad-local");
    put_doc(&node, &db, "regular", json!({}));
    let (s, b) = node.put(&format!("/{db}/_local/b"), json!({"v": "b"}));
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["rev"], "0-1");
    let (s, b) = node.put(&format!("/{db}/_local/a"), json!({"v": "a"}));
    assert_eq!(s, 201, "{b}");
    let (s, b) = node.put(
        &format!("/{db}/_local/a"),
        json!({"_rev": "0-1", "v": "a2"}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["rev"], "0-2");

    let (s, b) = node.get(&format!("/{db}/_local_docs"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"total_rows": null, "offset": null, "rows": [
            {"id": "_local/a", "key": "_local/a", "value": {"rev": "0-2"}},
            {"id": "_local/b", "key": "_local/b", "value": {"rev": "0-1"}},
        ]})
    );
    let (_, b) = node.get(&format!(
        "/{db}/_local_docs?include_docs=true&descending=true"
    ));
    assert_eq!(
        b["rows"],
        json!([
            {"id": "_local/b", "key": "_local/b", "value": {"rev": "0-1"},
             "doc": {"_id": "_local/b", "_rev": "0-1", "v": "b"}},
            {"id": "_local/a", "key": "_local/a", "value": {"rev": "0-2"},
             "doc": {"_id": "_local/a", "_rev": "0-2", "v": "a2"}},
        ])
    );
    let (_, b) = node.get(&format!("/{db}/_local_docs?limit=1&skip=1"));
    assert_eq!(ids(&b), strs(&["_local/b"]));

    // Local docs are not in _all_docs.
    let (_, b) = node.get(&format!("/{db}/_all_docs"));
    assert_eq!(ids(&b), strs(&["regular"]));
    assert_eq!(b["total_rows"], 1);

    // keys on _local_docs.
    let (s, b) = node.post(
        &format!("/{db}/_local_docs"),
        json!({"keys": ["_local/b", "_local/zz", "regular"]}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"total_rows": null, "offset": null, "rows": [
            {"id": "_local/b", "key": "_local/b", "value": {"rev": "0-1"}},
            {"key": "_local/zz", "error": "not_found"},
        ]})
    );
}

#[test]
fn multi_query_endpoint() {
    let node = Node::start();
    let (db, revs) = ten_docs(&node, "ad-queries");
    let (s, b) = node.post(
        &format!("/{db}/_all_docs/queries"),
        json!({"queries": [
            {"keys": ["b", "nope"]},
            {"limit": 2, "skip": 3},
            {"startkey": "h", "include_docs": true, "limit": 1},
            {"descending": true, "limit": 1},
        ]}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"results": [
            {"total_rows": 10, "offset": null, "rows": [
                {"id": "b", "key": "b", "value": {"rev": revs[1]}},
                {"key": "nope", "error": "not_found"},
            ]},
            {"total_rows": 10, "offset": 3, "rows": [
                {"id": "d", "key": "d", "value": {"rev": revs[3]}},
                {"id": "e", "key": "e", "value": {"rev": revs[4]}},
            ]},
            {"total_rows": 10, "offset": 7, "rows": [
                {"id": "h", "key": "h", "value": {"rev": revs[7]},
                 "doc": {"_id": "h", "_rev": revs[7], "n": "h"}},
            ]},
            {"total_rows": 10, "offset": 0, "rows": [
                {"id": "j", "key": "j", "value": {"rev": revs[9]}},
            ]},
        ]})
    );
    // _design_docs/queries exists too.
    let (s, b) = node.post(
        &format!("/{db}/_design_docs/queries"),
        json!({"queries": [{}]}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["results"][0]["rows"], json!([]));

    let (s, b) = node.post(&format!("/{db}/_all_docs/queries"), json!({"nope": []}));
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "POST body must include `queries` parameter."})
    );
    let (s, b) = node.get(&format!("/{db}/_all_docs/queries"));
    assert_eq!(s, 405, "{b}");
    assert_eq!(b["error"], "method_not_allowed");
}

/// Listings longer than one shard read batch (1,000 rows) come out whole, merged
/// in order across ranges, with skip, limit and ranges that cross batch edges.
#[test]
fn long_listings_stream_across_batches() {
    let node = Node::start();
    let db = create_q(&node, "long_all_docs", 3);
    let mut all: Vec<String> = (0..2600).map(|i| format!("d{i:05}")).collect();
    for chunk in all.chunks(1000) {
        let docs: Vec<Value> = chunk.iter().map(|id| json!({"_id": id, "v": 1})).collect();
        bulk(&node, &db, docs);
    }
    all.sort();

    let (s, b) = node.get(&format!("/{db}/_all_docs"));
    assert_eq!(s, 200);
    assert_eq!(b["total_rows"], 2600);
    assert_eq!(b["offset"], 0);
    assert_eq!(ids(&b), all);

    let (_, b) = node.get(&format!("/{db}/_all_docs?skip=1100&limit=1300"));
    assert_eq!(ids(&b), all[1100..2400].to_vec());
    assert_eq!(b["offset"], 1100);

    let (_, b) = node.get(&format!(
        "/{db}/_all_docs?descending=true&startkey=%22d02000%22&endkey=%22d00500%22&include_docs=true"
    ));
    let mut expected: Vec<String> = all[500..=2000].to_vec();
    expected.reverse();
    assert_eq!(ids(&b), expected);
    assert_eq!(b["offset"], 599);
    assert!(b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["doc"]["v"] == 1 && r["doc"]["_id"] == r["id"]));

    // The raw body keeps couch_mrview_http's framing however it is chunked.
    let text = node
        .req("GET", &format!("/{db}/_all_docs?limit=1500"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.starts_with("{\"total_rows\":2600,\"offset\":0,\"rows\":[\r\n{\"id\":\"d00000\""));
    assert!(text.ends_with("}\r\n]}\n"), "{}", &text[text.len() - 40..]);
    assert_eq!(text.matches(",\r\n{\"id\"").count(), 1499);
}
