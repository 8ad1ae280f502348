//! The QUIC runtime: drives one [`Node`] from a quinn endpoint, with mutual
//! TLS under a cluster CA and an optional data directory.
//!
//! [`Roster`] is the embeddable handle; the `roster agent` command is a thin
//! wrapper around it.

pub mod addr;
mod builder;
pub mod chaos;
mod driver;
mod inbound;
pub mod metrics;
pub mod store;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::node::meta::placement::{self, Role, Table};
use crate::node::{
    Config, ConfigError, Event, ForceLeaveError, Generation, Hlc, Identity, MemberState,
    MemberView, MetaError, MetaOp, MetaReply, MetaStatus, Metrics, Node, NodeId, ReadMode,
    StateError,
};
use builder::note_expiry;
pub use builder::{Builder, quic_configs, warn_if_expiring};
use driver::{Command, Driver};
pub use metrics::{RuntimeMetrics, RuntimeSnapshot};
use store::{Store, StoreError};
use tls::{NodeCert, TlsError};

/// Events kept for a slow subscriber before it starts missing some. The
/// channel's ring holds a pointer per event (an event itself is a few
/// hundred bytes, and the ring is allocated whole when the node starts).
pub const EVENT_BUFFER: usize = 4096;
/// Default bound on open QUIC connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// How long an unused connection stays open.
pub const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why new certificates were not taken; the node keeps its current ones.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The certificate is unusable for this node.
    #[error("{0}")]
    Certificate(String),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// Why a node could not start. Nothing was left running.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No certificate was given.
    #[error("no TLS certificate: set one with .tls() or .tls_dir()")]
    NoCertificate,
    /// The certificates could not be loaded or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The certificate names another node than the one configured.
    #[error("certificate is for node {cert}, but this node is {name}")]
    NameMismatch {
        /// In the certificate.
        cert: NodeId,
        /// Configured.
        name: NodeId,
    },
    /// The certificate names no valid node.
    #[error("certificate: {0}")]
    BadCertificate(String),
    /// The data directory could not be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The advertised address cannot be dialled (bound to 0.0.0.0 or `::`
    /// without `advertise`).
    #[error("cannot advertise {0}: peers cannot dial it; set an advertise address")]
    Unreachable(SocketAddr),
    /// Bound to every interface, and no single private address to
    /// advertise.
    #[error("{0}")]
    Advertise(String),
    /// A join target is not `host:port`.
    #[error("join target {0}")]
    Join(String),
    /// SWIM packets larger than every QUIC connection carries.
    #[error(
        "max_datagram_bytes {0} is over the 1162 bytes every QUIC path carries before path-MTU discovery"
    )]
    DatagramTooLarge(usize),
    /// The socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// The node is no longer running (it left or was stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node is not running")]
pub struct Stopped;

/// Why a state write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Refused by the state limits; state unchanged.
    #[error(transparent)]
    State(#[from] StateError),
    /// The node is not running.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Why a user event was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventSendError {
    /// A bad name, a payload over the limit, or a node that left.
    #[error(transparent)]
    Event(#[from] crate::node::EventError),
    /// The node is not running.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// Why a query or an answer was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuerySendError {
    /// A bad name or options, a payload over the limit, an unknown or
    /// expired query, or a node that left.
    #[error(transparent)]
    Query(#[from] crate::node::queries::QueryError),
    /// The node is not running.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// What a query asked through [`Roster::query`] brings back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryUpdate {
    /// A selected member acknowledged it.
    Ack(NodeId),
    /// A member answered it.
    Answer(NodeId, Vec<u8>),
    /// The deadline passed: how many acknowledged and answered.
    Done {
        /// Acknowledgements.
        acks: usize,
        /// Answers.
        answers: usize,
    },
}

/// The acknowledgements and answers of one query, as they arrive.
pub struct QueryStream {
    id: crate::node::queries::QueryId,
    events: Events,
    done: bool,
}

impl QueryStream {
    /// The query.
    pub fn id(&self) -> &crate::node::queries::QueryId {
        &self.id
    }

    /// The next acknowledgement or answer, then [`QueryUpdate::Done`] at
    /// the deadline, then `None` (also when the node stops).
    pub async fn next(&mut self) -> Option<QueryUpdate> {
        if self.done {
            return None;
        }
        loop {
            match self.events.next().await? {
                Event::QueryAck { id, from } if id == self.id => {
                    return Some(QueryUpdate::Ack(from));
                }
                Event::QueryAnswer { id, from, payload } if id == self.id => {
                    return Some(QueryUpdate::Answer(from, payload));
                }
                Event::QueryDone { id, acks, answers } if id == self.id => {
                    self.done = true;
                    return Some(QueryUpdate::Done { acks, answers });
                }
                _ => {}
            }
        }
    }
}

/// Why fault rules were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteErrorChaos {
    /// Out of range.
    #[error("invalid fault rules: {0}")]
    Invalid(String),
    /// The node is not running.
    #[error("the node is not running")]
    Stopped,
}

/// A member as the handle reports it (this node included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Name.
    pub id: NodeId,
    /// Address.
    pub addr: SocketAddr,
    /// Start count.
    pub generation: Generation,
    /// State as this node sees it.
    pub state: MemberState,
    /// Highest incarnation this node has seen it at (this node's own for
    /// itself).
    pub incarnation: u32,
    /// Smoothed round-trip time of this node's open QUIC connection to it
    /// (`None`: no connection open, or itself).
    pub rtt: Option<Duration>,
    /// The round trip estimated from network coordinates (`None`: no
    /// coordinate known, coordinates off, or itself).
    pub estimated_rtt: Option<Duration>,
    /// The release and wire protocol version it announced (`0.1.0/1`), if
    /// known here.
    pub build: Option<String>,
}

