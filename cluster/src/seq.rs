//! Clustered update sequences: one opaque string that carries a position per shard
//! copy, shaped like CouchDB's `"<sum>-<base64url>"` so clients can pass it back.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The position of one shard copy in a database's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqEntry {
    /// Node holding the copy.
    pub node: String,
    /// First hash of the range.
    pub begin: u32,
    /// Last hash of the range.
    pub end: u32,
    /// Shard-local update sequence.
    pub seq: u64,
    /// Prefix of the shard file uuid: a rebuilt file restarts from 0.
    pub uuid: String,
}

/// Positions for every range of a database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqVector(pub Vec<SeqEntry>);

/// Why a sequence string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Malformed sequence supplied in 'since' parameter.")]
pub struct BadSeq;

/// Length of the uuid prefix kept per entry (CouchDB's `uuid_prefix_len`).
pub const UUID_PREFIX_LEN: usize = 7;

type Wire = (String, u32, u32, u64, String);

impl SeqVector {
    /// Sum of the shard sequences: the cosmetic numeric prefix.
    pub fn sum(&self) -> u64 {
        self.0.iter().map(|e| e.seq).sum()
    }

    /// The opaque string form.
    pub fn encode(&self) -> String {
        let wire: Vec<Wire> = self
            .0
            .iter()
            .map(|e| (e.node.clone(), e.begin, e.end, e.seq, e.uuid.clone()))
            .collect();
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        format!("{}-{}", self.sum(), URL_SAFE_NO_PAD.encode(json))
    }

    /// Reads a sequence as a client sends it: optionally quoted, `0` for the start.
    /// A plain number (another server's format) also means the start.
    pub fn decode(s: &str) -> Result<SeqVector, BadSeq> {
        let s = s.trim();
        let s = s
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(s);
        if s.is_empty() || s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(SeqVector::default());
        }
        let payload = match s.split_once('-') {
            Some((n, rest)) if n.bytes().all(|b| b.is_ascii_digit()) => rest,
            _ => s,
        };
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| BadSeq)?;
        let wire: Vec<Wire> = serde_json::from_slice(&bytes).map_err(|_| BadSeq)?;
        Ok(SeqVector(
            wire.into_iter()
                .map(|(node, begin, end, seq, uuid)| SeqEntry {
                    node,
                    begin,
                    end,
                    seq,
                    uuid,
                })
                .collect(),
        ))
    }

    /// The position recorded for a shard copy, if this vector has one that still
    /// applies (same range, same file); 0 otherwise, so a client replays rather
    /// than misses changes.
    pub fn position(&self, begin: u32, end: u32, uuid: &str) -> u64 {
        self.0
            .iter()
            .find(|e| e.begin == begin && e.end == end && uuid.starts_with(&e.uuid))
            .map_or(0, |e| e.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(seq: u64) -> SeqEntry {
        SeqEntry {
            node: "chaise@127.0.0.1".into(),
            begin: 0,
            end: 0x7fffffff,
            seq,
            uuid: "abcdef0".into(),
        }
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(SeqVector::decode("0").unwrap(), SeqVector::default());
        assert_eq!(SeqVector::decode("\"0\"").unwrap(), SeqVector::default());
        let v = SeqVector(vec![entry(5)]);
        let s = v.encode();
        assert!(s.starts_with("5-"));
        assert_eq!(SeqVector::decode(&s).unwrap(), v);
        assert_eq!(SeqVector::decode(&format!("\"{s}\"")).unwrap(), v);
        assert!(SeqVector::decode("5-!!!").is_err());
        assert!(SeqVector::decode("garbage").is_err());
        assert_eq!(v.position(0, 0x7fffffff, "abcdef0123"), 5);
        assert_eq!(v.position(0, 0x7fffffff, "zzzzzzz"), 0);
    }

    proptest! {
        #[test]
        fn round_trip(seqs in proptest::collection::vec(any::<u64>(), 0..8)) {
            let v = SeqVector(seqs.iter().map(|s| entry(*s % (1 << 50))).collect());
            prop_assert_eq!(SeqVector::decode(&v.encode()).unwrap(), v);
        }
    }
}
