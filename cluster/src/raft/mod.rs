//! Cluster metadata kept in Raft (openraft): members and the shard map of every
//! database. Every node applies the same log, so every node agrees on where data
//! lives; creating or deleting a database is one Raft write.

// openraft's storage error type is large and fixed by its traits.
#![allow(clippy::result_large_err)]

mod log_store;
mod network;
mod state_machine;

pub use state_machine::{MetaCommand, MetaReply, MetaState};

use crate::fabric::client::FabricClients;
use crate::local_shards::LocalShards;
use crate::ClusterError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft, SnapshotPolicy};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, RwLock};

openraft::declare_raft_types!(
    /// Types of the metadata Raft group.
    pub TypeConfig:
        D = MetaCommand,
        R = MetaReply,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft instance of this node.
pub type MetaRaft = Raft<TypeConfig>;

/// How long a node that believes it leads waits for a quorum to confirm it (`/_up`).
const LEADERSHIP_CHECK: std::time::Duration = std::time::Duration::from_millis(1000);

/// A node's Raft id: derived from its name, so every node computes the same id.
pub fn node_id(name: &str) -> u64 {
    let h = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    u64::from_be_bytes(b) & 0x7fff_ffff_ffff_ffff
}

/// The cluster metadata of this node: the Raft group and the state it replicates.
pub struct Metadata {
    raft: MetaRaft,
    state: Arc<RwLock<MetaState>>,
    node: String,
    addr: String,
    http: Option<String>,
    clients: Arc<FabricClients>,
}

fn raft_err<E: std::fmt::Display>(e: E) -> ClusterError {
    ClusterError::Meta(e.to_string())
}

impl Metadata {
    /// Opens the Raft log and state in `data_dir` and starts the Raft node.
    /// `addr` is this node's fabric address (`host:port`).
    pub(crate) async fn open(
        data_dir: &Path,
        node: &str,
        addr: &str,
        http: Option<String>,
        shards: Arc<LocalShards>,
        clients: Arc<FabricClients>,
    ) -> Result<Metadata, ClusterError> {
        let db = Arc::new(redb::Database::create(data_dir.join("_raft.redb")).map_err(raft_err)?);
        let log = log_store::LogStore::open(db.clone())?;
        let state = Arc::new(RwLock::new(MetaState::default()));
        let sm =
            state_machine::StateMachine::open(db, state.clone(), shards, node.to_string()).await?;
        let config = Config {
            cluster_name: "chaise".into(),
            heartbeat_interval: 150,
            election_timeout_min: 600,
            election_timeout_max: 1200,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(500),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(raft_err)?);
        let network = network::Network {
            clients: clients.clone(),
        };
        let raft = Raft::new(node_id(node), config, network, log, sm)
            .await
            .map_err(raft_err)?;
        Ok(Metadata {
            raft,
            state,
            node: node.to_string(),
            addr: addr.to_string(),
            http,
            clients,
        })
    }

    /// The Raft handle (for the fabric server).
    pub fn raft(&self) -> &MetaRaft {
        &self.raft
    }

    /// The replicated state.
    pub fn state(&self) -> std::sync::RwLockReadGuard<'_, MetaState> {
        match self.state.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Whether this node belongs to a Raft group yet.
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// Makes this node a cluster of one, if it is not in a cluster yet.
    pub async fn ensure_initialized(&self) -> Result<(), ClusterError> {
        if self.is_initialized().await {
            return Ok(());
        }
        let mut members = BTreeMap::new();
        members.insert(node_id(&self.node), BasicNode::new(self.member_addr()));
        match self.raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(raft_err(e)),
        }
        self.wait_for_leader().await
    }

    /// The address recorded for this node.
    fn member_addr(&self) -> String {
        Member {
            name: self.node.clone(),
            fabric: self.addr.clone(),
            http: self.http.clone(),
        }
        .encode()
    }

    async fn wait_for_leader(&self) -> Result<(), ClusterError> {
        let mut m = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if m.borrow().current_leader.is_some() {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, m.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(ClusterError::Meta("no Raft leader".into())),
            }
        }
    }

    /// Writes a command through the Raft log, forwarding to the leader when this
    /// node is a follower. Returns once the command is committed and applied here.
    pub async fn write(&self, cmd: MetaCommand) -> Result<MetaReply, ClusterError> {
        self.ensure_initialized().await?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.raft.client_write(cmd.clone()).await {
                Ok(resp) => {
                    self.wait_applied(resp.log_id.index).await;
                    return Ok(resp.data);
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    let Some(node) = f.leader_node else {
                        if attempts > 50 {
                            return Err(ClusterError::Meta("no Raft leader".into()));
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    };
                    let leader = Member::parse(&node.addr);
                    let (reply, index) = self.clients.forward_write(&leader.fabric, &cmd).await?;
                    self.wait_applied(index).await;
                    return Ok(reply);
                }
                Err(e) => return Err(raft_err(e)),
            }
        }
    }

    /// Waits until the local state machine has applied log `index` (bounded).
    async fn wait_applied(&self, index: u64) {
        let mut m = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if m.borrow().last_applied.is_some_and(|l| l.index >= index) {
                return;
            }
            if tokio::time::timeout_at(deadline, m.changed())
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Adds a node as a voting member: first as a learner that catches up, then as
    /// a voter.
    pub async fn add_member(&self, member: &Member) -> Result<(), ClusterError> {
        self.ensure_initialized().await?;
        self.change_members(MembershipChange::Add(member.encode()))
            .await
    }

    /// Removes a member from the Raft group.
    pub async fn remove_member(&self, name: &str) -> Result<(), ClusterError> {
        self.change_members(MembershipChange::Remove(name.to_string()))
            .await
    }

    /// Applies a membership change here if this node leads, else on the leader.
    async fn change_members(&self, change: MembershipChange) -> Result<(), ClusterError> {
        match change_membership(&self.raft, &change).await {
            Err(MembershipError::NotLeader(Some(leader))) => {
                let payload = serde_json::to_vec(&change).map_err(raft_err)?;
                let reply = self
                    .clients
                    .raft(&Member::parse(&leader).fabric, "members", payload)
                    .await
                    .map_err(raft_err)?;
                let result: Result<(), String> =
                    serde_json::from_slice(&reply).map_err(raft_err)?;
                result.map_err(ClusterError::Meta)
            }
            Err(MembershipError::NotLeader(None)) => {
                Err(ClusterError::Meta("no Raft leader".into()))
            }
            Err(MembershipError::NotMember) => {
                Err(ClusterError::BadRequest("not a cluster member".into()))
            }
            Err(MembershipError::Failed(e)) => Err(ClusterError::Meta(e)),
            Ok(()) => Ok(()),
        }
    }

    /// Members of the cluster, sorted by name (just this node before it joins one).
    pub fn members(&self) -> Vec<Member> {
        let m = self.raft.metrics();
        let metrics = m.borrow();
        let mut out: Vec<Member> = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(_, n)| Member::parse(&n.addr))
            .collect();
        if out.is_empty() {
            out.push(Member::parse(&self.member_addr()));
        }
        out.sort();
        out
    }

    /// Whether this node has caught up with the cluster metadata. A member of a
    /// cluster of several nodes is seeding while it knows no Raft leader or has log
    /// entries it has not applied yet; it then answers `/_up` with 404, as a
    /// CouchDB node pulling `_nodes`/`_dbs` from its seeds does.
    pub async fn readiness(&self) -> Readiness {
        let (members, leader_id, pending) = {
            let m = self.raft.metrics();
            let metrics = m.borrow();
            let members = metrics.membership_config.membership().nodes().count();
            let applied = metrics.last_applied.map_or(0, |l| l.index);
            let pending = metrics.last_log_index.unwrap_or(0).saturating_sub(applied);
            let leader = metrics.current_leader.and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| (id, Member::parse(&n.addr).name))
            });
            (members, leader, pending)
        };
        if members <= 1 {
            return Readiness::Ready;
        }
        // A leader cut off from its followers goes on believing it leads: it must
        // hear from a quorum now to count as one.
        let leader = match leader_id {
            Some((id, name)) if id == node_id(&self.node) => {
                let confirmed =
                    tokio::time::timeout(LEADERSHIP_CHECK, self.raft.ensure_linearizable()).await;
                matches!(confirmed, Ok(Ok(_))).then_some(name)
            }
            other => other.map(|(_, name)| name),
        };
        match leader {
            Some(_) if pending == 0 => Readiness::Ready,
            leader => Readiness::Seeding { leader, pending },
        }
    }

    /// This node's own HTTP address.
    pub fn own_http(&self) -> Option<String> {
        self.http.clone()
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// Whether a node may take traffic, as `/_up` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The node knows the leader and has applied every metadata entry it holds.
    Ready,
    /// The node is still catching up with the cluster metadata.
    Seeding {
        /// The leader it follows, if it knows one.
        leader: Option<String>,
        /// Metadata log entries received but not applied yet.
        pending: u64,
    },
}

