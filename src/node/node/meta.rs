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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry,
    EntryType, Message as RaftMessage,
};
use raft::{RawNode, StateRole};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::Node;
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
use crate::node::wire::{
    BootstrapAsk, BootstrapGrant, Message, MetaPull, MetaPush, MetaRequest, MetaResponse,
    PushedEntry, RaftMsg,
};
use crate::node::{Event, MemberState, Now};

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

/// Per-node state of the metadata engine.
pub(crate) struct MetaCore {
    pub(crate) cfg: MetaConfig,
    raw: Option<RawNode<RaftStore>>,
    /// The disk while this node is not a voter.
    disk: Option<Box<dyn RaftDisk>>,
    /// Set while a voter that started empty catches up (see [`CatchUp`]).
    catching_up: Option<CatchUp>,
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

impl Node {
    pub(super) fn now_full(&self) -> Now {
        Now {
            mono: self.io.now,
            wall_ms: self.shared.lock().wall_ms,
        }
    }

    /// Opens the Raft state saved on the disk, if any (a voter restarting).
    pub(super) fn meta_start(&mut self) {
        let Some(disk) = self.meta.disk.take() else {
            return;
        };
        match RaftStore::open(disk) {
            Ok((store, true)) => {
                self.meta.cluster = store.machine.cluster;
                tracing::info!(
                    cluster = format!("{:016x}", store.machine.cluster),
                    snapshot_index = store.machine.applied,
                    last_index = raft::Storage::last_index(&store).unwrap_or(0),
                    commit = store.hard_state().commit,
                    "loaded raft state from disk"
                );
                self.start_raft(store);
            }
            Ok((store, false)) => {
                let (disk, _) = store.into_parts();
                self.meta.disk = Some(disk);
            }
            Err(e) => {
                self.disk_lost(&e, "raft state unreadable; running as a non-voter");
            }
        }
        let t = self.meta.cfg.tick;
        self.io.schedule(t, TimerKind::MetaTick);
    }

