//! `roster event` sends a user event through an agent, like `serf event`;
//! `roster rtt` estimates a round trip from network coordinates, like
//! `serf rtt`.

use std::io::Read;
use std::process::ExitCode;

use super::client::{ClientArgs, call, percent_encode, run_result};

/// `roster event NAME [PAYLOAD]`: sends a user event to every live member
/// (the agent's own node included). `PAYLOAD` `-` reads it from standard
/// input.
pub fn event(c: &ClientArgs, name: &str, payload: Option<&str>) -> ExitCode {
    run_result(|| {
        let body = match payload {
            Some("-") => {
                let mut b = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut b)
                    .map_err(|e| format!("cannot read the payload from standard input: {e}"))?;
                b
            }
            Some(p) => p.as_bytes().to_vec(),
            None => Vec::new(),
        };
        let path = format!("/v1/event/{}", percent_encode(name));
        if let Some(v) = call(c, "POST", &path, &body)? {
            println!(
                "event {} sent by {} (#{}, {} bytes)",
                v["name"].as_str().unwrap_or(name),
                v["sender"].as_str().unwrap_or(""),
                v["seq"],
                body.len()
            );
        }
        Ok(())
    })
}

/// `roster rtt A [B]`: the estimated round trip between members `A` and
/// `B` (default: the agent's node), like `serf rtt`.
pub fn rtt(c: &ClientArgs, a: &str, b: Option<&str>) -> ExitCode {
    run_result(|| {
        let path = match b {
            Some(b) => format!("/v1/rtt/{}/{}", percent_encode(a), percent_encode(b)),
            None => format!("/v1/rtt/{}", percent_encode(a)),
        };
        if let Some(v) = call(c, "GET", &path, b"")? {
            println!(
                "estimated round trip {} <-> {}: {:.3} ms",
                v["a"].as_str().unwrap_or(a),
                v["b"].as_str().unwrap_or(""),
                v["rtt_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
        Ok(())
    })
}
