//! The REST control API, version 1 (`/run/dvol/dvol.sock`, optionally TCP with a token).
//!
//! The routes are described by `openapi.json` in this crate, served at `/v1/openapi.json`;
//! a test checks that every route it lists answers. Errors are JSON
//! `{"error": {"code", "message"}}` with a status from [`ErrorClass`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use dvol_backends::{BackendKind, ByteSize, Filesystem};
use serde::{Deserialize, Serialize};

use crate::body::{parse_json, MAX_BODY_BYTES};
use crate::containers::Quiesce;
use crate::error::{ErrorClass, ServiceError};
use crate::history::{ChangeView, CheckoutView, CommitResult, LogView, RefView};
use crate::profile::Profile;
use crate::service::{NodeInfo, VolumeService};
use crate::volume::Volume;
use dvol_snapshot::NoProgress;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// An API failure, rendered as `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl ToString) -> Self {
        ApiError {
            status,
            code,
            message: message.to_string(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = match e.class() {
            ErrorClass::Invalid => StatusCode::BAD_REQUEST,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            ErrorClass::Unsupported => StatusCode::NOT_IMPLEMENTED,
            ErrorClass::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Internal => {
                tracing::error!(error = %e, "API call failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.code(), e)
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(
            status,
            code,
            format!("request body rejected: {}", rejection.body_text()),
        )
    }
}

/// The error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error's code and message.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// What failed and what to do.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// A volume as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeView {
    /// The name.
    pub name: String,
    /// The UUID; names the mountpoint.
    pub id: uuid::Uuid,
    /// The profile.
    pub profile: String,
    /// The backend.
    pub backend: BackendKind,
    /// The size asked for, in bytes.
    pub size_bytes: Option<u64>,
    /// Whether the backend enforces the size.
    pub size_enforced: bool,
    /// The filesystem, for block backends.
    pub filesystem: Option<Filesystem>,
    /// The mountpoint.
    pub mountpoint: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Whether any container has it mounted.
    pub mounted: bool,
    /// Active mount ids and their counts.
    pub mounts: BTreeMap<String, u32>,
}

impl VolumeView {
    fn new(service: &VolumeService, volume: Volume) -> Self {
        VolumeView {
            id: volume.id,
            name: volume.name.to_string(),
            profile: volume.profile.to_string(),
            backend: volume.backend,
            size_bytes: volume.size.map(ByteSize::bytes),
            size_enforced: service.enforces_size(&volume),
            filesystem: volume.filesystem,
            mountpoint: service.mountpoint(&volume).display().to_string(),
            created_at: volume.created_rfc3339(),
            mounted: volume.in_use(),
            mounts: volume.mounts,
        }
    }
}

/// `POST /v1/volumes` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    /// `NAME` or `NAME@PROFILE`.
    pub name: String,
    /// Options as for `docker volume create -o`: size, profile, fs, from.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `GET /v1/health` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    /// Always "ok" when the daemon answers.
    pub status: String,
    /// The daemon's version.
    pub version: String,
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn node(State(service): State<Arc<VolumeService>>) -> Json<NodeInfo> {
    Json(service.node_info())
}

async fn profiles(State(service): State<Arc<VolumeService>>) -> Json<Vec<Profile>> {
    Json(service.profiles().to_vec())
}

async fn list_volumes(State(service): State<Arc<VolumeService>>) -> Json<Vec<VolumeView>> {
    Json(
        service
            .list()
            .into_iter()
            .map(|v| VolumeView::new(&service, v))
            .collect(),
    )
}

async fn get_volume(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
) -> Result<Json<VolumeView>, ApiError> {
    let volume = service.get(&name)?;
    Ok(Json(VolumeView::new(&service, volume)))
}

/// Runs blocking service work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?
        .map_err(ApiError::from)
}

async fn create_volume(
    State(service): State<Arc<VolumeService>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CreateVolume = parse_json(&body?).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("malformed volume request: {e}"),
        )
    })?;
    let svc = service.clone();
    let (volume, effect) = blocking(move || svc.create(&request.name, &request.options)).await?;
    let status = match effect {
        dvol_backends::Effect::Changed => StatusCode::CREATED,
        dvol_backends::Effect::Unchanged => StatusCode::OK,
    };
    Ok((status, Json(VolumeView::new(&service, volume))).into_response())
}

