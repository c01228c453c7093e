//! The Docker volume plugin protocol (`/run/docker/plugins/dvol.sock`).
//!
//! Every call is `POST /<Method>` with a JSON body and no Content-Type. A call is first parsed
//! into a [`DockerRequest`], then executed against the [`VolumeService`]; the two steps are
//! separate so each can be tested alone.
//!
//! Facts the engine depends on:
//! - Errors travel as HTTP 200 with a non-empty `Err`; the engine shows it to the user as
//!   `VolumeDriver.<Method>: <Err>`, so it must say what to do.
//! - `Get` reads only the in-memory registry, so it never fails for a passing backend fault
//!   (an `Err` there makes the engine forget the volume).
//! - `Get` answers with the name exactly as asked (`orders@gold`), `List` with plain names.
//! - `CreatedAt` is RFC 3339.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use tracing::debug;

use dvol_backends::Effect;

use crate::body::{parse_json, MAX_BODY_BYTES};
use crate::error::{ClusterError, ErrorClass, ServiceError};
use crate::service::VolumeService;
use crate::volume::Volume;

/// A parsed plugin call.
#[derive(Debug, Clone, PartialEq)]
pub enum DockerRequest {
    /// `Plugin.Activate`.
    Activate,
    /// `VolumeDriver.Capabilities`.
    Capabilities,
    /// `VolumeDriver.Create`.
    Create {
        /// The name as typed.
        name: String,
        /// `-o` options; `null` reads as empty.
        opts: BTreeMap<String, String>,
    },
    /// `VolumeDriver.Remove`.
    Remove {
        /// The name as typed.
        name: String,
    },
    /// `VolumeDriver.Mount`.
    Mount {
        /// The name as typed.
        name: String,
        /// The engine's per-mount-point id.
        id: String,
    },
    /// `VolumeDriver.Unmount`.
    Unmount {
        /// The name as typed.
        name: String,
        /// The engine's per-mount-point id.
        id: String,
    },
    /// `VolumeDriver.Path`.
    Path {
        /// The name as typed.
        name: String,
    },
    /// `VolumeDriver.Get`.
    Get {
        /// The name as typed.
        name: String,
    },
    /// `VolumeDriver.List`.
    List,
}

