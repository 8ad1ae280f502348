//! The named scenarios, one table: each is one [`Scenario`] value with its
//! start window, metadata voters, the actions it schedules on a [`World`]
//! (then a quiet phase in which the cluster must converge) and its own
//! liveness checks. `roster-sim list` and the README's list come from it.

use rand::RngExt;

use crate::net::{Clock, MS, Nanos, SEC};
use crate::report::Report;
use crate::world::{Action, World};

/// One scenario.
pub struct Scenario {
    /// Name used on the command line.
    pub name: &'static str,
    /// What it does.
    pub about: &'static str,
    /// Default virtual duration, seconds.
    pub default_secs: u64,
    /// Every node starts at a random time within this window.
    pub start_window: Nanos,
    /// Metadata voters, where not the default.
    pub voters: Option<usize>,
    /// Whether it takes `--pause`.
    pub pauses: bool,
    /// Whether the nodes run network coordinates.
    pub coordinates: bool,
    /// Schedules its faults, writes and clients.
    pub setup: fn(&mut World, &Setup),
    /// Its own liveness checks, in order, after the ones every scenario has
    /// (see [`liveness`]).
    pub checks: &'static [Check],
}

/// What a scenario's setup is given.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Initial node count.
    pub n: usize,
    /// End of the run.
    pub end: Nanos,
    /// 30 s before the end: when faults that last "until the end" stop.
    pub quiet: Nanos,
    /// `--loss`.
    pub loss: Option<f64>,
    /// `--pause` (for the scenarios that take it).
    pub pause: Option<Nanos>,
}

/// What the liveness checks expect of a run.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Metadata voters a healthy cluster has.
    pub target_voters: usize,
}

/// A liveness check: why a finished run fails it, if it does.
pub type Check = fn(&Report, &Expect) -> Option<String>;

