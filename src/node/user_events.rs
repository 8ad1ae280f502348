//! User events: a named payload one member broadcasts to every live member
//! (Serf's `serf event`), for orchestration without a central server.
//!
//! An event spreads like a state write, piggybacked on the membership
//! engine's gossip, and reaches each member at most once, in the order its
//! sender sent it:
//!
//! - Each event carries its sender's name and generation and a sequence
//!   number counting from 1 in each life of the sender, plus an HLC stamp.
//!   `(sender, generation, sequence)` identifies it: a copy already
//!   delivered, or already waiting, is a duplicate and is neither delivered
//!   nor spread again.
//! - Events from one sender are delivered in sequence order. One that
//!   arrives ahead of a missing predecessor waits for it, at most
//!   [`Config::event_reorder_wait`](crate::node::Config): then whatever
//!   waits is delivered in order and the gap is skipped (a predecessor that
//!   arrives later still is dropped, counted with the copies).
//! - A member does not replay events from before it started: events stamped
//!   before its start are dropped (counted as old). The first event seen
//!   from a sender whose sequence is past 1 starts that sender's order after
//!   waiting as above for predecessors.
//!
//! Memory: one entry per sender heard from within [`FORGET_AFTER`], plus
//! the events waiting (at most [`MAX_WAITING`] per sender). Each input
//! costs O(log senders), and once a minute O(senders) to forget the idle
//! ones: gossip stops carrying an event within seconds, so a copy that
//! could still arrive after ten minutes does not exist.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hlc::Hlc;
use super::identity::{Generation, NodeId};

/// Longest event name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// Events from one sender waiting for a predecessor, at most: past it, the
/// oldest wait ends at once.
pub const MAX_WAITING: usize = 256;

/// A sender nothing arrived from for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// How often idle senders are looked for.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A user event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// Who sent it.
    pub sender: NodeId,
    /// The life of the sender that sent it.
    pub generation: Generation,
    /// Its place among the events that life sent, from 1.
    pub seq: u64,
    /// When it was sent, on the sender's hybrid logical clock.
    pub hlc: Hlc,
    /// Its name (1 to [`MAX_NAME_BYTES`] bytes, no control characters).
    pub name: String,
    /// Its payload (at most `Config::max_event_bytes`).
    pub payload: Vec<u8>,
}

/// Why an event could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The name is empty, too long or holds control characters.
    #[error("event name must be 1 to {MAX_NAME_BYTES} bytes without control characters")]
    BadName,
    /// The payload is over the configured limit.
    #[error("event payload of {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The limit (`Config::max_event_bytes`).
        limit: usize,
    },
    /// The node has left the cluster.
    #[error("this node has left the cluster")]
    Left,
}

/// Checks an event's name and payload size against `limit`.
pub fn validate(name: &str, payload: &[u8], limit: usize) -> Result<(), EventError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(EventError::BadName);
    }
    if payload.len() > limit {
        return Err(EventError::TooLarge {
            size: payload.len(),
            limit,
        });
    }
    Ok(())
}

/// What became of an arriving event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// New: delivered or waiting, and to be spread further.
    New,
    /// Seen before (delivered or waiting).
    Duplicate,
    /// Malformed, from before this node started or from an earlier life
    /// of its sender: dropped.
    Dropped,
}

/// What a member remembers of one sender.
#[derive(Debug)]
struct Sender {
    generation: Generation,
    /// The last sequence number delivered (0: none yet).
    delivered: u64,
    /// Events that arrived ahead of a predecessor, with when they arrived.
    waiting: BTreeMap<u64, (UserEvent, Duration)>,
    /// When its last event arrived.
    last: Duration,
}

/// Counters of the user-event log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounters {
    /// Events delivered to the application.
    pub delivered: u64,
    /// Copies of events already delivered or waiting, and events that
    /// arrived after their gap was skipped, dropped.
    pub duplicates: u64,
    /// Events dropped: from before this node started or from an earlier
    /// life of their sender.
    pub dropped: u64,
    /// Gaps skipped after waiting (events never seen here).
    pub gaps_skipped: u64,
    /// Events with a bad name or a payload over this node's limit, dropped.
    pub invalid: u64,
}

/// A member's record of the user events it has seen.
#[derive(Debug)]
pub(crate) struct EventLog {
    senders: BTreeMap<NodeId, Sender>,
    /// Events stamped before this were sent before this node started.
    since: Hlc,
    /// Largest payload accepted.
    limit: usize,
    /// Events ready for the application, in delivery order.
    ready: Vec<UserEvent>,
    /// Events waiting, over all senders (so that finding none is O(1)).
    waiting: usize,
    /// When idle senders were last looked for.
    pruned: Duration,
    pub(crate) counters: EventCounters,
}

impl EventLog {
    /// A log for a node that started at `since` on its clock, accepting
    /// payloads of up to `limit` bytes.
    pub(crate) fn new(since: Hlc, limit: usize) -> Self {
        EventLog {
            senders: BTreeMap::new(),
            since,
            limit,
            ready: Vec::new(),
            waiting: 0,
            pruned: Duration::ZERO,
            counters: EventCounters::default(),
        }
    }

