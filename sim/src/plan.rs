//! `roster-sim plan FILE`: a fault plan (see [`roster::plan`]) run in the
//! simulator. The nodes start within the first second; the plan's clients
//! run from the workload's start to the end of the fault phase, final
//! linearizable reads of every key follow halfway through the settle time,
//! and the record is judged by [`roster::plan::record::Record::report`],
//! the same judgement a real-agent run gets. The simulator's own checkers
//! run too; what they find is reported among the violations.

use rand::RngExt;
use roster::node::{Config, EngineKind};
use roster::plan::Plan;
use roster::plan::record::{PlanReport, Record};
use roster::plan::run::Runner;

use crate::net::{Nanos, SEC};
use crate::plant::{Plant, Planted};
use crate::world::{Action, World};

/// A plan run to do.
#[derive(Debug, Clone)]
pub struct PlanSpec {
    /// The plan.
    pub plan: Plan,
    /// Nodes.
    pub nodes: usize,
    /// Seed: the same seed gives the same run.
    pub seed: u64,
    /// The SWIM engine.
    pub engine: EngineKind,
    /// A bug to plant (see [`crate::plant`]).
    pub plant: Option<Plant>,
}

/// A finished plan run.
pub struct PlanOutcome {
    /// The judgement.
    pub report: PlanReport,
    /// What it recorded (for `--plot`).
    pub record: Record,
}

fn at(secs: f64) -> Nanos {
    (secs * SEC as f64) as Nanos
}

/// Schedules the plan's clients on `w`.
fn workload(w: &mut World, plan: &Plan) {
    let wl = &plan.workload;
    let end = plan.faults_end();
    let keys = u64::from(wl.meta_keys);
    for (rate, action) in [
        (wl.meta_rate, Action::MetaClient { keys }),
        (wl.state_rate, Action::WriteRandom),
        (wl.event_rate, Action::EventRandom),
    ] {
        if rate <= 0.0 {
            continue;
        }
        let mut t = wl.start;
        while t < end {
            w.at(at(t), action.clone());
            t += 1.0 / rate;
        }
    }
    if wl.meta_rate > 0.0 {
        w.at(at(end + plan.settle / 2.0), Action::MetaFinalReads { keys });
    }
}

/// Runs one plan in the simulator.
pub fn run_plan(spec: &PlanSpec) -> Result<PlanOutcome, String> {
    let plan = &spec.plan;
    plan.check_nodes(spec.nodes).map_err(|e| e.to_string())?;
    let mut config = Config::lan();
    config.engine = spec.engine;
    let end = at(plan.duration());
    let mut w = World::new(spec.nodes, spec.seed, config, end);
    for i in 0..spec.nodes {
        let t = w.rng().random_range(0..SEC);
        w.at(t, Action::Start(i));
    }
    workload(&mut w, plan);
    w.at(at(plan.faults_end()), Action::FaultsEnd);
    w.planted = Planted::new(spec.plant);
    let record = Record {
        world: "sim".into(),
        plan: plan.name.clone(),
        seed: spec.seed,
        names: (0..spec.nodes).map(|i| format!("n{i}")).collect(),
        faults_end: at(plan.faults_end()),
        end,
        ..Default::default()
    };
    w.start_plan(Runner::new(plan.clone(), spec.nodes, spec.seed), record);
    w.run();
    let record = w.finish_plan().ok_or("the plan's record is missing")?;
    Ok(PlanOutcome {
        report: record.report(),
        record,
    })
}

/// Runs `spec` for every seed on `jobs` threads: the reports, by seed.
pub fn sweep_plan(spec: &PlanSpec, seeds: &[u64], jobs: usize) -> Vec<(u64, PlanReport)> {
    crate::for_seeds(seeds, jobs, |seed| {
        let one = PlanSpec {
            seed,
            ..spec.clone()
        };
        run_plan(&one).ok().map(|out| out.report)
    })
}
