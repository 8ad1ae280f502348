//! The simulation engine: one event queue on virtual time driving real
//! [`roster::node::Node`]s over the simulated [`Network`].
//!
//! Checkers run on every step (see [`Checks`]); measurements feed the
//! [`crate::report::Report`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus as Rng;
use rand::{RngExt, SeedableRng};
use roster::node::meta::MemDisk;
use roster::node::{
    Config, Event, Generation, Hlc, Identity, MemberState, MetaError, MetaOp, MetaReply, Node,
    NodeId, Now, RaftRole, ReadMode,
};

use crate::linear::{History, Outcome as OpOutcome};

use crate::net::{Clock, MS, Nanos, Network, SEC};

/// Something the scenario makes happen at a given time.
#[derive(Debug, Clone)]
pub enum Action {
    /// Start node `n` (first start or restart) and join through 3 random
    /// running nodes.
    Start(usize),
    /// Crash node `n`: its process and memory are gone, no goodbye.
    Crash(usize),
    /// Node `n` leaves gracefully and stops.
    Leave(usize),
    /// Node `n` writes a fresh key.
    Write(usize),
    /// A random running node writes a fresh key.
    WriteRandom,
    /// Replace a random running node: it leaves (or crashes) and a brand
    /// new node joins.
    Replace { crash: bool },
    /// Crash a random running node and restart it (same NodeId and
    /// address, next generation) `after` later.
    CrashRestart { after: Nanos },
    /// Split the network into groups (`None` heals).
    Partition(Option<Vec<u8>>),
    /// Set uniform loss.
    Loss(f64),
    /// Set per-node loss.
    NodeLoss(usize, f64),
    /// Make a node deaf (cannot receive) or hear again.
    Deaf(usize, bool),
    /// Jump a node's wall clock.
    ClockJump(usize, i64),
    /// A running member with a valid identity pushes, to a third node, a
    /// newer forged value for a key another member wrote.
    Forge,
    /// The lost-disk drill: isolate one follower voter C for 5 s while the
    /// leader L and the other voter V commit; then crash L and V at once,
    /// wipe V's Raft disk, heal, restart V (empty) at once and L 10 s later.
    /// Were V to vote before catching up, C (lacking the entries L and V
    /// committed) could win and lose acknowledged writes.
    VoterWipeDrill,
    /// Node `n`'s Raft disk is lost (it must be down).
    WipeDisk(usize),
    /// Fault phase is over: measurements of convergence start now.
    FaultsEnd,
    /// Crash the metadata leader (and restart it `restart_after` later).
    CrashLeader { restart_after: Option<Nanos> },
    /// Crash `n` random metadata voters at once (the leader among them).
    CrashVoters(usize),
    /// A client on a random running node runs a random metadata operation
    /// on one of `keys` keys.
    MetaClient { keys: u64 },
    /// A linearizable read of every key (`keys` of them) from a random node.
    MetaFinalReads { keys: u64 },
    /// Start measuring how long the voters take to recover.
    MarkVoterLoss,
    /// A brand new node joins.
    AddNode,
    /// A random running node leaves gracefully.
    LeaveRandom,
    /// A random running node crashes.
    CrashRandom,
    /// A random running node that the network model does not impair
    /// crashes; its detection is measured on the unimpaired observers.
    CrashHealthy,
    /// A random running node freezes for this long (a GC or VM pause): it
    /// neither sends nor processes; what arrives meanwhile waits in a
    /// bounded receive buffer, and its timers are overdue when it resumes.
    PauseRandom(Nanos),
    /// A paused node resumes.
    Resume(usize),
}

/// Message bytes a paused node's receive buffer holds before it drops
/// arrivals: Linux's default socket receive buffer (`net.core.rmem_default`,
/// 212,992 bytes). With none at all (every arrival during the pause lost),
/// the `pause` scenario's expectations held as well in the runs tried.
const PAUSE_BUFFER_BYTES: usize = 212_992;

/// A pause and what it led to.
#[derive(Debug, Clone)]
pub struct Paused {
    pub node: usize,
    pub identity: Identity,
    pub at: Nanos,
    pub len: Nanos,
    /// The node's suspicion window when it froze.
    pub window: Nanos,
    /// The longest a Down verdict about it takes to form from the moment
    /// it froze: two probe periods until a probe of it fails, the
    /// suspicion window, and the final check with one deferral.
    pub verdict: Nanos,
    /// When it resumed.
    pub resumed: Option<Nanos>,
    /// Down verdicts about it, by anyone.
    pub declared_down: u64,
    /// From resuming until every running node held it Alive again at the
    /// same identity.
    pub back_alive: Option<Nanos>,
    /// Down verdicts it reached itself after resuming.
    pub it_declared_down: u64,
    /// It had to rejoin under a new identity.
    pub rejoined: bool,
    /// Arrivals dropped while its buffer was full.
    pub dropped: u64,
}

#[derive(Debug)]
enum Ev {
    Deliver {
        to: usize,
        from: usize,
        stream: bool,
        bytes: Vec<u8>,
    },
    Wake(usize),
    Act(Action),
    Check,
}

/// No generation seen (see `Slot::seen_gen`).
const NOT_SEEN: u64 = u64::MAX;

