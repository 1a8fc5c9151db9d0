//! Protocol definitions of Chaise's node-to-node traffic.
//!
//! The `.proto` files live in `proto/proto/`; the `cluster` crate compiles them
//! (tonic-prost-build with protox, no system `protoc`). This crate only ships the
//! sources so that every crate refers to one copy of the protocol.

/// The fabric service: shard-level operations a coordinator calls on a node.
pub const FABRIC_PROTO: &str = include_str!("../proto/fabric.proto");

#[cfg(test)]
mod tests {
    #[test]
    fn fabric_declares_the_shard_operations() {
        for rpc in ["rpc UpdateDocs", "rpc OpenDoc", "rpc Changes", "rpc RevsDiff"] {
            assert!(super::FABRIC_PROTO.contains(rpc), "{rpc} missing");
        }
    }
}
