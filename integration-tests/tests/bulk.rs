//! `_bulk_docs` and `_bulk_get`, checked against CouchDB 3.x (`chttpd_db`,
//! `fabric_doc_update`).

use base64::Engine;
use chaise_integration_tests::helpers::hex_rev;
use chaise_integration_tests::{call, Node};
use serde_json::{json, Value};

fn bulk_docs(node: &Node, db: &str, body: Value) -> (u16, Value) {
    node.post(&format!("/{db}/_bulk_docs"), body)
}

fn bulk_get(node: &Node, db: &str, query: &str, docs: Value) -> (u16, Value) {
    node.post(&format!("/{db}/_bulk_get{query}"), json!({ "docs": docs }))
}

/// Raw POST with a content type and body text.
fn raw_post(node: &Node, path: &str, ctype: &str, body: &str) -> (u16, Value) {
    call(
        node.req("POST", path)
            .header("content-type", ctype)
            .body(body.to_string()),
    )
}

#[test]
fn results_in_order_with_generated_ids() {
    let node = Node::start();
    let db = node.create_db("bulk-order");
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"docs": [
            {"_id": "z", "v": 1},
            {"v": 2},
            {"_id": "a", "v": 3},
            {"v": 4},
        ]}),
    );
    assert_eq!(s, 201, "{b}");
    let items = b.as_array().expect("array");
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["id"], "z");
    assert_eq!(items[2]["id"], "a");
    for item in items {
        let keys: Vec<&String> = item.as_object().expect("object").keys().collect();
        assert_eq!(keys.len(), 3, "{item}");
        assert_eq!(item["ok"], true, "{item}");
        assert!(
            item["rev"].as_str().expect("rev").starts_with("1-"),
            "{item}"
        );
    }
    // Generated ids: 32 lowercase hex characters, distinct.
    let g1 = items[1]["id"].as_str().expect("id");
    let g2 = items[3]["id"].as_str().expect("id");
    for g in [g1, g2] {
        assert_eq!(g.len(), 32, "{g}");
        assert!(
            g.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{g}"
        );
    }
    assert_ne!(g1, g2);
    // Every document was stored with its body and rev.
    for (i, item) in items.iter().enumerate() {
        let id = item["id"].as_str().expect("id");
        let (s, doc) = node.get(&format!("/{db}/{id}"));
        assert_eq!(s, 200, "{doc}");
        assert_eq!(doc["_rev"], item["rev"]);
        assert_eq!(doc["v"], i + 1);
    }
    // An empty batch.
    let (s, b) = bulk_docs(&node, &db, json!({"docs": []}));
    assert_eq!(s, 201, "{b}");
    assert_eq!(b, json!([]));
}

