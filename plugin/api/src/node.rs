//! The daemon and its host: health, identity, backends, profiles and capacity per profile.

use dvol_backends::{BackendKind, Capacity, Filesystem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the daemon answers.
    pub status: String,
    /// The daemon's version.
    pub version: String,
}

/// `GET /v1/node`: what this host offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// This host's stable id.
    pub id: Uuid,
    /// The host name.
    pub hostname: String,
    /// The dvol version.
    pub version: String,
    /// The backends this host can run.
    pub backends: Vec<BackendKind>,
    /// Room for new volumes, per profile.
    pub profiles: Vec<ProfileCapacity>,
    /// How many volumes exist.
    pub volumes: usize,
    /// What this daemon cannot do right now, and why, one sentence each (e.g. the state
    /// root is full: creates and mounts fail, removes still work). Empty when all is well.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// Room for new volumes of one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProfileCapacity {
    /// The profile.
    pub profile: String,
    /// Its backend, if available.
    pub backend: Option<BackendKind>,
    /// Whether volumes of this profile can be created here.
    pub available: bool,
    /// Space behind the backend (the filesystem holding its images or folders, or its thin
    /// pool), with what its volumes are promised; absent if it could not be measured.
    pub capacity: Option<Capacity>,
}

/// A configured profile as it resolves on this host (`GET /v1/profiles`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProfileView {
    /// The profile's name.
    pub name: String,
    /// What the configuration asks for.
    pub config: ProfileConfigView,
    /// Whether volumes of this profile can be created here.
    pub available: bool,
    /// The backend that really serves it (absent when unavailable).
    pub backend: Option<BackendKind>,
    /// Where in that backend (`VG/POOL` for LVM).
    pub location: Option<String>,
    /// Whether images are fully allocated at create time.
    pub preallocate: bool,
    /// Why this backend, or why none, in a sentence.
    pub reason: String,
    /// Whether commits of its volumes read only the changed byte ranges of changed files, as
    /// the storage tells them (loop images on a root filesystem that shares blocks, such as
    /// XFS with reflink); else changed files are read whole.
    #[serde(default)]
    #[schema(required = true)]
    pub changed_ranges: bool,
    /// Whether volumes without a profile get this one.
    pub default: bool,
}

/// One profile as the configuration writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProfileConfigView {
    /// `directory`, `loop` or `lvm`.
    pub backend: BackendKind,
    /// The LVM volume group (lvm only).
    pub volume_group: Option<String>,
    /// The LVM thin pool in that group (lvm only).
    pub thin_pool: Option<String>,
    /// The default size of new volumes, in bytes.
    pub size: Option<u64>,
    /// The filesystem of new volumes (block backends).
    pub filesystem: Option<Filesystem>,
    /// How far what volumes are promised may exceed the room for them (lvm and loop).
    pub max_overprovision: Option<f64>,
    /// In cluster mode, whether its volumes follow their container to the node that mounts
    /// them (absent: yes).
    #[serde(default)]
    pub follow: Option<bool>,
}
