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
//! - [`mount`]: mounting and the one strict unmount every backend uses.
//! - [`size::ByteSize`]: volume sizes as users write them (`10G`, `512MiB`).
//! - [`command::Tool`]: external tools found once by absolute path; failures carry the command
//!   line, exit code and stderr. [`filesystem`] makes and grows filesystems with them.
//! - [`freeze`]: freezing a mounted filesystem for a consistent read point, for at most a time
//!   limit (the crate's only `unsafe`).
//! - [`extent_map`]: where files' bytes lie (FIEMAP), compared between copy-on-write copies
//!   to tell a commit which byte ranges changed ([`Backend::changes_since_base`]); the
//!   device offsets that changed come from the image copies' own maps (loop) or from
//!   `thin_delta` (LVM).

mod changed_files;
pub mod command;
pub mod directory;
pub mod extent_map;
pub mod filesystem;
pub mod freeze;
pub mod loop_device;
pub mod lvm;
pub mod mount;
pub mod mount_table;
mod reflink;
pub mod size;
#[cfg(test)]
mod test_files;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

pub use size::ByteSize;

/// The kinds of backend a profile can ask for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// What a backend needs to know about a volume.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    /// The volume's identity; the backend names everything it makes after it.
    pub id: Uuid,
    /// The volume's size, if any. Block backends need one.
    pub size: Option<ByteSize>,
    /// The filesystem of a block volume.
    pub filesystem: Option<Filesystem>,
    /// Allocate all space at create time (fully allocated loop image) instead of on write.
    pub preallocate: bool,
    /// How far what sparse volumes are promised may exceed the room for them (the profile's
    /// `max_overprovision`; loop backend). `None`: 1.0, never more than the room.
    pub max_overprovision: Option<f64>,
}

/// A volume's data fixed at one instant, for a reader (a commit) while containers go on using
/// the volume. Made by [`Backend::read_point`], ended by [`Backend::release_read_point`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadPoint {
    /// A copy-on-write snapshot of the volume (LVM thin snapshot, reflinked image), mounted
    /// read-only at this path. Writers are not held up.
    Snapshot(PathBuf),
    /// The volume's own filesystem, frozen: writers wait until the point is released. Read the
    /// data at the mountpoint.
    Frozen,
    /// Nothing fixes the data (a directory volume): the data at the mountpoint is live, and
    /// consistent only if the caller has paused the writers.
    Live,
}

/// Which byte ranges of the files at a read point may differ from the same paths at its
/// base (the read point of an earlier recorded commit).
pub trait FileChanges: Send + Sync {
    /// The ranges (offsets in the file as it is at the read point) of the regular file `rel`,
    /// a path below the read point, outside which its bytes equal those of `rel` at the base.
    /// `None`: not known (a new file, a map that cannot be compared): read it whole.
    fn changed_ranges(&self, rel: &Path) -> Option<Vec<Range<u64>>>;
}

/// What a backend can say about the changes at a read point since its base.
pub enum ChangesSinceBase {
    /// Per file, the ranges that may have changed.
    Ranges(Box<dyn FileChanges>),
    /// Nothing: changed files are read whole.
    Unknown(NoChanges),
}

/// Why a read point's changed ranges are not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoChanges {
    /// The storage cannot tell them (no copy-on-write copies here: an ext4 root, a directory
    /// volume, or a frozen read point).
    NotSupported,
    /// No base yet: the volume's first commit at a copy-on-write read point (or the first
    /// since its base was discarded).
    NoBase,
    /// Counting them failed (the reason): the commit reads changed files whole.
    Failed(String),
}

impl fmt::Display for NoChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoChanges::NotSupported => f.write_str("this storage cannot tell changed ranges"),
            NoChanges::NoBase => f.write_str("no base read point yet (the first commit here)"),
            NoChanges::Failed(reason) => write!(f, "counting the changed ranges failed: {reason}"),
        }
    }
}

