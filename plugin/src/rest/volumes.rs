//! `/v1/volumes`: list, create, inspect, remove and resize volumes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dvol_api::{CreateVolume, ResizeVolume, VolumeView};
use dvol_backends::Effect;

use super::error::{parse_body, ApiError, VolumeErrors};
use super::path::VolumePath;
use crate::service::VolumeService;

/// List the volumes on this host, by name.
#[utoipa::path(get, path = "/v1/volumes", tag = "volumes", operation_id = "listVolumes",
    responses((status = 200, description = "The volumes", body = Vec<VolumeView>)))]
pub async fn list(State(service): State<Arc<VolumeService>>) -> Json<Vec<VolumeView>> {
    let volumes = service.list().into_iter();
    Json(volumes.map(|v| service.view(v)).collect())
}

/// Create a volume, as `docker volume create -d dvol` does.
///
/// Creating a volume that exists returns it unchanged, unless the request names another
/// profile.
#[utoipa::path(post, path = "/v1/volumes", tag = "volumes", operation_id = "createVolume",
    request_body = CreateVolume,
    responses(
        (status = 201, description = "Created", body = VolumeView),
        (status = 200, description = "It existed already with that profile: unchanged", body = VolumeView),
        VolumeErrors,
    ))]
pub async fn create(
    State(service): State<Arc<VolumeService>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CreateVolume = parse_body(body, "volume")?;
    let (volume, effect) = service
        .create_anywhere(request.name, request.options)
        .await?;
    let status = match effect {
        Effect::Changed => StatusCode::CREATED,
        Effect::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(service.view(volume))).into_response())
}

/// Show one volume.
#[utoipa::path(get, path = "/v1/volumes/{name}", tag = "volumes", operation_id = "getVolume",
    params(VolumePath),
    responses(
        (status = 200, description = "The volume", body = VolumeView),
        VolumeErrors,
    ))]
pub async fn get(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
) -> Result<Json<VolumeView>, ApiError> {
    let volume = service.get(&name)?;
    Ok(Json(service.view(volume)))
}

/// Remove a volume and its data; refused while a container uses it.
#[utoipa::path(delete, path = "/v1/volumes/{name}", tag = "volumes", operation_id = "deleteVolume",
    params(VolumePath),
    responses(
        (status = 204, description = "Removed"),
        VolumeErrors,
    ))]
pub async fn delete(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
) -> Result<StatusCode, ApiError> {
    service.blocking(move |s| s.remove(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Grow a loop or LVM volume, online if it is mounted; shrinking is refused.
#[utoipa::path(post, path = "/v1/volumes/{name}/resize", tag = "volumes", operation_id = "resizeVolume",
    params(VolumePath),
    request_body = ResizeVolume,
    responses(
        (status = 200, description = "The volume, with its new size", body = VolumeView),
        VolumeErrors,
    ))]
pub async fn resize(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<VolumeView>, ApiError> {
    let request: ResizeVolume = parse_body(body, "resize")?;
    let volume = service
        .blocking(move |s| s.resize(&name, &request.size))
        .await?;
    Ok(Json(service.view(volume)))
}
