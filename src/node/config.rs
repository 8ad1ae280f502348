//! Node configuration: plain fields with named presets.
//!
//! Every field documents its default, its unit and where the number comes
//! from. [`Config::validate`] rejects combinations that cannot work, so a
//! [`crate::node::Node`] is never built from a broken configuration.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use super::delta::StateLimits;

/// Largest QUIC datagram before path-MTU discovery (quinn 0.11's
/// `Connection::max_datagram_size()` on a fresh connection): every SWIM
/// packet, envelope included, must fit in it.
pub const QUIC_MIN_DATAGRAM_BYTES: usize = 1162;

/// How a node runs SWIM, spreads state and checks failures.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Time between probes of one random member (SWIM protocol period).
    /// LAN 1 s, WAN 5 s (memberlist's `ProbeInterval`), local 500 ms
    /// (memberlist's local preset uses 1 s).
    pub probe_period: Duration,
    /// Wait for a direct ack before asking others to probe indirectly.
    /// LAN 500 ms, WAN 3 s, local 200 ms: memberlist `ProbeTimeout`.
    /// Must be below `probe_period`.
    pub probe_rtt: Duration,
    /// Members asked to probe indirectly when a direct probe times out.
    /// 3 in every preset: memberlist's LAN and WAN `IndirectChecks` (its
    /// local preset uses 1).
    pub num_indirect_probes: NonZeroUsize,
    /// How many times each membership update or state delta is piggybacked
    /// before it leaves the backlog, per `log10(n + 1)` for `n` live
    /// members (this node included): [`Timing::retransmits`] is
    /// `retransmit_mult * log10(n + 1)` (at least 1, at most 255), computed
    /// afresh as members come and go. 6 in every preset: memberlist's
    /// `RetransmitMult` is 4 (2 in its local preset), but roster also
    /// carries state deltas this way, and a node misses
    /// an item with probability about `e^-retransmits` (0.03% per write and
    /// node at 100 nodes with 4, 0.0006% with 6).
    pub retransmit_mult: NonZeroU8,
    /// How long a member stays Suspect before this node starts its final
    /// check, in probe periods per `max(1, log10(n))` for `n` live members:
    /// [`Timing::suspicion_window`] is `suspicion_mult * max(1, log10(n)) *
    /// probe_period`, computed afresh as members come and go (memberlist's
    /// `suspicionTimeout`). 3 on LAN and local (memberlist: 4 on LAN, 3 on
    /// local; roster's final check adds the confirmation round memberlist
    /// lacks), 5 on WAN (memberlist: 6).
    pub suspicion_mult: NonZeroU8,
    /// How long the final check waits for the suspect's answer.
    /// Default `2 * probe_rtt`.
    pub verify_timeout: Duration,
    /// Members asked to relay the final check besides the direct one. 2.
    pub verify_relays: usize,
    /// Time between piggyback-only gossip rounds while there is something
    /// to spread. LAN 200 ms, WAN 500 ms: memberlist `GossipInterval`.
    pub gossip_interval: Duration,
    /// Members each gossip round goes to. LAN 3, WAN 4: memberlist
    /// `GossipNodes`.
    pub gossip_fanout: NonZeroUsize,
    /// Time between push-pull anti-entropy exchanges with one random peer
    /// up to 32 live members; past that, [`Timing::sync_interval`] is this
    /// times `ceil(log2(n) - 5) + 1` (memberlist's `pushPullScale`, so the
    /// cluster-wide rate of full exchanges stays bounded), computed afresh
    /// as members come and go. LAN 10 s, WAN 30 s, local 5 s.
    pub sync_interval: Duration,
    /// Time between attempts to reach one member held Down (a push-pull
    /// opening sent to it), so a member that recovers — after a partition,
    /// a one-way fault, a pause — is brought back without waiting for the
    /// periodic push-pull. LAN 5 s, WAN 30 s, local 2 s (memberlist's
    /// `GossipToTheDeadTime` plays this role).
    pub reconnect_interval: Duration,
    /// First wait between join attempts; doubles up to `join_retry_max`.
    /// 1 s (local 200 ms).
    pub join_retry_initial: Duration,
    /// Longest wait between join attempts. 30 s (local 5 s).
    pub join_retry_max: Duration,
    /// Largest datagram the transport carries, envelope included. Default
    /// [`QUIC_MIN_DATAGRAM_BYTES`]; the runtime lowers or raises it to the
    /// connection's real `max_datagram_size()`.
    pub max_datagram_bytes: NonZeroUsize,
    /// Largest accepted lead of a remote HLC over the local wall clock.
    /// 500 ms, as CockroachDB's `max-offset`.
    pub max_drift: Duration,
    /// Largest user-event payload, in bytes (Serf's default, 512); the name
    /// adds at most [`MAX_NAME_BYTES`](crate::node::user_events::MAX_NAME_BYTES).
    /// An event must piggyback on one datagram, so this and the datagram
    /// size are checked together.
    pub max_event_bytes: usize,
    /// How long a user event that arrived ahead of a missing predecessor
    /// from the same sender waits for it before it is delivered anyway
    /// (the gap skipped). LAN 1 s, WAN 3 s, local 500 ms: a few gossip
    /// rounds, within which a predecessor still on its way arrives.
    pub event_reorder_wait: Duration,
    /// Network coordinates (Vivaldi, see [`crate::node::coords`]): each
    /// direct probe's round trip updates this node's coordinate, and the
    /// probed member and the prober swap coordinates (two datagrams of
    /// about 70 bytes per probe), which each keeps. Off by default (the
    /// traffic figures measured so far are without it).
    pub coordinates: bool,
    /// Which SWIM engine runs membership: [`EngineKind::Foca`] (foca 2.0
    /// with roster's Lifeguard layer) or [`EngineKind::Native`] (roster's
    /// own engine, Lifeguard built in). Members of one cluster must run the
    /// same engine: each refuses the other's packets.
    pub engine: EngineKind,
    /// Lifeguard layer of the foca engine (local health, final check before
    /// Down, no forced rejoin after a refutation). On by default; off gives
    /// foca's plain SWIM behaviour for comparison. The native engine always
    /// runs Lifeguard.
    pub lifeguard: bool,
    /// Native engine, Lifeguard's dynamic suspicion: the shortest window,
    /// reached once `suspicion_confirmations` other members confirm a
    /// suspicion, is `suspicion_min_mult * max(1, log10(n))` probe periods
    /// for `n` live members (memberlist's `SuspicionMult`, 4 on LAN). 1.75
    /// here: a failed direct probe is retried beside the indirect ones, a
    /// verdict waits for a last direct probe, and a node with poor local
    /// health defers its own (see the README's engine section). At 1.75, a
    /// 5 s pause of one of 200 nodes was declared Down in none of 60 seeds;
    /// at 1.5, in 2 of 10.
    pub suspicion_min_mult: f64,
    /// Native engine: the longest window, which an unconfirmed suspicion
    /// lasts, as a multiple of the shortest (memberlist's
    /// `SuspicionMaxTimeoutMult`, 6).
    pub suspicion_max_mult: NonZeroU8,
    /// Native engine: independent confirmations that bring a suspicion's
    /// window down to the shortest (Lifeguard's `K`; memberlist uses
    /// `SuspicionMult - 2`, 2 on LAN). 2, as memberlist: a crashed member is
    /// probed by about one member per probe period, so a third confirmation
    /// could take seconds longer to come (one of 1000 nodes waited 6 s for
    /// it in a simulated run).
    pub suspicion_confirmations: u8,
    /// Highest local health score (Lifeguard's LHM `S`): probe timing is
    /// scaled by `1 + score`. 8, as Lifeguard's paper and memberlist
    /// `AwarenessMaxMultiplier`.
    pub max_health_score: u8,
    /// Highest local health score at which this node still reaches Down
    /// verdicts of its own; above it, it adopts the verdicts other members
    /// gossip and defers the rest (Lifeguard). Default 0: only a node whose
    /// recent probes succeeded judges others. A node losing most of its
    /// datagrams has a score that climbs slowly (its probes are slowed by
    /// the same score), so with a higher threshold it judged others in its
    /// first seconds of trouble; the README's "Lifeguard" figures compare
    /// the values.
    pub judge_max_health: u8,
    /// How long a Down member is remembered: listed, and tried now and
    /// then in case it comes back (`reconnect_interval`). 24 h (foca's
    /// default; Serf's `reconnect_timeout` is also 24 h).
    pub remove_down_after: Duration,
    /// How long a Left member stays listed before it is reaped. 24 h
    /// (Serf's `tombstone_timeout`).
    pub remove_left_after: Duration,
    /// Limits on each node's state.
    pub state_limits: StateLimits,
    /// Members told directly of a graceful leave. 5.
    pub leave_fanout: usize,
    /// Cluster metadata (Raft voters, bootstrap, limits).
    pub meta: super::meta::MetaConfig,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// `probe_rtt` is not below `probe_period`.
    #[error("probe_rtt ({rtt:?}) must be below probe_period ({period:?})")]
    RttNotBelowPeriod {
        /// probe_rtt
        rtt: Duration,
        /// probe_period
        period: Duration,
    },
    /// The datagram size cannot hold a SWIM packet.
    #[error("max_datagram_bytes {0} is below the 512-byte minimum")]
    DatagramTooSmall(usize),
    /// Raft's election timeout must be longer than its heartbeat.
    #[error(
        "meta.election_ticks ({election}) must be above meta.heartbeat_ticks ({heartbeat}), which must be at least 1"
    )]
    RaftTicks {
        /// election_ticks
        election: usize,
        /// heartbeat_ticks
        heartbeat: usize,
    },
    /// A retention past [`MAX_RETENTION`].
    #[error("{0} must be at most ten years")]
    TooLong(&'static str),
    /// A value cannot fit in one datagram.
    #[error("max_value_bytes + max_key_bytes ({0}) must leave 256 bytes of a datagram for headers")]
    StateTooLargeForDatagram(usize),
    /// A user event cannot piggyback on one datagram.
    #[error(
        "max_event_bytes {0} is too large for max_datagram_bytes {1} (an event, with its name and sender, must fit in the datagram less {ITEM_HEADROOM} bytes)"
    )]
    EventTooLargeForDatagram(usize, usize),
}

