//! `roster cluster chaos run FILE`: a fault plan (see [`roster::plan`]) run
//! against the real agents of a local cluster started with `roster cluster
//! start`, judged exactly as `roster-sim plan` judges a simulated run.
//!
//! - Network faults and clock offsets go through each agent's chaos API
//!   (`POST /v1/chaos`, one composite rule set per node, each limited in
//!   time so that it lifts itself should this command die); `kill` is
//!   `kill -9` (with the supervisor told to leave the node down),
//!   `pause`/`resume` are SIGSTOP/SIGCONT, `restart` goes through the
//!   supervisor (a graceful stop, then a start).
//! - Clients run the plan's workload through random running nodes over the
//!   HTTP API and record the metadata history with real timestamps.
//! - Every node's member list and metadata status are polled every 200 ms,
//!   as the simulator samples its nodes.
//! - After the fault phase everything is healed and paused nodes resumed;
//!   once membership has converged (or half the settle time has passed)
//!   every key is read once more, linearizably; the run ends when the
//!   cluster has stayed converged for 3 s, or at the end of the settle
//!   time. Killed nodes are started again after the report unless
//!   `--leave-killed`.

// This command drives real processes on real time: it reads the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use roster::api::client::{Agent, request_raw_within};
use roster::node::MetaOp;
use roster::plan::linearizable::Outcome;
use roster::plan::record::{PlanReport, Proc, Record, Seen};
use roster::plan::run::{Do, NetRules, RoleView, Runner, SeededRng};
use roster::plan::{Plan, meta_op, timeline};
use serde_json::{Value, json};

use super::cluster::{self, ClusterFile, ProcState};

/// How often each node is polled.
const POLL: Duration = Duration::from_millis(200);
/// Longest wait for one poll.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one client operation (the agent's own metadata timeout
/// is shorter).
const OP_TIMEOUT: Duration = Duration::from_secs(8);
/// Longest wait for the cluster to be healthy before the plan starts.
const READY_WAIT: Duration = Duration::from_secs(90);
/// Metadata client threads sharing the plan's rate.
const META_CLIENTS: usize = 4;
/// Convergence must hold this long before the run ends early.
const STABLE: Duration = Duration::from_secs(3);

/// What `roster cluster chaos run` was asked.
#[derive(Debug, Clone)]
pub struct RunArgs {
    /// The cluster's directory.
    pub dir: PathBuf,
    /// The plan file.
    pub file: PathBuf,
    /// Seed of the plan's random choices.
    pub seed: u64,
    /// Print the report as one JSON line.
    pub json: bool,
    /// Write the timeline SVG here.
    pub plot: Option<PathBuf>,
    /// Write the JSON report here.
    pub report: Option<PathBuf>,
    /// The canary: reads go out stale but are recorded as linearizable.
    pub stale_reads: bool,
    /// Leave killed nodes down after the run.
    pub leave_killed: bool,
}

/// The metadata status one node reports.
#[derive(Debug, Clone)]
struct Status {
    at: Instant,
    term: u64,
    leader: Option<usize>,
    voters: Vec<usize>,
}

/// What the threads share.
struct State {
    record: Record,
    seen: Vec<BTreeMap<usize, Seen>>,
    status: Vec<Option<Status>>,
    last_leader: Option<Option<usize>>,
    procs: Vec<Proc>,
    /// Process starts per node (a restarted node's state is new).
    generation: Vec<u64>,
    /// State writes acknowledged: (writer, its generation, key).
    writes: Vec<(usize, u64, String)>,
    value_seq: u64,
}

