//! roster's own SWIM engine, with Lifeguard built in (the `native` engine,
//! [`crate::node::EngineKind::Native`]).
//!
//! It follows SWIM (Das, Gupta, Motivala 2002) and Lifeguard (Dadgar,
//! Phillips, Currey 2018) as memberlist ships them:
//!
//! - **Probing**: one member per probe period, round-robin over a shuffled
//!   order; no ack within `probe_rtt` and `k` relays are asked to probe
//!   indirectly while the prober pings the target once more itself (as
//!   memberlist's fallback probe does, here over the same datagram path);
//!   each relay that cannot reach the target either answers with a
//!   **nack**, which proves the asker's own path works. Either ack ends the
//!   probe.
//! - **The last direct probe**: before its verdict a node pings the
//!   suspected member once more, one probe timeout before the window ends,
//!   carrying the suspicion, so a member that is back refutes in time.
//! - **Local health** ([`awareness`]): a failed probe raises the score by
//!   the relays that did not nack (by one when no relay was asked), a
//!   refutation by one, a successful probe lowers it by one; the time a
//!   probe waits for indirect answers is scaled by `1 + score`.
//! - **Dynamic suspicion** ([`suspicion`]): a suspicion starts with a long
//!   window that shrinks as distinct members confirm it; new confirmations
//!   are gossiped on.
//! - **Buddy system**: a probe of a suspected member tells it so, and it
//!   refutes at once.
//! - **Refutable Down**: a member declared Down comes back with the same
//!   identity by proving a higher incarnation (32 bits); a member that
//!   hears from one it holds Down tells it so; a gossiped Down is adopted
//!   at once; Left is terminal for a generation.
//! - A compact [`table`]: rows in a vector, an ordered index from a
//!   member's key to its row, a dense list of active rows; nothing on the
//!   per-packet path scans it.
//!
//! Sans-IO like the rest of the core: time comes in with every call,
//! output is pulled ([`Engine::poll_transmit`], [`Engine::poll_event`],
//! [`Engine::poll_timeout`]), randomness comes from a seed.

pub(crate) mod awareness;
pub(crate) mod packet;
pub(crate) mod queue;
pub(crate) mod suspicion;
pub(crate) mod table;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use self::awareness::Awareness;
use self::packet::{Body, Update, WireState};
use self::queue::{Queue, Topic};
use self::suspicion::Suspicion;
use self::table::{Row, State, Table};
use super::config::{Config, Timing};
use super::identity::{Identity, NodeId};
use super::timers::TimerTable;
use super::{MemberState, MemberView};

/// One piece of piggybacked news.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum News {
    /// About a member.
    Member(Update),
    /// An application item (opaque here).
    Item(Vec<u8>),
}

/// A packet's fixed part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) from: Identity,
    pub(crate) incarnation: u32,
    pub(crate) body: Body,
}

/// What the engine reports to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EngineEvent {
    /// A member became active: new, back from Down, or a new generation.
    Up(Identity),
    /// A newer generation replaced `old`.
    Replaced { old: Identity, new: Identity },
    /// A member is suspected.
    Suspected { member: Identity, incarnation: u32 },
    /// A suspected member proved it is alive.
    Refuted(Identity),
    /// A member was declared (or is adopted as) Down.
    Down(Identity),
    /// A member left.
    Left(Identity),
    /// This node refuted a claim about itself; its new incarnation.
    SelfRefuted(u32),
    /// The first other member became active.
    Joined,
    /// No other member is active any more.
    Alone,
    /// An application item arrived.
    Item { bytes: Vec<u8>, from: Identity },
    /// A direct probe of `member` was answered after `rtt`.
    Rtt { member: Identity, rtt: Duration },
    /// `by` probed this node directly (it was answered).
    Probed(Identity),
}

/// The sender a packet claims, read without decoding the rest.
pub(crate) fn sender(packet: &[u8]) -> Option<NodeId> {
    postcard::take_from_bytes::<Header>(packet)
        .ok()
        .map(|(h, _)| h.from.id)
}

