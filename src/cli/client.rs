//! Client commands that talk to an agent's HTTP API (`status`, `join`,
//! `tags`, `state`, `meta`, `partitions`, `chaos`, `leave`, `force-leave`,
//! `voters`, `revoke`), and the connection options they share. `members`
//! and `monitor` have files of their own.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

pub use roster::api::client::{Agent, request};

/// Where an agent's HTTP API listens unless its `--http` says otherwise,
/// and where client commands look unless theirs does.
pub const DEFAULT_HTTP: &str = "127.0.0.1:8946";

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The agent's API: `HOST:PORT` or `http://HOST:PORT` for plain HTTP,
    /// `https://HOST:PORT` for an agent started with `--http-tls`.
    /// (Default `127.0.0.1:8946`.)
    #[arg(long, env = "ROSTER_HTTP_ADDR", global = true)]
    pub http: Option<String>,
    /// Node I of the `roster cluster` in `--cluster-dir`: its API address
    /// and the cluster's token, found by themselves (`--http` is then not
    /// used).
    #[arg(long, env = "ROSTER_NODE", global = true)]
    pub node: Option<usize>,
    /// The `roster cluster` directory `--node` refers to.
    #[arg(long, env = "ROSTER_CLUSTER_DIR", default_value = super::cluster::DEFAULT_DIR, global = true)]
    pub cluster_dir: PathBuf,
    /// A file holding the agent's operator token (default: what the agent
    /// recorded for its address, see `roster agent --http-token-file`).
    #[arg(long, env = "ROSTER_HTTP_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Over HTTPS: a directory from `roster cert client` (its `ca.crt`,
    /// `client.crt` and `client.key`); the certificate authenticates
    /// instead of a token.
    #[arg(long, env = "ROSTER_CERT_DIR", global = true)]
    pub cert_dir: Option<PathBuf>,
    /// Over HTTPS without `--cert-dir`: the cluster CA's certificate
    /// (`ca.crt`) to check the agent against.
    #[arg(long, env = "ROSTER_HTTP_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Print the agent's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `--http` split into whether it is HTTPS and its `host:port`.
fn endpoint(http: &str) -> Result<(bool, String), String> {
    let (https, rest) = if let Some(r) = http.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = http.strip_prefix("http://") {
        (false, r)
    } else if http.contains("://") {
        return Err(format!(
            "--http {http:?}: the scheme must be http:// or https://"
        ));
    } else {
        (false, http)
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') {
        return Err(format!(
            "--http {http:?}: expected HOST:PORT, http://HOST:PORT or https://HOST:PORT"
        ));
    }
    Ok((https, hostport.to_owned()))
}

impl ClientArgs {
    /// The agent to talk to, with the credentials found for it.
    pub fn agent(&self) -> Result<Agent, String> {
        if let Some(i) = self.node {
            return self.cluster_node(i);
        }
        let http = self.http.as_deref().unwrap_or(DEFAULT_HTTP);
        let (https, addr) = endpoint(http)?;
        let tls = if https {
            let operator = self
                .cert_dir
                .as_deref()
                .map(roster::runtime::tls::NodeCert::load_client)
                .transpose()
                .map_err(|e| format!("--cert-dir {e}"))?;
            let ca_pem = match (&self.ca, &self.cert_dir) {
                (Some(f), _) => {
                    std::fs::read_to_string(f).map_err(|e| format!("--ca {}: {e}", f.display()))?
                }
                (None, Some(d)) => std::fs::read_to_string(d.join("ca.crt"))
                    .map_err(|e| format!("--cert-dir {}: {e}", d.join("ca.crt").display()))?,
                (None, None) => {
                    return Err(format!(
                        "{http}: HTTPS needs the cluster CA to check the agent: --cert-dir DIR (from roster cert client) or --ca CA_DIR/ca.crt"
                    ));
                }
            };
            let cfg = roster::runtime::tls::https_client_config(&ca_pem, operator.as_ref())
                .map_err(|e| e.to_string())?;
            Some(Arc::new(cfg))
        } else {
            if self.cert_dir.is_some() {
                return Err(format!(
                    "--cert-dir needs an HTTPS agent address (https://{addr})"
                ));
            }
            None
        };
        // With a certificate, a token is needed only if one is named.
        let token = if tls.is_some() && self.cert_dir.is_some() && self.token_file.is_none() {
            None
        } else {
            roster::api::credentials::find(&addr, self.token_file.as_deref())?
        };
        Ok(Agent { addr, token, tls })
    }

