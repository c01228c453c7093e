//! Freezing a mounted filesystem (`FIFREEZE`/`FITHAW`), so that a reader sees it at one
//! instant: the kernel flushes it to a consistent state and makes writers wait until the thaw.
//! Reads go on while it is frozen.
//!
//! The only `unsafe` in the crate: rustix has no wrapper for these two ioctls.

#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

use rustix::io::Errno;
use rustix::ioctl::{opcode, NoArg, Opcode};

use crate::{BackendError, Effect};

/// `FIFREEZE`, `_IOWR('X', 119, int)` in `<linux/fs.h>`.
const FIFREEZE: Opcode = opcode::read_write::<i32>(b'X', 119);
/// `FITHAW`, `_IOWR('X', 120, int)` in `<linux/fs.h>`.
const FITHAW: Opcode = opcode::read_write::<i32>(b'X', 120);

fn open_root(mountpoint: &Path) -> Result<File, BackendError> {
    File::open(mountpoint).map_err(|e| BackendError::io("open mounted filesystem", mountpoint, e))
}

/// Freezes the filesystem mounted at `mountpoint`. Freezing a frozen one changes nothing.
pub fn freeze(mountpoint: &Path) -> Result<Effect, BackendError> {
    let root = open_root(mountpoint)?;
    // SAFETY: FIFREEZE takes no argument the kernel reads (the int is unused); `root` is an
    // open descriptor for the duration of the call.
    match unsafe { rustix::ioctl::ioctl(&root, NoArg::<FIFREEZE>::new()) } {
        Ok(()) => Ok(Effect::Changed),
        Err(Errno::BUSY) => Ok(Effect::Unchanged),
        Err(e) => Err(BackendError::io("freeze filesystem", mountpoint, e.into())),
    }
}

/// Thaws the filesystem mounted at `mountpoint`. Thawing one that is not frozen changes
/// nothing.
pub fn thaw(mountpoint: &Path) -> Result<Effect, BackendError> {
    let root = open_root(mountpoint)?;
    // SAFETY: as for FIFREEZE: no argument is read, and `root` stays open during the call.
    match unsafe { rustix::ioctl::ioctl(&root, NoArg::<FITHAW>::new()) } {
        Ok(()) => Ok(Effect::Changed),
        Err(Errno::INVAL) => Ok(Effect::Unchanged),
        Err(e) => Err(BackendError::io("thaw filesystem", mountpoint, e.into())),
    }
}
