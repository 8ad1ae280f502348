//! User events on real agents: `roster event` reaches five agents on
//! loopback, runs each one's `--event-handler` once per event and in order,
//! shows in `roster monitor`, and an oversized payload is refused.
//!
//! These tests wait on real processes, so they read the real clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `roster` with the agent's default HTTP API off, so agents started in
/// parallel do not compete for the default port.
fn roster() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roster"));
    c.env("ROSTER_HTTP", "off");
    c
}

/// Kills the process when dropped (the test may fail half-way).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[test]
fn an_event_runs_every_agents_handler_once_in_order() {
    let dir = std::env::temp_dir().join(format!("roster-events-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names = ["a", "b", "c", "d", "e"];
    common::certs(&dir, &names);
    // The handler appends what it was given to a file named after its node.
    let handler = dir.join("handler.sh");
    std::fs::write(
        &handler,
        format!(
            "#!/bin/sh\npayload=$(cat)\necho \"$ROSTER_EVENT $ROSTER_USER_EVENT $ROSTER_EVENT_SENDER $ROSTER_EVENT_SEQ $payload\" >> {}/out-$ROSTER_SELF_NAME\n",
            dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ports: Vec<u16> = names.iter().map(|_| common::free_tcp()).collect();
    let http: Vec<String> = names
        .iter()
        .map(|_| format!("127.0.0.1:{}", common::free_tcp()))
        .collect();
    let join = format!("127.0.0.1:{}", ports[0]);
    let start = |i: usize| {
        let mut c = roster();
        c.args(["agent", "--profile", "local", "--tls-dir"])
            .arg(dir.join(names[i]))
            .args(["--bind", &format!("127.0.0.1:{}", ports[i])])
            .args(["--http", &http[i], "--event-handler"])
            .arg(&handler)
            .stderr(Stdio::null());
        if i > 0 {
            c.args(["--join", &join]);
        }
        KillOnDrop(c.spawn().unwrap())
    };
    let mut agents = vec![start(0)];
    common::wait_until(Duration::from_secs(20), || {
        common::roster_in(&dir, &["status", "--http", &http[0]])
            .status
            .success()
    })
    .expect("agent a answers");
    // The monitor subscribes before the others join: the Up events it
    // prints for them prove it was listening before any user event.
    let mut mon = KillOnDrop(
        roster()
            .args(["monitor", "--json", "--http", &http[0]])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = mon.0.stdout.take().unwrap();
    let (tx, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed: Vec<String> = Vec::new();
    let drain = |printed: &mut Vec<String>| {
        while let Ok(l) = seen.try_recv() {
            printed.push(l);
        }
    };
    agents.extend((1..names.len()).map(start));
    let all_alive = |h: &str| {
        let out = common::roster_in(&dir, &["members", "--json", "--http", h]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .is_some_and(|a| a.len() == names.len() && a.iter().all(|m| m["state"] == "alive"))
    };
    common::wait_until(Duration::from_secs(30), || {
        http.iter().all(|h| all_alive(h))
    })
    .expect("all five agents see each other alive");
    common::wait_until(Duration::from_secs(10), || {
        drain(&mut printed);
        printed.iter().any(|l| l.contains("\"kind\":\"up\""))
    })
    .expect("the monitor printed a member coming up");

    common::roster_ok(&dir, &["event", "deploy", "v42", "--http", &http[1]]);
    common::roster_ok(&dir, &["event", "deploy", "v43", "--http", &http[1]]);
    let outs: Vec<_> = names.iter().map(|n| dir.join(format!("out-{n}"))).collect();
    common::wait_until(Duration::from_secs(20), || {
        outs.iter().all(|p| lines(p).len() >= 2)
    })
    .unwrap_or_else(|| {
        panic!(
            "every handler ran for both events: {:?}",
            outs.iter().map(|p| lines(p)).collect::<Vec<_>>()
        )
    });
    for (name, p) in names.iter().zip(&outs) {
        assert_eq!(
            lines(p),
            ["user deploy b 1 v42", "user deploy b 2 v43"],
            "node {name}: each event once, in b's order"
        );
    }

    let found = common::wait_for(Duration::from_secs(10), || {
        drain(&mut printed);
        let users: Vec<&String> = printed
            .iter()
            .filter(|l| l.contains("\"type\":\"user\""))
            .collect();
        (users.len() >= 2).then(|| users.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    })
    .expect("roster monitor printed both user events");
    let first: serde_json::Value = serde_json::from_str(&found[0]).unwrap();
    assert_eq!(first["name"], "deploy");
    assert_eq!(first["sender"], "b");
    assert_eq!(first["payload"], "v42");

    let big = "x".repeat(513);
    let refused = common::roster_in(&dir, &["event", "deploy", &big, "--http", &http[1]]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("invalid_event") || err.contains("512"),
        "{err}"
    );
    drop(mon);
    drop(agents);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn events_of_one_name_within_the_coalescing_window_run_the_handler_once() {
    let dir = std::env::temp_dir().join(format!("roster-coalesce-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    common::certs(&dir, &["a"]);
    let handler = dir.join("handler.sh");
    std::fs::write(
        &handler,
        format!(
            "#!/bin/sh\npayload=$(cat)\necho \"$ROSTER_USER_EVENT $ROSTER_EVENT_SEQ $payload\" >> {}/out\n",
            dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).unwrap();
    let http = format!("127.0.0.1:{}", common::free_tcp());
    let _agent = KillOnDrop(
        roster()
            .args(["agent", "--profile", "local", "--tls-dir"])
            .arg(dir.join("a"))
            .args(["--bind", &format!("127.0.0.1:{}", common::free_tcp())])
            .args(["--http", &http, "--event-coalesce", "3s", "--event-handler"])
            .arg(&handler)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_until(Duration::from_secs(20), || {
        common::roster_in(&dir, &["status", "--http", &http])
            .status
            .success()
    })
    .expect("the agent answers");
    let start = std::time::Instant::now();
    for (name, payload) in [
        ("deploy", "v1"),
        ("deploy", "v2"),
        ("restart", "r1"),
        ("deploy", "v3"),
    ] {
        common::roster_ok(&dir, &["event", name, payload, "--http", &http]);
    }
    let sent_within = start.elapsed();
    let out = dir.join("out");
    common::wait_until(Duration::from_secs(20), || lines(&out).len() >= 2)
        .expect("the handler ran after the window");
    // The four were sent within the window (checked: otherwise the
    // expectation below does not apply).
    assert!(sent_within < Duration::from_secs(3), "{sent_within:?}");
    assert_eq!(lines(&out), ["deploy 4 v3", "restart 3 r1"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_query_gathers_an_answer_from_every_selected_agent() {
    let dir = std::env::temp_dir().join(format!("roster-query-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names = ["a", "b", "c", "d", "e"];
    common::certs(&dir, &names);
    let handler = dir.join("answer.sh");
    std::fs::write(
        &handler,
        "#!/bin/sh\npayload=$(cat)\necho \"$ROSTER_SELF_NAME answers $ROSTER_QUERY_NAME from $ROSTER_QUERY_ASKER: $payload\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ports: Vec<u16> = names.iter().map(|_| common::free_tcp()).collect();
    let http: Vec<String> = names
        .iter()
        .map(|_| format!("127.0.0.1:{}", common::free_tcp()))
        .collect();
    let join = format!("127.0.0.1:{}", ports[0]);
    let _agents: Vec<KillOnDrop> = (0..names.len())
        .map(|i| {
            let mut c = roster();
            c.args(["agent", "--profile", "local", "--tls-dir"])
                .arg(dir.join(names[i]))
                .args(["--bind", &format!("127.0.0.1:{}", ports[i])])
                .args(["--http", &http[i], "--query-handler"])
                .arg(&handler)
                .stderr(Stdio::null());
            if i > 0 {
                c.args(["--join", &join]);
            }
            KillOnDrop(c.spawn().unwrap())
        })
        .collect();
    let all_alive = |h: &str| {
        let out = common::roster_in(&dir, &["members", "--json", "--http", h]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .is_some_and(|a| a.len() == names.len() && a.iter().all(|m| m["state"] == "alive"))
    };
    common::wait_until(Duration::from_secs(30), || {
        http.iter().all(|h| all_alive(h))
    })
    .expect("all five agents see each other alive");
    for h in [&http[1], &http[3]] {
        common::roster_ok(&dir, &["tags", "set", "role=db", "--http", h]);
    }
    // Every agent must see both tags before a filtered query means what
    // the test expects of it.
    let tagged = |h: &str| {
        let out = common::roster_in(
            &dir,
            &["members", "--json", "--tag", "role=db", "--http", h],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array().is_some_and(|a| a.len() == 2)
    };
    common::wait_until(Duration::from_secs(20), || http.iter().all(|h| tagged(h)))
        .expect("every agent sees b and d tagged");
    let ask = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec![
            "query",
            "uptime",
            "now?",
            "--timeout",
            "5s",
            "--json",
            "--http",
            &http[2],
        ];
        args.extend_from_slice(extra);
        let out = common::roster_ok(&dir, &args);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    };
    let answers = |lines: &[serde_json::Value]| -> Vec<String> {
        let mut a: Vec<String> = lines
            .iter()
            .filter(|l| l["type"] == "answer")
            .map(|l| l["payload"].as_str().unwrap().trim_end().to_owned())
            .collect();
        a.sort();
        a
    };
    let all = ask(&[]);
    assert_eq!(
        answers(&all),
        names
            .iter()
            .map(|n| format!("{n} answers uptime from c: now?"))
            .collect::<Vec<_>>()
    );
    let done = all.last().expect("a done line");
    assert_eq!(done["type"], "done");
    assert_eq!(
        (done["acks"].as_u64(), done["answers"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(done["missing"], serde_json::json!([]));
    let ab = ask(&["--node", "[ab]"]);
    assert_eq!(
        answers(&ab),
        [
            "a answers uptime from c: now?",
            "b answers uptime from c: now?"
        ]
    );
    let db = ask(&["--tag", "role=d.", "--relay", "2"]);
    assert_eq!(
        answers(&db),
        [
            "b answers uptime from c: now?",
            "d answers uptime from c: now?"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