#[test]
fn conflicts_updates_and_deletes() {
    let node = Node::start();
    let db = node.create_db("bulk-conflict");
    let (s, b) = node.put(&format!("/{db}/x"), json!({"v": 1}));
    assert_eq!(s, 201);
    let rx = b["rev"].as_str().expect("rev").to_string();

    let conflict =
        |id: &str| json!({"id": id, "error": "conflict", "reason": "Document update conflict."});
    // Creating an existing doc without _rev conflicts; others in the batch succeed.
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"docs": [
            {"_id": "new1"},
            {"_id": "x", "v": 2},
            {"_id": "dup", "n": 1},
            {"_id": "dup", "n": 2},
        ]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b[0]["ok"], true);
    assert_eq!(b[1], conflict("x"));
    // Two edits of the same new id in one batch: the first wins.
    assert_eq!(b[2]["ok"], true, "{b}");
    assert_eq!(b[3], conflict("dup"));
    let (_, dup) = node.get(&format!("/{db}/dup"));
    assert_eq!(dup["n"], 1);

    // Update with the current rev; a stale rev conflicts.
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"docs": [{"_id": "x", "_rev": rx, "v": 2}]}),
    );
    assert_eq!(s, 201, "{b}");
    let rx2 = b[0]["rev"].as_str().expect("rev").to_string();
    assert!(rx2.starts_with("2-"), "{b}");
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"docs": [{"_id": "x", "_rev": rx, "v": 3}]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b, json!([conflict("x")]));

    // Delete with _deleted.
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"docs": [{"_id": "x", "_rev": rx2, "_deleted": true}]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b[0]["ok"], true);
    assert_eq!(b[0]["id"], "x");
    let rx3 = b[0]["rev"].as_str().expect("rev").to_string();
    assert!(rx3.starts_with("3-"), "{b}");
    let (s, b) = node.get(&format!("/{db}/x"));
    assert_eq!(s, 404);
    assert_eq!(b, json!({"error": "not_found", "reason": "deleted"}));
    let (_, all) = node.get(&format!("/{db}/_all_docs"));
    let ids: Vec<&str> = all["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["dup", "new1"]);
    // Recreating over the tombstone without a rev is allowed.
    let (s, b) = bulk_docs(&node, &db, json!({"docs": [{"_id": "x", "v": 9}]}));
    assert_eq!(s, 201, "{b}");
    assert!(b[0]["rev"].as_str().expect("rev").starts_with("4-"), "{b}");
}

#[test]
fn new_edits_false_merges_revisions() {
    let node = Node::start();
    let db = node.create_db("bulk-replicated");
    let r1 = hex_rev(1, '1');
    let r2a = hex_rev(2, 'a');
    let r2b = hex_rev(2, 'b');
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"new_edits": false, "docs": [
            {"_id": "d", "_rev": r2a, "_revisions": {"start": 2, "ids": ["a".repeat(32), "1".repeat(32)]}, "side": "a"},
        ]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b, json!([]));
    // A second branch from the same parent: a conflict, not an error.
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"new_edits": false, "docs": [
            {"_id": "d", "_rev": r2b, "_revisions": {"start": 2, "ids": ["b".repeat(32), "1".repeat(32)]}, "side": "b"},
        ]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b, json!([]));
    // Sending an existing revision again is a no-op.
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"new_edits": false, "docs": [{"_id": "d", "_rev": r2a, "side": "again"}]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b, json!([]));

    let (s, doc) = node.get(&format!("/{db}/d?conflicts=true&revs=true"));
    assert_eq!(s, 200, "{doc}");
    // The higher rev id wins; the other leaf is a conflict.
    assert_eq!(doc["_rev"], r2b);
    assert_eq!(doc["side"], "b");
    assert_eq!(doc["_conflicts"], json!([r2a]));
    assert_eq!(
        doc["_revisions"],
        json!({"start": 2, "ids": ["b".repeat(32), "1".repeat(32)]})
    );
    // The shared parent is known.
    let (s, revs) = node.post(
        &format!("/{db}/_revs_diff"),
        json!({"d": [r1, r2a, r2b, hex_rev(3, 'c')]}),
    );
    assert_eq!(s, 200, "{revs}");
    assert_eq!(revs["d"]["missing"], json!([hex_rev(3, 'c')]));

    // Only _rev (no _revisions) is enough.
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"new_edits": false, "docs": [{"_id": "e", "_rev": hex_rev(5, 'e')}]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b, json!([]));
    let (_, e) = node.get(&format!("/{db}/e"));
    assert_eq!(e["_rev"], hex_rev(5, 'e'));

    // Without _rev and _revisions the whole request fails.
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"new_edits": false, "docs": [{"_id": "f"}]}),
    );
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request",
               "reason": "When `new_edits: false`, the document needs `_rev` or `_revisions` specified"})
    );
}