struct Slot {
    id: NodeId,
    addr: SocketAddr,
    generation: u64,
    node: Option<Node>,
    clock: Clock,
    next_wake: Option<Nanos>,
    started_once: bool,
    /// Largest HLC this node has accepted from a remote delta.
    max_remote_hlc: Hlc,
    last_hlc: Hlc,
    last_incarnation: (u64, u32),
    /// Newest generation of each member seen in this node's MemberUp
    /// events, by the member's slot (`NOT_SEEN` where none was seen): eight
    /// bytes per member entry, where a map keyed by name took about sixty.
    seen_gen: Vec<u64>,
    /// The node's Raft disk, kept across crashes.
    disk: MemDisk,
    /// Metadata requests in flight: request number to history entry.
    meta_pending: BTreeMap<u64, usize>,
    /// Hash of the placement table this node holds.
    placement: Option<u64>,
    /// Frozen: arrivals wait in `held` (from, stream, bytes).
    paused: bool,
    held: Vec<(usize, bool, Vec<u8>)>,
    held_bytes: usize,
    /// When it last resumed from a pause.
    resumed_at: Option<Nanos>,
}

/// Invariant and liveness checkers.
#[derive(Debug, Default, Clone)]
pub struct Checks {
    /// Named violations, first few kept with detail.
    pub violations: Vec<String>,
    /// Count of all violations.
    pub count: u64,
}

impl Checks {
    fn fail(&mut self, what: String) {
        self.count += 1;
        if self.violations.len() < 20 {
            self.violations.push(what);
        }
    }
}

/// Lifeguard counters summed over nodes (see [`roster::node::Metrics`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct LifeguardTotals {
    /// "You are Down" messages received (each answered by a refutation or
    /// rate-limited).
    pub you_are_down_received: u64,
    /// "You are Down" messages for a refuted suspicion, not sent.
    pub stray_you_are_down_dropped: u64,
    /// Verdicts put off by nodes too unhealthy to judge.
    pub downs_deferred: u64,
    /// Verdicts adopted from another member's gossiped Down.
    pub downs_adopted: u64,
    /// Final checks started.
    pub final_checks: u64,
}

/// A write being tracked for spread latency.
struct WriteTrack {
    owner: usize,
    hlc: Hlc,
    at: Nanos,
    /// Receipt time per node slot.
    got: BTreeMap<usize, Nanos>,
    /// Nodes running when it was written.
    audience: Vec<usize>,
}

/// One forged write and how it ended.
#[derive(Debug, Clone)]
pub struct Forgery {
    pub owner: usize,
    pub key: String,
    /// The owner's value when the forgery was pushed.
    pub truth: Option<Vec<u8>>,
    pub at: Nanos,
    /// The node it was pushed to adopted the forged value.
    pub took_hold: bool,
    /// Time until every running node held the owner's own value again.
    pub restored: Option<Nanos>,
}

/// The measurements a run produces.
#[derive(Debug, Default, Clone)]
pub struct Measured {
    pub events: u64,
    pub join_converged: Option<Nanos>,
    /// Down detection delays per (crashed, observer).
    pub detect: Vec<Nanos>,
    /// Observers that never detected a crash.
    pub undetected: u64,
    pub false_downs: u64,
    /// Downs of healthy nodes declared within one verdict window after the
    /// network's topology changed (not counted as false).
    pub transition_downs: u64,
    pub false_down_detail: Vec<String>,
    pub delta_delays: Vec<Nanos>,
    pub delta_coverage: Option<f64>,
    pub heal_converged: Option<Nanos>,
    /// From the first partition until every running node holds exactly the
    /// running members of its own side active (the other side Down).
    pub split_detected: Option<Nanos>,
    pub window_bytes: u64,
    pub window_msgs: u64,
    pub window_secs: f64,
    pub window_nodes: f64,
    pub drift_rejections: u64,
    /// Lifeguard counters summed over the nodes running at the end.
    pub lifeguard: LifeguardTotals,
    pub drift_rejections_by_jumper: u64,
    /// Forged writes pushed by the `Forge` fault.
    pub forgeries: Vec<Forgery>,
    /// Forgeries refuted, summed over the nodes running at the end.
    pub forgeries_refuted: u64,
    pub converged_at_end: bool,
    pub peak_live: usize,
    pub final_live: usize,
    /// Metadata clusters bootstrapped.
    pub clusters: std::collections::BTreeSet<u64>,
    /// Self-declared leaders per term.
    pub leaders: BTreeMap<u64, NodeId>,
    /// (key, value) applied at each index, first seen.
    pub applied: BTreeMap<u64, (String, Option<Vec<u8>>)>,
    /// Healthy voters at the end.
    pub voters_final: Option<usize>,
    /// From the loss of a voter until a leader and the target number of
    /// healthy voters are back.
    pub voter_recovery: Option<Nanos>,
    pub voter_loss_at: Option<Nanos>,
    /// Metadata operations completed (acknowledged or failed).
    pub meta_ops: u64,
    pub meta_acked_writes: u64,
    pub meta_linearizable: Option<bool>,
    /// What the linearizability check judged.
    pub meta_checked: crate::linear::Checked,
    /// Placement versions (by table hash): when first applied anywhere, and
    /// when every running node held it.
    pub placement_versions: Vec<(u64, Nanos, Option<Nanos>)>,
    /// The tables of those versions, in order, for movement figures.
    pub placement_tables: Vec<roster::node::meta::Table>,
    /// Crashes: (time, node) for the placement checks.
    pub crash_times: Vec<(Nanos, NodeId)>,
    /// Per write: its audience still running at the end, and the delays
    /// at which they got it (for the spread plot).
    pub write_spread: Vec<(usize, Vec<Nanos>)>,
    /// Every second: (time, total bytes sent by running nodes, running).
    pub bytes_series: Vec<(Nanos, u64, usize)>,
    /// The pause of the `pause` scenario.
    pub pause: Option<Paused>,
}

