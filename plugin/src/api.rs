//! The REST control API, version 1 (`/run/dvol/dvol.sock`, optionally TCP with a token).
//!
//! The routes are described by `openapi.json` in this crate, served at `/v1/openapi.json`;
//! a test checks that every route it lists answers. Errors are JSON
//! `{"error": {"code", "message"}}` with a status from [`ErrorClass`].
//!
//! The long history calls (commit, checkout, reset, gc, fsck) stream their progress when the
//! request says `Accept: application/x-ndjson`: see [`crate::progress`] and [`answer`].

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use dvol_backends::{BackendKind, ByteSize, Filesystem};
use serde::{Deserialize, Serialize};

use crate::body::{parse_json, MAX_BODY_BYTES};
use crate::containers::{not_resumed_text, NotResumed, Quiesce};
use crate::error::{ErrorClass, ServiceError};
use crate::history::{ChangeView, LogView, RefView};
use crate::profile::Profile;
use crate::progress::{ChannelProgress, StreamLine, NDJSON};
use crate::service::{NodeInfo, VolumeService};
use crate::volume::Volume;
use dvol_snapshot::{NoProgress, Progress};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::task::JoinHandle;

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

    fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_string(),
            message: self.message.clone(),
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// What failed and what to do.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.detail(),
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

/// Where an operation reports its progress: nowhere, or a streamed answer.
type Reporter = Arc<dyn Progress + Send>;

/// Whether the request's `Accept` header asks for `application/x-ndjson`.
fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let media = range.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case(NDJSON)
        })
}

/// The next thing a streamed answer has to say.
enum Next<T> {
    /// A progress line.
    Line(Vec<u8>),
    /// The operation is over.
    Done(Result<T, ApiError>),
}

async fn next<T>(
    lines: &mut UnboundedReceiver<Vec<u8>>,
    outcome: &mut JoinHandle<Result<T, ApiError>>,
) -> Next<T> {
    tokio::select! {
        biased;
        Some(line) = lines.recv() => Next::Line(line),
        joined = outcome => Next::Done(joined.unwrap_or_else(|e| {
            Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))
        })),
    }
}

/// A streamed answer being sent: lines ready to go, further progress, and the operation.
struct Streaming<T> {
    ready: VecDeque<Vec<u8>>,
    lines: UnboundedReceiver<Vec<u8>>,
    outcome: Option<JoinHandle<Result<T, ApiError>>>,
}

impl<T: Serialize> Streaming<T> {
    /// Queues the progress lines already sent and then the outcome as the last line.
    fn finish(&mut self, outcome: Result<T, ApiError>) {
        self.outcome = None;
        while let Ok(line) = self.lines.try_recv() {
            self.ready.push_back(line);
        }
        let last = match outcome {
            Ok(value) => StreamLine::Result(value),
            Err(e) => StreamLine::Error(e.detail()),
        };
        self.ready.push_back(last.to_line());
    }

    async fn next_line(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if self.ready.is_empty() {
            let outcome = self.outcome.as_mut()?;
            match next(&mut self.lines, outcome).await {
                Next::Line(line) => self.ready.push_back(line),
                Next::Done(result) => self.finish(result),
            }
        }
        let line = self.ready.pop_front()?;
        Some((Ok(Bytes::from(line)), self))
    }
}

/// Runs a long operation and answers its outcome.
///
/// Without `Accept: application/x-ndjson`, the answer is the JSON value with `status`, or the
/// error. With it, the answer is `200` and a stream of JSON lines: progress events, then one
/// `{"result": ...}` or `{"error": ...}` line. An operation that fails before its first
/// progress event (bad volume, busy, uncommitted changes, containers that cannot be stopped)
/// is answered as without streaming, with the error's status.
///
/// The operation runs in its own task, so it completes (and restarts the containers it
/// stopped) even when the client goes away.
async fn answer<T, Fut>(
    headers: &HeaderMap,
    status: StatusCode,
    work: impl FnOnce(Reporter) -> Fut,
) -> Response
where
    T: Serialize + Send + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    if !wants_stream(headers) {
        let outcome = tokio::spawn(work(Arc::new(NoProgress))).await;
        return match outcome {
            Ok(Ok(value)) => (status, Json(value)).into_response(),
            Ok(Err(e)) => e.into_response(),
            Err(e) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e).into_response()
            }
        };
    }
    let (sender, mut lines) = unbounded_channel();
    let mut outcome = tokio::spawn(work(Arc::new(ChannelProgress::new(sender))));
    let first = next(&mut lines, &mut outcome).await;
    let mut stream = Streaming {
        ready: VecDeque::new(),
        lines,
        outcome: Some(outcome),
    };
    match first {
        Next::Line(line) => stream.ready.push_back(line),
        Next::Done(Err(e)) if stream.lines.is_empty() => return e.into_response(),
        Next::Done(result) => stream.finish(result),
    }
    let body = Body::from_stream(futures_util::stream::unfold(stream, Streaming::next_line));
    ([(header::CONTENT_TYPE, NDJSON)], body).into_response()
}

