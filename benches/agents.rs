//! Real agents at scale on one machine: starts N `roster agent` processes on
//! loopback (profile `lan`), and reports as JSON
//!
//! - `apis_answer_s`: from the last agent's start until every agent's HTTP
//!   API answers (the earliest `all_see_all_s` can be measured);
//! - `all_see_all_s`: from the last agent's start until every agent sees
//!   every other Alive; by then, `handshakes_until_all_see_all` (QUIC
//!   connections the agents opened, a TLS handshake each) and
//!   `agents_cpu_s_until_all_see_all` (CPU seconds all agents used);
//! - over `idle_s` idle seconds: per-agent RSS and CPU% (median and max),
//!   messages and bytes sent per agent per second (`roster_messages_total`, `roster_bytes_total`, direction tx);
//!   QUIC connections opened per agent per second
//!   (`handshakes_per_agent_s_idle`: a connection idle for
//!   `CONNECTION_IDLE_TIMEOUT` closes, and the next message opens another);
//! - after `kill -9` of one agent: until the first and the last survivor
//!   see it Down (`detect_first_s`, `detect_last_s`);
//! - after SIGTERM of another: until every survivor sees it Left
//!   (`leave_all_s`);
//! - `binary`, `binary_bytes`: the agent binary run and its size;
//! - `false_downs`: Downs of any other member seen by any agent, sampled
//!   throughout.
//! - `open_connections_median`, `open_connections_max`: QUIC connections
//!   an agent holds open at the end of the idle time.
//!
//! Not part of the test run. Usage (Linux):
//!
//! ```sh
//! cargo bench --bench agents -- 100 200      # N values; default 20
//! ROSTER_SCALE_IDLE_S=60 cargo bench --bench agents -- 200
//! ROSTER_SCALE_TRACE=1 cargo bench --bench agents -- 200   # a line per poll sweep
//! ROSTER_SCALE_LOG=info cargo bench --bench agents -- 20   # the agents' log level (warn)
//! ROSTER_SCALE_BIN=target/dist/roster cargo bench --bench agents -- 20   # another agent binary
//! ROSTER_SCALE_KEEP=1 cargo bench --bench agents -- 20   # keep the directory (agents' logs)
//! ```
//!
//! Each run also writes `target/scale-agents-N.json`. A run with false
//! Downs, or a phase that never ended, keeps its directory (the agents'
//! logs) and says where. When `ROSTER_SCALE_LOG` names `info`, `debug` or
//! `trace`, the report also counts the `member suspected` lines the agents
//! logged until all saw all (`suspect_lines_until_all_see_all`: one per
//! agent that came to hold a member Suspect) and the distinct members they
//! name (`members_suspected_until_all_see_all`); every agent was alive, so
//! each was a false suspicion. Both are `null` otherwise, or when all never
//! saw all.
#![allow(clippy::disallowed_methods)] // measures real processes: real clock

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster::api::client::{Agent, request};
use roster::node::NodeId;
use roster::runtime::tls::ClusterCa;
use serde_json::{Value, json};

/// Agents started at once before a short pause (keeps the start from
/// saturating the machine).
const START_BATCH: usize = 20;
/// Seeds every agent joins through.
const SEEDS: usize = 3;