#[test]
fn request_errors() {
    let node = Node::start();
    let db = node.create_db("bulk-errors");
    let path = format!("/{db}/_bulk_docs");
    let (s, b) = node.post(&path, json!({"nodocs": []}));
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "POST body must include `docs` parameter."})
    );
    let (s, b) = node.post(&path, json!({"docs": {"a": 1}}));
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "`docs` parameter must be an array."})
    );
    let (s, b) = node.post(&path, json!({"docs": [], "new_edits": "no"}));
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "`new_edits` parameter must be a boolean."})
    );
    let (s, b) = raw_post(&node, &path, "text/plain", r#"{"docs":[{"_id":"a"}]}"#);
    assert_eq!(s, 415, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_content_type", "reason": "Content-Type must be application/json"})
    );
    let (s, b) = raw_post(&node, &path, "application/json", r#"{"docs":[{"_id":"a"}"#);
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "invalid UTF-8 JSON"})
    );
    let (s, b) = raw_post(&node, &path, "application/json", "[]");
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "Request body must be a JSON object"})
    );
    // An illegal id fails the whole request.
    let (s, b) = node.post(&path, json!({"docs": [{"_id": "ok"}, {"_id": "_bad"}]}));
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "illegal_docid", "reason": "Only reserved document ids may start with underscore."})
    );
    let (s, b) = node.get(&path);
    assert_eq!(s, 405, "{b}");
    assert_eq!(b["error"], "method_not_allowed");
    // Nothing was written by the failed requests.
    let (_, info) = node.get(&format!("/{db}"));
    assert_eq!(info["doc_count"], 0, "{info}");
}

#[test]
fn all_or_nothing_is_not_implemented() {
    let node = Node::start();
    let db = node.create_db("bulk-aon");
    let (s, b) = node.put(&format!("/{db}/b"), json!({}));
    assert_eq!(s, 201);
    let rb = b["rev"].as_str().expect("rev").to_string();
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"all_or_nothing": true, "docs": [
            {"_id": "a", "v": 1},
            {"_id": "b", "_rev": rb, "v": 2},
        ]}),
    );
    assert_eq!(s, 417, "{b}");
    assert_eq!(
        b,
        json!([
            {"id": "a", "rev": "0-", "error": "not_implemented", "reason": "all_or_nothing is not supported"},
            {"id": "b", "rev": rb, "error": "not_implemented", "reason": "all_or_nothing is not supported"},
        ])
    );
    let (s, _) = node.get(&format!("/{db}/a"));
    assert_eq!(s, 404, "nothing may be written");
    let (_, doc) = node.get(&format!("/{db}/b"));
    assert_eq!(doc["_rev"], rb);
}

#[test]
fn local_docs_in_bulk() {
    let node = Node::start();
    let db = node.create_db("bulk-local");
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"docs": [{"_id": "_local/cp", "seq": 1}, {"_id": "plain"}]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b[0], json!({"ok": true, "id": "_local/cp", "rev": "0-1"}));
    assert_eq!(b[1]["ok"], true);
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"docs": [{"_id": "_local/cp", "_rev": "0-1", "seq": 2}]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b, json!([{"ok": true, "id": "_local/cp", "rev": "0-2"}]));
    let (s, doc) = node.get(&format!("/{db}/_local/cp"));
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc, json!({"_id": "_local/cp", "_rev": "0-2", "seq": 2}));
    // A stale local rev conflicts.
    let (s, b) = bulk_docs(
        &node,
        &db,
        json!({"docs": [{"_id": "_local/cp", "_rev": "0-1", "seq": 3}]}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b,
        json!([{"id": "_local/cp", "error": "conflict", "reason": "Document update conflict."}])
    );
    // Local docs are neither counted nor in _changes.
    let (_, info) = node.get(&format!("/{db}"));
    assert_eq!(info["doc_count"], 1);
    let (_, ch) = node.get(&format!("/{db}/_changes"));
    let ids: Vec<&str> = ch["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["plain"]);
}

#[test]
fn thousand_doc_batch() {
    let node = Node::start();
    let (s, b) = node.json("PUT", "/bulk-1000?q=4", None);
    assert_eq!(s, 201, "{b}");
    let docs: Vec<Value> = (0..1000)
        .map(|i| json!({"_id": format!("doc-{i:04}"), "i": i, "pad": "x".repeat(100)}))
        .collect();
    let (s, b) = bulk_docs(&node, "bulk-1000", json!({ "docs": docs }));
    assert_eq!(s, 201);
    let items = b.as_array().expect("array");
    assert_eq!(items.len(), 1000);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["id"], format!("doc-{i:04}"), "order");
        assert_eq!(item["ok"], true, "{item}");
    }
    let (_, info) = node.get("/bulk-1000");
    assert_eq!(info["doc_count"], 1000, "{info}");
    let (_, all) = node.get("/bulk-1000/_all_docs?limit=0");
    assert_eq!(all["total_rows"], 1000);
    let (_, d) = node.get("/bulk-1000/doc-0777");
    assert_eq!(d["i"], 777);
    let (_, ch) = node.get("/bulk-1000/_changes");
    assert_eq!(ch["results"].as_array().map(Vec::len), Some(1000));
}

