//! The sans-IO membership core: SWIM through foca with roster's Lifeguard
//! layer, HLC-stamped state deltas and push-pull anti-entropy.
//!
//! Nothing here performs I/O, reads a clock or uses an unseeded RNG; see
//! [`Node`] for the driving contract.

pub mod config;
pub mod coords;
pub mod delta;
mod engine;
mod hash;
pub mod hlc;
pub mod identity;
mod lifeguard;
pub mod meta;
pub mod metrics;
#[allow(clippy::module_inception)]
mod node;
pub mod queries;
mod swim;
pub mod timers;
pub mod user_events;
pub mod wire;

use std::net::SocketAddr;
use std::time::Duration;

pub use config::{Config, ConfigError, EngineKind, Timing};
pub use delta::{Delta, StateError, StateLimits};
pub use hlc::{Hlc, HlcClock};
pub use identity::{Generation, Identity, Incarnation, NodeId};
pub use meta::{MetaConfig, MetaError, MetaOp, MetaReply, MetaStatus, RaftRole, ReadMode};
pub use metrics::{Metrics, Traffic};
pub use node::{BUILD_KEY, ForceLeaveError, InputError, MetaCounters, Node};
pub use user_events::{EventError, UserEvent};

use wire::Kind;

/// The time of an input: monotonic time since any fixed epoch, and the wall
/// clock in Unix milliseconds (which feeds the HLC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time; never goes back.
    pub mono: Duration,
    /// Wall clock, Unix milliseconds; may jump.
    pub wall_ms: u64,
}

/// A message for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub dst: SocketAddr,
    /// What it is; [`Kind::is_stream`] tells datagram from stream.
    pub kind: Kind,
    /// The encoded message, envelope included.
    pub bytes: Vec<u8>,
}

/// A member's state as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Suspected: not answering lately; still counted as a member.
    Suspect,
    /// Declared failed by this node.
    Down,
    /// Left gracefully.
    Left,
}

/// How many members a node lists in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberCounts {
    /// Alive.
    pub alive: usize,
    /// Suspect.
    pub suspect: usize,
    /// Down.
    pub down: usize,
    /// Left.
    pub left: usize,
}

impl MemberCounts {
    /// Counts one more member in `state`.
    pub fn add(&mut self, state: MemberState) {
        match state {
            MemberState::Alive => self.alive += 1,
            MemberState::Suspect => self.suspect += 1,
            MemberState::Down => self.down += 1,
            MemberState::Left => self.left += 1,
        }
    }
}

/// One member in this node's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Who (newest known generation).
    pub identity: Identity,
    /// State.
    pub state: MemberState,
    /// Highest incarnation this node has seen the member at.
    pub incarnation: Incarnation,
    /// Incarnation under suspicion, while Suspect.
    pub suspect_incarnation: Option<Incarnation>,
    /// When this node last changed the member's state (monotonic time).
    pub since: Duration,
}

/// What a node reports to its application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// This node joined a cluster (it knows an active member).
    Joined,
    /// A member is up (new, restarted with a new generation, or back).
    MemberUp(Identity),
    /// A member is suspected of having failed.
    MemberSuspected(Identity),
    /// A suspected member proved it is alive.
    MemberRefuted(Identity),
    /// This node declared a member Down.
    MemberDown(Identity),
    /// A member left gracefully (or was forced out: [`Node::force_leave`]).
    ///
    /// [`Node::force_leave`]: crate::node::Node::force_leave
    MemberLeft(Identity),
    /// A Down or Left member was forgotten after `remove_down_after` /
    /// `remove_left_after`: it is no longer listed.
    MemberReaped(Identity),
    /// A state key changed (`value` is `None` when deleted).
    StateChanged {
        /// Whose state.
        owner: NodeId,
        /// Key.
        key: String,
        /// New value.
        value: Option<Vec<u8>>,
        /// Stamp of the write.
        hlc: Hlc,
    },
    /// A remote write was refused because its HLC stamp was more than
    /// `max_drift` ahead of this node's wall clock (it may arrive again later
    /// through push-pull).
    HlcDriftRejected {
        /// Whose write.
        owner: NodeId,
        /// How far ahead it was.
        ahead_ms: u64,
    },
    /// A write to one of this node's own keys arrived that this node did
    /// not make (stamped after it started); the key was written again with
    /// the true value and a newer stamp.
    StateForgeryRefuted {
        /// The key.
        key: String,
        /// The peer it arrived from, when known (a relay or the forger).
        from: Option<NodeId>,
        /// The forged stamp.
        hlc: Hlc,
    },
    /// This node refuted a suspicion about itself.
    Refuted {
        /// Its new incarnation.
        incarnation: Incarnation,
    },
    /// The cluster declared this node Down and it rejoined under a new
    /// identity (a forced rejoin).
    Rejoined(Identity),
    /// This node was declared Down and cannot rejoin by itself.
    Defunct,
    /// This node bootstrapped a new metadata cluster.
    MetaBootstrapped {
        /// The new cluster's id.
        cluster: u64,
    },
    /// The metadata leader changed (as this voter sees it).
    LeaderChanged {
        /// The new leader, `None` while there is none.
        leader: Option<NodeId>,
        /// Term.
        term: u64,
    },
    /// The metadata voters changed (this node's copy).
    VotersChanged(Vec<NodeId>),
    /// The committed partition placement changed (this node's copy): the
    /// partitions whose owners changed, with old and new owners (primary
    /// first), so an application can move its data.
    PlacementChanged(Vec<(u32, Vec<NodeId>, Vec<NodeId>)>),
    /// A metadata key changed in this node's copy.
    MetadataChanged {
        /// Key.
        key: String,
        /// New value, `None` when deleted.
        value: Option<Vec<u8>>,
        /// Log index of the change.
        index: u64,
    },
    /// A user event arrived (this node's own included), once, in its
    /// sender's order (see [`user_events`]).
    UserEvent(UserEvent),
    /// A query for this node arrived (see [`queries`]); answer it with
    /// [`Node::respond`](crate::node::Node::respond) before its deadline.
    Query(queries::Query),
    /// A member acknowledged a query this node asked.
    QueryAck {
        /// The query.
        id: queries::QueryId,
        /// Who acknowledged.
        from: NodeId,
    },
    /// A member answered a query this node asked (once per member).
    QueryAnswer {
        /// The query.
        id: queries::QueryId,
        /// Who answered.
        from: NodeId,
        /// The answer.
        payload: Vec<u8>,
    },
    /// A query this node asked reached its deadline.
    QueryDone {
        /// The query.
        id: queries::QueryId,
        /// Members that acknowledged it.
        acks: usize,
        /// Members that answered it.
        answers: usize,
    },
}