struct Proc {
    name: String,
    child: Child,
    http: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` distinct ports, each free for both UDP and TCP on loopback, from
/// 20000..32000: below Linux's ephemeral range, so that no outgoing
/// connection takes one between the probe and the agent's bind.
fn free_ports(n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    let mut p = 20_000u16 + (std::process::id() % 4000) as u16;
    while out.len() < n {
        assert!(p < 32_000, "not enough free ports in 20000..32000");
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        {
            out.push(p);
        }
        p += 1;
    }
    out
}

fn agent(p: &Proc, runtime: &Path) -> Agent {
    // The agent records its token in the runtime directory.
    let token = roster::api::credentials::lookup_in(runtime, &p.http)
        .ok()
        .flatten();
    Agent {
        addr: p.http.clone(),
        token,
        tls: None,
    }
}

/// Threads that poll the agents' APIs. One poller, asking each agent in
/// turn, needed 12 s for one sweep of 200 agents while they formed (each
/// answer waits for CPU on a saturated machine), so a sweep, not the
/// cluster, set the measured time.
const POLLERS: usize = 8;

/// `f(i)` for every `i` in `0..n` where `want(i)`, spread over [`POLLERS`]
/// threads; the results in index order (`None` where not wanted).
fn poll_each<T: Send>(
    n: usize,
    want: impl Fn(usize) -> bool + Sync,
    f: impl Fn(usize) -> T + Sync,
) -> Vec<Option<T>> {
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..POLLERS)
            .map(|t| {
                let (want, f) = (&want, &f);
                scope.spawn(move || {
                    (t..n)
                        .step_by(POLLERS)
                        .filter(|i| want(*i))
                        .map(|i| (i, f(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for (i, v) in h.join().expect("poller thread") {
                out[i] = Some(v);
            }
        }
    });
    out
}

/// Whether `ROSTER_SCALE_TRACE` asks for a line per poll sweep.
fn tracing() -> bool {
    std::env::var_os("ROSTER_SCALE_TRACE").is_some()
}

/// `/v1/status` members counts of one agent: (alive, suspect, down, left).
fn counts(a: &Agent) -> Option<(u64, u64, u64, u64)> {
    let (s, v) = request(a, "GET", "/v1/status", b"").ok()?;
    if s != 200 {
        return None;
    }
    let m = &v["members"];
    Some((
        m["alive"].as_u64()?,
        m["suspect"].as_u64()?,
        m["down"].as_u64()?,
        m["left"].as_u64()?,
    ))
}

/// RSS in KiB and CPU ticks (user + system) of a process.
fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0]; utime [11], stime [12].
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

/// PSS and anonymous memory in KiB (`/proc/PID/smaps_rollup`): RSS also
/// counts the pages of the binary, which every agent on the machine
/// shares; these count what one agent costs.
fn proc_private(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((field("Pss:")?, field("Anonymous:")?))
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Sums a counter family's samples whose labels contain `label`.
fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn metrics_text(a: &Agent) -> Option<String> {
    let (_, raw) = roster::api::client::request_raw(a, "GET", "/metrics", b"").ok()?;
    String::from_utf8(raw).ok()
}

/// Messages and bytes sent, and QUIC connections opened, so far.
fn sent(a: &Agent) -> Option<(f64, f64, f64)> {
    let text = metrics_text(a)?;
    Some((
        metric_sum(&text, "roster_messages_total", "direction=\"tx\""),
        metric_sum(&text, "roster_bytes_total", "direction=\"tx\""),
        metric_sum(&text, "roster_connections_opened_total", ""),
    ))
}

fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let med = if v.is_empty() { 0.0 } else { v[v.len() / 2] };
    (med, v.last().copied().unwrap_or(0.0))
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// Polls until `done` holds for every agent in `set` (at most `limit`);
/// returns (first agent's time, last agent's time) from `since`, and adds
/// the false Downs seen on the way (per agent, the most Downs it showed
/// beyond `expected_down`).
fn wait_all(
    agents: &[Agent],
    since: Instant,
    limit: Duration,
    expected_down: u64,
    false_downs: &mut u64,
    done: impl Fn((u64, u64, u64, u64)) -> bool,
) -> Option<(f64, f64)> {
    let mut first: Option<f64> = None;
    let mut reached = vec![false; agents.len()];
    // The most Downs beyond those expected that each agent showed.
    let mut worst = vec![0u64; agents.len()];
    // ROSTER_SCALE_TRACE=1: one line per sweep on stderr (when, how many
    // agents are done, the fewest Alive any agent not yet done counted, and
    // how long the sweep of HTTP polls took).
    let trace = tracing();
    let result = loop {
        if since.elapsed() >= limit {
            break None;
        }
        let sweep = Instant::now();
        let mut fewest_alive: Option<u64> = None;
        let polled = poll_each(agents.len(), |i| !reached[i], |i| counts(&agents[i]));
        for (i, c) in polled.into_iter().enumerate() {
            if let Some(Some(c)) = c {
                worst[i] = worst[i].max(c.2.saturating_sub(expected_down));
                fewest_alive = Some(fewest_alive.map_or(c.0, |f| f.min(c.0)));
                if done(c) {
                    reached[i] = true;
                    first.get_or_insert(since.elapsed().as_secs_f64());
                }
            }
        }
        if trace {
            eprintln!(
                "trace t={:.2}s done={}/{} fewest_alive={:?} sweep_ms={}",
                since.elapsed().as_secs_f64(),
                reached.iter().filter(|r| **r).count(),
                agents.len(),
                fewest_alive,
                sweep.elapsed().as_millis()
            );
        }
        if reached.iter().all(|r| *r) {
            break Some((first.unwrap_or(0.0), since.elapsed().as_secs_f64()));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    *false_downs += worst.iter().sum::<u64>();
    result
}

/// Sends `signal` to the last agent, then waits (up to `limit_s`) until
/// every other agent's counts satisfy `done`; one Down (the first stopped
/// agent's) is expected from here on.
fn stop_last(
    procs: &mut Vec<Proc>,
    agents: &mut Vec<Agent>,
    signal: &str,
    false_downs: &mut u64,
    limit_s: u64,
    done: impl Fn((u64, u64, u64, u64)) -> bool,
) -> Option<(f64, f64)> {
    let victim = procs.pop()?;
    agents.pop();
    let at = Instant::now();
    let _ = Command::new("kill")
        .args([signal, &victim.child.id().to_string()])
        .status();
    let r = wait_all(
        agents,
        at,
        Duration::from_secs(limit_s),
        1,
        false_downs,
        done,
    );
    drop(victim);
    r
}

/// The agents' log level (`ROSTER_SCALE_LOG`, default `warn`).
fn log_level() -> String {
    std::env::var("ROSTER_SCALE_LOG").unwrap_or_else(|_| "warn".into())
}

/// The `member suspected` lines the agents in `dir` logged so far, and the
/// distinct members they name; `None` unless the agents log at `info` or
/// more verbose (suspicions are logged at `info`).
fn suspicions(dir: &Path, names: &[String]) -> Option<(u64, usize)> {
    let level = log_level().to_lowercase();
    if !["info", "debug", "trace"].iter().any(|l| level.contains(l)) {
        return None;
    }
    let mut lines = 0;
    let mut members = std::collections::BTreeSet::new();
    for name in names {
        let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("member suspected")) {
            lines += 1;
            if let Some(m) = line.split("member=").nth(1) {
                members.insert(m.split('#').next().unwrap_or(m).to_owned());
            }
        }
    }
    Some((lines, members.len()))
}

fn run(n: usize, idle: Duration) -> Value {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("roster-scale-{n}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let runtime = dir.join("run");
    let ca = ClusterCa::generate("scale").unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("n{i:03}")).collect();
    for name in &names {
        ca.issue(&NodeId::new(name.clone()).unwrap())
            .unwrap()
            .save(&dir.join(name))
            .unwrap();
    }
    let free = free_ports(2 * n);
    let ports: Vec<(u16, u16)> = (0..n).map(|i| (free[2 * i], free[2 * i + 1])).collect();
    let seeds: Vec<String> = ports[..SEEDS.min(n)]
        .iter()
        .map(|(g, _)| format!("127.0.0.1:{g}"))
        .collect();
    // The agent binary: this build's, or another (`ROSTER_SCALE_BIN`, for
    // example the `dist` profile's `target/dist/roster`).
    let exe =
        std::env::var("ROSTER_SCALE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_roster").into());
    let mut procs = Vec::new();
    let t0 = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let (g, h) = ports[i];
        let http = format!("127.0.0.1:{h}");
        let mut c = Command::new(&exe);
        c.args([
            "agent",
            "--profile",
            "lan",
            "--bind",
            &format!("127.0.0.1:{g}"),
        ])
        .arg("--tls-dir")
        .arg(dir.join(name))
        .args(["--http", &http])
        .env("ROSTER_RUNTIME_DIR", &runtime)
        .env("RUST_LOG", log_level())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join(format!("{name}.log")))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        );
        for s in &seeds {
            if *s != format!("127.0.0.1:{g}") {
                c.args(["--join", s]);
            }
        }
        procs.push(Proc {
            name: name.clone(),
            child: c.spawn().expect("spawn roster agent"),
            http,
        });
        if (i + 1) % START_BATCH == 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let started = t0.elapsed().as_secs_f64();
    let last_start = Instant::now();
    // Wait for every API to answer (tokens recorded), trying each agent in
    // turn so that one slow start holds up no other.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut slots: Vec<Option<Agent>> = procs.iter().map(|_| None).collect();
    loop {
        let answered = poll_each(
            procs.len(),
            |i| slots[i].is_none(),
            |i| {
                let a = agent(&procs[i], &runtime);
                (a.token.is_some() && counts(&a).is_some()).then_some(a)
            },
        );
        for (slot, a) in slots.iter_mut().zip(answered) {
            if let Some(Some(a)) = a {
                *slot = Some(a);
            }
        }
        if tracing() {
            eprintln!(
                "trace t={:.2}s apis answered={}/{}",
                last_start.elapsed().as_secs_f64(),
                slots.iter().filter(|s| s.is_some()).count(),
                slots.len()
            );
        }
        let Some(late) = slots.iter().position(Option::is_none) else {
            break;
        };
        assert!(
            Instant::now() < deadline,
            "{} never answered (see its log in {})",
            procs[late].name,
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let apis_answer_s = last_start.elapsed().as_secs_f64();
    let mut agents: Vec<Agent> = slots.into_iter().flatten().collect();
    let mut false_downs = 0;
    let all = wait_all(
        &agents,
        last_start,
        Duration::from_secs(300),
        0,
        &mut false_downs,
        |c| c.0 == n as u64,
    );
    let all_see_all_s = all.map(|(_, last)| round(last, 2));
    let suspected = all.and_then(|_| suspicions(&dir, &names));
    eprintln!("{n} agents: all see all after {all_see_all_s:?} s");
    // What forming the cluster cost until then: the QUIC connections the
    // agents opened (a TLS handshake each) and the CPU time they used.
    let tck = clock_ticks() as f64;
    let handshakes: f64 = agents
        .iter()
        .filter_map(|a| {
            Some(metric_sum(
                &metrics_text(a)?,
                "roster_connections_opened_total",
                "",
            ))
        })
        .sum();
    let start_cpu_s: f64 = procs
        .iter()
        .filter_map(|p| proc_usage(p.child.id()))
        .map(|(_, ticks)| ticks as f64 / tck)
        .sum();

    // Idle: RSS, CPU and traffic over `idle`.
    let before: Vec<Option<(u64, u64)>> = procs.iter().map(|p| proc_usage(p.child.id())).collect();
    let sent_before: Vec<Option<(f64, f64, f64)>> = agents.iter().map(sent).collect();
    let idle_start = Instant::now();
    std::thread::sleep(idle);
    let secs = idle_start.elapsed().as_secs_f64();
    let sent_after: Vec<Option<(f64, f64, f64)>> = agents.iter().map(sent).collect();
    // QUIC connections each agent holds open at the end of the idle time.
    let open: Vec<f64> = agents
        .iter()
        .filter_map(|a| Some(metric_sum(&metrics_text(a)?, "roster_open_connections", "")))
        .collect();
    let after: Vec<Option<(u64, u64)>> = procs.iter().map(|p| proc_usage(p.child.id())).collect();
    let mut rss_mb = Vec::new();
    let mut cpu = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        if let (Some(b), Some(a)) = (b, a) {
            rss_mb.push(a.0 as f64 / 1024.0);
            cpu.push((a.1 - b.1) as f64 / tck / secs * 100.0);
        }
    }
    let mut dgrams = Vec::new();
    let mut bytes = Vec::new();
    let mut opened = 0.0;
    for (b, a) in sent_before.iter().zip(&sent_after) {
        if let (Some(b), Some(a)) = (b, a) {
            dgrams.push((a.0 - b.0) / secs);
            bytes.push((a.1 - b.1) / secs);
            opened += a.2 - b.2;
        }
    }
    let private: Vec<(u64, u64)> = procs
        .iter()
        .filter_map(|p| proc_private(p.child.id()))
        .collect();
    let (pss_med, _) = median_max(private.iter().map(|p| p.0 as f64 / 1024.0).collect());
    let (anon_med, anon_max) = median_max(private.iter().map(|p| p.1 as f64 / 1024.0).collect());
    let (rss_med, rss_max) = median_max(rss_mb);
    let (cpu_med, cpu_max) = median_max(cpu);
    let (dg_med, _) = median_max(dgrams);
    let (by_med, _) = median_max(bytes);
    let (open_med, open_max) = median_max(open);
    let total_cpu: f64 = {
        let mut t = 0.0;
        for (b, a) in before.iter().zip(&after) {
            if let (Some(b), Some(a)) = (b, a) {
                t += (a.1 - b.1) as f64 / tck / secs * 100.0;
            }
        }
        t
    };
    // Any Down seen during the idle window is false.
    for a in &agents {
        if let Some(c) = counts(a) {
            false_downs += c.2;
        }
    }

    // kill -9 of the last agent: Down everywhere.
    let detect = stop_last(&mut procs, &mut agents, "-9", &mut false_downs, 120, |c| {
        c.2 >= 1
    });
    // SIGTERM of the next-to-last: Left everywhere.
    let leave = stop_last(
        &mut procs,
        &mut agents,
        "-TERM",
        &mut false_downs,
        60,
        |c| c.3 >= 1,
    );
    drop(procs);
    let keep = matches!(
        std::env::var("ROSTER_SCALE_KEEP").as_deref(),
        Ok("1" | "true")
    );
    let clean = false_downs == 0 && detect.is_some() && leave.is_some();
    if keep && clean {
        eprintln!("{n} agents: kept {} (ROSTER_SCALE_KEEP)", dir.display());
    } else if clean {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        // Kept for a look at what went wrong: the agents' logs are there.
        eprintln!(
            "{n} agents: kept {} (false Downs or a phase that never ended)",
            dir.display()
        );
    }
    json!({
        "agents": n,
        "profile": "lan",
        "binary": exe,
        "binary_bytes": std::fs::metadata(&exe).map(|m| m.len()).ok(),
        "start_s": round(started, 2),
        "apis_answer_s": round(apis_answer_s, 2),
        "all_see_all_s": all_see_all_s,
        "handshakes_until_all_see_all": handshakes,
        "agents_cpu_s_until_all_see_all": round(start_cpu_s, 1),
        "idle_s": round(secs, 1),
        "rss_mb_median": round(rss_med, 1),
        "rss_mb_max": round(rss_max, 1),
        "pss_mb_median": round(pss_med, 1),
        "anon_mb_median": round(anon_med, 1),
        "anon_mb_max": round(anon_max, 1),
        "cpu_pct_median": round(cpu_med, 2),
        "cpu_pct_max": round(cpu_max, 2),
        "cpu_pct_all_agents": round(total_cpu, 1),
        "messages_out_per_agent_s_median": round(dg_med, 1),
        "bytes_out_per_agent_s_median": round(by_med, 0),
        "handshakes_per_agent_s_idle": round(opened / n as f64 / secs, 3),
        "open_connections_median": open_med,
        "open_connections_max": open_max,
        "detect_first_s": detect.map(|d| round(d.0, 2)),
        "detect_last_s": detect.map(|d| round(d.1, 2)),
        "leave_all_s": leave.map(|d| round(d.1, 2)),
        "false_downs": false_downs,
        "suspect_lines_until_all_see_all": suspected.map(|s| s.0),
        "members_suspected_until_all_see_all": suspected.map(|s| s.1),
        "machine_cores": std::thread::available_parallelism().map_or(0, |p| p.get()),
    })
}

fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    let ns = if ns.is_empty() { vec![20] } else { ns };
    let idle = Duration::from_secs(
        std::env::var("ROSTER_SCALE_IDLE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let mut all = BTreeMap::new();
    for n in ns {
        let report = run(n, idle);
        println!("{report}");
        let _ = std::fs::create_dir_all("target");
        let _ = std::fs::write(
            format!("target/scale-agents-{n}.json"),
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        );
        all.insert(n, report);
    }
}
