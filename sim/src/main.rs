//! `roster-sim`: run simulator scenarios from the command line.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// The simulator allocates and frees millions of small messages and member
/// lists per virtual minute; mimalloc does that faster than the system
/// allocator (see the README's simulator figures). Without the `mimalloc`
/// feature the system allocator is used, which heap profilers can follow.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use roster::node::EngineKind;
use roster_sim::plan::PlanSpec;
use roster_sim::{RunSpec, run, scenario::SCENARIOS};

/// Exit code when an invariant was violated.
const EXIT_INVARIANT: u8 = 2;
/// Exit code when the scenario's liveness check failed.
const EXIT_LIVENESS: u8 = 3;

#[derive(Parser)]
#[command(
    name = "roster-sim",
    version,
    about = "Deterministic simulator for roster clusters"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Name the scenarios.
    List,
    /// Run one scenario.
    Run {
        /// Scenario name (see `list`).
        #[arg(long)]
        scenario: String,
        /// Number of nodes.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Seed; the same seed gives the same run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[command(flatten)]
        knobs: Knobs,
        /// Print the report as one JSON object on the last line.
        #[arg(long)]
        json: bool,
        /// Draw detection latencies, delta spread and bytes per node per
        /// second into this SVG file.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
    },
    /// Run a fault plan (a TOML file; see docs/plans.md): its steps, its
    /// clients, then the same judgement `roster cluster chaos run` gives
    /// real agents. Exit code 2 when an invariant broke, 3 when a liveness
    /// check failed.
    Plan {
        /// The plan file.
        file: std::path::PathBuf,
        /// Number of nodes.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Seed; the same seed gives the same run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The SWIM engine every node runs: `foca` or `native`.
        #[arg(long, default_value = "foca")]
        engine: EngineKind,
        /// Plant a bug to see the checker guarding against it fail.
        #[arg(long, value_enum)]
        plant: Option<roster_sim::plant::Plant>,
        /// Print the report as one JSON object on the last line.
        #[arg(long)]
        json: bool,
        /// Draw the run's timeline into this SVG file.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
    },
    /// Run one scenario (or a fault plan) over many seeds: every failing
    /// seed with the command that replays it, then median, p99 and max of
    /// each figure.
    Sweep {
        /// Scenario name (see `list`).
        #[arg(long, required_unless_present = "plan", conflicts_with = "plan")]
        scenario: Option<String>,
        /// A fault plan file to sweep instead of a scenario (it takes
        /// --nodes, --seeds, --jobs, --engine, --plant and --json only).
        #[arg(long)]
        plan: Option<std::path::PathBuf>,
        /// Number of nodes.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Seeds, as `A..B` (inclusive).
        #[arg(long, default_value = "1..20")]
        seeds: String,
        /// Runs in parallel (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        #[command(flatten)]
        knobs: Knobs,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Run one scenario over the same seeds with each SWIM engine (foca,
    /// then native, each in its own process) and print one table: detection,
    /// false Downs, convergence, traffic, wall time and peak memory.
    Compare {
        /// Scenario name (see `list`).
        #[arg(long)]
        scenario: String,
        /// Number of nodes.
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        /// Seeds, as `A..B` (inclusive).
        #[arg(long, default_value = "1..10")]
        seeds: String,
        /// Runs in parallel within each engine's sweep (default: the
        /// machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        #[command(flatten)]
        knobs: Knobs,
        /// Print both summaries as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// What `run` and `sweep` both take besides the scenario, nodes and seeds.
#[derive(clap::Args, Clone)]
struct Knobs {
    /// Virtual duration in seconds (default: the scenario's).
    #[arg(long)]
    duration: Option<f64>,
    /// Datagram loss probability for `loss` (and extra loss for `flaky-node`).
    #[arg(long)]
    loss: Option<f64>,
    /// Turn roster's Lifeguard layer off (plain foca SWIM).
    #[arg(long)]
    no_lifeguard: bool,
    /// Also crash one random healthy node at this many seconds: any
    /// scenario then reports `detect_all_secs` (over the observers the
    /// network model does not impair at that moment).
    #[arg(long)]
    crash_at: Option<f64>,
    /// Lifeguard: highest local health score at which a node still reaches
    /// Down verdicts of its own (`Config::judge_max_health`).
    #[arg(long)]
    judge_max_health: Option<u8>,
    /// Native engine: the shortest suspicion window, in probe periods per
    /// decade of members (`Config::suspicion_min_mult`).
    #[arg(long)]
    suspicion_min_mult: Option<f64>,
    /// Native engine: independent confirmations that bring a suspicion down
    /// to its shortest window (`Config::suspicion_confirmations`).
    #[arg(long)]
    suspicion_confirmations: Option<u8>,
    /// How long the `pause` scenario freezes its node, in seconds (default
    /// 15).
    #[arg(long)]
    pause: Option<f64>,
    /// The SWIM engine every node runs: `foca` or `native`.
    #[arg(long, default_value = "foca")]
    engine: EngineKind,
    /// Plant a bug to see the checker guarding against it fail (a canary;
    /// see the simulator's `plant` module).
    #[arg(long, value_enum)]
    plant: Option<roster_sim::plant::Plant>,
}

impl Knobs {
    /// The spec for one seed; an error names the bad flag.
    fn spec(&self, scenario: &str, nodes: usize, seed: u64) -> Result<RunSpec, String> {
        Ok(RunSpec {
            scenario: scenario.to_owned(),
            nodes,
            seed,
            duration: secs("--duration", self.duration)?,
            loss: self.loss,
            no_lifeguard: self.no_lifeguard,
            crash_at: secs("--crash-at", self.crash_at)?,
            judge_max_health: self.judge_max_health,
            suspicion_min_mult: self.suspicion_min_mult,
            suspicion_confirmations: self.suspicion_confirmations,
            pause: secs("--pause", self.pause)?,
            engine: self.engine,
            plant: self.plant,
        })
    }

    /// The flags that replay a run, after `--seed S`.
    fn replay_flags(&self) -> String {
        let mut extra = String::new();
        if let Some(d) = self.duration {
            extra += &format!(" --duration {d}");
        }
        if let Some(l) = self.loss {
            extra += &format!(" --loss {l}");
        }
        if self.no_lifeguard {
            extra += " --no-lifeguard";
        }
        if let Some(t) = self.crash_at {
            extra += &format!(" --crash-at {t}");
        }
        if let Some(p) = self.pause {
            extra += &format!(" --pause {p}");
        }
        if let Some(j) = self.judge_max_health {
            extra += &format!(" --judge-max-health {j}");
        }
        if let Some(m) = self.suspicion_min_mult {
            extra += &format!(" --suspicion-min-mult {m}");
        }
        if let Some(k) = self.suspicion_confirmations {
            extra += &format!(" --suspicion-confirmations {k}");
        }
        if self.engine != EngineKind::Foca {
            extra += &format!(" --engine {}", self.engine);
        }
        if let Some(p) = self.plant {
            use clap::ValueEnum;
            if let Some(v) = p.to_possible_value() {
                extra += &format!(" --plant {}", v.get_name());
            }
        }
        extra
    }
}

/// This process's peak resident memory in KiB (Linux; `None` elsewhere).
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `compare`: one `sweep --json` child process per engine, then one table.
fn compare(
    scenario: &str,
    nodes: usize,
    seeds: &str,
    jobs: Option<usize>,
    knobs: &Knobs,
    json: bool,
) -> ExitCode {
    if parse_seeds(seeds).is_none() {
        eprintln!("error: --seeds must be A..B with A <= B");
        return ExitCode::from(64);
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find this program: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sums = Vec::new();
    for engine in [EngineKind::Foca, EngineKind::Native] {
        let k = Knobs {
            engine,
            ..knobs.clone()
        };
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["sweep", "--scenario", scenario, "--json"])
            .args(["--nodes", &nodes.to_string(), "--seeds", seeds])
            .args(k.replay_flags().split_whitespace());
        if let Some(j) = jobs {
            cmd.args(["--jobs", &j.to_string()]);
        }
        let out = match cmd.stderr(std::process::Stdio::inherit()).output() {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: cannot run the {engine} sweep: {e}");
                return ExitCode::FAILURE;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        for l in text.lines().filter(|l| l.starts_with("FAIL")) {
            println!("{engine}: {l}");
        }
        let Some(v) = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        else {
            eprintln!("error: the {engine} sweep printed no summary");
            return ExitCode::FAILURE;
        };
        sums.push((engine, v));
    }
    if json {
        let all: serde_json::Map<String, serde_json::Value> = sums
            .iter()
            .map(|(e, v)| (e.to_string(), v.clone()))
            .collect();
        println!("{}", serde_json::Value::Object(all));
    } else {
        print_comparison(scenario, nodes, seeds, &sums);
    }
    ExitCode::SUCCESS
}

/// The `compare` table: one row per figure, one column per engine, then
/// native / foca.
fn print_comparison(
    scenario: &str,
    nodes: usize,
    seeds: &str,
    sums: &[(EngineKind, serde_json::Value)],
) {
    let fig = |v: &serde_json::Value, k: &str, q: &str| v["figures"][k][q].as_f64();
    let show = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x}"));
    println!("{scenario}, {nodes} nodes, seeds {seeds}: median (max) over the seeds");
    print!("{:<28}", "figure");
    for (e, _) in sums {
        print!(" {:>22}", e.to_string());
    }
    println!(" {:>14}", "native/foca");
    let rows: [(&str, &str); 7] = [
        ("detect_first_secs", "detect_first_secs"),
        ("detect_all_secs", "detect_all_secs"),
        ("false_downs", "false_downs"),
        ("runs with a false Down", "false_downs"),
        ("bytes_per_node_per_sec", "bytes_per_node_per_sec"),
        ("wall_secs per run", "wall_secs"),
        ("join_converged_secs", "join_converged_secs"),
    ];
    for (label, key) in rows {
        print!("{label:<28}");
        let mut medians = Vec::new();
        for (_, v) in sums {
            let cell = if label.starts_with("runs with") {
                let m = fig(v, key, "nonzero");
                medians.push(m);
                show(m)
            } else {
                let m = fig(v, key, "median");
                medians.push(m);
                format!("{} ({})", show(m), show(fig(v, key, "max")))
            };
            print!(" {cell:>22}");
        }
        println!(" {:>14}", ratio(&medians));
    }
    // Figures only some scenarios report (the pause scenario's): median
    // (min-max).
    for key in [
        "pause_declared_down",
        "pause_back_alive_secs",
        "pause_node_declared_down",
        "pause_rejoined",
    ] {
        if sums.iter().all(|(_, v)| v["figures"].get(key).is_none()) {
            continue;
        }
        print!("{key:<28}");
        let mut medians = Vec::new();
        for (_, v) in sums {
            let m = fig(v, key, "median");
            medians.push(m);
            let range = format!("{}-{}", show(fig(v, key, "min")), show(fig(v, key, "max")));
            print!(" {:>22}", format!("{} ({range})", show(m)));
        }
        println!(" {:>14}", ratio(&medians));
    }
    print!("{:<28}", "failing seeds");
    let mut failing = Vec::new();
    for (_, v) in sums {
        let f = v["failing"].as_array().map(|a| a.len() as f64);
        failing.push(f);
        print!(" {:>22}", show(f));
    }
    println!(" {:>14}", ratio(&failing));
    print!("{:<28}", "peak memory (MB)");
    let mut peaks = Vec::new();
    for (_, v) in sums {
        let p = v["peak_rss_kb"].as_f64().map(|k| (k / 1024.0).round());
        peaks.push(p);
        print!(" {:>22}", show(p));
    }
    println!(" {:>14}", ratio(&peaks));
}

/// `b / a` to three places, when both are known and `a` is not zero.
fn ratio(v: &[Option<f64>]) -> String {
    match v {
        [Some(a), Some(b)] if *a != 0.0 => format!("{:.3}", b / a),
        _ => "-".to_owned(),
    }
}

/// A positive number of seconds, checked.
fn secs(flag: &str, d: Option<f64>) -> Result<Option<Duration>, String> {
    match d {
        Some(d) if d.is_finite() && d > 0.0 => Ok(Some(Duration::from_secs_f64(d))),
        Some(_) => Err(format!("{flag} must be a positive number of seconds")),
        None => Ok(None),
    }
}

/// `A..B` (inclusive) as a range.
fn parse_seeds(s: &str) -> Option<std::ops::RangeInclusive<u64>> {
    let (a, b) = s.split_once("..")?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some(a..=b)
}

/// Median, p99, min and max of every numeric report field over the runs,
/// and in how many runs it was not zero.
fn summarise(reports: &[serde_json::Value]) -> serde_json::Map<String, serde_json::Value> {
    let mut fields: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for r in reports {
        if let Some(o) = r.as_object() {
            for (k, v) in o {
                if k == "seed" {
                    continue;
                }
                if let Some(x) = v
                    .as_f64()
                    .or_else(|| v.as_bool().map(|b| f64::from(u8::from(b))))
                {
                    fields.entry(k.clone()).or_default().push(x);
                }
            }
        }
    }
    let q = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    fields
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            let s = serde_json::json!({
                "runs": v.len(),
                "nonzero": v.iter().filter(|&&x| x != 0.0).count(),
                "min": v[0],
                "median": q(&v, 0.5),
                "p99": q(&v, 0.99),
                "max": v[v.len() - 1],
            });
            (k, s)
        })
        .collect()
}

fn sweep(
    scenario: String,
    nodes: usize,
    seeds: &str,
    jobs: Option<usize>,
    knobs: &Knobs,
    json: bool,
) -> ExitCode {
    let Some(range) = parse_seeds(seeds) else {
        eprintln!("error: --seeds must be A..B with A <= B");
        return ExitCode::from(64);
    };
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let seeds: Vec<u64> = range.collect();
    let base = match knobs.spec(&scenario, nodes, 0) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    let spec = |seed| RunSpec {
        seed,
        ..base.clone()
    };
    // Check the spec once (unknown scenario, bad loss) before the threads.
    if let Err(e) = run(&RunSpec {
        duration: Some(Duration::from_secs(1)),
        crash_at: None,
        ..spec(0)
    }) {
        eprintln!("error: {e}");
        return ExitCode::from(64);
    }
    let results = run_seeds(&seeds, jobs, spec);
    let failing = failing_seeds(&results, &scenario, nodes, &knobs.replay_flags());
    let reports: Vec<serde_json::Value> = results
        .iter()
        .filter_map(|(_, o)| serde_json::to_value(&o.report).ok())
        .collect();
    let summary = summarise(&reports);
    if json {
        println!(
            "{}",
            serde_json::json!({"scenario": scenario, "engine": knobs.engine.to_string(),
                "nodes": nodes, "seeds": seeds.len(), "failing": failing,
                "peak_rss_kb": peak_rss_kb(), "figures": summary})
        );
    } else {
        println!(
            "{scenario}, {nodes} nodes, {} seeds: {} failing",
            seeds.len(),
            failing.len()
        );
        print_summary(&summary);
    }
    if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_LIVENESS)
    }
}

