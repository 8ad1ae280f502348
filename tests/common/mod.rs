//! Helpers shared by the tests that drive `roster cluster` as a process.

use std::path::Path;
use std::process::{Command, Output};

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
