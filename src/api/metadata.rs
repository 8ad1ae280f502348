//! The metadata routes: the Raft-replicated key-value store, voters,
//! certificate revocation, forced leaves and the partition table.

use super::*;

pub(super) fn meta_error(e: MetaError) -> ApiError {
    let (status, code) = match &e {
        MetaError::NoCluster { .. } => (StatusCode::SERVICE_UNAVAILABLE, "no_cluster"),
        MetaError::NoLeader(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_quorum"),
        MetaError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        MetaError::Interrupted(_) => (StatusCode::SERVICE_UNAVAILABLE, "interrupted"),
        MetaError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        MetaError::Reserved(_) => (StatusCode::BAD_REQUEST, "reserved_key"),
        MetaError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "busy"),
        MetaError::Quota(_) => (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded"),
        MetaError::StoreFull(_) => (StatusCode::INSUFFICIENT_STORAGE, "store_full"),
        MetaError::Stopped => return ApiError::stopped(),
    };
    ApiError::new(status, code, e.to_string())
}

#[derive(Debug, Deserialize)]
pub(super) struct MetaQuery {
    #[serde(default)]
    stale: bool,
    /// Answer with the value's bytes themselves.
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    prefix: String,
}

pub(super) fn read_mode(q: &MetaQuery) -> ReadMode {
    if q.stale {
        ReadMode::Stale
    } else {
        ReadMode::Linearizable
    }
}
pub(super) async fn meta_get(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(q): Query<MetaQuery>,
) -> Result<Response, ApiError> {
    match api
        .roster
        .meta(crate::node::MetaOp::Get { key: key.clone() }, read_mode(&q))
        .await
        .map_err(meta_error)?
    {
        crate::node::MetaReply::Value {
            value: Some(v),
            index: _,
        } if q.raw => Ok(raw_value(v)),
        crate::node::MetaReply::Value {
            value: Some(v),
            index,
        } => {
            let (value, encoding) = value_json(&v);
            Ok(Json(json!({
                "key": key,
                "value": value,
                "encoding": encoding,
                "index": index,
            }))
            .into_response())
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!("no metadata key {key:?}"),
        )),
    }
}

pub(super) async fn meta_list(
    State(api): State<Api>,
    Query(q): Query<MetaQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let entries = api
        .roster
        .meta_list(&q.prefix, read_mode(&q))
        .await
        .map_err(meta_error)?;
    let list: Vec<_> = entries
        .iter()
        .map(|(k, v)| {
            let (value, encoding) = value_json(v);
            json!({"key": k, "value": value, "encoding": encoding})
        })
        .collect();
    Ok(Json(json!(list)))
}

pub(super) async fn meta_put(
    State(api): State<Api>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let index = api.roster.meta_put(&key, &body).await.map_err(meta_error)?;
    Ok(Json(json!({"key": key, "index": index})))
}

pub(super) async fn meta_delete(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if api.roster.meta_delete(&key).await.map_err(meta_error)? {
        Ok(Json(json!({"key": key, "deleted": true})))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!("no metadata key {key:?}"),
        ))
    }
}

/// Body of a compare-and-set: `null` stands for an absent key (in
/// `expect`) or a delete (in `value`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CasBody {
    expect: Option<String>,
    value: Option<String>,
}

pub(super) async fn meta_cas(
    State(api): State<Api>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let cas: CasBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("expected {{\"expect\": string|null, \"value\": string|null}}: {e}"),
        )
    })?;
    let (swapped, current) = api
        .roster
        .meta_cas(
            &key,
            cas.expect.as_deref().map(str::as_bytes),
            cas.value.as_deref().map(str::as_bytes),
        )
        .await
        .map_err(meta_error)?;
    Ok(Json(json!({
        "key": key,
        "swapped": swapped,
        "current": current.as_deref().map(|c| value_json(c).0),
        "encoding": current.as_deref().map(|c| value_json(c).1),
    })))
}