    fn raft_config(&self, applied: u64) -> raft::Config {
        let e = self.meta.cfg.election_ticks.max(2);
        raft::Config {
            id: raft_id(&self.identity.id),
            election_tick: e,
            heartbeat_tick: self.meta.cfg.heartbeat_ticks.clamp(1, e - 1),
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

    fn start_raft(&mut self, store: RaftStore) {
        let applied = store.machine.applied;
        let cfg = self.raft_config(applied);
        match RawNode::new(&cfg, store, &self.meta.logger) {
            Ok(raw) => {
                self.meta.raw = Some(raw);
                self.meta.last_role = None;
                self.meta.advert_dirty = true;
                self.meta.advert_urgent = true;
                self.after_raft();
            }
            Err(e) => {
                self.disk_lost(&e, "raft could not start; running as a non-voter");
            }
        }
    }

    /// Leaves Raft (removed from the voters, or a storage failure): the
    /// applied machine stays as this node's copy.
    fn stop_raft(&mut self, clear: bool) {
        let Some(mut raw) = self.meta.raw.take() else {
            return;
        };
        self.meta.catching_up = None;
        let mut store = std::mem::replace(raw.mut_store(), RaftStore::detached());
        if clear && let Err(e) = store.clear_disk() {
            self.meta.counters.disk_errors += 1;
            tracing::error!(error = %e, "could not clear raft state");
        }
        let (disk, machine) = store.into_parts();
        self.meta.disk = Some(disk);
        self.meta.copy = machine;
        self.meta.last_role = None;
        self.meta.advert_dirty = true;
        self.meta.advert_urgent = true;
        for (_, s) in std::mem::take(&mut self.meta.serving) {
            self.finish_serving(
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
        self.meta.counters.disk_errors += 1;
        tracing::error!(error = %e, "{what}");
        self.meta.disk = Some(Box::new(crate::node::meta::MemDisk::default()));
    }

    fn disk_failed(&mut self, e: DiskError) {
        self.meta.counters.disk_errors += 1;
        tracing::error!(error = %e, "raft storage failed; leaving the voters");
        self.stop_raft(false);
    }

    // ----- periodic work -----

    pub(super) fn on_meta_tick(&mut self) {
        let every = if self.meta.raw.is_some() {
            self.meta.cfg.tick
        } else {
            self.meta.cfg.tick * 5
        };
        self.io.schedule(every, TimerKind::MetaTick);
        self.meta.ticks += 1;
        if let Some(raw) = self.meta.raw.as_mut() {
            raw.tick();
            self.after_raft();
        }
        self.expire_requests();
        let now = self.io.now;
        if self.meta.raw.is_none() || self.meta.ticks.is_multiple_of(5) {
            self.maybe_bootstrap();
            self.maybe_pull();
        }
        if self.meta.ticks.is_multiple_of(10) {
            self.maybe_change_voters();
            self.maybe_place();
            self.maybe_step_down_zombie();
        }
        if self.meta.advert_dirty
            && (self.meta.advert_urgent
                || self
                    .meta
                    .last_advert
                    .is_none_or(|t| now >= t + ADVERT_EVERY))
        {
            self.advertise();
        }
    }

    fn expire_requests(&mut self) {
        let now = self.io.now;
        let ms = self.meta.cfg.request_timeout.as_millis() as u64;
        let expired: Vec<u64> = self
            .meta
            .serving
            .iter()
            .filter(|(_, s)| now >= s.deadline)
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            if let Some(s) = self.meta.serving.remove(&t) {
                self.finish_serving(s, Err(MetaError::Timeout { ms }));
            }
        }
        let mut retry = Vec::new();
        let mut dead = Vec::new();
        for (id, p) in &self.meta.requests {
            if now >= p.deadline {
                dead.push(*id);
            } else if p.retry_at.is_some_and(|t| now >= t) {
                retry.push(*id);
            }
        }
        for id in dead {
            if let Some(p) = self.meta.requests.remove(&id) {
                let err = match p.last_error {
                    Some(e @ (MetaError::NoLeader(_) | MetaError::NoCluster { .. })) => e,
                    _ => MetaError::Timeout { ms },
                };
                self.complete(id, Err(err));
            }
        }
        for id in retry {
            self.dispatch(id);
        }
    }

    // ----- client requests -----

    /// Starts a metadata request; its result comes out of
    /// [`Node::poll_meta_result`] with the returned number.
    pub fn meta_request(&mut self, now: Now, op: MetaOp, mode: ReadMode) -> u64 {
        self.submit_meta(now, op, mode, false)
    }

    /// Revokes (or, with `revoke` false, reinstates) the certificate of
    /// node `id` cluster-wide: a metadata write under [`REVOKED_PREFIX`],
    /// which clients cannot make directly. Its result comes out of
    /// [`Node::poll_meta_result`] with the returned number.
    ///
    /// [`REVOKED_PREFIX`]: crate::node::meta::REVOKED_PREFIX
    pub fn revoke_certificate(&mut self, now: Now, id: &NodeId, revoke: bool) -> u64 {
        let key = format!("{}{id}", super::super::meta::REVOKED_PREFIX);
        let op = if revoke {
            MetaOp::Put {
                key,
                value: b"revoked".to_vec(),
            }
        } else {
            MetaOp::Delete { key }
        };
        self.submit_meta(now, op, ReadMode::Linearizable, true)
    }

    /// Asks the leader to remove the dead voter `id` from the metadata
    /// voters by hand (as `consul operator raft remove-peer` does): a
    /// metadata write under [`REMOVE_VOTER_PREFIX`] naming the member's
    /// generation (any generation when this node does not list it). Once
    /// gossip holds that generation Down or Left, the
    /// leader replaces the voter, or removes it even when no member can
    /// take its place (the voters then shrink below their target; the last
    /// voter is never removed). A live voter is refused: its removal would
    /// be undone as soon as the leader added it back. The result (the
    /// write's log index) comes out of [`Node::poll_meta_result`] with the
    /// returned number.
    ///
    /// [`REMOVE_VOTER_PREFIX`]: crate::node::meta::REMOVE_VOTER_PREFIX
    pub fn remove_voter(&mut self, now: Now, id: &NodeId) -> u64 {
        let voters = self.meta.machine().voter_names();
        let refused = if self.meta_cluster().is_none() {
            Some(self.no_cluster())
        } else if !voters.contains(id) {
            let list: Vec<&str> = voters.iter().map(NodeId::as_str).collect();
            Some(MetaError::Invalid(format!(
                "{id} is not a metadata voter (voters: {})",
                if list.is_empty() {
                    "none known".to_owned()
                } else {
                    list.join(", ")
                }
            )))
        } else if *id == self.identity.id {
            Some(MetaError::Invalid(format!(
                "{id} is this node and it is alive; ask another member to remove it once it is down"
            )))
        } else {
            match self.member(id).map(|m| m.state) {
                Some(s @ (MemberState::Alive | MemberState::Suspect)) => {
                    Some(MetaError::Invalid(format!(
                        "{id} is {s:?} here; only a voter that is down (or left) is removed by hand, and the leader already replaces a dead voter when another member can take its place"
                    )))
                }
                _ => None,
            }
        };
        if let Some(e) = refused {
            self.set_now(now);
            let req = self.meta.next_req;
            self.meta.next_req += 1;
            self.complete(req, Err(e));
            return req;
        }
        // The generation this node holds it at; none (any generation) when
        // it does not list the member (it joined after the voter died, or
        // already forgot it).
        let value = self
            .member(id)
            .map(|m| m.identity.generation.0.to_string().into_bytes())
            .unwrap_or_default();
        let op = MetaOp::Put {
            key: format!("{}{id}", super::super::meta::REMOVE_VOTER_PREFIX),
            value,
        };
        self.submit_meta(now, op, ReadMode::Linearizable, true)
    }

    /// Whether an operator asked for the removal of voter `id` as it is now
    /// (the request named no generation, or the one gossip holds, or gossip
    /// no longer lists the member).
    fn removal_asked(&self, id: &NodeId) -> bool {
        let key = format!("{}{id}", super::super::meta::REMOVE_VOTER_PREFIX);
        let Some(v) = self.meta.machine().kv.get(&key) else {
            return false;
        };
        if v.is_empty() {
            return true;
        }
        let asked = std::str::from_utf8(v)
            .ok()
            .and_then(|t| t.parse::<u64>().ok());
        match self.member(id) {
            None => true,
            Some(m) => asked == Some(m.identity.generation.0),
        }
    }

    /// NodeIds whose certificates are revoked, in this node's copy of the
    /// metadata.
    pub fn revoked(&self) -> Vec<NodeId> {
        let prefix = super::super::meta::REVOKED_PREFIX;
        self.meta
            .machine()
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, _)| NodeId::new(&k[prefix.len()..]).ok())
            .collect()
    }

    fn submit_meta(&mut self, now: Now, op: MetaOp, mode: ReadMode, system: bool) -> u64 {
        self.set_now(now);
        let id = self.meta.next_req;
        self.meta.next_req += 1;
        if self.left {
            self.complete(id, Err(MetaError::Stopped));
            return id;
        }
        if self.meta.requests.len() >= MAX_IN_FLIGHT {
            self.complete(id, Err(MetaError::Busy(MAX_IN_FLIGHT)));
            return id;
        }
        if let Err(e) = self.meta.machine().validate(&op, &self.meta.cfg.limits) {
            self.complete(id, Err(e));
            return id;
        }
        if !system
            && !op.is_read()
            && op
                .key()
                .starts_with(super::super::meta::RESERVED_META_PREFIX)
        {
            self.complete(id, Err(MetaError::Reserved(op.key().to_owned())));
            return id;
        }
        if mode == ReadMode::Stale && op.is_read() {
            let r = if self.meta_cluster().is_some() {
                Ok(self.meta.machine().read(&op))
            } else {
                Err(self.no_cluster())
            };
            self.complete(id, r);
            return id;
        }
        let deadline = self.io.now + self.meta.cfg.request_timeout;
        self.meta.requests.insert(
            id,
            Pending {
                op,
                mode,
                deadline,
                retry_at: None,
                last_error: None,
            },
        );
        self.dispatch(id);
        self.after_swim();
        id
    }

    /// Next finished request: its number and outcome.
    pub fn poll_meta_result(&mut self) -> Option<(u64, Result<MetaReply, MetaError>)> {
        self.meta.results.pop_front()
    }

    fn complete(&mut self, id: u64, r: Result<MetaReply, MetaError>) {
        if r.is_err() {
            self.meta.counters.failed += 1;
        }
        self.meta.results.push_back((id, r));
    }

    /// Why there is no metadata cluster yet, with the bootstrap's progress
    /// (O(members): only on a request's error path).
    fn no_cluster(&self) -> MetaError {
        let seen = 1 + self
            .views()
            .filter(|m| m.state == MemberState::Alive && self.eligible(&m.identity.id))
            .count();
        MetaError::NoCluster {
            seen,
            expect: self.meta.cfg.bootstrap_expect.max(1),
        }
    }

    fn retry_later(&mut self, id: u64, e: MetaError) {
        let now = self.io.now;
        let wait = Duration::from_millis(self.rng.random_range(100..300));
        if let Some(p) = self.meta.requests.get_mut(&id) {
            p.last_error = Some(e);
            p.retry_at = Some(now + wait);
        }
    }

    fn dispatch(&mut self, id: u64) {
        let Some(p) = self.meta.requests.get_mut(&id) else {
            return;
        };
        p.retry_at = None;
        let (op, mode) = (p.op.clone(), p.mode);
        let op_is_read = op.is_read();
        let me = self.identity.clone();
        if self.meta.raw.is_some() {
            match self.serve(me, id, op, mode) {
                Err(e) => self.retry_later(id, e),
                // Proposed (or asked of the leader): it now succeeds, fails
                // or times out, and is not retried.
                Ok(()) => {
                    if let Some(p) = self.meta.requests.get_mut(&id) {
                        p.last_error = None;
                    }
                }
            }
            return;
        }
        match self.pick_voter() {
            Some((_, addr)) => {
                self.io.send_msg(
                    addr,
                    &Message::MetaRequest(MetaRequest {
                        from: me,
                        req: id,
                        op,
                        mode,
                    }),
                );
                // A read is retried elsewhere if this voter does not answer
                // in half the timeout; a write is not (it may have been
                // proposed): it succeeds, fails, or times out.
                let is_read = op_is_read;
                if let Some(p) = self.meta.requests.get_mut(&id) {
                    p.last_error = None;
                    if is_read {
                        p.retry_at = Some(self.io.now + self.meta.cfg.request_timeout / 2);
                    }
                }
            }
            None if self.meta_cluster().is_some() => {
                self.retry_later(id, MetaError::NoLeader("no live voter known".into()));
            }
            None => {
                let e = self.no_cluster();
                self.retry_later(id, e);
            }
        }
    }

    /// The advertised leader if alive, else a random live voter.
    fn pick_voter(&mut self) -> Option<(NodeId, std::net::SocketAddr)> {
        let adverts = self.adverts();
        let cluster = self.meta_cluster()?;
        let alive = |n: &Node, id: &NodeId| {
            n.member(id)
                .filter(|m| m.state == MemberState::Alive)
                .map(|m| m.identity.addr)
        };
        let newest = adverts
            .iter()
            .filter(|(_, a)| a.cluster == cluster && a.voter)
            .max_by_key(|(_, a)| a.term)
            .and_then(|(_, a)| a.leader.clone());
        if let Some(l) = newest
            && let Some(addr) = alive(self, &l)
        {
            return Some((l, addr));
        }
        let live: Vec<(NodeId, std::net::SocketAddr)> = adverts
            .iter()
            .filter(|(_, a)| a.cluster == cluster && a.voter)
            .filter_map(|(id, _)| alive(self, id).map(|a| (id.clone(), a)))
            .collect();
        if live.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..live.len());
        Some(live[i].clone())
    }

