//! Cluster metadata: a key/value store replicated by Raft (raft-rs) on a
//! small, self-electing subset of voters.
//!
//! - [`machine`]: the replicated state machine (key/value store, voter names,
//!   cluster identity) and its limits.
//! - [`storage`]: the Raft log, hard state and snapshots behind
//!   [`storage::RaftDisk`] (memory in the simulator, redb in the agent).
//! - [`policy`]: who bootstraps, who becomes a voter and who replaces whom.
//!
//! - `engine`: the metadata engine (`MetaCore`), a component the
//!   node owns and drives: Raft, bootstrap, the voter set, requests and the
//!   stale copies (the node's side of it is `node/node/meta.rs`).

pub(crate) mod engine;
pub mod machine;
pub mod placement;
pub mod policy;
pub mod storage;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hash::{FNV_OFFSET, fnv1a};
use super::identity::NodeId;

pub use machine::{LogEntry, Machine, MetaLimits, prefix_of};
pub use placement::{Role, Table};
pub use storage::{DiskError, DiskImage, MemDisk, RaftDisk};

/// A Raft peer id: a 64-bit hash of the [`NodeId`] (never 0, which raft-rs
/// reserves).
pub type RaftId = u64;

/// The Raft id of a node: FNV-1a 64 of its `NodeId`, 0 mapped to 1.
pub fn raft_id(id: &NodeId) -> RaftId {
    fnv1a(FNV_OFFSET, id.as_str().as_bytes()).max(1)
}

/// Metadata settings of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaConfig {
    /// Whether this node may become a voter (`voter = false` opts out; the
    /// node still reads, writes through a voter and holds a stale copy).
    pub voter: bool,
    /// Voters the leader aims for: 3 (5 tolerates two failures).
    pub target_voters: usize,
    /// Live eligible members a node must see before it bootstraps the
    /// cluster. 3.
    pub bootstrap_expect: usize,
    /// How long the view of live members must stay unchanged before a
    /// bootstrap. 2 s.
    pub bootstrap_settle: Duration,
    /// A member held Down longer than this no longer blocks a bootstrap
    /// (nor does a join address that never answered). 60 s.
    pub bootstrap_down_grace: Duration,
    /// Raft tick. 100 ms: elections after 10-20 ticks (1-2 s), heartbeats
    /// every 2 ticks.
    pub tick: Duration,
    /// Ticks before a follower campaigns (randomised per election in
    /// `[election_ticks, 2 * election_ticks)` from the node's seed). 10.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats. 2.
    pub heartbeat_ticks: usize,
    /// How long a metadata request may take before it fails with
    /// [`MetaError::Timeout`]. 5 s.
    pub request_timeout: Duration,
    /// Limits of the replicated store.
    pub limits: MetaLimits,
    /// Partitions a new cluster gets (fixed at bootstrap). 256.
    pub partition_count: u32,
    /// Slots per partition, primary included (fixed at bootstrap). 3.
    pub replication_factor: u32,
    /// Whether this node may own partitions (`owner = false` opts out; it
    /// is tagged `owner=false` so the leader sees it).
    pub owner: bool,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            voter: true,
            target_voters: 3,
            bootstrap_expect: 3,
            bootstrap_settle: Duration::from_secs(2),
            bootstrap_down_grace: Duration::from_secs(60),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            request_timeout: Duration::from_secs(5),
            limits: MetaLimits::default(),
            partition_count: placement::DEFAULT_PARTITIONS,
            replication_factor: placement::DEFAULT_REPLICATION,
            owner: true,
        }
    }
}

