//! A linearizability checker for the metadata client history: each key is
//! a register (get, put, delete, compare-and-set), checked on its own with
//! the Wing–Gong search and memoised configurations (as Knossos and
//! Porcupine do).
//!
//! Operations whose outcome is unknown (a timeout, or a node that crashed
//! before answering) may or may not have taken effect, at any time after
//! they were invoked; operations refused before anything was proposed are
//! left out.

use std::collections::{BTreeMap, HashSet};

use crate::node::MetaOp;

/// Nanoseconds since the start of the run (virtual or real).
pub type Nanos = u64;

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A read returned this value.
    Read(Option<Vec<u8>>),
    /// A put or delete was acknowledged.
    Done,
    /// A compare-and-set was acknowledged, swapped or not.
    Cas(bool),
    /// No answer or a timeout: it may or may not have happened.
    Unknown,
    /// Refused before it was proposed: it did not happen.
    Failed,
}

#[derive(Debug, Clone)]
struct Entry {
    op: MetaOp,
    call: Nanos,
    ret: Option<Nanos>,
    outcome: Outcome,
}

/// Every operation clients invoked, with its outcome.
#[derive(Debug, Default, Clone)]
pub struct History {
    entries: Vec<Entry>,
}

type State = Option<Vec<u8>>;

/// The operations a check judged, by kind: those with a known outcome (an
/// acknowledged write, a returned read, an answered compare-and-set). A
/// history whose check passes proves little unless these are many.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Checked {
    /// Acknowledged puts and deletes.
    pub writes: u64,
    /// Reads that returned a value (or none).
    pub reads: u64,
    /// Answered compare-and-sets, swapped or not.
    pub cas: u64,
}

/// Search steps allowed per key before giving up.
const BUDGET: u64 = 20_000_000;

impl History {
    /// Records an invocation; returns its handle.
    pub fn invoke(&mut self, op: MetaOp, at: Nanos) -> usize {
        self.entries.push(Entry {
            op,
            call: at,
            ret: None,
            outcome: Outcome::Unknown,
        });
        self.entries.len() - 1
    }

    /// Records the outcome of an invocation.
    pub fn complete(&mut self, h: usize, outcome: Outcome, at: Nanos) {
        if let Some(e) = self.entries.get_mut(h) {
            e.ret = (!matches!(outcome, Outcome::Unknown)).then_some(at);
            e.outcome = outcome;
        }
    }

    /// Every operation in invocation order: (operation, invoked, returned,
    /// outcome), for timelines and reports.
    pub fn entries(&self) -> impl Iterator<Item = (&MetaOp, Nanos, Option<Nanos>, &Outcome)> {
        self.entries
            .iter()
            .map(|e| (&e.op, e.call, e.ret, &e.outcome))
    }

    /// The operation of a handle.
    pub fn op(&self, h: usize) -> &MetaOp {
        &self.entries[h].op
    }

    /// Whether nothing was invoked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value last read or written for `key` (for generating
    /// compare-and-set expectations that sometimes match).
    pub fn recent_value(&self, key: &str) -> Option<Vec<u8>> {
        self.entries
            .iter()
            .rev()
            .find_map(|e| match (&e.op, &e.outcome) {
                (MetaOp::Get { key: k }, Outcome::Read(v)) if k == key => Some(v.clone()),
                (MetaOp::Put { key: k, value }, Outcome::Done) if k == key => {
                    Some(Some(value.clone()))
                }
                _ => None,
            })?
    }

    /// What a check judges (see [`Checked`]).
    pub fn checked(&self) -> Checked {
        let mut c = Checked::default();
        for e in &self.entries {
            match (&e.op, &e.outcome) {
                (MetaOp::Get { .. }, Outcome::Read(_)) => c.reads += 1,
                (MetaOp::Put { .. } | MetaOp::Delete { .. }, Outcome::Done) => c.writes += 1,
                (MetaOp::Cas { .. }, Outcome::Cas(_)) => c.cas += 1,
                _ => {}
            }
        }
        c
    }

