//! Invariant: only the members a query's filter selects answer it (an
//! answer from any other is a violation). The same records give the
//! `queries` scenario's figures: the share of selected members, running
//! from the question to the end, whose answer reached the asker before the
//! deadline.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// One query asked.
struct Asked {
    /// Whether it was filtered by tag.
    tagged: bool,
    /// The running members it selected when asked.
    audience: BTreeSet<usize>,
    /// Those whose answers reached the asker before the deadline.
    answered: BTreeSet<usize>,
}

/// The queries of a run, by (asker slot, sequence number).
#[derive(Default)]
pub struct Queries {
    asked: BTreeMap<(usize, u64), Asked>,
}

impl std::fmt::Debug for Queries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queries({} asked)", self.asked.len())
    }
}

/// The `queries` scenario's figures (in the report only when queries were
/// asked).
#[derive(Debug, Clone, Serialize)]
pub struct QueryFigures {
    /// Queries asked.
    pub queries_asked: usize,
    /// Of the queries without a filter: answers that reached the asker in
    /// time over the members running from the question to the end.
    pub query_answered: Option<f64>,
    /// The same for the queries filtered by tag, over the members carrying
    /// the tag.
    pub query_tag_answered: Option<f64>,
}

impl Queries {
    /// Node `asker` asked query `seq`, selecting `audience`.
    pub fn asked(&mut self, asker: usize, seq: u64, tagged: bool, audience: BTreeSet<usize>) {
        let a = Asked {
            tagged,
            audience,
            answered: BTreeSet::new(),
        };
        self.asked.insert((asker, seq), a);
    }

    /// The asker `asker` got an answer to `seq` from node `from` (named
    /// `name`) before the deadline.
    pub fn answered(
        &mut self,
        asker: usize,
        seq: u64,
        from: usize,
        name: &str,
    ) -> Result<(), String> {
        let Some(a) = self.asked.get_mut(&(asker, seq)) else {
            return Ok(());
        };
        if !a.audience.contains(&from) {
            return Err(format!(
                "{name} answered query n{asker}#{seq}, which did not select it"
            ));
        }
        a.answered.insert(from);
        Ok(())
    }

    /// Whether query `seq` of `asker` is filtered by tag.
    pub fn is_tagged(&self, asker: usize, seq: u64) -> bool {
        self.asked.get(&(asker, seq)).is_some_and(|a| a.tagged)
    }

    /// The figures, over the audience for which `running` holds at the end.
    pub fn figures(&self, running: impl Fn(usize) -> bool) -> Option<QueryFigures> {
        if self.asked.is_empty() {
            return None;
        }
        let share = |tagged: bool| {
            let (mut pairs, mut got) = (0usize, 0usize);
            for a in self.asked.values().filter(|a| a.tagged == tagged) {
                for &m in a.audience.iter().filter(|&&m| running(m)) {
                    pairs += 1;
                    got += usize::from(a.answered.contains(&m));
                }
            }
            (pairs > 0).then(|| (got as f64 / pairs as f64 * 10_000.0).round() / 10_000.0)
        };
        Some(QueryFigures {
            queries_asked: self.asked.len(),
            query_answered: share(false),
            query_tag_answered: share(true),
        })
    }
}
