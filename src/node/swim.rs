//! Glue between roster and foca: the codec, the custom-broadcast handler
//! that carries state deltas and leaves, and the runtime adapter that turns
//! foca's callbacks into transmits, timers and notifications.
//!
//! The Lifeguard pieces that live here:
//! - [`RosterCodec`] reads a gossiped `Down` as `Suspect`, which foca would
//!   otherwise make terminal: a healthy node runs its own final check at once
//!   instead of adopting the verdict; a node too unhealthy to judge adopts it
//!   only once its own suspicion has run out.
//! - [`Io`] scales the probe timers by the local health score and routes
//!   foca's suspicion timers through roster's final check.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BufMut};
use foca::{Codec, Header, Member, Notification, OwnedNotification, PostcardCodec, State, Timer};
use serde::{Deserialize, Serialize};

use super::delta::{Delta, StateStore};
use super::hlc::HlcClock;
use super::identity::{Generation, Identity, Incarnation, NodeId};
use super::queries::{Query, QueryId, SeenQueries};
use super::timers::TimerTable;
use super::user_events::{Arrival, EventLog, UserEvent};
use super::{Event, Transmit};
use crate::node::wire::{self, Kind, Leave};

/// The foca instance roster drives.
pub(crate) type Swim =
    foca::Foca<Identity, RosterCodec, rand::rngs::Xoshiro256PlusPlus, GossipHandler>;

/// foca's postcard codec, except that with Lifeguard on a received `Down`
/// update is read as `Suspect` (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RosterCodec {
    pub(crate) lifeguard: bool,
}

impl Codec<Identity> for RosterCodec {
    type Error = postcard::Error;

    fn encode_header(&mut self, h: &Header<Identity>, buf: impl BufMut) -> Result<(), Self::Error> {
        PostcardCodec.encode_header(h, buf)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<Identity>, Self::Error> {
        PostcardCodec.decode_header(buf)
    }

    fn encode_member(&mut self, m: &Member<Identity>, buf: impl BufMut) -> Result<(), Self::Error> {
        PostcardCodec.encode_member(m, buf)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<Member<Identity>, Self::Error> {
        let m: Member<Identity> = PostcardCodec.decode_member(buf)?;
        Ok(if self.lifeguard && m.state() == State::Down {
            Member::new(m.id().clone(), m.incarnation(), State::Suspect)
        } else {
            m
        })
    }
}

/// What a SWIM packet says, read before foca sees it.
pub(crate) struct Prescan {
    pub(crate) header: Header<Identity>,
    pub(crate) updates: Vec<Member<Identity>>,
}

/// Decodes a foca packet's header and membership updates (as foca lays
/// them out: header, `u16` count, members). `None` when it does not parse;
/// foca then refuses the packet itself.
pub(crate) fn prescan(packet: &[u8], updates: Vec<Member<Identity>>) -> Option<Prescan> {
    let mut updates = updates;
    updates.clear();
    let (header, mut rest): (Header<Identity>, &[u8]) = postcard::take_from_bytes(packet).ok()?;
    if rest.len() >= 2 && header.message != foca::Message::Broadcast {
        let n = u16::from_be_bytes([rest[0], rest[1]]);
        rest = &rest[2..];
        for _ in 0..n {
            let (m, r): (Member<Identity>, &[u8]) = postcard::take_from_bytes(rest).ok()?;
            updates.push(m);
            rest = r;
        }
    }
    Some(Prescan { header, updates })
}

/// Items carried as foca custom broadcasts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Item {
    /// A state write.
    Delta(Delta),
    /// A graceful leave.
    Left(Leave),
    /// A user event.
    Event(UserEvent),
    /// A query.
    Query(Query),
}

/// Dissemination key: a newer item for the same thing replaces an older one
/// in foca's backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemKey {
    Delta {
        owner: NodeId,
        key: String,
        hlc: super::hlc::Hlc,
    },
    Left {
        id: NodeId,
        generation: Generation,
    },
    Event {
        sender: NodeId,
        generation: Generation,
        seq: u64,
    },
    Query(QueryId),
}

