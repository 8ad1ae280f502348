//! Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
//!
//! A timestamp is 64 bits: the high 48 hold wall-clock milliseconds, the low
//! 16 a logical counter. Stamps from one clock only grow, and a stamp taken
//! after receiving a remote stamp is larger than it, so the order of stamps
//! respects causality. A remote stamp more than `max_drift` ahead of the local
//! wall clock is refused (and counted by the caller) rather than adopted,
//! so one node with a runaway clock cannot drag the cluster's clocks forward.
//!
//! The clock reads no time itself: every call takes the wall-clock reading,
//! which lets the simulator give each node its own skewed clock.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;
/// Largest wall-clock reading an HLC can hold: 2^48 - 1 ms (year 10889).
pub const MAX_WALL_MS: u64 = (1 << 48) - 1;

/// One HLC timestamp.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hlc(pub u64);

impl Hlc {
    /// Builds a stamp from its parts; `wall_ms` is clamped to 48 bits.
    pub fn new(wall_ms: u64, logical: u16) -> Self {
        Self((wall_ms.min(MAX_WALL_MS) << LOGICAL_BITS) | u64::from(logical))
    }

    /// Physical part, in milliseconds since the Unix epoch.
    pub fn wall_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// Logical counter.
    pub fn logical(self) -> u16 {
        // The mask keeps 16 bits, so the cast is exact.
        (self.0 & LOGICAL_MASK) as u16
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms(), self.logical())
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A remote stamp was too far ahead of the local wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "remote HLC {remote} is {ahead_ms} ms ahead of local wall clock; the limit is {max_drift_ms} ms (clock unchanged)"
)]
pub struct DriftError {
    /// The refused stamp.
    pub remote: Hlc,
    /// How far ahead of local wall time it was.
    pub ahead_ms: u64,
    /// The configured bound.
    pub max_drift_ms: u64,
}

/// A hybrid logical clock.
#[derive(Debug, Clone)]
pub struct HlcClock {
    last: Hlc,
    max_drift_ms: u64,
}

impl HlcClock {
    /// A clock that refuses remote stamps more than `max_drift` ahead.
    pub fn new(max_drift: Duration) -> Self {
        Self {
            last: Hlc::default(),
            max_drift_ms: u64::try_from(max_drift.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The last stamp issued or adopted.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A new stamp for a local event, given the wall clock in ms.
    pub fn now(&mut self, wall_ms: u64) -> Hlc {
        let wall = wall_ms.min(MAX_WALL_MS);
        let last_wall = self.last.wall_ms();
        self.last = if wall > last_wall {
            Hlc::new(wall, 0)
        } else {
            Self::bump(self.last)
        };
        self.last
    }

    /// Merges a remote stamp on receipt. Returns the new local stamp, which is
    /// larger than both `remote` and every stamp issued before. A remote stamp
    /// more than `max_drift` ahead of `wall_ms` is refused and leaves the clock
    /// unchanged.
    pub fn update(&mut self, remote: Hlc, wall_ms: u64) -> Result<Hlc, DriftError> {
        let wall = wall_ms.min(MAX_WALL_MS);
        let ahead_ms = remote.wall_ms().saturating_sub(wall);
        if ahead_ms > self.max_drift_ms {
            return Err(DriftError {
                remote,
                ahead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        let max_wall = wall.max(self.last.wall_ms()).max(remote.wall_ms());
        self.last = if max_wall == self.last.wall_ms() && max_wall == remote.wall_ms() {
            Self::bump(Hlc::new(
                max_wall,
                self.last.logical().max(remote.logical()),
            ))
        } else if max_wall == self.last.wall_ms() {
            Self::bump(self.last)
        } else if max_wall == remote.wall_ms() {
            Self::bump(remote)
        } else {
            Hlc::new(max_wall, 0)
        };
        Ok(self.last)
    }

    /// Next stamp after `h`: the logical counter grows, and when it is full
    /// the physical part moves one millisecond ahead (so stamps never repeat).
    fn bump(h: Hlc) -> Hlc {
        if h.logical() == u16::MAX {
            Hlc::new(h.wall_ms().saturating_add(1), 0)
        } else {
            Hlc(h.0 + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRIFT: Duration = Duration::from_millis(500);

    #[test]
    fn packs_wall_and_logical() {
        let h = Hlc::new(1_700_000_000_123, 7);
        assert_eq!(h.wall_ms(), 1_700_000_000_123);
        assert_eq!(h.logical(), 7);
        assert!(Hlc::new(5, 0) > Hlc::new(4, u16::MAX));
    }

    #[test]
    fn local_events_table() {
        // (wall reading, expected stamp) applied in order on one clock.
        let cases: &[(u64, (u64, u16))] = &[
            (1000, (1000, 0)),
            (1000, (1000, 1)), // same ms: logical grows
            (999, (1000, 2)),  // wall went back: still monotonic
            (1001, (1001, 0)), // wall moved on: logical resets
        ];
        let mut c = HlcClock::new(DRIFT);
        for &(wall, (w, l)) in cases {
            assert_eq!(c.now(wall), Hlc::new(w, l), "wall {wall}");
        }
    }

    #[test]
    fn update_table() {
        // (local last, remote, wall, expected); stamps are (wall_ms, logical).
        type Stamp = (u64, u16);
        let cases: &[(Stamp, Stamp, u64, Stamp)] = &[
            ((100, 0), (90, 5), 200, (200, 0)),   // wall dominates
            ((300, 4), (90, 5), 200, (300, 5)),   // local dominates
            ((100, 0), (400, 3), 200, (400, 4)),  // remote dominates (within drift)
            ((400, 9), (400, 3), 200, (400, 10)), // tie: max logical + 1
        ];
        for &(local, remote, wall, expected) in cases {
            let mut c = HlcClock::new(DRIFT);
            c.last = Hlc::new(local.0, local.1);
            let got = c.update(Hlc::new(remote.0, remote.1), wall).unwrap();
            assert_eq!(
                got,
                Hlc::new(expected.0, expected.1),
                "{local:?} {remote:?} {wall}"
            );
            assert!(got > Hlc::new(remote.0, remote.1));
        }
    }

    #[test]
    fn remote_stamp_past_max_drift_is_refused_and_not_adopted() {
        let mut c = HlcClock::new(DRIFT);
        let before = c.now(10_000);
        let err = c.update(Hlc::new(10_501, 0), 10_000).unwrap_err();
        assert_eq!(err.ahead_ms, 501);
        assert_eq!(c.last(), before);
        // Exactly at the bound is accepted.
        assert!(c.update(Hlc::new(10_500, 0), 10_000).is_ok());
    }

    #[test]
    fn logical_overflow_moves_physical_part() {
        let mut c = HlcClock::new(DRIFT);
        c.last = Hlc::new(50, u16::MAX);
        assert_eq!(c.now(10), Hlc::new(51, 0));
    }
}
