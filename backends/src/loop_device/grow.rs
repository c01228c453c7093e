//! Growing a loop volume: the image first (sparse, or allocated for a preallocated volume),
//! then its filesystem, online through the loop device that has it mounted, or offline on a
//! device attached for the moment. Shrinking is refused.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use loopdev::LoopDevice;
use uuid::Uuid;

use super::attachment::{device_at, release, wait_detached, Attached};
use super::image::{allocate, human, open_image};
use super::LoopBackend;
use crate::mount::{self, WhenBusy};
use crate::mount_table::{is_mount_point, MountTable};
use crate::{BackendError, ByteSize, Effect, Filesystem, VolumeSpec};

/// Whether this process has `CAP_SYS_RESOURCE`, which the kernel demands for growing a
/// mounted ext4 filesystem (`EXT4_IOC_RESIZE_FS`). Containers often drop it. When the answer
/// cannot be read, assume yes and let resize2fs report.
pub(super) fn may_grow_mounted_ext4() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_none_or(|mask| mask & (1 << CAP_SYS_RESOURCE) != 0)
}

impl LoopBackend {
    /// Grows volume `spec` to `new_size`: online if it is mounted at `target`, else offline.
    /// A size equal to the image's finishes a grow a crash interrupted.
    pub(super) fn grow(
        &self,
        spec: &VolumeSpec,
        new_size: ByteSize,
        target: &Path,
    ) -> Result<Effect, BackendError> {
        let image = self.image_path(spec.id);
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        let current = fs::metadata(&image)
            .map_err(|e| BackendError::io("read volume image size", &image, e))?
            .len();
        let mounted = is_mount_point(target)?;
        let can_grow = !(mounted && fs == Filesystem::Ext4) || may_grow_mounted_ext4();
        if new_size.bytes() < current {
            return Err(BackendError::Refused(format!(
                "volume {} is {} and cannot shrink to {new_size}; only growing is supported",
                spec.id,
                human(current)
            )));
        }
        if new_size.bytes() == current {
            if mounted && can_grow {
                // Finishes a resize a crash interrupted after the image grew; both steps do
                // nothing when the filesystem already fills the image.
                self.grow_online(fs, &image, target, spec.id)?;
            }
            return Ok(Effect::Unchanged);
        }
        if !can_grow {
            return Err(BackendError::Unavailable(format!(
                "cannot grow volume {} while it is mounted: growing a mounted ext4 filesystem \
                 needs CAP_SYS_RESOURCE, which the daemon lacks; stop the containers using it \
                 (so it is unmounted) and resize again, or give the daemon that capability",
                spec.id
            )));
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .map_err(|e| BackendError::io("open volume image", &image, e))?;
        let added = new_size.bytes() - current;
        self.check_file_size_limit(new_size)?;
        let space = self.hold_space();
        self.check_promise(
            added,
            spec.preallocate,
            spec.max_overprovision,
            &format!("growing volume {} to {new_size}", spec.id),
        )?;
        if spec.preallocate {
            allocate(&file, &image, current, added)?;
        } else {
            self.set_image_len(&file, &image, "grow volume image", new_size.bytes())?;
        }
        drop(space);
        file.sync_all()
            .map_err(|e| BackendError::io("sync volume image", &image, e))?;
        drop(file);
        if mounted {
            self.grow_online(fs, &image, target, spec.id)?;
        } else {
            self.grow_offline(fs, &image, target, spec.id)?;
        }
        Ok(Effect::Changed)
    }

    /// Grows the filesystem of a mounted volume to fill its (already grown) image.
    fn grow_online(
        &self,
        fs: Filesystem,
        image: &Path,
        target: &Path,
        id: Uuid,
    ) -> Result<(), BackendError> {
        let device = device_at(image, target, id)?;
        LoopDevice::open(&device)
            .and_then(|d| d.set_capacity())
            .map_err(|e| BackendError::io("refresh loop device capacity", &device, e))?;
        self.tools.grow(fs, &device, target)?;
        Ok(())
    }

    /// Grows the filesystem of an unmounted volume to fill its (already grown) image.
    fn grow_offline(
        &self,
        fs: Filesystem,
        image: &Path,
        target: &Path,
        id: Uuid,
    ) -> Result<(), BackendError> {
        if let Some((device, point)) = release(image)?.mounted {
            return Err(BackendError::Refused(format!(
                "volume {id} is mounted at {} (from {}), not at {}; unmount it first",
                point.display(),
                device.display(),
                target.display()
            )));
        }
        let file = open_image(image)?;
        let attached = Attached::new(&file, image)?;
        let grown = match fs {
            Filesystem::Ext4 => self.tools.grow_unmounted_ext4(&attached.path),
            Filesystem::Xfs => self.grow_xfs_offline(&attached.path, target, id),
        };
        let detached = attached.detach();
        grown?;
        detached?;
        wait_detached(image, &MountTable::default())
    }

    /// xfs grows only while mounted: mount at `target` (or a scratch directory when `target`
    /// does not exist), grow, unmount.
    fn grow_xfs_offline(&self, device: &Path, target: &Path, id: Uuid) -> Result<(), BackendError> {
        let scratch = self.grow_scratch(id);
        let point = if target.is_dir() {
            target
        } else {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&scratch)
                .or_else(|e| match e.kind() {
                    ErrorKind::AlreadyExists => Ok(()),
                    _ => Err(e),
                })
                .map_err(|e| BackendError::io("create scratch mountpoint", &scratch, e))?;
            &scratch
        };
        mount::mount_device(
            device,
            point,
            Filesystem::Xfs,
            None,
            "mount volume to grow it",
        )?;
        let grown = self.tools.grow(Filesystem::Xfs, device, point);
        let unmounted =
            mount::unmount(point, "unmount volume after growing it", WhenBusy::Fail).map(drop);
        if point == scratch {
            let _ = fs::remove_dir(&scratch);
        }
        grown?;
        unmounted
    }
}
