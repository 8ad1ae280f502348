//! Lifeguard's dynamic suspicion (Dadgar, Phillips, Currey 2018, §IV-B;
//! memberlist's `suspicion.go`): a suspicion starts with a long window that
//! shrinks, on a logarithmic curve, as other members independently confirm
//! it. A real failure is confirmed by other probers within seconds and
//! declared quickly; a healthy member falsely suspected by one prober (its
//! own network at fault, a lost packet) is rarely confirmed and has the
//! whole long window to refute.

use std::time::Duration;

/// One member's suspicion as this node runs it.
#[derive(Debug, Clone)]
pub(crate) struct Suspicion {
    /// Keys of the members that suspected it, the first accuser first. The
    /// accuser never counts as a confirmation; each other member counts once.
    seen: Vec<[u64; 2]>,
    /// Independent confirmations so far.
    confirmations: u32,
    /// Confirmations that bring the window down to `min`.
    k: u32,
    min: Duration,
    max: Duration,
    /// When this node started suspecting.
    pub(crate) start: Duration,
    /// How long before the deadline the last direct probe goes out, so that
    /// its answer is due when the window ends (the probe timeout).
    lead: Duration,
    /// When the last direct probe before the verdict was sent.
    pub(crate) checked_at: Option<Duration>,
}

impl Suspicion {
    /// A suspicion raised by `accuser` at `now`: the window starts at
    /// `max` (at `min` when `k` is 0: nobody is expected to confirm). The
    /// last direct probe goes out `lead` before the window ends.
    pub(crate) fn new(
        accuser: [u64; 2],
        k: u32,
        (min, max): (Duration, Duration),
        lead: Duration,
        now: Duration,
    ) -> Self {
        Self {
            seen: vec![accuser],
            confirmations: 0,
            k,
            min,
            max: max.max(min),
            start: now,
            lead,
            checked_at: None,
        }
    }

    /// How long the suspicion lasts with the confirmations so far:
    /// `max - (max - min) * ln(n + 1) / ln(k + 1)`, never below `min`
    /// (whole milliseconds).
    pub(crate) fn window(&self) -> Duration {
        if self.k == 0 {
            return self.min;
        }
        let frac = f64::from(self.confirmations + 1).ln() / f64::from(self.k + 1).ln();
        let span = (self.max - self.min).as_secs_f64();
        let t = self.max.as_secs_f64() - frac * span;
        let ms = (t * 1000.0).floor().max(0.0) as u64;
        Duration::from_millis(ms).max(self.min)
    }

    /// When the suspicion runs out.
    pub(crate) fn deadline(&self) -> Duration {
        self.start + self.window()
    }

    /// When this suspicion next needs attention: the last direct probe
    /// `lead` before the deadline (not before the start), then the verdict
    /// at the deadline, and never sooner than `lead` after that probe went
    /// out, so the member always has a full probe timeout to answer it.
    pub(crate) fn next_wake(&self) -> Duration {
        match self.checked_at {
            None => self.deadline().saturating_sub(self.lead).max(self.start),
            Some(at) => self.deadline().max(at + self.lead),
        }
    }

    /// `from` suspects the member too. `true` when this is a new
    /// independent confirmation (the deadline moved earlier; memberlist
    /// then gossips it on), `false` for the accuser, a repeat, or once `k`
    /// confirmations are in.
    pub(crate) fn confirm(&mut self, from: [u64; 2]) -> bool {
        if self.confirmations >= self.k || self.seen.contains(&from) {
            return false;
        }
        self.seen.push(from);
        self.confirmations += 1;
        true
    }

    /// Independent confirmations so far.
    #[cfg(test)]
    pub(crate) fn confirmations(&self) -> u32 {
        self.confirmations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> [u64; 2] {
        [i, 0]
    }

    /// memberlist's LAN numbers at 100 members: min 8 s, max 48 s, k = 2.
    #[test]
    fn window_shrinks_logarithmically_with_confirmations() {
        let s = |n| {
            let mut s = Suspicion::new(
                key(0),
                2,
                (Duration::from_secs(8), Duration::from_secs(48)),
                Duration::ZERO,
                Duration::ZERO,
            );
            for i in 0..n {
                s.confirm(key(i + 1));
            }
            s.window()
        };
        assert_eq!(s(0), Duration::from_secs(48));
        // 48 - 40 * ln 2 / ln 3 = 22.76 s
        assert_eq!(s(1), Duration::from_millis(22_762));
        assert_eq!(s(2), Duration::from_secs(8));
        assert_eq!(s(5), Duration::from_secs(8));
    }

    #[test]
    fn the_accuser_and_repeats_do_not_count() {
        let mut s = Suspicion::new(
            key(7),
            3,
            (Duration::from_secs(2), Duration::from_secs(12)),
            Duration::ZERO,
            Duration::from_secs(100),
        );
        assert!(!s.confirm(key(7)));
        assert!(s.confirm(key(8)));
        assert!(!s.confirm(key(8)));
        assert_eq!(s.confirmations(), 1);
        assert!(s.deadline() > Duration::from_secs(102));
        assert!(s.confirm(key(9)) && s.confirm(key(10)));
        assert!(!s.confirm(key(11)), "no more than k");
        assert_eq!(s.deadline(), Duration::from_secs(102));
    }

    #[test]
    fn without_expected_confirmations_the_window_is_the_minimum() {
        let s = Suspicion::new(
            key(1),
            0,
            (Duration::from_secs(3), Duration::from_secs(18)),
            Duration::ZERO,
            Duration::ZERO,
        );
        assert_eq!(s.window(), Duration::from_secs(3));
    }

    /// The last direct probe goes out one probe timeout before the window
    /// ends, and the verdict waits a full probe timeout after it, however
    /// the deadline moved.
    #[test]
    fn the_last_probe_is_due_when_the_window_ends() {
        let ms = Duration::from_millis;
        let mut s = Suspicion::new(key(1), 1, (ms(4000), ms(8000)), ms(500), ms(100));
        assert_eq!(s.next_wake(), ms(7600));
        s.checked_at = Some(ms(7600));
        assert_eq!(s.next_wake(), ms(8100));
        // A confirmation after the probe went out: the window is at its
        // minimum, but the answer is still awaited.
        s.confirm(key(2));
        assert_eq!(s.deadline(), ms(4100));
        assert_eq!(s.next_wake(), ms(8100));
        // A window shorter than the lead: the probe goes out at once.
        let s = Suspicion::new(key(1), 0, (ms(300), ms(300)), ms(500), ms(100));
        assert_eq!(s.next_wake(), ms(100));
    }
}
