//! The QUIC runtime: drives one [`Node`] from a quinn endpoint, with mutual
//! TLS under a cluster CA and an optional data directory.
//!
//! [`Roster`] is the embeddable handle; the `roster agent` command is a thin
//! wrapper around it.

pub mod addr;
pub mod chaos;
mod driver;
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
use driver::{Command, Driver};
pub use metrics::{RuntimeMetrics, RuntimeSnapshot};
use store::{Store, StoreError};
use tls::{NodeCert, TlsError};

/// Events kept for a slow subscriber before it starts missing some.
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

/// Builds and starts a node. See [`Roster::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    name: Option<NodeId>,
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    join: Vec<SocketAddr>,
    join_names: Vec<String>,
    cert: Option<NodeCert>,
    tls_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    tags: BTreeMap<String, String>,
    config: Config,
    max_connections: usize,
    seed: Option<u64>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            name: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 7946)),
            advertise: None,
            join: Vec::new(),
            join_names: Vec::new(),
            cert: None,
            tls_dir: None,
            data_dir: None,
            tags: BTreeMap::new(),
            config: Config::lan(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            seed: None,
        }
    }
}

impl Builder {
    /// The node's name (default: the name in its certificate).
    pub fn name(mut self, name: NodeId) -> Self {
        self.name = Some(name);
        self
    }

    /// Address to bind (default 127.0.0.1:7946; port 0 picks a free one).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Address peers reach this node at (default: the bound address).
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// A member to join through (repeatable; any member will do).
    pub fn join(mut self, addr: SocketAddr) -> Self {
        self.join.push(addr);
        self
    }

    /// A member to join through, as `host:port` where the host may be a DNS
    /// name (repeatable). Every address the name resolves to is tried; the
    /// name is resolved again on each retry while the node is alone (see
    /// [`addr`]).
    pub fn join_name(mut self, target: impl Into<String>) -> Self {
        self.join_names.push(target.into());
        self
    }

    /// The node's certificate.
    pub fn tls(mut self, cert: NodeCert) -> Self {
        self.cert = Some(cert);
        self
    }

