//! Attachments inline in documents (base64 JSON) and standalone
//! (`/{db}/{doc}/{att}`), checked against CouchDB 3.x (`chttpd_db.erl`,
//! `couch_att.erl`, `couch_db.erl`). Multipart and ranges are not covered here.
//!
//! Digests are MD5 of the stored bytes. CouchDB gzips "compressible" types
//! (`text/*`, JSON...) before hashing, so exact digests are only asserted for
//! types it stores as is (`application/octet-stream`, `image/png`).

use chaise_integration_tests::helpers::{assert_exact, get_bytes, keys, noise, rev_of};
use chaise_integration_tests::{raw, Node, Raw};
use serde_json::{json, Value};

fn generation(rev: &str) -> u64 {
    rev.split_once('-').unwrap().0.parse().unwrap()
}

/// GET with `Accept: application/json` (CouchDB would answer multipart/related
/// to `*/*` when attachment data is inlined).
fn get_json(node: &Node, path: &str) -> (u16, Value) {
    let r = raw(node.req("GET", path).header("accept", "application/json"));
    (r.status, r.json())
}

/// PUT raw bytes to an attachment URL.
fn put_att(node: &Node, path: &str, content_type: Option<&str>, data: &[u8]) -> Raw {
    let mut r = node.req("PUT", path).body(data.to_vec());
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    raw(r)
}

fn missing_att() -> Value {
    json!({"error": "not_found", "reason": "Document is missing attachment"})
}

// Test data: bytes, their base64 and the base64 of their MD5.
const BIN: &[u8] = b"\x00\x01\x02\xffbinary";
const BIN_B64: &str = "AAEC/2JpbmFyeQ==";
const BIN_MD5: &str = "pWu2RPF/dh4/sngxU1h56w==";
const HELLO: &[u8] = b"hello world";
const HELLO_MD5: &str = "XrY7u+Ae7tCTyyK7j1rNww==";
const TWO: &[u8] = b"version two";
const TWO_B64: &str = "dmVyc2lvbiB0d28=";
const TWO_MD5: &str = "mQUj1Iv+p5EKqfsgAvtlWA==";

#[test]
fn inline_attachment_becomes_a_stub() {
    let node = Node::start();
    let db = node.create_db("inline");
    let (s, b) = node.put(
        &format!("/{db}/doc"),
        json!({"title": "t", "_attachments": {
            "a.bin": {"content_type": "application/octet-stream", "data": BIN_B64}}}),
    );
    assert_eq!(s, 201, "{b}");
    let r1 = rev_of(&b);

    let (s, b) = node.get(&format!("/{db}/doc"));
    assert_eq!(s, 200);
    // _attachments comes last; a stub lists exactly these keys in this order.
    assert_exact(
        &b,
        &json!({"_id": "doc", "_rev": r1, "title": "t", "_attachments": {
            "a.bin": {"content_type": "application/octet-stream", "revpos": 1,
                      "digest": format!("md5-{BIN_MD5}"), "length": BIN.len(), "stub": true}}}),
    );

    // attachments=true inlines the data instead of length/stub.
    let (s, b) = get_json(&node, &format!("/{db}/doc?attachments=true"));
    assert_eq!(s, 200);
    assert_exact(
        &b["_attachments"],
        &json!({"a.bin": {"content_type": "application/octet-stream", "revpos": 1,
                          "digest": format!("md5-{BIN_MD5}"), "data": BIN_B64}}),
    );

    // The raw bytes.
    let r = raw(node.req("GET", &format!("/{db}/doc/a.bin")));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, BIN);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(r.header("etag"), Some(format!("\"{BIN_MD5}\"")));
    // HEAD: the same headers, no body.
    let r = raw(node.req("HEAD", &format!("/{db}/doc/a.bin")));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(format!("\"{BIN_MD5}\"")));
    assert!(r.body.is_empty());
    // Several attachments keep the order they were given in.
    let (s, b) = node.put(
        &format!("/{db}/multi"),
        json!({"_attachments": {
            "z.bin": {"content_type": "image/png", "data": TWO_B64},
            "a.bin": {"data": BIN_B64}}}),
    );
    assert_eq!(s, 201, "{b}");
    let (_, b) = node.get(&format!("/{db}/multi"));
    assert_eq!(keys(&b["_attachments"]), ["z.bin", "a.bin"]);
    // No content_type: application/octet-stream.
    assert_eq!(
        b["_attachments"]["a.bin"]["content_type"],
        "application/octet-stream"
    );
    assert_eq!(
        b["_attachments"]["z.bin"]["digest"],
        format!("md5-{TWO_MD5}")
    );
}