/// Runs `spec(seed)` for every seed on `jobs` threads; the outcomes of the
/// runs that started, by seed.
fn run_seeds(
    seeds: &[u64],
    jobs: usize,
    spec: impl Fn(u64) -> RunSpec + Sync,
) -> Vec<(u64, roster_sim::Outcome)> {
    roster_sim::for_seeds(seeds, jobs, |seed| run(&spec(seed)).ok())
}

/// The seeds whose run broke an invariant or missed its liveness check,
/// each printed with why and the command that replays it.
fn failing_seeds(
    results: &[(u64, roster_sim::Outcome)],
    scenario: &str,
    nodes: usize,
    extra: &str,
) -> Vec<u64> {
    let mut failing = Vec::new();
    for (seed, out) in results {
        let why = if out.report.invariant_violations > 0 {
            Some(format!(
                "invariant: {}",
                out.violations.first().cloned().unwrap_or_default()
            ))
        } else {
            out.liveness_failed
                .clone()
                .map(|l| format!("liveness: {l}"))
        };
        if let Some(why) = why {
            println!(
                "FAIL seed {seed}: {why}\n  replay: roster-sim run --scenario {scenario} --nodes {nodes} --seed {seed}{extra} --json"
            );
            failing.push(*seed);
        }
    }
    failing
}

