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
    /// Where the volume is in its life: `ready`, or `removing` while a remove runs or after
    /// one failed halfway (then `problem` says why; `dvol volume rm` retries it).
    #[serde(default)]
    pub state: VolumeState,
    /// Why the last remove failed, while the volume is `removing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Set once the volume was moved to a remote (`dvol move`): this host keeps its data and
    /// history but refuses to mount it; a push back from that remote clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<MovedTo>,
}

/// Where a volume was moved to, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MovedTo {
    /// The remote that owns the volume now.
    pub remote: String,
    /// The commit it was handed over at.
    pub commit: String,
    /// When, RFC 3339.
    pub moved_at: String,
}

/// Where a volume is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    /// Being created; not usable yet.
    Creating,
    /// Usable.
    #[default]
    Ready,
    /// Being removed, or a remove failed halfway: no longer usable; retry the remove.
    Removing,
}

impl VolumeState {
    /// The state's name as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeState::Creating => "creating",
            VolumeState::Ready => "ready",
            VolumeState::Removing => "removing",
        }
    }

    /// Parses a state's name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "creating" => Some(VolumeState::Creating),
            "ready" => Some(VolumeState::Ready),
            "removing" => Some(VolumeState::Removing),
            _ => None,
        }
    }
}

impl std::fmt::Display for VolumeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