/// Bytes of a datagram kept for the membership engine's own message when
/// an application item (a state write, a leave, a user event) rides along.
pub(crate) const ITEM_HEADROOM: usize = 384;

/// Largest encoded user event beyond its payload: the longest name and
/// sender, the stamps and the framing.
const EVENT_OVERHEAD: usize =
    crate::node::user_events::MAX_NAME_BYTES + crate::node::identity::MAX_NODE_ID_LEN + 64;

/// Longest `remove_down_after` / `remove_left_after`: ten years (timers
/// past it would overflow the clock).
pub const MAX_RETENTION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The SWIM engine a node runs (see [`Config::engine`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// foca 2.0 with roster's Lifeguard layer.
    #[default]
    Foca,
    /// roster's own engine.
    Native,
}

impl std::str::FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "foca" => Ok(Self::Foca),
            "native" => Ok(Self::Native),
            other => Err(format!("unknown engine {other:?} (foca or native)")),
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Foca => "foca",
            Self::Native => "native",
        })
    }
}

/// Live members up to which push-pull runs at the base interval
/// (memberlist's `pushPullScaleThreshold`).
const PUSH_PULL_SCALE_THRESHOLD: usize = 32;

/// The parts of a node's timing that follow the number of live members
/// (see [`Config::timing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Live members it was computed for, this node included.
    pub members: usize,
    /// How long a member stays Suspect before the final check.
    pub suspicion_window: Duration,
    /// Times each update or delta is piggybacked.
    pub retransmits: NonZeroU8,
    /// Time between push-pull exchanges.
    pub sync_interval: Duration,
    /// Native engine: the shortest suspicion window (with every expected
    /// confirmation).
    pub suspicion_min: Duration,
    /// Native engine: the longest suspicion window (unconfirmed).
    pub suspicion_max: Duration,
}

