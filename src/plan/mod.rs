//! Fault plans: one chaos experiment, written once in TOML, run in the
//! simulator (`roster-sim plan`) and against real agents (`roster cluster
//! chaos run`), judged by the same checkers and drawn as the same timeline.
//!
//! A plan is a timeline of steps (partitions, one-way blocks, loss and
//! delay, kills, pauses, restarts, clock offsets, heals) and a workload
//! (metadata clients, state writes, user events). This module holds the
//! format and its validation ([`Plan::parse`], [`Plan::check_nodes`]); the
//! step interpreter both worlds drive ([`run::Runner`]); what a run records
//! and how it is judged ([`record`]); the linearizability checker
//! ([`linearizable`]); and the SVG timeline ([`timeline`]).
//!
//! Everything here is pure but [`Plan::from_file`]: time is passed in,
//! randomness comes from the seed, and nothing touches the network, the
//! disk or the clock.
//!
//! The format, with every step type, is documented in `docs/plans.md`.

pub mod linearizable;
pub mod record;
pub mod run;
pub mod timeline;

use serde::Deserialize;

/// Longest plan file read.
pub const MAX_PLAN_BYTES: usize = 256 * 1024;
/// Most steps in one plan.
pub const MAX_STEPS: usize = 1000;
/// Latest time a step may start, seconds.
pub const MAX_AT_SECS: f64 = 86_400.0;

/// A node chosen by a step, resolved when the step runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Node `i` (0-based, as `roster cluster` numbers them).
    Index(usize),
    /// The metadata leader.
    Leader,
    /// A metadata voter that is not the leader, chosen from the seed.
    Follower,
    /// A metadata voter (the leader included), chosen from the seed.
    Voter,
    /// A member that is not a voter, chosen from the seed.
    NonVoter,
    /// Any running node, chosen from the seed.
    Random,
}

/// Several nodes chosen by a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Group {
    /// Every node.
    All,
    /// The smallest majority, chosen from the seed.
    Majority,
    /// The largest minority, chosen from the seed.
    Minority,
    /// These nodes.
    List(Vec<Target>),
}

/// How a `partition` step cuts the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Two halves (the first ⌈n/2⌉ nodes of a seeded shuffle, the rest).
    Halves,
    /// A majority and a minority, chosen from the seed (the same as halves
    /// when n is odd; with n even the minority is one smaller).
    MajorityMinority,
    /// Jepsen's bridge: two halves, and one node (chosen from the seed) in
    /// both that each side still reaches.
    Bridge,
}

/// Which way a `one-way` step blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The node hears nothing; what it sends still arrives.
    In,
    /// Nothing the node sends arrives; it still hears.
    Out,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Split the network.
    Partition(Shape),
    /// Cut one node off from every other, both ways.
    Isolate(Target),
    /// Block one node's traffic one way.
    OneWay(Target, Direction),
    /// Loss, delay and jitter on the chosen nodes' traffic.
    Impair {
        /// The nodes.
        nodes: Group,
        /// Drop probability, both ways.
        loss: f64,
        /// Added delay on what they send, ms.
        delay_ms: u64,
        /// Extra random delay, up to this many ms.
        jitter_ms: u64,
    },
    /// `kill -9`: no goodbye; it stays down until restarted.
    Kill(Target),
    /// Freeze (SIGSTOP; a frozen node in the simulator) until `resume` or
    /// the step's `for`.
    Pause(Target),
    /// Resume a paused node (`None`: every paused node).
    Resume(Option<Target>),
    /// Start a killed node again, or stop a running one gracefully and
    /// start it (`None`: every killed node).
    Restart(Option<Target>),
    /// Offset the node's wall clock (and let it drift).
    Clock {
        /// The node.
        node: Target,
        /// Offset, ms.
        offset_ms: i64,
        /// Drift, parts per million.
        drift_ppm: f64,
    },
    /// Lift every network fault in force.
    Heal,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Line of the step in the plan file.
    pub line: usize,
    /// When it runs, seconds from the start of the plan.
    pub at: f64,
    /// How long its fault lasts (`None`: until a heal, a resume, a
    /// restart or the end of the fault phase).
    pub for_secs: Option<f64>,
    /// What it does.
    pub action: Action,
}

/// The clients a plan runs during its fault phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// When the clients start, seconds.
    pub start: f64,
    /// Metadata operations per second (get 40%, put 30%, delete 10%,
    /// compare-and-set 20%), each through a random running node.
    pub meta_rate: f64,
    /// Keys the metadata clients use.
    pub meta_keys: u32,
    /// State writes per second, each on a random running node.
    pub state_rate: f64,
    /// User events per second, each from a random running node.
    pub event_rate: f64,
}

