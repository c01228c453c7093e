//! `/v1/volumes/{name}/branches`, `/tags` and `/reflog`: a volume's branches and tags, and
//! the record of their moves.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use dvol_api::{RefRequest, RefView, ReflogEntryView, ReflogQuery};

use super::error::{parse_body, parse_query, ApiError, VolumeErrors};
use super::path::VolumePath;
use crate::service::VolumeService;

/// Creates a branch (`tag` false) or tag from a request body.
async fn create(
    service: Arc<VolumeService>,
    name: String,
    body: Result<Bytes, BytesRejection>,
    tag: bool,
) -> Result<(StatusCode, Json<RefView>), ApiError> {
    let request: RefRequest = parse_body(body, if tag { "tag" } else { "branch" })?;
    let view = service
        .blocking(move |s| s.create_ref(&name, &request.name, request.at.as_deref(), tag))
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The volume's branches; `current` marks the checked-out one.
#[utoipa::path(get, path = "/v1/volumes/{name}/branches", tag = "history", operation_id = "listBranches",
    params(VolumePath),
    responses(
        (status = 200, description = "The branches", body = Vec<RefView>),
        VolumeErrors,
    ))]
pub async fn branches(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
) -> Result<Json<Vec<RefView>>, ApiError> {
    Ok(Json(service.blocking(move |s| s.branches(&name)).await?))
}

/// Create a branch at a revision (default HEAD).
#[utoipa::path(post, path = "/v1/volumes/{name}/branches", tag = "history", operation_id = "createBranch",
    params(VolumePath),
    request_body = RefRequest,
    responses(
        (status = 201, description = "Created", body = RefView),
        VolumeErrors,
    ))]
pub async fn create_branch(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RefView>), ApiError> {
    create(service, name, body, false).await
}

/// Delete a branch; the checked-out one is refused.
#[utoipa::path(delete, path = "/v1/volumes/{name}/branches/{branch}", tag = "history", operation_id = "deleteBranch",
    params(VolumePath, ("branch" = String, Path, description = "The branch to delete")),
    responses(
        (status = 204, description = "Deleted"),
        VolumeErrors,
    ))]
pub async fn delete_branch(
    State(service): State<Arc<VolumeService>>,
    Path((name, branch)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    service
        .blocking(move |s| s.delete_branch(&name, &branch))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The volume's tags.
#[utoipa::path(get, path = "/v1/volumes/{name}/tags", tag = "history", operation_id = "listTags",
    params(VolumePath),
    responses(
        (status = 200, description = "The tags", body = Vec<RefView>),
        VolumeErrors,
    ))]
pub async fn tags(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
) -> Result<Json<Vec<RefView>>, ApiError> {
    Ok(Json(service.blocking(move |s| s.tags(&name)).await?))
}

/// Create a tag at a revision (default HEAD).
#[utoipa::path(post, path = "/v1/volumes/{name}/tags", tag = "history", operation_id = "createTag",
    params(VolumePath),
    request_body = RefRequest,
    responses(
        (status = 201, description = "Created", body = RefView),
        VolumeErrors,
    ))]
pub async fn create_tag(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RefView>), ApiError> {
    create(service, name, body, true).await
}

/// Delete a tag.
#[utoipa::path(delete, path = "/v1/volumes/{name}/tags/{tag}", tag = "history", operation_id = "deleteTag",
    params(VolumePath, ("tag" = String, Path, description = "The tag to delete")),
    responses(
        (status = 204, description = "Deleted"),
        VolumeErrors,
    ))]
pub async fn delete_tag(
    State(service): State<Arc<VolumeService>>,
    Path((name, tag)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    service.blocking(move |s| s.delete_tag(&name, &tag)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every move of the volume's HEAD and branches, newest first.
///
/// Commits, checkouts, resets, branches created and deleted: when, which ref (`HEAD` or a
/// branch), from which commit to which, and why. Commits named here are kept by gc for its
/// grace period even when no branch or tag reaches them.
#[utoipa::path(get, path = "/v1/volumes/{name}/reflog", tag = "history", operation_id = "reflog",
    params(VolumePath, ReflogQuery),
    responses(
        (status = 200, description = "The entries, newest first", body = Vec<ReflogEntryView>),
        VolumeErrors,
    ))]
pub async fn reflog(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    query: Result<Query<ReflogQuery>, QueryRejection>,
) -> Result<Json<Vec<ReflogEntryView>>, ApiError> {
    let query = parse_query(query, "?limit=N")?;
    let entries = service
        .blocking(move |s| s.reflog(&name, query.limit))
        .await?;
    Ok(Json(entries))
}