/// An answer after containers were stopped or paused around the operation.
#[derive(Debug, Clone, Serialize)]
pub struct Resumed<T> {
    /// The operation's answer.
    #[serde(flatten)]
    pub view: T,
    /// Containers stopped or paused for the operation that could not be started or unpaused
    /// again; empty normally.
    pub containers_not_resumed: Vec<NotResumed>,
}

impl<T> Resumed<T> {
    fn all(view: T) -> Self {
        Resumed {
            view,
            containers_not_resumed: Vec::new(),
        }
    }
}

/// Runs `work` with the volume's running containers stopped (or paused) around it, when any
/// container has the volume mounted. Containers that cannot be started again are listed in
/// the answer, or named in the error's message when the operation failed.
async fn around_containers<T: Send + 'static>(
    service: &Arc<VolumeService>,
    name: &str,
    how: Quiesce,
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<Resumed<T>, ApiError> {
    let volume = service.get(name)?;
    if !volume.in_use() {
        return blocking(work).await.map(Resumed::all);
    }
    let names = service.docker_names(&volume);
    let around = service
        .containers()
        .around(volume.name.as_str(), &names, how, blocking(work))
        .await
        .map_err(|e| ApiError::from(ServiceError::from(e)))?;
    resumed(how, around.outcome, around.not_resumed)
}

/// The answer of an operation run between stopping and restarting containers.
fn resumed<T>(
    how: Quiesce,
    outcome: Result<T, ApiError>,
    not_resumed: Vec<NotResumed>,
) -> Result<Resumed<T>, ApiError> {
    match outcome {
        Ok(view) => Ok(Resumed {
            view,
            containers_not_resumed: not_resumed,
        }),
        Err(mut e) if !not_resumed.is_empty() => {
            e.message = format!(
                "{}; also, {}",
                e.message,
                not_resumed_text(how, &not_resumed)
            );
            Err(e)
        }
        Err(e) => Err(e),
    }
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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CommitRequest = parse_body(body, "commit")?;
    let answered = answer(&headers, StatusCode::CREATED, |progress| async move {
        let (svc, target, pause) = (service.clone(), name.clone(), request.pause);
        let work = move || {
            let author = request.author.as_deref().unwrap_or("dvol");
            svc.commit(&target, &request.message, author, &*progress)
        };
        if pause {
            around_containers(&service, &name, Quiesce::Pause, work).await
        } else {
            blocking(work).await.map(Resumed::all)
        }
    });
    Ok(answered.await)
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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: CheckoutRequest = parse_body(body, "checkout")?;
    let answered = answer(&headers, StatusCode::OK, |progress| async move {
        if !request.force {
            // Refuse before stopping any container; checked again once they are stopped.
            let (svc, target) = (service.clone(), name.clone());
            blocking(move || svc.check_committed(&target)).await?;
        }
        let (svc, target) = (service.clone(), name.clone());
        around_containers(&service, &name, Quiesce::Stop, move || {
            svc.checkout(
                &target,
                &request.rev,
                request.new_branch.as_deref(),
                request.force,
                &*progress,
            )
        })
        .await
    });
    Ok(answered.await)
}