#[test]
fn stubs_keep_attachments_and_bad_stubs_are_412() {
    let node = Node::start();
    let db = node.create_db("stubs");
    let (_, b) = node.put(
        &format!("/{db}/doc"),
        json!({"v": 1, "_attachments": {
            "a.bin": {"content_type": "application/octet-stream", "data": BIN_B64}}}),
    );
    let r1 = rev_of(&b);
    let (_, got) = node.get(&format!("/{db}/doc"));
    let stub = got["_attachments"]["a.bin"].clone();

    // Echoing the stub back keeps the attachment, revpos unchanged.
    let (s, b) = node.put(
        &format!("/{db}/doc"),
        json!({"_rev": r1, "v": 2, "_attachments": {"a.bin": stub}}),
    );
    assert_eq!(s, 201, "{b}");
    let r2 = rev_of(&b);
    let (_, got) = node.get(&format!("/{db}/doc"));
    assert_eq!(got["v"], 2);
    assert_eq!(got["_attachments"]["a.bin"], stub);
    assert_eq!(got["_attachments"]["a.bin"]["revpos"], 1);
    // A minimal stub works too.
    let (s, b) = node.put(
        &format!("/{db}/doc"),
        json!({"_rev": r2, "v": 3, "_attachments": {"a.bin": {"stub": true}}}),
    );
    assert_eq!(s, 201, "{b}");
    let r3 = rev_of(&b);
    let r = raw(node.req("GET", &format!("/{db}/doc/a.bin")));
    assert_eq!(r.body, BIN);

    // A stub the parent revision does not have.
    let (s, b) = node.put(
        &format!("/{db}/doc"),
        json!({"_rev": r3, "_attachments": {"a.bin": {"stub": true}, "nope.txt": {"stub": true}}}),
    );
    assert_eq!(
        (s, b),
        (
            412,
            json!({"error": "missing_stub",
                   "reason": "Invalid attachment stub in doc for nope.txt"})
        )
    );
    // A stub whose revpos does not match the stored attachment's.
    let mut wrong = stub.clone();
    wrong["revpos"] = json!(2);
    let (s, b) = node.put(
        &format!("/{db}/doc"),
        json!({"_rev": r3, "_attachments": {"a.bin": wrong}}),
    );
    assert_eq!(
        (s, b),
        (
            412,
            json!({"error": "missing_stub",
                   "reason": "Invalid attachment stub in doc for a.bin"})
        )
    );
    // A stub on a new document.
    let (s, b) = node.put(
        &format!("/{db}/fresh"),
        json!({"_attachments": {"x.bin": {"stub": true}}}),
    );
    assert_eq!(
        (s, b),
        (
            412,
            json!({"error": "missing_stub",
                   "reason": "Invalid attachment stub in fresh for x.bin"})
        )
    );

    // Leaving _attachments out drops them.
    let (s, b) = node.put(&format!("/{db}/doc"), json!({"_rev": r3, "v": 4}));
    assert_eq!(s, 201, "{b}");
    let (_, got) = node.get(&format!("/{db}/doc"));
    assert_eq!(keys(&got), ["_id", "_rev", "v"]);
    let (s, b) = node.get(&format!("/{db}/doc/a.bin"));
    assert_eq!((s, b), (404, missing_att()));
}

