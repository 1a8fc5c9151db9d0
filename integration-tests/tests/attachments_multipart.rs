//! Documents with attachments as MIME multipart, as CouchDB's replicator and
//! PouchDB exchange them: `PUT` of `multipart/related` (also with
//! `new_edits=false`), `GET ?attachments=true` with `Accept: multipart/related`,
//! and `open_revs` with `Accept: multipart/mixed` (`couch_doc:doc_to_multi_part_stream`,
//! `chttpd_db:send_docs_multipart`), with their error cases.

use chaise_integration_tests::helpers::gunzip;
use chaise_integration_tests::{raw, Node, Raw};
use serde_json::{json, Value};

const BIN: &[u8] = b"\x00\x01\x02\xffbinary\r\n--not-a-boundary";
const TEXT: &[u8] = b"hello multipart world";

/// A `multipart/related` body: the JSON document, then the given parts.
fn related(boundary: &str, doc: &Value, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = format!("--{boundary}\r\nContent-Type: application/json\r\n\r\n").into_bytes();
    out.extend(serde_json::to_vec(doc).unwrap());
    for (ct, data) in parts {
        out.extend(format!("\r\n--{boundary}\r\nContent-Type: {ct}\r\n\r\n").into_bytes());
        out.extend_from_slice(data);
    }
    out.extend(format!("\r\n--{boundary}--").into_bytes());
    out
}

fn put_related(node: &Node, path: &str, body: Vec<u8>, boundary: &str) -> Raw {
    raw(node
        .req("PUT", path)
        .header(
            "content-type",
            format!("multipart/related; boundary=\"{boundary}\""),
        )
        .body(body))
}

/// Splits a multipart body into (headers, body) parts.
fn parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("--{boundary}").into_bytes();
    let mut out = Vec::new();
    let mut rest = body;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let start = find(rest, &delim).expect("first boundary");
    rest = &rest[start + delim.len()..];
    while !rest.starts_with(b"--") {
        let rest_after_crlf = rest.strip_prefix(b"\r\n").expect("CRLF after boundary");
        let end =
            find(rest_after_crlf, &[b"\r\n", delim.as_slice()].concat()).expect("next boundary");
        let part = &rest_after_crlf[..end];
        let split = find(part, b"\r\n\r\n").expect("part headers");
        out.push((
            String::from_utf8(part[..split].to_vec()).unwrap(),
            part[split + 4..].to_vec(),
        ));
        rest = &rest_after_crlf[end + 2 + delim.len()..];
    }
    out
}

fn boundary_of(content_type: &str) -> String {
    content_type
        .split("boundary=")
        .nth(1)
        .expect("boundary")
        .trim_matches('"')
        .to_string()
}

fn md5_b64(data: &[u8]) -> String {
    use md5::Digest;
    let d: [u8; 16] = md5::Md5::digest(data).into();
    format!(
        "md5-{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, d)
    )
}