/// Why a packet was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EngineError {
    #[error("malformed member packet")]
    Malformed,
    #[error("the node has left")]
    Left,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct EngineCounters {
    pub(crate) probes_sent: u64,
    pub(crate) probe_failures: u64,
    pub(crate) nacks_received: u64,
    pub(crate) suspicions_raised: u64,
    pub(crate) confirmations: u64,
    pub(crate) suspicions_refuted: u64,
    pub(crate) self_refutations: u64,
    pub(crate) downs_declared: u64,
    pub(crate) downs_adopted: u64,
    pub(crate) downs_deferred: u64,
    pub(crate) final_checks: u64,
    pub(crate) told_down: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// Start the next probe.
    Probe,
    /// No direct ack for probe `seq` in time: ask relays.
    Direct(u32),
    /// Probe `seq`'s time is up.
    ProbeEnd(u32),
    /// A relayed probe got no ack: nack the asker.
    Relay(u32),
    /// A suspicion may have run out.
    Suspicion(Row),
    /// A gossip round.
    Gossip,
}

#[derive(Debug, Clone)]
struct Probe {
    seq: u32,
    row: Row,
    target: Identity,
    start: Duration,
    nacks: u32,
    relays: u32,
}

#[derive(Debug, Clone)]
struct Relayed {
    origin: SocketAddr,
    origin_seq: u32,
}

/// Bytes kept free in a packet for the news count.
const COUNT_BYTES: usize = 3;

/// The engine.
pub(crate) struct Engine {
    me: Identity,
    incarnation: u32,
    config: Config,
    timing: Timing,
    table: Table,
    suspicions: BTreeMap<Row, Suspicion>,
    awareness: Awareness,
    queue: Queue,
    rng: rand::rngs::Xoshiro256PlusPlus,
    timers: TimerTable<Timer>,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<EngineEvent>,
    now: Duration,
    probe: Option<Probe>,
    probe_scheduled: bool,
    relays: BTreeMap<u32, Relayed>,
    seq: u32,
    left: bool,
    /// When each member held Down was last told so (rate limit).
    told: BTreeMap<Row, Duration>,
    counters: EngineCounters,
    scratch: Vec<Row>,
    max_payload: usize,
    /// During a push-pull merge: members new to this node are not gossiped.
    quiet_inserts: bool,
}

