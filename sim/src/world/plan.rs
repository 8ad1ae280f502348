//! A fault plan run in the world: the plan's steps applied as they come
//! due, and the plan's record (member views, processes, leader, state
//! writes) sampled as a real-agent run samples it, every 200 ms.

use super::*;
use roster::plan::record::{Proc, Record, Seen};
use roster::plan::run::{Do, RoleView, Runner};

/// How often the record samples the nodes' member lists and the leader,
/// as `roster cluster chaos run` polls real agents.
pub const SAMPLE_EVERY: Nanos = 200 * MS;

/// A fault plan in progress.
pub struct PlanRun {
    /// The step interpreter.
    pub runner: Runner,
    /// What the run recorded so far.
    pub record: Record,
    /// What each observer was last recorded holding, by subject.
    seen: Vec<BTreeMap<usize, Seen>>,
    /// The leader last recorded.
    leader: Option<Option<usize>>,
    /// State writes acknowledged: (writer, its generation, key).
    writes: Vec<(usize, u64, String)>,
}

fn index_of(id: &NodeId) -> Option<usize> {
    id.as_str().strip_prefix('n')?.parse().ok()
}

impl World {
    /// Starts running `runner`'s plan, recording into `record`.
    pub fn start_plan(&mut self, runner: Runner, record: Record) {
        let n = self.slots.len();
        if let Some(t) = runner.next_at() {
            self.at((t * SEC as f64).ceil() as Nanos, Action::PlanTick);
        }
        let mut t = SAMPLE_EVERY;
        while t <= self.end {
            self.at(t, Action::PlanSample);
            t += SAMPLE_EVERY;
        }
        self.plan = Some(PlanRun {
            runner,
            record,
            seen: vec![BTreeMap::new(); n],
            leader: None,
            writes: Vec::new(),
        });
    }

    /// The nodes running and not frozen.
    pub(super) fn up(&self) -> Vec<usize> {
        self.running()
            .into_iter()
            .filter(|&i| !self.slots[i].paused)
            .collect()
    }

    /// The leader and voters as the up node with the newest term holding a
    /// leader sees them.
    fn roles(&self) -> RoleView {
        let up = self.up();
        let best = up
            .iter()
            .filter_map(|&i| self.slots[i].node.as_ref().map(|n| n.meta_status()))
            .filter(|s| s.leader.is_some())
            .max_by_key(|s| s.term);
        let leader = best
            .as_ref()
            .and_then(|s| s.leader.as_ref())
            .and_then(index_of);
        let voters = best
            .map(|s| s.voters.iter().filter_map(index_of).collect())
            .unwrap_or_default();
        RoleView { up, leader, voters }
    }

    /// Records that a state write of `key` by `n` was acknowledged.
    pub(super) fn plan_wrote(&mut self, n: usize, key: &str) {
        let generation = self.slots[n].generation;
        if let Some(p) = &mut self.plan {
            p.writes.push((n, generation, key.to_owned()));
            p.record.state_writes += 1;
        }
    }

    fn plan_proc(&mut self, t: Nanos, n: usize, state: Proc) {
        if let Some(p) = &mut self.plan {
            p.record.procs.push((t, n, state));
        }
    }

    pub(super) fn plan_tick(&mut self) {
        let roles = self.roles();
        let Some(p) = &mut self.plan else {
            return;
        };
        let todo = p.runner.due(self.now as f64 / SEC as f64, &roles);
        let next = p.runner.next_at();
        for d in todo {
            self.plan_do(d);
        }
        if let Some(t) = next {
            let at = ((t * SEC as f64).ceil() as Nanos).max(self.now + 1);
            self.at(at, Action::PlanTick);
        }
    }

