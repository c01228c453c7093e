//! [`Backend`] for [`LoopBackend`]: checking a spec, the life of a volume's image (create,
//! mount, unmount, remove), and the operations the other parts of the backend carry out
//! (growing, read points, clones).

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use uuid::Uuid;

use super::attachment::{release, Attached};
use super::image::open_image;
use super::LoopBackend;
use crate::filesystem::minimum_size;
use crate::mount::{self, WhenBusy};
use crate::mount_table::is_mount_point;
use crate::{
    Backend, BackendError, BackendKind, ByteSize, Capacity, ChangesSinceBase, Effect, Filesystem,
    ReadPoint, VolumeSpec,
};

impl Backend for LoopBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Loop
    }

    fn enforces_size(&self) -> bool {
        true
    }

    fn validate(&self, spec: &VolumeSpec) -> Result<(), BackendError> {
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        let size = spec.size.ok_or_else(|| {
            BackendError::Refused(
                "loop volumes need a size: pass one (-o size=10G) or set size in the profile"
                    .into(),
            )
        })?;
        let min = minimum_size(fs);
        if size < min {
            return Err(BackendError::Refused(format!(
                "size {size} is below the {min} minimum for {fs}"
            )));
        }
        self.tools.check(fs).map_err(|message| {
            BackendError::Unavailable(format!("cannot make {fs} volumes: {message}"))
        })?;
        self.check_file_size_limit(size)?;
        let what = if spec.preallocate {
            format!("a fully allocated {size} volume")
        } else {
            format!("a {size} volume")
        };
        self.check_promise(
            size.bytes(),
            spec.preallocate,
            spec.max_overprovision,
            &what,
        )
    }

    fn create(&self, spec: &VolumeSpec) -> Result<Effect, BackendError> {
        if self.image_path(spec.id).is_file() {
            return Ok(Effect::Unchanged);
        }
        // A create interrupted by a crash leaves its temporary image behind, maybe attached.
        self.discard_temp(spec.id)?;
        // The room checked stays free until the image's size makes the promise visible.
        let _space = self.hold_space();
        self.validate(spec)?;
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        let size = spec
            .size
            .ok_or_else(|| BackendError::Refused("loop volumes need a size".into()))?;
        let temp = self.temp_path(spec.id);
        if let Err(e) = self.build_image(&temp, fs, size, spec.preallocate) {
            if let Err(cleanup) = self.discard_temp(spec.id) {
                tracing::warn!(error = %cleanup, "cannot remove a failed volume image");
            }
            return Err(e);
        }
        self.install_temp(spec.id)?;
        Ok(Effect::Changed)
    }

    fn remove(&self, id: Uuid) -> Result<Effect, BackendError> {
        let image = self.image_path(id);
        if let Some((device, point)) = release(&image)?.mounted {
            return Err(BackendError::Refused(format!(
                "volume {id} is still mounted at {} (from {}); unmount it before removing it",
                point.display(),
                device.display()
            )));
        }
        let mut effect = self.discard_temp(id)?;
        self.kept().remove(&id);
        if self.discard_point(id)? == Effect::Changed {
            effect = Effect::Changed;
        }
        if self.discard_base(id)? == Effect::Changed {
            effect = Effect::Changed;
        }
        match fs::remove_file(&image) {
            Ok(()) => effect = Effect::Changed,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(BackendError::io("remove volume image", &image, e)),
        }
        if effect == Effect::Changed {
            self.sync_root()?;
        }
        Ok(effect)
    }

    fn mount(&self, spec: &VolumeSpec, target: &Path) -> Result<Effect, BackendError> {
        if is_mount_point(target)? {
            return Ok(Effect::Unchanged);
        }
        let image = self.image_path(spec.id);
        let file = open_image(&image)?;
        // Two mounts of one image through two devices would corrupt it; a device left attached
        // by a crash is detached first.
        if let Some((device, point)) = release(&image)?.mounted {
            return Err(BackendError::Refused(format!(
                "volume {} is already mounted at {} (from {}); unmount it there first",
                spec.id,
                point.display(),
                device.display()
            )));
        }
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        let attached = Attached::new(&file, &image)?;
        match mount::mount_device(&attached.path, target, fs, None, "mount volume image") {
            // The mount holds the device now; closing ours leaves autoclear to the unmount.
            Ok(()) => Ok(Effect::Changed),
            Err(e) => {
                if let Err(detach) = attached.detach() {
                    tracing::warn!(error = %detach, "cannot detach loop device after failed mount");
                }
                Err(e)
            }
        }
    }

    fn unmount(&self, id: Uuid, target: &Path) -> Result<Effect, BackendError> {
        let image = self.image_path(id);
        // A lazy unmount would keep the loop device and the filesystem alive for as long as
        // that process runs, with no mountpoint left to find it by: refuse instead.
        let busy = WhenBusy::Explain(
            "unmount volume (a process still uses it: stop that process or container, then retry)",
        );
        if mount::unmount(target, "unmount volume", busy)? == Effect::Unchanged {
            // Nothing to unmount; still release a device a crash left attached.
            let released = release(&image)?;
            return Ok(if released.detached > 0 {
                Effect::Changed
            } else {
                Effect::Unchanged
            });
        }
        // Autoclear detached the device with the unmount; make sure of it.
        if let Some((device, point)) = release(&image)?.mounted {
            tracing::warn!(
                volume = %id,
                device = %device.display(),
                mountpoint = %point.display(),
                "volume image is still mounted elsewhere"
            );
        }
        Ok(Effect::Changed)
    }

    fn resize(
        &self,
        spec: &VolumeSpec,
        new_size: ByteSize,
        target: &Path,
    ) -> Result<Effect, BackendError> {
        self.grow(spec, new_size, target)
    }

    /// Where the root's filesystem can share blocks (XFS with reflink, btrfs), a reflinked
    /// copy of the image, taken frozen and mounted read-only; elsewhere the volume's own
    /// filesystem, frozen until the point is released.
    fn read_point(
        &self,
        spec: &VolumeSpec,
        mountpoint: &Path,
        scratch: &Path,
    ) -> Result<ReadPoint, BackendError> {
        self.take_read_point(spec, mountpoint, scratch)
    }

    fn release_read_point(
        &self,
        id: Uuid,
        mountpoint: &Path,
        scratch: &Path,
    ) -> Result<Effect, BackendError> {
        self.end_read_point(id, mountpoint, scratch)
    }

    /// At a reflinked read point, the files' changed ranges since the copy the last recorded
    /// commit read.
    fn changes_since_base(&self, spec: &VolumeSpec, scratch: &Path) -> ChangesSinceBase {
        LoopBackend::changes_since_base(self, spec, scratch)
    }

    /// Where the root's filesystem shares blocks.
    fn counts_changes(&self) -> bool {
        self.shares_blocks()
    }

    fn keep_read_point(&self, id: Uuid) {
        self.kept().insert(id);
    }

    /// A frozen read point whose time limit passed was thawed: what was read may be torn.
    fn read_point_intact(&self, id: Uuid) -> Result<(), BackendError> {
        self.frozen_intact(id)
    }

    /// A reflinked copy of the source's image, given its own filesystem identity, when the
    /// root's filesystem shares blocks and the two volumes agree on filesystem and size.
    fn clone_volume(
        &self,
        source: &VolumeSpec,
        source_mountpoint: Option<&Path>,
        target: &VolumeSpec,
    ) -> Result<Option<Effect>, BackendError> {
        self.reflink_clone(source, source_mountpoint, target)
    }

    /// The root's filesystem, with what sparse images promise and the reserve.
    fn capacity(&self) -> Result<Capacity, BackendError> {
        // The bases are counted for the report only: a create's or grow's check of room
        // (which also calls `room`) does not need them, nor their extent maps read.
        Ok(Capacity {
            base_bytes: self.held_by_bases()?,
            ..self.room()?.capacity
        })
    }

    fn volumes(&self) -> Result<Vec<Uuid>, BackendError> {
        let entries = fs::read_dir(&self.root)
            .map_err(|e| BackendError::io("list volumes", &self.root, e))?;
        Ok(entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name();
                name.to_str()?.strip_suffix(".img")?.parse().ok()
            })
            .collect())
    }
}
