//! Documents with attachments as MIME multipart, as CouchDB's replicator and
//! PouchDB exchange them: `PUT` of `multipart/related` (also with
//! `new_edits=false`), `GET ?attachments=true` with `Accept: multipart/related`,
//! `open_revs` with `Accept: multipart/mixed` (`couch_doc:doc_to_multi_part_stream`,
//! `chttpd_db:send_docs_multipart`), and `_bulk_get` with `Accept: multipart/mixed`
//! or `multipart/related` (`chttpd_db:bulk_get_ret_multipart`,
//! `send_docs_multipart_bulk_get`), with their error cases.

use chaise_integration_tests::helpers::{assert_exact, gunzip, keys};
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

/// `POST /{db}/_bulk_get{query}` with this `Accept` header.
fn bulk_get_mp(node: &Node, db: &str, query: &str, accept: &str, docs: Value) -> Raw {
    raw(node
        .req("POST", &format!("/{db}/_bulk_get{query}"))
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(serde_json::to_vec(&json!({ "docs": docs })).unwrap()))
}

/// The outer boundary of a `_bulk_get` multipart answer of `kind`, checked as
/// CouchDB writes it: quoted, `--` followed by a 32-hex uuid; and the body's
/// framing: every part opens with `\r\n--boundary`, the last is closed with
/// `\r\n--boundary--\r\n`.
fn bulk_get_boundary(r: &Raw, kind: &str) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ct = r.header("content-type").expect("content-type");
    let prefix = format!("multipart/{kind}; boundary=\"");
    let boundary = ct
        .strip_prefix(&prefix)
        .and_then(|b| b.strip_suffix('"'))
        .unwrap_or_else(|| panic!("content type {ct}"))
        .to_string();
    assert_uuid_boundary(&boundary);
    assert!(
        r.body
            .starts_with(format!("\r\n--{boundary}\r\n").as_bytes()),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        r.body
            .ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // Sent as it is produced (`start_chunked_response`).
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    boundary
}

/// `chttpd_db:bulk_get_multipart_boundary`: `--` and `couch_uuids:random()`.
fn assert_uuid_boundary(b: &str) {
    let hex = b
        .strip_prefix("--")
        .unwrap_or_else(|| panic!("boundary {b}"));
    assert_eq!(hex.len(), 32, "boundary {b}");
    assert!(
        hex.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
        "boundary {b}"
    );
}

/// The headers of a nested document part: `X-Doc-Id`, `X-Rev-Id` and the
/// unquoted inner boundary. Returns that boundary.
fn related_part_boundary(headers: &str, id: &str, rev: &str) -> String {
    let prefix =
        format!("X-Doc-Id: {id}\r\nX-Rev-Id: {rev}\r\nContent-Type: multipart/related; boundary=");
    let inner = headers
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("part headers {headers:?}"))
        .to_string();
    assert_uuid_boundary(&inner);
    inner
}

const ERROR_PART: &str = "Content-Type: application/json; error=\"true\"";

#[test]
fn bulk_get_multipart_doc_without_attachments() {
    let node = Node::start();
    let db = node.create_db("bgmp");
    let (s, b) = node.put(&format!("/{db}/plain"), json!({"v": 1, "s": "x"}));
    assert_eq!(s, 201);
    let rev = b["rev"].as_str().unwrap().to_string();

    let r = bulk_get_mp(
        &node,
        &db,
        "",
        "multipart/mixed",
        json!([{"id": "plain", "rev": rev}]),
    );
    let boundary = bulk_get_boundary(&r, "mixed");
    // The whole body, byte for byte: one application/json part, no X-Doc-Id.
    let want = format!(
        "\r\n--{boundary}\r\nContent-Type: application/json\r\n\r\n\
         {{\"_id\":\"plain\",\"_rev\":\"{rev}\",\"v\":1,\"s\":\"x\"}}\r\n--{boundary}--\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&r.body), want);

    // Without a rev: every leaf, the same part.
    let r = bulk_get_mp(&node, &db, "", "multipart/mixed", json!([{"id": "plain"}]));
    let boundary = bulk_get_boundary(&r, "mixed");
    let ps = parts(&r.body, &boundary);
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].0, "Content-Type: application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&ps[0].1).unwrap(),
        json!({"_id": "plain", "_rev": rev, "v": 1, "s": "x"})
    );

    // Accept: multipart/related (the replicator's) names the outer type.
    let r = bulk_get_mp(
        &node,
        &db,
        "",
        "multipart/related",
        json!([{"id": "plain", "rev": rev}]),
    );
    let boundary = bulk_get_boundary(&r, "related");
    assert_eq!(parts(&r.body, &boundary).len(), 1);

    // A client that also accepts JSON gets JSON, as without the header.
    for accept in ["multipart/mixed, application/json", "*/*", "application/*"] {
        let r = bulk_get_mp(&node, &db, "", accept, json!([{"id": "plain"}]));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json"),
            "{accept}"
        );
        assert_eq!(r.json()["results"][0]["docs"][0]["ok"]["_rev"], rev);
    }
    // multipart/* stands for multipart/mixed; q=0 refuses JSON.
    let r = bulk_get_mp(&node, &db, "", "multipart/*", json!([{"id": "plain"}]));
    bulk_get_boundary(&r, "mixed");
    let r = bulk_get_mp(
        &node,
        &db,
        "",
        "multipart/related, application/json;q=0",
        json!([{"id": "plain"}]),
    );
    bulk_get_boundary(&r, "related");

    // No items: no part and no closing boundary.
    let r = bulk_get_mp(&node, &db, "", "multipart/mixed", json!([]));
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap();
    assert!(ct.starts_with("multipart/mixed; boundary=\"--"), "{ct}");
    assert!(r.body.is_empty(), "{}", String::from_utf8_lossy(&r.body));
}

