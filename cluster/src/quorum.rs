//! Quorum sizes: how many copies must answer a read (`r`) or acknowledge a write (`w`).

/// The default quorum for `n` copies: a majority, `n / 2 + 1`.
pub fn default_quorum(n: usize) -> usize {
    n / 2 + 1
}

/// The effective quorum: the requested value if any (at least 1), else the default.
/// It is not capped at `n`: asking `w=3` of one copy yields a `202`, as in CouchDB.
pub fn effective(requested: Option<usize>, n: usize) -> usize {
    requested.unwrap_or_else(|| default_quorum(n)).max(1)
}

/// Whether a write acknowledged by `acks` of `n` copies is complete (`201`) or only
/// accepted (`202`).
pub fn write_complete(acks: usize, w: usize) -> bool {
    acks >= w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority() {
        assert_eq!(default_quorum(1), 1);
        assert_eq!(default_quorum(2), 2);
        assert_eq!(default_quorum(3), 2);
        assert_eq!(effective(Some(5), 3), 5);
        assert_eq!(effective(Some(0), 3), 1);
        assert_eq!(effective(None, 1), 1);
        assert!(write_complete(2, 2));
        assert!(!write_complete(1, 2));
    }
}
