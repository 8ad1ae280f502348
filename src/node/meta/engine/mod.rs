//! The metadata engine: drives raft-rs from the node's inputs (sans-IO),
//! bootstraps a cluster with no seed, keeps the voter set healthy, serves
//! and forwards requests, and keeps a stale copy on every member.
//!
//! - Voters run Raft; every change goes through [`RaftStore`] to the disk
//!   before the messages that depend on it are queued.
//! - Non-voters forward requests to a voter (the advertised leader first)
//!   and keep a copy of the store: voters advertise their applied index in
//!   gossip (state key [`ADVERT_KEY`]); a member behind pulls the committed
//!   entries (or a snapshot) from one.
//! - Bootstrap: the lowest `NodeId` of a settled, clean view asks the other
//!   initial voters to agree; all must grant within two seconds, and a
//!   grant bars every other candidate for 10 s. It then starts a one-voter
//!   cluster and adds the others one at a time.
//! - Election timeouts come from the node's seeded RNG (raft-rs' own range
//!   is pinned to a single value and overridden after every role change).
//!
//! [`MetaCore`] is a component of the node, driven like the node is: each
//! input (a Raft or metadata message, a tick, a client request) is a method
//! call that takes a [`Host`] lent by the node for that call. The host gives
//! the engine a read-only [`View`] of the node (its identity, its listing of
//! members, the gossiped state, whether it has joined), the node's clock,
//! timers and outgoing queue, its seeded RNG and its event queue; what the
//! engine asks of the node after the call (write this node's advert, let
//! the membership engine catch up) it leaves in the host. The engine reads
//! and writes nothing else of the node: the node's side is
//! `node/node/meta.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry,
    EntryType, Message as RaftMessage,
};
use raft::{RawNode, StateRole};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::node::identity::{Identity, NodeId};
use crate::node::meta::machine::{Conf, ConfNames, LogEntry, Machine};
use crate::node::meta::placement::{self, Owner, Role, Table};
use crate::node::meta::policy::{self, Candidate, Voter, VoterChange};
use crate::node::meta::storage::{DiskError, RaftDisk, RaftStore, decode_pb, encode_pb};
use crate::node::meta::{
    ADVERT_KEY, Advert, MetaConfig, MetaError, MetaOp, MetaReply, MetaStatus, RaftId, RaftRole,
    ReadMode, raft_id,
};
use crate::node::swim::TimerKind;
use crate::node::swim::{Io, SharedRef};
use crate::node::wire::{
    BootstrapAsk, BootstrapGrant, Message, MetaPull, MetaPush, MetaRequest, MetaResponse,
    PushedEntry, RaftMsg,
};
use crate::node::{Event, MemberState, Members};

mod bootstrap;
mod consensus;
mod copies;
mod requests;
mod voters;

/// How long a bootstrap candidate waits for every grant.
const ASK_WINDOW: Duration = Duration::from_secs(2);
/// How long a grant bars other candidates. The candidate bootstraps only
/// within [`ASK_WINDOW`] of asking, so a grant older than that can no longer
/// be used; the rest of the time lets the new cluster's advert reach this
/// member by gossip before it would grant anyone else.
const GRANT_TTL: Duration = Duration::from_secs(10);
/// Pull answers waited for before asking another voter.
const PULL_TIMEOUT: Duration = Duration::from_secs(1);
/// Shortest time between two adverts of the applied index.
const ADVERT_EVERY: Duration = Duration::from_millis(200);
/// Most client requests in flight per node.
const MAX_IN_FLIGHT: usize = 4096;
/// How long a leader waits for a proposed placement to apply before it
/// proposes again.
const PLACEMENT_RETRY: Duration = Duration::from_secs(3);
/// How long a voter goes without a leader before it checks whether it was
/// removed from the voters while cut off.
const ZOMBIE_AFTER: Duration = Duration::from_secs(3);
/// Bytes of entries per pull answer.
const PUSH_BYTES: usize = 1 << 20;

/// Identifies a proposal or read in the log / ReadIndex context.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProposalCtx {
    proposer: NodeId,
    token: u64,
}

/// A request this node's client made.
#[derive(Debug)]
struct Pending {
    op: MetaOp,
    mode: ReadMode,
    deadline: Duration,
    retry_at: Option<Duration>,
    last_error: Option<MetaError>,
}

/// A request this voter is serving (for its own client or a forwarder).
#[derive(Debug)]
struct Serving {
    origin: Identity,
    req: u64,
    op: MetaOp,
    deadline: Duration,
    /// For reads: the index to wait for, once ReadIndex answered.
    read_at: Option<u64>,
}

