//! Who may call the HTTP API, and from where.
//!
//! Every route but `/health` needs a credential: the operator token,
//! `Authorization: Bearer T` (or `X-Roster-Token: T`) from programs, or, in
//! a browser, a cookie set once from the dashboard URL the agent's operator
//! was given (`/?token=T`, as Jupyter protects its local web UI); or, over
//! HTTPS (`--http-tls`), an operator certificate from the cluster CA
//! (`roster cert client`), checked at the handshake. `--http-open-reads`
//! lets reads (GET and HEAD) through without one. The cookie is
//! `HttpOnly` and `SameSite=Strict`; a request that changes anything and
//! relies on it must also carry `X-Roster-Request: 1`, a header that a page
//! of another origin cannot send without the CORS preflight this API never
//! grants. On top of the credential:
//!
//! - **Host**: every request must name this server in `Host:` (an IP
//!   literal, `localhost`, or a name allowed with `--http-allow-host`), so a
//!   DNS-rebinding page that resolves its own name to this address is
//!   refused (403 `host_not_allowed`).
//! - **Origin**: a request that changes anything and carries an `Origin`
//!   other than this server's own is refused (403 `cross_origin`), whatever
//!   its credential, as is one a browser marks `Sec-Fetch-Site: cross-site`.
//!
//! Refusals are JSON like every other error. The token is compared in
//! constant time and never logged.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::ApiError;

/// Shortest token accepted from a file or the environment.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token accepted.
pub const MAX_TOKEN_LEN: usize = 256;
/// The header a browser request that relies on the cookie must carry to
/// change anything.
pub const REQUEST_HEADER: &str = "x-roster-request";

/// The operator's API token. Its `Debug` form hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// Why a token could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not usable as a token.
    #[error(
        "{0}: a token is {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} visible ASCII characters with no spaces"
    )]
    Invalid(String),
    /// Readable by others than its owner.
    #[error("{path}: readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The OS random source failed.
    #[error("cannot draw a random token: {0}")]
    Random(String),
}