/// A document with `a.bin` (stored as is) and `b.txt` (stored gzip-encoded).
fn two_attachments(node: &Node, db: &str) -> String {
    let b64 = |d: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, d);
    let (s, b) = node.put(
        &format!("/{db}/doc"),
        json!({"title": "two", "_attachments": {
            "a.bin": {"content_type": "application/octet-stream", "data": b64(BIN)},
            "b.txt": {"content_type": "text/plain", "data": b64(TEXT)}}}),
    );
    assert_eq!(s, 201, "{b}");
    b["rev"].as_str().unwrap().to_string()
}

#[test]
fn bulk_get_multipart_doc_with_attachments() {
    let node = Node::start();
    let db = node.create_db("bgmp");
    let rev = two_attachments(&node, &db);
    let (_, stored) = node.get(&format!("/{db}/doc?att_encoding_info=true"));
    let encoded_length = stored["_attachments"]["b.txt"]["encoded_length"]
        .as_u64()
        .expect("b.txt is stored gzip-encoded");

    // CouchDB sends every attachment that is not a stub, attachments=true or not.
    for query in ["?attachments=true", ""] {
        let r = bulk_get_mp(
            &node,
            &db,
            query,
            "multipart/mixed",
            json!([{"id": "doc", "rev": rev}]),
        );
        let boundary = bulk_get_boundary(&r, "mixed");
        let outer = parts(&r.body, &boundary);
        assert_eq!(outer.len(), 1, "{query}");
        let inner_boundary = related_part_boundary(&outer[0].0, "doc", &rev);
        assert_ne!(inner_boundary, boundary);
        // The nested body: JSON, a.bin, b.txt, closed with `--` right before the
        // outer closing boundary.
        assert!(outer[0]
            .1
            .starts_with(format!("--{inner_boundary}\r\n").as_bytes()));
        assert!(outer[0]
            .1
            .ends_with(format!("\r\n--{inner_boundary}--").as_bytes()));
        let inner = parts(&outer[0].1, &inner_boundary);
        assert_eq!(inner.len(), 3, "{query}");
        assert_eq!(inner[0].0, "Content-Type: application/json");
        let doc: Value = serde_json::from_slice(&inner[0].1).unwrap();
        let a_digest = md5_b64(BIN);
        let b_digest = &stored["_attachments"]["b.txt"]["digest"];
        assert_exact(
            &doc,
            &json!({"_id": "doc", "_rev": rev, "title": "two", "_attachments": {
                "a.bin": {"content_type": "application/octet-stream", "revpos": 1,
                    "digest": a_digest, "length": BIN.len(), "follows": true},
                "b.txt": {"content_type": "text/plain", "revpos": 1, "digest": b_digest,
                    "length": TEXT.len(), "follows": true, "encoding": "gzip",
                    "encoded_length": encoded_length}}}),
        );
        assert_eq!(
            inner[1].0,
            format!(
                "Content-Disposition: attachment; filename=\"a.bin\"\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: {}",
                BIN.len()
            )
        );
        assert_eq!(inner[1].1, BIN);
        // Sent as stored, with its encoding.
        assert_eq!(
            inner[2].0,
            format!(
                "Content-Disposition: attachment; filename=\"b.txt\"\r\n\
                 Content-Type: text/plain\r\nContent-Length: {encoded_length}\r\n\
                 Content-Encoding: gzip"
            )
        );
        assert_eq!(inner[2].1.len() as u64, encoded_length);
        assert_eq!(gunzip(&inner[2].1), TEXT);
    }

    // Several items: each has a part of its own, in the order asked.
    let (_, b) = node.put(&format!("/{db}/plain"), json!({"v": 1}));
    let r = bulk_get_mp(
        &node,
        &db,
        "",
        "multipart/related",
        json!([{"id": "doc"}, {"id": "plain"}, {"id": "doc", "rev": rev}]),
    );
    let boundary = bulk_get_boundary(&r, "related");
    let outer = parts(&r.body, &boundary);
    assert_eq!(outer.len(), 3);
    let first = related_part_boundary(&outer[0].0, "doc", &rev);
    assert_eq!(parts(&outer[0].1, &first)[1].1, BIN);
    assert_eq!(outer[1].0, "Content-Type: application/json");
    let plain: Value = serde_json::from_slice(&outer[1].1).unwrap();
    assert_eq!(plain["_rev"], b["rev"]);
    let third = related_part_boundary(&outer[2].0, "doc", &rev);
    assert_eq!(parts(&outer[2].1, &third)[1].1, BIN);
}

