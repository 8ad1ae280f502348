//! What a plan run records, in either world, and how it is judged: one
//! [`Record`] (the metadata history, every node's view of every other
//! sampled over time, the processes' states, the fault bands, the leader)
//! and one [`PlanReport`] with the same fields in the simulator and on real
//! agents.
//!
//! The judgements, each computed from the record alone:
//!
//! - **linearizable**: the metadata history, every key a register
//!   ([`super::linearizable`]); the final reads of every key after the
//!   heal are part of it, so an acknowledged write that was lost shows as
//!   a history that is not linearizable.
//! - **converged**: from the end of the fault phase, every running node
//!   holds every other running node Alive and every killed node Down, Left
//!   or forgotten; `convergence_secs` is how long that took.
//! - **false Downs**: a running node held Down by a running observer that
//!   the network rules in force do not cut it off from (no block either
//!   way, neither losing half its traffic), at a moment when no fault began
//!   or ended within the verdict window before (30 s; the subject was
//!   neither killed, paused nor restarted in it).
//!   Downs within a window of a change are counted apart as transitions,
//!   as the simulator's false-Down checker does.
//! - **detection**: per kill, from the kill until the first and until
//!   every running observer held the node Down (or Left).
//! - **recovery**: per restart or resume, until every other running node
//!   held it Alive.
//! - **state**: every state write acknowledged by a node running at the
//!   end is held by every running node at the end.

use serde::Serialize;

use super::linearizable::{Checked, History, Nanos, Outcome};
use super::run::{Band, NetRules};

/// One second in [`Nanos`].
pub const SEC: Nanos = 1_000_000_000;
/// The verdict window for false Downs.
pub const VERDICT_WINDOW: Nanos = 30 * SEC;

/// How an observer holds a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Seen {
    /// Alive.
    Alive,
    /// Suspect.
    Suspect,
    /// Down.
    Down,
    /// Left.
    Left,
}

impl Seen {
    /// From a member state's name as the API gives it.
    pub fn from_name(s: &str) -> Option<Seen> {
        match s.to_ascii_lowercase().as_str() {
            "alive" => Some(Seen::Alive),
            "suspect" => Some(Seen::Suspect),
            "down" => Some(Seen::Down),
            "left" => Some(Seen::Left),
            _ => None,
        }
    }
}

/// A node's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Proc {
    /// Running.
    Up,
    /// Killed (`kill -9`, a crash).
    Down,
    /// Stopped gracefully (it left).
    Stopped,
    /// Frozen.
    Paused,
}

/// Everything a plan run recorded.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// `sim` or `agents`.
    pub world: String,
    /// The plan's name.
    pub plan: String,
    /// The seed of the plan's random choices.
    pub seed: u64,
    /// Node names, by index.
    pub names: Vec<String>,
    /// The metadata client history.
    pub history: History,
    /// Changes of how `observer` holds `subject`: (time, observer,
    /// subject, state; `None`: not in its member list).
    pub views: Vec<(Nanos, usize, usize, Option<Seen>)>,
    /// Changes of each process: (time, node, state). Every node starts Up
    /// at 0 unless recorded otherwise.
    pub procs: Vec<(Nanos, usize, Proc)>,
    /// The fault bands, seconds.
    pub bands: Vec<Band>,
    /// The network rules put in force, with when.
    pub nets: Vec<(Nanos, NetRules)>,
    /// Changes of the metadata leader.
    pub leaders: Vec<(Nanos, Option<usize>)>,
    /// When the fault phase ended.
    pub faults_end: Nanos,
    /// When the run ended.
    pub end: Nanos,
    /// State writes acknowledged.
    pub state_writes: u64,
    /// (observer, writer, key) held by no observer that should hold it, at
    /// the end; `None` when not checked.
    pub state_missing: Option<Vec<(usize, usize, String)>>,
    /// User events sent.
    pub events_sent: u64,
    /// Invariant violations found by checkers of the world itself (the
    /// simulator's), described.
    pub violations: Vec<String>,
    /// Steps skipped for want of a node.
    pub skipped: Vec<String>,
}

