//! [`Node`]: the sans-IO membership core.
//!
//! # Driving contract
//!
//! A driver (the QUIC runtime or the simulator) owns one `Node` and:
//! 1. calls [`Node::handle_datagram`] / [`Node::handle_message`] for every
//!    datagram or stream message that arrives, and [`Node::handle_timeout`]
//!    whenever the time returned by [`Node::poll_timeout`] has passed;
//! 2. after each call, drains [`Node::poll_transmit`] (sending each message
//!    on a datagram or a stream as [`Transmit::kind`] says) and
//!    [`Node::poll_event`];
//! 3. passes the current [`Now`] to every call: monotonic time (any epoch,
//!    never going back) and the wall clock in Unix milliseconds.
//!
//! The node reads no clock, owns its seeded RNG and keeps every timer in one
//! table, so the same inputs always produce the same outputs.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use foca::{Member, OwnedNotification, State, Timer};
use rand::{RngExt, SeedableRng};

use super::config::{Config, ConfigError, EngineKind, Timing};
use super::delta::{Delta, StateError, StateStore};
use super::engine::{Engine, EngineEvent};
use super::hlc::{Hlc, HlcClock};
use super::identity::{Identity, Incarnation, NodeId};
use super::metrics::Metrics;
use super::swim::{self, GossipHandler, Io, Item, RosterCodec, Shared, SharedRef, Swim, TimerKind};
use super::timers::TimerTable;
use super::{Event, MemberState, MemberView, Now, Transmit};
use crate::node::wire::{
    self, Kind, Leave, MemberDigest, Message, SyncDeltas, SyncFull, SyncReply, SyncRequest, Verify,
    VerifyAck, WireError, WireState,
};

mod lifeguard;
mod meta;
mod native;
mod reap;
mod sync;

use meta::MetaCore;
pub use meta::MetaCounters;
pub use reap::ForceLeaveError;

/// Why an input was dropped. The node's state is unchanged by a dropped
/// input, and every drop is counted in [`Metrics`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The bytes did not decode.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A datagram larger than the configured datagram size.
    #[error("datagram of {len} bytes is over the {max}-byte limit")]
    Oversized {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A stream kind arrived as a datagram, or the reverse.
    #[error("{0:?} arrived on the wrong channel")]
    WrongChannel(Kind),
    /// foca refused the SWIM packet.
    #[error("SWIM packet refused: {0}")]
    Swim(String),
    /// The message claims to come from another node than the one the
    /// transport authenticated.
    #[error("message claims to come from {claimed} but the peer is {peer}")]
    WrongSender {
        /// The `NodeId` in the message.
        claimed: NodeId,
        /// The `NodeId` in the peer's certificate.
        peer: NodeId,
    },
    /// The node has left the cluster and takes no more input.
    #[error("node has left the cluster")]
    Left,
}

/// Join attempts made towards seeds that have not answered, once the node
/// is already part of a cluster.
const MAX_SEED_RETRIES: u32 = 8;

/// State keys of a node's tags: `tag:{name}`, written from its own
/// configuration only.
pub const TAG_PREFIX: &str = "tag:";
/// The state key a node announces its release and protocol version under
/// ([`Node::announce_build`]).
pub const BUILD_KEY: &str = "roster:build";
/// State keys under these prefixes are the node's own (tags, roster's
/// adverts such as [`crate::node::meta::ADVERT_KEY`]): no client writes them.
pub const RESERVED_STATE_PREFIXES: [&str; 2] = [TAG_PREFIX, "roster:"];

/// Refuses a client write of a reserved key.
fn reserved(key: &str) -> Result<(), StateError> {
    if RESERVED_STATE_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return Err(StateError::Reserved(key.to_owned()));
    }
    Ok(())
}

/// Push-pull rounds run right after joining: two gossip intervals after
/// joining, then after 2, 4 and 8 more (0.4, 0.8, 1.6 and 3.2 s on LAN).
const CATCH_UP_SYNCS: u32 = 4;

/// A final check in progress.
#[derive(Debug, Clone)]
struct Verification {
    identity: Identity,
    nonce: u64,
    answered: Option<Incarnation>,
}

