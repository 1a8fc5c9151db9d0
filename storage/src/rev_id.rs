//! Deterministic revision ids: the same edit gives the same id on every shard copy.

use crate::rev_tree::Rev;
use md5::{Digest, Md5};

/// Computes the id of the revision produced by an interactive edit: an MD5 over the
/// deleted flag, the parent revision, the JSON body and the attachments' names,
/// types and digests.
pub fn new_rev_id(
    deleted: bool,
    parent: Option<&Rev>,
    body: &[u8],
    attachments: &[(&str, &str, [u8; 16])],
) -> String {
    let mut h = Md5::new();
    h.update([u8::from(deleted)]);
    match parent {
        Some(p) => {
            h.update(p.pos.to_le_bytes());
            h.update((p.id.len() as u64).to_le_bytes());
            h.update(p.id.as_bytes());
        }
        None => h.update(0u64.to_le_bytes()),
    }
    h.update((body.len() as u64).to_le_bytes());
    h.update(body);
    for (name, content_type, digest) in attachments {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((content_type.len() as u64).to_le_bytes());
        h.update(content_type.as_bytes());
        h.update(digest);
    }
    hex::encode(h.finalize())
}

/// MD5 digest of attachment data, as used in `digest` fields and as storage key.
pub fn md5_digest(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_edit_same_rev() {
        let parent = Rev {
            pos: 1,
            id: "abc".into(),
        };
        let a = new_rev_id(false, Some(&parent), b"{\"a\":1}", &[]);
        let b = new_rev_id(false, Some(&parent), b"{\"a\":1}", &[]);
        assert_eq!(a, b);
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_rev_id(true, Some(&parent), b"{\"a\":1}", &[]));
        assert_ne!(a, new_rev_id(false, None, b"{\"a\":1}", &[]));
        assert_ne!(a, new_rev_id(false, Some(&parent), b"{\"a\":2}", &[]));
        let att = [("x", "text/plain", md5_digest(b"hi"))];
        assert_ne!(a, new_rev_id(false, Some(&parent), b"{\"a\":1}", &att));
    }
}
