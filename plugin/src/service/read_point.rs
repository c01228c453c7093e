//! Reaching a volume's data for a history operation: live at its mountpoint, or fixed at one
//! instant (a read point) while containers go on using it.
//!
//! A volume no container uses is mounted for the operation and unmounted after (and read at a
//! read point only where read points count changed ranges). A read point is marked by its scratch directory `<root>/read-points/<uuid>` for as long as it may exist,
//! so one a crash left behind is released at the next start, before anything else touches
//! the volumes.

use std::ffi::OsStr;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Instant;

use dvol_api::ReadFrom;
use dvol_backends::{Backend, ChangesSinceBase, Effect, FileChanges, NoChanges, ReadPoint};
use dvol_snapshot::ChangedRanges;
use tracing::{info, warn};

use super::locks::BUSY_PATIENCE;
use super::VolumeService;
use crate::error::{ForVolume, ServiceError};
use crate::names::VolumeRef;
use crate::volume::Volume;

/// How an operation reaches a volume's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// The live data, for operations that write it (checkout, reset) or compare it (status).
    Live,
    /// The data fixed at one instant while containers use the volume (commit, clone from a
    /// volume): a copy-on-write snapshot or a frozen filesystem, as the backend can.
    PointInTime,
}

impl VolumeService {
    /// Runs `work` with the volume locked and its live data reachable at its mountpoint.
    pub(super) fn with_data<T>(
        &self,
        reference: &str,
        work: impl FnOnce(&Volume, &Path) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        self.with_volume_data(reference, Access::Live, |volume, data, _| {
            work(volume, data)
        })
    }

    /// Like [`VolumeService::with_data`], for reading: the data of a volume that containers
    /// use is first fixed at one instant, and `work` learns how ([`ReadFrom`]).
    pub(super) fn with_fixed_data<T>(
        &self,
        reference: &str,
        work: impl FnOnce(&Volume, &Path, ReadFrom) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        self.with_volume_data(reference, Access::PointInTime, work)
    }

    fn with_volume_data<T>(
        &self,
        reference: &str,
        access: Access,
        work: impl FnOnce(&Volume, &Path, ReadFrom) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let reference = VolumeRef::parse(reference)?;
        let lock = self.locks.get(&reference.name);
        let _guard = lock
            .try_hold(BUSY_PATIENCE)
            .ok_or_else(|| ServiceError::Busy {
                volume: reference.name.clone(),
            })?;
        let volume = self.lookup(&reference)?;
        let mountpoint = self.mountpoint(&volume);
        let backend = self.backend(&volume)?;
        let mounted_here = backend
            .mount(&Self::spec(&volume), &mountpoint)
            .for_volume(&volume.name)?
            == Effect::Changed;
        // A volume no container uses needs no fixing, unless its read points count changed
        // ranges: then reading one leaves the base the next commit counts from.
        let fixed = access == Access::PointInTime && (!mounted_here || backend.counts_changes());
        let result = if !fixed {
            work(&volume, &mountpoint, ReadFrom::Live)
        } else {
            self.at_read_point(&volume, backend.as_ref(), &mountpoint, |data, read_from| {
                work(&volume, data, read_from)
            })
        };
        if mounted_here {
            if let Err(e) = backend.unmount(volume.id, &mountpoint) {
                warn!(volume = %volume.name, error = %e, "could not unmount after a history operation");
            }
        }
        result
    }

    /// Runs `work` on the data of the volume mounted at `mountpoint` fixed at one instant
    /// (a copy-on-write snapshot or a frozen filesystem, as the backend can), then releases
    /// the point. The scratch directory marks the point until it is released, so a crash
    /// leaves a mark the next start releases.
    fn at_read_point<T>(
        &self,
        volume: &Volume,
        backend: &dyn Backend,
        mountpoint: &Path,
        work: impl FnOnce(&Path, ReadFrom) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let scratch = self.layout.read_point(volume.id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&scratch)
            .map_err(|source| ServiceError::Root {
                path: scratch.clone(),
                source,
            })?;
        let started = Instant::now();
        let mut taken = None;
        let result = backend
            .read_point(&Self::spec(volume), mountpoint, &scratch)
            .for_volume(&volume.name)
            .and_then(|point| {
                info!(volume = %volume.name, point = ?point, "reading at a fixed point");
                taken = Some(match point {
                    ReadPoint::Snapshot(_) => ReadFrom::Snapshot,
                    ReadPoint::Frozen => ReadFrom::Frozen,
                    ReadPoint::Live => ReadFrom::Live,
                });
                let done = match point {
                    ReadPoint::Snapshot(path) => work(&path, ReadFrom::Snapshot),
                    ReadPoint::Frozen => work(mountpoint, ReadFrom::Frozen),
                    ReadPoint::Live => work(mountpoint, ReadFrom::Live),
                }?;
                // A freeze lifted at its time limit while `work` read: what it made is torn.
                backend
                    .read_point_intact(volume.id)
                    .for_volume(&volume.name)?;
                Ok(done)
            });
        // Released whatever happened: a frozen filesystem must not outlive the operation.
        match backend.release_read_point(volume.id, mountpoint, &scratch) {
            Ok(_) => {
                let held = started.elapsed();
                if let Some(point) = taken {
                    self.metrics.read_point_held(point, held);
                }
                remove_scratch(volume, &scratch);
                info!(volume = %volume.name, held_ms = held.as_millis() as u64, "read point released");
                result
            }
            Err(e) => {
                warn!(volume = %volume.name, error = %e, "could not release read point; retried at next start");
                result.and(Err(e).for_volume(&volume.name))
            }
        }
    }

