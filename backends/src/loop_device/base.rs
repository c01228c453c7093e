//! The base of a loop volume's read points, where the root's filesystem shares blocks: the
//! reflinked copy a recorded commit read (`<id>.img.base`), kept so the next read point's
//! changes can be counted from it ([`LoopBackend::changes_since_base`]).
//!
//! Life of a base:
//! - a read point's copy (`<id>.img.point`) becomes the base when it is released, if the
//!   caller asked for that ([`LoopBackend::keep_read_point`]) after recording what it read;
//!   the rename replaces the older base in one step. Otherwise the copy is deleted and the
//!   older base stays: the volume's record (its index) is then newer than the base, which
//!   is what the changes need (every write after the base is a change).
//! - while a commit reads, the base is mounted read-only at `<id>.img.base.mnt`, and
//!   unmounted when the read point is released (also by the release at start after a crash);
//! - it is deleted with its volume. It holds only the blocks the volume has rewritten since,
//!   reported as the backend's `base_bytes` ([`LoopBackend::held_by_bases`]).
//!
//! The changes: the extent maps of the point and the base (both copies of the image) show
//! which image offsets changed; a file's changed ranges follow from them and from its maps in
//! the two mounted copies (see [`crate::changed_files`]).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::attachment::Attached;
use super::LoopBackend;
use crate::changed_files::{self, MountedCopies};
use crate::extent_map::{disagreements, extents_of, unshared_bytes, ExtentMapError};
use crate::mount::mount_snapshot;
use crate::{Backend, BackendError, ChangesSinceBase, Effect, Filesystem, NoChanges, VolumeSpec};

impl LoopBackend {
    /// Where volume `id`'s base copy lives.
    pub(super) fn base_path(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.img.base"))
    }

    /// Where volume `id`'s base copy is mounted while a read point's changes are counted.
    fn base_mount(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.img.base.mnt"))
    }

    /// The changed ranges of the files at volume `spec`'s read point (mounted at `scratch`)
    /// since its base.
    pub(super) fn changes_since_base(&self, spec: &VolumeSpec, scratch: &Path) -> ChangesSinceBase {
        let point = self.point_path(spec.id);
        if !point.is_file() {
            return ChangesSinceBase::Unknown(NoChanges::NotSupported);
        }
        let base = self.base_path(spec.id);
        if !base.is_file() {
            return ChangesSinceBase::Unknown(NoChanges::NoBase);
        }
        let counted = self.count_changes(spec, &point, &base, scratch).map(Some);
        changed_files::changes_since_base(spec.id, counted)
    }

    fn count_changes(
        &self,
        spec: &VolumeSpec,
        point: &Path,
        base: &Path,
        scratch: &Path,
    ) -> Result<MountedCopies, BackendError> {
        let map = |path: &Path| {
            let file =
                File::open(path).map_err(|e| BackendError::io("open image copy", path, e))?;
            extents_of(&file, path).map_err(unusable)
        };
        let len = fs::metadata(point)
            .map_err(|e| BackendError::io("stat read point image", point, e))?
            .len();
        let image_changed = disagreements(&map(point)?, &map(base)?, len);
        let mounted = self.base_mount(spec.id);
        changed_files::new_base_mountpoint(&mounted)?;
        let file = File::open(base).map_err(|e| BackendError::io("open base image", base, e))?;
        let attached = Attached::new(&file, base)?;
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        if let Err(e) = mount_snapshot(fs, &attached.path, &mounted, "mount base image") {
            let _ = attached.detach();
            return Err(e);
        }
        MountedCopies::open(scratch, &mounted, image_changed)
    }

    /// Unmounts volume `id`'s base copy, if it is mounted, and removes its mountpoint.
    pub(super) fn end_base_mount(&self, id: Uuid) -> Result<Effect, BackendError> {
        changed_files::end_base_mount(&self.base_mount(id))
    }

    /// Makes volume `id`'s read point copy its base (replacing the older one), if the caller
    /// kept it; else removes the copy. The copy is unmounted.
    pub(super) fn settle_point(&self, id: Uuid) -> Result<Effect, BackendError> {
        let kept = self.kept().remove(&id);
        let point = self.point_path(id);
        if !kept || !point.is_file() {
            return self.discard_point(id);
        }
        super::attachment::release(&point)?;
        let base = self.base_path(id);
        fs::rename(&point, &base)
            .map_err(|e| BackendError::io("keep read point as base", &base, e))?;
        self.sync_root()?;
        Ok(Effect::Changed)
    }

    /// Removes volume `id`'s base, unmounted first.
    pub(super) fn discard_base(&self, id: Uuid) -> Result<Effect, BackendError> {
        let mut effect = self.end_base_mount(id)?;
        if self.discard(&self.base_path(id), "remove base image")? == Effect::Changed {
            effect = Effect::Changed;
        }
        Ok(effect)
    }

    /// What the volumes' bases hold alone: the blocks their volumes rewrote since they were
    /// kept. A volume without a base, or whose base's map cannot be read (removed meanwhile),
    /// counts nothing.
    pub(super) fn held_by_bases(&self) -> Result<u64, BackendError> {
        let mut held = 0u64;
        for id in self.volumes()? {
            let path = self.base_path(id);
            let Ok(file) = File::open(&path) else {
                continue;
            };
            match unshared_bytes(&file, &path) {
                Ok(bytes) => held = held.saturating_add(bytes),
                Err(e) => tracing::debug!(error = %e, "base image not counted"),
            }
        }
        Ok(held)
    }

    /// Whether the root's filesystem shares blocks between files (FICLONE works there): tried
    /// once, on two empty files.
    pub(super) fn shares_blocks(&self) -> bool {
        *self
            .shares_blocks
            .get_or_init(|| crate::reflink::root_shares_blocks(&self.root))
    }

    /// The volumes whose read point becomes their base when released.
    pub(super) fn kept(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<Uuid>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An extent map that cannot be compared is a failure to count changes, not of the commit.
fn unusable(e: ExtentMapError) -> BackendError {
    BackendError::Unavailable(e.to_string())
}
