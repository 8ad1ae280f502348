//! The native engine's datagram: who sends it, what it is (a probe, an
//! answer, a relay request or plain gossip) and the membership updates and
//! application items piggybacked on it. Encoded with postcard inside the
//! envelope's [`crate::node::wire::Kind::Member`] kind, which a foca-engine node
//! does not accept: a mixed cluster refuses rather than misreads.

use serde::{Deserialize, Serialize};

use crate::node::identity::{Identity, NodeId};

/// A member's state on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WireState {
    /// Alive at the incarnation.
    Alive,
    /// Suspected at the incarnation.
    Suspect,
    /// Declared Down at the incarnation.
    Down,
    /// Left (terminal for the generation).
    Left,
}

/// A piggybacked membership update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Update {
    /// Whom it is about.
    pub(crate) member: Identity,
    /// At which incarnation.
    pub(crate) incarnation: u32,
    /// The claim.
    pub(crate) state: WireState,
    /// Who suspects it (Suspect) or declared it (Down): suspicions are
    /// confirmed by distinct accusers (Lifeguard's dynamic suspicion).
    pub(crate) by: Option<NodeId>,
}

/// What the packet is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Body {
    /// A probe. `suspected`: the target is suspected at this incarnation
    /// (Lifeguard's buddy system: it refutes at once).
    Ping {
        seq: u32,
        target: NodeId,
        suspected: Option<u32>,
    },
    /// The answer to a probe.
    Ack { seq: u32 },
    /// A relay's report that it could not reach the target either, which
    /// proves the asker's own path works (Lifeguard's nack).
    Nack { seq: u32 },
    /// Probe `target` for me and answer `seq` (an indirect probe).
    PingReq { seq: u32, target: Identity },
    /// Only piggybacked news.
    Gossip,
}