/// A doc `d` with revisions 1 → 2 → 3 plus a conflicting deleted branch, and a
/// doc `att` with an attachment. Returns (rev1, rev2, rev3, deleted leaf).
fn bulk_get_fixture(node: &Node, db: &str) -> (String, String, String, String) {
    let (_, b) = node.put(&format!("/{db}/d"), json!({"v": 1}));
    let r1 = b["rev"].as_str().expect("rev").to_string();
    let (_, b) = node.put(&format!("/{db}/d"), json!({"_rev": r1, "v": 2}));
    let r2 = b["rev"].as_str().expect("rev").to_string();
    let (_, b) = node.put(&format!("/{db}/d"), json!({"_rev": r2, "v": 3}));
    let r3 = b["rev"].as_str().expect("rev").to_string();
    // A deleted sibling of r2 on r1.
    let r1_hash = r1.split_once('-').expect("rev").1.to_string();
    let del = hex_rev(2, '0');
    let (s, b) = bulk_docs(
        node,
        db,
        json!({"new_edits": false, "docs": [
            {"_id": "d", "_rev": del, "_deleted": true,
             "_revisions": {"start": 2, "ids": ["0".repeat(32), r1_hash]}},
        ]}),
    );
    assert_eq!(s, 201, "{b}");
    (r1, r2, r3, del)
}

