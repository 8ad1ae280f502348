//! The periodic and end-of-run checkers: convergence (identities, states,
//! state), acknowledged writes, linearizability, voters, and the observation
//! plants that prove they fail (see [`crate::plant`]).

use super::*;

/// Why running nodes have not converged.
enum Divergence {
    /// A node lists a wrong number of members active.
    Count,
    /// A node lists a member at a wrong identity or state, or holds other
    /// state.
    View(String),
}

impl World {
    /// The observation plants that synthesise one event a node with the bug
    /// would report (see [`crate::plant`]); each fires once its
    /// precondition holds.
    pub(super) fn plant_observation(&mut self, running: &[usize]) {
        let &[a, b, ..] = running else {
            return;
        };
        let now = self.now;
        let Some(truth) = self.slots[b].node.as_ref().map(|x| x.identity().clone()) else {
            return;
        };
        let p = &self.planted;
        let (plant, event) = if p.armed(Plant::GenerationBack, now) {
            let seen = self.slots[a].seen_gen.get(b).copied();
            let Some(g) = seen.filter(|&g| g != NOT_SEEN && g > 0) else {
                return;
            };
            let id = Identity::new(truth.id, truth.addr, Generation(g - 1));
            (Plant::GenerationBack, Event::MemberUp(id))
        } else if p.armed(Plant::UnknownMember, now) {
            let id = NodeId::new("intruder").expect("valid name");
            let id = Identity::new(id, addr_of(self.slots.len()), Generation(1));
            (Plant::UnknownMember, Event::MemberUp(id))
        } else if p.armed(Plant::SecondCluster, now) {
            let Some(&c) = self.m.clusters.iter().next() else {
                return;
            };
            (
                Plant::SecondCluster,
                Event::MetaBootstrapped { cluster: c ^ 1 },
            )
        } else if p.armed(Plant::SecondLeader, now) {
            let Some((&term, leader)) = self.m.leaders.iter().next_back() else {
                return;
            };
            let Some(&claimant) = running.iter().find(|&&i| self.slots[i].id != *leader) else {
                return;
            };
            self.planted.fire(Plant::SecondLeader, now);
            self.claims_leader(claimant, term);
            return;
        } else if p.armed(Plant::DivergentApply, now) {
            let Some((&index, (key, _))) = self.m.applied.iter().next() else {
                return;
            };
            let event = Event::MetadataChanged {
                key: key.clone(),
                value: Some(b"planted".to_vec()),
                index,
            };
            (Plant::DivergentApply, event)
        } else if p.armed(Plant::FalseDown, now) {
            (Plant::FalseDown, Event::MemberDown(truth))
        } else {
            return;
        };
        self.planted.fire(plant, now);
        self.on_event(a, event);
    }

    /// Whether every running node lists every other running node Alive at
    /// the identity it runs with and no other member active, and (with
    /// `with_state`) all hold the same state.
    pub(super) fn converged(&self, with_state: bool) -> bool {
        self.divergence(with_state, None).is_none()
    }

    /// What keeps the running nodes from having converged (see
    /// [`World::converged`]), if anything. `plant` is one of the plants
    /// that corrupt what the first running node reports.
    fn divergence(&self, with_state: bool, plant: Option<Plant>) -> Option<Divergence> {
        let running = self.running();
        let live = running.len();
        // Counts first: cheap, and they differ until a join or a heal is
        // nearly done.
        for &i in &running {
            let node = self.slots[i].node.as_ref().expect("running");
            if node.active_members() != live - 1 {
                return Some(Divergence::Count);
            }
        }
        let mut hash = None;
        for (k, &i) in running.iter().enumerate() {
            let node = self.slots[i].node.as_ref().expect("running");
            for (l, &j) in running.iter().enumerate() {
                if j == i {
                    continue;
                }
                let truth = self.slots[j].node.as_ref().expect("running").identity();
                let mut view = node.member(&truth.id).map(|v| (v.identity, v.state));
                if let (0, 1, Some((id, state))) = (k, l, view.as_mut()) {
                    match plant {
                        Some(Plant::HeldSuspect) => *state = MemberState::Suspect,
                        Some(Plant::StaleIdentity) => {
                            id.generation = Generation(id.generation.0.saturating_sub(1));
                        }
                        _ => {}
                    }
                }
                match view {
                    Some((id, MemberState::Alive)) if id == *truth => {}
                    Some((id, state)) => {
                        return Some(Divergence::View(format!(
                            "{} lists {id} {state:?}, which runs as {truth}",
                            self.slots[i].id
                        )));
                    }
                    None => {
                        let v = format!("{} does not list {truth}", self.slots[i].id);
                        return Some(Divergence::View(v));
                    }
                }
            }
            if with_state {
                let mut h = node.state_hash();
                if k == 0 && plant == Some(Plant::DivergentState) {
                    h ^= 1;
                }
                if *hash.get_or_insert(h) != h {
                    return Some(Divergence::View(format!(
                        "{} holds other state than {}",
                        self.slots[i].id, self.slots[running[0]].id
                    )));
                }
            }
        }
        None
    }

