//! The step interpreter both worlds drive: given the time and who holds
//! which role, it says what to do to the cluster ([`Do`]) and keeps the
//! fault bands for the timeline.
//!
//! A world calls [`Runner::due`] at (or after) [`Runner::next_at`], applies
//! what comes back, and calls again. Network faults compose: each step adds
//! an effect (a set of blocked directed pairs, or loss and delay on some
//! nodes) and the rules in force are their union, sent whole as
//! [`Do::Net`] whenever they change. At [`crate::plan::Plan::faults_end`]
//! everything is lifted except kills: killed nodes stay down unless a step
//! restarted them.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Direction, Group, Plan, Shape, Target};

/// Roles as a world saw them at one moment.
#[derive(Debug, Clone, Default)]
pub struct RoleView {
    /// Nodes whose process runs and is not paused.
    pub up: Vec<usize>,
    /// The metadata leader, if one is known.
    pub leader: Option<usize>,
    /// The metadata voters (the leader included).
    pub voters: Vec<usize>,
}

/// The network rules in force: blocked directed pairs `(from, to)`, and per
/// node a drop probability (both ways) and the delay and jitter added to
/// what it sends, ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetRules {
    /// `(from, to)`: what `from` sends to `to` is dropped.
    pub blocked: BTreeSet<(usize, usize)>,
    /// Drop probability per node.
    pub loss: Vec<f64>,
    /// (delay, jitter) per node, ms.
    pub delay: Vec<(u64, u64)>,
}

/// What the world must do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Do {
    /// Put these network rules in force (replacing the previous ones).
    Net(NetRules),
    /// `kill -9` the node.
    Kill(usize),
    /// Start a killed node.
    Start(usize),
    /// Stop a running node gracefully and start it again.
    Restart(usize),
    /// Freeze the node.
    Pause(usize),
    /// Let a frozen node run again.
    Resume(usize),
    /// Set the node's clock offset and drift (zeros: its own clock).
    Clock {
        /// The node.
        node: usize,
        /// Offset, ms.
        offset_ms: i64,
        /// Drift, ppm.
        drift_ppm: f64,
    },
}

/// A fault as drawn on the timeline: when, what, on which nodes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Band {
    /// Start, seconds.
    pub from: f64,
    /// End, seconds (`None`: still in force).
    pub to: Option<f64>,
    /// What it is.
    pub label: String,
    /// The nodes it touches.
    pub nodes: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Effect {
    Blocks(BTreeSet<(usize, usize)>),
    Impair {
        nodes: Vec<usize>,
        loss: f64,
        delay: (u64, u64),
    },
}

#[derive(Debug, Clone)]
enum Undo {
    Effect(u64),
    Resume(usize),
    Start(usize),
    Clock(usize),
}

/// The plans' one generator (xorshift64*): the runner's choices and the
/// real-agent clients' draw from it, seeded.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Self {
        SeededRng(seed | 1)
    }

    /// The next number.
    pub fn draw(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.draw() % n.max(1) as u64) as usize
    }
}

/// Runs a plan's steps for `n` nodes.
#[derive(Debug)]
pub struct Runner {
    plan: Plan,
    n: usize,
    next_step: usize,
    undos: Vec<(f64, u64, Undo)>,
    seq: u64,
    rng: SeededRng,
    effects: BTreeMap<u64, (Effect, usize)>,
    killed: BTreeMap<usize, usize>,
    paused: BTreeMap<usize, usize>,
    clocks: BTreeMap<usize, usize>,
    bands: Vec<Band>,
    finished: bool,
    /// Steps that found no node to act on (say, `kill leader` with no
    /// leader), described.
    pub skipped: Vec<String>,
}

impl Runner {
    /// A runner for `plan` on `n` nodes (checked with
    /// [`Plan::check_nodes`]), its random choices drawn from `seed`.
    pub fn new(plan: Plan, n: usize, seed: u64) -> Self {
        Self {
            plan,
            n,
            next_step: 0,
            undos: Vec::new(),
            seq: 0,
            rng: SeededRng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            effects: BTreeMap::new(),
            killed: BTreeMap::new(),
            paused: BTreeMap::new(),
            clocks: BTreeMap::new(),
            bands: Vec::new(),
            finished: false,
            skipped: Vec::new(),
        }
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The fault bands so far.
    pub fn bands(&self) -> &[Band] {
        &self.bands
    }

    /// Nodes killed and not restarted.
    pub fn killed(&self) -> impl Iterator<Item = usize> + '_ {
        self.killed.keys().copied()
    }

