//! The fabric: gRPC between nodes (tonic), authenticated with the cluster secret.

pub mod auth;
pub mod client;
pub mod op;
pub mod server;

/// Version of the encoded shard operations; nodes refuse calls of another version.
pub const OP_VERSION: u32 = 1;

/// Generated protocol types and service stubs.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("chaise.fabric.v1");
}

/// TLS for node-to-node traffic (`[fabric] tls = true`): this node's certificate
/// and key, and the CA that signed every node's certificate. Both sides verify:
/// a node presents its certificate and checks its peer's against the CA.
#[derive(Debug, Clone)]
pub struct FabricTls {
    /// PEM certificate of this node (its SAN must name the node's host).
    pub cert_pem: Vec<u8>,
    /// PEM private key of this node.
    pub key_pem: Vec<u8>,
    /// PEM certificate of the cluster's CA.
    pub ca_pem: Vec<u8>,
}

/// Errors of node-to-node calls.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FabricError {
    /// The peer could not be reached or the call failed in transit.
    #[error("node {addr} unreachable: {reason}")]
    Unreachable {
        /// Peer address.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// The peer refused the call.
    #[error("node {addr} refused the call: {reason}")]
    Refused {
        /// Peer address.
        addr: String,
        /// What the peer said.
        reason: String,
    },
    /// A message could not be encoded or decoded.
    #[error("bad fabric message: {0}")]
    Codec(String),
}
