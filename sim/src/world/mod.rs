//! The simulation engine: one event queue on virtual time driving real
//! [`roster::node::Node`]s over the simulated [`Network`].
//!
//! Checkers (see [`crate::checkers`]) run on every step; measurements feed
//! the [`crate::report::Report`].
//!
//! By concern: this file holds the event engine (the queue, delivery, a
//! node's outputs after each step); `events` reads what nodes report,
//! `faults` applies the scenario's actions, `workload` runs the clients
//! (state writes, metadata operations, placement), and `checks` runs the
//! periodic and end-of-run checks.

mod checks;
mod events;
mod faults;
mod plan;
mod workload;

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

use crate::checkers::linearizable::Outcome as OpOutcome;
use crate::checkers::{Checkers, Checks};

use crate::net::{Clock, MS, Nanos, Network, SEC};
use crate::plant::{Plant, Planted};

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
    /// The [`Plant::StaleGeneration`] bug: a random running node crashes
    /// and restarts at once under a generation one lower than it ran.
    StaleRestart,
    /// A random running node sends a user event.
    EventRandom,
    /// Record the coordinates' error now (see `Measured::coord_errors`).
    MeasureCoordinates,
    /// Every fifth node tags itself `role=db`.
    TagFifth,
    /// A random running node asks a query (filtered by `role=db` when
    /// `tagged`), with this relay factor.
    QueryRandom { tagged: bool, relay: u8 },
    /// A random running node freezes for this long (a GC or VM pause): it
    /// neither sends nor processes; what arrives meanwhile waits in a
    /// bounded receive buffer, and its timers are overdue when it resumes.
    PauseRandom(Nanos),
    /// A paused node resumes.
    Resume(usize),
    /// Node `n` freezes until a `Resume` (a fault plan's `pause`).
    Freeze(usize),
    /// The fault plan's next steps are due (see [`crate::plan`]).
    PlanTick,
    /// Sample every running node's member list and the metadata leader
    /// for the fault plan's record.
    PlanSample,
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

struct Slot {
    id: NodeId,
    addr: SocketAddr,
    generation: u64,
    node: Option<Node>,
    clock: Clock,
    next_wake: Option<Nanos>,
    started_once: bool,
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
    pub meta_checked: crate::checkers::linearizable::Checked,
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
    /// The coordinates' relative error over all pairs of running nodes
    /// (median, 90th percentile), at each `MeasureCoordinates` and at the
    /// end.
    pub coord_errors: Vec<(Nanos, f64, f64)>,
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
    /// The violations found.
    pub checks: Checks,
    /// The checkers' state.
    pub checkers: Checkers,
    pub m: Measured,
    write_seq: u64,
    crashes: Vec<(usize, Identity, Nanos, Vec<usize>)>,
    faults_end: Option<Nanos>,
    heal_at: Option<Nanos>,
    split_at: Option<Nanos>,
    /// When the measurement window started, and what the nodes had sent
    /// by then, by kind (see [`World::window_traffic`]).
    window_start: Option<(Nanos, roster::node::metrics::Traffic)>,
    jumper: Option<usize>,
    end: Nanos,
    /// When partitions or blocks last changed.
    topology_changed: Option<Nanos>,
    meta_value_seq: u64,
    /// The bug planted in this run, if any (see [`crate::plant`]).
    pub planted: Planted,
    /// Queries that arrived at nodes, to answer once their step is done.
    to_answer: Vec<(usize, roster::node::queries::QueryId)>,
    /// The fault plan being run, if any.
    pub plan: Option<plan::PlanRun>,
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
            checkers: Checkers::default(),
            m: Measured::default(),
            write_seq: 0,
            crashes: Vec::new(),
            faults_end: None,
            heal_at: None,
            split_at: None,
            window_start: None,
            jumper: None,
            end,
            topology_changed: None,
            meta_value_seq: 0,
            planted: Planted::default(),
            to_answer: Vec::new(),
            plan: None,
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

    /// Records a checker's violation at the current virtual time.
    fn fail(&mut self, what: String) {
        self.checks.fail(self.now, what);
    }

    /// Records a checker's verdict: its violation, if it found one.
    fn record(&mut self, verdict: Result<(), String>) {
        if let Err(what) = verdict {
            self.fail(what);
        }
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
        let hlc = if self.planted.fire(Plant::HlcBack, self.now) {
            Hlc(hlc.0 / 2)
        } else {
            hlc
        };
        let id = &self.slots[n].id;
        let hlc = self.checkers.hlc.observe(n, id, hlc);
        let identity = self.checkers.identity.observe(n, id, gen_inc);
        self.record(hlc);
        self.record(identity);
        for e in events {
            self.on_event(n, e);
        }
        for (req, r) in results {
            self.on_meta_result(n, req, r);
        }
        for (m, id) in std::mem::take(&mut self.to_answer) {
            self.answer(m, &id);
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
        // The HLC lives in memory: a restarted process starts a new one.
        self.checkers.restarted(n);
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

    /// What the nodes running now sent over the measurement window, by
    /// kind (the window of `bytes_per_node_per_sec`; like it, a node
    /// crashed in the window takes its counters along).
    pub fn window_traffic(&self) -> roster::node::metrics::Traffic {
        let mut t = self.traffic();
        if let Some((_, t0)) = &self.window_start {
            for i in 0..t.msgs.len() {
                t.msgs[i] = t.msgs[i].saturating_sub(t0.msgs[i]);
                t.bytes[i] = t.bytes[i].saturating_sub(t0.bytes[i]);
            }
        }
        t
    }

    fn totals(&self) -> (u64, u64) {
        let t = self.traffic();
        (t.total_bytes(), t.total_msgs())
    }

    fn start_window(&mut self) {
        if self.window_start.is_none() {
            self.window_start = Some((self.now, self.traffic()));
        }
    }
}
