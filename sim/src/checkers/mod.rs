//! The simulator's checkers, one file per invariant.
//!
//! A checker holds only what its invariant needs and judges the values the
//! world hands it: what a node reported after a step or in an event, what a
//! client was told, what the nodes list at the end. It returns the
//! violation's description; the world records it with the virtual time in
//! [`Checks`]. When each checker runs is the world's business (per step in
//! `world/mod.rs`, per event in `world/events.rs`, periodically and at the
//! end in `world/checks.rs`).
//!
//! Each invariant has a planted bug ([`crate::plant`]) and a canary test in
//! `sim/tests/canaries.rs` that shows the checker reports it:
//!
//! | invariant | file | planted bug |
//! |---|---|---|
//! | a node's HLC never goes back | [`hlc`] | `HlcBack` |
//! | a node's (generation, incarnation) only grows | [`identity`] | `StaleGeneration` |
//! | every member a node reports is a simulated node | [`known_members`] | `UnknownMember` |
//! | the generation a node holds a member at only grows | [`generations`] | `GenerationBack` |
//! | one metadata cluster | [`cluster`] | `SecondCluster` |
//! | one leader per term | [`leaders`] | `SecondLeader` |
//! | one entry per log index | [`entries`] | `DivergentApply` |
//! | a write is stamped after every remote write its node accepted | [`causality`] | `CausalityBack` |
//! | the workload's writes are accepted | [`writes`] | `RefusedWrite` |
//! | acknowledged metadata writes are applied, and every voter holds them | [`acked`] | `LostWrite`, `UnappliedWrite` |
//! | the metadata history is linearizable | [`linearizable`] | `StaleReads` |
//! | live nodes converge: identities, states and state | [`convergence`] | `NoHeal`, `HeldSuspect`, `StaleIdentity`, `DivergentState` |
//! | no healthy, connected member is declared Down | [`false_downs`] | `FalseDown` |
//! | every state write reaches every node that ran through it | [`delivery`] | `LostDelta` |
//! | a user event is delivered at most once, in its sender's order | [`user_events`] | `DuplicateEvent` |
//! | only the members a query selects answer it | [`queries`] | `WrongAnswer` |

pub mod acked;
pub mod causality;
pub mod cluster;
pub mod convergence;
pub mod delivery;
pub mod entries;
pub mod false_downs;
pub mod generations;
pub mod hlc;
pub mod identity;
pub mod known_members;
pub mod leaders;
pub mod linearizable;
pub mod queries;
pub mod user_events;
pub mod writes;

use crate::net::{Nanos, SEC};

/// The violations a run's checkers reported.
#[derive(Debug, Default, Clone)]
pub struct Checks {
    /// Named violations, first few kept with detail.
    pub violations: Vec<String>,
    /// Count of all violations.
    pub count: u64,
}

impl Checks {
    /// Records a violation seen at virtual time `now`.
    pub fn fail(&mut self, now: Nanos, what: String) {
        let what = format!("t={:.3}s {what}", now as f64 / SEC as f64);
        self.count += 1;
        if self.violations.len() < 20 {
            self.violations.push(what);
        }
    }
}

/// The state of every checker of a run.
#[derive(Debug, Default)]
pub struct Checkers {
    pub hlc: hlc::HlcMonotonic,
    pub identity: identity::IdentityGrows,
    pub generations: generations::SeenGenerations,
    pub cluster: cluster::OneCluster,
    pub leaders: leaders::OneLeaderPerTerm,
    pub entries: entries::OneEntryPerIndex,
    pub causality: causality::Causality,
    pub acked: acked::AckedWrites,
    pub history: linearizable::History,
    pub false_downs: false_downs::FalseDowns,
    pub delivery: delivery::Delivery,
    pub user_events: user_events::UserEvents,
    pub queries: queries::Queries,
}

impl Checkers {
    /// Node `n` started again as a new process: what it held in memory
    /// (its clock, the members it saw, the stamps it accepted) is gone.
    pub fn restarted(&mut self, n: usize) {
        self.hlc.restarted(n);
        self.generations.restarted(n);
        self.causality.restarted(n);
        self.user_events.restarted(n);
    }
}

/// Entry `n` of a per-node table, grown with defaults as nodes are added.
fn slot<T: Default + Clone>(v: &mut Vec<T>, n: usize) -> &mut T {
    if v.len() <= n {
        v.resize(n + 1, T::default());
    }
    &mut v[n]
}