    /// Node `i` of the `roster cluster` in `cluster_dir`.
    fn cluster_node(&self, i: usize) -> Result<Agent, String> {
        let dir = &self.cluster_dir;
        let file = super::cluster::load(dir).map_err(|e| format!("--node {i}: {e}"))?;
        let n = file.node.get(i).ok_or_else(|| {
            format!(
                "--node {i}: the cluster in {} has nodes 0 to {}",
                dir.display(),
                file.nodes.saturating_sub(1)
            )
        })?;
        let token = match &self.token_file {
            Some(_) => {
                roster::api::credentials::find(&n.http.to_string(), self.token_file.as_deref())?
            }
            None => Some(super::cluster::token(dir)?),
        };
        Ok(Agent {
            addr: n.http.to_string(),
            token,
            tls: None,
        })
    }
}

/// `roster tags` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TagsCmd {
    /// Set tags (`KEY=VALUE`, repeatable); every member sees them within a
    /// few gossip rounds.
    Set {
        /// `KEY=VALUE` pairs.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Remove tags.
    Unset {
        /// Tag names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show the agent's own tags.
    Show,
}

/// `roster voters` subcommands.
#[derive(Debug, Subcommand)]
pub enum VotersCmd {
    /// Show the voters, the leader, the term and the commit index.
    Show,
    /// Remove a dead voter by hand, like `consul operator raft
    /// remove-peer`: once gossip holds it Down, the leader replaces it or,
    /// with no member to take its place, removes it (the voters shrink
    /// below their target). A live voter is refused.
    Remove {
        /// The voter's name.
        name: String,
        /// How long to wait for the leader to make the change (seconds).
        #[arg(long, default_value_t = 15)]
        wait: u64,
    },
}

/// `roster state` subcommands.
#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Read a key (of this agent's node, or `--node`'s).
    Get {
        /// The key.
        key: String,
        /// Another member's state.
        #[arg(long)]
        node: Option<String>,
    },
    /// Write a key of the agent's node.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete a key of the agent's node.
    Delete {
        /// The key.
        key: String,
    },
}

/// `roster meta` subcommands (the cluster metadata, replicated by Raft).
#[derive(Debug, Subcommand)]
pub enum MetaCmd {
    /// Read a key (linearizable unless `--stale`).
    Get {
        /// The key.
        key: String,
        /// Read this agent's local copy (may lag the leader).
        #[arg(long)]
        stale: bool,
    },
    /// Write a key; returns once committed.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Compare-and-set: write `value` only if the key holds `--expect`.
    Cas {
        /// The key.
        key: String,
        /// The new value (omit with `--delete`).
        value: Option<String>,
        /// The value the key must hold (omit: the key must be absent).
        #[arg(long)]
        expect: Option<String>,
        /// Delete the key instead of writing a value.
        #[arg(long, conflicts_with = "value")]
        delete: bool,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
    },
    /// List keys (with a prefix).
    List {
        /// Only keys starting with this.
        #[arg(default_value = "")]
        prefix: String,
        /// Read this agent's local copy.
        #[arg(long)]
        stale: bool,
    },
}

/// `roster chaos` subcommands (fault injection on one agent).
#[derive(Debug, Clone, Subcommand)]
pub enum ChaosCmd {
    /// Set fault rules (replacing any in force).
    Set {
        /// Drop probability for every message, both ways (0..1).
        #[arg(long, default_value_t = 0.0)]
        drop: f64,
        /// Delay added to outgoing messages, milliseconds.
        #[arg(long, default_value_t = 0)]
        delay: u64,
        /// Extra random delay, up to this many milliseconds.
        #[arg(long, default_value_t = 0)]
        jitter: u64,
        /// Cut a peer off both ways (repeatable).
        #[arg(long)]
        block: Vec<String>,
        /// Drop what a peer sends here (repeatable).
        #[arg(long)]
        block_in: Vec<String>,
        /// Drop what this node sends to a peer (repeatable).
        #[arg(long)]
        block_out: Vec<String>,
        /// Lift the rules after this many seconds.
        #[arg(long = "for")]
        for_secs: Option<f64>,
    },
    /// Lift every rule.
    Heal,
    /// Show the rules in force.
    Show,
}

pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Prints a value from a JSON answer: text on a line of its own, other bytes
/// exactly as stored (the agent sends them base64-encoded).
fn print_value(v: &Value) -> Result<(), String> {
    let text = v["value"].as_str().unwrap_or("");
    if v["encoding"] == "base64" {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| format!("agent sent bad base64: {e}"))?;
        std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| e.to_string())
    } else {
        println!("{text}");
        Ok(())
    }
}

/// A value for a table cell: the text, or `base64:…` for other bytes.
fn shown(v: &Value) -> String {
    let text = v["value"].as_str().unwrap_or("");
    if v["encoding"] == "base64" {
        format!("base64:{text}")
    } else {
        text.to_owned()
    }
}

pub(super) fn api_error(status: u16, v: &Value) -> String {
    let hint = if status == 401 {
        "; give the agent's token with --token-file FILE or ROSTER_HTTP_TOKEN (an agent records it in its data dir as http-token)"
    } else {
        ""
    };
    format!(
        "agent answered {status}: {} ({}){hint}",
        v["error"].as_str().unwrap_or("error"),
        v["detail"].as_str().unwrap_or("")
    )
}

pub(super) fn run_result(f: impl FnOnce() -> Result<(), String>) -> ExitCode {
    match f() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Renders rows as columns separated by two spaces, each as wide as its
/// widest cell (like `serf members`).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// `roster join ADDR...`.
pub fn join(c: &ClientArgs, addrs: &[String]) -> ExitCode {
    run_result(|| {
        let body = serde_json::json!({ "addrs": addrs }).to_string();
        let (status, v) = request(&c.agent()?, "POST", "/v1/join", body.as_bytes())?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
            return Ok(());
        }
        let joined: Vec<&str> = v["addrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!("joining through {}", joined.join(", "));
        for u in v["unresolved"].as_array().into_iter().flatten() {
            eprintln!("warning: {}", u.as_str().unwrap_or_default());
        }
        Ok(())
    })
}

/// `roster tags set|unset|show`.
pub fn tags(c: &ClientArgs, cmd: TagsCmd) -> ExitCode {
    run_result(|| {
        let agent = c.agent()?;
        match cmd {
            TagsCmd::Set { tags } => {
                let mut pairs = Vec::new();
                for t in &tags {
                    let (k, v) = t
                        .split_once('=')
                        .ok_or_else(|| format!("{t:?}: expected KEY=VALUE"))?;
                    pairs.push((k, v));
                }
                for (k, v) in pairs {
                    let path = format!("/v1/tags/{}", percent_encode(k));
                    let (status, r) = request(&agent, "PUT", &path, v.as_bytes())?;
                    if status != 200 {
                        return Err(api_error(status, &r));
                    }
                    println!("{k}={v} (hlc {})", r["hlc"].as_str().unwrap_or(""));
                }
            }
            TagsCmd::Unset { names } => {
                for k in names {
                    let path = format!("/v1/tags/{}", percent_encode(&k));
                    let (status, r) = request(&agent, "DELETE", &path, b"")?;
                    if status != 200 {
                        return Err(api_error(status, &r));
                    }
                    println!("removed {k}");
                }
            }
            TagsCmd::Show => {
                let (status, r) = request(&agent, "GET", "/v1/tags", b"")?;
                if status != 200 {
                    return Err(api_error(status, &r));
                }
                if c.json {
                    println!("{r}");
                    return Ok(());
                }
                for (k, v) in r["tags"].as_object().into_iter().flatten() {
                    println!("{k}={}", v.as_str().unwrap_or_default());
                }
            }
        }
        Ok(())
    })
}

/// `roster status`.
pub fn status(c: &ClientArgs) -> ExitCode {
    run_result(|| {
        let (status, v) = request(&c.agent()?, "GET", "/v1/status", b"")?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
            return Ok(());
        }
        let n = &v["node"];
        let m = &v["members"];
        println!(
            "node:        {} ({})",
            n["id"].as_str().unwrap_or(""),
            n["addr"].as_str().unwrap_or("")
        );
        println!(
            "generation:  {}   incarnation: {}",
            n["generation"], n["incarnation"]
        );
        println!(
            "joined:      {}   health score: {}",
            n["joined"], n["health_score"]
        );
        println!(
            "members:     {} alive, {} suspect, {} down, {} left",
            m["alive"], m["suspect"], m["down"], m["left"]
        );
        println!("hlc:         {}", v["hlc"].as_str().unwrap_or(""));
        let r = &v["raft"];
        println!(
            "metadata:    {} (term {}, leader {}, commit index {}{})",
            r["role"].as_str().unwrap_or(""),
            r["term"],
            r["leader"].as_str().unwrap_or("none"),
            r["commit_index"],
            if r["quorum"].as_bool() == Some(true) {
                ""
            } else {
                ", NO QUORUM"
            }
        );
        Ok(())
    })
}