/// Prints a sweep's figures: median, p99, max and how many runs had them
/// nonzero.
fn print_summary(summary: &serde_json::Map<String, serde_json::Value>) {
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>8}",
        "figure", "median", "p99", "max", "nonzero"
    );
    for (k, v) in summary {
        let f = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN);
        println!(
            "{k:<34} {:>10} {:>10} {:>10} {:>8}",
            f(&v["median"]),
            f(&v["p99"]),
            f(&v["max"]),
            f(&v["nonzero"])
        );
    }
}

/// `roster-sim plan`: one run, its report and optionally its timeline.
fn plan_one(
    file: &std::path::Path,
    nodes: usize,
    seed: u64,
    engine: EngineKind,
    plant: Option<roster_sim::plant::Plant>,
    json: bool,
    plot: Option<&std::path::Path>,
) -> ExitCode {
    let spec = match roster::plan::Plan::from_file(file)
        .map_err(|e| e.to_string())
        .map(|plan| PlanSpec {
            plan,
            nodes,
            seed,
            engine,
            plant,
        }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    let out = match roster_sim::plan::run_plan(&spec) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            return ExitCode::from(64);
        }
    };
    let r = &out.report;
    for v in &r.violations {
        println!("invariant violated: {v}");
    }
    for l in &r.liveness {
        println!("liveness failed: {l}");
    }
    for s in &r.skipped {
        println!("step skipped: {s}");
    }
    if let Some(path) = plot {
        let title = format!("{} · simulator · {nodes} nodes · seed {seed}", r.plan);
        if let Err(e) = std::fs::write(path, roster::plan::timeline::svg(&out.record, &title)) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("timeline: {}", path.display());
    }
    if json {
        println!("{}", serde_json::to_string(r).expect("report serialises"));
    } else {
        println!("{r:#?}");
    }
    ExitCode::from(r.exit_code())
}

