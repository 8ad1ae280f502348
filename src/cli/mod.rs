//! The `roster` command line: `agent`, `cert`, `demo` and the client
//! commands (`members`, `status`, `state`, `meta`, `voters`).

pub mod agent;
pub mod cert;
pub mod chaos_run;
pub mod client;
pub mod cluster;
pub mod demo;
pub mod events;
pub mod handlers;
pub mod members;
pub mod monitor;
pub mod resident;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Gossip-based peer-to-peer membership.
#[derive(Debug, Parser)]
#[command(name = "roster", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a node.
    Agent(agent::AgentArgs),
    /// Create a cluster CA or issue node certificates.
    Cert {
        /// Which.
        #[command(subcommand)]
        cmd: CertCmd,
    },
    /// Run a local 5-node cluster with its dashboard.
    Demo,
    /// A local cluster for development and failover drills.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        cmd: cluster::ClusterCmd,
    },
    /// Fault injection on an agent (drop, delay, blocks; off by default).
    Chaos {
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        cmd: client::ChaosCmd,
    },
    /// Make the agent leave the cluster gracefully (it then exits).
    Leave(client::ClientArgs),
    /// List the members an agent knows, like `serf members` (filtered by
    /// state, tag and name).
    Members(members::MembersArgs),
    /// Stream the agent's membership events as they happen, like `serf
    /// monitor` (until Ctrl-C).
    Monitor(monitor::MonitorArgs),
    /// Join a running agent to more members, like `serf join`.
    Join {
        /// Members to join through: `HOST:PORT`, a DNS name resolving to
        /// every address it has.
        #[arg(required = true)]
        addrs: Vec<String>,
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Send a user event to every live member, like `serf event`: each
    /// gets it once, in this agent's order; it shows in `roster monitor`
    /// and runs the agents' `--event-handler` scripts.
    Event {
        /// The event's name (1 to 128 bytes, no control characters).
        name: String,
        /// The payload (at most the agents' `max_event_bytes`, 512 by
        /// default); `-` reads it from standard input.
        payload: Option<String>,
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Ask the members a question and gather their answers, like `serf
    /// query` (agents answer with their `--query-handler`).
    Query(events::QueryArgs),
    /// The estimated round trip between two members from their network
    /// coordinates, like `serf rtt` (agents run with `--coordinates`).
    Rtt {
        /// A member.
        a: String,
        /// Another member (default: the agent's own node).
        b: Option<String>,
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Set or remove the agent's tags at runtime, like `serf tags`.
    Tags {
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        cmd: client::TagsCmd,
    },
    /// Show an agent's view of itself.
    Status(client::ClientArgs),
    /// Read or write an agent's state.
    State {
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        cmd: client::StateCmd,
    },
    /// Read or write the cluster metadata (replicated by the Raft voters).
    Meta {
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do.
        #[command(subcommand)]
        cmd: client::MetaCmd,
    },
    /// Show the metadata voters, the leader, the term and the commit index;
    /// `voters remove NAME` removes a dead voter by hand.
    Voters {
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
        /// What to do (default: show).
        #[command(subcommand)]
        cmd: Option<client::VotersCmd>,
    },
    /// Turn a Down member into Left on every node, like `serf force-leave`:
    /// it is no longer tried, and is reaped after the agent's --reap-after.
    ForceLeave {
        /// The member's name.
        name: String,
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Print a shell completion script (`roster completions bash >
    /// /etc/bash_completion.d/roster`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff: `roster man > roster.1; man ./roster.1`).
    Man,
    /// Show the partition placement: per-node counts, or one key's owners.
    Partitions {
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
        /// Where this key lives.
        #[arg(long)]
        key: Option<String>,
    },
}

/// `roster cert` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Create a cluster CA (`ca.crt`, `ca.key`) in a directory.
    Ca {
        /// Directory to write into.
        #[arg(long)]
        dir: PathBuf,
        /// The CA's name.
        #[arg(long, default_value = "roster cluster CA")]
        name: String,
        /// Days the CA is valid (ten years by default).
        #[arg(long, default_value_t = roster::runtime::tls::CA_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// Issue a node certificate whose subject is the node's NodeId.
    Node {
        /// The NodeId.
        #[arg(long)]
        name: String,
        /// Directory holding the CA.
        #[arg(long)]
        ca: PathBuf,
        /// Directory to write `ca.crt`, `node.crt`, `node.key` into.
        #[arg(long)]
        out: PathBuf,
        /// An address or DNS name the node's HTTPS API is reached by
        /// (repeatable), so that `curl` and browsers checking the host name
        /// accept it; roster's own clients do not need it.
        #[arg(long = "san", value_delimiter = ',')]
        names: Vec<String>,
        /// Days the certificate is valid (one year by default). Replace it
        /// before then: write the new files and send the agent SIGHUP.
        #[arg(long, default_value_t = roster::runtime::tls::NODE_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// Issue an operator's client certificate for the HTTPS API (`roster
    /// agent --http-tls`): it authenticates to every node as the operator
    /// token does, and cannot join the cluster as a node.
    Client {
        /// The operator's name (letters, digits, `-`, `_`, `.`; it is what
        /// `roster cert revoke` takes).
        #[arg(long)]
        name: String,
        /// Directory holding the CA.
        #[arg(long)]
        ca: PathBuf,
        /// Directory to write `ca.crt`, `client.crt`, `client.key` into;
        /// give it to client commands with `--cert-dir`.
        #[arg(long)]
        out: PathBuf,
        /// Days the certificate is valid (one year by default).
        #[arg(long, default_value_t = roster::runtime::tls::NODE_DAYS, value_parser = clap::value_parser!(u32).range(1..=36500))]
        days: u32,
    },
    /// Revoke a node's or an operator's certificate cluster-wide (through an
    /// agent): every node refuses that name at the TLS handshake and drops
    /// its connections.
    Revoke {
        /// The NodeId.
        name: String,
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// Lift a revocation.
    Reinstate {
        /// The NodeId.
        name: String,
        /// Connection options.
        #[command(flatten)]
        client: client::ClientArgs,
    },
    /// List revoked NodeIds.
    Revoked(client::ClientArgs),
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is not
/// an error.
fn print_bytes(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Agent(args) => agent::run(args),
        Cmd::Cert { cmd } => cert::run(cmd),
        Cmd::Demo => demo::run(),
        Cmd::Cluster { cmd } => cluster::run(cmd),
        Cmd::Leave(c) => client::leave(&c),
        Cmd::Chaos { client, cmd } => client::chaos(&client, cmd),
        Cmd::Members(c) => members::members(&c),
        Cmd::Status(c) => client::status(&c),
        Cmd::State { client, cmd } => client::state(&client, cmd),
        Cmd::Meta { client, cmd } => client::meta(&client, cmd),
        Cmd::Voters { client, cmd } => match cmd {
            None | Some(client::VotersCmd::Show) => client::voters(&client),
            Some(client::VotersCmd::Remove { name, wait }) => {
                client::voter_remove(&client, &name, wait)
            }
        },
        Cmd::ForceLeave { name, client } => client::force_leave(&client, &name),
        Cmd::Join { addrs, client } => client::join(&client, &addrs),
        Cmd::Monitor(c) => monitor::monitor(&c),
        Cmd::Event {
            name,
            payload,
            client,
        } => events::event(&client, &name, payload.as_deref()),
        Cmd::Rtt { a, b, client } => events::rtt(&client, &a, b.as_deref()),
        Cmd::Query(q) => events::query(&q),
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "roster", &mut out);
            print_bytes(&out)
        }
        Cmd::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            match clap_mangen::Man::new(cmd).render(&mut out) {
                Ok(()) => print_bytes(&out),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Tags { client, cmd } => client::tags(&client, cmd),
        Cmd::Partitions { client, key } => client::partitions(&client, key.as_deref()),
    }
}
