//! `/v1/cluster/nodes`, `/v1/cluster/volumes` and `/v1/cluster/events`: the cluster's
//! registry as this node knows it, and its changes (cluster mode only: `dvol daemon --cluster
//! URL`).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use dvol_api::{ClusterEvent, ClusterNodes, ClusterVolumes, ErrorBody};
use serde::Deserialize;
use utoipa::{IntoParams, IntoResponses};

use super::error::{parse_query, ApiError};
use crate::cluster::events_of;
use crate::error::ClusterError;
use crate::service::VolumeService;

/// The failures of the cluster calls.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ClusterErrors {
    /// The daemon is not in cluster mode (code `not_clustered`), or the query is malformed.
    #[response(status = 400)]
    NotClustered(ErrorBody),
    /// The revision asked for was compacted away (code `revision_compacted`): list again
    /// and follow from the list's revision + 1.
    #[response(status = 410)]
    Compacted(ErrorBody),
    /// etcd cannot be reached (code `cluster_unreachable`).
    #[response(status = 503)]
    Unreachable(ErrorBody),
}

/// `GET /v1/cluster/events?since=REV`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The first revision to report [default: the one after the revision this node last
    /// knew, i.e. only what changes from now on].
    pub since: Option<i64>,
}

/// The registry's changes as they happen, one JSON line each, from revision `since` on:
/// what a scheduler follows after listing `GET /v1/cluster/volumes` (resume from the last
/// line's revision + 1). The stream lasts until the client closes it or etcd becomes
/// unreachable; then list again and resume.
#[utoipa::path(get, path = "/v1/cluster/events", tag = "cluster", operation_id = "clusterEvents",
    params(EventsQuery),
    responses(
        (status = 200, description = "One line per change", body = ClusterEvent, content_type = "application/x-ndjson"),
        ClusterErrors,
    ))]
pub async fn events(
    State(service): State<Arc<VolumeService>>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = parse_query(query, "?since=REVISION")?;
    let cluster = service.require_cluster()?.clone();
    let since = query.since.unwrap_or_else(|| cluster.known_revision() + 1);
    let watch = match cluster.changes_since(since).await {
        Ok(watch) => watch,
        Err(e @ ClusterError::Compacted { .. }) => {
            return Err(ApiError::new(StatusCode::GONE, e.code(), e))
        }
        Err(e) => return Err(crate::error::ServiceError::from(e).into()),
    };
    let lines = futures_util::stream::unfold(watch, |mut watch| async move {
        let answer = watch.message().await.ok().flatten()?;
        let mut text = String::new();
        for event in events_of(&answer) {
            // Plain data: serialising it cannot fail.
            text.push_str(&serde_json::to_string(&event).expect("an event serialises"));
            text.push('\n');
        }
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(text)), watch))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, dvol_api::NDJSON)
        .body(Body::from_stream(lines))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))
}

/// Every node of the cluster whose lease is alive: its address and its free capacity per
/// profile, as this node last read them from the registry.
#[utoipa::path(get, path = "/v1/cluster/nodes", tag = "cluster", operation_id = "clusterNodes",
    responses(
        (status = 200, description = "The nodes", body = ClusterNodes),
        ClusterErrors,
    ))]
pub async fn nodes(
    State(service): State<Arc<VolumeService>>,
) -> Result<Json<ClusterNodes>, ApiError> {
    Ok(Json(service.require_cluster()?.known_nodes()))
}

/// Every volume of the cluster: its owner, epoch, profile, size and state, and where it is
/// mounted, as this node last read them from the registry (`lease_alive: false` says the
/// node cannot reach etcd now, and the list may be stale).
#[utoipa::path(get, path = "/v1/cluster/volumes", tag = "cluster", operation_id = "clusterVolumes",
    responses(
        (status = 200, description = "The volumes", body = ClusterVolumes),
        ClusterErrors,
    ))]
pub async fn volumes(
    State(service): State<Arc<VolumeService>>,
) -> Result<Json<ClusterVolumes>, ApiError> {
    Ok(Json(service.require_cluster()?.known_volumes()))
}
