//! The image files under the backend's root: their names, building a formatted image under
//! a temporary name and moving it into place, discarding side images (temporary ones, read
//! point copies) and reflinked copies.
//!
//! Every file a volume can have is named after its id: `<id>.img` (the volume),
//! `<id>.img.tmp` (being built or cloned), `<id>.img.tmp.mnt` (where a clone is mounted
//! once), `<id>.img.point` (a read point's copy) and `<id>.grow` (where an unmounted xfs
//! volume is mounted to grow it).

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::FallocateFlags;
use rustix::io::Errno;
use uuid::Uuid;

use super::attachment::{release, Attached};
use super::LoopBackend;
use crate::freeze::BoundedFreeze;
use crate::mount::{self, WhenBusy};
use crate::{BackendError, ByteSize, Effect, Filesystem};

/// Formats a byte count for messages, in binary units when it is large enough.
pub(super) fn human(bytes: u64) -> String {
    ByteSize::from_bytes(bytes)
        .map(|size| size.to_string())
        .unwrap_or_else(|_| format!("{bytes} bytes"))
}

/// The largest file a filesystem can hold, as far as its type tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileSizeLimit {
    /// The filesystem's name, for messages.
    pub filesystem: &'static str,
    /// The largest file size in bytes.
    pub bytes: u64,
}

/// `statfs` magic numbers (linux/magic.h) of the filesystems whose largest file is known.
const EXT4_SUPER_MAGIC: u64 = 0xEF53;
const XFS_SUPER_MAGIC: u64 = 0x5846_5342;
const BTRFS_SUPER_MAGIC: u64 = 0x9123_683E;
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// The largest file the filesystem holding `dir` can hold: ext4 maps a file's blocks with
/// 32-bit numbers, so (2^32 - 1) blocks (16 TiB less one block with 4 KiB blocks); xfs,
/// btrfs and tmpfs go to the kernel's limit, 8 EiB. `None` for other filesystems (a too
/// large image then fails with EFBIG, see [`size_error`]).
pub(super) fn file_size_limit(dir: &Path) -> Result<Option<FileSizeLimit>, BackendError> {
    let stat = rustix::fs::statfs(dir)
        .map_err(|e| BackendError::io("read the filesystem type of", dir, e.into()))?;
    // f_type is a signed word whose width varies with the architecture; the magic numbers
    // are 32-bit values.
    let magic = u64::from(stat.f_type as u32);
    let block = u64::try_from(stat.f_bsize).unwrap_or(0);
    let limit = match magic {
        EXT4_SUPER_MAGIC if block.is_power_of_two() => FileSizeLimit {
            filesystem: "ext4",
            bytes: ((1u64 << 32) - 1) * block,
        },
        XFS_SUPER_MAGIC => FileSizeLimit {
            filesystem: "xfs",
            bytes: i64::MAX as u64,
        },
        BTRFS_SUPER_MAGIC => FileSizeLimit {
            filesystem: "btrfs",
            bytes: i64::MAX as u64,
        },
        TMPFS_MAGIC => FileSizeLimit {
            filesystem: "tmpfs",
            bytes: i64::MAX as u64,
        },
        _ => return Ok(None),
    };
    Ok(Some(limit))
}

/// The error for an image of `size` that does not fit in one file on the filesystem
/// holding `root`, whose largest file is `limit` (when known).
fn too_large_for_file(root: &Path, size: u64, limit: Option<FileSizeLimit>) -> BackendError {
    let largest = match limit {
        Some(limit) => format!(
            "its largest file is {} bytes (about {}, {})",
            limit.bytes,
            human(limit.bytes),
            limit.filesystem
        ),
        None => "it refuses a file that large (EFBIG)".to_string(),
    };
    BackendError::Refused(format!(
        "a {} volume does not fit in one image file on the filesystem holding {}: {largest}; \
         ask for a smaller size, or put the state root on a filesystem with larger files (xfs)",
        human(size),
        root.display(),
    ))
}

/// Maps the failure to size an image file to `size`: EFBIG (the file would pass the
/// filesystem's largest file) is a refusal naming the limit, anything else an I/O error.
fn size_error(
    root: &Path,
    image: &Path,
    op: &'static str,
    size: u64,
    e: std::io::Error,
) -> BackendError {
    if e.raw_os_error() == Some(Errno::FBIG.raw_os_error()) {
        too_large_for_file(root, size, file_size_limit(root).ok().flatten())
    } else {
        BackendError::io(op, image, e)
    }
}

/// Opens an image to attach it, or to write to it.
pub(super) fn open_image(image: &Path) -> Result<File, BackendError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| BackendError::io("open volume image", image, e))
}

/// Reserves `len` bytes of the open `image` from `offset` on, so writes there cannot fail
/// for lack of room.
pub(super) fn allocate(
    file: &File,
    image: &Path,
    offset: u64,
    len: u64,
) -> Result<(), BackendError> {
    rustix::fs::fallocate(file, FallocateFlags::empty(), offset, len)
        .map_err(|e| BackendError::io("allocate volume image", image, e.into()))
}

impl LoopBackend {
    /// Where a volume's image is built before it is renamed into place.
    pub(super) fn temp_path(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.img.tmp"))
    }

    /// Where a read point's copy-on-write copy of a volume's image lives.
    pub(super) fn point_path(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.img.point"))
    }