/// `roster meta ...`.
pub fn meta(c: &ClientArgs, cmd: MetaCmd) -> ExitCode {
    run_result(|| {
        let (status, v) = meta_request(c, &cmd)?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
            return Ok(());
        }
        print_meta(&cmd, &v)
    })
}

/// Sends a `roster meta` command's request: the agent's status and answer.
fn meta_request(c: &ClientArgs, cmd: &MetaCmd) -> Result<(u16, Value), String> {
    let stale_q = |stale: bool| if stale { "?stale=true" } else { "" };
    let (status, v) = match &cmd {
        MetaCmd::Get { key, stale } => request(
            &c.agent()?,
            "GET",
            &format!("/v1/meta/{}{}", percent_encode(key), stale_q(*stale)),
            b"",
        )?,
        MetaCmd::Put { key, value } => request(
            &c.agent()?,
            "PUT",
            &format!("/v1/meta/{}", percent_encode(key)),
            value.as_bytes(),
        )?,
        MetaCmd::Cas {
            key,
            value,
            expect,
            delete,
        } => {
            if value.is_none() && !delete {
                return Err("give a value, or --delete".into());
            }
            let body = serde_json::json!({"expect": expect, "value": value});
            request(
                &c.agent()?,
                "POST",
                &format!("/v1/meta/{}", percent_encode(key)),
                body.to_string().as_bytes(),
            )?
        }
        MetaCmd::Delete { key } => request(
            &c.agent()?,
            "DELETE",
            &format!("/v1/meta/{}", percent_encode(key)),
            b"",
        )?,
        MetaCmd::List { prefix, stale } => {
            let q = if prefix.is_empty() {
                stale_q(*stale).to_owned()
            } else {
                let stale = if *stale { "&stale=true" } else { "" };
                format!("?prefix={}{stale}", percent_encode(prefix))
            };
            request(&c.agent()?, "GET", &format!("/v1/meta{q}"), b"")?
        }
    };
    Ok((status, v))
}

/// Prints a `roster meta` command's successful answer `v` for people.
fn print_meta(cmd: &MetaCmd, v: &Value) -> Result<(), String> {
    match cmd {
        MetaCmd::Get { .. } => print_value(v)?,
        MetaCmd::Put { .. } => println!("ok (index {})", v["index"]),
        MetaCmd::Cas { .. } => {
            if v["swapped"].as_bool() == Some(true) {
                println!("swapped");
            } else {
                return Err(format!(
                    "not swapped: the key holds {}",
                    v["current"]
                        .as_str()
                        .map_or("nothing".to_owned(), |s| format!("{s:?}"))
                ));
            }
        }
        MetaCmd::Delete { .. } => println!("deleted"),
        MetaCmd::List { .. } => {
            let rows: Vec<Vec<String>> = v
                .as_array()
                .ok_or("agent sent a non-list")?
                .iter()
                .map(|e| vec![e["key"].as_str().unwrap_or("").to_owned(), shown(e)])
                .collect();
            print!("{}", table(&["Key", "Value"], &rows));
        }
    }
    Ok(())
}