    // One arm per thing a plan does to the world.
    fn plan_do(&mut self, d: Do) {
        match d {
            Do::Net(r) => {
                if let Some(p) = &mut self.plan {
                    p.record.nets.push((self.now, r.clone()));
                }
                self.net.blocked = r.blocked;
                for (i, (loss, (delay, jitter))) in r.loss.into_iter().zip(r.delay).enumerate() {
                    self.net.node_loss[i] = loss;
                    self.net.node_delay[i] = (delay * MS, jitter * MS);
                }
                self.topology_changed = Some(self.now);
            }
            Do::Kill(n) => {
                let slot = &mut self.slots[n];
                slot.paused = false;
                slot.held.clear();
                slot.held_bytes = 0;
                self.act(Action::Crash(n));
                self.plan_proc(self.now, n, Proc::Down);
            }
            Do::Start(n) => {
                self.start(n);
                self.plan_proc(self.now, n, Proc::Up);
            }
            Do::Restart(n) => {
                // A graceful stop, and the supervisor's start a second later.
                self.slots[n].paused = false;
                self.act(Action::Leave(n));
                self.plan_proc(self.now, n, Proc::Stopped);
                self.at(self.now + SEC, Action::Start(n));
                self.plan_proc(self.now + SEC, n, Proc::Up);
            }
            Do::Pause(n) => {
                self.act(Action::Freeze(n));
                self.plan_proc(self.now, n, Proc::Paused);
            }
            Do::Resume(n) => {
                self.resume(n);
                self.plan_proc(self.now, n, Proc::Up);
            }
            Do::Clock {
                node,
                offset_ms,
                drift_ppm,
            } => {
                // The drift runs from now: what it would have added since
                // the start is taken back.
                let c = &mut self.slots[node].clock;
                let true_ms = (self.now / MS) as f64;
                c.jumped_ms += ((c.drift_ppm - drift_ppm) * true_ms / 1e6) as i64;
                c.drift_ppm = drift_ppm;
                c.offset_ms = offset_ms;
            }
        }
    }

    /// Samples every up node's member list and the leader.
    pub(super) fn plan_sample(&mut self) {
        let Some(mut p) = self.plan.take() else {
            return;
        };
        for o in self.up() {
            let Some(node) = self.slots[o].node.as_ref() else {
                continue;
            };
            let now: BTreeMap<usize, Seen> = node
                .members()
                .filter_map(|m| {
                    let seen = match m.state {
                        MemberState::Alive => Seen::Alive,
                        MemberState::Suspect => Seen::Suspect,
                        MemberState::Down => Seen::Down,
                        MemberState::Left => Seen::Left,
                    };
                    Some((index_of(&m.identity.id)?, seen))
                })
                .filter(|&(s, _)| s != o)
                .collect();
            let before = &p.seen[o];
            for (&s, &v) in &now {
                if before.get(&s) != Some(&v) {
                    p.record.views.push((self.now, o, s, Some(v)));
                }
            }
            for &s in before.keys().filter(|s| !now.contains_key(s)) {
                p.record.views.push((self.now, o, s, None));
            }
            p.seen[o] = now;
        }
        let leader = self.roles().leader;
        if p.leader != Some(leader) {
            p.leader = Some(leader);
            p.record.leaders.push((self.now, leader));
        }
        self.plan = Some(p);
    }

    /// Ends the plan's record: the history, the bands, the world's own
    /// checkers' violations, and which state writes every running node
    /// lacks.
    pub fn finish_plan(&mut self) -> Option<Record> {
        let p = self.plan.take()?;
        let mut r = p.record;
        r.history = self.checkers.history.clone();
        r.bands = p.runner.bands().to_vec();
        r.skipped = p.runner.skipped.clone();
        r.violations = self.checks.violations.clone();
        let running = self.running();
        let mut missing = Vec::new();
        for (w, generation, key) in &p.writes {
            if self.slots[*w].generation != *generation || self.slots[*w].node.is_none() {
                continue;
            }
            let writer = self.slots[*w].id.clone();
            for &o in running.iter().filter(|&&o| o != *w) {
                let has = self.slots[o]
                    .node
                    .as_ref()
                    .is_some_and(|n| n.state(&writer, key).is_some());
                if !has {
                    missing.push((o, *w, key.clone()));
                }
            }
        }
        r.state_missing = Some(missing);
        Some(r)
    }
}
