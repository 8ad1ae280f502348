//! Every checker shown to fail: each test plants the bug one checker guards
//! against (see `roster_sim::plant`) in a real run and requires that checker,
//! and no other, to report it, with the virtual time; the same run without
//! the plant passes.

use roster_sim::plant::{PLANT_AT, Plant};
use roster_sim::{Outcome, RunSpec, run};

fn spec(scenario: &str, nodes: usize, seed: u64, plant: Option<Plant>) -> RunSpec {
    RunSpec {
        scenario: scenario.into(),
        nodes,
        seed,
        plant,
        ..RunSpec::default()
    }
}

fn outcome(scenario: &str, nodes: usize, seed: u64, plant: Option<Plant>) -> Outcome {
    run(&spec(scenario, nodes, seed, plant)).expect("valid spec")
}

/// Runs `scenario` with and without `plant`: without, no violation; with,
/// violations that all contain `expect`, stamped at or after the plant's
/// arming time.
fn canary(plant: Plant, scenario: &str, nodes: usize, expect: &str) {
    let seed = 1;
    let clean = outcome(scenario, nodes, seed, None);
    assert!(
        clean.violations.is_empty() && clean.liveness_failed.is_none(),
        "{scenario} seed {seed} fails without a plant: {:?} {:?}",
        clean.violations,
        clean.liveness_failed
    );
    let planted = outcome(scenario, nodes, seed, Some(plant));
    let r = &planted.report;
    assert!(
        r.invariant_violations >= 1 && !planted.violations.is_empty(),
        "{plant:?} planted in {scenario} seed {seed}: no checker fired"
    );
    for v in &planted.violations {
        println!("{plant:?} in {scenario} seed {}: {v}", r.seed);
        assert!(
            v.contains(expect),
            "{plant:?}: another checker fired, or this one misnamed it: {v}"
        );
        let t: f64 = v
            .strip_prefix("t=")
            .and_then(|v| v.split_once('s'))
            .and_then(|(t, _)| t.parse().ok())
            .unwrap_or_else(|| panic!("violation without its time: {v}"));
        if !plant.in_world() || plant == Plant::StaleGeneration {
            assert!(
                t >= PLANT_AT as f64 / 1e9,
                "{plant:?} reported at {t} s, before it was planted: {v}"
            );
        }
    }
}

#[test]
fn hlc_going_back_is_caught() {
    canary(Plant::HlcBack, "steady", 5, "hlc went back");
}

#[test]
fn a_lower_generation_is_caught() {
    canary(Plant::StaleGeneration, "steady", 5, "went back");
}

#[test]
fn a_member_seen_at_an_older_generation_is_caught() {
    canary(Plant::GenerationBack, "steady", 5, "saw generation of");
}

#[test]
fn an_unknown_member_is_caught() {
    canary(
        Plant::UnknownMember,
        "steady",
        5,
        "saw an unknown member intruder",
    );
}

#[test]
fn a_second_metadata_cluster_is_caught() {
    canary(
        Plant::SecondCluster,
        "steady",
        5,
        "a second metadata cluster",
    );
}

#[test]
fn two_leaders_in_a_term_are_caught() {
    canary(Plant::SecondLeader, "steady", 5, "two leaders in term");
}

#[test]
fn diverging_applied_entries_are_caught() {
    canary(
        Plant::DivergentApply,
        "meta-linearizable",
        10,
        "applied key",
    );
}

#[test]
fn a_write_stamped_before_what_it_saw_is_caught() {
    canary(Plant::CausalityBack, "delta", 10, "causality:");
}

#[test]
fn a_refused_write_is_caught() {
    canary(Plant::RefusedWrite, "delta", 10, "write refused");
}

#[test]
fn a_lost_acknowledged_write_is_caught() {
    canary(
        Plant::LostWrite,
        "meta-linearizable",
        10,
        "is not what was applied",
    );
}

#[test]
fn an_acknowledged_write_no_voter_holds_is_caught() {
    let planted = outcome("meta-linearizable", 10, 1, Some(Plant::UnappliedWrite));
    let v = &planted.violations;
    assert!(
        v.iter()
            .any(|v| v.contains("is not what was applied: None"))
            && v.iter().any(|v| v.contains("applied only")),
        "an acknowledgement at an index nobody applied: {v:?}"
    );
}

#[test]
fn stale_reads_recorded_as_linearizable_are_caught() {
    canary(
        Plant::StaleReads,
        "meta-linearizable",
        10,
        "not linearizable",
    );
    let r = outcome("meta-linearizable", 10, 1, Some(Plant::StaleReads)).report;
    assert_eq!(r.meta_linearizable, Some(false));
    assert!(r.meta_checked_reads > 100, "{} reads", r.meta_checked_reads);
}

#[test]
fn a_partition_that_never_heals_is_caught() {
    canary(Plant::NoHeal, "crash-one", 8, "did not converge");
}

#[test]
fn a_member_held_suspect_is_caught() {
    canary(Plant::HeldSuspect, "crash-one", 8, "Suspect, which runs as");
}

#[test]
fn a_member_listed_at_an_old_identity_is_caught() {
    canary(Plant::StaleIdentity, "crash-one", 8, "Alive, which runs as");
}

#[test]
fn diverging_state_is_caught() {
    canary(Plant::DivergentState, "crash-one", 8, "holds other state");
}

#[test]
fn a_false_down_is_counted() {
    let clean = outcome("steady", 5, 1, None).report;
    let planted = outcome("steady", 5, 1, Some(Plant::FalseDown)).report;
    assert_eq!((clean.false_downs, planted.false_downs), (0, 1));
}

#[test]
fn an_undelivered_delta_is_caught() {
    let clean = outcome("delta", 10, 1, None);
    assert_eq!(clean.report.delta_coverage, Some(1.0));
    assert!(clean.liveness_failed.is_none());
    let planted = outcome("delta", 10, 1, Some(Plant::LostDelta));
    let why = planted.liveness_failed.expect("the coverage check fails");
    assert!(why.contains("delta coverage"), "{why}");
    assert!(planted.violations.is_empty(), "{:?}", planted.violations);
}

#[test]
fn a_user_event_delivered_twice_is_caught() {
    canary(Plant::DuplicateEvent, "events", 10, "twice");
}

#[test]
fn an_answer_from_a_member_a_query_did_not_select_is_caught() {
    canary(Plant::WrongAnswer, "queries", 10, "did not select it");
}
