//! The loop backend: an image file per volume, attached to a loop device, formatted ext4 or
//! xfs, and mounted at the volume's mountpoint.
//!
//! The image (`<root>/<uuid>.img`) enforces the volume's size: a full volume fails writes with
//! `ENOSPC` instead of filling the host. Images are sparse unless the spec asks for
//! preallocation, in which case every block is reserved at create time.
//!
//! Loop devices are a shared, leakable kernel resource, so the backend never keeps one
//! attached longer than something uses it:
//! - every attachment sets `LO_FLAGS_AUTOCLEAR`, so the kernel detaches the device when its
//!   last user closes it: the mount, or this process (also when it dies mid-operation);
//! - the kernel is the only record of attachments: `/sys/block/loop*/loop/backing_file` says
//!   which image a device serves and `/proc/self/mountinfo` whether it is mounted. Before
//!   attaching an image, and after unmounting or removing it, leftovers from a crash (attached
//!   but not mounted) are detached.
//!
//! A new image is built under a temporary name (`<uuid>.img.tmp`) and renamed into place once
//! it holds a filesystem, so a crash during `create` leaves only a temporary file that the next
//! `create` or `remove` of the volume cleans up.
//!
//! The parts, by concern:
//! - `attachment`: kernel loop devices: listing, attaching with autoclear, releasing leftovers;
//! - `image`: the image files: names, building, discarding side images, reflink copies, room;
//! - `grow`: growing an image and its filesystem, online or offline;
//! - `read_point` and `clone`: copy-on-write copies of an image, for a commit and for a new
//!   volume; where blocks cannot be shared, a commit reads the volume frozen, for at most a
//!   time limit ([`BoundedFreeze`](crate::freeze::BoundedFreeze));
//! - `base`: the copy a recorded commit read, kept to count the next commit's changed ranges
//!   from;
//! - `space`: what sparse images promise, against the free space of the root's filesystem
//!   less a reserve;
//! - `backend`: the [`Backend`](crate::Backend) implementation, which puts them together.

mod attachment;
mod backend;
mod base;
mod clone;
mod configure;
mod grow;
mod image;
mod read_point;
mod space;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use loopdev::LoopControl;
use uuid::Uuid;

use crate::filesystem::FilesystemTools;
use crate::freeze::BoundedFreeze;
use crate::BackendError;

pub use attachment::{loop_attachments, LoopAttachment, LOOP_CONTROL};
pub use space::{Reserve, DEFAULT_OVERPROVISION};

/// How long a commit may keep a volume frozen unless told otherwise.
pub const DEFAULT_FREEZE_LIMIT: Duration = Duration::from_secs(60);

/// Volumes as image files on loop devices, under one root directory.
#[derive(Debug, Clone)]
pub struct LoopBackend {
    root: PathBuf,
    tools: FilesystemTools,
    /// Room on the root's filesystem that promises to sparse volumes may not use.
    reserve: Reserve,
    /// The longest a read point may keep a volume frozen.
    freeze_limit: Duration,
    /// Held from checking room to taking it (see `space`).
    space: Arc<Mutex<()>>,
    /// The frozen read points, by volume, until released.
    freezes: Arc<Mutex<HashMap<Uuid, BoundedFreeze>>>,
    /// The volumes whose read point becomes their base when released (see `base`).
    kept: Arc<Mutex<HashSet<Uuid>>>,
    /// Whether the root's filesystem shares blocks (found on first use).
    shares_blocks: Arc<OnceLock<bool>>,
}

impl LoopBackend {
    /// A backend keeping its images under `root`, which is created if missing.
    ///
    /// Fails with [`BackendError::Unavailable`] when the host has no loop devices
    /// (`/dev/loop-control` is missing) or this process may not use them.
    pub fn open(root: PathBuf) -> Result<Self, BackendError> {
        let control = Path::new(LOOP_CONTROL);
        if !control.exists() {
            return Err(BackendError::Unavailable(format!(
                "loop volumes are not available: {LOOP_CONTROL} is missing; load the loop \
                 kernel module (modprobe loop) or use a directory or lvm profile"
            )));
        }
        LoopControl::open().map_err(|e| {
            BackendError::Unavailable(format!(
                "loop volumes are not available: cannot open {LOOP_CONTROL}: {e}; the daemon \
                 needs root (CAP_SYS_ADMIN) for loop devices"
            ))
        })?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| BackendError::io("create loop backend root", &root, e))?;
        // The kernel names backing files by their canonical path; so must we, to find them.
        let root = fs::canonicalize(&root)
            .map_err(|e| BackendError::io("resolve loop backend root", &root, e))?;
        Ok(LoopBackend {
            root,
            tools: FilesystemTools::find(),
            reserve: Reserve::DEFAULT,
            freeze_limit: DEFAULT_FREEZE_LIMIT,
            space: Arc::default(),
            freezes: Arc::default(),
            kept: Arc::default(),
            shares_blocks: Arc::default(),
        })
    }

    /// The backend with `reserve` kept free of promises on the root's filesystem.
    pub fn with_reserve(mut self, reserve: Reserve) -> Self {
        self.reserve = reserve;
        self
    }

    /// The backend with read points frozen for at most `limit`.
    pub fn with_freeze_limit(mut self, limit: Duration) -> Self {
        self.freeze_limit = limit;
        self
    }

    /// The directory holding the images.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a volume's image lives.
    pub fn image_path(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.img"))
    }
}