/// Every scenario.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "steady",
        about: "all nodes join within the first second, then nothing happens",
        default_secs: 60,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_steady,
        checks: &[],
    },
    Scenario {
        name: "crash-one",
        about: "one random node crashes at 30 s",
        default_secs: 60,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_crash_one,
        checks: &[crash_detected],
    },
    Scenario {
        name: "crash-many",
        about: "10% of the nodes crash at once at 30 s",
        default_secs: 75,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_crash_many,
        checks: &[crash_detected],
    },
    Scenario {
        name: "loss",
        about: "uniform datagram loss (--loss, default 0.05) until 30 s before the end",
        default_secs: 300,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_loss,
        checks: &[],
    },
    Scenario {
        name: "flaky-node",
        about: "1% of the nodes lose 80% of datagrams both ways from 20 s until 30 s before the end",
        default_secs: 300,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_flaky_node,
        checks: &[],
    },
    Scenario {
        name: "one-way",
        about: "2% of the nodes can send but not receive from 20 s until 30 s before the end",
        default_secs: 120,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_one_way,
        checks: &[],
    },
    Scenario {
        name: "forgery",
        about: "members write keys from 10 s; from 20 s, every 2 s a member pushes a forged newer value of another member's key to a third node; each owner must have its value back everywhere within 3 s",
        default_secs: 60,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_forgery,
        checks: &[forgery_refuted],
    },
    Scenario {
        name: "pause",
        about: "one random node freezes at 30 s for --pause seconds (default 15; a GC or VM pause), then resumes with its timers overdue",
        default_secs: 120,
        start_window: SEC,
        voters: None,
        pauses: true,
        coordinates: false,
        setup: setup_pause,
        checks: &[pause_liveness],
    },
    Scenario {
        name: "partition-heal",
        about: "a 50/50 split at 20 s for 60 s, with writes on both sides, then heal",
        default_secs: 140,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_partition_heal,
        checks: &[heal_converged],
    },
    Scenario {
        name: "churn",
        about: "10% of the nodes replaced per minute (in turn: leave + new node, crash + new node, crash + restart 10 s later) until 30 s before the end",
        default_secs: 180,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_churn,
        checks: &[],
    },
    Scenario {
        name: "clock-skew",
        about: "clock offsets within +-400 ms and drift within +-50 ppm, one node jumps +2 s at 30 s; writes throughout",
        default_secs: 90,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_clock_skew,
        checks: &[],
    },
    Scenario {
        name: "delta",
        about: "writes from random nodes, 2 per second, from 15 s until 15 s before the end",
        default_secs: 60,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_delta,
        checks: &[delta_covered],
    },
    Scenario {
        name: "events",
        about: "user events from random nodes, 4 per second, from 15 s until 15 s before the end (--loss applies until then); each must reach every node running from its sending to the end, once and in its sender's order",
        default_secs: 60,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_events,
        checks: &[events_covered],
    },
    Scenario {
        name: "queries",
        about: "every fifth node tags itself role=db at 5 s; from 20 s, every 5 s a random node asks a query, in turn of everyone and of role=db only, with relay factor 0, or 2 under --loss (which applies until 30 s before the end); every selected node answers at once, and at least 99% of the answers must reach the asker before the default deadline, none from an unselected node",
        default_secs: 90,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_queries,
        checks: &[queries_answered],
    },
    Scenario {
        name: "coordinates",
        about: "network coordinates over 5 regions at random points of a map (round trips 1-150 ms between two in proportion to distance, 1-5 ms within one, plus the LAN latency and its jitter); the estimates' relative error over all pairs is reported at 30 s and at the end",
        default_secs: 120,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: true,
        setup: setup_coordinates,
        checks: &[],
    },
    Scenario {
        name: "bootstrap",
        about: "nodes start in random order over 10 s with three transient partitions in the first 20 s; exactly one metadata cluster must form",
        default_secs: 60,
        start_window: 10 * SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_bootstrap,
        checks: &[voters_final],
    },
    Scenario {
        name: "voter-crash",
        about: "the metadata leader crashes at 30 s; a new leader and a replacement voter must follow",
        default_secs: 75,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_voter_crash,
        checks: &[voters_final, voters_recovered],
    },
    Scenario {
        name: "voter-crash-2of5",
        about: "5 metadata voters; two of them (the leader among them) crash at once at 30 s",
        default_secs: 90,
        start_window: SEC,
        voters: Some(5),
        pauses: false,
        coordinates: false,
        setup: setup_voter_crash_two_of_five,
        checks: &[voters_final, voters_recovered],
    },
    Scenario {
        name: "placement",
        about: "every 10 s from 20 s a node joins, leaves or crashes (in turn); the partition placement must follow",
        default_secs: 120,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_placement,
        checks: &[placement_followed, placement_cleared],
    },
    Scenario {
        name: "meta-linearizable",
        about: "clients on random nodes run get/put/cas/delete on 3 keys through partitions, crashes and restarts; the history must be linearizable",
        default_secs: 90,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_meta_linearizable,
        checks: &[voters_final, linearizable, history_judged],
    },
    Scenario {
        name: "voter-wipe",
        about: "clients as in meta-linearizable (paused 35-50 s); at 30 s one follower voter is cut off for 5 s, then the leader and the other voter crash at once, the latter loses its Raft disk and restarts at once, the leader 10 s later; the history must be linearizable",
        default_secs: 80,
        start_window: SEC,
        voters: None,
        pauses: false,
        coordinates: false,
        setup: setup_voter_wipe,
        checks: &[voters_final, linearizable],
    },
];

/// Looks a scenario up by name.
pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

fn pick(w: &mut World, n: usize, count: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    let mut out = Vec::new();
    while out.len() < count && !all.is_empty() {
        let i = w.rng().random_range(0..all.len());
        out.push(all.swap_remove(i));
    }
    out
}

/// When the `pause` scenario freezes its node.
pub const PAUSE_AT: Nanos = 30 * SEC;

/// The `pause` scenario's pause when `--pause` is not given.
pub const DEFAULT_PAUSE: Nanos = 15 * SEC;

