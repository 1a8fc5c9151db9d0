//! Revision trees: the history of one document as a forest of revisions, with
//! CouchDB's merge, stemming and winner rules (`couch_key_tree`).
//!
//! Pure data and algorithms: no I/O. Every shard copy runs the same code on the
//! same inputs, so the results (winner, conflicts, stemmed shape) are identical
//! everywhere.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// A revision: generation (`pos`, 1-based depth from the root) and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rev {
    /// Generation number.
    pub pos: u64,
    /// Revision id: normally 32 lowercase hex chars; any other string is kept verbatim.
    pub id: String,
}

/// Why a revision string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid rev format")]
pub struct BadRev;

impl FromStr for Rev {
    type Err = BadRev;
    fn from_str(s: &str) -> Result<Self, BadRev> {
        let (prefix, id) = s.split_once('-').ok_or(BadRev)?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || id.is_empty() {
            return Err(BadRev);
        }
        let pos = prefix.parse::<u64>().map_err(|_| BadRev)?;
        Ok(Rev {
            pos,
            id: id.to_string(),
        })
    }
}

impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.pos, self.id)
    }
}

/// One node of a revision tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevNode {
    /// Revision id (without the `N-` prefix).
    pub id: String,
    /// Whether this revision is a deletion (tombstone).
    pub deleted: bool,
    /// Child revisions, sorted by id.
    pub children: Vec<RevNode>,
}

/// A leaf of the tree: a current revision of the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    /// The leaf revision.
    pub rev: Rev,
    /// Whether the leaf is a tombstone.
    pub deleted: bool,
}

/// Result of merging a path into a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The path extended an existing leaf: a normal edit.
    NewLeaf,
    /// The path added a new branch (a conflict) or a new root.
    NewBranch,
    /// Every revision of the path was already in the tree: nothing changed.
    AlreadyPresent,
}

/// The full revision history of one document: a forest, because stemming can cut
/// the top off and leave several roots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevTree {
    /// Roots as (generation of the root, root node), sorted by (pos, id).
    pub roots: Vec<(u64, RevNode)>,
}

