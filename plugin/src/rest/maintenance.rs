//! `/v1/fsck` and `/v1/gc`: maintenance of the history repository every volume shares.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dvol_api::{FsckView, GcView, StreamLine};

use super::error::InternalError;
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
/// Streams progress with `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/gc", tag = "maintenance", operation_id = "gc",
    responses(
        (status = 200, description = "What was removed; streamed as JSON lines when asked", content(
            (GcView = "application/json"),
            (StreamLine<GcView> = "application/x-ndjson"),
        )),
        InternalError,
    ))]
pub async fn gc(State(service): State<Arc<VolumeService>>, headers: HeaderMap) -> Response {
    answer(&headers, StatusCode::OK, |progress| async move {
        service.blocking(move |s| s.gc(&*progress)).await
    })
    .await
}
