//! The user-event routes: `POST /v1/event/{name}` sends one, and the event
//! stream (`GET /v1/events/stream`) carries those that arrive.

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
