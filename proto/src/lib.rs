//! Protocol definitions of Chaise's node-to-node traffic.
//!
//! The `.proto` files live in `proto/proto/`; the `cluster` crate compiles them
//! (tonic-prost-build with protox, no system `protoc`). This crate only ships the
//! sources so that every crate refers to one copy of the protocol.

/// The fabric service: shard operations and Raft traffic between nodes.
pub const FABRIC_PROTO: &str = include_str!("../proto/fabric.proto");

/// Folder holding the `.proto` files, for build scripts.
pub const PROTO_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");

#[cfg(test)]
mod tests {
    #[test]
    fn fabric_declares_its_calls() {
        for rpc in ["rpc Shard(", "rpc ShardStream(", "rpc Raft("] {
            assert!(super::FABRIC_PROTO.contains(rpc), "{rpc} missing");
        }
    }
}