/// Space a backend can offer, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capacity {
    /// Total size of the storage behind the backend.
    pub total_bytes: u64,
    /// Space still free for new data.
    pub free_bytes: u64,
    /// What volumes are promised and have not written yet: of sparse loop images, their
    /// sizes less what they occupy; of a thin pool, its volumes' sizes less its used space.
    /// Directory volumes promise nothing.
    #[serde(default)]
    pub promised_bytes: u64,
    /// Free space kept back from promises, for dvol's database and history store.
    #[serde(default)]
    pub reserved_bytes: u64,
    /// Held by the bases of changed-range commits (reflinked copies of loop images, thin
    /// snapshots of LVM volumes, kept from each volume's last commit): the blocks the volumes
    /// rewrote since, which only the bases still hold. Given back by the next commit, or by
    /// removing the volume.
    #[serde(default)]
    pub base_bytes: u64,
}

impl Capacity {
    /// The size and free space (for unprivileged writers) of the filesystem holding `path`.
    pub fn of_filesystem(path: &Path) -> Result<Capacity, BackendError> {
        let stat = rustix::fs::statvfs(path)
            .map_err(|e| BackendError::io("query free space", path, e.into()))?;
        Ok(Capacity {
            total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
            free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
            promised_bytes: 0,
            reserved_bytes: 0,
            base_bytes: 0,
        })
    }
}

/// Errors from backend operations. Each says what failed and on which path or device.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A filesystem call or syscall failed.
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
    /// An external tool failed.
    #[error(transparent)]
    Command(#[from] command::CommandError),
    /// The request cannot be met by this backend (too small, too large, shrinking, no room).
    #[error("{0}")]
    Refused(String),
    /// The backend cannot run on this host (missing device, tool, volume group).
    #[error("{0}")]
    Unavailable(String),
    /// A read point's freeze reached its time limit and was lifted while the data was read.
    #[error(
        "the freeze of {} reached its limit of {}s and was lifted while the data was read, \
         so what was read may be inconsistent; nothing was kept: retry when the volume is \
         less busy, commit with --pause, or raise freeze_limit_seconds",
        mountpoint.display(), limit.as_secs_f64()
    )]
    FreezeExpired {
        /// Where the volume is mounted.
        mountpoint: PathBuf,
        /// The limit that passed.
        limit: std::time::Duration,
    },
}

impl BackendError {
    /// An I/O error on `path` while doing `action`.
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        BackendError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether the error is the caller's (bad size, no room) rather than the host's.
    pub fn is_refusal(&self) -> bool {
        matches!(self, BackendError::Refused(_))
    }
}

/// A place where volume data lives.
///
/// Implementations must be safe to call again after a crash at any point: each method checks
/// the real state (files, devices, the kernel's mount table) before acting.
pub trait Backend: Send + Sync {
    /// Which kind of backend this is.
    fn kind(&self) -> BackendKind;

    /// Where this instance keeps volumes, when a kind can have several (`vg/pool` for LVM).
    fn location(&self) -> Option<String> {
        None
    }

    /// Whether the size of a volume is a hard limit.
    fn enforces_size(&self) -> bool;

    /// Checks a spec before anything is recorded or made: sizes, filesystems, room.
    fn validate(&self, spec: &VolumeSpec) -> Result<(), BackendError>;

    /// Makes the storage for a new volume. Creating an existing volume changes nothing.
    fn create(&self, spec: &VolumeSpec) -> Result<Effect, BackendError>;

    /// Deletes a volume's storage and all its data. Removing a missing volume changes nothing.
    /// Never called while the volume is mounted.
    fn remove(&self, id: Uuid) -> Result<Effect, BackendError>;

    /// Makes the volume's data visible at `target`, which exists. Mounting what is already
    /// mounted there changes nothing.
    fn mount(&self, spec: &VolumeSpec, target: &Path) -> Result<Effect, BackendError>;

    /// Detaches the volume's data from `target` and releases what the mount held (loop
    /// devices). Unmounting what is not mounted changes nothing.
    fn unmount(&self, id: Uuid, target: &Path) -> Result<Effect, BackendError>;

    /// Grows a volume to `new_size`, online if it is mounted at `target`. Shrinking is refused.
    fn resize(
        &self,
        spec: &VolumeSpec,
        new_size: ByteSize,
        target: &Path,
    ) -> Result<Effect, BackendError>;

