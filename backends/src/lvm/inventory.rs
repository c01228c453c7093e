//! Sorting the LVs of the pool into dvol's volumes and strays: foreign LVs, orphans,
//! unfinished creations and read point snapshots a crash left. A volume's base (its kept read
//! point) belongs to the volume. Strays are reported, never touched.

use std::collections::BTreeSet;
use std::fmt;

use uuid::Uuid;

use super::names::NameKind;
use super::report::LogicalVolume;

/// Why an LV in the pool is not one of the daemon's volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrayKind {
    /// Not made by dvol (no `dvol` tag, or a name and tag dvol never writes).
    Foreign,
    /// Made by dvol for a volume the caller does not know.
    Orphan(Uuid),
    /// Made by dvol, but creation stopped before the filesystem was made and the LV renamed.
    Incomplete(Uuid),
    /// The snapshot behind a read point of a volume, left by a commit that did not finish.
    ReadPoint(Uuid),
}

/// An LV in the pool that is not one of the daemon's volumes. Reported, never touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayVolume {
    /// `VG/LV`.
    pub name: String,
    /// Why it is reported.
    pub kind: StrayKind,
}

impl fmt::Display for StrayVolume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            StrayKind::Foreign => write!(f, "{}: not made by dvol; left alone", self.name),
            StrayKind::Orphan(id) => write!(
                f,
                "{}: made by dvol for volume {id}, which is not known; left alone (lvremove it if it is garbage)",
                self.name
            ),
            StrayKind::Incomplete(id) => write!(
                f,
                "{}: unfinished creation of volume {id}; creating or removing the volume cleans it up",
                self.name
            ),
            StrayKind::ReadPoint(id) => write!(
                f,
                "{}: read point (thin snapshot) of volume {id}, not a volume; the daemon removes \
                 it when it releases read points at start, or lvremove it",
                self.name
            ),
        }
    }
}

/// The LVs of `pool` (in volume group `vg`) that are not volumes in `known`, and why.
pub(super) fn strays(
    lvs: &[LogicalVolume],
    vg: &str,
    pool: &str,
    known: &[Uuid],
) -> Vec<StrayVolume> {
    lvs.iter()
        .filter(|lv| lv.pool_lv == pool)
        .filter_map(|lv| {
            let kind = match lv.dvol_name() {
                None => StrayKind::Foreign,
                Some(NameKind::Incomplete(id)) => StrayKind::Incomplete(id),
                Some(NameKind::ReadPoint(id)) => StrayKind::ReadPoint(id),
                Some(NameKind::Complete(id) | NameKind::Base(id)) if known.contains(&id) => {
                    return None
                }
                Some(NameKind::Complete(id) | NameKind::Base(id)) => StrayKind::Orphan(id),
            };
            Some(StrayVolume {
                name: format!("{vg}/{}", lv.lv_name),
                kind,
            })
        })
        .collect()
}

/// The ids of the finished dvol volumes in `pool`, sorted.
pub(super) fn volume_ids(lvs: &[LogicalVolume], pool: &str) -> Vec<Uuid> {
    let ids: BTreeSet<Uuid> = lvs
        .iter()
        .filter(|lv| lv.pool_lv == pool)
        .filter_map(|lv| match lv.dvol_name()? {
            NameKind::Complete(id) => Some(id),
            NameKind::Incomplete(_) | NameKind::ReadPoint(_) | NameKind::Base(_) => None,
        })
        .collect();
    ids.into_iter().collect()
}
