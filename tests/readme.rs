//! Replays the README's walkthroughs as written: each fenced block marked
//! `<!-- walkthrough: NAME -->` is read from README.md (not copied here) and
//! fed, line by line, to one bash process in a fresh directory, with the
//! built `roster` first on `PATH` (as `cargo install` would put it). Every
//! line must succeed; the lines that report on the cluster must also print
//! what the README says they show (retried until then, with a deadline,
//! since a cluster takes a moment to converge).
//!
//! The walkthroughs use fixed ports (7001-7003, 8946-8947 and 7400-7405, as a
//! reader would): the test fails, saying which, if one is taken.
#![allow(clippy::disallowed_methods)] // waits on real processes

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The walkthrough blocks of README.md: (name, lines).
fn walkthroughs() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let Some(name) = l
            .trim()
            .strip_prefix("<!-- walkthrough:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        assert_eq!(
            lines.next().map(str::trim),
            Some("```sh"),
            "a walkthrough marker must sit right above a ```sh block"
        );
        let body: Vec<String> = lines
            .by_ref()
            .take_while(|l| l.trim() != "```")
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        out.push((name.trim().to_owned(), body));
    }
    out
}

/// One bash process fed lines on stdin; stdout comes back line by line,
/// stderr is kept for failure messages.
struct Shell {
    child: Child,
    stdin: ChildStdin,
    out: Receiver<String>,
    err: Arc<Mutex<Vec<String>>>,
    seq: u64,
}

impl Shell {
    fn new(dir: &Path, runtime: &Path) -> Self {
        let bin = Path::new(env!("CARGO_BIN_EXE_roster")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(dir)
            .env("PATH", path)
            .env("ROSTER_RUNTIME_DIR", runtime)
            .env_remove("ROSTER_HTTP_ADDR")
            .env_remove("ROSTER_HTTP_TOKEN")
            .env_remove("ROSTER_HTTP_TOKEN_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash");
        let stdin = child.stdin.take().unwrap();
        let (tx, out) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(l);
            }
        });
        let err = Arc::new(Mutex::new(Vec::new()));
        let sink = err.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut e = sink.lock().unwrap();
                e.push(l);
                if e.len() > 200 {
                    e.remove(0);
                }
            }
        });
        Self {
            child,
            stdin,
            out,
            err,
            seq: 0,
        }
    }

    /// Runs one line; its exit status and what it printed on stdout.
    fn run(&mut self, line: &str, limit: Duration) -> (i32, String) {
        self.seq += 1;
        let mark = format!("__roster_readme_rc_{}=", self.seq);
        writeln!(self.stdin, "{line}\necho \"{mark}$?\"").unwrap();
        self.stdin.flush().unwrap();
        let start = Instant::now();
        let mut printed = String::new();
        while start.elapsed() < limit {
            match self.out.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => match l.strip_prefix(&mark) {
                    Some(rc) => return (rc.trim().parse().unwrap_or(-1), printed),
                    None => {
                        printed.push_str(&l);
                        printed.push('\n');
                    }
                },
                Err(_) => continue,
            }
        }
        panic!(
            "`{line}` did not finish within {limit:?}; stdout so far:\n{printed}\nstderr:\n{}",
            self.stderr()
        );
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().join("\n")
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        // Whatever a failed walkthrough left running.
        let _ = writeln!(
            self.stdin,
            "kill -TERM $(jobs -p) 2>/dev/null; roster cluster destroy >/dev/null 2>&1; exit"
        );
        let _ = self.stdin.flush();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

/// The rows of a `roster members` table: name → the rest of the row.
fn rows(table: &str) -> Vec<(String, String)> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (name, rest) = l.split_once(' ')?;
            Some((name.to_owned(), rest.to_owned()))
        })
        .collect()
}

fn state_of(table: &str, name: &str) -> Option<String> {
    rows(table)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, rest)| {
            ["alive", "suspect", "down", "left"]
                .into_iter()
                .find(|s| rest.split_whitespace().any(|w| w == *s))
                .map(str::to_owned)
        })
}

type Check = fn(&str) -> bool;