#[test]
fn attachments_true_and_atts_since() {
    let node = Node::start();
    let db = node.create_db("attssince");
    let (_, b) = node.put(
        &format!("/{db}/doc"),
        json!({"_attachments": {"a.bin": {"content_type": "application/octet-stream",
                                         "data": BIN_B64}}}),
    );
    let r1 = rev_of(&b);
    let r = put_att(
        &node,
        &format!("/{db}/doc/b.bin?rev={r1}"),
        Some("application/octet-stream"),
        TWO,
    );
    assert_eq!(r.status, 201);
    let r2 = rev_of(&r.json());
    let (_, b) = node.get(&format!("/{db}/doc"));
    assert_eq!(b["_attachments"]["a.bin"]["revpos"], 1);
    assert_eq!(b["_attachments"]["b.bin"]["revpos"], 2);

    // Since r1: only what changed after it carries data.
    let (s, b) = get_json(&node, &format!("/{db}/doc?atts_since=[\"{r1}\"]"));
    assert_eq!(s, 200);
    assert_eq!(b["_attachments"]["a.bin"]["stub"], true);
    assert_eq!(b["_attachments"]["a.bin"].get("data"), None);
    assert_eq!(b["_attachments"]["b.bin"]["data"], TWO_B64);
    assert_eq!(b["_attachments"]["b.bin"].get("stub"), None);
    // Since r2: nothing.
    let (_, b) = get_json(&node, &format!("/{db}/doc?atts_since=[\"{r2}\"]"));
    assert_eq!(b["_attachments"]["a.bin"]["stub"], true);
    assert_eq!(b["_attachments"]["b.bin"]["stub"], true);
    // A rev that is no ancestor (even a high one) counts as nothing known: all data.
    let (_, b) = get_json(
        &node,
        &format!("/{db}/doc?atts_since=[\"9-00000000000000000000000000000000\"]"),
    );
    assert_eq!(b["_attachments"]["a.bin"]["data"], BIN_B64);
    assert_eq!(b["_attachments"]["b.bin"]["data"], TWO_B64);
    // The newest known ancestor counts.
    let (_, b) = get_json(
        &node,
        &format!("/{db}/doc?atts_since=[\"9-00000000000000000000000000000000\",\"{r1}\"]"),
    );
    assert_eq!(b["_attachments"]["a.bin"]["stub"], true);
    assert_eq!(b["_attachments"]["b.bin"]["data"], TWO_B64);
    // attachments=true: everything inline.
    let (_, b) = get_json(&node, &format!("/{db}/doc?attachments=true"));
    assert_eq!(b["_attachments"]["a.bin"]["data"], BIN_B64);
    assert_eq!(b["_attachments"]["b.bin"]["data"], TWO_B64);
}

