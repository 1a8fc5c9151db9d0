//! Calling other nodes: one lazily connected gRPC channel per peer address.
//! Small shard calls to a peer go through its queue: when several wait at once
//! (many concurrent requests), they travel as one batch, which saves most of the
//! per-call cost on both nodes; a lone call goes at once.

use super::auth::{token, AUTH_HEADER, NODE_HEADER};
use super::pb::fabric_client::FabricClient;
use super::pb::{RaftCall, ShardBatchCall, ShardCall, ShardRef};
use super::FabricError;
use crate::raft::{MetaCommand, MetaReply};
use crate::ClusterError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Clients to every peer this node talks to.
pub struct FabricClients {
    node: String,
    tls: Option<super::FabricTls>,
    secret: Arc<RwLock<String>>,
    channels: Mutex<HashMap<String, FabricClient<Channel>>>,
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Queued>>>,
}

/// A shard call waiting in a peer's queue, and where its reply goes.
type Queued = (ShardCall, oneshot::Sender<Result<Vec<u8>, FabricError>>);

/// Batches one peer may have in flight; calls arriving meanwhile queue up and go
/// in the next batch.
const IN_FLIGHT: usize = 2;

/// Most calls in one batch.
const BATCH_MAX: usize = 64;

/// Encoded operations larger than this (attachment pieces, big writes) are sent
/// alone, so they do not hold up the small calls.
const BATCH_OP_MAX: usize = 16 * 1024;

/// A request carrying the caller's node name and its proof of the cluster secret.
fn authed<T>(node: &str, secret: &RwLock<String>, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let secret = secret.read().map(|s| s.clone()).unwrap_or_default();
    if let Ok(v) = node.parse() {
        req.metadata_mut().insert(NODE_HEADER, v);
    }
    if let Ok(v) = token(&secret, node).parse() {
        req.metadata_mut().insert(AUTH_HEADER, v);
    }
    req
}

impl FabricClients {
    /// Clients that identify as `node` and prove the cluster `secret`, over TLS
    /// when `tls` is given.
    pub fn new(node: &str, secret: &str, tls: Option<super::FabricTls>) -> Self {
        FabricClients {
            node: node.to_string(),
            tls,
            secret: Arc::new(RwLock::new(secret.to_string())),
            channels: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
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
        authed(&self.node, &self.secret, msg)
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
        let call = ShardCall {
            op_version: super::OP_VERSION,
            shard: Some(shard),
            op,
        };
        if call.op.len() > BATCH_OP_MAX {
            let mut client = self.client(addr)?;
            return send_one(&mut client, addr, self.request(call)).await;
        }
        let (tx, rx) = oneshot::channel();
        self.queue(addr)?
            .send((call, tx))
            .map_err(|_| FabricError::Codec("peer queue closed".into()))?;
        rx.await
            .map_err(|_| FabricError::Codec("peer queue dropped a call".into()))?
    }

    /// The queue of small shard calls to `addr`, started on first use.
    fn queue(&self, addr: &str) -> Result<mpsc::UnboundedSender<Queued>, FabricError> {
        let mut queues = self
            .queues
            .lock()
            .map_err(|_| FabricError::Codec("lock".into()))?;
        if let Some(q) = queues.get(addr).filter(|q| !q.is_closed()) {
            return Ok(q.clone());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = PeerSender {
            client: self.client(addr)?,
            addr: addr.to_string(),
            node: self.node.clone(),
            secret: self.secret.clone(),
        };
        tokio::spawn(sender.run(rx));
        queues.insert(addr.to_string(), tx.clone());
        Ok(tx)
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

/// Sends one shard call and returns its encoded reply.
async fn send_one(
    client: &mut FabricClient<Channel>,
    addr: &str,
    req: tonic::Request<ShardCall>,
) -> Result<Vec<u8>, FabricError> {
    let resp = client
        .shard(req)
        .await
        .map_err(|s| FabricClients::status_error(addr, s))?;
    Ok(resp.into_inner().reply)
}

/// What the queue of one peer sends with.
struct PeerSender {
    client: FabricClient<Channel>,
    addr: String,
    node: String,
    secret: Arc<RwLock<String>>,
}

impl PeerSender {
    /// Sends queued calls until every sender is gone: whatever waits when a slot
    /// frees up goes as one batch.
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Queued>) {
        let me = Arc::new(self);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        while let Some(first) = rx.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(q) => batch.push(q),
                    Err(_) => break,
                }
            }
            let me = me.clone();
            tokio::spawn(async move {
                me.send(batch).await;
                drop(slot);
            });
        }
    }

    /// Sends a batch (a lone call as itself) and hands out the replies.
    async fn send(&self, mut batch: Vec<Queued>) {
        let mut client = self.client.clone();
        if batch.len() == 1 {
            if let Some((call, reply)) = batch.pop() {
                let req = authed(&self.node, &self.secret, call);
                let _ = reply.send(send_one(&mut client, &self.addr, req).await);
            }
            return;
        }
        let (calls, replies): (Vec<ShardCall>, Vec<_>) = batch.into_iter().unzip();
        let n = calls.len();
        let req = authed(&self.node, &self.secret, ShardBatchCall { calls });
        match client.shard_batch(req).await {
            Ok(resp) => {
                let got = resp.into_inner().replies;
                if got.len() != n {
                    let e = FabricError::Codec(format!("{} replies to {n} calls", got.len()));
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                    return;
                }
                for (reply, r) in replies.into_iter().zip(got) {
                    let _ = reply.send(Ok(r.reply));
                }
            }
            Err(status) => {
                let e = FabricClients::status_error(&self.addr, status);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