/// The judgement of a plan run: the same fields in both worlds.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// `sim` or `agents`.
    pub world: String,
    /// The plan.
    pub plan: String,
    /// Nodes.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Length of the run, seconds.
    pub duration_secs: f64,
    /// End of the fault phase, seconds.
    pub faults_end_secs: f64,
    /// Metadata operations invoked.
    pub meta_ops: u64,
    /// Of which acknowledged (a value read, a write or CAS answered).
    pub meta_ok: u64,
    /// Refused before anything was proposed.
    pub meta_failed: u64,
    /// Outcome unknown (timeout, crash, no answer).
    pub meta_unknown: u64,
    /// What the linearizability check judged.
    pub checked: Checked,
    /// The metadata history is linearizable (`None`: nothing to judge, or
    /// the search ran out of its budget, which `liveness` then says).
    pub linearizable: Option<bool>,
    /// Membership converged after the fault phase and stayed so.
    pub converged: bool,
    /// From the end of the fault phase until it converged, seconds.
    pub convergence_secs: Option<f64>,
    /// False Downs (see the module documentation).
    pub false_downs: u64,
    /// Downs of running nodes within a verdict window of a fault change.
    pub transition_downs: u64,
    /// Nodes killed.
    pub kills: u64,
    /// Per detected kill: until the first observer held it Down.
    pub detect_first_secs: Vec<f64>,
    /// Per kill detected everywhere: until every running observer did.
    pub detect_all_secs: Vec<f64>,
    /// The slowest kill detected everywhere (for sweeps' summaries).
    pub detect_all_max_secs: Option<f64>,
    /// Kills some running observer never held Down before the node came
    /// back or the run ended.
    pub undetected: u64,
    /// Per restart or resume: until every other running node held it Alive.
    pub recovery_secs: Vec<f64>,
    /// The slowest recovery (for sweeps' summaries).
    pub recovery_max_secs: Option<f64>,
    /// Restarts or resumes not recovered by the end.
    pub unrecovered: u64,
    /// Leader changes seen.
    pub leader_changes: u64,
    /// State writes acknowledged.
    pub state_writes: u64,
    /// Every acknowledged state write of a running writer reached every
    /// running node (`None`: not checked).
    pub state_converged: Option<bool>,
    /// User events sent.
    pub events_sent: u64,
    /// Every invariant violation, described.
    pub violations: Vec<String>,
    /// Every liveness failure, described.
    pub liveness: Vec<String>,
    /// Steps skipped for want of a node.
    pub skipped: Vec<String>,
    /// `pass`, `invariant` (exit 2) or `liveness` (exit 3).
    pub verdict: String,
}

impl PlanReport {
    /// The exit code, as `roster-sim`'s: 0 pass, 2 an invariant violated,
    /// 3 a liveness check failed.
    pub fn exit_code(&self) -> u8 {
        match self.verdict.as_str() {
            "pass" => 0,
            "invariant" => 2,
            _ => 3,
        }
    }
}

/// What replaying the views found.
struct Membership {
    false_downs: u64,
    transition_downs: u64,
    converged: bool,
    since: Option<Nanos>,
}

fn secs(n: Nanos) -> f64 {
    (n as f64 / SEC as f64 * 1000.0).round() / 1000.0
}

/// Replays the record's views and processes in time order.
pub(super) struct Replay<'a> {
    r: &'a Record,
    n: usize,
    /// (time, kind: 0 a process, 1 a view, 2 the end of faults; index)
    order: Vec<(Nanos, u8, usize)>,
}

impl<'a> Replay<'a> {
    pub(super) fn new(r: &'a Record) -> Self {
        let mut order: Vec<(Nanos, u8, usize)> = Vec::new();
        order.extend(r.procs.iter().enumerate().map(|(i, p)| (p.0, 0, i)));
        order.extend(r.views.iter().enumerate().map(|(i, v)| (v.0, 1, i)));
        // A mark at the end of the fault phase, so the state is judged then.
        order.push((r.faults_end, 2, 0));
        order.sort_unstable();
        Replay {
            r,
            n: r.names.len(),
            order,
        }
    }