impl Token {
    /// A new random token: 32 bytes from the OS, hex-encoded.
    pub fn generate() -> Result<Self, TokenError> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| TokenError::Random(e.to_string()))?;
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Ok(Self(hex.into()))
    }

    /// A token given as text (surrounding whitespace ignored).
    pub fn parse(s: &str, what: &str) -> Result<Self, TokenError> {
        let t = s.trim();
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&t.len())
            || !t.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(TokenError::Invalid(what.to_owned()));
        }
        Ok(Self(t.into()))
    }

    /// Reads a token file, refusing one that group or others may read.
    pub fn load(path: &Path) -> Result<Self, TokenError> {
        let p = path.display().to_string();
        let io = |source| TokenError::Io {
            path: p.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        check_private(path, &meta)?;
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text, &p)
    }

    /// Reads `path`, or writes a new random token there (mode 0600) when it
    /// does not exist. `true` when it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), TokenError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let t = Self::generate()?;
        t.write_private(path, false)?;
        Ok((t, true))
    }

    /// Writes the token to `path`, readable by its owner only (mode 0600).
    /// `replace`: overwrite an existing file (its mode is set to 0600 first).
    pub fn write_private(&self, path: &Path, replace: bool) -> Result<(), TokenError> {
        let p = path.display().to_string();
        let io = |source| TokenError::Io {
            path: p.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut o = std::fs::OpenOptions::new();
        o.write(true);
        if replace {
            o.create(true).truncate(true);
        } else {
            o.create_new(true);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        writeln!(f, "{}", self.0).map_err(io)
    }

    /// The secret itself, for a client to send or the demo to print once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this token, in time independent of where they
    /// differ.
    pub fn matches(&self, given: &[u8]) -> bool {
        let mine = self.0.as_bytes();
        if given.len() != mine.len() {
            return false;
        }
        mine.iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Refuses a secret file that its group or others may read or write.
pub fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), TokenError> {
    match crate::runtime::tls::open_mode(meta) {
        Some(mode) => Err(TokenError::TooOpen {
            path: path.display().to_string(),
            mode,
        }),
        None => Ok(()),
    }
}

/// What the API accepts: the operator token and the host names it answers
/// to besides IP literals and `localhost`.
#[derive(Debug, Clone)]
pub struct Access {
    token: Token,
    allowed_hosts: Vec<String>,
    https: bool,
    open_reads: bool,
}

impl Access {
    /// Requests must carry `token`.
    pub fn new(token: Token) -> Self {
        Self {
            token,
            allowed_hosts: Vec::new(),
            https: false,
            open_reads: false,
        }
    }

    /// Serve over HTTPS with the node's certificate; an operator
    /// certificate from the cluster CA then authenticates too.
    pub fn https(mut self, on: bool) -> Self {
        self.https = on;
        self
    }

    /// Whether the API is served over HTTPS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Answer reads (GET and HEAD) without a credential: for a Prometheus
    /// or dashboard on a trusted network. Everything that changes the
    /// cluster still needs one.
    pub fn open_reads(mut self, on: bool) -> Self {
        self.open_reads = on;
        self
    }

    /// Also answer requests whose `Host:` names `name` (a DNS name the
    /// operator reaches this agent by).
    pub fn allow_host(mut self, name: &str) -> Self {
        self.allowed_hosts.push(name.trim().to_ascii_lowercase());
        self
    }

    /// The token.
    pub fn token(&self) -> &Token {
        &self.token
    }
}

/// The cookie that holds the token for the dashboard: one per port, since
/// browsers share cookies between the ports of a host.
fn cookie_name(port: u16) -> String {
    format!("roster_token_{port}")
}

/// The host part of a `Host:` value (brackets of an IPv6 literal removed)
/// and its port.
fn split_host(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        let (h, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (h, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (host, None),
    }
}

fn host_allowed(access: &Access, host: &str) -> bool {
    let (name, _) = split_host(host);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    // Over HTTPS the name every node certificate carries is allowed too, so
    // that a client checking the certificate by that name can say it.
    name == "localhost"
        || access.allowed_hosts.contains(&name)
        || (access.https && name == crate::runtime::tls::CLUSTER_SERVER_NAME)
}

fn changes_something(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a request asks for the agent's log lines (`logs=` on the event
/// stream): those need a credential even with `--http-open-reads`, as they
/// may say more than a scraper should see, and raise the log level.
fn reads_logs(uri: &axum::http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "logs" || kv.starts_with("logs="))
    })
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The token in a `Cookie:` header, if any.
fn cookie_token<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The `token` parameter of a query string.
fn query_token(q: &str) -> Option<&str> {
    q.split('&').find_map(|kv| kv.strip_prefix("token="))
}

fn refuse(status: StatusCode, error: &'static str, detail: &str) -> Response {
    ApiError::new(status, error, detail).into_response()
}

const LOGIN_PAGE: &str = "<!doctype html><meta charset=utf-8><title>roster</title>\
<p>This roster agent's dashboard needs its operator token. Open the dashboard \
URL that <code>roster demo</code> or <code>roster cluster start</code> printed \
(it ends in <code>/?token=…</code>), or the agent's address followed by \
<code>/?token=</code> and the contents of its token file.</p>";

/// The middleware: checks `Host`, `Origin` and the credential, and turns
/// a dashboard URL carrying the token into a cookie.
pub async fn guard(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let host = match host_and_origin(&access, &req) {
        Ok(host) => host,
        Err(refused) => return *refused,
    };
    let h = req.headers();
    let mutating = changes_something(req.method());
    let operator = req
        .extensions()
        .get::<super::Peer>()
        .and_then(|p| p.operator.clone());
    if let Some(name) = operator {
        tracing::trace!(operator = %name, "request authenticated by certificate");
        return next.run(req).await;
    }
    if access.open_reads && !mutating && !reads_logs(req.uri()) {
        return next.run(req).await;
    }
    let bearer = header_str(h, header::AUTHORIZATION)
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| header_str(h, "x-roster-token"));
    if let Some(t) = bearer {
        if access.token.matches(t.trim().as_bytes()) {
            return next.run(req).await;
        }
        return unauthorized("the token does not match this agent's");
    }
    let port = split_host(&host)
        .1
        .unwrap_or(if access.https { 443 } else { 80 });
    let cookie = cookie_name(port);
    if let Some(t) = cookie_token(h, &cookie)
        && access.token.matches(t.as_bytes())
    {
        if mutating && header_str(h, REQUEST_HEADER) != Some("1") {
            return refuse(
                StatusCode::FORBIDDEN,
                "missing_request_header",
                "a browser request that changes anything must carry X-Roster-Request: 1",
            );
        }
        return next.run(req).await;
    }
    // The dashboard URL: trade the token in the URL for a cookie and send
    // the browser on without it.
    if req.method() == Method::GET
        && req.uri().path() == "/"
        && let Some(t) = req.uri().query().and_then(query_token)
    {
        if access.token.matches(t.as_bytes()) {
            return set_cookie(&access, &cookie);
        }
        return unauthorized("the token in the URL does not match this agent's");
    }
    if req.method() == Method::GET && req.uri().path() == "/" {
        return (StatusCode::UNAUTHORIZED, Html(LOGIN_PAGE)).into_response();
    }
    unauthorized(
        "send the operator token (Authorization: Bearer TOKEN); the roster CLI finds it by itself",
    )
}

/// The request's Host, if this agent answers to it and, for a request
/// that changes something, the request comes from this agent's own origin
/// and not from another site; else the refusal to send.
fn host_and_origin(access: &Access, req: &Request) -> Result<String, Box<Response>> {
    let h = req.headers();
    let Some(host) = header_str(h, header::HOST).map(str::to_owned) else {
        return Err(Box::new(refuse(
            StatusCode::BAD_REQUEST,
            "host_missing",
            "the request names no Host",
        )));
    };
    if !host_allowed(access, &host) {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "this agent does not answer to that Host name (an IP address, localhost, or a name given with --http-allow-host)",
        )));
    }
    if changes_something(req.method()) {
        let own = [format!("http://{host}"), format!("https://{host}")];
        if let Some(origin) = header_str(h, header::ORIGIN)
            && !own.iter().any(|o| o.eq_ignore_ascii_case(origin))
        {
            return Err(Box::new(refuse(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "a request from another origin may not change anything",
            )));
        }
        if header_str(h, "sec-fetch-site") == Some("cross-site") {
            return Err(Box::new(refuse(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "a request from another site may not change anything",
            )));
        }
    }
    Ok(host)
}

