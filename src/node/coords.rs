//! Network coordinates: Vivaldi (Dabek, Cox, Kaashoek, Morris, SIGCOMM
//! 2004) with the height, adjustment and gravity terms Serf adds, so any
//! member can estimate the round trip to any other without measuring it.
//!
//! Each node places itself in an 8-dimensional Euclidean space plus a
//! height (the latency of its own access link). A probe's measured round
//! trip to a member, with that member's coordinate, moves this node's
//! coordinate like a spring: towards the member when the estimate is too
//! long, away when it is too short, by a step weighted by both nodes'
//! confidence (their error estimates). Samples pass a per-member median
//! filter of the last three (one delayed packet moves nothing), and
//! round trips outside (0, 10 s] are refused. The adjustment term is the
//! mean of the last 20 residuals (half of it applies per side); gravity
//! pulls every coordinate gently towards the origin so the whole system
//! does not drift.
//!
//! Coordinates reach other members with the probes, as in Serf: a probed
//! member answers with its coordinate (`Coord`, about 70 bytes) and asks
//! for the prober's, which times a second round trip; each keeps the
//! coordinates it was sent.
//!
//! Everything here is deterministic: the one random choice (the direction
//! to move when two coordinates coincide) comes from the node's seeded RNG.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::identity::NodeId;

/// Dimensions of the Euclidean part.
pub const DIMENSIONS: usize = 8;

/// Largest error estimate (the starting one: no confidence).
const ERROR_MAX: f64 = 1.5;
/// Weight of a sample on the error estimate.
const CE: f64 = 0.25;
/// Weight of a sample on the position.
const CC: f64 = 0.25;
/// Residuals averaged for the adjustment term.
const ADJUSTMENT_WINDOW: usize = 20;
/// Smallest height, seconds (10 µs).
const HEIGHT_MIN: f64 = 10.0e-6;
/// Samples per member in the median filter.
const FILTER: usize = 3;
/// Gravity's scale, seconds: the pull grows with the square of the
/// distance from the origin over this.
const GRAVITY_RHO: f64 = 150.0;
/// Longest round trip accepted, seconds.
const RTT_MAX: f64 = 10.0;
/// Members whose recent samples are kept, at most (past it the filters
/// start again).
const FILTERS_MAX: usize = 1024;
/// Below this, two coordinates coincide.
const ZERO: f64 = 1.0e-6;

/// A node's network coordinate. Distances are in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Coordinate {
    /// The Euclidean part.
    pub vec: [f64; DIMENSIONS],
    /// The node's access-link latency.
    pub height: f64,
    /// How far off the node believes its coordinate to be (relative).
    pub error: f64,
    /// A correction added to every distance from this node (half the mean
    /// residual of its recent samples).
    pub adjustment: f64,
}

impl Default for Coordinate {
    fn default() -> Self {
        Coordinate {
            vec: [0.0; DIMENSIONS],
            height: HEIGHT_MIN,
            error: ERROR_MAX,
            adjustment: 0.0,
        }
    }
}

/// A coordinate as it travels: each component's `f32` bits
/// (the Euclidean part, then height, error and adjustment), 44 bytes or
/// fewer in postcard.
pub type Packed = [u32; DIMENSIONS + 3];

impl Coordinate {
    /// The coordinate packed for the wire (single precision: a microsecond
    /// or better at every distance it holds).
    pub fn pack(&self) -> Packed {
        let mut p = [0u32; DIMENSIONS + 3];
        for (o, v) in p.iter_mut().zip(self.vec) {
            *o = (v as f32).to_bits();
        }
        p[DIMENSIONS] = (self.height as f32).to_bits();
        p[DIMENSIONS + 1] = (self.error as f32).to_bits();
        p[DIMENSIONS + 2] = (self.adjustment as f32).to_bits();
        p
    }

    /// A packed coordinate, if every component is valid.
    pub fn unpack(p: &Packed) -> Option<Coordinate> {
        let f = |i: usize| f64::from(f32::from_bits(p[i]));
        let c = Coordinate {
            vec: std::array::from_fn(f),
            height: f(DIMENSIONS),
            error: f(DIMENSIONS + 1),
            adjustment: f(DIMENSIONS + 2),
        };
        c.is_valid().then_some(c)
    }

