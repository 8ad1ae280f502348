//! Invariant: a node's (generation, incarnation) only grows, across
//! restarts too: a node that runs under an identity older than one it ran
//! under would lose to its own stale rumours. Planted bug:
//! `StaleGeneration`.

use roster::node::NodeId;

/// The (generation, incarnation) each node last ran at.
#[derive(Debug, Default)]
pub struct IdentityGrows {
    last: Vec<(u64, u32)>,
}

impl IdentityGrows {
    /// Node `n` (named `id`) runs at `now` = (generation, incarnation)
    /// after a step.
    pub fn observe(&mut self, n: usize, id: &NodeId, now: (u64, u32)) -> Result<(), String> {
        let prev = std::mem::replace(super::slot(&mut self.last, n), now);
        if now < prev {
            return Err(format!(
                "incarnation went back on {id}: {prev:?} -> {now:?}"
            ));
        }
        Ok(())
    }
}