/// A change of the voting members, as forwarded to the leader.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum MembershipChange {
    /// Add the member with this stored address (`name|fabric|http`).
    Add(String),
    /// Remove the member with this name.
    Remove(String),
}

/// Why a membership change did not happen here.
#[derive(Debug)]
pub enum MembershipError {
    /// This node does not lead; the leader's stored address, if known.
    NotLeader(Option<String>),
    /// The node to remove is not a member.
    NotMember,
    /// Raft refused.
    Failed(String),
}

/// Runs a membership change on this node's Raft (which must lead): a new member is
/// added as a learner that catches up, then promoted to voter.
pub async fn change_membership(
    raft: &MetaRaft,
    change: &MembershipChange,
) -> Result<(), MembershipError> {
    let not_leader = |e: RaftError<u64, ClientWriteError<u64, BasicNode>>| match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            MembershipError::NotLeader(f.leader_node.map(|n| n.addr))
        }
        other => MembershipError::Failed(other.to_string()),
    };
    let mut voters: BTreeSet<u64> = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    match change {
        MembershipChange::Add(addr) => {
            let id = node_id(&Member::parse(addr).name);
            raft.add_learner(id, BasicNode::new(addr.clone()), true)
                .await
                .map_err(not_leader)?;
            voters.insert(id);
        }
        MembershipChange::Remove(name) => {
            if !voters.remove(&node_id(name)) {
                return Err(MembershipError::NotMember);
            }
        }
    }
    raft.change_membership(voters, false)
        .await
        .map_err(not_leader)?;
    Ok(())
}

/// A cluster member as recorded in the Raft membership: node name, fabric address
/// and HTTP address, stored as `name|fabric|http` in the node's address field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    /// Node name, `name@host`.
    pub name: String,
    /// Where its fabric listens (`host:port`).
    pub fabric: String,
    /// Where its HTTP API listens (`host:port`), if known.
    pub http: Option<String>,
}

impl Member {
    /// Reads a stored member address.
    pub fn parse(addr: &str) -> Member {
        let mut parts = addr.splitn(3, '|');
        let name = parts.next().unwrap_or("").to_string();
        let fabric = parts.next().unwrap_or("").to_string();
        let http = parts.next().filter(|h| !h.is_empty()).map(str::to_string);
        Member { name, fabric, http }
    }

    /// The stored form.
    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}",
            self.name,
            self.fabric,
            self.http.as_deref().unwrap_or("")
        )
    }
}
