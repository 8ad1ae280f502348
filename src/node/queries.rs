//! Queries: a question one member asks the cluster, answered by the members
//! it is meant for (Serf's `serf query`).
//!
//! A query spreads like a user event, piggybacked on the membership
//! engine's gossip, and each member sees it once (`(asker, generation,
//! sequence)` identifies it; copies are dropped until its deadline). A
//! member the filter selects (by name, and by tag value) acknowledges it at
//! once and hands it to the application ([`crate::node::Event::Query`]),
//! which answers with [`crate::node::Node::respond`]. Acknowledgements and
//! answers go straight to the asker and, when the asker asked for a relay
//! factor, also through that many random members, which forward them (for
//! paths that lose datagrams). The asker reports each acknowledgement and
//! answer once as it arrives, and at the deadline how many there were.
//!
//! Filters are regular expressions that must match a whole value (the
//! member's name, a tag's value), as in `roster members`; a pattern is at
//! most [`MAX_PATTERN_BYTES`] and compiles within a fixed size, and a
//! member that cannot compile a filter it receives does not answer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::hlc::Hlc;
use super::identity::{Generation, Identity, NodeId};

/// Longest query name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// Most members a relay factor may ask.
pub const MAX_RELAY: u8 = 5;

/// Longest filter pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;

/// Which members a query is for: all, or those whose name matches `node`
/// and whose tags match every pattern in `tags`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryFilter {
    /// A regular expression the member's whole name must match.
    pub node: Option<String>,
    /// Tags and a regular expression each one's whole value must match.
    pub tags: Vec<(String, String)>,
}

/// A [`QueryFilter`] compiled.
#[derive(Debug)]
pub struct Matcher {
    node: Option<regex::Regex>,
    tags: Vec<(String, regex::Regex)>,
}

impl Matcher {
    /// Compiles `f`, or says which pattern is bad.
    pub fn new(f: &QueryFilter) -> Result<Matcher, QueryError> {
        Ok(Matcher {
            node: f.node.as_deref().map(anchored).transpose()?,
            tags: f
                .tags
                .iter()
                .map(|(k, v)| Ok((k.clone(), anchored(v)?)))
                .collect::<Result<_, QueryError>>()?,
        })
    }

    /// Whether the member `name`, whose tag `k` has the value `tag(k)`,
    /// is selected.
    pub fn selects<'a>(&self, name: &str, tag: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.node.as_ref().is_none_or(|re| re.is_match(name))
            && self
                .tags
                .iter()
                .all(|(k, re)| tag(k).is_some_and(|v| re.is_match(v)))
    }
}

/// `re` matching whole values.
fn anchored(re: &str) -> Result<regex::Regex, QueryError> {
    if re.len() > MAX_PATTERN_BYTES {
        return Err(QueryError::BadFilter(format!(
            "a pattern of {} bytes is over {MAX_PATTERN_BYTES}",
            re.len()
        )));
    }
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(1 << 16)
        .build()
        .map_err(|e| QueryError::BadFilter(format!("{re:?}: {e}")))
}

/// A query as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Who asks, where answers go.
    pub asker: Identity,
    /// Its place among the queries this life of the asker sent, from 1.
    pub seq: u64,
    /// When it was asked, on the asker's clock.
    pub hlc: Hlc,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Who is to answer.
    pub filter: QueryFilter,
    /// Members each answer also goes through (0: straight to the asker
    /// only).
    pub relay: u8,
    /// How long the asker waits for answers, milliseconds.
    pub timeout_ms: u32,
}

impl Query {
    /// What identifies the query.
    pub fn id(&self) -> QueryId {
        QueryId {
            asker: self.asker.id.clone(),
            generation: self.asker.generation,
            seq: self.seq,
        }
    }
}

/// What identifies a query.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueryId {
    /// Who asked.
    pub asker: NodeId,
    /// The asker's life.
    pub generation: Generation,
    /// The query's number in that life.
    pub seq: u64,
}

/// How a query is asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Who is to answer.
    pub filter: QueryFilter,
    /// How long to wait for answers (`None`: [`default_timeout`]).
    pub timeout: Option<Duration>,
    /// Members each answer also goes through (at most [`MAX_RELAY`]).
    pub relay: u8,
}

/// Serf's default query timeout: the gossip interval times 16 times
/// ⌈log10(N + 1)⌉ for `n` live members (12.8 s for 1,000 members on LAN
/// timing).
pub fn default_timeout(gossip_interval: Duration, n: usize) -> Duration {
    let rounds = ((n as f64 + 1.0).log10().ceil() as u32).max(1);
    gossip_interval * 16 * rounds
}

