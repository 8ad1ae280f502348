//! Real `roster agent` processes size their timing from the live member
//! count: 3 agents, then 40, read through `/v1/status` and `/metrics`.
//!
//! These tests wait on real processes, so they read the real clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::{free_tcp, free_udp, http_get, wait_for};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Agents started by the test, stopped (SIGKILL) when it ends, pass or fail.
struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `roster agent` for `name` on loopback with its HTTP API.
fn agent(dir: &Path, name: &str, bind: u16, http: u16, join: Option<u16>) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roster"));
    c.args(["agent", "--profile", "local"])
        .args(["--bind", &format!("127.0.0.1:{bind}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .arg("--tls-dir")
        .arg(dir.join(name))
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join(format!("{name}.log")))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        );
    if let Some(j) = join {
        c.args(["--join", &format!("127.0.0.1:{j}")]);
    }
    c.spawn().unwrap()
}

/// The `timing` object of an agent's `/v1/status`.
fn timing(http: u16) -> Option<serde_json::Value> {
    let body = http_get(&format!("127.0.0.1:{http}"), "/v1/status")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(v["timing"].clone())
}

/// Waits until the agent's timing is sized for `n` live members.
fn timing_for(http: u16, n: u64, limit: Duration) -> serde_json::Value {
    wait_for(limit, || {
        timing(http).filter(|t| t["live_members"].as_u64() == Some(n))
    })
    .unwrap_or_else(|| panic!("timing never sized for {n} members: {:?}", timing(http)))
}

#[test]
fn an_agents_timing_grows_as_members_join() {
    let dir = std::env::temp_dir().join(format!("roster-sizing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    common::certs(&dir, &refs);
    let ports: Vec<(u16, u16)> = (0..40).map(|_| (free_udp(), free_tcp())).collect();
    let mut agents = Agents(Vec::new());
    for (i, name) in names.iter().enumerate().take(3) {
        let join = (i > 0).then(|| ports[0].0);
        agents
            .0
            .push(agent(&dir, name, ports[i].0, ports[i].1, join));
    }
    let http0 = ports[0].1;
    let small = timing_for(http0, 3, Duration::from_secs(30));
    for (i, name) in names.iter().enumerate().skip(3) {
        // Each joins through one of the agents already running.
        let join = ports[i % 3].0;
        agents
            .0
            .push(agent(&dir, name, ports[i].0, ports[i].1, Some(join)));
    }
    let big = wait_for(Duration::from_secs(60), || {
        timing(http0).filter(|t| t["live_members"].as_u64() == Some(40))
    })
    .unwrap_or_else(|| {
        // Which agents stopped, and what they said.
        let mut gone = String::new();
        for (i, c) in agents.0.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                let log =
                    std::fs::read_to_string(dir.join(format!("n{i}.log"))).unwrap_or_default();
                gone += &format!("\nn{i} exited {status}: {log}");
            }
        }
        panic!(
            "timing never sized for 40 members: {:?}{gone}",
            timing(http0)
        )
    });
    eprintln!("3 members: {small}\n40 members: {big}");
    let ms = |t: &serde_json::Value, k: &str| t[k].as_u64().unwrap();
    // The `local` preset: 3 * max(1, log10(n)) probe periods of 500 ms,
    // 6 * log10(n + 1) retransmissions, push-pull every 5 s up to 32
    // members and twice that past them.
    assert_eq!(ms(&small, "suspicion_window_ms"), 1500);
    assert_eq!(ms(&big, "suspicion_window_ms"), 2403);
    assert_eq!(ms(&small, "retransmits"), 3);
    assert_eq!(ms(&big, "retransmits"), 9);
    assert_eq!(ms(&small, "push_pull_interval_ms"), 5000);
    assert_eq!(ms(&big, "push_pull_interval_ms"), 10_000);
    // The same figures as Prometheus gauges.
    let metrics = http_get(&format!("127.0.0.1:{http0}"), "/metrics").unwrap();
    for line in [
        "roster_live_members 40",
        "roster_suspicion_window_seconds 2.403",
        "roster_retransmits 9",
        "roster_push_pull_interval_seconds 10.0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line:?} missing from /metrics"
        );
    }
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}
