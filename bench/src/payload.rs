//! Generated JSON documents of a chosen size.

use std::fmt::Write as _;

use rand::distributions::Alphanumeric;
use rand::Rng;

/// Makes JSON documents of about `size` bytes each: a few small fields and a
/// random alphanumeric `pad` string that brings the body to the size.
pub struct DocMaker {
    size: usize,
    pad: String,
}

impl DocMaker {
    /// A maker of documents of about `size` bytes.
    pub fn new(size: usize) -> Self {
        let pad = rand::thread_rng()
            .sample_iter(Alphanumeric)
            .take(2 * size + 1)
            .map(char::from)
            .collect();
        Self { size, pad }
    }

    /// Document number `n`, with `_id` set to `id` if given (the server picks
    /// one otherwise).
    pub fn doc(&self, id: Option<&str>, n: u64) -> String {
        let mut doc = String::with_capacity(self.size + 16);
        self.write_doc(&mut doc, id, n);
        doc
    }

    /// A `_bulk_docs` body holding documents `range`, each with the `_id`
    /// `id(n)` if `id` is given.
    pub fn batch(&self, range: std::ops::Range<u64>, id: Option<fn(u64) -> String>) -> String {
        let docs = range.end.saturating_sub(range.start) as usize;
        let mut body = String::with_capacity(docs * (self.size + 16) + 16);
        body.push_str("{\"docs\":[");
        for n in range {
            if !body.ends_with('[') {
                body.push(',');
            }
            let id = id.map(|id| id(n));
            self.write_doc(&mut body, id.as_deref(), n);
        }
        body.push_str("]}");
        body
    }

    fn write_doc(&self, out: &mut String, id: Option<&str>, n: u64) {
        let start = out.len();
        out.push('{');
        if let Some(id) = id {
            // Ids are made by this tool (`seed_id`) and need no escaping.
            let _ = write!(out, "\"_id\":\"{id}\",");
        }
        let _ = write!(
            out,
            "\"type\":\"bench\",\"n\":{n},\"tags\":[\"alpha\",\"beta\",\"gamma\"],\"pad\":\""
        );
        let pad_len = self.size.saturating_sub(out.len() - start + 2);
        let offset = (n as usize) % (self.pad.len() - pad_len).max(1);
        out.push_str(&self.pad[offset..offset + pad_len]);
        out.push_str("\"}");
    }
}

/// The `_id` of seeded document number `n`.
pub fn seed_id(n: u64) -> String {
    format!("doc-{n:08}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_have_the_requested_size_and_parse() {
        let maker = DocMaker::new(1024);
        for n in [0, 1, 999, 123_456_789] {
            let doc = maker.doc(Some(&seed_id(n)), n);
            assert_eq!(doc.len(), 1024);
            let value: serde_json::Value = serde_json::from_str(&doc).expect("valid JSON");
            assert_eq!(value["_id"], seed_id(n));
        }
        let batch = maker.batch(10..20, None);
        let value: serde_json::Value = serde_json::from_str(&batch).expect("valid JSON");
        assert_eq!(value["docs"].as_array().map(Vec::len), Some(10));
    }

    #[test]
    fn tiny_sizes_still_make_valid_docs() {
        let maker = DocMaker::new(1);
        let doc = maker.doc(None, 7);
        serde_json::from_str::<serde_json::Value>(&doc).expect("valid JSON");
    }
}
