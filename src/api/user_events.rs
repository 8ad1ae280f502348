//! Serf's orchestration routes: `POST /v1/event/{name}` sends a user event
//! (the event stream, `GET /v1/events/stream`, carries those that arrive),
//! and `GET /v1/rtt/{a}[/{b}]` estimates a round trip from network
//! coordinates.

use super::*;
use crate::node::{EventError, UserEvent};
use crate::runtime::EventSendError;

/// `POST /v1/event/{name}` (body: the payload, any bytes): sends a user
/// event to every live member, this node included. Answers the event's
/// `sender`, `generation`, `seq` and `stamp`. 400 `invalid_event` for a bad
/// name or a payload over the limit (`max_event_bytes`, 512 by default).
pub(super) async fn event_send(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let e = api
        .roster
        .send_event(&name, &body)
        .await
        .map_err(|e| match e {
            EventSendError::Event(e @ (EventError::BadName | EventError::TooLarge { .. })) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", e.to_string())
            }
            EventSendError::Event(e @ EventError::Left) => {
                ApiError::new(StatusCode::CONFLICT, "left", e.to_string())
            }
            EventSendError::Stopped(_) => ApiError::stopped(),
        })?;
    Ok(Json(json!({
        "name": e.name,
        "sender": e.sender.as_str(),
        "generation": e.generation.0,
        "seq": e.seq,
        "stamp": e.hlc.to_string(),
    })))
}

/// A user event as the event stream carries it (`event: user`): when this
/// node saw it, its name, sender, generation, sequence number, stamp and
/// payload (UTF-8 text as is, other bytes in base64, named by `encoding`).
pub(super) fn user_event_json(e: &UserEvent) -> serde_json::Value {
    let (payload, encoding) = value_json(&e.payload);
    json!({
        "at_ms": now_ms(),
        "name": e.name,
        "sender": e.sender.as_str(),
        "generation": e.generation.0,
        "seq": e.seq,
        "stamp": e.hlc.to_string(),
        "payload": payload,
        "encoding": encoding,
    })
}

/// `GET /v1/rtt/{a}[/{b}]`: the estimated round trip between members `a`
/// and `b` (default: this node) from their network coordinates:
/// `{"a", "b", "rtt_ms"}`. 400 `invalid_name`; 404 `no_coordinate` while
/// one of the two coordinates is unknown to this node (or coordinates are
/// off: `roster agent --coordinates`).
pub(super) async fn rtt(
    State(api): State<Api>,
    Path(names): Path<Vec<String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let parse = |n: &str| {
        NodeId::new(n.to_owned())
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", e.to_string()))
    };
    let (a, b) = match names.as_slice() {
        [a] => (parse(a)?, api.roster.identity().id.clone()),
        [a, b] => (parse(a)?, parse(b)?),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give one or two member names",
            ));
        }
    };
    let rtt = api
        .roster
        .rtt(&a, &b)
        .await
        .map_err(|_| ApiError::stopped())?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_coordinate",
                format!("no coordinate known here for {a} or {b} (is --coordinates on?)"),
            )
        })?;
    Ok(Json(json!({
        "a": a.as_str(),
        "b": b.as_str(),
        "rtt_ms": (rtt.as_secs_f64() * 1_000_000.0).round() / 1000.0,
    })))
}

/// `GET /v1/rtt/{a}`: [`rtt`] from this node.
pub(super) async fn rtt_one(
    api: State<Api>,
    Path(a): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    rtt(api, Path(vec![a])).await
}

/// `POST /v1/query/{name}[?node=REGEX][&tag=k=REGEX]...[&timeout_ms=N][&relay=N]`
/// (body: the payload): asks the members the filter selects, and streams
/// their acknowledgements and answers as they arrive, one JSON object per
/// line (`{"type": "ack", "from"}`, `{"type": "answer", "from", "payload",
/// "encoding"}`), then `{"type": "done", "acks", "answers", "missing"}` at
/// the deadline (`missing`: the live members the filter selects, as this
/// node knows them, that did not answer). 400 `invalid_query`.
pub(super) async fn query(
    State(api): State<Api>,
    Path(name): Path<String>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    use crate::node::queries::{QueryFilter, QueryOptions};
    use crate::runtime::{QuerySendError, QueryUpdate};
    let body = body.map_err(body_error)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", m);
    let mut filter = QueryFilter::default();
    let (mut timeout_ms, mut relay) = (None, 0u8);
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "node" => filter.node = Some(v.into_owned()),
            "tag" => {
                let (k, v) = v
                    .split_once('=')
                    .ok_or_else(|| bad(format!("tag {v:?}: expected k=REGEX")))?;
                filter.tags.push((k.to_owned(), v.to_owned()));
            }
            "timeout_ms" => {
                timeout_ms = Some(v.parse().map_err(|_| bad(format!("timeout_ms {v:?}")))?)
            }
            "relay" => relay = v.parse().map_err(|_| bad(format!("relay {v:?}")))?,
            other => return Err(bad(format!("unknown parameter {other:?}"))),
        }
    }
    let opts = QueryOptions {
        filter: filter.clone(),
        timeout: timeout_ms.map(std::time::Duration::from_millis),
        relay,
    };
    let stream = api
        .roster
        .query(&name, &body, opts)
        .await
        .map_err(|e| match e {
            QuerySendError::Query(e) => bad(e.to_string()),
            QuerySendError::Stopped(_) => ApiError::stopped(),
        })?;
    let start = (
        stream,
        std::collections::BTreeSet::new(),
        api.roster.clone(),
        filter,
    );
    let lines = futures_util::stream::unfold(
        start,
        |(mut s, mut answered, roster, filter)| async move {
            let line = match s.next().await? {
                QueryUpdate::Ack(from) => json!({"type": "ack", "from": from.as_str()}),
                QueryUpdate::Answer(from, payload) => {
                    let (payload, encoding) = value_json(&payload);
                    let line = json!({"type": "answer", "from": from.as_str(), "payload": payload, "encoding": encoding});
                    answered.insert(from);
                    line
                }
                QueryUpdate::Done { acks, answers } => {
                    let missing = unanswered(&roster, &filter, &answered).await;
                    json!({"type": "done", "acks": acks, "answers": answers, "missing": missing})
                }
            };
            let bytes = Bytes::from(format!("{line}\n"));
            Some((
                Ok::<_, std::convert::Infallible>(bytes),
                (s, answered, roster, filter),
            ))
        },
    );
    Ok(Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(axum::body::Body::from_stream(lines))
        .unwrap_or_default())
}

/// The live members this node knows that `filter` selects and that did not
/// answer, by name.
async fn unanswered(
    roster: &crate::runtime::Roster,
    filter: &crate::node::queries::QueryFilter,
    answered: &std::collections::BTreeSet<NodeId>,
) -> Vec<String> {
    let (Ok(members), Ok(tags)) = (roster.members().await, roster.tags().await) else {
        return Vec::new();
    };
    let Ok(matcher) = crate::node::queries::Matcher::new(filter) else {
        return Vec::new();
    };
    members
        .iter()
        .filter(|m| {
            matches!(
                m.state,
                crate::node::MemberState::Alive | crate::node::MemberState::Suspect
            )
        })
        .filter(|m| {
            let t = tags.get(&m.id);
            matcher.selects(m.id.as_str(), |k| {
                t.and_then(|t| t.get(k)).map(String::as_str)
            })
        })
        .filter(|m| !answered.contains(&m.id))
        .map(|m| m.id.to_string())
        .collect()
}
