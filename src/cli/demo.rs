//! `roster demo`: a local 5-node cluster with its dashboard.
//!
//! Creates a CA and five node certificates in a temporary directory, runs
//! one `roster agent` process per node (restarting one that crashes, with
//! backoff, and giving up on a node that keeps crashing), prints the
//! dashboard URL, and on Ctrl-C (or SIGTERM) stops every node gracefully and
//! removes the directory.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use crate::node::NodeId;
use crate::runtime::tls::ClusterCa;

/// Nodes in the demo cluster.
pub const DEMO_NODES: usize = 5;
/// A node that crashes this many times in a row within a minute is given up.
const MAX_FAST_CRASHES: u32 = 5;

struct DemoNode {
    name: String,
    gossip: SocketAddr,
    http: SocketAddr,
    child: Option<Child>,
    crashes: u32,
    restart_at: Option<tokio::time::Instant>,
    started: tokio::time::Instant,
}

fn free_udp() -> std::io::Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

fn free_tcp() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

fn spawn(exe: &Path, dir: &Path, n: &DemoNode, join: Option<SocketAddr>) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.log", n.name)))?;
    let mut c = Command::new(exe);
    c.arg("agent")
        .arg("--tls-dir")
        .arg(dir.join(&n.name))
        .arg("--data-dir")
        .arg(dir.join(format!("{}-data", n.name)))
        .args(["--bind", &n.gossip.to_string()])
        .args(["--http", &n.http.to_string()])
        .args(["--profile", "local"])
        .args(["--tag", &format!("demo={}", n.name)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(j) = join {
        c.args(["--join", &j.to_string()]);
    }
    c.spawn()
}

/// Runs the demo; returns the exit code.
pub fn run() -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(demo()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn prepare(dir: &Path) -> Result<Vec<DemoNode>, String> {
    let ca = ClusterCa::generate("roster demo").map_err(|e| e.to_string())?;
    ca.save(&dir.join("ca")).map_err(|e| e.to_string())?;
    let now = tokio::time::Instant::now();
    let mut nodes = Vec::new();
    for i in 1..=DEMO_NODES {
        let name = format!("node-{i}");
        let id = NodeId::new(name.clone()).map_err(|e| e.to_string())?;
        ca.issue(&id)
            .and_then(|c| c.save(&dir.join(&name)))
            .map_err(|e| e.to_string())?;
        nodes.push(DemoNode {
            name,
            gossip: free_udp().map_err(|e| format!("no free UDP port: {e}"))?,
            http: free_tcp().map_err(|e| format!("no free TCP port: {e}"))?,
            child: None,
            crashes: 0,
            restart_at: None,
            started: now,
        });
    }
    Ok(nodes)
}

async fn demo() -> ExitCode {
    let signal = super::agent::shutdown_signal();
    tokio::pin!(signal);
    let dir: PathBuf = std::env::temp_dir().join(format!("roster-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find the roster executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut nodes = match prepare(&dir) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            let _ = std::fs::remove_dir_all(&dir);
            return ExitCode::FAILURE;
        }
    };
    let seed = nodes[0].gossip;
    for (i, n) in nodes.iter_mut().enumerate() {
        match spawn(&exe, &dir, n, (i > 0).then_some(seed)) {
            Ok(c) => n.child = Some(c),
            Err(e) => eprintln!("error: cannot start {}: {e}", n.name),
        }
    }
    println!(
        "roster demo: {DEMO_NODES} nodes running, files and logs in {}",
        dir.display()
    );
    println!("dashboard: http://{}/", nodes[0].http);
    for n in &nodes {
        println!(
            "  {:<7} gossip {}  http://{}/  pid {}",
            n.name,
            n.gossip,
            n.http,
            n.child.as_ref().map_or(0, Child::id)
        );
    }
    println!(
        "try: kill -STOP <pid> to freeze a node (suspect, then down), kill -CONT <pid> to bring it back;"
    );
    println!(
        "     curl -X PUT --data web http://{}/v1/state/service ; Ctrl-C stops everything.",
        nodes[0].http
    );

    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tick.tick() => supervise(&exe, &dir, &mut nodes, seed),
        }
    }
    println!("stopping the demo cluster…");
    stop_all(&mut nodes).await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("stopped; removed {}", dir.display());
    ExitCode::SUCCESS
}

/// Restarts nodes that exited, with backoff; gives up on a node that keeps
/// crashing.
fn supervise(exe: &Path, dir: &Path, nodes: &mut [DemoNode], seed: SocketAddr) {
    let now = tokio::time::Instant::now();
    for n in nodes.iter_mut() {
        if let Some(c) = &mut n.child
            && let Ok(Some(status)) = c.try_wait()
        {
            n.child = None;
            if now.duration_since(n.started) > Duration::from_secs(60) {
                n.crashes = 0;
            }
            n.crashes += 1;
            if n.crashes >= MAX_FAST_CRASHES {
                eprintln!(
                    "{} crashed {} times in a row ({status}); marked Crashed",
                    n.name, n.crashes
                );
                continue;
            }
            let wait = Duration::from_millis(500 * 2u64.pow(n.crashes));
            eprintln!("{} exited ({status}); restarting in {wait:?}", n.name);
            n.restart_at = Some(now + wait);
        }
        if n.child.is_none()
            && let Some(at) = n.restart_at
            && now >= at
        {
            n.restart_at = None;
            n.started = now;
            match spawn(exe, dir, n, (n.gossip != seed).then_some(seed)) {
                Ok(c) => n.child = Some(c),
                Err(e) => eprintln!("cannot restart {}: {e}", n.name),
            }
        }
    }
}

/// SIGTERM to every node, then up to 3 s for them to leave.
async fn stop_all(nodes: &mut [DemoNode]) {
    for n in nodes.iter() {
        if let Some(c) = &n.child {
            terminate(c.id());
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    for n in nodes.iter_mut() {
        if let Some(c) = &mut n.child {
            while tokio::time::Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

#[cfg(unix)]
fn terminate(pid: u32) {
    // No signal API in std: ask the system's kill(1).
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(not(unix))]
fn terminate(_pid: u32) {}
