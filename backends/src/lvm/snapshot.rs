//! Thin snapshots of a volume's LV, for read points and for clones. A snapshot of a thin LV
//! is a thin LV in the same pool sharing every block, made in constant time; `lvcreate`
//! suspends the origin for it, which freezes a mounted filesystem, so the snapshot is
//! consistent.
//!
//! - A read point is the snapshot `dvol-<hex>-rp`, tagged `dvol`, `dvol_<hex>` and
//!   `dvol_read_point`, mounted read-only on the caller's scratch directory. A leftover one (a
//!   crash during a commit) is removed by the next `release_read_point`, `read_point` or
//!   `remove` of its volume. Released after the caller kept it, it becomes the volume's base
//!   (see `base`).
//! - A clone is a snapshot made under the new volume's unfinished name and tags, given a
//!   filesystem identity of its own, and renamed into place like a new volume.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use uuid::Uuid;

use super::names::{
    id_tag, incomplete_lv_name, lv_name, read_point_lv_name, DVOL_TAG, READ_POINT_TAG,
};
use super::{LvmBackend, DEFAULT_FILESYSTEM};
use crate::mount::{self, mount_snapshot, WhenBusy};
use crate::mount_table::{is_mount_point, mount_points_of_device};
use crate::{BackendError, Effect, ReadPoint, VolumeSpec};

impl LvmBackend {
    /// Makes `name`, a thin snapshot of the LV `origin`, tagged `dvol` and `tags`. No size: a
    /// snapshot of a thin LV is a thin LV in the same pool sharing every block. Thin snapshots
    /// skip activation by default; `--setactivationskip n` makes this one activate.
    fn thin_snapshot(&self, origin: &str, name: &str, tags: &[&str]) -> Result<(), BackendError> {
        let origin = self.qualified(origin);
        let mut args = vec![
            "lvcreate",
            "-y",
            "-q",
            "--snapshot",
            "-n",
            name,
            "--addtag",
            DVOL_TAG,
        ];
        for tag in tags {
            args.extend(["--addtag", tag]);
        }
        args.extend(["--setactivationskip", "n", &origin]);
        self.lvm.run(args)?;
        Ok(())
    }

    /// Snapshots volume `spec` as its read point and mounts the snapshot read-only at
    /// `scratch`. A leftover snapshot that is not mounted (a crash) is replaced; one that is
    /// mounted means another read point is in use and is refused.
    pub(super) fn take_read_point(
        &self,
        spec: &VolumeSpec,
        scratch: &Path,
    ) -> Result<ReadPoint, BackendError> {
        let origin = lv_name(spec.id);
        let snapshot = read_point_lv_name(spec.id);
        let device = self.device_of(&snapshot);
        let lvs = self.report_lvs()?;
        self.required_lv(
            &lvs,
            &origin,
            "snapshot volume for a commit: its logical volume is missing",
        )?;
        if self.own_lv(&lvs, &snapshot)?.is_some() {
            if let Some(point) = mount_points_of_device(&device)?.first() {
                return Err(BackendError::Refused(format!(
                    "volume {} already has a read point mounted at {}: a commit is running; \
                     retry when it has finished",
                    spec.id,
                    point.display()
                )));
            }
            tracing::warn!(lv = %self.qualified(&snapshot), "removing a read point left by an interrupted commit");
            self.lvremove(&snapshot)?;
        }
        if is_mount_point(scratch)? {
            return Err(BackendError::io(
                "mount read point: something is already mounted on the scratch directory",
                scratch,
                std::io::Error::from(ErrorKind::ResourceBusy),
            ));
        }
        self.check_read_point_room(&lvs, spec.id)?;
        self.thin_snapshot(&origin, &snapshot, &[&id_tag(spec.id), READ_POINT_TAG])?;
        self.ensure_device(&snapshot)?;
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        if let Err(e) = mount_snapshot(fs, &device, scratch, "mount read point snapshot") {
            if let Err(cleanup) = self.lvremove(&snapshot) {
                tracing::warn!(lv = %self.qualified(&snapshot), error = %cleanup, "cannot remove read point after a failed mount");
            }
            return Err(e);
        }
        tracing::debug!(lv = %self.qualified(&snapshot), scratch = %scratch.display(), "made read point");
        Ok(ReadPoint::Snapshot(scratch.to_path_buf()))
    }

