//! Growing a thin volume: `lvextend` within the pool's overprovision limit, then its
//! filesystem, online where it is mounted, else mounted (xfs) or checked (ext4) for the
//! moment. Shrinking is refused.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use uuid::Uuid;

use super::names::lv_name;
use super::pool::human;
use super::{LvmBackend, DEFAULT_FILESYSTEM};
use crate::mount::{self, WhenBusy};
use crate::mount_table::mount_points_of_device;
use crate::{BackendError, ByteSize, Effect, Filesystem, VolumeSpec};

impl LvmBackend {
    /// Grows volume `spec` to `new_size`, LV and filesystem. A size the LV already has still
    /// grows the filesystem, finishing a grow a crash interrupted.
    pub(super) fn grow(
        &self,
        spec: &VolumeSpec,
        new_size: ByteSize,
    ) -> Result<Effect, BackendError> {
        let name = lv_name(spec.id);
        let lvs = self.report_lvs()?;
        let lv = self.required_lv(&lvs, &name, "resize volume: its logical volume is missing")?;
        // The recorded size, or the LV's when none is recorded.
        let current = spec.size.map_or(lv.lv_size, ByteSize::bytes);
        if new_size.bytes() < current {
            return Err(BackendError::Refused(format!(
                "volume {} cannot shrink from {} to {new_size}: LVM volumes can only grow",
                spec.id,
                human(current)
            )));
        }
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        let mut effect = Effect::Unchanged;
        if new_size.bytes() > lv.lv_size {
            self.pool_usage(&lvs, std::slice::from_ref(&name))?
                .check_room(new_size.bytes(), self.max_overprovision)
                .map_err(BackendError::Refused)?;
            let bytes = format!("{}b", new_size.bytes());
            self.lvm
                .run(["lvextend", "-q", "-L", &bytes, &self.qualified(&name)])?;
            effect = Effect::Changed;
        }
        // Also when the LV was already large enough: a crash may have come between lvextend
        // and growing the filesystem, and growing a filesystem that fills its device is a no-op.
        let device = self.ensure_active(&lv)?;
        self.grow_filesystem(spec.id, fs, &device)?;
        if effect == Effect::Changed {
            tracing::info!(lv = %self.qualified(&name), size = %new_size, "grew thin volume");
        }
        Ok(effect)
    }

    /// Grows the filesystem on `device` to fill it: online where it is mounted, else offline.
    fn grow_filesystem(&self, id: Uuid, fs: Filesystem, device: &Path) -> Result<(), BackendError> {
        if let Some(mountpoint) = mount_points_of_device(device)?.into_iter().next() {
            return Ok(self.filesystems.grow(fs, device, &mountpoint)?);
        }
        match fs {
            Filesystem::Ext4 => self.filesystems.grow_unmounted_ext4(device),
            Filesystem::Xfs => {
                // xfs grows only while mounted: mount it privately for the moment.
                let dir = std::env::temp_dir().join(format!("dvol-grow-{}", id.simple()));
                match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(BackendError::io("create temporary mountpoint", &dir, e)),
                }
                let result = mount::mount_device(device, &dir, fs, None, "mount volume to grow it")
                    .and_then(|()| {
                        let grown = self
                            .filesystems
                            .grow(fs, device, &dir)
                            .map_err(BackendError::from);
                        let unmounted =
                            mount::unmount(&dir, "unmount temporary mount", WhenBusy::Fail);
                        grown.and(unmounted.map(drop))
                    });
                let _ = fs::remove_dir(&dir);
                result
            }
        }
    }
}
