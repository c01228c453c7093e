//! Volumes as the API shows them, and the bodies that create and resize them.

use std::collections::BTreeMap;

use dvol_backends::{BackendKind, Filesystem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VolumeView {
    /// The name.
    pub name: String,
    /// The UUID; names the mountpoint and the backend storage.
    pub id: Uuid,
    /// The profile it was created with.
    pub profile: String,
    /// The backend its data lives on.
    pub backend: BackendKind,
    /// The size asked for, in bytes.
    pub size_bytes: Option<u64>,
    /// Whether the backend enforces the size.
    pub size_enforced: bool,
    /// The filesystem, for block backends.
    pub filesystem: Option<Filesystem>,
    /// The mountpoint, `<root>/mounts/<uuid>`.
    pub mountpoint: String,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Whether any container has it mounted.
    pub mounted: bool,
    /// Active Docker mount ids and how many mounts each holds.
    pub mounts: BTreeMap<String, u32>,
}

/// `POST /v1/volumes`: a volume to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    /// `NAME`, `NAME@PROFILE` or `NAME@snapshot-REF`.
    pub name: String,
    /// Options as for `docker volume create -o`: `size`, `profile`, `fs`, `from`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// `POST /v1/volumes/{name}/resize`: the new size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeVolume {
    /// The new size, e.g. `20G`; must not be smaller than the current one.
    pub size: String,
}
