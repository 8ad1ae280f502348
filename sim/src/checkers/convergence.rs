//! Invariant: once the faults end, the live nodes converge. Every running
//! node lists every other running node Alive at the identity (name,
//! address, generation) it runs with and no other member active, and all
//! hold the same state. Planted bugs: `NoHeal` (in the world), and
//! `HeldSuspect`, `StaleIdentity`, `DivergentState` (in what the first
//! running node lists).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use roster::node::{Generation, Identity, MemberState, Node};

use crate::plant::Plant;

/// Why running nodes have not converged.
pub enum Divergence {
    /// A node lists a wrong number of members active.
    Count,
    /// A node lists a member at a wrong identity or state, or holds other
    /// state.
    View(String),
}

/// What keeps `running` (the running nodes) from having converged, with
/// (`with_state`) or without their state, if anything. `plant` is one of
/// the plants that corrupt what the first running node lists.
pub fn divergence(running: &[&Node], with_state: bool, plant: Option<Plant>) -> Option<Divergence> {
    let live = running.len();
    // Counts first: cheap, and they differ until a join or a heal is
    // nearly done.
    if running.iter().any(|node| node.active_members() != live - 1) {
        return Some(Divergence::Count);
    }
    let mut hash = None;
    for (k, node) in running.iter().enumerate() {
        let me = &node.identity().id;
        for (l, other) in running.iter().enumerate() {
            if l == k {
                continue;
            }
            let truth = other.identity();
            let mut view = node.member(&truth.id).map(|v| (v.identity, v.state));
            if let (0, 1, Some((id, state))) = (k, l, view.as_mut()) {
                match plant {
                    Some(Plant::HeldSuspect) => *state = MemberState::Suspect,
                    Some(Plant::StaleIdentity) => {
                        id.generation = Generation(id.generation.0.saturating_sub(1));
                    }
                    _ => {}
                }
            }
            match view {
                Some((id, MemberState::Alive)) if id == *truth => {}
                Some((id, state)) => {
                    return Some(Divergence::View(format!(
                        "{me} lists {id} {state:?}, which runs as {truth}"
                    )));
                }
                None => {
                    return Some(Divergence::View(format!("{me} does not list {truth}")));
                }
            }
        }
        if with_state {
            let mut h = node.state_hash();
            if k == 0 && plant == Some(Plant::DivergentState) {
                h ^= 1;
            }
            if *hash.get_or_insert(h) != h {
                return Some(Divergence::View(format!(
                    "{me} holds other state than {}",
                    running[0].identity().id
                )));
            }
        }
    }
    None
}

/// Whether `running` have converged: [`divergence`] (without a plant)
/// finds nothing. One pass over each node's listing against the running
/// identities, instead of a lookup per pair of nodes: the check runs many
/// times while thousands of nodes join.
pub fn converged(running: &[&Node], with_state: bool) -> bool {
    let live = running.len();
    if running.iter().any(|node| node.active_members() != live - 1) {
        return false;
    }
    // Looked up only, never iterated. Keyed by each name's 128-bit key
    // (the name itself for short names) with a plain mix: hashing the name
    // string took most of the check at 10,000 nodes. Two names with one key
    // would only read as not converged (the identities are compared).
    let truth: HashMap<u128, &Identity, BuildHasherDefault<KeyMix>> = running
        .iter()
        .map(|n| (key(n.identity()), n.identity()))
        .collect();
    let mut hash = None;
    for node in running {
        let me = &node.identity().id;
        let mut alike = 0;
        for (id, state) in node.listed() {
            if id.id == *me {
                continue;
            }
            if let Some(t) = truth.get(&key(id)) {
                // A running member listed at another identity or state.
                if *t != id || state != MemberState::Alive {
                    return false;
                }
                alike += 1;
            }
        }
        // A listing names each member once: every other running node is
        // listed alike exactly when `live - 1` are.
        if alike != live - 1 {
            return false;
        }
        if with_state {
            let h = node.state_hash();
            if *hash.get_or_insert(h) != h {
                return false;
            }
        }
    }
    true
}

/// A member's name as one number, for [`converged`]'s lookups.
fn key(identity: &Identity) -> u128 {
    let [hi, lo] = identity.id.key();
    (u128::from(hi) << 64) | u128::from(lo)
}

/// [`converged`]'s hasher: a mix of the key's two halves.
#[derive(Default)]
struct KeyMix(u64);

impl Hasher for KeyMix {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u128(&mut self, k: u128) {
        let mixed =
            ((k >> 64) as u64 ^ (k as u64).rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = mixed ^ (mixed >> 31);
    }
}

/// How many of `running` list a wrong number of members active, with an
/// example: members it holds active that run under no such identity
/// (ghosts), and running members it holds Down.
pub fn count_divergence(running: &[&Node]) -> String {
    let live = running.len();
    let runs_as = |id: &roster::node::Identity| running.iter().any(|x| x.identity() == id);
    let runs_named = |name: &roster::node::NodeId| running.iter().any(|x| x.identity().id == *name);
    let mut short = 0;
    let mut example = String::new();
    for node in running {
        if node.active_members() == live - 1 {
            continue;
        }
        short += 1;
        if !example.is_empty() {
            continue;
        }
        let ghosts: Vec<String> = node
            .swim_members()
            .filter(|(id, _, active)| *active && !runs_as(id))
            .map(|(id, inc, _)| {
                let view = node
                    .member(&id.id)
                    .map(|v| (v.state, v.suspect_incarnation));
                format!("{id} inc={inc} view={view:?}")
            })
            .take(3)
            .collect();
        example.push_str(&format!("ghosts {ghosts:?}; "));
        let downs: Vec<String> = node
            .members()
            .filter(|m| m.state == MemberState::Down && runs_named(&m.identity.id))
            .map(|m| m.identity.to_string())
            .take(3)
            .collect();
        example += &format!(
            "{} sees {} active of {} (running held Down: {:?})",
            node.identity().id,
            node.active_members(),
            live - 1,
            downs
        );
    }
    format!("{short} nodes with a wrong member count; {example}")
}