/// Schedules `sc` on `w` for `n` nodes over `end` nanoseconds: the nodes'
/// starts, then the scenario's own actions.
pub fn setup(
    sc: &Scenario,
    w: &mut World,
    n: usize,
    end: Nanos,
    loss: Option<f64>,
    pause: Option<Nanos>,
) {
    for i in 0..n {
        let t = w.rng().random_range(0..sc.start_window);
        w.at(t, Action::Start(i));
    }
    let s = Setup {
        n,
        end,
        quiet: end.saturating_sub(30 * SEC),
        loss,
        pause,
    };
    (sc.setup)(w, &s);
}

fn setup_steady(_: &mut World, _: &Setup) {}

fn setup_crash_one(w: &mut World, s: &Setup) {
    let v = pick(w, s.n, 1)[0];
    w.at(30 * SEC, Action::Crash(v));
    w.at(30 * SEC, Action::FaultsEnd);
}

fn setup_crash_many(w: &mut World, s: &Setup) {
    for v in pick(w, s.n, (s.n / 10).max(1)) {
        w.at(30 * SEC, Action::Crash(v));
    }
    w.at(30 * SEC, Action::FaultsEnd);
}

fn setup_loss(w: &mut World, s: &Setup) {
    w.at(0, Action::Loss(s.loss.unwrap_or(0.05)));
    w.at(s.quiet, Action::Loss(0.0));
    w.at(s.quiet, Action::FaultsEnd);
}

fn setup_flaky_node(w: &mut World, s: &Setup) {
    for v in pick(w, s.n, (s.n / 100).max(1)) {
        w.at(20 * SEC, Action::NodeLoss(v, 0.8));
        w.at(s.quiet, Action::NodeLoss(v, 0.0));
    }
    if let Some(p) = s.loss {
        w.at(0, Action::Loss(p));
        w.at(s.quiet, Action::Loss(0.0));
    }
    w.at(s.quiet, Action::FaultsEnd);
}

fn setup_pause(w: &mut World, s: &Setup) {
    let len = s.pause.unwrap_or(DEFAULT_PAUSE);
    w.at(PAUSE_AT, Action::PauseRandom(len));
    w.at(PAUSE_AT + len, Action::FaultsEnd);
}

fn setup_one_way(w: &mut World, s: &Setup) {
    for v in pick(w, s.n, (s.n / 50).max(1)) {
        w.at(20 * SEC, Action::Deaf(v, true));
        w.at(s.quiet, Action::Deaf(v, false));
    }
    w.at(s.quiet, Action::FaultsEnd);
}

fn setup_partition_heal(w: &mut World, s: &Setup) {
    let groups: Vec<u8> = (0..s.n).map(|i| u8::from(i >= s.n / 2)).collect();
    w.at(20 * SEC, Action::Partition(Some(groups)));
    for k in 0..20 {
        w.at(25 * SEC + k * 2 * SEC, Action::WriteRandom);
    }
    w.at(80 * SEC, Action::Partition(None));
    w.at(80 * SEC, Action::FaultsEnd);
}

fn setup_churn(w: &mut World, s: &Setup) {
    let per_min = (s.n / 10).max(1) as u64;
    let step = 60 * SEC / per_min;
    let mut t = 20 * SEC;
    let mut k = 0;
    while t < s.quiet {
        // In turn: a leave and a new node, a crash and a new node,
        // a crash and a restart of the same node 10 s later.
        let a = match k % 3 {
            0 => Action::Replace { crash: false },
            1 => Action::Replace { crash: true },
            _ => Action::CrashRestart { after: 10 * SEC },
        };
        w.at(t, a);
        k += 1;
        t += step;
    }
    w.at(s.quiet, Action::FaultsEnd);
}

fn setup_clock_skew(w: &mut World, s: &Setup) {
    for i in 0..s.n {
        let offset_ms = w.rng().random_range(-400..=400);
        let drift_ppm = w.rng().random_range(-50.0..=50.0);
        w.set_clock(
            i,
            Clock {
                offset_ms,
                drift_ppm,
                jumped_ms: 0,
            },
        );
    }
    let j = pick(w, s.n, 1)[0];
    w.set_jumper(j);
    w.at(30 * SEC, Action::ClockJump(j, 2000));
    let mut t = 10 * SEC;
    while t < s.quiet {
        w.at(t, Action::WriteRandom);
        w.at(t + 250 * MS, Action::Write(j));
        t += SEC;
    }
    w.at(s.quiet, Action::FaultsEnd);
}

