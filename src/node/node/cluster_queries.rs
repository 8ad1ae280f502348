//! The node's side of cluster queries (see [`crate::node::queries`]):
//! asking, the queries that arrive for this node, answering, and the
//! acknowledgements and answers that come back.

use super::*;
use crate::node::queries::{self, Asked, Query, QueryError, QueryId, QueryOptions};
use crate::node::wire::QueryResponse;

/// Queries this node answers at once, at most (past it the oldest is
/// forgotten and can no longer be answered).
const ANSWERABLE_MAX: usize = 1024;

impl Node {
    /// Asks every member `opts.filter` selects (this node included when
    /// selected) the query `name` with `payload`. Acknowledgements and
    /// answers arrive as [`Event::QueryAck`] and [`Event::QueryAnswer`],
    /// then [`Event::QueryDone`] at the deadline.
    pub fn query(
        &mut self,
        now: Now,
        name: &str,
        payload: &[u8],
        opts: QueryOptions,
    ) -> Result<QueryId, QueryError> {
        self.set_now(now);
        if self.left {
            return Err(QueryError::Left);
        }
        queries::validate(name, payload, self.config.max_event_bytes)?;
        let timeout = opts.timeout.unwrap_or_else(|| {
            queries::default_timeout(self.config.gossip_interval, self.timing.members)
        });
        if opts.relay > queries::MAX_RELAY
            || timeout.is_zero()
            || timeout > Duration::from_secs(3600)
        {
            return Err(QueryError::BadOptions);
        }
        queries::Matcher::new(&opts.filter)?;
        self.queries_sent += 1;
        let hlc = {
            let mut s = self.shared.lock();
            let wall_ms = s.wall_ms;
            s.hlc.now(wall_ms)
        };
        let q = Query {
            asker: self.identity.clone(),
            seq: self.queries_sent,
            hlc,
            name: name.to_owned(),
            payload: payload.to_vec(),
            filter: opts.filter,
            relay: opts.relay,
            timeout_ms: timeout.as_millis() as u32,
        };
        let id = q.id();
        self.asked.insert(
            q.seq,
            Asked {
                deadline: self.io.now + timeout,
                acks: Default::default(),
                answers: Default::default(),
            },
        );
        self.io.schedule(timeout, TimerKind::QueryDeadline(q.seq));
        // The handler hands it to this node too, then it is gossiped.
        if let Some(bytes) = swim::encode_item(&Item::Query(q)) {
            self.add_item(&bytes, None);
        }
        self.after_swim();
        Ok(id)
    }

    /// Answers query `id` (one this node received as [`Event::Query`],
    /// before its deadline) with `payload`.
    pub fn respond(&mut self, now: Now, id: &QueryId, payload: &[u8]) -> Result<(), QueryError> {
        self.set_now(now);
        let limit = self.config.max_event_bytes;
        if payload.len() > limit {
            return Err(QueryError::TooLarge {
                what: "query answer",
                size: payload.len(),
                limit,
            });
        }
        let Some(&(addr, relay, deadline)) = self.answerable.get(id) else {
            return Err(QueryError::NotAnswerable);
        };
        if self.io.now >= deadline {
            self.answerable.remove(id);
            return Err(QueryError::NotAnswerable);
        }
        self.send_response(id.clone(), addr, relay, false, payload.to_vec());
        Ok(())
    }

    /// Queries that arrived through the gossip handler: those for this node
    /// are acknowledged and handed to the application.
    pub(super) fn on_queries(&mut self, arrived: Vec<Query>) {
        for q in arrived {
            if !self.selected_by(&q.filter) {
                continue;
            }
            let now = self.io.now;
            let deadline = now + Duration::from_millis(u64::from(q.timeout_ms));
            if self.answerable.len() >= ANSWERABLE_MAX {
                self.answerable.retain(|_, (_, _, d)| *d > now);
                if self.answerable.len() >= ANSWERABLE_MAX
                    && let Some(first) = self.answerable.keys().next().cloned()
                {
                    self.answerable.remove(&first);
                }
            }
            self.answerable
                .insert(q.id(), (q.asker.addr, q.relay, deadline));
            self.send_response(q.id(), q.asker.addr, q.relay, true, Vec::new());
            self.events.push_back(Event::Query(q));
        }
    }

    /// Whether this node is one `filter` selects (a filter it cannot
    /// compile selects nothing).
    fn selected_by(&self, filter: &queries::QueryFilter) -> bool {
        let Ok(m) = queries::Matcher::new(filter) else {
            return false;
        };
        let s = self.shared.lock();
        let me = &self.identity.id;
        m.selects(me.as_str(), |k| {
            s.store
                .get(me, &format!("{TAG_PREFIX}{k}"))
                .and_then(|v| std::str::from_utf8(v).ok())
        })
    }

    /// Sends an acknowledgement or an answer to the asker at `addr`, and
    /// through `relay` random members.
    fn send_response(
        &mut self,
        id: QueryId,
        addr: SocketAddr,
        relay: u8,
        ack: bool,
        payload: Vec<u8>,
    ) {
        let mut r = QueryResponse {
            id,
            asker_addr: addr,
            from: self.identity.clone(),
            ack,
            payload,
            relay: false,
        };
        if r.id.asker == self.identity.id {
            // This node asked: no datagram to itself.
            self.on_query_response(r);
            return;
        }
        self.io.send_msg(addr, &Message::QueryResponse(r.clone()));
        if relay > 0 {
            let asker = r.id.asker.clone();
            let relays = self.random_members(usize::from(relay), |m| m.id != asker);
            r.relay = true;
            for m in relays {
                self.io.send_msg(m.addr, &Message::QueryResponse(r.clone()));
            }
        }
    }

    /// An acknowledgement or answer arrived: forwarded when this node
    /// relays it, reported once per member when this node asked.
    pub(super) fn on_query_response(&mut self, r: QueryResponse) {
        if r.relay {
            let addr = r.asker_addr;
            let fwd = QueryResponse { relay: false, ..r };
            self.io.send_msg(addr, &Message::QueryResponse(fwd));
            return;
        }
        if r.id.asker != self.identity.id || r.id.generation != self.identity.generation {
            return;
        }
        let Some(a) = self.asked.get_mut(&r.id.seq) else {
            return;
        };
        if self.io.now >= a.deadline {
            return;
        }
        let from = r.from.id;
        if r.ack {
            if a.acks.insert(from.clone()) {
                self.events.push_back(Event::QueryAck { id: r.id, from });
            }
        } else if a.answers.insert(from.clone()) {
            self.events.push_back(Event::QueryAnswer {
                id: r.id,
                from,
                payload: r.payload,
            });
        }
    }

    /// The deadline of query `seq` this node asked.
    pub(super) fn query_deadline(&mut self, seq: u64) {
        if let Some(a) = self.asked.remove(&seq) {
            self.events.push_back(Event::QueryDone {
                id: QueryId {
                    asker: self.identity.id.clone(),
                    generation: self.identity.generation,
                    seq,
                },
                acks: a.acks.len(),
                answers: a.answers.len(),
            });
        }
    }
}
