//! `roster cluster` end to end, as an operator runs it: init, start
//! --detach, status, kill -9 of a node (restarted by the supervisor),
//! stop --node (Left, not Down), chaos isolate and heal, a port already in
//! use, destroy.
//!
//! These tests wait on real processes, so they read the real clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::{base_port, roster_in as roster, roster_ok, wait_until};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("roster-cluster-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn status(dir: &Path) -> Value {
    let out = roster_ok(dir, &["cluster", "status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Stops the cluster if a test fails half-way.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = roster(&self.0, &["cluster", "destroy"]);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn init_start_status_kill_restart_stop_destroy() {
    let dir = tmp("e2e");
    let _cleanup = Cleanup(dir.clone());
    let port = base_port().to_string();
    roster_ok(
        &dir,
        &["cluster", "init", "--nodes", "3", "--base-port", &port],
    );
    let toml = std::fs::read_to_string(dir.join(".roster/cluster/cluster.toml")).unwrap();
    assert!(
        toml.contains("nodes = 3") && toml.contains("peers"),
        "{toml}"
    );
    // A second init is refused.
    assert!(
        !roster(&dir, &["cluster", "init", "--nodes", "3"])
            .status
            .success()
    );

    roster_ok(&dir, &["cluster", "start", "--detach"]);
    // 3 Running nodes that see each other.
    let all_alive = |v: &Value| {
        v["nodes"].as_array().is_some_and(|n| {
            n.len() == 3
                && n.iter()
                    .all(|x| x["process"] == "Running" && x["cluster_view"] == "alive")
        })
    };
    let t = wait_until(Duration::from_secs(20), || all_alive(&status(&dir)))
        .expect("3 Running nodes that see each other");
    println!("3 nodes Running and alive in the cluster view after {t:?}");
    let text = roster(&dir, &["cluster", "status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.matches("Running").count(), 3, "{text}");

    // kill -9 of node 1: restarted within 2 s, then Alive again.
    let pid = status(&dir)["nodes"][1]["pid"].as_u64().unwrap();
    let killed = Instant::now();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let restarted = wait_until(Duration::from_secs(5), || {
        let v = status(&dir);
        v["nodes"][1]["process"] == "Running" && v["nodes"][1]["pid"].as_u64() != Some(pid)
    })
    .expect("node 1 was not restarted");
    println!("node 1 restarted {restarted:?} after kill -9");
    assert!(restarted <= Duration::from_secs(2));
    wait_until(Duration::from_secs(20), || all_alive(&status(&dir))).expect("node 1 Alive again");
    println!("node 1 Alive again {:?} after kill -9", killed.elapsed());

    // stop --node 0: Stopped, and Left (not Down) in the cluster's view.
    roster_ok(&dir, &["cluster", "stop", "--node", "0"]);
    let left = wait_until(Duration::from_secs(10), || {
        let v = status(&dir);
        v["nodes"][0]["process"] == "Stopped" && v["nodes"][0]["cluster_view"] == "left"
    });
    assert!(left.is_some(), "{}", status(&dir));
    // It stays stopped (the supervisor does not restart it).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status(&dir)["nodes"][0]["process"], "Stopped");
    // restart --node 0 brings it back.
    roster_ok(&dir, &["cluster", "restart", "--node", "0"]);
    wait_until(Duration::from_secs(20), || all_alive(&status(&dir))).expect("node 0 back");

    // `cluster chaos isolate 2`: node 2 is Down in the cluster's view; the
    // rules show on every node; `cluster chaos heal` brings it back.
    roster_ok(&dir, &["cluster", "chaos", "isolate", "2"]);
    let isolated = Instant::now();
    let down = wait_until(Duration::from_secs(30), || {
        status(&dir)["nodes"][2]["cluster_view"] == "down"
    })
    .unwrap_or_else(|| panic!("node 2 never Down: {}", status(&dir)));
    println!("isolated node 2 Down in the cluster view after {down:?}");
    let out = roster_ok(&dir, &["cluster", "chaos", "show"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("node-2").count(), 3, "{text}");
    let out = roster_ok(&dir, &["cluster", "chaos", "heal"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("healed")
            .count(),
        3
    );
    let back = wait_until(Duration::from_secs(30), || all_alive(&status(&dir)))
        .expect("node 2 Alive again after healing");
    println!(
        "node 2 Alive again {back:?} after healing ({:?} after the isolation)",
        isolated.elapsed()
    );
    // A node that does not exist is refused.
    let out = roster(&dir, &["cluster", "chaos", "--node", "7", "show"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node 7"));

    roster_ok(&dir, &["cluster", "destroy"]);
    assert!(!dir.join(".roster/cluster").exists());
}

#[test]
fn a_port_in_use_is_an_error_before_anything_starts() {
    let dir = tmp("port");
    let _cleanup = Cleanup(dir.clone());
    let port = base_port();
    roster_ok(
        &dir,
        &[
            "cluster",
            "init",
            "--nodes",
            "2",
            "--base-port",
            &port.to_string(),
        ],
    );
    // Take node 1's HTTP port.
    let _held = std::net::TcpListener::bind(("127.0.0.1", port + 3)).unwrap();
    let out = roster(&dir, &["cluster", "start", "--detach"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    // Nothing was started.
    let v = status(&dir);
    assert!(v["supervisor"].is_null(), "{v}");
    assert!(!dir.join(".roster/cluster/node-0.log").exists());
}

/// `cluster init --nodes 1`: the lone node forms the metadata cluster (a
/// write goes through), and the cluster directory, which holds the CA key,
/// ignores itself for git.
#[test]
fn a_one_node_cluster_forms_its_metadata() {
    let dir = tmp("one");
    let _cleanup = Cleanup(dir.clone());
    let port = base_port();
    let out = roster_ok(
        &dir,
        &[
            "cluster",
            "init",
            "--nodes",
            "1",
            "--base-port",
            &port.to_string(),
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("CA's private key"), "{said}");
    let ignore = std::fs::read_to_string(dir.join(".roster/cluster/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
    roster_ok(&dir, &["cluster", "start", "--detach"]);
    let http = format!("127.0.0.1:{}", port + 1);
    let token = ".roster/cluster/http-token";
    let wrote = wait_until(Duration::from_secs(20), || {
        roster(
            &dir,
            &[
                "meta",
                "put",
                "app/k",
                "v",
                "--http",
                &http,
                "--token-file",
                token,
            ],
        )
        .status
        .success()
    })
    .expect("the one-node cluster takes a metadata write");
    println!("one-node cluster: first metadata write acknowledged after {wrote:?}");
    let out = roster_ok(
        &dir,
        &[
            "meta",
            "get",
            "app/k",
            "--http",
            &http,
            "--token-file",
            token,
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
    // --node I finds the node and the cluster's token in .roster/cluster.
    let out = roster_ok(&dir, &["meta", "get", "app/k", "--node", "0"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
    let out = roster(&dir, &["members", "--node", "1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has nodes 0 to 0"), "{err}");
    // --node wins over an address given too (e.g. ROSTER_HTTP_ADDR).
    let out = roster(&dir, &["members", "--node", "0", "--http", "127.0.0.1:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elsewhere = roster(&std::env::temp_dir(), &["members", "--node", "0"]);
    let err = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(err.contains("roster cluster init"), "{err}");
    roster_ok(&dir, &["cluster", "destroy"]);
}