    /// Directory holding `ca.crt`, `node.crt` and `node.key`.
    pub fn tls_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tls_dir = Some(dir.into());
        self
    }

    /// Directory for the node's identity, generation and member cache.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// A tag, spread as state key `tag:{key}`.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Membership configuration (default [`Config::lan`]).
    pub fn config(mut self, config: Config) -> Self {
        let meta = self.config.meta.clone();
        self.config = config;
        // Voter settings given to the builder survive a later config().
        self.config.meta.voter = meta.voter;
        self.config.meta.bootstrap_expect = meta.bootstrap_expect;
        self.config.meta.target_voters = meta.target_voters;
        self.config.meta.owner = meta.owner;
        self
    }

    /// Whether this node may become a metadata voter (default true). A node
    /// that may not is tagged `voter=false`, so every leader sees it.
    pub fn voter(mut self, voter: bool) -> Self {
        self.config.meta.voter = voter;
        if voter {
            self.tags.remove("voter");
        } else {
            self.tags.insert("voter".into(), "false".into());
        }
        self
    }

    /// Whether this node may own partitions (default true). A node that may
    /// not is tagged `owner=false`.
    pub fn owner(mut self, owner: bool) -> Self {
        self.config.meta.owner = owner;
        if owner {
            self.tags.remove("owner");
        } else {
            self.tags.insert("owner".into(), "false".into());
        }
        self
    }

    /// Live eligible members a node waits for before it bootstraps the
    /// metadata cluster (default 3).
    pub fn bootstrap_expect(mut self, n: usize) -> Self {
        self.config.meta.bootstrap_expect = n.max(1);
        self
    }

    /// Metadata voters the leader aims for (default 3; 5 tolerates two
    /// failures).
    pub fn target_voters(mut self, n: usize) -> Self {
        self.config.meta.target_voters = n.max(1);
        self
    }

    /// Bound on open QUIC connections (default 512).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Seed of the node's RNG (default: from the OS).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts the node: binds, loads certificates and the data directory,
    /// and begins joining. Must run inside a tokio runtime.
    pub async fn start(self) -> Result<Roster, StartError> {
        self.config.validate()?;
        let cert = match (&self.cert, &self.tls_dir) {
            (Some(c), _) => c.clone(),
            (None, Some(dir)) => NodeCert::load(dir)?,
            (None, None) => return Err(StartError::NoCertificate),
        };
        let cert_id = cert.node_id().map_err(StartError::BadCertificate)?;
        cert.check_is_node()?;
        cert.check_not_expired()?;
        let name = self.name.clone().unwrap_or_else(|| cert_id.clone());
        if cert_id != name {
            return Err(StartError::NameMismatch {
                cert: cert_id,
                name,
            });
        }
        if self.config.max_datagram_bytes.get() > crate::node::config::QUIC_MIN_DATAGRAM_BYTES {
            return Err(StartError::DatagramTooLarge(
                self.config.max_datagram_bytes.get(),
            ));
        }
        let store = self
            .data_dir
            .as_deref()
            .map(Store::open)
            .transpose()?
            .map(Arc::new);
        let generation = match &store {
            Some(s) => s.start(&name)?,
            None => Generation(1),
        };
        let mut join = self.join.clone();
        if let Some(s) = &store {
            for a in s.members()? {
                if !join.contains(&a) {
                    join.push(a);
                }
            }
        }

        let revoked = tls::Revoked::default();
        let (server, client) = quic_configs(&cert, &revoked)?;
        let https = cert.https_server_config(&revoked)?;
        let mut endpoint =
            quinn::Endpoint::server(server, self.bind).map_err(|source| StartError::Bind {
                addr: self.bind,
                source,
            })?;
        endpoint.set_default_client_config(client);
        let local = endpoint.local_addr().map_err(|source| StartError::Bind {
            addr: self.bind,
            source,
        })?;
        let advertise = match self.advertise {
            Some(a) => a,
            // Bound to every interface: advertise the machine's one
            // private address, as memberlist does.
            None if local.ip().is_unspecified() => {
                addr::private_advertise(local).map_err(StartError::Advertise)?
            }
            None => local,
        };
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            return Err(StartError::Unreachable(advertise));
        }
        for t in &self.join_names {
            addr::check_target(t).map_err(StartError::Join)?;
        }
        let (by_name, unresolved) = addr::resolve(&self.join_names).await;
        for e in &unresolved {
            tracing::warn!(error = %e, "join target not resolved; will try again");
        }
        for a in by_name {
            if !join.contains(&a) {
                join.push(a);
            }
        }

        #[allow(clippy::disallowed_methods)] // the runtime is the node's clock
        let started = Instant::now();
        let now = driver::now_from(started);
        let seed = self.seed.unwrap_or_else(|| {
            // Distinct per node and run; determinism is the simulator's job.
            let t = now.wall_ms ^ u64::from(advertise.port()) << 48;
            t ^ (std::process::id() as u64) << 32
        });
        let identity = Identity::new(name.clone(), advertise, generation);
        let mut node = match &store {
            Some(s) => Node::with_disk(
                identity.clone(),
                self.config.clone(),
                seed,
                now,
                Box::new(store::RaftTables::new(s.clone())),
            )?,
            None => Node::new(identity.clone(), self.config.clone(), seed, now)?,
        };
        for (k, v) in &self.tags {
            if let Err(e) = node.set_tag(now, k, v) {
                tracing::warn!(tag = %k, error = %e, "tag refused");
            }
        }
        if let Err(e) = node.announce_build(now, env!("CARGO_PKG_VERSION")) {
            tracing::warn!(error = %e, "could not announce this node's version");
        }
        node.join(now, join);

        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let metrics = Arc::new(RuntimeMetrics::default());
        note_expiry(&cert, &metrics);
        let drv = Driver::new(
            node,
            endpoint.clone(),
            started,
            mpsc::channel(4096),
            cmd_rx,
            events.clone(),
            metrics.clone(),
            store,
            self.max_connections,
        );
        let mut drv = drv;
        drv.revoked = revoked.clone();
        let (alive_tx, alive) = tokio::sync::watch::channel(());
        let task = tokio::spawn(async move {
            drv.run().await;
            drop(alive_tx);
        });
        if !self.join_names.is_empty() {
            tokio::spawn(rejoin_by_name(cmd_tx.clone(), self.join_names.clone()));
        }
        tracing::info!(node = %identity, "started");
        Ok(Roster {
            identity,
            local_addr: local,
            commands: cmd_tx,
            events,
            metrics,
            endpoint,
            revoked,
            https: std::sync::RwLock::new(https),
            task,
            alive,
            leaving: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }
}

