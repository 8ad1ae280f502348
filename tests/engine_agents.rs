//! Both SWIM engines on real `roster agent` processes (loopback QUIC, the
//! `local` preset): five agents per engine, one `kill -9`'d, and the time
//! until every survivor holds it Down, foca's and the native engine's from
//! the same run. A cluster of one engine refuses the other's packets.
//!
//! These tests wait on real processes, so they read the real clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::{free_tcp, free_udp, http_get, wait_for, wait_until};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Agents started by the test, stopped (SIGKILL) when it ends, pass or fail.
struct Agents(Vec<Option<Child>>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn agent(dir: &Path, name: &str, engine: &str, bind: u16, http: u16, join: Option<u16>) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roster"));
    c.args(["agent", "--profile", "local", "--engine", engine])
        .args(["--bind", &format!("127.0.0.1:{bind}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .arg("--tls-dir")
        .arg(dir.join(name))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(j) = join {
        c.args(["--join", &format!("127.0.0.1:{j}")]);
    }
    c.spawn().unwrap()
}

/// `id -> state` as agent `http` sees its members.
fn states(http: u16) -> Option<Vec<(String, String)>> {
    let body = http_get(&format!("127.0.0.1:{http}"), "/v1/members")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(
        v.as_array()?
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap_or_default().to_owned(),
                    m["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    )
}

fn state_of(http: u16, who: &str) -> Option<String> {
    states(http)?.into_iter().find(|m| m.0 == who).map(|m| m.1)
}

/// Five agents of `engine`; the last is killed with SIGKILL. Returns how
/// long until every survivor held it Down.
fn kill_one(dir: &Path, engine: &str) -> Duration {
    let names: Vec<String> = (0..5).map(|i| format!("{engine}{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    common::certs(dir, &refs);
    let ports: Vec<(u16, u16)> = (0..5).map(|_| (free_udp(), free_tcp())).collect();
    let mut agents = Agents(Vec::new());
    for (i, name) in names.iter().enumerate() {
        let join = (i > 0).then(|| ports[0].0);
        agents
            .0
            .push(Some(agent(dir, name, engine, ports[i].0, ports[i].1, join)));
    }
    let all_alive = wait_until(Duration::from_secs(30), || {
        ports
            .iter()
            .all(|p| states(p.1).is_some_and(|m| m.len() == 5 && m.iter().all(|s| s.1 == "alive")))
    });
    assert!(all_alive.is_some(), "{engine}: 5 agents never all Alive");
    // Each reports the engine it runs.
    for p in &ports {
        let status = wait_for(Duration::from_secs(5), || {
            http_get(&format!("127.0.0.1:{}", p.1), "/v1/status")
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(v["node"]["engine"], engine);
    }
    let victim = &names[4];
    let mut child = agents.0[4].take().unwrap();
    let killed = Instant::now();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let survivors = &ports[..4];
    let down = wait_until(Duration::from_secs(30), || {
        survivors
            .iter()
            .all(|p| state_of(p.1, victim).as_deref() == Some("down"))
    });
    let took = killed.elapsed();
    assert!(
        down.is_some(),
        "{engine}: {victim} not Down on every survivor 30 s after kill -9: {:?}",
        survivors
            .iter()
            .map(|p| state_of(p.1, victim))
            .collect::<Vec<_>>()
    );
    // No survivor was taken for Down meanwhile.
    for p in survivors {
        let m = states(p.1).unwrap();
        for (id, st) in m.iter().filter(|m| &m.0 != victim) {
            assert_eq!(st, "alive", "{engine}: {id} is {st} on a survivor");
        }
    }
    took
}

#[test]
fn kill_9_is_detected_by_every_survivor_with_either_engine() {
    let dir = std::env::temp_dir().join(format!("roster-engines-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let foca = kill_one(&dir.join("foca"), "foca");
    let native = kill_one(&dir.join("native"), "native");
    eprintln!(
        "kill -9 Down on every survivor: foca {foca:?}, native {native:?} (native/foca {:.2})",
        native.as_secs_f64() / foca.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An agent of one engine cannot join a cluster of the other: it stays
/// alone and the cluster never lists it.
#[test]
fn a_mixed_cluster_refuses_rather_than_misreads() {
    let dir = std::env::temp_dir().join(format!("roster-mixed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::certs(&dir, &["a", "b"]);
    let (a, b) = ((free_udp(), free_tcp()), (free_udp(), free_tcp()));
    let mut agents = Agents(Vec::new());
    agents
        .0
        .push(Some(agent(&dir, "a", "foca", a.0, a.1, None)));
    agents
        .0
        .push(Some(agent(&dir, "b", "native", b.0, b.1, Some(a.0))));
    // Both up and answering.
    for p in [a.1, b.1] {
        assert!(wait_for(Duration::from_secs(20), || states(p)).is_some());
    }
    // Given the time a join takes many times over, neither lists the other
    // as a member.
    let joined = wait_until(Duration::from_secs(5), || {
        state_of(a.1, "b").as_deref() == Some("alive")
            || state_of(b.1, "a").as_deref() == Some("alive")
    });
    assert!(
        joined.is_none(),
        "a foca agent and a native agent joined each other"
    );
    // Refused, and counted: b's join attempts reached a.
    let metrics = http_get(&format!("127.0.0.1:{}", a.1), "/metrics").unwrap();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("roster_engine_mismatch_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        dropped > 0,
        "no push-pull refused for its engine:\n{metrics}"
    );
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}