impl From<&MemberView> for Member {
    fn from(v: &MemberView) -> Self {
        Self {
            id: v.identity.id.clone(),
            addr: v.identity.addr,
            generation: v.identity.generation,
            state: v.state,
            incarnation: v.incarnation,
            rtt: None,
            estimated_rtt: None,
            build: None,
        }
    }
}

/// Where a key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPlacement {
    /// Its partition.
    pub partition: u32,
    /// The partition's owners, primary first.
    pub owners: Vec<NodeId>,
    /// This node's role for it.
    pub role: Role,
}

/// What [`Roster::join`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinReport {
    /// The addresses the node now tries to join through.
    pub addrs: Vec<SocketAddr>,
    /// Targets that resolved to no address, and why.
    pub unresolved: Vec<String>,
}

/// A node's view of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Current identity (the generation changes after a forced renewal).
    pub identity: Identity,
    /// SWIM incarnation.
    pub incarnation: crate::node::Incarnation,
    /// Last HLC stamp.
    pub hlc: Hlc,
    /// Lifeguard local health score (0 is healthy).
    pub health_score: u8,
    /// Whether the node knows an active member.
    pub joined: bool,
    /// The timing in force for the current number of live members.
    pub timing: crate::node::Timing,
    /// The SWIM engine the node runs.
    pub engine: crate::node::EngineKind,
}

/// A running node. Dropping every clone of the command channel (i.e. this
/// handle) makes the node leave.
#[derive(Debug)]
pub struct Roster {
    identity: Identity,
    local_addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Arc<Event>>,
    metrics: Arc<RuntimeMetrics>,
    endpoint: quinn::Endpoint,
    /// Revoked NodeIds, read by the TLS verifiers.
    revoked: tls::Revoked,
    /// The HTTPS API's TLS configuration (this node's certificate; replaced
    /// on reload).
    https: std::sync::RwLock<Arc<rustls::ServerConfig>>,
    task: tokio::task::JoinHandle<()>,
    /// Closed when the driver task ends (or panics).
    alive: tokio::sync::watch::Receiver<()>,
    /// Set once [`Roster::leave`] was called.
    leaving: Arc<std::sync::atomic::AtomicBool>,
}

/// A stream of a node's events. Lagging far behind (more than
/// [`EVENT_BUFFER`] events) skips the oldest ones.
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<Arc<Event>>,
}

impl Events {
    /// The next event, or `None` once the node has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(Arc::unwrap_or_clone(e)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "event subscriber fell behind");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

impl Roster {
    /// A builder with defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// This node's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Every member this node knows, itself included (first).
    pub async fn members(&self) -> Result<Vec<Member>, Stopped> {
        self.ask(|reply| Command::Members { reply }).await
    }

    /// How many members this node lists in each state, itself included
    /// (Alive): the counts of [`Roster::members`], without building the
    /// list.
    pub async fn member_counts(&self) -> Result<crate::node::MemberCounts, Stopped> {
        self.ask(|reply| Command::MemberCounts { reply }).await
    }

