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
        let body = self::payload(payload)?;
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

/// `roster query` options.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// The query's name.
    pub name: String,
    /// The payload; `-` reads it from standard input.
    pub payload: Option<String>,
    /// Only members whose whole name matches this regular expression
    /// answer.
    #[arg(long)]
    pub node: Option<String>,
    /// Only members whose tag `k` has a value this regular expression
    /// matches whole answer (`k=REGEX`, repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// How long to wait for answers (default: Serf's, growing with the
    /// log of the member count).
    #[arg(long, value_parser = super::agent::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Also send each answer through this many random members (0-5), for
    /// lossy paths.
    #[arg(long, default_value_t = 0)]
    pub relay: u8,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `roster query NAME [PAYLOAD]`: asks the members the filters select and
/// prints their acknowledgements and answers as they arrive, then who did
/// not answer by the deadline, like `serf query`.
pub fn query(a: &QueryArgs) -> ExitCode {
    let c = &a.client;
    run_result(|| {
        let body = payload(a.payload.as_deref())?;
        let mut path = format!("/v1/query/{}?relay={}", percent_encode(&a.name), a.relay);
        if let Some(n) = &a.node {
            path += &format!("&node={}", percent_encode(n));
        }
        for t in &a.tags {
            path += &format!("&tag={}", percent_encode(t));
        }
        if let Some(t) = a.timeout {
            path += &format!("&timeout_ms={}", t.as_millis());
        }
        let agent = c.agent()?;
        let json = c.json;
        let on_line = |line: &str| {
            if json {
                println!("{line}");
                return;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                return;
            };
            let from = v["from"].as_str().unwrap_or("");
            match v["type"].as_str() {
                Some("ack") => println!("ack from {from}"),
                Some("answer") => println!(
                    "answer from {from}: {}",
                    v["payload"].as_str().unwrap_or("").trim_end()
                ),
                Some("done") => println!(
                    "done: {} acks, {} answers; missing: {}",
                    v["acks"],
                    v["answers"],
                    v["missing"].as_array().filter(|m| !m.is_empty()).map_or(
                        "none".to_owned(),
                        |m| {
                            m.iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )
                ),
                _ => {}
            }
        };
        super::monitor::stream_blocking(&agent, ("POST", &path, body), on_line)
    })
}

/// A command's payload: the argument, standard input for `-`, or none.
fn payload(arg: Option<&str>) -> Result<Vec<u8>, String> {
    Ok(match arg {
        Some("-") => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| format!("cannot read the payload from standard input: {e}"))?;
            b
        }
        Some(p) => p.as_bytes().to_vec(),
        None => Vec::new(),
    })
}