/// A metadata operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaOp {
    /// Read one key.
    Get {
        /// Key.
        key: String,
    },
    /// Read every key starting with `prefix`, in key order.
    List {
        /// Prefix (empty: everything).
        prefix: String,
    },
    /// Write `key = value`.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
    },
    /// Compare-and-set: write `value` (or delete, when `None`) only if the
    /// key's current value is `expect` (`None`: absent).
    Cas {
        /// Key.
        key: String,
        /// Expected current value.
        expect: Option<Vec<u8>>,
        /// New value; `None` deletes.
        value: Option<Vec<u8>>,
    },
    /// Delete a key.
    Delete {
        /// Key.
        key: String,
    },
}

impl MetaOp {
    /// Whether the operation only reads.
    pub fn is_read(&self) -> bool {
        matches!(self, MetaOp::Get { .. } | MetaOp::List { .. })
    }

    /// The key (the prefix for `List`).
    pub fn key(&self) -> &str {
        match self {
            MetaOp::Get { key }
            | MetaOp::Put { key, .. }
            | MetaOp::Cas { key, .. }
            | MetaOp::Delete { key } => key,
            MetaOp::List { prefix } => prefix,
        }
    }
}

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ReadMode {
    /// Linearizable: confirmed with the leader (Raft ReadIndex).
    #[default]
    Linearizable,
    /// From this node's local copy, which may lag the leader.
    Stale,
}

/// The answer to a [`MetaOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaReply {
    /// A `Get`.
    Value {
        /// The value, `None` when absent.
        value: Option<Vec<u8>>,
        /// Applied index the read reflects.
        index: u64,
    },
    /// A `List`.
    List {
        /// Matching keys and values.
        entries: Vec<(String, Vec<u8>)>,
        /// Applied index the read reflects.
        index: u64,
    },
    /// A committed `Put`.
    Written {
        /// Log index of the write.
        index: u64,
    },
    /// A committed `Cas`.
    Cas {
        /// Whether the value matched and was replaced.
        swapped: bool,
        /// The value after the operation.
        current: Option<Vec<u8>>,
        /// Log index.
        index: u64,
    },
    /// A committed `Delete`.
    Deleted {
        /// Whether the key existed.
        existed: bool,
        /// Log index.
        index: u64,
    },
}

/// Why a metadata request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetaError {
    /// No metadata cluster has formed yet: bootstrap waits for `expect`
    /// live members that may vote (`bootstrap_expect`); this node sees
    /// `seen` (itself included).
    #[error(
        "no metadata cluster has formed yet: it forms once {expect} live members that may vote see each other, and this node sees {seen}; start more agents, or give every agent --bootstrap-expect N with N the number that will run (1 for a lone node)"
    )]
    NoCluster {
        /// Live eligible members this node sees, itself included.
        seen: usize,
        /// Members the bootstrap waits for.
        expect: usize,
    },
    /// No leader could be reached: the voters have lost quorum or are
    /// electing one.
    #[error("no leader reachable: {0}")]
    NoLeader(String),
    /// The request did not finish in time. A write may or may not have been
    /// applied.
    #[error("timed out after {ms} ms (a write may or may not have been applied)")]
    Timeout {
        /// The timeout.
        ms: u64,
    },
    /// The request is invalid (limits, empty key).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The key is under the prefix roster keeps for itself
    /// ([`RESERVED_META_PREFIX`]).
    #[error("key {0:?} is reserved: keys under \"roster/\" are written by roster itself")]
    Reserved(String),
    /// Too many requests in flight on this node.
    #[error("too many metadata requests in flight ({0})")]
    Busy(usize),
    /// The voter serving the request stopped being one while it was in
    /// flight. A write may or may not have been applied.
    #[error("interrupted: {0} (a write may or may not have been applied)")]
    Interrupted(String),
    /// The node has left or is stopping.
    #[error("node is not running")]
    Stopped,
    /// The write would take the key's prefix over its quota
    /// ([`MetaLimits::max_prefix_bytes`], [`MetaLimits::max_prefix_keys`]).
    #[error("quota exceeded: {0}")]
    Quota(String),
    /// The store is full for client writes.
    #[error("store full: {0}")]
    StoreFull(String),
}

