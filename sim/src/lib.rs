//! roster-sim: a deterministic simulator driving real `roster` nodes.
//!
//! One event queue on virtual time, a network model (latency, loss,
//! per-node loss, one-way blocks, partitions), a clock model per node
//! (offset, drift, jumps), crash/restart/leave/join events and checkers that
//! observe every step. The same seed always gives the same run.
#![forbid(unsafe_code)]

pub mod checkers;
pub mod net;
pub mod plan;
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
    /// Overrides `Config::suspicion_confirmations` (the native engine's
    /// confirmations that bring a suspicion down to its shortest window).
    pub suspicion_confirmations: Option<u8>,
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

/// The nodes' configuration for a run: the agent's default preset (the
/// node sizes its timing from the live member count itself, as it does in
/// an agent) with the spec's and the scenario's settings.
fn config_for(spec: &RunSpec, sc: &scenario::Scenario) -> Result<Config, SpecError> {
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
    if let Some(k) = spec.suspicion_confirmations {
        config.suspicion_confirmations = k;
    }
    if let Some(v) = sc.voters {
        config.meta.target_voters = v;
    }
    config.coordinates = sc.coordinates;
    Ok(config)
}

/// Runs `one` for every seed on `jobs` threads (at least one), each taking
/// the next seed left; the results that came back, in seed order.
pub fn for_seeds<T: Send>(
    seeds: &[u64],
    jobs: usize,
    one: impl Fn(u64) -> Option<T> + Sync,
) -> Vec<(u64, T)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, seeds.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    if let Some(out) = one(seed) {
                        let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                        r.push((seed, out));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|r| r.0);
    results
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
    if spec.pause.is_some() && !sc.pauses {
        return Err(SpecError::PauseWithoutScenario);
    }
    let pause = sc.pauses.then(|| {
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
    let config = config_for(spec, sc)?;
    let target_voters = config.meta.target_voters.min(spec.nodes);
    let mut w = world::World::new(spec.nodes, spec.seed, config, end);
    scenario::setup(sc, &mut w, spec.nodes, end, spec.loss, pause);
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
        let (t, win) = (w.traffic(), w.window_traffic());
        for (i, k) in roster::wire::Kind::ALL.iter().enumerate() {
            if t.msgs[i] > 0 {
                eprintln!(
                    "sent {k:?}: {} messages, {} bytes; in the measurement window {} messages, {} bytes",
                    t.msgs[i], t.bytes[i], win.msgs[i], win.bytes[i]
                );
            }
        }
    }
    let report = Report::new(sc.name, spec.nodes, spec.seed, &w, wall);
    let expect = scenario::Expect { target_voters };
    let liveness_failed = scenario::liveness(sc, &report, &expect).or_else(|| {
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
        false_down_detail: w.checkers.false_downs.detail.clone(),
        liveness_failed,
        report,
    })
}
