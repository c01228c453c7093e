//! The LVM thin backend: a thin logical volume per volume in a profile's thin pool.
//!
//! A volume `id` is the thin LV `dvol-<id as 32 hex digits>` in `VG/POOL`, tagged `dvol` and
//! `dvol_<hex>`. The tags let any later daemon find its own LVs again and leave everything else
//! in the pool alone: LVs without the `dvol` tag are never modified or removed.
//!
//! Creation is crash-safe: the LV is made as `dvol-<hex>-new`, formatted, and only then renamed
//! to its final name. An LV with the final name therefore always holds a filesystem; a leftover
//! `-new` LV (a crash between `lvcreate` and the rename) is removed and made again by the next
//! `create`, and removed by `remove`.
//!
//! A read point (for a commit while containers keep writing) is a thin snapshot of the volume's
//! LV named `dvol-<hex>-rp`, tagged `dvol`, `dvol_<hex>` and `dvol_read_point`, mounted
//! read-only on the caller's scratch directory. `lvcreate` suspends the origin for the
//! snapshot, which freezes a mounted filesystem, so the snapshot is consistent. It is never
//! listed as a volume; a leftover one (a crash during a commit) is reported as such and removed
//! by the next `release_read_point`, `read_point` or `remove` of its volume.
//!
//! A read point the caller keeps after recording what it read becomes the volume's base,
//! `dvol-<hex>-base` (tagged as the read point was): the next read point's changed ranges are
//! counted from it with `thin_delta` on the pool's metadata, where `dmsetup` and `thin_delta`
//! are installed. Each volume has at most one base; it is removed with the volume.
//!
//! Every question about the pool is answered from `lvm lvs`/`lvm vgs` JSON reports
//! (`--reportformat json`), parsed into typed rows, never by scraping text columns.
//!
//! The parts, by concern:
//! - `names`: LV names and tags, and which VG and pool names a profile may use;
//! - `report`: the JSON reports of `lvm lvs` and `lvm vgs` as typed rows;
//! - `tool`: running `lvm`: reports, finding dvol's own LVs, removing, renaming, activating;
//! - `pool`: thin pool accounting: usage, overprovisioning, room for volumes and snapshots;
//! - `inventory`: the pool's LVs sorted into volumes and strays;
//! - `thin_delta`: which blocks differ between two thin devices, from the pool's metadata;
//! - `base`: the kept read point changes are counted from, and what it holds alone;
//! - `grow`: growing a volume's LV and filesystem;
//! - `snapshot`: thin snapshots for read points and clones;
//! - `backend`: the [`Backend`](crate::Backend) implementation, which puts them together.

mod backend;
mod base;
mod grow;
mod inventory;
mod names;
mod pool;
mod report;
mod snapshot;
#[cfg(test)]
mod tests;
mod thin_delta;
mod tool;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::command::Tool;
use crate::filesystem::FilesystemTools;
use crate::{BackendError, Filesystem};

pub use inventory::{StrayKind, StrayVolume};
pub use names::{
    base_lv_name, id_tag, incomplete_lv_name, lv_name, read_point_lv_name, DVOL_TAG, READ_POINT_TAG,
};
pub use report::{LogicalVolume, VolumeGroup};

use inventory::strays;
use names::valid_lvm_name;
use thin_delta::ThinTools;

/// Pool data or metadata usage, in percent, above which no new volume is made.
pub const MAX_POOL_USAGE_PERCENT: f64 = 95.0;

/// The filesystem used when a spec names none.
pub const DEFAULT_FILESYSTEM: Filesystem = Filesystem::Ext4;

/// Volumes as thin LVs in one thin pool.
#[derive(Debug, Clone)]
pub struct LvmBackend {
    lvm: Tool,
    filesystems: FilesystemTools,
    volume_group: String,
    thin_pool: String,
    max_overprovision: f64,
    /// The tools that count changed ranges, or why they are missing.
    thin_tools: Result<ThinTools, String>,
    /// The volumes whose read point becomes their base when released.
    kept: Arc<Mutex<HashSet<Uuid>>>,
}

