//! Documents and revisions over HTTP, checked against CouchDB 3.x behaviour
//! (`chttpd_db.erl`, `couch_doc.erl`, `couch_db.erl`, `fabric_doc_open_revs.erl`):
//! status codes, error/reason strings, headers and the exact JSON (key order included).

use chaise_integration_tests::helpers::{assert_exact, keys, rev_of, row_ids};
use chaise_integration_tests::{raw, Node, NodeOptions, Raw};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `N-<32 lowercase hex>`.
#[track_caller]
fn assert_rev(rev: &str, gen: u64) {
    let (pos, id) = rev.split_once('-').expect("rev has a dash");
    assert_eq!(pos, gen.to_string(), "generation of {rev}");
    assert_eq!(id.len(), 32, "rev id length of {rev}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "rev id of {rev} is lowercase hex"
    );
}

fn rev_id(rev: &str) -> String {
    rev.split_once('-').map(|(_, id)| id.to_string()).unwrap()
}

fn not_found(reason: &str) -> Value {
    json!({"error": "not_found", "reason": reason})
}

fn conflict() -> Value {
    json!({"error": "conflict", "reason": "Document update conflict."})
}

fn bad_request(reason: &str) -> Value {
    json!({"error": "bad_request", "reason": reason})
}

/// PUT raw bytes as JSON.
fn put_raw(node: &Node, path: &str, body: &[u8]) -> Raw {
    raw(node
        .req("PUT", path)
        .header("content-type", "application/json")
        .body(body.to_vec()))
}

fn accept_json(node: &Node, path: &str) -> Raw {
    raw(node.req("GET", path).header("accept", "application/json"))
}

/// Writes replicated revisions (`new_edits=false`) through `_bulk_docs`.
fn bulk_replicated(node: &Node, db: &str, docs: Value) {
    let (s, b) = node.post(
        &format!("/{db}/_bulk_docs"),
        json!({"docs": docs, "new_edits": false}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b, json!([]));
}

#[test]
fn put_get_head_delete_lifecycle() {
    let node = Node::start();
    let db = node.create_db("docs");

    let r = raw(node
        .req("PUT", &format!("/{db}/doc1"))
        .header("content-type", "application/json")
        .body(r#"{"a":1,"b":"x","c":{"z":1,"y":[true,null]}}"#));
    assert_eq!(r.status, 201);
    let b = r.json();
    let r1 = rev_of(&b);
    assert_rev(&r1, 1);
    assert_exact(&b, &json!({"ok": true, "id": "doc1", "rev": r1}));
    assert_eq!(r.header("etag"), Some(format!("\"{r1}\"")));
    assert_eq!(
        r.header("location"),
        Some(format!("http://127.0.0.1:{}/{db}/doc1", node.port))
    );

    let r = raw(node.req("GET", &format!("/{db}/doc1")));
    assert_eq!(r.status, 200);
    assert_exact(
        &r.json(),
        &json!({"_id": "doc1", "_rev": r1, "a": 1, "b": "x", "c": {"z": 1, "y": [true, null]}}),
    );
    assert_eq!(r.header("etag"), Some(format!("\"{r1}\"")));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    let r = raw(node.req("HEAD", &format!("/{db}/doc1")));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(format!("\"{r1}\"")));
    assert!(r.body.is_empty());

    // Update with the body's _rev.
    let (s, b) = node.put(&format!("/{db}/doc1"), json!({"_rev": r1, "a": 2}));
    assert_eq!(s, 201, "{b}");
    let r2 = rev_of(&b);
    assert_rev(&r2, 2);
    let (s, b) = node.get(&format!("/{db}/doc1"));
    assert_eq!(s, 200);
    assert_exact(&b, &json!({"_id": "doc1", "_rev": r2, "a": 2}));

    // DELETE answers 200 with the tombstone's rev and its ETag, no Location.
    let r = raw(node.req("DELETE", &format!("/{db}/doc1?rev={r2}")));
    assert_eq!(r.status, 200);
    let b = r.json();
    let r3 = rev_of(&b);
    assert_rev(&r3, 3);
    assert_exact(&b, &json!({"ok": true, "id": "doc1", "rev": r3}));
    assert_eq!(r.header("etag"), Some(format!("\"{r3}\"")));
    assert_eq!(r.header("location"), None);

    let (s, b) = node.get(&format!("/{db}/doc1"));
    assert_eq!((s, b), (404, not_found("deleted")));
    let r = raw(node.req("HEAD", &format!("/{db}/doc1")));
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());

    // The tombstone itself can be read by rev.
    let (s, b) = node.get(&format!("/{db}/doc1?rev={r3}"));
    assert_eq!(s, 200);
    assert_exact(&b, &json!({"_id": "doc1", "_rev": r3, "_deleted": true}));

    let (s, b) = node.get(&format!("/{db}/never-existed"));
    assert_eq!((s, b), (404, not_found("missing")));
    let r = raw(node.req("HEAD", &format!("/{db}/never-existed")));
    assert_eq!(r.status, 404);
}

#[test]
fn url_id_wins_over_body_id() {
    let node = Node::start();
    let db = node.create_db("urlid");
    let (s, b) = node.put(&format!("/{db}/a"), json!({"_id": "b", "x": 1}));
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["id"], "a");
    let (s, _) = node.get(&format!("/{db}/b"));
    assert_eq!(s, 404);
    let (s, b) = node.get(&format!("/{db}/a"));
    assert_eq!(s, 200);
    assert_exact(&b, &json!({"_id": "a", "_rev": b["_rev"], "x": 1}));
}

