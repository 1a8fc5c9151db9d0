//! Answering other nodes: the fabric gRPC service.

use super::auth::{verify, AUTH_HEADER, NODE_HEADER};
use super::pb::fabric_server::{Fabric, FabricServer};
use super::pb::{RaftCall, RaftReply, ShardBatchCall, ShardBatchReply, ShardCall, ShardReply};
use crate::raft::{MetaCommand, MetaRaft};
use openraft::error::{ClientWriteError, RaftError};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use tonic::{Request, Response, Status};

/// Runs shard operations sent by other nodes.
#[tonic::async_trait]
pub trait ShardHandler: Send + Sync + 'static {
    /// Executes one encoded shard operation and returns the encoded reply.
    async fn handle(&self, call: ShardCall) -> Result<Vec<u8>, String>;

    /// Runs one encoded long read (changes, all_docs) and returns its encoded
    /// replies as they are produced, one per batch.
    async fn handle_stream(
        &self,
        call: ShardCall,
    ) -> Result<tokio::sync::mpsc::Receiver<Vec<u8>>, String>;

    /// This node's encoded status, for a node that wants to add it.
    async fn status(&self) -> Vec<u8>;
}

/// The fabric service of this node.
pub struct FabricService {
    raft: MetaRaft,
    secret: Arc<RwLock<String>>,
    shards: Arc<dyn ShardHandler>,
}

impl FabricService {
    /// A service answering with this node's Raft and shards.
    pub fn new(raft: MetaRaft, secret: Arc<RwLock<String>>, shards: Arc<dyn ShardHandler>) -> Self {
        FabricService {
            raft,
            secret,
            shards,
        }
    }

    fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let md = req.metadata();
        let node = md
            .get(NODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let proof = md
            .get(AUTH_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let secret = self.secret.read().map(|s| s.clone()).unwrap_or_default();
        if verify(&secret, node, proof) {
            Ok(())
        } else {
            tracing::warn!(caller = node, remote = ?req.remote_addr(), "refused fabric call without the cluster secret");
            Err(Status::unauthenticated("cluster secret required"))
        }
    }

    async fn raft_call(&self, kind: &str, payload: &[u8]) -> Result<Vec<u8>, Status> {
        let bad = |e: serde_json::Error| Status::invalid_argument(e.to_string());
        let out = match kind {
            "append" => serde_json::to_vec(
                &self
                    .raft
                    .append_entries(serde_json::from_slice(payload).map_err(bad)?)
                    .await,
            ),
            "vote" => serde_json::to_vec(
                &self
                    .raft
                    .vote(serde_json::from_slice(payload).map_err(bad)?)
                    .await,
            ),
            "snapshot" => serde_json::to_vec(
                &self
                    .raft
                    .install_snapshot(serde_json::from_slice(payload).map_err(bad)?)
                    .await,
            ),
            "write" => {
                let cmd: MetaCommand = serde_json::from_slice(payload).map_err(bad)?;
                let result: Result<(crate::raft::MetaReply, u64), String> =
                    match self.raft.client_write(cmd).await {
                        Ok(r) => Ok((r.data, r.log_id.index)),
                        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                            Err("not the leader".to_string())
                        }
                        Err(e) => Err(e.to_string()),
                    };
                serde_json::to_vec(&result)
            }
            "members" => {
                let change: crate::raft::MembershipChange =
                    serde_json::from_slice(payload).map_err(bad)?;
                let result: Result<(), String> =
                    crate::raft::change_membership(&self.raft, &change)
                        .await
                        .map_err(|e| format!("{e:?}"));
                serde_json::to_vec(&result)
            }
            "ping" => Ok(Vec::new()),
            "status" => Ok(self.shards.status().await),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown raft call {other}"
                )))
            }
        };
        out.map_err(|e| Status::internal(e.to_string()))
    }
}

/// Refuses an operation encoded by another version of the shard operations.
fn same_version(call: &ShardCall) -> Result<(), Status> {
    if call.op_version == super::OP_VERSION {
        Ok(())
    } else {
        Err(Status::failed_precondition(
            "fabric operation version mismatch",
        ))
    }
}

type ReplyStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<ShardReply, Status>> + Send>>;

#[tonic::async_trait]
impl Fabric for FabricService {
    async fn shard(&self, req: Request<ShardCall>) -> Result<Response<ShardReply>, Status> {
        self.check(&req)?;
        let call = req.into_inner();
        same_version(&call)?;
        let reply = self.shards.handle(call).await.map_err(Status::internal)?;
        Ok(Response::new(ShardReply { reply }))
    }

    async fn shard_batch(
        &self,
        req: Request<ShardBatchCall>,
    ) -> Result<Response<ShardBatchReply>, Status> {
        self.check(&req)?;
        let calls = req.into_inner().calls;
        calls.iter().try_for_each(same_version)?;
        // Concurrently: writes to one shard then share a commit.
        let replies = futures_util::future::join_all(calls.into_iter().map(|call| async {
            let reply = self.shards.handle(call).await.map_err(Status::internal)?;
            Ok::<_, Status>(ShardReply { reply })
        }))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, Status>>()?;
        Ok(Response::new(ShardBatchReply { replies }))
    }

    type ShardStreamStream = ReplyStream;

    async fn shard_stream(&self, req: Request<ShardCall>) -> Result<Response<ReplyStream>, Status> {
        self.check(&req)?;
        let call = req.into_inner();
        same_version(&call)?;
        let replies = self
            .shards
            .handle_stream(call)
            .await
            .map_err(Status::internal)?;
        let stream = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(replies),
            |reply| Ok(ShardReply { reply }),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn raft(&self, req: Request<RaftCall>) -> Result<Response<RaftReply>, Status> {
        self.check(&req)?;
        let call = req.into_inner();
        let payload = self.raft_call(&call.kind, &call.payload).await?;
        Ok(Response::new(RaftReply { payload }))
    }
}

/// Serves the fabric on `addr` (over mutual TLS when `tls` is given) until
/// `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    service: FabricService,
    tls: Option<super::FabricTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(
            tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(
                    &tls.cert_pem,
                    &tls.key_pem,
                ))
                .client_ca_root(tonic::transport::Certificate::from_pem(&tls.ca_pem)),
        )?;
    }
    builder
        .tcp_nodelay(true)
        .add_service(
            FabricServer::new(service)
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
        )
        .serve_with_shutdown(addr, shutdown)
        .await
}
