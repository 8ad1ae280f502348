//! `roster cluster`: a local cluster for development and failover drills.
//!
//! - `init --nodes N [--base-port P] [--dir D]` writes `D/cluster.toml` (node
//!   count, base port, and per node its id, name, gossip and HTTP addresses,
//!   data and TLS dirs and peers), a CA and one certificate per node.
//!   `D` defaults to `.roster/cluster`.
//! - `start [--detach]` supervises one `roster agent` process per node:
//!   restarts a crashed node with backoff and marks it Crashed after
//!   repeated fast crashes. SIGINT or SIGTERM stops every node gracefully.
//!   A port in use is an error before anything starts.
//! - `status` shows each node as Stopped, Running or Crashed beside the
//!   cluster's own view of it; `stop [--node I]`, `restart --node I`,
//!   `destroy`.
//!
//! The supervisor keeps its state in `D/state.json` (rewritten every tick)
//! and takes requests through marker files (`D/node-I.stop`,
//! `D/node-I.restart`), so the commands work from any shell.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use super::client::ChaosCmd;
use roster::node::NodeId;
use roster::runtime::tls::ClusterCa;

/// Default directory of a local cluster.
pub const DEFAULT_DIR: &str = ".roster/cluster";
/// Default first port: gossip of node I is `P + 2I`, its HTTP API `P + 2I + 1`.
pub const DEFAULT_BASE_PORT: u16 = 7400;
/// A node that crashes this many times in a row, each within a minute of its
/// start, is marked Crashed and left alone.
const MAX_FAST_CRASHES: u32 = 5;
/// Supervisor tick.
const TICK: Duration = Duration::from_millis(200);

/// `roster cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Write the cluster's configuration and certificates.
    Init {
        /// Nodes.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// First port (gossip of node I is P+2I, its HTTP API P+2I+1).
        #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
        base_port: u16,
        /// Directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Run and supervise every node (in the foreground unless --detach).
    Start {
        /// Directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Run the supervisor in the background.
        #[arg(long)]
        detach: bool,
    },
    /// Each node's process state beside the cluster's own view.
    Status {
        /// Directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop one node (it leaves gracefully and stays stopped), or the whole
    /// cluster and its supervisor.
    Stop {
        /// Directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Only this node.
        #[arg(long)]
        node: Option<usize>,
    },
    /// Restart one node (also one that was stopped or Crashed).
    Restart {
        /// Directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The node.
        #[arg(long)]
        node: usize,
    },
    /// Fault injection across the cluster: the same rules on every running
    /// node (or on the `--node` ones), or `isolate` to cut one node off.
    Chaos {
        /// Directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Only these nodes (repeatable; default: every running node).
        #[arg(long)]
        node: Vec<usize>,
        /// What to do.
        #[command(subcommand)]
        cmd: ClusterChaosCmd,
    },
    /// Print node I's process id (for `kill -9 $(roster cluster pid 1)`).
    Pid {
        /// Directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// The node.
        node: usize,
    },
    /// Stop everything and remove the directory.
    Destroy {
        /// Directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
    },
}

/// `roster cluster chaos` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterChaosCmd {
    /// The per-node commands (`set`, `heal`, `show`), on each chosen node.
    #[command(flatten)]
    Rules(ChaosCmd),
    /// Run a fault plan (a TOML file; see docs/plans.md) against the
    /// running cluster: its steps through the chaos API and signals, its
    /// clients through the HTTP API, every node's view polled; then heal,
    /// wait for convergence and judge the run as `roster-sim plan` does.
    /// Exit code 0 pass, 2 an invariant violated, 3 a liveness check failed.
    Run {
        /// The plan file.
        file: PathBuf,
        /// Seed of the plan's random choices (which node is "random", the
        /// sides of a partition, the clients' choices).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the report as one JSON object on the last line.
        #[arg(long)]
        json: bool,
        /// Draw the run's timeline into this SVG file.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Also write the JSON report to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Canary: the clients read with `stale=true` but record the reads
        /// as linearizable, so the checker must reject the history.
        #[arg(long, value_enum)]
        canary: Option<Canary>,
        /// Leave nodes the plan killed down after the run (by default they
        /// are started again).
        #[arg(long)]
        leave_killed: bool,
    },
    /// Cut node I off from every other node (replacing the rules in force on
    /// the nodes it touches).
    Isolate {
        /// The node to cut off.
        node: usize,
        /// `both`: I and every other node block each other; `in`: I hears
        /// nothing (it can still send); `out`: nothing I sends arrives.
        #[arg(long, value_enum, default_value_t = Direction::Both)]
        direction: Direction,
        /// Lift the rules after this many seconds.
        #[arg(long = "for")]
        for_secs: Option<f64>,
    },
}