#[test]
fn deletes_and_deleted_writes_answer_200() {
    let node = Node::start();
    let db = node.create_db("deletes");

    // Deleting what does not exist: 404 missing, with or without a rev.
    let (s, b) = node.delete(&format!("/{db}/nope"));
    assert_eq!((s, b), (404, not_found("missing")));
    let (s, b) = node.delete(&format!(
        "/{db}/nope?rev=1-967a00dff5e02add41819138abb3284d"
    ));
    assert_eq!((s, b), (404, not_found("missing")));

    let (_, b) = node.put(&format!("/{db}/d"), json!({"v": 1}));
    let r1 = rev_of(&b);
    // Without any rev: conflict.
    let (s, b) = node.delete(&format!("/{db}/d"));
    assert_eq!((s, b), (409, conflict()));
    // With If-Match instead of ?rev=.
    let r = raw(node
        .req("DELETE", &format!("/{db}/d"))
        .header("if-match", format!("\"{r1}\"")));
    assert_eq!(r.status, 200);
    let r2 = rev_of(&r.json());
    assert_rev(&r2, 2);
    // Deleting a deleted document: 404 deleted.
    let (s, b) = node.delete(&format!("/{db}/d?rev={r2}"));
    assert_eq!((s, b), (404, not_found("deleted")));

    // A stale rev on a live doc conflicts.
    let (_, b) = node.put(&format!("/{db}/e"), json!({"v": 1}));
    let e1 = rev_of(&b);
    let (_, b) = node.put(&format!("/{db}/e"), json!({"_rev": e1, "v": 2}));
    let e2 = rev_of(&b);
    let (s, b) = node.delete(&format!("/{db}/e?rev={e1}"));
    assert_eq!((s, b), (409, conflict()));

    // PUT with _deleted:true answers 200, not 201; the tombstone may carry fields.
    let (s, b) = node.put(
        &format!("/{db}/e"),
        json!({"_rev": e2, "_deleted": true, "why": "gone"}),
    );
    assert_eq!(s, 200, "{b}");
    let e3 = rev_of(&b);
    assert_rev(&e3, 3);
    assert_exact(&b, &json!({"ok": true, "id": "e", "rev": e3}));
    let (s, b) = node.get(&format!("/{db}/e"));
    assert_eq!((s, b), (404, not_found("deleted")));
    // CouchDB puts `_deleted` after the body fields.
    let (s, b) = node.get(&format!("/{db}/e?rev={e3}"));
    assert_eq!(s, 200);
    assert_exact(
        &b,
        &json!({"_id": "e", "_rev": e3, "why": "gone", "_deleted": true}),
    );

    // Writing a brand-new document as deleted: 200 and a tombstone at generation 1.
    let (s, b) = node.put(&format!("/{db}/born-dead"), json!({"_deleted": true}));
    assert_eq!(s, 200, "{b}");
    assert_rev(&rev_of(&b), 1);
    let (s, b) = node.get(&format!("/{db}/born-dead"));
    assert_eq!((s, b), (404, not_found("deleted")));
}

#[test]
fn recreating_a_deleted_doc_continues_the_rev_numbering() {
    let node = Node::start();
    let db = node.create_db("recreate");
    let (_, b) = node.put(&format!("/{db}/doc"), json!({"v": 1}));
    let r1 = rev_of(&b);
    let (s, b) = node.delete(&format!("/{db}/doc?rev={r1}"));
    assert_eq!(s, 200);
    let r2 = rev_of(&b);
    assert_rev(&r2, 2);
    // No rev needed over a tombstone; the new revision grows from it.
    let (s, b) = node.put(&format!("/{db}/doc"), json!({"v": 3}));
    assert_eq!(s, 201, "{b}");
    let r3 = rev_of(&b);
    assert_rev(&r3, 3);
    let (s, b) = node.get(&format!("/{db}/doc?revs=true"));
    assert_eq!(s, 200);
    assert_exact(
        &b,
        &json!({"_id": "doc", "_rev": r3, "v": 3,
                "_revisions": {"start": 3, "ids": [rev_id(&r3), rev_id(&r2), rev_id(&r1)]}}),
    );
    let (s, b) = node.get(&format!("/{db}/doc?revs_info=true"));
    assert_eq!(s, 200);
    let info = b["_revs_info"].as_array().unwrap();
    assert_eq!(info.len(), 3);
    assert_eq!(info[0], json!({"rev": r3, "status": "available"}));
    assert_eq!(info[1], json!({"rev": r2, "status": "deleted"}));
    assert_eq!(info[2]["rev"], r1);
}

#[test]
fn if_none_match_gives_304_with_empty_body() {
    let node = Node::start();
    let db = node.create_db("etags");
    let (_, b) = node.put(&format!("/{db}/doc"), json!({"v": 1}));
    let r1 = rev_of(&b);
    let etag = format!("\"{r1}\"");

    let r = raw(node
        .req("GET", &format!("/{db}/doc"))
        .header("if-none-match", &etag));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.clone()));

    // Weak form and lists match too.
    let r = raw(node
        .req("GET", &format!("/{db}/doc"))
        .header("if-none-match", format!("W/{etag}")));
    assert_eq!(r.status, 304);
    let r = raw(node.req("GET", &format!("/{db}/doc")).header(
        "if-none-match",
        format!("\"1-00000000000000000000000000000000\", {etag}"),
    ));
    assert_eq!(r.status, 304);

    // After an update the old ETag no longer matches.
    let (_, b) = node.put(&format!("/{db}/doc"), json!({"_rev": r1, "v": 2}));
    let r2 = rev_of(&b);
    let r = raw(node
        .req("GET", &format!("/{db}/doc"))
        .header("if-none-match", &etag));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(format!("\"{r2}\"")));
    assert_eq!(r.json()["v"], 2);

    // revs=true and attachments=true are not "meta": the ETag stays. revs_info and
    // local_seq are: no ETag then. conflicts=true without conflicts adds no meta.
    let r = raw(node.req("GET", &format!("/{db}/doc?revs=true")));
    assert_eq!(r.header("etag"), Some(format!("\"{r2}\"")));
    let r = raw(node.req("GET", &format!("/{db}/doc?conflicts=true")));
    assert_eq!(r.header("etag"), Some(format!("\"{r2}\"")));
    let r = raw(node.req("GET", &format!("/{db}/doc?revs_info=true")));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), None);
    let r = raw(node.req("GET", &format!("/{db}/doc?local_seq=true")));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), None);
}