/// Why a call could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Not a method of the protocol.
    #[error("unknown plugin method {0:?}; dvol implements Plugin.Activate and VolumeDriver.{{Create,Remove,Mount,Unmount,Path,Get,List,Capabilities}}")]
    UnknownMethod(String),
    /// The body is not the JSON the method expects.
    #[error("malformed {method} request: {source}")]
    Malformed {
        /// The method.
        method: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The body could not be read (too large, or the connection failed).
    #[error("request body rejected: {0}")]
    Body(String),
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct NameBody {
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Opts", default, deserialize_with = "null_as_empty")]
    opts: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct MountBody {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ID", default)]
    id: String,
}

impl DockerRequest {
    /// The protocol method of the call, as the engine names it (one of
    /// [`crate::metrics::PLUGIN_METHODS`]).
    pub fn method(&self) -> &'static str {
        match self {
            DockerRequest::Activate => "Plugin.Activate",
            DockerRequest::Capabilities => "VolumeDriver.Capabilities",
            DockerRequest::Create { .. } => "VolumeDriver.Create",
            DockerRequest::Remove { .. } => "VolumeDriver.Remove",
            DockerRequest::Mount { .. } => "VolumeDriver.Mount",
            DockerRequest::Unmount { .. } => "VolumeDriver.Unmount",
            DockerRequest::Path { .. } => "VolumeDriver.Path",
            DockerRequest::Get { .. } => "VolumeDriver.Get",
            DockerRequest::List => "VolumeDriver.List",
        }
    }

    /// Parses a call to `method` with raw `body`.
    pub fn parse(method: &str, body: &[u8]) -> Result<Self, ProtocolError> {
        fn json<T: serde::de::DeserializeOwned>(
            method: &'static str,
            body: &[u8],
        ) -> Result<T, ProtocolError> {
            parse_json(body).map_err(|source| ProtocolError::Malformed { method, source })
        }
        Ok(match method {
            "Plugin.Activate" => DockerRequest::Activate,
            "VolumeDriver.Capabilities" => DockerRequest::Capabilities,
            "VolumeDriver.List" => DockerRequest::List,
            "VolumeDriver.Create" => {
                let b: CreateBody = json("VolumeDriver.Create", body)?;
                DockerRequest::Create {
                    name: b.name,
                    opts: b.opts,
                }
            }
            "VolumeDriver.Remove" => DockerRequest::Remove {
                name: json::<NameBody>("VolumeDriver.Remove", body)?.name,
            },
            "VolumeDriver.Path" => DockerRequest::Path {
                name: json::<NameBody>("VolumeDriver.Path", body)?.name,
            },
            "VolumeDriver.Get" => DockerRequest::Get {
                name: json::<NameBody>("VolumeDriver.Get", body)?.name,
            },
            "VolumeDriver.Mount" => {
                let b: MountBody = json("VolumeDriver.Mount", body)?;
                DockerRequest::Mount {
                    name: b.name,
                    id: b.id,
                }
            }
            "VolumeDriver.Unmount" => {
                let b: MountBody = json("VolumeDriver.Unmount", body)?;
                DockerRequest::Unmount {
                    name: b.name,
                    id: b.id,
                }
            }
            other => {
                return Err(ProtocolError::UnknownMethod(
                    other.chars().take(64).collect(),
                ))
            }
        })
    }
}

/// A volume as the engine sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DockerVolume {
    /// The name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Where it is (or will be) mounted.
    #[serde(rename = "Mountpoint")]
    pub mountpoint: String,
    /// Creation time, RFC 3339.
    #[serde(rename = "CreatedAt", skip_serializing_if = "Option::is_none", default)]
    pub created_at: Option<String>,
    /// Shown by `docker volume inspect`.
    #[serde(rename = "Status", skip_serializing_if = "Option::is_none", default)]
    pub status: Option<BTreeMap<String, String>>,
}

/// A reply to the engine. Fields that are `None` are left out.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DockerResponse {
    /// `Plugin.Activate`.
    #[serde(
        rename = "Implements",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub implements: Option<Vec<String>>,
    /// `Capabilities`.
    #[serde(
        rename = "Capabilities",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub capabilities: Option<BTreeMap<String, String>>,
    /// `Mount`, `Path`.
    #[serde(
        rename = "Mountpoint",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub mountpoint: Option<String>,
    /// `Get`.
    #[serde(rename = "Volume", skip_serializing_if = "Option::is_none", default)]
    pub volume: Option<DockerVolume>,
    /// `List`.
    #[serde(rename = "Volumes", skip_serializing_if = "Option::is_none", default)]
    pub volumes: Option<Vec<DockerVolume>>,
    /// The error, if any.
    #[serde(rename = "Err", skip_serializing_if = "Option::is_none", default)]
    pub err: Option<String>,
}

impl DockerResponse {
    fn error(message: impl ToString) -> Self {
        DockerResponse {
            err: Some(message.to_string()),
            ..Default::default()
        }
    }
}

