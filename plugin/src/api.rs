//! The REST control API, version 1 (`/run/dvol/dvol.sock`, optionally TCP with a token).
//!
//! The routes are described by `openapi.json` in this crate, served at `/v1/openapi.json`;
//! a test checks that every route it lists answers. Errors are JSON
//! `{"error": {"code", "message"}}` with a status from [`ErrorClass`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dvol_backends::{BackendKind, ByteSize, Filesystem};
use serde::{Deserialize, Serialize};

use crate::body::{parse_json, MAX_BODY_BYTES};
use crate::error::{ErrorClass, ServiceError};
use crate::profile::Profile;
use crate::service::{NodeInfo, VolumeService};
use crate::volume::Volume;

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
        .route("/v1/openapi.json", get(openapi))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}