    /// Where a clone's temporary image is mounted once (see
    /// [`FilesystemTools::new_identity`](crate::filesystem::FilesystemTools::new_identity)).
    pub(super) fn clone_scratch(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.img.tmp.mnt"))
    }

    /// Where an unmounted xfs volume is mounted to grow it when its own mountpoint is gone.
    pub(super) fn grow_scratch(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.grow"))
    }

    /// Refuses a volume of `size` that could not be one image file on the filesystem holding
    /// the root (see [`file_size_limit`]).
    pub(super) fn check_file_size_limit(&self, size: ByteSize) -> Result<(), BackendError> {
        match file_size_limit(&self.root)? {
            Some(limit) if size.bytes() > limit.bytes => {
                Err(too_large_for_file(&self.root, size.bytes(), Some(limit)))
            }
            _ => Ok(()),
        }
    }

    /// Sets the length of the open `image` to `size`, with a refusal naming the limit when
    /// the filesystem cannot hold a file that large.
    pub(super) fn set_image_len(
        &self,
        file: &File,
        image: &Path,
        op: &'static str,
        size: u64,
    ) -> Result<(), BackendError> {
        file.set_len(size)
            .map_err(|e| size_error(&self.root, image, op, size, e))
    }

    /// Writes a formatted image at `temp`: sized, attached, formatted, detached, synced.
    pub(super) fn build_image(
        &self,
        temp: &Path,
        fs: Filesystem,
        size: ByteSize,
        preallocate: bool,
    ) -> Result<(), BackendError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(temp)
            .map_err(|e| BackendError::io("create volume image", temp, e))?;
        if preallocate {
            allocate(&file, temp, 0, size.bytes())?;
        } else {
            self.set_image_len(&file, temp, "size volume image", size.bytes())?;
        }
        let attached = Attached::new(&file, temp)?;
        let made = self.tools.make(fs, &attached.path);
        attached.detach()?;
        made?;
        if preallocate {
            // mkfs discards the whole device first, and a loop device turns discards into
            // holes in the image: allocate them again so the volume keeps its reservation.
            allocate(&file, temp, 0, size.bytes())?;
        }
        file.sync_all()
            .map_err(|e| BackendError::io("sync volume image", temp, e))
    }

    /// Renames volume `id`'s finished temporary image into place, durably.
    pub(super) fn install_temp(&self, id: Uuid) -> Result<(), BackendError> {
        let image = self.image_path(id);
        fs::rename(self.temp_path(id), &image)
            .map_err(|e| BackendError::io("move volume image into place", &image, e))?;
        self.sync_root()
    }

    /// Makes the root's directory entries (a rename, a removal) durable.
    pub(super) fn sync_root(&self) -> Result<(), BackendError> {
        File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| BackendError::io("sync loop backend root", &self.root, e))
    }

    /// Removes a side image (a temporary image left by an interrupted create, a read point's
    /// copy) with the loop devices a crash left serving it.
    pub(super) fn discard(&self, image: &Path, what: &'static str) -> Result<Effect, BackendError> {
        release(image)?;
        match fs::remove_file(image) {
            Ok(()) => Ok(Effect::Changed),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Effect::Unchanged),
            Err(e) => Err(BackendError::io(what, image, e)),
        }
    }

    /// Removes a temporary image left by an interrupted create or clone, with its loop
    /// devices and the clone's scratch mount.
    pub(super) fn discard_temp(&self, id: Uuid) -> Result<Effect, BackendError> {
        let scratch = self.clone_scratch(id);
        mount::unmount(&scratch, "unmount clone scratch", WhenBusy::Fail)?;
        match fs::remove_dir(&scratch) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(BackendError::io("remove clone scratch", &scratch, e)),
        }
        self.discard(&self.temp_path(id), "remove temporary volume image")
    }

    /// Removes a read point's image copy, with its loop devices.
    pub(super) fn discard_point(&self, id: Uuid) -> Result<Effect, BackendError> {
        self.discard(&self.point_path(id), "remove read point image")
    }

    /// Makes the new file `copy` share the blocks of `image` (FICLONE). `false`, with no copy
    /// left, when the root's filesystem cannot share blocks (ext4, tmpfs).
    pub(super) fn reflink(&self, image: &Path, copy: &Path) -> Result<bool, BackendError> {
        crate::reflink::copy_file(image, copy)
    }

    /// Reflinks volume `source`'s image to `copy` with its filesystem (mounted at
    /// `mountpoint`, if it is) frozen for the instant of the copy, and thaws it again.
    pub(super) fn reflink_frozen(
        &self,
        source: Uuid,
        mountpoint: Option<&Path>,
        copy: &Path,
    ) -> Result<bool, BackendError> {
        let frozen = mountpoint
            .map(|mountpoint| BoundedFreeze::start(mountpoint, self.freeze_limit))
            .transpose()?;
        let cloned = self.reflink(&self.image_path(source), copy);
        // A copy the limit cut short may be torn.
        let thawed = match (frozen.map(BoundedFreeze::end).transpose(), mountpoint) {
            (Ok(Some(end)), Some(mountpoint)) if end.expired => Err(BackendError::FreezeExpired {
                mountpoint: mountpoint.to_path_buf(),
                limit: self.freeze_limit,
            }),
            (ended, _) => ended.map(drop),
        };
        match (cloned, thawed) {
            (Ok(cloned), Ok(())) => Ok(cloned),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => {
                let _ = self.discard(copy, "remove image copy");
                Err(e)
            }
        }
    }
}