    /// Events from now on.
    pub fn subscribe(&self) -> Events {
        Events {
            rx: self.events.subscribe(),
        }
    }

    /// Writes a key of this node's state; it spreads to every member.
    pub async fn set_state(&self, key: &str, value: &[u8]) -> Result<Hlc, WriteError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        Ok(self
            .ask(|reply| Command::SetState { key, value, reply })
            .await??)
    }

    /// Sends a user event `name` with `payload` to every live member, this
    /// node included (each gets it once, as [`Event::UserEvent`], in this
    /// node's order). Returns the event as sent.
    pub async fn send_event(
        &self,
        name: &str,
        payload: &[u8],
    ) -> Result<crate::node::UserEvent, EventSendError> {
        let (name, payload) = (name.to_owned(), payload.to_vec());
        Ok(self
            .ask(|reply| Command::SendEvent {
                name,
                payload,
                reply,
            })
            .await??)
    }

    /// Asks the members `opts.filter` selects the query `name` with
    /// `payload` (see [`crate::node::queries`]); the stream brings their
    /// acknowledgements and answers as they arrive.
    pub async fn query(
        &self,
        name: &str,
        payload: &[u8],
        opts: crate::node::queries::QueryOptions,
    ) -> Result<QueryStream, QuerySendError> {
        // Subscribed first, so no answer can come before it.
        let events = self.subscribe();
        let (name, payload) = (name.to_owned(), payload.to_vec());
        let id = self
            .ask(|reply| Command::Query {
                name,
                payload,
                opts,
                reply,
            })
            .await??;
        Ok(QueryStream {
            id,
            events,
            done: false,
        })
    }

    /// Answers query `id` ([`Event::Query`]) with `payload`.
    pub async fn respond(
        &self,
        id: &crate::node::queries::QueryId,
        payload: &[u8],
    ) -> Result<(), QuerySendError> {
        let (id, payload) = (id.clone(), payload.to_vec());
        Ok(self
            .ask(|reply| Command::Respond { id, payload, reply })
            .await??)
    }

    /// The estimated round trip between members `a` and `b` (either may be
    /// this node) from their network coordinates; `None` while one is
    /// unknown or when coordinates are off (`Config::coordinates`).
    pub async fn rtt(&self, a: &NodeId, b: &NodeId) -> Result<Option<Duration>, Stopped> {
        let (a, b) = (a.clone(), b.clone());
        self.ask(|reply| Command::Rtt { a, b, reply }).await
    }

    /// The estimated round trip from this node to `id`.
    pub async fn rtt_to(&self, id: &NodeId) -> Result<Option<Duration>, Stopped> {
        self.rtt(&self.identity().id.clone(), id).await
    }

    /// The `k` active members nearest this node by estimated round trip,
    /// nearest first.
    pub async fn nearest(&self, k: usize) -> Result<Vec<(NodeId, Duration)>, Stopped> {
        self.ask(|reply| Command::Nearest { k, reply }).await
    }

    /// Deletes a key of this node's state; `None` when it did not exist.
    pub async fn delete_state(&self, key: &str) -> Result<Option<Hlc>, WriteError> {
        let key = key.to_owned();
        Ok(self
            .ask(|reply| Command::DeleteState { key, reply })
            .await??)
    }

    /// The live state of `node` as known here.
    pub async fn state_of(&self, node: &NodeId) -> Result<Vec<(String, Vec<u8>)>, Stopped> {
        let node = node.clone();
        self.ask(|reply| Command::StateOf { node, reply }).await
    }

    /// The node's view of itself.
    pub async fn status(&self) -> Result<NodeStatus, Stopped> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// Joins more members at runtime (as `serf join` does): each target is
    /// `host:port`, a DNS name resolving to all its addresses. Returns the
    /// addresses contacted and, for each target that gave none, why.
    pub async fn join(&self, targets: &[String]) -> Result<JoinReport, Stopped> {
        let (addrs, unresolved) = addr::resolve(targets).await;
        if !addrs.is_empty() {
            let a = addrs.clone();
            self.ask(|reply| Command::Join { addrs: a, reply }).await?;
        }
        Ok(JoinReport { addrs, unresolved })
    }