impl Config {
    /// A LAN cluster: memberlist's `DefaultLANConfig`, but with a suspicion
    /// multiplier of 3, a retransmit multiplier of 6 and push-pull every
    /// 10 s instead of 4, 4 and 30 s (see each field). Like every preset it
    /// fits any size: the suspicion window, retransmissions and push-pull
    /// interval follow the number of live members (see [`Timing`]).
    pub fn lan() -> Self {
        let probe_period = Duration::from_secs(1);
        let probe_rtt = Duration::from_millis(500);
        Self {
            probe_period,
            probe_rtt,
            num_indirect_probes: NonZeroUsize::new(3).expect("non-zero"),
            retransmit_mult: NonZeroU8::new(6).expect("non-zero"),
            suspicion_mult: NonZeroU8::new(3).expect("non-zero"),
            verify_timeout: probe_rtt * 2,
            verify_relays: 2,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: NonZeroUsize::new(3).expect("non-zero"),
            sync_interval: Duration::from_secs(10),
            reconnect_interval: Duration::from_secs(5),
            join_retry_initial: Duration::from_secs(1),
            join_retry_max: Duration::from_secs(30),
            max_datagram_bytes: NonZeroUsize::new(QUIC_MIN_DATAGRAM_BYTES).expect("non-zero"),
            max_drift: Duration::from_millis(500),
            max_event_bytes: 512,
            event_reorder_wait: Duration::from_secs(1),
            coordinates: false,
            engine: EngineKind::Foca,
            lifeguard: true,
            suspicion_min_mult: 1.75,
            suspicion_max_mult: NonZeroU8::new(6).expect("non-zero"),
            suspicion_confirmations: 2,
            max_health_score: 8,
            judge_max_health: 0,
            remove_down_after: Duration::from_secs(24 * 3600),
            remove_left_after: Duration::from_secs(24 * 3600),
            state_limits: StateLimits::default(),
            leave_fanout: 5,
            meta: super::meta::MetaConfig::default(),
        }
    }

