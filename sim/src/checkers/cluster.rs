//! Invariant: one metadata cluster. Every voter bootstraps the same Raft
//! cluster; a second one would split the metadata in two. Planted bug:
//! `SecondCluster`.

use std::collections::BTreeSet;

use roster::node::NodeId;

use crate::net::{Nanos, SEC};

/// The cluster ids bootstrapped so far.
#[derive(Debug, Default)]
pub struct OneCluster {
    clusters: BTreeSet<u64>,
}

impl OneCluster {
    /// Node `id` bootstrapped `cluster` at `now`.
    pub fn bootstrapped(&mut self, id: &NodeId, cluster: u64, now: Nanos) -> Result<(), String> {
        self.clusters.insert(cluster);
        if self.clusters.len() > 1 {
            return Err(format!(
                "a second metadata cluster formed on {id} at {:.1}s",
                now as f64 / SEC as f64
            ));
        }
        Ok(())
    }

    /// Clusters formed.
    pub fn formed(&self) -> usize {
        self.clusters.len()
    }

    /// The first cluster formed, if any.
    pub fn first(&self) -> Option<u64> {
        self.clusters.iter().next().copied()
    }
}
