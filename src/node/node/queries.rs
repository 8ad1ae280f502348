//! What a node answers about itself, its members and their state.

use super::*;

impl Node {
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
        self.listing().member(id)
    }

    /// Every member this node lists, as `(identity, state)`, borrowed and
    /// in no particular (but deterministic) order: what [`Node::members`]
    /// gives without a copy of each identity or a sort, for callers that
    /// read every member often (the simulator's convergence check).
    pub fn listed(&self) -> impl Iterator<Item = (&Identity, MemberState)> + '_ {
        self.listing().listed().map(|(id, state, _)| (id, state))
    }

    /// Every member this node lists, in no particular (but deterministic)
    /// order.
    pub(in crate::node) fn views(&self) -> Box<dyn Iterator<Item = MemberView> + '_> {
        self.listing().views()
    }

    /// The node's listing of its members, read-only.
    pub(in crate::node::node) fn listing(&self) -> Members<'_> {
        Members {
            native: self.native.as_deref(),
            members: &self.members,
        }
    }

    /// How many members this node lists in each state, itself counted as
    /// Alive: what [`Node::members`] would show, without copying it.
    pub fn member_counts(&self) -> MemberCounts {
        let mut c = MemberCounts {
            alive: 1,
            ..MemberCounts::default()
        };
        for s in self.listing().states() {
            c.add(s);
        }
        c
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
        let s = self.shared.lock();
        m.user_events = s.user_events.counters;
        let c = s.counters;
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
}