impl foca::Invalidates for ItemKey {
    fn invalidates(&self, other: &Self) -> bool {
        match (self, other) {
            (
                ItemKey::Delta { owner, key, hlc },
                ItemKey::Delta {
                    owner: o2,
                    key: k2,
                    hlc: h2,
                },
            ) => owner == o2 && key == k2 && hlc >= h2,
            (
                ItemKey::Left { id, generation },
                ItemKey::Left {
                    id: i2,
                    generation: g2,
                },
            ) => id == i2 && generation >= g2,
            // Every event is news of its own: only a copy replaces it.
            (a @ ItemKey::Event { .. }, b @ ItemKey::Event { .. }) => a == b,
            (ItemKey::Query(a), ItemKey::Query(b)) => a == b,
            _ => false,
        }
    }
}

/// Counters kept by the parts foca drives.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SharedCounters {
    pub(crate) drift_rejections: u64,
    pub(crate) invalid_items: u64,
    /// Writes to this node's own keys that it did not make, stamped in
    /// this life: overwritten with the true value.
    pub(crate) forgeries_refuted: u64,
    /// Entries of this node from an earlier life (before this start),
    /// retired with a tombstone or the current value.
    pub(crate) stale_own_retired: u64,
}

/// State the broadcast handler (owned by foca) shares with the node.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: StateStore,
    pub(crate) hlc: HlcClock,
    pub(crate) wall_ms: u64,
    pub(crate) events: VecDeque<Event>,
    /// Leaves learned from broadcasts, for the node to apply.
    pub(crate) pending_leaves: Vec<Leave>,
    /// Newest generation known to have left, per node.
    pub(crate) left: std::collections::BTreeMap<NodeId, Generation>,
    pub(crate) counters: SharedCounters,
    /// Remote deltas refused for drift, kept until the local wall clock
    /// has caught up with their stamp (at most [`MAX_PARKED`]).
    pub(crate) parked: Vec<Delta>,
    /// This node's id: deltas for its keys are its own to make.
    pub(crate) me: NodeId,
    /// Wall clock at this start: own stamps below it are from an earlier life.
    pub(crate) boot_wall_ms: u64,
    /// Set while the node merges a write it made itself.
    pub(crate) authoring: bool,
    /// The peer whose push-pull deltas are being merged (set only by
    /// `merge_deltas`: the engine's handler does not learn it).
    pub(crate) relay: Option<NodeId>,
    /// Own keys to write again with a fresh stamp (a write made elsewhere
    /// was seen), in key order.
    pub(crate) reassert: std::collections::BTreeSet<String>,
    /// Peers hold this node's metadata advert from an earlier life saying
    /// it was a voter: if its Raft log is empty now, it lost it.
    pub(crate) was_voter: bool,
    /// A push-pull reply from a peer has been merged since this start (so
    /// an earlier life's advert, if any peer held it, has been seen).
    pub(crate) synced: bool,
    /// The user events seen, delivered in order per sender.
    pub(crate) user_events: EventLog,
    /// Monotonic time of the node's current input.
    pub(crate) mono: Duration,
    /// The queries seen, until their deadlines.
    pub(crate) seen_queries: SeenQueries,
    /// Queries that arrived, for the node to take.
    pub(crate) queries_in: Vec<Query>,
}

/// Most deltas parked for drift at once; past it they wait for push-pull.
pub(crate) const MAX_PARKED: usize = 1024;

