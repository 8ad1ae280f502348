//! The run's report: a human summary and one JSON object.

use serde::Serialize;

use crate::net::{Nanos, SEC};
use crate::world::World;

/// Every figure of a run (`null` where a field does not apply).
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    /// The SWIM engine the nodes ran (`foca` or `native`).
    pub engine: String,
    pub nodes: usize,
    pub seed: u64,
    pub virtual_secs: f64,
    pub wall_secs: f64,
    pub events: u64,
    pub join_converged_secs: Option<f64>,
    pub detect_first_secs: Option<f64>,
    pub detect_all_secs: Option<f64>,
    pub undetected: u64,
    pub false_downs: u64,
    pub transition_downs: u64,
    pub delta_p50_secs: Option<f64>,
    pub delta_p99_secs: Option<f64>,
    pub delta_coverage: Option<f64>,
    pub heal_converged_secs: Option<f64>,
    pub split_detected_secs: Option<f64>,
    pub bytes_per_node_per_sec: Option<f64>,
    pub msgs_per_node_per_sec: Option<f64>,
    pub hlc_drift_rejections: u64,
    /// Lifeguard counters summed over the nodes running at the end.
    pub you_are_down_received: u64,
    pub stray_you_are_down_dropped: u64,
    pub downs_deferred: u64,
    pub downs_adopted: u64,
    pub final_checks: u64,
    pub hlc_drift_rejections_from_jumper: u64,
    pub invariant_violations: u64,
    pub converged_at_end: bool,
    pub live_nodes_at_end: usize,
    pub raft_clusters_formed: usize,
    pub leader_changes: usize,
    pub voters_final: Option<usize>,
    pub voter_recovery_secs: Option<f64>,
    pub meta_ops: u64,
    pub meta_acked_writes: u64,
    pub meta_linearizable: Option<bool>,
    /// Operations the linearizability check judged, by kind (an empty or
    /// write-only history would pass it and prove little).
    pub meta_checked_writes: u64,
    pub meta_checked_reads: u64,
    pub meta_checked_cas: u64,
    pub placement_versions: usize,
    pub placement_max_over_mean: Option<f64>,
    pub placement_replica_max_over_mean: Option<f64>,
    pub placement_moved_fraction: Option<f64>,
    pub placement_converged_secs: Option<f64>,
    pub placement_unconverged: usize,
    pub placement_dead_cleared_secs: Option<f64>,
    /// The `pause` scenario: the pause, the node's suspicion window and its
    /// whole verdict time (window and final check) when it froze, Down
    /// verdicts about it, the time from resuming until every running node
    /// held it Alive at the same identity, Down verdicts it reached itself
    /// after resuming, whether it came back under a new identity, and the
    /// arrivals its full receive buffer dropped.
    pub pause_secs: Option<f64>,
    pub pause_window_secs: Option<f64>,
    pub pause_verdict_secs: Option<f64>,
    pub pause_declared_down: Option<u64>,
    pub pause_back_alive_secs: Option<f64>,
    pub pause_node_declared_down: Option<u64>,
    pub pause_rejoined: Option<bool>,
    pub pause_dropped: Option<u64>,
    /// The `forgery` scenario: forged writes pushed, how many the target
    /// took, how many were overwritten everywhere by their owner, the
    /// slowest and median time to that, and the refutations counted by the
    /// owners (`roster_state_forgeries_refuted_total`).
    pub forgeries: Option<usize>,
    /// The coordinates' relative error, median and 90th percentile over all
    /// pairs, at 30 s and at the end (absent without the regions model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coord_error_p50_at_30s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coord_error_p90_at_30s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coord_error_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coord_error_p90: Option<f64>,
    /// The `queries` scenario's figures (absent when no query was asked).
    #[serde(flatten)]
    pub queries: Option<crate::checkers::queries::QueryFigures>,
    /// The `events` scenario's figures (absent when no event was sent).
    #[serde(flatten)]
    pub user_events: Option<crate::checkers::user_events::EventFigures>,
    pub forgeries_took_hold: Option<usize>,
    pub forgeries_restored: Option<usize>,
    pub forgery_restore_max_secs: Option<f64>,
    pub forgery_restore_p50_secs: Option<f64>,
    pub forgeries_refuted: u64,
}