    /// Fixes the data of the volume mounted at `mountpoint` at this instant, for reading.
    /// `scratch` is an empty directory the backend may mount a snapshot on; the backend may
    /// also make `<scratch>.base` beside it (where the base is mounted), and removes it when the
    /// point is released. The caller reads,
    /// then calls [`Backend::release_read_point`] with the same paths, also when reading failed.
    fn read_point(
        &self,
        spec: &VolumeSpec,
        mountpoint: &Path,
        scratch: &Path,
    ) -> Result<ReadPoint, BackendError> {
        let _ = (spec, mountpoint, scratch);
        Ok(ReadPoint::Live)
    }

    /// Ends a read point: thaws the filesystem, or unmounts and deletes the snapshot. Ending
    /// what does not exist changes nothing, so the daemon calls it at start for every read
    /// point a crash may have left (each one's `scratch` directory still exists).
    fn release_read_point(
        &self,
        id: Uuid,
        mountpoint: &Path,
        scratch: &Path,
    ) -> Result<Effect, BackendError> {
        let _ = (id, mountpoint, scratch);
        Ok(Effect::Unchanged)
    }

    /// Which byte ranges of the files at volume `spec`'s read point, taken by
    /// [`Backend::read_point`] and mounted at `scratch`, may differ from its base: the read
    /// point an earlier [`Backend::keep_read_point`] kept. Drop the answer before releasing
    /// the point.
    fn changes_since_base(&self, spec: &VolumeSpec, scratch: &Path) -> ChangesSinceBase {
        let _ = (spec, scratch);
        ChangesSinceBase::Unknown(NoChanges::NotSupported)
    }

    /// Whether this backend's read points can count changed ranges: then a commit of a volume
    /// no container uses reads at a read point too, so that the next commit has a base.
    fn counts_changes(&self) -> bool {
        false
    }

    /// Keeps volume `id`'s current read point, once released, as the base the next one's
    /// changes are counted from. Call only after what was read from it is recorded (the
    /// volume's index saved): a base must never be newer than the record.
    fn keep_read_point(&self, id: Uuid) {
        let _ = id;
    }

    /// Whether volume `id`'s read point still fixes its data: `Err` when it stopped doing so
    /// before being released (a freeze whose time limit passed). A reader asks after reading
    /// and before keeping what it read.
    fn read_point_intact(&self, id: Uuid) -> Result<(), BackendError> {
        let _ = id;
        Ok(())
    }

    /// Makes the new volume `target` a copy-on-write copy of volume `source`'s current data,
    /// in constant time, where the storage shares blocks (LVM thin snapshot, reflink).
    /// `source_mountpoint` is where the source is mounted, if it is: it is frozen for the
    /// instant of the copy. The copy is made atomically, like [`Backend::create`], and removed
    /// by [`Backend::remove`]. `Ok(None)` when blocks cannot be shared here (other storage,
    /// another filesystem or size): the caller then creates the volume and copies the files.
    fn clone_volume(
        &self,
        source: &VolumeSpec,
        source_mountpoint: Option<&Path>,
        target: &VolumeSpec,
    ) -> Result<Option<Effect>, BackendError> {
        let _ = (source, source_mountpoint, target);
        Ok(None)
    }

    /// How much room the backend has for volumes.
    fn capacity(&self) -> Result<Capacity, BackendError>;

    /// Ids of the volumes whose storage exists in this backend.
    fn volumes(&self) -> Result<Vec<Uuid>, BackendError>;

    /// What this backend holds that belongs to no volume in `known`, one line each, for the
    /// daemon's start-up report. Only a report: nothing is touched.
    fn strays(&self, known: &[Uuid]) -> Result<Vec<String>, BackendError> {
        Ok(self
            .volumes()?
            .into_iter()
            .filter(|id| !known.contains(id))
            .map(|id| {
                format!(
                    "{} storage of unknown volume {id}; left untouched",
                    self.kind()
                )
            })
            .collect())
    }
}
