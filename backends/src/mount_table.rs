//! The kernel's mount table, read from `/proc/self/mountinfo`.
//!
//! dvol never trusts a mount counter on disk to say whether a volume is mounted: after a crash
//! or a reboot only the kernel knows. This module answers that question.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::BackendError;

/// A snapshot of the mount points the kernel reports for this process's mount namespace.
#[derive(Debug, Clone, Default)]
pub struct MountTable {
    points: HashSet<PathBuf>,
}

impl MountTable {
    /// Reads the current mount table.
    pub fn read() -> Result<Self, BackendError> {
        let infos = procfs::process::Process::myself()
            .and_then(|me| me.mountinfo())
            .map_err(|e| BackendError::MountTable(e.to_string()))?;
        Ok(MountTable {
            points: infos.into_iter().map(|info| info.mount_point).collect(),
        })
    }

    /// Whether something is mounted exactly at `path`.
    pub fn is_mounted(&self, path: &Path) -> bool {
        self.points.contains(path)
    }
}

/// Whether something is mounted exactly at `path` right now.
pub fn is_mount_point(path: &Path) -> Result<bool, BackendError> {
    Ok(MountTable::read()?.is_mounted(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_the_root_and_proc_mounts() {
        let table = MountTable::read().unwrap();
        assert!(table.is_mounted(Path::new("/")));
        assert!(table.is_mounted(Path::new("/proc")));
        assert!(!table.is_mounted(Path::new("/proc/self")));
    }
}
