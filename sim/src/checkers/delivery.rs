//! Invariant: every state write reaches every node that ran from the write
//! to the end of the run (the `delta` scenario requires coverage 1.0). The
//! same records give the spread latency of writes. Planted bug:
//! `LostDelta`.

use std::collections::BTreeMap;

use roster::node::Hlc;

use crate::net::Nanos;

/// A write being tracked.
struct Write {
    owner: usize,
    hlc: Hlc,
    at: Nanos,
    /// Receipt time per node slot.
    got: BTreeMap<usize, Nanos>,
    /// Nodes running when it was written.
    audience: Vec<usize>,
}

/// The tracked writes, by (owner slot, key).
#[derive(Default)]
pub struct Delivery {
    writes: Vec<Write>,
    index: BTreeMap<(usize, String), usize>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Delivery({} writes)", self.writes.len())
    }
}

/// The spread of the tracked writes over the nodes still running.
pub struct Spread {
    /// Every receipt's delay after its write.
    pub delays: Vec<Nanos>,
    /// Per write: its audience still running, and their receipt delays.
    pub per_write: Vec<(usize, Vec<Nanos>)>,
    /// Receipts over (write, running audience member) pairs, if any.
    pub coverage: Option<f64>,
}

impl Delivery {
    /// Node `owner` wrote `key` stamped `hlc` at `at`, with `audience`
    /// running.
    pub fn wrote(&mut self, owner: usize, key: String, hlc: Hlc, at: Nanos, audience: Vec<usize>) {
        self.index.insert((owner, key), self.writes.len());
        self.writes.push(Write {
            owner,
            hlc,
            at,
            got: BTreeMap::new(),
            audience,
        });
    }

    /// Node `n` reports `owner`'s `key` at stamp `hlc`, at `now`. `lose`
    /// is asked, on a first receipt by an audience member only, whether to
    /// drop the report (the planted bug).
    pub fn received(
        &mut self,
        n: usize,
        owner: usize,
        key: String,
        hlc: Hlc,
        now: Nanos,
        lose: impl FnOnce() -> bool,
    ) {
        let Some(&wi) = self.index.get(&(owner, key)) else {
            return;
        };
        let w = &mut self.writes[wi];
        if hlc < w.hlc || n == w.owner {
            return;
        }
        let first = w.audience.contains(&n) && !w.got.contains_key(&n);
        if first && lose() {
            return;
        }
        w.got.entry(n).or_insert(now);
    }

    /// The (owner, key) of every tracked write.
    pub fn keys(&self) -> impl Iterator<Item = &(usize, String)> {
        self.index.keys()
    }

    /// The spread over the audience for which `running` holds.
    pub fn spread(&self, running: impl Fn(usize) -> bool) -> Spread {
        let mut pairs = 0u64;
        let mut got = 0u64;
        let mut all = Vec::new();
        let mut per_write = Vec::new();
        for w in &self.writes {
            let mut audience = 0;
            let mut delays = Vec::new();
            for &a in w.audience.iter().filter(|&&a| running(a)) {
                pairs += 1;
                audience += 1;
                if let Some(&t) = w.got.get(&a) {
                    got += 1;
                    all.push(t - w.at);
                    delays.push(t - w.at);
                }
            }
            per_write.push((audience, delays));
        }
        Spread {
            delays: all,
            per_write,
            coverage: (pairs > 0).then(|| got as f64 / pairs as f64),
        }
    }
}
