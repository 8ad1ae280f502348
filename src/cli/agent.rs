//! `roster agent`: run one node until SIGINT or SIGTERM, then leave.
//!
//! Settings come from flags, then `ROSTER_*` environment variables, then the
//! TOML file given with `--config` (same keys, `join` and `tag` as arrays),
//! then defaults. Everything is checked before any socket opens.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Deserialize;

use roster::node::{Config, EngineKind, NodeId};
use roster::runtime::Roster;

/// Membership timing profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A data-centre network (`Config::lan`).
    Lan,
    /// Across regions (`Config::wan`).
    Wan,
    /// One machine (`Config::local`).
    Local,
}

/// The SWIM engine (`Config::engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// foca 2.0 with roster's Lifeguard layer.
    Foca,
    /// roster's own SWIM engine, Lifeguard built in.
    Native,
}

impl From<Engine> for EngineKind {
    fn from(e: Engine) -> Self {
        match e {
            Engine::Foca => EngineKind::Foca,
            Engine::Native => EngineKind::Native,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `roster agent` flags.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// TOML file with the same keys as the flags.
    #[arg(long, env = "ROSTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// NodeId (default: the name in the certificate).
    #[arg(long, env = "ROSTER_NAME")]
    pub name: Option<String>,
    /// Address to bind (default 0.0.0.0:7946).
    #[arg(long, env = "ROSTER_BIND")]
    pub bind: Option<SocketAddr>,
    /// Address peers reach this node at (default: the bind address; bound
    /// to 0.0.0.0 or `[::]`, the machine's one private address of that
    /// family).
    #[arg(long, env = "ROSTER_ADVERTISE")]
    pub advertise: Option<SocketAddr>,
    /// A member to join through, `HOST:PORT` with an IP address or a DNS
    /// name (every address it resolves to; resolved again on each retry
    /// while alone). Repeatable; any member will do.
    #[arg(long, env = "ROSTER_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Directory for identity, generation and member cache.
    #[arg(long, env = "ROSTER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory with `ca.crt`, `node.crt`, `node.key`.
    #[arg(long, env = "ROSTER_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// A tag `key=value` (repeatable).
    #[arg(long = "tag", env = "ROSTER_TAG", value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Timing profile.
    #[arg(long, env = "ROSTER_PROFILE", value_enum)]
    pub profile: Option<Profile>,
    /// SWIM engine (default foca). Every member of a cluster must run the
    /// same one: each refuses the other's packets.
    #[arg(long, env = "ROSTER_ENGINE", value_enum)]
    pub engine: Option<Engine>,
    /// Log format.
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Which log lines to write: a level (`error`, `warn`, `info`,
    /// `debug`, `trace`) or `RUST_LOG`-style directives (`info,roster=debug`).
    /// Default: `RUST_LOG`, else `info`. Reloaded from `--config` on SIGHUP.
    #[arg(long, env = "ROSTER_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Address of the HTTP API and dashboard, `IP:PORT`, or `off` (default
    /// 127.0.0.1:8946, where client commands look first).
    #[arg(long, env = "ROSTER_HTTP")]
    pub http: Option<String>,
    /// The operator token for the HTTP API, in a file readable by its owner
    /// only (default: `http-token` in the data dir, created on first start;
    /// without a data dir, a new token each start).
    #[arg(long, env = "ROSTER_HTTP_TOKEN_FILE")]
    pub http_token_file: Option<PathBuf>,
    /// A DNS name the HTTP API answers to besides IP addresses and
    /// `localhost` (repeatable): requests naming any other `Host` are
    /// refused, which stops DNS rebinding.
    #[arg(
        long = "http-allow-host",
        env = "ROSTER_HTTP_ALLOW_HOST",
        value_delimiter = ','
    )]
    pub http_allow_host: Vec<String>,
    /// Serve the HTTP API over HTTPS with this node's certificate (from
    /// `--tls-dir`); an operator certificate from the cluster CA (`roster
    /// cert client`) then authenticates as the token does.
    #[arg(long, env = "ROSTER_HTTP_TLS")]
    pub http_tls: bool,
    /// Answer the API's reads (GET: members, state, metadata, metrics, the
    /// dashboard) without a credential, e.g. for a Prometheus on a trusted
    /// network. Writes still need the token or an operator certificate.
    #[arg(long, env = "ROSTER_HTTP_OPEN_READS")]
    pub http_open_reads: bool,
    /// Whether this node may become a metadata voter (`--voter false` opts
    /// out, e.g. a small edge node; default true).
    #[arg(long, env = "ROSTER_VOTER", action = clap::ArgAction::Set)]
    pub voter: Option<bool>,
    /// Live eligible members to see before bootstrapping the metadata
    /// cluster (default 3).
    #[arg(long, env = "ROSTER_BOOTSTRAP_EXPECT")]
    pub bootstrap_expect: Option<usize>,
    /// Metadata voters to aim for (default 3; 5 tolerates two failures).
    #[arg(long, env = "ROSTER_VOTERS")]
    pub voters: Option<usize>,
    /// Whether this node may own partitions (`--owner false` opts out).
    #[arg(long, env = "ROSTER_OWNER", action = clap::ArgAction::Set)]
    pub owner: Option<bool>,
    /// How long a Down or Left member stays listed (and a Down one tried
    /// now and then) before it is forgotten: `90s`, `30m`, `24h` (default,
    /// as Serf's reconnect and tombstone timeouts).
    #[arg(long, env = "ROSTER_REAP_AFTER", value_parser = parse_duration)]
    pub reap_after: Option<Duration>,
    /// Most QUIC connections kept open (default 512): past it the least
    /// recently used is closed. A member keeps one to every other it talks
    /// to (about 10 KB each, measured); below the member count, connections
    /// are opened again (a TLS handshake each) as gossip picks peers.
    #[arg(long, env = "ROSTER_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Keep every code page the agent once ran resident. By default (on
    /// Linux) the agent releases, 10 s after it starts and every minute
    /// after that, its mapping of the unmodified file-backed pages it holds
    /// (they stay in the page cache, and what it runs comes back with minor
    /// faults, so its RSS holds what it runs rather than what it ran once),
    /// and gives the free pages of its heap back to the system.
    #[arg(long, env = "ROSTER_KEEP_CODE_RESIDENT")]
    pub keep_code_resident: bool,
    /// A program to run on each user event (repeatable): the payload on
    /// its standard input, the event in `ROSTER_*` environment variables
    /// (see the README's "User events").
    #[arg(long = "event-handler", value_name = "PATH")]
    pub event_handlers: Vec<PathBuf>,
    /// How long an event handler may run before it is killed (default 30s).
    #[arg(long, env = "ROSTER_EVENT_HANDLER_TIMEOUT", value_parser = parse_duration)]
    pub event_handler_timeout: Option<Duration>,
    /// Handle events of one name that arrive within this window of the
    /// first once, with the last of them (default 0s: every event).
    #[arg(long, env = "ROSTER_EVENT_COALESCE", value_parser = parse_duration)]
    pub event_coalesce: Option<Duration>,
    /// A program that answers queries (`roster query`): the payload on its
    /// standard input, the query in `ROSTER_*` environment variables, its
    /// standard output the answer (see the README's "Queries").
    #[arg(long = "query-handler", value_name = "PATH")]
    pub query_handler: Option<PathBuf>,
    /// Run network coordinates (Vivaldi): round-trip estimates between
    /// any two members (`roster rtt`), two datagrams of about 70 bytes per
    /// probe more.
    #[arg(long, env = "ROSTER_COORDINATES", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub coordinates: Option<bool>,
}

/// A duration as `500ms`, `90s`, `30m`, `24h` or `7d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("{text:?}: expected a number and a unit (500ms, 90s, 30m, 24h, 7d)")
    })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86_400)),
        _ => return Err(format!("{text:?}: the unit must be ms, s, m, h or d")),
    };
    if d.is_zero() {
        return Err(format!("{text:?}: must be more than zero"));
    }
    if d > roster::node::config::MAX_RETENTION {
        return Err(format!("{text:?}: must be at most ten years (3650d)"));
    }
    Ok(d)
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
struct FileConfig {
    name: Option<String>,
    bind: Option<SocketAddr>,
    advertise: Option<SocketAddr>,
    #[serde(default)]
    join: Vec<String>,
    data_dir: Option<PathBuf>,
    tls_dir: Option<PathBuf>,
    #[serde(default)]
    tag: Vec<String>,
    profile: Option<Profile>,
    engine: Option<Engine>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    http: Option<String>,
    http_token_file: Option<PathBuf>,
    #[serde(default)]
    http_allow_host: Vec<String>,
    http_tls: Option<bool>,
    http_open_reads: Option<bool>,
    voter: Option<bool>,
    bootstrap_expect: Option<usize>,
    voters: Option<usize>,
    owner: Option<bool>,
    reap_after: Option<String>,
    max_connections: Option<usize>,
    keep_code_resident: Option<bool>,
    #[serde(default)]
    event_handler: Vec<PathBuf>,
    event_handler_timeout: Option<String>,
    event_coalesce: Option<String>,
    coordinates: Option<bool>,
    query_handler: Option<PathBuf>,
}