    /// Calls `f(time, procs, views)` after every group of changes at one
    /// time, and once at the end.
    pub(super) fn each(
        &self,
        mut f: impl FnMut(Nanos, &[Proc], &[Vec<Option<Seen>>], Option<(usize, usize)>),
    ) {
        let mut procs = vec![Proc::Up; self.n];
        let mut views = vec![vec![None; self.n]; self.n];
        let mut i = 0;
        while i < self.order.len() {
            let t = self.order[i].0;
            while i < self.order.len() && self.order[i].0 == t {
                let (_, kind, k) = self.order[i];
                if kind == 2 {
                    // The mark: nothing changes.
                } else if kind == 0 {
                    let (_, node, p) = self.r.procs[k];
                    procs[node] = p;
                } else {
                    let (_, o, s, seen) = self.r.views[k];
                    let before = views[o][s];
                    views[o][s] = seen;
                    if seen == Some(Seen::Down) && before != Some(Seen::Down) {
                        f(t, &procs, &views, Some((o, s)));
                    }
                }
                i += 1;
            }
            f(t, &procs, &views, None);
        }
        f(self.r.end, &procs, &views, None);
    }
}

fn gone(s: Option<Seen>) -> bool {
    matches!(s, None | Some(Seen::Down) | Some(Seen::Left))
}

fn converged(procs: &[Proc], views: &[Vec<Option<Seen>>]) -> bool {
    (0..procs.len()).filter(|&o| procs[o] == Proc::Up).all(|o| {
        (0..procs.len())
            .filter(|&s| s != o)
            .all(|s| match procs[s] {
                Proc::Up => views[o][s] == Some(Seen::Alive),
                _ => gone(views[o][s]),
            })
    })
}

impl Record {
    /// Times at which a fault began or ended, and each node's process
    /// changes (kills, pauses, restarts).
    fn changes(&self) -> Vec<(Nanos, Option<usize>)> {
        let mut c: Vec<(Nanos, Option<usize>)> = Vec::new();
        for b in &self.bands {
            c.push(((b.from * SEC as f64) as Nanos, None));
            if let Some(to) = b.to {
                c.push(((to * SEC as f64) as Nanos, None));
            }
        }
        for &(t, node, _) in &self.procs {
            c.push((t, Some(node)));
        }
        c
    }

    /// Whether the network rules in force at `t` cut `a` and `b` apart (a
    /// block either way) or impair either (half its traffic or more lost):
    /// a Down verdict between them is then what the fault should cause.
    fn cut(&self, t: Nanos, a: usize, b: usize) -> bool {
        let Some((_, r)) = self.nets.iter().rev().find(|(at, _)| *at <= t) else {
            return false;
        };
        let lossy = |i: usize| r.loss.get(i).is_some_and(|&l| l >= 0.5);
        r.blocked.contains(&(a, b)) || r.blocked.contains(&(b, a)) || lossy(a) || lossy(b)
    }

    /// Replays the views: false and transition Downs (each false one
    /// described in `violations`, at most 20), and whether and since when
    /// membership was converged at the end.
    fn membership(&self, violations: &mut Vec<String>) -> Membership {
        let changes = self.changes();
        let (mut false_downs, mut transition_downs) = (0u64, 0u64);
        let mut conv_since: Option<Nanos> = None;
        let mut conv_now = false;
        let replay = Replay::new(self);
        replay.each(|t, procs, views, down| {
            if let Some((o, s)) = down {
                if procs[o] == Proc::Up && procs[s] == Proc::Up && !self.cut(t, o, s) {
                    let recent = changes.iter().any(|&(c, node)| {
                        c <= t && t - c < VERDICT_WINDOW && node.is_none_or(|x| x == s || x == o)
                    });
                    if recent {
                        transition_downs += 1;
                    } else {
                        false_downs += 1;
                        if violations.len() < 20 {
                            violations.push(format!(
                                "false Down: {} held {} Down at {:.3} s",
                                self.names[o],
                                self.names[s],
                                secs(t)
                            ));
                        }
                    }
                }
                return;
            }
            if t >= self.faults_end {
                let c = converged(procs, views);
                if c && !conv_now {
                    conv_since = Some(t.max(self.faults_end));
                }
                conv_now = c;
            }
        });
        Membership {
            false_downs,
            transition_downs,
            converged: conv_now,
            since: conv_since,
        }
    }

