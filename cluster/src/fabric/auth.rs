//! Node-to-node authentication: every call carries the caller's node name and an
//! HMAC of it under the cluster secret (`COUCHDB_SECRET`), like CouchDB's shared
//! Erlang cookie. A caller without the secret is refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Metadata key carrying the caller's node name.
pub const NODE_HEADER: &str = "x-chaise-node";
/// Metadata key carrying the proof of the secret.
pub const AUTH_HEADER: &str = "x-chaise-auth";

/// The proof a node sends: hex HMAC-SHA256 of its name under the secret.
pub fn token(secret: &str, node: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(b"chaise-fabric:");
    mac.update(node.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a caller's proof in constant time.
pub fn verify(secret: &str, node: &str, proof: &str) -> bool {
    let Ok(bytes) = hex::decode(proof) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(b"chaise-fabric:");
    mac.update(node.as_bytes());
    !secret.is_empty() && mac.verify_slice(&bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_secret_verifies() {
        let t = token("s3", "chaise@a");
        assert!(verify("s3", "chaise@a", &t));
        assert!(!verify("other", "chaise@a", &t));
        assert!(!verify("s3", "chaise@b", &t));
        assert!(!verify("", "chaise@a", &token("", "chaise@a")));
        assert!(!verify("s3", "chaise@a", "zz"));
    }
}
