//! Thin pool accounting: how full the pool is, how much virtual size its thin LVs add up to,
//! and whether it can take another volume, a larger one, or a snapshot. A full thin pool stops
//! every volume in it, so dvol refuses early, with a message that says what to do.

use uuid::Uuid;

use super::names::NameKind;
use super::report::LogicalVolume;
use super::{LvmBackend, MAX_POOL_USAGE_PERCENT};
use crate::{BackendError, ByteSize};

/// Formats a byte count for messages.
pub(super) fn human(bytes: u64) -> String {
    match ByteSize::from_bytes(bytes) {
        Ok(size) => size.to_string(),
        Err(_) => format!("{bytes}B"),
    }
}

/// The state of a thin pool that decides whether it can take another volume.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PoolUsage {
    /// `VG/POOL`, for messages.
    pub(super) location: String,
    /// The pool's data size in bytes.
    pub(super) size: u64,
    /// Percent of the pool's data space in use.
    pub(super) data_percent: f64,
    /// Percent of the pool's metadata space in use.
    pub(super) metadata_percent: f64,
    /// Sum of the virtual sizes of the thin LVs in the pool.
    pub(super) provisioned: u64,
}

impl PoolUsage {
    /// The pool row and the thin LVs of `pool`, from one `lvs` report. LVs named in `exclude`
    /// are left out of `provisioned` (a volume being checked again must not count twice), and
    /// so are read points and bases: snapshots sharing their origin's blocks (what a base
    /// holds alone is in the pool's used space and reported as the bases' bytes).
    pub(super) fn from_report(
        lvs: &[LogicalVolume],
        vg: &str,
        pool: &str,
        exclude: &[String],
    ) -> Option<Self> {
        let row = lvs
            .iter()
            .find(|lv| lv.lv_name == pool && lv.is_thin_pool())?;
        let provisioned = lvs
            .iter()
            .filter(|lv| lv.pool_lv == pool && !exclude.contains(&lv.lv_name))
            .filter(|lv| !lv.dvol_name().is_some_and(NameKind::is_snapshot))
            .map(|lv| lv.lv_size)
            .sum();
        Some(PoolUsage {
            location: format!("{vg}/{pool}"),
            size: row.lv_size,
            data_percent: row.data_percent.unwrap_or(0.0),
            metadata_percent: row.metadata_percent.unwrap_or(0.0),
            provisioned,
        })
    }

    /// Space not yet written in the pool, in bytes.
    pub(super) fn free(&self) -> u64 {
        let used = (self.data_percent / 100.0).clamp(0.0, 1.0);
        (self.size as f64 * (1.0 - used)) as u64
    }

    /// The first of the pool's data and metadata space that is used above
    /// [`MAX_POOL_USAGE_PERCENT`], with its usage in percent.
    fn nearly_full(&self) -> Option<(&'static str, f64)> {
        [
            ("data", self.data_percent),
            ("metadata", self.metadata_percent),
        ]
        .into_iter()
        .find(|&(_, percent)| percent > MAX_POOL_USAGE_PERCENT)
    }

    /// Refuses `requested` more virtual bytes when the pool is nearly full or the virtual sizes
    /// would exceed `max_overprovision` times the pool size.
    pub(super) fn check_room(&self, requested: u64, max_overprovision: f64) -> Result<(), String> {
        if let Some((what, percent)) = self.nearly_full() {
            return Err(format!(
                "thin pool {} is {percent:.1}% full ({what}), above the {MAX_POOL_USAGE_PERCENT:.0}% \
                 limit for new volumes; extend the pool (lvextend) or remove volumes",
                self.location
            ));
        }
        let limit = (self.size as f64 * max_overprovision) as u64;
        let total = self.provisioned.saturating_add(requested);
        if total > limit {
            return Err(format!(
                "thin pool {} cannot take {} more: {} already provisioned + {} requested = {} \
                 exceeds {max_overprovision}x the pool size of {} ({} allowed); extend the pool, \
                 remove volumes or raise the profile's overprovision ratio",
                self.location,
                human(requested),
                human(self.provisioned),
                human(requested),
                human(total),
                human(self.size),
                human(limit),
            ));
        }
        Ok(())
    }
}

impl LvmBackend {
    /// The usage of the backend's thin pool, from the report `lvs`, leaving the LVs named in
    /// `exclude` out of the provisioned sizes. A pool missing from the report is an error.
    pub(super) fn pool_usage(
        &self,
        lvs: &[LogicalVolume],
        exclude: &[String],
    ) -> Result<PoolUsage, BackendError> {
        PoolUsage::from_report(lvs, &self.volume_group, &self.thin_pool, exclude).ok_or_else(|| {
            BackendError::Unavailable(format!(
                "thin pool {}/{} has disappeared; recreate it or change the profile",
                self.volume_group, self.thin_pool
            ))
        })
    }

    /// Refuses a read point when the pool is so full that the writes copied away from the
    /// snapshot could fill it (a full thin pool stops every volume in it).
    pub(super) fn check_read_point_room(
        &self,
        lvs: &[LogicalVolume],
        id: Uuid,
    ) -> Result<(), BackendError> {
        self.check_snapshot_room(lvs, id, "a commit")
    }

    /// Refuses a thin snapshot of volume `id` (for `why`) when the pool is nearly full.
    pub(super) fn check_snapshot_room(
        &self,
        lvs: &[LogicalVolume],
        id: Uuid,
        why: &str,
    ) -> Result<(), BackendError> {
        let usage = self.pool_usage(lvs, &[])?;
        if let Some((what, percent)) = usage.nearly_full() {
            return Err(BackendError::Refused(format!(
                "cannot snapshot volume {id} for {why}: thin pool {} is {percent:.1}% full \
                 ({what}), above the {MAX_POOL_USAGE_PERCENT:.0}% limit; extend the pool \
                 (lvextend) or remove volumes",
                usage.location
            )));
        }
        Ok(())
    }
}