    /// When [`Runner::due`] next has something to do, seconds (`None`: the
    /// plan is over).
    pub fn next_at(&self) -> Option<f64> {
        if self.finished {
            return None;
        }
        let step = self.plan.steps.get(self.next_step).map(|s| s.at);
        let undo = self.undos.iter().map(|u| u.0).reduce(f64::min);
        let end = self.plan.faults_end();
        Some([step, undo].into_iter().flatten().fold(end, f64::min))
    }

    fn pick(&mut self, from: &[usize]) -> Option<usize> {
        if from.is_empty() {
            return None;
        }
        let i = (self.rng.draw() % from.len() as u64) as usize;
        Some(from[i])
    }

    fn shuffled(&mut self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.n).collect();
        for i in (1..v.len()).rev() {
            let j = (self.rng.draw() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }

    fn resolve(&mut self, t: &Target, roles: &RoleView) -> Option<usize> {
        let (up, leader, voters) = (roles.up.clone(), roles.leader, roles.voters.clone());
        match t {
            Target::Index(i) => Some(*i).filter(|&i| i < self.n),
            Target::Leader => leader,
            Target::Follower => {
                let f: Vec<usize> = voters
                    .iter()
                    .copied()
                    .filter(|&v| Some(v) != leader && up.contains(&v))
                    .collect();
                self.pick(&f)
            }
            Target::Voter => {
                let v: Vec<usize> = voters.into_iter().filter(|v| up.contains(v)).collect();
                self.pick(&v)
            }
            Target::NonVoter => {
                let nv: Vec<usize> = up.into_iter().filter(|u| !voters.contains(u)).collect();
                self.pick(&nv)
            }
            Target::Random => self.pick(&up),
        }
    }

    fn group(&mut self, g: &Group, roles: &RoleView) -> Vec<usize> {
        let mut out: Vec<usize> = match g {
            Group::All => (0..self.n).collect(),
            Group::Majority => self.shuffled()[..self.n / 2 + 1].to_vec(),
            Group::Minority => self.shuffled()[..(self.n - 1) / 2].to_vec(),
            Group::List(l) => l.iter().filter_map(|t| self.resolve(t, roles)).collect(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    fn rules(&self) -> NetRules {
        let mut r = NetRules {
            blocked: BTreeSet::new(),
            loss: vec![0.0; self.n],
            delay: vec![(0, 0); self.n],
        };
        for (e, _) in self.effects.values() {
            match e {
                Effect::Blocks(b) => r.blocked.extend(b.iter().copied()),
                Effect::Impair { nodes, loss, delay } => {
                    for &i in nodes {
                        // Two impairments of one node: the stronger holds.
                        r.loss[i] = r.loss[i].max(*loss);
                        r.delay[i].0 = r.delay[i].0.max(delay.0);
                        r.delay[i].1 = r.delay[i].1.max(delay.1);
                    }
                }
            }
        }
        r
    }

    fn band(&mut self, at: f64, label: String, nodes: Vec<usize>) -> usize {
        self.bands.push(Band {
            from: at,
            to: None,
            label,
            nodes,
        });
        self.bands.len() - 1
    }

    fn close(&mut self, band: usize, at: f64) {
        if let Some(b) = self.bands.get_mut(band)
            && b.to.is_none()
        {
            b.to = Some(at);
        }
    }

    fn undo_after(&mut self, at: f64, for_secs: Option<f64>, u: Undo) {
        if let Some(f) = for_secs {
            self.seq += 1;
            self.undos.push((at + f, self.seq, u));
        }
    }

    fn add_effect(&mut self, at: f64, for_secs: Option<f64>, e: Effect, label: String) {
        let nodes: Vec<usize> = match &e {
            Effect::Blocks(b) => {
                let s: BTreeSet<usize> = b.iter().flat_map(|&(x, y)| [x, y]).collect();
                s.into_iter().collect()
            }
            Effect::Impair { nodes, .. } => nodes.clone(),
        };
        let band = self.band(at, label, nodes);
        self.seq += 1;
        let id = self.seq;
        self.effects.insert(id, (e, band));
        self.undo_after(at, for_secs, Undo::Effect(id));
    }

    fn cut(&self, a: &[usize], b: &[usize]) -> BTreeSet<(usize, usize)> {
        let mut s = BTreeSet::new();
        for &x in a {
            for &y in b {
                if x != y {
                    s.insert((x, y));
                    s.insert((y, x));
                }
            }
        }
        s
    }

    fn partition(&mut self, shape: Shape) -> (BTreeSet<(usize, usize)>, String) {
        let order = self.shuffled();
        match shape {
            Shape::Halves | Shape::MajorityMinority => {
                let k = if shape == Shape::Halves {
                    self.n.div_ceil(2)
                } else {
                    self.n / 2 + 1
                };
                let (a, b) = order.split_at(k);
                (
                    self.cut(a, b),
                    format!("partition {} | {}", names(a), names(b)),
                )
            }
            Shape::Bridge => {
                let (bridge, rest) = order.split_first().expect("at least two nodes");
                let (a, b) = rest.split_at(rest.len().div_ceil(2));
                (
                    self.cut(a, b),
                    format!("bridge {} | n{bridge} | {}", names(a), names(b)),
                )
            }
        }
    }

    /// What to do at `now` (seconds): every undo and step due, in time
    /// order, and at the end of the fault phase the lifting of everything
    /// but kills.
    pub fn due(&mut self, now: f64, roles: &RoleView) -> Vec<Do> {
        let mut out = Vec::new();
        let before = self.rules();
        loop {
            let undo = self
                .undos
                .iter()
                .enumerate()
                .filter(|(_, u)| u.0 <= now)
                .min_by(|a, b| a.1.0.total_cmp(&b.1.0).then(a.1.1.cmp(&b.1.1)))
                .map(|(i, u)| (i, u.0));
            let step = self
                .plan
                .steps
                .get(self.next_step)
                .filter(|s| s.at <= now)
                .map(|s| s.at);
            match (undo, step) {
                (Some((i, ut)), s) if s.is_none_or(|st| ut <= st) => {
                    let (at, _, u) = self.undos.remove(i);
                    self.undo(at, u, &mut out);
                }
                (_, Some(_)) => {
                    let s = self.plan.steps[self.next_step].clone();
                    self.next_step += 1;
                    self.step(&s, roles, &mut out);
                }
                _ => break,
            }
        }
        let end = self.plan.faults_end();
        if !self.finished && now >= end {
            self.finished = true;
            self.undos.clear();
            for (_, (_, band)) in std::mem::take(&mut self.effects) {
                self.close(band, end);
            }
            for (node, band) in std::mem::take(&mut self.paused) {
                self.close(band, end);
                out.push(Do::Resume(node));
            }
            for (node, band) in std::mem::take(&mut self.clocks) {
                self.close(band, end);
                out.push(Do::Clock {
                    node,
                    offset_ms: 0,
                    drift_ppm: 0.0,
                });
            }
        }
        let after = self.rules();
        if after != before {
            // Network changes go first: a restart then meets the new rules.
            out.insert(0, Do::Net(after));
        }
        out
    }

    fn undo(&mut self, at: f64, u: Undo, out: &mut Vec<Do>) {
        match u {
            Undo::Effect(id) => {
                if let Some((_, band)) = self.effects.remove(&id) {
                    self.close(band, at);
                }
            }
            Undo::Resume(node) => {
                if let Some(band) = self.paused.remove(&node) {
                    self.close(band, at);
                    out.push(Do::Resume(node));
                }
            }
            Undo::Start(node) => {
                if let Some(band) = self.killed.remove(&node) {
                    self.close(band, at);
                    out.push(Do::Start(node));
                }
            }
            Undo::Clock(node) => {
                if let Some(band) = self.clocks.remove(&node) {
                    self.close(band, at);
                    out.push(Do::Clock {
                        node,
                        offset_ms: 0,
                        drift_ppm: 0.0,
                    });
                }
            }
        }
    }

    fn skip(&mut self, s: &super::Step, why: &str) {
        self.skipped
            .push(format!("line {} at {} s: {why}", s.line, s.at));
    }

    // One arm per step type.
    fn step(&mut self, s: &super::Step, roles: &RoleView, out: &mut Vec<Do>) {
        let at = s.at;
        match &s.action {
            Action::Partition(shape) => {
                let (blocks, label) = self.partition(*shape);
                self.add_effect(at, s.for_secs, Effect::Blocks(blocks), label);
            }
            Action::Isolate(t) => {
                let Some(x) = self.resolve(t, roles) else {
                    return self.skip(s, "no node to isolate");
                };
                let others: Vec<usize> = (0..self.n).filter(|&i| i != x).collect();
                let blocks = self.cut(&[x], &others);
                self.add_effect(
                    at,
                    s.for_secs,
                    Effect::Blocks(blocks),
                    format!("isolate n{x}"),
                );
            }
            Action::OneWay(t, d) => {
                let Some(x) = self.resolve(t, roles) else {
                    return self.skip(s, "no node to block");
                };
                let blocks = (0..self.n)
                    .filter(|&i| i != x)
                    .map(|i| if *d == Direction::In { (i, x) } else { (x, i) })
                    .collect();
                let way = if *d == Direction::In { "in" } else { "out" };
                self.add_effect(
                    at,
                    s.for_secs,
                    Effect::Blocks(blocks),
                    format!("one-way {way} n{x}"),
                );
            }
            Action::Impair {
                nodes,
                loss,
                delay_ms,
                jitter_ms,
            } => {
                let nodes = self.group(nodes, roles);
                if nodes.is_empty() {
                    return self.skip(s, "no node to impair");
                }
                let label = format!(
                    "impair {} (loss {loss}, delay {delay_ms}±{jitter_ms} ms)",
                    names(&nodes)
                );
                let e = Effect::Impair {
                    nodes,
                    loss: *loss,
                    delay: (*delay_ms, *jitter_ms),
                };
                self.add_effect(at, s.for_secs, e, label);
            }
            Action::Kill(t) => {
                let Some(x) = self.resolve(t, roles) else {
                    return self.skip(s, "no node to kill");
                };
                if self.killed.contains_key(&x) {
                    return self.skip(s, "the node is already killed");
                }
                if let Some(b) = self.paused.remove(&x) {
                    self.close(b, at);
                }
                let band = self.band(at, format!("kill n{x}"), vec![x]);
                self.killed.insert(x, band);
                out.push(Do::Kill(x));
                self.undo_after(at, s.for_secs, Undo::Start(x));
            }
            Action::Pause(t) => {
                let Some(x) = self.resolve(t, roles) else {
                    return self.skip(s, "no node to pause");
                };
                if self.killed.contains_key(&x) || self.paused.contains_key(&x) {
                    return self.skip(s, "the node is killed or paused already");
                }
                let band = self.band(at, format!("pause n{x}"), vec![x]);
                self.paused.insert(x, band);
                out.push(Do::Pause(x));
                self.undo_after(at, s.for_secs, Undo::Resume(x));
            }
            Action::Resume(t) => {
                let nodes: Vec<usize> = match t {
                    Some(t) => self.resolve(t, roles).into_iter().collect(),
                    None => self.paused.keys().copied().collect(),
                };
                for x in nodes {
                    self.undo(at, Undo::Resume(x), out);
                }
            }
            Action::Restart(t) => {
                let nodes: Vec<usize> = match t {
                    Some(t) => self.resolve(t, roles).into_iter().collect(),
                    None => self.killed.keys().copied().collect(),
                };
                for x in nodes {
                    if self.killed.contains_key(&x) {
                        self.undo(at, Undo::Start(x), out);
                    } else {
                        if let Some(b) = self.paused.remove(&x) {
                            self.close(b, at);
                        }
                        let band = self.band(at, format!("restart n{x}"), vec![x]);
                        self.close(band, at);
                        out.push(Do::Restart(x));
                    }
                }
            }
            Action::Clock {
                node,
                offset_ms,
                drift_ppm,
            } => {
                let Some(x) = self.resolve(node, roles) else {
                    return self.skip(s, "no node for the clock");
                };
                if let Some(b) = self.clocks.remove(&x) {
                    self.close(b, at);
                }
                let band = self.band(
                    at,
                    format!("clock n{x} {offset_ms:+} ms {drift_ppm:+} ppm"),
                    vec![x],
                );
                self.clocks.insert(x, band);
                out.push(Do::Clock {
                    node: x,
                    offset_ms: *offset_ms,
                    drift_ppm: *drift_ppm,
                });
                self.undo_after(at, s.for_secs, Undo::Clock(x));
            }
            Action::Heal => {
                for (_, (_, band)) in std::mem::take(&mut self.effects) {
                    self.close(band, at);
                }
                self.undos.retain(|u| !matches!(u.2, Undo::Effect(_)));
            }
        }
    }
}

fn names(nodes: &[usize]) -> String {
    let mut v = nodes.to_vec();
    v.sort_unstable();
    v.iter()
        .map(|i| format!("n{i}"))
        .collect::<Vec<_>>()
        .join(",")
}