/// Resolves the join names again and joins through what they give, on a
/// backoff (1 s doubling to 30 s) while the node knows no active member;
/// checks every 10 s once it does. Ends with the node.
async fn rejoin_by_name(commands: mpsc::Sender<Command>, names: Vec<String>) {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);
    const JOINED_CHECK: Duration = Duration::from_secs(10);
    let mut wait = FIRST;
    loop {
        let (tx, rx) = oneshot::channel();
        if commands.send(Command::Status { reply: tx }).await.is_err() {
            return;
        }
        let Ok(status) = rx.await else { return };
        if status.joined {
            wait = FIRST;
            tokio::time::sleep(JOINED_CHECK).await;
            continue;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX);
        let (addrs, errors) = addr::resolve(&names).await;
        for e in errors {
            tracing::debug!(error = %e, "join target not resolved");
        }
        if addrs.is_empty() {
            continue;
        }
        let (tx, rx) = oneshot::channel();
        if commands
            .send(Command::Join { addrs, reply: tx })
            .await
            .is_err()
        {
            return;
        }
        let _ = rx.await;
    }
}

/// The QUIC server and client configurations for a certificate.
fn quic_configs(
    cert: &NodeCert,
    revoked: &tls::Revoked,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), StartError> {
    let mut server = cert.server_config_refusing(revoked)?;
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        CONNECTION_IDLE_TIMEOUT
            .try_into()
            .expect("30 s fits a QUIC idle timeout"),
    ));
    let transport = Arc::new(transport);
    server.transport_config(transport.clone());
    let mut client = cert.client_config_refusing(revoked)?;
    client.transport_config(transport);
    Ok((server, client))
}

/// Records the certificate's expiry for `roster_cert_expiry_seconds` and
/// warns when it is less than [`tls::EXPIRY_WARNING_DAYS`] away.
fn note_expiry(cert: &NodeCert, metrics: &RuntimeMetrics) {
    let Ok(until) = cert.not_after() else {
        return;
    };
    let unix = until
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    metrics
        .cert_not_after_unix
        .store(unix, std::sync::atomic::Ordering::Relaxed);
    warn_if_expiring(unix);
}

/// Warns when a certificate valid until `unix` expires within
/// [`tls::EXPIRY_WARNING_DAYS`].
pub fn warn_if_expiring(unix: u64) {
    let now = tls::wall_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let left = unix.saturating_sub(now);
    if unix != 0 && left < tls::EXPIRY_WARNING_DAYS * 86_400 {
        tracing::warn!(
            days_left = left / 86_400,
            "the node certificate expires soon: issue a new one (roster cert node) and reload it (SIGHUP)"
        );
    }
}

/// A running node. Dropping every clone of the command channel (i.e. this
/// handle) makes the node leave.
#[derive(Debug)]
pub struct Roster {
    identity: Identity,
    local_addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<Event>,
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
    rx: broadcast::Receiver<Event>,
}

impl Events {
    /// The next event, or `None` once the node has stopped.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
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
