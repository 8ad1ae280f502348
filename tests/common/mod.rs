//! Helpers shared by the tests that drive the `roster` binary as a process.
//! (Each test crate uses some of them.)
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `roster ARGS` in `dir`.
pub fn roster_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roster"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// A base port with 6 free ports after it, UDP and TCP (best effort: probed,
/// then used).
pub fn base_port() -> u16 {
    loop {
        let p = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if p < 60_000
            && (p..p + 6).all(|q| {
                std::net::UdpSocket::bind(("127.0.0.1", q)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", q)).is_ok()
            })
        {
            return p;
        }
    }
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

/// Polls `f` every 50 ms until it holds (how long that took) or `limit`
/// passes (`None`).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
