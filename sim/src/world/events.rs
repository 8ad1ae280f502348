//! What nodes report: each event a node emits, handed to the per-event
//! checkers (members are simulated nodes, generations only grow, one
//! metadata cluster, one leader per term, one entry per index, false Downs,
//! delivery) and the measurements it feeds.

use super::*;
use crate::checkers::known_members;

impl World {
    /// Longest time a Down verdict takes to form on node `n`: its current
    /// suspicion window plus the final check, with the deferrals Lifeguard
    /// allows at full health.
    pub(super) fn verdict_window(&self, n: usize) -> Nanos {
        let Some(node) = self.slots[n].node.as_ref() else {
            return 0;
        };
        let c = node.config();
        (node.timing().suspicion_window + c.verify_timeout * 2).as_nanos() as Nanos
    }

    /// Whether the network model impairs node `n` (see
    /// [`Network::impaired`]).
    pub(super) fn impaired(&self, n: usize) -> bool {
        self.net.impaired(n) || self.slots[n].paused
    }

    pub(super) fn slot_of(&self, id: &NodeId) -> Option<usize> {
        // Ids are "n{index}".
        id.as_str()
            .strip_prefix('n')
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&i| i < self.slots.len())
    }

    pub(super) fn on_event(&mut self, n: usize, e: Event) {
        match e {
            Event::MemberUp(id) => self.member_up(n, id),
            Event::MemberDown(id) => self.member_down(n, id),
            Event::HlcDriftRejected { owner, .. }
                if self.jumper.is_some_and(|j| self.slots[j].id == owner) =>
            {
                self.m.drift_rejections_by_jumper += 1;
            }
            Event::MetaBootstrapped { cluster } => {
                if std::env::var_os("ROSTER_SIM_DEBUG").is_some() {
                    eprintln!(
                        "t={:.2}s {} bootstrapped {cluster:016x}",
                        self.now as f64 / SEC as f64,
                        self.slots[n].id
                    );
                }
                let v = self
                    .checkers
                    .cluster
                    .bootstrapped(&self.slots[n].id, cluster, self.now);
                self.record(v);
            }
            Event::LeaderChanged {
                leader: Some(l),
                term,
            } if l == self.slots[n].id => self.claims_leader(n, term),
            Event::PlacementChanged(_) => self.placement_changed(n),
            Event::MetadataChanged { key, value, index } => {
                let id = &self.slots[n].id;
                let v = self.checkers.entries.applied(id, key, value, index);
                self.record(v);
            }
            Event::Rejoined(id) => {
                if let Some(p) = &mut self.m.pause
                    && p.node == n
                {
                    p.rejoined = true;
                }
                let now = self.now;
                self.checkers.false_downs.rejoined(|| {
                    format!(
                        "t={:.1}s {id} was forced to rejoin",
                        now as f64 / SEC as f64
                    )
                });
            }
            Event::StateChanged {
                owner, key, hlc, ..
            } => self.state_changed(n, owner, key, hlc),
            Event::UserEvent(u) => self.user_event(n, &u),
            Event::Query(q) => self.to_answer.push((n, q.id())),
            Event::QueryAnswer { id, from, .. } => self.query_answer(n, &id, &from),
            _ => {}
        }
    }

    /// Node `n` leads `term`, by its own event or by its Raft state.
    pub(super) fn claims_leader(&mut self, n: usize, term: u64) {
        let v = self.checkers.leaders.claims(term, &self.slots[n].id);
        self.record(v);
    }

    /// Node `n` reports member `id` up.
    fn member_up(&mut self, n: usize, id: Identity) {
        let observer = &self.slots[n].id;
        let v = known_members::check(observer, &id.id, self.slot_of(&id.id)).and_then(|m| {
            let slots = self.slots.len();
            self.checkers.generations.up(n, observer, (m, slots), &id)
        });
        self.record(v);
    }

    /// Counts false Downs and measures crash detection.
    fn member_down(&mut self, n: usize, id: Identity) {
        if let Some(p) = &mut self.m.pause {
            if p.identity == id {
                p.declared_down += 1;
            }
            if p.node == n && p.resumed.is_some() {
                p.it_declared_down += 1;
            }
        }
        if let Some(j) = self.slot_of(&id.id) {
            let alive = self.slots[j]
                .node
                .as_ref()
                .is_some_and(|x| x.identity().generation == id.generation && !x.has_left());
            let healthy =
                alive && !self.impaired(j) && self.net.connected(n, j) && self.net.connected(j, n);
            // A verdict formed from evidence gathered before the network
            // last changed (a heal, an unblock), or on a node that just
            // resumed from a pause, is not a false alarm about the network
            // as it is now.
            let changes = [self.topology_changed, self.slots[j].resumed_at];
            let window = self.verdict_window(n);
            let mut tally = std::mem::take(&mut self.checkers.false_downs);
            let describe = || {
                let health = self.slots[n].node.as_ref().map(|x| x.health_score());
                format!(
                    "t={:.1}s {} (health {health:?}{}) declared {} Down",
                    self.now as f64 / SEC as f64,
                    self.slots[n].id,
                    if self.impaired(n) { ", impaired" } else { "" },
                    id
                )
            };
            tally.declared(
                healthy,
                changes.into_iter().flatten(),
                self.now,
                window,
                describe,
            );
            self.checkers.false_downs = tally;
        }
        for (_, crashed, at, observers) in &mut self.crashes {
            if *crashed == id
                && let Some(pos) = observers.iter().position(|&o| o == n)
            {
                observers.swap_remove(pos);
                self.m.detect.push(self.now - *at);
                if std::env::var_os("ROSTER_SIM_DEBUG").is_some()
                    && let Some(node) = self.slots[n].node.as_ref()
                {
                    let mt = node.metrics();
                    eprintln!(
                        "{} detected the crash of {id} after {:.2}s (health {}, {} verdicts deferred)",
                        self.slots[n].id,
                        (self.now - *at) as f64 / SEC as f64,
                        node.health_score(),
                        mt.downs_deferred,
                    );
                }
            }
        }
    }

    /// The asker `n` got an answer to `id` from `from`.
    fn query_answer(&mut self, n: usize, id: &roster::node::queries::QueryId, from: &NodeId) {
        let Some(f) = self.slot_of(from) else {
            return;
        };
        // The planted bug: an answer reported from the first member the
        // query did not select.
        let f = if self.planted.armed(Plant::WrongAnswer, self.now) {
            match (0..self.slots.len()).find(|&m| m % 5 != 0) {
                Some(m) if self.checkers.queries.is_tagged(n, id.seq) => {
                    self.planted.fire(Plant::WrongAnswer, self.now);
                    m
                }
                _ => f,
            }
        } else {
            f
        };
        let name = self.slots[f].id.to_string();
        let v = self.checkers.queries.answered(n, id.seq, f, &name);
        self.record(v);
    }

    /// Node `n` delivered user event `u`.
    fn user_event(&mut self, n: usize, u: &roster::node::UserEvent) {
        let Some(s) = self.slot_of(&u.sender) else {
            return;
        };
        let times = if self.planted.fire(Plant::DuplicateEvent, self.now) {
            2
        } else {
            1
        };
        for _ in 0..times {
            let id = &self.slots[n].id;
            let sender = (&u.sender, s);
            let v =
                self.checkers
                    .user_events
                    .delivered(n, id, sender, u.generation.0, u.seq, self.now);
            self.record(v);
        }
    }

    /// Node `n` holds `owner`'s `key` at stamp `hlc`: the delivery and
    /// causality checkers' input.
    fn state_changed(&mut self, n: usize, owner: NodeId, key: String, hlc: Hlc) {
        let Some(o) = self.slot_of(&owner) else {
            return;
        };
        if o != n {
            self.checkers.causality.accepted(n, hlc);
        }
        let (now, planted) = (self.now, &mut self.planted);
        let lose = || planted.fire(Plant::LostDelta, now);
        self.checkers.delivery.received(n, o, key, hlc, now, lose);
    }
}