/// What a line must print, for the lines that report on the cluster
/// (matched by the command before its comment, and the how-many-th time it
/// appears in its block). These lines are retried until they pass.
fn checks() -> Vec<(&'static str, &'static str, usize, Check)> {
    vec![
        ("cluster", "roster cluster status", 1, |o| {
            o.matches("Running").count() == 3 && o.matches("alive").count() == 3
        }),
        ("cluster", "roster members --node 1", 1, |o| {
            ["node-0", "node-1", "node-2"]
                .iter()
                .all(|n| state_of(o, n).as_deref() == Some("alive"))
        }),
        ("cluster", "roster cluster chaos show", 1, |o| {
            o.contains("node-2")
        }),
        ("by-hand", "roster members", 1, |o| {
            ["a", "b", "c"]
                .iter()
                .all(|n| state_of(o, n).as_deref() == Some("alive"))
        }),
        ("by-hand", "roster members --tag role=web", 1, |o| {
            rows(o).len() == 1 && state_of(o, "b").as_deref() == Some("alive")
        }),
        ("by-hand", "roster members", 2, |o| {
            state_of(o, "b").as_deref() == Some("left")
                && state_of(o, "a").as_deref() == Some("alive")
                && state_of(o, "c").as_deref() == Some("alive")
        }),
    ]
}

/// Lines that change nothing when run again, so they may be retried while
/// the cluster settles (a chaos rule set on a node still restarting).
fn retryable(cmd: &str) -> bool {
    cmd.starts_with("roster cluster chaos")
        || cmd.starts_with("roster cluster status")
        || cmd.starts_with("roster members")
}

fn ports_free(ports: &[u16]) -> Result<(), String> {
    for &p in ports {
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_err()
            || std::net::TcpListener::bind(("127.0.0.1", p)).is_err()
        {
            return Err(format!(
                "port {p} is taken on this machine; the README walkthroughs use it"
            ));
        }
    }
    Ok(())
}

#[test]
fn the_readme_walkthroughs_work_as_written() {
    let blocks = walkthroughs();
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["cluster", "by-hand"], "the README's walkthroughs");
    ports_free(&[
        7001, 7002, 7003, 8946, 8947, 7400, 7401, 7402, 7403, 7404, 7405,
    ])
    .unwrap();
    let checks = checks();
    let mut used = vec![false; checks.len()];
    for (name, lines) in &blocks {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("roster-readme-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let runtime = dir.join(".run");
        let mut sh = Shell::new(&dir, &runtime);
        let mut seen: Vec<String> = Vec::new();
        for line in lines {
            let cmd = line.split(" #").next().unwrap().trim().to_owned();
            seen.push(cmd.clone());
            let nth = seen.iter().filter(|c| **c == cmd).count();
            let check = checks
                .iter()
                .position(|(b, c, n, _)| b == name && *c == cmd && *n == nth);
            let deadline = Duration::from_secs(30);
            let start = Instant::now();
            loop {
                let (rc, out) = sh.run(line, Duration::from_secs(60));
                let ok = rc == 0 && check.is_none_or(|i| (checks[i].3)(&out));
                if ok {
                    println!("[{name}] ok in {:?}: {cmd}", start.elapsed());
                    break;
                }
                if !(retryable(&cmd) && start.elapsed() < deadline) {
                    panic!(
                        "[{name}] `{line}` exited {rc}{}\nstdout:\n{out}\nstderr (last lines):\n{}",
                        if rc == 0 {
                            " but did not print what the README says"
                        } else {
                            ""
                        },
                        sh.stderr()
                    );
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            if let Some(i) = check {
                used[i] = true;
            }
        }
        // Background agents the block started end with it.
        let (rc, _) = sh.run("wait", Duration::from_secs(20));
        assert_eq!(rc, 0, "[{name}] background jobs");
        drop(sh);
        let _ = std::fs::remove_dir_all(&dir);
    }
    for (i, (b, c, n, _)) in checks.iter().enumerate() {
        assert!(
            used[i],
            "the README's {b} walkthrough no longer has `{c}` (occurrence {n}); update tests/readme.rs"
        );
    }
}