#[test]
fn bulk_get_revisions() {
    let node = Node::start();
    let db = node.create_db("bulk-get");
    let (r1, _r2, r3, del) = bulk_get_fixture(&node, &db);

    // A specific revision.
    let (s, b) = bulk_get(&node, &db, "", json!([{"id": "d", "rev": r3}]));
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"results": [{"id": "d", "docs": [{"ok": {"_id": "d", "_rev": r3, "v": 3}}]}]})
    );

    // Without rev: every leaf, deleted ones included.
    let (s, b) = bulk_get(&node, &db, "", json!([{"id": "d"}]));
    assert_eq!(s, 200, "{b}");
    let docs = b["results"][0]["docs"].as_array().expect("docs");
    assert_eq!(docs.len(), 2, "{b}");
    let mut got: Vec<Value> = docs.iter().map(|d| d["ok"].clone()).collect();
    got.sort_by_key(|d| d["_rev"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        got,
        vec![
            json!({"_id": "d", "_rev": del, "_deleted": true}),
            json!({"_id": "d", "_rev": r3, "v": 3}),
        ]
    );

    // revs=true adds _revisions.
    let (s, b) = bulk_get(&node, &db, "?revs=true", json!([{"id": "d", "rev": r3}]));
    assert_eq!(s, 200, "{b}");
    let doc = &b["results"][0]["docs"][0]["ok"];
    let ids: Vec<String> = doc["_revisions"]["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|i| i.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(doc["_revisions"]["start"], 3, "{doc}");
    assert_eq!(ids.len(), 3);
    assert_eq!(format!("3-{}", ids[0]), r3);
    assert_eq!(format!("1-{}", ids[2]), r1);

    // Unknown doc (with and without rev), unknown rev of a known doc, order kept.
    let missing_rev = hex_rev(9, 'f');
    let (s, b) = bulk_get(
        &node,
        &db,
        "",
        json!([
            {"id": "nope"},
            {"id": "nope", "rev": r1},
            {"id": "d", "rev": missing_rev},
        ]),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["results"][0],
        json!({"id": "nope", "docs": [{"error": {"id": "nope", "rev": "undefined", "error": "not_found", "reason": "missing"}}]})
    );
    assert_eq!(
        b["results"][1],
        json!({"id": "nope", "docs": [{"error": {"id": "nope", "rev": r1, "error": "not_found", "reason": "missing"}}]})
    );
    assert_eq!(
        b["results"][2],
        json!({"id": "d", "docs": [{"error": {"id": "d", "rev": missing_rev, "error": "not_found", "reason": "missing"}}]})
    );
    assert_eq!(b["results"].as_array().map(Vec::len), Some(3));

    // latest=true replaces a revision by the leaves under it.
    let (s, b) = bulk_get(&node, &db, "?latest=true", json!([{"id": "d", "rev": r1}]));
    assert_eq!(s, 200, "{b}");
    let mut revs: Vec<String> = b["results"][0]["docs"]
        .as_array()
        .expect("docs")
        .iter()
        .map(|d| d["ok"]["_rev"].as_str().unwrap_or_default().to_string())
        .collect();
    revs.sort();
    let mut want = vec![del.clone(), r3.clone()];
    want.sort();
    assert_eq!(revs, want);
}

#[test]
fn bulk_get_attachments() {
    let node = Node::start();
    let db = node.create_db("bulk-get-att");
    let data = b"hello attachment";
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let (s, b) = node.put(
        &format!("/{db}/att"),
        json!({"k": 1, "_attachments": {"a.txt": {"content_type": "text/plain", "data": b64}}}),
    );
    assert_eq!(s, 201, "{b}");
    let rev = b["rev"].as_str().expect("rev").to_string();

    let (s, b) = bulk_get(&node, &db, "", json!([{"id": "att", "rev": rev}]));
    assert_eq!(s, 200, "{b}");
    let att = &b["results"][0]["docs"][0]["ok"]["_attachments"]["a.txt"];
    assert_eq!(att["stub"], true, "{b}");
    assert_eq!(att["length"], data.len());
    assert!(att.get("data").is_none());

    let (s, b) = bulk_get(
        &node,
        &db,
        "?attachments=true",
        json!([{"id": "att", "rev": rev}]),
    );
    assert_eq!(s, 200, "{b}");
    let att = &b["results"][0]["docs"][0]["ok"]["_attachments"]["a.txt"];
    assert_eq!(att["data"], b64, "{b}");
    assert_eq!(att["content_type"], "text/plain");
    assert_eq!(att["revpos"], 1);
    assert!(att.get("stub").is_none(), "{att}");

    // atts_since at the current rev: the attachment is unchanged, so it is a stub.
    let (s, b) = bulk_get(
        &node,
        &db,
        "",
        json!([{"id": "att", "rev": rev, "atts_since": [rev]}]),
    );
    assert_eq!(s, 200, "{b}");
    let att = &b["results"][0]["docs"][0]["ok"]["_attachments"]["a.txt"];
    assert_eq!(att["stub"], true, "{b}");
}

#[test]
fn bulk_get_request_errors() {
    let node = Node::start();
    let db = node.create_db("bulk-get-err");
    let (s, _) = node.put(&format!("/{db}/a"), json!({}));
    assert_eq!(s, 201);
    let path = format!("/{db}/_bulk_get");
    let (s, b) = node.post(&path, json!({"nodocs": []}));
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "Missing JSON list of 'docs'."})
    );
    let (s, b) = raw_post(&node, &path, "text/plain", r#"{"docs":[{"id":"a"}]}"#);
    assert_eq!(s, 415, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_content_type", "reason": "Content-Type must be application/json"})
    );
    let (s, b) = raw_post(&node, &path, "application/json", "{\"docs\":");
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "invalid UTF-8 JSON"})
    );
    let (s, b) = node.get(&path);
    assert_eq!(s, 405, "{b}");
    assert_eq!(b["error"], "method_not_allowed");
    // Per-document query parameters are refused in the query string.
    let (s, b) = node.post(&format!("{path}?rev=1-abc"), json!({"docs": [{"id": "a"}]}));
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b,
        json!({"error": "bad_request", "reason": "\"rev\" query parameter is not acceptable"})
    );
    // Per-item errors.
    let (s, b) = node.post(
        &path,
        json!({"docs": [{"rev": "1-abc"}, {"id": "a", "rev": "bogus"}, {"id": "_bad"}]}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"results": [
            {"id": null, "docs": [{"error": {"id": null, "rev": null, "error": "bad_request", "reason": "document id missed"}}]},
            {"id": "a", "docs": [{"error": {"id": "a", "rev": "bogus", "error": "bad_request", "reason": "Invalid rev format"}}]},
            {"id": "_bad", "docs": [{"error": {"id": "_bad", "rev": null, "error": "illegal_docid", "reason": "Only reserved document ids may start with underscore."}}]},
        ]})
    );
}