/// What `docker volume inspect` shows under `Status`.
fn status(service: &VolumeService, volume: &Volume) -> BTreeMap<String, String> {
    let size = match volume.size {
        None => "unlimited".to_string(),
        Some(size) if service.enforces_size(volume) => size.to_string(),
        Some(size) => format!("{size} (not enforced by the {} backend)", volume.backend),
    };
    let mut status = BTreeMap::from([
        ("uuid".to_string(), volume.id.to_string()),
        ("profile".to_string(), volume.profile.to_string()),
        ("backend".to_string(), volume.backend.to_string()),
        ("size".to_string(), size),
        ("created".to_string(), volume.created_rfc3339()),
        (
            "mounts".to_string(),
            volume.mounts.values().sum::<u32>().to_string(),
        ),
    ]);
    if let Some(fs) = volume.filesystem {
        status.insert("filesystem".to_string(), fs.to_string());
    }
    if let Some(location) = &volume.location {
        status.insert("location".to_string(), location.clone());
    }
    status.insert("state".to_string(), volume.state.as_str().to_string());
    if let Some(problem) = &volume.problem {
        status.insert("problem".to_string(), problem.clone());
    }
    if let Some(moved) = service.moved_to(volume) {
        status.insert(
            "moved_to".to_string(),
            format!(
                "remote {} at commit {} ({})",
                moved.remote, moved.commit, moved.moved_at
            ),
        );
    }
    status
}

/// A volume this node does not have, as the cluster's registry last said it (lookups answer
/// from what the node knows, even while etcd is unreachable); else `e`.
fn elsewhere(
    service: &VolumeService,
    e: ServiceError,
) -> Result<dvol_api::ClusterVolume, ServiceError> {
    match (&e, service.cluster()) {
        (ServiceError::NotFound { volume }, Some(cluster)) => {
            cluster.known_volume(volume.as_str()).ok_or(e)
        }
        _ => Err(e),
    }
}

/// What `docker volume inspect` shows under `Status` for a volume another node owns.
fn cluster_status(record: &dvol_api::ClusterVolume) -> BTreeMap<String, String> {
    let mut status = BTreeMap::from([
        ("owner".to_string(), record.owner.clone()),
        ("epoch".to_string(), record.epoch.to_string()),
        ("profile".to_string(), record.profile.clone()),
        ("owner_alive".to_string(), record.owner_alive.to_string()),
        ("created".to_string(), record.created_at.clone()),
    ]);
    if let Some(size) = record.size_bytes {
        status.insert("size".to_string(), size.to_string());
    }
    if !record.mounted_on.is_empty() {
        status.insert("mounted_on".to_string(), record.mounted_on.join(","));
    }
    status
}

/// Runs a parsed call. Create, Remove, Mount and Unmount touch disk on blocking threads; in
/// cluster mode Create and Mount may call other nodes ([`VolumeService::create_anywhere`],
/// [`VolumeService::mount_following`]).
pub async fn execute(service: &Arc<VolumeService>, request: DockerRequest) -> DockerResponse {
    let mountpoint = |v: &Volume| service.mountpoint(v).display().to_string();
    let result: Result<DockerResponse, ServiceError> = match request {
        DockerRequest::Activate => Ok(DockerResponse {
            implements: Some(vec!["VolumeDriver".into()]),
            ..Default::default()
        }),
        DockerRequest::Capabilities => Ok(DockerResponse {
            capabilities: Some(BTreeMap::from([("Scope".into(), "local".into())])),
            ..Default::default()
        }),
        DockerRequest::Create { name, opts } => {
            let created = service.create_anywhere(name.clone(), opts).await;
            service
                .blocking(move |s| created_answer(s, &name, created))
                .await
        }
        DockerRequest::Remove { name } => {
            service
                .blocking(move |s| match s.remove(&name) {
                    Ok(_) | Err(ServiceError::NotFound { .. }) => Ok(DockerResponse::default()),
                    Err(e) => Err(e),
                })
                .await
        }
        DockerRequest::Mount { name, id } => {
            service
                .mount_following(name, id)
                .await
                .map(|(_, path)| DockerResponse {
                    mountpoint: Some(path.display().to_string()),
                    ..Default::default()
                })
        }
        DockerRequest::Unmount { name, id } => {
            service
                .blocking(move |s| s.unmount(&name, &id).map(|_| DockerResponse::default()))
                .await
        }
        DockerRequest::Path { name } => match service.get(&name) {
            Ok(volume) => Ok(DockerResponse {
                mountpoint: Some(mountpoint(&volume)),
                ..Default::default()
            }),
            Err(e) => elsewhere(service, e).map(|_| DockerResponse {
                mountpoint: Some(String::new()),
                ..Default::default()
            }),
        },
        DockerRequest::Get { name } => match service.get(&name) {
            Ok(volume) => Ok(DockerResponse {
                volume: Some(DockerVolume {
                    mountpoint: mountpoint(&volume),
                    created_at: Some(volume.created_rfc3339()),
                    status: Some(status(service, &volume)),
                    name,
                }),
                ..Default::default()
            }),
            Err(e) => elsewhere(service, e).map(|record| DockerResponse {
                volume: Some(DockerVolume {
                    mountpoint: String::new(),
                    created_at: Some(record.created_at.clone()),
                    status: Some(cluster_status(&record)),
                    name,
                }),
                ..Default::default()
            }),
        },
        DockerRequest::List => {
            let local = service.list();
            let mut volumes: Vec<DockerVolume> = local
                .iter()
                .map(|volume| DockerVolume {
                    name: volume.name.to_string(),
                    mountpoint: mountpoint(volume),
                    created_at: Some(volume.created_rfc3339()),
                    status: None,
                })
                .collect();
            if let Some(cluster) = service.cluster() {
                let here: std::collections::BTreeSet<&str> =
                    local.iter().map(|v| v.name.as_str()).collect();
                volumes.extend(
                    cluster
                        .known_volumes()
                        .volumes
                        .into_iter()
                        .filter(|r| !here.contains(r.name.as_str()))
                        .map(|r| DockerVolume {
                            name: r.name,
                            mountpoint: String::new(),
                            created_at: Some(r.created_at),
                            status: None,
                        }),
                );
            }
            Ok(DockerResponse {
                volumes: Some(volumes),
                ..Default::default()
            })
        }
    };
    result.unwrap_or_else(failed)
}

