//! roster-sim: a deterministic simulator driving real `roster` nodes.
//!
//! One event queue on virtual time, a network model (latency, loss,
//! per-node loss, one-way blocks, partitions), a clock model per node
//! (offset, drift, jumps), crash/restart/leave/join events and checkers that
//! observe every step. The same seed always gives the same run.

pub mod linear;
pub mod net;
pub mod plant;
pub mod plot;
pub mod report;
pub mod scenario;
pub mod world;

use std::time::Duration;

use roster::node::{Config, EngineKind};

pub use report::Report;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// Scenario name.
    pub scenario: String,
    /// Initial node count.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Virtual duration; the scenario's default when `None`.
    pub duration: Option<Duration>,
    /// Loss for `loss` (and extra uniform loss for `flaky-node`).
    pub loss: Option<f64>,
    /// Turn roster's Lifeguard layer off.
    pub no_lifeguard: bool,
    /// Also crash one random healthy node (running, not impaired by the
    /// network model) at this time, so any scenario measures detection.
    pub crash_at: Option<Duration>,
    /// Overrides `Config::judge_max_health`.
    pub judge_max_health: Option<u8>,
    /// Overrides `Config::suspicion_min_mult` (the native engine's shortest
    /// suspicion window, in probe periods per decade of members).
    pub suspicion_min_mult: Option<f64>,
    /// How long the `pause` scenario freezes its node.
    pub pause: Option<Duration>,
    /// The SWIM engine every node runs.
    pub engine: EngineKind,
    /// A bug to plant, to show the checker guarding against it fires (see
    /// [`plant`]).
    pub plant: Option<plant::Plant>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Unknown scenario.
    #[error("unknown scenario {0:?}; `roster-sim list` names them")]
    UnknownScenario(String),
    /// Too few nodes.
    #[error("--nodes must be at least 2")]
    TooFewNodes,
    /// Loss out of range.
    #[error("--loss must be within [0, 1)")]
    BadLoss,
    /// A suspicion multiplier that is not a positive number.
    #[error("--suspicion-min-mult must be a positive number")]
    BadSuspicionMult,
    /// Crash time outside the run.
    #[error("--crash-at must fall within the run's duration")]
    BadCrashAt,
    /// `--pause` given to another scenario than `pause`.
    #[error("--pause applies to the pause scenario only")]
    PauseWithoutScenario,
}

/// A finished run.
pub struct Outcome {
    /// The figures.
    pub report: Report,
    /// First invariant violations, with detail.
    pub violations: Vec<String>,
    /// Example false Downs.
    pub false_down_detail: Vec<String>,
    /// The scenario's own liveness check failed.
    pub liveness_failed: Option<String>,
    /// What `--plot` draws.
    pub plot: plot::PlotData,
}

/// Runs one simulation.
pub fn run(spec: &RunSpec) -> Result<Outcome, SpecError> {
    let sc = scenario::find(&spec.scenario)
        .ok_or_else(|| SpecError::UnknownScenario(spec.scenario.clone()))?;
    if spec.nodes < 2 {
        return Err(SpecError::TooFewNodes);
    }
    if let Some(l) = spec.loss
        && !(0.0..1.0).contains(&l)
    {
        return Err(SpecError::BadLoss);
    }
    if spec.pause.is_some() && sc.name != "pause" {
        return Err(SpecError::PauseWithoutScenario);
    }
    let pause = (sc.name == "pause").then(|| {
        spec.pause
            .map_or(scenario::DEFAULT_PAUSE, |p| p.as_nanos() as u64)
    });
    // A pause leaves 30 s after it to recover.
    let default_secs = match pause {
        Some(p) => sc
            .default_secs
            .max((scenario::PAUSE_AT + p).div_ceil(net::SEC) + 30),
        None => sc.default_secs,
    };
    let dur = spec.duration.unwrap_or(Duration::from_secs(default_secs));
    let end = dur.as_nanos() as u64;
    if spec.crash_at.is_some_and(|t| t >= dur) {
        return Err(SpecError::BadCrashAt);
    }
    // The agent's default preset: the node sizes its timing from the live
    // member count itself, as it does in an agent.
    let mut config = Config::lan();
    config.lifeguard = !spec.no_lifeguard;
    config.engine = spec.engine;
    if let Some(j) = spec.judge_max_health {
        config.judge_max_health = j;
    }
    if let Some(m) = spec.suspicion_min_mult {
        if !(m.is_finite() && m > 0.0) {
            return Err(SpecError::BadSuspicionMult);
        }
        config.suspicion_min_mult = m;
    }
    if sc.name == "voter-crash-2of5" {
        config.meta.target_voters = 5;
    }
    let target_voters = config.meta.target_voters.min(spec.nodes);
    let mut w = world::World::new(spec.nodes, spec.seed, config, end);
    scenario::setup(sc.name, &mut w, spec.nodes, end, spec.loss, pause);
    w.planted = plant::Planted::new(spec.plant);
    if spec.plant == Some(plant::Plant::StaleGeneration) {
        w.at(plant::PLANT_AT, world::Action::StaleRestart);
    }
    if let Some(t) = spec.crash_at {
        w.at(t.as_nanos() as u64, world::Action::CrashHealthy);
    }
    #[allow(clippy::disallowed_methods)] // wall time of the run, reported only
    let started = std::time::Instant::now();
    w.run();
    let wall = started.elapsed().as_secs_f64();
    if std::env::var_os("ROSTER_SIM_DEBUG").is_some() {
        let t = w.traffic();
        for (i, k) in roster::wire::Kind::ALL.iter().enumerate() {
            if t.msgs[i] > 0 {
                eprintln!("sent {k:?}: {} messages, {} bytes", t.msgs[i], t.bytes[i]);
            }
        }
    }
    let report = Report::new(sc.name, spec.nodes, spec.seed, &w, wall);
    let liveness_failed = liveness(sc.name, &report, target_voters).or_else(|| {
        (spec.crash_at.is_some() && report.detect_all_secs.is_none()).then(|| {
            format!(
                "{} observers never declared the node crashed by --crash-at Down",
                report.undetected
            )
        })
    });
    let plot = plot::PlotData::from_measured(
        &w.m,
        &format!("{} · {} nodes · seed {}", sc.name, spec.nodes, spec.seed),
    );
    Ok(Outcome {
        plot,
        violations: w.checks.violations.clone(),
        false_down_detail: w.m.false_down_detail.clone(),
        liveness_failed,
        report,
    })
}