fn setup_forgery(w: &mut World, s: &Setup) {
    let mut t = 10 * SEC;
    while t < 20 * SEC {
        w.at(t, Action::WriteRandom);
        t += SEC / 4;
    }
    let mut t = 20 * SEC;
    while t < s.quiet {
        w.at(t, Action::Forge);
        t += 2 * SEC;
    }
    w.at(s.quiet, Action::FaultsEnd);
}

fn setup_delta(w: &mut World, s: &Setup) {
    let mut t = 15 * SEC;
    while t < s.end.saturating_sub(15 * SEC) {
        w.at(t, Action::WriteRandom);
        t += SEC / 2;
    }
    w.at(s.end.saturating_sub(15 * SEC), Action::FaultsEnd);
}

fn setup_events(w: &mut World, s: &Setup) {
    let stop = s.end.saturating_sub(15 * SEC);
    if let Some(p) = s.loss {
        w.at(0, Action::Loss(p));
        w.at(stop, Action::Loss(0.0));
    }
    let mut t = 15 * SEC;
    while t < stop {
        w.at(t, Action::EventRandom);
        t += SEC / 4;
    }
    w.at(stop, Action::FaultsEnd);
}

fn setup_queries(w: &mut World, s: &Setup) {
    if let Some(p) = s.loss {
        w.at(0, Action::Loss(p));
        w.at(s.quiet, Action::Loss(0.0));
    }
    w.at(5 * SEC, Action::TagFifth);
    let relay = if s.loss.is_some() { 2 } else { 0 };
    let mut t = 20 * SEC;
    let mut tagged = false;
    while t < s.quiet {
        w.at(t, Action::QueryRandom { tagged, relay });
        tagged = !tagged;
        t += 5 * SEC;
    }
    w.at(s.quiet, Action::FaultsEnd);
}

fn setup_coordinates(w: &mut World, s: &Setup) {
    let regions = crate::net::Regions::draw(5, w.rng());
    w.net.regions = Some(regions);
    w.at(30 * SEC, Action::MeasureCoordinates);
    w.at(s.end.saturating_sub(15 * SEC), Action::FaultsEnd);
}

fn setup_bootstrap(w: &mut World, s: &Setup) {
    for slot in 0..3u64 {
        let t = slot * 6 * SEC + w.rng().random_range(0..3 * SEC);
        let len = w.rng().random_range(SEC..3 * SEC);
        let groups: Vec<u8> = (0..s.n).map(|_| w.rng().random_range(0..2u8)).collect();
        w.at(t, Action::Partition(Some(groups)));
        w.at(t + len, Action::Partition(None));
    }
    w.at(20 * SEC, Action::FaultsEnd);
}

fn setup_voter_crash(w: &mut World, _: &Setup) {
    w.at(
        30 * SEC,
        Action::CrashLeader {
            restart_after: None,
        },
    );
    w.at(30 * SEC, Action::FaultsEnd);
}

fn setup_voter_crash_two_of_five(w: &mut World, _: &Setup) {
    w.at(30 * SEC, Action::CrashVoters(2));
    w.at(30 * SEC, Action::FaultsEnd);
}

fn setup_placement(w: &mut World, s: &Setup) {
    let mut t = 20 * SEC;
    let mut k = 0;
    while t + 30 * SEC <= s.end {
        let a = match k % 3 {
            0 => Action::AddNode,
            1 => Action::LeaveRandom,
            _ => Action::CrashRandom,
        };
        w.at(t, a);
        k += 1;
        t += 10 * SEC;
    }
    w.at(t, Action::FaultsEnd);
}

