//! Local health (Lifeguard's "local health multiplier", memberlist's
//! awareness): a score that rises when this node's own probes fail without
//! proof that its network is fine, and falls when they succeed. Timeouts
//! are scaled by `1 + score`, so a node that cannot hear well waits longer
//! before suspecting others.

use std::time::Duration;

/// The local health score, `0..=max` (0 is healthy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Awareness {
    score: u8,
    max: u8,
}

impl Awareness {
    /// A healthy node whose score can reach `max`.
    pub(crate) fn new(max: u8) -> Self {
        Self { score: 0, max }
    }

    /// Adds `delta` (negative to lower it), clamped to `0..=max`.
    pub(crate) fn apply(&mut self, delta: i32) {
        let s = (i32::from(self.score) + delta).clamp(0, i32::from(self.max));
        self.score = s as u8;
    }

    /// The score.
    pub(crate) fn score(&self) -> u8 {
        self.score
    }

    /// `d` scaled by `1 + score`.
    pub(crate) fn scale(&self, d: Duration) -> Duration {
        d * (1 + u32::from(self.score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_clamped_and_scales_timeouts() {
        let mut a = Awareness::new(7);
        a.apply(-1);
        assert_eq!(a.score(), 0);
        a.apply(3);
        assert_eq!(a.scale(Duration::from_millis(500)), Duration::from_secs(2));
        a.apply(100);
        assert_eq!(a.score(), 7);
        a.apply(-2);
        assert_eq!(a.score(), 5);
    }
}