/// A bug `roster cluster chaos run` plants in its own clients, to show the
/// checker catches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Canary {
    /// Reads go out stale but are recorded as linearizable.
    StaleReads,
}

/// Which way `roster cluster chaos isolate` cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    /// Both ways.
    Both,
    /// Inbound to the node only.
    In,
    /// Outbound from the node only.
    Out,
}

/// One node of `cluster.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Index.
    pub index: usize,
    /// NodeId.
    pub id: String,
    /// Human name (same as the id).
    pub name: String,
    /// QUIC (gossip) address.
    pub gossip: SocketAddr,
    /// HTTP API address.
    pub http: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// TLS directory.
    pub tls_dir: PathBuf,
    /// Gossip addresses it joins through.
    pub peers: Vec<SocketAddr>,
}

/// `cluster.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Node count.
    pub nodes: usize,
    /// First port.
    pub base_port: u16,
    /// The nodes.
    pub node: Vec<NodeSpec>,
}

/// A node's process state, as the supervisor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcState {
    /// Not running (never started, or stopped on request).
    Stopped,
    /// Running.
    Running,
    /// Crashed repeatedly; no longer restarted.
    Crashed,
}

/// `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SupervisorState {
    /// The supervisor's pid.
    pub pid: u32,
    /// Per node: state and pid.
    pub nodes: BTreeMap<usize, (ProcState, Option<u32>)>,
}

fn file_path(dir: &Path) -> PathBuf {
    dir.join("cluster.toml")
}

/// Reads `cluster.toml`.
pub fn load(dir: &Path) -> Result<ClusterFile, String> {
    let p = file_path(dir);
    let text = std::fs::read_to_string(&p).map_err(|e| {
        format!(
            "{}: {e} (create a cluster with `roster cluster init`)",
            p.display()
        )
    })?;
    toml::from_str(&text).map_err(|e| format!("{}: {}", p.display(), e.message()))
}

/// Writes the configuration and certificates of an `n`-node cluster in
/// `dir`. With `base_port` `None`, free ports are picked.
pub fn init(dir: &Path, n: usize, base_port: Option<u16>) -> Result<ClusterFile, String> {
    if n == 0 || n > 100 {
        return Err("--nodes must be between 1 and 100".into());
    }
    if file_path(dir).exists() {
        return Err(format!(
            "{} already exists; `roster cluster destroy --dir {}` first",
            file_path(dir).display(),
            dir.display()
        ));
    }
    let addrs = (0..n)
        .map(|i| node_ports(i, n, base_port))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The directory holds the CA key and the token: keep it out of any
    // repository it sits in.
    std::fs::write(
        dir.join(".gitignore"),
        "# roster cluster state: the CA private key, node keys, the operator token.\n*\n",
    )
    .map_err(|e| format!("{}: {e}", dir.join(".gitignore").display()))?;
    let ca = ClusterCa::generate("roster local cluster").map_err(|e| e.to_string())?;
    ca.save(&dir.join("ca")).map_err(|e| e.to_string())?;
    let dir_abs = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut nodes = Vec::new();
    for (i, (g, h)) in addrs.iter().enumerate() {
        let name = format!("node-{i}");
        let id = NodeId::new(name.clone()).map_err(|e| e.to_string())?;
        let tls_dir = dir_abs.join(&name);
        ca.issue(&id)
            .and_then(|c| c.save(&tls_dir))
            .map_err(|e| e.to_string())?;
        nodes.push(NodeSpec {
            index: i,
            id: name.clone(),
            name,
            gossip: *g,
            http: *h,
            data_dir: tls_dir.join("data"),
            tls_dir,
            peers: addrs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, a)| a.0)
                .collect(),
        });
    }
    let file = ClusterFile {
        nodes: n,
        base_port: base_port.unwrap_or(0),
        node: nodes,
    };
    roster::api::Token::generate()
        .and_then(|t| t.write_private(&token_path(dir), false))
        .map_err(|e| e.to_string())?;
    let text = toml::to_string_pretty(&file).map_err(|e| e.to_string())?;
    std::fs::write(file_path(dir), text).map_err(|e| e.to_string())?;
    Ok(file)
}