/// The answer to a Create of `name`.
fn created_answer(
    service: &VolumeService,
    name: &str,
    created: Result<(Volume, Effect), ServiceError>,
) -> Result<DockerResponse, ServiceError> {
    match created {
        Ok((volume, _)) => {
            service.remember_alias(name, &volume);
            Ok(DockerResponse::default())
        }
        // The name exists in the cluster, on another node: the volume exists, as the
        // engine asked; Get and List show it, and a Mount here says where it lives.
        Err(ServiceError::Cluster(e)) if matches!(*e, ClusterError::OwnedElsewhere { .. }) => {
            tracing::info!(volume = %name, error = %e, "create of a volume another node of the cluster owns: answered as existing");
            Ok(DockerResponse::default())
        }
        Err(e) => Err(e),
    }
}

/// A failed call's answer, logged where dvol or the host failed.
fn failed(e: ServiceError) -> DockerResponse {
    if e.class() == ErrorClass::Internal {
        tracing::error!(error = %e, "plugin call failed");
    }
    DockerResponse::error(e)
}

async fn handle(
    State(service): State<Arc<VolumeService>>,
    Path(method): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            return (
                status,
                Json(DockerResponse::error(ProtocolError::Body(
                    rejection.body_text(),
                ))),
            )
                .into_response();
        }
    };
    let request = match DockerRequest::parse(&method, &body) {
        Ok(request) => request,
        Err(e) => {
            let status = match e {
                ProtocolError::UnknownMethod(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            return (status, Json(DockerResponse::error(e))).into_response();
        }
    };
    debug!(?request, "plugin call");
    let (method, started) = (request.method(), Instant::now());
    let response = execute(&service, request).await;
    service.metrics().plugin_call(method, started.elapsed());
    Json(response).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(DockerResponse::error(ProtocolError::UnknownMethod(
            "(no method)".into(),
        ))),
    )
        .into_response()
}

/// The plugin protocol router, ready to serve on a unix socket.
pub fn router(service: Arc<VolumeService>) -> Router {
    Router::new()
        .route("/{method}", post(handle))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}
