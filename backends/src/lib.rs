//! Storage backends for dvol volumes.
//!
//! A backend owns where a volume's data lives and how it appears at the volume's mountpoint.
//! Every operation is idempotent (create what exists, remove what is gone, mount what is
//! mounted) and reports through [`Effect`] whether it changed anything, so the daemon can
//! replay an operation after a crash without special cases.
//!
//! - [`directory::DirectoryBackend`]: a folder per volume, bind-mounted at the mountpoint.
//! - [`mount_table::MountTable`]: what the kernel says is mounted; the only source of truth
//!   for mount state.
//! - [`size::ByteSize`]: volume sizes as users write them (`10G`, `512MiB`).

pub mod directory;
pub mod mount_table;
pub mod size;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

pub use size::ByteSize;

/// The kinds of backend a profile can ask for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A folder per volume.
    Directory,
    /// An image file per volume on a loop device.
    Loop,
    /// A thin logical volume per volume.
    Lvm,
}

impl BackendKind {
    /// The name used in configuration files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Directory => "directory",
            BackendKind::Loop => "loop",
            BackendKind::Lvm => "lvm",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Filesystems a block backend can format a volume with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filesystem {
    /// ext4, the default for loop images.
    Ext4,
    /// XFS, which supports reflink copies.
    Xfs,
}

impl Filesystem {
    /// The names accepted in configuration and options.
    pub const NAMES: &'static str = "ext4, xfs";

    /// The name used in configuration files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Filesystem::Ext4 => "ext4",
            Filesystem::Xfs => "xfs",
        }
    }
}

impl std::str::FromStr for Filesystem {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ext4" => Ok(Filesystem::Ext4),
            "xfs" => Ok(Filesystem::Xfs),
            _ => Err(format!(
                "unknown filesystem {s:?}: use one of {}",
                Filesystem::NAMES
            )),
        }
    }
}

impl fmt::Display for Filesystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an idempotent operation changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The operation did its work.
    Changed,
    /// The desired state was already in place; nothing was touched.
    Unchanged,
}

/// What a backend needs to know to create a volume.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    /// The volume's identity; the backend names everything it makes after it.
    pub id: Uuid,
    /// The requested size, if any.
    pub size: Option<ByteSize>,
}

/// Space a backend can offer, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capacity {
    /// Total size of the storage behind the backend.
    pub total_bytes: u64,
    /// Space still free for new data.
    pub free_bytes: u64,
}

/// Errors from backend operations. Each says what failed and on which path.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A filesystem call failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "create data directory".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel's mount table could not be read.
    #[error("read the kernel mount table: {0}")]
    MountTable(String),
}

impl BackendError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        BackendError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A place where volume data lives.
///
/// Implementations must be safe to call again after a crash at any point: each method checks
/// the real state (files, the kernel's mount table) before acting.
pub trait Backend: Send + Sync {
    /// Which kind of backend this is.
    fn kind(&self) -> BackendKind;

    /// Makes the storage for a new volume. Creating an existing volume changes nothing.
    fn create(&self, spec: &VolumeSpec) -> Result<Effect, BackendError>;

    /// Deletes a volume's storage and all its data. Removing a missing volume changes nothing.
    fn remove(&self, id: Uuid) -> Result<Effect, BackendError>;

    /// Makes the volume's data visible at `target`, which must exist.
    fn mount(&self, id: Uuid, target: &Path) -> Result<Effect, BackendError>;

    /// Detaches the volume's data from `target`.
    fn unmount(&self, id: Uuid, target: &Path) -> Result<Effect, BackendError>;

    /// How much room the backend has for volumes.
    fn capacity(&self) -> Result<Capacity, BackendError>;

    /// Ids of the volumes whose storage exists in this backend.
    fn volumes(&self) -> Result<Vec<Uuid>, BackendError>;
}
