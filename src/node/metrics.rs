//! Counters a node keeps about itself. Plain integers: the runtime exports
//! them to Prometheus, the simulator sums them into its report.

use crate::node::wire::Kind;

/// Messages and bytes by kind, in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages per kind, indexed by `kind as usize - 1`.
    pub msgs: [u64; Kind::ALL.len()],
    /// Bytes (envelope included) per kind.
    pub bytes: [u64; Kind::ALL.len()],
    /// Messages that could not be encoded (a bug or an over-limit message).
    pub encode_errors: u64,
}

impl Traffic {
    /// Counts one message.
    pub fn count(&mut self, kind: Kind, len: usize) {
        let i = kind as usize - 1;
        self.msgs[i] += 1;
        self.bytes[i] += len as u64;
    }

    /// All messages.
    pub fn total_msgs(&self) -> u64 {
        self.msgs.iter().sum()
    }

    /// All bytes.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().sum()
    }
}

/// Everything a node counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Sent.
    pub tx: Traffic,
    /// Received and decoded.
    pub rx: Traffic,
    /// Inputs dropped because they did not decode (bad envelope, version,
    /// kind, size or payload).
    pub malformed_dropped: u64,
    /// Datagrams over the configured datagram size.
    pub oversized_dropped: u64,
    /// Messages whose claimed sender was not the authenticated peer.
    pub wrong_sender_dropped: u64,
    /// SWIM packets foca refused.
    pub swim_errors: u64,
    /// Remote HLC stamps refused for being too far ahead.
    pub hlc_drift_rejections: u64,
    /// Deltas or broadcast items refused (limits, bad encoding).
    pub invalid_items: u64,
    /// Writes to this node's own keys made elsewhere (stamped after it
    /// started), overwritten with the true value.
    pub state_forgeries_refuted: u64,
    /// This node's entries from before it started, echoed back by peers and
    /// retired with a newer write.
    pub stale_own_state_retired: u64,
    /// Members this node started suspecting.
    pub suspicions_raised: u64,
    /// Suspicions of other members this node saw refuted.
    pub suspicions_refuted: u64,
    /// Times this node refuted a suspicion about itself.
    pub self_refutations: u64,
    /// Probes sent (direct pings and indirect probe requests).
    pub probes_sent: u64,
    /// Probes foca reported failed (direct and indirect).
    pub probe_failures: u64,
    /// Final checks started, and how many got an answer.
    pub verifications_started: u64,
    /// Final checks answered by the suspect.
    pub verifications_answered: u64,
    /// Down verdicts deferred because this node's own health was poor.
    pub downs_deferred: u64,
    /// Members this node declared Down.
    pub downs_declared: u64,
    /// Of those, verdicts adopted from another member's gossiped Down (the
    /// foca engine: while this node was too unhealthy to judge; the native
    /// engine: at once, as memberlist does).
    pub downs_adopted: u64,
    /// Native engine: nacks received from indirect-probe relays.
    pub nacks_received: u64,
    /// Native engine: independent confirmations of suspicions.
    pub confirmations: u64,
    /// Native engine: members held Down told so after they sent something.
    pub told_down: u64,
    /// Push-pull messages from a node running the other SWIM engine,
    /// dropped.
    pub engine_mismatch_dropped: u64,
    /// Times this node had to rejoin under a new identity.
    pub forced_rejoins: u64,
    /// "You are Down" messages answered with a refutation instead of a rejoin.
    pub turn_undead_refuted: u64,
    /// "You are Down" messages not refuted again because this node had
    /// refuted within the last probe period.
    pub refutations_rate_limited: u64,
    /// "You are Down" messages foca asked to send for a suspicion that had
    /// already been refuted (foca applied no Down), and that were dropped.
    pub stray_turn_undead_dropped: u64,
    /// Locally Down members brought back after proving a higher incarnation.
    pub resurrections: u64,
    /// Push-pull exchanges started.
    pub syncs_started: u64,
    /// Push-pull openings sent to members held Down.
    pub reconnect_attempts: u64,
    /// Down members this node forced out ([`crate::node::Node::force_leave`]).
    pub forced_leaves: u64,
    /// Down and Left members forgotten after their retention.
    pub members_reaped: u64,
    /// Push-pull answers that found both sides in sync.
    pub syncs_in_sync: u64,
    /// Join attempts sent.
    pub join_attempts: u64,
    /// Current local health score (0 is healthy).
    pub health_score: u8,
    /// User events delivered, and copies, stale events and gaps dropped.
    pub user_events: crate::node::user_events::EventCounters,
    /// Live members, this node included, that the timing below is sized
    /// for (see [`crate::node::Timing`]).
    pub live_members: u64,
    /// Current suspicion window, milliseconds.
    pub suspicion_window_ms: u64,
    /// Current number of times each update is piggybacked.
    pub retransmits: u8,
    /// Current interval between push-pull exchanges, milliseconds.
    pub push_pull_interval_ms: u64,
}
