//! Counters kept by the QUIC runtime (the node core keeps its own).

use std::sync::atomic::{AtomicU64, Ordering};

/// Transport counters, shared by the driver and its connection tasks.
#[derive(Debug, Default)]
pub struct RuntimeMetrics {
    /// Outgoing connections established.
    pub connections_opened: AtomicU64,
    /// Incoming connections accepted (certificate verified).
    pub connections_accepted: AtomicU64,
    /// Outgoing connection attempts that failed.
    pub connect_failures: AtomicU64,
    /// Peers refused during the TLS handshake (certificate not from the
    /// cluster CA, or naming no node).
    pub tls_refusals: AtomicU64,
    /// Connections closed to stay under the connection limit.
    pub connections_evicted: AtomicU64,
    /// Connections open now.
    pub open_connections: AtomicU64,
    /// Datagrams not sent because they exceeded the path's datagram size.
    pub datagrams_too_large: AtomicU64,
    /// Datagrams the connection refused to send.
    pub datagram_send_errors: AtomicU64,
    /// Stream messages that failed to send.
    pub stream_send_errors: AtomicU64,
    /// Transmits dropped while a peer could not be reached.
    pub transmits_dropped: AtomicU64,
}

/// A copy of [`RuntimeMetrics`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RuntimeSnapshot {
    pub connections_opened: u64,
    pub connections_accepted: u64,
    pub connect_failures: u64,
    pub tls_refusals: u64,
    pub connections_evicted: u64,
    pub open_connections: u64,
    pub datagrams_too_large: u64,
    pub datagram_send_errors: u64,
    pub stream_send_errors: u64,
    pub transmits_dropped: u64,
}

impl RuntimeMetrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> RuntimeSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RuntimeSnapshot {
            connections_opened: r(&self.connections_opened),
            connections_accepted: r(&self.connections_accepted),
            connect_failures: r(&self.connect_failures),
            tls_refusals: r(&self.tls_refusals),
            connections_evicted: r(&self.connections_evicted),
            open_connections: r(&self.open_connections),
            datagrams_too_large: r(&self.datagrams_too_large),
            datagram_send_errors: r(&self.datagram_send_errors),
            stream_send_errors: r(&self.stream_send_errors),
            transmits_dropped: r(&self.transmits_dropped),
        }
    }
}