fn setup_meta_linearizable(w: &mut World, s: &Setup) {
    let stop = s.end.saturating_sub(20 * SEC);
    let mut t = 10 * SEC;
    while t < stop {
        w.at(t, Action::MetaClient { keys: 3 });
        t += 100 * MS;
    }
    // A minority split, a crash and restart, a leader crash and
    // restart, a majority/minority split.
    let minority: Vec<u8> = (0..s.n).map(|i| u8::from(i < s.n / 3)).collect();
    w.at(20 * SEC, Action::Partition(Some(minority)));
    w.at(26 * SEC, Action::Partition(None));
    w.at(30 * SEC, Action::CrashRestart { after: 8 * SEC });
    w.at(
        42 * SEC,
        Action::CrashLeader {
            restart_after: Some(6 * SEC),
        },
    );
    let halves: Vec<u8> = (0..s.n).map(|_| w.rng().random_range(0..2u8)).collect();
    w.at(55 * SEC, Action::Partition(Some(halves)));
    w.at(60 * SEC, Action::Partition(None));
    w.at(60 * SEC, Action::FaultsEnd);
    w.at(
        s.end.saturating_sub(10 * SEC),
        Action::MetaFinalReads { keys: 3 },
    );
}

fn setup_voter_wipe(w: &mut World, s: &Setup) {
    // No clients while the cluster has no quorum (35-45 s): each
    // request then would time out with an unknown outcome, and
    // too many of those make the history too costly to check.
    let stop = s.end.saturating_sub(20 * SEC);
    let mut t = 10 * SEC;
    while t < stop {
        if !(35 * SEC..50 * SEC).contains(&t) {
            w.at(t, Action::MetaClient { keys: 3 });
        }
        t += 100 * MS;
    }
    w.at(30 * SEC, Action::VoterWipeDrill);
    w.at(50 * SEC, Action::FaultsEnd);
    w.at(
        s.end.saturating_sub(10 * SEC),
        Action::MetaFinalReads { keys: 3 },
    );
}

/// The liveness checks of a finished run of `sc`: membership converged
/// after the start and exactly one metadata cluster formed, then the
/// scenario's own checks in order. The first failure, if any.
pub fn liveness(sc: &Scenario, r: &Report, e: &Expect) -> Option<String> {
    if r.join_converged_secs.is_none() {
        return Some("membership never converged after the start".into());
    }
    if r.raft_clusters_formed != 1 {
        return Some(format!(
            "{} metadata clusters formed (expected exactly 1)",
            r.raft_clusters_formed
        ));
    }
    sc.checks.iter().find_map(|check| check(r, e))
}

fn voters_final(r: &Report, e: &Expect) -> Option<String> {
    (r.voters_final != Some(e.target_voters)).then(|| {
        format!(
            "{:?} healthy voters at the end (expected {})",
            r.voters_final, e.target_voters
        )
    })
}

fn voters_recovered(r: &Report, _: &Expect) -> Option<String> {
    r.voter_recovery_secs
        .is_none()
        .then(|| "the voters never recovered after the crash".into())
}

fn placement_followed(r: &Report, _: &Expect) -> Option<String> {
    (r.placement_unconverged > 0 || r.placement_versions < 2).then(|| {
        format!(
            "{} of {} placement versions never reached every live node",
            r.placement_unconverged, r.placement_versions
        )
    })
}

fn placement_cleared(r: &Report, _: &Expect) -> Option<String> {
    r.placement_dead_cleared_secs
        .is_none_or(|c| r.detect_all_secs.is_none_or(|d| c > d + 3.0))
        .then(|| {
            format!(
                "a crashed node kept slots: cleared after {:?} s, detected by all after {:?} s",
                r.placement_dead_cleared_secs, r.detect_all_secs
            )
        })
}

fn linearizable(r: &Report, _: &Expect) -> Option<String> {
    (r.meta_linearizable != Some(true))
        .then(|| format!("meta_linearizable is {:?}", r.meta_linearizable))
}

/// A history without answered reads or compare-and-sets passes the check
/// without testing what a linearizable store promises.
fn history_judged(r: &Report, _: &Expect) -> Option<String> {
    (r.meta_checked_reads == 0 || r.meta_checked_cas == 0).then(|| {
        format!(
            "the checked history holds {} reads and {} compare-and-sets",
            r.meta_checked_reads, r.meta_checked_cas
        )
    })
}

