//! Large attachments stream in and out without being held whole in memory
//! (measured on the server's peak RSS), the `max_attachment_size` limit, the
//! chunked storage's garbage collection on compaction, and CouchDB's gzip
//! compression of compressible types (`[attachments]`).

use chaise_integration_tests::helpers::gunzip;
use chaise_integration_tests::{peak_rss_kib, raw, set_config, Node};
use md5::{Digest, Md5};
use serde_json::Value;
use std::io::Read;

/// A reader of `len` deterministic, poorly compressible bytes.
struct Pattern {
    at: u64,
    len: u64,
    state: u64,
}

impl Pattern {
    fn new(len: u64) -> Self {
        Pattern {
            at: 0,
            len,
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min((self.len - self.at) as usize);
        for b in &mut buf[..n] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = self.state as u8;
        }
        self.at += n as u64;
        Ok(n)
    }
}

fn pattern_md5(len: u64) -> [u8; 16] {
    let mut p = Pattern::new(len);
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = p.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().into()
}

fn active_size(node: &Node, db: &str) -> u64 {
    let (_, info) = node.get(&format!("/{db}"));
    info["sizes"]["active"].as_u64().expect("sizes.active")
}

#[test]
fn large_attachment_streams_in_and_out_with_bounded_memory() {
    const LEN: u64 = 320 * 1024 * 1024;
    let node = Node::start();
    let db = node.create_db("large");
    let pid = node.child.id();
    let before = peak_rss_kib(pid).expect("VmHWM");

    let body = reqwest::blocking::Body::sized(Pattern::new(LEN), LEN);
    let r = raw(node
        .req("PUT", &format!("/{db}/big/data.bin"))
        .header("content-type", "application/octet-stream")
        .timeout(std::time::Duration::from_secs(600))
        .body(body));
    assert_eq!(r.status, 201, "{:?}", r.json());
    let rev = r.json()["rev"].as_str().unwrap().to_string();
    let after_put = peak_rss_kib(pid).expect("VmHWM");

    let (s, doc) = node.get(&format!("/{db}/big"));
    assert_eq!(s, 200);
    let stub = &doc["_attachments"]["data.bin"];
    assert_eq!(stub["length"], LEN);
    let expected = pattern_md5(LEN);
    assert_eq!(
        stub["digest"],
        format!(
            "md5-{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, expected)
        )
    );

    // Read it back as a stream and hash it.
    let mut resp = node
        .req("GET", &format!("/{db}/big/data.bin"))
        .timeout(std::time::Duration::from_secs(600))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.content_length(), Some(LEN));
    let mut h = Md5::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = resp.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    assert_eq!(total, LEN);
    assert_eq!(<[u8; 16]>::from(h.finalize()), expected);
    let after_get = peak_rss_kib(pid).expect("VmHWM");

    let put_growth_mib = after_put.saturating_sub(before) / 1024;
    let get_growth_mib = after_get.saturating_sub(before) / 1024;
    eprintln!(
        "peak RSS: start {} MiB, after PUT {} MiB (+{put_growth_mib}), after GET {} MiB (+{get_growth_mib}) for a {} MiB attachment",
        before / 1024,
        after_put / 1024,
        after_get / 1024,
        LEN >> 20
    );
    let limit_mib = 128;
    assert!(
        put_growth_mib < limit_mib && get_growth_mib < limit_mib,
        "peak RSS grew by {put_growth_mib}/{get_growth_mib} MiB"
    );

    // Deleting the document and compacting frees the chunks.
    assert!(active_size(&node, &db) >= LEN);
    let (s, _) = node.delete(&format!("/{db}/big?rev={rev}"));
    assert_eq!(s, 200);
    let (s, _) = node.post(&format!("/{db}/_compact"), serde_json::json!({}));
    assert_eq!(s, 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while active_size(&node, &db) >= LEN && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        active_size(&node, &db) < 1024 * 1024,
        "chunks not collected"
    );
}

#[test]
fn too_large_attachments_are_413() {
    let node = Node::start();
    let db = node.create_db("large");
    set_config(&node, "couchdb", "max_attachment_size", "300000");
    // Declared too large.
    let r = raw(node
        .req("PUT", &format!("/{db}/doc/a.bin"))
        .header("content-type", "application/octet-stream")
        .body(vec![1u8; 300_001]));
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "attachment_too_large");
    // Streamed without a length: found too large on the way.
    let answer = chunked_put(&node, &format!("/{db}/doc2/a.bin"), 2_000_000);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("attachment_too_large"), "{answer}");
    let (s, _) = node.get(&format!("/{db}/doc2"));
    assert_eq!(s, 404);
    // At the limit is fine.
    let r = raw(node
        .req("PUT", &format!("/{db}/doc/a.bin"))
        .header("content-type", "application/octet-stream")
        .body(vec![1u8; 300_000]));
    assert_eq!(r.status, 201);
}