impl Shared {
    /// Parked deltas whose stamps are now within `max_drift` of the wall
    /// clock; the rest stay parked.
    pub(crate) fn unpark_ready(&mut self, max_drift_ms: u64) -> Vec<Delta> {
        let limit = self.wall_ms.saturating_add(max_drift_ms);
        let (ready, wait) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|d| d.hlc.wall_ms() <= limit);
        self.parked = wait;
        ready
    }

    /// Merges a remote delta: refused (counted, and parked) if its stamp is
    /// too far ahead, else merged by LWW. `true` when it was new
    /// information.
    pub(crate) fn merge_remote(&mut self, d: &Delta, from: Option<&NodeId>) -> bool {
        self.check_drift(d) && self.merge(d, from)
    }

    /// Feeds a remote stamp to the HLC; `false` (counted, clock unchanged)
    /// when it is too far ahead.
    pub(crate) fn check_drift(&mut self, d: &Delta) -> bool {
        match self.hlc.update(d.hlc, self.wall_ms) {
            Ok(_) => true,
            Err(e) => {
                self.counters.drift_rejections += 1;
                self.events.push_back(Event::HlcDriftRejected {
                    owner: d.owner.clone(),
                    ahead_ms: e.ahead_ms,
                });
                // Not lost: parked until this clock has caught up with it.
                if self.parked.len() < MAX_PARKED {
                    self.parked.push(d.clone());
                }
                false
            }
        }
    }

    /// Merges a delta (its stamp already fed to the clock). A delta for one
    /// of this node's own keys that it did not write is not taken; if it
    /// would have won over the stored entry and is valid, the key is queued
    /// to be written again with a newer stamp (see [`Shared::reassert`]).
    pub(crate) fn merge(&mut self, d: &Delta, from: Option<&NodeId>) -> bool {
        if d.owner == self.me && !self.authoring {
            self.own_key_written_elsewhere(d, from);
            return false;
        }
        match self.store.merge(d) {
            Ok(true) => {
                self.events.push_back(Event::StateChanged {
                    owner: d.owner.clone(),
                    key: d.key.clone(),
                    value: d.value.clone(),
                    hlc: d.hlc,
                });
                true
            }
            Ok(false) => false,
            Err(_) => {
                self.counters.invalid_items += 1;
                false
            }
        }
    }
}

impl Shared {
    /// Hands the user events ready for delivery to the application.
    pub(crate) fn deliver_user_events(&mut self) {
        for e in self.user_events.take_ready() {
            self.events.push_back(Event::UserEvent(e));
        }
    }

    /// Owner authority: only this node writes its keys. A delta that would
    /// change one of them came from elsewhere — a forgery when stamped in
    /// this life, an echo of an earlier life's state otherwise — and the
    /// key is written again, so the newer true value (or tombstone)
    /// replaces it everywhere as that fresh write spreads.
    fn own_key_written_elsewhere(&mut self, d: &Delta, from: Option<&NodeId>) {
        let newer = match self.store.entry(&self.me, &d.key) {
            Some(e) => super::delta::wins(d.hlc, &d.value, e),
            None => true,
        };
        if !newer {
            return;
        }
        if self.store.validate(&d.key, d.value.as_deref()).is_err() {
            self.counters.invalid_items += 1;
            return;
        }
        if d.hlc.wall_ms() < self.boot_wall_ms {
            self.counters.stale_own_retired += 1;
            if d.key == super::meta::ADVERT_KEY
                && d.value
                    .as_deref()
                    .and_then(super::meta::Advert::decode)
                    .is_some_and(|a| a.voter)
            {
                self.was_voter = true;
            }
        } else {
            self.counters.forgeries_refuted += 1;
            let from = from.or(self.relay.as_ref()).cloned();
            self.events.push_back(Event::StateForgeryRefuted {
                key: d.key.clone(),
                from,
                hlc: d.hlc,
            });
        }
        self.reassert.insert(d.key.clone());
    }
}

/// Handle on [`Shared`].
#[derive(Debug, Clone)]
pub(crate) struct SharedRef(Arc<Mutex<Shared>>);

