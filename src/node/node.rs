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
use super::lifeguard::{CheckEnd, Lifeguard};
use super::metrics::Metrics;
use super::swim::{self, GossipHandler, Io, Item, RosterCodec, Shared, SharedRef, Swim, TimerKind};
use super::timers::TimerTable;
use super::user_events::{self, EventError, EventLog, UserEvent};
use super::{Event, MemberCounts, MemberState, MemberView, Members, Now, Transmit};
use crate::node::wire::{
    self, Kind, Leave, MemberDigest, Message, SyncAnswer, SyncAsk, SyncDeltas, SyncFull, SyncReply,
    SyncRequest, Verify, VerifyAck, ViewFilter, WireError, WireState,
};

mod cluster_queries;
mod coords;
mod lifeguard;
mod membership;
mod meta;
mod native;
mod queries;
mod reap;
mod sync;

use crate::node::meta::engine::MetaCore;
pub use crate::node::meta::engine::MetaCounters;
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
    /// Lifeguard's memory on foca's path.
    lifeguard: Lifeguard,
    seeds: Vec<SocketAddr>,
    /// Seeds that answered a join request.
    answered_seeds: Vec<SocketAddr>,
    /// The member-list hash at the last catch-up round (see
    /// [`Node::start_catch_up`]).
    catch_up_hash: Option<u64>,
    joined: bool,
    join_retry_pending: bool,
    left: bool,
    events: VecDeque<Event>,
    metrics: Metrics,
    prescan_buf: Vec<Member<Identity>>,
    unpark_pending: bool,
    /// A [`TimerKind::UserEvents`] timer is armed.
    user_events_pending: bool,
    /// User events this life of the node has sent.
    events_sent: u64,
    /// Queries this life of the node has asked.
    queries_sent: u64,
    /// Queries this node asked, until their deadlines, by number.
    asked: BTreeMap<u64, crate::node::queries::Asked>,
    /// Queries this node may answer: where the asker listens, its relay
    /// factor and the deadline.
    answerable: BTreeMap<crate::node::queries::QueryId, (SocketAddr, u8, Duration)>,
    /// Network coordinates (when `config.coordinates`).
    coords: coords::Coords,
    /// The coordinates' own RNG, so that they change no other random
    /// choice of the node.
    coord_rng: rand::rngs::Xoshiro256PlusPlus,
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
        let shared = new_shared(&identity, &config, now);
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
        let io = new_io(&config, now);
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
            lifeguard: Lifeguard::default(),
            seeds: Vec::new(),
            answered_seeds: Vec::new(),
            catch_up_hash: None,
            joined: false,
            join_retry_pending: false,
            left: false,
            events: VecDeque::new(),
            metrics: Metrics::default(),
            prescan_buf: Vec::new(),
            unpark_pending: false,
            user_events_pending: false,
            events_sent: 0,
            queries_sent: 0,
            asked: BTreeMap::new(),
            answerable: BTreeMap::new(),
            coords: coords::Coords::default(),
            coord_rng: rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x636f_6f72_6473),
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
        self.lifeguard.heard(self.io.now);
        let r = self.route(msg, from, peer);
        self.after_swim();
        r
    }

    // One arm per message kind, each handing the message to the part of the
    // node that handles it: long because the kinds are many.
    fn route(
        &mut self,
        msg: Message,
        from: SocketAddr,
        peer: Option<&NodeId>,
    ) -> Result<(), InputError> {
        match msg {
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
            Message::SyncAsk(a) => {
                self.on_sync_ask(from, a);
                Ok(())
            }
            Message::SyncAnswer(a) => {
                self.on_sync_answer(from, a);
                Ok(())
            }
            Message::Member(p) => self.on_member(p, peer),
            Message::QueryResponse(r) => {
                self.on_query_response(r);
                Ok(())
            }
            Message::Coord(m) => {
                if self.config.coordinates {
                    self.on_coord(m);
                }
                Ok(())
            }
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
            m @ (Message::Raft(_)
            | Message::MetaRequest(_)
            | Message::MetaResponse(_)
            | Message::MetaPull(_)
            | Message::MetaPush(_)
            | Message::BootstrapAsk(_)
            | Message::BootstrapGrant(_)) => {
                self.on_meta_message(m);
                Ok(())
            }
        }
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

    /// Sends a user event to every live member, this node included (it
    /// arrives as [`Event::UserEvent`] here too). Returns the event as sent.
    pub fn send_event(
        &mut self,
        now: Now,
        name: &str,
        payload: &[u8],
    ) -> Result<UserEvent, EventError> {
        self.set_now(now);
        if self.left {
            return Err(EventError::Left);
        }
        user_events::validate(name, payload, self.config.max_event_bytes)?;
        self.events_sent += 1;
        let hlc = {
            let mut s = self.shared.lock();
            let wall_ms = s.wall_ms;
            s.hlc.now(wall_ms)
        };
        let event = UserEvent {
            sender: self.identity.id.clone(),
            generation: self.identity.generation,
            seq: self.events_sent,
            hlc,
            name: name.to_owned(),
            payload: payload.to_vec(),
        };
        // The handler delivers it here, then it is gossiped; the
        // configuration keeps every event small enough to piggyback.
        if let Some(bytes) = swim::encode_item(&Item::Event(event.clone())) {
            self.add_item(&bytes, None);
        }
        self.after_swim();
        Ok(event)
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

    // ----- internals -----

    fn set_now(&mut self, now: Now) {
        self.io.now = self.io.now.max(now.mono);
        let mut s = self.shared.lock();
        s.wall_ms = now.wall_ms;
        s.mono = self.io.now;
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
        if self.config.coordinates
            && let Ok((h, _)) = postcard::take_from_bytes::<foca::Header<Identity>>(packet)
        {
            self.coord_on_swim(&h.src, &h.dst, &h.message);
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
        for (id, inc, down) in self.lifeguard.take_gossiped() {
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

    // One arm per timer kind: long because the kinds are many, each arm
    // hands the timer to the part of the node that armed it.
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
                self.start_catch_up(round == CATCH_UP_SYNCS);
                if round < CATCH_UP_SYNCS {
                    let wait = self.config.gossip_interval * 2u32.pow(round);
                    self.io
                        .schedule(wait, TimerKind::CatchUpSync { round: round + 1 });
                }
            }
            TimerKind::QueryDeadline(seq) => self.query_deadline(seq),
            TimerKind::UserEvents => {
                self.user_events_pending = false;
                let wait = self.config.event_reorder_wait;
                let mut s = self.shared.lock();
                s.user_events.expire(self.io.now, wait);
                s.deliver_user_events();
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
}

/// The state a node shares with foca's gossip handler, empty.
fn new_shared(identity: &Identity, config: &Config, now: Now) -> SharedRef {
    SharedRef::new(Shared {
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
        // Events sent before this start are not replayed; the margin of one
        // drift bound keeps those sent after it by a member whose clock
        // lags (by less than the bound).
        seen_queries: Default::default(),
        queries_in: Vec::new(),
        user_events: EventLog::new(
            Hlc::new(
                now.wall_ms
                    .saturating_sub(config.max_drift.as_millis() as u64),
                0,
            ),
            config.max_event_bytes,
        ),
        mono: now.mono,
    })
}

/// The I/O state behind the membership engines: no timers, nothing queued.
fn new_io(config: &Config, now: Now) -> Io {
    Io {
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
        ping_sent: None,
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
