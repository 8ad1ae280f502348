//! Cluster metadata on real agent processes over loopback QUIC: a write
//! through a non-voter, every node reading it, `kill -9` of the leader's
//! process with writes going on, the killed node restarted on its data
//! dir, and no acknowledged write lost.
//!
//! These tests wait on real processes, so they read the real clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::wait_for;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn roster() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roster"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("roster-meta-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn free_port() -> u16 {
    common::free_tcp()
}

/// One HTTP request: (status, JSON body). `None` when the agent is
/// unreachable.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, Value)> {
    let addr = format!("127.0.0.1:{port}");
    // The operator token, found as the CLI finds it.
    let token = roster::api::credentials::find(&addr, None).ok()??;
    let mut s = TcpStream::connect(&addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        token.expose(),
        body.len()
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.get(9..12)?.parse().ok()?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// Agents started by a test; killed when it ends, pass or fail.
struct Agents {
    dir: PathBuf,
    children: Vec<Option<Child>>,
    gossip: Vec<u16>,
    http: Vec<u16>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Agents {
    fn new(dir: PathBuf, n: usize) -> Self {
        let ok = roster()
            .args(["cert", "ca", "--dir"])
            .arg(dir.join("ca"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success());
        for i in 0..n {
            let ok = roster()
                .args(["cert", "node", "--name", &format!("n{i}"), "--ca"])
                .arg(dir.join("ca"))
                .arg("--out")
                .arg(dir.join(format!("n{i}")))
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let mut a = Self {
            dir,
            children: (0..n).map(|_| None).collect(),
            gossip: (0..n).map(|_| free_port()).collect(),
            http: (0..n).map(|_| free_port()).collect(),
        };
        for i in 0..n {
            a.start(i);
        }
        a
    }

    fn start(&mut self, i: usize) {
        let d = self.dir.join(format!("n{i}"));
        let log = std::fs::File::create(self.dir.join(format!("n{i}.log"))).unwrap();
        let mut cmd = roster();
        cmd.arg("agent")
            .arg("--tls-dir")
            .arg(&d)
            .arg("--data-dir")
            .arg(d.join("data"))
            .args(["--bind", &format!("127.0.0.1:{}", self.gossip[i])])
            .args(["--http", &format!("127.0.0.1:{}", self.http[i])])
            .args(["--profile", "local"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for j in 0..self.gossip.len() {
            if j != i {
                cmd.args(["--join", &format!("127.0.0.1:{}", self.gossip[j])]);
            }
        }
        self.children[i] = Some(cmd.spawn().unwrap());
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn voters(&self, i: usize) -> Option<Value> {
        http(self.http[i], "GET", "/v1/voters", "").map(|(_, v)| v)
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("n{i}.log"))).unwrap_or_default()
    }
}

fn name_index(v: &Value) -> Option<usize> {
    v.as_str()?.strip_prefix('n')?.parse().ok()
}

/// Waits until all `n` agents name the same leader of 3 voters; its index.
fn leader_with_three_voters(a: &Agents, n: usize) -> usize {
    wait_for(Duration::from_secs(30), || {
        let views: Vec<Value> = (0..n).map(|i| a.voters(i)).collect::<Option<_>>()?;
        let l = views[0]["leader"].clone();
        let ok = views
            .iter()
            .all(|v| v["leader"] == l && v["voters"].as_array().is_some_and(|x| x.len() == 3));
        ok.then(|| name_index(&l)).flatten()
    })
    .unwrap_or_else(|| panic!("no leader with 3 voters within 30 s; n0 log:\n{}", a.log(0)))
}

#[test]
fn metadata_survives_kill_9_of_the_leader_and_loses_no_acknowledged_write() {
    let n = 5;
    let mut a = Agents::new(tmp("kill"), n);
    // A leader with 3 voters, seen by every node.
    let leader = leader_with_three_voters(&a, n);
    let voters: Vec<usize> = a.voters(0).unwrap()["voters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(name_index)
        .collect();
    let non_voter = (0..n).find(|i| !voters.contains(i)).unwrap();
    println!("leader n{leader}, voters {voters:?}, writing through non-voter n{non_voter}");

    // A write through a non-voter commits; every node reads it back
    // (linearizable), and every node's local copy has it soon after.
    let (status, v) = http(a.http[non_voter], "PUT", "/v1/meta/app%2Fconfig", "v1").unwrap();
    assert_eq!(status, 200, "{v}");
    let written = Instant::now();
    for i in 0..n {
        let (status, v) = http(a.http[i], "GET", "/v1/meta/app%2Fconfig", "").unwrap();
        assert_eq!(
            (status, v["value"].as_str()),
            (200, Some("v1")),
            "n{i}: {v}"
        );
    }
    let stale_everywhere = wait_for(Duration::from_secs(10), || {
        (0..n)
            .all(|i| {
                http(a.http[i], "GET", "/v1/meta/app%2Fconfig?stale=true", "")
                    .is_some_and(|(s, v)| s == 200 && v["value"] == "v1")
            })
            .then(|| written.elapsed())
    })
    .expect("stale copies never caught up");
    println!("commit visible to a stale read on every member after {stale_everywhere:?}");
    assert!(stale_everywhere < Duration::from_secs(2));

    // Writes through every node in turn, before and after kill -9 of the
    // leader's process.
    let mut acked: Vec<(String, String)> = Vec::new();
    let last_index = std::cell::Cell::new(0);
    let mut write = |a: &Agents, k: usize, alive: &dyn Fn(usize) -> bool| -> bool {
        let i = (0..n).map(|d| (k + d) % n).find(|&i| alive(i)).unwrap();
        let key = format!("w{k}");
        let val = format!("value-{k}");
        match http(a.http[i], "PUT", &format!("/v1/meta/{key}"), &val) {
            Some((200, v)) => {
                acked.push((key, val));
                last_index.set(v["index"].as_u64().expect("a write's index"));
                true
            }
            _ => false,
        }
    };
    for k in 0..20 {
        assert!(write(&a, k, &|_| true), "write {k} before the kill failed");
    }
    // What the leader acknowledged it holds on its disk.
    let acked_before_kill = last_index.get();
    a.kill9(leader);
    let killed_at = Instant::now();
    let mut k = 20;
    let recovered = wait_for(Duration::from_secs(20), || {
        k += 1;
        write(&a, k, &|i| i != leader).then(|| killed_at.elapsed())
    })
    .expect("writes never succeeded again after the leader was killed");
    println!("writes succeed again {recovered:?} after kill -9 of the leader");
    assert!(recovered < Duration::from_secs(10));
    for _ in 0..20 {
        k += 1;
        write(&a, k, &|i| i != leader);
    }

    // The killed node comes back on its data dir and catches up.
    a.start(leader);
    let restarted = Instant::now();
    let last = acked.last().unwrap().clone();
    let caught_up = wait_for(Duration::from_secs(20), || {
        http(
            a.http[leader],
            "GET",
            &format!("/v1/meta/{}?stale=true", last.0),
            "",
        )
        .filter(|(s, v)| *s == 200 && v["value"] == last.1.as_str())
        .map(|_| restarted.elapsed())
    })
    .unwrap_or_else(|| panic!("restarted node never caught up; log:\n{}", a.log(leader)));
    println!("restarted n{leader} caught up after {caught_up:?}");
    // Durability: the restarted node read back from its own disk at least
    // every entry it had acknowledged before the kill.
    let log = a.log(leader);
    let loaded = log
        .lines()
        .find(|l| l.contains("loaded raft state from disk"))
        .and_then(|l| l.split("last_index=").nth(1))
        .and_then(|x| x.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|x| x.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("the restarted node loaded no raft state; log:\n{log}"));
    println!(
        "restarted node loaded its raft log from disk up to index {loaded} \
         (acknowledged before the kill: {acked_before_kill})"
    );
    assert!(loaded >= acked_before_kill);

    // Every acknowledged write is there, read linearizably through some
    // node, and in the restarted node's copy.
    let mut lost = 0;
    for (i, (key, val)) in acked.iter().enumerate() {
        let via = i % n;
        let ok = http(a.http[via], "GET", &format!("/v1/meta/{key}"), "")
            .is_some_and(|(s, v)| s == 200 && v["value"] == val.as_str());
        let copy = http(
            a.http[leader],
            "GET",
            &format!("/v1/meta/{key}?stale=true"),
            "",
        )
        .is_some_and(|(s, v)| s == 200 && v["value"] == val.as_str());
        if !ok || !copy {
            lost += 1;
        }
    }
    println!("{} acknowledged writes, {lost} lost", acked.len());
    assert!(acked.len() >= 41);
    assert_eq!(lost, 0);
}

#[test]
fn metadata_routes_refuse_bad_input() {
    let n = 3;
    let a = Agents::new(tmp("routes"), n);
    wait_for(Duration::from_secs(30), || {
        a.voters(0).filter(|v| {
            v["leader"].is_string()
                && v["quorum"] == true
                && v["voters"].as_array().is_some_and(|x| x.len() == 3)
        })
    })
    .expect("no leader within 30 s");
    let p = a.http[1];
    // Unknown key.
    let (s, v) = http(p, "GET", "/v1/meta/nope", "").unwrap();
    assert_eq!((s, v["error"].as_str()), (404, Some("unknown_key")));
    let (s, v) = http(p, "DELETE", "/v1/meta/nope", "").unwrap();
    assert_eq!((s, v["error"].as_str()), (404, Some("unknown_key")));
    // Malformed compare-and-set body.
    let (s, v) = http(p, "POST", "/v1/meta/k", "{not json").unwrap();
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_json")));
    let (s, v) = http(p, "POST", "/v1/meta/k", r#"{"expect":null,"valeu":"x"}"#).unwrap();
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_json")));
    // Oversized body (over the 64 KiB request limit).
    let big = "x".repeat(65 * 1024);
    let (s, v) = http(p, "PUT", "/v1/meta/k", &big).unwrap();
    assert_eq!((s, v["error"].as_str()), (413, Some("body_too_large")));
    // Over the key limit.
    let long = "k".repeat(300);
    let (s, v) = http(p, "PUT", &format!("/v1/meta/{long}"), "x").unwrap();
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
    // Compare-and-set, list, delete.
    let (s, v) = http(p, "POST", "/v1/meta/k", r#"{"expect":null,"value":"a"}"#).unwrap();
    assert_eq!((s, v["swapped"].as_bool()), (200, Some(true)), "{v}");
    let (s, v) = http(p, "POST", "/v1/meta/k", r#"{"expect":"zzz","value":"b"}"#).unwrap();
    assert_eq!((s, v["swapped"].as_bool()), (200, Some(false)), "{v}");
    assert_eq!(v["current"], "a");
    let (s, v) = http(p, "GET", "/v1/meta?prefix=k", "").unwrap();
    assert_eq!(s, 200);
    assert_eq!(
        v,
        serde_json::json!([{"key": "k", "value": "a", "encoding": "utf-8"}])
    );
    let (s, _) = http(p, "DELETE", "/v1/meta/k", "").unwrap();
    assert_eq!(s, 200);
    // Voters and status name the leader and the voters.
    let (s, v) = http(p, "GET", "/v1/status", "").unwrap();
    assert_eq!(s, 200);
    assert!(v["raft"]["leader"].is_string(), "{v}");
    assert_eq!(v["raft"]["voters"].as_array().map(Vec::len), Some(3));
    // The CLI shows the same.
    let out = roster()
        .args(["voters", "--http", &format!("127.0.0.1:{p}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("leader") && text.contains("commit index"),
        "{text}"
    );
    let _ = Path::new(&a.dir);
}

fn key_owners(a: &Agents, i: usize, key: &str) -> Option<(String, Vec<String>)> {
    let out = roster()
        .args([
            "partitions",
            "--key",
            key,
            "--json",
            "--http",
            &format!("127.0.0.1:{}", a.http[i]),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let replicas = v["replicas"]
        .as_array()?
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    Some((v["primary"].as_str()?.to_owned(), replicas))
}

#[test]
fn every_node_names_the_same_owners_and_a_crashed_node_is_dropped() {
    let n = 5;
    let mut a = Agents::new(tmp("placement"), n);
    // The same answer through every node.
    let owners = wait_for(Duration::from_secs(40), || {
        let answers: Vec<_> = (0..n)
            .map(|i| key_owners(&a, i, "user:123"))
            .collect::<Option<_>>()?;
        let first = answers[0].clone();
        (answers.iter().all(|x| *x == first) && first.1.len() == 2).then_some(first)
    })
    .unwrap_or_else(|| panic!("nodes never agreed on user:123; n0 log:\n{}", a.log(0)));
    println!(
        "user:123 -> primary {}, replicas {:?} on every node",
        owners.0, owners.1
    );
    let (s, v) = http(a.http[0], "GET", "/v1/partitions", "").unwrap();
    assert_eq!(s, 200);
    assert_eq!(v["partition_count"], 256);
    let counts = v["nodes"].as_object().unwrap();
    assert_eq!(counts.len(), n);
    // Stop (kill -9) the primary of user:123.
    let victim = owners
        .0
        .strip_prefix('n')
        .unwrap()
        .parse::<usize>()
        .unwrap();
    a.kill9(victim);
    let t0 = Instant::now();
    let survivors: Vec<usize> = (0..n).filter(|&i| i != victim).collect();
    let mut detected = None;
    let mut cleared = None;
    let name = format!("n{victim}");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(40) && (detected.is_none() || cleared.is_none()) {
        if detected.is_none()
            && survivors.iter().all(|&i| {
                http(a.http[i], "GET", "/v1/members", "").is_some_and(|(_, v)| {
                    v.as_array().is_some_and(|m| {
                        m.iter()
                            .any(|x| x["id"] == name.as_str() && x["state"] == "down")
                    })
                })
            })
        {
            detected = Some(t0.elapsed());
        }
        if cleared.is_none()
            && survivors.iter().all(|&i| {
                key_owners(&a, i, "user:123")
                    .is_some_and(|(p, r)| p != name && !r.contains(&name) && r.len() == 2)
            })
        {
            cleared = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let detected = detected.expect("crash never detected by every survivor");
    let cleared = cleared.expect("the crashed node was never dropped from user:123's owners");
    println!(
        "crash detected by every survivor after {detected:?}; user:123 no longer names it after {cleared:?}"
    );
    assert!(cleared <= detected + Duration::from_secs(3));
}

/// A voter's data dir is emptied and the voter restarted on it at once; once
/// it has caught up, the leader is killed: every acknowledged write is
/// still read back linearizably through the two voters left.
#[test]
fn a_voter_restarted_on_an_empty_data_dir_loses_no_acknowledged_write() {
    let n = 3;
    let mut a = Agents::new(tmp("wipe"), n);
    let leader = leader_with_three_voters(&a, n);
    let wiped = (leader + 1) % n;
    let other = (leader + 2) % n;
    let mut acked: Vec<(String, String)> = Vec::new();
    let put = |a: &Agents, via: usize, k: usize, acked: &mut Vec<(String, String)>| {
        let (key, val) = (format!("w{k}"), format!("value-{k}"));
        let ok = matches!(
            http(a.http[via], "PUT", &format!("/v1/meta/{key}"), &val),
            Some((200, _))
        );
        if ok {
            acked.push((key, val));
        }
        ok
    };
    for k in 0..20 {
        assert!(put(&a, k % n, k, &mut acked), "write {k} failed");
    }

    // The voter's data dir is lost; it comes back at once on an empty one.
    a.kill9(wiped);
    std::fs::remove_dir_all(a.dir.join(format!("n{wiped}")).join("data")).unwrap();
    a.start(wiped);
    let last = acked.last().unwrap().clone();
    wait_for(Duration::from_secs(30), || {
        http(
            a.http[wiped],
            "GET",
            &format!("/v1/meta/{}?stale=true", last.0),
            "",
        )
        .filter(|(s, v)| *s == 200 && v["value"] == last.1.as_str())
    })
    .unwrap_or_else(|| panic!("the emptied voter never caught up; log:\n{}", a.log(wiped)));
    for k in 20..30 {
        assert!(put(&a, leader, k, &mut acked), "write {k} failed");
    }
    wait_for(Duration::from_secs(30), || {
        a.log(wiped)
            .contains("caught up with the leader")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no catch-up logged; log:\n{}", a.log(wiped)));

    // The leader dies: the emptied voter and the other elect a leader that
    // holds every acknowledged write.
    a.kill9(leader);
    let mut k = 30;
    wait_for(Duration::from_secs(30), || {
        k += 1;
        put(&a, other, k, &mut acked).then_some(())
    })
    .unwrap_or_else(|| panic!("no writes after the leader died; log:\n{}", a.log(wiped)));
    let mut lost = Vec::new();
    for (i, (key, val)) in acked.iter().enumerate() {
        let via = if i % 2 == 0 { wiped } else { other };
        let ok = http(a.http[via], "GET", &format!("/v1/meta/{key}"), "")
            .is_some_and(|(s, v)| s == 200 && v["value"] == val.as_str());
        if !ok {
            lost.push(key.clone());
        }
    }
    println!("{} acknowledged writes, lost {lost:?}", acked.len());
    assert!(acked.len() >= 31);
    assert!(lost.is_empty(), "lost {lost:?}");
}