    /// Whether every component is finite and in range (a coordinate read
    /// from the network is checked before use).
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|v| v.is_finite())
            && self.height.is_finite()
            && self.height >= 0.0
            && self.error.is_finite()
            && self.error >= 0.0
            && self.adjustment.is_finite()
    }

    /// The estimated round trip to `other`.
    pub fn rtt_to(&self, other: &Coordinate) -> Duration {
        let raw = self.raw_distance(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        let secs = if adjusted > 0.0 { adjusted } else { raw };
        Duration::from_secs_f64(secs.clamp(0.0, RTT_MAX))
    }

    fn raw_distance(&self, other: &Coordinate) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// Moves by `force` along the direction from `other` to this
    /// coordinate (a random one when they coincide).
    fn apply_force(&mut self, force: f64, other: &Coordinate, rng: &mut impl RngExt) {
        let d = diff(&self.vec, &other.vec);
        let mag = magnitude(&d);
        let unit = if mag > ZERO {
            d.map(|x| x / mag)
        } else {
            let r: [f64; DIMENSIONS] = std::array::from_fn(|_| rng.random_range(-1.0..1.0));
            let m = magnitude(&r);
            if m > ZERO { r.map(|x| x / m) } else { unit_x() }
        };
        for (v, u) in self.vec.iter_mut().zip(unit) {
            *v += u * force;
        }
        if mag > ZERO {
            self.height = (self.height + other.height) * force / mag + self.height;
        }
        self.height = self.height.max(HEIGHT_MIN);
    }
}

fn unit_x() -> [f64; DIMENSIONS] {
    let mut u = [0.0; DIMENSIONS];
    u[0] = 1.0;
    u
}

fn diff(a: &[f64; DIMENSIONS], b: &[f64; DIMENSIONS]) -> [f64; DIMENSIONS] {
    std::array::from_fn(|i| a[i] - b[i])
}

