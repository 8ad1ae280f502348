//! Three agents on three "hosts": each in its own network namespace with its
//! own address from 198.18.0.0/15 (reserved for network benchmarking), the
//! namespaces joined by veth pairs to a bridge in a fourth namespace. The
//! test builds all of it and tears it down; nothing touches the host's own
//! interfaces. Loss and delay come from the agents' fault filter (this
//! kernel has no `netem`); a link cut is a veth set down on the bridge.
//!
//! Needs root and `ip` (iproute2); without them the test says loudly why it
//! skipped, or fails if `ROSTER_REQUIRE_NETNS` is set (as `.ci/run` does).
//!
//! The agents are real processes, so the test reads the real clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const HOSTS: [&str; 3] = ["a", "b", "c"];
const HTTP: &str = "127.0.0.1:8946";

/// Runs `ip ARGS`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why this machine cannot run the test, if it cannot: not root, no `ip`,
/// or a kernel (or container) that refuses network namespaces.
fn cannot_run(probe: &str) -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root: creating network namespaces needs root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("no `ip` command (iproute2 is not installed)".into());
    }
    if let Err(e) = ip(&["netns", "add", probe]) {
        return Some(format!("network namespaces are not available: {e}"));
    }
    let _ = ip(&["netns", "del", probe]);
    None
}

/// The namespaces and agents; dropping it kills the agents and deletes the
/// namespaces (and with them every veth and the bridge).
struct Lab {
    prefix: String,
    dir: PathBuf,
    agents: Vec<Child>,
}

impl Lab {
    fn ns(&self, host: &str) -> String {
        format!("{}{host}", self.prefix)
    }