/// Why a query or an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A bad name.
    #[error("query name must be 1 to {MAX_NAME_BYTES} bytes without control characters")]
    BadName,
    /// A payload or an answer over the limit.
    #[error("{what} of {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Payload or answer.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A relay factor over [`MAX_RELAY`], or a timeout of zero or over an
    /// hour.
    #[error("relay factor at most {MAX_RELAY}, timeout above zero and at most 1 h")]
    BadOptions,
    /// The node has left the cluster.
    #[error("this node has left the cluster")]
    Left,
    /// A filter pattern that does not compile or is too long.
    #[error("bad filter: {0}")]
    BadFilter(String),
    /// An answer to a query this node did not receive or whose deadline
    /// passed.
    #[error("no such query to answer (unknown here, or past its deadline)")]
    NotAnswerable,
}

/// Checks a query's name and payload against `limit`.
pub fn validate(name: &str, payload: &[u8], limit: usize) -> Result<(), QueryError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(QueryError::BadName);
    }
    if payload.len() > limit {
        return Err(QueryError::TooLarge {
            what: "query payload",
            size: payload.len(),
            limit,
        });
    }
    Ok(())
}

/// The queries a member has seen, until their deadlines (copies are
/// dropped meanwhile). Memory: one entry per query in flight.
#[derive(Debug, Default)]
pub(crate) struct SeenQueries {
    until: BTreeMap<QueryId, Duration>,
}

impl SeenQueries {
    /// Whether `q`, arriving at `now`, is new here (it is then remembered
    /// until its deadline, with a margin of one timeout for late copies).
    pub(crate) fn first(&mut self, q: &Query, now: Duration) -> bool {
        self.until.retain(|_, t| *t > now);
        let keep = now + 2 * Duration::from_millis(u64::from(q.timeout_ms));
        self.until.insert(q.id(), keep).is_none()
    }
}

/// A query this node asked, until its deadline.
#[derive(Debug)]
pub(crate) struct Asked {
    pub(crate) deadline: Duration,
    pub(crate) acks: std::collections::BTreeSet<NodeId>,
    pub(crate) answers: std::collections::BTreeSet<NodeId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_timeout_grows_with_log_n() {
        let g = Duration::from_millis(200);
        assert_eq!(default_timeout(g, 5), Duration::from_millis(3200));
        assert_eq!(default_timeout(g, 1000), Duration::from_millis(12800));
    }

    #[test]
    fn a_copy_is_dropped_until_the_deadline() {
        let id = Identity::new(
            NodeId::new("a").expect("valid"),
            "127.0.0.1:1".parse().expect("addr"),
            Generation(1),
        );
        let q = Query {
            asker: id,
            seq: 1,
            hlc: Hlc(1),
            name: "uptime".into(),
            payload: vec![],
            filter: QueryFilter::default(),
            relay: 0,
            timeout_ms: 1000,
        };
        let mut seen = SeenQueries::default();
        let s = Duration::from_secs(1);
        assert!(seen.first(&q, s));
        assert!(!seen.first(&q, 2 * s));
        assert!(
            seen.first(&q, 4 * s),
            "forgotten after the deadline's margin"
        );
    }

    #[test]
    fn filters_match_whole_values() {
        let f = QueryFilter {
            node: Some("web-[0-9]+".into()),
            tags: vec![("zone".into(), "eu-.*".into())],
        };
        let m = Matcher::new(&f).expect("compiles");
        let eu = |k: &str| (k == "zone").then_some("eu-1");
        let us = |k: &str| (k == "zone").then_some("us-1");
        assert!(m.selects("web-12", eu));
        assert!(!m.selects("web-12x", eu), "anchored");
        assert!(!m.selects("web-12", us));
        assert!(!m.selects("web-12", |_| None), "a missing tag");
        assert!(
            Matcher::new(&QueryFilter::default())
                .expect("empty")
                .selects("any", |_| None)
        );
        let bad = QueryFilter {
            node: Some("(".into()),
            tags: vec![],
        };
        assert!(matches!(Matcher::new(&bad), Err(QueryError::BadFilter(_))));
        let long = QueryFilter {
            node: Some("a".repeat(MAX_PATTERN_BYTES + 1)),
            tags: vec![],
        };
        assert!(matches!(Matcher::new(&long), Err(QueryError::BadFilter(_))));
    }

    #[test]
    fn names_payloads_are_checked() {
        assert_eq!(validate("", b"", 10), Err(QueryError::BadName));
        assert!(matches!(
            validate("q", &[0; 11], 10),
            Err(QueryError::TooLarge { size: 11, .. })
        ));
        assert_eq!(validate("q", &[0; 10], 10), Ok(()));
    }
}