/// `roster-sim sweep --plan`: the plan over many seeds.
// Long because it checks the flags, runs the seeds and prints both the
// failing seeds and the summary, as `sweep` does for scenarios.
fn plan_sweep(
    file: &std::path::Path,
    nodes: usize,
    seeds: &str,
    jobs: Option<usize>,
    knobs: &Knobs,
    json: bool,
) -> ExitCode {
    let Some(range) = parse_seeds(seeds) else {
        eprintln!("error: --seeds must be A..B with A <= B");
        return ExitCode::from(64);
    };
    if knobs.duration.is_some()
        || knobs.loss.is_some()
        || knobs.no_lifeguard
        || knobs.crash_at.is_some()
        || knobs.pause.is_some()
        || knobs.judge_max_health.is_some()
        || knobs.suspicion_min_mult.is_some()
        || knobs.suspicion_confirmations.is_some()
    {
        eprintln!(
            "error: --plan takes --nodes, --seeds, --jobs, --engine, --plant and --json only"
        );
        return ExitCode::from(64);
    }
    let spec = match roster::plan::Plan::from_file(file).map_err(|e| e.to_string()) {
        Ok(plan) => PlanSpec {
            plan,
            nodes,
            seed: 0,
            engine: knobs.engine,
            plant: knobs.plant,
        },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(64);
        }
    };
    if let Err(e) = spec.plan.check_nodes(nodes) {
        eprintln!("error: {}: {e}", file.display());
        return ExitCode::from(64);
    }
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let seeds: Vec<u64> = range.collect();
    let results = roster_sim::plan::sweep_plan(&spec, &seeds, jobs);
    let mut failing = Vec::new();
    for (seed, r) in &results {
        if r.verdict != "pass" {
            let why = r
                .violations
                .first()
                .or(r.liveness.first())
                .cloned()
                .unwrap_or_default();
            println!(
                "FAIL seed {seed}: {}: {why}\n  replay: roster-sim plan {} --nodes {nodes} --seed {seed}{} --json",
                r.verdict,
                file.display(),
                knobs.replay_flags()
            );
            failing.push(*seed);
        }
    }
    let reports: Vec<serde_json::Value> = results
        .iter()
        .filter_map(|(_, r)| serde_json::to_value(r).ok())
        .collect();
    let summary = summarise(&reports);
    if json {
        println!(
            "{}",
            serde_json::json!({"plan": spec.plan.name, "engine": knobs.engine.to_string(),
                "nodes": nodes, "seeds": seeds.len(), "failing": failing,
                "figures": summary})
        );
    } else {
        println!(
            "plan {}, {nodes} nodes, {} seeds: {} failing",
            spec.plan.name,
            seeds.len(),
            failing.len()
        );
        print_summary(&summary);
    }
    if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_LIVENESS)
    }
}

