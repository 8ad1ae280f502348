//! The agent's HTTP API and dashboard (axum).
//!
//! Routes: `GET /health`, `GET /metrics`, `GET /v1/status`, `GET /v1/members`,
//! `GET /v1/events` (recent membership events), `GET|PUT|DELETE
//! /v1/state/{key}` (this node's state; `GET ?node=ID` reads another
//! member's), the cluster metadata (`GET|PUT|DELETE /v1/meta/{key}`,
//! `POST /v1/meta/{key}` compare-and-set, `GET /v1/meta?prefix=P`; reads are
//! linearizable unless `?stale=true`), `GET /v1/voters`, the partition
//! placement (`GET /v1/partitions`, `GET /v1/partitions/key/{key}`), and the
//! dashboard at `/`. Every route but `/health` needs the operator token
//! ([`auth`]). Errors are JSON
//! `{"error": ..., "detail": ...}` with a fitting status code; bodies are
//! limited to [`MAX_BODY_BYTES`].

pub mod auth;
pub mod client;
pub mod credentials;
pub mod logs;
mod metadata;
pub mod metrics;
mod user_events;

pub use auth::{Access, Token, TokenError};
use metadata::{
    force_leave, meta_cas, meta_delete, meta_get, meta_list, meta_put, partition_of_key,
    partitions, reinstate, revoke, revoked_list, voter_remove, voters,
};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::node::{Event, MemberState, MetaError, MetaStatus, NodeId, ReadMode};
use crate::runtime::{Roster, WriteError};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Membership events kept for `/v1/events` and the dashboard.
pub const RECENT_EVENTS: usize = 100;

/// One membership event as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    /// Unix milliseconds when this node saw it.
    pub at_ms: u64,
    /// `up`, `suspected`, `refuted`, `down`, `left`, `joined`, `rejoined`.
    pub kind: &'static str,
    /// The member (absent for this node's own events).
    pub member: Option<String>,
}

#[derive(Clone)]
struct Api {
    roster: Arc<Roster>,
    recent: Arc<Mutex<VecDeque<EventRecord>>>,
}

/// An API error: status code plus JSON body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
        }
    }

    fn stopped() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_stopped",
            "the node is not running",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "detail": self.detail})),
        )
            .into_response()
    }
}

fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Alive => "alive",
        MemberState::Suspect => "suspect",
        MemberState::Down => "down",
        MemberState::Left => "left",
    }
}

/// A membership event as the API shows it (`None`: not a membership
/// event).
fn record(e: &Event) -> Option<EventRecord> {
    let (kind, member) = match e {
        Event::MemberUp(id) => ("up", Some(id)),
        Event::MemberSuspected(id) => ("suspected", Some(id)),
        Event::MemberRefuted(id) => ("refuted", Some(id)),
        Event::MemberDown(id) => ("down", Some(id)),
        Event::MemberLeft(id) => ("left", Some(id)),
        Event::MemberReaped(id) => ("reaped", Some(id)),
        Event::Joined => ("joined", None),
        Event::Rejoined(id) => ("rejoined", Some(id)),
        _ => return None,
    };
    Some(EventRecord {
        at_ms: now_ms(),
        kind,
        member: member.map(|m| m.to_string()),
    })
}

