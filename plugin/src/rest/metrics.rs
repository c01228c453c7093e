//! `/metrics`: the daemon's metrics for Prometheus, and the middleware that times every REST
//! call ([`track`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType};
use utoipa::openapi::RefOr;

use super::error::{ApiError, InternalError};
use crate::metrics::{Metrics, Snapshot, CONTENT_TYPE, UNMATCHED_ROUTE};
use crate::service::VolumeService;

/// The exposition text's schema: any body, since JSON Schema cannot describe the format.
struct ExpositionText;

impl utoipa::PartialSchema for ExpositionText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::AnyValue)
            .description(Some(
                "Prometheus text exposition format 0.0.4: # HELP and # TYPE lines and one sample a line",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ExpositionText {}

/// The daemon's metrics, in the Prometheus text format.
///
/// Volumes by profile and state and the capacity of each profile (measured at each scrape),
/// latency histograms of the Docker plugin protocol calls by method and of the REST calls by
/// method, route template and status, commit and checkout durations and bytes, read point
/// hold times and the bytes sent to and received from other daemons. Every metric is named
/// `dvol_*` in base units (`_seconds`, `_bytes`, `_total` for counters). On the unix socket no
/// token is needed; over TCP (--listen) the bearer token is, as for every route (Prometheus:
/// `authorization: {credentials_file: ...}` or `bearer_token_file`). The call is not listed
/// among the REST calls it reports until its answer is sent, so a scrape counts the ones
/// before it.
#[utoipa::path(get, path = "/metrics", tag = "node", operation_id = "metrics",
    responses(
        (status = 200, description = "The metrics (Content-Type: text/plain; version=0.0.4; charset=utf-8)",
            content_type = "text/plain", body = inline(ExpositionText)),
        InternalError,
    ))]
pub async fn metrics(State(service): State<Arc<VolumeService>>) -> Result<Response, ApiError> {
    // Capacity runs statvfs and, for LVM, the lvm tool: off the async workers.
    let text = service
        .blocking(|s| Ok(s.metrics().render(&snapshot(s))))
        .await?
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// What the service looks like now: its volumes by profile and state, and the space of each
/// profile that can be measured.
fn snapshot(service: &VolumeService) -> Snapshot {
    let mut volumes = BTreeMap::new();
    for volume in service.list() {
        *volumes
            .entry((volume.profile.to_string(), volume.state.as_str()))
            .or_insert(0) += 1;
    }
    let capacity = service
        .node_info()
        .profiles
        .into_iter()
        .filter_map(|p| Some((p.profile, p.capacity?)))
        .collect();
    Snapshot {
        profiles: service
            .profiles()
            .iter()
            .map(|p| p.name.to_string())
            .collect(),
        volumes,
        capacity,
    }
}

/// Times a REST call to its answer's head and records it by HTTP method, the route template
/// it matched (never the raw path, so the series stay few) and status.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string());
    let response = next.run(request).await;
    metrics.api_call(
        method.as_str(),
        route.as_deref().unwrap_or(UNMATCHED_ROUTE),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use dvol_backends::directory::DirectoryBackend;
    use dvol_backends::{Backend, BackendKind};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::config::Config;
    use crate::profile::HostBackends;
    use crate::volume::Layout;
    use crate::VolumeService;

    fn service(root: &Path) -> std::sync::Arc<VolumeService> {
        let layout = Layout::new(root.join("root"));
        let backend: std::sync::Arc<dyn Backend> = std::sync::Arc::new(
            DirectoryBackend::open(layout.backend_dir(BackendKind::Directory)).unwrap(),
        );
        let config = Config::parse(
            "default_profile = \"bronze\"\n[profiles.bronze]\nbackend = \"directory\"\n[profiles.gold]\nbackend = \"lvm\"\nvolume_group = \"vg\"\nthin_pool = \"pool\"\n",
            Path::new("test.toml"),
        )
        .unwrap();
        let host = HostBackends::directory_only(backend, "no LVM in this test");
        std::sync::Arc::new(VolumeService::open(layout, &config, host).unwrap())
    }

    async fn call(
        router: axum::Router,
        method: &str,
        path: &str,
        body: &str,
    ) -> (StatusCode, String, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    }

    #[tokio::test]
    async fn the_router_serves_the_families_and_counts_routes_by_template() {
        let tmp = tempfile::tempdir().unwrap();
        let service = service(tmp.path());
        let api = crate::rest::router(service.clone());
        let (status, _, _) = call(api.clone(), "POST", "/v1/volumes", r#"{"name":"m1"}"#).await;
        assert_eq!(status, StatusCode::CREATED);
        for _ in 0..2 {
            let (status, _, _) = call(api.clone(), "GET", "/v1/volumes/m1", "").await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, _, _) = call(api.clone(), "GET", "/v1/volumes/nope", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(api.clone(), "GET", "/no/such/route", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let plugin = crate::docker::router(service.clone());
        let (status, _, _) = call(plugin, "POST", "/VolumeDriver.Get", r#"{"Name":"m1"}"#).await;
        assert_eq!(status, StatusCode::OK);

        let (status, content_type, text) = call(api.clone(), "GET", "/metrics", "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        let api_count = |route: &str, status: &str| {
            sample(
                &text,
                &format!(
                    r#"dvol_api_request_duration_seconds_count{{method="GET",route="{route}",status="{status}"}}"#
                ),
            )
        };
        assert_eq!(api_count("/v1/volumes/{name}", "200"), Some(2.0), "{text}");
        assert_eq!(api_count("/v1/volumes/{name}", "404"), Some(1.0), "{text}");
        assert_eq!(api_count("unmatched", "404"), Some(1.0), "{text}");
        assert!(!text.contains("/v1/volumes/m1"), "raw paths leak: {text}");
        assert_eq!(
            sample(
                &text,
                r#"dvol_plugin_request_duration_seconds_count{method="VolumeDriver.Get"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"dvol_volumes{profile="bronze",state="ready"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, r#"dvol_volumes{profile="gold",state="ready"}"#),
            Some(0.0)
        );
        let total = sample(
            &text,
            r#"dvol_profile_capacity_bytes{kind="total",profile="bronze"}"#,
        );
        assert!(total.is_some_and(|t| t > 0.0), "{text}");
        assert!(
            !text.contains(r#"dvol_profile_capacity_bytes{kind="total",profile="gold"}"#),
            "an unavailable profile has no capacity: {text}"
        );

        // The scrape itself shows in the next one.
        let (_, _, text) = call(api, "GET", "/metrics", "").await;
        assert_eq!(
            sample(
                &text,
                r#"dvol_api_request_duration_seconds_count{method="GET",route="/metrics",status="200"}"#
            ),
            Some(1.0)
        );
    }
}
