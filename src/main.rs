//! The `roster` command.
//!
//! Today it describes the build and points at the simulator; the agent,
//! the client commands and `roster demo` arrive with the QUIC runtime.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "roster",
    version,
    about = "Gossip-based peer-to-peer membership"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a local 5-node cluster with its dashboard.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Demo) => {
            eprintln!(
                "error: `roster demo` needs the QUIC runtime and the agent, which this build \
                 does not have yet.\nTry the simulator instead: \
                 cargo run --release -p roster-sim -- run --scenario crash-one --nodes 200"
            );
            ExitCode::from(2)
        }
        None => {
            println!(
                "roster {}: the membership core and its simulator (roster-sim).",
                env!("CARGO_PKG_VERSION")
            );
            println!("Run `roster --help` for commands.");
            ExitCode::SUCCESS
        }
    }
}