/// Items read as `chttpd_db:bulk_get_parse_arg` reads them, shared by the JSON
/// and multipart answers: an empty `atts_since` is as none, a bad one or a
/// non-string `rev` refuses the item, and error objects come in the key order
/// jiffy gives CouchDB's maps.
#[test]
fn bulk_get_item_parsing() {
    let node = Node::start();
    let db = node.create_db("bulk-get-items");
    let data = b"hello attachment";
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let (s, b) = node.put(
        &format!("/{db}/att"),
        json!({"_attachments": {"a.txt": {"content_type": "text/plain", "data": b64}}}),
    );
    assert_eq!(s, 201, "{b}");
    let rev = b["rev"].as_str().expect("rev").to_string();
    let (s, b) = bulk_get(
        &node,
        &db,
        "",
        json!([
            {"id": "att", "rev": rev, "atts_since": []},
            {"id": "att", "rev": rev, "atts_since": "nope"},
            {"id": "att", "rev": rev, "atts_since": ["bad"]},
            {"id": "att", "rev": 42},
            {},
            "att",
        ]),
    );
    assert_eq!(s, 200, "{b}");
    let att = &b["results"][0]["docs"][0]["ok"]["_attachments"]["a.txt"];
    assert_eq!(att["stub"], true, "{b}");
    let error = |i: usize| b["results"][i]["docs"][0]["error"].clone();
    assert_eq!(
        error(1),
        json!({"rev": "nope", "reason": "att_since value must be array of revs.",
               "id": "att", "error": "bad_request"})
    );
    assert_eq!(
        error(2),
        json!({"rev": "bad", "reason": "Invalid rev format", "id": "att", "error": "bad_request"})
    );
    assert_eq!(
        error(3),
        json!({"rev": 42, "reason": "Invalid rev format", "id": "att", "error": "bad_request"})
    );
    for i in [4, 5] {
        assert_eq!(b["results"][i]["id"], Value::Null);
        assert_eq!(
            error(i),
            json!({"rev": null, "reason": "document must be a JSON object", "id": null,
                   "error": "bad_request"})
        );
    }
    // Key order, as CouchDB writes it.
    let (_, b) = bulk_get(&node, &db, "", json!([{"id": "nope"}]));
    assert_eq!(
        serde_json::to_string(&b).expect("json"),
        r#"{"results":[{"id":"nope","docs":[{"error":{"rev":"undefined","reason":"missing","id":"nope","error":"not_found"}}]}]}"#
    );
}