/// The dashboard's answer to a matching token in its URL: the token as an
/// HttpOnly, SameSite=Strict cookie named `cookie`, and a redirect to the
/// URL without it.
fn set_cookie(access: &Access, cookie: &str) -> Response {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, "/")
        .header(
            header::SET_COOKIE,
            format!(
                "{cookie}={}; HttpOnly; SameSite=Strict; Path=/{}",
                access.token.expose(),
                if access.https { "; Secure" } else { "" }
            ),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn unauthorized(detail: &str) -> Response {
    let mut r = refuse(StatusCode::UNAUTHORIZED, "unauthorized", detail);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"roster\""),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let a = Access::new(Token::parse("0123456789abcdef", "t").unwrap())
            .allow_host("Node-1.Example");
        for ok in [
            "127.0.0.1:8946",
            "[::1]:80",
            "localhost:1",
            "LOCALHOST",
            "10.1.2.3",
            "node-1.example:8946",
        ] {
            assert!(host_allowed(&a, ok), "{ok}");
        }
        for bad in [
            "evil.example:8946",
            "127.0.0.1.evil:80",
            "localhost.evil",
            "",
        ] {
            assert!(!host_allowed(&a, bad), "{bad}");
        }
        assert_eq!(split_host("[::1]:8946"), ("::1", Some(8946)));
        assert_eq!(split_host("a:1"), ("a", Some(1)));
    }

    #[test]
    fn tokens() {
        let t = Token::generate().unwrap();
        assert_eq!(t.expose().len(), 64);
        assert!(t.matches(t.expose().as_bytes()));
        assert!(!t.matches(b"nope"));
        assert_ne!(Token::generate().unwrap(), t);
        assert!(Token::parse("short", "x").is_err());
        assert!(Token::parse("has a space in it ok", "x").is_err());
        assert!(!format!("{t:?}").contains(t.expose()));
    }

    #[cfg(unix)]
    #[test]
    fn token_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("roster-token-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.join("t");
        let (t, created) = Token::load_or_create(&p).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = Token::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(again, t);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Token::load(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
