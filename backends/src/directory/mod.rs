//! The directory backend: a folder per volume, bind-mounted at the volume's mountpoint.
//!
//! Bind-mounting (rather than handing Docker the folder itself) keeps the kernel's mount table
//! the single source of truth for which volumes are in use, for every backend alike. There is
//! no size limit: a requested size is recorded but not enforced.
//!
//! On a root that shares blocks (XFS with reflink, btrfs), read points keep copy-on-write
//! copies of the volume's larger files, so commits read only the changed ranges of changed
//! files (see `read_point`).

mod read_point;
#[cfg(test)]
mod tests;

pub use read_point::SMALLEST_COPIED;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use uuid::Uuid;

use crate::mount::{self, WhenBusy};
use crate::mount_table::is_mount_point;
use crate::{
    Backend, BackendError, BackendKind, ByteSize, Capacity, ChangesSinceBase, Effect, ReadPoint,
    VolumeSpec,
};

/// Volumes as folders under one root directory.
#[derive(Debug, Clone)]
pub struct DirectoryBackend {
    root: PathBuf,
    /// Whether the root's filesystem shares blocks between files, once tried.
    shares_blocks: Arc<OnceLock<bool>>,
    /// The read points taken and not yet released.
    points: Arc<Mutex<read_point::Points>>,
}

impl DirectoryBackend {
    /// A backend keeping its folders under `root`, which is created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BackendError> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| BackendError::io("create directory backend root", &root, e))?;
        Ok(DirectoryBackend {
            root,
            shares_blocks: Arc::default(),
            points: Arc::default(),
        })
    }

    /// Where a volume's data lives.
    pub fn data_dir(&self, id: Uuid) -> PathBuf {
        self.root.join(id.to_string())
    }
}

impl Backend for DirectoryBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Directory
    }

    fn enforces_size(&self) -> bool {
        false
    }

    fn validate(&self, _spec: &VolumeSpec) -> Result<(), BackendError> {
        Ok(())
    }

    fn create(&self, spec: &VolumeSpec) -> Result<Effect, BackendError> {
        let dir = self.data_dir(spec.id);
        match fs::DirBuilder::new().mode(0o755).create(&dir) {
            Ok(()) => Ok(Effect::Changed),
            Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(Effect::Unchanged),
            Err(e) => Err(BackendError::io("create data directory", &dir, e)),
        }
    }

    fn remove(&self, id: Uuid) -> Result<Effect, BackendError> {
        // The copies first: while the folder remains, the volume is listed and its removal
        // can be run again.
        let copies = self.remove_copies(id)?;
        let dir = self.data_dir(id);
        // remove_dir_all does not follow symlinks, so a link planted inside a volume cannot
        // make dvol delete anything outside it.
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(Effect::Changed),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(copies),
            Err(e) => Err(BackendError::io("remove data directory", &dir, e)),
        }
    }

    fn mount(&self, spec: &VolumeSpec, target: &Path) -> Result<Effect, BackendError> {
        if is_mount_point(target)? {
            return Ok(Effect::Unchanged);
        }
        let source = self.data_dir(spec.id);
        if !source.is_dir() {
            return Err(BackendError::io(
                "mount data directory",
                &source,
                std::io::Error::from(ErrorKind::NotFound),
            ));
        }
        mount::bind(&source, target, "bind-mount volume data")?;
        Ok(Effect::Changed)
    }

    fn unmount(&self, _id: Uuid, target: &Path) -> Result<Effect, BackendError> {
        // Something (a shell, a stray process) may still have a file open under the mount. The
        // data stays in the backend folder either way, so a busy bind mount is detached now and
        // the kernel finishes when the last user lets go.
        mount::unmount(target, "unmount volume", WhenBusy::Detach)
    }

    fn resize(
        &self,
        _spec: &VolumeSpec,
        _new_size: ByteSize,
        _target: &Path,
    ) -> Result<Effect, BackendError> {
        Err(BackendError::Refused(
            "directory volumes have no size limit to change; use a loop or lvm profile for sized volumes".into(),
        ))
    }

    /// The live folder; on a root that shares blocks, with copies of its larger files made
    /// first, to count the next commit's changed ranges from.
    fn read_point(
        &self,
        spec: &VolumeSpec,
        _mountpoint: &Path,
        _scratch: &Path,
    ) -> Result<ReadPoint, BackendError> {
        self.take_point(spec.id)?;
        Ok(ReadPoint::Live)
    }

    fn release_read_point(
        &self,
        id: Uuid,
        _mountpoint: &Path,
        _scratch: &Path,
    ) -> Result<Effect, BackendError> {
        self.end_point(id)
    }

    fn changes_since_base(&self, spec: &VolumeSpec, _scratch: &Path) -> ChangesSinceBase {
        self.point_changes(spec.id)
    }

    fn counts_changes(&self) -> bool {
        self.shares_blocks()
    }

    fn keep_read_point(&self, id: Uuid) {
        self.keep_point(id);
    }

    fn capacity(&self) -> Result<Capacity, BackendError> {
        let mut capacity = Capacity::of_filesystem(&self.root)?;
        if self.shares_blocks() {
            capacity.base_bytes = self.held_by_bases(&self.volumes()?);
        }
        Ok(capacity)
    }

    fn volumes(&self) -> Result<Vec<Uuid>, BackendError> {
        let entries = fs::read_dir(&self.root)
            .map_err(|e| BackendError::io("list volumes", &self.root, e))?;
        Ok(entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect())
    }
}