    /// Whether the whole history is linearizable (every key's); `None`
    /// when it holds no answered operation, so nothing was judged.
    pub fn check(&self) -> Option<bool> {
        let c = self.checked();
        if c.reads + c.writes + c.cas == 0 {
            return None;
        }
        Some(self.judge() == Some(true))
    }

    /// Like [`History::check`], but telling a history found not
    /// linearizable (`Some(Some(false))`) from one whose search ran out of
    /// its budget of steps before it could decide (`Some(None)`), which
    /// `check` counts as not linearizable.
    pub fn check_decided(&self) -> Option<Option<bool>> {
        let c = self.checked();
        if c.reads + c.writes + c.cas == 0 {
            return None;
        }
        Some(self.judge())
    }

    /// Every key's verdict: `Some(false)` if any key is not linearizable,
    /// `None` if none is but some key's search ran out of budget.
    fn judge(&self) -> Option<bool> {
        let mut by_key: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for e in &self.entries {
            if matches!(e.outcome, Outcome::Failed)
                || (e.op.is_read() && !matches!(e.outcome, Outcome::Read(_)))
            {
                continue;
            }
            by_key.entry(e.op.key()).or_default().push(e);
        }
        let mut undecided = false;
        let decided = by_key.iter().all(|(key, ops)| {
            let verdict = check_key(ops);
            undecided |= verdict.is_none();
            let ok = verdict != Some(false);
            if !ok && std::env::var_os("ROSTER_SIM_DEBUG").is_some() {
                eprintln!("not linearizable: {key}");
                for e in self
                    .entries
                    .iter()
                    .filter(|e| e.op.key() == *key && matches!(e.outcome, Outcome::Failed))
                {
                    eprintln!("  failed call={:.3} {:?}", e.call as f64 / 1e9, e.op);
                }
                for e in ops {
                    eprintln!(
                        "  call={:.3} ret={:?} {:?} -> {:?}",
                        e.call as f64 / 1e9,
                        e.ret.map(|r| r as f64 / 1e9),
                        e.op,
                        e.outcome
                    );
                }
            }
            ok
        });
        if !decided {
            Some(false)
        } else if undecided {
            None
        } else {
            Some(true)
        }
    }
}

/// Applies `e` to `s`: the new state, or `None` when the outcome contradicts
/// the state.
fn step(s: &State, e: &Entry) -> Option<State> {
    match (&e.op, &e.outcome) {
        (MetaOp::Get { .. }, Outcome::Read(v)) => (v == s).then(|| s.clone()),
        (MetaOp::Put { value, .. }, _) => Some(Some(value.clone())),
        (MetaOp::Delete { .. }, _) => Some(None),
        (MetaOp::Cas { expect, value, .. }, Outcome::Cas(swapped)) => {
            let matches = expect == s;
            (matches == *swapped).then(|| if matches { value.clone() } else { s.clone() })
        }
        (MetaOp::Cas { expect, value, .. }, _) => Some(if expect == s {
            value.clone()
        } else {
            s.clone()
        }),
        _ => None,
    }
}