struct Shared {
    start: Instant,
    /// This run's metadata keys are `{prefix}key{k}`: a history starts from
    /// keys nobody wrote, as the checker assumes.
    prefix: String,
    names: Vec<String>,
    index: BTreeMap<String, usize>,
    agents: Vec<Agent>,
    state: Mutex<State>,
    stop: AtomicBool,
    clients_stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn t(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn up(&self) -> Vec<usize> {
        let s = self.lock();
        (0..self.names.len())
            .filter(|&i| s.procs[i] == Proc::Up)
            .collect()
    }
}

/// The leader and voters as the up node with the newest term holding a
/// leader reports them (statuses older than 1.5 s are not used).
fn roles(s: &State) -> (Option<usize>, Vec<usize>) {
    let best = s
        .status
        .iter()
        .enumerate()
        .filter(|(i, _)| s.procs[*i] == Proc::Up)
        .filter_map(|(_, st)| st.as_ref())
        .filter(|st| st.at.elapsed() < Duration::from_millis(1500) && st.leader.is_some())
        .max_by_key(|st| st.term);
    match best {
        Some(b) => (b.leader, b.voters.clone()),
        None => (None, Vec::new()),
    }
}

fn converged(s: &State) -> bool {
    let n = s.procs.len();
    (0..n).filter(|&o| s.procs[o] == Proc::Up).all(|o| {
        (0..n).filter(|&x| x != o).all(|x| match s.procs[x] {
            Proc::Up => s.seen[o].get(&x) == Some(&Seen::Alive),
            _ => matches!(
                s.seen[o].get(&x),
                None | Some(Seen::Down) | Some(Seen::Left)
            ),
        })
    })
}

fn get_json(agent: &Agent, path: &str) -> Option<Value> {
    let (status, body) = request_raw_within(agent, "GET", path, b"", POLL_TIMEOUT).ok()?;
    (status == 200)
        .then(|| serde_json::from_slice(&body).ok())
        .flatten()
}

/// Polls node `i` until told to stop.
fn poller(sh: &Shared, i: usize) {
    while !sh.stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        if sh.lock().procs[i] == Proc::Up {
            poll_once(sh, i);
        }
        std::thread::sleep(POLL.saturating_sub(t0.elapsed()));
    }
}

fn poll_once(sh: &Shared, i: usize) {
    if let Some(list) = get_json(&sh.agents[i], "/v1/members").and_then(|v| v.as_array().cloned()) {
        let now: BTreeMap<usize, Seen> = list
            .iter()
            .filter_map(|m| {
                let s = *sh.index.get(m["id"].as_str()?)?;
                Some((s, Seen::from_name(m["state"].as_str()?)?))
            })
            .filter(|&(s, _)| s != i)
            .collect();
        let t = sh.t();
        let mut st = sh.lock();
        if st.procs[i] == Proc::Up {
            let st = &mut *st;
            for (&s, &v) in &now {
                if st.seen[i].get(&s) != Some(&v) {
                    st.record.views.push((t, i, s, Some(v)));
                }
            }
            for &s in st.seen[i].keys().filter(|s| !now.contains_key(s)) {
                st.record.views.push((t, i, s, None));
            }
            st.seen[i] = now;
        }
    }
    if let Some(v) = get_json(&sh.agents[i], "/v1/voters") {
        let idx = |x: &Value| x.as_str().and_then(|n| sh.index.get(n).copied());
        let status = Status {
            at: Instant::now(),
            term: v["term"].as_u64().unwrap_or(0),
            leader: idx(&v["leader"]),
            voters: v["voters"]
                .as_array()
                .map(|a| a.iter().filter_map(idx).collect())
                .unwrap_or_default(),
        };
        let t = sh.t();
        let mut st = sh.lock();
        st.status[i] = Some(status);
        let (leader, _) = roles(&st);
        if st.last_leader != Some(leader) {
            st.last_leader = Some(leader);
            st.record.leaders.push((t, leader));
        }
    }
}

