//! What nodes report: each event a node emits, the per-event checkers
//! (members are simulated nodes, generations only grow, one metadata cluster,
//! one leader per term, one entry per index) and the measurements it feeds.

use super::*;

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
                self.m.clusters.insert(cluster);
                if self.m.clusters.len() > 1 {
                    self.fail(format!(
                        "a second metadata cluster formed on {} at {:.1}s",
                        self.slots[n].id,
                        self.now as f64 / SEC as f64
                    ));
                }
            }
            Event::LeaderChanged {
                leader: Some(l),
                term,
            } if l == self.slots[n].id => self.claims_leader(n, term),
            Event::PlacementChanged(_) => self.placement_changed(n),
            Event::MetadataChanged { key, value, index } => match self.m.applied.get(&index) {
                Some((k, v)) if *k != key || *v != value => {
                    let msg = format!(
                        "{} applied {key}={value:?} at {index}, others {k}={v:?}",
                        self.slots[n].id
                    );
                    self.fail(msg);
                }
                Some(_) => {}
                None => {
                    self.m.applied.insert(index, (key, value));
                }
            },
            Event::Rejoined(id) => {
                if let Some(p) = &mut self.m.pause
                    && p.node == n
                {
                    p.rejoined = true;
                }
                self.m.false_downs += 1;
                if self.m.false_down_detail.len() < 10 {
                    self.m.false_down_detail.push(format!(
                        "t={:.1}s {} was forced to rejoin",
                        self.now as f64 / SEC as f64,
                        id
                    ));
                }
            }
            Event::StateChanged {
                owner, key, hlc, ..
            } => self.state_changed(n, owner, key, hlc),
            _ => {}
        }
    }

    /// Checker: one leader per term. Node `n` leads `term`, by its own
    /// event or by its Raft state.
    pub(super) fn claims_leader(&mut self, n: usize, term: u64) {
        let l = self.slots[n].id.clone();
        if let Some(prev) = self.m.leaders.insert(term, l.clone())
            && prev != l
        {
            self.fail(format!("two leaders in term {term}: {prev} and {l}"));
        }
    }

    /// Checkers: every member a node reports is a simulated node, and the
    /// generation it holds a member at only grows.
    fn member_up(&mut self, n: usize, id: Identity) {
        // Every simulated node's name gives its slot.
        let Some(m) = self.slot_of(&id.id) else {
            self.fail(format!(
                "{} saw an unknown member {}",
                self.slots[n].id, id.id
            ));
            return;
        };
        let seen = &mut self.slots[n].seen_gen;
        if seen.len() <= m {
            seen.resize(m + 1, NOT_SEEN);
        }
        let prev =
            Some(std::mem::replace(&mut seen[m], id.generation.0)).filter(|&g| g != NOT_SEEN);
        if prev.is_some_and(|g| g > id.generation.0) {
            let msg = format!(
                "{} saw generation of {} go back: {:?} -> {}",
                self.slots[n].id, id.id, prev, id.generation
            );
            self.fail(msg);
        }
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
            // A verdict formed from evidence gathered before the
            // network last changed (a heal, an unblock) is not a
            // false alarm about the network as it is now.
            // Likewise for a verdict on a node that just resumed
            // from a pause, formed from the silence of the pause.
            let window = self.verdict_window(n);
            let settled = [self.topology_changed, self.slots[j].resumed_at]
                .into_iter()
                .flatten()
                .all(|t| self.now.saturating_sub(t) >= window);
            if healthy && !settled {
                self.m.transition_downs += 1;
            }
            if healthy && settled {
                self.m.false_downs += 1;
                if self.m.false_down_detail.len() < 10 {
                    let health = self.slots[n].node.as_ref().map(|x| x.health_score());
                    self.m.false_down_detail.push(format!(
                        "t={:.1}s {} (health {health:?}{}) declared {} Down",
                        self.now as f64 / SEC as f64,
                        self.slots[n].id,
                        if self.impaired(n) { ", impaired" } else { "" },
                        id
                    ));
                }
            }
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

    /// Tracks the spread of writes and the newest remote stamp each node
    /// accepted (for the causality checker).
    fn state_changed(&mut self, n: usize, owner: NodeId, key: String, hlc: Hlc) {
        let Some(o) = self.slot_of(&owner) else {
            return;
        };
        if o != n {
            let slot = &mut self.slots[n];
            slot.max_remote_hlc = slot.max_remote_hlc.max(hlc);
        }
        if let Some(&wi) = self.write_index.get(&(o, key)) {
            let w = &self.writes[wi];
            let first_receipt =
                hlc >= w.hlc && n != w.owner && w.audience.contains(&n) && !w.got.contains_key(&n);
            if first_receipt && self.planted.fire(Plant::LostDelta, self.now) {
                return;
            }
            let w = &mut self.writes[wi];
            if hlc >= w.hlc && n != w.owner {
                w.got.entry(n).or_insert(self.now);
            }
        }
    }
}