/// The gossip and HTTP addresses of node `i` of `n`: two consecutive ports
/// from `base_port`, or free ones.
fn node_ports(
    i: usize,
    n: usize,
    base_port: Option<u16>,
) -> Result<(SocketAddr, SocketAddr), String> {
    Ok(match base_port {
        Some(p) => {
            let g = u32::from(p) + 2 * i as u32;
            if g + 1 > u32::from(u16::MAX) {
                return Err(format!("--base-port {p} leaves no room for {n} nodes"));
            }
            (
                SocketAddr::from(([127, 0, 0, 1], g as u16)),
                SocketAddr::from(([127, 0, 0, 1], (g + 1) as u16)),
            )
        }
        None => (
            UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .map_err(|e| format!("no free UDP port: {e}"))?,
            TcpListener::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .map_err(|e| format!("no free TCP port: {e}"))?,
        ),
    })
}

/// Prints the dashboard URL with the operator token (the one place it is
/// shown: the page trades it for a cookie) and where the token is kept.
pub fn print_dashboard(dir: &Path, nodes: &[NodeSpec]) {
    let Some(n) = nodes.first() else { return };
    match token(dir) {
        Ok(t) => println!("dashboard: http://{}/?token={}", n.http, t.expose()),
        Err(e) => println!("dashboard: http://{}/ (no token: {e})", n.http),
    }
    println!(
        "operator token: {} (client commands on this machine find it by themselves)",
        token_path(dir).display()
    );
}

/// How client commands reach the nodes of the cluster in `dir`.
fn print_client_hint(dir: &Path) {
    let dir_flag = if dir == Path::new(DEFAULT_DIR) {
        String::new()
    } else {
        format!(" --cluster-dir {}", dir.display())
    };
    println!("client commands reach node I with --node I: roster members --node 0{dir_flag}");
}

/// The cluster's operator token file: every node's API takes it.
pub fn token_path(dir: &Path) -> PathBuf {
    dir.join("http-token")
}

/// The cluster's operator token (created if the directory predates it).
pub fn token(dir: &Path) -> Result<roster::api::Token, String> {
    roster::api::Token::load_or_create(&token_path(dir))
        .map(|(t, _)| t)
        .map_err(|e| e.to_string())
}

/// Node `n`'s API with the cluster's token.
pub(crate) fn agent(dir: &Path, n: &NodeSpec) -> super::client::Agent {
    super::client::Agent {
        addr: n.http.to_string(),
        token: token(dir).ok(),
        tls: None,
    }
}

/// Checks that no node's port is taken.
fn ports_free(file: &ClusterFile) -> Result<(), String> {
    for n in &file.node {
        UdpSocket::bind(n.gossip).map_err(|e| {
            format!(
                "{}: gossip port {} is in use ({e}); is the cluster already running?",
                n.name, n.gossip
            )
        })?;
        TcpListener::bind(n.http).map_err(|e| {
            format!(
                "{}: HTTP port {} is in use ({e}); is the cluster already running?",
                n.name, n.http
            )
        })?;
    }
    Ok(())
}

