//! The `roster` binary as a user runs it: certificates, agents as real
//! processes, bad configuration, and a graceful stop on SIGTERM.
//!
//! These tests wait on real processes, so they read the real clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::http_get;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `roster` with the agent's default HTTP API off (`ROSTER_HTTP=off`), so
/// that agents started in parallel do not compete for 127.0.0.1:8946; a
/// test that wants the API passes `--http`.
fn roster() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roster"));
    c.env("ROSTER_HTTP", "off");
    c
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("roster-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Sends `sig` (e.g. `-TERM`) to a process with the system's kill(1).
fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn free_port() -> u16 {
    common::free_tcp()
}

#[test]
fn bad_configuration_is_one_clear_error_line_and_a_non_zero_exit() {
    let dir = tmp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["agent".into()],
        vec![
            "agent".into(),
            "--tls-dir".into(),
            dir.join("missing").display().to_string(),
        ],
        vec![
            "agent".into(),
            "--tls-dir".into(),
            "x".into(),
            "--tag".into(),
            "novalue".into(),
        ],
        vec![
            "agent".into(),
            "--tls-dir".into(),
            "x".into(),
            "--name".into(),
            "bad name".into(),
        ],
        vec![
            "agent".into(),
            "--tls-dir".into(),
            "x".into(),
            "--http".into(),
            "nowhere".into(),
        ],
    ];
    for args in cases {
        let out = roster().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    let bad_toml = dir.join("bad.toml");
    std::fs::write(&bad_toml, "nmae = \"a\"\n").unwrap();
    let out = roster()
        .arg("agent")
        .arg("--config")
        .arg(&bad_toml)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A damaged data dir, an open private key or an open token file: one
/// `error:` line naming the file and what to do, a non-zero exit, no panic,
/// and the damaged file left as it was.
#[cfg(unix)]
#[test]
fn damaged_data_and_open_secrets_are_one_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp("damaged");
    common::certs(&dir, &["a"]);
    let port = free_port().to_string();
    let agent = |data: &std::path::Path, extra: &[&str]| {
        roster()
            .args(["agent", "--bind", &format!("127.0.0.1:{port}"), "--tls-dir"])
            .arg(dir.join("a"))
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .output()
            .unwrap()
    };
    let one_error = |out: &std::process::Output, needle: &str| {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    // A real database, first: start and stop an agent once.
    let data = dir.join("data");
    let mut child = roster()
        .args(["agent", "--bind", &format!("127.0.0.1:{port}"), "--tls-dir"])
        .arg(dir.join("a"))
        .arg("--data-dir")
        .arg(&data)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = data.join("roster.redb");
    let made = common::wait_until(Duration::from_secs(10), || {
        std::fs::metadata(&db).is_ok_and(|m| m.len() > 4096)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(made.is_some(), "the agent created its database");
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the database is its owner's only");
    let good = std::fs::read(&db).unwrap();
    // Truncated, then garbage.
    for bytes in [good[..1000].to_vec(), vec![0x5a; 5000]] {
        std::fs::write(&db, &bytes).unwrap();
        one_error(&agent(&data, &[]), "roster.redb is damaged");
        assert_eq!(
            std::fs::read(&db).unwrap(),
            bytes,
            "the file was not touched"
        );
    }
    // A private key others can read.
    let key = dir.join("a").join("node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    one_error(&agent(&dir.join("data2"), &[]), "chmod 600");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A token file others can read.
    let token = dir.join("token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    one_error(
        &agent(
            &dir.join("data3"),
            &[
                "--http",
                &http,
                "--http-token-file",
                token.to_str().unwrap(),
            ],
        ),
        "chmod 600",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn agents_join_and_stop_gracefully_on_sigterm() {
    let dir = tmp("agents");
    common::certs(&dir, &["a", "b"]);
    let pa = free_port();
    let pb = free_port();
    let config = dir.join("a.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:{pa}\"\ntls_dir = \"{}\"\nprofile = \"local\"\ntag = [\"role=web\"]\n",
            dir.join("a").display()
        ),
    )
    .unwrap();
    let mut a = roster()
        .arg("agent")
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut b = roster()
        .args([
            "agent",
            "--profile",
            "local",
            "--bind",
            &format!("127.0.0.1:{pb}"),
        ])
        .args(["--join", &format!("127.0.0.1:{pa}")])
        .arg("--tls-dir")
        .arg(dir.join("b"))
        .arg("--data-dir")
        .arg(dir.join("b-data"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for b to log that a is up (read its stderr on a thread).
    let stderr = b.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut saw_a = false;
    while start.elapsed() < Duration::from_secs(10) && !saw_a {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            saw_a = line.contains("member up") && line.contains("a#1");
        }
    }
    assert!(saw_a, "b never saw a");

    // SIGTERM: leave gracefully, exit 0 within 3 s.
    let t = Instant::now();
    signal(b.id(), "-TERM");
    let status = wait_exit(&mut b, Duration::from_secs(3)).expect("b exits within 3 s");
    assert!(status.success(), "{status:?}");
    eprintln!("agent exited 0 {:?} after SIGTERM", t.elapsed());
    signal(a.id(), "-INT");
    let status = wait_exit(&mut a, Duration::from_secs(3)).expect("a exits within 3 s");
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends SIGTERM to a process when dropped (so a failing test does not leave
/// a demo cluster running).
struct TermOnDrop(u32);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        // The process may be gone already: no assertion here.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn demo_runs_five_nodes_with_a_dashboard_and_cleans_up_on_sigterm() {
    use std::io::BufRead;
    let mut demo = roster()
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = TermOnDrop(demo.id());
    let mut lines = std::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut dir = None;
    let mut dashboard = None;
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(d) = line.split("files and logs in ").nth(1) {
            dir = Some(std::path::PathBuf::from(d.trim()));
        }
        if let Some(u) = line.strip_prefix("dashboard: http://") {
            dashboard = u
                .split_once("/?token=")
                .map(|(a, t)| (a.to_owned(), t.trim().to_owned()));
            break;
        }
    }
    let (dir, (dashboard, token)) = (
        dir.expect("demo names its dir"),
        dashboard.expect("a dashboard URL with the operator token"),
    );
    // The URL carries the cluster's token, kept 0600 in the demo's dir.
    let file = dir.join("http-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let start = Instant::now();
    let mut alive = 0;
    while start.elapsed() < Duration::from_secs(20) && alive < 5 {
        if let Some(body) = http_get(&dashboard, "/v1/members") {
            alive = body.matches("\"state\":\"alive\"").count();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(alive, 5, "the dashboard's node sees 5 alive members");
    let page = http_get(&dashboard, "/").unwrap();
    assert!(page.contains("<title>roster</title>"));

    // The client commands against the demo's first agent.
    let out = roster()
        .args(["members", "--http", &dashboard])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("Name") && header.contains("State") && header.contains("Tags"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 5, "{table}");
    assert!(
        rows.iter()
            .all(|r| r.contains(" alive ") && r.contains("demo=true")),
        "{table}"
    );
    let set = roster()
        .args(["state", "set", "service", "web", "--http", &dashboard])
        .output()
        .unwrap();
    assert!(set.status.success());
    let get = roster()
        .args(["state", "get", "service", "--http", &dashboard])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "web");
    let missing = roster()
        .args(["state", "get", "nope", "--http", &dashboard])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("error: "));
    let json = roster()
        .args(["status", "--json", "--http", &dashboard])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["members"]["alive"], 5);

    signal(demo.id(), "-TERM");
    let status = wait_exit(&mut demo, Duration::from_secs(6)).expect("demo stops within 6 s");
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "demo removed {}", dir.display());
    eprintln!(
        "demo: 5 alive after {:?}; stopped and cleaned up",
        start.elapsed()
    );
}

/// A member's state in an agent's `/v1/members`.
fn member_state(http: &str, id: &str) -> Option<String> {
    let body = http_get(http, "/v1/members")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v.as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["state"].as_str().map(str::to_owned))
}

/// One figure from an agent's `/metrics`.
fn metric(http: &str, name: &str) -> Option<f64> {
    let body = http_get(http, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Issues a certificate for `name` valid `days` days and moves it over the
/// one in `tls_dir` (the CA stays).
fn rotate(dir: &std::path::Path, name: &str, tls_dir: &std::path::Path, days: &str) {
    let fresh = dir.join(format!("fresh-{name}-{days}"));
    let ok = roster()
        .args(["cert", "node", "--name", name, "--days", days, "--ca"])
        .arg(dir.join("ca"))
        .arg("--out")
        .arg(&fresh)
        .status()
        .unwrap();
    assert!(ok.success());
    for f in ["node.crt", "node.key"] {
        std::fs::rename(fresh.join(f), tls_dir.join(f)).unwrap();
    }
}

/// SIGHUP reloads `--tls-dir`: the agent takes a rotated certificate
/// without leaving (its peer holds it Alive throughout), warns that the new
/// one expires within 30 days, refuses one that names another node (keeping
/// its own), and a new member joins it with the new certificate.
#[test]
fn sighup_reloads_rotated_certificates_and_the_node_stays_alive() {
    let dir = tmp("sighup");
    common::certs(&dir, &["a", "b", "c"]);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let (ha, hb) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let agent = |name: &str, port: u16, http: Option<&str>, join: Option<u16>| {
        let mut c = roster();
        c.args(["agent", "--profile", "local", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tls-dir")
            .arg(dir.join(name))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped());
        if let Some(h) = http {
            c.args(["--http", h]);
        }
        if let Some(j) = join {
            c.args(["--join", &format!("127.0.0.1:{j}")]);
        }
        c.spawn().unwrap()
    };
    let mut a = agent("a", pa, Some(&ha), None);
    let _a_term = TermOnDrop(a.id());
    let mut b = agent("b", pb, Some(&hb), Some(pa));
    let _b_term = TermOnDrop(b.id());
    let a_log = a.stderr.take().unwrap();
    let (tx, a_lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(a_log).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let alive = |http: &str, id: &str| member_state(http, id).as_deref() == Some("alive");
    common::wait_until(Duration::from_secs(10), || {
        alive(&hb, "a") && alive(&ha, "b")
    })
    .expect("a and b see each other");
    let year = metric(&ha, "roster_cert_expiry_seconds").expect("expiry gauge");
    assert!(
        year > 364.0 * 86_400.0 && year <= 365.0 * 86_400.0,
        "{year}"
    );

    // Rotate a's certificate to one valid 20 days, then SIGHUP.
    rotate(&dir, "a", &dir.join("a"), "20");
    signal(a.id(), "-HUP");
    let mut down = false;
    let reloaded = common::wait_until(Duration::from_secs(10), || {
        down |= !alive(&hb, "a");
        metric(&ha, "roster_tls_reloads_total") == Some(1.0)
    });
    assert!(reloaded.is_some(), "the reload never took effect");
    let days = metric(&ha, "roster_cert_expiry_seconds").unwrap() / 86_400.0;
    assert!(days > 19.0 && days <= 20.0, "{days}");
    // Stays Alive in b's view for the next 3 s as well.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        down |= !alive(&hb, "a");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!down, "a left b's Alive set around the reload");
    let mut warned = false;
    let mut saw_reload = false;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) && !(warned && saw_reload) {
        if let Ok(line) = a_lines.recv_timeout(Duration::from_millis(100)) {
            warned |= line.contains("expires soon");
            saw_reload |= line.contains("certificates reloaded");
        }
    }
    assert!(
        warned && saw_reload,
        "warned {warned}, reload logged {saw_reload}"
    );

    // A certificate naming another node is refused; a keeps its own.
    let wrong = dir.join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    rotate(&dir, "b", &wrong, "30");
    for f in ["node.crt", "node.key"] {
        std::fs::rename(dir.join("a").join(f), wrong.join(format!("a-{f}"))).unwrap();
        std::fs::rename(wrong.join(f), dir.join("a").join(f)).unwrap();
    }
    signal(a.id(), "-HUP");
    common::wait_until(Duration::from_secs(10), || {
        metric(&ha, "roster_tls_reload_failures_total") == Some(1.0)
    })
    .expect("the wrong certificate is refused and counted");
    let still = metric(&ha, "roster_cert_expiry_seconds").unwrap() / 86_400.0;
    assert!(still > 19.0 && still <= 20.0, "{still}");

    // A new member joins a, whose handshake now presents the new certificate.
    let mut c = agent("c", pc, None, Some(pa));
    let _c_term = TermOnDrop(c.id());
    common::wait_until(Duration::from_secs(10), || alive(&ha, "c"))
        .expect("c joins a after the rotation");
    assert!(alive(&hb, "a"));
    for child in [&mut c, &mut b, &mut a] {
        signal(child.id(), "-TERM");
        wait_exit(child, Duration::from_secs(5)).expect("exits");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--http-tls`: the API is served over HTTPS with the node's certificate;
/// an operator certificate from `roster cert client` authenticates the CLI
/// (reads and writes) without a token, the token still works, no
/// credential gets 401, a node's certificate is refused at the handshake
/// (and counted), and once an operator is revoked its certificate stops
/// working while another operator's goes on.
#[test]
fn the_https_api_takes_operator_certificates_and_refuses_the_rest() {
    use roster::api::client::{Agent, request, request_raw};
    use std::sync::Arc;
    let dir = tmp("https-api");
    common::certs(&dir, &["a"]);
    for n in ["alice", "bob"] {
        common::roster_ok(
            &dir,
            &["cert", "client", "--name", n, "--ca", "ca", "--out", n],
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("alice/client.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (port, http) = (free_port(), free_port());
    let run = dir.join("run");
    let empty = dir.join("empty-run");
    let mut a = roster()
        .args(["agent", "--profile", "local", "--bind"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--tls-dir")
        .arg(dir.join("a"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--http", &format!("127.0.0.1:{http}"), "--http-tls"])
        .args(["--bootstrap-expect", "1"])
        .env("ROSTER_RUNTIME_DIR", &run)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _term = TermOnDrop(a.id());
    let url = format!("https://127.0.0.1:{http}");
    let cli = |args: &[&str], runtime: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_roster"))
            .current_dir(&dir)
            .env("ROSTER_RUNTIME_DIR", runtime)
            .env_remove("ROSTER_HTTP_TOKEN")
            .env_remove("ROSTER_HTTP_TOKEN_FILE")
            .args(args)
            .args(["--http", &url])
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    // The operator certificate alone (no token anywhere) reads ...
    let members = common::wait_for(Duration::from_secs(15), || {
        let o = cli(&["members", "--cert-dir", "alice"], &empty);
        o.status.success().then(|| text(&o))
    })
    .expect("alice's certificate reads the members over HTTPS");
    assert!(members.contains("alive"), "{members}");
    // ... and writes.
    let o = cli(
        &["state", "set", "app", "v1", "--cert-dir", "alice"],
        &empty,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = cli(&["state", "get", "app", "--cert-dir", "alice"], &empty);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "v1",
        "{}",
        text(&o)
    );
    // No credential: 401 over HTTPS.
    let o = cli(&["members", "--ca", "ca/ca.crt"], &empty);
    assert!(
        !o.status.success() && text(&o).contains("401"),
        "{}",
        text(&o)
    );
    // The token the agent recorded still works over HTTPS.
    let o = cli(&["members", "--ca", "ca/ca.crt"], &run);
    assert!(o.status.success(), "{}", text(&o));
    // Plain HTTP to the HTTPS port fails with a hint.
    let o = Command::new(env!("CARGO_BIN_EXE_roster"))
        .env("ROSTER_RUNTIME_DIR", &run)
        .args(["members", "--http", &format!("127.0.0.1:{http}")])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("https://"),
        "{}",
        text(&o)
    );

    // A node's certificate is no operator credential: refused at the
    // handshake, and counted.
    let ca_pem = std::fs::read_to_string(dir.join("ca/ca.crt")).unwrap();
    let https = |cert: Option<&roster::runtime::tls::NodeCert>| Agent {
        addr: format!("127.0.0.1:{http}"),
        token: None,
        tls: Some(Arc::new(
            roster::runtime::tls::https_client_config(&ca_pem, cert).unwrap(),
        )),
    };
    let node = roster::runtime::tls::NodeCert::load(&dir.join("a")).unwrap();
    let alice = roster::runtime::tls::NodeCert::load_client(&dir.join("alice")).unwrap();
    let refused = request(&https(Some(&node)), "GET", "/v1/members", b"");
    assert!(refused.is_err(), "{refused:?}");
    let (status, metrics) = request_raw(&https(Some(&alice)), "GET", "/metrics", b"").unwrap();
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix("roster_http_tls_refusals_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("roster_http_tls_refusals_total");
    assert!(count >= 1.0, "{count}");

    // Revoke alice (as bob, once the lone voter has formed the metadata).
    common::wait_until(Duration::from_secs(20), || {
        cli(&["cert", "revoke", "alice", "--cert-dir", "bob"], &empty)
            .status
            .success()
    })
    .expect("bob revokes alice");
    common::wait_until(Duration::from_secs(10), || {
        !cli(&["members", "--cert-dir", "alice"], &empty)
            .status
            .success()
    })
    .expect("alice's certificate stops working once revoked");
    let o = cli(&["members", "--cert-dir", "bob"], &empty);
    assert!(o.status.success(), "{}", text(&o));
    signal(a.id(), "-TERM");
    wait_exit(&mut a, Duration::from_secs(5)).expect("the agent exits on SIGTERM");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `roster agent` for the node whose certificate is in `dir/name`,
/// with its stderr discarded; `extra` are more flags.
fn agent_with(dir: &std::path::Path, name: &str, bind: &str, extra: &[&str]) -> Child {
    roster()
        .args(["agent", "--profile", "local", "--bind", bind, "--tls-dir"])
        .arg(dir.join(name))
        .args(extra)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Names and addresses as memberlist takes them: `--join localhost:PORT`
/// (a DNS name), `roster join` on a running agent, tags set and unset at
/// runtime and seen by every member, `roster members` filters, and
/// `--bind 0.0.0.0` advertising this machine's private address (or saying
/// clearly why it cannot).
#[test]
fn agents_join_by_name_and_at_runtime_and_change_tags_live() {
    let dir = tmp("names");
    common::certs(&dir, &["a", "b", "c", "d"]);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let (ha, hb, hc) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut a = agent_with(&dir, "a", &format!("127.0.0.1:{pa}"), &["--http", &ha]);
    let _ta = TermOnDrop(a.id());
    let join_a = format!("localhost:{pa}");
    let mut b = agent_with(
        &dir,
        "b",
        &format!("127.0.0.1:{pb}"),
        &["--http", &hb, "--join", &join_a],
    );
    let _tb = TermOnDrop(b.id());
    let mut c = agent_with(&dir, "c", &format!("127.0.0.1:{pc}"), &["--http", &hc]);
    let _tc = TermOnDrop(c.id());
    let alive = |http: &str, id: &str| member_state(http, id).as_deref() == Some("alive");
    common::wait_until(Duration::from_secs(15), || {
        alive(&ha, "b") && alive(&hb, "a")
    })
    .expect("b joins a through the name localhost");
    assert!(member_state(&ha, "c").is_none(), "c has joined no one yet");

    // `roster join` on the running agent c, by name.
    let out = common::roster_ok(&dir, &["join", &join_a, "--http", &hc]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("127.0.0.1:{pa}")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    common::wait_until(Duration::from_secs(15), || {
        alive(&hc, "a") && alive(&hc, "b") && alive(&ha, "c") && alive(&hb, "c")
    })
    .expect("c joins the cluster at runtime");
    let bad = common::roster_in(&dir, &["join", "nohost.invalid:1", "--http", &hc]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unresolvable"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Tags at runtime: every member sees them, and sees them go.
    common::roster_ok(
        &dir,
        &["tags", "set", "zone=eu-1", "role=web", "--http", &hc],
    );
    let members = |http: &str, filter: &[&str]| -> Vec<String> {
        let mut args = vec!["members", "--json", "--http", http];
        args.extend_from_slice(filter);
        let out = common::roster_ok(&dir, &args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut ids: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    common::wait_until(Duration::from_secs(10), || {
        members(&ha, &["--tag", "zone=eu-.*"]) == ["c"]
            && members(&hb, &["--tag", "zone=eu-1", "--tag", "role=web"]) == ["c"]
    })
    .expect("a and b see c's new tags");
    common::roster_ok(&dir, &["tags", "unset", "zone", "--http", &hc]);
    common::wait_until(Duration::from_secs(10), || {
        members(&ha, &["--tag", "zone=.*"]).is_empty()
            && members(&hb, &["--tag", "role=web"]) == ["c"]
    })
    .expect("a and b see c's tag removed, the other kept");
    // Filters by name and state.
    assert_eq!(
        members(&ha, &["--name", "a|b", "--status", "alive"]),
        ["a", "b"]
    );
    assert!(members(&ha, &["--status", "down"]).is_empty());
    let bad = common::roster_in(&dir, &["members", "--status", "sleepy", "--http", &ha]);
    assert!(!bad.status.success());
    // The detailed view: incarnation, protocol, release, and the RTT of
    // a's open connection to b.
    let out = common::roster_ok(&dir, &["members", "--detailed", "--http", &ha]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}");
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "Name",
            "Address",
            "State",
            "Generation",
            "Incarnation",
            "Protocol",
            "Version",
            "RTT",
            "Estimate",
            "Tags"
        ]
    );
    let row_b: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("b "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row_b[2], "alive");
    assert_eq!(row_b[5], roster::wire::VERSION.to_string());
    assert_eq!(row_b[6], env!("CARGO_PKG_VERSION"));
    assert_eq!(row_b[8], "ms", "an RTT in milliseconds: {row_b:?}");
    let rtt: f64 = row_b[7].parse().unwrap();
    assert!(rtt > 0.0 && rtt < 1000.0, "{rtt}");
    assert_eq!(
        row_b[9], "-",
        "no estimate without --coordinates: {row_b:?}"
    );

    // --bind 0.0.0.0: the machine's one private address, or a clear error.
    let pd = free_port();
    let bind = std::net::SocketAddr::from(([0, 0, 0, 0], pd));
    match roster::runtime::addr::private_advertise(bind) {
        Ok(expected) => {
            let hd = format!("127.0.0.1:{}", free_port());
            let mut d = agent_with(&dir, "d", &bind.to_string(), &["--http", &hd]);
            let _td = TermOnDrop(d.id());
            let addr = common::wait_for(Duration::from_secs(10), || {
                let v: serde_json::Value =
                    serde_json::from_str(&http_get(&hd, "/v1/status")?).ok()?;
                v["node"]["addr"].as_str().map(str::to_owned)
            })
            .expect("d answers its status");
            assert_eq!(addr, expected.to_string());
            println!("--bind 0.0.0.0 advertised {addr}");
            signal(d.id(), "-TERM");
            wait_exit(&mut d, Duration::from_secs(5)).expect("d exits");
        }
        Err(why) => {
            let out = roster()
                .args(["agent", "--bind", &bind.to_string(), "--tls-dir"])
                .arg(dir.join("d"))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success());
            assert!(err.contains(&why) && err.contains("--advertise"), "{err}");
            println!("--bind 0.0.0.0 refused as expected: {why}");
        }
    }
    for child in [&mut c, &mut b, &mut a] {
        signal(child.id(), "-TERM");
        wait_exit(child, Duration::from_secs(5)).expect("exits");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// IPv6 end to end: two agents on `[::1]` join and see each other, the
/// second through `--join [::1]:PORT`. Skipped, saying so, where the
/// machine has no IPv6 loopback.
#[test]
fn agents_work_over_ipv6_loopback() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!(
            "SKIPPED agents_work_over_ipv6_loopback: this machine has no IPv6 loopback (::1)"
        );
        return;
    }
    let dir = tmp("ipv6");
    common::certs(&dir, &["a", "b"]);
    let (pa, pb) = (free_port(), free_port());
    let (ha, hb) = (
        format!("[::1]:{}", free_port()),
        format!("[::1]:{}", free_port()),
    );
    let mut a = agent_with(&dir, "a", &format!("[::1]:{pa}"), &["--http", &ha]);
    let _ta = TermOnDrop(a.id());
    let mut b = agent_with(
        &dir,
        "b",
        &format!("[::1]:{pb}"),
        &["--http", &hb, "--join", &format!("[::1]:{pa}")],
    );
    let _tb = TermOnDrop(b.id());
    let alive = |http: &str, id: &str| member_state(http, id).as_deref() == Some("alive");
    common::wait_until(Duration::from_secs(15), || {
        alive(&ha, "b") && alive(&hb, "a")
    })
    .expect("a and b see each other over IPv6");
    let out = common::roster_ok(&dir, &["members", "--http", &ha]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("[::1]:{pb}")), "{text}");
    for child in [&mut b, &mut a] {
        signal(child.id(), "-TERM");
        wait_exit(child, Duration::from_secs(5)).expect("exits");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `roster completions SHELL` prints a script the shell accepts (bash is
/// checked with `bash -n` where bash exists), and `roster man` a manual page
/// naming every subcommand.
#[test]
fn completions_and_the_manual_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = roster().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("roster") && text.contains("members"),
            "{shell}"
        );
    }
    let script = roster().args(["completions", "bash"]).output().unwrap();
    match Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut bash) => {
            use std::io::Write;
            bash.stdin
                .take()
                .unwrap()
                .write_all(&script.stdout)
                .unwrap();
            let out = bash.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => eprintln!("SKIPPED the bash syntax check: no bash ({e})"),
    }
    let man = roster().arg("man").output().unwrap();
    assert!(man.status.success());
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(
        text.contains(".TH roster 1"),
        "{}",
        &text[..text.len().min(200)]
    );
    for sub in ["agent", "cluster", "members", "join", "tags"] {
        assert!(text.contains(sub), "the manual page names {sub}");
    }
}

/// `contrib/roster.service` passes `systemd-analyze verify` with no warning
/// (its ExecStart pointed at the binary under test). Skipped, saying so,
/// where systemd-analyze is absent.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/roster.service"
    ))
    .unwrap();
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED the_systemd_unit_verifies: systemd-analyze is not installed");
        return;
    }
    let dir = tmp("unit");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("roster.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/roster", env!("CARGO_BIN_EXE_roster")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `roster monitor` streams membership events live: after `kill -9` of a
/// member, the monitor on another agent prints its Down within 1 s of that
/// agent recording it.
#[test]
fn monitor_streams_a_down_as_it_happens() {
    let dir = tmp("monitor");
    common::certs(&dir, &["a", "b", "c"]);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let ha = format!("127.0.0.1:{}", free_port());
    let join = format!("127.0.0.1:{pa}");
    let mut a = agent_with(&dir, "a", &format!("127.0.0.1:{pa}"), &["--http", &ha]);
    let _ta = TermOnDrop(a.id());
    let mut b = agent_with(&dir, "b", &format!("127.0.0.1:{pb}"), &["--join", &join]);
    let _tb = TermOnDrop(b.id());
    let mut c = agent_with(&dir, "c", &format!("127.0.0.1:{pc}"), &["--join", &join]);
    let _tc = TermOnDrop(c.id());
    let alive = |id: &str| member_state(&ha, id).as_deref() == Some("alive");
    common::wait_until(Duration::from_secs(15), || alive("b") && alive("c"))
        .expect("a sees b and c");
    let mut mon = roster()
        .args(["monitor", "--json", "--http", &ha])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _tm = TermOnDrop(mon.id());
    let out = mon.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let arrived = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let _ = tx.send((arrived, line));
        }
    });
    // The stream is open once the agent answers; give it a moment to
    // subscribe by waiting for an event we cause: c is killed.
    std::thread::sleep(Duration::from_millis(300));
    Command::new("kill")
        .args(["-9", &c.id().to_string()])
        .status()
        .unwrap();
    let _ = c.wait();
    let t = Instant::now();
    let mut got = None;
    while t.elapsed() < Duration::from_secs(30) && got.is_none() {
        if let Ok((arrived, line)) = lines.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["kind"] == "down" && v["member"].as_str().is_some_and(|m| m.starts_with("c#")) {
                got = Some((v["at_ms"].as_u64().unwrap(), arrived));
            }
        }
    }
    let (at, arrived) = got.expect("the monitor printed c's Down within 30 s");
    let lag = arrived.saturating_sub(at);
    println!("monitor printed c's Down {lag} ms after the agent recorded it");
    assert!(lag <= 1000, "{lag} ms");
    assert_eq!(member_state(&ha, "c").as_deref(), Some("down"));
    for child in [&mut b, &mut a] {
        signal(child.id(), "-TERM");
        wait_exit(child, Duration::from_secs(5)).expect("exits");
    }
    // The monitor ends by itself when its agent stops.
    wait_exit(&mut mon, Duration::from_secs(5)).expect("the monitor ends with its agent");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP re-reads `--config`: a changed tag reaches the other member, the
/// log level changes (a debug line appears only after the reload), and a
/// setting that needs a restart (`bind`) is reported, not silently ignored.
#[test]
fn sighup_reloads_the_configuration() {
    let dir = tmp("reload");
    common::certs(&dir, &["a", "b"]);
    let (pa, pb) = (free_port(), free_port());
    let (ha, hb) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let config = dir.join("a.toml");
    let write = |zone: &str, level: &str, bind: u16| {
        std::fs::write(
            &config,
            format!(
                "bind = \"127.0.0.1:{bind}\"\ntls_dir = \"{}\"\nhttp = \"{ha}\"\nprofile = \"local\"\ntag = [\"zone={zone}\"]\nlog_level = \"{level}\"\n",
                dir.join("a").display()
            ),
        )
        .unwrap();
    };
    write("eu-1", "info", pa);
    let mut a = roster()
        .args(["agent", "--config"])
        .arg(&config)
        .env_remove("ROSTER_HTTP")
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ta = TermOnDrop(a.id());
    let log = a.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(log).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut b = agent_with(
        &dir,
        "b",
        &format!("127.0.0.1:{pb}"),
        &["--http", &hb, "--join", &format!("127.0.0.1:{pa}")],
    );
    let _tb = TermOnDrop(b.id());
    let zone_of_a = |http: &str| -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&http_get(http, "/v1/members")?).ok()?;
        v.as_array()?
            .iter()
            .find(|m| m["id"] == "a")
            .and_then(|m| m["tags"]["zone"].as_str().map(str::to_owned))
    };
    common::wait_until(Duration::from_secs(15), || {
        zone_of_a(&hb).as_deref() == Some("eu-1")
    })
    .expect("b sees a with zone=eu-1");
    let debug_before = lines.try_iter().any(|l| l.contains("DEBUG"));
    assert!(!debug_before, "no debug lines at level info");

    write("eu-2", "debug", pa);
    signal(a.id(), "-HUP");
    common::wait_until(Duration::from_secs(10), || {
        zone_of_a(&hb).as_deref() == Some("eu-2")
    })
    .expect("b sees a's tag changed by the reload");
    let mut reloaded = false;
    let mut debug_after = false;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) && !(reloaded && debug_after) {
        if let Ok(l) = lines.recv_timeout(Duration::from_millis(100)) {
            reloaded |= l.contains("configuration reloaded") && l.contains("zone=eu-2");
            debug_after |= l.contains("DEBUG");
        }
    }
    assert!(reloaded, "the reload is logged with what changed");
    assert!(
        debug_after,
        "debug lines after the log level changed to debug"
    );

    // A setting that needs a restart is reported.
    write("eu-2", "info", pa + 1);
    signal(a.id(), "-HUP");
    let mut warned = false;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) && !warned {
        if let Ok(l) = lines.recv_timeout(Duration::from_millis(100)) {
            warned |= l.contains("apply only at the next start") && l.contains("bind");
        }
    }
    assert!(
        warned,
        "a changed bind address is reported as needing a restart"
    );
    assert_eq!(zone_of_a(&hb).as_deref(), Some("eu-2"));
    for child in [&mut b, &mut a] {
        signal(child.id(), "-TERM");
        wait_exit(child, Duration::from_secs(5)).expect("exits");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With no `--http`, an agent serves its API on 127.0.0.1:8946 and client
/// commands with no `--http` reach it; a second agent without `--http` on
/// the same machine stops with an error saying what to give instead.
/// Skipped, saying so, if 8946 is taken on this machine.
#[test]
fn the_default_api_address_is_where_clients_look() {
    if std::net::TcpListener::bind("127.0.0.1:8946").is_err() {
        eprintln!("SKIPPED the_default_api_address_is_where_clients_look: 127.0.0.1:8946 is taken");
        return;
    }
    let dir = tmp("default-http");
    common::certs(&dir, &["a", "b"]);
    let runtime = dir.join("run");
    let mut a = roster()
        .env_remove("ROSTER_HTTP")
        .env("ROSTER_RUNTIME_DIR", &runtime)
        .args(["agent", "--profile", "local", "--bind"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--tls-dir")
        .arg(dir.join("a"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ta = TermOnDrop(a.id());
    let members = || {
        Command::new(env!("CARGO_BIN_EXE_roster"))
            .env("ROSTER_RUNTIME_DIR", &runtime)
            .env_remove("ROSTER_HTTP_ADDR")
            .env_remove("ROSTER_HTTP_TOKEN")
            .env_remove("ROSTER_HTTP_TOKEN_FILE")
            .arg("members")
            .output()
            .unwrap()
    };
    let listed = common::wait_for(Duration::from_secs(10), || {
        let o = members();
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .expect("`roster members` with no --http reaches the agent's default address");
    assert!(
        listed.contains("a ") && listed.contains("alive"),
        "{listed}"
    );
    let out = roster()
        .env_remove("ROSTER_HTTP")
        .env("ROSTER_RUNTIME_DIR", &runtime)
        .args(["agent", "--profile", "local", "--bind"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--tls-dir")
        .arg(dir.join("b"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("127.0.0.1:8946") && err.contains("--http off"),
        "{err}"
    );
    signal(a.id(), "-TERM");
    wait_exit(&mut a, Duration::from_secs(5)).expect("a exits");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The voters an agent reports, sorted.
fn voters_of(http: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(&http_get(http, "/v1/voters")?).ok()?;
    let mut names: Vec<String> = v["voters"]
        .as_array()?
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    names.sort();
    Some(names)
}

/// Serf's `force-leave` and Consul's `raft remove-peer`, on real agents: a
/// killed member is forced from Down to Left on every member, then reaped
/// after `--reap-after`; a live member is refused both; the dead voter is
/// removed by hand although no member can replace it, and the metadata
/// still takes writes with the two voters left.
#[test]
fn force_leave_reaps_a_dead_member_and_voters_remove_drops_a_dead_voter() {
    force_leave_and_voters_remove("foca");
}

/// The same with the native SWIM engine.
#[test]
fn force_leave_and_voters_remove_with_the_native_engine() {
    force_leave_and_voters_remove("native");
}

fn force_leave_and_voters_remove(engine: &str) {
    let dir = tmp(&format!("forceleave-{engine}"));
    common::certs(&dir, &["a", "b", "c"]);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let (ha, hb) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let join = format!("127.0.0.1:{pa}");
    let reap = ["--reap-after", "3s", "--engine", engine];
    let mut a = agent_with(
        &dir,
        "a",
        &format!("127.0.0.1:{pa}"),
        &[&["--http", &ha][..], &reap].concat(),
    );
    let _ta = TermOnDrop(a.id());
    let mut b = agent_with(
        &dir,
        "b",
        &format!("127.0.0.1:{pb}"),
        &[&["--http", &hb, "--join", &join][..], &reap].concat(),
    );
    let _tb = TermOnDrop(b.id());
    let mut c = agent_with(
        &dir,
        "c",
        &format!("127.0.0.1:{pc}"),
        &[&["--join", &join][..], &reap].concat(),
    );
    let _tc = TermOnDrop(c.id());
    let all = ["a", "b", "c"].map(str::to_owned).to_vec();
    common::wait_until(Duration::from_secs(30), || {
        voters_of(&ha).as_ref() == Some(&all) && voters_of(&hb).as_ref() == Some(&all)
    })
    .expect("the metadata forms with a, b and c as voters");

    // Refused while c is alive.
    let out = common::roster_in(&dir, &["force-leave", "c", "--http", &ha]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not_down"), "{err}");
    let out = common::roster_in(&dir, &["voters", "remove", "c", "--http", &ha]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only a voter that is down"), "{err}");
    let out = common::roster_in(&dir, &["force-leave", "nobody", "--http", &ha]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_member"));

    Command::new("kill")
        .args(["-9", &c.id().to_string()])
        .status()
        .unwrap();
    let _ = c.wait();
    let state = |http: &str| member_state(http, "c");
    common::wait_until(Duration::from_secs(30), || {
        state(&ha).as_deref() == Some("down") && state(&hb).as_deref() == Some("down")
    })
    .expect("a and b hold the killed c Down");
    let out = common::roster_ok(&dir, &["force-leave", "c", "--http", &ha]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("forced out"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let forced = Instant::now();
    // Left on both; then no longer listed once 3 s have passed.
    let mut seen_left = [false, false];
    common::wait_until(Duration::from_secs(15), || {
        for (i, h) in [&ha, &hb].into_iter().enumerate() {
            if state(h).as_deref() == Some("left") {
                seen_left[i] = true;
            }
        }
        state(&ha).is_none() && state(&hb).is_none() && http_get(&hb, "/v1/members").is_some()
    })
    .expect("c is reaped on a and b");
    assert_eq!(
        seen_left,
        [true, true],
        "both listed c as left before reaping it"
    );
    let after = forced.elapsed();
    println!("force-leave ({engine}): c left everywhere, reaped {after:?} after the command");
    assert!(
        after >= Duration::from_millis(2500),
        "reaped after {after:?}, before --reap-after 3s"
    );
    assert_eq!(metric(&ha, "roster_forced_leaves_total"), Some(1.0));
    assert!(metric(&hb, "roster_members_reaped_total").unwrap_or(0.0) >= 1.0);

    // c is still a voter: no member can take its place, so the leader
    // keeps it until told.
    assert_eq!(voters_of(&ha).as_ref(), Some(&all));
    let out = common::roster_ok(&dir, &["voters", "remove", "c", "--http", &hb]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("c removed; voters now: a, b"), "{text}");
    common::wait_until(Duration::from_secs(10), || {
        voters_of(&ha).as_deref() == Some(&["a".to_owned(), "b".to_owned()][..])
    })
    .expect("a sees the two voters too");
    common::roster_ok(&dir, &["meta", "put", "after/removal", "ok", "--http", &ha]);
    let out = common::roster_ok(&dir, &["meta", "get", "after/removal", "--http", &hb]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    let out = common::roster_in(&dir, &["voters", "remove", "c", "--http", &ha]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a metadata voter"));
    // The leader deletes the request once carried out, so that it cannot
    // apply to a later voter named c.
    common::wait_until(Duration::from_secs(15), || {
        let out = common::roster_ok(
            &dir,
            &[
                "meta",
                "list",
                "roster/voters/remove/",
                "--json",
                "--http",
                &ha,
            ],
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().map(Vec::is_empty))
            == Some(true)
    })
    .expect("the carried-out removal request is deleted");
    for child in [&mut b, &mut a] {
        signal(child.id(), "-TERM");
        wait_exit(child, Duration::from_secs(5)).expect("exits");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads a child's stdout lines on a thread, as (arrival, line).
fn line_reader(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `roster monitor --logs LEVEL` streams the agent's log lines at the level
/// asked, whatever level the agent writes to its own output: a debug line
/// reaches a `--logs debug` monitor while the agent (at info) never writes
/// it, and an info monitor gets the info line without the debug one.
#[test]
fn monitor_streams_log_lines_at_the_level_asked() {
    let dir = tmp("monitorlogs");
    common::certs(&dir, &["a"]);
    let pa = free_port();
    let ha = format!("127.0.0.1:{}", free_port());
    let config = dir.join("a.toml");
    std::fs::write(
        &config,
        format!(
            "bind = \"127.0.0.1:{pa}\"\ntls_dir = \"{}\"\nhttp = \"{ha}\"\nprofile = \"local\"\n",
            dir.join("a").display()
        ),
    )
    .unwrap();
    let stderr_path = dir.join("a.log");
    let mut a = roster()
        .args(["agent", "--config"])
        .arg(&config)
        .env_remove("ROSTER_HTTP")
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let _ta = TermOnDrop(a.id());
    common::wait_until(Duration::from_secs(15), || {
        http_get(&ha, "/v1/status").is_some()
    })
    .expect("a answers");
    let bad = roster()
        .args(["monitor", "--logs", "loud", "--http", &ha])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected error, warn, info"));

    let monitor = |level: &str| {
        roster()
            .args(["monitor", "--json", "--logs", level, "--http", &ha])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut debug = monitor("debug");
    let _td = TermOnDrop(debug.id());
    let mut info = monitor("info");
    let _ti = TermOnDrop(info.id());
    let (debug_lines, info_lines) = (line_reader(&mut debug), line_reader(&mut info));
    let logged = |v: &serde_json::Value, level: &str, text: &str| {
        v["type"] == "log"
            && v["level"] == level
            && v["message"].as_str().is_some_and(|m| m.contains(text))
    };
    // SIGHUP logs "the configuration now in force" at debug, then
    // "configuration re-read" at info. Repeat until both monitors have
    // subscribed and shown the lines.
    let (mut got_debug, mut got_info) = (false, false);
    let start = Instant::now();
    while !(got_debug && got_info) && start.elapsed() < Duration::from_secs(20) {
        signal(a.id(), "-HUP");
        let round = Instant::now();
        while round.elapsed() < Duration::from_millis(700) {
            while let Ok(l) = debug_lines.try_recv() {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                got_debug |= logged(&v, "debug", "the configuration now in force");
            }
            while let Ok(l) = info_lines.try_recv() {
                let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                assert_ne!(v["level"], "debug", "an info monitor got {l}");
                got_info |= logged(&v, "info", "configuration re-read");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(got_debug, "the debug monitor showed the debug line");
    assert!(got_info, "the info monitor showed the info line");
    signal(a.id(), "-TERM");
    wait_exit(&mut a, Duration::from_secs(5)).expect("a exits");
    wait_exit(&mut debug, Duration::from_secs(5)).expect("the monitor ends with its agent");
    let own = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(own.contains("configuration re-read"), "{own}");
    assert!(
        !own.contains("the configuration now in force"),
        "the agent at info wrote a debug line: {own}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Forcing out a member that was only cut off changes the listing, not the
/// member: once the cut heals it refutes its Down and is listed Alive
/// again (as a Serf member forced out while alive rejoins).
#[test]
fn a_member_forced_out_while_cut_off_comes_back_when_the_cut_heals() {
    let dir = tmp("forcedback");
    common::certs(&dir, &["a", "b", "c"]);
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let (ha, hb, hc) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let join = format!("127.0.0.1:{pa}");
    let mut a = agent_with(&dir, "a", &format!("127.0.0.1:{pa}"), &["--http", &ha]);
    let _ta = TermOnDrop(a.id());
    let mut b = agent_with(
        &dir,
        "b",
        &format!("127.0.0.1:{pb}"),
        &["--http", &hb, "--join", &join],
    );
    let _tb = TermOnDrop(b.id());
    let mut c = agent_with(
        &dir,
        "c",
        &format!("127.0.0.1:{pc}"),
        &["--http", &hc, "--join", &join],
    );
    let _tc = TermOnDrop(c.id());
    let state = |http: &str, id: &str| member_state(http, id);
    common::wait_until(Duration::from_secs(20), || {
        state(&ha, "c").as_deref() == Some("alive") && state(&hb, "c").as_deref() == Some("alive")
    })
    .expect("a and b see c");
    // Cut c off both ways.
    common::roster_ok(
        &dir,
        &[
            "chaos", "set", "--block", "a", "--block", "b", "--http", &hc,
        ],
    );
    common::roster_ok(&dir, &["chaos", "set", "--block", "c", "--http", &ha]);
    common::roster_ok(&dir, &["chaos", "set", "--block", "c", "--http", &hb]);
    common::wait_until(Duration::from_secs(30), || {
        state(&ha, "c").as_deref() == Some("down") && state(&hb, "c").as_deref() == Some("down")
    })
    .expect("a and b hold the cut-off c Down");
    common::roster_ok(&dir, &["force-leave", "c", "--http", &ha]);
    common::wait_until(Duration::from_secs(10), || {
        state(&ha, "c").as_deref() == Some("left") && state(&hb, "c").as_deref() == Some("left")
    })
    .expect("c is listed Left on a and b");
    for h in [&ha, &hb, &hc] {
        common::roster_ok(&dir, &["chaos", "heal", "--http", h]);
    }
    let back = common::wait_until(Duration::from_secs(60), || {
        state(&ha, "c").as_deref() == Some("alive") && state(&hb, "c").as_deref() == Some("alive")
    })
    .expect("c refutes and is listed Alive again");
    println!("forced-out c listed alive again {back:?} after the heal");
    for child in [&mut c, &mut b, &mut a] {
        signal(child.id(), "-TERM");
        wait_exit(child, Duration::from_secs(5)).expect("exits");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
