//! The clients: state writes (with the HLC causality checker), metadata
//! operations recorded in the history, and placement tracking.

use super::*;
use crate::checkers::writes;

impl World {
    pub(super) fn placement_changed(&mut self, n: usize) {
        let Some(t) = self.slots[n]
            .node
            .as_ref()
            .and_then(|x| x.partitions().cloned())
        else {
            return;
        };
        let h = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            t.hash(&mut hasher);
            hasher.finish()
        };
        self.slots[n].placement = Some(h);
        if !self.m.placement_versions.iter().any(|v| v.0 == h) {
            self.m.placement_versions.push((h, self.now, None));
            self.m.placement_tables.push(t);
        }
        self.placement_check();
    }

    /// Records when every running node holds the newest placement.
    pub(super) fn placement_check(&mut self) {
        let Some(&(h, _, None)) = self.m.placement_versions.last() else {
            return;
        };
        let all = self
            .running()
            .iter()
            .all(|&i| self.slots[i].placement == Some(h));
        if all && let Some(v) = self.m.placement_versions.last_mut() {
            v.2 = Some(self.now);
        }
    }

    pub(super) fn meta_client(&mut self, keys: u64) {
        // A frozen node takes no requests (a client would time out).
        let running = self.up();
        if running.is_empty() {
            return;
        }
        let n = running[self.rng.random_range(0..running.len())];
        let key = format!("key{}", self.rng.random_range(0..keys));
        self.meta_value_seq += 1;
        let fresh = format!("v{}", self.meta_value_seq).into_bytes();
        let roll = self.rng.random_range(0..10u32);
        let history = &self.checkers.history;
        let op = roster::plan::meta_op(roll, key, fresh, |k| history.recent_value(k));
        self.meta_submit(n, op);
    }

    pub(super) fn meta_submit(&mut self, n: usize, op: MetaOp) {
        let now = self.now_of(n);
        let Some(node) = self.slots[n].node.as_mut() else {
            return;
        };
        let h = self.checkers.history.invoke(op.clone(), self.now);
        let mode = if self.planted.is(Plant::StaleReads) {
            ReadMode::Stale
        } else {
            ReadMode::Linearizable
        };
        let req = node.meta_request(now, op, mode);
        self.slots[n].meta_pending.insert(req, h);
        self.after(n);
    }

    pub(super) fn on_meta_result(&mut self, n: usize, req: u64, r: Result<MetaReply, MetaError>) {
        let Some(h) = self.slots[n].meta_pending.remove(&req) else {
            return;
        };
        self.m.meta_ops += 1;
        let op = self.checkers.history.op(h).clone();
        let outcome = match &r {
            Ok(MetaReply::Value { value, .. }) => OpOutcome::Read(value.clone()),
            Ok(MetaReply::Written { .. }) | Ok(MetaReply::Deleted { .. }) => OpOutcome::Done,
            Ok(MetaReply::Cas { swapped, .. }) => OpOutcome::Cas(*swapped),
            Ok(MetaReply::List { .. }) => OpOutcome::Unknown,
            Err(MetaError::Timeout { .. } | MetaError::Interrupted(_)) => OpOutcome::Unknown,
            // Refused before anything was proposed.
            Err(_) => OpOutcome::Failed,
        };
        if std::env::var_os("ROSTER_SIM_DEBUG").is_some()
            && let Err(e) = &r
            && !op.is_read()
        {
            eprintln!(
                "t={:.3} {} {:?} failed: {e}",
                self.now as f64 / SEC as f64,
                self.slots[n].id,
                op.key()
            );
        }
        self.checkers.history.complete(h, outcome, self.now);
        let index = match &r {
            Ok(MetaReply::Written { index }) | Ok(MetaReply::Deleted { index, .. }) => Some(*index),
            Ok(MetaReply::Cas {
                swapped: true,
                index,
                ..
            }) => Some(*index),
            _ => None,
        };
        if let Some(index) = index {
            self.m.meta_acked_writes += 1;
            let value = match &op {
                MetaOp::Put { value, .. } => Some(value.clone()),
                MetaOp::Cas { value, .. } => value.clone(),
                _ => None,
            };
            let value = if self.planted.fire(Plant::LostWrite, self.now) {
                Some(b"planted".to_vec())
            } else {
                value
            };
            let index = if self.planted.fire(Plant::UnappliedWrite, self.now) {
                index + 1_000_000
            } else {
                index
            };
            let key = op.key().to_owned();
            self.checkers.acked.acknowledged(index, key, value);
        }
    }

    /// Node `n` asks a query, filtered by `role=db` when `tagged`, with
    /// relay factor `relay`.
    pub(super) fn ask(&mut self, n: usize, tagged: bool, relay: u8) {
        let now = self.now_of(n);
        let audience = self
            .running()
            .into_iter()
            .filter(|m| !tagged || m % 5 == 0)
            .collect();
        let Some(node) = self.slots[n].node.as_mut() else {
            return;
        };
        let mut opts = roster::node::queries::QueryOptions {
            relay,
            ..Default::default()
        };
        if tagged {
            opts.filter.tags.push(("role".into(), "db".into()));
        }
        match node.query(now, "sim", b"?", opts) {
            Ok(id) => self.checkers.queries.asked(n, id.seq, tagged, audience),
            Err(e) => self.fail(format!("query refused on n{n}: {e}")),
        }
        self.after(n);
    }

    /// Node `m` answers query `id`.
    pub(super) fn answer(&mut self, m: usize, id: &roster::node::queries::QueryId) {
        let now = self.now_of(m);
        let Some(node) = self.slots[m].node.as_mut() else {
            return;
        };
        if let Err(e) = node.respond(now, id, b"ok") {
            self.fail(format!(
                "n{m} could not answer query {}#{}: {e}",
                id.asker, id.seq
            ));
        }
        self.after(m);
    }

    /// Node `n` sends a user event.
    pub(super) fn send_event(&mut self, n: usize) {
        let now = self.now_of(n);
        let audience = self.running();
        let Some(node) = self.slots[n].node.as_mut() else {
            return;
        };
        let payload = self.now.to_le_bytes();
        match node.send_event(now, "sim", &payload) {
            Ok(e) => {
                if let Some(p) = &mut self.plan {
                    p.record.events_sent += 1;
                }
                let events = &mut self.checkers.user_events;
                events.sent(n, e.generation.0, e.seq, self.now, audience);
            }
            Err(e) => self.fail(format!("event refused on n{n}: {e}")),
        }
        self.after(n);
    }

    pub(super) fn write(&mut self, n: usize) {
        let now = self.now_of(n);
        self.write_seq += 1;
        let key = if self.planted.fire(Plant::RefusedWrite, self.now) {
            "roster:planted".to_owned()
        } else {
            format!("k{}", self.write_seq)
        };
        let Some(node) = self.slots[n].node.as_mut() else {
            return;
        };
        let result = node.set_state(now, &key, b"value");
        let accepted = writes::check(n, &result);
        self.record(accepted);
        if let Ok(hlc) = result {
            let seen = self.checkers.causality.newest_accepted(n);
            let hlc = if seen > Hlc::default() && self.planted.fire(Plant::CausalityBack, self.now)
            {
                seen
            } else {
                hlc
            };
            let v = self
                .checkers
                .causality
                .wrote(n, &self.slots[n].id, &key, hlc);
            self.record(v);
            self.plan_wrote(n, &key);
            let audience = self.running().into_iter().filter(|&i| i != n).collect();
            self.checkers
                .delivery
                .wrote(n, key, hlc, self.now, audience);
        }
        self.after(n);
    }
}
