use super::record::{Proc, Record, SEC, Seen};
use super::run::{Do, RoleView, Runner};
use super::*;

const GOOD: &str = r#"
name = "leader-isolation"
about = "cut the leader off"

[workload]
meta_rate = 10

[[step]]
at = 20
do = "isolate"
node = "leader"
for = 15

[[step]]
at = 40
do = "kill"
node = 2

[[step]]
at = 50
do = "restart"
"#;

fn err(src: &str) -> String {
    Plan::parse(src).unwrap_err().0
}

#[test]
fn a_good_plan_parses_with_its_lines() {
    let p = Plan::parse(GOOD).unwrap();
    assert_eq!(p.steps.len(), 3);
    assert_eq!(p.steps[0].line, 8);
    assert_eq!(p.steps[0].action, Action::Isolate(Target::Leader));
    assert_eq!(p.steps[1].action, Action::Kill(Target::Index(2)));
    assert_eq!(p.steps[2].action, Action::Restart(None));
    assert_eq!(p.workload.meta_keys, 3);
    assert_eq!(p.faults_end(), 50.0);
    assert_eq!(p.duration(), 80.0);
    assert!(p.check_nodes(5).is_ok());
}

#[test]
fn malformed_plans_name_the_line() {
    let unknown = GOOD.replace("do = \"kill\"", "do = \"explode\"");
    let e = err(&unknown);
    assert!(
        e.starts_with("line 14:") && e.contains("unknown step \"explode\""),
        "{e}"
    );
    let back = GOOD.replace("at = 50", "at = 30");
    let e = err(&back);
    assert!(
        e.starts_with("line 19:") && e.contains("time goes back"),
        "{e}"
    );
    let missing = GOOD.replace("at = 40\n", "");
    let e = err(&missing);
    assert!(
        e.starts_with("line 14:") && e.contains("missing field `at`"),
        "{e}"
    );
    let stray = GOOD.replace("node = 2", "node = 2\nloss = 0.5");
    let e = err(&stray);
    assert!(
        e.starts_with("line 14:") && e.contains("`kill` takes no `loss`"),
        "{e}"
    );
    let typo = GOOD.replace("for = 15", "fro = 15");
    let e = err(&typo);
    assert!(
        e.starts_with("line 12:") && e.contains("unknown field `fro`"),
        "{e}"
    );
    let p = Plan::parse(&GOOD.replace("node = 2", "node = 7")).unwrap();
    let e = p.check_nodes(5).unwrap_err().0;
    assert!(
        e.starts_with("line 14:") && e.contains("out of range"),
        "{e}"
    );
    let e = err("name = \"x\"\n[[step]]\nat = 1\ndo = \"isolate\"\nnode = \"boss\"\n");
    assert!(
        e.starts_with("line 2:") && e.contains("unknown node \"boss\""),
        "{e}"
    );
    assert!(err("name = \"x\"\nsettle = [").starts_with("line 2"));
}

#[test]
fn the_runner_resolves_roles_composes_faults_and_lifts_them() {
    let p = Plan::parse(GOOD).unwrap();
    let mut r = Runner::new(p, 5, 1);
    let roles = RoleView {
        up: (0..5).collect(),
        leader: Some(1),
        voters: vec![0, 1, 2],
    };
    assert_eq!(r.next_at(), Some(20.0));
    assert!(r.due(10.0, &roles).is_empty());
    let d = r.due(20.0, &roles);
    let Some(Do::Net(rules)) = d.first() else {
        panic!("{d:?}")
    };
    assert_eq!(rules.blocked.len(), 8);
    assert!(rules.blocked.contains(&(1, 3)) && rules.blocked.contains(&(3, 1)));
    assert!(!rules.blocked.contains(&(2, 3)));
    assert_eq!(r.next_at(), Some(35.0));
    let d = r.due(35.0, &roles);
    assert_eq!(
        d,
        vec![Do::Net(run::NetRules {
            blocked: Default::default(),
            loss: vec![0.0; 5],
            delay: vec![(0, 0); 5],
        })]
    );
    assert_eq!(r.due(40.0, &roles), vec![Do::Kill(2)]);
    assert_eq!(r.due(50.0, &roles), vec![Do::Start(2)]);
    assert_eq!(r.next_at(), None);
    let labels: Vec<&str> = r.bands().iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, ["isolate n1", "kill n2"]);
    assert_eq!(r.bands()[0].to, Some(35.0));
}

