//! [`Backend`] for [`LvmBackend`]: checking a spec against the pool, the life of a thin
//! volume (create, mount, unmount, remove), and the operations the other parts of the backend
//! carry out (growing, read points, clones).

use std::io::ErrorKind;
use std::path::Path;

use uuid::Uuid;

use super::inventory::volume_ids;
use super::names::{
    base_lv_name, id_tag, incomplete_lv_name, lv_name, read_point_lv_name, DVOL_TAG,
};
use super::{LvmBackend, DEFAULT_FILESYSTEM};
use crate::filesystem::minimum_size;
use crate::mount::{self, WhenBusy};
use crate::mount_table::{is_mount_point, mount_points_of_device};
use crate::{
    Backend, BackendError, BackendKind, ByteSize, Capacity, ChangesSinceBase, Effect, ReadPoint,
    VolumeSpec,
};

/// The size of volume `spec`, which an LVM thin volume needs.
fn required_size(spec: &VolumeSpec) -> Result<ByteSize, BackendError> {
    spec.size.ok_or_else(|| {
        BackendError::Refused(format!(
            "volume {} needs a size on an LVM thin pool: set size in the profile or pass -o size=10G",
            spec.id
        ))
    })
}

impl Backend for LvmBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Lvm
    }

    fn location(&self) -> Option<String> {
        Some(format!("{}/{}", self.volume_group, self.thin_pool))
    }

    fn enforces_size(&self) -> bool {
        true
    }

    fn validate(&self, spec: &VolumeSpec) -> Result<(), BackendError> {
        let size = required_size(spec)?;
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        self.filesystems
            .check(fs)
            .map_err(BackendError::Unavailable)?;
        let min = minimum_size(fs);
        if size < min {
            return Err(BackendError::Refused(format!(
                "volume {} of {size} is too small for {fs}: the smallest {fs} volume is {min}",
                spec.id
            )));
        }
        let lvs = self.report_lvs()?;
        let own = [lv_name(spec.id), incomplete_lv_name(spec.id)];
        self.pool_usage(&lvs, &own)?
            .check_room(size.bytes(), self.max_overprovision)
            .map_err(BackendError::Refused)
    }

    fn create(&self, spec: &VolumeSpec) -> Result<Effect, BackendError> {
        let size = required_size(spec)?;
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        let name = lv_name(spec.id);
        let temporary = incomplete_lv_name(spec.id);
        let lvs = self.report_lvs()?;
        if self.own_lv(&lvs, &name)?.is_some() {
            return Ok(Effect::Unchanged);
        }
        if self.own_lv(&lvs, &temporary)?.is_some() {
            // A crash between lvcreate and the rename: the filesystem may be half made.
            tracing::warn!(lv = %self.qualified(&temporary), "removing unfinished volume before creating it again");
            self.lvremove(&temporary)?;
        }
        let bytes = format!("{}b", size.bytes());
        let pool = self.qualified(&self.thin_pool);
        let tag = id_tag(spec.id);
        self.lvm.run([
            "lvcreate",
            "-y",
            "-q",
            "--thin",
            "-V",
            &bytes,
            "-n",
            &temporary,
            "--addtag",
            DVOL_TAG,
            "--addtag",
            &tag,
            "--setactivationskip",
            "n",
            &pool,
        ])?;
        let device = self.ensure_device(&temporary)?;
        self.filesystems.make(fs, &device)?;
        self.rename_lv(&temporary, &name)?;
        tracing::info!(lv = %self.qualified(&name), size = %size, filesystem = %fs, "created thin volume");
        Ok(Effect::Changed)
    }

    fn remove(&self, id: Uuid) -> Result<Effect, BackendError> {
        let lvs = self.report_lvs()?;
        let mut effect = Effect::Unchanged;
        self.kept().remove(&id);
        for name in [
            read_point_lv_name(id),
            base_lv_name(id),
            lv_name(id),
            incomplete_lv_name(id),
        ] {
            if self.own_lv(&lvs, &name)?.is_some() {
                self.lvremove(&name)?;
                tracing::info!(lv = %self.qualified(&name), "removed thin volume");
                effect = Effect::Changed;
            }
        }
        Ok(effect)
    }

    fn mount(&self, spec: &VolumeSpec, target: &Path) -> Result<Effect, BackendError> {
        let name = lv_name(spec.id);
        if is_mount_point(target)? {
            if mount_points_of_device(&self.device_of(&name))?
                .iter()
                .any(|p| p == target)
            {
                return Ok(Effect::Unchanged);
            }
            return Err(BackendError::io(
                "mount volume: something else is mounted at the target",
                target,
                std::io::Error::from(ErrorKind::ResourceBusy),
            ));
        }
        let lvs = self.report_lvs()?;
        let lv = self.required_lv(&lvs, &name, "mount volume: its logical volume is missing")?;
        let device = self.ensure_active(&lv)?;
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        mount::mount_device(&device, target, fs, None, "mount volume")?;
        Ok(Effect::Changed)
    }

    fn unmount(&self, _id: Uuid, target: &Path) -> Result<Effect, BackendError> {
        // A block device must not be detached lazily: the filesystem would stay live with no
        // mountpoint, and removing the LV would fail later for no visible reason.
        let busy =
            WhenBusy::Explain("unmount volume (still in use by a process; stop it and retry)");
        mount::unmount(target, "unmount volume", busy)
    }

    fn resize(
        &self,
        spec: &VolumeSpec,
        new_size: ByteSize,
        _target: &Path,
    ) -> Result<Effect, BackendError> {
        self.grow(spec, new_size)
    }

    /// An instant thin snapshot of the volume's LV (`dvol-<hex>-rp`), mounted read-only at
    /// `scratch`. A leftover snapshot of the volume that is not mounted (a crash) is replaced;
    /// one that is mounted means another read point is in use and is refused.
    fn read_point(
        &self,
        spec: &VolumeSpec,
        _mountpoint: &Path,
        scratch: &Path,
    ) -> Result<ReadPoint, BackendError> {
        self.take_read_point(spec, scratch)
    }

    /// Unmounts the base and the snapshot from next to and at `scratch` if they are mounted
    /// there, and removes the snapshot LV if it exists (or makes it the base, if it was kept),
    /// whatever step a crash stopped at.
    fn release_read_point(
        &self,
        id: Uuid,
        _mountpoint: &Path,
        scratch: &Path,
    ) -> Result<Effect, BackendError> {
        self.end_read_point(id, scratch)
    }

    /// The blocks `thin_delta` finds differing between the read point's snapshot and the
    /// base's, mapped to file ranges through both mounted snapshots' extent maps.
    fn changes_since_base(&self, spec: &VolumeSpec, scratch: &Path) -> ChangesSinceBase {
        LvmBackend::changes_since_base(self, spec, scratch)
    }

    /// Where `dmsetup` and `thin_delta` are installed.
    fn counts_changes(&self) -> bool {
        self.thin_tools.is_ok()
    }

    fn keep_read_point(&self, id: Uuid) {
        if self.counts_changes() {
            self.kept().insert(id);
        }
    }

    /// A thin snapshot of the source's LV, made under the new volume's unfinished name and
    /// tags and renamed into place: constant time, every block shared. `lvcreate` freezes the
    /// source's filesystem for the instant of the snapshot. An XFS copy gets its own UUID.
    fn clone_volume(
        &self,
        source: &VolumeSpec,
        _source_mountpoint: Option<&Path>,
        target: &VolumeSpec,
    ) -> Result<Option<Effect>, BackendError> {
        self.snapshot_clone(source, target)
    }

    fn capacity(&self) -> Result<Capacity, BackendError> {
        let lvs = self.report_lvs()?;
        let usage = self.pool_usage(&lvs, &[])?;
        let used = usage.size.saturating_sub(usage.free());
        Ok(Capacity {
            total_bytes: usage.size,
            free_bytes: usage.free(),
            promised_bytes: usage.provisioned.saturating_sub(used),
            reserved_bytes: 0,
            base_bytes: self.held_by_bases(&lvs).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "the bases' blocks are not counted");
                0
            }),
        })
    }

    fn volumes(&self) -> Result<Vec<Uuid>, BackendError> {
        let lvs = self.report_lvs()?;
        Ok(volume_ids(&lvs, &self.thin_pool))
    }

    fn strays(&self, known: &[Uuid]) -> Result<Vec<String>, BackendError> {
        Ok(self
            .foreign_or_orphans(known)?
            .iter()
            .map(ToString::to_string)
            .collect())
    }
}