#[allow(clippy::disallowed_methods)] // the API stamps events with wall time
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Builds the router for `roster`, guarded by `access` (see [`auth`]), and
/// starts recording its membership events. Must run inside a tokio runtime.
pub fn router(roster: Arc<Roster>, access: Access) -> Router {
    let recent = Arc::new(Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)));
    let mut events = roster.subscribe();
    let sink = recent.clone();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            let Some(rec) = record(&e) else { continue };
            let mut q = sink.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() == RECENT_EVENTS {
                q.pop_front();
            }
            q.push_back(rec);
        }
    });
    Router::new()
        .route("/", get(dashboard))
        .route("/health", get(health))
        .route("/v1/status", get(status))
        .route("/v1/members", get(members))
        .route("/v1/events", get(recent_events))
        .route("/v1/events/stream", get(event_stream))
        .route(
            "/v1/event/{name}",
            axum::routing::post(user_events::event_send),
        )
        .route("/v1/rtt/{a}", get(user_events::rtt_one))
        .route("/v1/query/{name}", axum::routing::post(user_events::query))
        .route("/v1/rtt/{a}/{b}", get(user_events::rtt))
        .route("/metrics", get(metrics_text))
        .route(
            "/v1/state/{*key}",
            get(state_get).put(state_put).delete(state_delete),
        )
        .route("/v1/meta", get(meta_list))
        .route(
            "/v1/meta/{*key}",
            get(meta_get)
                .put(meta_put)
                .delete(meta_delete)
                .post(meta_cas),
        )
        .route("/v1/voters", get(voters))
        .route("/v1/voters/{name}", axum::routing::delete(voter_remove))
        .route("/v1/force-leave/{name}", axum::routing::post(force_leave))
        .route("/v1/revoked", get(revoked_list))
        .route(
            "/v1/revoked/{name}",
            axum::routing::put(revoke).delete(reinstate),
        )
        .route("/v1/leave", axum::routing::post(leave))
        .route("/v1/join", axum::routing::post(join))
        .route("/v1/tags", get(tags_list))
        .route(
            "/v1/tags/{name}",
            axum::routing::put(tag_set).delete(tag_unset),
        )
        .route(
            "/v1/chaos",
            get(chaos_get).post(chaos_set).delete(chaos_heal),
        )
        .route("/v1/partitions", get(partitions))
        .route("/v1/partitions/key/{*key}", get(partition_of_key))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Api { roster, recent })
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(access),
            auth::guard,
        ))
}

/// Serves the API on `addr` in a background task, to callers that `access`
/// lets in.
pub async fn serve(
    roster: Arc<Roster>,
    addr: SocketAddr,
    access: Access,
) -> std::io::Result<ServeHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(roster, listener, access)
}

/// Serves the API on an already bound listener in a background task: over
/// HTTPS with the node's certificate when `access` says so
/// ([`Access::https`]), else plain HTTP.
pub fn serve_on(
    roster: Arc<Roster>,
    listener: tokio::net::TcpListener,
    access: Access,
) -> std::io::Result<ServeHandle> {
    let local = listener.local_addr()?;
    let tls = access.is_https().then(|| roster.clone());
    let app = router(roster, access);
    let task = tokio::spawn(accept_loop(listener, app, tls));
    Ok(ServeHandle { local, task })
}

/// Longest a client may take to send a request's headers, counted from
/// when the connection opened or its last answer went out; then the
/// connection is closed, so slow or idle clients cannot hold it. Over HTTPS
/// the TLS handshake has this long too.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Most connections served at once. A connection past it is closed on
/// accept (logged at most once a minute), which keeps the process within
/// its file-descriptor limit.
pub const MAX_CONNECTIONS: usize = 8192;

/// Who is on the other end of an HTTPS connection: the name in the
/// operator certificate it presented, if any. Set on every request of the
/// connection; the guard takes it as a credential.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The operator certificate's name (`None`: no certificate given).
    pub operator: Option<String>,
}

/// Accepts connections and serves each on its own task with
/// [`HEADER_READ_TIMEOUT`], at most [`MAX_CONNECTIONS`] at a time; over TLS
/// when `tls` is given (its node's current certificate, read per
/// connection so that a reload takes effect for the next one).
async fn accept_loop(listener: tokio::net::TcpListener, app: Router, tls: Option<Arc<Roster>>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused = 0u64;
    let mut warned: Option<tokio::time::Instant> = None;
    let mut warn_due = move || {
        let now = tokio::time::Instant::now();
        let due =
            warned.is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(60));
        if due {
            warned = Some(now);
        }
        due
    };
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or the like: wait a little, go on.
                if warn_due() {
                    tracing::warn!(error = %e, "HTTP accept failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if warn_due() {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    refused,
                    "HTTP connection limit reached; closing new connections"
                );
            }
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_connection(stream, app, Peer { operator: None }).await,
                Some(roster) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(roster.https_config());
                    let refused =
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => {
                                let operator = s
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .and_then(|c| crate::runtime::tls::node_id_of(c).ok())
                                    .map(|id| id.as_str().to_owned());
                                drop(roster);
                                return serve_connection(s, app, Peer { operator }).await;
                            }
                            Ok(Err(e)) => e.to_string(),
                            Err(_) => "the TLS handshake took too long".to_owned(),
                        };
                    if let Some(n) = roster.note_https_refusal() {
                        tracing::warn!(%from, error = %refused, refused_since_last_line = n, "HTTPS API client refused at the handshake (logged at most every 10 s; counted in roster_http_tls_refusals_total)");
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 on one connection, every request tagged with `peer`.
async fn serve_connection<S>(stream: S, app: Router, peer: Peer)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let app = app.map_request(
        move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(peer.clone());
            req
        },
    );
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let io = hyper_util::rt::TokioIo::new(stream);
    let _ = b.serve_connection(io, svc).await;
}

