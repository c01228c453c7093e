//! Push and clone (`/v1/volumes/{name}/push`, `/v1/clone`), which a CLI asks of its own
//! daemon, and the protocol daemons speak to each other (`/v1/transfer/...`, see
//! [`dvol_api::transfer`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dvol_api::transfer::pack;
use dvol_api::{
    CloneRequest, FetchPlan, FetchRequest, IncomingPush, MoveRequest, MoveResult, ObjectsReceived,
    PullRequest, PushAnswer, PushFinish, PushFinished, PushOffer, PushRequest, ResolveAnswer,
    ResolveRequest, StreamLine, TransferResult,
};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{parse_body, ApiError, VolumeErrors};
use super::path::VolumePath;
use super::stream::answer;
use crate::service::VolumeService;

/// Whether `path` is a route whose request body is an object stream (long: exempt from the
/// TCP listener's whole-body deadline; its receiver drops one that idles).
pub fn is_object_stream(path: &str) -> bool {
    path.starts_with("/v1/transfer/sessions/") && path.ends_with("/objects")
}

/// The `{session}` path segment.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SessionPath {
    /// The session a push offer answered.
    pub session: String,
}

/// The pushes other hosts are sending here, oldest offer first: each from its offer to its
/// branch move, with how many of its object stream's stored bytes arrived so far.
#[utoipa::path(get, path = "/v1/incoming", tag = "transfer", operation_id = "incoming",
    responses(
        (status = 200, description = "The pushes being received", body = Vec<IncomingPush>),
    ))]
pub async fn incoming(State(service): State<Arc<VolumeService>>) -> Json<Vec<IncomingPush>> {
    Json(service.incoming())
}

/// Push the volume's branch and the history it needs to a remote.
///
/// Creates the volume there (with this volume's profile, size and filesystem) if it has none;
/// otherwise moves the remote's branch forward (or as `mode` allows) and checks it out there
/// when it is checked out. Sends only the objects the remote lacks. Streams progress with
/// `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/volumes/{name}/push", tag = "transfer", operation_id = "push",
    params(VolumePath),
    request_body = PushRequest,
    responses(
        (status = 200, description = "Pushed (or up to date)", body = TransferResult),
        (status = 201, description = "never answered; see 200", body = StreamLine<TransferResult>, content_type = "application/x-ndjson"),
        VolumeErrors,
    ))]
pub async fn push(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: PushRequest = parse_body(body, "push")?;
    let answered = answer(&headers, StatusCode::OK, |progress| async move {
        service.push(name, request, progress).await
    });
    Ok(answered.await)
}

/// Bring a remote volume's branch here: its objects, and the remote-tracking ref
/// `REMOTE/BRANCH` (which log, diff, checkout and `NAME@snapshot-REF` accept). No local branch
/// moves. Streams progress with `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/volumes/{name}/fetch", tag = "transfer", operation_id = "fetch",
    params(VolumePath),
    request_body = PullRequest,
    responses(
        (status = 200, description = "Fetched (or up to date)", body = TransferResult),
        (status = 201, description = "never answered; see 200", body = StreamLine<TransferResult>, content_type = "application/x-ndjson"),
        VolumeErrors,
    ))]
pub async fn fetch(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: PullRequest = parse_body(body, "fetch")?;
    let answered = answer(&headers, StatusCode::OK, |progress| async move {
        service.fetch_remote(name, request, progress).await
    });
    Ok(answered.await)
}

/// Fetch a remote volume's branch and move the local branch of the same name to it.
///
/// Fast-forward unless `mode` allows more; where the branch is checked out, the new commit is
/// checked out with the volume's containers stopped meanwhile and started again after.
/// Uncommitted changes are refused. Streams progress with `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/volumes/{name}/pull", tag = "transfer", operation_id = "pull",
    params(VolumePath),
    request_body = PullRequest,
    responses(
        (status = 200, description = "Pulled (or up to date)", body = TransferResult),
        (status = 201, description = "never answered; see 200", body = StreamLine<TransferResult>, content_type = "application/x-ndjson"),
        VolumeErrors,
    ))]
