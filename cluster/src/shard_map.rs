//! Shard maps: the ranges of a database and the nodes holding each copy.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// One shard range and the nodes holding a copy of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRange {
    /// First hash (inclusive).
    pub begin: u32,
    /// Last hash (inclusive).
    pub end: u32,
    /// Nodes holding a copy, sorted.
    pub nodes: Vec<String>,
}

impl ShardRange {
    /// CouchDB's range name, `00000000-7fffffff`.
    pub fn name(&self) -> String {
        format!("{:08x}-{:08x}", self.begin, self.end)
    }

    /// Whether `hash` falls in this range.
    pub fn contains(&self, hash: u32) -> bool {
        self.begin <= hash && hash <= self.end
    }
}

/// Where a database's data lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// Database name.
    pub db: String,
    /// Copies per range.
    pub n: usize,
    /// File name suffix (`.<unix seconds at creation>`), distinguishing re-created dbs.
    pub suffix: String,
    /// Ranges in hash order.
    pub ranges: Vec<ShardRange>,
    /// Database properties (`partitioned`, ...).
    pub props: Map<String, Value>,
}

/// Splits the 32-bit hash space into `q` equal ranges, the last taking the remainder.
pub fn make_ranges(q: u32) -> Vec<(u32, u32)> {
    let q = q.max(1) as u64;
    let total: u64 = 1 << 32;
    let inc = total / q;
    (0..q)
        .map(|k| {
            let begin = k * inc;
            let end = if k == q - 1 {
                total - 1
            } else {
                (k + 1) * inc - 1
            };
            (begin as u32, end as u32)
        })
        .collect()
}

/// The placement hash of a document id (CRC-32, as Erlang's `erlang:crc32/1`).
pub fn doc_hash(id: &str) -> u32 {
    crc32fast::hash(id.as_bytes())
}

impl ShardMap {
    /// A new map with `q` ranges, each placed on `nodes` (already chosen, `n` of them).
    pub fn new(
        db: &str,
        q: u32,
        nodes: &[String],
        suffix: String,
        props: Map<String, Value>,
    ) -> Self {
        let mut nodes = nodes.to_vec();
        nodes.sort();
        ShardMap {
            db: db.to_string(),
            n: nodes.len(),
            suffix,
            ranges: make_ranges(q)
                .into_iter()
                .map(|(begin, end)| ShardRange {
                    begin,
                    end,
                    nodes: nodes.clone(),
                })
                .collect(),
            props,
        }
    }

    /// Number of ranges.
    pub fn q(&self) -> usize {
        self.ranges.len()
    }

    /// Index of the range holding document `id`.
    pub fn range_index(&self, id: &str) -> usize {
        let h = doc_hash(id);
        self.ranges
            .iter()
            .position(|r| r.contains(h))
            .unwrap_or(self.ranges.len().saturating_sub(1))
    }

    /// CouchDB's shard-map document, as `/_node/_local/_dbs/{db}` returns it.
    pub fn to_couch_doc(&self) -> Value {
        let mut changelog = Vec::new();
        let mut by_node: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let mut by_range = Map::new();
        for r in &self.ranges {
            for node in &r.nodes {
                changelog.push(json!(["add", r.name(), node]));
                by_node.entry(node.clone()).or_default().push(r.name());
            }
            by_range.insert(r.name(), json!(r.nodes));
        }
        let mut doc = json!({
            "_id": self.db,
            "shard_suffix": self.suffix.bytes().collect::<Vec<u8>>(),
            "changelog": changelog,
            "by_node": by_node,
            "by_range": by_range,
        });
        if !self.props.is_empty() {
            let mut props = self.props.clone();
            // CouchDB records the partition-aware hash of partitioned dbs here.
            if props.get("partitioned") == Some(&Value::Bool(true)) && !props.contains_key("hash") {
                props.insert("hash".into(), json!(["couch_partition", "hash", []]));
            }
            doc["props"] = Value::Object(props);
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_couchdb() {
        assert_eq!(
            make_ranges(2),
            vec![(0, 0x7fffffff), (0x80000000, 0xffffffff)]
        );
        assert_eq!(
            make_ranges(3),
            vec![
                (0, 0x55555554),
                (0x55555555, 0xaaaaaaa9),
                (0xaaaaaaaa, 0xffffffff)
            ]
        );
        assert_eq!(make_ranges(8)[7], (0xe0000000, 0xffffffff));
        assert_eq!(make_ranges(1), vec![(0, u32::MAX)]);
    }

    #[test]
    fn placement_by_crc32() {
        // crc32("foo") = 0x8c736521 -> second half with q=2.
        assert_eq!(doc_hash("foo"), 0x8c736521);
        let m = ShardMap::new("db", 2, &["n@h".into()], ".1".into(), Map::new());
        assert_eq!(m.range_index("foo"), 1);
        let doc = m.to_couch_doc();
        assert_eq!(doc["by_range"]["00000000-7fffffff"], json!(["n@h"]));
        assert_eq!(doc["shard_suffix"], json!([46, 49]));
    }
}