#[test]
fn bulk_get_multipart_atts_since() {
    let node = Node::start();
    let db = node.create_db("bgmp");
    let (_, b) = node.put(&format!("/{db}/doc"), json!({"v": 1}));
    let r1 = b["rev"].as_str().unwrap().to_string();
    let r = raw(node
        .req("PUT", &format!("/{db}/doc/a.bin?rev={r1}"))
        .header("content-type", "application/octet-stream")
        .body(BIN.to_vec()));
    assert_eq!(r.status, 201);
    let r2 = r.json()["rev"].as_str().unwrap().to_string();
    let r = raw(node
        .req("PUT", &format!("/{db}/doc/c.png?rev={r2}"))
        .header("content-type", "image/png")
        .body(b"not really a png".to_vec()));
    assert_eq!(r.status, 201);
    let r3 = r.json()["rev"].as_str().unwrap().to_string();

    // The client has r2: a.bin (revpos 2) is a stub, c.png (revpos 3) follows.
    let r = bulk_get_mp(
        &node,
        &db,
        "?attachments=true",
        "multipart/mixed",
        json!([{"id": "doc", "rev": r3, "atts_since": [r2]}]),
    );
    let boundary = bulk_get_boundary(&r, "mixed");
    let outer = parts(&r.body, &boundary);
    assert_eq!(outer.len(), 1);
    let inner_boundary = related_part_boundary(&outer[0].0, "doc", &r3);
    let inner = parts(&outer[0].1, &inner_boundary);
    assert_eq!(inner.len(), 2, "only c.png follows");
    let doc: Value = serde_json::from_slice(&inner[0].1).unwrap();
    assert_exact(
        &doc["_attachments"]["a.bin"],
        &json!({"content_type": "application/octet-stream", "revpos": 2,
            "digest": md5_b64(BIN), "length": BIN.len(), "stub": true}),
    );
    assert_eq!(doc["_attachments"]["c.png"]["follows"], true);
    assert!(inner[1].0.contains("filename=\"c.png\""), "{}", inner[1].0);
    assert_eq!(inner[1].1, b"not really a png");

    // The client has r3: every attachment is a stub, and the document is a
    // plain application/json part without X-Doc-Id.
    let r = bulk_get_mp(
        &node,
        &db,
        "",
        "multipart/mixed",
        json!([{"id": "doc", "rev": r3, "atts_since": [r3]}]),
    );
    let boundary = bulk_get_boundary(&r, "mixed");
    let outer = parts(&r.body, &boundary);
    assert_eq!(outer.len(), 1);
    assert_eq!(outer[0].0, "Content-Type: application/json");
    let doc: Value = serde_json::from_slice(&outer[0].1).unwrap();
    assert_eq!(doc["_attachments"]["a.bin"]["stub"], true);
    assert_eq!(doc["_attachments"]["c.png"]["stub"], true);

    // An ancestor that is not on the revision's path sends everything; an empty
    // atts_since is as none.
    for since in [json!(["1-00000000000000000000000000000000"]), json!([])] {
        let r = bulk_get_mp(
            &node,
            &db,
            "",
            "multipart/mixed",
            json!([{"id": "doc", "rev": r3, "atts_since": since}]),
        );
        let boundary = bulk_get_boundary(&r, "mixed");
        let outer = parts(&r.body, &boundary);
        let inner_boundary = related_part_boundary(&outer[0].0, "doc", &r3);
        assert_eq!(parts(&outer[0].1, &inner_boundary).len(), 3, "{since}");
    }
}