/// The membership core of one node. See the module docs for how to drive it.
pub struct Node {
    config: Config,
    /// What `config` gives the current number of live members.
    timing: Timing,
    identity: Identity,
    swim: Swim,
    /// The native engine, when `config.engine` is `Native`; foca then stays
    /// idle (never joined, never driven).
    native: Option<Box<Engine>>,
    /// Application items (state deltas, leaves) for the native engine; the
    /// foca engine owns its own handler.
    items: GossipHandler,
    io: Io,
    shared: SharedRef,
    rng: rand::rngs::Xoshiro256PlusPlus,
    /// The listing of members on foca's path (the native engine keeps it
    /// in its table's rows: see [`Node::member`]).
    members: BTreeMap<NodeId, MemberView>,
    /// Members this node declared Down, with the incarnation they were
    /// declared at: a packet proving a higher one brings them back.
    downs: BTreeMap<NodeId, (Identity, Incarnation)>,
    verifications: BTreeMap<NodeId, Verification>,
    seeds: Vec<SocketAddr>,
    /// Seeds that answered a join request.
    answered_seeds: Vec<SocketAddr>,
    joined: bool,
    join_retry_pending: bool,
    left: bool,
    events: VecDeque<Event>,
    metrics: Metrics,
    prescan_buf: Vec<Member<Identity>>,
    /// The foca timer token the suspicion timers of the members listed
    /// Suspect were armed with (see [`Node::rearm_orphaned_suspicions`]).
    suspicions_token: foca::TimerToken,
    /// Suspicions read from a packet (`true`: a Down verdict), acted on
    /// once foca has applied it.
    gossiped_suspects: Vec<(Identity, Incarnation, bool)>,
    /// Members another node declared Down (a gossiped Down), at the highest
    /// incarnation reported, while the suspicion lasts here.
    reported_down: BTreeMap<NodeId, Incarnation>,
    unpark_pending: bool,
    /// When this node last raised its incarnation to refute a claim.
    last_refutation: Option<Duration>,
    /// Members that told this node it is Down, and when that last counted
    /// against its health.
    accusers: BTreeMap<NodeId, Duration>,
    /// When a well-formed message from a peer last arrived.
    last_heard: Option<Duration>,
    meta: MetaCore,
}

impl Node {
    /// A node with `identity`, not yet part of any cluster. `seed` drives
    /// all of its randomness; `now` starts its timers. Its Raft state (if
    /// it becomes a metadata voter) lives in memory.
    pub fn new(
        identity: Identity,
        config: Config,
        seed: u64,
        now: Now,
    ) -> Result<Self, ConfigError> {
        Self::with_disk(
            identity,
            config,
            seed,
            now,
            Box::new(crate::node::meta::MemDisk::default()),
        )
    }