    /// A WAN cluster: memberlist's `DefaultWANConfig` (slower probes,
    /// longer suspicion, less frequent anti-entropy), but with a suspicion
    /// multiplier of 5 and push-pull every 30 s instead of 6 and 60 s.
    pub fn wan() -> Self {
        let probe_period = Duration::from_secs(5);
        let probe_rtt = Duration::from_secs(3);
        Self {
            probe_period,
            probe_rtt,
            suspicion_mult: NonZeroU8::new(5).expect("non-zero"),
            verify_timeout: probe_rtt * 2,
            gossip_interval: Duration::from_millis(500),
            event_reorder_wait: Duration::from_secs(3),
            gossip_fanout: NonZeroUsize::new(4).expect("non-zero"),
            sync_interval: Duration::from_secs(30),
            reconnect_interval: Duration::from_secs(30),
            ..Self::lan()
        }
    }

    /// One machine or a test: fast probes (500 ms) and short suspicion, for
    /// loopback clusters. Of memberlist's `DefaultLocalConfig` it keeps the
    /// probe timeout (200 ms), gossip interval (100 ms) and suspicion
    /// multiplier (3); probes, push-pull (5 s), retransmissions and
    /// indirect probes differ (see each field).
    pub fn local() -> Self {
        let probe_period = Duration::from_millis(500);
        let probe_rtt = Duration::from_millis(200);
        Self {
            probe_period,
            probe_rtt,
            verify_timeout: probe_rtt * 2,
            gossip_interval: Duration::from_millis(100),
            event_reorder_wait: Duration::from_millis(500),
            sync_interval: Duration::from_secs(5),
            reconnect_interval: Duration::from_secs(2),
            join_retry_initial: Duration::from_millis(200),
            join_retry_max: Duration::from_secs(5),
            ..Self::lan()
        }
    }

    /// The timing this configuration gives a cluster of `n` live members
    /// (this node included): what a node uses at each moment, recomputed as
    /// members come and go. O(1).
    pub fn timing(&self, n: usize) -> Timing {
        let n = n.max(1);
        let log10_n = (n as f64).log10().max(1.0);
        let suspicion_window = self
            .probe_period
            .mul_f64(f64::from(self.suspicion_mult.get()) * log10_n);
        let tx =
            (f64::from(self.retransmit_mult.get()) * ((n as f64) + 1.0).log10()).clamp(1.0, 255.0);
        let retransmits = NonZeroU8::new(tx as u8).unwrap_or(NonZeroU8::MIN);
        let sync_interval = if n > PUSH_PULL_SCALE_THRESHOLD {
            let scale = ((n as f64).log2() - 5.0).ceil() + 1.0;
            self.sync_interval.mul_f64(scale)
        } else {
            self.sync_interval
        };
        let suspicion_min = self.probe_period.mul_f64(self.suspicion_min_mult * log10_n);
        let suspicion_max = suspicion_min * u32::from(self.suspicion_max_mult.get());
        Timing {
            members: n,
            suspicion_window,
            retransmits,
            sync_interval,
            suspicion_min,
            suspicion_max,
        }
    }