fn secs(n: Nanos) -> f64 {
    (n as f64 / SEC as f64 * 1000.0).round() / 1000.0
}

fn quantile(sorted: &[Nanos], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(secs(sorted[i]))
}

/// Busiest node over the mean, for primaries or replicas.
fn ratio(t: &roster::node::meta::Table, primaries: bool) -> Option<f64> {
    let counts = t.counts();
    if counts.is_empty() {
        return None;
    }
    let vals: Vec<f64> = counts
        .values()
        .map(|c| f64::from(if primaries { c.0 } else { c.1 }))
        .collect();
    let n = t.nodes.len().max(1) as f64;
    let mean = vals.iter().sum::<f64>() / n;
    let max = vals.iter().copied().fold(0.0, f64::max);
    (mean > 0.0).then(|| (max / mean * 1000.0).round() / 1000.0)
}

/// For each crash, from the crash to the first placement without the dead
/// node; the slowest. `None` when some crash was never cleared.
fn dead_cleared(m: &crate::world::Measured) -> Option<f64> {
    let mut worst = None;
    for (at, id) in &m.crash_times {
        let cleared = m
            .placement_versions
            .iter()
            .zip(&m.placement_tables)
            .find(|(v, t)| v.1 >= *at && !t.holds(id))
            .map(|(v, _)| v.1 - at)?;
        worst = Some(worst.map_or(cleared, |w: Nanos| w.max(cleared)));
    }
    worst.map(secs)
}