#[test]
fn put_related_then_get_related() {
    let node = Node::start();
    let db = node.create_db("mp");
    let doc = json!({"_id": "doc", "title": "mp", "_attachments": {
        "a.bin": {"content_type": "application/octet-stream", "length": BIN.len(), "follows": true},
        "b.txt": {"content_type": "text/plain", "length": TEXT.len(), "follows": true}}});
    let body = related(
        "abc123",
        &doc,
        &[("application/octet-stream", BIN), ("text/plain", TEXT)],
    );
    let r = put_related(&node, &format!("/{db}/doc"), body, "abc123");
    assert_eq!(r.status, 201, "{:?}", r.json());
    let rev = r.json()["rev"].as_str().unwrap().to_string();

    let (_, got) = node.get(&format!("/{db}/doc"));
    assert_eq!(got["title"], "mp");
    assert_eq!(got["_attachments"]["a.bin"]["digest"], md5_b64(BIN));
    assert_eq!(got["_attachments"]["a.bin"]["length"], BIN.len());
    assert_eq!(got["_attachments"]["b.txt"]["length"], TEXT.len());
    for (name, data) in [("a.bin", BIN), ("b.txt", TEXT)] {
        let r = raw(node.req("GET", &format!("/{db}/doc/{name}")));
        assert_eq!(r.body, data, "{name}");
    }

    // GET ?attachments=true as multipart/related.
    let r = raw(node
        .req("GET", &format!("/{db}/doc?attachments=true"))
        .header("accept", "multipart/related"));
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap();
    assert!(ct.starts_with("multipart/related; boundary=\""), "{ct}");
    assert_eq!(r.header("content-length"), Some(r.body.len().to_string()));
    let ps = parts(&r.body, &boundary_of(&ct));
    assert_eq!(ps.len(), 3);
    assert_eq!(ps[0].0, "Content-Type: application/json");
    let json: Value = serde_json::from_slice(&ps[0].1).unwrap();
    assert_eq!(json["_rev"], rev);
    assert_eq!(json["_attachments"]["a.bin"]["follows"], true);
    assert_eq!(json["_attachments"]["b.txt"]["encoding"], "gzip");
    assert!(ps[1]
        .0
        .contains("Content-Disposition: attachment; filename=\"a.bin\""));
    assert!(ps[1].0.contains("Content-Type: application/octet-stream"));
    assert!(ps[1].0.contains(&format!("Content-Length: {}", BIN.len())));
    assert_eq!(ps[1].1, BIN);
    assert!(ps[2].0.contains("filename=\"b.txt\""));
    assert!(ps[2].0.contains("Content-Encoding: gzip"));
    let encoded_length = &json["_attachments"]["b.txt"]["encoded_length"];
    assert!(ps[2]
        .0
        .contains(&format!("Content-Length: {encoded_length}")));
    assert_eq!(gunzip(&ps[2].1), TEXT);

    // JSON is still the answer without the Accept header, or without attachments.
    let r = raw(node
        .req("GET", &format!("/{db}/doc"))
        .header("accept", "multipart/related"));
    assert_eq!(r.json()["_attachments"]["a.bin"]["stub"], true);

    // An update keeping one attachment as a stub and replacing the other.
    let doc = json!({"_id": "doc", "_rev": rev, "_attachments": {
        "a.bin": {"stub": true},
        "b.txt": {"content_type": "text/plain", "follows": true}}});
    let body = related("x", &doc, &[("text/plain", b"second")]);
    let r = put_related(&node, &format!("/{db}/doc"), body, "x");
    assert_eq!(r.status, 201, "{:?}", r.json());
    let r = raw(node.req("GET", &format!("/{db}/doc/b.txt")));
    assert_eq!(r.body, b"second");
    let (_, got) = node.get(&format!("/{db}/doc"));
    assert_eq!(got["_attachments"]["a.bin"]["revpos"], 1);
    assert_eq!(got["_attachments"]["b.txt"]["revpos"], 2);
}

#[test]
fn put_related_new_edits_false_keeps_the_revision() {
    let node = Node::start();
    let db = node.create_db("mp");
    let big: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let doc = json!({"_id": "rep", "_rev": "2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "_revisions": {"start": 2, "ids": ["bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]},
        "_attachments": {"big.bin": {"content_type": "application/octet-stream",
            "revpos": 1, "length": big.len(), "follows": true}}});
    let body = related("rep", &doc, &[("application/octet-stream", &big)]);
    let r = put_related(&node, &format!("/{db}/rep?new_edits=false"), body, "rep");
    assert_eq!(r.status, 201, "{:?}", r.json());
    let (_, got) = node.get(&format!("/{db}/rep?revs=true"));
    assert_eq!(got["_rev"], "2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    assert_eq!(
        got["_revisions"]["ids"][1],
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    );
    assert_eq!(got["_attachments"]["big.bin"]["revpos"], 1);
    assert_eq!(got["_attachments"]["big.bin"]["digest"], md5_b64(&big));
    let r = raw(node.req("GET", &format!("/{db}/rep/big.bin")));
    assert_eq!(r.body, big);
}