async fn reset(
    State(service): State<Arc<VolumeService>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ResetRequest = parse_body(body, "reset")?;
    let answered = answer(&headers, StatusCode::OK, |progress| async move {
        let (svc, target) = (service.clone(), name.clone());
        around_containers(&service, &name, Quiesce::Stop, move || {
            svc.reset_hard(&target, &request.rev, &*progress)
        })
        .await
    });
    Ok(answered.await)
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

async fn fsck(State(service): State<Arc<VolumeService>>, headers: HeaderMap) -> Response {
    answer(&headers, StatusCode::OK, |progress| async move {
        let report = blocking(move || service.fsck(&*progress)).await?;
        Ok(FsckView {
            clean: report.is_clean(),
            objects_checked: report.objects_checked,
            corrupt: report.corrupt.iter().map(ToString::to_string).collect(),
            missing: report.missing.iter().map(ToString::to_string).collect(),
            bad_refs: report.bad_refs.clone(),
            unreachable: report.unreachable,
        })
    })
    .await
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

async fn gc(State(service): State<Arc<VolumeService>>, headers: HeaderMap) -> Response {
    answer(&headers, StatusCode::OK, |progress| async move {
        let report = blocking(move || service.gc(&*progress)).await?;
        Ok(GcView {
            objects_kept: report.objects_kept,
            objects_removed: report.objects_removed,
            bytes_removed: report.bytes_removed,
        })
    })
    .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::{json, Value};

    fn ndjson() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            "application/json;q=0.5, application/x-ndjson"
                .parse()
                .unwrap(),
        );
        headers
    }

    async fn lines(response: Response) -> Vec<Value> {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn busy() -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "busy", "volume v is busy; try again")
    }

    #[test]
    fn only_the_ndjson_media_type_asks_for_a_stream() {
        assert!(wants_stream(&ndjson()));
        let mut plain = HeaderMap::new();
        assert!(!wants_stream(&plain));
        plain.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert!(!wants_stream(&plain));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_after_progress_is_the_last_line() {
        let response = answer(&ndjson(), StatusCode::CREATED, |progress| async move {
            blocking(move || {
                progress.start(dvol_snapshot::Phase::READ, Some(10));
                progress.advance(4);
                progress.finish();
                Ok(())
            })
            .await?;
            Err::<(), _>(busy())
        })
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], NDJSON);
        let got = lines(response).await;
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0]["progress"]["phase"], "read");
        assert_eq!(got[1]["progress"]["done"], 4);
        assert_eq!(got[1]["progress"]["finished"], true);
        assert_eq!(
            got[2],
            json!({"error": {"code": "busy", "message": "volume v is busy; try again"}})
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_before_any_progress_keeps_its_status() {
        let response = answer(&ndjson(), StatusCode::CREATED, |_| async {
            Err::<(), _>(busy())
        })
        .await;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "busy");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_progress_a_stream_is_just_the_result() {
        let response = answer(&ndjson(), StatusCode::CREATED, |_| async { Ok(json!(5)) }).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(lines(response).await, [json!({"result": 5})]);
        let plain = answer(&HeaderMap::new(), StatusCode::CREATED, |_| async { Ok(5) }).await;
        assert_eq!(plain.status(), StatusCode::CREATED);
        assert_eq!(plain.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn containers_not_resumed_join_the_answer_or_the_error() {
        let left = vec![NotResumed {
            container: "web".into(),
            error: "port is already allocated".into(),
        }];
        let ok = resumed(Quiesce::Stop, Ok(json!({"commit": "c1"})), left.clone()).unwrap();
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({
                "commit": "c1",
                "containers_not_resumed": [
                    {"container": "web", "error": "port is already allocated"}
                ]
            })
        );
        let none = serde_json::to_value(Resumed::all(json!({"commit": "c1"}))).unwrap();
        assert_eq!(none["containers_not_resumed"], json!([]));
        let failed = resumed::<Value>(Quiesce::Stop, Err(busy()), left.clone()).unwrap_err();
        assert_eq!(failed.code, "busy");
        assert_eq!(
            failed.message,
            "volume v is busy; try again; also, container web could not be started again \
             (port is already allocated); start it with `docker start web`"
        );
        let paused = resumed::<Value>(Quiesce::Pause, Err(busy()), left).unwrap_err();
        assert!(
            paused
                .message
                .ends_with("unpause it with `docker unpause web`"),
            "{}",
            paused.message
        );
    }
}