impl SharedRef {
    pub(crate) fn new(s: Shared) -> Self {
        Self(Arc::new(Mutex::new(s)))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock would be a bug elsewhere; the data
        // is still consistent (every update is a single merge), so go on.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A custom broadcast that did not decode.
#[derive(Debug, thiserror::Error)]
#[error("malformed broadcast item: {0}")]
pub(crate) struct ItemError(postcard::Error);

/// foca's custom-broadcast handler: deltas and leaves.
pub(crate) struct GossipHandler {
    pub(crate) shared: SharedRef,
}

impl foca::BroadcastHandler<Identity> for GossipHandler {
    type Key = ItemKey;
    type Error = ItemError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&Identity>,
    ) -> Result<Option<ItemKey>, ItemError> {
        let item: Item = postcard::from_bytes(data).map_err(ItemError)?;
        let mut s = self.shared.lock();
        Ok(match item {
            Item::Delta(d) => {
                // Local writes were stamped by this clock already.
                let new = match sender {
                    Some(from) => s.merge_remote(&d, Some(&from.id)),
                    None => s.merge(&d, None),
                };
                new.then_some(ItemKey::Delta {
                    owner: d.owner,
                    key: d.key,
                    hlc: d.hlc,
                })
            }
            Item::Left(l) => {
                let id = l.identity.id.clone();
                let generation = l.identity.generation;
                let newer = s.left.get(&id).is_none_or(|g| *g < generation);
                if newer {
                    s.left.insert(id.clone(), generation);
                    s.pending_leaves.push(l);
                }
                newer.then_some(ItemKey::Left { id, generation })
            }
            Item::Event(e) => {
                let key = ItemKey::Event {
                    sender: e.sender.clone(),
                    generation: e.generation,
                    seq: e.seq,
                };
                let now = s.mono;
                let new = s.user_events.receive(e, now) == Arrival::New;
                s.deliver_user_events();
                new.then_some(key)
            }
            Item::Query(q) => {
                let now = s.mono;
                let first = s.seen_queries.first(&q, now);
                let key = ItemKey::Query(q.id());
                if first {
                    s.queries_in.push(q);
                }
                first.then_some(key)
            }
        })
    }
}

/// Timers in the node's table.
#[derive(Debug, Clone)]
pub(crate) enum TimerKind {
    /// A foca timer, delivered back to foca.
    Foca(Timer<Identity>),
    /// foca's suspicion timer, held by Lifeguard for the final check.
    Suspect {
        member: Identity,
        incarnation: Incarnation,
        token: foca::TimerToken,
    },
    /// End of a final check.
    VerifyTimeout {
        member: Identity,
        incarnation: Incarnation,
        token: foca::TimerToken,
        nonce: u64,
    },
    /// Next push-pull.
    Sync,
    /// Retry deltas parked for clock drift.
    Unpark,
    /// End the waits of user events held for a missing predecessor.
    UserEvents,
    /// The deadline of a query this node asked (its sequence number).
    QueryDeadline(u64),
    /// Try to reach one member held Down.
    Reconnect,
    /// Extra push-pull rounds right after joining (see
    /// `Node::became_active`).
    CatchUpSync { round: u32 },
    /// Next join attempt.
    JoinRetry { attempt: u32 },
    /// Raft tick and the metadata engine's periodic work.
    MetaTick,
    /// Forget Down and Left members listed for too long.
    Reap,
}

/// A Down verdict handed to foca: foca applies it only if it still holds
/// the member at the suspected incarnation.
#[derive(Debug, Clone)]
pub(crate) struct Verdict {
    pub(crate) member: Identity,
    pub(crate) incarnation: Incarnation,
    /// foca reported the member Down while handling it.
    pub(crate) applied: bool,
}

/// foca's runtime: collects what foca asks for.
pub(crate) struct Io {
    pub(crate) now: Duration,
    pub(crate) timers: TimerTable<TimerKind>,
    pub(crate) out: VecDeque<Transmit>,
    pub(crate) notes: Vec<OwnedNotification<Identity>>,
    /// Members foca has just started suspecting.
    pub(crate) suspected: Vec<(Identity, Incarnation)>,
    pub(crate) lifeguard: bool,
    pub(crate) health: u8,
    pub(crate) max_health: u8,
    pub(crate) self_incarnation: Incarnation,
    /// foca's current timer token, as seen on the timers it submits.
    pub(crate) token: foca::TimerToken,
    pub(crate) probe_failures: u64,
    /// Direct and indirect probe requests sent.
    pub(crate) probes_sent: u64,
    pub(crate) tx: super::metrics::Traffic,
    /// The Down verdict being handed to foca right now (see
    /// [`Io::send_to`]).
    pub(crate) verdict: Option<Verdict>,
    /// The probe in progress (foca's probe number) and whether an ack for
    /// it has been counted.
    pub(crate) probe: Option<(foca::ProbeNumber, bool)>,
    /// "You are Down" messages foca tried to send about a verdict it did
    /// not apply, and that were not sent.
    pub(crate) stray_turn_undead: u64,
    /// The last direct probe foca sent (its number and target), for the
    /// network coordinates to time.
    pub(crate) ping_sent: Option<(foca::ProbeNumber, Identity)>,
}

impl Io {
    /// Lifeguard's multiplier on probe timing.
    pub(crate) fn health_multiplier(&self) -> u32 {
        if self.lifeguard {
            1 + u32::from(self.health)
        } else {
            1
        }
    }