/// A simulation in progress.
pub struct World {
    pub now: Nanos,
    rng: Rng,
    seed: u64,
    queue: BinaryHeap<Reverse<(Nanos, u64)>>,
    events: BTreeMap<u64, Ev>,
    seq: u64,
    slots: Vec<Slot>,
    by_addr: BTreeMap<SocketAddr, usize>,
    pub net: Network,
    config: Config,
    pub checks: Checks,
    pub m: Measured,
    writes: Vec<WriteTrack>,
    write_index: BTreeMap<(usize, String), usize>,
    write_seq: u64,
    crashes: Vec<(usize, Identity, Nanos, Vec<usize>)>,
    faults_end: Option<Nanos>,
    heal_at: Option<Nanos>,
    split_at: Option<Nanos>,
    window_start: Option<(Nanos, u64, u64)>,
    jumper: Option<usize>,
    end: Nanos,
    /// When partitions or blocks last changed.
    topology_changed: Option<Nanos>,
    /// Client history of metadata operations.
    pub history: History,
    /// Acknowledged writes: (index, key, value).
    acked: Vec<(u64, String, Option<Vec<u8>>)>,
    meta_value_seq: u64,
}

fn addr_of(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    let ip = Ipv4Addr::new(127, 10 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, 7946))
}

impl World {
    /// A world of `nodes` slots (none started), ending at `end`.
    pub fn new(nodes: usize, seed: u64, config: Config, end: Nanos) -> Self {
        let mut w = Self {
            now: 0,
            rng: Rng::seed_from_u64(seed),
            seed,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            slots: Vec::new(),
            by_addr: BTreeMap::new(),
            net: Network::lan(0),
            config: config.clone(),
            checks: Checks::default(),
            m: Measured::default(),
            writes: Vec::new(),
            write_index: BTreeMap::new(),
            write_seq: 0,
            crashes: Vec::new(),
            faults_end: None,
            heal_at: None,
            split_at: None,
            window_start: None,
            jumper: None,
            end,
            topology_changed: None,
            history: History::default(),
            acked: Vec::new(),
            meta_value_seq: 0,
        };
        for _ in 0..nodes {
            w.add_slot();
        }
        let mut t = 100 * MS;
        while t < end {
            w.push(t, Ev::Check);
            t += 100 * MS;
        }
        w
    }