    fn bridge_ns(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// Builds the namespaces, the bridge and the veth pairs: host I is
    /// 198.18.0.(I+1)/24 on its `eth0`.
    fn build(&self) -> Result<(), String> {
        let br = self.bridge_ns();
        ip(&["netns", "add", &br])?;
        ip(&["-n", &br, "link", "set", "lo", "up"])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for (i, h) in HOSTS.iter().enumerate() {
            let ns = self.ns(h);
            ip(&["netns", "add", &ns])?;
            let port = format!("veth-{h}");
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &br, "link", "set", &port, "up"])?;
            let addr = format!("198.18.0.{}/24", i + 1);
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Starts host `h`'s agent inside its namespace.
    fn start(&mut self, i: usize) {
        let h = HOSTS[i];
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(h)])
            .arg(env!("CARGO_BIN_EXE_roster"))
            .args(["agent", "--profile", "local", "--http", HTTP])
            .args(["--bind", &format!("198.18.0.{}:7946", i + 1)])
            .arg("--tls-dir")
            .arg(self.dir.join(h))
            .arg("--data-dir")
            .arg(self.dir.join(format!("{h}-data")));
        if i > 0 {
            cmd.args(["--join", "198.18.0.1:7946"]);
        }
        let log = std::fs::File::create(self.dir.join(format!("{h}.log"))).unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        self.agents.push(cmd.spawn().unwrap());
    }

    /// Runs `roster ARGS` inside host `h`'s namespace against its agent.
    fn client(&self, h: &str, args: &[&str]) -> Option<Value> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(h)])
            .arg(env!("CARGO_BIN_EXE_roster"))
            .args(args)
            .args(["--http", HTTP, "--json"])
            // Every namespace's agent listens on the same loopback address,
            // so the token record by address is ambiguous here: name it.
            .arg("--token-file")
            .arg(self.dir.join(format!("{h}-data")).join("http-token"))
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// What host `h`'s agent says of `member` ("alive", "down", ...).
    fn state_of(&self, h: &str, member: &str) -> Option<String> {
        let list = self.client(h, &["members"])?;
        list.as_array()?
            .iter()
            .find(|m| m["id"] == member)
            .and_then(|m| m["state"].as_str().map(str::to_owned))
    }

    /// Panics unless every agent process is still running.
    fn assert_running(&mut self) {
        let dead = self.agents.iter_mut().enumerate().find_map(|(i, a)| {
            let status = a.try_wait().ok().flatten()?;
            Some((HOSTS[i], status))
        });
        if let Some((h, status)) = dead {
            panic!("{h}'s agent exited ({status}):\n{}", self.log(h));
        }
    }

    fn log(&self, h: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{h}.log"))).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for a in &mut self.agents {
            let _ = a.kill();
            let _ = a.wait();
        }
        for h in HOSTS {
            let _ = ip(&["netns", "del", &self.ns(h)]);
        }
        let _ = ip(&["netns", "del", &self.bridge_ns()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn three_hosts_in_network_namespaces_detect_a_cut_link_and_heal() {
    let pid = std::process::id();
    if let Some(why) = cannot_run(&format!("rst{pid}probe")) {
        if std::env::var_os("ROSTER_REQUIRE_NETNS").is_some() {
            panic!("ROSTER_REQUIRE_NETNS is set but the network-namespace test cannot run: {why}");
        }
        eprintln!(
            "\n*** SKIPPED three_hosts_in_network_namespaces_detect_a_cut_link_and_heal: {why} \
             (needs root and iproute2; .ci/run runs it with ROSTER_REQUIRE_NETNS set) ***\n"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("roster-netns-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut lab = Lab {
        prefix: format!("rst{pid}"),
        dir: dir.clone(),
        agents: Vec::new(),
    };
    lab.build().unwrap();
    common::certs(&dir, &HOSTS);
    for i in 0..HOSTS.len() {
        lab.start(i);
    }

    // Every host sees the other two alive.
    let all_alive = |lab: &Lab| {
        HOSTS.iter().all(|h| {
            HOSTS
                .iter()
                .filter(|m| *m != h)
                .all(|m| lab.state_of(h, m).as_deref() == Some("alive"))
        })
    };
    let t = common::wait_until(Duration::from_secs(30), || all_alive(&lab))
        .unwrap_or_else(|| panic!("the three hosts never saw each other:\n{}", lab.log("b")));
    println!("3 hosts in 3 namespaces see each other after {t:?}");

    // Loss and delay from the agents' own fault filter: 5% drop both ways,
    // 20 ms +- 10 ms delay on every host; nobody is declared Down.
    for h in HOSTS {
        let v = lab
            .client(
                h,
                &[
                    "chaos", "set", "--drop", "0.05", "--delay", "20", "--jitter", "10",
                ],
            )
            .expect("chaos set");
        assert!(v["rules"]["drop"] == 0.05, "{v}");
    }
    let started = Instant::now();
    let mut looked = 0;
    while started.elapsed() < Duration::from_secs(8) {
        // A dead agent answers nothing, which must not pass for "no Down".
        lab.assert_running();
        for h in HOSTS {
            for m in HOSTS.iter().filter(|m| **m != h) {
                let s = lab.state_of(h, m);
                assert!(
                    matches!(s.as_deref(), Some("alive" | "suspect")),
                    "{h} holds {m} {s:?} under 5% loss (Down, or no answer)"
                );
                looked += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        looked >= 6,
        "the loss phase looked at {looked} member states"
    );
    let dropped: u64 = HOSTS
        .iter()
        .filter_map(|h| lab.client(h, &["chaos", "show"])?["dropped"].as_u64())
        .sum();
    println!("8 s of 5% loss and 20+-10 ms delay: no Down ({dropped} messages dropped)");
    assert!(dropped > 0, "the filter dropped nothing");
    // The cut is measured without the loss (the delay stays): in a cluster
    // of three, the two survivors probe the dead host every other period,
    // and with loss their health score may stay above the judging
    // threshold long enough that neither reaches a verdict within the
    // limit below (seen once in CI).
    for h in HOSTS {
        let v = lab
            .client(h, &["chaos", "set", "--delay", "20", "--jitter", "10"])
            .expect("chaos set");
        assert!(v["rules"]["drop"] == 0.0, "{v}");
    }

    // Cut c's link on the bridge: a and b declare it Down.
    ip(&["-n", &lab.bridge_ns(), "link", "set", "veth-c", "down"]).unwrap();
    let cut = Instant::now();
    let t = common::wait_until(Duration::from_secs(30), || {
        ["a", "b"]
            .iter()
            .all(|h| lab.state_of(h, "c").as_deref() == Some("down"))
    })
    .unwrap_or_else(|| panic!("c never Down on a and b:\n{}", lab.log("a")));
    println!("c Down on a and b {t:?} after its link was cut");
    lab.assert_running();
    // a and b still hold each other as members (a probe lost to the 5%
    // loss may leave one Suspect for a moment; Down it must not be).
    for (h, m) in [("a", "b"), ("b", "a")] {
        let s = lab.state_of(h, m);
        assert!(
            matches!(s.as_deref(), Some("alive" | "suspect")),
            "{h} holds {m} {s:?} after c was cut"
        );
    }

    // Restore the link: c is Alive everywhere again (the filter still on).
    ip(&["-n", &lab.bridge_ns(), "link", "set", "veth-c", "up"]).unwrap();
    let t = common::wait_until(Duration::from_secs(60), || all_alive(&lab))
        .unwrap_or_else(|| panic!("c never came back:\n{}", lab.log("c")));
    println!(
        "c Alive everywhere {t:?} after its link came back ({:?} after the cut)",
        cut.elapsed()
    );
    lab.assert_running();
}