#[test]
fn standalone_put_and_get() {
    let node = Node::start();
    let db = node.create_db("standalone");

    // PUT on a missing document creates it.
    let r = put_att(
        &node,
        &format!("/{db}/newdoc/hello.txt"),
        Some("text/plain"),
        HELLO,
    );
    assert_eq!(r.status, 201);
    let b = r.json();
    let r1 = rev_of(&b);
    assert_eq!(generation(&r1), 1);
    assert_exact(&b, &json!({"ok": true, "id": "newdoc", "rev": r1}));
    assert_eq!(
        r.header("location"),
        Some(format!(
            "http://127.0.0.1:{}/{db}/newdoc/hello.txt",
            node.port
        ))
    );
    let (s, doc) = node.get(&format!("/{db}/newdoc"));
    assert_eq!(s, 200);
    assert_eq!(keys(&doc), ["_id", "_rev", "_attachments"]);
    let stub = &doc["_attachments"]["hello.txt"];
    assert_eq!(
        keys(stub),
        ["content_type", "revpos", "digest", "length", "stub"]
    );
    assert_eq!(stub["content_type"], "text/plain");
    assert_eq!(stub["revpos"], 1);
    assert_eq!(stub["length"], HELLO.len());
    assert!(stub["digest"].as_str().unwrap().starts_with("md5-"));

    let r = raw(node.req("GET", &format!("/{db}/newdoc/hello.txt")));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, HELLO);
    assert_eq!(r.header("content-type").as_deref(), Some("text/plain"));
    let etag = r.header("etag").expect("attachment etag");
    // If-None-Match with that ETag: 304, empty body.
    let r = raw(node
        .req("GET", &format!("/{db}/newdoc/hello.txt"))
        .header("if-none-match", &etag));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.clone()));

    // No content type: application/octet-stream; the exact digest is the ETag.
    let r = put_att(&node, &format!("/{db}/raw/data"), None, HELLO);
    assert_eq!(r.status, 201);
    let r = raw(node.req("GET", &format!("/{db}/raw/data")));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(r.header("etag"), Some(format!("\"{HELLO_MD5}\"")));
    let (_, doc) = node.get(&format!("/{db}/raw"));
    assert_eq!(
        doc["_attachments"]["data"]["digest"],
        format!("md5-{HELLO_MD5}")
    );

    // The document exists now: a rev is required.
    let r = put_att(
        &node,
        &format!("/{db}/newdoc/two.bin"),
        Some("application/octet-stream"),
        TWO,
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json(),
        json!({"error": "conflict", "reason": "Document update conflict."})
    );
    let r = put_att(
        &node,
        &format!("/{db}/newdoc/two.bin?rev={r1}"),
        Some("application/octet-stream"),
        TWO,
    );
    assert_eq!(r.status, 201);
    let r2 = rev_of(&r.json());
    assert_eq!(generation(&r2), 2);
    // The document's other fields and attachments are kept; the new one comes first.
    let (_, doc) = node.get(&format!("/{db}/newdoc"));
    assert_eq!(doc["_rev"], r2);
    assert_eq!(keys(&doc["_attachments"]), ["two.bin", "hello.txt"]);
    assert_eq!(doc["_attachments"]["hello.txt"]["revpos"], 1);
    assert_eq!(doc["_attachments"]["two.bin"]["revpos"], 2);

    // If-Match instead of ?rev=; replacing an attachment moves its revpos.
    let r = raw(node
        .req("PUT", &format!("/{db}/newdoc/hello.txt"))
        .header("if-match", format!("\"{r2}\""))
        .header("content-type", "text/plain")
        .body("changed"));
    assert_eq!(r.status, 201);
    let r3 = rev_of(&r.json());
    let (_, doc) = node.get(&format!("/{db}/newdoc"));
    assert_eq!(doc["_attachments"]["hello.txt"]["revpos"], 3);
    assert_eq!(doc["_attachments"]["hello.txt"]["length"], 7);
    let r = raw(node.req("GET", &format!("/{db}/newdoc/hello.txt")));
    assert_eq!(r.body, b"changed");
    assert_ne!(r.header("etag"), Some(etag));

    // A stale rev conflicts; a rev the document never had is `missing_rev`.
    let r = put_att(&node, &format!("/{db}/newdoc/x.bin?rev={r1}"), None, TWO);
    assert_eq!(r.status, 409);
    let r = put_att(
        &node,
        &format!("/{db}/newdoc/x.bin?rev=3-00000000000000000000000000000000"),
        None,
        TWO,
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json(),
        json!({"error": "not_found", "reason": "missing_rev"})
    );
    let r = put_att(
        &node,
        &format!("/{db}/nodoc/x.bin?rev=1-00000000000000000000000000000000"),
        None,
        TWO,
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json(),
        json!({"error": "not_found", "reason": "missing_rev"})
    );
    // ?rev= and If-Match must agree.
    let r = raw(node
        .req("PUT", &format!("/{db}/newdoc/x.bin?rev={r3}"))
        .header("if-match", format!("\"{r1}\""))
        .body("x"));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "bad_request", "reason": "Document rev and etag have different values"})
    );
    // Names starting with an underscore are refused.
    let r = put_att(&node, &format!("/{db}/newdoc/_hidden?rev={r3}"), None, TWO);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "bad_request",
               "reason": "Attachment name '_hidden' starts with prohibited character '_'"})
    );
    let (s, b) = node.put(
        &format!("/{db}/other"),
        json!({"_attachments": {"_x": {"data": BIN_B64}}}),
    );
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "bad_request",
                   "reason": "Attachment name '_x' starts with prohibited character '_'"})
        )
    );
}