/// Capacity an output queue keeps once drained. A burst (a push-pull that
/// brings a thousand members brings a thousand events) grows a queue; one
/// that kept that capacity would cost every node memory in proportion to
/// the cluster, for good.
const QUEUE_KEEP: usize = 32;

/// Takes the front of an output queue, giving back a burst's capacity once
/// the queue is empty. Amortised O(1): capacity beyond [`QUEUE_KEEP`] was
/// filled by at least as many pushes.
pub(crate) fn pop_queue<T>(q: &mut std::collections::VecDeque<T>) -> Option<T> {
    let item = q.pop_front();
    if q.is_empty() && q.capacity() > QUEUE_KEEP {
        q.shrink_to(QUEUE_KEEP);
    }
    item
}

/// A node's listing of its members, read-only: the native engine's table,
/// or the member map kept beside foca.
#[derive(Clone, Copy)]
pub(crate) struct Members<'a> {
    pub(crate) native: Option<&'a engine::Engine>,
    pub(crate) members: &'a std::collections::BTreeMap<NodeId, MemberView>,
}

impl<'a> Members<'a> {
    /// The node's listing of member `id`.
    pub(crate) fn member(&self, id: &NodeId) -> Option<MemberView> {
        match self.native {
            None => self.members.get(id).cloned(),
            Some(e) => e.view(id),
        }
    }

    /// Every member listed, in no particular (but deterministic) order.
    pub(crate) fn views(&self) -> Box<dyn Iterator<Item = MemberView> + 'a> {
        match self.native {
            None => Box::new(self.members.values().cloned()),
            Some(e) => Box::new(e.views()),
        }
    }

    /// The listing of `id` as `(identity, state)`, borrowed: what
    /// [`Members::member`] gives without copying the identity.
    pub(crate) fn listed_one(&self, id: &NodeId) -> Option<(&'a Identity, MemberState)> {
        match self.native {
            None => self.members.get(id).map(|v| (&v.identity, v.state)),
            Some(e) => e.listed_one(id),
        }
    }

    /// A version of the listing that changes whenever it does (native
    /// engine; `None` with foca, whose listing has none): a reader can keep
    /// what it read from [`Members::listed`] while it stays the same.
    pub(crate) fn listed_version(&self) -> Option<u64> {
        self.native.map(engine::Engine::listed_version)
    }

    /// Every member listed as `(identity, state, since)`, borrowed: what
    /// [`Members::views`] gives without copying an identity.
    pub(crate) fn listed(
        &self,
    ) -> Box<dyn Iterator<Item = (&'a Identity, MemberState, std::time::Duration)> + 'a> {
        match self.native {
            None => Box::new(
                self.members
                    .values()
                    .map(|v| (&v.identity, v.state, v.since)),
            ),
            Some(e) => Box::new(e.listed()),
        }
    }

    /// The state of every member listed (no copies of identities).
    pub(crate) fn states(&self) -> Box<dyn Iterator<Item = MemberState> + 'a> {
        match self.native {
            None => Box::new(self.members.values().map(|v| v.state)),
            Some(e) => Box::new(e.states()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    #[test]
    fn a_drained_queue_gives_back_a_bursts_capacity() {
        let mut q: VecDeque<u64> = (0..10_000).collect();
        let mut got = Vec::new();
        while let Some(x) = super::pop_queue(&mut q) {
            // Capacity is kept while items wait.
            if !q.is_empty() {
                assert!(q.capacity() >= 10_000);
            }
            got.push(x);
        }
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());
        assert!(q.capacity() <= 2 * super::QUEUE_KEEP, "{}", q.capacity());
    }
}
