//! The periodic and end-of-run checks: they hand the checkers of
//! [`crate::checkers`] what the running nodes hold (convergence,
//! acknowledged writes, linearizability, delivery), take the periodic
//! measurements, and fire the observation plants that prove the per-event
//! checkers fail (see [`crate::plant`]).

use super::*;
use crate::checkers::convergence::{self, Divergence};

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
            let seen = self.checkers.generations.seen(a, b);
            let Some(g) = seen.filter(|&g| g > 0) else {
                return;
            };
            let id = Identity::new(truth.id, truth.addr, Generation(g - 1));
            (Plant::GenerationBack, Event::MemberUp(id))
        } else if p.armed(Plant::UnknownMember, now) {
            let id = NodeId::new("intruder").expect("valid name");
            let id = Identity::new(id, addr_of(self.slots.len()), Generation(1));
            (Plant::UnknownMember, Event::MemberUp(id))
        } else if p.armed(Plant::SecondCluster, now) {
            let Some(c) = self.checkers.cluster.first() else {
                return;
            };
            (
                Plant::SecondCluster,
                Event::MetaBootstrapped { cluster: c ^ 1 },
            )
        } else if p.armed(Plant::SecondLeader, now) {
            let Some((term, leader)) = self.checkers.leaders.newest() else {
                return;
            };
            let Some(&claimant) = running.iter().find(|&&i| self.slots[i].id != *leader) else {
                return;
            };
            self.planted.fire(Plant::SecondLeader, now);
            self.claims_leader(claimant, term);
            return;
        } else if p.armed(Plant::DivergentApply, now) {
            let Some((index, (key, _))) = self.checkers.entries.first() else {
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
        convergence::converged(&self.running_nodes(), with_state)
    }

    /// What keeps the running nodes from having converged (see
    /// [`convergence::divergence`]), if anything.
    fn divergence(&self, with_state: bool, plant: Option<Plant>) -> Option<Divergence> {
        convergence::divergence(&self.running_nodes(), with_state, plant)
    }

    /// The running nodes, in slot order.
    fn running_nodes(&self) -> Vec<&Node> {
        self.slots.iter().filter_map(|s| s.node.as_ref()).collect()
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

    /// Every 100 ms of virtual time: the measurements of convergence and
    /// recovery, the leaders the nodes' Raft states claim, the observation
    /// plants, forgeries, and the traffic series.
    pub(super) fn periodic_check(&mut self) {
        let running = self.running();
        if running.is_empty() {
            return;
        }
        if std::env::var_os("ROSTER_SIM_DEBUG").is_some() && self.now.is_multiple_of(2 * SEC) {
            self.print_member_counts(&running);
        }
        self.measure_convergence();
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

    /// Debug output: how many members the running nodes hold active.
    fn print_member_counts(&self, running: &[usize]) {
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

    /// When the join, a heal, a paused node's return and a partition's
    /// split were complete, each measured once; the traffic window starts
    /// with the join's convergence (or at 30 s).
    fn measure_convergence(&mut self) {
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
        if let Some((t0, start)) = &self.window_start {
            let t0 = *t0;
            let (b0, m0) = (start.total_bytes(), start.total_msgs());
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

    /// The relative error of the running nodes' coordinate estimates
    /// against the network model's mean round trip, over all pairs: the
    /// median and the 90th percentile. `None` without regions.
    pub(super) fn coord_error(&self) -> Option<(f64, f64)> {
        self.net.regions.as_ref()?;
        let running: Vec<(usize, roster::node::coords::Coordinate)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.node.as_ref().map(|n| (i, n.coordinate())))
            .collect();
        let mut errors = Vec::new();
        for (k, (a, ca)) in running.iter().enumerate() {
            for (b, cb) in &running[k + 1..] {
                let truth = self.net.mean_rtt(*a, *b) as f64 / SEC as f64;
                let est = ca.rtt_to(cb).as_secs_f64();
                errors.push((est - truth).abs() / truth);
            }
        }
        if errors.is_empty() {
            return None;
        }
        errors.sort_by(f64::total_cmp);
        let at =
            |q: f64| errors[((errors.len() as f64 * q).ceil() as usize).clamp(1, errors.len()) - 1];
        Some((at(0.5), at(0.9)))
    }

    /// The `queries` scenario's figures over the nodes running at the end.
    pub fn query_figures(&self) -> Option<crate::checkers::queries::QueryFigures> {
        let running = |a: usize| self.slots[a].node.is_some();
        self.checkers.queries.figures(running)
    }

    /// The `events` scenario's figures over the nodes running at the end.
    pub fn event_figures(&self) -> Option<crate::checkers::user_events::EventFigures> {
        let running = |a: usize| self.slots[a].node.is_some();
        self.checkers.user_events.figures(running)
    }

    /// The spread of tracked writes over the nodes still running.
    fn delta_spread(&mut self) {
        let spread = self
            .checkers
            .delivery
            .spread(|a| self.slots[a].node.is_some());
        self.m.delta_delays.extend(spread.delays);
        self.m.write_spread.extend(spread.per_write);
        if spread.coverage.is_some() {
            self.m.delta_coverage = spread.coverage;
        }
    }

    pub(super) fn finish(&mut self) {
        let running = self.running();
        self.m.final_live = running.len();
        self.sum_counters(running.len());
        if let Some((p50, p90)) = self.coord_error() {
            self.m.coord_errors.push((self.now, p50, p90));
        }
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
        // The one-pass check first: the pairwise one (a lookup per pair of
        // nodes) runs only to name what differs, or for a planted bug.
        let divergence = if plant.is_none() && self.converged(true) {
            None
        } else {
            self.divergence(true, plant)
        };
        self.m.converged_at_end = divergence.is_none();
        self.m.voters_final = self.healthy_voters();
        let statuses = running.iter().map(|&i| {
            let node = self.slots[i].node.as_ref().expect("running");
            (&self.slots[i].id, node.meta_status())
        });
        let c = &mut self.checkers;
        for v in c.acked.check(&c.entries, statuses) {
            self.checks.fail(self.now, v);
        }
        let history = &self.checkers.history;
        // A fault plan's report judges the history itself (see `plan`).
        if !history.is_empty() && self.plan.is_none() {
            self.m.meta_linearizable = history.check();
            self.m.meta_checked = history.checked();
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
                Divergence::Count => convergence::count_divergence(&self.running_nodes()),
                Divergence::View(v) => v,
            };
            self.fail(format!("live nodes did not converge by the end: {detail}"));
        }
    }
}
