//! Making and growing filesystems on block devices, shared by the loop and LVM backends.

use std::path::Path;

use crate::command::{CommandError, Tool};
use crate::mount::{self, WhenBusy};
use crate::{BackendError, ByteSize, Filesystem};

/// The filesystem tools, found once.
#[derive(Debug, Clone)]
pub struct FilesystemTools {
    mkfs_ext4: Result<Tool, String>,
    mkfs_xfs: Result<Tool, String>,
    resize2fs: Result<Tool, String>,
    e2fsck: Result<Tool, String>,
    xfs_growfs: Result<Tool, String>,
    xfs_admin: Result<Tool, String>,
}

impl FilesystemTools {
    /// Looks the tools up. A missing tool is reported when a filesystem that needs it is used.
    pub fn find() -> Self {
        let find = |name, package| Tool::find(name, package).map_err(|e| e.to_string());
        FilesystemTools {
            mkfs_ext4: find("mkfs.ext4", "e2fsprogs"),
            mkfs_xfs: find("mkfs.xfs", "xfsprogs"),
            resize2fs: find("resize2fs", "e2fsprogs"),
            e2fsck: find("e2fsck", "e2fsprogs"),
            xfs_growfs: find("xfs_growfs", "xfsprogs"),
            xfs_admin: find("xfs_admin", "xfsprogs"),
        }
    }

    /// Whether `fs` can be made here; the error says what to install.
    pub fn check(&self, fs: Filesystem) -> Result<(), String> {
        match fs {
            Filesystem::Ext4 => self
                .mkfs_ext4
                .as_ref()
                .and(self.resize2fs.as_ref())
                .map(drop)
                .map_err(Clone::clone),
            Filesystem::Xfs => self
                .mkfs_xfs
                .as_ref()
                .and(self.xfs_growfs.as_ref())
                .map(drop)
                .map_err(Clone::clone),
        }
    }

    fn tool(found: &Result<Tool, String>) -> Result<&Tool, CommandError> {
        found.as_ref().map_err(|message| CommandError::Failed {
            command: "(tool lookup)".into(),
            code: -1,
            stderr: message.clone(),
        })
    }

    /// Formats `device` with `fs`.
    pub fn make(&self, fs: Filesystem, device: &Path) -> Result<(), CommandError> {
        match fs {
            Filesystem::Ext4 => Self::tool(&self.mkfs_ext4)?
                .run([
                    "-q".as_ref(),
                    "-F".as_ref(),
                    // No lazy init: the work is done now, not by a kernel thread that would
                    // compete with the first container's writes.
                    "-E".as_ref(),
                    "lazy_itable_init=0,lazy_journal_init=0".as_ref(),
                    device.as_os_str(),
                ])
                .map(drop),
            Filesystem::Xfs => Self::tool(&self.mkfs_xfs)?
                .run(["-q".as_ref(), "-f".as_ref(), device.as_os_str()])
                .map(drop),
        }
    }

    /// Gives the unmounted filesystem on `device`, a block-level copy of another taken frozen,
    /// an identity of its own where the kernel needs one: XFS refuses to mount two
    /// filesystems with one UUID. `scratch` is an empty directory to mount the copy on once,
    /// which replays the log a freeze leaves (`xfs_admin` refuses a dirty log, and still
    /// exits 0, so the new UUID is checked). ext4 keeps its UUID (changing it would rewrite
    /// every checksum).
    pub fn new_identity(
        &self,
        fs: Filesystem,
        device: &Path,
        scratch: &Path,
    ) -> Result<(), BackendError> {
        if fs == Filesystem::Ext4 {
            return Ok(());
        }
        let xfs_admin = Self::tool(&self.xfs_admin)?;
        mount::mount_device(
            device,
            scratch,
            fs,
            Some("nouuid"),
            "mount the copy once to replay its log",
        )?;
        mount::unmount(scratch, "unmount the copy", WhenBusy::Fail)?;
        let uuid = || xfs_admin.run(["-u".as_ref(), device.as_os_str()]);
        let before = uuid()?;
        xfs_admin.run(["-U".as_ref(), "generate".as_ref(), device.as_os_str()])?;
        let after = uuid()?;
        if after == before {
            return Err(BackendError::Command(CommandError::Failed {
                command: format!(
                    "{} -U generate {}",
                    xfs_admin.path().display(),
                    device.display()
                ),
                code: 0,
                stderr: format!("the filesystem UUID is still {}", before.trim()),
            }));
        }
        Ok(())
    }

    /// Grows the unmounted ext4 filesystem on `device` to fill the device: `e2fsck -f -y`
    /// first, which resize2fs insists on, then resize2fs. A missing tool is
    /// [`BackendError::Unavailable`].
    pub fn grow_unmounted_ext4(&self, device: &Path) -> Result<(), BackendError> {
        let e2fsck = installed(&self.e2fsck)?;
        let resize2fs = installed(&self.resize2fs)?;
        match e2fsck.run(["-f".as_ref(), "-y".as_ref(), device.as_os_str()]) {
            // Exit code 1: errors were found and corrected; the filesystem is fine now.
            Ok(_) | Err(CommandError::Failed { code: 1, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        resize2fs.run([device])?;
        Ok(())
    }

    /// Grows the filesystem mounted at `mountpoint` (on `device`) to fill the device.
    pub fn grow(
        &self,
        fs: Filesystem,
        device: &Path,
        mountpoint: &Path,
    ) -> Result<(), CommandError> {
        match fs {
            Filesystem::Ext4 => Self::tool(&self.resize2fs)?.run([device]).map(drop),
            Filesystem::Xfs => Self::tool(&self.xfs_growfs)?.run([mountpoint]).map(drop),
        }
    }
}

/// The tool `found`, or [`BackendError::Unavailable`] saying what to install.
fn installed(found: &Result<Tool, String>) -> Result<&Tool, BackendError> {
    found
        .as_ref()
        .map_err(|message| BackendError::Unavailable(message.clone()))
}

/// The smallest volume each filesystem can be made on (mkfs.xfs refuses below 300 MiB).
pub fn minimum_size(fs: Filesystem) -> ByteSize {
    match fs {
        Filesystem::Ext4 => ByteSize::from_bytes(16 << 20).expect("valid"),
        Filesystem::Xfs => ByteSize::from_bytes(300 << 20).expect("valid"),
    }
}
