//! `/v1/remotes`: the other daemons this one pushes to and clones from.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use dvol_api::{AddRemote, RemoteView};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{parse_body, ApiError, VolumeErrors};
use crate::service::VolumeService;

/// The `{remote}` path segment.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RemotePath {
    /// The remote's name.
    pub remote: String,
}

/// The remotes, by name (their tokens are never shown).
#[utoipa::path(get, path = "/v1/remotes", tag = "transfer", operation_id = "listRemotes",
    responses(
        (status = 200, description = "The remotes", body = Vec<RemoteView>),
        VolumeErrors,
    ))]
pub async fn list(
    State(service): State<Arc<VolumeService>>,
) -> Result<Json<Vec<RemoteView>>, ApiError> {
    Ok(Json(service.blocking(|s| s.remotes()).await?))
}

/// Add a remote: a name for another daemon's address, token and CA.
///
/// Adding the same remote again changes nothing; another one of the same name is refused
/// (409 `remote_exists`).
#[utoipa::path(post, path = "/v1/remotes", tag = "transfer", operation_id = "addRemote",
    request_body = AddRemote,
    responses(
        (status = 201, description = "Added (or already there, the same)", body = RemoteView),
        VolumeErrors,
    ))]
pub async fn add(
    State(service): State<Arc<VolumeService>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RemoteView>), ApiError> {
    let request: AddRemote = parse_body(body, "remote")?;
    let view = service.blocking(move |s| s.add_remote(request)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Forget a remote.
#[utoipa::path(delete, path = "/v1/remotes/{remote}", tag = "transfer", operation_id = "removeRemote",
    params(RemotePath),
    responses(
        (status = 204, description = "Removed"),
        VolumeErrors,
    ))]
pub async fn remove(
    State(service): State<Arc<VolumeService>>,
    Path(RemotePath { remote }): Path<RemotePath>,
) -> Result<StatusCode, ApiError> {
    service.blocking(move |s| s.remove_remote(&remote)).await?;
    Ok(StatusCode::NO_CONTENT)
}