impl Report {
    /// Builds the report of a finished run.
    // One line per figure of the report (the JSON's fields): long because
    // the figures are many.
    pub fn new(scenario: &str, nodes: usize, seed: u64, w: &World, wall_secs: f64) -> Self {
        let m = &w.m;
        let mut detect = m.detect.clone();
        detect.sort_unstable();
        let mut deltas = m.delta_delays.clone();
        deltas.sort_unstable();
        let mut restore: Vec<Nanos> = m.forgeries.iter().filter_map(|f| f.restored).collect();
        restore.sort_unstable();
        let per_node_sec = |total: u64| {
            (m.window_secs > 0.0 && m.window_nodes > 0.0)
                .then(|| (total as f64 / m.window_nodes / m.window_secs * 10.0).round() / 10.0)
        };
        let expects_detection = !detect.is_empty() || m.undetected > 0;
        Self {
            scenario: scenario.to_owned(),
            engine: w.config().engine.to_string(),
            nodes,
            seed,
            virtual_secs: secs(w.now),
            wall_secs: (wall_secs * 1000.0).round() / 1000.0,
            events: m.events,
            join_converged_secs: m.join_converged.map(secs),
            detect_first_secs: detect.first().map(|&d| secs(d)),
            detect_all_secs: if expects_detection && m.undetected == 0 {
                detect.last().map(|&d| secs(d))
            } else {
                None
            },
            undetected: m.undetected,
            false_downs: w.checkers.false_downs.count,
            transition_downs: w.checkers.false_downs.transitions,
            delta_p50_secs: quantile(&deltas, 0.5),
            delta_p99_secs: quantile(&deltas, 0.99),
            delta_coverage: m.delta_coverage.map(|c| (c * 10_000.0).round() / 10_000.0),
            heal_converged_secs: m.heal_converged.map(secs),
            split_detected_secs: m.split_detected.map(secs),
            bytes_per_node_per_sec: per_node_sec(m.window_bytes),
            msgs_per_node_per_sec: per_node_sec(m.window_msgs),
            hlc_drift_rejections: m.drift_rejections,
            you_are_down_received: m.lifeguard.you_are_down_received,
            stray_you_are_down_dropped: m.lifeguard.stray_you_are_down_dropped,
            downs_deferred: m.lifeguard.downs_deferred,
            downs_adopted: m.lifeguard.downs_adopted,
            final_checks: m.lifeguard.final_checks,
            hlc_drift_rejections_from_jumper: m.drift_rejections_by_jumper,
            invariant_violations: w.checks.count,
            converged_at_end: m.converged_at_end,
            live_nodes_at_end: m.final_live,
            raft_clusters_formed: w.checkers.cluster.formed(),
            leader_changes: w.checkers.leaders.terms(),
            voters_final: m.voters_final,
            voter_recovery_secs: m.voter_recovery.map(secs),
            meta_ops: m.meta_ops,
            meta_acked_writes: m.meta_acked_writes,
            meta_linearizable: m.meta_linearizable,
            meta_checked_writes: m.meta_checked.writes,
            meta_checked_reads: m.meta_checked.reads,
            meta_checked_cas: m.meta_checked.cas,
            placement_versions: m.placement_versions.len(),
            placement_max_over_mean: m.placement_tables.last().and_then(|t| ratio(t, true)),
            placement_replica_max_over_mean: m
                .placement_tables
                .last()
                .and_then(|t| ratio(t, false)),
            placement_moved_fraction: m
                .placement_tables
                .windows(2)
                .map(|w| {
                    let slots = f64::from(w[1].partition_count * w[1].replication_factor);
                    w[1].changed_slots(&w[0]) as f64 / slots
                })
                .reduce(f64::max)
                .map(|f| (f * 10_000.0).round() / 10_000.0),
            placement_converged_secs: m
                .placement_versions
                .iter()
                .filter_map(|v| v.2.map(|done| done - v.1))
                .max()
                .map(secs),
            placement_unconverged: m
                .placement_versions
                .iter()
                .filter(|v| v.2.is_none())
                .count(),
            placement_dead_cleared_secs: dead_cleared(m),
            pause_secs: m.pause.as_ref().map(|p| secs(p.len)),
            pause_window_secs: m.pause.as_ref().map(|p| secs(p.window)),
            pause_verdict_secs: m.pause.as_ref().map(|p| secs(p.verdict)),
            pause_declared_down: m.pause.as_ref().map(|p| p.declared_down),
            forgeries: (!m.forgeries.is_empty()).then_some(m.forgeries.len()),
            user_events: w.event_figures(),
            queries: w.query_figures(),
            coord_error_p50_at_30s: coord_at(m, 30 * SEC).map(|e| e.0),
            coord_error_p90_at_30s: coord_at(m, 30 * SEC).map(|e| e.1),
            coord_error_p50: m.coord_errors.last().map(|e| round4(e.1)),
            coord_error_p90: m.coord_errors.last().map(|e| round4(e.2)),
            forgeries_took_hold: (!m.forgeries.is_empty())
                .then(|| m.forgeries.iter().filter(|f| f.took_hold).count()),
            forgeries_restored: (!m.forgeries.is_empty())
                .then(|| m.forgeries.iter().filter(|f| f.restored.is_some()).count()),
            forgery_restore_max_secs: restore.last().map(|&n| secs(n)),
            forgery_restore_p50_secs: quantile(&restore, 0.5),
            forgeries_refuted: m.forgeries_refuted,
            pause_back_alive_secs: m.pause.as_ref().and_then(|p| p.back_alive.map(secs)),
            pause_node_declared_down: m.pause.as_ref().map(|p| p.it_declared_down),
            pause_rejoined: m.pause.as_ref().map(|p| p.rejoined),
            pause_dropped: m.pause.as_ref().map(|p| p.dropped),
        }
    }
}

/// The coordinates' error (median, 90th percentile) measured at `t`.
fn coord_at(m: &crate::world::Measured, t: Nanos) -> Option<(f64, f64)> {
    m.coord_errors
        .iter()
        .find(|e| e.0 == t)
        .map(|e| (round4(e.1), round4(e.2)))
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