    /// Ends volume `id`'s read point: unmounts the base mounted next to `scratch` and the
    /// snapshot from `scratch`, if they are mounted there, and removes the snapshot LV if it
    /// exists, or makes it the base if the caller kept it; whatever step a crash stopped at.
    pub(super) fn end_read_point(&self, id: Uuid, scratch: &Path) -> Result<Effect, BackendError> {
        let snapshot = read_point_lv_name(id);
        let device = self.device_of(&snapshot);
        let mut effect = self.end_base_mount(scratch)?;
        if is_mount_point(scratch)? {
            if !mount_points_of_device(&device)?
                .iter()
                .any(|p| p == scratch)
            {
                return Err(BackendError::io(
                    "release read point: the scratch directory holds another mount, not the \
                     volume's snapshot; unmount it by hand",
                    scratch,
                    std::io::Error::from(ErrorKind::ResourceBusy),
                ));
            }
            let busy = WhenBusy::Explain(
                "unmount read point (a process still uses it; stop it and retry)",
            );
            effect = mount::unmount(scratch, "unmount read point", busy)?;
        }
        if self.settle_point(id, &self.report_lvs()?)? == Effect::Changed {
            effect = Effect::Changed;
        }
        Ok(effect)
    }

    /// Makes volume `target` a thin snapshot of volume `source`, when the two agree on
    /// filesystem and size (`Ok(None)` otherwise). An XFS copy gets its own UUID.
    pub(super) fn snapshot_clone(
        &self,
        source: &VolumeSpec,
        target: &VolumeSpec,
    ) -> Result<Option<Effect>, BackendError> {
        if source.filesystem != target.filesystem || source.size != target.size {
            return Ok(None);
        }
        let origin = lv_name(source.id);
        let name = lv_name(target.id);
        let temporary = incomplete_lv_name(target.id);
        let lvs = self.report_lvs()?;
        if self.own_lv(&lvs, &name)?.is_some() {
            return Ok(Some(Effect::Unchanged));
        }
        if self.own_lv(&lvs, &temporary)?.is_some() {
            tracing::warn!(lv = %self.qualified(&temporary), "removing unfinished clone before cloning again");
            self.lvremove(&temporary)?;
        }
        self.required_lv(&lvs, &origin, "clone volume: its logical volume is missing")?;
        self.check_snapshot_room(&lvs, source.id, "a clone")?;
        self.thin_snapshot(&origin, &temporary, &[&id_tag(target.id)])?;
        let made = Self::find_lv(&self.report_lvs()?, &temporary).ok_or_else(|| {
            self.missing_lv(
                "clone volume: the new snapshot is missing after lvcreate",
                &temporary,
            )
        })?;
        // Only the new volume's id may name it.
        let inherited = id_tag(source.id);
        if made.has_tag(&inherited) {
            self.lvm.run([
                "lvchange",
                "--deltag",
                &inherited,
                &self.qualified(&temporary),
            ])?;
        }
        let device = self.ensure_active(&made)?;
        let fs = target.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        let scratch = std::env::temp_dir().join(format!("dvol-clone-{}", target.id));
        fs::create_dir_all(&scratch)
            .map_err(|e| BackendError::io("create scratch mountpoint", &scratch, e))?;
        let renamed = self.filesystems.new_identity(fs, &device, &scratch);
        let _ = fs::remove_dir(&scratch);
        if let Err(e) = renamed {
            if let Err(cleanup) = self.lvremove(&temporary) {
                tracing::warn!(lv = %self.qualified(&temporary), error = %cleanup, "cannot remove unfinished clone");
            }
            return Err(e);
        }
        self.rename_lv(&temporary, &name)?;
        tracing::info!(lv = %self.qualified(&name), from = %self.qualified(&origin), "cloned thin volume");
        Ok(Some(Effect::Changed))
    }
}