#[test]
fn attachment_on_a_deleted_document_recreates_it() {
    let node = Node::start();
    let db = node.create_db("attdeleted");
    let (_, b) = node.put(&format!("/{db}/d"), json!({"v": 1}));
    let r1 = rev_of(&b);
    let (_, b) = node.delete(&format!("/{db}/d?rev={r1}"));
    let r2 = rev_of(&b);
    let (s, b) = node.get(&format!("/{db}/d/a.bin"));
    assert_eq!(
        (s, b),
        (404, json!({"error": "not_found", "reason": "deleted"}))
    );
    // The tombstone itself has no such attachment.
    let (s, b) = node.get(&format!("/{db}/d/a.bin?rev={r2}"));
    assert_eq!((s, b), (404, missing_att()));
    let r = put_att(&node, &format!("/{db}/d/a.bin"), None, BIN);
    assert_eq!(r.status, 201);
    let r3 = rev_of(&r.json());
    assert_eq!(generation(&r3), 3);
    let (_, doc) = node.get(&format!("/{db}/d"));
    // (Its revpos is not checked: CouchDB's recreation path leaves it at 1.)
    assert_eq!(doc["_attachments"]["a.bin"]["length"], BIN.len());
    let r = raw(node.req("GET", &format!("/{db}/d/a.bin")));
    assert_eq!(r.body, BIN);
}

#[test]
fn attachment_names_with_slashes() {
    let node = Node::start();
    let db = node.create_db("slashes");
    let r = put_att(
        &node,
        &format!("/{db}/doc/dir/sub/file.bin"),
        Some("application/octet-stream"),
        BIN,
    );
    assert_eq!(r.status, 201);
    let r1 = rev_of(&r.json());
    assert_eq!(
        r.header("location"),
        Some(format!(
            "http://127.0.0.1:{}/{db}/doc/dir%2Fsub%2Ffile.bin",
            node.port
        ))
    );
    let (_, doc) = node.get(&format!("/{db}/doc"));
    assert_eq!(keys(&doc["_attachments"]), ["dir/sub/file.bin"]);
    // Slash or %2F: the same attachment.
    let r = raw(node.req("GET", &format!("/{db}/doc/dir/sub/file.bin")));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, BIN);
    let r = raw(node.req("GET", &format!("/{db}/doc/dir%2Fsub%2Ffile.bin")));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, BIN);
    // A prefix of the path is not an attachment.
    let (s, b) = node.get(&format!("/{db}/doc/dir"));
    assert_eq!((s, b), (404, missing_att()));
    // Inline names with slashes are reachable the same way.
    let (s, b) = node.put(
        &format!("/{db}/doc"),
        json!({"_rev": r1, "_attachments": {
            "dir/sub/file.bin": {"stub": true},
            "a/b": {"content_type": "image/png", "data": TWO_B64}}}),
    );
    assert_eq!(s, 201, "{b}");
    let r = raw(node.req("GET", &format!("/{db}/doc/a/b")));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, TWO);
    assert_eq!(r.header("content-type").as_deref(), Some("image/png"));
    // And deleted by the slash path.
    let r2 = rev_of(&b);
    let (s, b) = node.delete(&format!("/{db}/doc/dir/sub/file.bin?rev={r2}"));
    assert_eq!(s, 200, "{b}");
    let (_, doc) = node.get(&format!("/{db}/doc"));
    assert_eq!(keys(&doc["_attachments"]), ["a/b"]);
}