#[derive(Debug)]
struct Asking {
    cluster: u64,
    voters: Vec<NodeId>,
    granted: BTreeSet<NodeId>,
    deadline: Duration,
}

/// Counters of the metadata engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaCounters {
    /// Times this node saw the leader change.
    pub leader_changes: u64,
    /// Writes proposed by this node.
    pub proposals: u64,
    /// Requests that failed (any error).
    pub failed: u64,
    /// Raft messages refused (another cluster, malformed, not a voter).
    pub raft_refused: u64,
    /// Pulls sent by this member to catch up its copy.
    pub pulls: u64,
    /// Raft storage failures.
    pub disk_errors: u64,
    /// Vote requests not answered while this voter, started with an empty
    /// Raft log, was catching up with the leader.
    pub votes_withheld: u64,
}

/// A voter that started with an empty Raft log grants no vote until it
/// holds everything the leader had committed when it first heard from it,
/// if it was a voter before (its peers hold its advert from an earlier life
/// saying so) or cannot tell yet (no push-pull since it started). A voter
/// that lost its log must not count towards a quorum for entries it no
/// longer holds: with its vote, a candidate lacking committed entries could
/// win. A voter that never was one acknowledged nothing and votes at once
/// (else a two-voter configuration whose new voter was cut off before it
/// heard from the leader could never elect one).
#[derive(Debug, Clone, Copy, Default)]
struct CatchUp {
    /// An append or snapshot from a leader arrived.
    heard: bool,
    /// The highest commit index (or snapshot index) a leader told.
    needed: u64,
}

/// What the metadata engine reads of the node it runs in: the node's
/// identity, its listing of members, the gossiped state, and how far it
/// has joined.
pub(crate) struct View<'a> {
    pub(crate) identity: &'a Identity,
    pub(crate) shared: &'a SharedRef,
    pub(crate) members: Members<'a>,
    pub(crate) left: bool,
    pub(crate) joined: bool,
    pub(crate) seeds: &'a [SocketAddr],
    pub(crate) answered_seeds: &'a [SocketAddr],
    pub(crate) max_value_bytes: usize,
}

/// What one call into the metadata engine works with: the [`View`] of the
/// node, the node's clock, timers and outgoing messages (`io`), its seeded
/// RNG and its event queue; and what the node does once the call returns
/// (write this node's advert, let the membership engine catch up).
pub(crate) struct Host<'a> {
    pub(crate) view: View<'a>,
    pub(crate) io: &'a mut Io,
    pub(crate) rng: &'a mut rand::rngs::Xoshiro256PlusPlus,
    pub(crate) events: &'a mut VecDeque<Event>,
    /// This node's advert to write to its gossiped state.
    pub(crate) advert: Option<Vec<u8>>,
    /// Whether the node runs its after-call work (queued gossip, events).
    pub(crate) after_swim: bool,
}

impl<'a> std::ops::Deref for Host<'a> {
    type Target = View<'a>;

    fn deref(&self) -> &View<'a> {
        &self.view
    }
}

/// Per-node state of the metadata engine.
pub(crate) struct MetaCore {
    pub(crate) cfg: MetaConfig,
    raw: Option<RawNode<RaftStore>>,
    /// The disk while this node is not a voter.
    disk: Option<Box<dyn RaftDisk>>,
    /// Set while a voter that started empty catches up (see [`CatchUp`]).
    catching_up: Option<CatchUp>,
    /// Voters this leader handed a snapshot to since the last `Ready` was
    /// advanced: reported to raft-rs as sent (see `after_raft`).
    snapshots_sent: Vec<RaftId>,
    /// The copy of a non-voter.
    copy: Machine,
    cluster: u64,
    logger: slog::Logger,
    ticks: u64,
    requests: BTreeMap<u64, Pending>,
    next_req: u64,
    serving: BTreeMap<u64, Serving>,
    next_token: u64,
    results: VecDeque<(u64, Result<MetaReply, MetaError>)>,
    last_role: Option<(StateRole, u64)>,
    last_leader: u64,
    grant: Option<(u64, NodeId, Duration)>,
    asking: Option<Asking>,
    /// Order-independent fingerprint of the live set last seen.
    alive_view: u64,
    alive_changed: Duration,
    /// What the bootstrap last read from the listing, with the listing's
    /// version (native engine): read again only once the listing changed.
    listed: Option<(u64, bootstrap::Listed)>,
    started: Duration,
    pull_deadline: Option<Duration>,
    advert_dirty: bool,
    advert_urgent: bool,
    last_advert: Option<Duration>,
    preferred: Vec<NodeId>,
    /// When this leader last proposed a placement not yet applied.
    placement_proposed: Option<Duration>,
    /// When this leader last proposed deleting a voter-removal request
    /// that has been carried out.
    removal_cleanup_proposed: Option<Duration>,
    /// Since when this voter has had no leader.
    leaderless_since: Option<Duration>,
    /// The cluster id this node proposes when it is the bootstrap candidate.
    my_cluster: u64,
    /// Other members' adverts, decoded.
    adverts: BTreeMap<NodeId, Advert>,
    /// Senders of Raft messages, by Raft id.
    peers: BTreeMap<RaftId, NodeId>,
    pub(crate) counters: MetaCounters,
}

