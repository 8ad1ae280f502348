//! `roster agent --event-handler`: runs scripts on user events, like
//! Serf's event handlers.
//!
//! Each user event this node receives (its own included) runs every
//! handler, one event after another in arrival order, in a task of their
//! own: a slow or failing handler never holds up gossip. The event's
//! payload is the handler's standard input; its name, sender and stamps
//! are in the environment:
//!
//! | variable | value |
//! |---|---|
//! | `ROSTER_EVENT` | `user` |
//! | `ROSTER_USER_EVENT` | the event's name |
//! | `ROSTER_EVENT_SENDER` | the sending member's name |
//! | `ROSTER_EVENT_SEQ` | its sequence number among the sender's events (this life) |
//! | `ROSTER_EVENT_STAMP` | its HLC stamp |
//! | `ROSTER_SELF_NAME` | this node's name |
//!
//! A handler that runs past its timeout is killed. Its exit status and the
//! first 4 KiB of its output and error output are logged. Events arriving
//! while 1,024 wait are dropped, with a warning.
//!
//! With a coalescing window (`--event-coalesce`, as Serf's
//! `coalesce_period`), events of one name that arrive within the window of
//! the first are handled once, with the last of them; at the window's end
//! the names run in name order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use roster::node::{Event, UserEvent};
use roster::runtime::Roster;
use tokio::io::AsyncWriteExt;

/// Events waiting for the handlers, at most.
const QUEUE: usize = 1024;

/// Output logged per stream, at most.
const OUTPUT_LOGGED: usize = 4096;

/// How handlers run.
#[derive(Debug, Clone)]
pub struct HandlerSettings {
    /// The programs, each run on every event.
    pub handlers: Vec<PathBuf>,
    /// How long one may run.
    pub timeout: Duration,
    /// The coalescing window (zero: none).
    pub coalesce: Duration,
}

/// Starts running the handlers on the user events `roster` receives. Runs
/// until the node stops.
pub fn start(roster: Arc<Roster>, s: HandlerSettings) {
    let HandlerSettings {
        handlers,
        timeout,
        coalesce,
    } = s;
    if handlers.is_empty() {
        return;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<UserEvent>(QUEUE);
    tokio::spawn(dispatch(roster.subscribe(), tx, coalesce));
    let me = roster.identity().id.to_string();
    tokio::spawn(async move {
        while let Some(u) = rx.recv().await {
            for h in &handlers {
                run(h, &u, &me, timeout).await;
            }
        }
    });
}

/// Hands each user event to the runner, coalescing by name within
/// `coalesce` when it is not zero.
async fn dispatch(
    mut events: roster::runtime::Events,
    tx: tokio::sync::mpsc::Sender<UserEvent>,
    coalesce: Duration,
) {
    let mut dropped = 0u64;
    let mut coalesced = 0u64;
    let mut pending: BTreeMap<String, UserEvent> = BTreeMap::new();
    let mut flush_at: Option<tokio::time::Instant> = None;
    let mut send = |u: UserEvent| {
        if tx.try_send(u).is_err() {
            dropped += 1;
            tracing::warn!(
                dropped,
                "event handlers are behind: a user event was not handled"
            );
        }
    };
    loop {
        let wake =
            flush_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            e = events.next() => {
                let Some(e) = e else { break };
                let Event::UserEvent(u) = e else { continue };
                if coalesce.is_zero() {
                    send(u);
                    continue;
                }
                if pending.insert(u.name.clone(), u).is_some() {
                    coalesced += 1;
                    tracing::debug!(coalesced, "a user event coalesced with a later one of its name");
                }
                flush_at.get_or_insert_with(|| tokio::time::Instant::now() + coalesce);
            }
            _ = tokio::time::sleep_until(wake), if flush_at.is_some() => {
                flush_at = None;
                for (_, u) in std::mem::take(&mut pending) {
                    send(u);
                }
            }
        }
    }
}

/// Runs `handler` on `u` and logs how it ended.
async fn run(handler: &PathBuf, u: &UserEvent, me: &str, timeout: Duration) {
    let env = [
        ("ROSTER_EVENT", "user".to_owned()),
        ("ROSTER_USER_EVENT", u.name.clone()),
        ("ROSTER_EVENT_SENDER", u.sender.to_string()),
        ("ROSTER_EVENT_SEQ", u.seq.to_string()),
        ("ROSTER_EVENT_STAMP", u.hlc.to_string()),
        ("ROSTER_SELF_NAME", me.to_owned()),
    ];
    run_script(handler, &env, &u.payload, timeout, &u.name).await;
}

/// Runs `handler` with `env` and `input` on its standard input, within
/// `timeout`; logs how it ended and returns its standard output when it
/// succeeded.
async fn run_script(
    handler: &PathBuf,
    env: &[(&str, String)],
    input: &[u8],
    timeout: Duration,
    what: &str,
) -> Option<Vec<u8>> {
    let spawned = tokio::process::Command::new(handler)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(handler = %handler.display(), error = %e, "cannot start the handler");
            return None;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A handler that does not read its input is not an error.
        let _ = stdin.write_all(input).await;
    }
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let stdout = shown(&out.stdout);
            let stderr = shown(&out.stderr);
            if out.status.success() {
                tracing::info!(handler = %handler.display(), event = %what, %stdout, %stderr, "handler ran");
                return Some(out.stdout);
            }
            tracing::warn!(handler = %handler.display(), event = %what, status = %out.status, %stdout, %stderr, "handler failed");
        }
        Ok(Err(e)) => {
            tracing::error!(handler = %handler.display(), error = %e, "handler could not be waited for")
        }
        Err(_) => {
            // Dropping the child kills it (`kill_on_drop`).
            tracing::warn!(handler = %handler.display(), event = %what, timeout_secs = timeout.as_secs_f64(), "handler ran past its timeout and was killed");
        }
    }
    None
}

/// Starts answering the queries `roster` receives with `handler`'s
/// standard output (queries run one after another; a handler past the
/// query's deadline or `timeout` is killed and nothing is answered).
pub fn start_queries(roster: Arc<Roster>, handler: Option<PathBuf>, timeout: Duration) {
    let Some(handler) = handler else {
        return;
    };
    let mut events = roster.subscribe();
    let me = roster.identity().id.to_string();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            let Event::Query(q) = e else { continue };
            let wait = timeout.min(Duration::from_millis(u64::from(q.timeout_ms)));
            let env = [
                ("ROSTER_EVENT", "query".to_owned()),
                ("ROSTER_QUERY_NAME", q.name.clone()),
                ("ROSTER_QUERY_ASKER", q.asker.id.to_string()),
                ("ROSTER_QUERY_SEQ", q.seq.to_string()),
                ("ROSTER_SELF_NAME", me.clone()),
            ];
            let Some(answer) = run_script(&handler, &env, &q.payload, wait, &q.name).await else {
                continue;
            };
            if let Err(e) = roster.respond(&q.id(), &answer).await {
                tracing::warn!(query = %q.name, error = %e, "the query handler's answer was not sent");
            }
        }
    });
}

/// The first [`OUTPUT_LOGGED`] bytes of `b` as text.
fn shown(b: &[u8]) -> String {
    let end = b.len().min(OUTPUT_LOGGED);
    String::from_utf8_lossy(&b[..end]).trim_end().to_owned()
}
