//! The task that drives one [`Node`] from a quinn endpoint.
//!
//! It only moves bytes and time: datagrams and stream messages from
//! connection tasks go into the node, the node's transmits go out on cached
//! connections (SWIM as QUIC datagrams, push-pull and Raft messages on
//! unidirectional streams, forwarded metadata requests on bidirectional
//! streams answered on the same stream), and the node's next deadline
//! becomes a sleep.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::inbound::{accept_loop, read_loop, refusal_clock_ms};
use super::metrics::RuntimeMetrics;
use super::store::Store;
use super::tls::{CLUSTER_SERVER_NAME, peer_node_id};
use crate::node::wire::{Kind, MAX_STREAM_MESSAGE_BYTES, Message};
use crate::node::{
    Event, Hlc, MemberState, MetaError, MetaOp, MetaReply, MetaStatus, Metrics, Node, NodeId, Now,
    ReadMode, StateError, Transmit,
};

/// Transmits waiting for a connection to one peer; more are dropped.
const MAX_PENDING_PER_PEER: usize = 64;
/// Longest wait after failed connection attempts to a peer.
const MAX_CONNECT_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait for a QUIC handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the member cache is written to disk at most, after the member
/// list changed.
const PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// Requests from the [`crate::Roster`] handle.
pub(crate) enum Command {
    Join {
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<()>,
    },
    SetTag {
        name: String,
        value: Option<String>,
        reply: oneshot::Sender<Result<Option<Hlc>, StateError>>,
    },
    SetState {
        key: String,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<Hlc, StateError>>,
    },
    DeleteState {
        key: String,
        reply: oneshot::Sender<Result<Option<Hlc>, StateError>>,
    },
    SendEvent {
        name: String,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<crate::node::UserEvent, crate::node::EventError>>,
    },
    Query {
        name: String,
        payload: Vec<u8>,
        opts: crate::node::queries::QueryOptions,
        reply: oneshot::Sender<
            Result<crate::node::queries::QueryId, crate::node::queries::QueryError>,
        >,
    },
    Respond {
        id: crate::node::queries::QueryId,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<(), crate::node::queries::QueryError>>,
    },
    Members {
        reply: oneshot::Sender<Vec<super::Member>>,
    },
    MemberCounts {
        reply: oneshot::Sender<crate::node::MemberCounts>,
    },
    StateOf {
        node: NodeId,
        reply: oneshot::Sender<Vec<(String, Vec<u8>)>>,
    },
    Metrics {
        reply: oneshot::Sender<Metrics>,
    },
    Status {
        reply: oneshot::Sender<super::NodeStatus>,
    },
    Rtt {
        a: NodeId,
        b: NodeId,
        reply: oneshot::Sender<Option<Duration>>,
    },
    Nearest {
        k: usize,
        reply: oneshot::Sender<Vec<(NodeId, Duration)>>,
    },
    Tags {
        reply: oneshot::Sender<BTreeMap<NodeId, BTreeMap<String, String>>>,
    },
    State {
        node: NodeId,
        key: String,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    Meta {
        op: MetaOp,
        mode: ReadMode,
        reply: oneshot::Sender<Result<MetaReply, MetaError>>,
    },
    MetaStatus {
        reply: oneshot::Sender<(MetaStatus, crate::node::MetaCounters)>,
    },
    Placement {
        reply: oneshot::Sender<Option<crate::node::meta::Table>>,
    },
    SetChaos {
        rules: Option<super::chaos::ChaosRules>,
        reply: oneshot::Sender<()>,
    },
    /// New certificates: connections made from now on present them
    /// (existing connections stay up).
    ReloadTls {
        client: quinn::ClientConfig,
        reply: oneshot::Sender<()>,
    },
    Revoke {
        id: NodeId,
        revoke: bool,
        reply: oneshot::Sender<Result<MetaReply, MetaError>>,
    },
    Revoked {
        reply: oneshot::Sender<Vec<NodeId>>,
    },
    ForceLeave {
        id: NodeId,
        reply: oneshot::Sender<Result<crate::node::Identity, crate::node::ForceLeaveError>>,
    },
    RemoveVoter {
        id: NodeId,
        reply: oneshot::Sender<Result<MetaReply, MetaError>>,
    },
    GetChaos {
        reply: oneshot::Sender<(Option<super::chaos::ChaosRules>, u64)>,
    },
}

/// What connection tasks report.
pub(crate) enum Input {
    Datagram {
        from: SocketAddr,
        peer: NodeId,
        bytes: Bytes,
    },
    Message {
        from: SocketAddr,
        peer: NodeId,
        bytes: Vec<u8>,
    },
    /// A request on a bidirectional stream; the answer goes on `reply`.
    Request {
        from: SocketAddr,
        peer: NodeId,
        bytes: Vec<u8>,
        reply: quinn::SendStream,
    },
    Connected {
        addr: SocketAddr,
        conn: quinn::Connection,
    },
    ConnectFailed {
        addr: SocketAddr,
    },
    /// A transmit held back by the fault filter's delay.
    Delayed(Transmit),
    Closed {
        addr: SocketAddr,
        id: usize,
    },
}

struct Peer {
    conn: quinn::Connection,
    last_used: Instant,
}

struct Backoff {
    until: Instant,
    wait: Duration,
}

pub(crate) struct Driver {
    pub(crate) node: Node,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) started: Instant,
    pub(crate) inputs_tx: mpsc::Sender<Input>,
    pub(crate) inputs: mpsc::Receiver<Input>,
    pub(crate) commands: mpsc::Receiver<Command>,
    /// Events are shared, not copied, into the channel's ring (see
    /// [`super::EVENT_BUFFER`]).
    pub(crate) events: broadcast::Sender<Arc<Event>>,
    pub(crate) metrics: Arc<RuntimeMetrics>,
    pub(crate) store: Option<Arc<Store>>,
    pub(crate) max_connections: usize,
    peers: BTreeMap<SocketAddr, Peer>,
    pending: BTreeMap<SocketAddr, VecDeque<Transmit>>,
    backoff: BTreeMap<SocketAddr, Backoff>,
    /// The member list changed since the cache was last written.
    members_dirty: bool,
    /// Metadata requests of this node's handle, by request number.
    meta_waiters: BTreeMap<u64, oneshot::Sender<Result<MetaReply, MetaError>>>,
    /// Open request streams waiting for the node's answer, by (origin
    /// address, request number).
    replies: BTreeMap<(SocketAddr, u64), (Instant, quinn::SendStream)>,
    /// The fault filter (off unless rules are set).
    chaos: super::chaos::Chaos,
    /// Revoked NodeIds, shared with the TLS verifiers.
    pub(crate) revoked: super::tls::Revoked,
    /// The metadata index the revoked set was last read at.
    revoked_read_at: u64,
}