/// A running HTTP server.
#[derive(Debug)]
pub struct ServeHandle {
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ServeHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops serving (and drops the server's hold on the node).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

async fn health(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = api.roster.status().await.map_err(|_| ApiError::stopped())?;
    Ok(Json(json!({"status": "ok", "joined": s.joined})))
}

async fn status(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = api.roster.status().await.map_err(|_| ApiError::stopped())?;
    let counts = api
        .roster
        .member_counts()
        .await
        .map_err(|_| ApiError::stopped())?;
    let meta = api
        .roster
        .meta_status()
        .await
        .map_err(|_| ApiError::stopped())?;
    Ok(Json(json!({
        "node": {
            "id": s.identity.id.as_str(),
            "addr": s.identity.addr.to_string(),
            "generation": s.identity.generation.0,
            "incarnation": s.incarnation,
            "health_score": s.health_score,
            "joined": s.joined,
            "engine": s.engine.to_string(),
        },
        "members": {
            "alive": counts.alive,
            "suspect": counts.suspect,
            "down": counts.down,
            "left": counts.left,
        },
        "timing": {
            "live_members": s.timing.members,
            "suspicion_window_ms": s.timing.suspicion_window.as_millis() as u64,
            "retransmits": s.timing.retransmits.get(),
            "push_pull_interval_ms": s.timing.sync_interval.as_millis() as u64,
        },
        "hlc": s.hlc.to_string(),
        "raft": raft_json(&meta),
        "chaos": api.roster.chaos().await.ok().and_then(|c| c.0),
    })))
}

fn raft_json(m: &MetaStatus) -> serde_json::Value {
    json!({
        "cluster": m.cluster,
        "role": m.role.name(),
        "term": m.term,
        "leader": m.leader.as_ref().map(|l| l.as_str()),
        "voters": m.voters.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
        "commit_index": m.commit_index,
        "applied_index": m.applied_index,
        "quorum": m.quorum,
    })
}

async fn members(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let members = api
        .roster
        .members()
        .await
        .map_err(|_| ApiError::stopped())?;
    let tags = api.roster.tags().await.map_err(|_| ApiError::stopped())?;
    let list: Vec<_> = members
        .iter()
        .map(|m| {
            json!({
                "id": m.id.as_str(),
                "addr": m.addr.to_string(),
                "generation": m.generation.0,
                "state": state_name(m.state),
                "tags": tags.get(&m.id).cloned().unwrap_or_default(),
                "incarnation": m.incarnation,
                "rtt_ms": m.rtt.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0),
                "estimated_rtt_ms": m.estimated_rtt.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0),
                "build": m.build,
            })
        })
        .collect();
    Ok(Json(json!(list)))
}

