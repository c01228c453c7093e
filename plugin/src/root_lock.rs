//! One daemon per state root: an exclusive `flock(2)` on `<root>/daemon.lock`, which holds the
//! owner's pid.
//!
//! The kernel releases the lock when the process dies, however it dies, so a daemon killed
//! with SIGKILL never blocks the next start; a second daemon started on the same root while
//! the first runs is refused with the first one's pid. The pid is written in place over a
//! fixed width and the file is never truncated, so recording it needs no new disk block: a
//! full state root does not stop a daemon from taking its lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use tracing::warn;

/// Width the pid is written with: enough for any pid, newline included.
const PID_WIDTH: usize = 20;

/// Why the state root could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum RootLockError {
    /// Another process holds the lock.
    #[error("state root {root} is in use by another dvol daemon ({}); stop it, or give this one another --root", holder_text(*pid))]
    Held {
        /// The state root.
        root: PathBuf,
        /// The pid the lock file names, if it names one.
        pid: Option<u32>,
    },
    /// The lock file could not be opened or locked.
    #[error("state root {root}: cannot lock {}: {source}", lock.display())]
    Io {
        /// The state root.
        root: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `pid 1234`, or that the pid is not known yet.
fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "its pid is not recorded yet".to_string(),
    }
}

/// The lock on one state root, held until dropped (or the process dies).
#[derive(Debug)]
pub struct RootLock {
    _file: File,
    path: PathBuf,
}

impl RootLock {
    /// Takes the lock of the state root `root` (created 0700 if missing) without waiting, and
    /// records this process's pid in it.
    pub fn take(root: &Path) -> Result<RootLock, RootLockError> {
        let path = root.join("daemon.lock");
        let io = |source| RootLockError::Io {
            root: root.to_path_buf(),
            lock: path.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(root)
            .map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(RootLockError::Held {
                        root: root.to_path_buf(),
                        pid: read_pid(&mut file),
                    })
                }
                Err(e) => return Err(io(e.into())),
            }
        }
        let record = format!("{:<width$}\n", std::process::id(), width = PID_WIDTH - 1);
        let written = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(record.as_bytes()))
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            warn!(lock = %path.display(), error = %e, "could not record this daemon's pid in the lock file; the lock holds all the same");
        }
        Ok(RootLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The pid recorded in a lock file, if it holds one.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_pid_and_freed_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let first = RootLock::take(&root).unwrap();
        let e = RootLock::take(&root).unwrap_err();
        assert!(
            matches!(e, RootLockError::Held { pid: Some(pid), .. } if pid == std::process::id()),
            "{e}"
        );
        assert!(
            e.to_string().contains(&format!(
                "in use by another dvol daemon (pid {})",
                std::process::id()
            )),
            "{e}"
        );
        drop(first);
        let again = RootLock::take(&root).unwrap();
        assert_eq!(
            std::fs::read_to_string(again.path()).unwrap().trim(),
            std::process::id().to_string()
        );
    }
}