    pub(crate) fn health_up(&mut self) {
        if self.lifeguard {
            self.health = (self.health + 1).min(self.max_health);
        }
    }

    pub(crate) fn health_down(&mut self) {
        self.health = self.health.saturating_sub(1);
    }

    /// An ack (direct or forwarded) for probe `n` arrived: the first one for
    /// the current probe lowers the health score (Lifeguard: one point per
    /// successful probe, as memberlist's awareness; a late direct ack and
    /// the relays' forwarded acks for the same probe count once).
    pub(crate) fn probe_acked(&mut self, n: foca::ProbeNumber) {
        if let Some((p, credited)) = &mut self.probe
            && *p == n
            && !*credited
        {
            *credited = true;
            self.health_down();
        }
    }

    /// Queues an encoded message.
    pub(crate) fn send(&mut self, dst: std::net::SocketAddr, kind: Kind, bytes: Vec<u8>) {
        self.tx.count(kind, bytes.len());
        self.out.push_back(Transmit { dst, kind, bytes });
    }

    /// Encodes and queues a message; an encoding failure is counted.
    pub(crate) fn send_msg(&mut self, dst: std::net::SocketAddr, msg: &wire::Message<'_>) {
        match msg.encode() {
            Ok(bytes) => self.send(dst, msg.kind(), bytes),
            Err(_) => self.tx.encode_errors += 1,
        }
    }

    pub(crate) fn schedule(&mut self, after: Duration, t: TimerKind) {
        self.timers.insert(self.now + after, t);
    }
}

impl foca::Runtime<Identity> for Io {
    fn notify(&mut self, n: Notification<'_, Identity>) {
        match n {
            Notification::DataSent(h) => {
                self.self_incarnation = u32::from(h.src_incarnation);
                match h.message {
                    foca::Message::Ping(n) => {
                        self.probes_sent += 1;
                        self.ping_sent = Some((n, h.dst.clone()));
                        if self.probe.is_none_or(|(p, _)| p != n) {
                            self.probe = Some((n, false));
                        }
                    }
                    foca::Message::PingReq { .. } => self.probes_sent += 1,
                    _ => {}
                }
            }
            Notification::DataReceived(_) => {}
            Notification::ProbeFailed(_, _) => {
                self.probe_failures += 1;
                self.health_up();
            }
            Notification::MemberDown(id) => {
                if let Some(v) = &mut self.verdict
                    && v.member == *id
                {
                    v.applied = true;
                }
                self.notes.push(Notification::MemberDown(id).to_owned());
            }
            other => self.notes.push(other.to_owned()),
        }
    }

