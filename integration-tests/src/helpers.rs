//! Small helpers several test files share: JSON comparisons, documents and
//! databases written with an asserted status, headers, ini files and encodings.

use crate::{body_json, call, Node};
use reqwest::blocking::RequestBuilder;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;

/// Sends a request; returns status, headers and the body as JSON (`Null` if none).
pub fn call_with_headers(r: RequestBuilder) -> (u16, HeaderMap, Value) {
    let resp = r.send().expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, body_json(resp))
}

/// A header as text.
pub fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Asserts equality of values *and* key order (serde_json keeps insertion order).
#[track_caller]
pub fn assert_exact(actual: &Value, expected: &Value) {
    assert_eq!(
        serde_json::to_string(actual).unwrap(),
        serde_json::to_string(expected).unwrap()
    );
}

/// The keys of a JSON object, in order (empty if it is not an object).
pub fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The `rev` member of a write's answer.
pub fn rev_of(b: &Value) -> String {
    b["rev"].as_str().expect("rev in answer").to_string()
}

/// A 32-hex revision id built from one character.
pub fn hex_rev(pos: u32, c: char) -> String {
    format!("{pos}-{}", c.to_string().repeat(32))
}

/// Owned copies of string slices.
pub fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The numeric prefix of an opaque clustered sequence.
pub fn seq_num(seq: &Value) -> u64 {
    let s = seq
        .as_str()
        .unwrap_or_else(|| panic!("seq {seq} is not a string"));
    s.split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("seq {s} has no numeric prefix"))
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decompresses gzip data.
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// CouchDB's answer to a non-admin on an admin-only endpoint.
pub fn not_admin() -> Value {
    json!({"error": "unauthorized", "reason": "You are not a server admin."})
}

/// CouchDB's answer about a database that does not exist.
pub fn no_db() -> Value {
    json!({"error": "not_found", "reason": "Database does not exist."})
}

/// Creates a database with `q` ranges.
pub fn create_q(node: &Node, name: &str, q: u32) -> String {
    let (s, b) = node.json("PUT", &format!("/{name}?q={q}"), None);
    assert_eq!(s, 201, "create {name}: {b}");
    name.to_string()
}

/// PUTs a document (asserting 201) and returns its new rev.
pub fn put_doc(node: &Node, db: &str, id: &str, body: Value) -> String {
    let (s, b) = node.put(&format!("/{db}/{id}"), body);
    assert_eq!(s, 201, "put {id}: {b}");
    b["rev"].as_str().expect("rev").to_string()
}

/// Sets a config value in memory only (`X-Couch-Persist: false`).
pub fn set_config_in_memory(node: &Node, section: &str, key: &str, value: &str) {
    let (s, b) = call(
        node.req("PUT", &format!("/_node/_local/_config/{section}/{key}"))
            .header("content-type", "application/json")
            .header("x-couch-persist", "false")
            .body(serde_json::to_vec(&json!(value)).unwrap()),
    );
    assert_eq!(s, 200, "set {section}/{key}: {b}");
}

/// The text of `<data_dir>/local.ini` (empty if there is none).
pub fn local_ini(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("local.ini")).unwrap_or_default()
}

/// The `key = value` lines of `[section]` in ini text.
pub fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.to_string();
        } else if current == section {
            if let Some((k, v)) = t.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

/// The value of `[section] key` in ini text (last occurrence wins).
pub fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    ini_section(text, section)
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The ids of a listing's rows (panics on a row without one).
pub fn row_ids(b: &Value) -> Vec<&str> {
    b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

/// `len` deterministic pseudo-random (incompressible) bytes.
pub fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 24) as u8
        })
        .collect()
}

/// The raw body of a GET.
pub fn get_bytes(node: &crate::Node, path: &str) -> Vec<u8> {
    node.req("GET", path)
        .send()
        .and_then(|r| r.bytes())
        .map(|b| b.to_vec())
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}