    /// Forgets the senders idle for [`FORGET_AFTER`] with nothing waiting,
    /// at most once per minute.
    fn prune(&mut self, now: Duration) {
        if now.saturating_sub(self.pruned) < PRUNE_EVERY {
            return;
        }
        self.pruned = now;
        self.senders
            .retain(|_, s| !s.waiting.is_empty() || now.saturating_sub(s.last) < FORGET_AFTER);
    }

    /// Senders remembered.
    #[cfg(test)]
    fn senders(&self) -> usize {
        self.senders.len()
    }

    /// An event arrived at `now` (monotonic).
    pub(crate) fn receive(&mut self, ev: UserEvent, now: Duration) -> Arrival {
        if validate(&ev.name, &ev.payload, self.limit).is_err() {
            self.counters.invalid += 1;
            return Arrival::Dropped;
        }
        if ev.hlc < self.since {
            self.counters.dropped += 1;
            return Arrival::Dropped;
        }
        self.prune(now);
        let s = self
            .senders
            .entry(ev.sender.clone())
            .or_insert_with(|| Sender {
                generation: ev.generation,
                delivered: 0,
                waiting: BTreeMap::new(),
                last: now,
            });
        s.last = now;
        if ev.generation < s.generation {
            self.counters.dropped += 1;
            return Arrival::Dropped;
        }
        if ev.generation > s.generation {
            // A new life of the sender: what waits from the old one goes
            // out first, in order.
            let old: Vec<UserEvent> = std::mem::take(&mut s.waiting)
                .into_values()
                .map(|(e, _)| e)
                .collect();
            self.counters.delivered += old.len() as u64;
            self.waiting -= old.len();
            self.ready.extend(old);
            s.generation = ev.generation;
            s.delivered = 0;
        }
        if ev.seq <= s.delivered {
            // Behind the order: a copy, or a predecessor whose gap was
            // skipped (only then is it unseen; either way, too late).
            self.counters.duplicates += 1;
            return Arrival::Duplicate;
        }
        if s.waiting.contains_key(&ev.seq) {
            self.counters.duplicates += 1;
            return Arrival::Duplicate;
        }
        s.waiting.insert(ev.seq, (ev, now));
        let full = s.waiting.len() > MAX_WAITING;
        self.waiting += 1;
        self.waiting -= Self::release(s, &mut self.ready, &mut self.counters, full);
        Arrival::New
    }

    /// Delivers what waits for `s` in order: the run that follows the last
    /// delivered, or (`skip`) everything, skipping the gaps. Returns how
    /// many it delivered.
    fn release(
        s: &mut Sender,
        ready: &mut Vec<UserEvent>,
        c: &mut EventCounters,
        skip: bool,
    ) -> usize {
        let before = ready.len();
        while let Some(entry) = s.waiting.first_entry() {
            let seq = *entry.key();
            // A sender's first event past 1 waits too: its predecessors
            // may be on their way.
            let next = seq == s.delivered + 1 && (s.delivered > 0 || seq == 1);
            if !next && !skip {
                break;
            }
            if !next {
                c.gaps_skipped += 1;
            }
            let (ev, _) = entry.remove();
            s.delivered = seq;
            c.delivered += 1;
            ready.push(ev);
        }
        ready.len() - before
    }

    /// Ends the waits that began `wait` or longer before `now`: what waits
    /// behind them is delivered in order, skipping the gaps.
    pub(crate) fn expire(&mut self, now: Duration, wait: Duration) {
        for s in self.senders.values_mut() {
            let overdue = s
                .waiting
                .values()
                .map(|(_, at)| *at)
                .min()
                .is_some_and(|at| now >= at + wait);
            if overdue {
                self.waiting -= Self::release(s, &mut self.ready, &mut self.counters, true);
            }
        }
    }

    /// When the earliest wait ends, given `wait`.
    pub(crate) fn next_expiry(&self, wait: Duration) -> Option<Duration> {
        if self.waiting == 0 {
            return None;
        }
        self.senders
            .values()
            .flat_map(|s| s.waiting.values().map(|(_, at)| *at + wait))
            .min()
    }