// One arm per subcommand.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::List => {
            for s in SCENARIOS {
                println!("{:<15} {:>4}s  {}", s.name, s.default_secs, s.about);
            }
            ExitCode::SUCCESS
        }
        Cmd::Sweep {
            scenario,
            plan: Some(file),
            nodes,
            seeds,
            jobs,
            knobs,
            json,
        } => {
            debug_assert!(scenario.is_none());
            plan_sweep(&file, nodes, &seeds, jobs, &knobs, json)
        }
        Cmd::Sweep {
            scenario,
            plan: None,
            nodes,
            seeds,
            jobs,
            knobs,
            json,
        } => sweep(
            scenario.unwrap_or_default(),
            nodes,
            &seeds,
            jobs,
            &knobs,
            json,
        ),
        Cmd::Plan {
            file,
            nodes,
            seed,
            engine,
            plant,
            json,
            plot,
        } => plan_one(&file, nodes, seed, engine, plant, json, plot.as_deref()),
        Cmd::Compare {
            scenario,
            nodes,
            seeds,
            jobs,
            knobs,
            json,
        } => compare(&scenario, nodes, &seeds, jobs, &knobs, json),
        Cmd::Run {
            scenario,
            nodes,
            seed,
            knobs,
            json,
            plot,
        } => {
            let spec = match knobs.spec(&scenario, nodes, seed) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(64);
                }
            };
            println!("seed: {seed}");
            let out = match run(&spec) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(64);
                }
            };
            for v in &out.violations {
                println!("invariant violated: {v}");
            }
            for f in &out.false_down_detail {
                println!("false down: {f}");
            }
            if let Some(l) = &out.liveness_failed {
                println!("liveness failed: {l}");
            }
            if let Some(path) = &plot {
                if let Err(e) = std::fs::write(path, out.plot.svg()) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("plot: {}", path.display());
            }
            let r = &out.report;
            if json {
                println!("{}", serde_json::to_string(r).expect("report serialises"));
            } else {
                println!("{r:#?}");
            }
            if r.invariant_violations > 0 {
                ExitCode::from(EXIT_INVARIANT)
            } else if out.liveness_failed.is_some() {
                ExitCode::from(EXIT_LIVENESS)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