/// Request streams kept waiting for an answer at most.
const MAX_OPEN_REPLIES: usize = 4096;
/// A request stream with no answer after this is dropped (the node answers
/// every request within its request timeout).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node: Node,
        endpoint: quinn::Endpoint,
        started: Instant,
        inputs: (mpsc::Sender<Input>, mpsc::Receiver<Input>),
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<Arc<Event>>,
        metrics: Arc<RuntimeMetrics>,
        store: Option<Arc<Store>>,
        max_connections: usize,
    ) -> Self {
        Self {
            node,
            endpoint,
            started,
            inputs_tx: inputs.0,
            inputs: inputs.1,
            commands,
            events,
            metrics,
            store,
            max_connections,
            peers: BTreeMap::new(),
            pending: BTreeMap::new(),
            backoff: BTreeMap::new(),
            members_dirty: false,
            meta_waiters: BTreeMap::new(),
            replies: BTreeMap::new(),
            chaos: super::chaos::Chaos::default(),
            revoked: super::tls::Revoked::default(),
            revoked_read_at: 0,
        }
    }

    /// Every member this node knows, itself first, with what only the
    /// driver knows (the RTT of an open connection).
    fn member_list(&self) -> Vec<super::Member> {
        let build = |id: &NodeId| {
            self.node
                .state(id, crate::node::BUILD_KEY)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let me = self.node.identity();
        let mut out = vec![super::Member {
            id: me.id.clone(),
            addr: me.addr,
            generation: me.generation,
            state: crate::node::MemberState::Alive,
            incarnation: self.node.incarnation(),
            rtt: None,
            estimated_rtt: None,
            build: build(&me.id),
        }];
        out.extend(self.node.members().map(|v| {
            let mut m = super::Member::from(&v);
            m.rtt = self.peers.get(&v.identity.addr).map(|p| p.conn.rtt());
            m.estimated_rtt = self.node.rtt_to(&v.identity.id);
            m.build = build(&v.identity.id);
            m
        }));
        out
    }

    /// After the metadata copy moved on: reads the revoked NodeIds again,
    /// and closes connections to peers that are now revoked (a later
    /// handshake refuses them).
    fn refresh_revoked(&mut self) {
        let applied = self.node.meta_machine().applied;
        if applied == self.revoked_read_at {
            return;
        }
        self.revoked_read_at = applied;
        let ids = self.node.revoked();
        if !self.revoked.set(ids.clone()) {
            return;
        }
        tracing::warn!(revoked = ?ids.iter().map(|i| i.as_str()).collect::<Vec<_>>(), "revoked certificates changed");
        let cut: Vec<SocketAddr> = self
            .peers
            .iter()
            .filter(|(_, p)| peer_node_id(&p.conn).is_ok_and(|id| self.revoked.contains(&id)))
            .map(|(a, _)| *a)
            .collect();
        for a in cut {
            if let Some(p) = self.peers.remove(&a) {
                p.conn.close(0u32.into(), b"certificate revoked");
                tracing::warn!(addr = %a, "closed the connection of a revoked peer");
            }
        }
    }

    /// The runtime is the clock the core is driven by.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Now {
        let mut now = now_from(self.started);
        // A chaos clock offset moves the wall clock the node reads.
        let skew = self.chaos.wall_skew_ms();
        if skew != 0 {
            now.wall_ms = now.wall_ms.saturating_add_signed(skew);
        }
        now
    }

    /// Runs until the node has left.
    pub(crate) async fn run(mut self) {
        let accept = tokio::spawn(accept_loop(
            self.endpoint.clone(),
            self.inputs_tx.clone(),
            self.metrics.clone(),
        ));
        #[allow(clippy::disallowed_methods)]
        let mut next_persist = Instant::now() + PERSIST_INTERVAL;
        loop {
            let far = self.started + Duration::from_secs(86_400 * 365);
            let deadline = self
                .node
                .poll_timeout()
                .and_then(|d| self.started.checked_add(d))
                .map_or(far, |d| d.min(far));
            let deadline = if self.members_dirty {
                deadline.min(next_persist)
            } else {
                deadline
            };
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Leave { reply }) => {
                        self.leave().await;
                        let _ = reply.send(());
                        break;
                    }
                    Some(cmd) => self.command(cmd),
                    // Every handle dropped: leave quietly.
                    None => {
                        self.leave().await;
                        break;
                    }
                },
                Some(input) = self.inputs.recv() => self.input(input),
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                    #[allow(clippy::disallowed_methods)]
                    let wall = Instant::now();
                    if self.members_dirty && wall >= next_persist {
                        next_persist = wall + PERSIST_INTERVAL;
                        self.members_dirty = false;
                        self.persist_members();
                    }
                }
            }
            self.flush();
        }
        accept.abort();
    }

    // One arm per command the handle can send: long because the commands
    // are many, each arm a call into the node or a reply.
    fn command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::SetState { key, value, reply } => {
                let _ = reply.send(self.node.set_state(now, &key, &value));
            }
            Command::SendEvent {
                name,
                payload,
                reply,
            } => {
                let _ = reply.send(self.node.send_event(now, &name, &payload));
            }
            Command::Query {
                name,
                payload,
                opts,
                reply,
            } => {
                let _ = reply.send(self.node.query(now, &name, &payload, opts));
            }
            Command::Respond { id, payload, reply } => {
                let _ = reply.send(self.node.respond(now, &id, &payload));
            }
            Command::Join { addrs, reply } => {
                self.node.join(now, addrs);
                let _ = reply.send(());
            }
            Command::SetTag { name, value, reply } => {
                let r = match value {
                    Some(v) => self.node.set_tag(now, &name, &v).map(Some),
                    None => self.node.delete_tag(now, &name),
                };
                let _ = reply.send(r);
            }
            Command::DeleteState { key, reply } => {
                let _ = reply.send(self.node.delete_state(now, &key));
            }
            Command::Members { reply } => {
                let _ = reply.send(self.member_list());
            }
            Command::MemberCounts { reply } => {
                let _ = reply.send(self.node.member_counts());
            }
            Command::StateOf { node, reply } => {
                let _ = reply.send(self.node.state_of(&node));
            }
            Command::Metrics { reply } => {
                let _ = reply.send(self.node.metrics());
            }
            Command::Rtt { a, b, reply } => {
                let _ = reply.send(self.node.rtt_between(&a, &b));
            }
            Command::Nearest { k, reply } => {
                let _ = reply.send(self.node.nearest(k));
            }
            Command::Status { reply } => {
                let _ = reply.send(super::NodeStatus {
                    identity: self.node.identity().clone(),
                    incarnation: self.node.incarnation(),
                    hlc: self.node.hlc(),
                    health_score: self.node.health_score(),
                    engine: self.node.engine(),
                    joined: self.node.is_joined(),
                    timing: self.node.timing(),
                });
            }
            Command::Tags { reply } => {
                let mut ids: Vec<NodeId> =
                    self.node.members().map(|m| m.identity.id.clone()).collect();
                ids.push(self.node.identity().id.clone());
                let tags = ids
                    .into_iter()
                    .map(|id| {
                        let t = self
                            .node
                            .state_of(&id)
                            .into_iter()
                            .filter_map(|(k, v)| {
                                k.strip_prefix("tag:").map(|k| {
                                    (k.to_owned(), String::from_utf8_lossy(&v).into_owned())
                                })
                            })
                            .collect();
                        (id, t)
                    })
                    .collect();
                let _ = reply.send(tags);
            }
            Command::State { node, key, reply } => {
                let _ = reply.send(self.node.state(&node, &key));
            }
            Command::Meta { op, mode, reply } => {
                let id = self.node.meta_request(now, op, mode);
                self.meta_waiters.insert(id, reply);
            }
            Command::Revoke { id, revoke, reply } => {
                let id = self.node.revoke_certificate(now, &id, revoke);
                self.meta_waiters.insert(id, reply);
            }
            Command::Revoked { reply } => {
                let _ = reply.send(self.node.revoked());
            }
            Command::ForceLeave { id, reply } => {
                let r = self.node.force_leave(now, &id);
                if let Ok(m) = &r {
                    tracing::info!(member = %m, "forced a down member to leave");
                }
                let _ = reply.send(r);
            }
            Command::RemoveVoter { id, reply } => {
                let id = self.node.remove_voter(now, &id);
                self.meta_waiters.insert(id, reply);
            }
            Command::ReloadTls { client, reply } => {
                self.endpoint.set_default_client_config(client);
                let _ = reply.send(());
            }
            Command::SetChaos { rules, reply } => {
                match rules {
                    Some(r) => {
                        tracing::warn!(rules = ?r, "fault injection on");
                        self.chaos.set(r);
                    }
                    None => {
                        tracing::warn!("fault injection healed");
                        self.chaos.heal();
                    }
                }
                let _ = reply.send(());
            }
            Command::GetChaos { reply } => {
                let rules = self.chaos.current().cloned();
                let _ = reply.send((rules, self.chaos.dropped));
            }
            Command::Placement { reply } => {
                let _ = reply.send(self.node.partitions().cloned());
            }
            Command::MetaStatus { reply } => {
                let _ = reply.send((self.node.meta_status(), self.node.meta_counters()));
            }
            Command::Leave { .. } => unreachable!("handled by run"),
        }
    }

    fn input(&mut self, input: Input) {
        let now = self.now();
        if self.is_from_revoked(&input) {
            return;
        }
        match input {
            Input::Datagram { from, peer, bytes } => {
                if self.chaos.drop_in(&peer) {
                    return;
                }
                if let Err(e) = self.node.handle_datagram_from(now, from, &peer, &bytes) {
                    self.refused(&peer, from, &e);
                }
            }
            Input::Message { from, peer, bytes } => {
                if self.chaos.drop_in(&peer) {
                    return;
                }
                if let Err(e) = self.node.handle_message_from(now, from, &peer, &bytes) {
                    self.refused(&peer, from, &e);
                }
            }
            Input::Request {
                from,
                peer,
                bytes,
                reply,
            } => self.on_request(now, from, &peer, &bytes, reply),
            Input::Delayed(t) => self.send_now(t),
            Input::Connected { addr, conn } => {
                self.backoff.remove(&addr);
                self.add_peer(addr, conn);
                if let Some(queue) = self.pending.remove(&addr) {
                    for t in queue {
                        self.send_now(t);
                    }
                }
            }
            Input::ConnectFailed { addr } => self.connect_failed(addr),
            Input::Closed { addr, id } => {
                if self
                    .peers
                    .get(&addr)
                    .is_some_and(|p| p.conn.stable_id() == id)
                {
                    self.peers.remove(&addr);
                    self.metrics
                        .open_connections
                        .store(self.peers.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }

    /// Whether `input` comes from a revoked peer (counted and dropped; a
    /// new connection from one is closed). A connection made before its
    /// peer was revoked may still deliver.
    fn is_from_revoked(&self, input: &Input) -> bool {
        let revoked = match input {
            Input::Datagram { peer, .. }
            | Input::Message { peer, .. }
            | Input::Request { peer, .. } => self.revoked.contains(peer),
            Input::Connected { conn, .. } => {
                peer_node_id(conn).is_ok_and(|id| self.revoked.contains(&id))
            }
            _ => false,
        };
        if revoked {
            if let Input::Connected { conn, .. } = input {
                conn.close(0u32.into(), b"certificate revoked");
            }
            self.metrics.revoked_dropped.fetch_add(1, Ordering::Relaxed);
        }
        revoked
    }

    /// A forwarded metadata request: handed to the node, and `reply` kept
    /// (a bounded number, for a bounded time) for the node's answer.
    fn on_request(
        &mut self,
        now: crate::node::Now,
        from: SocketAddr,
        peer: &NodeId,
        bytes: &[u8],
        reply: quinn::SendStream,
    ) {
        if self.chaos.drop_in(peer) {
            return;
        }
        let key = match Message::decode(bytes) {
            Ok(Message::MetaRequest(r)) => Some((r.from.addr, r.req)),
            _ => None,
        };
        match self.node.handle_message_from(now, from, peer, bytes) {
            Ok(()) => {
                if let Some(key) = key {
                    #[allow(clippy::disallowed_methods)]
                    let t = Instant::now();
                    self.replies.retain(|_, (at, _)| t < *at + REPLY_TIMEOUT);
                    if self.replies.len() < MAX_OPEN_REPLIES {
                        self.replies.insert(key, (t, reply));
                    }
                }
            }
            Err(e) => self.refused(peer, from, &e),
        }
    }

    /// A connection to `addr` failed: what waited for it is dropped, and
    /// the next attempt waits twice as long as the last (100 ms up to
    /// [`MAX_CONNECT_BACKOFF`]).
    fn connect_failed(&mut self, addr: SocketAddr) {
        let dropped = self.pending.remove(&addr).map_or(0, |q| q.len());
        self.metrics
            .transmits_dropped
            .fetch_add(dropped as u64, Ordering::Relaxed);
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        let wait = self
            .backoff
            .get(&addr)
            .map_or(Duration::from_millis(100), |b| {
                (b.wait * 2).min(MAX_CONNECT_BACKOFF)
            });
        self.backoff.insert(
            addr,
            Backoff {
                until: now + wait,
                wait,
            },
        );
    }

    fn refused(&self, peer: &NodeId, from: SocketAddr, e: &crate::node::InputError) {
        if matches!(e, crate::node::InputError::WrongSender { .. }) {
            tracing::warn!(%peer, %from, error = %e, "refused a message from a peer claiming another identity");
        } else {
            tracing::debug!(%peer, %from, error = %e, "dropped input");
        }
    }

    fn add_peer(&mut self, addr: SocketAddr, conn: quinn::Connection) {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        if !self.peers.contains_key(&addr) && self.peers.len() >= self.max_connections {
            // Close the least recently used connection.
            if let Some(lru) = self
                .peers
                .iter()
                .min_by_key(|(_, p)| p.last_used)
                .map(|(a, _)| *a)
                && let Some(p) = self.peers.remove(&lru)
            {
                p.conn.close(0u32.into(), b"connection limit");
                self.metrics
                    .connections_evicted
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        self.peers.insert(
            addr,
            Peer {
                conn,
                last_used: now,
            },
        );
        self.metrics
            .open_connections
            .store(self.peers.len() as u64, Ordering::Relaxed);
    }

    /// Sends everything the node queued and hands its events out.
    fn flush(&mut self) {
        self.refresh_revoked();
        while let Some(t) = self.node.poll_transmit() {
            self.send(t);
        }
        while let Some((id, r)) = self.node.poll_meta_result() {
            if let Some(w) = self.meta_waiters.remove(&id) {
                let _ = w.send(r);
            }
        }
        while let Some(e) = self.node.poll_event() {
            log_event(&e);
            match &e {
                Event::MemberUp(_)
                | Event::MemberDown(_)
                | Event::MemberLeft(_)
                | Event::MemberReaped(_) => {
                    self.members_dirty = true;
                }
                Event::Rejoined(id) => {
                    // Keep the renewed generation, so the next start is
                    // higher still.
                    if let Some(store) = &self.store
                        && let Err(err) = store.raise_generation(id.generation)
                    {
                        tracing::warn!(error = %err, "could not save the renewed generation");
                    }
                }
                _ => {}
            }
            let _ = self.events.send(Arc::new(e));
        }
    }

    /// Sends through the fault filter: dropped, delayed, or at once.
    fn send(&mut self, t: Transmit) {
        if self.chaos.current().is_none() {
            return self.send_now(t);
        }
        let peer = self.node.member_at(t.dst);
        match self.chaos.out(peer.as_ref()) {
            None => {}
            Some(d) if d.is_zero() => self.send_now(t),
            Some(d) => {
                let tx = self.inputs_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = tx.send(Input::Delayed(t)).await;
                });
            }
        }
    }

    fn send_now(&mut self, t: Transmit) {
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        // The answer to a request that came on a bidirectional stream goes
        // back on that stream.
        if t.kind == Kind::MetaResponse
            && let Ok(Message::MetaResponse(r)) = Message::decode(&t.bytes)
            && let Some((_, mut stream)) = self.replies.remove(&(t.dst, r.req))
        {
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let sent = async {
                    stream.write_all(&t.bytes).await.ok()?;
                    stream.finish().ok()
                };
                if sent.await.is_none() {
                    metrics.stream_send_errors.fetch_add(1, Ordering::Relaxed);
                }
            });
            return;
        }
        if let Some(peer) = self.peers.get_mut(&t.dst) {
            if peer.conn.close_reason().is_none() {
                peer.last_used = now;
                let conn = peer.conn.clone();
                self.send_on(&conn, t);
                return;
            }
            self.peers.remove(&t.dst);
        }
        if self.backoff.get(&t.dst).is_some_and(|b| now < b.until) {
            self.metrics
                .transmits_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        let dst = t.dst;
        let queue = self.pending.entry(dst).or_default();
        let first = queue.is_empty();
        if queue.len() >= MAX_PENDING_PER_PEER {
            self.metrics
                .transmits_dropped
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.push_back(t);
        if first {
            self.connect(dst);
        }
    }

    fn send_on(&self, conn: &quinn::Connection, t: Transmit) {
        if t.kind == Kind::MetaRequest {
            // Forwarded metadata requests open a bidirectional stream and
            // read the answer from it.
            let conn = conn.clone();
            let metrics = self.metrics.clone();
            let tx = self.inputs_tx.clone();
            tokio::spawn(async move {
                let exchange = async {
                    let peer = peer_node_id(&conn).ok()?;
                    let (mut send, mut recv) = conn.open_bi().await.ok()?;
                    send.write_all(&t.bytes).await.ok()?;
                    send.finish().ok()?;
                    let bytes = tokio::time::timeout(
                        REPLY_TIMEOUT,
                        recv.read_to_end(MAX_STREAM_MESSAGE_BYTES),
                    )
                    .await
                    .ok()?
                    .ok()?;
                    let from = conn.remote_address();
                    tx.send(Input::Message { from, peer, bytes }).await.ok()
                };
                if exchange.await.is_none() {
                    metrics.stream_send_errors.fetch_add(1, Ordering::Relaxed);
                }
            });
            return;
        }
        if t.kind.is_stream() {
            let conn = conn.clone();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let sent = async {
                    let mut s = conn.open_uni().await.ok()?;
                    s.write_all(&t.bytes).await.ok()?;
                    s.finish().ok()
                };
                if sent.await.is_none() {
                    metrics.stream_send_errors.fetch_add(1, Ordering::Relaxed);
                }
            });
            return;
        }
        let max = conn.max_datagram_size().unwrap_or(0);
        if t.bytes.len() > max {
            self.metrics
                .datagrams_too_large
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(len = t.bytes.len(), max, dst = %t.dst, "datagram over the path limit dropped");
            return;
        }
        if conn.send_datagram(Bytes::from(t.bytes)).is_err() {
            self.metrics
                .datagram_send_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn connect(&self, addr: SocketAddr) {
        let endpoint = self.endpoint.clone();
        let tx = self.inputs_tx.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let attempt = async {
                let connecting = endpoint
                    .connect(addr, CLUSTER_SERVER_NAME)
                    .map_err(|e| e.to_string())?;
                let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                    .await
                    .map_err(|_| "connection attempt timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                let peer = peer_node_id(&conn)?;
                Ok::<_, String>((conn, peer))
            };
            match attempt.await {
                Ok((conn, peer)) => {
                    metrics.connections_opened.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(read_loop(conn.clone(), addr, peer, tx.clone()));
                    let _ = tx.send(Input::Connected { addr, conn }).await;
                }
                Err(e) => {
                    metrics.connect_failures.fetch_add(1, Ordering::Relaxed);
                    if e.contains("certificate") || e.contains("TLS") || e.contains("crypto") {
                        if let Some(n) = metrics.refused(refusal_clock_ms()) {
                            tracing::warn!(%addr, error = %e, refused_since_last_line = n, "refused peer: TLS handshake failed");
                        }
                    } else {
                        tracing::debug!(%addr, error = %e, "connection failed");
                    }
                    let _ = tx.send(Input::ConnectFailed { addr }).await;
                }
            }
        });
    }

    async fn leave(&mut self) {
        let now = self.now();
        self.node.leave(now);
        self.flush();
        // Give the goodbye datagrams a moment on connections being opened.
        let until = tokio::time::Instant::now() + Duration::from_millis(300);
        while tokio::time::Instant::now() < until {
            tokio::select! {
                Some(input) = self.inputs.recv() => {
                    if let Input::Connected { addr, conn } = input {
                        self.add_peer(addr, conn);
                        for t in self.pending.remove(&addr).unwrap_or_default() {
                            self.send(t);
                        }
                    }
                }
                _ = tokio::time::sleep_until(until) => {}
            }
        }
        self.persist_members();
        self.endpoint.close(0u32.into(), b"leaving");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// Writes the member cache off the driver's thread (a redb commit
    /// waits for the disk). Left members are not kept; Down ones are, so a
    /// node cut off for a while can still find its way back after a restart.
    fn persist_members(&self) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let members: Vec<(NodeId, SocketAddr)> = self
            .node
            .members()
            .filter(|m| m.state != MemberState::Left)
            .map(|m| (m.identity.id.clone(), m.identity.addr))
            .collect();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.save_members(&members) {
                tracing::warn!(error = %e, "could not save the member cache");
            }
        });
    }
}

