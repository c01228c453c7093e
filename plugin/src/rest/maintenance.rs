//! `/v1/fsck` and `/v1/gc`: maintenance of the history repository every volume shares.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dvol_api::{ErrorBody, FsckView, GcRequest, GcView, StreamLine};

use super::error::{parse_body, ApiError, InternalError};
use super::stream::answer;
use crate::service::VolumeService;

/// Verify every stored object of every volume.
///
/// Every object is re-read and re-hashed; the report lists what is corrupt, missing or
/// unreachable. Streams progress with `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/fsck", tag = "maintenance", operation_id = "fsck",
    responses(
        (status = 200, description = "The report; streamed as JSON lines when asked", content(
            (FsckView = "application/json"),
            (StreamLine<FsckView> = "application/x-ndjson"),
        )),
        InternalError,
    ))]
pub async fn fsck(State(service): State<Arc<VolumeService>>, headers: HeaderMap) -> Response {
    answer(&headers, StatusCode::OK, |progress| async move {
        service.blocking(move |s| s.fsck(&*progress)).await
    })
    .await
}

/// Delete stored objects that no branch, tag or volume refers to.
///
/// Keeps, for a grace period (default two weeks; the body's `prune` sets it, `now` for
/// none), every commit a reflog entry of that age names and every object written within it;
/// expires older reflog entries. No body keeps the default. Streams progress with
/// `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/gc", tag = "maintenance", operation_id = "gc",
    request_body(content = Option<GcRequest>, description = "Optional: the grace period"),
    responses(
        (status = 200, description = "What was removed; streamed as JSON lines when asked", content(
            (GcView = "application/json"),
            (StreamLine<GcView> = "application/x-ndjson"),
        )),
        (status = 400, description = "Malformed body or prune value", body = ErrorBody),
        (status = 413, description = "The request body is over 1 MiB", body = ErrorBody),
        InternalError,
    ))]
pub async fn gc(
    State(service): State<Arc<VolumeService>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: GcRequest = parse_body(body, "gc")?;
    let answered = answer(&headers, StatusCode::OK, |progress| async move {
        service
            .blocking(move |s| s.gc(&*progress, request.prune.as_deref()))
            .await
    });
    Ok(answered.await)
}
