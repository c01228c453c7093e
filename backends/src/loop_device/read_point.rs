//! Read points of loop volumes: where the root's filesystem shares blocks (XFS with reflink,
//! btrfs), a reflinked copy of the image (`<id>.img.point`), taken frozen and mounted
//! read-only on the caller's scratch directory; elsewhere the volume's own filesystem,
//! frozen until the point is released, or until the backend's freeze limit passes: the
//! watchdog of a [`BoundedFreeze`] thaws it then, and also if the daemon dies first. A reader
//! asks [`LoopBackend::frozen_intact`] before trusting what it read.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use uuid::Uuid;

use super::attachment::Attached;
use super::LoopBackend;
use crate::freeze::{thaw, BoundedFreeze};
use crate::mount::{self, mount_snapshot, WhenBusy};
use crate::mount_table::is_mount_point;
use crate::{BackendError, Effect, Filesystem, ReadPoint, VolumeSpec};

impl LoopBackend {
    /// Fixes the data of volume `spec`, mounted at `mountpoint`: a reflinked copy mounted at
    /// `scratch`, or the frozen filesystem where blocks cannot be shared.
    pub(super) fn take_read_point(
        &self,
        spec: &VolumeSpec,
        mountpoint: &Path,
        scratch: &Path,
    ) -> Result<ReadPoint, BackendError> {
        // A copy shares the image's blocks: writers wait only for the clone. Where blocks
        // cannot be shared, the filesystem stays frozen while the caller reads.
        self.discard_point(spec.id)?;
        if !self.reflink_frozen(spec.id, Some(mountpoint), &self.point_path(spec.id))? {
            let frozen = BoundedFreeze::start(mountpoint, self.freeze_limit)?;
            let replaced = self.frozen().insert(spec.id, frozen);
            if let Some(earlier) = replaced {
                // Cannot happen while the caller holds the volume; thaw rather than leak it.
                let _ = earlier.end();
            }
            return Ok(ReadPoint::Frozen);
        }
        if let Err(e) = self.mount_point_copy(spec, scratch) {
            let _ = self.discard_point(spec.id);
            return Err(e);
        }
        Ok(ReadPoint::Snapshot(scratch.to_path_buf()))
    }

    /// Ends volume `id`'s read point, whichever kind it is and whatever step a crash stopped
    /// at: thaws the filesystem at `mountpoint`, unmounts the base and the copy from
    /// `scratch`, and removes the copy or, if it was kept, makes it the base.
    pub(super) fn end_read_point(
        &self,
        id: Uuid,
        mountpoint: &Path,
        scratch: &Path,
    ) -> Result<Effect, BackendError> {
        // Thaw first: whatever fails after, writers must not stay blocked.
        let frozen = self.frozen().remove(&id);
        let mut effect = match frozen {
            Some(frozen) => {
                let end = frozen.end()?;
                if end.expired {
                    tracing::warn!(volume = %id, limit_s = self.freeze_limit.as_secs_f64(), "the freeze limit passed before the read point was released; its watchdog thawed the volume");
                }
                Effect::Changed
            }
            None if is_mount_point(mountpoint)? => thaw(mountpoint)?,
            None => Effect::Unchanged,
        };
        if self.end_base_mount(id)? == Effect::Changed {
            effect = Effect::Changed;
        }
        if mount::unmount(scratch, "unmount read point", WhenBusy::Fail)? == Effect::Changed {
            effect = Effect::Changed;
        }
        if self.settle_point(id)? == Effect::Changed {
            effect = Effect::Changed;
        }
        Ok(effect)
    }

    /// The frozen read points.
    fn frozen(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, BoundedFreeze>> {
        self.freezes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether volume `id`'s frozen read point, if it has one, has stayed frozen so far. Ask
    /// after reading: `Ok` means everything read before was read frozen.
    pub(super) fn frozen_intact(&self, id: Uuid) -> Result<(), BackendError> {
        match self.frozen().get(&id) {
            Some(frozen) if !frozen.intact() => Err(BackendError::FreezeExpired {
                mountpoint: frozen.mountpoint().to_path_buf(),
                limit: frozen.limit(),
            }),
            _ => Ok(()),
        }
    }

    /// Mounts the read point's image copy read-only at `scratch`.
    fn mount_point_copy(&self, spec: &VolumeSpec, scratch: &Path) -> Result<(), BackendError> {
        let copy = self.point_path(spec.id);
        let file =
            File::open(&copy).map_err(|e| BackendError::io("open read point image", &copy, e))?;
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        let attached = Attached::new(&file, &copy)?;
        let mounted = mount_snapshot(fs, &attached.path, scratch, "mount read point image");
        if mounted.is_err() {
            let _ = attached.detach();
        }
        mounted
    }
}