    /// What a commit reading volume `volume` at its read point (`read_from`) can learn of its
    /// files' changed ranges since the base (see [`Backend::changes_since_base`]). Drop it
    /// before the point is released.
    pub(super) fn point_changes(
        &self,
        volume: &Volume,
        backend: &dyn Backend,
        read_from: ReadFrom,
    ) -> PointChanges {
        // A frozen filesystem has no copy to compare; a live read has one only where the
        // backend made copies at its read point (directory volumes on a root sharing blocks).
        let copies = match read_from {
            ReadFrom::Snapshot => true,
            ReadFrom::Frozen => false,
            ReadFrom::Live => backend.counts_changes(),
        };
        if !copies {
            return PointChanges(ChangesSinceBase::Unknown(NoChanges::NotSupported));
        }
        let scratch = self.layout.read_point(volume.id);
        PointChanges(backend.changes_since_base(&Self::spec(volume), &scratch))
    }

    /// Releases the read points a crash left behind (their scratch directories remain), so
    /// no volume stays frozen and no snapshot lingers. Called at start, before anything else
    /// touches the volumes.
    pub(super) fn release_stale_read_points(&self, volumes: &[Volume]) {
        let Ok(entries) = std::fs::read_dir(self.layout.read_points_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let scratch = entry.path();
            if scratch.extension().is_some_and(|e| e == "base") {
                // A base mounted beside a read point: released with the point.
                continue;
            }
            let volume = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<uuid::Uuid>().ok())
                .and_then(|id| volumes.iter().find(|v| v.id == id));
            let Some(volume) = volume else {
                warn!(path = %scratch.display(), "read point of no known volume; left untouched");
                continue;
            };
            let released = self.backend(volume).and_then(|backend| {
                backend
                    .release_read_point(volume.id, &self.mountpoint(volume), &scratch)
                    .for_volume(&volume.name)
            });
            match released {
                Ok(effect) => {
                    info!(volume = %volume.name, ?effect, "released a read point left by a crash");
                    remove_scratch(volume, &scratch);
                }
                Err(e) => {
                    warn!(volume = %volume.name, error = %e, "could not release a read point left by a crash")
                }
            }
        }
    }
}

/// The changed ranges of a read point's files, as the history library asks for them.
pub(super) struct PointChanges(ChangesSinceBase);

impl PointChanges {
    /// The ranges to read by, if the storage told them.
    pub(super) fn ranges(&self) -> Option<&dyn ChangedRanges> {
        match &self.0 {
            ChangesSinceBase::Ranges(_) => Some(self),
            ChangesSinceBase::Unknown(_) => None,
        }
    }

    /// Why changed files are read whole, if they are.
    pub(super) fn full_read_reason(&self) -> Option<String> {
        match &self.0 {
            ChangesSinceBase::Ranges(_) => None,
            ChangesSinceBase::Unknown(why) => Some(why.to_string()),
        }
    }
}

impl ChangedRanges for PointChanges {
    fn changed_ranges(&self, rel: &[u8]) -> Option<Vec<Range<u64>>> {
        match &self.0 {
            ChangesSinceBase::Ranges(files) => {
                FileChanges::changed_ranges(files.as_ref(), Path::new(OsStr::from_bytes(rel)))
            }
            ChangesSinceBase::Unknown(_) => None,
        }
    }
}

/// Removes a released read point's scratch directory, its mark.
fn remove_scratch(volume: &Volume, scratch: &Path) {
    if let Err(e) = std::fs::remove_dir(scratch) {
        warn!(volume = %volume.name, error = %e, "could not remove read point directory");
    }
}