    /// Serves a request on this voter: a proposal or a ReadIndex.
    fn serve(
        &mut self,
        origin: Identity,
        req: u64,
        op: MetaOp,
        mode: ReadMode,
    ) -> Result<(), MetaError> {
        let Some(raw) = self.meta.raw.as_mut() else {
            return Err(MetaError::NoLeader("not a voter".into()));
        };
        if raw.raft.leader_id == raft::INVALID_ID {
            return Err(MetaError::NoLeader(
                "the voters have no leader (no quorum?)".into(),
            ));
        }
        raw.store().machine.validate(&op, &self.meta.cfg.limits)?;
        let token = self.meta.next_token;
        self.meta.next_token += 1;
        let ctx = postcard::to_stdvec(&ProposalCtx {
            proposer: self.identity.id.clone(),
            token,
        })
        .unwrap_or_default();
        if op.is_read() && mode == ReadMode::Linearizable {
            raw.read_index(ctx);
        } else {
            let data = postcard::to_stdvec(&LogEntry::Op(op.clone())).unwrap_or_default();
            if raw.propose(ctx, data).is_err() {
                return Err(MetaError::NoLeader("proposal dropped: no leader".into()));
            }
            self.meta.counters.proposals += 1;
        }
        let deadline = self.io.now + self.meta.cfg.request_timeout;
        self.meta.serving.insert(
            token,
            Serving {
                origin,
                req,
                op,
                deadline,
                read_at: None,
            },
        );
        self.after_raft();
        Ok(())
    }

    fn finish_serving(&mut self, s: Serving, r: Result<MetaReply, MetaError>) {
        if s.origin.id == self.identity.id {
            if r.as_ref().is_err_and(MetaError::retryable) {
                self.retry_later(s.req, r.err().unwrap_or(MetaError::Stopped));
            } else if self.meta.requests.remove(&s.req).is_some() {
                self.complete(s.req, r);
            }
        } else {
            let from = self.identity.clone();
            self.io.send_msg(
                s.origin.addr,
                &Message::MetaResponse(MetaResponse {
                    from,
                    req: s.req,
                    result: r,
                }),
            );
        }
    }

    pub(super) fn on_meta_request(&mut self, m: MetaRequest) {
        let origin = m.from.clone();
        if let Err(e) = self.serve(m.from, m.req, m.op, m.mode) {
            let from = self.identity.clone();
            self.io.send_msg(
                origin.addr,
                &Message::MetaResponse(MetaResponse {
                    from,
                    req: m.req,
                    result: Err(e),
                }),
            );
        }
    }

    pub(super) fn on_meta_response(&mut self, m: MetaResponse) {
        if !self.meta.requests.contains_key(&m.req) {
            return;
        }
        match m.result {
            Err(e) if e.retryable() => self.retry_later(m.req, e),
            r => {
                self.meta.requests.remove(&m.req);
                self.complete(m.req, r);
            }
        }
    }

    // ----- Raft -----

    pub(super) fn on_raft_msg(&mut self, m: RaftMsg) {
        if m.cluster == 0 || (self.meta.cluster != 0 && m.cluster != self.meta.cluster) {
            self.meta.counters.raft_refused += 1;
            return;
        }
        let Some(msg) = decode_pb::<RaftMessage>(&m.msg) else {
            self.meta.counters.raft_refused += 1;
            return;
        };
        if msg.to != raft_id(&self.identity.id) || msg.from != raft_id(&m.from.id) {
            self.meta.counters.raft_refused += 1;
            return;
        }
        if self.meta.peers.len() < 64 || self.meta.peers.contains_key(&msg.from) {
            self.meta.peers.insert(msg.from, m.from.id.clone());
        }
        if self.meta.raw.is_none() {
            // A leader is adding this node: join as an empty voter and
            // catch up from its snapshot.
            if !self.meta.cfg.voter || self.left {
                self.meta.counters.raft_refused += 1;
                return;
            }
            let Some(disk) = self.meta.disk.take() else {
                return;
            };
            match RaftStore::open(disk) {
                Ok((store, initialized)) => {
                    self.meta.cluster = m.cluster;
                    self.meta.grant = None;
                    self.meta.asking = None;
                    self.meta.catching_up = (!initialized).then(CatchUp::default);
                    self.start_raft(store);
                }
                Err(e) => {
                    self.disk_lost(&e, "raft state unreadable");
                    return;
                }
            }
        }
        if let Some(c) = self.meta.catching_up.as_mut() {
            use raft::eraftpb::MessageType as T;
            match msg.get_msg_type() {
                T::MsgRequestVote | T::MsgRequestPreVote => {
                    // A voter that never was one before (no earlier life's
                    // advert among its peers' state) acknowledged nothing:
                    // it may vote. Until its first push-pull it cannot tell.
                    let s = self.shared.lock();
                    if s.was_voter || !s.synced {
                        drop(s);
                        self.meta.counters.votes_withheld += 1;
                        return;
                    }
                }
                T::MsgAppend => {
                    c.heard = true;
                    c.needed = c.needed.max(msg.commit);
                }
                T::MsgSnapshot => {
                    c.heard = true;
                    c.needed = c.needed.max(msg.get_snapshot().get_metadata().index);
                }
                _ => {}
            }
        }
        if let Some(raw) = self.meta.raw.as_mut() {
            let mut msg = msg;
            // A leader that still counts this voter's acknowledgements from
            // before it lost its log sends a commit index past its last
            // entry; raft-rs would panic. Commit only what is held: the
            // leader then finds the gap and sends the rest.
            let last = raw.raft.raft_log.last_index();
            if msg.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat && msg.commit > last {
                self.meta.counters.raft_refused += 1;
                msg.commit = last;
            }
            let _ = raw.step(msg);
            self.after_raft();
        }
        if let (Some(c), Some(raw)) = (self.meta.catching_up, self.meta.raw.as_ref())
            && c.heard
            && raw.raft.raft_log.persisted >= c.needed
            && raw.raft.raft_log.last_index() >= c.needed
        {
            self.meta.catching_up = None;
            tracing::info!(
                index = c.needed,
                "metadata voter caught up with the leader; it votes again"
            );
        }
    }