    /// While a partition is in force: whether every running node holds
    /// exactly the running members of its own side active.
    pub(super) fn split_seen(&self) -> bool {
        let Some(groups) = &self.net.partition else {
            return false;
        };
        let running = self.running();
        running.iter().all(|&i| {
            let side = running.iter().filter(|&&j| groups[j] == groups[i]).count();
            let node = self.slots[i].node.as_ref().expect("running");
            node.active_members() == side - 1
        })
    }

    pub(super) fn periodic_check(&mut self) {
        let running = self.running();
        if running.is_empty() {
            return;
        }
        if std::env::var_os("ROSTER_SIM_DEBUG").is_some() && self.now.is_multiple_of(2 * SEC) {
            let counts: Vec<usize> = running
                .iter()
                .map(|&i| {
                    self.slots[i]
                        .node
                        .as_ref()
                        .expect("running")
                        .active_members()
                })
                .collect();
            let min = counts.iter().min().copied().unwrap_or(0);
            let lagging = counts.iter().filter(|&&c| c + 1 < running.len()).count();
            eprintln!(
                "t={}s live={} min_active={} lagging={}",
                self.now / SEC,
                running.len(),
                min,
                lagging
            );
        }
        if self.m.join_converged.is_none() && self.converged(false) {
            self.m.join_converged = Some(self.now);
            self.start_window();
        }
        if self.window_start.is_none() && self.now >= 30 * SEC {
            self.start_window();
        }
        if let Some(h) = self.heal_at
            && self.m.heal_converged.is_none()
            && self.converged(true)
        {
            self.m.heal_converged = Some(self.now - h);
        }
        if let Some(p) = &self.m.pause
            && let Some(r) = p.resumed
            && p.back_alive.is_none()
            && self.pause_healed(p)
        {
            let back = self.now - r;
            if let Some(p) = &mut self.m.pause {
                p.back_alive = Some(back);
            }
        }
        if let Some(at) = self.split_at
            && self.m.split_detected.is_none()
            && self.split_seen()
        {
            self.m.split_detected = Some(self.now - at);
        }
        self.m.peak_live = self.m.peak_live.max(running.len());
        for &i in &running {
            if let Some(term) = self.slots[i]
                .node
                .as_ref()
                .and_then(|x| x.meta_leading_term())
            {
                self.claims_leader(i, term);
            }
        }
        if !self.planted.fired() {
            self.plant_observation(&running);
        }
        if !self.m.forgeries.is_empty() {
            self.check_forgeries();
        }
        if self.now.is_multiple_of(SEC) {
            let (bytes, _) = self.totals();
            self.m.bytes_series.push((self.now, bytes, running.len()));
        }
        if let Some(at) = self.m.voter_loss_at
            && self.m.voter_recovery.is_none()
            && self
                .healthy_voters()
                .is_some_and(|v| v >= self.config.meta.target_voters)
        {
            self.m.voter_recovery = Some(self.now - at);
        }
    }

    /// Voters of the current leader's configuration that are running, when
    /// a running leader exists.
    pub(super) fn healthy_voters(&self) -> Option<usize> {
        let running = self.running();
        let leader = running.iter().find_map(|&i| {
            self.slots[i]
                .node
                .as_ref()
                .filter(|x| x.meta_status().role == RaftRole::Leader)
        })?;
        let st = leader.meta_status();
        Some(
            st.voters
                .iter()
                .filter(|v| {
                    self.slot_of(v)
                        .is_some_and(|j| self.slots[j].node.is_some())
                })
                .count(),
        )
    }

    /// Sums what the nodes running at the end counted: bytes over the
    /// measurement window, Lifeguard and state counters, undetected crashes.
    fn sum_counters(&mut self, live: usize) {
        // Bandwidth over the measurement window, counted on nodes that ran
        // through it (a crashed node's counters leave with it, so crash
        // scenarios slightly undercount).
        if let Some((t0, b0, m0)) = self.window_start {
            let (b, m) = self.totals();
            self.m.window_bytes = b.saturating_sub(b0);
            self.m.window_msgs = m.saturating_sub(m0);
            self.m.window_secs = (self.end - t0) as f64 / SEC as f64;
            self.m.window_nodes = live as f64;
        }
        for s in &self.slots {
            if let Some(n) = &s.node {
                let x = n.metrics();
                self.m.drift_rejections += x.hlc_drift_rejections;
                self.m.forgeries_refuted += x.state_forgeries_refuted;
                let l = &mut self.m.lifeguard;
                l.you_are_down_received += x.turn_undead_refuted;
                l.stray_you_are_down_dropped += x.stray_turn_undead_dropped;
                l.downs_deferred += x.downs_deferred;
                l.downs_adopted += x.downs_adopted;
                l.final_checks += x.verifications_started;
            }
        }
        // Crash detection: observers still running that never saw the Down.
        for (_, _, _, observers) in &self.crashes {
            for &o in observers {
                if self.slots[o].node.is_some() {
                    self.m.undetected += 1;
                }
            }
        }
    }