pub async fn pull(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: PullRequest = parse_body(body, "pull")?;
    let answered = answer(&headers, StatusCode::OK, |progress| async move {
        service.pull(name, request, progress).await
    });
    Ok(answered.await)
}

/// Hand the volume over to a remote: pre-copy while its containers run, then stop them (or
/// wait for the last unmount), send the last delta, and record the volume as moved (Mount
/// then refuses it here, naming the remote).
///
/// Refused before anything stops when the last pre-copy round took longer than
/// `max_downtime_ms`; a failure before the handover starts the stopped containers again.
/// Streams progress with `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/volumes/{name}/move", tag = "transfer", operation_id = "move",
    params(VolumePath),
    request_body = MoveRequest,
    responses(
        (status = 200, description = "Moved", body = MoveResult),
        (status = 201, description = "never answered; see 200", body = StreamLine<MoveResult>, content_type = "application/x-ndjson"),
        VolumeErrors,
    ))]
pub async fn move_volume(
    State(service): State<Arc<VolumeService>>,
    Path(VolumePath { name }): Path<VolumePath>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: MoveRequest = parse_body(body, "move")?;
    let answered = answer(&headers, StatusCode::OK, |progress| async move {
        service.move_volume(name, request, progress).await
    });
    Ok(answered.await)
}

/// Make a local volume from a remote's volume, with its whole history.
///
/// Streams progress with `Accept: application/x-ndjson`.
#[utoipa::path(post, path = "/v1/clone", tag = "transfer", operation_id = "clone",
    request_body = CloneRequest,
    responses(
        (status = 201, description = "Cloned", body = TransferResult),
        (status = 200, description = "The streamed answer", content_type = "application/x-ndjson", body = StreamLine<TransferResult>),
        VolumeErrors,
    ))]
pub async fn clone(
    State(service): State<Arc<VolumeService>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CloneRequest = parse_body(body, "clone")?;
    let answered = answer(&headers, StatusCode::CREATED, |progress| async move {
        service.clone_remote(request, progress).await
    });
    Ok(answered.await)
}

/// (Between daemons) Offer a push: the receiver checks it and answers with its commits of
/// the volume.
#[utoipa::path(post, path = "/v1/transfer/push", tag = "transfer", operation_id = "offerPush",
    request_body = PushOffer,
    responses(
        (status = 200, description = "Accepted: the session and the receiver's commits", body = PushAnswer),
        VolumeErrors,
    ))]
pub async fn offer_push(
    State(service): State<Arc<VolumeService>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PushAnswer>, ApiError> {
    let offer: PushOffer = parse_body(body, "push offer")?;
    Ok(Json(service.blocking(move |s| s.offer_push(offer)).await?))
}

/// (Between daemons) Which of these objects the receiver holds.
///
/// The body is up to 16,384 object ids of 32 bytes each; the answer one bit per id (least
/// significant bit first), set where the receiver holds the object and so everything below
/// it.
#[utoipa::path(post, path = "/v1/transfer/sessions/{session}/have", tag = "transfer", operation_id = "haveObjects",
    params(SessionPath),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "The bitmap", content_type = "application/octet-stream", body = Vec<u8>),
        VolumeErrors,
    ))]
pub async fn have(
    State(service): State<Arc<VolumeService>>,
    Path(SessionPath { session }): Path<SessionPath>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ids = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e))?;
    let bits = service
        .blocking(move |s| s.have_objects(&session, &ids))
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bits).into_response())
}

/// (Between daemons) The objects of a push, as an object stream.
///
/// The `Dvol-Bytes` header declares the stream's stored bytes: without room for them the
/// call is refused before the body is read. Objects are re-hashed and admitted only after
/// the objects they name; a stream cut short keeps the objects that arrived whole.
#[utoipa::path(post, path = "/v1/transfer/sessions/{session}/objects", tag = "transfer", operation_id = "receiveObjects",
    params(SessionPath),
    request_body(content = Vec<u8>, content_type = "application/x-dvol-pack"),
    responses(
        (status = 200, description = "Received", body = ObjectsReceived),
        VolumeErrors,
    ))]
