//! File system operations relative to open directories.
//!
//! The commit walk, status and checkout never hand the kernel a path of more than one name:
//! each directory is opened from its parent's descriptor with `O_NOFOLLOW | O_DIRECTORY`, and
//! every entry is reached from its directory's descriptor. So a tree deeper than `PATH_MAX`
//! works like any other, and a symlink swapped in for a directory is never followed.
//! Error messages name the full path, shortened ([`short_path`]) so they stay readable.

use std::ffi::OsStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, RawDir, Statx, StatxAttributes, StatxFlags, CWD,
};

use crate::index::StatKey;
use crate::repo::Error;

/// Bytes of a path kept at each end when an error message names it.
const SHOWN_BYTES: usize = 60;

/// `root/rel`, with everything but the first and last [`SHOWN_BYTES`] bytes replaced by `…`
/// when it is longer (a message naming a 5,000-byte path stays short).
pub(crate) fn short_path(root: &Path, rel: &[u8]) -> PathBuf {
    let mut full = root.as_os_str().as_bytes().to_vec();
    if !rel.is_empty() {
        if !full.ends_with(b"/") {
            full.push(b'/');
        }
        full.extend_from_slice(rel);
    }
    if full.len() > 2 * SHOWN_BYTES + 3 {
        let mut short = full[..SHOWN_BYTES].to_vec();
        short.extend_from_slice("…".as_bytes());
        short.extend_from_slice(&full[full.len() - SHOWN_BYTES..]);
        full = short;
    }
    PathBuf::from(OsStr::from_bytes(&full))
}

/// An error constructor for a failed `op` on `root/rel` (named shortly).
pub(crate) fn at_err<'a>(
    op: &'static str,
    root: &'a Path,
    rel: &'a [u8],
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: short_path(root, rel),
        source,
    }
}

/// Like [`at_err`], for a raw `errno`.
pub(crate) fn errno_err<'a>(
    op: &'static str,
    root: &'a Path,
    rel: &'a [u8],
) -> impl FnOnce(rustix::io::Errno) -> Error + 'a {
    move |e| at_err(op, root, rel)(e.into())
}

/// Whether an error means the entry is gone or is no longer what it was (a directory
/// replaced by a file or symlink, a file replaced by a symlink).
pub(crate) fn vanished(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    matches!(e, Errno::NOENT | Errno::NOTDIR | Errno::LOOP)
}

/// Opens the directory `name` of `parent`, refusing symlinks.
pub(crate) fn open_dir<Fd: AsFd>(parent: Fd, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the directory at `path` (a volume root), refusing a symlink as its last component.
pub(crate) fn open_root(path: &Path) -> rustix::io::Result<OwnedFd> {
    open_dir(CWD, path.as_os_str().as_bytes())
}

/// Opens the directory `rel` (`a/b/c`) below `root` one name at a time, refusing symlinks.
pub(crate) fn open_below(root: BorrowedFd<'_>, rel: &[u8]) -> rustix::io::Result<OwnedFd> {
    let mut fd = rustix::io::dup(root)?;
    for name in rel.split(|b| *b == b'/').filter(|n| !n.is_empty()) {
        fd = open_dir(&fd, name)?;
    }
    Ok(fd)
}

/// The names in the directory `dir` (without `.` and `..`), in directory order.
pub(crate) fn list_names(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut entries = RawDir::new(dir, &mut buf);
    let mut names = Vec::new();
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// What `lstat` says about one entry, with the fields the walk and checkout need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lstat {
    /// The fields the index compares.
    pub key: StatKey,
    /// The device holding it.
    pub dev: u64,
    /// Hard link count.
    pub nlink: u32,
    /// The device a device node stands for.
    pub rdev: u64,
    /// Whether it is the root of a mount.
    pub mount_root: bool,
}

impl Lstat {
    fn of(st: &Statx) -> Lstat {
        let ns = |t: &rustix::fs::StatxTimestamp| {
            t.tv_sec
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::from(t.tv_nsec))
        };
        Lstat {
            key: StatKey {
                size: st.stx_size,
                mtime_ns: ns(&st.stx_mtime),
                ctime_ns: ns(&st.stx_ctime),
                ino: st.stx_ino,
                mode: u32::from(st.stx_mode),
                uid: st.stx_uid,
                gid: st.stx_gid,
            },
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            nlink: st.stx_nlink,
            rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
            mount_root: st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                && st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
        }
    }

    /// The entry's type.
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.key.mode)
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }

    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type() == FileType::RegularFile
    }

    /// Whether it is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }
}

/// `lstat` of `name` in `dir` (one `statx` call; never follows a symlink or automounts).
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<Lstat> {
    let st = rustix::fs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT,
        StatxFlags::BASIC_STATS,
    )?;
    Ok(Lstat::of(&st))
}

/// `fstat` of an open file or directory.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> rustix::io::Result<Lstat> {
    let st = rustix::fs::statx(
        fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )?;
    Ok(Lstat::of(&st))
}

/// Opens the regular file `name` of `dir` for reading without following a symlink or
/// blocking on a fifo. `Ok(None)` if it vanished or is not a regular file any more.
pub(crate) fn open_regular_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
) -> rustix::io::Result<Option<(std::fs::File, Lstat)>> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if vanished(e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = fstat(fd.as_fd())?;
    if !st.is_file() {
        return Ok(None);
    }
    Ok(Some((std::fs::File::from(fd), st)))
}

/// Sets the permission bits of `name` in `dir` without following it if it is (or became) a
/// symlink: the entry is opened with `O_PATH | O_NOFOLLOW`, checked, and changed through
/// `/proc/self/fd` (Linux has no `fchmodat(AT_SYMLINK_NOFOLLOW)` before 6.6).
pub(crate) fn chmod_nofollow(
    dir: BorrowedFd<'_>,
    name: &[u8],
    mode: u32,
) -> rustix::io::Result<()> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if fstat(fd.as_fd())?.is_symlink() {
        return Err(rustix::io::Errno::LOOP);
    }
    let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    rustix::fs::chmodat(
        CWD,
        proc_path.as_str(),
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )
}

/// Removes `name` from `dir`, a directory with everything in it (never following a symlink).
/// A missing entry is not an error.
pub(crate) fn remove_all_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    is_dir: bool,
) -> rustix::io::Result<()> {
    if is_dir {
        let sub = match open_dir(dir, name) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            // Replaced by something that is not a directory: remove that.
            Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                return remove_all_at(dir, name, false)
            }
            Err(e) => return Err(e),
        };
        for child in list_names(sub.as_fd())? {
            let child_is_dir = match lstat_at(sub.as_fd(), &child) {
                Ok(st) => st.is_dir(),
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(e),
            };
            remove_all_at(sub.as_fd(), &child, child_is_dir)?;
        }
        match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        }
    } else {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(rustix::io::Errno::ISDIR) => remove_all_at(dir, name, true),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_shortened_in_the_middle() {
        let rel = [b'a'; 5000];
        let p = short_path(Path::new("/var/lib/dvol/x"), &rel);
        let s = p.to_string_lossy();
        assert!(
            s.starts_with("/var/lib/dvol/x/aaa") && s.contains('…'),
            "{s}"
        );
        assert_eq!(p.as_os_str().len(), 2 * SHOWN_BYTES + "…".len());
        assert_eq!(short_path(Path::new("/v"), b"a/b"), Path::new("/v/a/b"));
        assert_eq!(short_path(Path::new("/v"), b""), Path::new("/v"));
    }
}