impl MetaError {
    /// Whether another voter may succeed where this attempt failed (nothing
    /// was proposed).
    pub(crate) fn retryable(&self) -> bool {
        matches!(self, MetaError::NoLeader(_))
    }
}

/// A node's role in the metadata cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftRole {
    /// Not a voter: holds a copy learned by gossip.
    NonVoter,
    /// A voter following a leader (or without one).
    Follower,
    /// A voter campaigning.
    Candidate,
    /// A voter confirming it could win before campaigning.
    PreCandidate,
    /// The leader.
    Leader,
}

impl RaftRole {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            RaftRole::NonVoter => "non-voter",
            RaftRole::Follower => "follower",
            RaftRole::Candidate => "candidate",
            RaftRole::PreCandidate => "pre-candidate",
            RaftRole::Leader => "leader",
        }
    }
}

/// The metadata cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaStatus {
    /// Cluster id (hex), `None` before one formed.
    pub cluster: Option<String>,
    /// This node's role.
    pub role: RaftRole,
    /// Current term (this node's, or the newest advertised for a
    /// non-voter).
    pub term: u64,
    /// The leader, when known.
    pub leader: Option<NodeId>,
    /// The voters, by name.
    pub voters: Vec<NodeId>,
    /// Highest committed index known here.
    pub commit_index: u64,
    /// Index of the local copy.
    pub applied_index: u64,
    /// Whether a leader is known and heard from; `false` means writes and
    /// linearizable reads fail until quorum returns.
    pub quorum: bool,
}

/// What other members learn from a voter's gossip (its state key
/// [`ADVERT_KEY`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advert {
    /// Cluster id.
    pub cluster: u64,
    /// The voter's term.
    pub term: u64,
    /// The leader it follows.
    pub leader: Option<NodeId>,
    /// Its applied index.
    pub applied: u64,
    /// Whether it is a voter (a removed voter advertises `false` once).
    pub voter: bool,
    /// The voters as of `applied` (empty when they did not fit).
    #[serde(default)]
    pub voters: Vec<NodeId>,
}

/// The state key under which voters advertise the cluster.
pub const ADVERT_KEY: &str = "roster:raft";

/// Metadata keys under this prefix are roster's own: a client write is
/// refused ([`MetaError::Reserved`]).
pub const RESERVED_META_PREFIX: &str = "roster/";

/// Revoked certificates: one metadata key per revoked NodeId under this
/// prefix. Every node refuses those NodeIds at the TLS handshake.
pub const REVOKED_PREFIX: &str = "roster/revoked/";

/// Voters an operator removed by hand (`roster voters remove`): one key per
/// NodeId under this prefix, its value the generation of the member as it
/// was when it was removed. The leader then removes that voter once gossip
/// holds it Down or Left, even below the target number of voters.
pub const REMOVE_VOTER_PREFIX: &str = "roster/voters/remove/";

impl Advert {
    /// JSON text for the state store.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses an advert; `None` when malformed.
    pub fn decode(b: &[u8]) -> Option<Self> {
        serde_json::from_slice(b).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_ids_are_stable_and_nonzero() {
        let a = NodeId::new("n1").unwrap();
        assert_eq!(raft_id(&a), raft_id(&NodeId::new("n1").unwrap()));
        assert_ne!(raft_id(&a), raft_id(&NodeId::new("n2").unwrap()));
        assert_ne!(raft_id(&a), 0);
    }

    #[test]
    fn adverts_round_trip_and_bad_ones_are_none() {
        let a = Advert {
            cluster: 7,
            term: 3,
            leader: Some(NodeId::new("n1").unwrap()),
            applied: 12,
            voter: true,
            voters: vec![NodeId::new("n1").unwrap()],
        };
        assert_eq!(Advert::decode(&a.encode()), Some(a));
        assert_eq!(Advert::decode(b"{"), None);
    }
}