pub(super) async fn revoked_list(
    State(api): State<Api>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ids = api
        .roster
        .revoked()
        .await
        .map_err(|_| ApiError::stopped())?;
    let names: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
    Ok(Json(json!({ "revoked": names })))
}

pub(super) fn node_name(name: String) -> Result<NodeId, ApiError> {
    NodeId::new(name).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_node", e.to_string()))
}

/// `PUT /v1/revoked/{name}`: every node refuses that NodeId's certificate
/// from now on.
pub(super) async fn revoke(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = node_name(name)?;
    let index = api.roster.revoke(&id).await.map_err(meta_error)?;
    Ok(Json(json!({ "revoked": id.as_str(), "index": index })))
}

/// `DELETE /v1/revoked/{name}`: lifts a revocation.
pub(super) async fn reinstate(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = node_name(name)?;
    let index = api.roster.reinstate(&id).await.map_err(meta_error)?;
    Ok(Json(json!({ "reinstated": id.as_str(), "index": index })))
}

pub(super) async fn voters(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let m = api
        .roster
        .meta_status()
        .await
        .map_err(|_| ApiError::stopped())?;
    Ok(Json(raft_json(&m)))
}

/// `DELETE /v1/voters/{name}`: asks the leader to remove a dead voter
/// (see [`Roster::remove_voter`]); the change follows within a few ticks.
pub(super) async fn voter_remove(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = node_name(name)?;
    let index = api.roster.remove_voter(&id).await.map_err(meta_error)?;
    Ok(Json(
        json!({ "removal_requested": id.as_str(), "index": index }),
    ))
}

/// `POST /v1/force-leave/{name}`: a Down member becomes Left everywhere.
pub(super) async fn force_leave(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::node::ForceLeaveError as E;
    let id = node_name(name)?;
    match api.roster.force_leave(&id).await {
        Ok(member) => Ok(Json(json!({ "left": member.to_string() }))),
        Err(e) => {
            let (status, code) = match &e {
                E::Unknown(_) => (StatusCode::NOT_FOUND, "unknown_member"),
                E::NotDown { .. } => (StatusCode::CONFLICT, "not_down"),
                E::Itself(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
                E::Stopped => return Err(ApiError::stopped()),
            };
            Err(ApiError::new(status, code, e.to_string()))
        }
    }
}

pub(super) fn role_name(r: crate::node::meta::Role) -> &'static str {
    match r {
        crate::node::meta::Role::Primary => "primary",
        crate::node::meta::Role::Replica => "replica",
        crate::node::meta::Role::None => "none",
    }
}

pub(super) fn no_placement() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_placement",
        "no partition placement committed yet (the metadata cluster forms first)",
    )
}

pub(super) async fn partitions(
    State(api): State<Api>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let t = api
        .roster
        .partitions()
        .await
        .map_err(|_| ApiError::stopped())?
        .ok_or_else(no_placement)?;
    let counts: serde_json::Map<String, serde_json::Value> = t
        .counts()
        .into_iter()
        .map(|(id, (p, r))| {
            (
                id.as_str().to_owned(),
                json!({"primaries": p, "replicas": r}),
            )
        })
        .collect();
    let owners: Vec<Vec<&str>> = t
        .owners
        .iter()
        .map(|o| o.iter().map(|id| id.as_str()).collect())
        .collect();
    Ok(Json(json!({
        "partition_count": t.partition_count,
        "replication_factor": t.replication_factor,
        "under_replicated": t.under_replicated(),
        "nodes": counts,
        "owners": owners,
    })))
}

pub(super) async fn partition_of_key(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let p = api
        .roster
        .placement_of(key.as_bytes())
        .await
        .map_err(|_| ApiError::stopped())?
        .ok_or_else(no_placement)?;
    Ok(Json(json!({
        "key": key,
        "partition": p.partition,
        "primary": p.owners.first().map(|o| o.as_str()),
        "replicas": p.owners.iter().skip(1).map(|o| o.as_str()).collect::<Vec<_>>(),
        "role": role_name(p.role),
    })))
}