impl RevTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges a path: `ids[0]` is the newest revision at generation `pos`, `ids[1]` its
    /// parent at `pos - 1`, and so on. `leaf_deleted` marks the newest revision as a
    /// tombstone; ancestors not yet in the tree are inserted as not deleted.
    ///
    /// Ids that would fall at generation 0 or below are ignored. Revisions are matched
    /// by (generation, id), so stemmed paths and stemmed trees merge where they overlap;
    /// a root may be extended upward and roots joined by the path become one tree. If the
    /// tree already knows a different parent for a revision, the tree's history wins and
    /// the older part of the path is ignored. Outcome: `NewLeaf` if the tree was empty or
    /// a former leaf gained a child, `AlreadyPresent` if the tree is unchanged, otherwise
    /// `NewBranch` (new sibling branch, new root, or a root extended upward).
    pub fn merge_path(&mut self, pos: u64, ids: &[String], leaf_deleted: bool) -> MergeOutcome {
        let usable = usize::try_from(pos).unwrap_or(usize::MAX);
        let ids = &ids[..ids.len().min(usable)];
        let Some(head) = ids.first() else {
            return MergeOutcome::AlreadyPresent;
        };
        // `k < ids.len() <= pos`, so this never underflows.
        let generation = |k: usize| pos - k as u64;

        // The newest revision of the path that the tree already has.
        let found = ids
            .iter()
            .enumerate()
            .find_map(|(k, id)| self.locate(generation(k), id).map(|loc| (k, loc)));
        let Some((mut cur, mut loc)) = found else {
            let was_empty = self.roots.is_empty();
            let top = wrap(new_node(head, leaf_deleted), &ids[1..]);
            self.insert_root(generation(ids.len() - 1), top);
            return if was_empty {
                MergeOutcome::NewLeaf
            } else {
                MergeOutcome::NewBranch
            };
        };

        let mut changed = false;
        let mut extended_leaf = false;
        if cur > 0 {
            // ids[..cur] are all missing: hang them below ids[cur].
            let top = wrap(new_node(head, leaf_deleted), &ids[1..cur]);
            extended_leaf |= self.attach(&loc, top, generation(cur - 1));
            changed = true;
        }

        // Walk up from ids[cur]: check the tree's ancestry against the older part of
        // the path, and if the path goes above the root, extend the root upward (possibly
        // joining it to another tree that holds an older revision of the path).
        loop {
            let along = self.ids_along(&loc);
            let Some(depth) = along.len().checked_sub(1) else {
                break;
            };
            let consistent = (1..=depth)
                .map_while(|d| ids.get(cur + d).map(|id| (d, id)))
                .all(|(d, id)| along[depth - d] == id.as_str());
            if !consistent {
                break;
            }
            let above = cur + depth + 1;
            if above >= ids.len() || loc.root >= self.roots.len() {
                break;
            }
            let (_, root_node) = self.roots.remove(loc.root);
            changed = true;
            let older = (above..ids.len())
                .find_map(|k| self.locate(generation(k), &ids[k]).map(|l| (k, l)));
            match older {
                None => {
                    let top = wrap(root_node, &ids[above..]);
                    self.insert_root(generation(ids.len() - 1), top);
                    break;
                }
                Some((k, l)) => {
                    let top = wrap(root_node, &ids[above..k]);
                    extended_leaf |= self.attach(&l, top, generation(k - 1));
                    cur = k;
                    loc = l;
                }
            }
        }

        if !changed {
            MergeOutcome::AlreadyPresent
        } else if extended_leaf {
            MergeOutcome::NewLeaf
        } else {
            MergeOutcome::NewBranch
        }
    }

    /// Keeps only the newest `limit` revisions of every root-to-leaf path.
    ///
    /// `limit` below 1 counts as 1. The result is the merge of all stemmed paths: a
    /// revision survives if some leaf below it is fewer than `limit` generations away,
    /// and a parent/child link survives only if some stemmed path still contains both.
    pub fn stem(&mut self, limit: usize) {
        let limit = u64::try_from(limit.max(1)).unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for (pos, root) in std::mem::take(&mut self.roots) {
            stem_root(root, pos, limit, &mut out);
        }
        out.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        self.roots = out;
    }

    /// All leaves, winner first, then in CouchDB's order: not-deleted before deleted,
    /// higher pos first, higher id first.
    pub fn leaves(&self) -> Vec<Leaf> {
        let mut out = Vec::new();
        for (pos, root) in &self.roots {
            collect_leaves(root, *pos, &mut out);
        }
        sort_leaves(&mut out);
        out
    }

    /// The winning leaf, if the tree is not empty.
    pub fn winner(&self) -> Option<Leaf> {
        let mut best: Option<(bool, u64, &RevNode)> = None;
        for (pos, root) in &self.roots {
            let mut stack = vec![(root, *pos)];
            while let Some((node, p)) = stack.pop() {
                if !node.children.is_empty() {
                    stack.extend(node.children.iter().map(|c| (c, p + 1)));
                    continue;
                }
                let better = best.is_none_or(|(live, bp, bn)| {
                    (!node.deleted, p, node.id.as_str()) > (live, bp, bn.id.as_str())
                });
                if better {
                    best = Some((!node.deleted, p, node));
                }
            }
        }
        best.map(|(_, pos, node)| Leaf {
            rev: Rev {
                pos,
                id: node.id.clone(),
            },
            deleted: node.deleted,
        })
    }

    /// Whether `rev` is anywhere in the tree (leaf or interior).
    pub fn contains(&self, rev: &Rev) -> bool {
        self.locate(rev.pos, &rev.id).is_some()
    }

    /// Whether `rev` is a leaf; `Some(deleted)` if so.
    pub fn leaf_deleted(&self, rev: &Rev) -> Option<bool> {
        let loc = self.locate(rev.pos, &rev.id)?;
        let node = self.node(&loc)?;
        node.children.is_empty().then_some(node.deleted)
    }

    /// The path from `rev` back to its root, newest first, with each node's deleted
    /// flag; `None` if `rev` is not in the tree.
    pub fn path_to(&self, rev: &Rev) -> Option<Vec<(Rev, bool)>> {
        let loc = self.locate(rev.pos, &rev.id)?;
        let (start, root) = self.roots.get(loc.root)?;
        let mut node = root;
        let mut out = Vec::with_capacity(loc.steps.len() + 1);
        out.push((
            Rev {
                pos: *start,
                id: node.id.clone(),
            },
            node.deleted,
        ));
        for (depth, &i) in (1u64..).zip(&loc.steps) {
            node = node.children.get(i)?;
            out.push((
                Rev {
                    pos: start + depth,
                    id: node.id.clone(),
                },
                node.deleted,
            ));
        }
        out.reverse();
        Some(out)
    }

    /// The leaves that descend from `rev` (itself if it is a leaf); empty if unknown.
    pub fn leaves_under(&self, rev: &Rev) -> Vec<Leaf> {
        let mut out = Vec::new();
        if let Some(node) = self.locate(rev.pos, &rev.id).and_then(|l| self.node(&l)) {
            collect_leaves(node, rev.pos, &mut out);
        }
        sort_leaves(&mut out);
        out
    }

    /// Removes the given leaves (and ancestors left with no leaf); returns the revs
    /// actually removed among those asked for. Non-leaf or unknown revs are ignored.
    ///
    /// Leaf status is judged on the tree as it was before the call; the result keeps
    /// the order of `revs`, without duplicates.
    pub fn remove_leaves(&mut self, revs: &[Rev]) -> Vec<Rev> {
        let mut removed: Vec<Rev> = Vec::new();
        let mut seen: HashSet<&Rev> = HashSet::new();
        for rev in revs {
            if seen.insert(rev) && self.leaf_deleted(rev).is_some() {
                removed.push(rev.clone());
            }
        }
        if removed.is_empty() {
            return removed;
        }
        let targets: HashSet<(u64, &str)> =
            removed.iter().map(|r| (r.pos, r.id.as_str())).collect();
        let mut out = Vec::new();
        for (pos, root) in std::mem::take(&mut self.roots) {
            prune_root(root, pos, &targets, &mut out);
        }
        self.roots = out;
        removed
    }

    /// Every revision in the tree.
    pub fn all_revs(&self) -> Vec<Rev> {
        let mut out = Vec::new();
        for (pos, root) in &self.roots {
            let mut stack = vec![(root, *pos)];
            while let Some((node, p)) = stack.pop() {
                out.push(Rev {
                    pos: p,
                    id: node.id.clone(),
                });
                stack.extend(node.children.iter().map(|c| (c, p + 1)));
            }
        }
        out
    }

    /// Whether the tree has no revisions.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// Finds the node at generation `pos` with this id.
    fn locate(&self, pos: u64, id: &str) -> Option<Loc> {
        self.roots
            .iter()
            .enumerate()
            .filter(|(_, (start, _))| *start <= pos)
            .find_map(|(root, (start, node))| {
                find_at_depth(node, pos - start, id).map(|steps| Loc { root, steps })
            })
    }

    fn node(&self, loc: &Loc) -> Option<&RevNode> {
        let mut node = &self.roots.get(loc.root)?.1;
        for &i in &loc.steps {
            node = node.children.get(i)?;
        }
        Some(node)
    }

    fn node_mut(&mut self, loc: &Loc) -> Option<&mut RevNode> {
        let mut node = &mut self.roots.get_mut(loc.root)?.1;
        for &i in &loc.steps {
            node = node.children.get_mut(i)?;
        }
        Some(node)
    }

    /// The ids from the root down to the node at `loc` (inclusive).
    fn ids_along(&self, loc: &Loc) -> Vec<&str> {
        let mut out = Vec::with_capacity(loc.steps.len() + 1);
        if let Some((_, root)) = self.roots.get(loc.root) {
            let mut node = root;
            out.push(node.id.as_str());
            for &i in &loc.steps {
                match node.children.get(i) {
                    Some(child) => node = child,
                    None => break,
                }
                out.push(node.id.as_str());
            }
        }
        out
    }

    /// Hangs `child` (whose generation is `child_pos`) under the node at `loc`; returns
    /// whether that node was a leaf. Falls back to a new root if `loc` is stale.
    fn attach(&mut self, loc: &Loc, child: RevNode, child_pos: u64) -> bool {
        match self.node_mut(loc) {
            Some(parent) => {
                let was_leaf = parent.children.is_empty();
                let at = parent.children.partition_point(|c| c.id < child.id);
                parent.children.insert(at, child);
                was_leaf
            }
            None => {
                self.insert_root(child_pos, child);
                false
            }
        }
    }

    fn insert_root(&mut self, pos: u64, node: RevNode) {
        let at = self
            .roots
            .partition_point(|(p, n)| (*p, n.id.as_str()) < (pos, node.id.as_str()));
        self.roots.insert(at, (pos, node));
    }
}

/// Where a node sits: index of its root, then child indices from the root down.
struct Loc {
    root: usize,
    steps: Vec<usize>,
}

fn new_node(id: &str, deleted: bool) -> RevNode {
    RevNode {
        id: id.to_string(),
        deleted,
        children: Vec::new(),
    }
}

/// Puts `node` under a chain of new (not deleted) ancestors, given newest first;
/// returns the top of the chain.
fn wrap(node: RevNode, ancestors: &[String]) -> RevNode {
    ancestors.iter().fold(node, |child, id| RevNode {
        id: id.clone(),
        deleted: false,
        children: vec![child],
    })
}

