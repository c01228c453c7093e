//! Maintenance of the history repository every volume shares: fsck and gc.

use dvol_api::{FsckView, GcView};
use dvol_snapshot::Progress;

use super::VolumeService;
use crate::error::ServiceError;

impl VolumeService {
    /// Re-reads and re-hashes every object of every volume; reports what is corrupt or
    /// missing.
    pub fn fsck(&self, progress: &dyn Progress) -> Result<FsckView, ServiceError> {
        let report = self
            .history
            .fsck(progress)
            .map_err(ServiceError::Repository)?;
        Ok(FsckView {
            clean: report.is_clean(),
            objects_checked: report.objects_checked,
            corrupt: report.corrupt.iter().map(ToString::to_string).collect(),
            missing: report.missing.iter().map(ToString::to_string).collect(),
            bad_refs: report.bad_refs.clone(),
            unreachable: report.unreachable,
        })
    }

    /// Deletes objects no branch, tag or index refers to.
    pub fn gc(&self, progress: &dyn Progress) -> Result<GcView, ServiceError> {
        let report = self
            .history
            .gc(progress)
            .map_err(ServiceError::Repository)?;
        Ok(GcView {
            objects_kept: report.objects_kept,
            objects_removed: report.objects_removed,
            bytes_removed: report.bytes_removed,
        })
    }
}
