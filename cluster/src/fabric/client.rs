//! Calling other nodes: one lazily connected gRPC channel per peer address.

use super::auth::{token, AUTH_HEADER, NODE_HEADER};
use super::pb::fabric_client::FabricClient;
use super::pb::{RaftCall, ShardCall, ShardRef};
use super::FabricError;
use crate::raft::{MetaCommand, MetaReply};
use crate::ClusterError;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Clients to every peer this node talks to.
pub struct FabricClients {
    node: String,
    tls: Option<super::FabricTls>,
    secret: RwLock<String>,
    channels: Mutex<HashMap<String, FabricClient<Channel>>>,
}

impl FabricClients {
    /// Clients that identify as `node` and prove the cluster `secret`, over TLS
    /// when `tls` is given.
    pub fn new(node: &str, secret: &str, tls: Option<super::FabricTls>) -> Self {
        FabricClients {
            node: node.to_string(),
            tls,
            secret: RwLock::new(secret.to_string()),
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Changes the secret used from now on.
    pub fn set_secret(&self, secret: &str) {
        if let Ok(mut s) = self.secret.write() {
            *s = secret.to_string();
        }
    }

    fn client(&self, addr: &str) -> Result<FabricClient<Channel>, FabricError> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| FabricError::Codec("lock".into()))?;
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let unreachable = |e: tonic::transport::Error| FabricError::Unreachable {
            addr: addr.to_string(),
            reason: e.to_string(),
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint =
            Endpoint::from_shared(format!("{scheme}://{addr}")).map_err(unreachable)?;
        if let Some(tls) = &self.tls {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            endpoint = endpoint
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
                        .domain_name(host.to_string()),
                )
                .map_err(unreachable)?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        let client = FabricClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        channels.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        let secret = self.secret.read().map(|s| s.clone()).unwrap_or_default();
        if let Ok(v) = self.node.parse() {
            req.metadata_mut().insert(NODE_HEADER, v);
        }
        if let Ok(v) = token(&secret, &self.node).parse() {
            req.metadata_mut().insert(AUTH_HEADER, v);
        }
        req
    }

    /// A failed call's status as a fabric error.
    pub(crate) fn status_error(addr: &str, s: tonic::Status) -> FabricError {
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                FabricError::Unreachable {
                    addr: addr.to_string(),
                    reason: s.message().to_string(),
                }
            }
            _ => FabricError::Refused {
                addr: addr.to_string(),
                reason: s.message().to_string(),
            },
        }
    }

    /// Sends a Raft message of `kind` and returns the peer's encoded answer.
    pub async fn raft(
        &self,
        addr: &str,
        kind: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, FabricError> {
        let mut client = self.client(addr)?;
        let req = self.request(RaftCall {
            kind: kind.to_string(),
            payload,
        });
        let resp = client
            .raft(req)
            .await
            .map_err(|s| Self::status_error(addr, s))?;
        Ok(resp.into_inner().payload)
    }

    /// Asks the leader at `addr` to write a metadata command; returns its reply and
    /// the log index it was committed at.
    pub async fn forward_write(
        &self,
        addr: &str,
        cmd: &MetaCommand,
    ) -> Result<(MetaReply, u64), ClusterError> {
        let payload = serde_json::to_vec(cmd).map_err(|e| ClusterError::Meta(e.to_string()))?;
        let reply = self
            .raft(addr, "write", payload)
            .await
            .map_err(|e| ClusterError::Meta(e.to_string()))?;
        let result: Result<(MetaReply, u64), String> =
            serde_json::from_slice(&reply).map_err(|e| ClusterError::Meta(e.to_string()))?;
        result.map_err(ClusterError::Meta)
    }

    /// Runs one shard operation on the node at `addr`.
    pub async fn shard(
        &self,
        addr: &str,
        shard: ShardRef,
        op: Vec<u8>,
    ) -> Result<Vec<u8>, FabricError> {
        let mut client = self.client(addr)?;
        let req = self.request(ShardCall {
            op_version: super::OP_VERSION,
            shard: Some(shard),
            op,
        });
        let resp = client
            .shard(req)
            .await
            .map_err(|s| Self::status_error(addr, s))?;
        Ok(resp.into_inner().reply)
    }

    /// Runs one long shard read on the node at `addr`; its replies arrive as a
    /// stream, one per batch, paced by the reader (HTTP/2 flow control).
    pub async fn shard_stream(
        &self,
        addr: &str,
        shard: ShardRef,
        op: Vec<u8>,
    ) -> Result<tonic::Streaming<super::pb::ShardReply>, FabricError> {
        let mut client = self.client(addr)?;
        let req = self.request(ShardCall {
            op_version: super::OP_VERSION,
            shard: Some(shard),
            op,
        });
        let resp = client
            .shard_stream(req)
            .await
            .map_err(|s| Self::status_error(addr, s))?;
        Ok(resp.into_inner())
    }
}