/// Child-index steps from `root` to the node `depth` levels below it with this id.
fn find_at_depth(root: &RevNode, depth: u64, id: &str) -> Option<Vec<usize>> {
    if depth == 0 {
        return (root.id == id).then(Vec::new);
    }
    // Depth-first, iterative: `stack[i]` is (node at depth i, next child to visit) and
    // `steps[i]` the index of `stack[i + 1]` within `stack[i]`'s children.
    let mut stack: Vec<(&RevNode, usize)> = vec![(root, 0)];
    let mut steps: Vec<usize> = Vec::new();
    loop {
        let level = stack.len() as u64;
        let Some(top) = stack.last_mut() else {
            break;
        };
        let (node, next) = *top;
        if level == depth {
            if let Some(i) = node.children.iter().position(|c| c.id == id) {
                steps.push(i);
                return Some(steps);
            }
        } else if let Some(child) = node.children.get(next) {
            top.1 += 1;
            stack.push((child, 0));
            steps.push(next);
            continue;
        }
        stack.pop();
        steps.pop();
    }
    None
}

fn collect_leaves(node: &RevNode, pos: u64, out: &mut Vec<Leaf>) {
    let mut stack = vec![(node, pos)];
    while let Some((node, p)) = stack.pop() {
        if node.children.is_empty() {
            out.push(Leaf {
                rev: Rev {
                    pos: p,
                    id: node.id.clone(),
                },
                deleted: node.deleted,
            });
        } else {
            stack.extend(node.children.iter().map(|c| (c, p + 1)));
        }
    }
}

/// Sorts descending by (not deleted, pos, id): the winner first.
fn sort_leaves(leaves: &mut [Leaf]) {
    leaves.sort_by(|a, b| {
        (!b.deleted, b.rev.pos, b.rev.id.as_str()).cmp(&(!a.deleted, a.rev.pos, a.rev.id.as_str()))
    });
}

/// One node of a flattened tree; see [`flatten`].
struct Flat {
    node: RevNode,
    pos: u64,
    parent: Option<usize>,
    was_leaf: bool,
    /// Generations from this node down to its nearest leaf (filled in by `stem_root`).
    nearest: u64,
}

/// Takes a tree apart without recursion (deep histories would overflow the stack):
/// nodes in pre-order, each with its children moved out. Rebuild by popping from the
/// end, which visits every node after all of its descendants and pushes siblings in
/// reverse order.
fn flatten(root: RevNode, pos: u64) -> Vec<Flat> {
    let mut flat = Vec::new();
    let mut stack = vec![(root, pos, None)];
    while let Some((mut node, pos, parent)) = stack.pop() {
        let children = std::mem::take(&mut node.children);
        let me = flat.len();
        let was_leaf = children.is_empty();
        flat.push(Flat {
            node,
            pos,
            parent,
            was_leaf,
            nearest: if was_leaf { 0 } else { u64::MAX },
        });
        stack.extend(children.into_iter().rev().map(|c| (c, pos + 1, Some(me))));
    }
    flat
}

/// Stems one tree, pushing the surviving pieces to `out`. A node survives if a leaf
/// below it is fewer than `limit` generations away; it stays linked to its parent only
/// if some leaf below it is fewer than `limit` generations away from that parent.
fn stem_root(root: RevNode, pos: u64, limit: u64, out: &mut Vec<(u64, RevNode)>) {
    let mut flat = flatten(root, pos);
    while let Some(Flat {
        mut node,
        pos,
        parent,
        nearest,
        ..
    }) = flat.pop()
    {
        node.children.reverse();
        let kept = nearest < limit;
        let from_parent = nearest.saturating_add(1);
        match parent.and_then(|p| flat.get_mut(p)) {
            Some(parent) => {
                parent.nearest = parent.nearest.min(from_parent);
                if kept && from_parent < limit {
                    parent.node.children.push(node);
                } else if kept {
                    out.push((pos, node));
                }
            }
            None if kept => out.push((pos, node)),
            None => {}
        }
    }
}