/// Settings after merging flags, environment and file.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The `--config` file, if any (re-read on SIGHUP).
    pub config: Option<PathBuf>,
    /// Log filter directives (`None`: `RUST_LOG`, else `info`).
    pub log_level: Option<String>,
    /// NodeId, if set.
    pub name: Option<NodeId>,
    /// Bind address.
    pub bind: SocketAddr,
    /// Advertised address.
    pub advertise: Option<SocketAddr>,
    /// Join addresses.
    pub join: Vec<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// TLS directory.
    pub tls_dir: PathBuf,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Profile.
    pub profile: Profile,
    /// SWIM engine.
    pub engine: Engine,
    /// Log format.
    pub log_format: LogFormat,
    /// HTTP API address (`None`: off).
    pub http: Option<SocketAddr>,
    /// Whether `http` is the default address (not given).
    pub http_default: bool,
    /// The operator token's file.
    pub http_token_file: Option<PathBuf>,
    /// Host names the API answers to.
    pub http_allow_host: Vec<String>,
    /// Serve the API over HTTPS.
    pub http_tls: bool,
    /// Reads need no credential.
    pub http_open_reads: bool,
    /// May become a metadata voter.
    pub voter: bool,
    /// Bootstrap threshold.
    pub bootstrap_expect: usize,
    /// Target voters.
    pub voters: usize,
    /// May own partitions.
    pub owner: bool,
    /// How long Down and Left members stay listed.
    pub reap_after: Duration,
    /// Most QUIC connections kept open.
    pub max_connections: usize,
    /// Keep code pages resident (no periodic release).
    pub keep_code_resident: bool,
    /// Programs run on each user event.
    pub event_handlers: Vec<PathBuf>,
    /// How long an event handler may run.
    pub event_handler_timeout: Duration,
    /// The event handlers' coalescing window (zero: none).
    pub event_coalesce: Duration,
    /// Network coordinates on.
    pub coordinates: bool,
    /// The program answering queries.
    pub query_handler: Option<PathBuf>,
}