    /// The spread of tracked writes over the nodes still running.
    fn delta_spread(&mut self) {
        let mut pairs = 0u64;
        let mut got = 0u64;
        for w in &self.writes {
            let mut audience = 0;
            let mut delays = Vec::new();
            for &a in &w.audience {
                if self.slots[a].node.is_none() {
                    continue;
                }
                pairs += 1;
                audience += 1;
                if let Some(&t) = w.got.get(&a) {
                    got += 1;
                    self.m.delta_delays.push(t - w.at);
                    delays.push(t - w.at);
                }
            }
            self.m.write_spread.push((audience, delays));
        }
        if pairs > 0 {
            self.m.delta_coverage = Some(got as f64 / pairs as f64);
        }
    }

    pub(super) fn finish(&mut self) {
        let running = self.running();
        self.m.final_live = running.len();
        self.sum_counters(running.len());
        self.delta_spread();
        // Checker: after the faults end, every live node converges (reported
        // below, after the debug output).
        let plant = [
            Plant::HeldSuspect,
            Plant::StaleIdentity,
            Plant::DivergentState,
        ]
        .into_iter()
        .find(|&p| self.planted.fire_at_end(p));
        let divergence = self.divergence(true, plant);
        self.m.converged_at_end = divergence.is_none();
        self.m.voters_final = self.healthy_voters();
        // Checker: every acknowledged write is committed at the index it was
        // acknowledged with, and every live voter holds it.
        let max_ack = self.acked.iter().map(|a| a.0).max().unwrap_or(0);
        for (index, key, value) in std::mem::take(&mut self.acked) {
            match self.m.applied.get(&index) {
                Some((k, v)) if *k == key && *v == value => {}
                other => self.fail(format!(
                    "acknowledged write {key}={value:?} at {index} is not what was applied: {other:?}"
                )),
            }
        }
        for &i in &running {
            let node = self.slots[i].node.as_ref().expect("running");
            let st = node.meta_status();
            if st.role != RaftRole::NonVoter && st.applied_index < max_ack && st.quorum {
                self.fail(format!(
                    "voter {} applied only {} of acknowledged index {max_ack}",
                    self.slots[i].id, st.applied_index
                ));
            }
        }
        if !self.history.is_empty() {
            self.m.meta_linearizable = self.history.check();
            self.m.meta_checked = self.history.checked();
            if self.m.meta_linearizable == Some(false) {
                self.fail("metadata history is not linearizable".into());
            }
        }
        if std::env::var_os("ROSTER_SIM_DEBUG").is_some() {
            for &i in running.iter().take(5) {
                let node = self.slots[i].node.as_ref().expect("running");
                eprintln!(
                    "{:?} active={} joined={} metrics={:?}",
                    node.identity(),
                    node.active_members(),
                    node.is_joined(),
                    node.metrics()
                );
                eprintln!("  meta {:?} {:?}", node.meta_status(), node.meta_counters());
            }
        }
        if self.faults_end.is_some()
            && let Some(d) = divergence
        {
            let detail = match d {
                Divergence::Count => self.count_divergence(),
                Divergence::View(v) => v,
            };
            self.fail(format!("live nodes did not converge by the end: {detail}"));
        }
    }

    /// How many running nodes list a wrong number of members active, with
    /// an example.
    fn count_divergence(&self) -> String {
        let running = self.running();
        let live = running.len();
        let mut short = 0;
        let mut example = String::new();
        for &i in &running {
            let node = self.slots[i].node.as_ref().expect("running");
            if node.active_members() != live - 1 {
                short += 1;
                if example.is_empty() {
                    let ghosts: Vec<String> = node
                        .swim_members()
                        .filter(|(id, _, active)| {
                            *active
                                && self.slot_of(&id.id).is_none_or(|j| {
                                    self.slots[j]
                                        .node
                                        .as_ref()
                                        .is_none_or(|x| x.identity() != *id)
                                })
                        })
                        .map(|(id, inc, _)| {
                            let view = node
                                .member(&id.id)
                                .map(|v| (v.state, v.suspect_incarnation));
                            format!("{id} inc={inc} view={view:?}")
                        })
                        .take(3)
                        .collect();
                    example.push_str(&format!("ghosts {ghosts:?}; "));
                    let downs: Vec<String> = node
                        .members()
                        .filter(|m| m.state == MemberState::Down)
                        .filter(|m| {
                            self.slot_of(&m.identity.id)
                                .is_some_and(|j| self.slots[j].node.is_some())
                        })
                        .map(|m| m.identity.to_string())
                        .take(3)
                        .collect();
                    example += &format!(
                        "{} sees {} active of {} (running held Down: {:?})",
                        self.slots[i].id,
                        node.active_members(),
                        live - 1,
                        downs
                    );
                }
            }
        }
        format!("{short} nodes with a wrong member count; {example}")
    }
}
