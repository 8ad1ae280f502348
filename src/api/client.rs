//! A small HTTP/1.1 client for an agent's API, over plain HTTP or HTTPS
//! (trusting the cluster CA, optionally presenting an operator
//! certificate): what the `roster` command's client commands use, and what
//! a program or test that drives an agent can use too.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Longest wait for the agent's whole answer, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// An agent's HTTP API and the credentials to present to it.
#[derive(Debug, Clone)]
pub struct Agent {
    /// `host:port`.
    pub addr: String,
    /// The operator token (`None`: none was found or a certificate
    /// authenticates; without either the agent answers 401).
    pub token: Option<crate::api::Token>,
    /// HTTPS: the TLS configuration (trusting the cluster CA, presenting
    /// an operator certificate if one was given). `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// One request to the agent: (status, JSON body).
pub fn request(
    agent: &Agent,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Value), String> {
    let (status, raw) = request_raw(agent, method, path, body)?;
    let json =
        serde_json::from_slice(&raw).map_err(|e| format!("{} sent non-JSON ({e})", agent.addr))?;
    Ok((status, json))
}

/// One request to the agent: (status, body bytes). Blocks the calling
/// thread (which must not be inside an async runtime) for at most 10 s.
pub fn request_raw(
    agent: &Agent,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    request_raw_within(agent, method, path, body, TIMEOUT)
}

/// [`request_raw`] with its own limit on the wait.
pub fn request_raw_within(
    agent: &Agent,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the client: {e}"))?;
    let addr = agent.addr.as_str();
    let exchange = exchange(agent, method, path, body.to_vec());
    rt.block_on(async { tokio::time::timeout(timeout, exchange).await })
        .map_err(|_| format!("{addr} did not answer within {:?}", timeout))?
}

/// Connects (with TLS if the agent is HTTPS), sends one HTTP/1.1 request
/// and reads the whole answer.
async fn exchange(
    agent: &Agent,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    use http_body_util::BodyExt;
    let addr = agent.addr.as_str();
    let resp = open(agent, method, path, body).await?;
    let status = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading from {addr}: {e}"))?
        .to_bytes();
    Ok((status, body.to_vec()))
}

/// Connects (with TLS if the agent is HTTPS), sends one HTTP/1.1 request
/// and returns the answer with its body still to read (for answers that
/// stream, such as `/v1/events/stream`).
pub async fn open(
    agent: &Agent,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let addr = agent.addr.as_str();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr);
    if let Some(t) = &agent.token {
        req = req.header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", t.expose()),
        );
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("bad request: {e}"))?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot reach the agent at {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match &agent.tls {
        None => send(tcp, req, addr).await,
        Some(cfg) => {
            let name =
                rustls_pki_types::ServerName::try_from(crate::runtime::tls::CLUSTER_SERVER_NAME)
                    .map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    format!("TLS with {addr} failed: {e} (an agent without --http-tls is addressed as http://HOST:PORT)")
                })?;
            send(tls, req, addr).await
        }
    }
}

async fn send<S>(
    io: S,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
    addr: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP with {addr} failed: {e}"))?;
    // The connection task ends with the answer's body (or the runtime).
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| {
        let hint = if e.is_parse() {
            " (if the agent serves HTTPS, address it as https://HOST:PORT)"
        } else {
            ""
        };
        format!("sending to {addr}: {e}{hint}")
    })
}