#[test]
fn bulk_get_multipart_errors() {
    let node = Node::start();
    let db = node.create_db("bgmp");
    let (_, b) = node.put(&format!("/{db}/doc"), json!({"v": 1}));
    let rev = b["rev"].as_str().unwrap().to_string();
    let missing_rev = "9-99999999999999999999999999999999";
    let r = bulk_get_mp(
        &node,
        &db,
        "",
        "multipart/mixed",
        json!([
            {"id": "nope"},
            {"id": "nope", "rev": missing_rev},
            {"id": "doc", "rev": missing_rev},
            {"id": "doc", "rev": rev},
            {"id": "doc", "rev": "bogus"},
            {"id": "_bad"},
            {"rev": rev},
        ]),
    );
    let boundary = bulk_get_boundary(&r, "mixed");
    let outer = parts(&r.body, &boundary);
    let bodies: Vec<String> = outer
        .iter()
        .map(|(_, b)| String::from_utf8(b.clone()).unwrap())
        .collect();
    assert_eq!(outer.len(), 7, "{bodies:?}");
    // An unknown document asked without a revision fails as a whole item: the
    // error map, which CouchDB writes in reverse key order.
    assert_eq!(outer[0].0, ERROR_PART);
    assert_eq!(
        bodies[0],
        r#"{"rev":"undefined","reason":"missing","id":"nope","error":"not_found"}"#
    );
    // A missing revision (of an unknown or of a known document): no id.
    for i in [1, 2] {
        assert_eq!(outer[i].0, ERROR_PART);
        assert_eq!(
            bodies[i],
            format!(r#"{{"rev":"{missing_rev}","error":"not_found","reason":"missing"}}"#)
        );
    }
    assert_eq!(outer[3].0, "Content-Type: application/json");
    assert_eq!(
        bodies[3],
        format!(r#"{{"_id":"doc","_rev":"{rev}","v":1}}"#)
    );
    // Items refused before anything is opened.
    for i in [4, 5, 6] {
        assert_eq!(outer[i].0, ERROR_PART);
    }
    assert_eq!(
        bodies[4],
        r#"{"rev":"bogus","reason":"Invalid rev format","id":"doc","error":"bad_request"}"#
    );
    assert_eq!(
        bodies[5],
        r#"{"rev":null,"reason":"Only reserved document ids may start with underscore.","id":"_bad","error":"illegal_docid"}"#
    );
    assert_eq!(
        bodies[6],
        r#"{"rev":null,"reason":"document id missed","id":null,"error":"bad_request"}"#
    );

    // Request errors stay JSON.
    let r = bulk_get_mp(&node, &db, "?rev=1-a", "multipart/mixed", json!([]));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.json()["error"], "bad_request");
}

#[test]
fn bulk_get_multipart_revs() {
    let node = Node::start();
    let db = node.create_db("bgmp");
    let r1 = two_attachments(&node, &db);
    let (_, b) = node.put(
        &format!("/{db}/doc"),
        json!({"_rev": r1, "title": "again",
        "_attachments": {
            "a.bin": {"stub": true},
            "b.txt": {"stub": true}}}),
    );
    let r2 = b["rev"].as_str().unwrap().to_string();
    let (_, b) = node.put(&format!("/{db}/plain"), json!({"v": 1}));
    let p1 = b["rev"].as_str().unwrap().to_string();
    let ids = |rev: &str| rev.split_once('-').unwrap().1.to_string();

    let r = bulk_get_mp(
        &node,
        &db,
        "?revs=true",
        "multipart/mixed",
        json!([{"id": "doc", "rev": r2}, {"id": "plain"}]),
    );
    let boundary = bulk_get_boundary(&r, "mixed");
    let outer = parts(&r.body, &boundary);
    assert_eq!(outer.len(), 2);
    let inner_boundary = related_part_boundary(&outer[0].0, "doc", &r2);
    let inner = parts(&outer[0].1, &inner_boundary);
    let doc: Value = serde_json::from_slice(&inner[0].1).unwrap();
    assert_eq!(
        keys(&doc),
        ["_id", "_rev", "title", "_revisions", "_attachments"]
    );
    assert_eq!(
        doc["_revisions"],
        json!({"start": 2, "ids": [ids(&r2), ids(&r1)]})
    );
    assert_eq!(outer[1].0, "Content-Type: application/json");
    assert_eq!(
        String::from_utf8(outer[1].1.clone()).unwrap(),
        format!(
            r#"{{"_id":"plain","_rev":"{p1}","v":1,"_revisions":{{"start":1,"ids":["{}"]}}}}"#,
            ids(&p1)
        )
    );

    // Without revs=true there is none.
    let r = bulk_get_mp(&node, &db, "", "multipart/mixed", json!([{"id": "plain"}]));
    let boundary = bulk_get_boundary(&r, "mixed");
    let outer = parts(&r.body, &boundary);
    let doc: Value = serde_json::from_slice(&outer[0].1).unwrap();
    assert_eq!(doc.get("_revisions"), None);
}