fn spawn(exe: &Path, dir: &Path, n: &NodeSpec, extra_tags: &[String]) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.log", n.name)))?;
    let mut c = Command::new(exe);
    c.arg("agent")
        .arg("--tls-dir")
        .arg(&n.tls_dir)
        .arg("--data-dir")
        .arg(&n.data_dir)
        .args(["--bind", &n.gossip.to_string()])
        .args(["--http", &n.http.to_string()])
        .arg("--http-token-file")
        .arg(std::fs::canonicalize(token_path(dir)).unwrap_or_else(|_| token_path(dir)))
        .args(["--profile", "local"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    for t in extra_tags {
        c.args(["--tag", t]);
    }
    // The metadata forms once this many see each other: every node of a
    // cluster of one or two, three of a larger one.
    let expect = (n.peers.len() + 1).min(3);
    c.args(["--bootstrap-expect", &expect.to_string()]);
    for p in &n.peers {
        c.args(["--join", &p.to_string()]);
    }
    c.spawn()
}

struct Proc {
    spec: NodeSpec,
    child: Option<Child>,
    state: ProcState,
    crashes: u32,
    restart_at: Option<tokio::time::Instant>,
    started: tokio::time::Instant,
}

/// The supervisor: runs until SIGINT/SIGTERM, then stops every node
/// gracefully. `on_ready` runs once every node was started.
pub async fn supervise(
    dir: &Path,
    tags: &[String],
    on_ready: impl FnOnce(&[NodeSpec]),
) -> ExitCode {
    let signal = super::agent::shutdown_signal();
    tokio::pin!(signal);
    let file = match load(dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = ports_free(&file) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find the roster executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = tokio::time::Instant::now();
    let mut procs: Vec<Proc> = file
        .node
        .iter()
        .map(|s| Proc {
            spec: s.clone(),
            child: None,
            state: ProcState::Stopped,
            crashes: 0,
            restart_at: None,
            started: now,
        })
        .collect();
    for p in &mut procs {
        let _ = std::fs::remove_file(dir.join(format!("{}.stop", p.spec.name)));
        let _ = std::fs::remove_file(dir.join(format!("{}.restart", p.spec.name)));
        match spawn(&exe, dir, &p.spec, tags) {
            Ok(c) => {
                p.child = Some(c);
                p.state = ProcState::Running;
            }
            Err(e) => eprintln!("error: cannot start {}: {e}", p.spec.name),
        }
    }
    write_state(dir, &procs);
    on_ready(&file.node);
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tick.tick() => {
                tend(&exe, dir, tags, &mut procs).await;
                write_state(dir, &procs);
            }
        }
    }
    println!("stopping the cluster…");
    stop_all(&mut procs).await;
    write_state(dir, &procs);
    let _ = std::fs::remove_file(dir.join("state.json"));
    ExitCode::SUCCESS
}

fn write_state(dir: &Path, procs: &[Proc]) {
    let st = SupervisorState {
        pid: std::process::id(),
        nodes: procs
            .iter()
            .map(|p| (p.spec.index, (p.state, p.child.as_ref().map(Child::id))))
            .collect(),
    };
    if let Ok(text) = serde_json::to_string(&st) {
        let tmp = dir.join("state.json.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, dir.join("state.json"));
        }
    }
}

/// One supervisor tick: requests, exits, restarts.
async fn tend(exe: &Path, dir: &Path, tags: &[String], procs: &mut [Proc]) {
    let now = tokio::time::Instant::now();
    for p in procs.iter_mut() {
        let stop_marker = dir.join(format!("{}.stop", p.spec.name));
        let restart_marker = dir.join(format!("{}.restart", p.spec.name));
        if restart_marker.exists() {
            let _ = std::fs::remove_file(&restart_marker);
            let _ = std::fs::remove_file(&stop_marker);
            stop_one(p).await;
            p.crashes = 0;
            p.restart_at = Some(now);
        } else if stop_marker.exists() && p.state != ProcState::Stopped {
            stop_one(p).await;
            p.restart_at = None;
            continue;
        }
        if let Some(c) = &mut p.child
            && let Ok(Some(status)) = c.try_wait()
        {
            p.child = None;
            if now.duration_since(p.started) > Duration::from_secs(60) {
                p.crashes = 0;
            }
            p.crashes += 1;
            if p.crashes >= MAX_FAST_CRASHES {
                eprintln!(
                    "{} crashed {} times in a row ({status}); marked Crashed",
                    p.spec.name, p.crashes
                );
                p.state = ProcState::Crashed;
                continue;
            }
            let wait = Duration::from_millis(250 * 2u64.pow(p.crashes));
            eprintln!("{} exited ({status}); restarting in {wait:?}", p.spec.name);
            p.state = ProcState::Stopped;
            p.restart_at = Some(now + wait);
        }
        if p.child.is_none()
            && let Some(at) = p.restart_at
            && now >= at
        {
            p.restart_at = None;
            p.started = now;
            match spawn(exe, dir, &p.spec, tags) {
                Ok(c) => {
                    p.child = Some(c);
                    p.state = ProcState::Running;
                }
                Err(e) => eprintln!("cannot restart {}: {e}", p.spec.name),
            }
        }
    }
}

