//! `roster monitor`: an agent's membership events and log lines, streamed
//! as they happen.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use roster::api::client::{MAX_RESPONSE_BYTES, TIMEOUT, open};

use super::client::{Agent, ClientArgs, api_error, run_result};

/// `roster monitor` options.
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Also stream the agent's log lines at this level or more severe
    /// (error, warn, info, debug, trace), whatever level the agent writes
    /// to its own output.
    #[arg(long, num_args = 0..=1, default_missing_value = "info", value_name = "LEVEL")]
    pub logs: Option<String>,
}

/// `roster monitor [--logs [LEVEL]]`: streams the agent's membership
/// events (and log lines) as they happen (server-sent events from
/// `/v1/events/stream`) until interrupted or the agent stops.
pub fn monitor(a: &MonitorArgs) -> ExitCode {
    let c = &a.client;
    run_result(|| {
        let path = match &a.logs {
            Some(l) => {
                roster::api::logs::parse_level(l).map_err(|e| format!("--logs: {e}"))?;
                format!("/v1/events/stream?logs={}", l.to_ascii_lowercase())
            }
            None => "/v1/events/stream".to_owned(),
        };
        let agent = c.agent()?;
        let json = c.json;
        let mut event = String::new();
        let mut data = String::new();
        let on_line = move |line: &str| {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            } else if line.is_empty() && !data.is_empty() {
                match event.as_str() {
                    "member" => print_event(&data, json),
                    "user" => print_user_event(&data, json),
                    "log" => print_log(&data, json),
                    "skipped" => eprintln!("({data} log lines skipped: the client fell behind)"),
                    _ => {}
                }
                event.clear();
                data.clear();
            }
        };
        stream_blocking(&agent, ("GET", &path, Vec::new()), on_line)?;
        eprintln!("the agent closed the stream (it stopped)");
        Ok(())
    })
}

/// One log line from the stream: a line of text, or its JSON (with
/// `"type": "log"`, so it tells apart from membership events).
fn print_log(data: &str, json: bool) {
    let Ok(mut v) = serde_json::from_str::<Value>(data) else {
        return;
    };
    if json {
        v["type"] = Value::from("log");
        println!("{v}");
    } else {
        println!(
            "{}  {:<9}  {}: {}",
            stamp(&v),
            v["level"].as_str().unwrap_or("").to_ascii_uppercase(),
            v["target"].as_str().unwrap_or(""),
            v["message"].as_str().unwrap_or("")
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// One membership event from the stream: a line of text, or its JSON.
fn print_event(data: &str, json: bool) {
    if json {
        println!("{data}");
        return;
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return;
    };
    println!(
        "{}  {:<9}  {}",
        stamp(&v),
        v["kind"].as_str().unwrap_or(""),
        v["member"].as_str().unwrap_or("(this node)")
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// One user event from the stream: a line of text, or its JSON (with
/// `"type": "user"`).
fn print_user_event(data: &str, json: bool) {
    let Ok(mut v) = serde_json::from_str::<Value>(data) else {
        return;
    };
    if json {
        v["type"] = Value::from("user");
        println!("{v}");
    } else {
        let payload = v["payload"].as_str().unwrap_or("");
        let shown: String = payload.chars().take(60).collect();
        println!(
            "{}  {:<9}  {} from {} (#{}){}{}",
            stamp(&v),
            "event",
            v["name"].as_str().unwrap_or(""),
            v["sender"].as_str().unwrap_or(""),
            v["seq"],
            if payload.is_empty() { "" } else { ": " },
            shown.escape_debug()
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// An answer's `at_ms` as an RFC 3339 UTC time with milliseconds.
fn stamp(v: &Value) -> String {
    v["at_ms"]
        .as_u64()
        .and_then(|ms| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
        })
        .and_then(|t| {
            let f = time::format_description::parse_borrowed::<2>(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z",
            )
            .ok()?;
            t.format(&f).ok()
        })
        .unwrap_or_default()
}

/// [`stream_lines`] on a runtime of its own, for a command.
pub(super) fn stream_blocking(
    agent: &Agent,
    request: (&str, &str, Vec<u8>),
    on_line: impl FnMut(&str),
) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the client: {e}"))?
        .block_on(stream_lines(agent, request, on_line))
}

/// Sends `method path` with `body` and hands each line of the answer to `on_line` as it
/// arrives (the connection and the answer's headers within 10 s; the body
/// for as long as it lasts).
async fn stream_lines(
    agent: &Agent,
    (method, path, body): (&str, &str, Vec<u8>),
    mut on_line: impl FnMut(&str),
) -> Result<(), String> {
    use http_body_util::BodyExt;
    let addr = agent.addr.as_str();
    let resp = tokio::time::timeout(TIMEOUT, open(agent, method, path, body))
        .await
        .map_err(|_| format!("{addr} did not answer within {} s", TIMEOUT.as_secs()))??;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    if status != 200 {
        let raw = http_body_util::Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading from {addr}: {e}"))?
            .to_bytes();
        let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        return Err(api_error(status, &v));
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading from {addr}: {e}"))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line);
            on_line(text.trim_end_matches(['\r', '\n']));
        }
        if buf.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "{addr} sent a line over {MAX_RESPONSE_BYTES} bytes"
            ));
        }
    }
    Ok(())
}