fn magnitude(v: &[f64; DIMENSIONS]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// This node's coordinate and what updates it.
#[derive(Debug, Clone, Default)]
pub struct Vivaldi {
    coord: Coordinate,
    /// The last samples (seconds) per member, for the median filter.
    filters: BTreeMap<NodeId, Vec<f64>>,
    /// The last residuals (seconds), for the adjustment term.
    residuals: Vec<f64>,
    next_residual: usize,
    /// Samples applied.
    pub updates: u64,
    /// Samples refused: a round trip out of range or an invalid coordinate.
    pub refused: u64,
}

impl Vivaldi {
    /// This node's coordinate.
    pub fn coordinate(&self) -> Coordinate {
        self.coord
    }

    /// A probe measured `rtt` to `peer`, whose coordinate is `theirs`.
    /// Returns whether the sample was used.
    pub fn sample(
        &mut self,
        peer: &NodeId,
        theirs: &Coordinate,
        rtt: Duration,
        rng: &mut impl RngExt,
    ) -> bool {
        let rtt = rtt.as_secs_f64();
        if !(rtt > 0.0 && rtt <= RTT_MAX && theirs.is_valid()) {
            self.refused += 1;
            return false;
        }
        let rtt = self.filtered(peer, rtt);
        self.update_position(theirs, rtt, rng);
        self.update_adjustment(theirs, rtt);
        self.update_gravity(rng);
        if !self.coord.is_valid() {
            // Numerical trouble (it should not happen): start over rather
            // than spread a broken coordinate.
            self.coord = Coordinate::default();
        }
        self.updates += 1;
        true
    }

    /// The median of the last [`FILTER`] samples to `peer`, `rtt` included.
    fn filtered(&mut self, peer: &NodeId, rtt: f64) -> f64 {
        if self.filters.len() >= FILTERS_MAX && !self.filters.contains_key(peer) {
            self.filters.clear();
        }
        let f = self.filters.entry(peer.clone()).or_default();
        f.push(rtt);
        if f.len() > FILTER {
            f.remove(0);
        }
        let mut sorted = f.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn update_position(&mut self, theirs: &Coordinate, rtt: f64, rng: &mut impl RngExt) {
        let dist = self.coord.raw_distance(theirs);
        let total = (self.coord.error + theirs.error).max(ZERO);
        let weight = self.coord.error / total;
        let relative = (dist - rtt).abs() / rtt;
        self.coord.error =
            (CE * weight * relative + self.coord.error * (1.0 - CE * weight)).min(ERROR_MAX);
        let force = CC * weight * (rtt - dist);
        self.coord.apply_force(force, theirs, rng);
    }

    fn update_adjustment(&mut self, theirs: &Coordinate, rtt: f64) {
        let residual = rtt - self.coord.raw_distance(theirs);
        if self.residuals.len() < ADJUSTMENT_WINDOW {
            self.residuals.push(residual);
        } else {
            self.residuals[self.next_residual] = residual;
        }
        self.next_residual = (self.next_residual + 1) % ADJUSTMENT_WINDOW;
        self.coord.adjustment =
            self.residuals.iter().sum::<f64>() / (2.0 * ADJUSTMENT_WINDOW as f64);
    }

    fn update_gravity(&mut self, rng: &mut impl RngExt) {
        let origin = Coordinate::default();
        let dist = self.coord.raw_distance(&origin);
        let force = -(dist / GRAVITY_RHO).powi(2);
        self.coord.apply_force(force, &origin, rng);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn id(i: usize) -> NodeId {
        NodeId::new(format!("n{i}")).expect("valid")
    }

    /// Nodes on a line, 10 ms apart (round trips), sampling each other in
    /// turn: the estimates come within 15% of the truth.
    #[test]
    fn coordinates_converge_on_a_line() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        let n = 8;
        let truth = |i: usize, j: usize| 0.010 * (i as f64 - j as f64).abs() + 0.001;
        let mut nodes: Vec<Vivaldi> = (0..n).map(|_| Vivaldi::default()).collect();
        for round in 0..400 {
            for i in 0..n {
                let j = (i + 1 + round % (n - 1)) % n;
                let theirs = nodes[j].coordinate();
                let rtt = Duration::from_secs_f64(truth(i, j));
                assert!(nodes[i].sample(&id(j), &theirs, rtt, &mut rng));
            }
        }
        let mut worst: f64 = 0.0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    let est = nodes[i].coordinate().rtt_to(&nodes[j].coordinate());
                    let err = (est.as_secs_f64() - truth(i, j)).abs() / truth(i, j);
                    worst = worst.max(err);
                }
            }
        }
        assert!(worst < 0.15, "worst relative error {worst}");
        assert!(nodes[0].coordinate().error < 0.5);
    }

    #[test]
    fn bad_samples_are_refused_and_one_outlier_is_filtered() {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
        let mut v = Vivaldi::default();
        let c = Coordinate::default();
        assert!(!v.sample(&id(1), &c, Duration::ZERO, &mut rng));
        assert!(!v.sample(&id(1), &c, Duration::from_secs(11), &mut rng));
        let mut broken = c;
        broken.vec[0] = f64::NAN;
        assert!(!v.sample(&id(1), &broken, Duration::from_millis(5), &mut rng));
        assert_eq!(v.refused, 3);
        assert_eq!(v.filtered(&id(2), 0.010), 0.010);
        assert_eq!(v.filtered(&id(2), 0.010), 0.010);
        assert_eq!(
            v.filtered(&id(2), 5.0),
            0.010,
            "one late packet moves nothing"
        );
    }

    #[test]
    fn a_coordinate_packs_and_unpacks_and_a_broken_one_is_refused() {
        let mut c = Coordinate::default();
        c.vec[3] = 0.25;
        c.adjustment = -0.001;
        let back = Coordinate::unpack(&c.pack()).expect("valid");
        assert!((back.vec[3] - 0.25).abs() < 1e-7);
        assert!((back.adjustment + 0.001).abs() < 1e-7);
        let mut p = c.pack();
        p[0] = f32::NAN.to_bits();
        assert_eq!(Coordinate::unpack(&p), None);
        p[0] = 0;
        p[DIMENSIONS] = (-1.0f32).to_bits();
        assert_eq!(Coordinate::unpack(&p), None, "a negative height");
    }
}
