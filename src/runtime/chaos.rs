//! The fault filter between a node and its sockets, for chaos experiments
//! on real agents: drop probability, added delay and jitter (outbound),
//! peers blocked both ways, inbound-only or outbound-only, and an offset
//! and drift of the wall clock the node reads (its HLC and the wall times
//! it stamps; its timers run on the monotonic clock and are not moved),
//! each rule set optionally limited in time. Off unless rules are set (`POST /v1/chaos`,
//! `roster chaos set`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::node::NodeId;

/// Most peers named in one rule set.
pub const MAX_BLOCKED: usize = 1024;

/// Fault rules, as set through the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosRules {
    /// Probability of dropping each message, both ways (0..1).
    #[serde(default)]
    pub drop: f64,
    /// Delay added to every outgoing message, milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Extra random delay, uniform in `0..=jitter_ms`.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Peers cut off both ways.
    #[serde(default)]
    pub block: Vec<NodeId>,
    /// Peers whose messages to this node are dropped.
    #[serde(default)]
    pub block_in: Vec<NodeId>,
    /// Peers this node's messages to are dropped.
    #[serde(default)]
    pub block_out: Vec<NodeId>,
    /// Offset added to the wall clock the node reads, ms.
    #[serde(default)]
    pub clock_offset_ms: i64,
    /// Drift of that clock from when the rules are set, parts per million.
    #[serde(default)]
    pub clock_drift_ppm: f64,
    /// Lift the rules after this many seconds (none: until healed).
    #[serde(default)]
    pub for_secs: Option<f64>,
}

impl ChaosRules {
    /// Checks ranges and sizes.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.drop) || self.drop.is_nan() {
            return Err(format!("drop must be within [0, 1], not {}", self.drop));
        }
        if self.delay_ms > 60_000 || self.jitter_ms > 60_000 {
            return Err("delay_ms and jitter_ms must be at most 60000".into());
        }
        if self.block.len() + self.block_in.len() + self.block_out.len() > MAX_BLOCKED {
            return Err(format!("at most {MAX_BLOCKED} peers may be blocked"));
        }
        if let Some(s) = self.for_secs
            && !(s.is_finite() && s > 0.0 && s <= 86_400.0)
        {
            return Err("for_secs must be within (0, 86400]".into());
        }
        if self.clock_offset_ms.abs() > 3_600_000 {
            return Err("clock_offset_ms must be within ±3600000".into());
        }
        if !(self.clock_drift_ppm.is_finite() && self.clock_drift_ppm.abs() <= 10_000.0) {
            return Err("clock_drift_ppm must be within ±10000".into());
        }
        Ok(())
    }
}

/// The rules in force, with their expiry.
#[derive(Debug, Default)]
pub(crate) struct Chaos {
    rules: Option<(ChaosRules, Option<Instant>)>,
    /// When the rules in force were set (the clock drift runs from then).
    set_at: Option<Instant>,
    rng: u64,
    /// Messages dropped by the filter.
    pub(crate) dropped: u64,
}

impl Chaos {
    /// Sets `rules`; starts their clock.
    #[allow(clippy::disallowed_methods)] // the runtime's clock
    pub(crate) fn set(&mut self, rules: ChaosRules) {
        let until = rules
            .for_secs
            .map(|s| Instant::now() + Duration::from_secs_f64(s));
        if self.rng == 0 {
            self.rng = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
        }
        self.rules = Some((rules, until));
        self.set_at = Some(Instant::now());
    }

    /// What the rules in force add to the wall clock, ms: the offset and
    /// the drift since they were set (0 when none are, or they expired).
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn wall_skew_ms(&self) -> i64 {
        let (Some((r, until)), Some(set_at)) = (&self.rules, self.set_at) else {
            return 0;
        };
        let now = Instant::now();
        if until.is_some_and(|u| now >= u) {
            return 0;
        }
        let drift = set_at.elapsed().as_millis() as f64 * r.clock_drift_ppm / 1e6;
        r.clock_offset_ms + drift as i64
    }

    /// Lifts every rule.
    pub(crate) fn heal(&mut self) {
        self.rules = None;
    }

    /// The rules in force (expired ones are lifted first).
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn current(&mut self) -> Option<&ChaosRules> {
        if let Some((_, Some(until))) = &self.rules
            && Instant::now() >= *until
        {
            self.rules = None;
        }
        self.rules.as_ref().map(|(r, _)| r)
    }

    /// The next number of the filter's one generator (xorshift64*: chaos
    /// needs no more).
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn coin(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    /// Whether a message from `peer` is dropped on arrival.
    pub(crate) fn drop_in(&mut self, peer: &NodeId) -> bool {
        let Some(r) = self.current() else {
            return false;
        };
        let blocked = r.block.contains(peer) || r.block_in.contains(peer);
        let p = r.drop;
        let d = blocked || self.coin(p);
        self.dropped += u64::from(d);
        d
    }

    /// For a message to `peer` (when known): `None` when it is dropped,
    /// else the delay to add.
    pub(crate) fn out(&mut self, peer: Option<&NodeId>) -> Option<Duration> {
        let Some(r) = self.current() else {
            return Some(Duration::ZERO);
        };
        let blocked = peer.is_some_and(|p| r.block.contains(p) || r.block_out.contains(p));
        let (p, delay, jitter) = (r.drop, r.delay_ms, r.jitter_ms);
        if blocked || self.coin(p) {
            self.dropped += 1;
            return None;
        }
        let extra = if jitter > 0 {
            self.next() % (jitter + 1)
        } else {
            0
        };
        Some(Duration::from_millis(delay + extra))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn blocks_drops_delays_and_heals() {
        let mut c = Chaos::default();
        assert!(!c.drop_in(&id("a")));
        assert_eq!(c.out(Some(&id("a"))), Some(Duration::ZERO));
        c.set(ChaosRules {
            block: vec![id("a")],
            block_in: vec![id("b")],
            block_out: vec![id("c")],
            delay_ms: 10,
            jitter_ms: 5,
            ..Default::default()
        });
        assert!(c.drop_in(&id("a")) && c.drop_in(&id("b")) && !c.drop_in(&id("c")));
        assert_eq!(c.out(Some(&id("a"))), None);
        assert_eq!(c.out(Some(&id("c"))), None);
        let d = c.out(Some(&id("b"))).unwrap();
        assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(15));
        c.set(ChaosRules {
            drop: 0.5,
            ..Default::default()
        });
        let dropped = (0..10_000).filter(|_| c.out(None).is_none()).count();
        assert!((4_000..6_000).contains(&dropped), "{dropped}");
        assert_eq!(c.wall_skew_ms(), 0);
        c.set(ChaosRules {
            clock_offset_ms: -1500,
            ..Default::default()
        });
        assert_eq!(c.wall_skew_ms(), -1500);
        c.heal();
        assert!(c.current().is_none());
        assert_eq!(c.wall_skew_ms(), 0);
        assert!(
            ChaosRules {
                drop: 1.5,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            ChaosRules {
                for_secs: Some(-1.0),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