#[test]
fn rev_from_query_body_and_if_match_must_agree() {
    let node = Node::start();
    let db = node.create_db("revsources");
    let other = "1-00000000000000000000000000000000";
    let (_, b) = node.put(&format!("/{db}/d"), json!({"v": 1}));
    let r1 = rev_of(&b);

    // ?rev= alone updates.
    let (s, b) = node.put(&format!("/{db}/d?rev={r1}"), json!({"v": 2}));
    assert_eq!(s, 201, "{b}");
    let r2 = rev_of(&b);
    // If-Match alone updates.
    let r = raw(node
        .req("PUT", &format!("/{db}/d"))
        .header("if-match", format!("\"{r2}\""))
        .header("content-type", "application/json")
        .body(r#"{"v":3}"#));
    assert_eq!(r.status, 201);
    let r3 = rev_of(&r.json());
    assert_rev(&r3, 3);

    // Query vs body.
    let (s, b) = node.put(&format!("/{db}/d?rev={r3}"), json!({"_rev": other, "v": 4}));
    assert_eq!(
        (s, b),
        (
            400,
            bad_request("Document rev from request body and query string have different values")
        )
    );
    // Body vs If-Match.
    let r = raw(node
        .req("PUT", &format!("/{db}/d"))
        .header("if-match", format!("\"{other}\""))
        .header("content-type", "application/json")
        .body(format!(r#"{{"_rev":"{r3}","v":4}}"#)));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        bad_request("Document rev and etag have different values")
    );
    // Query vs If-Match, on PUT and DELETE.
    let r = raw(node
        .req("PUT", &format!("/{db}/d?rev={r3}"))
        .header("if-match", format!("\"{other}\""))
        .header("content-type", "application/json")
        .body(r#"{"v":4}"#));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        bad_request("Document rev and etag have different values")
    );
    let r = raw(node
        .req("DELETE", &format!("/{db}/d?rev={r3}"))
        .header("if-match", format!("\"{other}\"")));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        bad_request("Document rev and etag have different values")
    );
    // Agreeing sources are fine.
    let r = raw(node
        .req("PUT", &format!("/{db}/d?rev={r3}"))
        .header("if-match", format!("\"{r3}\""))
        .header("content-type", "application/json")
        .body(format!(r#"{{"_rev":"{r3}","v":4}}"#)));
    assert_eq!(r.status, 201);
    assert_rev(&rev_of(&r.json()), 4);
}

#[test]
fn stale_unknown_and_absent_revs_conflict() {
    let node = Node::start();
    let db = node.create_db("conflict409");
    let (_, b) = node.put(&format!("/{db}/d"), json!({"v": 1}));
    let r1 = rev_of(&b);
    // No rev on an existing document.
    let (s, b) = node.put(&format!("/{db}/d"), json!({"v": 2}));
    assert_eq!((s, b), (409, conflict()));
    let (_, b) = node.put(&format!("/{db}/d"), json!({"_rev": r1, "v": 2}));
    let r2 = rev_of(&b);
    // A stale rev.
    let (s, b) = node.put(&format!("/{db}/d"), json!({"_rev": r1, "v": 3}));
    assert_eq!((s, b), (409, conflict()));
    // A well-formed rev the document never had.
    let (s, b) = node.put(&format!("/{db}/d"), json!({"_rev": "1-xyz", "v": 3}));
    assert_eq!((s, b), (409, conflict()));
    let (s, b) = node.put(&format!("/{db}/d"), json!({"_rev": "2-xyz", "v": 3}));
    assert_eq!((s, b), (409, conflict()));
    // A rev on a document that does not exist.
    let (s, b) = node.put(&format!("/{db}/new"), json!({"_rev": r2, "v": 1}));
    assert_eq!((s, b), (409, conflict()));
    // The document is untouched.
    let (s, b) = node.get(&format!("/{db}/d"));
    assert_eq!(s, 200);
    assert_exact(&b, &json!({"_id": "d", "_rev": r2, "v": 2}));
}

#[test]
fn malformed_revs_are_bad_requests() {
    let node = Node::start();
    let db = node.create_db("badrevs");
    let (_, b) = node.put(&format!("/{db}/d"), json!({"v": 1}));
    let r1 = rev_of(&b);
    let invalid = bad_request("Invalid rev format");

    // ?rev= on GET: no dash, or a non-integer generation.
    for bad in ["abc", "-1-", "x-abc"] {
        let (s, b) = node.get(&format!("/{db}/d?rev={bad}"));
        assert_eq!((s, &b), (400, &invalid), "GET ?rev={bad}");
    }
    // A 32-character rev id must be hex.
    let nonhex = format!("1-{}", "z".repeat(32));
    let (s, b) = node.get(&format!("/{db}/d?rev={nonhex}"));
    assert_eq!((s, b), (400, invalid.clone()));
    // Well-formed but unknown revs (CouchDB parses `1-` as generation 1, empty id).
    for unknown in ["1-xyz", "1-", "7-967a00dff5e02add41819138abb3284d"] {
        let (s, b) = node.get(&format!("/{db}/d?rev={unknown}"));
        assert_eq!((s, b), (404, not_found("missing")), "GET ?rev={unknown}");
    }

    // _rev in the body.
    for bad in [
        json!("abc"),
        json!("-1-"),
        json!(1),
        json!(null),
        json!(["1-a"]),
    ] {
        let (s, b) = node.put(&format!("/{db}/d"), json!({"_rev": bad, "v": 2}));
        assert_eq!((s, &b), (400, &invalid), "_rev {bad}");
    }
    // ?rev= on PUT and DELETE.
    let (s, b) = node.put(&format!("/{db}/d?rev=abc"), json!({"v": 2}));
    assert_eq!((s, b), (400, invalid.clone()));
    let (s, b) = node.delete(&format!("/{db}/d?rev=abc"));
    assert_eq!((s, b), (400, invalid.clone()));
    // If-Match too.
    let r = raw(node
        .req("DELETE", &format!("/{db}/d"))
        .header("if-match", "\"abc\""));
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), invalid);
    // Nothing changed.
    let (_, b) = node.get(&format!("/{db}/d"));
    assert_eq!(b["_rev"], r1);
}

#[test]
fn same_edit_gives_same_rev_everywhere() {
    let node = Node::start();
    let a = node.create_db("det-a");
    let b = node.create_db("det-b");
    let body = json!({"name": "x", "n": [1, 2, {"k": "v"}]});
    let (_, ra) = node.put(&format!("/{a}/doc"), body.clone());
    let (_, rb) = node.put(&format!("/{b}/doc"), body.clone());
    let (a1, b1) = (rev_of(&ra), rev_of(&rb));
    assert_eq!(a1, b1);
    // The id is not part of the rev: same body under another id, same rev.
    let (_, ro) = node.put(&format!("/{a}/other"), body.clone());
    assert_eq!(rev_of(&ro), a1);
    // A different body gives a different rev.
    let (_, rd) = node.put(&format!("/{a}/diff"), json!({"name": "y"}));
    assert_ne!(rev_of(&rd), a1);

    let (_, ra) = node.put(&format!("/{a}/doc"), json!({"_rev": a1, "v": 2}));
    let (_, rb) = node.put(&format!("/{b}/doc"), json!({"_rev": b1, "v": 2}));
    assert_eq!(rev_of(&ra), rev_of(&rb));
    let a2 = rev_of(&ra);
    let (_, ra) = node.delete(&format!("/{a}/doc?rev={a2}"));
    let (_, rb) = node.delete(&format!("/{b}/doc?rev={a2}"));
    assert_eq!(rev_of(&ra), rev_of(&rb));
    // Deleting is a different edit than writing the same (empty) body.
    let (_, re) = node.put(&format!("/{a}/other"), json!({"_rev": a1}));
    let (_, rb) = node.put(&format!("/{b}/other"), body.clone());
    assert_eq!(rev_of(&rb), a1);
    let (_, rdel) = node.delete(&format!("/{b}/other?rev={a1}"));
    assert_rev(&rev_of(&re), 2);
    assert_rev(&rev_of(&rdel), 2);
    assert_ne!(rev_of(&re), rev_of(&rdel));
}

#[test]
fn revs_and_revs_info() {
    let node = Node::start();
    let db = node.create_db("revs");
    let (_, b) = node.put(&format!("/{db}/d"), json!({"v": 1}));
    let r1 = rev_of(&b);
    let (_, b) = node.put(&format!("/{db}/d"), json!({"_rev": r1, "v": 2}));
    let r2 = rev_of(&b);
    let (_, b) = node.put(&format!("/{db}/d"), json!({"_rev": r2, "v": 3}));
    let r3 = rev_of(&b);

    let (s, b) = node.get(&format!("/{db}/d?revs=true"));
    assert_eq!(s, 200);
    assert_exact(
        &b,
        &json!({"_id": "d", "_rev": r3, "v": 3,
                "_revisions": {"start": 3, "ids": [rev_id(&r3), rev_id(&r2), rev_id(&r1)]}}),
    );

    let (s, b) = node.get(&format!("/{db}/d?revs_info=true"));
    assert_eq!(s, 200);
    assert_eq!(keys(&b), ["_id", "_rev", "v", "_revs_info"]);
    let info = b["_revs_info"].as_array().unwrap();
    let revs: Vec<&str> = info.iter().map(|i| i["rev"].as_str().unwrap()).collect();
    assert_eq!(revs, [r3.as_str(), r2.as_str(), r1.as_str()]);
    assert_eq!(keys(&info[0]), ["rev", "status"]);
    assert_eq!(info[0]["status"], "available");

    // revs + revs_info together: _revisions first.
    let (_, b) = node.get(&format!("/{db}/d?revs_info=true&revs=true"));
    assert_eq!(keys(&b), ["_id", "_rev", "v", "_revisions", "_revs_info"]);

    // Opening a specific rev returns no meta (CouchDB's open_revs path), but revs=true works.
    let (_, b) = node.get(&format!(
        "/{db}/d?rev={r3}&revs_info=true&conflicts=true&revs=true"
    ));
    assert_exact(
        &b,
        &json!({"_id": "d", "_rev": r3, "v": 3,
                "_revisions": {"start": 3, "ids": [rev_id(&r3), rev_id(&r2), rev_id(&r1)]}}),
    );
}

/// Builds doc `c` with leaves 2-bbb ("b") and 2-ccc ("c") under 1-aaa.
fn two_branches(node: &Node, db: &str) {
    let (s, b) = node.put(
        &format!("/{db}/c?new_edits=false"),
        json!({"_rev": "2-bbb", "_revisions": {"start": 2, "ids": ["bbb", "aaa"]}, "v": "b"}),
    );
    assert_eq!(s, 201, "{b}");
    assert_exact(&b, &json!({"ok": true, "id": "c", "rev": "2-bbb"}));
    bulk_replicated(
        node,
        db,
        json!([{"_id": "c", "_rev": "2-ccc",
                "_revisions": {"start": 2, "ids": ["ccc", "aaa"]}, "v": "c"}]),
    );
}

#[test]
fn conflicts_and_the_winner_rule() {
    let node = Node::start();
    let db = node.create_db("winner");
    two_branches(&node, &db);

    // Same length: the higher rev id wins.
    let (s, b) = node.get(&format!("/{db}/c"));
    assert_eq!(s, 200);
    assert_exact(&b, &json!({"_id": "c", "_rev": "2-ccc", "v": "c"}));
    let r = raw(node.req("GET", &format!("/{db}/c?conflicts=true")));
    assert_eq!(r.status, 200);
    assert_exact(
        &r.json(),
        &json!({"_id": "c", "_rev": "2-ccc", "v": "c", "_conflicts": ["2-bbb"]}),
    );
    // Meta in the answer: no ETag.
    assert_eq!(r.header("etag"), None);

    // A longer branch wins even with a lower rev id.
    bulk_replicated(
        &node,
        &db,
        json!([{"_id": "c", "_rev": "3-aab",
                "_revisions": {"start": 3, "ids": ["aab", "bbb", "aaa"]}, "v": "long"}]),
    );
    let (_, b) = node.get(&format!("/{db}/c?conflicts=true"));
    assert_exact(
        &b,
        &json!({"_id": "c", "_rev": "3-aab", "v": "long", "_conflicts": ["2-ccc"]}),
    );

    // Deleting the long branch: a live leaf beats any deleted one.
    let (s, b) = node.delete(&format!("/{db}/c?rev=3-aab"));
    assert_eq!(s, 200, "{b}");
    let r4 = rev_of(&b);
    assert_rev(&r4, 4);
    let (_, b) = node.get(&format!("/{db}/c?deleted_conflicts=true"));
    assert_exact(
        &b,
        &json!({"_id": "c", "_rev": "2-ccc", "v": "c", "_deleted_conflicts": [r4]}),
    );

    // Several conflicts are listed best first (descending).
    bulk_replicated(
        &node,
        &db,
        json!([{"_id": "c", "_rev": "2-abc",
                "_revisions": {"start": 2, "ids": ["abc", "aaa"]}, "v": "a"},
               {"_id": "c", "_rev": "2-ddd",
                "_revisions": {"start": 2, "ids": ["ddd", "aaa"]}, "v": "d"}]),
    );
    // (2-bbb is no leaf any more: 3-aab grew from it.)
    let (_, b) = node.get(&format!("/{db}/c?conflicts=true&deleted_conflicts=true"));
    assert_exact(
        &b,
        &json!({"_id": "c", "_rev": "2-ddd", "v": "d",
                "_conflicts": ["2-ccc", "2-abc"], "_deleted_conflicts": [r4]}),
    );

    // meta=true = revs_info + conflicts + deleted_conflicts; CouchDB's key order puts
    // _local_seq after them.
    let (_, b) = node.get(&format!("/{db}/c?meta=true&local_seq=true"));
    assert_eq!(
        keys(&b),
        [
            "_id",
            "_rev",
            "v",
            "_revs_info",
            "_conflicts",
            "_deleted_conflicts",
            "_local_seq"
        ]
    );
    assert_eq!(
        b["_revs_info"][0],
        json!({"rev": "2-ddd", "status": "available"})
    );
    assert_eq!(b["_revs_info"].as_array().unwrap().len(), 2);
    assert_eq!(b["_revs_info"][1]["rev"], "1-aaa");
    assert_eq!(b["_conflicts"], json!(["2-ccc", "2-abc"]));
    assert!(b["_local_seq"].as_u64().is_some_and(|s| s > 0));

    // Deleting every live leaf: the document reads as deleted.
    for rev in ["2-ddd", "2-ccc", "2-abc"] {
        let (s, b) = node.delete(&format!("/{db}/c?rev={rev}"));
        assert_eq!(s, 200, "{rev}: {b}");
    }
    let (s, b) = node.get(&format!("/{db}/c"));
    assert_eq!((s, b), (404, not_found("deleted")));
    // A live write on top of the winning tombstone brings it back without a rev.
    let (s, b) = node.put(&format!("/{db}/c"), json!({"v": "again"}));
    assert_eq!(s, 201, "{b}");
    assert_rev(&rev_of(&b), 5);
}

#[test]
fn local_seq_tracks_the_documents_last_change() {
    let node = Node::start();
    let db = node.create_db("localseq");
    let (_, b) = node.put(&format!("/{db}/d"), json!({"v": 1}));
    let r1 = rev_of(&b);
    let (s, b) = node.get(&format!("/{db}/d?local_seq=true"));
    assert_eq!(s, 200);
    assert_eq!(keys(&b), ["_id", "_rev", "v", "_local_seq"]);
    let s1 = b["_local_seq"].as_u64().expect("integer _local_seq");
    assert!(s1 >= 1);
    // Writing other documents does not change it (they may share the shard).
    for i in 0..5 {
        node.put(&format!("/{db}/other{i}"), json!({}));
    }
    let (_, b) = node.get(&format!("/{db}/d?local_seq=true"));
    assert_eq!(b["_local_seq"].as_u64(), Some(s1));
    node.put(&format!("/{db}/d"), json!({"_rev": r1, "v": 2}));
    let (_, b) = node.get(&format!("/{db}/d?local_seq=true"));
    assert!(b["_local_seq"].as_u64().unwrap() > s1);
}

#[test]
fn open_revs_as_json() {
    let node = Node::start();
    let db = node.create_db("openrevs");
    two_branches(&node, &db);
    let (s, b) = node.delete(&format!("/{db}/c?rev=2-bbb"));
    assert_eq!(s, 200);
    let del = rev_of(&b);
    assert_rev(&del, 3);

    // all: every leaf, deleted ones included, ordered by (generation, rev id).
    let r = accept_json(&node, &format!("/{db}/c?open_revs=all"));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_exact(
        &r.json(),
        &json!([
            {"ok": {"_id": "c", "_rev": "2-ccc", "v": "c"}},
            {"ok": {"_id": "c", "_rev": del, "_deleted": true}}
        ]),
    );

    // An explicit list: found revs as "ok", unknown ones as "missing"; an interior
    // rev whose body was never stored is "missing" too.
    let r = accept_json(&node, &format!("/{db}/c?open_revs=[\"2-ccc\",\"9-nope\"]"));
    assert_eq!(r.status, 200);
    assert_exact(
        &r.json(),
        &json!([{"ok": {"_id": "c", "_rev": "2-ccc", "v": "c"}}, {"missing": "9-nope"}]),
    );
    let r = accept_json(&node, &format!("/{db}/c?open_revs=[\"1-aaa\"]"));
    assert_exact(&r.json(), &json!([{"missing": "1-aaa"}]));

    // revs=true adds each revision's own path.
    let r = accept_json(&node, &format!("/{db}/c?open_revs=[\"2-ccc\"]&revs=true"));
    assert_exact(
        &r.json(),
        &json!([{"ok": {"_id": "c", "_rev": "2-ccc", "v": "c",
                        "_revisions": {"start": 2, "ids": ["ccc", "aaa"]}}}]),
    );

    // latest=true replaces a rev by the leaves below it.
    let r = accept_json(&node, &format!("/{db}/c?open_revs=[\"1-aaa\"]&latest=true"));
    assert_exact(
        &r.json(),
        &json!([
            {"ok": {"_id": "c", "_rev": "2-ccc", "v": "c"}},
            {"ok": {"_id": "c", "_rev": del, "_deleted": true}}
        ]),
    );

    // Unknown document: all -> 404, a list -> every rev missing.
    let r = accept_json(&node, &format!("/{db}/nope?open_revs=all"));
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), not_found("missing"));
    let r = accept_json(&node, &format!("/{db}/nope?open_revs=[\"1-abc\"]"));
    assert_eq!(r.status, 200);
    assert_exact(&r.json(), &json!([{"missing": "1-abc"}]));
}

#[test]
fn latest_true_opens_the_current_leaf() {
    let node = Node::start();
    let db = node.create_db("latest");
    let (_, b) = node.put(&format!("/{db}/d"), json!({"v": 1}));
    let r1 = rev_of(&b);
    let (_, b) = node.put(&format!("/{db}/d"), json!({"_rev": r1, "v": 2}));
    let r2 = rev_of(&b);
    let (_, b) = node.put(&format!("/{db}/d"), json!({"_rev": r2, "v": 3}));
    let r3 = rev_of(&b);
    let (s, b) = node.get(&format!("/{db}/d?rev={r1}&latest=true"));
    assert_eq!(s, 200, "{b}");
    assert_exact(&b, &json!({"_id": "d", "_rev": r3, "v": 3}));
    let r = accept_json(&node, &format!("/{db}/d?open_revs=[\"{r1}\"]&latest=true"));
    assert_exact(
        &r.json(),
        &json!([{"ok": {"_id": "d", "_rev": r3, "v": 3}}]),
    );
}

#[test]
fn new_edits_false_put() {
    let node = Node::start();
    let db = node.create_db("newedits");
    let (s, b) = node.put(&format!("/{db}/r?new_edits=false"), json!({"v": 1}));
    assert_eq!(
        (s, b),
        (
            400,
            bad_request(
                "When `new_edits: false`, the document needs `_rev` or `_revisions` specified"
            )
        )
    );
    let (s, b) = node.put(
        &format!("/{db}/r?new_edits=false"),
        json!({"_rev": "5-abc", "v": 1}),
    );
    assert_eq!(s, 201, "{b}");
    assert_exact(&b, &json!({"ok": true, "id": "r", "rev": "5-abc"}));
    // The same revision again is a no-op, still 201.
    let (s, b) = node.put(
        &format!("/{db}/r?new_edits=false"),
        json!({"_rev": "5-abc", "v": 1}),
    );
    assert_eq!(s, 201, "{b}");
    let (_, b) = node.get(&format!("/{db}/r?revs=true"));
    assert_exact(
        &b,
        &json!({"_id": "r", "_rev": "5-abc", "v": 1,
                "_revisions": {"start": 5, "ids": ["abc"]}}),
    );
    // With _revisions: the whole path is stored verbatim.
    let (s, b) = node.put(
        &format!("/{db}/p?new_edits=false"),
        json!({"_revisions": {"start": 3, "ids": ["c3", "b2", "a1"]}, "v": 1}),
    );
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["rev"], "3-c3");
    let (_, b) = node.get(&format!("/{db}/p?revs=true"));
    assert_eq!(
        b["_revisions"],
        json!({"start": 3, "ids": ["c3", "b2", "a1"]})
    );
    // No conflict check: a sibling branch is accepted and becomes a conflict.
    let (s, _) = node.put(
        &format!("/{db}/p?new_edits=false"),
        json!({"_revisions": {"start": 3, "ids": ["c4", "b2", "a1"]}, "v": 2}),
    );
    assert_eq!(s, 201);
    let (_, b) = node.get(&format!("/{db}/p?conflicts=true"));
    assert_eq!(b["_rev"], "3-c4");
    assert_eq!(b["_conflicts"], json!(["3-c3"]));
}

#[test]
fn bad_revisions_fields() {
    let node = Node::start();
    let db = node.create_db("badrevisions");
    let cases = [
        (
            json!({"start": "3", "ids": ["a"]}),
            "_revisions.start isn't an integer.",
        ),
        (
            json!({"start": 1, "ids": "a"}),
            "_revisions.ids isn't a array.",
        ),
        (json!({"start": 1, "ids": [5]}), "RevId isn't a string"),
        (
            json!({"start": 1, "ids": ["z".repeat(32)]}),
            "RevId isn't a valid hexadecimal",
        ),
    ];
    for (revisions, reason) in cases {
        let (s, b) = node.put(
            &format!("/{db}/x?new_edits=false"),
            json!({"_revisions": revisions, "v": 1}),
        );
        assert_eq!(
            (s, &b),
            (400, &json!({"error": "doc_validation", "reason": reason})),
            "{revisions}"
        );
    }
}

#[test]
fn copy_with_destination() {
    let node = Node::start();
    let db = node.create_db("copy");
    let (_, b) = node.put(&format!("/{db}/src"), json!({"k": "v", "n": 1}));
    let src1 = rev_of(&b);

    let r = raw(node
        .req("COPY", &format!("/{db}/src"))
        .header("destination", "dst"));
    assert_eq!(r.status, 201);
    let b = r.json();
    let dst1 = rev_of(&b);
    assert_exact(&b, &json!({"ok": true, "id": "dst", "rev": dst1}));
    // Same body, same (empty) parent: the rev is the source's.
    assert_eq!(dst1, src1);
    assert_eq!(r.header("etag"), Some(format!("\"{dst1}\"")));
    assert_eq!(
        r.header("location"),
        Some(format!("http://127.0.0.1:{}/{db}/dst", node.port))
    );
    let (_, b) = node.get(&format!("/{db}/dst"));
    assert_exact(&b, &json!({"_id": "dst", "_rev": dst1, "k": "v", "n": 1}));

    // The destination exists: a rev is needed.
    let r = raw(node
        .req("COPY", &format!("/{db}/src"))
        .header("destination", "dst"));
    assert_eq!(r.status, 409);
    assert_eq!(r.json(), conflict());
    let (_, b) = node.put(&format!("/{db}/src"), json!({"_rev": src1, "k": "new"}));
    let src2 = rev_of(&b);
    let r = raw(node
        .req("COPY", &format!("/{db}/src"))
        .header("destination", format!("dst?rev={dst1}")));
    assert_eq!(r.status, 201);
    let dst2 = rev_of(&r.json());
    assert_rev(&dst2, 2);
    let (_, b) = node.get(&format!("/{db}/dst"));
    assert_exact(&b, &json!({"_id": "dst", "_rev": dst2, "k": "new"}));
    // Stale destination rev.
    let r = raw(node
        .req("COPY", &format!("/{db}/src"))
        .header("destination", format!("dst?rev={dst1}")));
    assert_eq!(r.status, 409);
    assert_eq!(r.json(), conflict());
    // Copying a given source rev (a leaf).
    let r = raw(node
        .req("COPY", &format!("/{db}/src?rev={src2}"))
        .header("destination", "dst3"));
    assert_eq!(r.status, 201);

    // Errors.
    let r = raw(node.req("COPY", &format!("/{db}/src")));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        bad_request("Destination header is mandatory for COPY.")
    );
    let r = raw(node
        .req("COPY", &format!("/{db}/src"))
        .header("destination", "http://example.com/db/x"));
    assert_eq!(r.status, 400);
    assert_eq!(r.json(), bad_request("Destination URL must be relative."));
    let r = raw(node
        .req("COPY", &format!("/{db}/nope"))
        .header("destination", "x"));
    assert_eq!(r.status, 404);
    assert_eq!(r.json(), not_found("missing"));
    let r = raw(node
        .req("COPY", &format!("/{db}/src"))
        .header("destination", "_bad"));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "illegal_docid",
               "reason": "Only reserved document ids may start with underscore."})
    );
}

