//! Shard placement on a consistent-hash ring of node names: adding a node moves
//! few shards. The ring proposes where copies go; the Raft log records the choice.

use hashring::HashRing;

/// Points each node gets on the ring; many points keep placement even.
const VNODES: u32 = 64;

#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct VNode {
    node: String,
    idx: u32,
}

/// The `n` distinct nodes for each of `ranges` (by range name) of database `db`.
/// `n` is capped to the number of nodes; every node computes the same answer.
pub fn place(nodes: &[String], db: &str, ranges: &[String], n: usize) -> Vec<Vec<String>> {
    let mut ring: HashRing<VNode> = HashRing::new();
    let mut sorted = nodes.to_vec();
    sorted.sort();
    sorted.dedup();
    ring.batch_add(
        sorted
            .iter()
            .flat_map(|node| {
                (0..VNODES).map(move |idx| VNode {
                    node: node.clone(),
                    idx,
                })
            })
            .collect(),
    );
    let n = n.clamp(1, sorted.len().max(1));
    ranges
        .iter()
        .map(|range| {
            let key = format!("{db}/{range}");
            let mut chosen: Vec<String> = Vec::with_capacity(n);
            for v in ring.get_with_replicas(&key, ring.len()).unwrap_or_default() {
                if !chosen.contains(&v.node) {
                    chosen.push(v.node);
                }
                if chosen.len() == n {
                    break;
                }
            }
            chosen.sort();
            chosen
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (1..=k).map(|i| format!("chaise@10.0.0.{i}")).collect()
    }

    #[test]
    fn distinct_copies_capped_and_deterministic() {
        let ranges: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
        let a = place(&names(5), "db", &ranges, 3);
        assert_eq!(a, place(&names(5), "db", &ranges, 3));
        for copies in &a {
            assert_eq!(copies.len(), 3);
            let mut d = copies.clone();
            d.dedup();
            assert_eq!(d.len(), 3);
        }
        assert!(place(&names(2), "db", &ranges, 3)
            .iter()
            .all(|c| c.len() == 2));
        assert!(place(&names(1), "db", &ranges, 3)
            .iter()
            .all(|c| c.len() == 1));
    }

    #[test]
    fn load_is_spread_and_adding_a_node_moves_few_ranges() {
        let ranges: Vec<String> = (0..64).map(|i| format!("r{i}")).collect();
        let before = place(&names(4), "db", &ranges, 1);
        let mut load = std::collections::HashMap::new();
        for c in &before {
            *load.entry(c[0].clone()).or_insert(0) += 1;
        }
        assert!(load.values().all(|&l| l >= 6), "lopsided: {load:?}");
        let after = place(&names(5), "db", &ranges, 1);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(moved < 32, "{moved} of 64 ranges moved");
    }
}