    /// Like [`Node::new`], with the Raft state on `disk`: a node that was a
    /// voter comes back as one, with its log.
    pub fn with_disk(
        identity: Identity,
        config: Config,
        seed: u64,
        now: Now,
        disk: Box<dyn crate::node::meta::RaftDisk>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let shared = SharedRef::new(Shared {
            store: StateStore::new(config.state_limits),
            hlc: HlcClock::new(config.max_drift),
            wall_ms: now.wall_ms,
            events: VecDeque::new(),
            pending_leaves: Vec::new(),
            left: BTreeMap::new(),
            counters: Default::default(),
            parked: Vec::new(),
            me: identity.id.clone(),
            boot_wall_ms: now.wall_ms,
            authoring: false,
            relay: None,
            reassert: Default::default(),
            was_voter: false,
            synced: false,
        });
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed);
        let swim_rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(rng.random());
        let timing = config.timing(1);
        let native = (config.engine == EngineKind::Native).then(|| {
            let room = config.max_datagram_bytes.get() - wire::ENVELOPE_BYTES;
            Box::new(Engine::new(
                identity.clone(),
                &config,
                rng.random(),
                now.mono,
                room,
            ))
        });
        let swim = Swim::with_custom_broadcast(
            identity.clone(),
            config.foca(&timing),
            swim_rng,
            RosterCodec {
                lifeguard: config.lifeguard,
            },
            GossipHandler {
                shared: shared.clone(),
            },
        );
        let io = Io {
            now: now.mono,
            timers: TimerTable::default(),
            out: VecDeque::new(),
            notes: Vec::new(),
            suspected: Vec::new(),
            lifeguard: config.lifeguard,
            health: 0,
            max_health: config.max_health_score,
            self_incarnation: 0,
            token: 0,
            probe_failures: 0,
            probes_sent: 0,
            tx: Default::default(),
            verdict: None,
            probe: None,
            stray_turn_undead: 0,
        };
        let config_meta = config.meta.clone();
        let items = GossipHandler {
            shared: shared.clone(),
        };
        let mut node = Self {
            config,
            timing,
            identity,
            swim,
            native,
            items,
            io,
            shared,
            rng,
            members: BTreeMap::new(),
            downs: BTreeMap::new(),
            verifications: BTreeMap::new(),
            seeds: Vec::new(),
            answered_seeds: Vec::new(),
            joined: false,
            join_retry_pending: false,
            left: false,
            events: VecDeque::new(),
            metrics: Metrics::default(),
            prescan_buf: Vec::new(),
            suspicions_token: foca::TimerToken::default(),
            gossiped_suspects: Vec::new(),
            reported_down: BTreeMap::new(),
            unpark_pending: false,
            last_refutation: None,
            accusers: BTreeMap::new(),
            last_heard: None,
            meta: MetaCore::new(config_meta, disk, now.mono),
        };
        node.meta_start();
        let first_sync = node.jittered(node.timing.sync_interval);
        node.io.schedule(first_sync, TimerKind::Sync);
        let first_reconnect = node.jittered(node.config.reconnect_interval);
        node.io.schedule(first_reconnect, TimerKind::Reconnect);
        let reap_every = reap::reap_interval(&node.config);
        node.io.schedule(reap_every, TimerKind::Reap);
        Ok(node)
    }

    // ----- inputs -----

    /// Starts joining through `seeds` (any members' addresses; none is
    /// special). Every attempt goes to all seeds and to members already
    /// known; attempts repeat with exponential backoff until a member
    /// answers, and again whenever the node finds itself alone.
    pub fn join(&mut self, now: Now, seeds: impl IntoIterator<Item = SocketAddr>) {
        self.set_now(now);
        for s in seeds {
            if s != self.identity.addr && !self.seeds.contains(&s) {
                self.seeds.push(s);
            }
        }
        self.send_join();
        if !self.join_retry_pending {
            self.join_retry_pending = true;
            let d = self.config.join_retry_initial;
            self.io.schedule(d, TimerKind::JoinRetry { attempt: 1 });
        }
    }

    /// Leaves gracefully: tells `leave_fanout` members directly and
    /// piggybacks the leave on one last gossip round. The node takes no
    /// input afterwards.
    pub fn leave(&mut self, now: Now) {
        if self.left {
            return;
        }
        self.set_now(now);
        let leave = Leave {
            identity: self.identity.clone(),
            incarnation: self.incarnation(),
        };
        if let Some(bytes) = swim::encode_item(&Item::Left(leave.clone())) {
            if let Some(e) = self.native.as_mut() {
                e.leave(self.io.now, self.config.gossip_fanout.get());
            } else {
                let _ = self.swim.add_broadcast(&bytes);
                let _ = self.swim.gossip(&mut self.io);
            }
        }
        self.tell_leave(&leave);
        self.left = true;
        self.after_swim();
    }

    /// Tells `leave_fanout` random members of a leave directly (beside
    /// gossip, which may be slower to reach them).
    fn tell_leave(&mut self, leave: &Leave) {
        let targets = self.random_members(self.config.leave_fanout, |_| true);
        for t in targets {
            self.io.send_msg(t.addr, &Message::Leave(leave.clone()));
        }
    }

    /// Handles one datagram from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Now,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), InputError> {
        self.check_datagram_size(bytes)?;
        self.handle_bytes(now, from, None, bytes, false)
    }

    /// Handles one message that arrived on a stream from `from`.
    pub fn handle_message(
        &mut self,
        now: Now,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), InputError> {
        self.handle_bytes(now, from, None, bytes, true)
    }

    /// Like [`Node::handle_datagram`], from a peer whose `NodeId` the
    /// transport authenticated (its certificate): a message claiming to come
    /// from another node is refused and counted.
    pub fn handle_datagram_from(
        &mut self,
        now: Now,
        from: SocketAddr,
        peer: &NodeId,
        bytes: &[u8],
    ) -> Result<(), InputError> {
        self.check_datagram_size(bytes)?;
        self.handle_bytes(now, from, Some(peer), bytes, false)
    }

    /// Like [`Node::handle_message`], from an authenticated peer.
    pub fn handle_message_from(
        &mut self,
        now: Now,
        from: SocketAddr,
        peer: &NodeId,
        bytes: &[u8],
    ) -> Result<(), InputError> {
        self.handle_bytes(now, from, Some(peer), bytes, true)
    }

    fn check_datagram_size(&mut self, bytes: &[u8]) -> Result<(), InputError> {
        if bytes.len() > self.config.max_datagram_bytes.get() {
            self.metrics.oversized_dropped += 1;
            return Err(InputError::Oversized {
                len: bytes.len(),
                max: self.config.max_datagram_bytes.get(),
            });
        }
        Ok(())
    }

    fn handle_bytes(
        &mut self,
        now: Now,
        from: SocketAddr,
        peer: Option<&NodeId>,
        bytes: &[u8],
        stream: bool,
    ) -> Result<(), InputError> {
        if self.left {
            return Err(InputError::Left);
        }
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.malformed_dropped += 1;
                return Err(e.into());
            }
        };
        let kind = msg.kind();
        if kind.is_stream() != stream {
            self.metrics.malformed_dropped += 1;
            return Err(InputError::WrongChannel(kind));
        }
        if let Some(peer) = peer
            && let Some(claimed) = msg.claimed_sender()
            && claimed != *peer
        {
            return Err(self.wrong_sender(claimed, peer));
        }
        self.metrics.rx.count(kind, bytes.len());
        self.set_now(now);
        self.last_heard = Some(self.io.now);
        let r = match msg {
            Message::Swim(p) => self.on_swim(p, peer),
            Message::SyncRequest(r) => {
                self.on_sync_request(from, r);
                Ok(())
            }
            Message::SyncReply(r) => {
                self.on_sync_reply(from, r);
                Ok(())
            }
            Message::SyncDeltas(d) => {
                self.on_sync_deltas(d);
                Ok(())
            }
            Message::Member(p) => self.on_member(p, peer),
            // The foca engine's final check: a native node has none.
            Message::Verify(_) | Message::VerifyRelay(_) | Message::VerifyAck(_)
                if self.native.is_some() =>
            {
                Ok(())
            }
            Message::Verify(v) => {
                self.on_verify(v);
                Ok(())
            }
            Message::VerifyRelay(v) => {
                if v.target.id != self.identity.id {
                    self.io.send_msg(v.target.addr, &Message::Verify(v));
                }
                Ok(())
            }
            Message::VerifyAck(a) => {
                self.on_verify_ack(a);
                Ok(())
            }
            Message::Leave(l) => {
                if let Some(bytes) = swim::encode_item(&Item::Left(l)) {
                    // The handler records it and queues it for apply_leaves.
                    self.add_item(&bytes, None);
                }
                Ok(())
            }
            Message::Raft(m) => {
                self.on_raft_msg(m);
                Ok(())
            }
            Message::MetaRequest(m) => {
                self.on_meta_request(m);
                Ok(())
            }
            Message::MetaResponse(m) => {
                self.on_meta_response(m);
                Ok(())
            }
            Message::MetaPull(m) => {
                self.on_meta_pull(m);
                Ok(())
            }
            Message::MetaPush(m) => {
                self.on_meta_push(m);
                Ok(())
            }
            Message::BootstrapAsk(m) => {
                self.on_bootstrap_ask(m);
                Ok(())
            }
            Message::BootstrapGrant(m) => {
                self.on_bootstrap_grant(m);
                Ok(())
            }
        };
        self.after_swim();
        r
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.left {
            return;
        }
        self.set_now(now);
        if let Some(e) = self.native.as_mut() {
            e.handle_timeout(self.io.now);
            self.after_swim();
        }
        while let Some(t) = self.io.timers.pop_due(now.mono) {
            self.fire(t);
            self.after_swim();
        }
    }

    /// Writes `key = value` in this node's state and starts spreading it.
    /// Returns the write's HLC stamp.
    /// Keys starting `tag:` or `roster:` are reserved
    /// ([`StateError::Reserved`]): tags go through [`Node::set_tag`].
    pub fn set_state(&mut self, now: Now, key: &str, value: &[u8]) -> Result<Hlc, StateError> {
        reserved(key)?;
        self.write(now, key, Some(value.to_vec()))
    }

    /// Sets this node's tag `name` (state key `tag:{name}`), as the agent
    /// does from its configuration.
    pub fn set_tag(&mut self, now: Now, name: &str, value: &str) -> Result<Hlc, StateError> {
        self.write(
            now,
            &format!("{TAG_PREFIX}{name}"),
            Some(value.as_bytes().to_vec()),
        )
    }

    /// Announces the software this node runs (reserved state key
    /// [`BUILD_KEY`], e.g. `0.1.0/1`: the release and the wire protocol
    /// version), so that every member can show it (`roster members
    /// --detailed`). The agent does this at start; a node that never does
    /// shows none.
    pub fn announce_build(&mut self, now: Now, release: &str) -> Result<Hlc, StateError> {
        self.write(
            now,
            BUILD_KEY,
            Some(format!("{release}/{}", wire::VERSION).into_bytes()),
        )
    }

    /// Removes this node's tag `name`; `None` when it had none.
    pub fn delete_tag(&mut self, now: Now, name: &str) -> Result<Option<Hlc>, StateError> {
        self.delete_own(now, &format!("{TAG_PREFIX}{name}"))
    }

    /// Deletes `key` from this node's state (a tombstone that spreads like a
    /// write). Returns the stamp, or `None` when the key did not exist.
    pub fn delete_state(&mut self, now: Now, key: &str) -> Result<Option<Hlc>, StateError> {
        reserved(key)?;
        self.delete_own(now, key)
    }

    /// Writes a tombstone for this node's `key` if it holds the key.
    fn delete_own(&mut self, now: Now, key: &str) -> Result<Option<Hlc>, StateError> {
        let exists = self
            .shared
            .lock()
            .store
            .get(&self.identity.id, key)
            .is_some();
        if !exists {
            return Ok(None);
        }
        self.write(now, key, None).map(Some)
    }

    fn write(&mut self, now: Now, key: &str, value: Option<Vec<u8>>) -> Result<Hlc, StateError> {
        self.set_now(now);
        let hlc = self.write_own(key, value)?;
        self.after_swim();
        Ok(hlc)
    }

    /// Stamps and spreads a write of this node's own key.
    fn write_own(&mut self, key: &str, value: Option<Vec<u8>>) -> Result<Hlc, StateError> {
        let item = {
            let mut s = self.shared.lock();
            s.store.validate(key, value.as_deref())?;
            s.store.check_room(&self.identity.id, key)?;
            let wall_ms = s.wall_ms;
            let hlc = s.hlc.now(wall_ms);
            Item::Delta(Delta {
                owner: self.identity.id.clone(),
                key: key.to_owned(),
                value,
                hlc,
            })
        };
        let Item::Delta(ref d) = item else {
            unreachable!("built above")
        };
        let hlc = d.hlc;
        self.shared.lock().authoring = true;
        // The handler merges it, then it is gossiped; one too large to
        // piggyback is kept locally and push-pull carries it.
        let queued = swim::encode_item(&item).is_some_and(|bytes| self.add_item(&bytes, None));
        let mut s = self.shared.lock();
        if !queued {
            s.merge_remote(d, None);
        }
        s.authoring = false;
        Ok(hlc)
    }

    /// Writes again, with a fresh stamp, own keys that a write made
    /// elsewhere tried to change (owner authority, see `Shared::merge`).
    fn reassert_own_keys(&mut self) {
        let keys = std::mem::take(&mut self.shared.lock().reassert);
        if self.left {
            return;
        }
        for key in keys {
            let value = {
                let s = self.shared.lock();
                s.store.get(&self.identity.id, &key).map(<[u8]>::to_vec)
            };
            // Fails only for a key this node never held while it already
            // holds its limit of keys: then no node can hold that key either.
            if self.write_own(&key, value).is_err() {
                self.metrics.invalid_items += 1;
            }
        }
    }

    // ----- outputs -----

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        crate::node::pop_queue(&mut self.io.out)
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        crate::node::pop_queue(&mut self.events)
    }

    /// When [`Node::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        if self.left {
            return None;
        }
        let mine = self.io.timers.next_deadline();
        match self.native.as_ref().and_then(|e| e.poll_timeout()) {
            Some(e) => Some(mine.map_or(e, |m| m.min(e))),
            None => mine,
        }
    }

    // ----- queries -----

    /// This node's current identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This node's SWIM incarnation.
    pub fn incarnation(&self) -> Incarnation {
        match &self.native {
            Some(e) => e.incarnation(),
            None => self.io.self_incarnation,
        }
    }

    /// The SWIM engine this node runs.
    pub fn engine(&self) -> EngineKind {
        self.config.engine
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The suspicion window, retransmissions and push-pull interval in
    /// force: what the configuration gives the current number of live
    /// members.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Every member this node knows (itself excluded), by `NodeId`.
    pub fn members(&self) -> impl Iterator<Item = MemberView> + '_ {
        let sorted: Box<dyn Iterator<Item = MemberView> + '_> = match &self.native {
            None => Box::new(self.members.values().cloned()),
            Some(e) => {
                let mut v: Vec<MemberView> = e.views().collect();
                v.sort_unstable_by(|a, b| a.identity.id.cmp(&b.identity.id));
                Box::new(v.into_iter())
            }
        };
        sorted
    }

    /// The member this node lists at `addr`, if any (a scan of the
    /// members, in no particular order).
    pub fn member_at(&self, addr: SocketAddr) -> Option<NodeId> {
        self.views()
            .find(|m| m.identity.addr == addr)
            .map(|m| m.identity.id)
    }

    /// One member as this node lists it. The native engine keeps the
    /// listing in the member's row of its table; foca's path keeps a map.
    pub fn member(&self, id: &NodeId) -> Option<MemberView> {
        match &self.native {
            None => self.members.get(id).cloned(),
            Some(e) => e.view(id),
        }
    }

    /// Every member this node lists, in no particular (but deterministic)
    /// order.
    pub(super) fn views(&self) -> Box<dyn Iterator<Item = MemberView> + '_> {
        match &self.native {
            None => Box::new(self.members.values().cloned()),
            Some(e) => Box::new(e.views()),
        }
    }

    /// Members the SWIM engine counts as active (Alive or Suspect).
    pub fn active_members(&self) -> usize {
        match &self.native {
            Some(e) => e.num_active(),
            None => self.swim.num_members(),
        }
    }

    /// The SWIM engine's member table: `(identity, incarnation, active)`
    /// for every member, Down ones included. O(members).
    pub fn swim_members(&self) -> Box<dyn Iterator<Item = (&Identity, Incarnation, bool)> + '_> {
        match &self.native {
            Some(e) => Box::new(e.members().map(|(id, inc, st)| (id, inc, st.is_active()))),
            None => Box::new(self.swim.iter_membership_state().map(|m| {
                (
                    m.id(),
                    Incarnation::from(m.incarnation()),
                    swim::is_active(m.state()),
                )
            })),
        }
    }

    /// Live value of `owner`'s `key`.
    pub fn state(&self, owner: &NodeId, key: &str) -> Option<Vec<u8>> {
        self.shared.lock().store.get(owner, key).map(<[u8]>::to_vec)
    }

    /// The stamp of `owner`'s `key` as held here (tombstones included).
    pub fn state_stamp(&self, owner: &NodeId, key: &str) -> Option<Hlc> {
        self.shared.lock().store.entry(owner, key).map(|e| e.hlc)
    }

    /// Live `(key, value)` pairs of one owner.
    pub fn state_of(&self, owner: &NodeId) -> Vec<(String, Vec<u8>)> {
        self.shared
            .lock()
            .store
            .live_entries(owner)
            .map(|(k, v)| (k.to_owned(), v.to_vec()))
            .collect()
    }

    /// Hash of all state held: equal on nodes that hold the same state.
    pub fn state_hash(&self) -> u64 {
        self.shared.lock().store.state_hash()
    }

    /// Last HLC stamp issued or adopted.
    pub fn hlc(&self) -> Hlc {
        self.shared.lock().hlc.last()
    }

    /// Counters.
    pub fn metrics(&self) -> Metrics {
        let mut m = self.metrics;
        m.tx = self.io.tx;
        m.probe_failures = self.io.probe_failures;
        m.probes_sent = self.io.probes_sent;
        m.health_score = self.health_score();
        if let Some(e) = &self.native {
            let c = e.counters();
            m.probe_failures = c.probe_failures;
            m.probes_sent = c.probes_sent;
            m.suspicions_raised = c.suspicions_raised;
            m.suspicions_refuted = c.suspicions_refuted;
            m.self_refutations = c.self_refutations;
            m.downs_declared = c.downs_declared + c.downs_adopted;
            m.downs_adopted = c.downs_adopted;
            m.downs_deferred = c.downs_deferred;
            m.verifications_started = c.final_checks;
            m.nacks_received = c.nacks_received;
            m.confirmations = c.confirmations;
            m.told_down = c.told_down;
        }
        m.stray_turn_undead_dropped = self.io.stray_turn_undead;
        m.live_members = self.timing.members as u64;
        m.suspicion_window_ms = self.timing.suspicion_window.as_millis() as u64;
        m.retransmits = self.timing.retransmits.get();
        m.push_pull_interval_ms = self.timing.sync_interval.as_millis() as u64;
        let c = self.shared.lock().counters;
        m.hlc_drift_rejections = c.drift_rejections;
        m.state_forgeries_refuted = c.forgeries_refuted;
        m.stale_own_state_retired = c.stale_own_retired;
        m.invalid_items += c.invalid_items;
        m
    }

    /// Whether the node is part of a cluster (knows an active member).
    pub fn is_joined(&self) -> bool {
        self.joined
    }

    /// Whether [`Node::leave`] was called.
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// Local health score (Lifeguard): 0 is healthy.
    pub fn health_score(&self) -> u8 {
        match &self.native {
            Some(e) => e.health(),
            None => self.io.health,
        }
    }

    // ----- internals -----

    fn set_now(&mut self, now: Now) {
        self.io.now = self.io.now.max(now.mono);
        self.shared.lock().wall_ms = now.wall_ms;
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        d.mul_f64(self.rng.random_range(0.9..1.1))
    }

    /// Up to `n` distinct random members in `Alive`/`Suspect` state (the
    /// native engine draws from its table in O(n); foca's path scans).
    fn random_members(&mut self, n: usize, keep: impl Fn(&Identity) -> bool) -> Vec<Identity> {
        if let Some(e) = &self.native {
            return e.random_members(n, &mut self.rng, keep);
        }
        let mut pool: Vec<&MemberView> = self
            .members
            .values()
            .filter(|m| {
                matches!(m.state, MemberState::Alive | MemberState::Suspect) && keep(&m.identity)
            })
            .collect();
        let mut out = Vec::with_capacity(n.min(pool.len()));
        while out.len() < n && !pool.is_empty() {
            let i = self.rng.random_range(0..pool.len());
            out.push(pool.swap_remove(i).identity.clone());
        }
        out
    }

    fn wrong_sender(&mut self, claimed: NodeId, peer: &NodeId) -> InputError {
        self.metrics.wrong_sender_dropped += 1;
        InputError::WrongSender {
            claimed,
            peer: peer.clone(),
        }
    }

    fn on_swim(&mut self, packet: &[u8], peer: Option<&NodeId>) -> Result<(), InputError> {
        if self.native.is_some() {
            self.metrics.swim_errors += 1;
            return Err(InputError::Swim(
                "a foca engine packet; this node runs the native engine".into(),
            ));
        }
        if self.config.lifeguard {
            let buf = std::mem::take(&mut self.prescan_buf);
            if let Some(p) = swim::prescan(packet, buf) {
                if let Some(peer) = peer
                    && p.header.src.id != *peer
                {
                    let claimed = p.header.src.id.clone();
                    self.prescan_buf = p.updates;
                    return Err(self.wrong_sender(claimed, peer));
                }
                let handled = self.lifeguard_prescan(&p);
                self.prescan_buf = p.updates;
                if handled {
                    return Ok(());
                }
            }
        } else if let Some(peer) = peer
            && let Some(claimed) = wire::swim_sender(packet)
            && claimed != *peer
        {
            return Err(self.wrong_sender(claimed, peer));
        } else {
            // Plain SWIM: foca's own view needs nothing, but the member
            // view learns refutations here, or a suspicion foca dropped on a
            // refutation would stay Suspect in it.
            let buf = std::mem::take(&mut self.prescan_buf);
            if let Some(p) = swim::prescan(packet, buf) {
                let h = &p.header;
                self.note_incarnation(&h.src, u32::from(h.src_incarnation), State::Alive);
                for m in &p.updates {
                    self.note_incarnation(m.id(), u32::from(m.incarnation()), m.state());
                }
                self.prescan_buf = p.updates;
            }
        }
        let r = self.swim.handle_data(packet, &mut self.io);
        self.drain_notifications();
        for (id, inc, down) in std::mem::take(&mut self.gossiped_suspects) {
            self.suspect_from_gossip(id, inc, down);
        }
        match r {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.swim_errors += 1;
                Err(InputError::Swim(e.to_string()))
            }
        }
    }

    fn fire(&mut self, t: TimerKind) {
        match t {
            TimerKind::Foca(t) => {
                if let Timer::ChangeSuspectToDown {
                    ref member_id,
                    incarnation,
                    ..
                } = t
                {
                    self.io.verdict = Some(swim::Verdict {
                        member: member_id.clone(),
                        incarnation: u32::from(incarnation),
                        applied: false,
                    });
                }
                let _ = self.swim.handle_timer(t, &mut self.io);
                self.note_verdict();
            }
            TimerKind::Suspect {
                member,
                incarnation,
                token,
            } => self.on_suspect_timeout(member, incarnation, token),
            TimerKind::VerifyTimeout {
                member,
                incarnation,
                token,
                nonce,
            } => self.on_verify_timeout(member, incarnation, token, nonce),
            TimerKind::CatchUpSync { round } => {
                self.start_sync();
                if round < CATCH_UP_SYNCS {
                    let wait = self.config.gossip_interval * 2u32.pow(round);
                    self.io
                        .schedule(wait, TimerKind::CatchUpSync { round: round + 1 });
                }
            }
            TimerKind::Unpark => {
                self.unpark_pending = false;
                let max_drift_ms = self.config.max_drift.as_millis() as u64;
                let ready = self.shared.lock().unpark_ready(max_drift_ms);
                self.merge_deltas(&ready, true, None);
            }
            TimerKind::MetaTick => self.on_meta_tick(),
            TimerKind::Reconnect => {
                let next = self.jittered(self.config.reconnect_interval);
                self.io.schedule(next, TimerKind::Reconnect);
                self.reach_for_the_down();
            }
            TimerKind::Reap => {
                let next = reap::reap_interval(&self.config);
                self.io.schedule(next, TimerKind::Reap);
                self.reap();
            }
            TimerKind::Sync => {
                let next = self.jittered(self.timing.sync_interval);
                self.io.schedule(next, TimerKind::Sync);
                self.start_sync();
            }
            TimerKind::JoinRetry { attempt } => {
                // Keep at it while alone, and for a while until every seed
                // has answered: stopping at the first answer could leave a
                // few early nodes in an island of their own.
                let alone = self.active_members() == 0;
                let seeds_pending = self.seeds.iter().any(|s| !self.answered_seeds.contains(s));
                if !alone && (!seeds_pending || attempt > MAX_SEED_RETRIES) {
                    self.join_retry_pending = false;
                    return;
                }
                self.send_join();
                // Back off only while alone; seeds still to answer are retried
                // at the initial pace.
                let wait = if alone {
                    (self.config.join_retry_initial * 2u32.pow(attempt.min(16)))
                        .min(self.config.join_retry_max)
                } else {
                    self.config.join_retry_initial
                };
                self.io.schedule(
                    wait,
                    TimerKind::JoinRetry {
                        attempt: attempt + 1,
                    },
                );
            }
        }
    }

    // ----- after every foca call -----

    /// The first other member became active: the node has joined.
    fn became_active(&mut self) {
        if self.joined {
            return;
        }
        self.joined = true;
        self.events.push_back(Event::Joined);
        // Gossip alone leaves a few members unknown to a few nodes when many
        // join at once: a few quick push-pulls right after joining close
        // those gaps in seconds instead of one sync interval.
        let wait = self.config.gossip_interval * 2;
        self.io.schedule(wait, TimerKind::CatchUpSync { round: 1 });
    }

    /// No other member is active any more: try the seeds again.
    fn became_idle(&mut self) {
        self.joined = false;
        if !self.join_retry_pending && !self.left {
            self.join_retry_pending = true;
            let d = self.config.join_retry_initial;
            self.io.schedule(d, TimerKind::JoinRetry { attempt: 1 });
        }
    }

    fn after_swim(&mut self) {
        self.reassert_own_keys();
        self.drain_native();
        if self.io.token != self.suspicions_token {
            self.rearm_orphaned_suspicions();
        }
        for (id, inc) in std::mem::take(&mut self.io.suspected) {
            self.metrics.suspicions_raised += 1;
            // A suspicion below an incarnation the view has already seen
            // is refuted before it starts.
            if let Some(v) = self.members.get_mut(&id.id)
                && v.identity == id
                && matches!(v.state, MemberState::Alive | MemberState::Suspect)
                && inc >= v.incarnation
            {
                v.state = MemberState::Suspect;
                v.suspect_incarnation = Some(inc);
                v.since = self.io.now;
                self.events.push_back(Event::MemberSuspected(id));
            }
        }
        self.drain_notifications();
        let (events, leaves, parked) = {
            let mut s = self.shared.lock();
            (
                std::mem::take(&mut s.events),
                std::mem::take(&mut s.pending_leaves),
                !s.parked.is_empty(),
            )
        };
        let mut adverts = false;
        for e in &events {
            if let Event::StateChanged {
                key, owner, value, ..
            } = e
                && key == crate::node::meta::ADVERT_KEY
                && *owner != self.identity.id
            {
                adverts = true;
                self.note_advert(owner, value.as_deref());
            }
        }
        self.events.extend(events);
        if adverts {
            self.on_advert_changed();
        }
        if parked && !self.unpark_pending && !self.left {
            self.unpark_pending = true;
            let wait = self.config.max_drift / 4;
            self.io.schedule(wait, TimerKind::Unpark);
        }
        for l in leaves {
            self.apply_leave(l);
        }
    }

    fn apply_leave(&mut self, l: Leave) {
        if l.identity.id == self.identity.id {
            return;
        }
        let held = self
            .member(&l.identity.id)
            .filter(|v| v.identity == l.identity)
            .map(|v| v.state);
        if held == Some(MemberState::Down) {
            // Only the listing changes (see `down_to_left`).
            self.down_to_left(&l.identity);
            return;
        }
        if let Some(e) = self.native.as_mut() {
            e.mark_left(&l.identity, l.incarnation);
            self.drain_native();
            return;
        }
        if matches!(held, Some(MemberState::Alive | MemberState::Suspect)) {
            let _ = self.swim.apply_many(
                std::iter::once(Member::new(
                    l.identity.clone(),
                    swim::to_foca(l.incarnation),
                    State::Down,
                )),
                false,
                &mut self.io,
            );
            // The notification foca just queued is classified as a leave.
            self.drain_notifications();
        }
    }

    /// Records the incarnation of a Down verdict foca just applied, so that
    /// only a claim past it brings the member back (see `observe`).
    fn note_verdict(&mut self) {
        if let Some(v) = self.io.verdict.take()
            && v.applied
        {
            self.downs
                .insert(v.member.id.clone(), (v.member, v.incarnation));
        }
    }

    /// Brings the member view up to date with what foca reported.
    fn drain_notifications(&mut self) {
        for n in std::mem::take(&mut self.io.notes) {
            self.on_notification(n);
        }
        self.resize();
    }

    /// Recomputes the timing when the number of live members changed, and
    /// hands foca its part (memberlist likewise sizes its suspicion timeout,
    /// retransmit limit and push-pull interval from the current count).
    fn resize(&mut self) {
        let live = self.active_members() + 1;
        if live == self.timing.members {
            return;
        }
        let timing = self.config.timing(live);
        let foca_changed = timing.retransmits != self.timing.retransmits
            || timing.suspicion_window != self.timing.suspicion_window;
        self.timing = timing;
        if let Some(e) = self.native.as_mut() {
            e.set_timing(timing);
        } else if foca_changed {
            // Only sizes change, which foca accepts at any time.
            let _ = self.swim.set_config(self.config.foca(&timing));
        }
    }

    fn on_notification(&mut self, n: OwnedNotification<Identity>) {
        let now = self.io.now;
        // A member's suspicion ends when it goes up, down or is replaced.
        if let OwnedNotification::MemberUp(id)
        | OwnedNotification::MemberDown(id)
        | OwnedNotification::Rename(id, _) = &n
        {
            self.reported_down.remove(&id.id);
        }
        // The highest incarnation seen of this identity so far carries over.
        let seen = |node: &Node, id: &Identity| {
            node.members
                .get(&id.id)
                .filter(|v| v.identity == *id)
                .map_or(0, |v| v.incarnation)
        };
        match n {
            OwnedNotification::MemberUp(id) => {
                self.downs.remove(&id.id);
                let incarnation = seen(self, &id);
                self.members.insert(
                    id.id.clone(),
                    MemberView {
                        identity: id.clone(),
                        incarnation,
                        state: MemberState::Alive,
                        suspect_incarnation: None,
                        since: now,
                    },
                );
                self.events.push_back(Event::MemberUp(id));
            }
            OwnedNotification::MemberDown(id) => {
                let left = self
                    .shared
                    .lock()
                    .left
                    .get(&id.id)
                    .is_some_and(|g| *g >= id.generation);
                let state = if left {
                    MemberState::Left
                } else {
                    // The incarnation of this node's own verdict (see
                    // `note_verdict`); 0 for a Down learned otherwise.
                    let at = match self.downs.get(&id.id) {
                        Some((m, inc)) if *m == id => *inc,
                        _ => 0,
                    };
                    self.downs.insert(id.id.clone(), (id.clone(), at));
                    self.metrics.downs_declared += 1;
                    MemberState::Down
                };
                let incarnation = seen(self, &id);
                self.members.insert(
                    id.id.clone(),
                    MemberView {
                        identity: id.clone(),
                        incarnation,
                        state,
                        suspect_incarnation: None,
                        since: now,
                    },
                );
                self.events.push_back(if left {
                    Event::MemberLeft(id)
                } else {
                    Event::MemberDown(id)
                });
            }
            OwnedNotification::Rename(old, new) => {
                self.downs.remove(&old.id);
                if let Some(v) = self.members.get_mut(&new.id) {
                    v.identity = new.clone();
                    v.suspect_incarnation = None;
                    if v.state == MemberState::Suspect {
                        v.state = MemberState::Alive;
                    }
                    if matches!(v.state, MemberState::Alive) {
                        v.since = now;
                        self.events.push_back(Event::MemberUp(new));
                    }
                }
            }
            OwnedNotification::Active => self.became_active(),
            OwnedNotification::Idle => self.became_idle(),
            OwnedNotification::Rejoin(id) => {
                self.metrics.forced_rejoins += 1;
                self.identity = id.clone();
                self.io.self_incarnation = 0;
                self.events.push_back(Event::Rejoined(id));
            }
            OwnedNotification::Defunct => {
                self.events.push_back(Event::Defunct);
            }
            _ => {}
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("identity", &self.identity)
            .field("members", &self.views().count())
            .finish_non_exhaustive()
    }
}