/// Removes the target leaves from one tree, and every node left without children;
/// pushes what remains (if anything) to `out`.
fn prune_root(
    root: RevNode,
    pos: u64,
    targets: &HashSet<(u64, &str)>,
    out: &mut Vec<(u64, RevNode)>,
) {
    let mut flat = flatten(root, pos);
    while let Some(Flat {
        mut node,
        pos,
        parent,
        was_leaf,
        ..
    }) = flat.pop()
    {
        node.children.reverse();
        let keep = if was_leaf {
            !targets.contains(&(pos, node.id.as_str()))
        } else {
            !node.children.is_empty()
        };
        if !keep {
            continue;
        }
        match parent.and_then(|p| flat.get_mut(p)) {
            Some(parent) => parent.node.children.push(node),
            None => out.push((pos, node)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    fn rev(s: &str) -> Rev {
        s.parse().unwrap()
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn node(id: &str, children: Vec<RevNode>) -> RevNode {
        RevNode {
            id: id.to_string(),
            deleted: false,
            children,
        }
    }

    fn tree(roots: Vec<(u64, RevNode)>) -> RevTree {
        RevTree { roots }
    }

    /// Merges `newest` (e.g. "3-c") with its ancestors' ids given newest first.
    fn merge(t: &mut RevTree, newest: &str, ancestors: &[&str], deleted: bool) -> MergeOutcome {
        let r = rev(newest);
        let mut path = vec![r.id];
        path.extend(ancestors.iter().map(|s| s.to_string()));
        t.merge_path(r.pos, &path, deleted)
    }

    fn leaf_revs(t: &RevTree) -> Vec<String> {
        t.leaves().iter().map(|l| l.rev.to_string()).collect()
    }

    // ---------------------------------------------------------------- parsing

    #[test]
    fn parse_revs() {
        assert_eq!(
            rev("3-917fa2381192822767f010b95b45325b"),
            Rev {
                pos: 3,
                id: "917fa2381192822767f010b95b45325b".into()
            }
        );
        assert_eq!(rev("1-xyz").id, "xyz");
        assert_eq!(rev("1-a-b").id, "a-b");
        assert_eq!(rev("0-12").pos, 0);
        for bad in [
            "abc",
            "-1-",
            "1-",
            "-",
            "",
            "x-1",
            "+1-a",
            " 1-a",
            "99999999999999999999999-a",
        ] {
            assert_eq!(bad.parse::<Rev>(), Err(BadRev), "{bad:?}");
        }
        assert_eq!(rev("12-abc").to_string(), "12-abc");
    }

    // ---------------------------------------------------------------- merge

    #[test]
    fn merge_into_empty_is_new_leaf_and_reflexive() {
        let mut t = RevTree::new();
        assert!(t.is_empty());
        assert_eq!(merge(&mut t, "1-a", &[], false), MergeOutcome::NewLeaf);
        assert_eq!(
            merge(&mut t, "1-a", &[], false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(t, tree(vec![(1, node("a", vec![]))]));
        assert!(!t.is_empty());
    }

    #[test]
    fn linear_edits_and_conflicts() {
        let mut t = RevTree::new();
        assert_eq!(merge(&mut t, "1-a", &[], false), MergeOutcome::NewLeaf);
        assert_eq!(merge(&mut t, "2-b", &["a"], false), MergeOutcome::NewLeaf);
        assert_eq!(
            merge(&mut t, "3-c", &["b", "a"], false),
            MergeOutcome::NewLeaf
        );
        // A sibling of 3-c, inserted before it in id order.
        assert_eq!(
            merge(&mut t, "3-a", &["b", "a"], false),
            MergeOutcome::NewBranch
        );
        // A sibling of 2-b with a long branch.
        assert_eq!(
            merge(&mut t, "3-z", &["x", "a"], false),
            MergeOutcome::NewBranch
        );
        assert_eq!(
            merge(&mut t, "2-b", &["a"], false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(
            merge(&mut t, "3-z", &["x"], false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(
            t,
            tree(vec![(
                1,
                node(
                    "a",
                    vec![
                        node("b", vec![node("a", vec![]), node("c", vec![])]),
                        node("x", vec![node("z", vec![])]),
                    ]
                )
            )])
        );
        assert_eq!(leaf_revs(&t), ["3-z", "3-c", "3-a"]);
    }

    #[test]
    fn unrelated_roots_are_new_branches() {
        let mut t = RevTree::new();
        merge(&mut t, "1-b", &[], false);
        assert_eq!(merge(&mut t, "1-c", &[], false), MergeOutcome::NewBranch);
        assert_eq!(merge(&mut t, "1-a", &[], false), MergeOutcome::NewBranch);
        let roots: Vec<_> = t.roots.iter().map(|(p, n)| (*p, n.id.as_str())).collect();
        assert_eq!(roots, [(1, "a"), (1, "b"), (1, "c")]);
    }

    #[test]
    fn stemmed_paths_merge_where_they_overlap() {
        let full = tree(vec![(
            1,
            node(
                "1",
                vec![node("1a", vec![]), node("1b", vec![node("1bb", vec![])])],
            ),
        )]);
        let mut t = full.clone();
        assert_eq!(
            merge(&mut t, "2-1a", &[], false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(
            merge(&mut t, "3-1bb", &[], false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(
            merge(&mut t, "3-1bb", &["1b"], false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(t, full);
        // Extending a leaf through a stemmed path.
        assert_eq!(
            merge(&mut t, "4-1bbb", &["1bb", "1b"], false),
            MergeOutcome::NewLeaf
        );
        assert_eq!(leaf_revs(&t), ["4-1bbb", "2-1a"]);
    }

    #[test]
    fn disjoint_stem_then_joining_path() {
        // One tree 1 -> 1a, plus a stem 3-1aa that does not overlap it: a new branch.
        let mut t = tree(vec![(1, node("1", vec![node("1a", vec![])]))]);
        assert_eq!(merge(&mut t, "3-1aa", &[], false), MergeOutcome::NewBranch);
        assert_eq!(t.roots.len(), 2);
        // The full path joins both pieces; 2-1a was a leaf, so this is a new leaf.
        assert_eq!(
            merge(&mut t, "3-1aa", &["1a", "1"], false),
            MergeOutcome::NewLeaf
        );
        assert_eq!(
            t,
            tree(vec![(
                1,
                node("1", vec![node("1a", vec![node("1aa", vec![])])])
            )])
        );
    }

    #[test]
    fn joining_roots_through_missing_revisions() {
        let mut t = RevTree::new();
        merge(&mut t, "1-a", &[], false);
        merge(&mut t, "4-d", &[], false);
        merge(&mut t, "6-f", &["e"], false);
        assert_eq!(t.roots.len(), 3);
        assert_eq!(
            merge(&mut t, "5-e", &["d", "c", "b", "a"], false),
            MergeOutcome::NewLeaf
        );
        assert_eq!(
            t,
            tree(vec![(
                1,
                node(
                    "a",
                    vec![node(
                        "b",
                        vec![node(
                            "c",
                            vec![node("d", vec![node("e", vec![node("f", vec![])])])]
                        )]
                    )]
                )
            )])
        );
        assert_eq!(leaf_revs(&t), ["6-f"]);
    }

    #[test]
    fn root_extended_upward() {
        let mut t = tree(vec![(2, node("b", vec![node("c", vec![])]))]);
        assert_eq!(
            merge(&mut t, "3-c", &["b", "a"], false),
            MergeOutcome::NewBranch
        );
        assert_eq!(
            t,
            tree(vec![(
                1,
                node("a", vec![node("b", vec![node("c", vec![])])])
            )])
        );
        // Extending upward while adding a leaf elsewhere on the path.
        let mut t = tree(vec![(2, node("b", vec![node("c", vec![])]))]);
        assert_eq!(
            merge(&mut t, "4-d", &["c", "b", "a"], false),
            MergeOutcome::NewLeaf
        );
        assert_eq!(t.roots.len(), 1);
        assert_eq!(t.roots[0].0, 1);
        assert_eq!(leaf_revs(&t), ["4-d"]);
    }

    #[test]
    fn couchdb_902_conflicting_branch_is_kept() {
        let mut t = tree(vec![(
            1,
            node("foo", vec![node("foo2", vec![]), node("foo3", vec![])]),
        )]);
        assert_eq!(
            merge(&mut t, "3-foo4", &["foo3", "foo"], false),
            MergeOutcome::NewLeaf
        );
        assert_eq!(
            t,
            tree(vec![(
                1,
                node(
                    "foo",
                    vec![
                        node("foo2", vec![]),
                        node("foo3", vec![node("foo4", vec![])])
                    ]
                )
            )])
        );
    }

    #[test]
    fn deleted_flag_only_for_new_head() {
        let mut t = RevTree::new();
        merge(&mut t, "2-b", &["a"], true);
        assert_eq!(
            t.path_to(&rev("2-b")),
            Some(vec![(rev("2-b"), true), (rev("1-a"), false)])
        );
        // Already present: flags stay as they are.
        assert_eq!(
            merge(&mut t, "1-a", &[], true),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(
            merge(&mut t, "2-b", &["a"], false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(t.leaf_deleted(&rev("2-b")), Some(true));
        assert_eq!(t.leaf_deleted(&rev("1-a")), None);
        // Recreating over a tombstone is a normal edit.
        assert_eq!(
            merge(&mut t, "3-c", &["b", "a"], false),
            MergeOutcome::NewLeaf
        );
        assert_eq!(
            t.winner().map(|l| (l.rev.to_string(), l.deleted)),
            Some(("3-c".into(), false))
        );
        assert_eq!(
            t.path_to(&rev("3-c")),
            Some(vec![
                (rev("3-c"), false),
                (rev("2-b"), true),
                (rev("1-a"), false)
            ])
        );
    }

    #[test]
    fn conflicting_ancestry_keeps_the_tree_history() {
        let mut t = RevTree::new();
        merge(&mut t, "2-b", &["a"], false);
        let before = t.clone();
        assert_eq!(
            merge(&mut t, "2-b", &["c"], false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(t, before);
        assert_eq!(
            merge(&mut t, "3-d", &["b", "c"], false),
            MergeOutcome::NewLeaf
        );
        assert!(!t.contains(&rev("1-c")));
        assert_eq!(t.all_revs().len(), 3);
        // A mismatch below a stemmed root: nothing is grafted above that root either.
        let mut t = tree(vec![(2, node("x", vec![node("b", vec![])]))]);
        let before = t.clone();
        assert_eq!(
            merge(&mut t, "3-b", &["y", "z"], false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(t, before);
    }

    #[test]
    fn ids_beyond_generation_one_are_ignored() {
        let mut t = RevTree::new();
        assert_eq!(
            t.merge_path(2, &ids(&["c", "b", "a"]), false),
            MergeOutcome::NewLeaf
        );
        assert_eq!(t, tree(vec![(1, node("b", vec![node("c", vec![])]))]));
        assert_eq!(
            t.merge_path(0, &ids(&["x"]), false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(t.merge_path(5, &[], false), MergeOutcome::AlreadyPresent);
        assert_eq!(t.all_revs().len(), 2);
    }

    #[test]
    fn same_id_at_different_generations() {
        let mut t = RevTree::new();
        merge(&mut t, "3-a", &["a", "a"], false);
        assert_eq!(
            merge(&mut t, "2-a", &[], false),
            MergeOutcome::AlreadyPresent
        );
        assert_eq!(merge(&mut t, "4-a", &["a"], false), MergeOutcome::NewLeaf);
        assert_eq!(leaf_revs(&t), ["4-a"]);
        assert_eq!(t.path_to(&rev("2-a")).map(|p| p.len()), Some(2));
        assert!(!t.contains(&rev("5-a")));
    }

    // ---------------------------------------------------------------- stem

    #[test]
    fn stem_linear() {
        let two_child = tree(vec![(
            1,
            node("1", vec![node("1a", vec![node("1aa", vec![])])]),
        )]);
        let mut t = two_child.clone();
        t.stem(3);
        assert_eq!(t, two_child);
        t.stem(2);
        assert_eq!(t, tree(vec![(2, node("1a", vec![node("1aa", vec![])]))]));
        let mut t = two_child.clone();
        t.stem(1);
        assert_eq!(t, tree(vec![(3, node("1aa", vec![]))]));
        let mut t = two_child;
        t.stem(0);
        assert_eq!(t, tree(vec![(3, node("1aa", vec![]))]));
    }

    #[test]
    fn stem_keeps_only_links_inside_stemmed_paths() {
        // n -> {c', c -> l}; limit 2 keeps paths [n, c'] and [c, l], which share nothing.
        let mut t = tree(vec![(
            1,
            node(
                "n",
                vec![node("c", vec![node("l", vec![])]), node("d", vec![])],
            ),
        )]);
        t.stem(2);
        assert_eq!(
            t,
            tree(vec![
                (1, node("n", vec![node("d", vec![])])),
                (2, node("c", vec![node("l", vec![])])),
            ])
        );
        // Branches that share their newest revisions stay together.
        let mut t = tree(vec![(
            1,
            node(
                "a",
                vec![node("b", vec![node("c", vec![]), node("d", vec![])])],
            ),
        )]);
        t.stem(2);
        assert_eq!(
            t,
            tree(vec![(
                2,
                node("b", vec![node("c", vec![]), node("d", vec![])])
            )])
        );
    }

    #[test]
    fn merge_after_stem_reattaches() {
        let mut t = RevTree::new();
        merge(&mut t, "4-d", &["c", "b", "a"], false);
        t.stem(2);
        assert_eq!(t, tree(vec![(3, node("c", vec![node("d", vec![])]))]));
        // The stemmed-off part is known again: the root grows upward.
        assert_eq!(
            merge(&mut t, "4-d", &["c", "b", "a"], false),
            MergeOutcome::NewBranch
        );
        assert_eq!(t.roots.len(), 1);
        assert_eq!(t.roots[0].0, 1);
        t.stem(2);
        assert_eq!(t, tree(vec![(3, node("c", vec![node("d", vec![])]))]));
        // An edit on top of a stemmed tree.
        assert_eq!(
            merge(&mut t, "5-e", &["d", "c", "b"], false),
            MergeOutcome::NewLeaf
        );
    }

    // ---------------------------------------------------------------- queries

    #[test]
    fn leaves_order_and_winner() {
        let mut t = RevTree::new();
        merge(&mut t, "3-zzz", &["b", "a"], true); // deleted, highest pos and id
        merge(&mut t, "2-c", &["a"], false);
        merge(&mut t, "2-d", &["a"], false);
        merge(&mut t, "1-x", &[], false);
        assert_eq!(leaf_revs(&t), ["2-d", "2-c", "1-x", "3-zzz"]);
        assert_eq!(t.winner().map(|l| l.rev), Some(rev("2-d")));
        assert_eq!(t.leaf_deleted(&rev("3-zzz")), Some(true));
        assert_eq!(t.leaf_deleted(&rev("2-b")), None);
        assert_eq!(t.leaf_deleted(&rev("9-q")), None);
        assert_eq!(RevTree::new().winner(), None);
        // All deleted: the deepest (then greatest id) tombstone wins.
        let mut t = RevTree::new();
        merge(&mut t, "2-a", &["r"], true);
        merge(&mut t, "2-b", &["r"], true);
        merge(&mut t, "1-z", &[], true);
        assert_eq!(
            t.winner(),
            Some(Leaf {
                rev: rev("2-b"),
                deleted: true
            })
        );
    }

    #[test]
    fn path_to_and_leaves_under() {
        let mut t = RevTree::new();
        merge(&mut t, "3-c", &["b", "a"], false);
        merge(&mut t, "3-d", &["b", "a"], true);
        merge(&mut t, "2-x", &["a"], false);
        assert_eq!(
            t.path_to(&rev("3-d")),
            Some(vec![
                (rev("3-d"), true),
                (rev("2-b"), false),
                (rev("1-a"), false)
            ])
        );
        assert_eq!(t.path_to(&rev("1-a")), Some(vec![(rev("1-a"), false)]));
        assert_eq!(t.path_to(&rev("3-x")), None);
        let under = |r: &str| -> Vec<String> {
            t.leaves_under(&rev(r))
                .iter()
                .map(|l| l.rev.to_string())
                .collect()
        };
        assert_eq!(under("1-a"), ["3-c", "2-x", "3-d"]);
        assert_eq!(under("2-b"), ["3-c", "3-d"]);
        assert_eq!(under("3-d"), ["3-d"]);
        assert!(under("4-q").is_empty());
        let mut all: Vec<String> = t.all_revs().iter().map(|r| r.to_string()).collect();
        all.sort();
        assert_eq!(all, ["1-a", "2-b", "2-x", "3-c", "3-d"]);
        assert!(t.contains(&rev("2-b")));
        assert!(!t.contains(&rev("2-c")));
    }

    // ---------------------------------------------------------------- purge

    #[test]
    fn remove_leaves_cases() {
        let sibs = tree(vec![(
            1,
            node("1", vec![node("1a", vec![]), node("1b", vec![])]),
        )]);
        let mut t = sibs.clone();
        assert!(t.remove_leaves(&[]).is_empty());
        assert!(t.remove_leaves(&[rev("1-1"), rev("5-q")]).is_empty());
        assert_eq!(t, sibs);
        assert_eq!(t.remove_leaves(&[rev("2-1b"), rev("2-1b")]), [rev("2-1b")]);
        assert_eq!(t, tree(vec![(1, node("1", vec![node("1a", vec![])]))]));
        let mut t = sibs;
        assert_eq!(
            t.remove_leaves(&[rev("2-1b"), rev("1-1"), rev("2-1a")]),
            [rev("2-1b"), rev("2-1a")]
        );
        assert!(t.is_empty());

        // Removing a leaf drops its ancestors up to the fork.
        let mut t = RevTree::new();
        merge(&mut t, "4-d", &["c", "b", "a"], false);
        merge(&mut t, "2-x", &["a"], false);
        merge(&mut t, "1-other", &[], false);
        assert_eq!(t.remove_leaves(&[rev("4-d")]), [rev("4-d")]);
        assert_eq!(
            t,
            tree(vec![
                (1, node("a", vec![node("x", vec![])])),
                (1, node("other", vec![])),
            ])
        );
        // Stemmed root.
        let mut t = tree(vec![(2, node("1a", vec![node("1aa", vec![])]))]);
        assert!(t.remove_leaves(&[rev("2-1a")]).is_empty());
        assert_eq!(t.remove_leaves(&[rev("3-1aa")]), [rev("3-1aa")]);
        assert!(t.is_empty());
    }

    #[test]
    fn postcard_roundtrip() {
        let mut t = RevTree::new();
        merge(&mut t, "3-c", &["b", "a"], true);
        merge(&mut t, "2-x", &["a"], false);
        let bytes = postcard::to_stdvec(&t).unwrap();
        let back: RevTree = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn deep_tree_without_recursion() {
        // Deeper than derived Clone/PartialEq/serde can handle on a 2 MiB test thread
        // in debug builds; everything implemented here must cope. (Drop copes too.)
        let n = 20_000usize;
        let path: Vec<String> = (0..n).rev().map(|i| format!("r{i}")).collect();
        let newest = rev(&format!("{n}-r{}", n - 1));
        let mut t = RevTree::new();
        assert_eq!(t.merge_path(n as u64, &path, false), MergeOutcome::NewLeaf);
        assert_eq!(
            t.merge_path(n as u64, &path, false),
            MergeOutcome::AlreadyPresent
        );
        assert!(t.contains(&rev("1-r0")));
        assert_eq!(t.path_to(&newest).map(|p| p.len()), Some(n));
        assert_eq!(t.leaves_under(&rev("1-r0")).len(), 1);
        assert_eq!(t.all_revs().len(), n);
        t.stem(n + 1);
        assert_eq!(t.all_revs().len(), n);
        t.stem(1000);
        assert_eq!(t.roots.len(), 1);
        assert_eq!(t.roots[0].0, (n - 999) as u64);
        assert_eq!(t.all_revs().len(), 1000);
        assert_eq!(
            t.merge_path(n as u64, &path, false),
            MergeOutcome::NewBranch
        );
        assert_eq!(t.roots[0].0, 1);
        assert_eq!(t.remove_leaves(&[newest]).len(), 1);
        assert!(t.is_empty());
    }

    // ---------------------------------------------------------------- invariants

    /// Structural invariants: roots sorted by (pos, id), children sorted by id, and
    /// no revision appears twice. Returns node -> (parent, deleted).
    fn snapshot(t: &RevTree) -> BTreeMap<Rev, (Option<Rev>, bool)> {
        let mut out = BTreeMap::new();
        for w in t.roots.windows(2) {
            assert!(
                (w[0].0, &w[0].1.id) < (w[1].0, &w[1].1.id),
                "roots unsorted: {t:?}"
            );
        }
        for (pos, root) in &t.roots {
            let mut stack: Vec<(&RevNode, u64, Option<Rev>)> = vec![(root, *pos, None)];
            while let Some((n, p, parent)) = stack.pop() {
                for w in n.children.windows(2) {
                    assert!(w[0].id < w[1].id, "children unsorted: {t:?}");
                }
                let me = Rev {
                    pos: p,
                    id: n.id.clone(),
                };
                for c in &n.children {
                    stack.push((c, p + 1, Some(me.clone())));
                }
                assert!(
                    out.insert(me, (parent, n.deleted)).is_none(),
                    "duplicate rev: {t:?}"
                );
            }
        }
        out
    }

    /// After `stem(limit)`: each leaf still has the newest `limit` revisions of its old
    /// path (`old_paths`, newest first), and every revision is fewer than `limit`
    /// generations above some leaf. (Paths can still be longer than `limit`: pieces of
    /// different branches that share revisions are merged back together.)
    fn check_stemmed(t: &RevTree, old_paths: &[Vec<(Rev, bool)>], limit: usize) {
        for old in old_paths {
            let kept = &old[..old.len().min(limit)];
            let now = t.path_to(&kept[0].0).unwrap();
            assert!(now.len() >= kept.len());
            assert_eq!(&now[..kept.len()], kept);
        }
        let near: BTreeSet<Rev> = t
            .leaves()
            .iter()
            .flat_map(|l| t.path_to(&l.rev).unwrap().into_iter().take(limit))
            .map(|(r, _)| r)
            .collect();
        assert_eq!(near, t.all_revs().into_iter().collect::<BTreeSet<_>>());
    }

    // ---------------------------------------------------------------- model

    /// Reference model: the set of merged paths (oldest first). The tree it stands for
    /// has every revision of every path, with each consecutive pair as parent/child.
    #[derive(Debug, Clone, Default)]
    struct Model {
        paths: BTreeSet<Vec<Rev>>,
        deleted: BTreeMap<Rev, bool>,
    }

    impl Model {
        fn parents(&self) -> BTreeMap<Rev, Option<Rev>> {
            let mut m: BTreeMap<Rev, Option<Rev>> = BTreeMap::new();
            for p in &self.paths {
                for (i, r) in p.iter().enumerate() {
                    let e = m.entry(r.clone()).or_default();
                    if i > 0 {
                        let parent = p[i - 1].clone();
                        assert!(e.as_ref().is_none_or(|x| *x == parent));
                        *e = Some(parent);
                    }
                }
            }
            m
        }

        fn leaves(&self) -> BTreeSet<Rev> {
            let parents = self.parents();
            let inner: BTreeSet<Rev> = parents.values().flatten().cloned().collect();
            parents.into_keys().filter(|r| !inner.contains(r)).collect()
        }

        /// Root-to-leaf paths, oldest first.
        fn full_paths(&self) -> Vec<Vec<Rev>> {
            let parents = self.parents();
            self.leaves()
                .into_iter()
                .map(|leaf| {
                    let mut p = vec![leaf.clone()];
                    let mut cur = leaf;
                    while let Some(Some(up)) = parents.get(&cur) {
                        p.push(up.clone());
                        cur = up.clone();
                    }
                    p.reverse();
                    p
                })
                .collect()
        }

        fn chain(&self, r: &Rev) -> Option<Vec<(Rev, bool)>> {
            let parents = self.parents();
            parents.get(r)?;
            let mut out = vec![(r.clone(), self.deleted[r])];
            let mut cur = r.clone();
            while let Some(Some(up)) = parents.get(&cur) {
                out.push((up.clone(), self.deleted[up]));
                cur = up.clone();
            }
            Some(out)
        }

        fn sorted_leaves(&self, filter: impl Fn(&Rev) -> bool) -> Vec<Leaf> {
            let mut v: Vec<Leaf> = self
                .leaves()
                .into_iter()
                .filter(|r| filter(r))
                .map(|r| Leaf {
                    deleted: self.deleted[&r],
                    rev: r,
                })
                .collect();
            v.sort_by_key(|l| (!l.deleted, l.rev.pos, l.rev.id.clone()));
            v.reverse();
            v
        }

        fn retain_deleted(&mut self) {
            let nodes = self.parents();
            self.deleted.retain(|r, _| nodes.contains_key(r));
        }

        fn merge(&mut self, path: Vec<Rev>, leaf_deleted: bool) -> MergeOutcome {
            let before = self.parents();
            let before_leaves = self.leaves();
            let last = path.len() - 1;
            for (i, r) in path.iter().enumerate() {
                self.deleted
                    .entry(r.clone())
                    .or_insert(i == last && leaf_deleted);
            }
            self.paths.insert(path);
            let after_leaves = self.leaves();
            if self.parents() == before {
                MergeOutcome::AlreadyPresent
            } else if before.is_empty() || !before_leaves.is_subset(&after_leaves) {
                MergeOutcome::NewLeaf
            } else {
                MergeOutcome::NewBranch
            }
        }

        fn stem(&mut self, limit: usize) {
            let limit = limit.max(1);
            self.paths = self
                .full_paths()
                .into_iter()
                .map(|p| p[p.len().saturating_sub(limit)..].to_vec())
                .collect();
            self.retain_deleted();
        }

        fn remove(&mut self, revs: &[Rev]) -> Vec<Rev> {
            let leaves = self.leaves();
            let mut removed: Vec<Rev> = Vec::new();
            for r in revs {
                if leaves.contains(r) && !removed.contains(r) {
                    removed.push(r.clone());
                }
            }
            self.paths = self
                .full_paths()
                .into_iter()
                .filter(|p| !removed.contains(&p[p.len() - 1]))
                .collect();
            self.retain_deleted();
            removed
        }

        fn snapshot(&self) -> BTreeMap<Rev, (Option<Rev>, bool)> {
            self.parents()
                .into_iter()
                .map(|(r, p)| {
                    let d = self.deleted[&r];
                    (r, (p, d))
                })
                .collect()
        }
    }

    /// Every query of the tree against the model.
    fn check_against(t: &RevTree, m: &Model, universe: &[Rev]) {
        assert_eq!(snapshot(t), m.snapshot());
        let leaves = m.sorted_leaves(|_| true);
        assert_eq!(t.leaves(), leaves);
        assert_eq!(t.winner(), leaves.first().cloned());
        assert_eq!(t.is_empty(), leaves.is_empty());
        let all: BTreeSet<Rev> = t.all_revs().into_iter().collect();
        assert_eq!(all.len(), t.all_revs().len());
        assert_eq!(all, m.parents().into_keys().collect::<BTreeSet<_>>());
        for r in universe {
            let chain = m.chain(r);
            assert_eq!(t.contains(r), chain.is_some());
            assert_eq!(t.path_to(r), chain);
            let is_leaf = m.leaves().contains(r);
            assert_eq!(t.leaf_deleted(r), is_leaf.then(|| m.deleted[r]));
            let under = m
                .sorted_leaves(|leaf| m.chain(leaf).is_some_and(|c| c.iter().any(|(x, _)| x == r)));
            assert_eq!(t.leaves_under(r), under);
        }
    }

    // ---------------------------------------------------------------- generators

    /// A consistent history: every revision has one fixed parent (as with real,
    /// hash-derived rev ids). Ids repeat across generations on purpose.
    #[derive(Debug, Clone)]
    struct Universe {
        revs: Vec<Rev>,
        parent: Vec<Option<usize>>,
    }

    impl Universe {
        /// Path of `len` revisions ending at `end`, newest first, as merge_path args.
        fn path(&self, end: usize, len: Index) -> (u64, Vec<String>, Vec<Rev>) {
            let mut chain = vec![end];
            while let Some(p) = self.parent[chain[chain.len() - 1]] {
                chain.push(p);
            }
            chain.truncate(len.index(chain.len()) + 1);
            let ids = chain.iter().map(|&i| self.revs[i].id.clone()).collect();
            let mut oldest_first: Vec<Rev> = chain.iter().map(|&i| self.revs[i].clone()).collect();
            oldest_first.reverse();
            (self.revs[end].pos, ids, oldest_first)
        }
    }

    fn universe() -> impl Strategy<Value = Universe> {
        prop::collection::vec((prop::option::weighted(0.9, any::<Index>()), 0u8..4), 1..24)
            .prop_map(|spec| {
                let mut revs: Vec<Rev> = Vec::new();
                let mut parent = Vec::new();
                let mut per_pos: HashMap<u64, usize> = HashMap::new();
                for (i, (p, letter)) in spec.into_iter().enumerate() {
                    let par = if i == 0 {
                        None
                    } else {
                        p.map(|ix| ix.index(i))
                    };
                    let pos = par.map_or(1, |j| revs[j].pos + 1);
                    let n = per_pos.entry(pos).or_default();
                    revs.push(Rev {
                        pos,
                        id: format!("{}{}", (b'a' + letter) as char, n),
                    });
                    *n += 1;
                    parent.push(par);
                }
                Universe { revs, parent }
            })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Merge {
            end: Index,
            len: Index,
            deleted: bool,
        },
        Stem(usize),
        Remove {
            leaves: Vec<Index>,
            others: Vec<Index>,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<Index>(), any::<Index>(), prop::bool::weighted(0.2))
                .prop_map(|(end, len, deleted)| Op::Merge { end, len, deleted }),
            1 => (0usize..6).prop_map(Op::Stem),
            1 => (
                prop::collection::vec(any::<Index>(), 0..3),
                prop::collection::vec(any::<Index>(), 0..2)
            )
                .prop_map(|(leaves, others)| Op::Remove { leaves, others }),
        ]
    }

    proptest! {
        /// Any sequence of merges, stems and purges of consistent histories behaves
        /// exactly like the path-set model.
        #[test]
        fn prop_matches_model(u in universe(), ops in prop::collection::vec(op(), 1..30)) {
            let mut t = RevTree::new();
            let mut m = Model::default();
            for op in ops {
                match op {
                    Op::Merge { end, len, deleted } => {
                        let (pos, ids, path) = u.path(end.index(u.revs.len()), len);
                        let before = t.clone();
                        let got = t.merge_path(pos, &ids, deleted);
                        prop_assert_eq!(got, m.merge(path, deleted));
                        prop_assert_eq!(got == MergeOutcome::AlreadyPresent, t == before);
                    }
                    Op::Stem(limit) => {
                        let leaves = t.leaves();
                        let paths: Vec<_> = leaves.iter().filter_map(|l| t.path_to(&l.rev)).collect();
                        t.stem(limit);
                        m.stem(limit);
                        prop_assert_eq!(t.leaves(), leaves);
                        check_stemmed(&t, &paths, limit.max(1));
                    }
                    Op::Remove { leaves, others } => {
                        let current = t.leaves();
                        let mut revs: Vec<Rev> = Vec::new();
                        if !current.is_empty() {
                            revs.extend(leaves.iter().map(|i| current[i.index(current.len())].rev.clone()));
                        }
                        revs.extend(others.iter().map(|i| u.revs[i.index(u.revs.len())].clone()));
                        let got = t.remove_leaves(&revs);
                        prop_assert_eq!(&got, &m.remove(&revs));
                        for r in &got {
                            prop_assert!(!t.contains(r));
                        }
                    }
                }
                check_against(&t, &m, &u.revs);
            }
        }

        /// Merging the same paths in any order gives the same tree, and stemming is
        /// idempotent and commutes with re-merging the stemmed paths.
        #[test]
        fn prop_order_independent(
            u in universe(),
            picks in prop::collection::vec((any::<Index>(), any::<Index>()), 1..12),
            shuffle in any::<prop::sample::Selector>(),
            limit in 1usize..5,
        ) {
            let paths: Vec<_> = picks
                .iter()
                .map(|(e, l)| u.path(e.index(u.revs.len()), *l))
                .collect();
            let mut a = RevTree::new();
            for (pos, ids, _) in &paths {
                a.merge_path(*pos, ids, false);
            }
            let mut rest: Vec<usize> = (0..paths.len()).collect();
            let mut b = RevTree::new();
            while !rest.is_empty() {
                let k = shuffle.select(0..rest.len());
                let (pos, ids, _) = &paths[rest.remove(k)];
                b.merge_path(*pos, ids, false);
            }
            prop_assert_eq!(&a, &b);

            a.stem(limit);
            let once = a.clone();
            a.stem(limit);
            prop_assert_eq!(&a, &once);
            // Re-merging the stemmed tree's own paths changes nothing.
            for leaf in once.leaves() {
                if let Some(p) = once.path_to(&leaf.rev) {
                    let ids: Vec<String> = p.iter().map(|(r, _)| r.id.clone()).collect();
                    prop_assert_eq!(a.merge_path(leaf.rev.pos, &ids, false), MergeOutcome::AlreadyPresent);
                }
            }
            prop_assert_eq!(&a, &once);
        }

        /// Arbitrary, possibly contradictory paths (same rev with different parents)
        /// never break the structure.
        #[test]
        fn prop_arbitrary_paths_keep_invariants(
            ops in prop::collection::vec(
                (1u64..7, prop::collection::vec(0u8..3, 1..7), any::<bool>(), 0usize..8),
                1..30,
            )
        ) {
            let mut t = RevTree::new();
            for (pos, letters, deleted, action) in ops {
                let ids: Vec<String> = letters.iter().map(|l| ((b'a' + l) as char).to_string()).collect();
                let before = t.clone();
                let got = t.merge_path(pos, &ids, deleted);
                prop_assert_eq!(got == MergeOutcome::AlreadyPresent, t == before);
                // Every parent/child link comes from the old tree or from the path.
                let old_links = snapshot(&before);
                for (r, (parent, _)) in snapshot(&t) {
                    let Some(parent) = parent else { continue };
                    let known = old_links.get(&r).is_some_and(|(p, _)| p.as_ref() == Some(&parent));
                    let in_path = pos.checked_sub(r.pos).is_some_and(|k| {
                        let k = k as usize;
                        ids.get(k) == Some(&r.id) && ids.get(k + 1) == Some(&parent.id)
                    });
                    prop_assert!(known || in_path, "invented link {} -> {}", parent, r);
                }
                let head = Rev { pos, id: ids[0].clone() };
                prop_assert!(t.contains(&head));
                if before.is_empty() {
                    prop_assert_eq!(got, MergeOutcome::NewLeaf);
                }
                for r in before.all_revs() {
                    prop_assert!(t.contains(&r));
                }
                match action {
                    0 => {
                        let leaves = t.leaves();
                        let paths: Vec<_> = leaves.iter().filter_map(|l| t.path_to(&l.rev)).collect();
                        let limit = pos as usize % 3;
                        t.stem(limit);
                        snapshot(&t);
                        prop_assert_eq!(t.leaves(), leaves);
                        check_stemmed(&t, &paths, limit.max(1));
                    }
                    1 => {
                        let leaves = t.leaves();
                        let target = leaves[pos as usize % leaves.len()].rev.clone();
                        let removed = t.remove_leaves(&[target.clone(), head.clone()]);
                        prop_assert_eq!(removed.first(), Some(&target));
                        snapshot(&t);
                        prop_assert!(!t.contains(&target));
                        for l in leaves.iter().filter(|l| l.rev != target && l.rev != head) {
                            prop_assert_eq!(t.leaf_deleted(&l.rev), Some(l.deleted));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