    fn send_to(&mut self, to: Identity, data: &[u8]) {
        // foca answers an expired suspicion timer with "you are Down" to the
        // suspect even when the member is no longer at the suspected
        // incarnation (it refuted) and nothing was applied: the only message
        // foca sends while handling that timer is this one. Sent, it makes a
        // healthy member refute again and count one more accuser, and with
        // every node timing the same gossiped suspicion it arrives from
        // nearly every member at once.
        if let Some(v) = &self.verdict
            && !v.applied
            && v.member == to
        {
            self.stray_turn_undead += 1;
            return;
        }
        self.send(to.addr, Kind::Swim, wire::encode_swim(data));
    }

    fn submit_after(&mut self, event: Timer<Identity>, after: Duration) {
        let mult = self.health_multiplier();
        match &event {
            Timer::ProbeRandomMember(t)
            | Timer::PeriodicGossip(t)
            | Timer::PeriodicAnnounce(t)
            | Timer::PeriodicAnnounceDown(t)
            | Timer::SendIndirectProbe { token: t, .. }
            | Timer::ChangeSuspectToDown { token: t, .. } => self.token = *t,
            Timer::RemoveDown(_) => {}
        }
        match event {
            Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                token,
            } => {
                self.suspected
                    .push((member_id.clone(), u32::from(incarnation)));
                let t = if self.lifeguard {
                    TimerKind::Suspect {
                        member: member_id,
                        incarnation: u32::from(incarnation),
                        token,
                    }
                } else {
                    TimerKind::Foca(Timer::ChangeSuspectToDown {
                        member_id,
                        incarnation,
                        token,
                    })
                };
                self.schedule(after, t);
            }
            t @ (Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. }) => {
                self.schedule(after * mult, TimerKind::Foca(t));
            }
            t => self.schedule(after, TimerKind::Foca(t)),
        }
    }
}

/// An incarnation as foca holds it (16 bits; a larger one, which the foca
/// engine never produces, is held at the maximum).
pub(crate) fn to_foca(i: Incarnation) -> foca::Incarnation {
    foca::Incarnation::try_from(i).unwrap_or(foca::Incarnation::MAX)
}

/// The application slot of a broadcast item for the native engine's queue:
/// a newer item about the same thing (the same state key, the same node's
/// leave) takes the older one's place.
pub(crate) fn item_slot(key: &ItemKey) -> [u64; 2] {
    use super::hash::{FNV_OFFSET, fnv1a};
    use super::identity::mix64;
    match key {
        ItemKey::Delta { owner, key, .. } => {
            let k = owner.key();
            let h = fnv1a(FNV_OFFSET, key.as_bytes());
            [mix64(k[0] ^ h), mix64(k[1] ^ mix64(h))]
        }
        ItemKey::Left { id, .. } => {
            let k = id.key();
            [k[0], mix64(k[1] ^ 0x4c45_4654)]
        }
        ItemKey::Event {
            sender,
            generation,
            seq,
        } => {
            let k = sender.key();
            let h = mix64(generation.0 ^ mix64(*seq ^ 0x4556_454e_5453));
            [mix64(k[0] ^ h), mix64(k[1] ^ mix64(h))]
        }
        ItemKey::Query(q) => {
            let k = q.asker.key();
            let h = mix64(q.generation.0 ^ mix64(q.seq ^ 0x0051_5545_5259));
            [mix64(k[0] ^ h), mix64(k[1] ^ mix64(h))]
        }
    }
}

/// Encodes a broadcast item.
pub(crate) fn encode_item(item: &Item) -> Option<Vec<u8>> {
    postcard::to_allocvec(item).ok()
}

/// Whether a member state counts as active.
pub(crate) fn is_active(s: State) -> bool {
    matches!(s, State::Alive | State::Suspect)
}
