//! Who bootstraps the metadata cluster and who its voters are. Pure
//! functions of a gossip view, so every node that holds the same view
//! reaches the same answer.

use std::time::Duration;

use crate::node::identity::NodeId;

/// A live member that may become a voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Who.
    pub id: NodeId,
    /// Its `zone` tag.
    pub zone: Option<String>,
    /// When it was last seen coming up (monotonic; lower is longer-lived).
    pub up_since: Duration,
}

/// A current voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// Who.
    pub id: NodeId,
    /// Its `zone` tag.
    pub zone: Option<String>,
    /// Whether gossip holds it Alive (not Down, not Left).
    pub healthy: bool,
    /// An operator asked for its removal (`roster voters remove`): once it
    /// is not healthy it goes even when no candidate replaces it.
    pub removal_asked: bool,
}

/// One membership change of the voter set, proposed by the leader one at a
/// time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoterChange {
    /// Add a voter.
    Add(NodeId),
    /// Replace a dead voter by a healthy one (joint consensus).
    Replace {
        /// The new voter.
        add: NodeId,
        /// The dead one.
        remove: NodeId,
    },
    /// Remove a dead voter above the target.
    Remove(NodeId),
}

/// The initial voters: the `target` lowest `NodeId`s of the eligible view.
pub fn bootstrap_set(eligible: &[NodeId], target: usize) -> Vec<NodeId> {
    let mut v = eligible.to_vec();
    v.sort();
    v.dedup();
    v.truncate(target.max(1));
    v
}

/// The best candidate: one in a zone no healthy voter covers, then the
/// longest-lived, then the lowest `NodeId`.
fn best<'a>(voters: &[Voter], candidates: &'a [Candidate]) -> Option<&'a Candidate> {
    let covered =
        |z: &Option<String>| z.is_some() && voters.iter().any(|v| v.healthy && v.zone == *z);
    candidates
        .iter()
        .filter(|c| !voters.iter().any(|v| v.id == c.id))
        .min_by(|a, b| {
            (covered(&a.zone), a.up_since, &a.id).cmp(&(covered(&b.zone), b.up_since, &b.id))
        })
}

/// The next change towards `target` healthy voters, or `None` when the set
/// is as good as the view allows.
pub fn next_change(
    voters: &[Voter],
    candidates: &[Candidate],
    target: usize,
) -> Option<VoterChange> {
    let target = target.max(1);
    // Dead voters an operator asked to remove go first.
    let dead = voters
        .iter()
        .filter(|v| !v.healthy)
        .min_by(|a, b| (!a.removal_asked, &a.id).cmp(&(!b.removal_asked, &b.id)));
    let pick = best(voters, candidates);
    match (dead, pick) {
        (Some(d), Some(c)) => Some(VoterChange::Replace {
            add: c.id.clone(),
            remove: d.id.clone(),
        }),
        (Some(d), None) if voters.len() > target || (d.removal_asked && voters.len() > 1) => {
            Some(VoterChange::Remove(d.id.clone()))
        }
        (None, Some(c)) if voters.len() < target => Some(VoterChange::Add(c.id.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn cand(s: &str, zone: Option<&str>, up: u64) -> Candidate {
        Candidate {
            id: id(s),
            zone: zone.map(str::to_owned),
            up_since: Duration::from_secs(up),
        }
    }

    fn voter(s: &str, zone: Option<&str>, healthy: bool) -> Voter {
        Voter {
            id: id(s),
            zone: zone.map(str::to_owned),
            healthy,
            removal_asked: false,
        }
    }

    #[test]
    fn bootstrap_takes_the_lowest_ids() {
        let v = bootstrap_set(&[id("n5"), id("n1"), id("n3"), id("n2")], 3);
        assert_eq!(v, vec![id("n1"), id("n2"), id("n3")]);
        assert_eq!(bootstrap_set(&[id("a")], 3), vec![id("a")]);
    }

    #[test]
    fn grows_to_target_preferring_new_zones_then_age() {
        let voters = [voter("a", Some("z1"), true)];
        let c = [
            cand("b", Some("z1"), 1),
            cand("c", Some("z2"), 5),
            cand("d", Some("z2"), 3),
        ];
        assert_eq!(next_change(&voters, &c, 3), Some(VoterChange::Add(id("d"))));
        let voters = [
            voter("a", None, true),
            voter("b", None, true),
            voter("c", None, true),
        ];
        assert_eq!(next_change(&voters, &[cand("d", None, 0)], 3), None);
    }

    #[test]
    fn replaces_a_dead_voter_and_only_removes_above_target() {
        let voters = [
            voter("a", None, true),
            voter("b", None, false),
            voter("c", None, true),
        ];
        assert_eq!(
            next_change(&voters, &[cand("d", None, 0)], 3),
            Some(VoterChange::Replace {
                add: id("d"),
                remove: id("b")
            })
        );
        assert_eq!(next_change(&voters, &[], 3), None);
        assert_eq!(
            next_change(&voters, &[], 2),
            Some(VoterChange::Remove(id("b")))
        );
    }

    #[test]
    fn a_removal_asked_for_goes_below_target_but_never_empties_the_set() {
        let asked = |s: &str| Voter {
            removal_asked: true,
            ..voter(s, None, false)
        };
        let voters = [voter("a", None, true), voter("b", None, false), asked("c")];
        // The asked-for dead voter goes first, with no candidate, at target.
        assert_eq!(
            next_change(&voters, &[], 3),
            Some(VoterChange::Remove(id("c")))
        );
        // With a candidate it is replaced instead.
        assert_eq!(
            next_change(&voters, &[cand("d", None, 0)], 3),
            Some(VoterChange::Replace {
                add: id("d"),
                remove: id("c")
            })
        );
        // An asked-for voter that is healthy again stays.
        let back = [
            voter("a", None, true),
            Voter {
                removal_asked: true,
                ..voter("c", None, true)
            },
        ];
        assert_eq!(next_change(&back, &[], 3), None);
        // The last voter is never removed.
        assert_eq!(next_change(&[asked("c")], &[], 3), None);
    }
}