async fn delete_volume(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || service.remove(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/volumes/{name}/resize` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResizeVolume {
    /// The new size, e.g. `20G`; must not be smaller than the current one.
    pub size: String,
}

async fn resize_volume(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<VolumeView>, ApiError> {
    let request: ResizeVolume = parse_json(&body?).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("malformed resize request: {e}"),
        )
    })?;
    let svc = service.clone();
    let volume = blocking(move || svc.resize(&name, &request.size)).await?;
    Ok(Json(VolumeView::new(&service, volume)))
}

/// `POST /v1/volumes/{name}/commits` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// The commit message.
    pub message: String,
    /// Who commits; defaults to "dvol".
    #[serde(default)]
    pub author: Option<String>,
    /// Pause the containers using the volume for a consistent point.
    #[serde(default)]
    pub pause: bool,
}

/// `POST /v1/volumes/{name}/branches` and `/tags` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefRequest {
    /// The new branch or tag.
    pub name: String,
    /// Where it points: a revision (default HEAD).
    #[serde(default)]
    pub at: Option<String>,
}

/// `POST /v1/volumes/{name}/checkout` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// A branch, tag, commit id prefix, `HEAD^`, `HEAD~N`.
    #[serde(rename = "ref")]
    pub rev: String,
    /// Create this branch at `ref` and check it out.
    #[serde(default)]
    pub new_branch: Option<String>,
    /// Discard uncommitted changes.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/volumes/{name}/reset` body: a hard reset.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The revision to reset to.
    #[serde(rename = "ref")]
    pub rev: String,
}

/// `GET /v1/volumes/{name}/diff` query.
#[derive(Debug, Clone, Deserialize)]
pub struct DiffQuery {
    /// The older revision.
    pub from: String,
    /// The newer revision (default HEAD).
    pub to: Option<String>,
}

fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, ApiError> {
    parse_json(&body?).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("malformed {what} request: {e}"),
        )
    })
}

/// Runs `work` with the volume's running containers stopped (or paused) around it, when any
/// container has the volume mounted.
async fn around_containers<T: Send + 'static>(
    service: &Arc<VolumeService>,
    name: &str,
    how: Quiesce,
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ApiError> {
    let volume = service.get(name)?;
    if !volume.in_use() {
        return blocking(work).await;
    }
    let names = service.docker_names(&volume);
    service
        .containers()
        .around(volume.name.as_str(), &names, how, blocking(work))
        .await
        .map_err(|e| ApiError::from(ServiceError::from(e)))?
}

async fn log(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
) -> Result<Json<LogView>, ApiError> {
    Ok(Json(service.log(&name)?))
}

async fn commit(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CommitResult>), ApiError> {
    let request: CommitRequest = parse_body(body, "commit")?;
    let svc = service.clone();
    let target = name.clone();
    let work = move || {
        let author = request.author.as_deref().unwrap_or("dvol");
        svc.commit(&target, &request.message, author, &NoProgress)
    };
    let result = if request.pause {
        around_containers(&service, &name, Quiesce::Pause, work).await?
    } else {
        blocking(work).await?
    };
    Ok((StatusCode::CREATED, Json(result)))
}