#[test]
fn a_leader_step_without_a_leader_is_skipped_and_said() {
    let p = Plan::parse(GOOD).unwrap();
    let mut r = Runner::new(p, 5, 1);
    let roles = RoleView {
        up: (0..5).collect(),
        leader: None,
        voters: vec![0, 1, 2],
    };
    assert!(r.due(20.0, &roles).is_empty());
    assert_eq!(r.skipped.len(), 1);
    assert!(r.skipped[0].contains("line 8"));
}

fn record(n: usize) -> Record {
    Record {
        world: "test".into(),
        plan: "p".into(),
        names: (0..n).map(|i| format!("n{i}")).collect(),
        faults_end: 40 * SEC,
        end: 100 * SEC,
        ..Default::default()
    }
}

fn all_alive(r: &mut Record, t: u64) {
    let n = r.names.len();
    for o in 0..n {
        for s in (0..n).filter(|&s| s != o) {
            r.views.push((t, o, s, Some(Seen::Alive)));
        }
    }
}

#[test]
fn the_report_judges_detection_convergence_and_false_downs() {
    let mut r = record(3);
    all_alive(&mut r, SEC);
    // n2 killed at 20 s, held Down by n0 at 23 s and n1 at 25 s.
    r.procs.push((20 * SEC, 2, Proc::Down));
    r.views.push((23 * SEC, 0, 2, Some(Seen::Down)));
    r.views.push((25 * SEC, 1, 2, Some(Seen::Down)));
    let rep = r.report();
    assert_eq!(rep.detect_first_secs, vec![3.0]);
    assert_eq!(rep.detect_all_secs, vec![5.0]);
    assert!(
        rep.converged && rep.convergence_secs == Some(0.0),
        "{rep:?}"
    );
    assert_eq!((rep.false_downs, rep.verdict.as_str()), (0, "pass"));
    // A Down of a running node long after any change is false.
    let mut bad = r.clone();
    bad.views.push((90 * SEC, 0, 1, Some(Seen::Down)));
    let rep = bad.report();
    assert_eq!(rep.false_downs, 1);
    assert!(!rep.converged);
    assert_eq!((rep.verdict.as_str(), rep.exit_code()), ("invariant", 2));
    // Not when a block between them is in force: that Down is the fault's.
    let mut cut = bad.clone();
    cut.nets.push((
        10 * SEC,
        run::NetRules {
            blocked: [(0, 1)].into_iter().collect(),
            ..Default::default()
        },
    ));
    assert_eq!(cut.report().false_downs, 0);
    // An observer that never sees the kill: undetected, a liveness failure.
    let mut slow = record(3);
    all_alive(&mut slow, SEC);
    slow.procs.push((20 * SEC, 2, Proc::Down));
    slow.views.push((23 * SEC, 0, 2, Some(Seen::Down)));
    let rep = slow.report();
    assert_eq!((rep.undetected, rep.verdict.as_str()), (1, "liveness"));
    assert_eq!(rep.exit_code(), 3);
}

#[test]
fn the_timeline_draws_every_lane_and_band() {
    let mut r = record(3);
    all_alive(&mut r, SEC);
    r.procs.push((20 * SEC, 2, Proc::Down));
    r.views.push((23 * SEC, 0, 2, Some(Seen::Down)));
    r.views.push((23 * SEC, 1, 2, Some(Seen::Down)));
    r.bands.push(run::Band {
        from: 20.0,
        to: None,
        label: "kill n2".into(),
        nodes: vec![2],
    });
    r.leaders.push((2 * SEC, Some(0)));
    let svg = timeline::svg(&r, "t");
    assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    assert!(svg.contains("kill n2") && svg.contains("leader n0"));
    assert!(svg.contains("#e53935"), "n2 is drawn Down");
}
