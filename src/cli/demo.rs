//! `roster demo`: a local 5-node cluster with its dashboard.
//!
//! `roster cluster init` and `start` of five nodes in a temporary directory
//! (free ports), printing the dashboard URL and what to try; Ctrl-C (or
//! SIGTERM) stops every node gracefully and removes the directory.

use std::path::PathBuf;
use std::process::ExitCode;

use super::cluster;

/// Nodes in the demo cluster.
pub const DEMO_NODES: usize = 5;

/// How to run this binary from a shell: `roster` when that is what PATH
/// finds, else this executable's path (as under `cargo run`, before
/// `cargo install`).
fn roster_command() -> String {
    let exe = std::env::current_exe().ok();
    let on_path = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let c = d.join("roster");
            c.is_file()
                && match (
                    std::fs::canonicalize(&c),
                    exe.as_ref().and_then(|e| std::fs::canonicalize(e).ok()),
                ) {
                    (Ok(a), Some(b)) => a == b,
                    _ => false,
                }
        })
    });
    match exe {
        Some(e) if !on_path => e.display().to_string(),
        _ => "roster".to_owned(),
    }
}

/// Runs the demo; returns the exit code.
pub fn run() -> ExitCode {
    let dir: PathBuf = std::env::temp_dir().join(format!("roster-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = cluster::init(&dir, DEMO_NODES, None) {
        eprintln!("error: {e}");
        let _ = std::fs::remove_dir_all(&dir);
        return ExitCode::FAILURE;
    }
    let shown = dir.clone();
    let code = cluster::block_on(cluster::supervise(&dir, &["demo=true".into()], |nodes| {
        println!(
            "roster demo: {} nodes running, files and logs in {}",
            nodes.len(),
            shown.display()
        );
        cluster::print_dashboard(&shown, nodes);
        let state = std::fs::read_to_string(shown.join("state.json")).unwrap_or_default();
        let pids: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
        for n in nodes {
            let pid = pids["nodes"][n.index.to_string()][1].as_u64().unwrap_or(0);
            println!(
                "  {:<7} gossip {}  http://{}/  pid {pid}",
                n.name, n.gossip, n.http
            );
        }
        let r = roster_command();
        println!(
            "try: kill -STOP <pid> to freeze a node (suspect, then down), kill -CONT <pid> to bring it back;"
        );
        println!(
            "     {r} meta put greeting hello --http {} ; {r} voters --http {} ;",
            nodes[1].http, nodes[0].http
        );
        println!(
            "     {r} partitions --key user:123 --http {} ; {r} monitor --http {} ; Ctrl-C stops everything.",
            nodes[2].http, nodes[0].http
        );
    }));
    let _ = std::fs::remove_dir_all(&dir);
    println!("stopped; removed {}", dir.display());
    code
}