async fn metrics_text(State(api): State<Api>) -> Result<Response, ApiError> {
    let node = api
        .roster
        .node_metrics()
        .await
        .map_err(|_| ApiError::stopped())?;
    let counts = api
        .roster
        .member_counts()
        .await
        .map_err(|_| ApiError::stopped())?;
    let raft = metrics::RaftFigures {
        status: api
            .roster
            .meta_status()
            .await
            .map_err(|_| ApiError::stopped())?,
        counters: api
            .roster
            .meta_counters()
            .await
            .map_err(|_| ApiError::stopped())?,
    };
    let text = metrics::render(&node, &api.roster.runtime_metrics(), &counts, &raft);
    Ok((
        [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        text,
    )
        .into_response())
}

async fn recent_events(State(api): State<Api>) -> Json<Vec<EventRecord>> {
    let q = api.recent.lock().unwrap_or_else(|p| p.into_inner());
    Json(q.iter().rev().cloned().collect())
}

/// The query of `GET /v1/events/stream`.
#[derive(Debug, Deserialize)]
struct LogQuery {
    logs: Option<String>,
}

/// `GET /v1/events/stream[?logs=LEVEL]`: membership events as they happen,
/// as server-sent events (`event: member`, `data:` the JSON of
/// [`EventRecord`]), user events (`event: user`, see
/// `user_events::user_event_json`), with a keep-alive comment every 15 s; a client that
/// reads too slowly skips the oldest events (logged by the agent); ends
/// when the node stops. With `logs`, the agent's log lines at that level or more
/// severe too (`event: log`, `data: {"at_ms", "level", "target",
/// "message"}`; a stream that fell behind gets `event: skipped` with the
/// count). 400 `invalid_level`; 501 `no_log_stream` where the process
/// installed no [`logs::layer`].
async fn event_stream(
    State(api): State<Api>,
    Query(q): Query<LogQuery>,
) -> Result<
    axum::response::sse::Sse<
        impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event as Sse, KeepAlive};
    use futures_util::StreamExt;
    use tokio::sync::broadcast::error::RecvError;
    let sub = match q.logs.as_deref() {
        None => None,
        Some(l) => {
            let level = logs::parse_level(l)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_level", e))?;
            Some(logs::subscribe(level).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "no_log_stream",
                    "this process does not stream its logs (roster agent does; an application embedding roster adds the layer from roster::api::logs::layer() to its tracing subscriber, then installs it)",
                )
            })?)
        }
    };
    let members = futures_util::stream::unfold(api.roster.subscribe(), |mut events| async move {
        loop {
            let e = events.next().await?;
            if let Event::UserEvent(u) = &e {
                let data = user_events::user_event_json(u).to_string();
                return Some((Ok(Sse::default().event("user").data(data)), events));
            }
            if let Some(rec) = record(&e) {
                let data = serde_json::to_string(&rec).unwrap_or_default();
                return Some((Ok(Sse::default().event("member").data(data)), events));
            }
        }
    });
    let lines = futures_util::stream::unfold(sub, |sub| async move {
        let mut sub = sub?;
        loop {
            match sub.receiver().recv().await {
                Ok(line) if line.shown_at(sub.level()) => {
                    let data = serde_json::to_string(&*line).unwrap_or_default();
                    return Some((Ok(Sse::default().event("log").data(data)), Some(sub)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    let skipped = Sse::default().event("skipped").data(n.to_string());
                    return Some((Ok(skipped), Some(sub)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    // The stream ends when the node stops (the member events end).
    let members = members
        .map(Some)
        .chain(futures_util::stream::once(async { None }));
    let stream = futures_util::stream::select(members, lines.map(Some))
        .take_while(|x| std::future::ready(x.is_some()))
        .filter_map(std::future::ready);
    Ok(axum::response::sse::Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15))))
}

#[derive(Debug, Deserialize)]
struct NodeQuery {
    node: Option<String>,
    /// Answer with the value's bytes themselves.
    #[serde(default)]
    raw: bool,
}

/// A value in a JSON answer: the text itself when it is UTF-8
/// (`"encoding": "utf-8"`), else standard base64 (`"encoding": "base64"`),
/// so any bytes written come back the same.
fn value_json(v: &[u8]) -> (serde_json::Value, &'static str) {
    use base64::Engine;
    match std::str::from_utf8(v) {
        Ok(s) => (json!(s), "utf-8"),
        Err(_) => (
            json!(base64::engine::general_purpose::STANDARD.encode(v)),
            "base64",
        ),
    }
}

/// The bytes of a value as the whole answer.
fn raw_value(v: Vec<u8>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        v,
    )
        .into_response()
}

async fn state_get(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(q): Query<NodeQuery>,
) -> Result<Response, ApiError> {
    let node = match q.node {
        Some(n) => NodeId::new(n)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_node", e.to_string()))?,
        None => api.roster.identity().id.clone(),
    };
    match api
        .roster
        .state(&node, &key)
        .await
        .map_err(|_| ApiError::stopped())?
    {
        Some(v) if q.raw => Ok(raw_value(v)),
        Some(v) => {
            let (value, encoding) = value_json(&v);
            Ok(Json(json!({
                "node": node.as_str(),
                "key": key,
                "value": value,
                "encoding": encoding,
            }))
            .into_response())
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!("{node} has no key {key:?}"),
        )),
    }
}

fn write_error(e: WriteError) -> ApiError {
    match e {
        WriteError::State(e @ crate::node::StateError::Reserved(_)) => {
            ApiError::new(StatusCode::BAD_REQUEST, "reserved_key", e.to_string())
        }
        WriteError::State(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_state", e.to_string())
        }
        WriteError::Stopped(_) => ApiError::stopped(),
    }
}

async fn state_put(
    State(api): State<Api>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let hlc = api
        .roster
        .set_state(&key, &body)
        .await
        .map_err(write_error)?;
    Ok(Json(json!({"key": key, "hlc": hlc.to_string()})))
}

async fn state_delete(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match api.roster.delete_state(&key).await.map_err(write_error)? {
        Some(hlc) => Ok(Json(
            json!({"key": key, "deleted": true, "hlc": hlc.to_string()}),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!("no key {key:?}"),
        )),
    }
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

fn body_error(r: BytesRejection) -> ApiError {
    let status = r.status();
    let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_body"
    };
    ApiError::new(status, error, r.body_text())
}

async fn leave(State(api): State<Api>) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    api.roster.status().await.map_err(|_| ApiError::stopped())?;
    let roster = api.roster.clone();
    // Answer first; the agent exits once the node has left.
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        roster.leave().await;
    });
    Ok((StatusCode::ACCEPTED, Json(json!({"leaving": true}))))
}