/// The scenario's own liveness check.
fn liveness(name: &str, r: &Report, target_voters: usize) -> Option<String> {
    if r.join_converged_secs.is_none() {
        return Some("membership never converged after the start".into());
    }
    if r.raft_clusters_formed != 1 {
        return Some(format!(
            "{} metadata clusters formed (expected exactly 1)",
            r.raft_clusters_formed
        ));
    }
    match name {
        "bootstrap" | "voter-crash" | "voter-crash-2of5" | "meta-linearizable" | "voter-wipe"
            if r.voters_final != Some(target_voters) =>
        {
            Some(format!(
                "{:?} healthy voters at the end (expected {target_voters})",
                r.voters_final
            ))
        }
        "voter-crash" | "voter-crash-2of5" if r.voter_recovery_secs.is_none() => {
            Some("the voters never recovered after the crash".into())
        }
        "placement" if r.placement_unconverged > 0 || r.placement_versions < 2 => Some(format!(
            "{} of {} placement versions never reached every live node",
            r.placement_unconverged, r.placement_versions
        )),
        "placement"
            if r.placement_dead_cleared_secs
                .is_none_or(|c| r.detect_all_secs.is_none_or(|d| c > d + 3.0)) =>
        {
            Some(format!(
                "a crashed node kept slots: cleared after {:?} s, detected by all after {:?} s",
                r.placement_dead_cleared_secs, r.detect_all_secs
            ))
        }
        "meta-linearizable" | "voter-wipe" if r.meta_linearizable != Some(true) => {
            Some(format!("meta_linearizable is {:?}", r.meta_linearizable))
        }
        // A history without answered reads or compare-and-sets passes the
        // check without testing what a linearizable store promises.
        "meta-linearizable" if r.meta_checked_reads == 0 || r.meta_checked_cas == 0 => {
            Some(format!(
                "the checked history holds {} reads and {} compare-and-sets",
                r.meta_checked_reads, r.meta_checked_cas
            ))
        }
        "crash-one" | "crash-many" if r.detect_all_secs.is_none() => Some(format!(
            "{} observers never declared a crashed node Down",
            r.undetected
        )),
        "partition-heal" if r.heal_converged_secs.is_none() => {
            Some("the cluster did not converge after the partition healed".into())
        }
        "pause" => pause_liveness(r),
        "forgery" => forgery_refuted(r),
        "delta" if r.delta_coverage != Some(1.0) => {
            Some(format!("delta coverage {:?} is not 1.0", r.delta_coverage))
        }
        _ => None,
    }
}

/// The `forgery` scenario's expectations: forged writes were pushed and
/// taken by their target, and every one was overwritten everywhere by its
/// owner within 3 s.
fn forgery_refuted(r: &Report) -> Option<String> {
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
fn pause_liveness(r: &Report) -> Option<String> {
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