fn positive(flag: &str, n: usize) -> Result<usize, String> {
    if n == 0 {
        Err(format!("{flag} must be at least 1"))
    } else {
        Ok(n)
    }
}

/// The HTTP API's address from `--http` / `http`: `off` (or `none`)
/// disables it; unset is [`super::client::DEFAULT_HTTP`].
fn http_addr(given: Option<&str>) -> Result<Option<SocketAddr>, String> {
    match given.map(str::trim) {
        None => Ok(Some(
            super::client::DEFAULT_HTTP
                .parse()
                .map_err(|e| format!("{e}"))?,
        )),
        Some(v) if v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("none") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("--http {v:?}: expected IP:PORT (e.g. 127.0.0.1:8946) or off")),
    }
}

fn load_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))
}

/// `key=value` tags, checked.
fn parse_tags(list: Vec<String>) -> Result<BTreeMap<String, String>, String> {
    let mut tags = BTreeMap::new();
    for t in list {
        let (k, v) = t
            .split_once('=')
            .ok_or_else(|| format!("--tag {t:?}: expected key=value"))?;
        if k.is_empty() {
            return Err(format!("--tag {t:?}: empty key"));
        }
        tags.insert(k.to_owned(), v.to_owned());
    }
    Ok(tags)
}

/// Join targets (`host:port`), each checked.
fn join_targets(join: Vec<String>) -> Result<Vec<String>, String> {
    for j in &join {
        roster::runtime::addr::check_target(j).map_err(|e| format!("--join {e}"))?;
    }
    Ok(join)
}

