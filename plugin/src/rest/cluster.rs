//! `/v1/cluster/nodes` and `/v1/cluster/volumes`: the cluster's registry as this node knows it
//! (cluster mode only: `dvol daemon --cluster URL`).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use dvol_api::{ClusterNodes, ClusterVolumes, ErrorBody};
use utoipa::IntoResponses;

use super::error::ApiError;
use crate::service::VolumeService;

/// The failures of the cluster calls.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ClusterErrors {
    /// The daemon is not in cluster mode (code `not_clustered`).
    #[response(status = 400)]
    NotClustered(ErrorBody),
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
