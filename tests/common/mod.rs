//! Helpers shared by the tests that drive the `roster` binary as a process.
//! (Each test crate uses some of them.)
#![allow(dead_code)]
// The helpers wait on real processes and sockets: they read the real clock.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `roster ARGS` in `dir` and asserts it succeeded (its stderr in the
/// failure message).
pub fn roster_ok(dir: &Path, args: &[&str]) -> Output {
    let out = roster_in(dir, args);
    assert!(
        out.status.success(),
        "roster {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `roster ARGS` in `dir`.
pub fn roster_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Ports handed out come from 20000..32000, below Linux's ephemeral range
/// (32768 and up): a port probed free there cannot be taken in the meantime
/// by an outgoing connection's local port (which made agents fail with
/// "Address already in use"). Each call moves on from the last, starting
/// at an offset drawn from the process id.
fn next_free(width: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let at = NEXT.fetch_add(u32::from(width), Ordering::Relaxed) % SPAN;
        if at + u32::from(width) > SPAN {
            continue;
        }
        let p = (LOW + at) as u16;
        if (p..p + width).all(|q| {
            std::net::UdpSocket::bind(("127.0.0.1", q)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", q)).is_ok()
        }) {
            return p;
        }
    }
    panic!("no free port in 20000..32000");
}

/// A free UDP port on loopback (best effort: probed, then used).
pub fn free_udp() -> u16 {
    next_free(1)
}

/// A free TCP port on loopback (best effort: probed, then used).
pub fn free_tcp() -> u16 {
    next_free(1)
}

/// A base port with 6 free ports after it, UDP and TCP (best effort: probed,
/// then used).
pub fn base_port() -> u16 {
    next_free(6)
}

/// A first port for a `roster cluster` of `nodes` nodes (two ports each).
pub fn base_port_for(nodes: u16) -> u16 {
    next_free(2 * nodes)
}

/// Writes a cluster CA to `dir/ca` and a certificate for each name to
/// `dir/NAME`, with `roster cert`.
pub fn certs(dir: &Path, names: &[&str]) {
    let roster = || Command::new(env!("CARGO_BIN_EXE_roster"));
    let ok = roster()
        .args(["cert", "ca", "--dir"])
        .arg(dir.join("ca"))
        .status()
        .unwrap();
    assert!(ok.success());
    for n in names {
        let ok = roster()
            .args(["cert", "node", "--name", n, "--ca"])
            .arg(dir.join("ca"))
            .arg("--out")
            .arg(dir.join(n))
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

/// Polls `f` every 50 ms until it gives a value, or `limit` passes (`None`).
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(t) = f() {
            return Some(t);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Polls `f` every 50 ms until it holds (how long that took) or `limit`
/// passes (`None`).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    wait_for(limit, || f().then(|| start.elapsed()))
}

/// Polls the async `check` every 50 ms until it holds; panics with `what`
/// after `limit`. Returns the time it took.
pub async fn wait_async<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not reached within {limit:?}");
}

/// One GET; its body. A server may keep the connection open (Chromium's
/// DevTools does), so the body is read up to its Content-Length. A roster
/// agent's operator token is found as the CLI finds it (what the agent
/// recorded for its address).
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let auth = roster::api::credentials::find(addr, None)
        .ok()
        .flatten()
        .map(|t| format!("Authorization: Bearer {}\r\n", t.expose()))
        .unwrap_or_default();
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().ok())
                })
                .flatten();
            if len.is_some_and(|l| body.len() >= l) || n == 0 {
                return Some(body.to_owned());
            }
        } else if n == 0 {
            return None;
        }
    }
}
