//! Every protocol handler through the routers, without a server: requests go straight into
//! `docker::router` and `rest::router` as the engine or a client would send them. Every REST
//! answer is checked against the OpenAPI document: its status must be documented for the
//! operation, and its body must match the documented schema.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use dvol_backends::directory::DirectoryBackend;
use dvol_backends::{Backend, BackendKind};
use dvol_plugin::config::Config;
use dvol_plugin::profile::HostBackends;
use dvol_plugin::volume::Layout;
use dvol_plugin::{docker, rest, VolumeService};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Three directory profiles and one whose backend is missing.
const TEST_CONFIG: &str = r#"
default_profile = "bronze"
[profiles.bronze]
backend = "directory"
[profiles.silver]
backend = "directory"
[profiles.gold]
backend = "directory"
[profiles.tape]
backend = "loop"
size = "1G"
"#;

struct Fixture {
    service: Arc<VolumeService>,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path().join("root"));
        let backend: Arc<dyn Backend> =
            Arc::new(DirectoryBackend::open(layout.backend_dir(BackendKind::Directory)).unwrap());
        let config = Config::parse(TEST_CONFIG, std::path::Path::new("test.toml")).unwrap();
        let host = HostBackends::directory_only(backend, "no loop devices in this test");
        let service = VolumeService::open(layout, &config, host).unwrap();
        Fixture {
            service: Arc::new(service),
            _tmp: tmp,
        }
    }

    fn docker(&self) -> Router {
        docker::router(self.service.clone())
    }

    fn api(&self) -> Router {
        rest::router(self.service.clone())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for volume in self.service.list() {
            for id in volume.mounts.keys() {
                let _ = self.service.unmount(volume.name.as_str(), id);
            }
        }
    }
}

/// Sends a request with no Content-Type, as the Docker Engine does.
async fn send(
    router: Router,
    method: &str,
    path: &str,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("accept", "application/vnd.docker.plugins.v1.2+json")
        .body(body.into())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = content_type(&response);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !bytes.is_empty() {
        check_documented(method, path, status, &content_type, &value);
    }
    (status, value)
}

fn content_type(response: &axum::response::Response) -> String {
    response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The OpenAPI document, as JSON.
fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| serde_json::to_value(rest::openapi()).unwrap())
}

/// The documented operation that `method` on the concrete `path` reaches, if any.
fn operation(method: &str, path: &str) -> Option<(&'static str, &'static Value)> {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    document()["paths"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(template, _)| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
        })
        .and_then(|(template, ops)| {
            let op = ops.get(method.to_lowercase())?;
            Some((template.as_str(), op))
        })
}

/// Asserts that an answer of a documented operation has a documented status and a body that
/// matches the documented schema for its content type.
fn check_documented(
    method: &str,
    path: &str,
    status: StatusCode,
    content_type: &str,
    body: &Value,
) {
    let Some((template, op)) = operation(method, path) else {
        return;
    };
    let what = format!("{method} {template} answered {status}");
    let response = &op["responses"][status.as_str()];
    assert!(
        response.is_object(),
        "{what}, which is not documented: {body}"
    );
    let media = content_type.split(';').next().unwrap().trim();
    let schema = &response["content"][media]["schema"];
    assert!(
        schema.is_object(),
        "{what} as {media}, which is not documented: {body}"
    );
    let mut schema = schema.clone();
    schema["components"] = document()["components"].clone();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the body does not match its schema: {errors:?}\n{body}"
    );
}