#[test]
fn post_generates_ids() {
    let node = Node::start();
    let db = node.create_db("post");
    let r = raw(node
        .req("POST", &format!("/{db}"))
        .header("content-type", "application/json")
        .body(r#"{"a":1}"#));
    assert_eq!(r.status, 201);
    let b = r.json();
    assert_eq!(keys(&b), ["ok", "id", "rev"]);
    assert_eq!(b["ok"], true);
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert!(id
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_rev(&rev_of(&b), 1);
    assert_eq!(
        r.header("location"),
        Some(format!("http://127.0.0.1:{}/{db}/{id}", node.port))
    );
    // Unlike PUT, POST sends no ETag.
    assert_eq!(r.header("etag"), None);
    let (s, got) = node.get(&format!("/{db}/{id}"));
    assert_eq!(s, 200);
    assert_eq!(got["a"], 1);

    let (_, b2) = node.post(&format!("/{db}"), json!({"a": 2}));
    assert_ne!(b2["id"], b["id"]);
    // A given _id is used.
    let (s, b) = node.post(&format!("/{db}"), json!({"_id": "named", "a": 3}));
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["id"], "named");
    // batch=ok: 202 without a rev, ETag or Location.
    let r = raw(node
        .req("POST", &format!("/{db}?batch=ok"))
        .header("content-type", "application/json")
        .body(r#"{"_id":"batched","a":4}"#));
    assert_eq!(r.status, 202);
    assert_exact(&r.json(), &json!({"ok": true, "id": "batched"}));
    assert_eq!(r.header("etag"), None);
    assert_eq!(r.header("location"), None);
    wait_for_doc(&node, &format!("/{db}/batched"));
    // Content type must be JSON.
    let r = raw(node
        .req("POST", &format!("/{db}"))
        .header("content-type", "text/plain")
        .body(r#"{"a":1}"#));
    assert_eq!(r.status, 415);
    assert_eq!(
        r.json(),
        json!({"error": "bad_content_type", "reason": "Content-Type must be application/json"})
    );
}

fn wait_for_doc(node: &Node, path: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = node.get(path);
        if s == 200 {
            return b;
        }
        assert!(Instant::now() < deadline, "{path} never appeared: {s} {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn batch_ok_put_answers_202() {
    let node = Node::start();
    let db = node.create_db("batch");
    let r = raw(node
        .req("PUT", &format!("/{db}/b1?batch=ok"))
        .header("content-type", "application/json")
        .body(r#"{"v":1}"#));
    assert_eq!(r.status, 202);
    assert_exact(&r.json(), &json!({"ok": true, "id": "b1"}));
    assert_eq!(r.header("etag"), None);
    assert_eq!(r.header("location"), None);
    let b = wait_for_doc(&node, &format!("/{db}/b1"));
    assert_eq!(b["v"], 1);
    // The write happens after the answer: a conflict is not reported.
    let (s, b) = node.put(&format!("/{db}/b1?batch=ok"), json!({"v": 2}));
    assert_eq!(s, 202, "{b}");
    assert_exact(&b, &json!({"ok": true, "id": "b1"}));
    // Errors found while reading the request still are.
    let (s, b) = node.put(&format!("/{db}/b2?batch=ok"), json!({"_bad": 1}));
    assert_eq!(s, 400, "{b}");
}

#[test]
fn design_documents() {
    let node = Node::start();
    let db = node.create_db("ddocs");
    let r = raw(node
        .req("PUT", &format!("/{db}/_design/foo"))
        .header("content-type", "application/json")
        .body(r#"{"views":{"v":{"map":"function(doc){emit(doc._id,null)}"}}}"#));
    assert_eq!(r.status, 201);
    let b = r.json();
    assert_eq!(b["id"], "_design/foo");
    let r1 = rev_of(&b);
    assert_eq!(
        r.header("location"),
        Some(format!("http://127.0.0.1:{}/{db}/_design%2Ffoo", node.port))
    );
    let (s, b) = node.get(&format!("/{db}/_design/foo"));
    assert_eq!(s, 200);
    assert_eq!(keys(&b), ["_id", "_rev", "views"]);
    assert_eq!(b["_id"], "_design/foo");

    // An encoded slash in a GET redirects to the slash form.
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = raw(client
        .get(node.url(&format!("/{db}/_design%2Ffoo")))
        .basic_auth(
            chaise_integration_tests::ADMIN,
            Some(chaise_integration_tests::PASSWORD),
        ));
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("http://127.0.0.1:{}/{db}/_design/foo", node.port))
    );
    assert!(r.body.is_empty());
    // Following it works (the harness client follows redirects).
    let (s, b) = node.get(&format!("/{db}/_design%2Ffoo"));
    assert_eq!(s, 200);
    assert_eq!(b["_rev"], r1);

    // Other methods accept the encoded form directly.
    let (s, b) = node.put(&format!("/{db}/_design%2Fbar"), json!({"x": 1}));
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["id"], "_design/bar");
    let (s, _) = node.get(&format!("/{db}/_design/bar"));
    assert_eq!(s, 200);

    // Update and delete like any document.
    let (s, b) = node.put(
        &format!("/{db}/_design/foo"),
        json!({"_rev": r1, "views": {}}),
    );
    assert_eq!(s, 201, "{b}");
    let r2 = rev_of(&b);
    let (s, b) = node.delete(&format!("/{db}/_design/foo?rev={r2}"));
    assert_eq!(s, 200, "{b}");
    let (s, b) = node.get(&format!("/{db}/_design/foo"));
    assert_eq!((s, b), (404, not_found("deleted")));
}

#[test]
fn local_documents() {
    let node = Node::start();
    let db = node.create_db("locals");
    let r = raw(node
        .req("PUT", &format!("/{db}/_local/x"))
        .header("content-type", "application/json")
        .body(r#"{"a":1}"#));
    assert_eq!(r.status, 201);
    assert_exact(
        &r.json(),
        &json!({"ok": true, "id": "_local/x", "rev": "0-1"}),
    );
    let (s, b) = node.get(&format!("/{db}/_local/x"));
    assert_eq!(s, 200);
    assert_exact(&b, &json!({"_id": "_local/x", "_rev": "0-1", "a": 1}));
    // The encoded form names the same document.
    let (s, b) = node.get(&format!("/{db}/_local%2Fx"));
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["_rev"], "0-1");

    let (s, b) = node.put(&format!("/{db}/_local/x"), json!({"_rev": "0-1", "a": 2}));
    assert_eq!(s, 201, "{b}");
    assert_exact(&b, &json!({"ok": true, "id": "_local/x", "rev": "0-2"}));
    let (_, b) = node.get(&format!("/{db}/_local/x"));
    assert_exact(&b, &json!({"_id": "_local/x", "_rev": "0-2", "a": 2}));

    // A wrong rev conflicts (Chaise's rule, as in the project spec; note that CouchDB
    // 3.x itself stopped checking _local revs in 2010 and would answer 201 "0-2").
    let (s, b) = node.put(&format!("/{db}/_local/x"), json!({"_rev": "0-1", "a": 3}));
    assert_eq!((s, b), (409, conflict()));

    // Not in _all_docs or _changes.
    node.put(&format!("/{db}/normal"), json!({}));
    let (s, b) = node.get(&format!("/{db}/_all_docs"));
    assert_eq!(s, 200);
    let ids = row_ids(&b);
    assert_eq!(ids, ["normal"]);
    assert_eq!(b["total_rows"], 1);
    let (s, b) = node.get(&format!("/{db}/_changes"));
    assert_eq!(s, 200);
    let ids: Vec<&str> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["normal"]);
    let (_, info) = node.get(&format!("/{db}"));
    assert_eq!(info["doc_count"], 1);

    // Attachments are refused.
    let r = raw(node
        .req("PUT", &format!("/{db}/_local/x/att.txt?rev=0-2"))
        .header("content-type", "text/plain")
        .body("hi"));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        bad_request("_local documents do not accept attachments.")
    );

    // DELETE: 200 with rev 0-0; then gone.
    let (s, b) = node.delete(&format!("/{db}/_local/x?rev=0-2"));
    assert_eq!(s, 200, "{b}");
    assert_exact(&b, &json!({"ok": true, "id": "_local/x", "rev": "0-0"}));
    let (s, b) = node.get(&format!("/{db}/_local/x"));
    assert_eq!((s, b), (404, not_found("missing")));
    let (s, b) = node.delete(&format!("/{db}/_local/x?rev=0-2"));
    assert_eq!((s, b), (404, not_found("missing")));
    // Recreated from scratch.
    let (s, b) = node.put(&format!("/{db}/_local/x"), json!({"a": 9}));
    assert_eq!(s, 201);
    assert_eq!(b["rev"], "0-1");
}

#[test]
fn illegal_document_ids() {
    let node = Node::start();
    let db = node.create_db("ids");
    let underscore = json!({"error": "illegal_docid",
                            "reason": "Only reserved document ids may start with underscore."});
    let (s, b) = node.put(&format!("/{db}/_foo"), json!({}));
    assert_eq!((s, &b), (400, &underscore));
    let (s, b) = node.post(&format!("/{db}"), json!({"_id": "_bar"}));
    assert_eq!((s, &b), (400, &underscore));
    // The body's _id is checked even though the URL names the document.
    let (s, b) = node.put(&format!("/{db}/fine"), json!({"_id": "_bar"}));
    assert_eq!((s, &b), (400, &underscore));
    let (s, b) = node.post(&format!("/{db}"), json!({"_id": ""}));
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "illegal_docid", "reason": "Document id must not be empty"})
        )
    );
    let (s, b) = node.post(&format!("/{db}"), json!({"_id": "_design/"}));
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "illegal_docid", "reason": "Illegal document id `_design/`"})
        )
    );
    let (s, b) = node.post(&format!("/{db}"), json!({"_id": 5}));
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "illegal_docid", "reason": "Document id must be a string"})
        )
    );
    // Nothing was written.
    let (_, info) = node.get(&format!("/{db}"));
    assert_eq!(info["doc_count"], 0);
}

