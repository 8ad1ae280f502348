//! The simulated network and clocks.
//!
//! Network: every message gets a latency (a fixed base plus an exponential
//! tail), and datagrams are lost independently with probability
//! `1 - (1 - loss)(1 - loss[src])(1 - loss[dst])`. One-way blocks, inbound
//! blocks and partitions between node sets drop everything they cover.
//! Stream messages (push-pull) are reliable like QUIC streams: loss costs
//! retransmission delay, and only blocks, partitions or a dead peer drop them.
//!
//! Clocks: each node's wall clock has an offset, a drift (ppm) and jumps;
//! monotonic time is the simulation's virtual time.

use std::collections::BTreeSet;

use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus as Rng;

/// Nanoseconds of virtual time.
pub type Nanos = u64;
/// One millisecond.
pub const MS: Nanos = 1_000_000;
/// One second.
pub const SEC: Nanos = 1_000_000_000;

/// Network conditions.
#[derive(Debug, Clone)]
pub struct Network {
    /// Minimum one-way latency.
    pub base_latency: Nanos,
    /// Mean of the exponential tail added to the base.
    pub mean_jitter: Nanos,
    /// Uniform loss on every datagram.
    pub loss: f64,
    /// Extra loss for datagrams from or to a node.
    pub node_loss: Vec<f64>,
    /// Nodes that cannot receive anything.
    pub deaf: Vec<bool>,
    /// One-way blocks `(from, to)`.
    pub blocked: BTreeSet<(usize, usize)>,
    /// Partition group per node, while a partition is in force.
    pub partition: Option<Vec<u8>>,
}

/// Retransmission timeout charged per lost attempt of a stream message.
const STREAM_RTO: Nanos = 200 * MS;

impl Network {
    /// A LAN: 0.5 ms base latency with a 0.5 ms mean tail, no loss.
    pub fn lan(nodes: usize) -> Self {
        Self {
            base_latency: MS / 2,
            mean_jitter: MS / 2,
            loss: 0.0,
            node_loss: vec![0.0; nodes],
            deaf: vec![false; nodes],
            blocked: BTreeSet::new(),
            partition: None,
        }
    }

    /// Makes room for a new node.
    pub fn add_node(&mut self) {
        self.node_loss.push(0.0);
        self.deaf.push(false);
        if let Some(p) = &mut self.partition {
            p.push(0);
        }
    }

    /// Whether `from` can reach `to` at all (blocks and partitions).
    pub fn connected(&self, from: usize, to: usize) -> bool {
        if self.deaf[to] || self.blocked.contains(&(from, to)) {
            return false;
        }
        match &self.partition {
            Some(g) => g[from] == g[to],
            None => true,
        }
    }

    /// Whether a node is impaired by the network model (lossy above 50%,
    /// deaf, or behind a one-way block).
    pub fn impaired(&self, n: usize) -> bool {
        self.node_loss[n] >= 0.5
            || self.deaf[n]
            || self.blocked.iter().any(|&(a, b)| a == n || b == n)
    }

    fn latency(&self, rng: &mut Rng) -> Nanos {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        self.base_latency + (-(u.ln()) * self.mean_jitter as f64) as Nanos
    }

    /// Decides a message's fate: `Some(delay)` or `None` when dropped.
    pub fn route(&self, from: usize, to: usize, stream: bool, rng: &mut Rng) -> Option<Nanos> {
        if !self.connected(from, to) {
            return None;
        }
        let p_ok = (1.0 - self.loss) * (1.0 - self.node_loss[from]) * (1.0 - self.node_loss[to]);
        let mut delay = self.latency(rng);
        if stream {
            // Retransmit until through, as a reliable transport would.
            for _ in 0..16 {
                if rng.random_bool(p_ok.clamp(0.0, 1.0)) {
                    return Some(delay);
                }
                delay += STREAM_RTO;
            }
            None
        } else if rng.random_bool(p_ok.clamp(0.0, 1.0)) {
            Some(delay)
        } else {
            None
        }
    }
}

/// One node's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// Fixed offset from true time, ms.
    pub offset_ms: i64,
    /// Rate error, parts per million.
    pub drift_ppm: f64,
    /// Sum of jumps so far, ms.
    pub jumped_ms: i64,
}

/// True wall time at virtual zero (2026-01-01T00:00:00Z), ms.
pub const EPOCH_MS: i64 = 1_767_225_600_000;

impl Clock {
    /// The node's wall-clock reading at virtual time `t`.
    pub fn wall_ms(&self, t: Nanos) -> u64 {
        let true_ms = (t / MS) as i64;
        let drift = (true_ms as f64 * self.drift_ppm / 1e6) as i64;
        (EPOCH_MS + true_ms + self.offset_ms + drift + self.jumped_ms).max(0) as u64
    }
}