    /// Handles every `Ready` raft-rs has, then tracks role changes.
    fn after_raft(&mut self) {
        let mut guard = 0;
        while guard < 64 {
            guard += 1;
            let Some(raw) = self.meta.raw.as_mut() else {
                return;
            };
            if !raw.has_ready() {
                break;
            }
            let mut rd = raw.ready();
            let msgs = rd.take_messages();
            self.send_raft(msgs);
            let Some(raw) = self.meta.raw.as_mut() else {
                return;
            };
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                let before = raw.store().machine.placement.clone();
                if let Err(e) = raw.mut_store().apply_snapshot(&snap) {
                    return self.disk_failed(e);
                }
                self.placement_replaced(before);
                self.meta.advert_dirty = true;
                let names = self.meta.machine().voter_names();
                self.events.push_back(Event::VotersChanged(names));
            }
            let committed = rd.take_committed_entries();
            if !self.apply_committed(committed) {
                return;
            }
            let Some(raw) = self.meta.raw.as_mut() else {
                return;
            };
            if !rd.entries().is_empty()
                && let Err(e) = raw.mut_store().append(rd.entries())
            {
                return self.disk_failed(e);
            }
            if let Some(hs) = rd.hs()
                && let Err(e) = raw.mut_store().set_hard_state(hs)
            {
                return self.disk_failed(e);
            }
            let reads = rd.take_read_states();
            let persisted = rd.take_persisted_messages();
            let mut light = raw.advance(rd);
            if let Some(c) = light.commit_index()
                && let Err(e) = raw.mut_store().set_commit(c)
            {
                return self.disk_failed(e);
            }
            let more = light.take_messages();
            let committed = light.take_committed_entries();
            self.send_raft(persisted);
            self.send_raft(more);
            for rs in reads {
                if let Ok(ctx) = postcard::from_bytes::<ProposalCtx>(&rs.request_ctx)
                    && ctx.proposer == self.identity.id
                    && let Some(s) = self.meta.serving.get_mut(&ctx.token)
                {
                    s.read_at = Some(rs.index);
                }
            }
            if !self.apply_committed(committed) {
                return;
            }
            let Some(raw) = self.meta.raw.as_mut() else {
                return;
            };
            raw.advance_apply();
            match raw.mut_store().maybe_compact() {
                Ok(_) => {}
                Err(e) => return self.disk_failed(e),
            }
        }
        self.serve_reads();
        self.track_role();
    }

    fn send_raft(&mut self, msgs: Vec<RaftMessage>) {
        let cluster = self.meta.cluster;
        for m in msgs {
            let Some(to) = self.raft_peer_addr(m.to) else {
                continue;
            };
            let msg = RaftMsg {
                from: self.identity.clone(),
                cluster,
                msg: encode_pb(&m),
            };
            self.io.send_msg(to, &Message::Raft(msg));
        }
    }

    fn raft_peer_addr(&self, id: RaftId) -> Option<std::net::SocketAddr> {
        // A voter still catching up has no names yet: it answers the peers
        // that wrote to it.
        let name = self
            .meta
            .machine()
            .names
            .get(&id)
            .or_else(|| self.meta.peers.get(&id))?;
        self.member(name)
            .filter(|m| m.state != MemberState::Left)
            .map(|m| m.identity.addr)
    }

    /// Applies committed entries; `false` when Raft stopped on the way.
    fn apply_committed(&mut self, entries: Vec<Entry>) -> bool {
        for e in entries {
            let Some(raw) = self.meta.raw.as_mut() else {
                return false;
            };
            if e.index <= raw.store().machine.applied {
                continue;
            }
            let etype = e.get_entry_type();
            if let Some(cc) = parse_conf_change(etype, &e.data) {
                let cs = match raw.apply_conf_change(&cc) {
                    Ok(cs) => cs,
                    Err(err) => {
                        tracing::warn!(error = %err, "configuration change refused");
                        raw.mut_store().machine.skip(e.index, e.term);
                        continue;
                    }
                };
                let conf = Conf::from_raft(&cs);
                let machine = &mut raw.mut_store().machine;
                let voters = apply_conf_entry(machine, conf.clone(), &e.context, e.index, e.term);
                self.events.push_back(Event::VotersChanged(voters));
                self.meta.advert_dirty = true;
                self.meta.advert_urgent = true;
                let me = raft_id(&self.identity.id);
                let member = conf.voters.contains(&me)
                    || conf.voters_outgoing.contains(&me)
                    || conf.learners.contains(&me)
                    || conf.learners_next.contains(&me);
                if !member {
                    tracing::info!("removed from the metadata voters");
                    self.stop_raft(true);
                    return false;
                }
                continue;
            }
            let machine = &mut raw.mut_store().machine;
            let reply = match apply_normal_entry(machine, &e.data, e.index, e.term) {
                Some((entry, before, reply)) => {
                    self.entry_applied(&entry, before, e.index);
                    reply
                }
                None => None,
            };
            self.meta.advert_dirty = true;
            if let (Some(r), Ok(ctx)) = (reply, postcard::from_bytes::<ProposalCtx>(&e.context))
                && ctx.proposer == self.identity.id
                && let Some(s) = self.meta.serving.remove(&ctx.token)
            {
                self.finish_serving(s, Ok(r));
            }
        }
        true
    }

    /// Events for an applied entry.
    fn entry_applied(&mut self, e: &LogEntry, before: Option<Table>, index: u64) {
        match e {
            LogEntry::Op(op) => self.meta_changed(op, index),
            LogEntry::Placement(t) => {
                self.meta.placement_proposed = None;
                let diff = t.diff(before.as_ref());
                if !diff.is_empty() {
                    self.events.push_back(Event::PlacementChanged(diff));
                }
            }
        }
    }

    /// A `PlacementChanged` event when a snapshot replaced the table.
    fn placement_replaced(&mut self, before: Option<Table>) {
        if let Some(t) = &self.meta.machine().placement {
            let diff = t.diff(before.as_ref());
            if !diff.is_empty() {
                self.events.push_back(Event::PlacementChanged(diff));
            }
        }
    }