impl LvmBackend {
    /// A backend for thin pool `thin_pool` in volume group `volume_group`, allowing the virtual
    /// sizes of the pool's thin LVs to add up to `max_overprovision` times the pool size.
    ///
    /// Fails with [`BackendError::Unavailable`] when `lvm` is not installed, the volume group
    /// or the thin pool does not exist, or the names are not valid LVM names.
    pub fn probe(
        volume_group: &str,
        thin_pool: &str,
        max_overprovision: f64,
    ) -> Result<Self, BackendError> {
        for (what, name) in [("volume group", volume_group), ("thin pool", thin_pool)] {
            if !valid_lvm_name(name) {
                return Err(BackendError::Unavailable(format!(
                    "invalid {what} name {name:?}: use letters, digits and + _ . - (not starting with -)"
                )));
            }
        }
        if !(max_overprovision.is_finite() && max_overprovision > 0.0) {
            return Err(BackendError::Unavailable(format!(
                "invalid overprovision ratio {max_overprovision} for {volume_group}/{thin_pool}: use a positive number such as 1.0 or 2.5"
            )));
        }
        let lvm =
            Tool::find("lvm", "lvm2").map_err(|e| BackendError::Unavailable(e.to_string()))?;
        let backend = LvmBackend {
            lvm,
            filesystems: FilesystemTools::find(),
            volume_group: volume_group.to_string(),
            thin_pool: thin_pool.to_string(),
            max_overprovision,
            thin_tools: ThinTools::find(),
            kept: Arc::default(),
        };

        let vgs = backend
            .report_vgs()
            .map_err(|e| BackendError::Unavailable(format!("cannot list volume groups: {e}")))?;
        if !vgs.iter().any(|vg| vg.vg_name == volume_group) {
            let names: Vec<_> = vgs.iter().map(|vg| vg.vg_name.as_str()).collect();
            return Err(BackendError::Unavailable(format!(
                "volume group {volume_group} not found (vgs lists: {}); create it or change the profile",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )));
        }
        let lvs = backend.report_lvs().map_err(|e| {
            BackendError::Unavailable(format!(
                "cannot list logical volumes of {volume_group}: {e}"
            ))
        })?;
        match lvs.iter().find(|lv| lv.lv_name == thin_pool) {
            Some(lv) if lv.is_thin_pool() => Ok(backend),
            Some(lv) => Err(BackendError::Unavailable(format!(
                "{volume_group}/{thin_pool} is not a thin pool (lv_attr {}); point the profile at a thin pool",
                lv.lv_attr
            ))),
            None => {
                let pools: Vec<_> =
                    lvs.iter().filter(|lv| lv.is_thin_pool()).map(|lv| lv.lv_name.as_str()).collect();
                Err(BackendError::Unavailable(format!(
                    "thin pool {thin_pool} not found in volume group {volume_group} (thin pools there: {}); \
                     create it with `lvcreate --type thin-pool -L SIZE -n {thin_pool} {volume_group}` or change the profile",
                    if pools.is_empty() { "none".to_string() } else { pools.join(", ") }
                )))
            }
        }
    }

    /// The volume group.
    pub fn volume_group(&self) -> &str {
        &self.volume_group
    }

    /// The thin pool.
    pub fn thin_pool(&self) -> &str {
        &self.thin_pool
    }

    /// The block device of volume `id`: `/dev/VG/dvol-<hex>`.
    pub fn device(&self, id: Uuid) -> PathBuf {
        self.device_of(&lv_name(id))
    }

    /// The block device of the LV `lv`: `/dev/VG/LV`.
    fn device_of(&self, lv: &str) -> PathBuf {
        Path::new("/dev").join(&self.volume_group).join(lv)
    }

    /// The LV `lv` as LVM commands name it: `VG/LV`.
    fn qualified(&self, lv: &str) -> String {
        format!("{}/{lv}", self.volume_group)
    }

    /// LVs in the pool that are not volumes the caller knows: foreign LVs (not made by dvol),
    /// orphans (made by dvol for an id not in `known`) and unfinished creations. Only a
    /// report: nothing is changed.
    pub fn foreign_or_orphans(&self, known: &[Uuid]) -> Result<Vec<StrayVolume>, BackendError> {
        let lvs = self.report_lvs()?;
        Ok(strays(&lvs, &self.volume_group, &self.thin_pool, known))
    }
}
