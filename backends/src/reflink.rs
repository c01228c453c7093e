//! Files that share blocks (FICLONE): the copy-on-write copies loop images and directory
//! volumes make on a root whose filesystem can (XFS with reflink, btrfs).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::io::Errno;

use crate::BackendError;

/// Makes `copy`, empty and just made, share all the blocks of `source` (FICLONE) and syncs
/// it. `Ok(false)` when the filesystem cannot share blocks between them (ext4, tmpfs, two
/// filesystems); the caller removes the copy.
pub(crate) fn share_blocks(copy: &File, source: &File, shown: &Path) -> Result<bool, BackendError> {
    match rustix::fs::ioctl_ficlone(copy, source).and_then(|()| rustix::fs::fdatasync(copy)) {
        Ok(()) => Ok(true),
        Err(Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY) => Ok(false),
        Err(e) => Err(BackendError::io("share blocks with", shown, e.into())),
    }
}

/// Creates `copy` (mode 0600; it must not exist) sharing the blocks of the file at `source`.
/// `Ok(false)`, with no copy left, where blocks cannot be shared.
pub(crate) fn copy_file(source: &Path, copy: &Path) -> Result<bool, BackendError> {
    let from = File::open(source).map_err(|e| BackendError::io("open", source, e))?;
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(copy)
        .map_err(|e| BackendError::io("create copy", copy, e))?;
    let shared = share_blocks(&to, &from, copy);
    drop(to);
    if !matches!(shared, Ok(true)) {
        let _ = fs::remove_file(copy);
    }
    shared
}

/// Whether the filesystem of the directory `root` shares blocks between files: tried on two
/// small files, removed again.
pub(crate) fn root_shares_blocks(root: &Path) -> bool {
    let probe = root.join(".reflink-probe");
    let copy = root.join(".reflink-probe.copy");
    let _ = fs::remove_file(&copy);
    let shared = fs::write(&probe, b"probe").is_ok() && copy_file(&probe, &copy).unwrap_or(false);
    let _ = fs::remove_file(&copy);
    let _ = fs::remove_file(&probe);
    shared
}