    fn meta_changed(&mut self, op: &MetaOp, index: u64) {
        if op.is_read() {
            return;
        }
        let value = self.meta.machine().kv.get(op.key()).cloned();
        self.events.push_back(Event::MetadataChanged {
            key: op.key().to_owned(),
            value,
            index,
        });
    }

    fn serve_reads(&mut self) {
        let applied = self.meta.machine().applied;
        let ready: Vec<u64> = self
            .meta
            .serving
            .iter()
            .filter(|(_, s)| s.read_at.is_some_and(|i| i <= applied))
            .map(|(t, _)| *t)
            .collect();
        for t in ready {
            if let Some(s) = self.meta.serving.remove(&t) {
                let r = self.meta.machine().read(&s.op);
                self.finish_serving(s, Ok(r));
            }
        }
    }

    fn track_role(&mut self) {
        let Some(raw) = self.meta.raw.as_mut() else {
            return;
        };
        let now = (raw.raft.state, raw.raft.term);
        if self.meta.last_role != Some(now) {
            self.meta.last_role = Some(now);
            let e = self.meta.cfg.election_ticks.max(2);
            let t = self.rng.random_range(e..2 * e);
            if let Some(raw) = self.meta.raw.as_mut() {
                raw.raft.set_randomized_election_timeout(t);
            }
            self.meta.advert_dirty = true;
            self.meta.advert_urgent = true;
        }
        let Some(raw) = self.meta.raw.as_ref() else {
            return;
        };
        let leader = raw.raft.leader_id;
        let term = raw.raft.term;
        if leader != self.meta.last_leader {
            self.meta.last_leader = leader;
            self.meta.counters.leader_changes += 1;
            let name = self.meta.machine().names.get(&leader).cloned();
            self.events
                .push_back(Event::LeaderChanged { leader: name, term });
            self.meta.advert_dirty = true;
            self.meta.advert_urgent = true;
        }
    }

    // ----- gossip of the cluster: adverts and pulls -----

    /// Keeps the decoded adverts of other members (a handful: the voters
    /// and former voters), so reading them costs nothing per member.
    pub(super) fn note_advert(&mut self, owner: &NodeId, value: Option<&[u8]>) {
        match value.and_then(Advert::decode) {
            Some(a) => {
                self.meta.adverts.insert(owner.clone(), a);
            }
            None => {
                self.meta.adverts.remove(owner);
            }
        }
    }

    fn adverts(&self) -> Vec<(NodeId, Advert)> {
        self.meta
            .adverts
            .iter()
            .filter(|(id, _)| self.member(id).is_some())
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect()
    }

    /// The cluster this node belongs to or follows, if any.
    fn meta_cluster(&self) -> Option<u64> {
        if self.meta.cluster != 0 {
            return Some(self.meta.cluster);
        }
        if self.meta.copy.cluster != 0 {
            return Some(self.meta.copy.cluster);
        }
        self.adverts()
            .into_iter()
            .filter(|(_, a)| a.voter)
            .max_by_key(|(_, a)| (a.applied, a.term))
            .map(|(_, a)| a.cluster)
    }

    fn advertise(&mut self) {
        self.meta.advert_dirty = false;
        self.meta.advert_urgent = false;
        self.meta.last_advert = Some(self.io.now);
        let advert = match self.meta.raw.as_ref() {
            Some(raw) => Advert {
                cluster: self.meta.cluster,
                term: raw.raft.term,
                leader: self.meta.machine().names.get(&raw.raft.leader_id).cloned(),
                applied: raw.store().machine.applied,
                voter: true,
                voters: raw.store().machine.voter_names(),
            },
            None => {
                let had = self.state(&self.identity.id.clone(), ADVERT_KEY).is_some();
                if !had {
                    return;
                }
                Advert {
                    cluster: self.meta.cluster,
                    term: 0,
                    leader: None,
                    applied: self.meta.copy.applied,
                    voter: false,
                    voters: Vec::new(),
                }
            }
        };
        let mut advert = advert;
        let mut bytes = advert.encode();
        if bytes.len() > self.config.state_limits.max_value_bytes.get() {
            advert.voters.clear();
            bytes = advert.encode();
        }
        let now = self.now_full();
        if let Err(e) = self.write(now, ADVERT_KEY, Some(bytes)) {
            tracing::warn!(error = %e, "could not advertise the metadata cluster");
        }
    }

    /// Reacts to a gossiped advert: a member behind pulls at once.
    pub(super) fn on_advert_changed(&mut self) {
        if self.meta.raw.is_none() {
            self.maybe_pull();
        }
    }

    fn maybe_pull(&mut self) {
        if self.meta.raw.is_some() || self.left {
            return;
        }
        let now = self.io.now;
        if self.meta.pull_deadline.is_some_and(|d| now < d) {
            return;
        }
        self.meta.pull_deadline = None;
        let Some(cluster) = self.meta_cluster() else {
            return;
        };
        let have = if self.meta.copy.cluster == cluster {
            self.meta.copy.applied
        } else {
            0
        };
        let ahead: Vec<(NodeId, std::net::SocketAddr)> = self
            .adverts()
            .into_iter()
            .filter(|(_, a)| a.cluster == cluster && a.voter && a.applied > have)
            .filter_map(|(id, _)| {
                self.member(&id)
                    .filter(|m| m.state == MemberState::Alive)
                    .map(|m| (id, m.identity.addr))
            })
            .collect();
        if ahead.is_empty() {
            return;
        }
        let (_, addr) = ahead[self.rng.random_range(0..ahead.len())].clone();
        self.meta.pull_deadline = Some(now + PULL_TIMEOUT);
        self.meta.counters.pulls += 1;
        let from = self.identity.clone();
        self.io.send_msg(
            addr,
            &Message::MetaPull(MetaPull {
                from,
                cluster,
                after: have,
            }),
        );
    }

    pub(super) fn on_meta_pull(&mut self, p: MetaPull) {
        let Some(raw) = self.meta.raw.as_ref() else {
            return;
        };
        if p.cluster != self.meta.cluster {
            return;
        }
        let store = raw.store();
        let applied = store.machine.applied;
        if p.after >= applied {
            return;
        }
        let (snapshot, entries) = match store.committed_after(p.after, applied, PUSH_BYTES) {
            Some(es) => (None, es),
            None => (Some(store.machine.encode()), Vec::new()),
        };
        let entries = entries
            .into_iter()
            .map(|e| PushedEntry {
                index: e.index,
                term: e.term,
                kind: e.get_entry_type() as u8,
                data: e.data.to_vec(),
                context: e.context.to_vec(),
            })
            .collect();
        let from = self.identity.clone();
        self.io.send_msg(
            p.from.addr,
            &Message::MetaPush(MetaPush {
                from,
                cluster: p.cluster,
                snapshot,
                entries,
            }),
        );
    }

