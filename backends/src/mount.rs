//! Mounting and unmounting, for every backend: bind mounts of folders, filesystems on block
//! devices (read-write, or read-only for a copy), and one strict unmount.
//!
//! Each error names the path mounted on and says what was being done. An unmount tolerates
//! only "not mounted", which it learns from the kernel's mount table
//! ([`crate::mount_table`]) and reports as [`Effect::Unchanged`]; what happens when the mount
//! is busy is the caller's choice ([`WhenBusy`]), because a busy block device must never be
//! detached lazily.

use std::path::Path;

use sys_mount::{Mount, MountFlags, UnmountFlags};

use crate::mount_table::is_mount_point;
use crate::{BackendError, Effect, Filesystem};

/// What [`unmount`] does when the kernel refuses because a process still uses the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBusy {
    /// Fail with the same error as for any other failure.
    Fail,
    /// Fail, with this action in the error instead: it tells the user what to do.
    Explain(&'static str),
    /// Detach the mount now and let the kernel finish when the last user lets go. Only for
    /// a bind mount: a detached filesystem on a block device would stay live with no
    /// mountpoint left to find it by.
    Detach,
}

/// The kernel's name for the filesystem type, for mount(2).
pub fn kernel_name(fs: Filesystem) -> &'static str {
    fs.as_str()
}

/// Bind-mounts the folder `source` at `target`, read-write.
pub fn bind(source: &Path, target: &Path, action: &'static str) -> Result<(), BackendError> {
    mount(source, target, None, MountFlags::BIND, None, action)
}

/// Mounts the `fs` filesystem on `device` read-write at `target`, with the filesystem's own
/// `options` (as `mount -o` takes them), if any.
pub fn mount_device(
    device: &Path,
    target: &Path,
    fs: Filesystem,
    options: Option<&str>,
    action: &'static str,
) -> Result<(), BackendError> {
    mount(
        device,
        target,
        Some(fs),
        MountFlags::empty(),
        options,
        action,
    )
}

/// Mounts a block-level copy of a filesystem whose original stays mounted, read-only at
/// `target` (no setuid programs, device nodes or executables either): no journal replay (the
/// copy was taken frozen, so its data is on disk) and, for XFS, no refusal of the duplicate
/// filesystem UUID.
pub fn mount_snapshot(
    fs: Filesystem,
    device: &Path,
    target: &Path,
    action: &'static str,
) -> Result<(), BackendError> {
    let options = match fs {
        Filesystem::Ext4 => "noload",
        Filesystem::Xfs => "nouuid,norecovery",
    };
    mount(
        device,
        target,
        Some(fs),
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        Some(options),
        action,
    )
}

/// mount(2) of `source` at `target`. Without `fs`, sys_mount tries the kernel's filesystems
/// in turn (a bind mount ignores the type).
fn mount(
    source: &Path,
    target: &Path,
    fs: Option<Filesystem>,
    flags: MountFlags,
    options: Option<&str>,
    action: &'static str,
) -> Result<(), BackendError> {
    let mut builder = Mount::builder().flags(flags);
    if let Some(fs) = fs {
        builder = builder.fstype(kernel_name(fs));
    }
    if let Some(options) = options {
        builder = builder.data(options);
    }
    builder
        .mount(source, target)
        .map(drop)
        .map_err(|e| BackendError::io(action, target, e))
}

/// Unmounts what is mounted at `target`: [`Effect::Unchanged`] when nothing is, an error
/// saying `action` for any failure but a busy mount, which `when_busy` decides.
pub fn unmount(
    target: &Path,
    action: &'static str,
    when_busy: WhenBusy,
) -> Result<Effect, BackendError> {
    if !is_mount_point(target)? {
        return Ok(Effect::Unchanged);
    }
    let busy =
        |e: &std::io::Error| e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error());
    match sys_mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(Effect::Changed),
        Err(e) if busy(&e) => match when_busy {
            WhenBusy::Fail => Err(BackendError::io(action, target, e)),
            WhenBusy::Explain(explained) => Err(BackendError::io(explained, target, e)),
            WhenBusy::Detach => {
                tracing::warn!(target = %target.display(), "mount busy; detaching lazily");
                sys_mount::unmount(target, UnmountFlags::DETACH)
                    .map_err(|e| BackendError::io(action, target, e))?;
                Ok(Effect::Changed)
            }
        },
        Err(e) => Err(BackendError::io(action, target, e)),
    }
}