/// A member state as a push-pull list carries it (`Left` never appears in
/// one).
fn wire_state(s: State) -> WireState {
    match s {
        State::Alive => WireState::Alive,
        State::Suspect => WireState::Suspect,
        State::Down => WireState::Down,
        State::Left => WireState::Left,
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("me", &self.me)
            .field("incarnation", &self.incarnation)
            .field("active", &self.table.active_len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine for `me`, alone; `max_payload` is the largest packet it may
    /// send (the datagram size less the envelope).
    pub(crate) fn new(
        me: Identity,
        config: &Config,
        seed: u64,
        now: Duration,
        max_payload: usize,
    ) -> Self {
        let mut e = Self {
            me,
            incarnation: 0,
            timing: config.timing(1),
            config: config.clone(),
            table: Table::default(),
            suspicions: BTreeMap::new(),
            awareness: Awareness::new(config.max_health_score),
            queue: Queue::default(),
            rng: rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed),
            timers: TimerTable::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            now,
            probe: None,
            probe_scheduled: false,
            relays: BTreeMap::new(),
            seq: 0,
            left: false,
            told: BTreeMap::new(),
            counters: EngineCounters::default(),
            scratch: Vec::new(),
            max_payload,
            quiet_inserts: false,
        };
        let first = e.config.probe_period.mul_f64(e.rng.random_range(0.0..1.0));
        e.schedule_probe(first);
        let g = e.config.gossip_interval;
        e.timers.insert(now + g, Timer::Gossip);
        e
    }

    // ----- queries -----

    pub(crate) fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// Active members (Alive or Suspect), this node excluded.
    pub(crate) fn num_active(&self) -> usize {
        self.table.active_len()
    }

    /// Local health score.
    pub(crate) fn health(&self) -> u8 {
        self.awareness.score()
    }

    pub(crate) fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// How many [`Engine::members`] gives, without passing over them.
    pub(crate) fn members_len(&self) -> usize {
        self.table.len()
    }

    /// Every member known, Down and Left ones included:
    /// `(identity, incarnation, state)`.
    pub(crate) fn members(&self) -> impl Iterator<Item = (&Identity, u32, State)> {
        self.table
            .iter()
            .map(|e| (&*e.identity, e.incarnation, e.state))
    }

    /// One member.
    pub(crate) fn member(&self, id: &NodeId) -> Option<(&Identity, u32, State)> {
        self.table
            .entry(id)
            .map(|e| (&*e.identity, e.incarnation, e.state))
    }

    /// Up to `k` distinct random active members for which `keep` holds,
    /// drawn with `rng`, in O(k) expected time.
    pub(crate) fn random_members(
        &self,
        k: usize,
        rng: &mut impl rand::Rng,
        keep: impl Fn(&Identity) -> bool,
    ) -> Vec<Identity> {
        let mut rows = Vec::with_capacity(k);
        self.table
            .random_active(k, rng, |_, e| keep(&e.identity), &mut rows);
        rows.into_iter()
            .map(|r| (*self.table.get(r).identity).clone())
            .collect()
    }

    /// One member as the node lists it.
    pub(crate) fn view(&self, id: &NodeId) -> Option<MemberView> {
        self.table.entry(id).and_then(table::Entry::view)
    }

    /// Every member the node lists, in row order (the order they were
    /// first heard of).
    pub(crate) fn views(&self) -> impl Iterator<Item = MemberView> + '_ {
        self.table.iter().filter_map(table::Entry::view)
    }

    /// The node's listing of `id` as `(identity, state)`, borrowed.
    pub(crate) fn listed_one(&self, id: &NodeId) -> Option<(&Identity, MemberState)> {
        let e = self.table.entry(id)?;
        e.listing.map(|l| (&*e.identity, l.state))
    }

    /// The version of what [`Engine::listed`] gives: while it stays the
    /// same, so does the listing.
    pub(crate) fn listed_version(&self) -> u64 {
        self.table.version()
    }

    /// Every member the node lists as `(identity, state, since)`, in row
    /// order, borrowed: no identity is copied.
    pub(crate) fn listed(&self) -> impl Iterator<Item = (&Identity, MemberState, Duration)> + '_ {
        self.table
            .iter()
            .filter_map(|e| e.listing.map(|l| (&*e.identity, l.state, l.since())))
    }

    /// The listed state of every member the node lists, in row order.
    pub(crate) fn states(&self) -> impl Iterator<Item = MemberState> + '_ {
        self.table.iter().filter_map(|e| e.listing.map(|l| l.state))
    }

    /// The node's listing of `id` (with the identity its row holds).
    pub(crate) fn listing_mut(
        &mut self,
        id: &NodeId,
    ) -> Option<(&Identity, &mut Option<table::Listing>)> {
        self.table.listing_mut(id)
    }

    /// Order-independent fingerprint of the active members and this node.
    pub(crate) fn fingerprint(&self) -> u64 {
        self.table.fingerprint() ^ table::member_print(&self.me, self.incarnation)
    }

    /// Sets the sizes that follow the live member count.
    pub(crate) fn set_timing(&mut self, timing: Timing) {
        self.timing = timing;
    }

    // ----- outputs -----

    pub(crate) fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        crate::node::pop_queue(&mut self.out)
    }

    pub(crate) fn poll_event(&mut self) -> Option<EngineEvent> {
        crate::node::pop_queue(&mut self.events)
    }

    pub(crate) fn poll_timeout(&self) -> Option<Duration> {
        if self.left {
            None
        } else {
            self.timers.next_deadline()
        }
    }

    // ----- inputs -----

    /// Fires every timer due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Duration) {
        self.now = self.now.max(now);
        while let Some(t) = self.timers.pop_due(self.now) {
            if self.left {
                return;
            }
            self.fire(t);
        }
    }

    /// Handles one packet (the envelope's payload).
    pub(crate) fn handle_packet(&mut self, now: Duration, bytes: &[u8]) -> Result<(), EngineError> {
        if self.left {
            return Err(EngineError::Left);
        }
        self.now = self.now.max(now);
        let (header, rest): (Header, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|_| EngineError::Malformed)?;
        let news: Vec<News> = postcard::from_bytes(rest).map_err(|_| EngineError::Malformed)?;
        if header.from.id == self.me.id {
            return Err(EngineError::Malformed);
        }
        self.heard_from(&header.from, header.incarnation);
        match header.body {
            Body::Ping {
                seq,
                target,
                suspected,
            } => {
                if target == self.me.id {
                    if suspected.is_some_and(|i| i >= self.incarnation) {
                        self.refute(suspected.unwrap_or(0));
                    }
                    self.send(header.from.addr, Body::Ack { seq });
                    self.events
                        .push_back(EngineEvent::Probed(header.from.clone()));
                }
            }
            Body::Ack { seq } => self.on_ack(seq, &header.from),
            Body::Nack { seq } => {
                if let Some(p) = &mut self.probe
                    && p.seq == seq
                {
                    p.nacks += 1;
                    self.counters.nacks_received += 1;
                }
            }
            Body::PingReq { seq, target } => self.relay(header.from.addr, seq, target),
            Body::Gossip => {}
        }
        for n in news {
            match n {
                News::Member(u) => self.on_update(u),
                News::Item(bytes) => self.events.push_back(EngineEvent::Item {
                    bytes,
                    from: header.from.clone(),
                }),
            }
        }
        Ok(())
    }

    /// Members learned by push-pull: `(identity, incarnation, state)`.
    /// Alive claims count as such; Suspect and Down ones only as suspicions
    /// raised by this node (memberlist merges remote state the same way: a
    /// stale Down in a peer's list must not take a live member down), Left
    /// as Left. Members new to this node are gossiped on only when
    /// `gossip_new` (a joining node's own introduction); the rest of a full
    /// view spreads by push-pull itself, and gossiping each of its members
    /// again would cost every node `n` updates per join.
    pub(crate) fn merge(
        &mut self,
        now: Duration,
        list: impl IntoIterator<Item = (Identity, u32, WireState)>,
        gossip_new: bool,
    ) {
        self.now = self.now.max(now);
        self.quiet_inserts = !gossip_new;
        for (id, incarnation, state) in list {
            self.take_claim(id, incarnation, state);
        }
        self.quiet_inserts = false;
    }

    /// One push-pull claim, as [`Engine::merge`] takes it: a remote Suspect
    /// or Down is a suspicion raised by this node.
    fn take_claim(&mut self, member: Identity, incarnation: u32, claimed: WireState) {
        let state = match claimed {
            WireState::Down => WireState::Suspect,
            s => s,
        };
        let by = (state == WireState::Suspect).then(|| self.me.id.clone());
        self.on_update(Update {
            member,
            incarnation,
            state,
            by,
        });
    }

    /// [`Engine::merge`] of a peer's member list, borrowed, that also
    /// remembers which members the peer holds exactly as this node does
    /// after the merge (same identity, incarnation and state): what
    /// [`Engine::unlike`] leaves out. A claim that changes nothing (the
    /// member Alive or Down here already, as claimed) costs one lookup.
    /// Returns whether the list holds this node as it is now.
    pub(crate) fn merge_marked<'a>(
        &mut self,
        now: Duration,
        list: impl IntoIterator<Item = (&'a Identity, u32, WireState)>,
    ) -> bool {
        self.now = self.now.max(now);
        self.table.new_mark();
        self.quiet_inserts = true;
        let mut me_held = false;
        for (id, incarnation, claimed) in list {
            if id.id == self.me.id {
                self.take_claim(id.clone(), incarnation, claimed);
                me_held = *id == self.me
                    && incarnation == self.incarnation
                    && claimed == WireState::Alive;
                continue;
            }
            let same = |t: &Table| {
                let r = t.find(&id.id)?;
                let e = t.get(r);
                (*e.identity == *id
                    && e.incarnation == incarnation
                    && wire_state(e.state) == claimed)
                    .then_some(r)
            };
            if let Some(r) = same(&self.table) {
                self.table.set_mark(r);
                // A Suspect claim still counts as this node's confirmation
                // (as in `merge`); the row does not change.
                if claimed != WireState::Suspect {
                    continue;
                }
            }
            self.take_claim(id.clone(), incarnation, claimed);
            if let Some(r) = same(&self.table) {
                self.table.set_mark(r);
            }
        }
        self.quiet_inserts = false;
        me_held
    }

    /// The members, Left ones aside, that the peer whose list the last
    /// [`Engine::merge_marked`] merged does not hold exactly so, in row
    /// order.
    pub(crate) fn unlike(&self) -> impl Iterator<Item = (&Identity, u32, State)> {
        self.table
            .unmarked()
            .filter(|e| e.state != State::Left)
            .map(|e| (&*e.identity, e.incarnation, e.state))
    }

    /// Queues an application item (`slot`: a newer item with the same slot
    /// replaces it) to piggyback.
    pub(crate) fn push_item(&mut self, slot: [u64; 2], bytes: &[u8]) {
        if let Ok(b) = postcard::to_allocvec(&News::Item(bytes.to_vec())) {
            self.queue.push(Topic::Item(slot), b);
        }
    }

    /// `member` left gracefully (learned from the application's leave item).
    pub(crate) fn mark_left(&mut self, member: &Identity, incarnation: u32) {
        let Some(row) = self.table.find(&member.id) else {
            return;
        };
        let e = self.table.get(row);
        if *e.identity != *member || e.state == State::Left {
            return;
        }
        let inc = e.incarnation.max(incarnation);
        self.suspicions.remove(&row);
        self.table.update(row, inc, State::Left);
        self.events.push_back(EngineEvent::Left(member.clone()));
        self.after_change(false);
    }

    /// Leaves: tells `fanout` members at once and stops.
    pub(crate) fn leave(&mut self, now: Duration, fanout: usize) {
        self.now = self.now.max(now);
        let u = Update {
            member: self.me.clone(),
            incarnation: self.incarnation,
            state: WireState::Left,
            by: None,
        };
        self.gossip_update(u);
        let mut rows = std::mem::take(&mut self.scratch);
        self.table
            .random_active(fanout, &mut self.rng, |_, _| true, &mut rows);
        for &r in &rows {
            let addr = self.table.get(r).identity.addr;
            self.send(addr, Body::Gossip);
        }
        self.scratch = rows;
        self.left = true;
    }

    // ----- internals -----

    fn schedule_probe(&mut self, after: Duration) {
        if !self.probe_scheduled {
            self.probe_scheduled = true;
            self.timers.insert(self.now + after, Timer::Probe);
        }
    }

    fn fire(&mut self, t: Timer) {
        match t {
            Timer::Probe => {
                self.probe_scheduled = false;
                if self.probe.is_none() {
                    self.start_probe();
                }
            }
            Timer::Direct(seq) => self.indirect(seq),
            Timer::ProbeEnd(seq) => self.end_probe(seq),
            Timer::Relay(seq) => {
                if let Some(r) = self.relays.remove(&seq) {
                    self.send(r.origin, Body::Nack { seq: r.origin_seq });
                }
            }
            Timer::Suspicion(row) => self.suspicion_timeout(row),
            Timer::Gossip => {
                let g = self.config.gossip_interval;
                self.timers.insert(self.now + g, Timer::Gossip);
                self.gossip_round();
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn start_probe(&mut self) {
        let period = self.config.probe_period;
        let Some(row) = self.table.next_probe(&mut self.rng) else {
            self.schedule_probe(period);
            return;
        };
        let seq = self.next_seq();
        let e = self.table.get(row);
        let target = (*e.identity).clone();
        let suspected = (e.state == State::Suspect).then_some(e.incarnation);
        self.counters.probes_sent += 1;
        self.ping(&target, seq, suspected);
        self.probe = Some(Probe {
            seq,
            row,
            target,
            start: self.now,
            nacks: 0,
            relays: 0,
        });
        let rtt = self.config.probe_rtt;
        self.timers.insert(self.now + rtt, Timer::Direct(seq));
        let end = self.awareness.scale(period);
        self.timers.insert(self.now + end, Timer::ProbeEnd(seq));
    }

    fn on_ack(&mut self, seq: u32, from: &Identity) {
        if let Some(p) = &self.probe
            && p.seq == seq
        {
            let start = p.start;
            // A round trip only from the target's own answer to the first
            // ping (not through relays, not to the second ping).
            if p.target == *from && p.relays == 0 {
                let rtt = self.now.saturating_sub(start);
                self.events.push_back(EngineEvent::Rtt {
                    member: from.clone(),
                    rtt,
                });
            }
            self.probe = None;
            self.awareness.apply(-1);
            let next = (start + self.config.probe_period).saturating_sub(self.now);
            self.schedule_probe(next);
            return;
        }
        if let Some(r) = self.relays.remove(&seq) {
            self.send(r.origin, Body::Ack { seq: r.origin_seq });
        }
    }

    /// No direct ack: ask `num_indirect_probes` other Alive members, and
    /// ping the target once more (same sequence number: either ack ends the
    /// probe). A single lost datagram on the direct path then no longer
    /// decides a suspicion by itself.
    fn indirect(&mut self, seq: u32) {
        let Some(p) = &self.probe else { return };
        if p.seq != seq {
            return;
        }
        let (row, target) = (p.row, p.target.clone());
        let suspected = {
            let e = self.table.get(row);
            (*e.identity == target && e.state == State::Suspect).then_some(e.incarnation)
        };
        self.counters.probes_sent += 1;
        self.ping(&target, seq, suspected);
        let mut rows = std::mem::take(&mut self.scratch);
        let k = self.config.num_indirect_probes.get();
        self.table.random_active(
            k,
            &mut self.rng,
            |r, e| r != row && e.state == State::Alive,
            &mut rows,
        );
        for &r in &rows {
            let addr = self.table.get(r).identity.addr;
            self.counters.probes_sent += 1;
            self.send(
                addr,
                Body::PingReq {
                    seq,
                    target: target.clone(),
                },
            );
        }
        if let Some(p) = &mut self.probe {
            p.relays = rows.len() as u32;
        }
        self.scratch = rows;
    }

    fn end_probe(&mut self, seq: u32) {
        let Some(p) = self.probe.take_if(|p| p.seq == seq) else {
            return;
        };
        self.counters.probe_failures += 1;
        // Lifeguard: relays that answered with a nack prove this node's own
        // path works; each one that stayed silent counts against it.
        let delta = if p.relays > 0 {
            (p.relays - p.nacks.min(p.relays)) as i32
        } else {
            1
        };
        self.awareness.apply(delta);
        let e = self.table.get(p.row);
        if *e.identity == p.target && e.state.is_active() {
            let u = Update {
                member: p.target.clone(),
                incarnation: e.incarnation,
                state: WireState::Suspect,
                by: Some(self.me.id.clone()),
            };
            self.on_update(u);
        }
        let next = (p.start + self.config.probe_period).saturating_sub(self.now);
        self.schedule_probe(next);
    }

    /// Probes `target` for `origin`; nacks if no ack comes back within 80%
    /// of the probe timeout (Lifeguard §IV-A: early enough to reach the
    /// asker before its own wait ends).
    fn relay(&mut self, origin: SocketAddr, origin_seq: u32, target: Identity) {
        if target.id == self.me.id {
            self.send(origin, Body::Ack { seq: origin_seq });
            return;
        }
        let seq = self.next_seq();
        let suspected = self
            .table
            .entry(&target.id)
            .filter(|e| e.state == State::Suspect)
            .map(|e| e.incarnation);
        self.ping(&target, seq, suspected);
        self.relays.insert(seq, Relayed { origin, origin_seq });
        let wait = self.config.probe_rtt.mul_f64(0.8);
        self.timers.insert(self.now + wait, Timer::Relay(seq));
    }

    /// A packet came from `from` at `incarnation`: it is alive at least at
    /// that incarnation.
    fn heard_from(&mut self, from: &Identity, incarnation: u32) {
        if let Some(row) = self.table.find(&from.id) {
            let e = self.table.get(row);
            if e.identity.generation > from.generation
                || (*e.identity == *from && e.state == State::Left)
            {
                return;
            }
            if *e.identity == *from && e.state == State::Down && incarnation <= e.incarnation {
                // It does not know it was declared Down: tell it, at most
                // once per probe period, so it refutes.
                let due = self
                    .told
                    .get(&row)
                    .is_none_or(|t| self.now >= *t + self.config.probe_period);
                if due {
                    self.told.insert(row, self.now);
                    self.counters.told_down += 1;
                    let u = Update {
                        member: from.clone(),
                        incarnation: e.incarnation,
                        state: WireState::Down,
                        by: Some(self.me.id.clone()),
                    };
                    self.send_with(from.addr, Body::Gossip, Some(u));
                }
                return;
            }
        }
        self.on_update(Update {
            member: from.clone(),
            incarnation,
            state: WireState::Alive,
            by: None,
        });
    }

    /// Applies one claim (SWIM §4.2 with Lifeguard).
    fn on_update(&mut self, u: Update) {
        if u.member.id == self.me.id {
            self.about_me(&u);
            return;
        }
        let row = match self.table.find(&u.member.id) {
            None => {
                // Only a live member is worth adding.
                if u.state != WireState::Alive {
                    return;
                }
                self.table
                    .insert(u.member.clone(), u.incarnation, State::Alive, &mut self.rng);
                self.events.push_back(EngineEvent::Up(u.member.clone()));
                if !self.quiet_inserts {
                    self.gossip_update(u);
                }
                self.after_change(true);
                return;
            }
            Some(r) => r,
        };
        let e = self.table.get(row);
        if u.member.generation != e.identity.generation {
            if u.member.generation < e.identity.generation || u.state != WireState::Alive {
                return;
            }
            // A newer generation of the node replaces the old one.
            let old = (*e.identity).clone();
            self.suspicions.remove(&row);
            self.told.remove(&row);
            self.table
                .insert(u.member.clone(), u.incarnation, State::Alive, &mut self.rng);
            self.events.push_back(EngineEvent::Replaced {
                old,
                new: u.member.clone(),
            });
            self.events.push_back(EngineEvent::Up(u.member.clone()));
            self.gossip_update(u);
            self.after_change(true);
            return;
        }
        let (state, inc) = (e.state, e.incarnation);
        match u.state {
            WireState::Alive => {
                if u.incarnation <= inc || state == State::Left {
                    return;
                }
                self.suspicions.remove(&row);
                self.told.remove(&row);
                self.table.update(row, u.incarnation, State::Alive);
                match state {
                    State::Suspect => {
                        self.counters.suspicions_refuted += 1;
                        self.events
                            .push_back(EngineEvent::Refuted(u.member.clone()));
                    }
                    State::Down => self.events.push_back(EngineEvent::Up(u.member.clone())),
                    _ => {}
                }
                self.gossip_update(u);
                self.after_change(state == State::Down);
            }
            WireState::Suspect => {
                if u.incarnation < inc || !state.is_active() {
                    return;
                }
                let by = u.by.clone().unwrap_or_else(|| u.member.id.clone());
                if state == State::Suspect {
                    if u.incarnation > inc {
                        self.table.update(row, u.incarnation, State::Suspect);
                    }
                    let Some(s) = self.suspicions.get_mut(&row) else {
                        return;
                    };
                    if s.confirm(by.key()) {
                        self.counters.confirmations += 1;
                        let wake = s.next_wake();
                        self.timers.insert(wake, Timer::Suspicion(row));
                        // Lifeguard: a new confirmation is news to others.
                        self.gossip_update(u);
                    }
                    return;
                }
                self.counters.suspicions_raised += 1;
                self.table.update(row, u.incarnation, State::Suspect);
                let (min, max, k) = self.suspicion_bounds();
                let s = Suspicion::new(by.key(), k, (min, max), self.config.probe_rtt, self.now);
                let wake = s.next_wake();
                self.suspicions.insert(row, s);
                self.timers.insert(wake, Timer::Suspicion(row));
                self.events.push_back(EngineEvent::Suspected {
                    member: u.member.clone(),
                    incarnation: u.incarnation,
                });
                self.gossip_update(u);
            }
            WireState::Down => {
                if u.incarnation < inc || !state.is_active() {
                    return;
                }
                // Another member's verdict: adopted at once (memberlist).
                self.counters.downs_adopted += 1;
                self.declare_down(row, u.incarnation, u.by);
            }
            WireState::Left => {
                if state == State::Left {
                    return;
                }
                self.suspicions.remove(&row);
                self.table.update(row, inc.max(u.incarnation), State::Left);
                self.events.push_back(EngineEvent::Left(u.member.clone()));
                self.gossip_update(u);
                self.after_change(false);
            }
        }
    }

    /// A claim about this node: anything but Alive at its own incarnation
    /// (or lower) is refuted.
    fn about_me(&mut self, u: &Update) {
        if u.member.generation != self.me.generation {
            return;
        }
        let refute = match u.state {
            WireState::Alive => u.incarnation > self.incarnation,
            WireState::Suspect | WireState::Down => u.incarnation >= self.incarnation,
            WireState::Left => !self.left,
        };
        if refute {
            self.refute(u.incarnation);
        }
    }

    /// Raises this node's incarnation past `accused` and gossips it
    /// (Lifeguard: being accused counts against local health).
    fn refute(&mut self, accused: u32) {
        self.incarnation = self
            .incarnation
            .saturating_add(1)
            .max(accused.saturating_add(1));
        self.awareness.apply(1);
        self.counters.self_refutations += 1;
        self.events
            .push_back(EngineEvent::SelfRefuted(self.incarnation));
        let u = Update {
            member: self.me.clone(),
            incarnation: self.incarnation,
            state: WireState::Alive,
            by: None,
        };
        self.gossip_update(u);
    }

    /// `(min, max, k)` for a new suspicion: the window starts at `max` and
    /// reaches `min` with `k` confirmations (none expected in a cluster
    /// too small to give them).
    fn suspicion_bounds(&self) -> (Duration, Duration, u32) {
        let min = self.timing.suspicion_min;
        let max = self.timing.suspicion_max;
        let k = u32::from(self.config.suspicion_confirmations);
        let others = self.timing.members.saturating_sub(2) as u32;
        (min, max, if others < k { 0 } else { k })
    }

    fn suspicion_timeout(&mut self, row: Row) {
        let Some(s) = self.suspicions.get(&row) else {
            return;
        };
        // A stale timer (the wake moved, then this one).
        if self.now < s.next_wake() {
            return;
        }
        let checked = s.checked_at.is_some();
        let e = self.table.get(row);
        if e.state != State::Suspect {
            self.suspicions.remove(&row);
            return;
        }
        if self.awareness.score() > self.config.judge_max_health {
            // Lifeguard, as roster's foca layer applies it: a node whose own
            // probes fail does not trust its own evidence. It waits a
            // scaled probe period and looks again, with a fresh last probe;
            // meanwhile a refutation or another member's Down settles it.
            self.counters.downs_deferred += 1;
            let wait = self.awareness.scale(self.config.probe_period);
            if let Some(s) = self.suspicions.get_mut(&row) {
                s.checked_at = None;
            }
            self.timers.insert(self.now + wait, Timer::Suspicion(row));
            return;
        }
        let inc = e.incarnation;
        if !checked {
            // A last direct probe, carrying the suspicion, one probe timeout
            // before the verdict: a member that is back (a healed link, the
            // end of a pause) refutes on the spot instead of being declared
            // Down on evidence from before. Unless the refutation comes, the
            // verdict stands when the window ends.
            let target = (*e.identity).clone();
            let Some(s) = self.suspicions.get_mut(&row) else {
                return;
            };
            s.checked_at = Some(self.now);
            let wake = s.next_wake();
            let seq = self.next_seq();
            self.counters.final_checks += 1;
            self.ping(&target, seq, Some(inc));
            self.timers.insert(wake, Timer::Suspicion(row));
            return;
        }
        self.counters.downs_declared += 1;
        self.declare_down(row, inc, Some(self.me.id.clone()));
    }

    fn declare_down(&mut self, row: Row, incarnation: u32, by: Option<NodeId>) {
        self.suspicions.remove(&row);
        let id = (*self.table.get(row).identity).clone();
        self.table.update(row, incarnation, State::Down);
        self.events.push_back(EngineEvent::Down(id.clone()));
        self.gossip_update(Update {
            member: id,
            incarnation,
            state: WireState::Down,
            by,
        });
        self.after_change(false);
    }

    /// After a member became active (`up`) or inactive: reports joining or
    /// being alone.
    fn after_change(&mut self, up: bool) {
        let n = self.table.active_len();
        if up && n == 1 {
            self.events.push_back(EngineEvent::Joined);
        } else if !up && n == 0 {
            self.events.push_back(EngineEvent::Alone);
        }
    }

    fn gossip_update(&mut self, u: Update) {
        let topic = Topic::Member(u.member.id.key());
        if let Ok(b) = postcard::to_allocvec(&News::Member(u)) {
            self.queue.push(topic, b);
        }
    }

    /// A gossip round: news to `gossip_fanout` random active members.
    fn gossip_round(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let mut rows = std::mem::take(&mut self.scratch);
        let k = self.config.gossip_fanout.get();
        self.table
            .random_active(k, &mut self.rng, |_, _| true, &mut rows);
        for &r in &rows {
            if self.queue.is_empty() {
                break;
            }
            let addr = self.table.get(r).identity.addr;
            self.send(addr, Body::Gossip);
        }
        self.scratch = rows;
    }

    /// A ping to `target`; `suspected`: the incarnation this node suspects it
    /// at, so it refutes at once (Lifeguard's buddy system).
    fn ping(&mut self, target: &Identity, seq: u32, suspected: Option<u32>) {
        self.send(
            target.addr,
            Body::Ping {
                seq,
                target: target.id.clone(),
                suspected,
            },
        );
    }

    fn send(&mut self, to: SocketAddr, body: Body) {
        self.send_with(to, body, None);
    }

    /// Encodes and queues a packet to `to`: the header, `first` if given,
    /// then as much queued news as fits.
    fn send_with(&mut self, to: SocketAddr, body: Body, first: Option<Update>) {
        let header = Header {
            from: self.me.clone(),
            incarnation: self.incarnation,
            body,
        };
        let Ok(mut bytes) = postcard::to_allocvec(&header) else {
            return;
        };
        let mut news = Vec::new();
        let mut count = 0usize;
        if let Some(u) = first
            && let Ok(b) = postcard::to_allocvec(&News::Member(u))
        {
            news.extend_from_slice(&b);
            count += 1;
        }
        let room = self
            .max_payload
            .saturating_sub(bytes.len() + news.len() + COUNT_BYTES);
        let limit = u32::from(self.timing.retransmits.get());
        count += self.queue.fill(&mut news, room, limit);
        // postcard's sequence length: a varint.
        let mut c = count;
        loop {
            let b = (c & 0x7f) as u8;
            c >>= 7;
            if c == 0 {
                bytes.push(b);
                break;
            }
            bytes.push(b | 0x80);
        }
        bytes.extend_from_slice(&news);
        self.out.push_back((to, bytes));
    }
}
