//! [`Builder`]: a node's settings, checked, and the start that opens its
//! data directory, certificates and QUIC endpoint and spawns its driver.

use super::*;

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
        let (cert, name) = self.certificate()?;
        let (store, generation, mut join) = self.open_store(&name)?;
        let revoked = tls::Revoked::default();
        let (server, client) = quic_configs(&cert, &revoked)?;
        let https = cert.https_server_config(&revoked)?;
        let (endpoint, local, advertise) = self.endpoint(server, client)?;
        self.resolve_join_names(&mut join).await?;

        #[allow(clippy::disallowed_methods)] // the runtime is the node's clock
        let started = Instant::now();
        let now = driver::now_from(started);
        let seed = self.seed.unwrap_or_else(|| {
            // Distinct per node and run; determinism is the simulator's job.
            let t = now.wall_ms ^ u64::from(advertise.port()) << 48;
            t ^ (std::process::id() as u64) << 32
        });
        let identity = Identity::new(name, advertise, generation);
        let node = self.node(identity.clone(), store.as_ref(), seed, now, join)?;

        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let metrics = Arc::new(RuntimeMetrics::default());
        note_expiry(&cert, &metrics);
        let mut drv = Driver::new(
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

    /// The node's certificate, checked (a node certificate, not expired,
    /// naming this node), and the node's name.
    fn certificate(&self) -> Result<(NodeCert, NodeId), StartError> {
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
        Ok((cert, name))
    }

    /// The data directory, if any: the store, this start's generation, and
    /// the join addresses with the members it remembers added.
    fn open_store(&self, name: &NodeId) -> Result<Opened, StartError> {
        let store = self
            .data_dir
            .as_deref()
            .map(Store::open)
            .transpose()?
            .map(Arc::new);
        let generation = match &store {
            Some(s) => s.start(name)?,
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
        Ok((store, generation, join))
    }

    /// The QUIC endpoint, bound, with the address it is bound to and the
    /// one this node advertises.
    fn endpoint(
        &self,
        server: quinn::ServerConfig,
        client: quinn::ClientConfig,
    ) -> Result<(quinn::Endpoint, SocketAddr, SocketAddr), StartError> {
        let bind_error = |source| StartError::Bind {
            addr: self.bind,
            source,
        };
        let mut endpoint = quinn::Endpoint::server(server, self.bind).map_err(bind_error)?;
        endpoint.set_default_client_config(client);
        let local = endpoint.local_addr().map_err(bind_error)?;
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
        Ok((endpoint, local, advertise))
    }

    /// Adds what the join names resolve to now to `join` (names that do not
    /// resolve yet are tried again once the node runs).
    async fn resolve_join_names(&self, join: &mut Vec<SocketAddr>) -> Result<(), StartError> {
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
        Ok(())
    }

    /// The node, with its tags and version set, joining `join`.
    fn node(
        &self,
        identity: Identity,
        store: Option<&Arc<Store>>,
        seed: u64,
        now: crate::node::Now,
        join: Vec<SocketAddr>,
    ) -> Result<Node, StartError> {
        let mut node = match store {
            Some(s) => Node::with_disk(
                identity,
                self.config.clone(),
                seed,
                now,
                Box::new(store::RaftTables::new(s.clone())),
            )?,
            None => Node::new(identity, self.config.clone(), seed, now)?,
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
        Ok(node)
    }
}

/// What [`Builder::open_store`] gives: the store, this start's generation
/// and the addresses to join.
type Opened = (Option<Arc<Store>>, Generation, Vec<SocketAddr>);

/// Resolves the join names again and joins through what they give, on a
/// backoff (1 s doubling to 30 s) while the node knows no active member;
/// checks every 10 s once it does. Ends with the node.
pub(super) async fn rejoin_by_name(commands: mpsc::Sender<Command>, names: Vec<String>) {
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

/// Bidirectional streams a peer may have open at once on a connection.
const MAX_BIDI_STREAMS: u32 = 16;
/// Unidirectional streams a peer may have open at once on a connection.
const MAX_UNI_STREAMS: u32 = 32;

/// The QUIC server and client configurations a node runs with its
/// certificate, refusing the peers named in `revoked` (the node's transport
/// settings included).
pub fn quic_configs(
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
    // Datagrams are at most QUIC's minimum size (`max_datagram_bytes`), so
    // the path MTU probes quinn sends after each handshake buy them nothing
    // (only large messages on streams would use fewer packets).
    transport.mtu_discovery_config(None);
    // quinn keeps a table entry per stream the peer may open, made when the
    // connection opens: at its defaults (100 + 100) about 8 KB of every
    // connection. Nodes open a unidirectional stream per large message and
    // a bidirectional one per forwarded metadata request; more wait for
    // one to close.
    transport.max_concurrent_bidi_streams(MAX_BIDI_STREAMS.into());
    transport.max_concurrent_uni_streams(MAX_UNI_STREAMS.into());
    let transport = Arc::new(transport);
    server.transport_config(transport.clone());
    let mut client = cert.client_config_refusing(revoked)?;
    client.transport_config(transport);
    Ok((server, client))
}

/// Records the certificate's expiry for `roster_cert_expiry_seconds` and
/// warns when it is less than [`tls::EXPIRY_WARNING_DAYS`] away.
pub(super) fn note_expiry(cert: &NodeCert, metrics: &RuntimeMetrics) {
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