    /// The events ready for the application, in delivery order.
    pub(crate) fn take_ready(&mut self) -> Vec<UserEvent> {
        std::mem::take(&mut self.ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ev(sender: &str, generation: u64, seq: u64) -> UserEvent {
        UserEvent {
            sender: NodeId::new(sender).expect("valid"),
            generation: Generation(generation),
            seq,
            hlc: Hlc(1000 + seq),
            name: "deploy".into(),
            payload: seq.to_le_bytes().to_vec(),
        }
    }

    fn seqs(log: &mut EventLog) -> Vec<u64> {
        log.take_ready().into_iter().map(|e| e.seq).collect()
    }

    #[test]
    fn in_order_events_are_delivered_at_once_and_copies_dropped() {
        let mut log = EventLog::new(Hlc(0), 512);
        assert_eq!(log.receive(ev("a", 1, 1), MS), Arrival::New);
        assert_eq!(log.receive(ev("a", 1, 2), MS), Arrival::New);
        assert_eq!(log.receive(ev("a", 1, 2), MS), Arrival::Duplicate);
        assert_eq!(log.receive(ev("a", 1, 1), MS), Arrival::Duplicate);
        assert_eq!(seqs(&mut log), vec![1, 2]);
        assert_eq!(log.counters.duplicates, 2);
    }

    #[test]
    fn an_event_ahead_of_its_predecessor_waits_for_it() {
        let mut log = EventLog::new(Hlc(0), 512);
        log.receive(ev("a", 1, 1), MS);
        log.receive(ev("a", 1, 3), MS);
        assert_eq!(log.receive(ev("a", 1, 3), MS), Arrival::Duplicate);
        assert_eq!(seqs(&mut log), vec![1]);
        assert_eq!(log.next_expiry(100 * MS), Some(101 * MS));
        log.receive(ev("a", 1, 2), 2 * MS);
        assert_eq!(seqs(&mut log), vec![2, 3]);
        assert_eq!(log.next_expiry(100 * MS), None);
    }

    #[test]
    fn a_gap_is_skipped_after_the_wait_and_its_event_dropped_later() {
        let mut log = EventLog::new(Hlc(0), 512);
        log.receive(ev("a", 1, 1), MS);
        log.receive(ev("a", 1, 3), 10 * MS);
        log.expire(50 * MS, 100 * MS);
        assert_eq!(seqs(&mut log), vec![1]);
        log.expire(110 * MS, 100 * MS);
        assert_eq!(seqs(&mut log), vec![3]);
        assert_eq!(log.counters.gaps_skipped, 1);
        assert_eq!(log.receive(ev("a", 1, 2), 120 * MS), Arrival::Duplicate);
        assert!(seqs(&mut log).is_empty());
    }

    #[test]
    fn a_first_event_past_one_waits_for_predecessors() {
        let mut log = EventLog::new(Hlc(0), 512);
        log.receive(ev("a", 1, 5), MS);
        assert!(seqs(&mut log).is_empty());
        log.receive(ev("a", 1, 4), 2 * MS);
        assert!(seqs(&mut log).is_empty());
        log.expire(200 * MS, 100 * MS);
        assert_eq!(seqs(&mut log), vec![4, 5]);
    }

    #[test]
    fn events_from_before_the_start_and_from_an_old_life_are_dropped() {
        let mut log = EventLog::new(Hlc(1002), 512);
        assert_eq!(log.receive(ev("a", 2, 1), MS), Arrival::Dropped);
        assert_eq!(log.receive(ev("a", 2, 2), MS), Arrival::New);
        log.expire(200 * MS, 100 * MS);
        assert_eq!(seqs(&mut log), vec![2]);
        assert_eq!(log.receive(ev("a", 1, 9), MS), Arrival::Dropped);
        let mut next_life = ev("a", 3, 1);
        next_life.hlc = Hlc(2000);
        assert_eq!(log.receive(next_life, MS), Arrival::New);
        assert_eq!(seqs(&mut log), vec![1]);
        assert_eq!(log.counters.dropped, 2);
    }

    #[test]
    fn senders_are_ordered_independently() {
        let mut log = EventLog::new(Hlc(0), 512);
        log.receive(ev("a", 1, 2), MS);
        log.receive(ev("b", 1, 1), MS);
        assert_eq!(seqs(&mut log), vec![1]);
        log.receive(ev("a", 1, 1), MS);
        assert_eq!(seqs(&mut log), vec![1, 2]);
    }

    #[test]
    fn idle_senders_are_forgotten() {
        let mut log = EventLog::new(Hlc(0), 512);
        log.receive(ev("a", 1, 1), MS);
        log.receive(ev("b", 1, 1), FORGET_AFTER);
        assert_eq!(log.senders(), 2);
        let later = MS + FORGET_AFTER + PRUNE_EVERY;
        log.receive(ev("b", 1, 2), later);
        assert_eq!(log.senders(), 1, "a was idle for ten minutes");
        assert_eq!(seqs(&mut log), vec![1, 1, 2]);
    }

    #[test]
    fn a_malformed_event_is_dropped_and_counted() {
        let mut log = EventLog::new(Hlc(0), 4);
        let mut e = ev("a", 1, 1);
        e.name = "bad\u{7}".into();
        assert_eq!(log.receive(e, MS), Arrival::Dropped);
        let mut e = ev("a", 1, 1);
        e.payload = vec![0; 5];
        assert_eq!(log.receive(e, MS), Arrival::Dropped);
        assert_eq!(log.counters.invalid, 2);
        assert!(seqs(&mut log).is_empty());
    }

    #[test]
    fn names_and_payloads_are_checked() {
        assert_eq!(validate("", b"", 512), Err(EventError::BadName));
        assert_eq!(validate("a\nb", b"", 512), Err(EventError::BadName));
        assert_eq!(
            validate(&"x".repeat(129), b"", 512),
            Err(EventError::BadName)
        );
        assert!(matches!(
            validate("deploy", &[0; 513], 512),
            Err(EventError::TooLarge {
                size: 513,
                limit: 512
            })
        ));
        assert_eq!(validate("deploy", &[0; 512], 512), Ok(()));
    }
}