/// The metadata operation the clients run for `roll` (a draw in `0..10`):
/// get 40%, put 30%, delete 10%, compare-and-set 20% expecting `expect`
/// (what some client last read or wrote for the key), in both worlds.
pub fn meta_op(
    roll: u32,
    key: String,
    fresh: Vec<u8>,
    expect: impl FnOnce(&str) -> Option<Vec<u8>>,
) -> crate::node::MetaOp {
    use crate::node::MetaOp;
    match roll {
        0..=3 => MetaOp::Get { key },
        4..=6 => MetaOp::Put { key, value: fresh },
        7 => MetaOp::Delete { key },
        _ => MetaOp::Cas {
            expect: expect(&key),
            key,
            value: Some(fresh),
        },
    }
}

/// A parsed, validated fault plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Its name.
    pub name: String,
    /// What it does.
    pub about: String,
    /// Fewest nodes it runs on.
    pub min_nodes: usize,
    /// Seconds after the fault phase in which the cluster must converge.
    pub settle: f64,
    /// The clients.
    pub workload: Workload,
    /// The steps, in time order.
    pub steps: Vec<Step>,
}

/// Why a plan was refused: the message names the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: String,
    #[serde(default)]
    about: String,
    #[serde(default)]
    min_nodes: Option<usize>,
    #[serde(default)]
    settle: Option<f64>,
    #[serde(default)]
    workload: Option<RawWorkload>,
    #[serde(default)]
    step: Vec<toml::Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    #[serde(default)]
    start: Option<f64>,
    #[serde(default)]
    meta_rate: f64,
    #[serde(default)]
    meta_keys: Option<u32>,
    #[serde(default)]
    state_rate: f64,
    #[serde(default)]
    event_rate: f64,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawTarget {
    Index(i64),
    Name(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawGroup {
    List(Vec<RawTarget>),
    Name(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: f64,
    #[serde(rename = "do")]
    what: String,
    #[serde(rename = "for")]
    for_secs: Option<f64>,
    node: Option<RawTarget>,
    nodes: Option<RawGroup>,
    shape: Option<String>,
    direction: Option<String>,
    loss: Option<f64>,
    delay_ms: Option<u64>,
    jitter_ms: Option<u64>,
    offset_ms: Option<i64>,
    drift_ppm: Option<f64>,
}

/// The step types, with the fields each takes (besides `at`, `do`).
pub const STEP_TYPES: &[(&str, &[&str])] = &[
    ("partition", &["shape", "for"]),
    ("isolate", &["node", "for"]),
    ("one-way", &["node", "direction", "for"]),
    ("impair", &["nodes", "loss", "delay_ms", "jitter_ms", "for"]),
    ("kill", &["node", "for"]),
    ("pause", &["node", "for"]),
    ("resume", &["node"]),
    ("restart", &["node"]),
    ("clock", &["node", "offset_ms", "drift_ppm", "for"]),
    ("heal", &[]),
];

fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

fn target(t: &RawTarget) -> Result<Target, String> {
    match t {
        RawTarget::Index(i) if *i >= 0 => Ok(Target::Index(*i as usize)),
        RawTarget::Index(i) => Err(format!("node index {i} is negative")),
        RawTarget::Name(s) => match s.as_str() {
            "leader" => Ok(Target::Leader),
            "follower" => Ok(Target::Follower),
            "voter" => Ok(Target::Voter),
            "non-voter" => Ok(Target::NonVoter),
            "random" => Ok(Target::Random),
            other => Err(format!(
                "unknown node {other:?}: give an index or one of leader, follower, voter, non-voter, random"
            )),
        },
    }
}

fn group(g: &RawGroup) -> Result<Group, String> {
    match g {
        RawGroup::List(l) => Ok(Group::List(
            l.iter().map(target).collect::<Result<Vec<_>, _>>()?,
        )),
        RawGroup::Name(s) => match s.as_str() {
            "all" => Ok(Group::All),
            "majority" => Ok(Group::Majority),
            "minority" => Ok(Group::Minority),
            other => target(&RawTarget::Name(other.to_owned())).map(|t| Group::List(vec![t])),
        },
    }
}

impl RawStep {
    fn given(&self) -> Vec<&'static str> {
        let mut g = Vec::new();
        let fields: [(&'static str, bool); 10] = [
            ("for", self.for_secs.is_some()),
            ("node", self.node.is_some()),
            ("nodes", self.nodes.is_some()),
            ("shape", self.shape.is_some()),
            ("direction", self.direction.is_some()),
            ("loss", self.loss.is_some()),
            ("delay_ms", self.delay_ms.is_some()),
            ("jitter_ms", self.jitter_ms.is_some()),
            ("offset_ms", self.offset_ms.is_some()),
            ("drift_ppm", self.drift_ppm.is_some()),
        ];
        for (name, set) in fields {
            if set {
                g.push(name);
            }
        }
        g
    }

    fn node(&self) -> Result<Target, String> {
        target(self.node.as_ref().ok_or("missing field `node`")?)
    }

    fn action(&self) -> Result<Action, String> {
        let Some((_, allowed)) = STEP_TYPES.iter().find(|(n, _)| *n == self.what) else {
            let names: Vec<&str> = STEP_TYPES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown step {:?}; the step types are {}",
                self.what,
                names.join(", ")
            ));
        };
        if let Some(f) = self.given().into_iter().find(|f| !allowed.contains(f)) {
            return Err(format!("`{}` takes no `{f}`", self.what));
        }
        Ok(match self.what.as_str() {
            "partition" => Action::Partition(match self.shape.as_deref() {
                None | Some("halves") => Shape::Halves,
                Some("majority") => Shape::MajorityMinority,
                Some("bridge") => Shape::Bridge,
                Some(s) => {
                    return Err(format!("unknown shape {s:?}: halves, majority or bridge"));
                }
            }),
            "isolate" => Action::Isolate(self.node()?),
            "one-way" => Action::OneWay(
                self.node()?,
                match self.direction.as_deref() {
                    Some("in") => Direction::In,
                    Some("out") => Direction::Out,
                    Some(d) => return Err(format!("unknown direction {d:?}: in or out")),
                    None => return Err("missing field `direction` (in or out)".into()),
                },
            ),
            "impair" => {
                let loss = self.loss.unwrap_or(0.0);
                if !(0.0..=1.0).contains(&loss) {
                    return Err(format!("loss must be within [0, 1], not {loss}"));
                }
                let (delay_ms, jitter_ms) =
                    (self.delay_ms.unwrap_or(0), self.jitter_ms.unwrap_or(0));
                if delay_ms > 60_000 || jitter_ms > 60_000 {
                    return Err("delay_ms and jitter_ms must be at most 60000".into());
                }
                if loss == 0.0 && delay_ms == 0 && jitter_ms == 0 {
                    return Err("`impair` needs at least one of loss, delay_ms, jitter_ms".into());
                }
                Action::Impair {
                    nodes: group(self.nodes.as_ref().ok_or("missing field `nodes`")?)?,
                    loss,
                    delay_ms,
                    jitter_ms,
                }
            }
            "kill" => Action::Kill(self.node()?),
            "pause" => Action::Pause(self.node()?),
            "resume" => Action::Resume(self.node.as_ref().map(target).transpose()?),
            "restart" => Action::Restart(self.node.as_ref().map(target).transpose()?),
            "clock" => {
                let offset_ms = self.offset_ms.unwrap_or(0);
                let drift_ppm = self.drift_ppm.unwrap_or(0.0);
                if offset_ms.abs() > 3_600_000 {
                    return Err("offset_ms must be within ±3600000".into());
                }
                if !(drift_ppm.is_finite() && drift_ppm.abs() <= 10_000.0) {
                    return Err("drift_ppm must be within ±10000".into());
                }
                Action::Clock {
                    node: self.node()?,
                    offset_ms,
                    drift_ppm,
                }
            }
            _ => Action::Heal,
        })
    }
}

/// Checks the `[workload]` table (defaults where it is absent).
fn workload(w: Option<RawWorkload>) -> Result<Workload, PlanError> {
    let w = w.unwrap_or(RawWorkload {
        start: None,
        meta_rate: 0.0,
        meta_keys: None,
        state_rate: 0.0,
        event_rate: 0.0,
    });
    for (name, rate) in [
        ("meta_rate", w.meta_rate),
        ("state_rate", w.state_rate),
        ("event_rate", w.event_rate),
    ] {
        if !(rate.is_finite() && (0.0..=1000.0).contains(&rate)) {
            return Err(PlanError(format!(
                "workload: {name} must be within [0, 1000] per second"
            )));
        }
    }
    let meta_keys = w.meta_keys.unwrap_or(3);
    if !(1..=1000).contains(&meta_keys) {
        return Err(PlanError(
            "workload: meta_keys must be within [1, 1000]".into(),
        ));
    }
    let start = w.start.unwrap_or(5.0);
    if !(start.is_finite() && (0.0..=MAX_AT_SECS).contains(&start)) {
        return Err(PlanError(
            "workload: start must be within [0, 86400]".into(),
        ));
    }
    Ok(Workload {
        start,
        meta_rate: w.meta_rate,
        meta_keys,
        state_rate: w.state_rate,
        event_rate: w.event_rate,
    })
}

impl Plan {
    /// Parses and validates a plan. Errors name the line.
    pub fn parse(src: &str) -> Result<Plan, PlanError> {
        if src.len() > MAX_PLAN_BYTES {
            return Err(PlanError(format!(
                "the plan is {} bytes; at most {MAX_PLAN_BYTES}",
                src.len()
            )));
        }
        let raw: RawPlan = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| line_of(src, s.start));
            PlanError(match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_owned(),
            })
        })?;
        if raw.step.len() > MAX_STEPS {
            return Err(PlanError(format!("at most {MAX_STEPS} steps")));
        }
        let mut steps = Vec::with_capacity(raw.step.len());
        let mut last = 0.0;
        for s in &raw.step {
            let line = line_of(src, s.span().start);
            let r = s.get_ref();
            let err = |m: String| PlanError(format!("line {line}: step {:?}: {m}", r.what));
            if !(r.at.is_finite() && (0.0..=MAX_AT_SECS).contains(&r.at)) {
                return Err(err(format!(
                    "`at` must be within [0, {MAX_AT_SECS}] seconds"
                )));
            }
            if r.at < last {
                return Err(err(format!(
                    "time goes back: at = {} comes after a step at {last}",
                    r.at
                )));
            }
            last = r.at;
            if let Some(f) = r.for_secs
                && !(f.is_finite() && f > 0.0 && f <= MAX_AT_SECS)
            {
                return Err(err(format!(
                    "`for` must be within (0, {MAX_AT_SECS}] seconds"
                )));
            }
            let action = r.action().map_err(err)?;
            steps.push(Step {
                line,
                at: r.at,
                for_secs: r.for_secs,
                action,
            });
        }
        let workload = workload(raw.workload)?;
        let settle = raw.settle.unwrap_or(30.0);
        if !(settle.is_finite() && (5.0..=3600.0).contains(&settle)) {
            return Err(PlanError("settle must be within [5, 3600] seconds".into()));
        }
        let min_nodes = raw.min_nodes.unwrap_or(3);
        if min_nodes < 2 {
            return Err(PlanError("min_nodes must be at least 2".into()));
        }
        if raw.name.is_empty() || raw.name.len() > 64 {
            return Err(PlanError("name must be 1-64 characters".into()));
        }
        Ok(Plan {
            name: raw.name,
            about: raw.about,
            min_nodes,
            settle,
            workload,
            steps,
        })
    }

    /// Reads and parses a plan file (the one function here that touches
    /// the disk): errors name the file and the line.
    pub fn from_file(path: &std::path::Path) -> Result<Plan, PlanError> {
        let at = |e: String| PlanError(format!("{}: {e}", path.display()));
        let meta = std::fs::metadata(path).map_err(|e| at(e.to_string()))?;
        if meta.len() > MAX_PLAN_BYTES as u64 {
            return Err(at(format!("larger than {MAX_PLAN_BYTES} bytes")));
        }
        let src = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
        Plan::parse(&src).map_err(|e| at(e.0))
    }

    /// Checks the plan against a cluster of `n` nodes: enough nodes, and
    /// every node index in range. Errors name the line.
    pub fn check_nodes(&self, n: usize) -> Result<(), PlanError> {
        if n < self.min_nodes {
            return Err(PlanError(format!(
                "plan {:?} needs at least {} nodes; the cluster has {n}",
                self.name, self.min_nodes
            )));
        }
        for s in &self.steps {
            let mut targets: Vec<&Target> = Vec::new();
            match &s.action {
                Action::Isolate(t)
                | Action::OneWay(t, _)
                | Action::Kill(t)
                | Action::Pause(t)
                | Action::Clock { node: t, .. } => targets.push(t),
                Action::Resume(Some(t)) | Action::Restart(Some(t)) => targets.push(t),
                Action::Impair {
                    nodes: Group::List(l),
                    ..
                } => targets.extend(l.iter()),
                _ => {}
            }
            for t in targets {
                if let Target::Index(i) = t
                    && *i >= n
                {
                    return Err(PlanError(format!(
                        "line {}: node index {i} is out of range: the cluster has {n} nodes (0-{})",
                        s.line,
                        n - 1
                    )));
                }
            }
        }
        Ok(())
    }

    /// When the fault phase ends, seconds: the last step, or the end of the
    /// last step's `for`, whichever is later (at least the workload's start
    /// plus 10 s). Everything but kills is lifted then.
    pub fn faults_end(&self) -> f64 {
        self.steps
            .iter()
            .map(|s| s.at + s.for_secs.unwrap_or(0.0))
            .fold(self.workload.start + 10.0, f64::max)
    }

    /// The whole run, seconds: the fault phase and the settle time.
    pub fn duration(&self) -> f64 {
        self.faults_end() + self.settle
    }
}

#[cfg(test)]
mod tests;
