//! The base of a thin volume's read points: the thin snapshot a recorded commit read, kept as
//! `dvol-<hex>-base` so the next read point's changes can be counted from it
//! ([`LvmBackend::changes_since_base`]).
//!
//! Life of a base:
//! - a read point's snapshot (`dvol-<hex>-rp`) becomes the base when it is released, if the
//!   caller asked for that ([`LvmBackend::keep_read_point`]) after recording what it read:
//!   the older base is removed, then the snapshot renamed. A crash between the two leaves no
//!   base (the next commit reads changed files whole) and a read point the next one replaces.
//!   Otherwise the snapshot is removed and the older base stays: the volume's record is then
//!   newer than the base, which is what the changes need (every write after it is a change).
//! - while a commit reads, the base is mounted read-only next to the read point's scratch
//!   directory (`<scratch>.base`), and unmounted when the point is released (also by the
//!   release at start after a crash);
//! - it is removed with its volume. It holds only the blocks the volume rewrote since, which
//!   the capacity reports as `base_bytes` ([`LvmBackend::held_by_bases`]).
//!
//! The changes: `thin_delta` tells which blocks of the two snapshots differ (see
//! [`super::thin_delta`]); a file's changed ranges follow from them and from its extent maps
//! in the two mounted snapshots (see [`crate::changed_files`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::names::{base_lv_name, lv_name, read_point_lv_name, NameKind};
use super::report::LogicalVolume;
use super::{LvmBackend, DEFAULT_FILESYSTEM};
use crate::changed_files::{self, MountedCopies};
use crate::mount::mount_snapshot;
use crate::{BackendError, ChangesSinceBase, Effect, NoChanges, VolumeSpec};

/// Where the base is mounted while a read point at `scratch` counts its changes.
fn base_mount(scratch: &Path) -> PathBuf {
    let mut name = scratch.file_name().map(OsString::from).unwrap_or_default();
    name.push(".base");
    scratch.with_file_name(name)
}

impl LvmBackend {
    /// The changed ranges of the files at volume `spec`'s read point (mounted at `scratch`)
    /// since its base.
    pub(super) fn changes_since_base(&self, spec: &VolumeSpec, scratch: &Path) -> ChangesSinceBase {
        if self.thin_tools.is_err() {
            return ChangesSinceBase::Unknown(NoChanges::NotSupported);
        }
        changed_files::changes_since_base(spec.id, self.count_changes(spec, scratch))
    }

    /// The changes since the base, with the base mounted; `None` without a base.
    fn count_changes(
        &self,
        spec: &VolumeSpec,
        scratch: &Path,
    ) -> Result<Option<MountedCopies>, BackendError> {
        let lvs = self.report_lvs()?;
        let Some(base) = self.own_lv(&lvs, &base_lv_name(spec.id))? else {
            return Ok(None);
        };
        let point = self.required_lv(
            &lvs,
            &read_point_lv_name(spec.id),
            "count changed ranges: the read point's snapshot is missing",
        )?;
        let (left, right) = (thin_id(&base)?, thin_id(&point)?);
        let delta =
            self.with_metadata_snapshot(|tools, metadata| tools.delta(metadata, left, right))?;
        let device = self.ensure_active(&base)?;
        let mounted = base_mount(scratch);
        changed_files::new_base_mountpoint(&mounted)?;
        let fs = spec.filesystem.unwrap_or(DEFAULT_FILESYSTEM);
        mount_snapshot(fs, &device, &mounted, "mount base snapshot")?;
        tracing::debug!(volume = %spec.id, block_bytes = delta.block_bytes, ranges = delta.changed.len(), "counted the blocks changed since the base");
        MountedCopies::open(scratch, &mounted, delta.changed).map(Some)
    }

    /// Unmounts the base mounted for the read point at `scratch`, if it is, and removes its
    /// mountpoint.
    pub(super) fn end_base_mount(&self, scratch: &Path) -> Result<Effect, BackendError> {
        changed_files::end_base_mount(&base_mount(scratch))
    }

    /// Makes volume `id`'s read point snapshot, unmounted, its base (replacing the older one)
    /// if the caller kept it; else removes the snapshot.
    pub(super) fn settle_point(
        &self,
        id: Uuid,
        lvs: &[LogicalVolume],
    ) -> Result<Effect, BackendError> {
        let kept = self.kept().remove(&id);
        let point = read_point_lv_name(id);
        if self.own_lv(lvs, &point)?.is_none() {
            return Ok(Effect::Unchanged);
        }
        if !kept {
            self.lvremove(&point)?;
            return Ok(Effect::Changed);
        }
        let base = base_lv_name(id);
        if self.own_lv(lvs, &base)?.is_some() {
            self.lvremove(&base)?;
        }
        self.rename_lv(&point, &base)?;
        tracing::debug!(lv = %self.qualified(&base), "kept the read point as the base of the next commit");
        Ok(Effect::Changed)
    }

    /// What the volumes' bases hold alone: the blocks their volumes rewrote (or discarded)
    /// since the bases were kept. Nothing without the thin tools or bases.
    pub(super) fn held_by_bases(&self, lvs: &[LogicalVolume]) -> Result<u64, BackendError> {
        let pairs: Vec<(u64, u64)> = lvs
            .iter()
            .filter(|lv| lv.pool_lv == self.thin_pool)
            .filter_map(|base| match base.dvol_name()? {
                NameKind::Base(id) => {
                    let origin = Self::find_lv(lvs, &lv_name(id))?;
                    Some((base.thin_id?, origin.thin_id?))
                }
                _ => None,
            })
            .collect();
        if pairs.is_empty() || self.thin_tools.is_err() {
            return Ok(0);
        }
        self.with_metadata_snapshot(|tools, metadata| {
            pairs.iter().try_fold(0u64, |held, &(base, origin)| {
                let delta = tools.delta(metadata, base, origin)?;
                Ok(held.saturating_add(delta.left_alone))
            })
        })
    }

    /// The volumes whose read point becomes their base when released.
    pub(super) fn kept(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<Uuid>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The thin device id of `lv`, which a thin LV has.
fn thin_id(lv: &LogicalVolume) -> Result<u64, BackendError> {
    lv.thin_id.ok_or_else(|| {
        BackendError::Unavailable(format!(
            "lvs reports no thin_id for {}/{}",
            lv.vg_name, lv.lv_name
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_is_mounted_next_to_the_scratch_directory() {
        assert_eq!(
            base_mount(Path::new("/var/lib/dvol/read-points/7b1c")),
            Path::new("/var/lib/dvol/read-points/7b1c.base")
        );
    }
}