/// `roster partitions [--key K]`.
pub fn partitions(c: &ClientArgs, key: Option<&str>) -> ExitCode {
    run_result(|| {
        let path = match key {
            Some(k) => format!("/v1/partitions/key/{}", percent_encode(k)),
            None => "/v1/partitions".to_owned(),
        };
        let (status, v) = request(&c.agent()?, "GET", &path, b"")?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
            return Ok(());
        }
        if key.is_some() {
            let replicas: Vec<&str> = v["replicas"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!("partition {}", v["partition"]);
            println!("primary   {}", v["primary"].as_str().unwrap_or("none"));
            println!("replicas  {}", replicas.join(", "));
            return Ok(());
        }
        let rows: Vec<Vec<String>> = v["nodes"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(id, c)| {
                        vec![
                            id.clone(),
                            c["primaries"].to_string(),
                            c["replicas"].to_string(),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        print!("{}", table(&["Name", "Primaries", "Replicas"], &rows));
        let under = v["under_replicated"].as_array().map_or(0, Vec::len);
        println!(
            "{} partitions, replication factor {}{}",
            v["partition_count"],
            v["replication_factor"],
            if under > 0 {
                format!(", {under} under-replicated (fewer eligible nodes than slots)")
            } else {
                String::new()
            }
        );
        Ok(())
    })
}

/// Sends one `roster chaos` command to the agent at `addr`; its JSON answer.
pub(crate) fn chaos_call(addr: &Agent, cmd: &ChaosCmd) -> Result<Value, String> {
    let (status, v) = match cmd {
        ChaosCmd::Set {
            drop,
            delay,
            jitter,
            block,
            block_in,
            block_out,
            for_secs,
        } => {
            let body = serde_json::json!({
                "drop": drop, "delay_ms": delay, "jitter_ms": jitter,
                "block": block, "block_in": block_in, "block_out": block_out,
                "for_secs": for_secs,
            });
            request(addr, "POST", "/v1/chaos", body.to_string().as_bytes())?
        }
        ChaosCmd::Heal => request(addr, "DELETE", "/v1/chaos", b"")?,
        ChaosCmd::Show => request(addr, "GET", "/v1/chaos", b"")?,
    };
    if !(200..300).contains(&status) {
        return Err(api_error(status, &v));
    }
    Ok(v)
}

/// One line saying what `chaos_call` did.
pub(crate) fn chaos_summary(cmd: &ChaosCmd, v: &Value) -> String {
    match cmd {
        ChaosCmd::Set { .. } => format!("fault rules set: {}", v["rules"]),
        ChaosCmd::Heal => "healed".into(),
        ChaosCmd::Show if v["rules"].is_null() => {
            format!("no fault rules ({} messages dropped so far)", v["dropped"])
        }
        ChaosCmd::Show => format!("{} ({} messages dropped so far)", v["rules"], v["dropped"]),
    }
}

/// `roster chaos ...`.
pub fn chaos(c: &ClientArgs, cmd: ChaosCmd) -> ExitCode {
    run_result(|| {
        let v = chaos_call(&c.agent()?, &cmd)?;
        if c.json {
            println!("{v}");
        } else {
            println!("{}", chaos_summary(&cmd, &v));
        }
        Ok(())
    })
}

/// `roster leave`.
pub fn leave(c: &ClientArgs) -> ExitCode {
    run_result(|| {
        let (status, v) = request(&c.agent()?, "POST", "/v1/leave", b"")?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
        } else {
            println!("leaving: the agent leaves the cluster and exits");
        }
        Ok(())
    })
}

/// `roster force-leave NAME`.
pub fn force_leave(c: &ClientArgs, name: &str) -> ExitCode {
    run_result(|| {
        let path = format!("/v1/force-leave/{}", percent_encode(name));
        if let Some(v) = call(c, "POST", &path, b"")? {
            println!(
                "{} forced out: every member lists it left and stops trying it",
                v["left"].as_str().unwrap_or(name)
            );
        }
        Ok(())
    })
}

/// Sends one request to the agent: its answer (`200`), or the agent's
/// error. With `--json` the answer is printed as it came and `None`
/// returned, so the caller prints nothing more.
pub(super) fn call(
    c: &ClientArgs,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Option<Value>, String> {
    let (status, v) = request(&c.agent()?, method, path, body)?;
    if status != 200 {
        return Err(api_error(status, &v));
    }
    if c.json {
        println!("{v}");
        return Ok(None);
    }
    Ok(Some(v))
}

/// The voters an agent reports, by name.
fn voter_list(agent: &Agent) -> Result<Vec<String>, String> {
    let (status, v) = request(agent, "GET", "/v1/voters", b"")?;
    if status != 200 {
        return Err(api_error(status, &v));
    }
    Ok(v["voters"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// `roster voters remove NAME`: asks, then waits until the voters no
/// longer include NAME (or says why not yet).
#[allow(clippy::disallowed_methods)] // a client waiting on a real agent reads the clock
pub fn voter_remove(c: &ClientArgs, name: &str, wait: u64) -> ExitCode {
    run_result(|| {
        let agent = c.agent()?;
        let path = format!("/v1/voters/{}", percent_encode(name));
        let (status, v) = request(&agent, "DELETE", &path, b"")?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(wait);
        loop {
            let voters = voter_list(&agent)?;
            if !voters.iter().any(|n| n == name) {
                if c.json {
                    println!(
                        "{}",
                        serde_json::json!({ "removed": name, "voters": voters })
                    );
                } else {
                    println!("{name} removed; voters now: {}", voters.join(", "));
                }
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "the removal of {name} is recorded (log index {}) but the leader has not made it within {wait} s: it waits until gossip holds {name} down, and needs a quorum of the voters",
                    v["index"]
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// `roster cert revoke NAME` / `roster cert reinstate NAME`.
pub fn revoke(c: &ClientArgs, name: &str, revoke: bool) -> ExitCode {
    run_result(|| {
        let path = format!("/v1/revoked/{}", percent_encode(name));
        let method = if revoke { "PUT" } else { "DELETE" };
        let (status, v) = request(&c.agent()?, method, &path, b"")?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
        } else if revoke {
            println!(
                "revoked {name} (index {}): every node refuses its certificate once it has applied the change",
                v["index"]
            );
        } else {
            println!("reinstated {name} (index {})", v["index"]);
        }
        Ok(())
    })
}

/// `roster cert revoked`.
pub fn revoked(c: &ClientArgs) -> ExitCode {
    run_result(|| {
        let (status, v) = request(&c.agent()?, "GET", "/v1/revoked", b"")?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
            return Ok(());
        }
        for n in v["revoked"].as_array().into_iter().flatten() {
            println!("{}", n.as_str().unwrap_or_default());
        }
        Ok(())
    })
}

/// `roster voters`.
pub fn voters(c: &ClientArgs) -> ExitCode {
    run_result(|| {
        let (status, v) = request(&c.agent()?, "GET", "/v1/voters", b"")?;
        if status != 200 {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
            return Ok(());
        }
        let leader = v["leader"].as_str().unwrap_or("");
        let rows: Vec<Vec<String>> = v["voters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|id| {
                        let role = if id == leader { "leader" } else { "voter" };
                        vec![id.to_owned(), role.to_owned()]
                    })
                    .collect()
            })
            .unwrap_or_default();
        print!("{}", table(&["Name", "Role"], &rows));
        println!(
            "term {}, commit index {}, leader {}{}",
            v["term"],
            v["commit_index"],
            if leader.is_empty() { "none" } else { leader },
            if v["quorum"].as_bool() == Some(true) {
                ""
            } else {
                " (no quorum: writes and linearizable reads fail)"
            }
        );
        Ok(())
    })
}

/// `roster state ...`.
pub fn state(c: &ClientArgs, cmd: StateCmd) -> ExitCode {
    run_result(|| {
        let (status, v) = match &cmd {
            StateCmd::Get { key, node } => {
                let q = node
                    .as_ref()
                    .map(|n| format!("?node={}", percent_encode(n)))
                    .unwrap_or_default();
                request(
                    &c.agent()?,
                    "GET",
                    &format!("/v1/state/{}{q}", percent_encode(key)),
                    b"",
                )?
            }
            StateCmd::Set { key, value } => request(
                &c.agent()?,
                "PUT",
                &format!("/v1/state/{}", percent_encode(key)),
                value.as_bytes(),
            )?,
            StateCmd::Delete { key } => request(
                &c.agent()?,
                "DELETE",
                &format!("/v1/state/{}", percent_encode(key)),
                b"",
            )?,
        };
        if !(200..300).contains(&status) {
            return Err(api_error(status, &v));
        }
        if c.json {
            println!("{v}");
        } else if let StateCmd::Get { .. } = cmd {
            print_value(&v)?;
        } else {
            println!("ok (hlc {})", v["hlc"].as_str().unwrap_or(""));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["Name", "State"],
            &[
                vec!["a".into(), "alive".into()],
                vec!["long-name".into(), "down".into()],
            ],
        );
        assert_eq!(t, "Name       State\na          alive\nlong-name  down\n");
    }

    #[test]
    fn keys_are_percent_encoded() {
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(percent_encode("tag:zone"), "tag:zone");
    }
}
