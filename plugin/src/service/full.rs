//! A full state root: what the daemon cannot do while the filesystem under `<root>` has no
//! room, said in its log at start and in `GET /v1/node` (`problems`).
//!
//! A full root must not stop everything: the daemon still starts (the metadata database
//! opens without the room WAL mode's index file needs, see [`crate::metadata`]), lookups
//! answer, and a remove frees the storage before it records anything, so space can be freed.

use tracing::warn;

use super::VolumeService;

impl VolumeService {
    /// What this daemon cannot do right now, one sentence each; empty when all is well.
    pub fn problems(&self) -> Vec<String> {
        let root = self.layout.root();
        match rustix::fs::statvfs(root) {
            Ok(fs) if (fs.f_blocks > 0 && fs.f_bfree == 0) || (fs.f_files > 0 && fs.f_ffree == 0) => vec![format!(
                "state root {} is full: creating, mounting and committing volumes fails until space is freed there; removing volumes still works and frees it",
                root.display()
            )],
            Ok(_) => Vec::new(),
            Err(e) => vec![format!(
                "state root {}: cannot measure its free space: {e}",
                root.display()
            )],
        }
    }

    /// Logs [`VolumeService::problems`], once at start.
    pub(super) fn report_problems(&self) {
        for problem in self.problems() {
            warn!(%problem, "this daemon cannot do everything");
        }
    }
}
