//! Planted bugs: canaries that prove each checker can fail.
//!
//! A checker that always passes looks exactly like a system without bugs.
//! Each [`Plant`] breaks, once in an otherwise normal run, the one invariant
//! a checker guards, and the canary tests (`sim/tests/canaries.rs`) show the
//! checker reports it with the seed and the virtual time.
//!
//! Two kinds of plant:
//! - **in the world**: the simulated environment or client really does the
//!   wrong thing (a node restarts under an older generation, clients read
//!   a node's local copy and call it linearizable, a partition never heals,
//!   a client writes a reserved key);
//! - **in the observation**: one value the checker reads from a node (an
//!   HLC, an event, a member's listing, an acknowledgement) is replaced by
//!   the value a node with that bug would report. Bugs inside `Node` cannot
//!   be planted from outside it without a hook in the core, and the checker
//!   only ever sees what a node reports, so this is what it would see.
//!
//! A plant fires at the first opportunity at or after [`PLANT_AT`] (the
//! world-side plants at fixed points of the run, as documented per
//! variant), at most once, except [`Plant::StaleReads`], which holds for
//! the whole run.

use crate::net::{Nanos, SEC};

/// When one-shot plants arm: after the cluster has formed.
pub const PLANT_AT: Nanos = 25 * SEC;

/// One planted bug (`roster-sim run --plant NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Plant {
    /// Observed: a node reports its HLC at half its value for one step.
    /// Guarded by "HLC monotonic per node".
    HlcBack,
    /// World: a running node crashes and restarts at once under a
    /// generation one lower than the one it ran (its identity file restored
    /// from an old copy). Guarded by "(generation, incarnation) only grows".
    StaleGeneration,
    /// Observed: a node reports a member up again at a generation one lower
    /// than it saw before. Guarded by "generations a node sees only grow".
    GenerationBack,
    /// Observed: a node reports a member no simulated node is. Guarded by
    /// "members are simulated nodes".
    UnknownMember,
    /// Observed: a node reports bootstrapping a metadata cluster under
    /// another cluster id. Guarded by "one metadata cluster".
    SecondCluster,
    /// Observed: a Raft follower reports itself leader of the term another
    /// node leads. Guarded by "one leader per term".
    SecondLeader,
    /// Observed: a node reports applying another value at an index others
    /// applied. Guarded by "every node applies the same entry at an index".
    DivergentApply,
    /// Observed: a node's state write is reported stamped at the newest
    /// remote stamp it had accepted. Guarded by "HLC causality".
    CausalityBack,
    /// World: a node's application writes a reserved key, which the node
    /// refuses. Guarded by "writes are accepted".
    RefusedWrite,
    /// Observed: the client records an acknowledged metadata write with a
    /// value it did not write. Guarded by "acknowledged writes are what was
    /// applied".
    LostWrite,
    /// Observed: the client records an acknowledged metadata write at an
    /// index no voter reaches. Guarded by "every voter holds every
    /// acknowledged write".
    UnappliedWrite,
    /// World: every client read is served from the node's local copy
    /// (`ReadMode::Stale`) but recorded as linearizable. Guarded by the
    /// linearizability check of the metadata history.
    StaleReads,
    /// World: when the faults end, one running node is cut off from the
    /// rest until the end of the run. Guarded by "live nodes converge".
    NoHeal,
    /// Observed: at the final check, one node lists one running member
    /// Suspect. Guarded by "live nodes converge" (states, not counts).
    HeldSuspect,
    /// Observed: at the final check, one node lists one running member at
    /// the generation before the one it runs. Guarded by "live nodes
    /// converge" (identities, not counts).
    StaleIdentity,
    /// Observed: at the final check, one node's state digest differs.
    /// Guarded by "live nodes converge" (state).
    DivergentState,
    /// Observed: a node reports a healthy, connected member Down. Guarded
    /// by the false-Down count.
    FalseDown,
    /// Observed: one node's receipt of one state write is never reported.
    /// Guarded by the `delta` scenario's coverage check.
    LostDelta,
    /// Observed: a node reports one user event a second time. Guarded by
    /// "a user event is delivered at most once, in its sender's order".
    DuplicateEvent,
    /// Observed: the asker reports an answer to a tag-filtered query from
    /// a member the filter did not select. Guarded by "only the members a
    /// query selects answer it".
    WrongAnswer,
}

impl Plant {
    /// Whether the plant breaks the world rather than an observation.
    pub fn in_world(self) -> bool {
        matches!(
            self,
            Plant::StaleGeneration | Plant::RefusedWrite | Plant::StaleReads | Plant::NoHeal
        )
    }
}

/// The plant of a run and whether it has fired.
#[derive(Debug, Default, Clone, Copy)]
pub struct Planted {
    plant: Option<Plant>,
    fired: bool,
}

impl Planted {
    /// A run with `plant`.
    pub fn new(plant: Option<Plant>) -> Self {
        Planted {
            plant,
            fired: false,
        }
    }

    /// Whether `p` is this run's plant.
    pub fn is(&self, p: Plant) -> bool {
        self.plant == Some(p)
    }

    /// Whether `p` is this run's plant, armed at `now` and not fired yet
    /// (it does not fire it).
    pub fn armed(&self, p: Plant, now: Nanos) -> bool {
        self.is(p) && !self.fired && now >= PLANT_AT
    }

    /// Fires `p` if it is armed at `now`: true once.
    pub fn fire(&mut self, p: Plant, now: Nanos) -> bool {
        let go = self.armed(p, now);
        self.fired |= go;
        go
    }

    /// Fires `p` regardless of time (the plants checked at the end).
    pub fn fire_at_end(&mut self, p: Plant) -> bool {
        let go = self.is(p) && !self.fired;
        self.fired |= go;
        go
    }

    /// Whether the plant fired.
    pub fn fired(&self) -> bool {
        self.fired
    }
}
