//! Invariants: a node delivers each user event at most once, and the
//! events of one sender in the order it sent them (within each life of the
//! sender). Planted bug: `DuplicateEvent` (a node reports an event a
//! second time). The same records give the `events` scenario's figures:
//! delivery latency and coverage over the nodes that ran from each event's
//! sending to the end.

use std::collections::BTreeMap;

use roster::node::NodeId;
use serde::Serialize;

use crate::net::{Nanos, SEC};

/// One event sent.
struct Sent {
    at: Nanos,
    /// Nodes running when it was sent (its sender included: it delivers
    /// its own events too).
    audience: Vec<usize>,
    /// First delivery per node slot.
    got: BTreeMap<usize, Nanos>,
}

/// The user events of a run.
#[derive(Default)]
pub struct UserEvents {
    /// By (sender slot, generation, sequence).
    sent: BTreeMap<(usize, u64, u64), Sent>,
    /// The last event each node delivered from each sender: (receiver,
    /// sender) to (generation, sequence).
    last: BTreeMap<(usize, usize), (u64, u64)>,
}

impl std::fmt::Debug for UserEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserEvents({} sent)", self.sent.len())
    }
}

/// The `events` scenario's figures (in the JSON report only when events
/// were sent).
#[derive(Debug, Clone, Serialize)]
pub struct EventFigures {
    /// Events sent.
    pub events_sent: usize,
    /// Median delay from sending to delivery, over (event, node) pairs
    /// delivered.
    pub event_p50_secs: Option<f64>,
    /// 99th percentile of that delay over every (event, node) pair, an
    /// undelivered pair counting as never (`None` when over 1% were
    /// undelivered).
    pub event_p99_secs: Option<f64>,
    /// Pairs delivered over pairs, the pairs being each event and each node
    /// running from its sending to the end.
    pub event_coverage: Option<f64>,
}

impl UserEvents {
    /// Node `sender` sent event `seq` of its life `generation` at `at`,
    /// with `audience` running.
    pub fn sent(
        &mut self,
        sender: usize,
        generation: u64,
        seq: u64,
        at: Nanos,
        audience: Vec<usize>,
    ) {
        let sent = Sent {
            at,
            audience,
            got: BTreeMap::new(),
        };
        self.sent.insert((sender, generation, seq), sent);
    }

    /// Node `n` (named `id`) delivered event `seq` of life `generation` of
    /// `sender` (slot `s`) at `now`.
    pub fn delivered(
        &mut self,
        n: usize,
        id: &NodeId,
        (sender, s): (&NodeId, usize),
        generation: u64,
        seq: u64,
        now: Nanos,
    ) -> Result<(), String> {
        let this = (generation, seq);
        let prev = self.last.insert((n, s), this);
        if let Some(e) = self.sent.get_mut(&(s, generation, seq)) {
            e.got.entry(n).or_insert(now);
        }
        match prev {
            Some(p) if p == this => Err(format!(
                "{id} delivered event {sender}#{seq} (generation {generation}) twice"
            )),
            Some(p) if p > this => Err(format!(
                "{id} delivered event {sender}#{seq} (generation {generation}) after #{} (generation {})",
                p.1, p.0
            )),
            _ => Ok(()),
        }
    }

    /// Node `n` runs a new process: it remembers no deliveries.
    pub fn restarted(&mut self, n: usize) {
        self.last.retain(|&(r, _), _| r != n);
    }

    /// The figures over the audience for which `running` holds at the
    /// end; `None` when no event was sent.
    pub fn figures(&self, running: impl Fn(usize) -> bool) -> Option<EventFigures> {
        if self.sent.is_empty() {
            return None;
        }
        let mut delays = Vec::new();
        let mut pairs = 0usize;
        for e in self.sent.values() {
            for &a in e.audience.iter().filter(|&&a| running(a)) {
                pairs += 1;
                if let Some(&t) = e.got.get(&a) {
                    delays.push(t - e.at);
                }
            }
        }
        delays.sort_unstable();
        let secs = |n: Nanos| (n as f64 / SEC as f64 * 1000.0).round() / 1000.0;
        let at = |q: f64| {
            let i = ((pairs as f64 * q).ceil() as usize).clamp(1, pairs.max(1)) - 1;
            delays.get(i).map(|&d| secs(d))
        };
        Some(EventFigures {
            events_sent: self.sent.len(),
            event_p50_secs: (!delays.is_empty()).then(|| secs(delays[(delays.len() - 1) / 2])),
            event_p99_secs: if pairs == 0 { None } else { at(0.99) },
            event_coverage: (pairs > 0)
                .then(|| (delays.len() as f64 / pairs as f64 * 10_000.0).round() / 10_000.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).expect("valid")
    }

    #[test]
    fn a_copy_and_a_reordering_are_caught() {
        let mut u = UserEvents::default();
        u.sent(1, 1, 1, 0, vec![0, 1]);
        u.sent(1, 1, 2, 0, vec![0, 1]);
        let (me, s) = (id("n0"), (&id("n1"), 1));
        assert!(u.delivered(0, &me, s, 1, 2, SEC).is_ok());
        assert!(u.delivered(0, &me, s, 1, 1, SEC).is_err(), "out of order");
        u.restarted(0);
        assert!(u.delivered(0, &me, s, 1, 2, SEC).is_ok());
        assert!(u.delivered(0, &me, s, 1, 2, SEC).is_err(), "twice");
        assert!(u.delivered(0, &me, s, 2, 1, SEC).is_ok(), "a new life");
    }

    #[test]
    fn figures_count_undelivered_pairs_against_the_percentile() {
        let mut u = UserEvents::default();
        assert!(u.figures(|_| true).is_none());
        u.sent(0, 1, 1, 0, (0..100).collect());
        let me = id("n0");
        for n in 0..99 {
            u.delivered(n, &me, (&me, 0), 1, 1, SEC / 10 * (n as u64 % 10 + 1))
                .expect("in order");
        }
        let f = u.figures(|_| true).expect("sent");
        assert_eq!(f.event_coverage, Some(0.99));
        assert_eq!(f.event_p99_secs, Some(1.0));
        u.delivered(99, &me, (&me, 0), 1, 1, 5 * SEC)
            .expect("in order");
        let f = u.figures(|_| true).expect("sent");
        assert_eq!(f.event_coverage, Some(1.0));
        assert_eq!(f.event_p99_secs, Some(1.0));
        let f = u.figures(|n| n < 50).expect("sent");
        assert_eq!(f.event_coverage, Some(1.0));
    }
}