#[test]
fn special_fields() {
    let node = Node::start();
    let db = node.create_db("special");
    let (s, b) = node.put(&format!("/{db}/d"), json!({"_foo": 1, "a": 1}));
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "doc_validation", "reason": "Bad special document member: _foo"})
        )
    );
    let (s, b) = node.put(&format!("/{db}/d"), json!({"_deleted": "yes"}));
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "doc_validation", "reason": "Bad special document member: _deleted"})
        )
    );
    let (s, b) = node.put(&format!("/{db}/d"), json!({"_attachments": []}));
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "doc_validation",
                   "reason": "Bad special document member: _attachments"})
        )
    );
    // Read-only meta fields are accepted and dropped.
    let (s, b) = node.put(
        &format!("/{db}/d"),
        json!({"a": 1, "_conflicts": ["1-x"], "_deleted_conflicts": [], "_revs_info": [],
               "_local_seq": 7, "_deleted": false}),
    );
    assert_eq!(s, 201, "{b}");
    let (_, got) = node.get(&format!("/{db}/d"));
    assert_exact(&got, &json!({"_id": "d", "_rev": b["rev"], "a": 1}));
    // Fields that merely contain an underscore are ordinary.
    let (s, _) = node.put(&format!("/{db}/e"), json!({"a_b": 1, "b_": 2}));
    assert_eq!(s, 201);
}