    /// Operations acknowledged, refused and of unknown outcome.
    fn op_counts(&self) -> (u64, u64, u64) {
        let (mut ok, mut failed, mut unknown) = (0, 0, 0);
        for (_, _, _, o) in self.history.entries() {
            match o {
                Outcome::Unknown => unknown += 1,
                Outcome::Failed => failed += 1,
                _ => ok += 1,
            }
        }
        (ok, failed, unknown)
    }

    /// Judges the record.
    // Long because it fills every field of the report; the judgements
    // themselves are `membership`, `detection` and `recovery`.
    pub fn report(&self) -> PlanReport {
        let n = self.names.len();
        let (ok, failed, unknown) = self.op_counts();
        let judged = self.history.check_decided();
        let linearizable = judged.flatten();
        let mut violations = self.violations.clone();
        let mut liveness = Vec::new();
        if linearizable == Some(false) {
            violations.push("the metadata history is not linearizable".into());
        }
        if judged == Some(None) {
            // Not a violation found: the check could not finish.
            liveness.push(
                "the linearizability search ran out of its step budget before deciding".into(),
            );
        }
        let m = self.membership(&mut violations);
        let (false_downs, transition_downs, conv_now, conv_since) =
            (m.false_downs, m.transition_downs, m.converged, m.since);
        if !conv_now {
            liveness.push("membership had not converged at the end".into());
        }
        let (detect_first, detect_all, undetected, kills) = self.detection();
        if undetected > 0 {
            liveness.push(format!(
                "{undetected} kill(s) not detected by every observer"
            ));
        }
        let (recovery, unrecovered) = self.recovery();
        if unrecovered > 0 {
            liveness.push(format!(
                "{unrecovered} restart(s) or resume(s) not recovered"
            ));
        }
        let state_converged = self.state_missing.as_ref().map(|m| m.is_empty());
        if let Some(m) = &self.state_missing
            && let Some((o, w, k)) = m.first()
        {
            liveness.push(format!(
                "{} state write(s) missing at the end, e.g. {} lacks {}'s {k:?}",
                m.len(),
                self.names[*o],
                self.names[*w]
            ));
        }
        // Changes from one known leader to another (the first election is
        // not a change).
        let mut known: Vec<usize> = self.leaders.iter().filter_map(|l| l.1).collect();
        known.dedup();
        let leader_changes = known.len().saturating_sub(1) as u64;
        let verdict = if !violations.is_empty() {
            "invariant"
        } else if !liveness.is_empty() {
            "liveness"
        } else {
            "pass"
        };
        PlanReport {
            world: self.world.clone(),
            plan: self.plan.clone(),
            nodes: n,
            seed: self.seed,
            duration_secs: secs(self.end),
            faults_end_secs: secs(self.faults_end),
            meta_ops: ok + failed + unknown,
            meta_ok: ok,
            meta_failed: failed,
            meta_unknown: unknown,
            checked: self.history.checked(),
            linearizable,
            converged: conv_now,
            convergence_secs: conv_since
                .filter(|_| conv_now)
                .map(|t| secs(t - self.faults_end)),
            false_downs,
            transition_downs,
            kills,
            detect_all_max_secs: detect_all.iter().copied().reduce(f64::max),
            recovery_max_secs: recovery.iter().copied().reduce(f64::max),
            detect_first_secs: detect_first,
            detect_all_secs: detect_all,
            undetected,
            recovery_secs: recovery,
            unrecovered,
            leader_changes,
            state_writes: self.state_writes,
            state_converged,
            events_sent: self.events_sent,
            violations,
            liveness,
            skipped: self.skipped.clone(),
            verdict: verdict.into(),
        }
    }