/// Bridges raft-rs' slog records to `tracing` (target `roster::raft`).
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, r: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match r.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "roster::raft", "{}", r.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "roster::raft", "{}", r.msg()),
            slog::Level::Info => tracing::debug!(target: "roster::raft", "{}", r.msg()),
            _ => tracing::trace!(target: "roster::raft", "{}", r.msg()),
        }
        Ok(())
    }
}

impl MetaCore {
    pub(crate) fn new(cfg: MetaConfig, disk: Box<dyn RaftDisk>, now: Duration) -> Self {
        Self {
            cfg,
            raw: None,
            disk: Some(disk),
            catching_up: None,
            snapshots_sent: Vec::new(),
            copy: Machine::default(),
            cluster: 0,
            logger: slog::Logger::root(TracingDrain, slog::o!()),
            ticks: 0,
            requests: BTreeMap::new(),
            next_req: 1,
            serving: BTreeMap::new(),
            next_token: 1,
            results: VecDeque::new(),
            last_role: None,
            last_leader: 0,
            grant: None,
            asking: None,
            alive_view: 0,
            alive_changed: now,
            listed: None,
            started: now,
            pull_deadline: None,
            advert_dirty: false,
            advert_urgent: false,
            last_advert: None,
            preferred: Vec::new(),
            peers: BTreeMap::new(),
            adverts: BTreeMap::new(),
            my_cluster: 0,
            leaderless_since: None,
            placement_proposed: None,
            removal_cleanup_proposed: None,
            counters: MetaCounters::default(),
        }
    }

    fn machine(&self) -> &Machine {
        match &self.raw {
            Some(r) => &r.store().machine,
            None => &self.copy,
        }
    }
}

fn conf_after(conf: &Conf, cc: &ConfChangeV2) -> Conf {
    let mut c = conf.clone();
    for ch in cc.get_changes() {
        let id = ch.node_id;
        c.voters.retain(|v| *v != id);
        c.learners.retain(|v| *v != id);
        match ch.get_change_type() {
            ConfChangeType::AddNode => c.voters.push(id),
            ConfChangeType::AddLearnerNode => c.learners.push(id),
            ConfChangeType::RemoveNode => {}
        }
    }
    c.voters.sort_unstable();
    c.voters_outgoing.clear();
    c
}

fn parse_conf_change(e_type: EntryType, data: &[u8]) -> Option<ConfChangeV2> {
    match e_type {
        EntryType::EntryConfChange => decode_pb::<ConfChange>(data).map(|c| {
            let mut single = ConfChangeSingle {
                node_id: c.node_id,
                ..Default::default()
            };
            single.set_change_type(c.get_change_type());
            let mut v2 = ConfChangeV2::default();
            v2.mut_changes().push(single);
            v2.context = c.context;
            v2
        }),
        EntryType::EntryConfChangeV2 => decode_pb::<ConfChangeV2>(data),
        EntryType::EntryNormal => None,
    }
}

impl MetaCore {
    /// Opens the Raft state saved on the disk, if any (a voter restarting).
    pub(crate) fn meta_start(&mut self, h: &mut Host<'_>) {
        let Some(disk) = self.disk.take() else {
            return;
        };
        match RaftStore::open(disk) {
            Ok((store, true)) => {
                self.cluster = store.machine.cluster;
                tracing::info!(
                    cluster = format!("{:016x}", store.machine.cluster),
                    snapshot_index = store.machine.applied,
                    last_index = raft::Storage::last_index(&store).unwrap_or(0),
                    commit = store.hard_state().commit,
                    "loaded raft state from disk"
                );
                self.start_raft(h, store);
            }
            Ok((store, false)) => {
                let (disk, _) = store.into_parts();
                self.disk = Some(disk);
            }
            Err(e) => {
                self.disk_lost(&e, "raft state unreadable; running as a non-voter");
            }
        }
        let t = self.cfg.tick;
        h.io.schedule(t, TimerKind::MetaTick);
    }