/// Waits until `deadline` for `c` to exit, then kills it.
async fn reap(c: &mut Child, deadline: tokio::time::Instant) {
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Ok(None) = c.try_wait() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// SIGTERM to one node, then up to 3 s for it to leave.
async fn stop_one(p: &mut Proc) {
    if let Some(mut c) = p.child.take() {
        terminate(c.id());
        reap(&mut c, tokio::time::Instant::now() + Duration::from_secs(3)).await;
    }
    p.state = ProcState::Stopped;
}

/// SIGTERM to every node, then up to 3 s (for all together) for them to
/// leave.
async fn stop_all(procs: &mut [Proc]) {
    for p in procs.iter() {
        if let Some(c) = &p.child {
            terminate(c.id());
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    for p in procs.iter_mut() {
        if let Some(mut c) = p.child.take() {
            reap(&mut c, deadline).await;
        }
        p.state = ProcState::Stopped;
    }
}

/// Sends SIGTERM through the system's kill(1) (std has no signal API).
pub(crate) fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

pub(crate) fn read_state(dir: &Path) -> Option<SupervisorState> {
    let st: SupervisorState =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).ok()?).ok()?;
    alive(st.pid).then_some(st)
}

/// Runs `f` on a current-thread runtime.
pub(crate) fn block_on<F: std::future::Future<Output = ExitCode>>(f: F) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a `roster cluster` command.
pub fn run(cmd: ClusterCmd) -> ExitCode {
    let result = match cmd {
        ClusterCmd::Init {
            nodes,
            base_port,
            dir,
        } => init(&dir, nodes, Some(base_port)).map(|f| {
            println!(
                "initialised a {}-node cluster in {}: ports {}-{} on 127.0.0.1 (node I gossips on {}+2I, serves HTTP on {}+2I+1); start it with `roster cluster start`",
                f.nodes,
                dir.display(),
                f.node[0].gossip.port(),
                f.node[f.nodes - 1].http.port(),
                f.node[0].gossip.port(),
                f.node[0].gossip.port(),
            );
            println!(
                "{} holds the cluster CA's private key (ca/ca.key) and the operator token; keep it out of version control (a .gitignore there does)",
                dir.display()
            );
        }),
        ClusterCmd::Start { dir, detach } => {
            if let Some(st) = read_state(&dir) {
                Err(format!("the cluster is already running (supervisor pid {})", st.pid))
            } else if detach {
                start_detached(&dir)
            } else {
                let shown = dir.clone();
                return block_on(supervise(&dir, &[], move |nodes| {
                    println!("cluster running: {} nodes; Ctrl-C stops it", nodes.len());
                    for n in nodes {
                        println!("  {:<8} gossip {}  http://{}/", n.name, n.gossip, n.http);
                    }
                    print_dashboard(&shown, nodes);
                    print_client_hint(&shown);
                }));
            }
        }
        ClusterCmd::Status { dir, json } => status(&dir, json),
        ClusterCmd::Stop { dir, node } => stop(&dir, node),
        ClusterCmd::Restart { dir, node } => restart(&dir, node),
        ClusterCmd::Chaos {
            dir,
            node,
            cmd:
                ClusterChaosCmd::Run {
                    file,
                    seed,
                    json,
                    plot,
                    report,
                    canary,
                    leave_killed,
                },
        } if node.is_empty() => {
            return super::chaos_run::run(&super::chaos_run::RunArgs {
                dir,
                file,
                seed,
                json,
                plot,
                report,
                stale_reads: canary == Some(Canary::StaleReads),
                leave_killed,
            });
        }
        ClusterCmd::Chaos { dir, node, cmd } => chaos(&dir, &node, cmd),
        ClusterCmd::Pid { dir, node } => pid(&dir, node),
        ClusterCmd::Destroy { dir } => destroy(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn start_detached(dir: &Path) -> Result<(), String> {
    let file = load(dir)?;
    ports_free(&file)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("supervisor.log")).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["cluster", "start", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start the supervisor: {e}"))?;
    // Wait until it reports every node started (or exits with an error).
    for _ in 0..100 {
        if let Some(st) = read_state(dir)
            && st.pid == child.id()
        {
            println!(
                "cluster started in the background (supervisor pid {}, log {})",
                st.pid,
                dir.join("supervisor.log").display()
            );
            print_dashboard(dir, &file.node);
            print_client_hint(dir);
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
            return Err(format!("the supervisor exited ({status}): {}", log.trim()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("the supervisor did not report within 5 s".into())
}

/// What the cluster says about each member: the view of the first running
/// node that answers.
fn cluster_view(dir: &Path, file: &ClusterFile, st: &SupervisorState) -> BTreeMap<String, String> {
    for n in &file.node {
        if !matches!(st.nodes.get(&n.index), Some((ProcState::Running, _))) {
            continue;
        }
        if let Some(v) = http_get(&agent(dir, n), "/v1/members")
            && let Some(list) = v.as_array()
        {
            return list
                .iter()
                .filter_map(|m| {
                    Some((
                        m["id"].as_str()?.to_owned(),
                        m["state"].as_str()?.to_owned(),
                    ))
                })
                .collect();
        }
    }
    BTreeMap::new()
}

fn http_get(agent: &super::client::Agent, path: &str) -> Option<serde_json::Value> {
    match super::client::request(agent, "GET", path, b"") {
        Ok((200, v)) => Some(v),
        _ => None,
    }
}

fn status(dir: &Path, json: bool) -> Result<(), String> {
    let file = load(dir)?;
    let st = read_state(dir).unwrap_or_default();
    let view = cluster_view(dir, &file, &st);
    let rows: Vec<(
        String,
        ProcState,
        Option<u32>,
        SocketAddr,
        SocketAddr,
        String,
    )> = file
        .node
        .iter()
        .map(|n| {
            let (state, pid) = st
                .nodes
                .get(&n.index)
                .copied()
                .unwrap_or((ProcState::Stopped, None));
            let seen = view.get(&n.id).cloned().unwrap_or_else(|| "-".into());
            (n.name.clone(), state, pid, n.gossip, n.http, seen)
        })
        .collect();
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"name": r.0, "process": format!("{:?}", r.1), "pid": r.2,
                    "gossip": r.3.to_string(), "http": r.4.to_string(), "cluster_view": r.5})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"supervisor": (st.pid != 0).then_some(st.pid), "nodes": v})
        );
        return Ok(());
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.0.clone(),
                format!("{:?}", r.1),
                r.2.map_or("-".into(), |p| p.to_string()),
                r.3.to_string(),
                format!("http://{}/", r.4),
                r.5.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        super::client::table(
            &["Node", "Process", "PID", "Gossip", "HTTP", "Cluster view"],
            &table_rows
        )
    );
    if st.pid == 0 {
        println!("supervisor: not running (start with `roster cluster start`)");
    } else {
        println!("supervisor: pid {}", st.pid);
    }
    Ok(())
}

fn node_name(file: &ClusterFile, i: usize) -> Result<String, String> {
    file.node
        .get(i)
        .map(|n| n.name.clone())
        .ok_or_else(|| format!("no node {i}: the cluster has nodes 0..{}", file.nodes - 1))
}

/// Waits until the supervisor reports `node` in `want`.
fn wait_state(dir: &Path, node: usize, want: ProcState) -> Result<(), String> {
    for _ in 0..200 {
        if read_state(dir).is_some_and(|st| st.nodes.get(&node).is_some_and(|s| s.0 == want)) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("node {node} did not reach {want:?} within 10 s"))
}

fn stop(dir: &Path, node: Option<usize>) -> Result<(), String> {
    let file = load(dir)?;
    let st = read_state(dir).ok_or("the cluster is not running")?;
    match node {
        Some(i) => {
            let name = node_name(&file, i)?;
            std::fs::write(dir.join(format!("{name}.stop")), b"").map_err(|e| e.to_string())?;
            wait_state(dir, i, ProcState::Stopped)?;
            println!("{name} stopped (it left the cluster gracefully)");
        }
        None => {
            terminate(st.pid);
            for _ in 0..200 {
                if !alive(st.pid) {
                    println!("cluster stopped");
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            return Err(format!(
                "the supervisor (pid {}) did not stop within 10 s",
                st.pid
            ));
        }
    }
    Ok(())
}

fn restart(dir: &Path, node: usize) -> Result<(), String> {
    let file = load(dir)?;
    read_state(dir).ok_or("the cluster is not running; `roster cluster start` first")?;
    let name = node_name(&file, node)?;
    std::fs::write(dir.join(format!("{name}.restart")), b"").map_err(|e| e.to_string())?;
    // The marker goes once the supervisor took it; then the node runs.
    for _ in 0..200 {
        if !dir.join(format!("{name}.restart")).exists() {
            wait_state(dir, node, ProcState::Running)?;
            println!("{name} restarted");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("the supervisor did not restart {name} within 10 s"))
}

/// The indices of the running nodes among `only` (every running node when
/// `only` is empty); an unknown or not running index is an error.
fn running_nodes(
    file: &ClusterFile,
    st: &SupervisorState,
    only: &[usize],
) -> Result<Vec<usize>, String> {
    let running = |i: &usize| matches!(st.nodes.get(i), Some((ProcState::Running, _)));
    if only.is_empty() {
        return Ok((0..file.nodes).filter(running).collect());
    }
    for i in only {
        let name = node_name(file, *i)?;
        if !running(i) {
            return Err(format!("{name} is not running"));
        }
    }
    Ok(only.to_vec())
}

fn chaos(dir: &Path, only: &[usize], cmd: ClusterChaosCmd) -> Result<(), String> {
    let file = load(dir)?;
    let st = read_state(dir).ok_or("the cluster is not running")?;
    let targets = running_nodes(&file, &st, only)?;
    let calls: Vec<(usize, ChaosCmd)> = match cmd {
        ClusterChaosCmd::Rules(rules) => targets.iter().map(|&i| (i, rules.clone())).collect(),
        ClusterChaosCmd::Isolate {
            node,
            direction,
            for_secs,
        } => {
            let victim = node_name(&file, node)?;
            if !targets.contains(&node) {
                return Err(format!("{victim} is not running"));
            }
            let others: Vec<String> = file
                .node
                .iter()
                .filter(|n| n.index != node)
                .map(|n| n.id.clone())
                .collect();
            let set =
                |block: Vec<String>, block_in: Vec<String>, block_out: Vec<String>| ChaosCmd::Set {
                    drop: 0.0,
                    delay: 0,
                    jitter: 0,
                    block,
                    block_in,
                    block_out,
                    for_secs,
                };
            match direction {
                // Both ways: the node and every other running node block
                // each other.
                Direction::Both => std::iter::once((node, set(others, vec![], vec![])))
                    .chain(
                        targets
                            .iter()
                            .filter(|&&i| i != node)
                            .map(|&i| (i, set(vec![file.node[node].id.clone()], vec![], vec![]))),
                    )
                    .collect(),
                Direction::In => vec![(node, set(vec![], others, vec![]))],
                Direction::Out => vec![(node, set(vec![], vec![], others))],
            }
        }
        ClusterChaosCmd::Run { .. } => return Err("`chaos run` takes no --node".into()),
    };
    if calls.is_empty() {
        return Err("no node is running".into());
    }
    let mut failed = 0;
    for (i, call) in &calls {
        let n = &file.node[*i];
        match super::client::chaos_call(&agent(dir, n), call) {
            Ok(v) => println!("{}: {}", n.name, super::client::chaos_summary(call, &v)),
            Err(e) => {
                failed += 1;
                eprintln!("{}: {e}", n.name);
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} nodes refused", calls.len()));
    }
    Ok(())
}

fn pid(dir: &Path, node: usize) -> Result<(), String> {
    let file = load(dir)?;
    node_name(&file, node)?;
    let st = read_state(dir).ok_or("the cluster is not running (roster cluster start)")?;
    match st.nodes.get(&node) {
        Some((ProcState::Running, Some(pid))) => {
            println!("{pid}");
            Ok(())
        }
        Some((state, _)) => Err(format!("node {node} is not running ({state:?})")),
        None => Err(format!("node {node} is not running")),
    }
}

fn destroy(dir: &Path) -> Result<(), String> {
    load(dir)?;
    if read_state(dir).is_some() {
        stop(dir, None)?;
    }
    std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("removed {}", dir.display());
    Ok(())
}