    /// The process state of `node` over time: (time, state) changes.
    fn proc_changes(&self, node: usize) -> Vec<(Nanos, Proc)> {
        let mut v: Vec<(Nanos, Proc)> = self
            .procs
            .iter()
            .filter(|p| p.1 == node)
            .map(|p| (p.0, p.2))
            .collect();
        v.sort_by_key(|p| p.0);
        v
    }

    fn proc_at(&self, node: usize, t: Nanos) -> Proc {
        self.proc_changes(node)
            .into_iter()
            .take_while(|p| p.0 <= t)
            .last()
            .map_or(Proc::Up, |p| p.1)
    }

    /// How `o` holds `s` over time.
    fn view_changes(&self, o: usize, s: usize) -> Vec<(Nanos, Option<Seen>)> {
        let mut v: Vec<(Nanos, Option<Seen>)> = self
            .views
            .iter()
            .filter(|x| x.1 == o && x.2 == s)
            .map(|x| (x.0, x.3))
            .collect();
        v.sort_by_key(|x| x.0);
        v
    }

    /// First time in `[from, until)` at which `o` holds `s` as `want` says.
    fn first_view(
        &self,
        o: usize,
        s: usize,
        from: Nanos,
        until: Nanos,
        want: impl Fn(Option<Seen>) -> bool,
    ) -> Option<Nanos> {
        let changes = self.view_changes(o, s);
        let at_from = changes
            .iter()
            .take_while(|c| c.0 <= from)
            .last()
            .and_then(|c| c.1);
        if want(at_from) && !changes.is_empty() && changes[0].0 <= from {
            return Some(from);
        }
        changes
            .into_iter()
            .filter(|c| c.0 > from && c.0 < until)
            .find(|c| want(c.1))
            .map(|c| c.0)
    }

    fn detection(&self) -> (Vec<f64>, Vec<f64>, u64, u64) {
        let (mut first, mut all, mut undetected, mut kills) = (Vec::new(), Vec::new(), 0, 0);
        for &(t, x, p) in &self.procs {
            if p != Proc::Down || self.proc_at(x, t.saturating_sub(1)) != Proc::Up {
                continue;
            }
            kills += 1;
            let back = self
                .proc_changes(x)
                .into_iter()
                .find(|c| c.0 > t && c.1 != Proc::Down)
                .map_or(self.end, |c| c.0);
            let mut times = Vec::new();
            let mut missed = false;
            for o in (0..self.names.len()).filter(|&o| o != x) {
                // Observers running throughout, from the kill to its end.
                let steady = self.proc_at(o, t) == Proc::Up
                    && self.proc_changes(o).iter().all(|c| c.0 <= t || c.0 >= back);
                if !steady {
                    continue;
                }
                match self.first_view(o, x, t, back, gone) {
                    Some(d) => times.push(d - t),
                    None => missed = true,
                }
            }
            if let Some(&f) = times.iter().min() {
                first.push(secs(f));
            }
            if missed {
                undetected += 1;
            } else if let Some(&a) = times.iter().max() {
                all.push(secs(a));
            }
        }
        (first, all, undetected, kills)
    }

    fn recovery(&self) -> (Vec<f64>, u64) {
        let (mut out, mut unrecovered) = (Vec::new(), 0);
        for &(t, x, p) in &self.procs {
            if p != Proc::Up || t == 0 {
                continue;
            }
            let until = self
                .proc_changes(x)
                .into_iter()
                .find(|c| c.0 > t && c.1 != Proc::Up)
                .map_or(self.end + 1, |c| c.0);
            let mut worst = Some(0);
            for o in (0..self.names.len()).filter(|&o| o != x) {
                let steady = self.proc_at(o, t) == Proc::Up
                    && self
                        .proc_changes(o)
                        .iter()
                        .all(|c| c.0 <= t || c.0 >= until);
                if !steady {
                    continue;
                }
                match self.first_view(o, x, t, until, |s| s == Some(Seen::Alive)) {
                    Some(d) => worst = worst.map(|w: Nanos| w.max(d - t)),
                    None => worst = None,
                }
            }
            match worst {
                Some(w) => out.push(secs(w)),
                None => unrecovered += 1,
            }
        }
        (out, unrecovered)
    }
}
