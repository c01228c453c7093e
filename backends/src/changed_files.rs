//! The changed ranges of the files at a read point, from two mounted copies of one device (the
//! read point and its base) and the device offsets whose bytes changed between them.
//!
//! A file's changed ranges are where its extent maps in the two copies disagree, or agree on
//! device offsets that changed (see [`crate::extent_map::file_changes`]). The device offsets
//! come from the storage: for loop images, where the image copies' own maps disagree on the
//! root's filesystem; for LVM thin volumes, the blocks `thin_delta` finds differing between the
//! two thin snapshots.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use uuid::Uuid;

use crate::extent_map::{extents_of, file_changes, Extent};
use crate::mount::{self, WhenBusy};
use crate::{BackendError, ChangesSinceBase, Effect, FileChanges, NoChanges};

/// What a backend tells a commit of volume `volume` from its count of the changes since the
/// base (`None`: no base yet). A failure is logged and makes the commit read changed files
/// whole.
pub(crate) fn changes_since_base(
    volume: Uuid,
    counted: Result<Option<MountedCopies>, BackendError>,
) -> ChangesSinceBase {
    match counted {
        Ok(Some(changes)) => ChangesSinceBase::Ranges(Box::new(changes)),
        Ok(None) => ChangesSinceBase::Unknown(NoChanges::NoBase),
        Err(e) => {
            tracing::warn!(volume = %volume, error = %e, "cannot count the changes since the base; the commit reads changed files whole");
            ChangesSinceBase::Unknown(NoChanges::Failed(e.to_string()))
        }
    }
}

/// Makes `mounted` an empty directory to mount a base on, ending a mount a crash left there.
pub(crate) fn new_base_mountpoint(mounted: &Path) -> Result<(), BackendError> {
    end_base_mount(mounted)?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(mounted)
        .map_err(|e| BackendError::io("create base mountpoint", mounted, e))
}

/// Unmounts the base mounted at `mounted`, if it is, and removes the mountpoint.
pub(crate) fn end_base_mount(mounted: &Path) -> Result<Effect, BackendError> {
    let mut effect = mount::unmount(mounted, "unmount base", WhenBusy::Fail)?;
    match fs::remove_dir(mounted) {
        Ok(()) => effect = Effect::Changed,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(BackendError::io("remove base mountpoint", mounted, e)),
    }
    Ok(effect)
}

/// A read point and its base, both mounted, and the device offsets that changed between them.
pub(crate) struct MountedCopies {
    /// The read point's root, and its path (for messages).
    point: OwnedFd,
    point_path: PathBuf,
    /// The base's root, and its path.
    base: OwnedFd,
    base_path: PathBuf,
    /// The device offsets whose bytes changed between the copies, sorted.
    device_changed: Vec<Range<u64>>,
}

impl MountedCopies {
    /// The copies mounted at `point` and `base`; `device_changed` the device offsets whose
    /// bytes differ between them.
    pub(crate) fn open(
        point: &Path,
        base: &Path,
        device_changed: Vec<Range<u64>>,
    ) -> Result<Self, BackendError> {
        let open = |root: &Path| {
            rustix::fs::open(
                root,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| BackendError::io("open mounted copy's root", root, e.into()))
        };
        Ok(MountedCopies {
            point: open(point)?,
            point_path: point.to_path_buf(),
            base: open(base)?,
            base_path: base.to_path_buf(),
            device_changed,
        })
    }

    /// The extent map of the regular file `rel` below `root`, opened without following any
    /// symlink or leaving the mount (a base may hold a symlink where the point holds a
    /// directory); with its size.
    fn map_below(root: &OwnedFd, shown: &Path, rel: &Path) -> Option<(Vec<Extent>, u64)> {
        let fd = rustix::fs::openat2(
            root,
            rel,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
        )
        .ok()?;
        let file = File::from(fd);
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let map = extents_of(&file, &shown.join(rel)).ok()?;
        Some((map, meta.len()))
    }
}

impl FileChanges for MountedCopies {
    fn changed_ranges(&self, rel: &Path) -> Option<Vec<Range<u64>>> {
        let (new, len) = Self::map_below(&self.point, &self.point_path, rel)?;
        let (old, _) = Self::map_below(&self.base, &self.base_path, rel)?;
        Some(file_changes(&new, &old, len, &self.device_changed))
    }
}