/// How an HTTP answer to a metadata operation ends, as the simulator maps
/// the core's results: refused before anything was proposed is `Failed`,
/// a timeout, an interruption or no answer is `Unknown`.
fn classify(status: u16, body: &[u8]) -> Outcome {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v["error"]["code"]
                .as_str()
                .or(v["code"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    match (status, code.as_str()) {
        (504, _) | (503, "interrupted") | (500..=599, "stopped") => Outcome::Unknown,
        (400..=499, _) | (503, _) | (507, _) => Outcome::Failed,
        _ => Outcome::Unknown,
    }
}

fn unknown_key(status: u16, body: &[u8]) -> bool {
    status == 404 && String::from_utf8_lossy(body).contains("unknown_key")
}

/// Runs `op` through `agent`.
fn meta_call(agent: &Agent, op: &MetaOp, stale: bool) -> Outcome {
    let path = format!("/v1/meta/{}", super::client::percent_encode(op.key()));
    let call = |method: &str, path: &str, body: &[u8]| {
        request_raw_within(agent, method, path, body, OP_TIMEOUT)
    };
    let r = match op {
        MetaOp::Get { .. } => {
            let q = if stale {
                "?raw=true&stale=true"
            } else {
                "?raw=true"
            };
            call("GET", &format!("{path}{q}"), b"").map(|(s, b)| match s {
                200 => Outcome::Read(Some(b)),
                _ if unknown_key(s, &b) => Outcome::Read(None),
                _ => classify(s, &b),
            })
        }
        MetaOp::Put { value, .. } => call("PUT", &path, value).map(|(s, b)| match s {
            200 => Outcome::Done,
            _ => classify(s, &b),
        }),
        MetaOp::Delete { .. } => call("DELETE", &path, b"").map(|(s, b)| match s {
            200 => Outcome::Done,
            _ if unknown_key(s, &b) => Outcome::Done,
            _ => classify(s, &b),
        }),
        MetaOp::Cas { expect, value, .. } => {
            let text = |v: &Option<Vec<u8>>| {
                v.as_ref()
                    .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
                    .unwrap_or(Value::Null)
            };
            let body = json!({"expect": text(expect), "value": text(value)}).to_string();
            call("POST", &path, body.as_bytes()).map(|(s, b)| match s {
                200 => serde_json::from_slice::<Value>(&b)
                    .ok()
                    .and_then(|v| v["swapped"].as_bool())
                    .map_or(Outcome::Unknown, Outcome::Cas),
                _ => classify(s, &b),
            })
        }
        _ => return Outcome::Failed,
    };
    r.unwrap_or(Outcome::Unknown)
}

/// One metadata client: an operation every `every` until told to stop.
fn meta_client(sh: &Shared, keys: u32, every: Duration, seed: u64, stale: bool) {
    let mut rng = SeededRng::new(seed);
    paced(sh, every, |up| {
        let n = up[rng.below(up.len())];
        let op = {
            let mut st = sh.lock();
            let key = format!("{}key{}", sh.prefix, rng.below(keys as usize));
            st.value_seq += 1;
            let fresh = format!("v{}", st.value_seq).into_bytes();
            let history = &st.record.history;
            meta_op(rng.below(10) as u32, key, fresh, |k| {
                history.recent_value(k)
            })
        };
        submit(sh, n, op, stale);
    });
}

/// Calls `step` with the nodes up (at a moment when some are) every
/// `every` until the clients are told to stop; a late step is not made up
/// for.
fn paced(sh: &Shared, every: Duration, mut step: impl FnMut(&[usize])) {
    let mut next = Instant::now();
    while !sh.clients_stop.load(Ordering::Relaxed) {
        let up = sh.up();
        if !up.is_empty() {
            step(&up);
        }
        next += every;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Runs one operation through node `n`, recorded in the history.
fn submit(sh: &Shared, n: usize, op: MetaOp, stale: bool) {
    let h = {
        let t = sh.t();
        sh.lock().record.history.invoke(op.clone(), t)
    };
    let outcome = meta_call(&sh.agents[n], &op, stale);
    let t = sh.t();
    sh.lock().record.history.complete(h, outcome, t);
}

/// State writes (and user events) at `rate` per second each.
fn writer(sh: &Shared, rate: f64, events: bool, seed: u64) {
    let mut rng = SeededRng::new(seed);
    let every = Duration::from_secs_f64(1.0 / rate);
    let mut seq = 0u64;
    paced(sh, every, |up| {
        let n = up[rng.below(up.len())];
        seq += 1;
        let agent = &sh.agents[n];
        if events {
            let r = request_raw_within(agent, "POST", "/v1/event/plan", b"x", OP_TIMEOUT);
            if r.is_ok_and(|(s, _)| (200..300).contains(&s)) {
                sh.lock().record.events_sent += 1;
            }
        } else {
            let key = format!("plan-{seq}");
            let gen_before = sh.lock().generation[n];
            let path = format!("/v1/state/{key}");
            let r = request_raw_within(agent, "PUT", &path, b"value", OP_TIMEOUT);
            if r.is_ok_and(|(s, _)| s == 200) {
                let mut st = sh.lock();
                st.writes.push((n, gen_before, key));
                st.record.state_writes += 1;
            }
        }
    });
}

fn signal(pid: u32, sig: &str) -> Result<(), String> {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!("kill {sig} {pid} failed"))
    }
}

fn pid_of(dir: &Path, i: usize) -> Option<u32> {
    match cluster::read_state(dir)?.nodes.get(&i) {
        Some((ProcState::Running, pid)) => *pid,
        _ => None,
    }
}

/// Applies the plan's actions to the real cluster.
struct Driver<'a> {
    dir: &'a Path,
    file: &'a ClusterFile,
    sh: &'a Shared,
    net: NetRules,
    /// Per node: the plan's clock offset (ms) and drift (ppm), and when the
    /// step set them.
    clocks: Vec<(i64, f64, Instant)>,
    /// The rule set last put on each node (`None`: none).
    posted: Vec<Option<Value>>,
    /// Nodes being started: the pid they ran before.
    starting: BTreeMap<usize, Option<u32>>,
    /// When every rule set lifts itself, should this command die.
    rules_until: Instant,
}

impl Driver<'_> {
    fn desired(&self, i: usize) -> Option<Value> {
        let names = &self.sh.names;
        let (mut block_in, mut block_out): (Vec<&String>, Vec<&String>) = (Vec::new(), Vec::new());
        for &(from, to) in &self.net.blocked {
            if to == i {
                block_in.push(&names[from]);
            }
            if from == i {
                block_out.push(&names[to]);
            }
        }
        let loss = self.net.loss.get(i).copied().unwrap_or(0.0);
        let (delay, jitter) = self.net.delay.get(i).copied().unwrap_or((0, 0));
        let (offset, drift, _) = self.clocks[i];
        let clear = block_in.is_empty()
            && block_out.is_empty()
            && loss == 0.0
            && delay == 0
            && jitter == 0
            && offset == 0
            && drift == 0.0;
        (!clear).then(|| {
            json!({"drop": loss, "delay_ms": delay, "jitter_ms": jitter,
                "block_in": block_in, "block_out": block_out,
                "clock_offset_ms": offset, "clock_drift_ppm": drift})
        })
    }

    /// Puts each up node's composite rules in force where they changed.
    fn push_rules(&mut self) {
        let up = self.sh.up();
        for i in up {
            let want = self.desired(i);
            if want == self.posted[i] {
                continue;
            }
            let agent = &self.sh.agents[i];
            let r = match &want {
                Some(v) => {
                    let mut v = v.clone();
                    let left = self.rules_until.saturating_duration_since(Instant::now());
                    v["for_secs"] = json!(left.as_secs_f64().max(1.0));
                    // The agent's drift runs from when it gets the rules: a
                    // rule set sent again (another fault changed) carries
                    // the drift accumulated since the clock step.
                    let (offset, drift, since) = self.clocks[i];
                    let drifted = since.elapsed().as_millis() as f64 * drift / 1e6;
                    v["clock_offset_ms"] = json!(offset + drifted as i64);
                    request_raw_within(
                        agent,
                        "POST",
                        "/v1/chaos",
                        v.to_string().as_bytes(),
                        POLL_TIMEOUT,
                    )
                }
                None => request_raw_within(agent, "DELETE", "/v1/chaos", b"", POLL_TIMEOUT),
            };
            if r.is_ok_and(|(s, _)| s == 200) {
                self.posted[i] = want;
            }
        }
    }

    fn set_proc(&self, i: usize, p: Proc) {
        let t = self.sh.t();
        let mut st = self.sh.lock();
        st.procs[i] = p;
        st.record.procs.push((t, i, p));
    }

    fn marker(&self, i: usize, what: &str) {
        let path = self.dir.join(format!("{}.{what}", self.file.node[i].name));
        if let Err(e) = std::fs::write(&path, b"") {
            eprintln!("warning: cannot write {}: {e}", path.display());
        }
    }

    /// Sends `sig` to node `i`'s process, if it runs.
    fn signal(&self, i: usize, sig: &str) {
        if let Some(pid) = pid_of(self.dir, i)
            && let Err(e) = signal(pid, sig)
        {
            eprintln!("warning: {e}");
        }
    }

    fn apply(&mut self, d: Do) {
        match d {
            Do::Net(r) => {
                let t = self.sh.t();
                self.sh.lock().record.nets.push((t, r.clone()));
                self.net = r;
            }
            Do::Clock {
                node,
                offset_ms,
                drift_ppm,
            } => self.clocks[node] = (offset_ms, drift_ppm, Instant::now()),
            Do::Kill(i) => {
                self.signal(i, "-KILL");
                // The supervisor checks for the marker before it restarts.
                self.marker(i, "stop");
                self.posted[i] = None;
                self.set_proc(i, Proc::Down);
            }
            Do::Start(i) => {
                self.starting.insert(i, pid_of(self.dir, i));
                self.marker(i, "restart");
            }
            Do::Restart(i) => {
                self.starting.insert(i, pid_of(self.dir, i));
                self.posted[i] = None;
                self.set_proc(i, Proc::Stopped);
                self.marker(i, "restart");
            }
            Do::Pause(i) => {
                self.signal(i, "-STOP");
                self.set_proc(i, Proc::Paused);
            }
            Do::Resume(i) => {
                self.signal(i, "-CONT");
                self.set_proc(i, Proc::Up);
            }
        }
    }

    /// Marks started nodes Up once the supervisor runs a new process.
    fn tend(&mut self) {
        let started: Vec<usize> = self
            .starting
            .iter()
            .filter(|&(&i, old)| pid_of(self.dir, i).is_some_and(|p| Some(p) != *old))
            .map(|(&i, _)| i)
            .collect();
        for i in started {
            self.starting.remove(&i);
            self.sh.lock().generation[i] += 1;
            self.set_proc(i, Proc::Up);
        }
        self.push_rules();
    }
}

