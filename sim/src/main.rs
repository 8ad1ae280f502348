//! `roster-sim`: run simulator scenarios from the command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
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
        /// Virtual duration in seconds (default: the scenario's).
        #[arg(long)]
        duration: Option<f64>,
        /// Datagram loss probability for `loss` (and extra loss for `flaky-node`).
        #[arg(long)]
        loss: Option<f64>,
        /// Turn roster's Lifeguard layer off (plain foca SWIM).
        #[arg(long)]
        no_lifeguard: bool,
        /// Print the report as one JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::List => {
            for s in SCENARIOS {
                println!("{:<15} {:>4}s  {}", s.name, s.default_secs, s.about);
            }
            ExitCode::SUCCESS
        }
        Cmd::Run {
            scenario,
            nodes,
            seed,
            duration,
            loss,
            no_lifeguard,
            json,
        } => {
            let duration = match duration {
                Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
                Some(_) => {
                    eprintln!("error: --duration must be a positive number of seconds");
                    return ExitCode::from(64);
                }
                None => None,
            };
            println!("seed: {seed}");
            let spec = RunSpec {
                scenario,
                nodes,
                seed,
                duration,
                loss,
                no_lifeguard,
            };
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
