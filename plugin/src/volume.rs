//! The volume record: what dvol knows about one volume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use dvol_backends::{BackendKind, ByteSize, Filesystem};
use uuid::Uuid;

use crate::names::{ProfileName, VolumeName};

/// Where a volume is in its life: the API's type, stored in the database by its name.
/// `Creating` volumes are not visible (rolled back at start); `Removing` ones are listed,
/// with the reason when a remove failed halfway, until a remove (or the next start) finishes.
pub use dvol_api::VolumeState;

/// One volume.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Stable identity; names the mountpoint and the backend storage.
    pub id: Uuid,
    /// The user's name for it.
    pub name: VolumeName,
    /// The profile it was created with.
    pub profile: ProfileName,
    /// The backend its data lives on.
    pub backend: BackendKind,
    /// Where in that backend (`VG/POOL` for LVM), when a kind can have several.
    pub location: Option<String>,
    /// The size asked for, if any.
    pub size: Option<ByteSize>,
    /// The filesystem asked for, if any.
    pub filesystem: Option<Filesystem>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its life-cycle state.
    pub state: VolumeState,
    /// Active mounts: Docker's mount id and how many times it mounted without unmounting.
    pub mounts: BTreeMap<String, u32>,
    /// Why the last remove of a `Removing` volume failed; kept in memory only (a restart
    /// retries the remove and records its own failure).
    pub problem: Option<String>,
}

impl Volume {
    /// The creation time in RFC 3339, as Docker expects it.
    pub fn created_rfc3339(&self) -> String {
        self.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// Whether any container has it mounted.
    pub fn in_use(&self) -> bool {
        !self.mounts.is_empty()
    }
}

/// The layout of the daemon's state root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The metadata database.
    pub fn database(&self) -> PathBuf {
        self.root.join("dvol.db")
    }

    /// The history repository (objects, refs, indexes).
    pub fn history_dir(&self) -> PathBuf {
        self.root.join("history")
    }

    /// The folder holding every volume's mountpoint.
    pub fn mounts_dir(&self) -> PathBuf {
        self.root.join("mounts")
    }

    /// A volume's mountpoint: `<root>/mounts/<uuid>`.
    pub fn mountpoint(&self, id: Uuid) -> PathBuf {
        self.mounts_dir().join(id.to_string())
    }

    /// The folder holding the scratch mountpoints of read points (snapshots a commit reads).
    pub fn read_points_dir(&self) -> PathBuf {
        self.root.join("read-points")
    }

    /// A volume's read point scratch directory: `<root>/read-points/<uuid>`. It exists only
    /// while a read point may exist, so one found at start marks a point to release.
    pub fn read_point(&self, id: Uuid) -> PathBuf {
        self.read_points_dir().join(id.to_string())
    }

    /// The folder a backend keeps its storage in.
    pub fn backend_dir(&self, kind: BackendKind) -> PathBuf {
        self.root.join("backends").join(kind.as_str())
    }
}