#[test]
fn delete_attachment() {
    let node = Node::start();
    let db = node.create_db("attdel");
    let (_, b) = node.put(
        &format!("/{db}/doc"),
        json!({"keep": true, "_attachments": {
            "a.bin": {"data": BIN_B64}, "b.bin": {"data": TWO_B64}}}),
    );
    let r1 = rev_of(&b);

    // Without a rev: the document and attachment must exist, then it conflicts.
    let (s, b) = node.delete(&format!("/{db}/nodoc/a.bin"));
    assert_eq!(
        (s, b),
        (404, json!({"error": "not_found", "reason": "missing"}))
    );
    let (s, b) = node.delete(&format!("/{db}/doc/nope.bin"));
    assert_eq!((s, b), (404, missing_att()));
    let (s, b) = node.delete(&format!("/{db}/doc/a.bin"));
    assert_eq!(
        (s, b),
        (
            409,
            json!({"error": "conflict", "reason": "Document update conflict."})
        )
    );
    // With a rev but no such attachment.
    let (s, b) = node.delete(&format!("/{db}/doc/nope.bin?rev={r1}"));
    assert_eq!((s, b), (404, missing_att()));

    let r = raw(node.req("DELETE", &format!("/{db}/doc/a.bin?rev={r1}")));
    assert_eq!(r.status, 200);
    let b = r.json();
    let r2 = rev_of(&b);
    assert_eq!(generation(&r2), 2);
    assert_exact(&b, &json!({"ok": true, "id": "doc", "rev": r2}));
    assert_eq!(r.header("location"), None);
    let (s, b) = node.get(&format!("/{db}/doc/a.bin"));
    assert_eq!((s, b), (404, missing_att()));
    // The rest of the document is untouched.
    let (_, doc) = node.get(&format!("/{db}/doc"));
    assert_eq!(doc["keep"], true);
    assert_eq!(keys(&doc["_attachments"]), ["b.bin"]);
    assert_eq!(doc["_attachments"]["b.bin"]["revpos"], 1);
    // A stale rev conflicts.
    let (s, _) = node.delete(&format!("/{db}/doc/b.bin?rev={r1}"));
    assert_eq!(s, 409);
    // If-Match works for DELETE too.
    let r = raw(node
        .req("DELETE", &format!("/{db}/doc/b.bin"))
        .header("if-match", format!("\"{r2}\"")));
    assert_eq!(r.status, 200);
    let (_, doc) = node.get(&format!("/{db}/doc"));
    assert_eq!(keys(&doc), ["_id", "_rev", "keep"]);
}

#[test]
fn missing_attachments_and_documents() {
    let node = Node::start();
    let db = node.create_db("attmissing");
    let (s, b) = node.get(&format!("/{db}/nodoc/a.bin"));
    assert_eq!(
        (s, b),
        (404, json!({"error": "not_found", "reason": "missing"}))
    );
    node.put(&format!("/{db}/doc"), json!({"v": 1}));
    let (s, b) = node.get(&format!("/{db}/doc/a.bin"));
    assert_eq!((s, b), (404, missing_att()));
    let r = raw(node.req("HEAD", &format!("/{db}/doc/a.bin")));
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    // A malformed ?rev=.
    let (s, b) = node.get(&format!("/{db}/doc/a.bin?rev=abc"));
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "bad_request", "reason": "Invalid rev format"})
        )
    );
    // An unknown one.
    let (s, b) = node.get(&format!(
        "/{db}/doc/a.bin?rev=1-00000000000000000000000000000000"
    ));
    assert_eq!(
        (s, b),
        (404, json!({"error": "not_found", "reason": "missing"}))
    );
}

