//! Lifeguard's state on foca's path, and the decisions that read only it.
//!
//! foca implements SWIM without Lifeguard (Dadgar, Phillips, Currey, 2018).
//! Roster adds it around foca: a final check of a suspect before a Down
//! verdict, local health, verdicts adopted from others, refutations of
//! "you are Down" messages. [`Lifeguard`] holds what that layer remembers
//! between packets and decides what needs only that memory (does this
//! accuser count against health again, may this node refute again, which
//! final check an answer belongs to); the node's side
//! (`node/lifeguard.rs`) carries the decisions out on foca, the member
//! listing, the timers and the outgoing queue. The native engine
//! (`engine/`) implements Lifeguard itself and uses none of this.

use std::collections::BTreeMap;
use std::time::Duration;

use super::identity::{Identity, Incarnation, NodeId};

/// A final check in progress: the suspect was asked, directly and
/// through relays, whether it is alive.
#[derive(Debug, Clone)]
struct FinalCheck {
    identity: Identity,
    nonce: u64,
    /// The incarnation the suspect answered with, once it answered.
    answered: Option<Incarnation>,
}

/// How a final check ended (see [`Lifeguard::end_check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckEnd {
    /// Another check of the member replaced this one; it decides.
    Superseded,
    /// The suspect answered at this incarnation.
    Answered(Incarnation),
    /// No answer came.
    Silent,
}

/// Lifeguard's memory on foca's path (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Lifeguard {
    /// Final checks in progress, by suspect.
    checks: BTreeMap<NodeId, FinalCheck>,
    /// Members another node declared Down (a gossiped Down), at the highest
    /// incarnation reported, while the suspicion lasts here.
    reported_down: BTreeMap<NodeId, Incarnation>,
    /// Suspicions read from a packet (`true`: a Down verdict), acted on
    /// once foca has applied the packet.
    gossiped: Vec<(Identity, Incarnation, bool)>,
    /// The foca timer token the suspicion timers of the members listed
    /// Suspect were armed with.
    token: foca::TimerToken,
    /// When this node last raised its incarnation to refute a claim.
    last_refutation: Option<Duration>,
    /// Members that told this node it is Down, and when that last counted
    /// against its health.
    accusers: BTreeMap<NodeId, Duration>,
    /// When a well-formed message from a peer last arrived.
    last_heard: Option<Duration>,
}

impl Lifeguard {
    /// `accuser` told this node, at `now`, that it is Down. Whether that
    /// counts against this node's health: many members holding it Down is
    /// evidence that it is the problem, but one member repeating itself
    /// (a member that cannot hear answers every message with "you are
    /// Down") counts once per suspicion `window`.
    pub(crate) fn accused(&mut self, accuser: &NodeId, now: Duration, window: Duration) -> bool {
        if self
            .accusers
            .get(accuser)
            .is_some_and(|t| now < *t + window)
        {
            return false;
        }
        self.accusers.retain(|_, t| now < *t + window);
        self.accusers.insert(accuser.clone(), now);
        true
    }

    /// This node raised its incarnation at `now` to refute a claim.
    pub(crate) fn refuted(&mut self, now: Duration) {
        self.last_refutation = Some(now);
    }

    /// Whether this node refuted within `period` before `now` (one
    /// refutation per probe period: the raised incarnation is already
    /// spreading).
    pub(crate) fn refuted_within(&self, now: Duration, period: Duration) -> bool {
        self.last_refutation.is_some_and(|t| now < t + period)
    }

    /// A well-formed message from a peer arrived at `now`.
    pub(crate) fn heard(&mut self, now: Duration) {
        self.last_heard = Some(now);
    }

    /// Whether no message from any peer arrived since `since`.
    pub(crate) fn silent_since(&self, since: Duration) -> bool {
        self.last_heard.is_none_or(|t| t < since)
    }

    /// Another member declared `id` Down at `incarnation`: the highest
    /// such incarnation is kept while the suspicion lasts.
    pub(crate) fn report_down(&mut self, id: &NodeId, incarnation: Incarnation) {
        let at = self.reported_down.entry(id.clone()).or_insert(incarnation);
        *at = (*at).max(incarnation);
    }

    /// The highest incarnation another member declared `id` Down at.
    pub(crate) fn reported_down(&self, id: &NodeId) -> Option<Incarnation> {
        self.reported_down.get(id).copied()
    }

    /// The suspicion of `id` ended (it went up, down, was replaced or
    /// reaped): reports of its Down no longer apply.
    pub(crate) fn forget_report(&mut self, id: &NodeId) {
        self.reported_down.remove(id);
    }