    pub(super) fn on_meta_push(&mut self, p: MetaPush) {
        if self.meta.raw.is_some() {
            return;
        }
        if self.meta.cluster != 0 && p.cluster != self.meta.cluster {
            return;
        }
        self.meta.pull_deadline = None;
        if let Some(snap) = p.snapshot.as_deref() {
            match Machine::decode(snap) {
                Some(m) if m.cluster == p.cluster && m.applied > self.meta.copy.applied => {
                    let before = self.meta.copy.placement.take();
                    self.meta.copy = m;
                    self.placement_replaced(before);
                    let names = self.meta.copy.voter_names();
                    self.events.push_back(Event::VotersChanged(names));
                }
                Some(_) => {}
                None => return,
            }
        }
        if self.meta.copy.cluster == 0 {
            self.meta.copy.cluster = p.cluster;
        }
        for e in p.entries {
            if e.index != self.meta.copy.applied + 1 {
                continue;
            }
            let etype = match e.kind {
                1 => EntryType::EntryConfChange,
                2 => EntryType::EntryConfChangeV2,
                _ => EntryType::EntryNormal,
            };
            if let Some(cc) = parse_conf_change(etype, &e.data) {
                let conf = conf_after(&self.meta.copy.conf, &cc);
                let copy = &mut self.meta.copy;
                let names = apply_conf_entry(copy, conf, &e.context, e.index, e.term);
                self.events.push_back(Event::VotersChanged(names));
            } else if let Some((entry, before, _)) =
                apply_normal_entry(&mut self.meta.copy, &e.data, e.index, e.term)
            {
                self.entry_applied(&entry, before, e.index);
            }
        }
        self.maybe_pull();
    }

    // ----- bootstrap -----

    /// The live eligible view for a bootstrap, or `None` when the view is
    /// not clean and settled (a member suspected or recently Down, a join
    /// address that never answered, members still coming).
    fn bootstrap_view(&mut self) -> Option<Vec<NodeId>> {
        // A node that expects to bootstrap alone and has no one to join need
        // not wait to have joined anyone.
        let alone = self.meta.cfg.bootstrap_expect <= 1 && self.seeds.is_empty();
        if !self.meta.cfg.voter || !(self.joined || alone) || self.left {
            return None;
        }
        if self.meta.raw.is_some() || self.meta_cluster().is_some() {
            return None;
        }
        let now = self.io.now;
        let grace = self.meta.cfg.bootstrap_down_grace;
        // This runs on every metadata tick of every node until a cluster
        // exists: fingerprint the live set first (no allocation), build the
        // list only once it has settled.
        let mut fingerprint = self.identity.id.fingerprint();
        for m in self.views() {
            match m.state {
                MemberState::Alive => {
                    fingerprint = fingerprint.wrapping_add(m.identity.id.fingerprint());
                }
                MemberState::Suspect => return None,
                MemberState::Down if now < m.since + grace => return None,
                MemberState::Down | MemberState::Left => {}
            }
        }
        let seeds_ok = now >= self.meta.started + grace
            || self.seeds.iter().all(|s| {
                self.answered_seeds.contains(s)
                    || self
                        .views()
                        .any(|m| m.identity.addr == *s && m.state == MemberState::Alive)
            });
        if !seeds_ok {
            return None;
        }
        if fingerprint != self.meta.alive_view {
            self.meta.alive_view = fingerprint;
            self.meta.alive_changed = now;
        }
        if now < self.meta.alive_changed + self.meta.cfg.bootstrap_settle {
            return None;
        }
        let mut alive: Vec<NodeId> = std::iter::once(self.identity.id.clone())
            .chain(
                self.views()
                    .filter(|m| m.state == MemberState::Alive)
                    .map(|m| m.identity.id.clone()),
            )
            .collect();
        alive.sort();
        let eligible: Vec<NodeId> = alive
            .into_iter()
            .filter(|id| *id == self.identity.id || self.eligible(id))
            .collect();
        (eligible.len() >= self.meta.cfg.bootstrap_expect.max(1)).then_some(eligible)
    }

    /// Whether a member may be a voter (its `voter` tag is not "false").
    fn eligible(&self, id: &NodeId) -> bool {
        self.shared
            .lock()
            .store
            .get(id, "tag:voter")
            .is_none_or(|v| v != b"false")
    }

    fn maybe_bootstrap(&mut self) {
        let now = self.io.now;
        if let Some(a) = &self.meta.asking
            && now >= a.deadline
        {
            self.meta.asking = None;
        }
        if self.meta.asking.is_some() {
            return;
        }
        let Some(eligible) = self.bootstrap_view() else {
            return;
        };
        let set = policy::bootstrap_set(&eligible, self.meta.cfg.target_voters);
        if set.first() != Some(&self.identity.id) {
            return;
        }
        if let Some((c, _, until)) = &self.meta.grant
            && now < *until
            && *c != 0
        {
            // Granted to another candidate: wait for it.
            return;
        }
        // One id per candidate, kept across attempts, so members that
        // granted an earlier attempt grant this one too.
        if self.meta.my_cluster == 0 {
            self.meta.my_cluster = self.rng.random::<u64>().max(1);
        }
        let cluster = self.meta.my_cluster;
        self.meta.grant = Some((cluster, self.identity.id.clone(), now + ASK_WINDOW));
        self.meta.asking = Some(Asking {
            cluster,
            voters: set.clone(),
            granted: BTreeSet::from([self.identity.id.clone()]),
            deadline: now + ASK_WINDOW,
        });
        if set.len() == 1 {
            self.bootstrap(cluster, set);
            return;
        }
        let from = self.identity.clone();
        for id in &set[1..] {
            if let Some(m) = self.member(id) {
                let addr = m.identity.addr;
                self.io.send_msg(
                    addr,
                    &Message::BootstrapAsk(BootstrapAsk {
                        from: from.clone(),
                        cluster,
                        voters: set.clone(),
                    }),
                );
            }
        }
    }

    pub(super) fn on_bootstrap_ask(&mut self, a: BootstrapAsk) {
        let now = self.io.now;
        let view = self.bootstrap_view();
        let agrees = view.is_some_and(|v| {
            policy::bootstrap_set(&v, self.meta.cfg.target_voters) == a.voters
                && a.voters.first() == Some(&a.from.id)
                && a.voters.contains(&self.identity.id)
        });
        let free = match &self.meta.grant {
            Some((c, _, until)) => now >= *until || *c == a.cluster,
            None => true,
        };
        let granted = agrees && free && self.meta.asking.is_none();
        if granted {
            self.meta.grant = Some((a.cluster, a.from.id.clone(), now + GRANT_TTL));
        }
        let from = self.identity.clone();
        self.io.send_msg(
            a.from.addr,
            &Message::BootstrapGrant(BootstrapGrant {
                from,
                cluster: a.cluster,
                granted,
            }),
        );
    }

    pub(super) fn on_bootstrap_grant(&mut self, g: BootstrapGrant) {
        let now = self.io.now;
        let Some(a) = self.meta.asking.as_mut() else {
            return;
        };
        if a.cluster != g.cluster || !a.voters.contains(&g.from.id) {
            return;
        }
        if !g.granted || now >= a.deadline {
            self.meta.asking = None;
            return;
        }
        a.granted.insert(g.from.id);
        if a.granted.len() == a.voters.len() {
            let (cluster, voters) = (a.cluster, a.voters.clone());
            self.meta.asking = None;
            // Still clean and alone? (Another cluster may have appeared.)
            if self.meta_cluster().is_none() && self.meta.raw.is_none() {
                self.bootstrap(cluster, voters);
            }
        }
    }

