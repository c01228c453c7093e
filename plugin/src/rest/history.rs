//! `/v1/volumes/{name}/commits`, `status`, `checkout`, `reset` and `diff`: a volume's history.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use dvol_api::{
    ChangeView, CheckoutRequest, CheckoutView, CommitRequest, CommitResult, DiffQuery, LogView,
    ResetRequest, StreamLine,
};

use super::error::{parse_body, parse_query, ApiError, VolumeErrors};
use super::path::VolumePath;
use super::stream::answer;
use crate::service::VolumeService;

/// The volume's commits, newest first, with the branches and tags at each, and HEAD.
#[utoipa::path(get, path = "/v1/volumes/{name}/commits", tag = "history", operation_id = "log",
    params(VolumePath),
    responses(
        (status = 200, description = "The log", body = LogView),
        VolumeErrors,
    ))]
pub async fn log(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
) -> Result<Json<LogView>, ApiError> {
    Ok(Json(service.blocking(move |s| s.log(&name)).await?))
}

/// Commit the volume's files on the checked-out branch.
///
/// With `pause`, the containers using the volume are paused meanwhile for a consistent
/// point. Streams progress with `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/volumes/{name}/commits", tag = "history", operation_id = "commit",
    params(VolumePath),
    request_body = CommitRequest,
    responses(
        (status = 201, description = "Committed (or nothing changed: `changed` false)", body = CommitResult),
        (status = 200, description = "The streamed answer", content_type = "application/x-ndjson", body = StreamLine<CommitResult>),
        VolumeErrors,
    ))]
pub async fn commit(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CommitRequest = parse_body(body, "commit")?;
    let answered = answer(&headers, StatusCode::CREATED, |progress| async move {
        service
            .commit_with_containers(name, request, progress)
            .await
    });
    Ok(answered.await)
}

/// The changes in the volume that are not committed yet.
#[utoipa::path(get, path = "/v1/volumes/{name}/status", tag = "history", operation_id = "status",
    params(VolumePath),
    responses(
        (status = 200, description = "Paths that differ from HEAD", body = Vec<ChangeView>),
        VolumeErrors,
    ))]
pub async fn status(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
) -> Result<Json<Vec<ChangeView>>, ApiError> {
    Ok(Json(service.blocking(move |s| s.status(&name)).await?))
}

/// Put a branch or commit into the volume.
///
/// A branch becomes the checked-out branch; anything else detaches HEAD. Uncommitted changes
/// are refused unless `force`. The running containers using the volume are stopped meanwhile
/// and started again after; one the engine deletes when it stops (`docker run --rm`) is
/// refused with `409 container_removed_on_stop`, naming it, before anything is stopped or
/// changed, unless `stop_removable` (then it is stopped and gone). A daemon killed in the
/// middle finishes the checkout and starts the containers again when it restarts. Streams
/// progress with `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/volumes/{name}/checkout", tag = "history", operation_id = "checkout",
    params(VolumePath),
    request_body = CheckoutRequest,
    responses(
        (status = 200, description = "Checked out; streamed as JSON lines when asked", content(
            (CheckoutView = "application/json"),
            (StreamLine<CheckoutView> = "application/x-ndjson"),
        )),
        VolumeErrors,
    ))]
pub async fn checkout(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CheckoutRequest = parse_body(body, "checkout")?;
    let answered = answer(&headers, StatusCode::OK, |progress| async move {
        service
            .checkout_with_containers(name, request, progress)
            .await
    });
    Ok(answered.await)
}

/// Reset the volume hard to a revision.
///
/// The current branch (or detached HEAD) moves to the revision and its files are put into
/// the volume, discarding uncommitted changes. The running containers using the volume are
/// stopped meanwhile and started again after; one the engine deletes when it stops
/// (`docker run --rm`) is refused with `409 container_removed_on_stop` before anything is
/// stopped or changed, unless `stop_removable`. A daemon killed in the middle finishes the
/// reset and starts the containers again when it restarts. Streams progress with
/// `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/volumes/{name}/reset", tag = "history", operation_id = "resetHard",
    params(VolumePath),
    request_body = ResetRequest,
    responses(
        (status = 200, description = "Reset; streamed as JSON lines when asked", content(
            (CheckoutView = "application/json"),
            (StreamLine<CheckoutView> = "application/x-ndjson"),
        )),
        VolumeErrors,
    ))]
pub async fn reset(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ResetRequest = parse_body(body, "reset")?;
    let answered = answer(&headers, StatusCode::OK, |progress| async move {
        service.reset_with_containers(name, request, progress).await
    });
    Ok(answered.await)
}

/// The paths that differ between two revisions.
#[utoipa::path(get, path = "/v1/volumes/{name}/diff", tag = "history", operation_id = "diff",
    params(VolumePath, DiffQuery),
    responses(
        (status = 200, description = "Paths that differ from `from` to `to`", body = Vec<ChangeView>),
        VolumeErrors,
    ))]
pub async fn diff(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Json<Vec<ChangeView>>, ApiError> {
    let query = parse_query(query, "?from=REV[&to=REV]")?;
    let changes = service
        .blocking(move |s| s.diff(&name, query.from.as_deref(), query.to.as_deref()))
        .await?;
    Ok(Json(changes))
}