/// Builds a [`Now`] from the driver's start instant and the wall clock.
#[allow(clippy::disallowed_methods)]
pub(crate) fn now_from(started: Instant) -> Now {
    let wall_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Now {
        mono: started.elapsed(),
        wall_ms,
    }
}

fn log_event(e: &Event) {
    match e {
        Event::MemberUp(id) => tracing::info!(member = %id, "member up"),
        Event::MemberSuspected(id) => tracing::info!(member = %id, "member suspected"),
        Event::MemberRefuted(id) => tracing::info!(member = %id, "suspicion refuted"),
        Event::MemberDown(id) => tracing::warn!(member = %id, "member down"),
        Event::MemberLeft(id) => tracing::info!(member = %id, "member left"),
        Event::MemberReaped(id) => tracing::info!(member = %id, "member reaped (no longer listed)"),
        Event::Joined => tracing::info!("joined the cluster"),
        Event::Rejoined(id) => tracing::warn!(identity = %id, "forced to rejoin"),
        Event::Defunct => tracing::error!("declared down and unable to rejoin"),
        Event::HlcDriftRejected { owner, ahead_ms } => {
            tracing::warn!(%owner, ahead_ms, "refused a write stamped too far ahead")
        }
        Event::Refuted { incarnation } => tracing::info!(incarnation, "refuted a suspicion"),
        Event::StateForgeryRefuted { key, from, hlc } => tracing::warn!(
            key = %key,
            from = from.as_ref().map_or("unknown", |f| f.as_str()),
            stamp = %hlc,
            "a write to this node's own key arrived that it did not make; overwritten with the true value"
        ),
        Event::StateChanged { .. } | Event::MetadataChanged { .. } => {}
        Event::Query(q) => tracing::debug!(name = %q.name, asker = %q.asker, "query"),
        Event::QueryAck { .. } | Event::QueryAnswer { .. } => {}
        Event::QueryDone { id, acks, answers } => {
            tracing::debug!(seq = id.seq, acks, answers, "query done")
        }
        Event::UserEvent(u) => tracing::info!(
            name = %u.name,
            sender = %u.sender,
            bytes = u.payload.len(),
            "user event"
        ),
        Event::MetaBootstrapped { cluster } => {
            tracing::info!(
                cluster = format!("{cluster:016x}"),
                "bootstrapped the metadata cluster"
            )
        }
        Event::LeaderChanged { leader, term } => {
            tracing::info!(leader = ?leader.as_ref().map(|l| l.as_str()), term, "metadata leader changed")
        }
        Event::VotersChanged(v) => tracing::info!(voters = ?v, "metadata voters changed"),
        Event::PlacementChanged(c) => {
            tracing::info!(partitions = c.len(), "partition placement changed")
        }
    }
}
