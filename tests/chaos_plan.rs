//! A fault plan against five real agents (`roster cluster chaos run`),
//! judged by the same checkers as in the simulator: the shipped
//! leader-isolation plan passes every checker, and the stale-read canary
//! (reads sent stale, recorded as linearizable) is rejected by the
//! linearizability checker under leader isolation.
//!
//! Each run is bounded by the plan (faults until 40 s or less, at most 30 s
//! to settle) and by the command's own 90 s wait for a healthy cluster.
#![allow(clippy::disallowed_methods)]

mod common;
use common::{base_port_for, roster_in as roster, roster_ok, wait_until};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = roster(&self.0, &["cluster", "destroy"]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn report(out: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn healthy(dir: &Path) -> bool {
    let out = roster_ok(dir, &["cluster", "status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["nodes"].as_array().is_some_and(|n| {
        n.len() == 5
            && n.iter()
                .all(|x| x["process"] == "Running" && x["cluster_view"] == "alive")
    })
}

#[test]
fn a_plan_runs_on_five_agents_and_the_stale_read_canary_is_caught() {
    let dir = std::env::temp_dir().join(format!("roster-chaos-plan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let port = base_port_for(5).to_string();
    roster_ok(
        &dir,
        &["cluster", "init", "--nodes", "5", "--base-port", &port],
    );
    roster_ok(&dir, &["cluster", "start", "--detach"]);
    wait_until(Duration::from_secs(30), || healthy(&dir)).expect("5 agents that see each other");

    let plan = concat!(env!("CARGO_MANIFEST_DIR"), "/plans/leader-isolation.toml");
    let svg = dir.join("timeline.svg");
    let out = roster(
        &dir,
        &[
            "cluster",
            "chaos",
            "run",
            plan,
            "--json",
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    let r = report(&out);
    println!("leader-isolation on 5 agents: {r}");
    assert_eq!(out.status.code(), Some(0), "{r}");
    assert_eq!(r["world"], "agents");
    assert_eq!(r["verdict"], "pass");
    assert_eq!(r["linearizable"], true);
    assert_eq!(r["converged"], true);
    assert_eq!(r["false_downs"], 0);
    assert_eq!(r["state_converged"], true);
    assert!(
        r["leader_changes"].as_u64() >= Some(1),
        "a new leader took over: {r}"
    );
    assert!(r["checked"]["reads"].as_u64() > Some(20), "{r}");
    assert!(r["checked"]["writes"].as_u64() > Some(20), "{r}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.starts_with("<svg") && drawn.contains("isolate n"),
        "timeline drawn"
    );

    // Twice the load on two hot keys: a stale read there is all but certain
    // to contradict a newer acknowledged write.
    let canary = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/plans/leader-isolation-hot.toml"
    );
    let out = roster(
        &dir,
        &[
            "cluster",
            "chaos",
            "run",
            canary,
            "--json",
            "--canary",
            "stale-reads",
        ],
    );
    let r = report(&out);
    println!("stale-read canary on 5 agents: {r}");
    assert_eq!(
        r["linearizable"], false,
        "the checker rejects stale reads: {r}"
    );
    assert_eq!(r["verdict"], "invariant");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_malformed_plan_is_refused_before_anything_starts() {
    let dir = std::env::temp_dir().join(format!("roster-chaos-badplan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let port = base_port_for(3).to_string();
    roster_ok(
        &dir,
        &["cluster", "init", "--nodes", "3", "--base-port", &port],
    );
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\n[[step]]\nat = 5\ndo = \"kill\"\nnode = 3\n",
    )
    .unwrap();
    // The cluster is not even started: the plan is refused first.
    let out = roster(&dir, &["cluster", "chaos", "run", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 2:") && err.contains("out of range"),
        "{err}"
    );
}