async fn status(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<ChangeView>>, ApiError> {
    Ok(Json(blocking(move || service.status(&name)).await?))
}

async fn branches(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<RefView>>, ApiError> {
    Ok(Json(service.branches(&name)?))
}

async fn tags(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<RefView>>, ApiError> {
    Ok(Json(service.tags(&name)?))
}

async fn create_ref(
    service: Arc<VolumeService>,
    name: String,
    body: Result<Bytes, BytesRejection>,
    tag: bool,
) -> Result<(StatusCode, Json<RefView>), ApiError> {
    let request: RefRequest = parse_body(body, if tag { "tag" } else { "branch" })?;
    let view = service.create_ref(&name, &request.name, request.at.as_deref(), tag)?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn create_branch(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RefView>), ApiError> {
    create_ref(service, name, body, false).await
}

async fn create_tag(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RefView>), ApiError> {
    create_ref(service, name, body, true).await
}

async fn delete_branch(
    State(service): State<Arc<VolumeService>>,
    Path((name, branch)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    service.delete_branch(&name, &branch)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn checkout(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CheckoutView>, ApiError> {
    let request: CheckoutRequest = parse_body(body, "checkout")?;
    if !request.force {
        // Refuse before stopping any container; checked again once they are stopped.
        let (svc, target) = (service.clone(), name.clone());
        blocking(move || svc.check_committed(&target)).await?;
    }
    let svc = service.clone();
    let target = name.clone();
    let view = around_containers(&service, &name, Quiesce::Stop, move || {
        svc.checkout(
            &target,
            &request.rev,
            request.new_branch.as_deref(),
            request.force,
            &NoProgress,
        )
    })
    .await?;
    Ok(Json(view))
}

async fn reset(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CheckoutView>, ApiError> {
    let request: ResetRequest = parse_body(body, "reset")?;
    let svc = service.clone();
    let target = name.clone();
    let view = around_containers(&service, &name, Quiesce::Stop, move || {
        svc.reset_hard(&target, &request.rev, &NoProgress)
    })
    .await?;
    Ok(Json(view))
}

async fn diff(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> Result<Json<Vec<ChangeView>>, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("{}: use ?from=REV[&to=REV]", e.body_text()),
        )
    })?;
    Ok(Json(service.diff(
        &name,
        &query.from,
        query.to.as_deref(),
    )?))
}

/// `POST /v1/fsck` answer.
#[derive(Debug, Clone, Serialize)]
pub struct FsckView {
    /// Whether everything checked out.
    pub clean: bool,
    /// Objects re-read and re-hashed.
    pub objects_checked: u64,
    /// Objects whose content does not match their id.
    pub corrupt: Vec<String>,
    /// Objects referred to but absent.
    pub missing: Vec<String>,
    /// Refs that point at nothing usable.
    pub bad_refs: Vec<String>,
    /// Objects no ref reaches (removed by gc).
    pub unreachable: u64,
}

async fn fsck(State(service): State<Arc<VolumeService>>) -> Result<Json<FsckView>, ApiError> {
    let report = blocking(move || service.fsck(&NoProgress)).await?;
    Ok(Json(FsckView {
        clean: report.is_clean(),
        objects_checked: report.objects_checked,
        corrupt: report.corrupt.iter().map(ToString::to_string).collect(),
        missing: report.missing.iter().map(ToString::to_string).collect(),
        bad_refs: report.bad_refs.clone(),
        unreachable: report.unreachable,
    }))
}

/// `POST /v1/gc` answer.
#[derive(Debug, Clone, Serialize)]
pub struct GcView {
    /// Objects kept.
    pub objects_kept: u64,
    /// Objects deleted.
    pub objects_removed: u64,
    /// Bytes freed.
    pub bytes_removed: u64,
}

async fn gc(State(service): State<Arc<VolumeService>>) -> Result<Json<GcView>, ApiError> {
    let report = blocking(move || service.gc(&NoProgress)).await?;
    Ok(Json(GcView {
        objects_kept: report.objects_kept,
        objects_removed: report.objects_removed,
        bytes_removed: report.bytes_removed,
    }))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such API endpoint; GET /v1/openapi.json lists them",
    )
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint; GET /v1/openapi.json lists the methods",
    )
}

/// The REST API router.
pub fn router(service: Arc<VolumeService>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/node", get(node))
        .route("/v1/profiles", get(profiles))
        .route("/v1/volumes", get(list_volumes).post(create_volume))
        .route("/v1/volumes/{name}", get(get_volume).delete(delete_volume))
        .route("/v1/volumes/{name}/resize", post(resize_volume))
        .route("/v1/volumes/{name}/commits", get(log).post(commit))
        .route("/v1/volumes/{name}/status", get(status))
        .route(
            "/v1/volumes/{name}/branches",
            get(branches).post(create_branch),
        )
        .route(
            "/v1/volumes/{name}/branches/{branch}",
            delete(delete_branch),
        )
        .route("/v1/volumes/{name}/tags", get(tags).post(create_tag))
        .route("/v1/volumes/{name}/checkout", post(checkout))
        .route("/v1/volumes/{name}/reset", post(reset))
        .route("/v1/volumes/{name}/diff", get(diff))
        .route("/v1/fsck", post(fsck))
        .route("/v1/gc", post(gc))
        .route("/v1/openapi.json", get(openapi))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}