#[derive(Deserialize)]
struct JoinBody {
    addrs: Vec<String>,
}

/// Most targets one join request takes.
const MAX_JOIN_TARGETS: usize = 64;

/// `POST /v1/join` `{"addrs": ["host:port", ...]}`: joins more members.
async fn join(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let req: JoinBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))?;
    if req.addrs.is_empty() || req.addrs.len() > MAX_JOIN_TARGETS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("give 1 to {MAX_JOIN_TARGETS} addresses (HOST:PORT)"),
        ));
    }
    for t in &req.addrs {
        crate::runtime::addr::check_target(t)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_address", e))?;
    }
    let r = api
        .roster
        .join(&req.addrs)
        .await
        .map_err(|_| ApiError::stopped())?;
    if r.addrs.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unresolvable",
            r.unresolved.join("; "),
        ));
    }
    Ok(Json(json!({
        "addrs": r.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "unresolved": r.unresolved,
    })))
}

async fn tags_list(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let all = api.roster.tags().await.map_err(|_| ApiError::stopped())?;
    let own = all
        .get(&api.roster.identity().id)
        .cloned()
        .unwrap_or_default();
    Ok(Json(json!({ "tags": own })))
}

/// A tag name: 1-64 characters of letters, digits, `-`, `_`, `.`.
fn tag_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_tag",
            format!("tag name {name:?}: 1-64 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// `PUT /v1/tags/{name}` with the value as the body (UTF-8).
async fn tag_set(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    tag_name(&name)?;
    let body = body.map_err(body_error)?;
    let value = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_tag",
            "a tag value must be UTF-8 text",
        )
    })?;
    let hlc = api
        .roster
        .set_tag(&name, value)
        .await
        .map_err(write_error)?;
    Ok(Json(
        json!({"tag": name, "value": value, "hlc": hlc.to_string()}),
    ))
}

/// `DELETE /v1/tags/{name}`.
async fn tag_unset(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    tag_name(&name)?;
    match api.roster.unset_tag(&name).await.map_err(write_error)? {
        Some(hlc) => Ok(Json(
            json!({"tag": name, "deleted": true, "hlc": hlc.to_string()}),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_tag",
            format!("this node has no tag {name:?}"),
        )),
    }
}

async fn chaos_get(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let (rules, dropped) = api.roster.chaos().await.map_err(|_| ApiError::stopped())?;
    Ok(Json(json!({"rules": rules, "dropped": dropped})))
}

async fn chaos_set(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let rules: crate::runtime::chaos::ChaosRules = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))?;
    api.roster
        .set_chaos(rules.clone())
        .await
        .map_err(|e| match e {
            crate::runtime::WriteErrorChaos::Invalid(d) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_rules", d)
            }
            crate::runtime::WriteErrorChaos::Stopped => ApiError::stopped(),
        })?;
    Ok(Json(json!({"rules": rules})))
}

async fn chaos_heal(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    api.roster
        .heal_chaos()
        .await
        .map_err(|_| ApiError::stopped())?;
    Ok(Json(json!({"healed": true})))
}