async fn plugin(f: &Fixture, method: &str, body: &str) -> Value {
    let (status, value) = send(f.docker(), "POST", &format!("/{method}"), body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{method} {body}: {value}");
    value
}

fn err(value: &Value) -> &str {
    value["Err"].as_str().unwrap_or("")
}

fn can_mount() -> bool {
    rustix::process::geteuid().is_root()
}

#[tokio::test]
async fn activate_with_an_empty_body_and_no_content_type() {
    let f = Fixture::new();
    assert_eq!(
        plugin(&f, "Plugin.Activate", "").await,
        json!({"Implements": ["VolumeDriver"]})
    );
    assert_eq!(
        plugin(&f, "VolumeDriver.Capabilities", "{}").await,
        json!({"Capabilities": {"Scope": "local"}})
    );
    assert_eq!(
        plugin(&f, "VolumeDriver.Capabilities", "").await["Capabilities"]["Scope"],
        "local"
    );
}

#[tokio::test]
async fn create_get_list_path_remove() {
    let f = Fixture::new();
    assert!(
        err(&plugin(&f, "VolumeDriver.Get", r#"{"Name":"orders"}"#).await)
            .contains("no volume named")
    );
    let created = plugin(
        &f,
        "VolumeDriver.Create",
        r#"{"Name":"orders@silver","Opts":null}"#,
    )
    .await;
    assert_eq!(created, json!({}), "create answers no Err");
    // Repeating a create is harmless.
    assert_eq!(
        plugin(&f, "VolumeDriver.Create", r#"{"Name":"orders","Opts":{}}"#).await,
        json!({})
    );

    let got = plugin(&f, "VolumeDriver.Get", r#"{"Name":"orders@silver"}"#).await;
    let volume = &got["Volume"];
    assert_eq!(
        volume["Name"], "orders@silver",
        "Get answers the name as asked"
    );
    let uuid = volume["Status"]["uuid"].as_str().unwrap();
    assert!(volume["Mountpoint"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/mounts/{uuid}")));
    for key in ["uuid", "profile", "backend", "size", "created", "mounts"] {
        assert!(
            volume["Status"][key].is_string(),
            "Status.{key} missing: {volume}"
        );
    }
    assert_eq!(volume["Status"]["profile"], "silver");
    let created_at = volume["CreatedAt"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created_at).is_ok(),
        "{created_at}"
    );

    let path = plugin(&f, "VolumeDriver.Path", r#"{"Name":"orders"}"#).await;
    assert_eq!(
        path["Mountpoint"], volume["Mountpoint"],
        "Path works before Mount"
    );

    let list = plugin(&f, "VolumeDriver.List", "").await;
    let names: Vec<&str> = list["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders"]);

    let data = f
        .service
        .layout()
        .backend_dir(BackendKind::Directory)
        .join(uuid);
    assert!(data.is_dir());
    assert_eq!(
        plugin(&f, "VolumeDriver.Remove", r#"{"Name":"orders"}"#).await,
        json!({})
    );
    assert!(!data.exists(), "remove deletes the data");
    assert!(plugin(&f, "VolumeDriver.List", "{}").await["Volumes"]
        .as_array()
        .unwrap()
        .is_empty());
    // Removing what is gone is not an error for the engine.
    assert_eq!(
        plugin(&f, "VolumeDriver.Remove", r#"{"Name":"orders"}"#).await,
        json!({})
    );
}

#[tokio::test]
async fn profile_in_the_name_must_match_an_existing_volume() {
    let f = Fixture::new();
    plugin(&f, "VolumeDriver.Create", r#"{"Name":"db@gold"}"#).await;
    let mismatch = plugin(&f, "VolumeDriver.Create", r#"{"Name":"db@bronze"}"#).await;
    assert!(
        err(&mismatch).contains("already exists with profile gold"),
        "{mismatch}"
    );
    let get = plugin(&f, "VolumeDriver.Get", r#"{"Name":"db@bronze"}"#).await;
    assert!(err(&get).contains("profile gold"), "{get}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_err() {
    let f = Fixture::new();
    let cases = [
        (r#"{"Name":"../etc"}"#, "invalid volume name"),
        (r#"{"Name":"a/b"}"#, "contains '/'"),
        (r#"{"Name":"a\u0000b"}"#, "contains '\\0'"),
        (r#"{"Name":"x@platinum"}"#, "unknown profile \"platinum\""),
        (r#"{"Name":"x","Opts":{"size":"-1"}}"#, "invalid size"),
        (r#"{"Name":"x","Opts":{"size":"1E"}}"#, "largest volume"),
        (
            r#"{"Name":"x","Opts":{"colour":"red"}}"#,
            "known options: size, profile, fs, from",
        ),
        (
            r#"{"Name":"x","Opts":{"fs":"xfs"}}"#,
            "fs applies only to loop and lvm",
        ),
        (
            r#"{"Name":"x@snapshot-abcdef"}"#,
            "matches no volume UUID and no commit",
        ),
    ];
    for (body, expected) in cases {
        let answer = plugin(&f, "VolumeDriver.Create", body).await;
        assert!(err(&answer).contains(expected), "{body}: {answer}");
    }
    let long = format!(r#"{{"Name":"{}"}}"#, "n".repeat(300));
    assert!(err(&plugin(&f, "VolumeDriver.Create", &long).await).contains("at most 64 characters"));
    assert!(f.service.list().is_empty(), "nothing was created");

    let (status, answer) = send(f.docker(), "POST", "/VolumeDriver.Create", r#"{"Name":"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err(&answer).contains("malformed VolumeDriver.Create request"),
        "{answer}"
    );
    let (status, answer) = send(f.docker(), "POST", "/VolumeDriver.Frobnicate", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(err(&answer).contains("unknown plugin method"), "{answer}");
    let (status, answer) = send(
        f.docker(),
        "POST",
        "/VolumeDriver.Create",
        vec![b' '; 2 << 20],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!err(&answer).is_empty());
}

#[tokio::test]
async fn mounts_are_counted_per_id_and_block_remove() {
    if !can_mount() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    let f = Fixture::new();
    plugin(&f, "VolumeDriver.Create", r#"{"Name":"web"}"#).await;
    let first = plugin(&f, "VolumeDriver.Mount", r#"{"Name":"web","ID":"a"}"#).await;
    let mountpoint = std::path::PathBuf::from(first["Mountpoint"].as_str().unwrap());
    let mounted = || dvol_backends::mount_table::is_mount_point(&mountpoint).unwrap();
    assert!(mounted());
    // docker cp: a second mount with the same id while the container runs.
    plugin(&f, "VolumeDriver.Mount", r#"{"Name":"web","ID":"a"}"#).await;
    plugin(&f, "VolumeDriver.Mount", r#"{"Name":"web","ID":"b"}"#).await;
    let busy = plugin(&f, "VolumeDriver.Remove", r#"{"Name":"web"}"#).await;
    assert!(err(&busy).contains("in use"), "{busy}");
    for id in ["a", "b"] {
        plugin(
            &f,
            "VolumeDriver.Unmount",
            &format!(r#"{{"Name":"web","ID":"{id}"}}"#),
        )
        .await;
        assert!(mounted(), "still mounted after one unmount of {id}");
    }
    plugin(&f, "VolumeDriver.Unmount", r#"{"Name":"web","ID":"a"}"#).await;
    assert!(!mounted(), "last unmount unmounts");
    // An unmount the engine repeats after a restart is tolerated.
    assert_eq!(
        plugin(&f, "VolumeDriver.Unmount", r#"{"Name":"web","ID":"a"}"#).await,
        json!({})
    );
    assert_eq!(
        plugin(&f, "VolumeDriver.Remove", r#"{"Name":"web"}"#).await,
        json!({})
    );
}

#[tokio::test]
async fn rest_volume_lifecycle() {
    let f = Fixture::new();
    let (status, created) = send(
        f.api(),
        "POST",
        "/v1/volumes",
        r#"{"name":"api1","options":{"size":"2G","profile":"gold"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["profile"], "gold");
    assert_eq!(created["size_bytes"], 2u64 << 30);
    assert_eq!(created["size_enforced"], false);
    let (status, again) = send(f.api(), "POST", "/v1/volumes", r#"{"name":"api1"}"#).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "create of an existing volume is idempotent"
    );
    assert_eq!(again["id"], created["id"]);

    let (status, listed) = send(f.api(), "GET", "/v1/volumes", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (status, one) = send(f.api(), "GET", "/v1/volumes/api1@gold", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], created["id"]);

    let (status, _) = send(f.api(), "DELETE", "/v1/volumes/api1", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = send(f.api(), "GET", "/v1/volumes/api1", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(gone["error"]["code"], "not_found");
    let (status, gone) = send(f.api(), "DELETE", "/v1/volumes/api1", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
}

#[tokio::test]
async fn rest_errors_have_codes_and_statuses() {
    let f = Fixture::new();
    let cases = [
        (
            "POST",
            "/v1/volumes",
            r#"{"name":"x@platinum"}"#.to_string(),
            StatusCode::BAD_REQUEST,
            "unknown_profile",
        ),
        (
            "POST",
            "/v1/volumes",
            r#"{"name":"../x"}"#.to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            "POST",
            "/v1/volumes",
            r#"{"name":"x","options":{"size":"1E"}}"#.to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_option",
        ),
        (
            "POST",
            "/v1/volumes",
            r#"{"name":"#.to_string(),
            StatusCode::BAD_REQUEST,
            "bad_body",
        ),
        (
            "POST",
            "/v1/volumes",
            r#"{"name":"x","colour":1}"#.to_string(),
            StatusCode::BAD_REQUEST,
            "bad_body",
        ),
        (
            "POST",
            "/v1/volumes",
            " ".repeat(2 << 20),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "GET",
            "/v1/nothing",
            String::new(),
            StatusCode::NOT_FOUND,
            "no_route",
        ),
        (
            "PUT",
            "/v1/volumes",
            String::new(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/volumes/a%2Fb",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (got, answer) = send(f.api(), method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{method} {path}: {answer}");
        assert!(!answer["error"]["message"].as_str().unwrap_or("").is_empty());
    }
    send(f.api(), "POST", "/v1/volumes", r#"{"name":"db@gold"}"#).await;
    let (status, answer) = send(f.api(), "POST", "/v1/volumes", r#"{"name":"db@silver"}"#).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(answer["error"]["code"], "profile_mismatch");
}

/// Sends `method path` as raw as a client can (no body, no headers) and returns the status,
/// the content type and the body's bytes.
async fn send_raw(router: Router, method: &str, path: &str) -> (StatusCode, String, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = content_type(&response);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, bytes.to_vec())
}

/// Every refusal, whatever refused it (a handler, an extractor, the router), is the JSON
/// error envelope with a documented status: paths that are not valid UTF-8 once decoded,
/// unknown routes and methods, stray methods such as OPTIONS or made-up ones.
#[tokio::test]
async fn every_rest_refusal_is_the_json_error_envelope() {
    let f = Fixture::new();
    let cases = [
        (
            "GET",
            "/v1/volumes/%FF",
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        (
            "DELETE",
            "/v1/volumes/%C3%28",
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        (
            "GET",
            "/v1/volumes/%FF/status",
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        (
            "GET",
            "/v1/volumes/%FF/commits",
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        (
            "DELETE",
            "/v1/volumes/v/branches/%FE%FF",
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        (
            "DELETE",
            "/v1/volumes/%FF/tags/t",
            StatusCode::BAD_REQUEST,
            "bad_path",
        ),
        ("GET", "/v1/%FF", StatusCode::BAD_REQUEST, "bad_path"),
        ("GET", "/", StatusCode::NOT_FOUND, "no_route"),
        (
            "GET",
            "/v1/volumes/a/b/c/d",
            StatusCode::NOT_FOUND,
            "no_route",
        ),
        ("GET", "/v2/volumes", StatusCode::NOT_FOUND, "no_route"),
        (
            "DELETE",
            "/v1/openapi.json",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "OPTIONS",
            "/v1/volumes",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "BREW",
            "/v1/volumes",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/volumes/v/diff?from=%FF",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
    ];
    send(f.api(), "POST", "/v1/volumes", r#"{"name":"v"}"#).await;
    for (method, path, status, code) in cases {
        let what = format!("{method} {path}");
        let (got, content_type, body) = send_raw(f.api(), method, path).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(got, status, "{what}: {text}");
        assert_eq!(content_type, "application/json", "{what}: {text}");
        let value: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {text}"));
        let envelope = value.as_object().unwrap();
        assert_eq!(envelope.len(), 1, "{what}: {value}");
        let error = value["error"].as_object().unwrap();
        assert_eq!(error.len(), 2, "{what}: {value}");
        assert_eq!(error["code"], code, "{what}: {value}");
        assert!(
            !error["message"].as_str().unwrap().is_empty(),
            "{what}: {value}"
        );
        // Where the route is documented, the status and body must be as documented.
        check_documented(method, path, got, &content_type, &value);
    }
}

#[tokio::test]
async fn rest_node_profiles_and_health() {
    let f = Fixture::new();
    let (status, health) = send(f.api(), "GET", "/v1/health", "").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (_, node) = send(f.api(), "GET", "/v1/node", "").await;
    assert!(node["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert_eq!(node["backends"], json!(["directory"]));
    assert_eq!(node["volumes"], 0);
    let profiles = node["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 4);
    for p in profiles {
        let free = p["capacity"]["free_bytes"].as_u64();
        match p["profile"].as_str().unwrap() {
            "tape" => assert_eq!((p["available"].as_bool(), free), (Some(false), None), "{p}"),
            _ => assert!(p["available"] == true && free.unwrap() > 0, "{p}"),
        }
    }
    let (_, profiles) = send(f.api(), "GET", "/v1/profiles", "").await;
    let tape = profiles
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tape")
        .unwrap();
    assert_eq!(tape["available"], false);
    assert_eq!(tape["backend"], Value::Null);
    assert_eq!(tape["config"]["backend"], "loop");
    assert!(
        tape["reason"].as_str().unwrap().contains("no loop devices"),
        "{tape}"
    );
    let bronze = profiles
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bronze")
        .unwrap();
    assert_eq!(
        (bronze["backend"].as_str(), bronze["default"].as_bool()),
        (Some("directory"), Some(true))
    );
}

#[tokio::test]
async fn unavailable_profiles_and_impossible_resizes_are_refused() {
    let f = Fixture::new();
    let (status, answer) = send(f.api(), "POST", "/v1/volumes", r#"{"name":"t@tape"}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"]["code"], "backend_unavailable");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains(
            "profile tape is unavailable on this host: loop backend unavailable: no loop devices"
        ),
        "{answer}"
    );
    let docker = plugin(&f, "VolumeDriver.Create", r#"{"Name":"t@tape"}"#).await;
    assert!(
        err(&docker).contains("unavailable on this host"),
        "{docker}"
    );
    assert!(f.service.list().is_empty());

    send(f.api(), "POST", "/v1/volumes", r#"{"name":"plain"}"#).await;
    let (status, answer) = send(
        f.api(),
        "POST",
        "/v1/volumes/plain/resize",
        r#"{"size":"2G"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "refused");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("directory volumes have no size limit"),
        "{answer}"
    );
    let (status, answer) = send(
        f.api(),
        "POST",
        "/v1/volumes/plain/resize",
        r#"{"size":"-1"}"#,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_option"))
    );
    let (status, _) = send(
        f.api(),
        "POST",
        "/v1/volumes/none/resize",
        r#"{"size":"2G"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The served document is the generated one; it is well formed (every reference resolves,
/// every path parameter is declared, operation ids are unique); every documented operation
/// is routed, and every method it does not document on a path is refused.
#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let f = Fixture::new();
    let (status, spec) = send(f.api(), "GET", "/v1/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&spec, document());
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let text = spec.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let reference = reference.split('"').next().unwrap();
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {reference}"));
        assert!(
            spec["components"]["schemas"][name].is_object(),
            "{reference} does not resolve"
        );
    }
    let mut operation_ids = BTreeSet::new();
    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
    for (path, operations) in spec["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{name}", "spec-check")
            .replace("{branch}", "b")
            .replace("{tag}", "t");
        for (method, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(
                operation_ids.insert(id.to_string()),
                "operation id {id} twice"
            );
            assert!(
                !operation["summary"].as_str().unwrap_or("").is_empty(),
                "{method} {path}"
            );
            for status in operation["responses"].as_object().unwrap().keys() {
                assert!(
                    status.parse::<u16>().is_ok(),
                    "{method} {path}: response {status}"
                );
            }
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");
            let body = if method == "post" {
                r#"{"name":"spec-check"}"#
            } else {
                ""
            };
            let (got, answer) = send(f.api(), &method.to_uppercase(), &concrete, body).await;
            assert!(
                got != StatusCode::METHOD_NOT_ALLOWED && answer["error"]["code"] != "no_route",
                "{method} {path} is documented but not routed: {got} {answer}"
            );
        }
        for method in METHODS {
            if operations.get(method.to_lowercase()).is_none() {
                let (got, _) = send(f.api(), method, &concrete, "").await;
                assert_eq!(
                    got,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is not documented, so it must not be routed"
                );
            }
        }
    }
    let (got, answer) = send(f.api(), "GET", "/v1/no-such-thing", "").await;
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_route"))
    );
}

/// Sends an API request asking for a streamed answer; the status, the content type and the
/// body's lines, each parsed as JSON (or, for a plain answer, the one JSON value).
async fn stream(f: &Fixture, path: &str, body: &str) -> (StatusCode, String, Vec<Value>) {
    let request = Request::builder()
        .method("POST")
        .uri(path)
        .header("accept", "application/x-ndjson")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = f.api().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = content_type(&response);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    for line in &lines {
        check_documented("POST", path, status, &content_type, line);
    }
    (status, content_type, lines)
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// Asserts `lines` are progress events and then one result; answers the result.
fn progress_then_result(lines: &[Value]) -> (Vec<&Value>, &Value) {
    let (last, events) = lines.split_last().expect("at least one line");
    let events: Vec<&Value> = events
        .iter()
        .map(|l| {
            assert_eq!(keys(l), ["progress"], "{l}");
            &l["progress"]
        })
        .collect();
    assert_eq!(keys(last), ["result"], "{last}");
    (events, &last["result"])
}

#[tokio::test]
async fn streamed_history_calls_report_progress_then_the_usual_answer() {
    if !can_mount() {
        eprintln!("skipped: committing mounts the volume, which needs root");
        return;
    }
    let f = Fixture::new();
    let (status, created) = send(f.api(), "POST", "/v1/volumes", r#"{"name":"big"}"#).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let data = Layout::new(f._tmp.path().join("root"))
        .backend_dir(BackendKind::Directory)
        .join(created["id"].as_str().unwrap());
    let mut total = 0u64;
    for i in 0..40u32 {
        let content: Vec<u8> = (0..50_000u32).map(|j| (j * 7 + i) as u8).collect();
        std::fs::create_dir_all(data.join(format!("d{}", i % 4))).unwrap();
        std::fs::write(data.join(format!("d{}/f{i}", i % 4)), &content).unwrap();
        total += content.len() as u64;
    }

    let (status, content_type, lines) = stream(
        &f,
        "/v1/volumes/big/commits",
        r#"{"message":"first","author":"t"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/x-ndjson");
    let (events, result) = progress_then_result(&lines);
    let phases: Vec<&str> = events.iter().filter_map(|e| e["phase"].as_str()).collect();
    assert!(
        phases.contains(&"scan") && phases.contains(&"read"),
        "{phases:?}"
    );
    let read_end = events
        .iter()
        .find(|e| e["phase"] == "read" && e["finished"] == true)
        .expect("the read phase finishes");
    assert_eq!(read_end["done"], total, "{read_end}");
    assert_eq!(read_end["total"], total, "{read_end}");
    assert_eq!(read_end["unit"], "bytes");
    assert_eq!(result["bytes_read"], total, "{result}");
    assert_eq!(result["containers_not_resumed"], json!([]));
    let (_, log) = send(f.api(), "GET", "/v1/volumes/big/commits", "").await;
    assert_eq!(result["commit"]["id"], log["head"]);

    // The same call without streaming answers the same shape, with its usual status.
    std::fs::write(data.join("d0/f0"), b"changed").unwrap();
    let (status, plain) = send(
        f.api(),
        "POST",
        "/v1/volumes/big/commits",
        r#"{"message":"second","author":"t"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    assert_eq!(keys(&plain), keys(result));
    assert_eq!(plain["changed"], true, "{plain}");

    let (status, _, lines) = stream(&f, "/v1/volumes/big/checkout", r#"{"ref":"HEAD^"}"#).await;
    assert_eq!(status, StatusCode::OK);
    let (events, view) = progress_then_result(&lines);
    assert!(
        events.iter().any(|e| e["phase"] == "checkout"),
        "{events:?}"
    );
    assert_eq!(view["commit"], log["head"]);
    assert_eq!(view["files_written"], 1, "{view}");
    assert_eq!(view["containers_not_resumed"], json!([]));
    assert_eq!(std::fs::read(data.join("d0/f0")).unwrap().len(), 50_000);

    let (status, _, lines) = stream(&f, "/v1/volumes/big/reset", r#"{"ref":"master"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(progress_then_result(&lines).1["files_written"], 1);
    assert_eq!(std::fs::read(data.join("d0/f0")).unwrap(), b"changed");

    let (status, _, lines) = stream(&f, "/v1/fsck", "").await;
    assert_eq!(status, StatusCode::OK);
    let (events, report) = progress_then_result(&lines);
    assert!(events.iter().any(|e| e["phase"] == "verify objects"));
    assert_eq!(report["clean"], true, "{report}");
    let (_, _, lines) = stream(&f, "/v1/gc", "").await;
    let (events, report) = progress_then_result(&lines);
    assert!(events.iter().any(|e| e["phase"] == "sweep"));
    assert_eq!(
        keys(report),
        [
            "bytes_removed",
            "grace",
            "kept_for_reflog",
            "kept_recent",
            "objects_kept",
            "objects_removed",
            "reflog_entries_expired"
        ]
    );
}

#[tokio::test]
async fn streamed_calls_that_fail_before_any_progress_keep_their_error_status() {
    let f = Fixture::new();
    let (status, content_type, lines) =
        stream(&f, "/v1/volumes/nosuch/commits", r#"{"message":"m"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{lines:?}");
    assert_eq!(content_type, "application/json");
    assert_eq!(lines[0]["error"]["code"], "not_found", "{lines:?}");
    assert!(lines[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nosuch"));
    let (status, _, lines) = stream(&f, "/v1/volumes/nosuch/commits", "{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(lines[0]["error"]["code"], "bad_body");
    if can_mount() {
        send(f.api(), "POST", "/v1/volumes", r#"{"name":"v"}"#).await;
        let (status, _, lines) = stream(
            &f,
            "/v1/volumes/v/checkout",
            r#"{"ref":"nosuch","force":true}"#,
        )
        .await;
        assert!(status.is_client_error(), "{status} {lines:?}");
        assert_eq!(lines[0]["error"]["code"], "unknown_revision", "{lines:?}");
    }
}

#[tokio::test]
async fn a_clone_is_like_its_source_and_creating_it_again_needs_no_source() {
    if !can_mount() {
        eprintln!("skipped: cloning mounts the volumes, which needs root");
        return;
    }
    let f = Fixture::new();
    plugin(&f, "VolumeDriver.Create", r#"{"Name":"origin@silver"}"#).await;
    let (_, origin) = send(f.api(), "GET", "/v1/volumes/origin", "").await;
    let uuid = origin["id"].as_str().unwrap().replace('-', "");
    let clone = format!(r#"{{"Name":"copy@snapshot-{}"}}"#, &uuid[..8]);
    assert_eq!(err(&plugin(&f, "VolumeDriver.Create", &clone).await), "");
    let (_, copy) = send(f.api(), "GET", "/v1/volumes/copy", "").await;
    assert_eq!(
        copy["profile"], "silver",
        "a clone takes its source's profile: {copy}"
    );
    // The engine sends Create again on every `docker run -v copy@snapshot-...`; the volume
    // exists, so the source is not looked up, even once it is gone.
    plugin(&f, "VolumeDriver.Remove", r#"{"Name":"origin"}"#).await;
    assert_eq!(err(&plugin(&f, "VolumeDriver.Create", &clone).await), "");
    let (status, _) = send(f.api(), "GET", "/v1/volumes/copy", "").await;
    assert_eq!(status, StatusCode::OK);
    // A new clone of the missing source is refused, naming the reference.
    let again = format!(r#"{{"Name":"copy2@snapshot-{}"}}"#, &uuid[..8]);
    let refused = plugin(&f, "VolumeDriver.Create", &again).await;
    assert!(err(&refused).contains(&uuid[..8]), "{refused}");
}

/// The backend directory of a directory volume created over REST.
fn data_dir(f: &Fixture, created: &Value) -> std::path::PathBuf {
    f.service
        .layout()
        .backend_dir(BackendKind::Directory)
        .join(created["id"].as_str().unwrap())
}

/// Commits volume `name` over REST; returns the commit id.
async fn commit_over_rest(f: &Fixture, name: &str, message: &str) -> String {
    let body = json!({ "message": message }).to_string();
    let (status, done) = send(
        f.api(),
        "POST",
        &format!("/v1/volumes/{name}/commits"),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{done}");
    done["commit"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn checkout_and_reset_name_the_commits_they_leave_and_the_reflog_and_gc_keep_them() {
    if !can_mount() {
        eprintln!("skipped: committing mounts the volume, which needs root");
        return;
    }
    let f = Fixture::new();
    let (_, created) = send(f.api(), "POST", "/v1/volumes", r#"{"name":"h"}"#).await;
    let data = data_dir(&f, &created);
    std::fs::write(data.join("f"), "one").unwrap();
    commit_over_rest(&f, "h", "one").await;
    let (status, _) = send(f.api(), "POST", "/v1/volumes/h/tags", r#"{"name":"v1"}"#).await;
    assert_eq!(status, StatusCode::CREATED);
    std::fs::write(data.join("f"), "two").unwrap();
    let two = commit_over_rest(&f, "h", "two").await;

    let (status, view) = send(f.api(), "POST", "/v1/volumes/h/checkout", r#"{"ref":"v1"}"#).await;
    assert_eq!(
        (status, &view["left_behind"]),
        (StatusCode::OK, &json!([])),
        "{view}"
    );
    std::fs::write(data.join("f"), "detached work").unwrap();
    let detached = commit_over_rest(&f, "h", "on v1").await;
    let (status, view) = send(
        f.api(),
        "POST",
        "/v1/volumes/h/checkout",
        r#"{"ref":"master"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(
        view["left_behind"],
        json!([{"id": detached, "message": "on v1"}]),
        "leaving a detached commit names it"
    );

    let (status, reflog) = send(f.api(), "GET", "/v1/volumes/h/reflog", "").await;
    assert_eq!(status, StatusCode::OK, "{reflog}");
    let messages: Vec<&str> = reflog
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            format!("checkout: moving from {} to master", &detached[..12]).as_str(),
            "commit: on v1",
            "checkout: moving from master to v1",
            "commit: two",
            "commit (initial): one",
        ]
    );
    assert_eq!(reflog[1]["ref"], "HEAD");
    assert_eq!(reflog[1]["new"], detached.as_str());
    assert_eq!(reflog[3]["ref"], "master");
    assert_eq!(reflog[4]["old"], Value::Null);
    let (_, newest) = send(f.api(), "GET", "/v1/volumes/h/reflog?limit=2", "").await;
    assert_eq!(newest.as_array().unwrap().len(), 2);
    let (status, bad) = send(f.api(), "GET", "/v1/volumes/h/reflog?limit=x", "").await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_query"))
    );
    let (status, _) = send(f.api(), "GET", "/v1/volumes/nosuch/reflog", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // gc without a body keeps the detached commit (its reflog entry is young).
    let (status, gc) = send(f.api(), "POST", "/v1/gc", "").await;
    assert_eq!(status, StatusCode::OK, "{gc}");
    assert_eq!(
        (gc["objects_removed"].as_u64(), gc["grace"].as_str()),
        (Some(0), Some("2w")),
        "{gc}"
    );
    assert!(gc["kept_for_reflog"].as_u64().unwrap() > 0, "{gc}");
    let (_, fsck) = send(f.api(), "POST", "/v1/fsck", "").await;
    assert_eq!(
        fsck["unreachable"], 0,
        "reflog-reachable objects are reachable: {fsck}"
    );
    for (body, code) in [
        (r#"{"prune":"soon"}"#, "invalid_prune"),
        (r#"{"prune":"now","force":true}"#, "bad_body"),
    ] {
        let (status, answer) = send(f.api(), "POST", "/v1/gc", body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}: {answer}"
        );
    }
    let (status, gc) = send(f.api(), "POST", "/v1/gc", r#"{"prune":"1h"}"#).await;
    assert_eq!(
        (status, gc["objects_removed"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{gc}"
    );
    // --prune=now: the reflog expires and what only it kept goes.
    let (status, gc) = send(f.api(), "POST", "/v1/gc", r#"{"prune":"now"}"#).await;
    assert_eq!(status, StatusCode::OK, "{gc}");
    assert!(gc["objects_removed"].as_u64().unwrap() > 0, "{gc}");
    assert_eq!(gc["reflog_entries_expired"], 5, "{gc}");
    let (_, reflog) = send(f.api(), "GET", "/v1/volumes/h/reflog", "").await;
    assert_eq!(reflog, json!([]));
    let (status, _) = send(
        f.api(),
        "POST",
        "/v1/volumes/h/checkout",
        json!({"ref": detached}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the pruned commit is gone");

    // reset --hard off a commit only the branch reached names it.
    let (status, view) = send(f.api(), "POST", "/v1/volumes/h/reset", r#"{"ref":"HEAD^"}"#).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["left_behind"], json!([{"id": two, "message": "two"}]));
    let (_, reflog) = send(f.api(), "GET", "/v1/volumes/h/reflog", "").await;
    assert_eq!(reflog[0]["message"], "reset: moving to HEAD^");
    assert_eq!(
        (reflog[0]["old"].as_str(), reflog[0]["ref"].as_str()),
        (Some(two.as_str()), Some("master"))
    );
}

#[tokio::test]
async fn a_tag_is_deleted_and_a_missing_one_is_404_naming_the_tags() {
    if !can_mount() {
        eprintln!("skipped: committing mounts the volume, which needs root");
        return;
    }
    let f = Fixture::new();
    let (_, created) = send(f.api(), "POST", "/v1/volumes", r#"{"name":"t"}"#).await;
    std::fs::write(data_dir(&f, &created).join("f"), "x").unwrap();
    commit_over_rest(&f, "t", "x").await;
    for tag in ["v1", "v2"] {
        let body = json!({ "name": tag }).to_string();
        send(f.api(), "POST", "/v1/volumes/t/tags", body).await;
    }
    let (status, exists) = send(f.api(), "POST", "/v1/volumes/t/tags", r#"{"name":"v1"}"#).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        exists["error"]["message"]
            .as_str()
            .unwrap()
            .contains("delete it first"),
        "{exists}"
    );
    let (status, _) = send(f.api(), "DELETE", "/v1/volumes/t/tags/v1", "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, tags) = send(f.api(), "GET", "/v1/volumes/t/tags", "").await;
    assert_eq!(tags.as_array().unwrap().len(), 1, "{tags}");
    let (status, gone) = send(f.api(), "DELETE", "/v1/volumes/t/tags/v1", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    let message = gone["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no tag named 'v1'") && message.contains("tags: v2"),
        "{message}"
    );
    let (status, _) = send(f.api(), "POST", "/v1/volumes/t/tags", r#"{"name":"v1"}"#).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a deleted tag's name is free again"
    );
    let (status, _) = send(f.api(), "DELETE", "/v1/volumes/nosuch/tags/v1", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_clone_of_a_commit_is_like_the_volume_the_commit_belongs_to() {
    if !can_mount() {
        eprintln!("skipped: cloning mounts the volumes, which needs root");
        return;
    }
    let f = Fixture::new();
    let (_, created) = send(
        f.api(),
        "POST",
        "/v1/volumes",
        r#"{"name":"orig@silver","options":{"size":"3G"}}"#,
    )
    .await;
    std::fs::write(data_dir(&f, &created).join("f"), "state").unwrap();
    let commit = commit_over_rest(&f, "orig", "state").await;
    let clone = format!(r#"{{"Name":"copy@snapshot-{}"}}"#, &commit[..10]);
    assert_eq!(err(&plugin(&f, "VolumeDriver.Create", &clone).await), "");
    let (_, copy) = send(f.api(), "GET", "/v1/volumes/copy", "").await;
    assert_eq!(
        (copy["profile"].as_str(), copy["size_bytes"].as_u64()),
        (Some("silver"), Some(3u64 << 30)),
        "a clone of a commit takes its volume's profile and size: {copy}"
    );
    // Options given explicitly still win.
    let body = format!(
        r#"{{"Name":"other","Opts":{{"from":"{}","profile":"gold","size":"1G"}}}}"#,
        &commit[..10]
    );
    assert_eq!(err(&plugin(&f, "VolumeDriver.Create", &body).await), "");
    let (_, other) = send(f.api(), "GET", "/v1/volumes/other", "").await;
    assert_eq!(
        (other["profile"].as_str(), other["size_bytes"].as_u64()),
        (Some("gold"), Some(1u64 << 30)),
        "{other}"
    );
    // A commit whose volume is gone (and no other reaches it) gets the default profile.
    plugin(&f, "VolumeDriver.Remove", r#"{"Name":"copy"}"#).await;
    plugin(&f, "VolumeDriver.Remove", r#"{"Name":"other"}"#).await;
    plugin(&f, "VolumeDriver.Remove", r#"{"Name":"orig"}"#).await;
    let orphan = format!(r#"{{"Name":"late@snapshot-{}"}}"#, &commit[..10]);
    assert_eq!(err(&plugin(&f, "VolumeDriver.Create", &orphan).await), "");
    let (_, late) = send(f.api(), "GET", "/v1/volumes/late", "").await;
    assert_eq!(late["profile"], "bronze", "{late}");
}

/// The check every REST answer goes through catches a body that drifted from its schema and
/// a status that is not documented.
#[test]
fn the_schema_check_catches_drift() {
    let ok = serde_json::json!({"status": "ok", "version": "1"});
    check_documented("GET", "/v1/health", StatusCode::OK, "application/json", &ok);
    let renamed = serde_json::json!({"state": "ok", "version": "1"});
    let undocumented = StatusCode::IM_A_TEAPOT;
    for (status, body) in [(StatusCode::OK, renamed), (undocumented, ok)] {
        let caught = std::panic::catch_unwind(|| {
            check_documented("GET", "/v1/health", status, "application/json", &body)
        });
        assert!(caught.is_err(), "{status} {body} passed the check");
    }
}

/// The errors of `value` against the document's component schema `name`.
fn component_errors(name: &str, value: &Value) -> Vec<String> {
    let schema = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": document()["components"].clone(),
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Optional fields are serialised as `null` when absent (an `Option` of an enum, of a
/// struct, of a number or of a string), and the document says they may be: such answers
/// validate, with the field absent and with it present; a value outside the enum does not.
#[test]
fn optional_fields_validate_as_null_and_as_values() {
    use dvol_api::{ChangeKind, ChangeView, MovedTo, ProfileConfigView, ProfileView, VolumeView};
    use dvol_backends::Filesystem;

    let bare = VolumeView {
        name: "db".into(),
        id: uuid::Uuid::nil(),
        profile: "bronze".into(),
        backend: BackendKind::Directory,
        size_bytes: None,
        size_enforced: false,
        filesystem: None,
        mountpoint: "/var/lib/dvol/mounts/x".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        mounted: false,
        mounts: Default::default(),
        state: Default::default(),
        problem: None,
        moved_to: None,
    };
    let full = VolumeView {
        size_bytes: Some(1 << 30),
        filesystem: Some(Filesystem::Xfs),
        problem: Some("busy".into()),
        moved_to: Some(MovedTo {
            remote: "b".into(),
            commit: "abcd".into(),
            moved_at: "2026-01-01T00:00:00Z".into(),
        }),
        ..bare.clone()
    };
    let bare_json = serde_json::to_value(&bare).unwrap();
    assert_eq!(bare_json["filesystem"], Value::Null, "{bare_json}");
    assert_eq!(bare_json["size_bytes"], Value::Null, "{bare_json}");

    let config = ProfileConfigView {
        backend: BackendKind::Loop,
        volume_group: None,
        thin_pool: None,
        size: None,
        filesystem: None,
        max_overprovision: None,
        follow: None,
    };
    let profile = ProfileView {
        name: "gold".into(),
        config: config.clone(),
        available: false,
        backend: None,
        location: None,
        preallocate: false,
        reason: "no loop devices".into(),
        changed_ranges: false,
        default: false,
    };
    let configured = ProfileView {
        config: ProfileConfigView {
            volume_group: Some("vg".into()),
            thin_pool: Some("pool".into()),
            size: Some(1 << 30),
            filesystem: Some(Filesystem::Ext4),
            max_overprovision: Some(2.5),
            ..config
        },
        backend: Some(BackendKind::Lvm),
        location: Some("vg/pool".into()),
        available: true,
        ..profile.clone()
    };
    let change = |old_size, new_size| ChangeView {
        path: "a".into(),
        kind: ChangeKind::Modified,
        is_dir: false,
        old_size,
        new_size,
    };
    let cases = [
        ("VolumeView", serde_json::to_value(&bare).unwrap()),
        ("VolumeView", serde_json::to_value(&full).unwrap()),
        ("ProfileView", serde_json::to_value(&profile).unwrap()),
        ("ProfileView", serde_json::to_value(&configured).unwrap()),
        (
            "ChangeView",
            serde_json::to_value(change(None, None)).unwrap(),
        ),
        (
            "ChangeView",
            serde_json::to_value(change(Some(1), Some(2))).unwrap(),
        ),
    ];
    for (name, value) in &cases {
        let errors = component_errors(name, value);
        assert!(errors.is_empty(), "{name} {value}: {errors:?}");
    }

    let mut wrong = bare_json.clone();
    wrong["filesystem"] = json!("zfs");
    assert!(
        !component_errors("VolumeView", &wrong).is_empty(),
        "{wrong}"
    );
    wrong["filesystem"] = json!("xfs");
    wrong["size_bytes"] = json!("big");
    assert!(
        !component_errors("VolumeView", &wrong).is_empty(),
        "{wrong}"
    );
}

/// The bearer token is declared as an HTTP bearer scheme that says where it is needed (TCP)
/// and where not (the unix socket), and every operation takes it or nothing: no operation
/// overrides that with a scheme of its own.
#[test]
fn the_bearer_scheme_is_declared_for_every_operation() {
    let spec = document();
    let scheme = &spec["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    let description = scheme["description"].as_str().unwrap_or("");
    for needle in ["TCP", "--listen", "--token-file", "unix socket", "401"] {
        assert!(
            description.contains(needle),
            "{needle} not in {description}"
        );
    }
    assert_eq!(spec["security"], json!([{}, {"bearer": []}]));
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            assert!(
                operation.get("security").is_none(),
                "{method} {path} overrides the document's security: {}",
                operation["security"]
            );
        }
    }
}