    /// Checks the configuration. A node is only built from a valid one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, d) in [
            ("probe_period", self.probe_period),
            ("probe_rtt", self.probe_rtt),
            ("verify_timeout", self.verify_timeout),
            ("gossip_interval", self.gossip_interval),
            ("sync_interval", self.sync_interval),
            ("reconnect_interval", self.reconnect_interval),
            ("join_retry_initial", self.join_retry_initial),
            ("join_retry_max", self.join_retry_max),
            ("remove_down_after", self.remove_down_after),
            ("remove_left_after", self.remove_left_after),
            ("meta.tick", self.meta.tick),
            ("meta.request_timeout", self.meta.request_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.meta.election_ticks <= self.meta.heartbeat_ticks || self.meta.heartbeat_ticks == 0 {
            return Err(ConfigError::RaftTicks {
                election: self.meta.election_ticks,
                heartbeat: self.meta.heartbeat_ticks,
            });
        }
        for (name, d) in [
            ("remove_down_after", self.remove_down_after),
            ("remove_left_after", self.remove_left_after),
        ] {
            if d > MAX_RETENTION {
                return Err(ConfigError::TooLong(name));
            }
        }
        if self.meta.target_voters == 0 {
            return Err(ConfigError::Zero("meta.target_voters"));
        }
        if self.probe_rtt >= self.probe_period {
            return Err(ConfigError::RttNotBelowPeriod {
                rtt: self.probe_rtt,
                period: self.probe_period,
            });
        }
        if !(self.suspicion_min_mult.is_finite() && self.suspicion_min_mult > 0.0) {
            return Err(ConfigError::Zero("suspicion_min_mult"));
        }
        if self.max_datagram_bytes.get() < 512 {
            return Err(ConfigError::DatagramTooSmall(self.max_datagram_bytes.get()));
        }
        let item = self.state_limits.max_key_bytes.get() + self.state_limits.max_value_bytes.get();
        if item + 256 > self.max_datagram_bytes.get() {
            return Err(ConfigError::StateTooLargeForDatagram(item));
        }
        let datagram = self.max_datagram_bytes.get();
        if self.max_event_bytes + EVENT_OVERHEAD + ITEM_HEADROOM > datagram {
            return Err(ConfigError::EventTooLargeForDatagram(
                self.max_event_bytes,
                datagram,
            ));
        }
        if self.event_reorder_wait.is_zero() {
            return Err(ConfigError::Zero("event_reorder_wait"));
        }
        Ok(())
    }

    /// The foca configuration this one implies at `timing`.
    pub(crate) fn foca(&self, timing: &Timing) -> foca::Config {
        let mut c = foca::Config::simple();
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.num_indirect_probes = self.num_indirect_probes;
        c.max_transmissions = timing.retransmits;
        c.suspect_to_down_after = timing.suspicion_window;
        c.remove_down_after = Some(self.remove_down_after);
        c.max_packet_size =
            NonZeroUsize::new(self.max_datagram_bytes.get() - crate::node::wire::ENVELOPE_BYTES)
                .expect("validated above 512");
        // A member this node declares Down is told so ("you are Down"), as
        // is a member it holds Down that sends it anything: with Lifeguard
        // the member answers with a refutation, which brings it back if it
        // is alive (roster never sends this for a suspicion that was
        // refuted: see `Io::send_to`).
        c.notify_down_members = true;
        c.periodic_announce = None;
        c.periodic_announce_to_down_members = None;
        c.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_interval,
            num_members: self.gossip_fanout,
        });
        c
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for c in [Config::lan(), Config::wan(), Config::local()] {
            c.validate().unwrap();
        }
    }

    #[test]
    fn timing_follows_the_live_member_count() {
        let c = Config::lan();
        let small = c.timing(10);
        let big = c.timing(1000);
        assert_eq!(small.suspicion_window, Duration::from_secs(3));
        assert_eq!(big.suspicion_window, Duration::from_secs(9));
        assert_eq!(small.retransmits.get(), 6);
        assert_eq!(big.retransmits.get(), 18);
        assert_eq!(small.sync_interval, Duration::from_secs(10));
        assert_eq!(c.timing(32).sync_interval, Duration::from_secs(10));
        assert_eq!(c.timing(33).sync_interval, Duration::from_secs(20));
        assert_eq!(big.sync_interval, Duration::from_secs(60));
        // Never zero, whatever the count.
        for n in [0, 1, 2, 100_000] {
            let t = c.timing(n);
            assert!(!t.suspicion_window.is_zero());
            assert!(t.retransmits.get() >= 1);
        }
    }

    #[test]
    fn invalid_combinations_are_refused() {
        let mut c = Config::lan();
        c.probe_rtt = c.probe_period;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::RttNotBelowPeriod { .. })
        ));
        let mut c = Config::lan();
        c.gossip_interval = Duration::ZERO;
        assert_eq!(c.validate(), Err(ConfigError::Zero("gossip_interval")));
        let mut c = Config::lan();
        c.max_datagram_bytes = NonZeroUsize::new(100).unwrap();
        assert_eq!(c.validate(), Err(ConfigError::DatagramTooSmall(100)));
    }
}