    fn bootstrap(&mut self, cluster: u64, voters: Vec<NodeId>) {
        let Some(disk) = self.meta.disk.take() else {
            return;
        };
        let me = raft_id(&self.identity.id);
        let machine = Machine {
            cluster,
            names: BTreeMap::from([(me, self.identity.id.clone())]),
            conf: Conf {
                voters: vec![me],
                ..Default::default()
            },
            partition_count: self.meta.cfg.partition_count.max(1),
            replication_factor: self.meta.cfg.replication_factor.max(1),
            ..Default::default()
        };
        let store = match RaftStore::open(disk) {
            Ok((mut s, _)) => match s.bootstrap(machine) {
                Ok(()) => s,
                Err(e) => {
                    let (disk, _) = s.into_parts();
                    self.meta.disk = Some(disk);
                    self.meta.counters.disk_errors += 1;
                    tracing::error!(error = %e, "bootstrap failed");
                    return;
                }
            },
            Err(e) => {
                self.disk_lost(&e, "bootstrap failed");
                return;
            }
        };
        tracing::info!(cluster = format!("{cluster:016x}"), voters = ?voters, "bootstrapped the metadata cluster");
        self.meta.cluster = cluster;
        self.meta.preferred = voters;
        self.events.push_back(Event::MetaBootstrapped { cluster });
        self.start_raft(store);
        if let Some(raw) = self.meta.raw.as_mut() {
            let _ = raw.campaign();
        }
        self.after_raft();
        self.advertise();
    }

    // ----- voter policy (leader) -----

    fn maybe_change_voters(&mut self) {
        let Some(raw) = self.meta.raw.as_ref() else {
            return;
        };
        if raw.raft.state != StateRole::Leader {
            return;
        }
        let machine = &raw.store().machine;
        if raw.raft.pending_conf_index > machine.applied || !machine.conf.voters_outgoing.is_empty()
        {
            return;
        }
        let voters: Vec<Voter> = machine
            .conf
            .voters
            .iter()
            .filter_map(|id| machine.names.get(id))
            .map(|id| Voter {
                id: id.clone(),
                zone: self.zone_of(id),
                healthy: *id == self.identity.id
                    || self.member(id).is_some_and(|m| {
                        matches!(m.state, MemberState::Alive | MemberState::Suspect)
                    }),
                removal_asked: self.removal_asked(id),
            })
            .collect();
        let mut candidates: Vec<Candidate> = self
            .views()
            .filter(|m| m.state == MemberState::Alive && self.eligible(&m.identity.id))
            .map(|m| Candidate {
                id: m.identity.id.clone(),
                zone: self.zone_of(&m.identity.id),
                up_since: m.since,
            })
            .collect();
        // The initial voters chosen at bootstrap come first.
        let preferred: Vec<Candidate> = candidates
            .iter()
            .filter(|c| self.meta.preferred.contains(&c.id) && !voters.iter().any(|v| v.id == c.id))
            .cloned()
            .collect();
        if !preferred.is_empty() {
            candidates = preferred;
        } else {
            self.meta.preferred.clear();
        }
        let Some(change) = policy::next_change(&voters, &candidates, self.meta.cfg.target_voters)
        else {
            self.clean_up_removals();
            return;
        };
        let single = |id: &NodeId, t: ConfChangeType| {
            let mut c = ConfChangeSingle {
                node_id: raft_id(id),
                ..Default::default()
            };
            c.set_change_type(t);
            c
        };
        let mut cc = ConfChangeV2::default();
        let names: ConfNames = match &change {
            VoterChange::Add(id) => {
                cc.mut_changes().push(single(id, ConfChangeType::AddNode));
                vec![(raft_id(id), id.clone())]
            }
            VoterChange::Replace { add, remove } => {
                cc.set_transition(ConfChangeTransition::Auto);
                cc.mut_changes().push(single(add, ConfChangeType::AddNode));
                cc.mut_changes()
                    .push(single(remove, ConfChangeType::RemoveNode));
                vec![(raft_id(add), add.clone())]
            }
            VoterChange::Remove(id) => {
                cc.mut_changes()
                    .push(single(id, ConfChangeType::RemoveNode));
                Vec::new()
            }
        };
        tracing::info!(change = ?change, "changing the metadata voters");
        let ctx = postcard::to_stdvec(&names).unwrap_or_default();
        if let Some(raw) = self.meta.raw.as_mut() {
            let _ = raw.propose_conf_change(ctx, cc);
        }
        self.after_raft();
    }

    /// On the leader, with no voter change under way: deletes one
    /// voter-removal request (`roster voters remove`) whose voter is no
    /// longer a voter, so that it cannot apply to a later voter of the same
    /// name. One proposal per [`PLACEMENT_RETRY`] at most.
    fn clean_up_removals(&mut self) {
        let now = self.io.now;
        if self
            .meta
            .removal_cleanup_proposed
            .is_some_and(|t| now < t + PLACEMENT_RETRY)
        {
            return;
        }
        let machine = self.meta.machine();
        let prefix = super::super::meta::REMOVE_VOTER_PREFIX;
        let voters = machine.voter_names();
        let done = machine
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .find(|k| !voters.iter().any(|v| v.as_str() == &k[prefix.len()..]));
        let Some(key) = done else {
            return;
        };
        let data = postcard::to_stdvec(&LogEntry::Op(MetaOp::Delete { key })).unwrap_or_default();
        if let Some(raw) = self.meta.raw.as_mut()
            && raw.propose(Vec::new(), data).is_ok()
        {
            self.meta.removal_cleanup_proposed = Some(now);
        }
        self.after_raft();
    }

    /// Whether a member may own partitions (its `owner` tag is not
    /// "false").
    fn owner_eligible(&self, id: &NodeId) -> bool {
        if *id == self.identity.id && !self.meta.cfg.owner {
            return false;
        }
        self.shared
            .lock()
            .store
            .get(id, "tag:owner")
            .is_none_or(|v| v != b"false")
    }

