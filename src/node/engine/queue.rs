//! What the engine piggybacks: membership updates and application items,
//! each sent a bounded number of times, fewest-sent first (memberlist's
//! transmit-limited queue). A newer piece of news about the same thing (the
//! same member, the same state key) replaces the older one.

use std::cmp::Reverse;
use std::collections::BTreeMap;

/// What a piece of news is about: a member (by key) or an application
/// item's slot (chosen by the application).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Topic {
    Member([u64; 2]),
    Item([u64; 2]),
}

/// Queue position: fewer transmissions first, then newer first.
type Place = (u32, Reverse<u64>);

#[derive(Debug)]
struct Queued {
    topic: Topic,
    /// The encoded `News`, ready to append to a packet.
    bytes: Vec<u8>,
}

/// The queue.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    entries: BTreeMap<Place, Queued>,
    by_topic: BTreeMap<Topic, Place>,
    seq: u64,
}

impl Queue {
    /// Queues `bytes` about `topic`, replacing older news about it.
    pub(crate) fn push(&mut self, topic: Topic, bytes: Vec<u8>) {
        if let Some(old) = self.by_topic.remove(&topic) {
            self.entries.remove(&old);
        }
        self.seq += 1;
        let place = (0, Reverse(self.seq));
        self.entries.insert(place, Queued { topic, bytes });
        self.by_topic.insert(topic, place);
    }

    /// Pieces of news waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends to `out` as many pieces as fit in `room` bytes, fewest-sent
    /// first; each is counted as sent once more and leaves the queue after
    /// `limit` sends. Returns how many were appended.
    pub(crate) fn fill(&mut self, out: &mut Vec<u8>, room: usize, limit: u32) -> usize {
        let mut used = 0;
        let mut taken: Vec<Place> = Vec::new();
        for (place, q) in &self.entries {
            if used + q.bytes.len() <= room {
                used += q.bytes.len();
                out.extend_from_slice(&q.bytes);
                taken.push(*place);
            }
            // Bounded work per packet: stop once the packet is nearly full.
            if room - used < 16 || taken.len() >= 255 {
                break;
            }
        }
        for place in &taken {
            let Some(q) = self.entries.remove(place) else {
                continue;
            };
            let sent = place.0 + 1;
            if sent >= limit {
                self.by_topic.remove(&q.topic);
            } else {
                let next = (sent, place.1);
                self.by_topic.insert(q.topic, next);
                self.entries.insert(next, q);
            }
        }
        taken.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_news_replaces_older_and_each_is_sent_limit_times() {
        let mut q = Queue::default();
        q.push(Topic::Member([1, 0]), vec![1; 10]);
        q.push(Topic::Member([1, 0]), vec![2; 10]);
        q.push(Topic::Item([9, 9]), vec![3; 10]);
        assert_eq!(q.len(), 2);
        let mut sends = 0;
        for _ in 0..10 {
            let mut out = Vec::new();
            let n = q.fill(&mut out, 1000, 3);
            if n == 0 {
                break;
            }
            assert!(!out.contains(&1), "the replaced news is never sent");
            sends += n;
        }
        assert_eq!(sends, 6);
        assert!(q.is_empty());
    }

    #[test]
    fn fewest_sent_first_and_room_is_respected() {
        let mut q = Queue::default();
        q.push(Topic::Item([1, 0]), vec![1; 100]);
        let mut out = Vec::new();
        assert_eq!(q.fill(&mut out, 1000, 5), 1);
        q.push(Topic::Item([2, 0]), vec![2; 100]);
        let mut out = Vec::new();
        // Room for one: the never-sent one goes first.
        assert_eq!(q.fill(&mut out, 150, 5), 1);
        assert_eq!(out[0], 2);
        let mut out = Vec::new();
        assert_eq!(q.fill(&mut out, 50, 5), 0);
    }
}