/// Waits until every node runs, sees every other Alive and (when the plan
/// has metadata clients) a leader is known.
fn wait_ready(sh: &Shared, dir: &Path, need_leader: bool) -> Result<(), String> {
    let deadline = Instant::now() + READY_WAIT;
    loop {
        let running = (0..sh.names.len()).all(|i| pid_of(dir, i).is_some());
        if running {
            for i in 0..sh.names.len() {
                poll_once(sh, i);
            }
            let st = sh.lock();
            if converged(&st) && (!need_leader || roles(&st).0.is_some()) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the cluster did not become healthy within {} s (every node running, every member Alive everywhere{}); see `roster cluster status`",
                READY_WAIT.as_secs(),
                if need_leader {
                    ", a metadata leader"
                } else {
                    ""
                }
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs the command; the exit code is `roster-sim`'s (0, 2, 3), or 1 when
/// the run could not start.
pub fn run(args: &RunArgs) -> ExitCode {
    match run_inner(args) {
        Ok(report) => ExitCode::from(report.exit_code()),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

// Long because it sets up the shared state and starts every thread (the
// pollers, the clients, the writers) in one scope; the run itself is
// `drive`.
fn run_inner(args: &RunArgs) -> Result<PlanReport, String> {
    let plan = Plan::from_file(&args.file).map_err(|e| e.to_string())?;
    let file = cluster::load(&args.dir)?;
    plan.check_nodes(file.nodes)
        .map_err(|e| format!("{}: {e}", args.file.display()))?;
    cluster::read_state(&args.dir)
        .ok_or("the cluster is not running: `roster cluster start --detach` first")?;
    let n = file.nodes;
    let names: Vec<String> = file.node.iter().map(|x| x.name.clone()).collect();
    // A name for this run's keys.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut sh = Shared {
        start: Instant::now(),
        prefix: format!("chaos-run-{}-{run_id}-", std::process::id()),
        index: names
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i))
            .collect(),
        agents: file
            .node
            .iter()
            .map(|x| cluster::agent(&args.dir, x))
            .collect(),
        names: names.clone(),
        state: Mutex::new(State {
            record: Record::default(),
            seen: vec![BTreeMap::new(); n],
            status: vec![None; n],
            last_leader: None,
            procs: vec![Proc::Up; n],
            generation: vec![0; n],
            writes: Vec::new(),
            value_seq: 0,
        }),
        stop: AtomicBool::new(false),
        clients_stop: AtomicBool::new(false),
    };
    for a in &sh.agents {
        let _ = request_raw_within(a, "DELETE", "/v1/chaos", b"", POLL_TIMEOUT);
    }
    eprintln!("waiting for the cluster to be healthy");
    wait_ready(&sh, &args.dir, plan.workload.meta_rate > 0.0)?;
    // The record starts now, from what the cluster looks like.
    sh.start = Instant::now();
    {
        let st = sh.state.get_mut().unwrap_or_else(|e| e.into_inner());
        st.record.views.clear();
        st.record.leaders.clear();
        st.last_leader = None;
        st.seen = vec![BTreeMap::new(); n];
    }
    let sh = &sh;
    eprintln!(
        "running plan {:?} on {n} agents: faults until {} s, settle up to {} s",
        plan.name,
        plan.faults_end(),
        plan.settle
    );
    let report = std::thread::scope(|s| {
        for i in 0..n {
            s.spawn(move || poller(sh, i));
        }
        let wl = plan.workload.clone();
        let clients_at = sh.start + Duration::from_secs_f64(wl.start);
        let seed = args.seed;
        if wl.meta_rate > 0.0 {
            for c in 0..META_CLIENTS {
                let every = Duration::from_secs_f64(META_CLIENTS as f64 / wl.meta_rate);
                let stale = args.stale_reads;
                s.spawn(move || {
                    sleep_until(clients_at, sh);
                    meta_client(sh, wl.meta_keys, every, seed ^ (c as u64 + 1) << 32, stale);
                });
            }
        }
        for (rate, events) in [(wl.state_rate, false), (wl.event_rate, true)] {
            if rate > 0.0 {
                s.spawn(move || {
                    sleep_until(clients_at, sh);
                    writer(sh, rate, events, seed ^ 0xfeed);
                });
            }
        }
        let r = drive(sh, &args.dir, &file, &plan, args);
        sh.stop.store(true, Ordering::Relaxed);
        sh.clients_stop.store(true, Ordering::Relaxed);
        r
    })?;
    Ok(report)
}

fn sleep_until(t: Instant, sh: &Shared) {
    while Instant::now() < t && !sh.clients_stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50).min(t - Instant::now()));
    }
}