#[test]
fn open_revs_as_multipart_mixed() {
    let node = Node::start();
    let db = node.create_db("mp");
    let (s, b) = node.put(&format!("/{db}/doc"), json!({"v": 1}));
    assert_eq!(s, 201);
    let r1 = b["rev"].as_str().unwrap().to_string();
    let r = raw(node
        .req("PUT", &format!("/{db}/doc/a.bin?rev={r1}"))
        .header("content-type", "application/octet-stream")
        .body(BIN.to_vec()));
    let r2 = r.json()["rev"].as_str().unwrap().to_string();
    let missing = "9-99999999999999999999999999999999";
    let r = raw(node
        .req(
            "GET",
            &format!("/{db}/doc?open_revs=[\"{r2}\",\"{missing}\"]&revs=true"),
        )
        .header("accept", "multipart/mixed"));
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap();
    assert!(ct.starts_with("multipart/mixed; boundary=\""), "{ct}");
    let outer = parts(&r.body, &boundary_of(&ct));
    assert_eq!(outer.len(), 2);
    // r2 has an attachment: a multipart/related part of its own.
    let inner_ct = outer[0].0.strip_prefix("Content-Type: ").unwrap();
    assert!(inner_ct.starts_with("multipart/related"));
    let inner = parts(&outer[0].1, &boundary_of(inner_ct));
    assert_eq!(inner.len(), 2);
    let d2: Value = serde_json::from_slice(&inner[0].1).unwrap();
    assert_eq!(d2["_rev"], r2);
    assert_eq!(d2["_revisions"]["start"], 2);
    assert_eq!(d2["_attachments"]["a.bin"]["follows"], true);
    assert_eq!(inner[1].1, BIN);
    // The unknown revision.
    assert_eq!(outer[1].0, "Content-Type: application/json; error=\"true\"");
    assert_eq!(
        serde_json::from_slice::<Value>(&outer[1].1).unwrap(),
        json!({"missing": missing})
    );

    // atts_since: an attachment the receiver has is a stub, not a part.
    let r = raw(node
        .req(
            "GET",
            &format!("/{db}/doc?open_revs=[\"{r2}\"]&atts_since=[\"{r2}\"]"),
        )
        .header("accept", "multipart/mixed"));
    let outer = parts(&r.body, &boundary_of(&r.header("content-type").unwrap()));
    assert_eq!(outer[0].0, "Content-Type: application/json");
    let d: Value = serde_json::from_slice(&outer[0].1).unwrap();
    assert_eq!(d["_attachments"]["a.bin"]["stub"], true);

    // A document without attachments is a plain JSON part.
    let (_, b) = node.put(&format!("/{db}/plain"), json!({"v": 2}));
    let r = raw(node
        .req("GET", &format!("/{db}/plain?open_revs=all"))
        .header("accept", "multipart/mixed"));
    let outer = parts(&r.body, &boundary_of(&r.header("content-type").unwrap()));
    assert_eq!(outer.len(), 1);
    assert_eq!(outer[0].0, "Content-Type: application/json");
    let d: Value = serde_json::from_slice(&outer[0].1).unwrap();
    assert_eq!(d["_rev"], b["rev"]);
}

#[test]
fn multipart_errors() {
    let node = Node::start();
    let db = node.create_db("mp");
    let follows = |name: &str| json!({"_attachments": {name: {"content_type": "text/plain", "follows": true}}});
    // Malformed: no closing boundary / not multipart at all.
    let mut body = related("b", &follows("a.txt"), &[("text/plain", b"data")]);
    body.truncate(body.len() - 6);
    let r = put_related(&node, &format!("/{db}/bad1"), body, "b");
    assert_eq!(r.status, 400, "{:?}", r.json());
    assert_eq!(r.json()["error"], "bad_request");
    let r = put_related(&node, &format!("/{db}/bad2"), b"garbage".to_vec(), "b");
    assert_eq!(r.status, 400);
    let r = raw(node
        .req("PUT", &format!("/{db}/bad3"))
        .header("content-type", "multipart/related")
        .body(b"--x--".to_vec()));
    assert_eq!(r.status, 400);
    // The JSON part is not a document.
    let r = put_related(
        &node,
        &format!("/{db}/bad4"),
        related("b", &json!([1]), &[]),
        "b",
    );
    assert_eq!(r.status, 400);
    // A follows attachment without its part.
    let r = put_related(
        &node,
        &format!("/{db}/bad5"),
        related("b", &follows("a.txt"), &[]),
        "b",
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["reason"].as_str().unwrap().contains("a.txt"));
    // follows in a plain JSON body.
    let (s, _) = node.put(&format!("/{db}/bad6"), follows("a.txt"));
    assert_eq!(s, 400);
    for id in ["bad1", "bad2", "bad3", "bad4", "bad5", "bad6"] {
        assert_eq!(node.get(&format!("/{db}/{id}")).0, 404, "{id}");
    }

    // A stub for an attachment the parent lacks: 412.
    let (_, b) = node.put(&format!("/{db}/doc"), json!({}));
    let rev = b["rev"].as_str().unwrap().to_string();
    let doc = json!({"_rev": rev, "_attachments": {
        "nope.txt": {"stub": true},
        "a.txt": {"content_type": "text/plain", "follows": true}}});
    let r = put_related(
        &node,
        &format!("/{db}/doc"),
        related("b", &doc, &[("text/plain", b"x")]),
        "b",
    );
    assert_eq!(r.status, 412, "{:?}", r.json());
    assert_eq!(r.json()["error"], "missing_stub");
    // A wrong revision: 409.
    let doc = json!({"_rev": "1-00000000000000000000000000000000",
        "_attachments": {"a.txt": {"content_type": "text/plain", "follows": true}}});
    let r = put_related(
        &node,
        &format!("/{db}/doc"),
        related("b", &doc, &[("text/plain", b"x")]),
        "b",
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"], "conflict");
    // new_edits=false without a revision: 400.
    let r = put_related(
        &node,
        &format!("/{db}/doc2?new_edits=false"),
        related("b", &follows("a.txt"), &[("text/plain", b"x")]),
        "b",
    );
    assert_eq!(r.status, 400);
}
