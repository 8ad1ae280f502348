//! Network coordinates on real agents: five agents on loopback with
//! `--coordinates` estimate the round trip of every pair (`roster rtt`),
//! and a 50 ms chaos delay on one node shows in the estimates to it.
//!
//! These tests wait on real processes, so they read the real clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the process when dropped (the test may fail half-way).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `roster rtt A B --json` through the agent at `http`, in milliseconds.
fn rtt(dir: &std::path::Path, http: &str, a: &str, b: &str) -> Option<f64> {
    let out = common::roster_in(dir, &["rtt", a, b, "--json", "--http", http]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["rtt_ms"].as_f64()
}

#[test]
fn every_pair_has_an_estimate_and_a_delay_shows_in_it() {
    let dir = std::env::temp_dir().join(format!("roster-coords-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names = ["a", "b", "c", "d", "e"];
    common::certs(&dir, &names);
    let ports: Vec<u16> = names.iter().map(|_| common::free_tcp()).collect();
    let http: Vec<String> = names
        .iter()
        .map(|_| format!("127.0.0.1:{}", common::free_tcp()))
        .collect();
    let join = format!("127.0.0.1:{}", ports[0]);
    let _agents: Vec<KillOnDrop> = (0..names.len())
        .map(|i| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_roster"));
            c.env("ROSTER_HTTP", "off")
                .args(["agent", "--profile", "local", "--coordinates", "--tls-dir"])
                .arg(dir.join(names[i]))
                .args(["--bind", &format!("127.0.0.1:{}", ports[i])])
                .args(["--http", &http[i]])
                .stderr(Stdio::null());
            if i > 0 {
                c.args(["--join", &join]);
            }
            KillOnDrop(c.spawn().unwrap())
        })
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .enumerate()
        .flat_map(|(i, a)| names[i + 1..].iter().map(move |b| (*a, *b)))
        .collect();
    let took = common::wait_until(Duration::from_secs(60), || {
        pairs
            .iter()
            .all(|(a, b)| rtt(&dir, &http[0], a, b).is_some())
    })
    .expect("agent a estimates every pair's round trip within 60 s");
    println!("every pair estimated after {took:?}");
    for (a, b) in &pairs {
        let ms = rtt(&dir, &http[0], a, b).expect("estimated");
        println!("{a} <-> {b}: {ms:.3} ms");
        assert!(
            (0.0..50.0).contains(&ms),
            "{a} <-> {b}: {ms} ms on loopback"
        );
    }
    let before = rtt(&dir, &http[0], "a", "e").expect("estimated");
    common::roster_ok(&dir, &["chaos", "set", "--delay", "50", "--http", &http[4]]);
    let start = Instant::now();
    let shown = common::wait_for(Duration::from_secs(60), || {
        rtt(&dir, &http[0], "a", "e").filter(|ms| *ms >= before + 35.0)
    })
    .expect("a 50 ms delay on e shows in a's estimate of a <-> e within 60 s");
    println!(
        "a <-> e: {before:.3} ms before the delay, {shown:.3} ms {:?} after it",
        start.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
