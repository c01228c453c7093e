//! Small filesystem helpers: atomic file replacement, directory fsync, unique temporary
//! names and advisory locks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{flock, FlockOperation};

/// Prefix of every temporary file this crate creates (in the repository and in checkouts).
pub const TEMP_PREFIX: &str = ".dvol-tmp-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a temporary file that no other thread or process uses.
pub fn temp_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{TEMP_PREFIX}{}-{n}-{nanos:08x}", std::process::id())
}

/// Whether a file name is one of our temporary names.
pub fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(TEMP_PREFIX.as_bytes())
}

/// Fsyncs a directory so that renames and unlinks inside it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, fsyncing each parent whose listing changed.
pub fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// Replaces `path` with `data` atomically and durably: a temporary file in the same
/// directory is written and fsynced, renamed over `path`, and the directory is fsynced.
/// A crash leaves either the old or the new content.
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(temp_name());
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes a file durably (unlink, then fsync the directory). A missing file is not an error.
/// Returns whether a file was removed.
pub fn remove_durably(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                fsync_dir(dir)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// An advisory `flock(2)` lock, released when dropped. Locks taken through separate
/// [`FileLock`]s exclude each other across threads and processes alike.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    fn take(path: &Path, op: FlockOperation) -> io::Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        loop {
            match flock(&file, op) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// Waits for and takes a shared lock on `path` (created if missing).
    pub fn shared(path: &Path) -> io::Result<FileLock> {
        Self::take(path, FlockOperation::LockShared)
    }

    /// Waits for and takes an exclusive lock on `path` (created if missing).
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        Self::take(path, FlockOperation::LockExclusive)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(is_temp_name(temp_name().as_bytes()));
        assert_ne!(temp_name(), temp_name());
    }

    #[test]
    fn exclusive_lock_excludes_shared() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let a = FileLock::shared(&p).unwrap();
        let _b = FileLock::shared(&p).unwrap();
        let f = File::open(&p).unwrap();
        assert!(flock(&f, FlockOperation::NonBlockingLockExclusive).is_err());
        drop(a);
        drop(_b);
        assert!(flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok());
    }
}