/// The main loop: the steps, then the settle phase, final reads and the
/// judgement.
fn drive(
    sh: &Shared,
    dir: &Path,
    file: &ClusterFile,
    plan: &Plan,
    args: &RunArgs,
) -> Result<PlanReport, String> {
    let n = file.nodes;
    let faults_end = sh.start + Duration::from_secs_f64(plan.faults_end());
    let mut d = Driver {
        dir,
        file,
        sh,
        net: NetRules::default(),
        clocks: vec![(0, 0.0, Instant::now()); n],
        posted: vec![None; n],
        starting: BTreeMap::new(),
        rules_until: faults_end + Duration::from_secs(5),
    };
    let mut runner = Runner::new(plan.clone(), n, args.seed);
    while let Some(at) = runner.next_at() {
        let when = sh.start + Duration::from_secs_f64(at);
        while Instant::now() < when {
            std::thread::sleep(Duration::from_millis(100).min(when - Instant::now()));
            d.tend();
        }
        let snapshot = {
            let st = sh.lock();
            let (leader, voters) = roles(&st);
            RoleView {
                up: (0..n).filter(|&i| st.procs[i] == Proc::Up).collect(),
                leader,
                voters,
            }
        };
        for action in runner.due(sh.start.elapsed().as_secs_f64(), &snapshot) {
            let what = describe(&action, &sh.names);
            eprintln!("{:>7.1} s  {what}", sh.start.elapsed().as_secs_f64());
            d.apply(action);
        }
        d.tend();
    }
    sh.clients_stop.store(true, Ordering::Relaxed);
    settle(&mut d, plan, faults_end, args);
    sh.stop.store(true, Ordering::Relaxed);
    let end = sh.t();
    let missing = state_missing(sh);
    let mut record = {
        let mut st = sh.lock();
        std::mem::take(&mut st.record)
    };
    record.world = "agents".into();
    record.plan = plan.name.clone();
    record.seed = args.seed;
    record.names = sh.names.clone();
    record.faults_end = (plan.faults_end() * 1e9) as u64;
    record.end = end;
    record.bands = runner.bands().to_vec();
    record.skipped = runner.skipped.clone();
    record.state_missing = Some(missing);
    let report = record.report();
    output(&record, &report, args)?;
    cleanup(&d, &runner, plan, args);
    Ok(report)
}