    /// A packet claimed `id` is Suspect (or, `down`, Down) at
    /// `incarnation`; acted on once foca has applied the packet.
    pub(crate) fn gossiped(&mut self, id: Identity, incarnation: Incarnation, down: bool) {
        self.gossiped.push((id, incarnation, down));
    }

    /// The suspicions gossiped since the last call.
    pub(crate) fn take_gossiped(&mut self) -> Vec<(Identity, Incarnation, bool)> {
        std::mem::take(&mut self.gossiped)
    }

    /// Whether foca's timer token moved past `token` since the suspicion
    /// timers were last armed (foca then ignores the older timers).
    pub(crate) fn token_changed(&self, token: foca::TimerToken) -> bool {
        self.token != token
    }

    /// The suspicion timers are armed under `token`.
    pub(crate) fn set_token(&mut self, token: foca::TimerToken) {
        self.token = token;
    }

    /// Whether a final check of `id` is running.
    pub(crate) fn checking(&self, id: &NodeId) -> bool {
        self.checks.contains_key(id)
    }

    /// A final check of `member` starts, identified by `nonce`.
    pub(crate) fn start_check(&mut self, member: Identity, nonce: u64) {
        let check = FinalCheck {
            identity: member.clone(),
            nonce,
            answered: None,
        };
        self.checks.insert(member.id, check);
    }

    /// `from` answered a final check `nonce` at `incarnation`: whether it
    /// is the answer to a running check (a stray or forged answer is not).
    pub(crate) fn answer(&mut self, from: &Identity, nonce: u64, incarnation: Incarnation) -> bool {
        match self.checks.get_mut(&from.id) {
            Some(c) if c.nonce == nonce && c.identity == *from => {
                c.answered = Some(incarnation);
                true
            }
            _ => false,
        }
    }

    /// The final check `nonce` of `id` ran out: how it ended.
    pub(crate) fn end_check(&mut self, id: &NodeId, nonce: u64) -> CheckEnd {
        match self.checks.get(id) {
            Some(c) if c.nonce == nonce => {
                let answered = c.answered;
                self.checks.remove(id);
                answered.map_or(CheckEnd::Silent, CheckEnd::Answered)
            }
            _ => CheckEnd::Superseded,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::identity::Generation;

    fn id(name: &str) -> Identity {
        Identity::new(
            NodeId::new(name).expect("valid"),
            "127.0.0.1:7946".parse().expect("addr"),
            Generation(1),
        )
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn an_accuser_counts_once_per_window() {
        let mut l = Lifeguard::default();
        let (a, b) = (NodeId::new("a").expect("id"), NodeId::new("b").expect("id"));
        assert!(l.accused(&a, S, 5 * S));
        assert!(!l.accused(&a, 3 * S, 5 * S), "a repeats itself");
        assert!(l.accused(&b, 3 * S, 5 * S), "b is a second accuser");
        assert!(l.accused(&a, 6 * S, 5 * S), "a window later a counts again");
    }

    #[test]
    fn refutations_are_limited_to_one_per_period() {
        let mut l = Lifeguard::default();
        assert!(!l.refuted_within(S, S));
        l.refuted(S);
        assert!(l.refuted_within(S + S / 2, S));
        assert!(!l.refuted_within(2 * S, S));
    }

    #[test]
    fn only_the_running_check_takes_an_answer() {
        let mut l = Lifeguard::default();
        let m = id("m");
        l.start_check(m.clone(), 7);
        assert!(!l.answer(&m, 8, 3), "wrong nonce");
        let mut other = m.clone();
        other.generation = Generation(2);
        assert!(!l.answer(&other, 7, 3), "another generation");
        assert_eq!(l.end_check(&m.id, 6), CheckEnd::Superseded);
        assert!(l.answer(&m, 7, 3));
        assert_eq!(l.end_check(&m.id, 7), CheckEnd::Answered(3));
        assert!(!l.checking(&m.id));
        l.start_check(m.clone(), 9);
        assert_eq!(l.end_check(&m.id, 9), CheckEnd::Silent);
    }

    #[test]
    fn a_reported_down_keeps_the_highest_incarnation_until_forgotten() {
        let mut l = Lifeguard::default();
        let m = id("m").id;
        l.report_down(&m, 4);
        l.report_down(&m, 2);
        assert_eq!(l.reported_down(&m), Some(4));
        l.forget_report(&m);
        assert_eq!(l.reported_down(&m), None);
    }

    #[test]
    fn silence_is_measured_from_the_last_message() {
        let mut l = Lifeguard::default();
        assert!(l.silent_since(S));
        l.heard(2 * S);
        assert!(!l.silent_since(S));
        assert!(l.silent_since(3 * S));
    }
}
