//! `/v1/health`, `/v1/node` and `/v1/profiles`: the daemon, this host and its profiles.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use dvol_api::{Health, NodeInfo, ProfileConfigView, ProfileView};
use dvol_backends::ByteSize;

use super::error::{ApiError, InternalError};
use crate::profile::Profile;
use crate::service::VolumeService;

/// Whether the daemon answers, and its version.
#[utoipa::path(get, path = "/v1/health", tag = "node", operation_id = "health",
    responses((status = 200, description = "The daemon is up", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// This host: its id, the backends it runs and the free capacity per profile.
#[utoipa::path(get, path = "/v1/node", tag = "node", operation_id = "node",
    responses(
        (status = 200, description = "This host", body = NodeInfo),
        InternalError,
    ))]
pub async fn node(State(service): State<Arc<VolumeService>>) -> Result<Json<NodeInfo>, ApiError> {
    // Measuring capacity runs statvfs and, for LVM, the lvm tool: off the async workers.
    Ok(Json(service.blocking(|s| Ok(s.node_info())).await?))
}

/// The configured profiles and what each resolves to on this host, and why.
#[utoipa::path(get, path = "/v1/profiles", tag = "node", operation_id = "listProfiles",
    responses((status = 200, description = "The profiles", body = Vec<ProfileView>)))]
pub async fn profiles(State(service): State<Arc<VolumeService>>) -> Json<Vec<ProfileView>> {
    let changed_ranges = |p: &Profile| service.counts_changes(p);
    Json(
        service
            .profiles()
            .iter()
            .map(|p| view(p, changed_ranges(p)))
            .collect(),
    )
}

/// A profile as the API shows it; `changed_ranges`: whether its commits read by them.
fn view(profile: &Profile, changed_ranges: bool) -> ProfileView {
    let config = &profile.config;
    ProfileView {
        name: profile.name.to_string(),
        config: ProfileConfigView {
            backend: config.backend,
            volume_group: config.volume_group.clone(),
            thin_pool: config.thin_pool.clone(),
            size: config.size.map(ByteSize::bytes),
            filesystem: config.filesystem,
            max_overprovision: config.max_overprovision,
            follow: config.follow,
        },
        available: profile.available,
        backend: profile.backend,
        location: profile.location.clone(),
        preallocate: profile.preallocate,
        reason: profile.reason.clone(),
        changed_ranges,
        default: profile.default,
    }
}