/// The settle phase: heals take effect, the final reads run once
/// membership has converged (or half the settle time has passed), and it
/// ends once the cluster has stayed converged for [`STABLE`] after them, or
/// at the end of the settle time.
fn settle(d: &mut Driver<'_>, plan: &Plan, faults_end: Instant, args: &RunArgs) {
    let sh = d.sh;
    let settle_end = faults_end + Duration::from_secs_f64(plan.settle);
    let reads_by = faults_end + Duration::from_secs_f64(plan.settle / 2.0);
    let mut reads_done = plan.workload.meta_rate == 0.0;
    let mut stable_since: Option<Instant> = None;
    let mut rng = SeededRng::new(args.seed);
    while Instant::now() < settle_end {
        d.tend();
        let ok = converged(&sh.lock()) && d.starting.is_empty();
        stable_since = if ok {
            stable_since.or(Some(Instant::now()))
        } else {
            None
        };
        if !reads_done && (ok || Instant::now() >= reads_by) {
            let up = sh.up();
            for k in 0..plan.workload.meta_keys {
                if !up.is_empty() {
                    let node = up[rng.below(up.len())];
                    let key = format!("{}key{k}", sh.prefix);
                    submit(sh, node, MetaOp::Get { key }, args.stale_reads);
                }
            }
            reads_done = true;
        }
        if reads_done && stable_since.is_some_and(|s| s.elapsed() >= STABLE) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// After the report: the run's keys are deleted, and killed nodes started
/// again unless `--leave-killed`.
fn cleanup(d: &Driver<'_>, runner: &Runner, plan: &Plan, args: &RunArgs) {
    let sh = d.sh;
    if let Some(&node) = sh.up().first() {
        for k in 0..plan.workload.meta_keys {
            let path = format!(
                "/v1/meta/{}",
                super::client::percent_encode(&format!("{}key{k}", sh.prefix))
            );
            let _ = request_raw_within(&sh.agents[node], "DELETE", &path, b"", OP_TIMEOUT);
        }
    }
    let killed: Vec<usize> = runner.killed().collect();
    if !killed.is_empty() {
        if args.leave_killed {
            for i in killed {
                eprintln!(
                    "{} stays down: `roster cluster restart --node {i}` starts it",
                    sh.names[i]
                );
            }
        } else {
            for i in killed {
                d.marker(i, "restart");
                eprintln!("{} started again", sh.names[i]);
            }
        }
    }
}

/// One line saying what an action does, for the progress log.
fn describe(d: &Do, names: &[String]) -> String {
    match d {
        Do::Net(r) => {
            let impaired: Vec<&str> = (0..names.len())
                .filter(|&i| {
                    r.loss.get(i).is_some_and(|&l| l > 0.0)
                        || r.delay.get(i).is_some_and(|&x| x != (0, 0))
                })
                .map(|i| names[i].as_str())
                .collect();
            if r.blocked.is_empty() && impaired.is_empty() {
                "network healed".into()
            } else {
                format!(
                    "network: {} blocked directions, impaired: [{}]",
                    r.blocked.len(),
                    impaired.join(", ")
                )
            }
        }
        Do::Kill(i) => format!("kill -9 {}", names[*i]),
        Do::Start(i) => format!("start {}", names[*i]),
        Do::Restart(i) => format!("restart {} (graceful stop, then start)", names[*i]),
        Do::Pause(i) => format!("pause {} (SIGSTOP)", names[*i]),
        Do::Resume(i) => format!("resume {} (SIGCONT)", names[*i]),
        Do::Clock {
            node,
            offset_ms,
            drift_ppm,
        } => format!(
            "clock of {}: {offset_ms:+} ms, {drift_ppm:+} ppm",
            names[*node]
        ),
    }
}

/// Every acknowledged state write of a writer running at the end (the same
/// process that wrote it) that some other running node lacks.
fn state_missing(sh: &Shared) -> Vec<(usize, usize, String)> {
    let (writes, procs, generation) = {
        let st = sh.lock();
        (st.writes.clone(), st.procs.clone(), st.generation.clone())
    };
    let mut missing = Vec::new();
    for (w, g, key) in writes {
        if procs[w] != Proc::Up || generation[w] != g {
            continue;
        }
        let path = format!("/v1/state/{key}?node={}&raw=true", sh.names[w]);
        for o in (0..procs.len()).filter(|&o| o != w && procs[o] == Proc::Up) {
            let has = request_raw_within(&sh.agents[o], "GET", &path, b"", POLL_TIMEOUT)
                .is_ok_and(|(s, _)| s == 200);
            if !has {
                missing.push((o, w, key.clone()));
            }
        }
    }
    missing
}

fn output(record: &Record, report: &PlanReport, args: &RunArgs) -> Result<(), String> {
    for v in &report.violations {
        println!("invariant violated: {v}");
    }
    for l in &report.liveness {
        println!("liveness failed: {l}");
    }
    for s in &report.skipped {
        println!("step skipped: {s}");
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{} · {} real agents · seed {}",
            report.plan, report.nodes, report.seed
        );
        std::fs::write(path, timeline::svg(record, &title))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("timeline: {}", path.display());
    }
    let line = serde_json::to_string(report).map_err(|e| e.to_string())?;
    if let Some(path) = &args.report {
        std::fs::write(path, format!("{line}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if args.json {
        println!("{line}");
    } else {
        println!("{report:#?}");
    }
    Ok(())
}
