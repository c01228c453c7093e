//! The directory backend: a folder per volume, bind-mounted at the volume's mountpoint.
//!
//! Bind-mounting (rather than handing Docker the folder itself) keeps the kernel's mount table
//! the single source of truth for which volumes are in use, for every backend alike. There is
//! no size limit: a requested size is recorded but not enforced.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::mount::{self, WhenBusy};
use crate::mount_table::is_mount_point;
use crate::{Backend, BackendError, BackendKind, ByteSize, Capacity, Effect, VolumeSpec};

/// Volumes as folders under one root directory.
#[derive(Debug, Clone)]
pub struct DirectoryBackend {
    root: PathBuf,
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
        Ok(DirectoryBackend { root })
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
        let dir = self.data_dir(id);
        // remove_dir_all does not follow symlinks, so a link planted inside a volume cannot
        // make dvol delete anything outside it.
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(Effect::Changed),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Effect::Unchanged),
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

    fn capacity(&self) -> Result<Capacity, BackendError> {
        Capacity::of_filesystem(&self.root)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VolumeSpec {
        VolumeSpec {
            id: Uuid::new_v4(),
            size: None,
            filesystem: None,
            preallocate: false,
            max_overprovision: None,
        }
    }

    #[test]
    fn create_and_remove_are_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = DirectoryBackend::open(tmp.path().join("dir")).unwrap();
        let spec = spec();
        assert_eq!(backend.create(&spec).unwrap(), Effect::Changed);
        assert_eq!(backend.create(&spec).unwrap(), Effect::Unchanged);
        assert_eq!(backend.volumes().unwrap(), vec![spec.id]);
        fs::write(backend.data_dir(spec.id).join("f"), b"x").unwrap();
        assert_eq!(backend.remove(spec.id).unwrap(), Effect::Changed);
        assert_eq!(backend.remove(spec.id).unwrap(), Effect::Unchanged);
        assert!(backend.volumes().unwrap().is_empty());
    }

    #[test]
    fn remove_does_not_follow_symlinks_out_of_the_volume() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"precious").unwrap();
        let backend = DirectoryBackend::open(tmp.path().join("dir")).unwrap();
        let spec = spec();
        backend.create(&spec).unwrap();
        std::os::unix::fs::symlink(&outside, backend.data_dir(spec.id).join("link")).unwrap();
        backend.remove(spec.id).unwrap();
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"precious");
    }

    #[test]
    fn mount_and_unmount_are_idempotent_and_visible_in_the_kernel_table() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: bind mounts need root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let backend = DirectoryBackend::open(tmp.path().join("dir")).unwrap();
        let spec = spec();
        backend.create(&spec).unwrap();
        let target = tmp.path().join("mnt");
        fs::create_dir(&target).unwrap();
        assert_eq!(backend.mount(&spec, &target).unwrap(), Effect::Changed);
        assert_eq!(backend.mount(&spec, &target).unwrap(), Effect::Unchanged);
        assert!(is_mount_point(&target).unwrap());
        fs::write(target.join("f"), b"through the mount").unwrap();
        assert_eq!(
            fs::read(backend.data_dir(spec.id).join("f")).unwrap(),
            b"through the mount"
        );
        assert_eq!(backend.unmount(spec.id, &target).unwrap(), Effect::Changed);
        assert_eq!(
            backend.unmount(spec.id, &target).unwrap(),
            Effect::Unchanged
        );
        assert!(!is_mount_point(&target).unwrap());
    }
}
