//! Read points of directory volumes on a root whose filesystem shares blocks (XFS with
//! reflink, btrfs): the commit still reads the live folder, and the read point adds a
//! copy-on-write copy of each of its larger files, from which the next commit's changed
//! ranges are counted.
//!
//! Layout, beside the volume's folder `<root>/<id>`:
//! - `<id>.point/`: made by [`Backend::read_point`](crate::Backend::read_point): one reflinked
//!   copy per regular file of at least [`SMALLEST_COPIED`] bytes, named by the BLAKE3 hash of
//!   its path in the volume (flat, so no path of the volume is ever made or followed here);
//! - `<id>.base/`: the point of the last recorded commit. When the point is released after
//!   [`Backend::keep_read_point`], the older base is removed and the point renamed in its
//!   place; otherwise the point is removed. A crash between the two leaves no base (the next
//!   commit reads changed files whole), never a base newer than the record.
//!
//! Why the copies tell the truth although the commit reads the live folder, where writers go
//! on: a copy shares every block of its file at the instant it is made, and a write to a
//! shared block puts the new bytes in a new block. So where the maps of a file's copy at this
//! point and at the base agree, its bytes are the same at both instants, and equal to what
//! the record holds. A write after the point copy moves the block away from the base's for
//! good, so it is found by the next commit if this one read the older bytes. Bytes beyond
//! the copy's end count as changed (the file may have grown since).
//!
//! The copies hold only the blocks the volume rewrote since they were made: the base's are
//! reported as the backend's `base_bytes` ([`DirectoryBackend::held_by_bases`]).

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use uuid::Uuid;

use super::DirectoryBackend;
use crate::extent_map::{disagreements, extents_of, unshared_bytes};
use crate::reflink::share_blocks;
use crate::{BackendError, ChangesSinceBase, Effect, FileChanges, NoChanges};

/// Files smaller than this get no copy: a commit reads them whole for less than a copy
/// costs (the history library reads files of up to one chunk whole anyway).
pub const SMALLEST_COPIED: u64 = 1 << 20;

/// What the backend remembers of its read points between taking and releasing them.
#[derive(Debug, Default)]
pub(super) struct Points {
    /// The volumes whose point becomes their base when released.
    kept: HashSet<Uuid>,
    /// The volumes whose point copies could not be made, and why.
    failed: HashMap<Uuid, String>,
}

impl DirectoryBackend {
    /// Where volume `id`'s read point copies are made.
    pub(super) fn point_dir(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.point"))
    }

    /// Where volume `id`'s base copies are kept.
    pub fn base_dir(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.base"))
    }

    /// Whether the root's filesystem shares blocks between files: tried once.
    pub(super) fn shares_blocks(&self) -> bool {
        *self
            .shares_blocks
            .get_or_init(|| crate::reflink::root_shares_blocks(&self.root))
    }

    fn points(&self) -> std::sync::MutexGuard<'_, Points> {
        self.points.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes volume `id`'s point copies, if the root shares blocks. A failure is logged and
    /// remembered: the commit then reads changed files whole, and no base is kept from it.
    pub(super) fn take_point(&self, id: Uuid) -> Result<(), BackendError> {
        self.points().kept.remove(&id);
        if !self.shares_blocks() {
            return Ok(());
        }
        let point = self.point_dir(id);
        remove_tree(&point, "remove stale read point copies")?;
        let made = fs::DirBuilder::new()
            .mode(0o700)
            .create(&point)
            .map_err(|e| BackendError::io("create read point copies", &point, e))
            .and_then(|()| copy_large_files(&self.data_dir(id), &point));
        match made {
            Ok(copied) => {
                tracing::debug!(volume = %id, copied, "read point copies made");
                self.points().failed.remove(&id);
            }
            Err(e) => {
                tracing::warn!(volume = %id, error = %e, "cannot make the read point's copies; the commit reads changed files whole");
                let _ = remove_tree(&point, "remove read point copies");
                self.points().failed.insert(id, e.to_string());
            }
        }
        Ok(())
    }

    /// The changed ranges of volume `id`'s files since its base.
    pub(super) fn point_changes(&self, id: Uuid) -> ChangesSinceBase {
        if !self.shares_blocks() {
            return ChangesSinceBase::Unknown(NoChanges::NotSupported);
        }
        if let Some(reason) = self.points().failed.get(&id) {
            return ChangesSinceBase::Unknown(NoChanges::Failed(reason.clone()));
        }
        let (point, base) = (self.point_dir(id), self.base_dir(id));
        if !point.is_dir() {
            return ChangesSinceBase::Unknown(NoChanges::Failed(
                "the read point has no copies (taken before the root shared blocks?)".into(),
            ));
        }
        if !base.is_dir() {
            return ChangesSinceBase::Unknown(NoChanges::NoBase);
        }
        ChangesSinceBase::Ranges(Box::new(CopiedFiles { point, base }))
    }

    /// Ends volume `id`'s read point: its copies become the base if the caller kept it, else
    /// they are removed. Ending a point that is gone changes nothing.
    pub(super) fn end_point(&self, id: Uuid) -> Result<Effect, BackendError> {
        let kept = {
            let mut points = self.points();
            points.failed.remove(&id);
            points.kept.remove(&id)
        };
        let point = self.point_dir(id);
        if !point.is_dir() {
            return Ok(Effect::Unchanged);
        }
        if !kept {
            return remove_tree(&point, "remove read point copies");
        }
        let base = self.base_dir(id);
        remove_tree(&base, "remove older base copies")?;
        fs::rename(&point, &base)
            .map_err(|e| BackendError::io("keep read point copies as base", &base, e))?;
        let root = File::open(&self.root)
            .map_err(|e| BackendError::io("open backend root", &self.root, e))?;
        rustix::fs::syncfs(&root)
            .map_err(|e| BackendError::io("sync backend root", &self.root, e.into()))?;
        Ok(Effect::Changed)
    }