#[test]
fn attachment_of_a_given_rev() {
    let node = Node::start();
    let db = node.create_db("attrev");
    // Two conflicting leaves carrying different data under the same name.
    for (rev, data) in [("1-aaa", BIN_B64), ("1-bbb", TWO_B64)] {
        let (s, b) = node.put(
            &format!("/{db}/doc?new_edits=false"),
            json!({"_rev": rev, "_attachments": {
                "f.bin": {"content_type": "application/octet-stream", "data": data}}}),
        );
        assert_eq!(s, 201, "{b}");
    }
    // The winner (1-bbb) by default, the other leaf by ?rev=.
    let r = raw(node.req("GET", &format!("/{db}/doc/f.bin")));
    assert_eq!(r.body, TWO);
    assert_eq!(r.header("etag"), Some(format!("\"{TWO_MD5}\"")));
    let r = raw(node.req("GET", &format!("/{db}/doc/f.bin?rev=1-aaa")));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, BIN);
    assert_eq!(r.header("etag"), Some(format!("\"{BIN_MD5}\"")));
    let (_, b) = node.get(&format!("/{db}/doc?rev=1-aaa"));
    assert_eq!(
        b["_attachments"]["f.bin"]["digest"],
        format!("md5-{BIN_MD5}")
    );
    // Writing an attachment on the losing branch extends that branch only.
    let r = put_att(&node, &format!("/{db}/doc/g.bin?rev=1-aaa"), None, HELLO);
    assert_eq!(r.status, 201);
    let r2 = rev_of(&r.json());
    let (_, b) = node.get(&format!("/{db}/doc?conflicts=true"));
    assert_eq!(b["_rev"], r2);
    assert_eq!(b["_conflicts"], json!(["1-bbb"]));
    assert_eq!(keys(&b["_attachments"]), ["g.bin", "f.bin"]);
    let r = raw(node.req("GET", &format!("/{db}/doc/f.bin")));
    assert_eq!(r.body, BIN);
}

/// CouchDB keeps the bodies of replaced revisions until compaction, so an older
/// revision's attachment stays readable by `?rev=` (and `_revs_info` says
/// "available"). Chaise drops them at write time (see storage's writer), so this
/// is a known difference.
#[test]
#[ignore = "Chaise drops non-leaf revision bodies at write time; CouchDB keeps them until compaction"]
fn attachment_of_an_older_rev_before_compaction() {
    let node = Node::start();
    let db = node.create_db("attold");
    let r = put_att(&node, &format!("/{db}/doc/f.bin"), None, BIN);
    let r1 = rev_of(&r.json());
    let r = put_att(&node, &format!("/{db}/doc/f.bin?rev={r1}"), None, TWO);
    assert_eq!(r.status, 201);
    let r = raw(node.req("GET", &format!("/{db}/doc/f.bin?rev={r1}")));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, BIN);
    let (_, b) = node.get(&format!("/{db}/doc?revs_info=true"));
    assert_eq!(
        b["_revs_info"][1],
        json!({"rev": r1, "status": "available"})
    );
}

#[test]
fn invalid_inline_attachments() {
    let node = Node::start();
    let db = node.create_db("attbad");
    let (s, b) = node.put(
        &format!("/{db}/doc"),
        json!({"_attachments": {"x.bin": {"content_type": "a/b", "data": "!!!not base64!!!"}}}),
    );
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "bad_request", "reason": "Invalid attachment data for x.bin"})
        )
    );
    let (s, b) = node.put(
        &format!("/{db}/doc"),
        json!({"_attachments": {"x.bin": {"content_type": "a/b", "data": 12}}}),
    );
    assert_eq!(
        (s, b),
        (
            400,
            json!({"error": "bad_request", "reason": "Invalid attachment data for x.bin"})
        )
    );
    let (_, info) = node.get(&format!("/{db}"));
    assert_eq!(info["doc_count"], 0);
}