    /// The leader recomputes the placement when the eligible owners (live
    /// members, Suspect included, Down and Left excluded) differ from the
    /// ones the committed table was made for, and commits it.
    fn maybe_place(&mut self) {
        let now = self.io.now;
        let Some(raw) = self.meta.raw.as_ref() else {
            return;
        };
        if raw.raft.state != StateRole::Leader {
            return;
        }
        if self
            .meta
            .placement_proposed
            .is_some_and(|t| now < t + PLACEMENT_RETRY)
        {
            return;
        }
        let machine = &raw.store().machine;
        if machine.partition_count == 0 {
            return;
        }
        let mut owners: Vec<Owner> = Vec::new();
        let me = self.identity.id.clone();
        let candidates = std::iter::once(me).chain(
            self.views()
                .filter(|m| matches!(m.state, MemberState::Alive | MemberState::Suspect))
                .map(|m| m.identity.id.clone()),
        );
        for id in candidates {
            if self.owner_eligible(&id) {
                owners.push(Owner {
                    zone: self.zone_of(&id),
                    id,
                });
            }
        }
        owners.sort_by(|a, b| a.id.cmp(&b.id));
        let ids: Vec<NodeId> = owners.iter().map(|o| o.id.clone()).collect();
        let prev = machine.placement.as_ref();
        if prev.is_some_and(|t| t.nodes == ids) {
            return;
        }
        let table = placement::assign(
            prev,
            &owners,
            machine.partition_count,
            machine.replication_factor,
        );
        let data = postcard::to_stdvec(&LogEntry::Placement(table)).unwrap_or_default();
        if let Some(raw) = self.meta.raw.as_mut()
            && raw.propose(Vec::new(), data).is_ok()
        {
            tracing::info!(owners = ids.len(), "proposing a new partition placement");
            self.meta.placement_proposed = Some(now);
        }
        self.after_raft();
    }

    fn zone_of(&self, id: &NodeId) -> Option<String> {
        self.shared
            .lock()
            .store
            .get(id, "tag:zone")
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// A voter that was removed while it was cut off never hears of its
    /// removal (the leader stops writing to it). Once it has had no leader
    /// for [`ZOMBIE_AFTER`] while a live member advertises itself leader of
    /// this cluster, at an applied index at least this node's, with a voter
    /// list that leaves this node out, it drops its Raft state and follows
    /// as a non-voter (a leader adds it back through a snapshot if chosen
    /// again). A voter still in the configuration is never dropped this way.
    /// The same holds for a node made a voter that went down before it
    /// applied its first configuration.
    fn maybe_step_down_zombie(&mut self) {
        let now = self.io.now;
        let Some(raw) = self.meta.raw.as_ref() else {
            self.meta.leaderless_since = None;
            return;
        };
        // A node made a voter that went down before it applied its first
        // configuration is in no configuration of its own: it never
        // campaigns, and still names the leader that added it.
        if raw.raft.leader_id != raft::INVALID_ID && raw.raft.promotable() {
            self.meta.leaderless_since = None;
            return;
        }
        let since = *self.meta.leaderless_since.get_or_insert(now);
        if now < since + ZOMBIE_AFTER {
            return;
        }
        let applied = raw.store().machine.applied;
        let cluster = self.meta.cluster;
        let me = self.identity.id.clone();
        let removed = self.adverts().into_iter().any(|(id, a)| {
            a.cluster == cluster
                && a.voter
                && a.applied >= applied
                && a.leader.as_ref() == Some(&id)
                && !a.voters.is_empty()
                && !a.voters.contains(&me)
                && self
                    .member(&id)
                    .is_some_and(|m| m.state == MemberState::Alive)
        });
        if removed {
            tracing::warn!(
                "removed from the metadata voters while cut off; following as a non-voter"
            );
            self.stop_raft(true);
        }
    }

    // ----- queries -----

    /// The Raft term this node leads, while it is the metadata leader
    /// (cheaper than [`Node::meta_status`]).
    pub fn meta_leading_term(&self) -> Option<u64> {
        let raw = self.meta.raw.as_ref()?;
        (raw.raft.state == StateRole::Leader).then_some(raw.raft.term)
    }

    /// The metadata cluster as this node sees it.
    pub fn meta_status(&self) -> MetaStatus {
        let m = self.meta.machine();
        let cluster = self.meta_cluster();
        match self.meta.raw.as_ref() {
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
                let adverts = self.adverts();
                let best = adverts
                    .iter()
                    .filter(|(_, a)| Some(a.cluster) == cluster && a.voter)
                    .max_by_key(|(_, a)| (a.term, a.applied));
                let leader = best.and_then(|(_, a)| a.leader.clone());
                let quorum = leader.as_ref().is_some_and(|l| {
                    self.member(l)
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
    pub fn partitions(&self) -> Option<&Table> {
        self.meta.machine().placement.as_ref()
    }

    /// The partition of `key` (`None` before a cluster formed).
    pub fn partition_for_key(&self, key: &[u8]) -> Option<u32> {
        let n = self.meta.machine().partition_count;
        (n > 0).then(|| placement::partition_for_key(key, n))
    }

    /// The primary owner of `key`.
    pub fn primary_for_key(&self, key: &[u8]) -> Option<NodeId> {
        let p = self.partition_for_key(key)?;
        self.partitions()?.primary(p).cloned()
    }

    /// The replica owners of `key` (primary excluded).
    pub fn replicas_for_key(&self, key: &[u8]) -> Vec<NodeId> {
        match (self.partition_for_key(key), self.partitions()) {
            (Some(p), Some(t)) => t.owners_of(p).iter().skip(1).cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether this node is `key`'s primary.
    pub fn is_primary_for_key(&self, key: &[u8]) -> bool {
        self.should_handle_key(key) == Role::Primary
    }

    /// This node's role for `key`.
    pub fn should_handle_key(&self, key: &[u8]) -> Role {
        match (self.partition_for_key(key), self.partitions()) {
            (Some(p), Some(t)) => t.role(p, &self.identity.id),
            _ => Role::None,
        }
    }

    /// This node's copy of one metadata key (a stale read, no I/O).
    pub fn meta_local(&self, key: &str) -> Option<Vec<u8>> {
        self.meta.machine().kv.get(key).cloned()
    }

    /// This node's copy of the metadata store.
    pub fn meta_machine(&self) -> &Machine {
        self.meta.machine()
    }

    /// Metadata counters.
    pub fn meta_counters(&self) -> MetaCounters {
        self.meta.counters
    }
}

// ----- applying committed entries -----
//
// A voter applies what Raft commits; a non-voter applies the same entries
// pushed to its copy. Both go through these two functions, so an entry
// means the same on every copy.

/// Applies a configuration change, decided by the caller (`conf`), to
/// `machine`, with the voters' names from the entry's context. The voters'
/// names after it.
fn apply_conf_entry(
    machine: &mut Machine,
    conf: Conf,
    context: &[u8],
    index: u64,
    term: u64,
) -> Vec<NodeId> {
    let names: ConfNames = postcard::from_bytes(context).unwrap_or_default();
    machine.apply_conf(conf, names, index, term);
    machine.voter_names()
}

/// Applies a normal entry to `machine`: the entry, the placement table
/// before it (for the events) and the answer for its proposer; `None`, the
/// index skipped, when the data is empty (a new leader's entry) or does
/// not decode.
fn apply_normal_entry(
    machine: &mut Machine,
    data: &[u8],
    index: u64,
    term: u64,
) -> Option<(LogEntry, Option<Table>, Option<MetaReply>)> {
    let Some(entry) = (!data.is_empty())
        .then(|| postcard::from_bytes::<LogEntry>(data).ok())
        .flatten()
    else {
        machine.skip(index, term);
        return None;
    };
    let before = machine.placement.clone();
    let reply = machine.apply_entry(&entry, index, term);
    Some((entry, before, reply))
}
