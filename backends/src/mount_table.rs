//! The kernel's mount table, read from `/proc/self/mountinfo`; the only place dvol reads it.
//!
//! dvol never trusts a mount counter on disk to say whether a volume is mounted: after a crash
//! or a reboot only the kernel knows. This module answers that question, and which block
//! device a mount comes from: by device number (`major:minor`, the form `/sys/block/*/dev`
//! uses too), so any path to a device finds its mounts.

use std::path::{Path, PathBuf};

use crate::BackendError;

/// One mount, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The device number of what is mounted, as `major:minor`.
    pub device: String,
    /// The filesystem type, e.g. `ext4`.
    pub fs_type: String,
}

/// A snapshot of the mounts the kernel reports for this process's mount namespace.
#[derive(Debug, Clone, Default)]
pub struct MountTable {
    /// In the kernel's order: a later mount at a path covers the earlier ones there.
    mounts: Vec<MountEntry>,
}

impl MountTable {
    /// Reads the current mount table.
    pub fn read() -> Result<Self, BackendError> {
        let infos = procfs::process::Process::myself()
            .and_then(|me| me.mountinfo())
            .map_err(|e| BackendError::MountTable(e.to_string()))?;
        Ok(MountTable {
            mounts: infos
                .into_iter()
                .map(|info| MountEntry {
                    mount_point: info.mount_point,
                    device: info.majmin,
                    fs_type: info.fs_type,
                })
                .collect(),
        })
    }

    /// Every mount, in the kernel's order.
    pub fn mounts(&self) -> &[MountEntry] {
        &self.mounts
    }

    /// Whether something is mounted exactly at `path`.
    pub fn is_mounted(&self, path: &Path) -> bool {
        self.mounts.iter().any(|mount| mount.mount_point == path)
    }

    /// The device number (`major:minor`) of what is mounted exactly at `path`, if anything:
    /// the mount on top, the one the path shows.
    pub fn device_at(&self, path: &Path) -> Option<&str> {
        self.mounts
            .iter()
            .rfind(|mount| mount.mount_point == path)
            .map(|mount| mount.device.as_str())
    }

    /// Where the device numbered `device` (`major:minor`) is mounted, in the kernel's order.
    pub fn mount_points_of<'a>(&'a self, device: &'a str) -> impl Iterator<Item = &'a Path> {
        self.mounts
            .iter()
            .filter(move |mount| mount.device == device)
            .map(|mount| mount.mount_point.as_path())
    }
}

/// Whether something is mounted exactly at `path` right now.
pub fn is_mount_point(path: &Path) -> Result<bool, BackendError> {
    Ok(MountTable::read()?.is_mounted(path))
}

/// Where the block device node `device` is mounted right now, matched by device number, so
/// any path to the device finds its mounts. A missing node is mounted nowhere.
pub fn mount_points_of_device(device: &Path) -> Result<Vec<PathBuf>, BackendError> {
    let stat = match rustix::fs::stat(device) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(Vec::new()),
        Err(e) => return Err(BackendError::io("inspect block device", device, e.into())),
    };
    let number = format!(
        "{}:{}",
        rustix::fs::major(stat.st_rdev),
        rustix::fs::minor(stat.st_rdev)
    );
    Ok(MountTable::read()?
        .mount_points_of(&number)
        .map(Path::to_path_buf)
        .collect())
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

    #[test]
    fn names_the_device_of_a_mount_and_the_mounts_of_a_device() {
        let table = MountTable::read().unwrap();
        let proc = Path::new("/proc");
        let device = table.device_at(proc).unwrap();
        assert!(table.mount_points_of(device).any(|point| point == proc));
        assert_eq!(table.device_at(Path::new("/proc/self")), None);
        assert!(mount_points_of_device(Path::new("/dev/no-such-device"))
            .unwrap()
            .is_empty());
    }
}