#[test]
fn design_document_attachments() {
    let node = Node::start();
    let db = node.create_db("ddocatt");
    let r = put_att(
        &node,
        &format!("/{db}/_design/app/index.bin"),
        Some("application/octet-stream"),
        BIN,
    );
    assert_eq!(r.status, 201);
    let b = r.json();
    assert_eq!(b["id"], "_design/app");
    let r1 = rev_of(&b);
    assert_eq!(
        r.header("location"),
        Some(format!(
            "http://127.0.0.1:{}/{db}/_design%2Fapp/index.bin",
            node.port
        ))
    );
    let r = raw(node.req("GET", &format!("/{db}/_design/app/index.bin")));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, BIN);
    assert_eq!(r.header("etag"), Some(format!("\"{BIN_MD5}\"")));
    let (_, doc) = node.get(&format!("/{db}/_design/app"));
    assert_eq!(doc["_id"], "_design/app");
    assert_eq!(
        doc["_attachments"]["index.bin"]["digest"],
        format!("md5-{BIN_MD5}")
    );
    // Nested names under a design document.
    let r = put_att(
        &node,
        &format!("/{db}/_design/app/static/x.bin?rev={r1}"),
        None,
        TWO,
    );
    assert_eq!(r.status, 201);
    let r2 = rev_of(&r.json());
    let r = raw(node.req("GET", &format!("/{db}/_design/app/static/x.bin")));
    assert_eq!(r.body, TWO);
    let (s, _) = node.delete(&format!("/{db}/_design/app/index.bin?rev={r2}"));
    assert_eq!(s, 200);
    let (s, b) = node.get(&format!("/{db}/_design/app/index.bin"));
    assert_eq!((s, b), (404, missing_att()));
}

/// COPY carries every attachment to the destination as stored (encoding, digest,
/// length), even into another shard range and across several read pieces.
#[test]
fn copy_carries_attachments_across_ranges() {
    let node = Node::start();
    let db = chaise_integration_tests::helpers::create_q(&node, "copyatts", 8);
    let big = noise(11, (3 << 20) + 17);
    let text = "copied text ".repeat(1000);
    let r = raw(node
        .req("PUT", &format!("/{db}/src/big.bin"))
        .header("content-type", "application/octet-stream")
        .body(big.clone()));
    assert_eq!(r.status, 201);
    let rev = rev_of(&r.json());
    let r = raw(node
        .req("PUT", &format!("/{db}/src/notes.txt?rev={rev}"))
        .header("content-type", "text/plain")
        .body(text.clone()));
    assert_eq!(r.status, 201);

    // Destinations in several ranges (q=8): at least one differs from the source's.
    for dest in ["copy-a", "copy-b", "copy-c", "copy-d"] {
        let r = raw(node
            .req("COPY", &format!("/{db}/src"))
            .header("destination", dest));
        assert_eq!(r.status, 201, "{dest}: {:?}", r.json());
        let (_, src) = get_json(&node, &format!("/{db}/src?att_encoding_info=true"));
        let (_, dst) = get_json(&node, &format!("/{db}/{dest}?att_encoding_info=true"));
        for name in ["big.bin", "notes.txt"] {
            let (s, d) = (&src["_attachments"][name], &dst["_attachments"][name]);
            for field in [
                "digest",
                "length",
                "content_type",
                "encoding",
                "encoded_length",
            ] {
                assert_eq!(s[field], d[field], "{dest}/{name} {field}");
            }
        }
        assert_eq!(dst["_attachments"]["notes.txt"]["encoding"], "gzip");
        let got = get_bytes(&node, &format!("/{db}/{dest}/big.bin"));
        assert!(got == big, "{dest}: big.bin differs");
        let got = get_bytes(&node, &format!("/{db}/{dest}/notes.txt"));
        assert_eq!(got, text.as_bytes(), "{dest}: notes.txt differs");
    }
}
