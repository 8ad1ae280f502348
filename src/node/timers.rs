//! One table for every timer a node has pending, ordered by deadline.
//!
//! No timer is ever dropped: each one fires exactly once, at or after its
//! deadline, in deadline order (ties in insertion order). Timers that became
//! irrelevant are recognised when they fire (foca's tokens, roster's nonces),
//! never removed early. Dropped timers are how membership notifications get
//! lost, so the table has no `cancel`.

use std::collections::BTreeMap;
use std::time::Duration;

/// Pending timers, earliest first.
#[derive(Debug)]
pub struct TimerTable<T> {
    entries: BTreeMap<(Duration, u64), T>,
    seq: u64,
}

impl<T> Default for TimerTable<T> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<T> TimerTable<T> {
    /// Schedules `timer` to fire at `deadline`.
    pub fn insert(&mut self, deadline: Duration, timer: T) {
        self.seq += 1;
        self.entries.insert((deadline, self.seq), timer);
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.entries.keys().next().map(|(d, _)| *d)
    }

    /// Removes and returns the earliest timer due at `now`.
    pub fn pop_due(&mut self, now: Duration) -> Option<T> {
        let first = self.entries.first_entry()?;
        if first.key().0 <= now {
            Some(first.remove())
        } else {
            None
        }
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_and_keeps_every_timer() {
        let mut t = TimerTable::default();
        let ms = Duration::from_millis;
        t.insert(ms(30), "c");
        t.insert(ms(10), "a");
        t.insert(ms(20), "b1");
        t.insert(ms(20), "b2");
        assert_eq!(t.next_deadline(), Some(ms(10)));
        assert_eq!(t.pop_due(ms(5)), None);
        let mut fired = vec![];
        while let Some(x) = t.pop_due(ms(25)) {
            fired.push(x);
        }
        assert_eq!(fired, ["a", "b1", "b2"]);
        // Late delivery still fires the rest.
        assert_eq!(t.pop_due(ms(1000)), Some("c"));
        assert!(t.is_empty());
    }
}