pub async fn objects(
    State(service): State<Arc<VolumeService>>,
    Path(SessionPath { session }): Path<SessionPath>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ObjectsReceived>, ApiError> {
    let declared = headers
        .get("dvol-bytes")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_header",
                "an object stream needs the Dvol-Bytes header: its stored bytes",
            )
        })?;
    Ok(Json(
        service.receive_objects(session, declared, body).await?,
    ))
}

/// (Between daemons) Move the branch to the pushed commit, creating the volume if there is
/// none.
#[utoipa::path(post, path = "/v1/transfer/sessions/{session}/finish", tag = "transfer", operation_id = "finishPush",
    params(SessionPath),
    request_body = PushFinish,
    responses(
        (status = 200, description = "The branch moved (or was there)", body = PushFinished),
        VolumeErrors,
    ))]
pub async fn finish(
    State(service): State<Arc<VolumeService>>,
    Path(SessionPath { session }): Path<SessionPath>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PushFinished>, ApiError> {
    let request: PushFinish = parse_body(body, "push finish")?;
    Ok(Json(service.finish_push(session, request).await?))
}

/// (Between daemons) What sending a volume's branch would take: its tip, the volume's
/// profile and size, and the objects the caller lacks.
#[utoipa::path(post, path = "/v1/transfer/fetch", tag = "transfer", operation_id = "fetchPlan",
    request_body = FetchRequest,
    responses(
        (status = 200, description = "The plan", body = FetchPlan),
        VolumeErrors,
    ))]
pub async fn fetch_plan(
    State(service): State<Arc<VolumeService>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FetchPlan>, ApiError> {
    let request: FetchRequest = parse_body(body, "fetch")?;
    Ok(Json(
        service.blocking(move |s| s.fetch_plan(request)).await?,
    ))
}

/// (Between daemons) The objects a fetch would send, in order: for each, its id (32 bytes)
/// and stored length (8 bytes, little-endian), so the caller can name those it holds.
#[utoipa::path(post, path = "/v1/transfer/fetch/ids", tag = "transfer", operation_id = "fetchIds",
    request_body = FetchRequest,
    responses(
        (status = 200, description = "40 bytes per planned object", content_type = "application/octet-stream", body = Vec<u8>),
        VolumeErrors,
    ))]
pub async fn fetch_ids(
    State(service): State<Arc<VolumeService>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: FetchRequest = parse_body(body, "fetch")?;
    let records = service.blocking(move |s| s.fetch_ids(request)).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        records,
    )
        .into_response())
}

/// (Between daemons) The objects of a fetch, as an object stream, less those the caller
/// says it holds (`held`).
#[utoipa::path(post, path = "/v1/transfer/fetch/objects", tag = "transfer", operation_id = "fetchObjects",
    request_body = FetchRequest,
    responses(
        (status = 200, description = "The object stream", content_type = "application/x-dvol-pack", body = Vec<u8>),
        VolumeErrors,
    ))]
pub async fn fetch_objects(
    State(service): State<Arc<VolumeService>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: FetchRequest = parse_body(body, "fetch")?;
    let stream = {
        let service = service.clone();
        tokio::task::spawn_blocking(move || service.fetch_objects(request))
            .await
            .map_err(|e| {
                ApiError::from(crate::error::ServiceError::Worker {
                    message: e.to_string(),
                })
            })??
    };
    Ok(([(header::CONTENT_TYPE, pack::MEDIA_TYPE)], stream).into_response())
}

/// (Between daemons, cluster mode) What a snapshot reference (`NAME@snapshot-REF`) that the
/// caller could not resolve names here: a volume whose history holds the commit, or, for a
/// volume's UUID, a commit of its files now made for the caller (no branch moves). The caller
/// then fetches it with `/v1/transfer/fetch`.
#[utoipa::path(post, path = "/v1/transfer/resolve", tag = "transfer", operation_id = "resolveReference",
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "What it names here (`found` absent: nothing)", body = ResolveAnswer),
        VolumeErrors,
    ))]
pub async fn resolve(
    State(service): State<Arc<VolumeService>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ResolveAnswer>, ApiError> {
    let request: ResolveRequest = parse_body(body, "resolve")?;
    Ok(Json(
        service
            .blocking(move |s| s.resolve_for_peer(request))
            .await?,
    ))
}