#[test]
fn malformed_and_non_object_bodies() {
    let node = Node::start();
    let db = node.create_db("badjson");
    let invalid = bad_request("invalid UTF-8 JSON");
    for body in [
        &b"{\"a\":"[..],
        b"{\"a\":1} trailing",
        b"",
        b"{'a':1}",
        b"{\"a\":\"\xff\xfe\"}",
        b"{\"a\":1,}",
    ] {
        let r = put_raw(&node, &format!("/{db}/d"), body);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(r.json(), invalid, "{}", String::from_utf8_lossy(body));
    }
    let not_object = bad_request("Document must be a JSON object");
    for body in [&b"[1,2]"[..], b"\"str\"", b"5", b"null", b"true"] {
        let r = put_raw(&node, &format!("/{db}/d"), body);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(r.json(), not_object, "{}", String::from_utf8_lossy(body));
    }
    let (_, info) = node.get(&format!("/{db}"));
    assert_eq!(info["doc_count"], 0);
}

#[test]
fn large_documents_round_trip() {
    let node = Node::start();
    let db = node.create_db("large");
    // ~2 MB with many keys and deep-ish nesting, well under the 8 MB default.
    let mut obj = serde_json::Map::new();
    for i in 0..20_000 {
        obj.insert(format!("k{i:05}"), json!({"i": i, "s": "x".repeat(80)}));
    }
    let mut nested = json!("leaf");
    for _ in 0..60 {
        nested = json!({"n": nested});
    }
    obj.insert("nested".into(), nested);
    let body = Value::Object(obj);
    let (s, b) = node.put(&format!("/{db}/big"), body.clone());
    assert_eq!(s, 201, "{b}");
    let rev = rev_of(&b);
    let (s, got) = node.get(&format!("/{db}/big"));
    assert_eq!(s, 200);
    let mut expected = serde_json::Map::new();
    expected.insert("_id".into(), json!("big"));
    expected.insert("_rev".into(), json!(rev));
    if let Value::Object(m) = body {
        expected.extend(m);
    }
    assert_exact(&got, &Value::Object(expected));
}