/// PUTs `len` bytes with chunked transfer encoding over a raw socket, sending
/// until the server answers or closes, and returns its answer as text.
fn chunked_put(node: &Node, path: &str, len: usize) -> String {
    use std::io::Write;
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", node.port)).unwrap();
    let auth = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!(
            "{}:{}",
            chaise_integration_tests::ADMIN,
            chaise_integration_tests::PASSWORD
        ),
    );
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0;
    while sent < len {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if sock.write_all(&frame).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = sock.write_all(b"0\r\n\r\n");
    sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = sock.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}\n") {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn compressible_types_are_stored_gzip_encoded() {
    let node = Node::start();
    let db = node.create_db("gzip");
    let text: Vec<u8> = "all work and no play makes jack a dull boy\n"
        .repeat(20_000)
        .into_bytes();
    // Standalone, big enough to be streamed in, and inline small ones.
    let r = raw(node
        .req("PUT", &format!("/{db}/doc/big.txt"))
        .header("content-type", "text/plain")
        .body(text.clone()));
    assert_eq!(r.status, 201);
    let rev = r.json()["rev"].as_str().unwrap().to_string();
    let small_json = br#"{"a": [1, 2, 3], "b": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}"#;
    let r = raw(node
        .req("PUT", &format!("/{db}/doc/s.json?rev={rev}"))
        .header("content-type", "application/json")
        .body(small_json.to_vec()));
    assert_eq!(r.status, 201);
    let r = raw(node
        .req(
            "PUT",
            &format!("/{db}/doc/p.png?rev={}", r.json()["rev"].as_str().unwrap()),
        )
        .header("content-type", "image/png")
        .body(b"not text".to_vec()));
    assert_eq!(r.status, 201);

    let (_, doc) = node.get(&format!("/{db}/doc?att_encoding_info=true"));
    let atts = &doc["_attachments"];
    for (name, len) in [("big.txt", text.len()), ("s.json", small_json.len())] {
        assert_eq!(atts[name]["encoding"], "gzip", "{name}");
        assert_eq!(atts[name]["length"], len, "{name}");
        assert!(atts[name]["encoded_length"].as_u64().unwrap() < len as u64);
    }
    assert_eq!(atts["p.png"].get("encoding"), None);
    // Without att_encoding_info the stub does not show it.
    let (_, doc) = node.get(&format!("/{db}/doc"));
    assert_eq!(doc["_attachments"]["big.txt"].get("encoding"), None);

    // Accept-Encoding: gzip gets the stored bytes; others get them decoded.
    let r = raw(node
        .req("GET", &format!("/{db}/doc/big.txt"))
        .header("accept-encoding", "gzip"));
    assert_eq!(r.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        r.body.len() as u64,
        atts["big.txt"]["encoded_length"].as_u64().unwrap()
    );
    assert_eq!(gunzip(&r.body), text);
    let r = raw(node
        .req("GET", &format!("/{db}/doc/big.txt"))
        .header("accept-encoding", "identity"));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, text);
    assert_eq!(r.header("content-length"), Some(text.len().to_string()));

    // The digest is of the stored (gzip) bytes.
    let stored = raw(node
        .req("GET", &format!("/{db}/doc/s.json"))
        .header("accept-encoding", "gzip"))
    .body;
    let digest: [u8; 16] = Md5::digest(&stored).into();
    assert_eq!(
        atts["s.json"]["digest"],
        format!(
            "md5-{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest)
        )
    );

    // Inline data is decoded.
    let r = raw(node
        .req("GET", &format!("/{db}/doc?attachments=true"))
        .header("accept", "application/json"));
    let inline = r.json()["_attachments"]["s.json"]["data"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, inline).unwrap(),
        small_json
    );

    // Inline base64 uploads are compressed too; level 0 turns it off.
    let (s, _) = node.put(
        &format!("/{db}/inline"),
        serde_json::json!({"_attachments": {"a.txt": {"content_type": "text/plain",
            "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &text)}}}),
    );
    assert_eq!(s, 201);
    let (_, doc) = node.get(&format!("/{db}/inline?att_encoding_info=true"));
    assert_eq!(doc["_attachments"]["a.txt"]["encoding"], "gzip");
    set_config(&node, "attachments", "compression_level", "0");
    let (s, _) = node.put(
        &format!("/{db}/plain"),
        serde_json::json!({"_attachments": {"a.txt": {"content_type": "text/plain",
            "data": "aGVsbG8="}}}),
    );
    assert_eq!(s, 201);
    let (_, doc) = node.get(&format!("/{db}/plain?att_encoding_info=true"));
    assert_eq!(doc["_attachments"]["a.txt"].get("encoding"), None);
    assert_eq!(doc["_attachments"]["a.txt"]["length"], 5);

    // Encoding info in _changes and _bulk_get.
    let (_, changes) = node.get(&format!(
        "/{db}/_changes?include_docs=true&att_encoding_info=true"
    ));
    let row = changes["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "inline")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(row["doc"]["_attachments"]["a.txt"]["encoding"], "gzip");
    let (s, bulk) = node.post(
        &format!("/{db}/_bulk_get?att_encoding_info=true"),
        serde_json::json!({"docs": [{"id": "inline"}]}),
    );
    assert_eq!(s, 200, "{bulk}");
    assert_eq!(
        bulk["results"][0]["docs"][0]["ok"]["_attachments"]["a.txt"]["encoding"],
        "gzip"
    );
}