/// A duration flag's value, else the file's (parsed; `key` names it in an
/// error), else `None`.
fn duration_or(
    flag: Option<Duration>,
    file: Option<String>,
    key: &str,
) -> Result<Option<Duration>, String> {
    match (flag, file) {
        (Some(d), _) => Ok(Some(d)),
        (None, Some(t)) => parse_duration(&t)
            .map(Some)
            .map_err(|e| format!("{key} {e}")),
        (None, None) => Ok(None),
    }
}

/// Handler programs given with `flag`, each checked to be a file.
fn handlers(flag: &str, paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
    for p in &paths {
        if !p.is_file() {
            return Err(format!("{flag} {}: no such file", p.display()));
        }
    }
    Ok(paths)
}

/// A repeatable flag's values, or the file's where the flag is not given.
fn flags_or<T>(flags: Vec<T>, file: Vec<T>) -> Vec<T> {
    if flags.is_empty() { file } else { flags }
}

/// Merges flags/env over the file and checks every value.
// One field per setting, each a flag over the file over a default: long
// because the settings are many.
pub fn settings(args: AgentArgs) -> Result<Settings, String> {
    let file = match &args.config {
        Some(p) => load_file(p)?,
        None => FileConfig::default(),
    };
    let name = args
        .name
        .or(file.name)
        .map(|n| NodeId::new(n.clone()).map_err(|e| format!("--name {n:?}: {e}")))
        .transpose()?;
    let tls_dir = args
        .tls_dir
        .or(file.tls_dir)
        .ok_or("--tls-dir is required (create certificates with `roster cert`)")?;
    let tags = parse_tags(flags_or(args.tags, file.tag))?;
    let log_level = args.log_level.or(file.log_level);
    if let Some(l) = &log_level {
        tracing_subscriber::EnvFilter::try_new(l).map_err(|e| format!("--log-level {l:?}: {e}"))?;
    }
    Ok(Settings {
        config: args.config.clone(),
        log_level,
        name,
        bind: args
            .bind
            .or(file.bind)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 7946))),
        advertise: args.advertise.or(file.advertise),
        join: join_targets(flags_or(args.join, file.join))?,
        data_dir: args.data_dir.or(file.data_dir),
        tls_dir,
        profile: args.profile.or(file.profile).unwrap_or(Profile::Lan),
        engine: args.engine.or(file.engine).unwrap_or(Engine::Foca),
        log_format: args
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Text),
        http: http_addr(args.http.as_deref().or(file.http.as_deref()))?,
        http_default: args.http.is_none() && file.http.is_none(),
        http_token_file: args.http_token_file.or(file.http_token_file),
        http_allow_host: flags_or(args.http_allow_host, file.http_allow_host),
        http_tls: args.http_tls || file.http_tls.unwrap_or(false),
        http_open_reads: args.http_open_reads || file.http_open_reads.unwrap_or(false),
        voter: args
            .voter
            .or(file.voter)
            .unwrap_or_else(|| tags.get("voter").is_none_or(|v| v != "false")),
        bootstrap_expect: positive(
            "--bootstrap-expect",
            args.bootstrap_expect.or(file.bootstrap_expect).unwrap_or(3),
        )?,
        voters: positive("--voters", args.voters.or(file.voters).unwrap_or(3))?,
        owner: args
            .owner
            .or(file.owner)
            .unwrap_or_else(|| tags.get("owner").is_none_or(|v| v != "false")),
        max_connections: positive(
            "--max-connections",
            args.max_connections
                .or(file.max_connections)
                .unwrap_or(roster::runtime::DEFAULT_MAX_CONNECTIONS),
        )?,
        keep_code_resident: args.keep_code_resident || file.keep_code_resident.unwrap_or(false),
        reap_after: duration_or(args.reap_after, file.reap_after, "reap_after")?
            .unwrap_or(Config::lan().remove_left_after),
        event_handlers: handlers(
            "--event-handler",
            flags_or(args.event_handlers, file.event_handler),
        )?,
        event_handler_timeout: duration_or(
            args.event_handler_timeout,
            file.event_handler_timeout,
            "event_handler_timeout",
        )?
        .unwrap_or(Duration::from_secs(30)),
        event_coalesce: duration_or(args.event_coalesce, file.event_coalesce, "event_coalesce")?
            .unwrap_or(Duration::ZERO),
        coordinates: args.coordinates.or(file.coordinates).unwrap_or(false),
        query_handler: handlers(
            "--query-handler",
            args.query_handler
                .or(file.query_handler)
                .into_iter()
                .collect(),
        )?
        .pop(),
        tags,
    })
}

