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

/// The initial voters: the `target` lowest `NodeId`s among `ids` that are
/// `eligible`, or `None` while fewer than `expect` are. One pass that asks
/// `eligible` only of the ids that would enter the lowest so far (a few
/// dozen of thousands), with no sort and no copy of the view: every node
/// runs this on every metadata tick until a metadata cluster forms. An id
/// given twice counts once (a view names each member once anyway).
pub fn initial_voters<'a>(
    ids: impl IntoIterator<Item = &'a NodeId>,
    target: usize,
    expect: usize,
    mut eligible: impl FnMut(&NodeId) -> bool,
) -> Option<Vec<NodeId>> {
    let (target, expect) = (target.max(1), expect.max(1));
    // The lowest `keep` eligible ids so far, in order: enough to tell
    // whether `expect` are eligible as well as to pick `target`.
    let keep = target.max(expect);
    let mut low: Vec<&NodeId> = Vec::with_capacity(keep + 1);
    for id in ids {
        let Err(at) = low.binary_search(&id) else {
            continue;
        };
        if at >= keep || !eligible(id) {
            continue;
        }
        low.insert(at, id);
        low.truncate(keep);
    }
    (low.len() >= expect).then(|| low.into_iter().take(target).cloned().collect())
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
    fn bootstrap_takes_the_lowest_eligible_ids() {
        let all = |_: &NodeId| true;
        let ids = [id("n5"), id("n1"), id("n3"), id("n2")];
        let v = initial_voters(&ids, 3, 3, all);
        assert_eq!(v, Some(vec![id("n1"), id("n2"), id("n3")]));
        assert_eq!(initial_voters(&[id("a")], 3, 1, all), Some(vec![id("a")]));
        // Too few eligible for the expected count.
        assert_eq!(initial_voters(&[id("a")], 3, 3, all), None);
        let not_n1 = |x: &NodeId| *x != id("n1");
        assert_eq!(
            initial_voters(&ids, 3, 3, not_n1),
            Some(vec![id("n2"), id("n3"), id("n5")])
        );
        assert_eq!(initial_voters(&ids, 3, 4, not_n1), None);
        // Fewer voters than expected members: the expected count still
        // has to be eligible.
        assert_eq!(initial_voters(&ids, 1, 4, all), Some(vec![id("n1")]));
        assert_eq!(initial_voters(&ids, 1, 4, not_n1), None);
        // A repeated id counts once.
        let twice = [id("b"), id("a"), id("b")];
        assert_eq!(initial_voters(&twice, 3, 3, all), None);
        assert_eq!(
            initial_voters(&twice, 3, 2, all),
            Some(vec![id("a"), id("b")])
        );
    }

    /// The one-pass choice equals sorting the eligible view and taking the
    /// lowest, on views of many sizes, orders and eligibilities; it asks
    /// for the eligibility of few ids.
    #[test]
    fn the_one_pass_choice_equals_sorting_the_view() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(7);
        for round in 0..200 {
            let n = rng.random_range(0..300usize);
            let ids: Vec<NodeId> = (0..n)
                .map(|_| id(&format!("m{}", rng.random_range(0..1000u32))))
                .collect();
            let banned: Vec<bool> = (0..1000).map(|_| rng.random_bool(0.2)).collect();
            let ok = |x: &NodeId| !banned[x.as_str()[1..].parse::<usize>().unwrap()];
            let (target, expect) = (rng.random_range(1..6), rng.random_range(0..8));
            let mut sorted: Vec<NodeId> = ids.iter().filter(|x| ok(x)).cloned().collect();
            sorted.sort();
            sorted.dedup();
            let want = (sorted.len() >= expect.max(1)).then(|| {
                sorted.truncate(target);
                sorted
            });
            let mut asked = 0;
            let got = initial_voters(&ids, target, expect, |x| {
                asked += 1;
                ok(x)
            });
            assert_eq!(got, want, "round {round}");
            assert!(
                n < 100 || asked < n / 2,
                "round {round}: asked {asked} of {n}"
            );
        }
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
