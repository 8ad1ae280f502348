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
    /// Delay and jitter (uniform, up to) added to what a node sends, as a
    /// fault plan's `impair` step sets them.
    pub node_delay: Vec<(Nanos, Nanos)>,
    /// Partition group per node, while a partition is in force.
    pub partition: Option<Vec<u8>>,
    /// Regions, when the latency model has them.
    pub regions: Option<Regions>,
}

/// A latency model with regions: node `i` is in region `i % k`, and a
/// message between two regions takes half their round trip on top of the
/// LAN latency. Regions sit at random points of a square (drawn from the
/// seed), as sites on a map: the round trip between two is 1 ms plus up to
/// 149 ms in proportion to their distance (150 ms across the diagonal);
/// within a region it is drawn from 1-5 ms.
#[derive(Debug, Clone)]
pub struct Regions {
    /// Round trip between regions `a` and `b` (`rtt[a][b]`).
    pub rtt: Vec<Vec<Nanos>>,
}

impl Regions {
    /// `k` regions with round trips drawn from `rng`.
    pub fn draw(k: usize, rng: &mut Rng) -> Self {
        let at: Vec<(f64, f64)> = (0..k)
            .map(|_| (rng.random_range(0.0..1.0), rng.random_range(0.0..1.0)))
            .collect();
        let mut rtt = vec![vec![0; k]; k];
        for a in 0..k {
            rtt[a][a] = rng.random_range(MS..=5 * MS);
            for b in a + 1..k {
                let d = ((at[a].0 - at[b].0).powi(2) + (at[a].1 - at[b].1).powi(2)).sqrt();
                let r = MS + (149.0 * MS as f64 * d / std::f64::consts::SQRT_2) as Nanos;
                rtt[a][b] = r;
                rtt[b][a] = r;
            }
        }
        Regions { rtt }
    }

    /// The regions' round trip between nodes `a` and `b`.
    pub fn between(&self, a: usize, b: usize) -> Nanos {
        let k = self.rtt.len();
        self.rtt[a % k][b % k]
    }
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
            node_delay: vec![(0, 0); nodes],
            partition: None,
            regions: None,
        }
    }

    /// The mean round trip between nodes `a` and `b` the model gives a
    /// datagram and its answer.
    pub fn mean_rtt(&self, a: usize, b: usize) -> Nanos {
        let lan = 2 * (self.base_latency + self.mean_jitter);
        lan + self.regions.as_ref().map_or(0, |r| r.between(a, b))
    }

    /// Makes room for a new node.
    pub fn add_node(&mut self) {
        self.node_loss.push(0.0);
        self.deaf.push(false);
        self.node_delay.push((0, 0));
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
        let mut delay =
            self.latency(rng) + self.regions.as_ref().map_or(0, |r| r.between(from, to) / 2);
        let (extra, jitter) = self.node_delay[from];
        if extra > 0 || jitter > 0 {
            delay += extra + rng.random_range(0..=jitter);
        }
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