/// The log filter's handle, to change it at runtime (SIGHUP).
type LogHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// The log filter for `level` (`None`: `RUST_LOG`, else `info`).
fn log_filter(level: Option<&str>) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    }
}

fn init_logs(format: LogFormat, level: Option<&str>) -> Option<LogHandle> {
    use tracing_subscriber::prelude::*;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // The level filters the agent's own output only: `roster monitor
    // --logs` streams may ask for more (see `api::logs`).
    let (r, installer) = match format {
        LogFormat::Text => {
            let (stream, installer) = roster::api::logs::layer();
            let r = tracing_subscriber::registry()
                .with(fmt.with_filter(filter))
                .with(stream)
                .try_init();
            (r, installer)
        }
        LogFormat::Json => {
            let (stream, installer) = roster::api::logs::layer();
            let r = tracing_subscriber::registry()
                .with(fmt.json().with_filter(filter))
                .with(stream)
                .try_init();
            (r, installer)
        }
    };
    r.ok().map(|()| {
        installer.install();
        handle
    })
}

/// Runs the agent; returns the exit code.
pub fn run(args: AgentArgs) -> ExitCode {
    let s = match settings(args.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = init_logs(s.log_format, s.log_level.as_deref());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(serve(s, args, logs))
}

async fn serve(s: Settings, args: AgentArgs, logs: Option<LogHandle>) -> ExitCode {
    // What SIGHUP compares a re-read configuration with.
    let loaded = s.clone();
    // Installed before starting, so a signal during start-up is graceful too.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    // The HTTP port and the token come first, so a port in use or a bad
    // token file fails before the node joins anyone.
    let http = match bind_http(&s).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let roster = match builder(&s).start().await {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut registered = None;
    let server = match http {
        Some((listener, (token, source))) => {
            match start_http(&s, &roster, listener, &token, &source) {
                Ok((h, recorded)) => {
                    registered = recorded;
                    Some(h)
                }
                Err(e) => {
                    eprintln!("error: HTTP API: {e}");
                    roster.leave().await;
                    return ExitCode::FAILURE;
                }
            }
        }
        None => None,
    };
    let _unregister = Unregister(registered);
    start_handlers(&roster, &s);
    let _release = (!s.keep_code_resident)
        .then(|| AbortOnDrop(tokio::spawn(super::resident::release_periodically())));
    let reloader = tokio::spawn(reload_on_sighup(roster.clone(), loaded, args, logs));
    let _reloader = AbortOnDrop(reloader);
    tracing::info!(node = %roster.identity(), addr = %roster.local_addr(), "agent running");
    tokio::select! {
        _ = &mut signal => {}
        _ = roster.stopped() => {
            if roster.is_leaving() {
                tracing::info!("left the cluster on request");
                if let Some(h) = server {
                    h.stop().await;
                }
                return ExitCode::SUCCESS;
            }
            tracing::error!("the node stopped unexpectedly");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!("signal received, leaving the cluster");
    if let Some(h) = server {
        h.stop().await;
    }
    if tokio::time::timeout(Duration::from_millis(2500), roster.leave())
        .await
        .is_err()
    {
        tracing::warn!("leave did not finish in time; exiting");
    }
    ExitCode::SUCCESS
}

/// Starts the event and query handlers the settings name.
fn start_handlers(roster: &std::sync::Arc<Roster>, s: &Settings) {
    super::handlers::start(
        roster.clone(),
        super::handlers::HandlerSettings {
            handlers: s.event_handlers.clone(),
            timeout: s.event_handler_timeout,
            coalesce: s.event_coalesce,
        },
    );
    let timeout = s.event_handler_timeout;
    super::handlers::start_queries(roster.clone(), s.query_handler.clone(), timeout);
}

/// The node's builder from the settings.
fn builder(s: &Settings) -> roster::runtime::Builder {
    let mut b = Roster::builder()
        .tls_dir(&s.tls_dir)
        .bind(s.bind)
        .config(Config {
            engine: s.engine.into(),
            remove_down_after: s.reap_after,
            remove_left_after: s.reap_after,
            coordinates: s.coordinates,
            ..match s.profile {
                Profile::Lan => Config::lan(),
                Profile::Wan => Config::wan(),
                Profile::Local => Config::local(),
            }
        });
    if let Some(n) = &s.name {
        b = b.name(n.clone());
    }
    if let Some(a) = s.advertise {
        b = b.advertise(a);
    }
    for j in &s.join {
        b = match j.parse::<SocketAddr>() {
            Ok(a) => b.join(a),
            Err(_) => b.join_name(j.clone()),
        };
    }
    if let Some(d) = &s.data_dir {
        b = b.data_dir(d.clone());
    }
    for (k, v) in &s.tags {
        b = b.tag(k.clone(), v.clone());
    }
    b.voter(s.voter)
        .bootstrap_expect(s.bootstrap_expect)
        .target_voters(s.voters)
        .owner(s.owner)
        .max_connections(s.max_connections)
}

/// The HTTP API's listener and operator token (with where it came from),
/// unless the API is off.
async fn bind_http(
    s: &Settings,
) -> Result<Option<(tokio::net::TcpListener, (roster::api::Token, String))>, String> {
    let Some(addr) = s.http else {
        return Ok(None);
    };
    let token = http_token(s.http_token_file.as_deref(), s.data_dir.as_deref())?;
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Ok(Some((l, token))),
        Err(e) => {
            let hint = if s.http_default {
                " (the default address; another agent on this machine may hold it: give this one --http 127.0.0.1:PORT, or --http off)"
            } else {
                ""
            };
            Err(format!("cannot bind the HTTP API on {addr}: {e}{hint}"))
        }
    }
}

/// Serves the HTTP API on `listener` and records its token for the CLI:
/// the server and where the token was recorded.
fn start_http(
    s: &Settings,
    roster: &std::sync::Arc<Roster>,
    listener: tokio::net::TcpListener,
    token: &roster::api::Token,
    source: &str,
) -> std::io::Result<(roster::api::ServeHandle, Option<PathBuf>)> {
    let mut access = roster::api::Access::new(token.clone())
        .https(s.http_tls)
        .open_reads(s.http_open_reads);
    for h in &s.http_allow_host {
        access = access.allow_host(h);
    }
    let h = roster::api::serve_on(roster.clone(), listener, access)?;
    let addr = h.local_addr();
    let scheme = if s.http_tls { "https" } else { "http" };
    let needs = match (s.http_tls, s.http_open_reads) {
        (true, false) => "operator token or certificate required",
        (true, true) => "reads open; writes need the operator token or certificate",
        (false, false) => "operator token required",
        (false, true) => "reads open; writes need the operator token",
    };
    let mut recorded = None;
    match roster::api::credentials::register(addr, token) {
        Ok(p) => {
            tracing::info!(%addr, scheme, token = %source, recorded = %p.display(), "HTTP API and dashboard ({needs})");
            recorded = Some(p);
        }
        Err(e) => {
            tracing::info!(%addr, scheme, token = %source, "HTTP API and dashboard ({needs})");
            tracing::warn!(error = %e, "could not record the token for the CLI; pass --token-file to client commands");
        }
    }
    if !addr.ip().is_loopback() && !s.http_tls {
        tracing::warn!(%addr, "the HTTP API listens beyond this machine over plain HTTP: the operator token crosses the network unencrypted; add --http-tls (HTTPS with this node's certificate) or use a loopback address");
    }
    if s.http_open_reads {
        tracing::warn!(%addr, "--http-open-reads: anyone who reaches this address can read members, state, metadata and metrics without a credential");
    }
    Ok((h, recorded))
}

/// Stops a background task when the agent returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// On SIGHUP, loads `--tls-dir` again and switches to its certificates
/// without leaving the cluster, and re-reads `--config` (see
/// [`apply_config`]); once a day, warns if the certificate in use expires
/// within 30 days.
async fn reload_on_sighup(
    roster: std::sync::Arc<Roster>,
    mut current: Settings,
    args: AgentArgs,
    logs: Option<LogHandle>,
) {
    const DAY: Duration = Duration::from_secs(86_400);
    let dir = current.tls_dir.clone();
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut daily = tokio::time::interval_at(tokio::time::Instant::now() + DAY, DAY);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            _ = hangup => {}
            _ = daily.tick() => {
                let until = roster.runtime_metrics().cert_not_after_unix;
                roster::runtime::warn_if_expiring(until);
                continue;
            }
        }
        let loaded = roster::runtime::tls::NodeCert::load(&dir).map_err(|e| e.to_string());
        let result = match loaded {
            Ok(cert) => roster.reload_tls(cert).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => tracing::info!(
                dir = %dir.display(),
                not_after_unix = roster.runtime_metrics().cert_not_after_unix,
                "SIGHUP: certificates reloaded; new connections use them"
            ),
            Err(e) => tracing::error!(
                dir = %dir.display(),
                error = %e,
                "SIGHUP: certificates not reloaded; keeping the current ones"
            ),
        }
        if current.config.is_some() {
            match settings(args.clone()) {
                Ok(new) => {
                    apply_config(&roster, &current, &new, logs.as_ref()).await;
                    current = new;
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "SIGHUP: the configuration does not load; keeping the current one"
                ),
            }
        }
    }
}

/// Applies what can change at runtime between two readings of the
/// configuration: tags (set or removed as the file now says; tags set with
/// `roster tags` and not in either reading stay), the log filter, and new
/// join targets. Anything else that changed is reported, with what to do.
async fn apply_config(roster: &Roster, old: &Settings, new: &Settings, logs: Option<&LogHandle>) {
    let mut applied = Vec::new();
    for (k, v) in &new.tags {
        if old.tags.get(k) != Some(v) {
            match roster.set_tag(k, v).await {
                Ok(_) => applied.push(format!("tag {k}={v}")),
                Err(e) => tracing::error!(tag = %k, error = %e, "SIGHUP: tag not set"),
            }
        }
    }
    for k in old.tags.keys().filter(|k| !new.tags.contains_key(*k)) {
        match roster.unset_tag(k).await {
            Ok(_) => applied.push(format!("tag {k} removed")),
            Err(e) => tracing::error!(tag = %k, error = %e, "SIGHUP: tag not removed"),
        }
    }
    if old.log_level != new.log_level {
        match logs.map(|h| h.reload(log_filter(new.log_level.as_deref()))) {
            Some(Ok(())) => applied.push(format!(
                "log level {}",
                new.log_level.as_deref().unwrap_or("(RUST_LOG or info)")
            )),
            _ => tracing::error!("SIGHUP: the log level could not be changed"),
        }
    }
    let fresh: Vec<String> = new
        .join
        .iter()
        .filter(|j| !old.join.contains(j))
        .cloned()
        .collect();
    if !fresh.is_empty() {
        match roster.join(&fresh).await {
            Ok(r) => {
                applied.push(format!("joining {}", fresh.join(", ")));
                for u in r.unresolved {
                    tracing::warn!(error = %u, "SIGHUP: join target not resolved");
                }
            }
            Err(_) => return,
        }
    }
    let fixed = restart_only_changes(old, new);
    tracing::debug!(settings = ?new, "SIGHUP: the configuration now in force");
    if applied.is_empty() {
        tracing::info!("SIGHUP: configuration re-read; nothing to change at runtime");
    } else {
        tracing::info!(changes = %applied.join("; "), "SIGHUP: configuration reloaded");
    }
    if !fixed.is_empty() {
        tracing::warn!(
            settings = %fixed.join(", "),
            "SIGHUP: these settings changed but apply only at the next start; restart the agent for them"
        );
    }
}

/// The settings that differ between `old` and `new` but apply only at the
/// next start.
fn restart_only_changes(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut fixed = Vec::new();
    macro_rules! fixed {
        ($($field:ident),*) => {
            $(if old.$field != new.$field {
                fixed.push(stringify!($field));
            })*
        };
    }
    fixed!(
        name,
        bind,
        advertise,
        data_dir,
        tls_dir,
        profile,
        engine,
        log_format,
        http,
        http_token_file,
        http_allow_host,
        http_tls,
        http_open_reads,
        voter,
        bootstrap_expect,
        voters,
        owner,
        reap_after,
        max_connections,
        keep_code_resident,
        event_handlers,
        event_handler_timeout,
        event_coalesce,
        coordinates,
        query_handler
    );
    if old.join.iter().any(|j| !new.join.contains(j)) {
        fixed.push("join (removed targets: members already known stay)");
    }
    fixed
}

/// Removes the token this agent recorded for the CLI when it stops.
struct Unregister(Option<PathBuf>);

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The API's operator token and where it came from (for the log; never the
/// token itself): `--http-token-file`, else `http-token` in the data dir
/// (created on first start), else a new one for this run.
fn http_token(
    file: Option<&std::path::Path>,
    data_dir: Option<&std::path::Path>,
) -> Result<(roster::api::Token, String), String> {
    use roster::api::Token;
    if let Some(f) = file {
        let t = Token::load(f).map_err(|e| format!("--http-token-file {e}"))?;
        return Ok((t, f.display().to_string()));
    }
    if let Some(d) = data_dir {
        let p = d.join("http-token");
        let (t, _) = Token::load_or_create(&p).map_err(|e| e.to_string())?;
        return Ok((t, p.display().to_string()));
    }
    let t = Token::generate().map_err(|e| e.to_string())?;
    Ok((t, "new for this run (no --data-dir)".into()))
}

/// SIGINT or SIGTERM. The handlers are registered when this is called, not
/// when the future is first polled.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            match (term, int) {
                (Some(mut t), Some(mut i)) => {
                    tokio::select! {
                        _ = t.recv() => {}
                        _ = i.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