    /// Sets this node's tag `name` at runtime (state key `tag:NAME`, spread
    /// to every member like a state write).
    pub async fn set_tag(&self, name: &str, value: &str) -> Result<Hlc, WriteError> {
        let (name, value) = (name.to_owned(), Some(value.to_owned()));
        Ok(self
            .ask(|reply| Command::SetTag { name, value, reply })
            .await??
            .unwrap_or_default())
    }

    /// Removes this node's tag `name`; `None` when it had none.
    pub async fn unset_tag(&self, name: &str) -> Result<Option<Hlc>, WriteError> {
        let name = name.to_owned();
        Ok(self
            .ask(|reply| Command::SetTag {
                name,
                value: None,
                reply,
            })
            .await??)
    }

    /// Every known node's tags (state keys `tag:*`), this node included.
    pub async fn tags(&self) -> Result<BTreeMap<NodeId, BTreeMap<String, String>>, Stopped> {
        self.ask(|reply| Command::Tags { reply }).await
    }

    /// One key of `node`'s state as known here.
    pub async fn state(&self, node: &NodeId, key: &str) -> Result<Option<Vec<u8>>, Stopped> {
        let (node, key) = (node.clone(), key.to_owned());
        self.ask(|reply| Command::State { node, key, reply }).await
    }

    /// The node core's counters.
    pub async fn node_metrics(&self) -> Result<Metrics, Stopped> {
        self.ask(|reply| Command::Metrics { reply }).await
    }

    /// Runs one metadata operation (see [`MetaOp`]).
    pub async fn meta(&self, op: MetaOp, mode: ReadMode) -> Result<MetaReply, MetaError> {
        self.ask(|reply| Command::Meta { op, mode, reply })
            .await
            .map_err(|_| MetaError::Stopped)?
    }