    fn raft_config(&self, h: &View<'_>, applied: u64) -> raft::Config {
        let e = self.cfg.election_ticks.max(2);
        raft::Config {
            id: raft_id(&h.identity.id),
            election_tick: e,
            heartbeat_tick: self.cfg.heartbeat_ticks.clamp(1, e - 1),
            // raft-rs draws from a thread-local RNG in this range; the node
            // overrides the draw after every role or term change with one
            // from its seeded RNG, before the next tick (see track_role).
            min_election_tick: e,
            max_election_tick: 2 * e,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        }
    }

    fn start_raft(&mut self, h: &mut Host<'_>, store: RaftStore) {
        let applied = store.machine.applied;
        let cfg = self.raft_config(h, applied);
        match RawNode::new(&cfg, store, &self.logger) {
            Ok(raw) => {
                self.raw = Some(raw);
                self.last_role = None;
                self.advert_dirty = true;
                self.advert_urgent = true;
                self.after_raft(h);
            }
            Err(e) => {
                self.disk_lost(&e, "raft could not start; running as a non-voter");
            }
        }
    }

    /// Leaves Raft (removed from the voters, or a storage failure): the
    /// applied machine stays as this node's copy.
    fn stop_raft(&mut self, h: &mut Host<'_>, clear: bool) {
        let Some(mut raw) = self.raw.take() else {
            return;
        };
        self.catching_up = None;
        let mut store = std::mem::replace(raw.mut_store(), RaftStore::detached());
        if clear && let Err(e) = store.clear_disk() {
            self.counters.disk_errors += 1;
            tracing::error!(error = %e, "could not clear raft state");
        }
        let (disk, machine) = store.into_parts();
        self.disk = Some(disk);
        self.copy = machine;
        self.last_role = None;
        self.advert_dirty = true;
        self.advert_urgent = true;
        for (_, s) in std::mem::take(&mut self.serving) {
            self.finish_serving(
                h,
                s,
                Err(MetaError::Interrupted(
                    "the voter serving it left the voters".into(),
                )),
            );
        }
    }

    /// The disk could not be opened (it was handed to a store that failed):
    /// count it, log it, and go on as a non-voter on a throwaway disk.
    fn disk_lost(&mut self, e: &dyn std::fmt::Display, what: &str) {
        self.counters.disk_errors += 1;
        tracing::error!(error = %e, "{what}");
        self.disk = Some(Box::new(crate::node::meta::MemDisk::default()));
    }

    fn disk_failed(&mut self, h: &mut Host<'_>, e: DiskError) {
        self.counters.disk_errors += 1;
        tracing::error!(error = %e, "raft storage failed; leaving the voters");
        self.stop_raft(h, false);
    }

    // ----- periodic work -----

    pub(crate) fn on_meta_tick(&mut self, h: &mut Host<'_>) {
        let every = if self.raw.is_some() {
            self.cfg.tick
        } else {
            self.cfg.tick * 5
        };
        h.io.schedule(every, TimerKind::MetaTick);
        self.ticks += 1;
        if let Some(raw) = self.raw.as_mut() {
            raw.tick();
            self.after_raft(h);
        }
        self.expire_requests(h);
        let now = h.io.now;
        if self.raw.is_none() || self.ticks.is_multiple_of(5) {
            self.maybe_bootstrap(h);
            self.maybe_pull(h);
        }
        if self.ticks.is_multiple_of(10) {
            self.maybe_change_voters(h);
            self.maybe_place(h);
            self.maybe_step_down_zombie(h);
        }
        if self.advert_dirty
            && (self.advert_urgent || self.last_advert.is_none_or(|t| now >= t + ADVERT_EVERY))
        {
            self.advertise(h);
        }
    }