/// One key's verdict (`None`: the budget ran out first).
fn check_key(ops: &[&Entry]) -> Option<bool> {
    let n = ops.len();
    let words = n.div_ceil(64).max(1);
    let required: Vec<bool> = ops.iter().map(|e| e.ret.is_some()).collect();
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut budget = BUDGET;
    fn go(
        ops: &[&Entry],
        required: &[bool],
        done: &mut Vec<u64>,
        state: State,
        seen: &mut HashSet<(Vec<u64>, State)>,
        budget: &mut u64,
    ) -> bool {
        let is_done = |d: &Vec<u64>, i: usize| d[i / 64] & (1 << (i % 64)) != 0;
        if (0..ops.len()).all(|i| !required[i] || is_done(done, i)) {
            return true;
        }
        if *budget == 0 || !seen.insert((done.clone(), state.clone())) {
            return false;
        }
        *budget -= 1;
        let min_ret = (0..ops.len())
            .filter(|&i| !is_done(done, i))
            .filter_map(|i| ops[i].ret)
            .min()
            .unwrap_or(Nanos::MAX);
        for i in 0..ops.len() {
            if is_done(done, i) || ops[i].call > min_ret {
                continue;
            }
            if let Some(next) = step(&state, ops[i]) {
                done[i / 64] |= 1 << (i % 64);
                if go(ops, required, done, next, seen, budget) {
                    return true;
                }
                done[i / 64] &= !(1 << (i % 64));
            }
        }
        false
    }
    let mut done = vec![0u64; words];
    let found = go(ops, &required, &mut done, None, &mut seen, &mut budget);
    if found {
        Some(true)
    } else if budget == 0 {
        None
    } else {
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str) -> MetaOp {
        MetaOp::Put {
            key: "k".into(),
            value: v.as_bytes().to_vec(),
        }
    }

    fn get() -> MetaOp {
        MetaOp::Get { key: "k".into() }
    }

    fn cas(expect: &str, value: &str) -> MetaOp {
        MetaOp::Cas {
            key: "k".into(),
            expect: Some(expect.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
        }
    }

    fn read(v: Option<&str>) -> Outcome {
        Outcome::Read(v.map(|s| s.as_bytes().to_vec()))
    }

    #[test]
    fn a_history_without_answers_is_not_judged() {
        let mut h = History::default();
        assert_eq!(h.check(), None);
        let a = h.invoke(put("1"), 0);
        h.complete(a, Outcome::Failed, 10);
        let b = h.invoke(get(), 20);
        h.complete(b, Outcome::Unknown, 30);
        assert_eq!(h.check(), None);
        let c = h.invoke(get(), 40);
        h.complete(c, read(None), 50);
        assert_eq!(h.check(), Some(true));
    }

    #[test]
    fn sequential_history_is_linearizable_and_stale_read_is_not() {
        let mut h = History::default();
        let a = h.invoke(put("1"), 0);
        h.complete(a, Outcome::Done, 10);
        let b = h.invoke(get(), 20);
        h.complete(b, read(Some("1")), 30);
        assert_eq!(h.check(), Some(true));
        // A read after a later acknowledged write returning the old value.
        let c = h.invoke(put("2"), 40);
        h.complete(c, Outcome::Done, 50);
        let d = h.invoke(get(), 60);
        h.complete(d, read(Some("1")), 70);
        assert_eq!(h.check(), Some(false));
    }

    #[test]
    fn concurrent_and_unknown_operations_may_go_either_way() {
        let mut h = History::default();
        let a = h.invoke(put("1"), 0);
        h.complete(a, Outcome::Done, 10);
        // A timed-out write may take effect later...
        let b = h.invoke(put("2"), 20);
        h.complete(b, Outcome::Unknown, 9999);
        let c = h.invoke(get(), 30);
        h.complete(c, read(Some("1")), 40);
        let d = h.invoke(get(), 50);
        h.complete(d, read(Some("2")), 60);
        assert_eq!(h.check(), Some(true));
        // ...but not undo itself.
        let e = h.invoke(get(), 70);
        h.complete(e, read(Some("1")), 80);
        assert_eq!(h.check(), Some(false));
    }

    #[test]
    fn cas_outcome_must_match_the_state() {
        let mut h = History::default();
        let a = h.invoke(put("1"), 0);
        h.complete(a, Outcome::Done, 10);
        let b = h.invoke(cas("1", "3"), 20);
        h.complete(b, Outcome::Cas(false), 30);
        assert_eq!(h.check(), Some(false));
    }

    #[test]
    fn the_check_counts_what_it_judged() {
        let mut h = History::default();
        assert_eq!(h.checked(), Checked::default());
        let a = h.invoke(put("1"), 0);
        h.complete(a, Outcome::Done, 10);
        let b = h.invoke(get(), 20);
        h.complete(b, read(Some("1")), 30);
        let c = h.invoke(cas("1", "2"), 40);
        h.complete(c, Outcome::Cas(true), 50);
        // Unknown and refused outcomes are not judged.
        let d = h.invoke(get(), 60);
        h.complete(d, Outcome::Unknown, 70);
        let e = h.invoke(put("3"), 80);
        h.complete(e, Outcome::Failed, 90);
        assert_eq!(
            h.checked(),
            Checked {
                writes: 1,
                reads: 1,
                cas: 1
            }
        );
        assert_eq!(h.check(), Some(true));
    }
}