    fn add_slot(&mut self) -> usize {
        let i = self.slots.len();
        let addr = addr_of(i);
        self.slots.push(Slot {
            id: NodeId::new(format!("n{i}")).expect("valid id"),
            addr,
            generation: 0,
            node: None,
            clock: Clock::default(),
            next_wake: None,
            started_once: false,
            max_remote_hlc: Hlc::default(),
            last_hlc: Hlc::default(),
            last_incarnation: (0, 0),
            seen_gen: Vec::new(),
            disk: MemDisk::default(),
            meta_pending: BTreeMap::new(),
            placement: None,
            paused: false,
            held: Vec::new(),
            held_bytes: 0,
            resumed_at: None,
        });
        self.by_addr.insert(addr, i);
        self.net.add_node();
        i
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Sets a node's clock model.
    pub fn set_clock(&mut self, n: usize, clock: Clock) {
        self.slots[n].clock = clock;
    }

    /// Marks the node whose clock jumps (for drift accounting).
    pub fn set_jumper(&mut self, n: usize) {
        self.jumper = Some(n);
    }

    /// The scenario's RNG.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Schedules an action.
    pub fn at(&mut self, t: Nanos, a: Action) {
        self.push(t, Ev::Act(a));
    }

    fn push(&mut self, t: Nanos, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq)));
        self.events.insert(self.seq, ev);
    }

    /// Crashes a random one of `candidates` (not empty), recording when.
    fn crash_one_of(&mut self, candidates: &[usize]) {
        let n = candidates[self.rng.random_range(0..candidates.len())];
        self.m
            .crash_times
            .push((self.now, self.slots[n].id.clone()));
        self.act(Action::Crash(n));
    }

    fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].node.is_some())
            .collect()
    }

    fn now_of(&self, n: usize) -> Now {
        Now {
            mono: Duration::from_nanos(self.now),
            wall_ms: self.slots[n].clock.wall_ms(self.now),
        }
    }

    /// Runs to the end.
    pub fn run(&mut self) {
        self.run_until(self.end);
        self.now = self.end;
        self.finish();
    }

    /// Runs every event up to `until` (at most the end), without the
    /// end-of-run checks: a test can look at the nodes in between.
    pub fn run_until(&mut self, until: Nanos) {
        let until = until.min(self.end);
        while let Some(&Reverse((t, seq))) = self.queue.peek() {
            if t > until {
                break;
            }
            self.queue.pop();
            self.now = t;
            let ev = self.events.remove(&seq).expect("queued event exists");
            self.m.events += 1;
            match ev {
                Ev::Deliver {
                    to,
                    from,
                    stream,
                    bytes,
                } => self.deliver(to, from, stream, &bytes),
                Ev::Wake(n) => {
                    if self.slots[n].next_wake == Some(t) {
                        self.slots[n].next_wake = None;
                        if self.slots[n].paused {
                            // Frozen: `resume` fires what is overdue.
                            continue;
                        }
                        let now = self.now_of(n);
                        if let Some(node) = self.slots[n].node.as_mut() {
                            node.handle_timeout(now);
                        }
                        self.after(n);
                    }
                }
                Ev::Act(a) => self.act(a),
                Ev::Check => self.periodic_check(),
            }
        }
        self.now = self.now.max(until);
    }

    /// The configuration every node starts with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Node `n`, while it runs.
    pub fn node(&self, n: usize) -> Option<&Node> {
        self.slots[n].node.as_ref()
    }

    fn deliver(&mut self, to: usize, from: usize, stream: bool, bytes: &[u8]) {
        let slot = &mut self.slots[to];
        if slot.paused {
            if slot.held_bytes + bytes.len() <= PAUSE_BUFFER_BYTES {
                slot.held_bytes += bytes.len();
                slot.held.push((from, stream, bytes.to_vec()));
            } else if let Some(p) = &mut self.m.pause {
                p.dropped += 1;
            }
            return;
        }
        let now = self.now_of(to);
        let from_addr = self.slots[from].addr;
        let Some(node) = self.slots[to].node.as_mut() else {
            return;
        };
        let _ = if stream {
            node.handle_message(now, from_addr, bytes)
        } else {
            node.handle_datagram(now, from_addr, bytes)
        };
        self.after(to);
    }

    /// Drains a node's outputs, runs the per-step checkers and schedules its
    /// next wake-up.
    fn after(&mut self, n: usize) {
        let Some(node) = self.slots[n].node.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = node.poll_transmit() {
            out.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = node.poll_event() {
            events.push(e);
        }
        let mut results = Vec::new();
        while let Some(r) = node.poll_meta_result() {
            results.push(r);
        }
        let deadline = node.poll_timeout();
        let hlc = node.hlc();
        let gen_inc = (node.identity().generation.0, node.incarnation());
        for t in out {
            let Some(&to) = self.by_addr.get(&t.dst) else {
                continue;
            };
            let stream = t.kind.is_stream();
            if let Some(delay) = self.net.route(n, to, stream, &mut self.rng) {
                self.push(
                    self.now + delay,
                    Ev::Deliver {
                        to,
                        from: n,
                        stream,
                        bytes: t.bytes,
                    },
                );
            }
        }
        // Checker: HLC monotonic per node.
        let slot = &mut self.slots[n];
        if hlc < slot.last_hlc {
            let msg = format!("hlc went back on {}: {} -> {}", slot.id, slot.last_hlc, hlc);
            self.checks.fail(msg);
        }
        let slot = &mut self.slots[n];
        slot.last_hlc = hlc;
        // Checker: (generation, incarnation) of a node only grows.
        if gen_inc < slot.last_incarnation {
            let msg = format!(
                "incarnation went back on {}: {:?} -> {:?}",
                slot.id, slot.last_incarnation, gen_inc
            );
            self.checks.fail(msg);
        }
        self.slots[n].last_incarnation = gen_inc;
        for e in events {
            self.on_event(n, e);
        }
        for (req, r) in results {
            self.on_meta_result(n, req, r);
        }
        if let Some(d) = deadline {
            // A deadline already past means "now": the wake is recorded at
            // the time it is queued for, or it would never match and the
            // node's timers would stall.
            let d = (d.as_nanos() as Nanos).max(self.now);
            let slot = &mut self.slots[n];
            if slot.next_wake.is_none_or(|w| d < w) {
                slot.next_wake = Some(d);
                self.push(d, Ev::Wake(n));
            }
        }
    }

    /// Longest time a Down verdict takes to form on node `n`: its current
    /// suspicion window plus the final check, with the deferrals Lifeguard
    /// allows at full health.
    fn verdict_window(&self, n: usize) -> Nanos {
        let Some(node) = self.slots[n].node.as_ref() else {
            return 0;
        };
        let c = node.config();
        (node.timing().suspicion_window + c.verify_timeout * 2).as_nanos() as Nanos
    }

    /// Whether the network model impairs node `n` (see
    /// [`Network::impaired`]).
    fn impaired(&self, n: usize) -> bool {
        self.net.impaired(n) || self.slots[n].paused
    }

    fn slot_of(&self, id: &NodeId) -> Option<usize> {
        // Ids are "n{index}".
        id.as_str()
            .strip_prefix('n')
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&i| i < self.slots.len())
    }

    fn on_event(&mut self, n: usize, e: Event) {
        match e {
            Event::MemberUp(id) => {
                // Every simulated node's name gives its slot.
                let Some(m) = self.slot_of(&id.id) else {
                    self.checks.fail(format!(
                        "{} saw an unknown member {}",
                        self.slots[n].id, id.id
                    ));
                    return;
                };
                let seen = &mut self.slots[n].seen_gen;
                if seen.len() <= m {
                    seen.resize(m + 1, NOT_SEEN);
                }
                let prev = Some(std::mem::replace(&mut seen[m], id.generation.0))
                    .filter(|&g| g != NOT_SEEN);
                if prev.is_some_and(|g| g > id.generation.0) {
                    let msg = format!(
                        "{} saw generation of {} go back: {:?} -> {}",
                        self.slots[n].id, id.id, prev, id.generation
                    );
                    self.checks.fail(msg);
                }
            }
            Event::MemberDown(id) => {
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
                    let healthy = alive
                        && !self.impaired(j)
                        && self.net.connected(n, j)
                        && self.net.connected(j, n);
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
                    self.checks.fail(format!(
                        "a second metadata cluster formed on {} at {:.1}s",
                        self.slots[n].id,
                        self.now as f64 / SEC as f64
                    ));
                }
            }
            Event::LeaderChanged {
                leader: Some(l),
                term,
            } if l == self.slots[n].id => {
                if let Some(prev) = self.m.leaders.insert(term, l.clone())
                    && prev != l
                {
                    self.checks
                        .fail(format!("two leaders in term {term}: {prev} and {l}"));
                }
            }
            Event::PlacementChanged(_) => self.placement_changed(n),
            Event::MetadataChanged { key, value, index } => match self.m.applied.get(&index) {
                Some((k, v)) if *k != key || *v != value => {
                    let msg = format!(
                        "{} applied {key}={value:?} at {index}, others {k}={v:?}",
                        self.slots[n].id
                    );
                    self.checks.fail(msg);
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
            } => {
                let Some(o) = self.slot_of(&owner) else {
                    return;
                };
                if o != n {
                    let slot = &mut self.slots[n];
                    slot.max_remote_hlc = slot.max_remote_hlc.max(hlc);
                }
                if let Some(&wi) = self.write_index.get(&(o, key)) {
                    let w = &mut self.writes[wi];
                    if hlc >= w.hlc && n != w.owner {
                        w.got.entry(n).or_insert(self.now);
                    }
                }
            }
            _ => {}
        }
    }

    fn start(&mut self, n: usize) {
        if self.slots[n].node.is_some() {
            return;
        }
        // A restart replaces the crashed generation: observers that had not
        // declared it Down yet will see the new one instead.
        for (slot, _, _, observers) in &mut self.crashes {
            if *slot == n {
                observers.clear();
            }
        }
        let slot = &mut self.slots[n];
        slot.generation += 1;
        let identity = Identity::new(slot.id.clone(), slot.addr, Generation(slot.generation));
        let node_seed =
            self.seed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ slot.generation;
        let now = self.now_of(n);
        let disk = Box::new(self.slots[n].disk.clone());
        let node = Node::with_disk(identity, self.config.clone(), node_seed, now, disk)
            .expect("valid config");
        self.slots[n].meta_pending.clear();
        self.slots[n].node = Some(node);
        self.slots[n].next_wake = None;
        self.slots[n].started_once = true;
        self.slots[n].seen_gen.clear();
        self.slots[n].max_remote_hlc = Hlc::default();
        // The HLC lives in memory: a restarted process starts a new one.
        self.slots[n].last_hlc = Hlc::default();
        // Every node starts knowing the addresses of 3 random others.
        let candidates: Vec<usize> = (0..self.slots.len())
            .filter(|&i| i != n && (self.slots[i].node.is_some() || !self.slots[i].started_once))
            .collect();
        let mut seeds = Vec::new();
        for _ in 0..3.min(candidates.len()) {
            let c = candidates[self.rng.random_range(0..candidates.len())];
            seeds.push(self.slots[c].addr);
        }
        if let Some(node) = self.slots[n].node.as_mut() {
            node.join(now, seeds);
        }
        self.after(n);
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Start(n) => self.start(n),
            Action::Crash(n) => {
                if let Some(node) = self.slots[n].node.take() {
                    let identity = node.identity().clone();
                    let observers: Vec<usize> = self.running();
                    self.crashes.push((n, identity, self.now, observers));
                }
            }
            Action::Leave(n) => {
                let now = self.now_of(n);
                if let Some(node) = self.slots[n].node.as_mut() {
                    node.leave(now);
                }
                self.after(n);
                self.slots[n].node = None;
            }
            Action::Write(n) => self.write(n),
            Action::WriteRandom => {
                let running = self.running();
                if !running.is_empty() {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.write(n);
                }
            }
            Action::Replace { crash } => {
                let running = self.running();
                if running.len() > 1 {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.act(if crash {
                        Action::Crash(n)
                    } else {
                        Action::Leave(n)
                    });
                    let fresh = self.add_slot();
                    self.start(fresh);
                }
            }
            Action::CrashRestart { after } => {
                let running = self.running();
                if running.len() > 1 {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.act(Action::Crash(n));
                    self.at(self.now + after, Action::Start(n));
                }
            }
            Action::Partition(p) => {
                if p.is_none() && self.net.partition.is_some() {
                    self.heal_at = Some(self.now);
                }
                if p.is_some() && self.split_at.is_none() {
                    self.split_at = Some(self.now);
                }
                self.net.partition = p;
                self.topology_changed = Some(self.now);
            }
            Action::Loss(p) => self.net.loss = p,
            Action::NodeLoss(n, p) => self.net.node_loss[n] = p,
            Action::Deaf(n, d) => {
                self.net.deaf[n] = d;
                self.topology_changed = Some(self.now);
            }
            Action::ClockJump(n, ms) => self.slots[n].clock.jumped_ms += ms,
            Action::Forge => self.forge(),
            Action::FaultsEnd => self.faults_end = Some(self.now),
            Action::CrashLeader { restart_after } => {
                let leader = self.running().into_iter().find(|&i| {
                    self.slots[i]
                        .node
                        .as_ref()
                        .is_some_and(|x| x.meta_status().role == RaftRole::Leader)
                });
                if let Some(l) = leader {
                    self.m.voter_loss_at = Some(self.now);
                    self.act(Action::Crash(l));
                    if let Some(after) = restart_after {
                        self.at(self.now + after, Action::Start(l));
                    }
                }
            }
            Action::CrashVoters(k) => {
                let voters: Vec<usize> =
                    self.running()
                        .into_iter()
                        .filter(|&i| {
                            self.slots[i].node.as_ref().is_some_and(|x| {
                                !matches!(x.meta_status().role, RaftRole::NonVoter)
                            })
                        })
                        .collect();
                let mut picked: Vec<usize> = voters
                    .iter()
                    .copied()
                    .filter(|&i| {
                        self.slots[i]
                            .node
                            .as_ref()
                            .is_some_and(|x| x.meta_status().role == RaftRole::Leader)
                    })
                    .take(1)
                    .collect();
                let mut rest: Vec<usize> =
                    voters.into_iter().filter(|i| !picked.contains(i)).collect();
                while picked.len() < k && !rest.is_empty() {
                    let j = self.rng.random_range(0..rest.len());
                    picked.push(rest.swap_remove(j));
                }
                self.m.voter_loss_at = Some(self.now);
                for v in picked {
                    self.act(Action::Crash(v));
                }
            }
            Action::MarkVoterLoss => self.m.voter_loss_at = Some(self.now),
            Action::WipeDisk(n) => {
                if self.slots[n].node.is_none() {
                    self.slots[n].disk = MemDisk::default();
                }
            }
            Action::VoterWipeDrill => {
                let role = |w: &World, i: usize| {
                    w.slots[i]
                        .node
                        .as_ref()
                        .map_or(RaftRole::NonVoter, |x| x.meta_status().role)
                };
                let running = self.running();
                let Some(leader) = running
                    .iter()
                    .copied()
                    .find(|&i| role(self, i) == RaftRole::Leader)
                else {
                    return;
                };
                let followers: Vec<usize> = running
                    .iter()
                    .copied()
                    .filter(|&i| i != leader && role(self, i) == RaftRole::Follower)
                    .collect();
                if followers.len() < 2 {
                    return;
                }
                let (v, c) = (followers[0], followers[1]);
                let groups: Vec<u8> = (0..self.slots.len()).map(|i| u8::from(i == c)).collect();
                self.act(Action::Partition(Some(groups)));
                let t = self.now;
                self.at(t + 5 * SEC, Action::Crash(leader));
                self.at(t + 5 * SEC, Action::Crash(v));
                self.at(t + 5 * SEC, Action::WipeDisk(v));
                self.at(t + 5 * SEC, Action::Partition(None));
                self.at(t + 5 * SEC, Action::Start(v));
                self.at(t + 15 * SEC, Action::Start(leader));
            }
            Action::AddNode => {
                let fresh = self.add_slot();
                self.start(fresh);
            }
            Action::LeaveRandom => {
                let running = self.running();
                if running.len() > 1 {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.act(Action::Leave(n));
                    self.placement_check();
                }
            }
            Action::CrashRandom => {
                let running = self.running();
                if running.len() > 1 {
                    self.crash_one_of(&running);
                    self.placement_check();
                }
            }
            Action::CrashHealthy => {
                let healthy: Vec<usize> = self
                    .running()
                    .into_iter()
                    .filter(|&n| !self.impaired(n))
                    .collect();
                if !healthy.is_empty() {
                    self.crash_one_of(&healthy);
                    // Detection is measured on the healthy observers: a node
                    // that cannot hear (or is cut off) has no evidence, and
                    // Lifeguard has it defer its verdicts on purpose. The
                    // end-of-run convergence check still covers it.
                    let impaired: Vec<bool> =
                        (0..self.slots.len()).map(|o| self.impaired(o)).collect();
                    if let Some((_, _, _, observers)) = self.crashes.last_mut() {
                        observers.retain(|&o| !impaired[o]);
                    }
                }
            }
            Action::PauseRandom(len) => self.pause_random(len),
            Action::Resume(n) => self.resume(n),
            Action::MetaClient { keys } => self.meta_client(keys),
            Action::MetaFinalReads { keys } => {
                let running = self.running();
                if running.is_empty() {
                    return;
                }
                for k in 0..keys {
                    let n = running[self.rng.random_range(0..running.len())];
                    self.meta_submit(
                        n,
                        MetaOp::Get {
                            key: format!("key{k}"),
                        },
                    );
                }
            }
        }
    }

    fn pause_random(&mut self, len: Nanos) {
        let running = self.running();
        if running.len() < 2 {
            return;
        }
        let n = running[self.rng.random_range(0..running.len())];
        let node = self.slots[n].node.as_ref().expect("running");
        let c = node.config();
        let window = node.timing().suspicion_window;
        let verdict = window + c.probe_period * 2 + c.verify_timeout * 2;
        self.m.pause = Some(Paused {
            node: n,
            identity: node.identity().clone(),
            at: self.now,
            len,
            window: window.as_nanos() as Nanos,
            verdict: verdict.as_nanos() as Nanos,
            resumed: None,
            declared_down: 0,
            back_alive: None,
            it_declared_down: 0,
            rejoined: false,
            dropped: 0,
        });
        self.slots[n].paused = true;
        self.at(self.now + len, Action::Resume(n));
    }

    /// Unfreezes `n`: its overdue timers fire first, then what waited in its
    /// receive buffer arrives, in order.
    fn resume(&mut self, n: usize) {
        let slot = &mut self.slots[n];
        slot.paused = false;
        slot.resumed_at = Some(self.now);
        slot.held_bytes = 0;
        let held = std::mem::take(&mut slot.held);
        if let Some(p) = &mut self.m.pause
            && p.node == n
        {
            p.resumed = Some(self.now);
        }
        let now = self.now_of(n);
        if let Some(node) = self.slots[n].node.as_mut() {
            node.handle_timeout(now);
        }
        self.after(n);
        for (from, stream, bytes) in held {
            self.deliver(n, from, stream, &bytes);
        }
    }

    /// Whether every running node holds the paused node Alive at the
    /// identity it had when it froze.
    fn pause_healed(&self, p: &Paused) -> bool {
        self.running()
            .into_iter()
            .filter(|&i| i != p.node)
            .all(|i| {
                let node = self.slots[i].node.as_ref().expect("running");
                node.member(&p.identity.id)
                    .is_some_and(|v| v.identity == p.identity && v.state == MemberState::Alive)
            })
    }

    fn placement_changed(&mut self, n: usize) {
        let Some(t) = self.slots[n]
            .node
            .as_ref()
            .and_then(|x| x.partitions().cloned())
        else {
            return;
        };
        let h = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            t.hash(&mut hasher);
            hasher.finish()
        };
        self.slots[n].placement = Some(h);
        if !self.m.placement_versions.iter().any(|v| v.0 == h) {
            self.m.placement_versions.push((h, self.now, None));
            self.m.placement_tables.push(t);
        }
        self.placement_check();
    }

    /// Records when every running node holds the newest placement.
    fn placement_check(&mut self) {
        let Some(&(h, _, None)) = self.m.placement_versions.last() else {
            return;
        };
        let all = self
            .running()
            .iter()
            .all(|&i| self.slots[i].placement == Some(h));
        if all && let Some(v) = self.m.placement_versions.last_mut() {
            v.2 = Some(self.now);
        }
    }

    fn meta_client(&mut self, keys: u64) {
        let running = self.running();
        if running.is_empty() {
            return;
        }
        let n = running[self.rng.random_range(0..running.len())];
        let key = format!("key{}", self.rng.random_range(0..keys));
        self.meta_value_seq += 1;
        let fresh = format!("v{}", self.meta_value_seq).into_bytes();
        let op = match self.rng.random_range(0..10u32) {
            0..=3 => MetaOp::Get { key },
            4..=6 => MetaOp::Put { key, value: fresh },
            7 => MetaOp::Delete { key },
            _ => {
                // Expect a value some node last read or wrote for the key.
                let expect = self.history.recent_value(&key);
                MetaOp::Cas {
                    key,
                    expect,
                    value: Some(fresh),
                }
            }
        };
        self.meta_submit(n, op);
    }

    fn meta_submit(&mut self, n: usize, op: MetaOp) {
        let now = self.now_of(n);
        let Some(node) = self.slots[n].node.as_mut() else {
            return;
        };
        let h = self.history.invoke(op.clone(), self.now);
        let req = node.meta_request(now, op, ReadMode::Linearizable);
        self.slots[n].meta_pending.insert(req, h);
        self.after(n);
    }

    fn on_meta_result(&mut self, n: usize, req: u64, r: Result<MetaReply, MetaError>) {
        let Some(h) = self.slots[n].meta_pending.remove(&req) else {
            return;
        };
        self.m.meta_ops += 1;
        let op = self.history.op(h).clone();
        let outcome = match &r {
            Ok(MetaReply::Value { value, .. }) => OpOutcome::Read(value.clone()),
            Ok(MetaReply::Written { .. }) | Ok(MetaReply::Deleted { .. }) => OpOutcome::Done,
            Ok(MetaReply::Cas { swapped, .. }) => OpOutcome::Cas(*swapped),
            Ok(MetaReply::List { .. }) => OpOutcome::Unknown,
            Err(MetaError::Timeout { .. } | MetaError::Interrupted(_)) => OpOutcome::Unknown,
            // Refused before anything was proposed.
            Err(_) => OpOutcome::Failed,
        };
        if std::env::var_os("ROSTER_SIM_DEBUG").is_some()
            && let Err(e) = &r
            && !op.is_read()
        {
            eprintln!(
                "t={:.3} {} {:?} failed: {e}",
                self.now as f64 / SEC as f64,
                self.slots[n].id,
                op.key()
            );
        }
        self.history.complete(h, outcome, self.now);
        let index = match &r {
            Ok(MetaReply::Written { index }) | Ok(MetaReply::Deleted { index, .. }) => Some(*index),
            Ok(MetaReply::Cas {
                swapped: true,
                index,
                ..
            }) => Some(*index),
            _ => None,
        };
        if let Some(index) = index {
            self.m.meta_acked_writes += 1;
            let value = match &op {
                MetaOp::Put { value, .. } => Some(value.clone()),
                MetaOp::Cas { value, .. } => value.clone(),
                _ => None,
            };
            self.acked.push((index, op.key().to_owned(), value));
        }
    }

    /// The `Forge` fault: picks a key some running member wrote, a forger
    /// and a target among the others, and delivers to the target a push-pull
    /// message from the forger carrying a newer value for that key.
    fn forge(&mut self) {
        let running = self.running();
        let owned: Vec<(usize, String)> = self
            .write_index
            .keys()
            .filter(|(o, _)| running.contains(o))
            .cloned()
            .collect();
        if running.len() < 3 || owned.is_empty() {
            return;
        }
        let (owner, key) = owned[self.rng.random_range(0..owned.len())].clone();
        let others: Vec<usize> = running.iter().copied().filter(|&i| i != owner).collect();
        let forger = others[self.rng.random_range(0..others.len())];
        let targets: Vec<usize> = others.iter().copied().filter(|&i| i != forger).collect();
        let target = targets[self.rng.random_range(0..targets.len())];
        let (from, owner_id, stamp) = {
            let f = self.slots[forger].node.as_ref().expect("running");
            (
                f.identity().clone(),
                self.slots[owner].id.clone(),
                Hlc(f.hlc().0 + 1),
            )
        };
        let msg = roster::wire::Message::SyncDeltas(roster::wire::SyncDeltas {
            from,
            deltas: vec![roster::node::Delta {
                owner: owner_id.clone(),
                key: key.clone(),
                value: Some(b"forged".to_vec()),
                hlc: stamp,
            }],
            members: Vec::new(),
            state: None,
            hlc: stamp,
        });
        let Ok(bytes) = msg.encode() else {
            return;
        };
        let truth = self.slots[owner]
            .node
            .as_ref()
            .and_then(|o| o.state(&owner_id, &key));
        self.deliver(target, forger, true, &bytes);
        let took_hold = self.slots[target]
            .node
            .as_ref()
            .is_some_and(|t| t.state(&owner_id, &key).as_deref() == Some(b"forged"));
        self.m.forgeries.push(Forgery {
            owner,
            key,
            truth,
            at: self.now,
            took_hold,
            restored: None,
        });
    }

    /// Marks forgeries after which every running node holds the owner's own
    /// value again.
    fn check_forgeries(&mut self) {
        let running = self.running();
        for i in 0..self.m.forgeries.len() {
            let f = &self.m.forgeries[i];
            if f.restored.is_some() {
                continue;
            }
            let id = &self.slots[f.owner].id;
            let all = running.iter().all(|&n| {
                self.slots[n]
                    .node
                    .as_ref()
                    .is_some_and(|x| x.state(id, &f.key) == f.truth)
            });
            if all {
                let at = f.at;
                self.m.forgeries[i].restored = Some(self.now - at);
            }
        }
    }

    fn write(&mut self, n: usize) {
        let now = self.now_of(n);
        self.write_seq += 1;
        let key = format!("k{}", self.write_seq);
        let Some(node) = self.slots[n].node.as_mut() else {
            return;
        };
        match node.set_state(now, &key, b"value") {
            Ok(hlc) => {
                // Checker: HLC causality — a write is stamped after every
                // remote write this node has accepted.
                let slot = &self.slots[n];
                if hlc <= slot.max_remote_hlc {
                    let msg = format!(
                        "causality: {} wrote {} at {} after accepting {}",
                        slot.id, key, hlc, slot.max_remote_hlc
                    );
                    self.checks.fail(msg);
                }
                let audience = self.running().into_iter().filter(|&i| i != n).collect();
                self.write_index.insert((n, key), self.writes.len());
                self.writes.push(WriteTrack {
                    owner: n,
                    hlc,
                    at: self.now,
                    got: BTreeMap::new(),
                    audience,
                });
            }
            Err(e) => self.checks.fail(format!("write refused on n{n}: {e}")),
        }
        self.after(n);
    }

    /// Whether every running node sees every other running node Alive and
    /// no running node as Down, and holds the same state.
    fn converged(&self, with_state: bool) -> bool {
        let running = self.running();
        let live = running.len();
        let mut hash = None;
        for &i in &running {
            let node = self.slots[i].node.as_ref().expect("running");
            if node.active_members() != live - 1 {
                return false;
            }
            if with_state {
                let h = node.state_hash();
                if *hash.get_or_insert(h) != h {
                    return false;
                }
            }
        }
        true
    }

    /// While a partition is in force: whether every running node holds
    /// exactly the running members of its own side active.
    fn split_seen(&self) -> bool {
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

    fn periodic_check(&mut self) {
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
    fn healthy_voters(&self) -> Option<usize> {
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

    /// Messages and bytes sent by the running nodes, summed by wire kind.
    pub fn traffic(&self) -> roster::node::metrics::Traffic {
        let mut t = roster::node::metrics::Traffic::default();
        for s in &self.slots {
            if let Some(n) = &s.node {
                let x = n.metrics().tx;
                for i in 0..t.msgs.len() {
                    t.msgs[i] += x.msgs[i];
                    t.bytes[i] += x.bytes[i];
                }
            }
        }
        t
    }

    fn totals(&self) -> (u64, u64) {
        let mut b = 0;
        let mut m = 0;
        for s in &self.slots {
            if let Some(n) = &s.node {
                let x = n.metrics();
                b += x.tx.total_bytes();
                m += x.tx.total_msgs();
            }
        }
        (b, m)
    }

    fn start_window(&mut self) {
        if self.window_start.is_none() {
            let (b, m) = self.totals();
            self.window_start = Some((self.now, b, m));
        }
    }

    fn finish(&mut self) {
        let running = self.running();
        self.m.final_live = running.len();
        // Bandwidth over the measurement window, counted on nodes that ran
        // through it (a crashed node's counters leave with it, so crash
        // scenarios slightly undercount).
        if let Some((t0, b0, m0)) = self.window_start {
            let (b, m) = self.totals();
            self.m.window_bytes = b.saturating_sub(b0);
            self.m.window_msgs = m.saturating_sub(m0);
            self.m.window_secs = (self.end - t0) as f64 / SEC as f64;
            self.m.window_nodes = running.len() as f64;
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
        // Delta spread.
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
        self.m.converged_at_end = self.converged(true);
        self.m.voters_final = self.healthy_voters();
        // Checker: every acknowledged write is committed at the index it was
        // acknowledged with, and every live voter holds it.
        let max_ack = self.acked.iter().map(|a| a.0).max().unwrap_or(0);
        for (index, key, value) in std::mem::take(&mut self.acked) {
            match self.m.applied.get(&index) {
                Some((k, v)) if *k == key && *v == value => {}
                other => self.checks.fail(format!(
                    "acknowledged write {key}={value:?} at {index} is not what was applied: {other:?}"
                )),
            }
        }
        for &i in &running {
            let node = self.slots[i].node.as_ref().expect("running");
            let st = node.meta_status();
            if st.role != RaftRole::NonVoter && st.applied_index < max_ack && st.quorum {
                self.checks.fail(format!(
                    "voter {} applied only {} of acknowledged index {max_ack}",
                    self.slots[i].id, st.applied_index
                ));
            }
        }
        if !self.history.is_empty() {
            self.m.meta_linearizable = Some(self.history.check());
            self.m.meta_checked = self.history.checked();
            if self.m.meta_linearizable == Some(false) {
                self.checks
                    .fail("metadata history is not linearizable".into());
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
        // Checker: after the faults end, every live node converges.
        if self.faults_end.is_some() && !self.m.converged_at_end {
            let detail = self.divergence();
            self.checks
                .fail(format!("live nodes did not converge by the end: {detail}"));
        }
    }

    fn divergence(&self) -> String {
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
