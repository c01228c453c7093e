//! The REST control API, version 1 (`/run/dvol/dvol.sock`, optionally TCP with a token).
//!
//! One file per resource; each handler only parses the request, calls the
//! [`VolumeService`] (on a blocking thread for anything that touches disk) and shapes the
//! answer from the wire types of [`dvol_api`]. Streaming of long calls is [`stream`]'s.
//!
//! The routes are registered once, in [`routes`], together with their OpenAPI description:
//! the document served at `/v1/openapi.json` ([`openapi`]) is generated from the same
//! registration and the wire types' schemas, so routes and document cannot drift. Errors are
//! JSON `{"error": {"code", "message"}}` ([`dvol_api::ErrorBody`]).
//!
//! `GET /metrics` ([`metrics`]) serves [`crate::metrics`] in the Prometheus text format; a
//! middleware there times every call by the route template it matched.

mod cluster;
mod error;
mod history;
mod maintenance;
mod metrics;
mod node;
mod path;
mod refs;
mod remotes;
mod stream;
mod transfer;
mod volumes;

use std::sync::{Arc, OnceLock};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::body::MAX_BODY_BYTES;
use crate::service::VolumeService;

pub use error::ApiError;
pub use transfer::is_object_stream;

/// The document's frame: what the API is, around the paths the routes add.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "dvol control API",
        version = "1",
        description = "REST API of the dvol daemon, on the unix socket /run/dvol/dvol.sock and optionally on TCP (--listen) with `Authorization: Bearer <token>`. Errors are JSON {\"error\":{\"code\",\"message\"}}, every one: besides the statuses each operation lists, any call may answer 400 bad_path or bad_query (a path or query string that is not valid UTF-8 once percent-decoded), 404 no_route (no such endpoint) or 405 method_not_allowed, with that body. The long history calls (commit, checkout, reset, gc, fsck) stream their progress as JSON lines when asked with `Accept: application/x-ndjson`: the answer is then 200 with `Content-Type: application/x-ndjson`, zero or more {\"progress\":{...}} lines (at most about 10 a second, plus one when each phase starts and one when it finishes), and one last line, {\"result\": <the usual answer>} or {\"error\":{\"code\",\"message\"}}. A failure before the first progress line (malformed body, unknown volume or revision, busy volume, uncommitted changes, containers that cannot be stopped) is answered as without streaming: its error status and a JSON error body."
    ),
    components(schemas(dvol_api::ErrorBody)),
    modifiers(&BearerToken),
    security((), ("bearer" = [])),
    tags(
        (name = "node", description = "The daemon, this host and its profiles"),
        (name = "volumes", description = "Volumes: create, inspect, resize, remove"),
        (name = "history", description = "A volume's commits, branches, tags, checkout and reset"),
        (name = "maintenance", description = "The history repository every volume shares"),
        (name = "cluster", description = "The registry a cluster of daemons shares (cluster mode: `dvol daemon --cluster URL`)"),
        (name = "transfer", description = "Remotes, push and clone between hosts, and the protocol between daemons (calls marked \"between daemons\")"),
    )
)]
struct ApiDoc;

/// The bearer token TCP clients send (`dvol daemon --listen ADDR --token-file F`); on the
/// unix socket none is needed, and a TCP call without it answers 401.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "Required over TCP (--listen), on every route (GET /metrics too): the token in the daemon's --token-file; not on the unix socket. Without it a TCP call answers 401 with the error body. Over TCP a client has the header time-out (10 s unless tcp_header_timeout_seconds says otherwise) to send a request's header, and again its body: a connection whose header does not come in time (a new one, or a kept-alive one left idle) is closed; a body that does not come in time is answered 408 with code body_timeout and the connection closed.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Every route of the API with its OpenAPI description: the one list of routes.
fn routes() -> OpenApiRouter<Arc<VolumeService>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(node::health))
        .routes(routes!(node::node))
        .routes(routes!(node::profiles))
        .routes(routes!(volumes::list, volumes::create))
        .routes(routes!(volumes::get, volumes::delete))
        .routes(routes!(volumes::resize))
        .routes(routes!(history::log, history::commit))
        .routes(routes!(history::status))
        .routes(routes!(refs::branches, refs::create_branch))
        .routes(routes!(refs::delete_branch))
        .routes(routes!(refs::tags, refs::create_tag))
        .routes(routes!(refs::delete_tag))
        .routes(routes!(refs::reflog))
        .routes(routes!(history::checkout))
        .routes(routes!(history::reset))
        .routes(routes!(history::diff))
        .routes(routes!(maintenance::fsck))
        .routes(routes!(maintenance::gc))
        .routes(routes!(cluster::nodes))
        .routes(routes!(cluster::volumes))
        .routes(routes!(cluster::events))
        .routes(routes!(remotes::list, remotes::add))
        .routes(routes!(remotes::remove))
        .routes(routes!(transfer::push))
        .routes(routes!(transfer::incoming))
        .routes(routes!(transfer::fetch))
        .routes(routes!(transfer::pull))
        .routes(routes!(transfer::move_volume))
        .routes(routes!(transfer::clone))
        .routes(routes!(transfer::offer_push))
        .routes(routes!(transfer::have))
        .routes(routes!(transfer::objects))
        .routes(routes!(transfer::finish))
        .routes(routes!(transfer::fetch_plan))
        .routes(routes!(transfer::fetch_ids))
        .routes(routes!(transfer::fetch_objects))
        .routes(routes!(transfer::resolve))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics::metrics))
}

/// The OpenAPI document of this API, generated from [`routes`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The OpenAPI document as served, made once.
fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serialises")
    })
}

/// This document: the API's routes, parameters, bodies and answers.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "node", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
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

/// The REST API router. Every refusal, the router's and the extractors' too, is the JSON
/// error envelope ([`error::json_errors`]); every answer carries [`dvol_api::API_HEADER`].
///
/// Every call is timed for `GET /metrics` by the route template it matched
/// ([`metrics::track`], around the JSON envelope so that it sees the final status).
pub fn router(service: Arc<VolumeService>) -> Router {
    let (router, _) = routes().split_for_parts();
    let timed = service.metrics().clone();
    let router = router
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn_with_state(timed, metrics::track))
        .with_state(service);
    with_api_header(router)
}

/// Marks every answer of `router` with [`dvol_api::API_HEADER`]: also the refusals of layers
/// put around the API (the TCP listener's token and body deadline).
pub fn with_api_header(router: Router) -> Router {
    router.layer(middleware::map_response(
        |mut response: Response| async move {
            response
                .headers_mut()
                .insert(dvol_api::API_HEADER, header::HeaderValue::from_static("1"));
            response
        },
    ))
}
