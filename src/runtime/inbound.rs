//! Connection tasks: accepting peers and reading what each connection
//! delivers into the driver's input channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::driver::Input;
use super::metrics::RuntimeMetrics;
use super::tls::peer_node_id;
use crate::node::NodeId;
use crate::node::wire::MAX_STREAM_MESSAGE_BYTES;

/// Accepts connections from peers: a failed TLS handshake or a certificate
/// that names no node is refused (counted, and logged at a limited rate);
/// each accepted connection is announced to the driver and read by its own
/// task.
pub(super) async fn accept_loop(
    endpoint: quinn::Endpoint,
    tx: mpsc::Sender<Input>,
    metrics: Arc<RuntimeMetrics>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let tx = tx.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    if let Some(n) = metrics.refused(refusal_clock_ms()) {
                        tracing::warn!(%addr, error = %e, refused_since_last_line = n, "refused peer: TLS handshake failed");
                    }
                    return;
                }
            };
            let peer = match peer_node_id(&conn) {
                Ok(p) => p,
                Err(e) => {
                    if let Some(n) = metrics.refused(refusal_clock_ms()) {
                        tracing::warn!(%addr, error = %e, refused_since_last_line = n, "refused peer: certificate names no node");
                    }
                    conn.close(1u32.into(), b"bad certificate");
                    return;
                }
            };
            metrics.connections_accepted.fetch_add(1, Ordering::Relaxed);
            let _ = tx
                .send(Input::Connected {
                    addr,
                    conn: conn.clone(),
                })
                .await;
            read_loop(conn, addr, peer, tx).await;
        });
    }
}

/// Hands everything a connection delivers to the driver: datagrams,
/// unidirectional stream messages, and requests on bidirectional streams
/// (with the stream to answer on), until the connection closes.
pub(super) async fn read_loop(
    conn: quinn::Connection,
    addr: SocketAddr,
    peer: NodeId,
    tx: mpsc::Sender<Input>,
) {
    loop {
        tokio::select! {
            d = conn.read_datagram() => match d {
                Ok(bytes) => {
                    let peer = peer.clone();
                    if tx.send(Input::Datagram { from: addr, peer, bytes }).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            },
            s = conn.accept_bi() => match s {
                Ok((send, mut recv)) => {
                    let tx = tx.clone();
                    let peer = peer.clone();
                    tokio::spawn(async move {
                        if let Ok(bytes) = recv.read_to_end(MAX_STREAM_MESSAGE_BYTES).await {
                            let _ = tx
                                .send(Input::Request { from: addr, peer, bytes, reply: send })
                                .await;
                        }
                    });
                }
                Err(_) => break,
            },
            s = conn.accept_uni() => match s {
                Ok(mut recv) => {
                    let tx = tx.clone();
                    let peer = peer.clone();
                    tokio::spawn(async move {
                        if let Ok(bytes) = recv.read_to_end(MAX_STREAM_MESSAGE_BYTES).await {
                            let _ = tx.send(Input::Message { from: addr, peer, bytes }).await;
                        }
                    });
                }
                Err(_) => break,
            },
        }
    }
    let _ = tx
        .send(Input::Closed {
            addr,
            id: conn.stable_id(),
        })
        .await;
}

/// Milliseconds on a clock private to the refusal log's rate limit.
#[allow(clippy::disallowed_methods)] // the runtime reads the real clock
pub(super) fn refusal_clock_ms() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}
