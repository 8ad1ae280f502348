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
    /// The node certificate's last valid second (Unix time; 0: unknown).
    pub cert_not_after_unix: AtomicU64,
    /// Certificate reloads that took effect.
    pub tls_reloads: AtomicU64,
    /// Inputs dropped because their peer's certificate is revoked (arriving
    /// on a connection opened before the revocation).
    pub revoked_dropped: AtomicU64,
    /// Certificate reloads refused (the old certificates stay in use).
    pub tls_reload_failures: AtomicU64,
    /// HTTPS API clients refused during the TLS handshake (no TLS, a
    /// certificate from another CA, a node's or a revoked certificate, or
    /// too slow).
    pub https_refusals: AtomicU64,
    refusal_logged: LogLimit,
    https_refusal_logged: LogLimit,
}

/// When a line was last logged (milliseconds, 0: never) and the count at
/// that moment.
#[derive(Debug, Default)]
struct LogLimit(std::sync::Mutex<(u64, u64)>);

impl LogLimit {
    /// `Some(n)` when a line is due for the event that brought the count to
    /// `total`, `n` being the events since the last line (this one
    /// included).
    fn due(&self, total: u64, now_ms: u64) -> Option<u64> {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.0 != 0 && now_ms < last.0.saturating_add(REFUSAL_LOG_INTERVAL_MS) {
            return None;
        }
        let since = total - last.1;
        *last = (now_ms.max(1), total);
        Some(since)
    }
}

/// TLS refusals are logged at most once per this many milliseconds; each is
/// counted in `tls_refusals` all the same.
pub const REFUSAL_LOG_INTERVAL_MS: u64 = 10_000;

impl RuntimeMetrics {
    /// Counts a TLS refusal at `now_ms`; `Some(n)` when it should be logged,
    /// `n` being the refusals since the last line logged (this one included).
    pub fn refused(&self, now_ms: u64) -> Option<u64> {
        let total = self.tls_refusals.fetch_add(1, Ordering::Relaxed) + 1;
        self.refusal_logged.due(total, now_ms)
    }

    /// Counts an HTTPS API client refused at the handshake, as
    /// [`RuntimeMetrics::refused`] does for peers.
    pub fn https_refused(&self, now_ms: u64) -> Option<u64> {
        let total = self.https_refusals.fetch_add(1, Ordering::Relaxed) + 1;
        self.https_refusal_logged.due(total, now_ms)
    }
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
    pub cert_not_after_unix: u64,
    pub tls_reloads: u64,
    pub tls_reload_failures: u64,
    pub revoked_dropped: u64,
    pub https_refusals: u64,
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
            cert_not_after_unix: r(&self.cert_not_after_unix),
            tls_reloads: r(&self.tls_reloads),
            tls_reload_failures: r(&self.tls_reload_failures),
            https_refusals: r(&self.https_refusals),
            revoked_dropped: r(&self.revoked_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_all_counted_and_logged_once_per_interval() {
        let m = RuntimeMetrics::default();
        assert_eq!(m.refused(5), Some(1));
        for t in 0..100 {
            assert_eq!(m.refused(6 + t), None);
        }
        assert_eq!(m.refused(5 + REFUSAL_LOG_INTERVAL_MS), Some(101));
        assert_eq!(m.tls_refusals.load(Ordering::Relaxed), 102);
    }
}