fn crash_detected(r: &Report, _: &Expect) -> Option<String> {
    r.detect_all_secs.is_none().then(|| {
        format!(
            "{} observers never declared a crashed node Down",
            r.undetected
        )
    })
}

fn heal_converged(r: &Report, _: &Expect) -> Option<String> {
    r.heal_converged_secs
        .is_none()
        .then(|| "the cluster did not converge after the partition healed".into())
}

fn delta_covered(r: &Report, _: &Expect) -> Option<String> {
    (r.delta_coverage != Some(1.0))
        .then(|| format!("delta coverage {:?} is not 1.0", r.delta_coverage))
}

/// Every user event reached every node that ran from its sending to the
/// end.
fn events_covered(r: &Report, _: &Expect) -> Option<String> {
    let coverage = r.user_events.as_ref().and_then(|e| e.event_coverage);
    (coverage != Some(1.0)).then(|| format!("event coverage {coverage:?} is not 1.0"))
}

/// At least 99% of the selected members' answers reached the asker in time,
/// with and without a tag filter.
fn queries_answered(r: &Report, _: &Expect) -> Option<String> {
    let q = r.queries.as_ref()?;
    [("all", q.query_answered), ("role=db", q.query_tag_answered)]
        .into_iter()
        .find(|(_, share)| share.is_none_or(|s| s < 0.99))
        .map(|(which, share)| format!("queries of {which}: answered share {share:?} is below 0.99"))
}

/// The `forgery` scenario's expectations: forged writes were pushed and
/// taken by their target, and every one was overwritten everywhere by its
/// owner within 3 s.
fn forgery_refuted(r: &Report, _: &Expect) -> Option<String> {
    let (Some(n), Some(held), Some(restored)) =
        (r.forgeries, r.forgeries_took_hold, r.forgeries_restored)
    else {
        return Some("no forged write was pushed".into());
    };
    if held == 0 {
        return Some(format!(
            "none of the {n} forged writes was taken by its target"
        ));
    }
    if restored < n {
        return Some(format!(
            "{} of {n} forged values were never overwritten by their owner",
            n - restored
        ));
    }
    match r.forgery_restore_max_secs {
        Some(max) if max > 3.0 => Some(format!(
            "a forged value stayed {max} s before the owner's value was back everywhere (limit 3 s)"
        )),
        _ => None,
    }
}

/// The `pause` scenario's expectations: a pause shorter than the suspicion
/// window gets the node no Down; a pause longer than a whole verdict gets it
/// Down, and then Alive again everywhere at the same identity within 3 s of
/// resuming; the node itself declares no one Down for what it missed.
fn pause_liveness(r: &Report, _: &Expect) -> Option<String> {
    let (Some(len), Some(window), Some(verdict)) =
        (r.pause_secs, r.pause_window_secs, r.pause_verdict_secs)
    else {
        return Some("no node was paused".into());
    };
    let downs = r.pause_declared_down.unwrap_or(0);
    if r.pause_node_declared_down.unwrap_or(0) > 0 {
        return Some(format!(
            "the paused node declared {} members Down after resuming",
            r.pause_node_declared_down.unwrap_or(0)
        ));
    }
    if r.pause_rejoined == Some(true) {
        return Some("the paused node came back under a new identity".into());
    }
    if len < window && downs > 0 {
        return Some(format!(
            "a {len} s pause, shorter than the {window} s suspicion window, got the node declared Down {downs} times"
        ));
    }
    if len > verdict && downs == 0 {
        return Some(format!(
            "a {len} s pause, longer than a {verdict} s verdict, got the node declared Down by no one"
        ));
    }
    if downs > 0 && r.pause_back_alive_secs.is_none_or(|b| b > 3.0) {
        return Some(format!(
            "declared Down, the node was Alive everywhere again only after {:?} s (limit 3 s)",
            r.pause_back_alive_secs
        ));
    }
    None
}