    /// Marks volume `id`'s point to become its base when released.
    pub(super) fn keep_point(&self, id: Uuid) {
        if self.shares_blocks() {
            self.points().kept.insert(id);
        }
    }

    /// Removes volume `id`'s point and base copies.
    pub(super) fn remove_copies(&self, id: Uuid) -> Result<Effect, BackendError> {
        let point = remove_tree(&self.point_dir(id), "remove read point copies")?;
        let base = remove_tree(&self.base_dir(id), "remove base copies")?;
        Ok(if point == Effect::Changed || base == Effect::Changed {
            Effect::Changed
        } else {
            Effect::Unchanged
        })
    }

    /// What the volumes' bases hold alone: the blocks their volumes rewrote since the copies
    /// were made. A copy whose map cannot be read counts nothing.
    pub(super) fn held_by_bases(&self, volumes: &[Uuid]) -> u64 {
        let mut held = 0u64;
        for id in volumes {
            let Ok(entries) = fs::read_dir(self.base_dir(*id)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(file) = File::open(&path) else {
                    continue;
                };
                match unshared_bytes(&file, &path) {
                    Ok(bytes) => held = held.saturating_add(bytes),
                    Err(e) => tracing::debug!(error = %e, "base copy not counted"),
                }
            }
        }
        held
    }
}

/// The name of the copy of the file at `rel` in the volume.
fn copy_name(rel: &Path) -> String {
    blake3::hash(rel.as_os_str().as_bytes())
        .to_hex()
        .to_string()
}

/// Removes the directory `dir` and what it holds; a missing one changes nothing.
fn remove_tree(dir: &Path, what: &'static str) -> Result<Effect, BackendError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(Effect::Changed),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Effect::Unchanged),
        Err(e) => Err(BackendError::io(what, dir, e)),
    }
}

/// Whether an error opening or listing a path of a live volume means it went away or was
/// replaced meanwhile (by a symlink, which is never followed): skipped, not a failure.
fn raced(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound
        || matches!(
            e.raw_os_error(),
            Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV)
        )
}

/// Copies each regular file of at least [`SMALLEST_COPIED`] bytes below `data` into `point`,
/// sharing its blocks. Files are opened below `data` without following any symlink or
/// leaving its filesystem. Returns how many were copied.
fn copy_large_files(data: &Path, point: &Path) -> Result<u64, BackendError> {
    let root: OwnedFd = rustix::fs::open(
        data,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| BackendError::io("open volume folder", data, e.into()))?;
    let mut copied = 0u64;
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(data.join(&dir)) {
            Ok(entries) => entries,
            Err(e) if raced(&e) => continue,
            Err(e) => return Err(BackendError::io("list volume folder", &data.join(&dir), e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| BackendError::io("list volume folder", data, e))?;
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let rel = dir.join(entry.file_name());
            if kind.is_dir() {
                dirs.push(rel);
            } else if kind.is_file() && copy_one(&root, data, &rel, point)? {
                copied += 1;
            }
        }
    }
    Ok(copied)
}

/// Copies the file `rel` below the open folder `root` (at `data`) into `point`, if it is a
/// regular file of at least [`SMALLEST_COPIED`] bytes. `false`: not copied.
fn copy_one(root: &OwnedFd, data: &Path, rel: &Path, point: &Path) -> Result<bool, BackendError> {
    let shown = data.join(rel);
    let fd = match rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
    ) {
        Ok(fd) => fd,
        Err(e) => {
            let e = std::io::Error::from(e);
            if raced(&e) {
                return Ok(false);
            }
            return Err(BackendError::io("open volume file", &shown, e));
        }
    };
    let source = File::from(fd);
    let meta = source
        .metadata()
        .map_err(|e| BackendError::io("stat volume file", &shown, e))?;
    if !meta.is_file() || meta.len() < SMALLEST_COPIED {
        return Ok(false);
    }
    let path = point.join(copy_name(rel));
    let copy = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| BackendError::io("create read point copy", &path, e))?;
    if share_blocks(&copy, &source, &shown)? {
        Ok(true)
    } else {
        Err(BackendError::Unavailable(format!(
            "{} cannot share blocks with its copy",
            shown.display()
        )))
    }
}

/// A read point's copies and its base's.
struct CopiedFiles {
    point: PathBuf,
    base: PathBuf,
}

impl CopiedFiles {
    /// The extent map and size of the copy named `name` in `dir`.
    fn map(dir: &Path, name: &str) -> Option<(Vec<crate::extent_map::Extent>, u64)> {
        let path = dir.join(name);
        let file = File::open(&path).ok()?;
        let len = file.metadata().ok()?.len();
        Some((extents_of(&file, &path).ok()?, len))
    }
}

impl FileChanges for CopiedFiles {
    fn changed_ranges(&self, rel: &Path) -> Option<Vec<Range<u64>>> {
        let name = copy_name(rel);
        let (new, len) = Self::map(&self.point, &name)?;
        let (old, _) = Self::map(&self.base, &name)?;
        let mut ranges = disagreements(&new, &old, len);
        // Read live: the file may have grown since its copy was made.
        ranges.push(len..u64::MAX);
        Some(ranges)
    }
}