    /// A metadata key: linearizable, or from this node's copy with
    /// [`ReadMode::Stale`].
    pub async fn meta_get(&self, key: &str, mode: ReadMode) -> Result<Option<Vec<u8>>, MetaError> {
        match self.meta(MetaOp::Get { key: key.into() }, mode).await? {
            MetaReply::Value { value, .. } => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// Writes a metadata key; returns once committed, with its log index.
    pub async fn meta_put(&self, key: &str, value: &[u8]) -> Result<u64, MetaError> {
        let op = MetaOp::Put {
            key: key.into(),
            value: value.to_vec(),
        };
        match self.meta(op, ReadMode::Linearizable).await? {
            MetaReply::Written { index } => Ok(index),
            other => Err(unexpected(other)),
        }
    }

    /// Compare-and-set: writes `value` (`None` deletes) only if the key
    /// holds `expect` (`None`: absent). Returns whether it swapped and the
    /// value after the operation.
    pub async fn meta_cas(
        &self,
        key: &str,
        expect: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(bool, Option<Vec<u8>>), MetaError> {
        let op = MetaOp::Cas {
            key: key.into(),
            expect: expect.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
        };
        match self.meta(op, ReadMode::Linearizable).await? {
            MetaReply::Cas {
                swapped, current, ..
            } => Ok((swapped, current)),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a metadata key; returns whether it existed.
    pub async fn meta_delete(&self, key: &str) -> Result<bool, MetaError> {
        match self
            .meta(MetaOp::Delete { key: key.into() }, ReadMode::Linearizable)
            .await?
        {
            MetaReply::Deleted { existed, .. } => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    /// Metadata keys starting with `prefix`, in key order.
    pub async fn meta_list(
        &self,
        prefix: &str,
        mode: ReadMode,
    ) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        match self
            .meta(
                MetaOp::List {
                    prefix: prefix.into(),
                },
                mode,
            )
            .await?
        {
            MetaReply::List { entries, .. } => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    /// The metadata cluster as this node sees it: role, term, leader,
    /// voters, commit index, quorum.
    pub async fn meta_status(&self) -> Result<MetaStatus, Stopped> {
        Ok(self.ask(|reply| Command::MetaStatus { reply }).await?.0)
    }

    /// The metadata engine's counters.
    pub async fn meta_counters(&self) -> Result<crate::node::MetaCounters, Stopped> {
        Ok(self.ask(|reply| Command::MetaStatus { reply }).await?.1)
    }

    /// The committed partition placement (this node's copy; `None` until
    /// the leader made one).
    pub async fn partitions(&self) -> Result<Option<Table>, Stopped> {
        self.ask(|reply| Command::Placement { reply }).await
    }

    /// The partition, owners (primary first) and this node's role for
    /// `key`; `None` before a placement exists.
    pub async fn placement_of(&self, key: &[u8]) -> Result<Option<KeyPlacement>, Stopped> {
        let Some(t) = self.partitions().await? else {
            return Ok(None);
        };
        let partition = placement::partition_for_key(key, t.partition_count);
        Ok(Some(KeyPlacement {
            partition,
            owners: t.owners_of(partition).to_vec(),
            role: t.role(partition, &self.identity.id),
        }))
    }

    /// The partition of `key`.
    pub async fn partition_for_key(&self, key: &[u8]) -> Result<Option<u32>, Stopped> {
        Ok(self.placement_of(key).await?.map(|p| p.partition))
    }

    /// The primary owner of `key`.
    pub async fn primary_for_key(&self, key: &[u8]) -> Result<Option<NodeId>, Stopped> {
        Ok(self
            .placement_of(key)
            .await?
            .and_then(|p| p.owners.first().cloned()))
    }

    /// The replica owners of `key`.
    pub async fn replicas_for_key(&self, key: &[u8]) -> Result<Vec<NodeId>, Stopped> {
        Ok(self
            .placement_of(key)
            .await?
            .map(|p| p.owners.into_iter().skip(1).collect())
            .unwrap_or_default())
    }

    /// Whether this node is `key`'s primary.
    pub async fn is_primary_for_key(&self, key: &[u8]) -> Result<bool, Stopped> {
        Ok(self.should_handle_key(key).await? == Role::Primary)
    }

    /// This node's role for `key`: primary, replica or none.
    pub async fn should_handle_key(&self, key: &[u8]) -> Result<Role, Stopped> {
        Ok(self.placement_of(key).await?.map_or(Role::None, |p| p.role))
    }

    /// Turns fault injection on with `rules` (replacing any in force).
    pub async fn set_chaos(&self, rules: chaos::ChaosRules) -> Result<(), WriteErrorChaos> {
        rules.validate().map_err(WriteErrorChaos::Invalid)?;
        self.ask(|reply| Command::SetChaos {
            rules: Some(rules),
            reply,
        })
        .await
        .map_err(|_| WriteErrorChaos::Stopped)
    }

    /// Lifts every fault rule.
    pub async fn heal_chaos(&self) -> Result<(), Stopped> {
        self.ask(|reply| Command::SetChaos { rules: None, reply })
            .await
    }

    /// Switches to new certificates without leaving the cluster: new
    /// connections, incoming and outgoing, use them; connections already
    /// open stay up. Refused (and counted), keeping the current ones, when
    /// the certificate names another node or has expired.
    pub async fn reload_tls(&self, cert: NodeCert) -> Result<(), ReloadError> {
        let checked = (|| {
            let id = cert.node_id().map_err(ReloadError::Certificate)?;
            if id != self.identity.id {
                return Err(ReloadError::Certificate(format!(
                    "the certificate names {id}, this node is {}",
                    self.identity.id
                )));
            }
            cert.check_is_node()
                .and_then(|()| cert.check_not_expired())
                .map_err(|e| ReloadError::Certificate(e.to_string()))?;
            let (server, client) = quic_configs(&cert, &self.revoked)
                .map_err(|e| ReloadError::Certificate(e.to_string()))?;
            let https = cert
                .https_server_config(&self.revoked)
                .map_err(|e| ReloadError::Certificate(e.to_string()))?;
            Ok((server, client, https))
        })();
        let (server, client, https) = match checked {
            Ok(c) => c,
            Err(e) => {
                self.metrics
                    .tls_reload_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(e);
            }
        };
        self.endpoint.set_server_config(Some(server));
        *self.https.write().unwrap_or_else(|e| e.into_inner()) = https;
        self.ask(|reply| Command::ReloadTls { client, reply })
            .await
            .map_err(|_| ReloadError::Stopped)?;
        note_expiry(&cert, &self.metrics);
        self.metrics
            .tls_reloads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Revokes node `id`'s certificate cluster-wide (a metadata write):
    /// once applied, every node refuses that NodeId at the TLS handshake and
    /// closes its connections to it. Its log index.
    pub async fn revoke(&self, id: &NodeId) -> Result<u64, MetaError> {
        self.revoke_write(id, true).await
    }

    /// Lifts a revocation.
    pub async fn reinstate(&self, id: &NodeId) -> Result<u64, MetaError> {
        self.revoke_write(id, false).await
    }

    async fn revoke_write(&self, id: &NodeId, revoke: bool) -> Result<u64, MetaError> {
        let id = id.clone();
        match self
            .ask(|reply| Command::Revoke { id, revoke, reply })
            .await
            .map_err(|_| MetaError::Stopped)??
        {
            MetaReply::Written { index } | MetaReply::Deleted { index, .. } => Ok(index),
            r => Err(unexpected(r)),
        }
    }

    /// The TLS configuration for serving the HTTPS API with this node's
    /// certificate (the one in use since the last reload). A client that
    /// presents an operator certificate from the cluster CA is authenticated
    /// by it; node certificates and revoked names are refused.
    pub fn https_config(&self) -> Arc<rustls::ServerConfig> {
        self.https.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts an HTTPS API client refused at the handshake; `Some(n)` when
    /// a log line is due (at most one per ten seconds), `n` the refusals
    /// since the last one.
    pub fn note_https_refusal(&self) -> Option<u64> {
        let now_ms = tls::wall_now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.metrics.https_refused(now_ms)
    }

    /// Turns the Down member `id` into Left on every node, as Serf's
    /// `force-leave` does (see [`crate::node::Node::force_leave`]): it is
    /// no longer tried and is reaped after `remove_left_after`.
    pub async fn force_leave(&self, id: &NodeId) -> Result<Identity, ForceLeaveError> {
        let id = id.clone();
        self.ask(|reply| Command::ForceLeave { id, reply })
            .await
            .unwrap_or(Err(ForceLeaveError::Stopped))
    }

    /// Removes the dead voter `id` from the metadata voters by hand (see
    /// [`crate::node::Node::remove_voter`]). Returns the log index of the
    /// request; the leader makes the change shortly after, which
    /// [`Roster::voters`] shows.
    pub async fn remove_voter(&self, id: &NodeId) -> Result<u64, MetaError> {
        let id = id.clone();
        match self
            .ask(|reply| Command::RemoveVoter { id, reply })
            .await
            .map_err(|_| MetaError::Stopped)??
        {
            MetaReply::Written { index } => Ok(index),
            r => Err(unexpected(r)),
        }
    }

    /// NodeIds whose certificates are revoked, from this node's copy.
    pub async fn revoked(&self) -> Result<Vec<NodeId>, Stopped> {
        self.ask(|reply| Command::Revoked { reply }).await
    }

    /// The fault rules in force and how many messages they dropped.
    pub async fn chaos(&self) -> Result<(Option<chaos::ChaosRules>, u64), Stopped> {
        self.ask(|reply| Command::GetChaos { reply }).await
    }

    /// The metadata voters.
    pub async fn voters(&self) -> Result<Vec<NodeId>, Stopped> {
        Ok(self.meta_status().await?.voters)
    }

    /// The metadata leader, when known.
    pub async fn leader(&self) -> Result<Option<NodeId>, Stopped> {
        Ok(self.meta_status().await?.leader)
    }

    /// The transport's counters.
    pub fn runtime_metrics(&self) -> RuntimeSnapshot {
        self.metrics.snapshot()
    }

    /// Resolves when the node has stopped running (it left, or its task
    /// ended unexpectedly).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + use<> {
        let mut alive = self.alive.clone();
        async move { while alive.changed().await.is_ok() {} }
    }

    /// Leaves the cluster gracefully and stops (within about 1.5 s).
    /// Calling it again, or on a stopped node, returns at once.
    pub async fn leave(&self) {
        self.leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Leave { reply: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
        self.stopped().await;
    }

    /// Whether [`Roster::leave`] was called (so a stop is expected).
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops abruptly, like a crash as far as membership goes: tasks aborted,
    /// no leave message. The endpoint is closed, so peers see their QUIC
    /// connections end (a real crash leaves them to time out). For failure
    /// drills and tests.
    pub async fn kill(self) {
        self.task.abort();
        self.endpoint.close(0u32.into(), b"killed");
        self.stopped().await;
        // Dropping the handle releases the endpoint and its socket.
    }
}

fn unexpected(r: MetaReply) -> MetaError {
    MetaError::Invalid(format!("unexpected reply {r:?}"))
}