    fn expire_requests(&mut self, h: &mut Host<'_>) {
        let now = h.io.now;
        let ms = self.cfg.request_timeout.as_millis() as u64;
        let expired: Vec<u64> = self
            .serving
            .iter()
            .filter(|(_, s)| now >= s.deadline)
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            if let Some(s) = self.serving.remove(&t) {
                self.finish_serving(h, s, Err(MetaError::Timeout { ms }));
            }
        }
        let mut retry = Vec::new();
        let mut dead = Vec::new();
        for (id, p) in &self.requests {
            if now >= p.deadline {
                dead.push(*id);
            } else if p.retry_at.is_some_and(|t| now >= t) {
                retry.push(*id);
            }
        }
        for id in dead {
            if let Some(p) = self.requests.remove(&id) {
                let err = match p.last_error {
                    Some(e @ (MetaError::NoLeader(_) | MetaError::NoCluster { .. })) => e,
                    _ => MetaError::Timeout { ms },
                };
                self.complete(id, Err(err));
            }
        }
        for id in retry {
            self.dispatch(h, id);
        }
    }

    // ----- queries -----

    /// The Raft term this node leads, while it is the metadata leader
    /// (cheaper than [`Node::meta_status`]).
    pub(crate) fn meta_leading_term(&self) -> Option<u64> {
        let raw = self.raw.as_ref()?;
        (raw.raft.state == StateRole::Leader).then_some(raw.raft.term)
    }

    /// The metadata cluster as this node sees it.
    pub(crate) fn meta_status(&self, h: &View<'_>) -> MetaStatus {
        let m = self.machine();
        let cluster = self.meta_cluster(h);
        match self.raw.as_ref() {
            Some(raw) => {
                let role = match raw.raft.state {
                    StateRole::Leader => RaftRole::Leader,
                    StateRole::Candidate => RaftRole::Candidate,
                    StateRole::PreCandidate => RaftRole::PreCandidate,
                    StateRole::Follower => RaftRole::Follower,
                };
                MetaStatus {
                    cluster: cluster.map(|c| format!("{c:016x}")),
                    role,
                    term: raw.raft.term,
                    leader: m.names.get(&raw.raft.leader_id).cloned(),
                    voters: m.voter_names(),
                    commit_index: raw.raft.raft_log.committed,
                    applied_index: m.applied,
                    quorum: raw.raft.leader_id != raft::INVALID_ID,
                }
            }
            None => {
                let adverts = self.adverts(h);
                let best = adverts
                    .iter()
                    .filter(|(_, a)| Some(a.cluster) == cluster && a.voter)
                    .max_by_key(|(_, a)| (a.term, a.applied));
                let leader = best.and_then(|(_, a)| a.leader.clone());
                let quorum = leader.as_ref().is_some_and(|l| {
                    h.members
                        .member(l)
                        .is_some_and(|m| m.state == MemberState::Alive)
                });
                MetaStatus {
                    cluster: cluster.map(|c| format!("{c:016x}")),
                    role: RaftRole::NonVoter,
                    term: best.map_or(0, |(_, a)| a.term),
                    leader,
                    voters: m.voter_names(),
                    commit_index: adverts
                        .iter()
                        .filter(|(_, a)| Some(a.cluster) == cluster)
                        .map(|(_, a)| a.applied)
                        .max()
                        .unwrap_or(0)
                        .max(m.applied),
                    applied_index: m.applied,
                    quorum,
                }
            }
        }
    }

    /// The committed partition placement in this node's copy.
    pub(crate) fn partitions(&self) -> Option<&Table> {
        self.machine().placement.as_deref()
    }

    /// The partition of `key` (`None` before a cluster formed).
    pub(crate) fn partition_for_key(&self, key: &[u8]) -> Option<u32> {
        let n = self.machine().partition_count;
        (n > 0).then(|| placement::partition_for_key(key, n))
    }

    /// The primary owner of `key`.
    pub(crate) fn primary_for_key(&self, key: &[u8]) -> Option<NodeId> {
        let p = self.partition_for_key(key)?;
        self.partitions()?.primary(p).cloned()
    }

    /// The replica owners of `key` (primary excluded).
    pub(crate) fn replicas_for_key(&self, key: &[u8]) -> Vec<NodeId> {
        match (self.partition_for_key(key), self.partitions()) {
            (Some(p), Some(t)) => t.owners_of(p).iter().skip(1).cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether this node is `key`'s primary.
    pub(crate) fn is_primary_for_key(&self, h: &View<'_>, key: &[u8]) -> bool {
        self.should_handle_key(h, key) == Role::Primary
    }

    /// This node's role for `key`.
    pub(crate) fn should_handle_key(&self, h: &View<'_>, key: &[u8]) -> Role {
        match (self.partition_for_key(key), self.partitions()) {
            (Some(p), Some(t)) => t.role(p, &h.identity.id),
            _ => Role::None,
        }
    }

    /// This node's copy of one metadata key (a stale read, no I/O).
    pub(crate) fn meta_local(&self, key: &str) -> Option<Vec<u8>> {
        self.machine().kv.get(key).cloned()
    }

    /// This node's copy of the metadata store.
    pub(crate) fn meta_machine(&self) -> &Machine {
        self.machine()
    }

    /// Metadata counters.
    pub(crate) fn meta_counters(&self) -> MetaCounters {
        self.counters
    }
}
