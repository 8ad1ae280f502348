//! Invariant: every member a node reports is one of the simulated nodes
//! (a member nobody started is a forged or corrupted entry). Planted bug:
//! `UnknownMember`.

use roster::node::NodeId;

/// Node `observer` reported `member`, which is simulated node `slot`
/// (`None`: none is).
pub fn check(observer: &NodeId, member: &NodeId, slot: Option<usize>) -> Result<usize, String> {
    slot.ok_or_else(|| format!("{observer} saw an unknown member {member}"))
}