#[test]
fn max_document_size_gives_413() {
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("small-docs.ini");
    std::fs::write(&ini, "[couchdb]\nmax_document_size = 1000\n").unwrap();
    let node = Node::start_with(NodeOptions {
        args: vec!["--config".into(), ini.display().to_string()],
        ..Default::default()
    });
    let db = node.create_db("limits");
    let (s, b) = node.put(&format!("/{db}/small"), json!({"s": "x".repeat(500)}));
    assert_eq!(s, 201, "{b}");
    let (s, b) = node.put(&format!("/{db}/big"), json!({"s": "x".repeat(2000)}));
    assert_eq!(
        (s, b),
        (413, json!({"error": "document_too_large", "reason": "big"}))
    );
    let (s, b) = node.post(
        &format!("/{db}"),
        json!({"_id": "big2", "s": "x".repeat(2000)}),
    );
    assert_eq!(
        (s, b),
        (
            413,
            json!({"error": "document_too_large", "reason": "big2"})
        )
    );
    // Updating a small doc into a big one is refused too.
    let (_, b) = node.get(&format!("/{db}/small"));
    let (s, _) = node.put(
        &format!("/{db}/small"),
        json!({"_rev": b["_rev"], "s": "x".repeat(2000)}),
    );
    assert_eq!(s, 413);
    let (_, b2) = node.get(&format!("/{db}/small"));
    assert_eq!(b2["_rev"], b["_rev"]);
}
