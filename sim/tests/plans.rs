//! The shipped fault plans (`plans/*.toml`) in the simulator: each passes
//! every checker on a few seeds, the stale-read canary is caught under
//! leader isolation, and a malformed plan is refused before anything runs,
//! naming its line.

use roster::node::EngineKind;
use roster::plan::Plan;
use roster_sim::plan::{PlanSpec, run_plan};
use roster_sim::plant::Plant;

fn plans() -> Vec<(String, Plan)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../plans");
    let mut out: Vec<(String, Plan)> = std::fs::read_dir(dir)
        .expect("plans/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            let src = std::fs::read_to_string(&p).unwrap();
            let plan = Plan::parse(&src).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), plan)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn spec(plan: &Plan, seed: u64, plant: Option<Plant>) -> PlanSpec {
    PlanSpec {
        plan: plan.clone(),
        nodes: 5,
        seed,
        engine: EngineKind::Foca,
        plant,
    }
}

#[test]
fn every_shipped_plan_passes_in_the_simulator() {
    let plans = plans();
    assert!(plans.len() >= 4, "at least four shipped plans");
    for (path, plan) in &plans {
        for seed in 1..=3 {
            let out = run_plan(&spec(plan, seed, None)).unwrap();
            let r = &out.report;
            assert_eq!(
                r.verdict, "pass",
                "{path} seed {seed}: {:?} {:?}",
                r.violations, r.liveness
            );
            assert!(
                r.converged && r.false_downs == 0,
                "{path} seed {seed}: {r:?}"
            );
            if plan.workload.meta_rate > 0.0 {
                assert_eq!(r.linearizable, Some(true), "{path} seed {seed}");
                assert!(
                    r.checked.reads > 20 && r.checked.writes > 20,
                    "{path}: {r:?}"
                );
            }
            assert_eq!(r.state_converged, Some(true), "{path} seed {seed}");
        }
    }
}

#[test]
fn a_plan_run_is_deterministic() {
    let (_, plan) = plans()
        .into_iter()
        .find(|p| p.1.name == "kill-leader")
        .unwrap();
    let a = run_plan(&spec(&plan, 7, None)).unwrap().report;
    let b = run_plan(&spec(&plan, 7, None)).unwrap().report;
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_eq!(a.kills, 1);
    assert_eq!(a.detect_all_secs.len(), 1, "{a:?}");
}

#[test]
fn stale_reads_are_caught_under_leader_isolation() {
    let (_, plan) = plans()
        .into_iter()
        .find(|p| p.1.name == "leader-isolation")
        .unwrap();
    for seed in 1..=3 {
        let clean = run_plan(&spec(&plan, seed, None)).unwrap().report;
        assert_eq!(clean.linearizable, Some(true), "seed {seed}");
        let planted = run_plan(&spec(&plan, seed, Some(Plant::StaleReads)))
            .unwrap()
            .report;
        assert_eq!(planted.linearizable, Some(false), "seed {seed}");
        assert_eq!(
            (planted.verdict.as_str(), planted.exit_code()),
            ("invariant", 2)
        );
    }
}

#[test]
fn a_malformed_plan_names_its_line_before_anything_runs() {
    let exe = env!("CARGO_BIN_EXE_roster-sim");
    let dir = std::env::temp_dir().join(format!("roster-plan-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "name = \"x\"\n\n[[step]]\nat = 5\ndo = \"nuke\"\n",
            "line 3:",
            "unknown step",
        ),
        (
            "name = \"x\"\n[[step]]\nat = 5\ndo = \"heal\"\n[[step]]\nat = 2\ndo = \"heal\"\n",
            "line 5:",
            "time goes back",
        ),
        (
            "name = \"x\"\n[[step]]\nat = 5\ndo = \"kill\"\nnode = 9\n",
            "line 2:",
            "out of range",
        ),
        (
            "name = \"x\"\n[[step]]\ndo = \"heal\"\n",
            "line 2:",
            "missing field `at`",
        ),
    ];
    for (i, (src, line, what)) in cases.iter().enumerate() {
        let f = dir.join(format!("bad{i}.toml"));
        std::fs::write(&f, src).unwrap();
        let out = std::process::Command::new(exe)
            .args(["plan", f.to_str().unwrap(), "--nodes", "5"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(
            out.stdout.is_empty(),
            "nothing ran: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(err.lines().count(), 1, "one error: {err}");
        assert!(err.contains(line) && err.contains(what), "case {i}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
