//! Client commands that talk to an agent's HTTP API: `members`, `status`,
//! `state get|set|delete`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

/// Where the agent's HTTP API listens unless `--http` says otherwise (start
/// the agent with `--http 127.0.0.1:8946`).
pub const DEFAULT_HTTP: &str = "127.0.0.1:8946";
/// Longest wait for the agent's answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The agent's HTTP address.
    #[arg(long, env = "ROSTER_HTTP_ADDR", default_value = DEFAULT_HTTP, global = true)]
    pub http: String,
    /// Print the agent's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `roster state` subcommands.
#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Read a key (of this agent's node, or `--node`'s).
    Get {
        /// The key.
        key: String,
        /// Another member's state.
        #[arg(long)]
        node: Option<String>,
    },
    /// Write a key of the agent's node.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete a key of the agent's node.
    Delete {
        /// The key.
        key: String,
    },
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One request to the agent: (status, JSON body).
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> Result<(u16, Value), String> {
    let mut s =
        TcpStream::connect(addr).map_err(|e| format!("cannot reach the agent at {addr}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .and_then(|()| s.write_all(body))
    .map_err(|e| format!("sending to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr} did not answer HTTP"))?;
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{addr} sent a malformed status line"))?;
    let json = serde_json::from_str(body).map_err(|e| format!("{addr} sent non-JSON ({e})"))?;
    Ok((status, json))
}

fn api_error(status: u16, v: &Value) -> String {
    format!(
        "agent answered {status}: {} ({})",
        v["error"].as_str().unwrap_or("error"),
        v["detail"].as_str().unwrap_or("")
    )
}

fn run_result(f: impl FnOnce() -> Result<(), String>) -> ExitCode {
    match f() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Renders rows as columns separated by two spaces, each as wide as its
/// widest cell (like `serf members`).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// `roster members`.
pub fn members(c: &ClientArgs) -> ExitCode {
    run_result(|| {
        let (status, v) = request(&c.http, "GET", "/v1/members", b"")?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
            return Ok(());
        }
        let rows: Vec<Vec<String>> = v
            .as_array()
            .ok_or("agent sent a non-list member list")?
            .iter()
            .map(|m| {
                let tags = m["tags"]
                    .as_object()
                    .map(|t| {
                        t.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                vec![
                    m["id"].as_str().unwrap_or("").to_owned(),
                    m["addr"].as_str().unwrap_or("").to_owned(),
                    m["state"].as_str().unwrap_or("").to_owned(),
                    m["generation"].to_string(),
                    tags,
                ]
            })
            .collect();
        print!(
            "{}",
            table(&["Name", "Address", "State", "Generation", "Tags"], &rows)
        );
        Ok(())
    })
}

/// `roster status`.
pub fn status(c: &ClientArgs) -> ExitCode {
    run_result(|| {
        let (status, v) = request(&c.http, "GET", "/v1/status", b"")?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
            return Ok(());
        }
        let n = &v["node"];
        let m = &v["members"];
        println!(
            "node:        {} ({})",
            n["id"].as_str().unwrap_or(""),
            n["addr"].as_str().unwrap_or("")
        );
        println!(
            "generation:  {}   incarnation: {}",
            n["generation"], n["incarnation"]
        );
        println!(
            "joined:      {}   health score: {}",
            n["joined"], n["health_score"]
        );
        println!(
            "members:     {} alive, {} suspect, {} down, {} left",
            m["alive"], m["suspect"], m["down"], m["left"]
        );
        println!("hlc:         {}", v["hlc"].as_str().unwrap_or(""));
        Ok(())
    })
}

/// `roster state ...`.
pub fn state(c: &ClientArgs, cmd: StateCmd) -> ExitCode {
    run_result(|| {
        let (status, v) = match &cmd {
            StateCmd::Get { key, node } => {
                let q = node
                    .as_ref()
                    .map(|n| format!("?node={}", percent_encode(n)))
                    .unwrap_or_default();
                request(
                    &c.http,
                    "GET",
                    &format!("/v1/state/{}{q}", percent_encode(key)),
                    b"",
                )?
            }
            StateCmd::Set { key, value } => request(
                &c.http,
                "PUT",
                &format!("/v1/state/{}", percent_encode(key)),
                value.as_bytes(),
            )?,
            StateCmd::Delete { key } => request(
                &c.http,
                "DELETE",
                &format!("/v1/state/{}", percent_encode(key)),
                b"",
            )?,
        };
        if !(200..300).contains(&status) {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
        } else if let StateCmd::Get { .. } = cmd {
            println!("{}", v["value"].as_str().unwrap_or(""));
        } else {
            println!("ok (hlc {})", v["hlc"].as_str().unwrap_or(""));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["Name", "State"],
            &[
                vec!["a".into(), "alive".into()],
                vec!["long-name".into(), "down".into()],
            ],
        );
        assert_eq!(t, "Name       State\na          alive\nlong-name  down\n");
    }

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(percent_encode("tag:zone"), "tag:zone");
    }
}
