//! Freezing a mounted filesystem (`FIFREEZE`/`FITHAW`), so that a reader sees it at one
//! instant: the kernel flushes it to a consistent state and makes writers wait until the thaw.
//! Reads go on while it is frozen.
//!
//! With `loop_device/configure.rs`, the only `unsafe` in the crate: rustix has no wrapper for
//! these two ioctls, nor for `fork`, which [`BoundedFreeze`] needs for a watchdog that thaws the filesystem if the daemon dies.

#![allow(unsafe_code)]

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// A filesystem frozen for at most a time limit.
///
/// A freeze outlives the process that made it: a daemon killed with SIGKILL mid-commit would
/// leave writers hanging until it starts again. So [`BoundedFreeze::start`] forks a watchdog
/// that holds the filesystem open and thaws it when the limit passes or when this process dies
/// (the socket it shares with it then reads end-of-file), whichever comes first. The watchdog
/// does nothing but `poll`, `send`, `ioctl` and `_exit`, all safe between `fork` and `exec`;
/// it closes every other descriptor it inherited first.
///
/// Whether the freeze held throughout is asked with [`BoundedFreeze::intact`] after the
/// reading: the watchdog says so on the socket before it thaws, so an answer of `true` means
/// everything read before the call was read frozen. [`BoundedFreeze::end`] stops the
/// watchdog and thaws; dropping an unended freeze does the same.
#[derive(Debug)]
pub struct BoundedFreeze {
    mountpoint: PathBuf,
    limit: Duration,
    watchdog: Option<i32>,
    socket: UnixStream,
    /// Whether the watchdog's word has been read (it is read once from the socket).
    fired: AtomicBool,
    started: Instant,
}

/// What the watchdog sends before it thaws.
const THAWING: u8 = b'T';

/// How a [`BoundedFreeze`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreezeEnd {
    /// How long the filesystem was frozen (until the watchdog thawed it, if it did).
    pub held: Duration,
    /// Whether the limit passed and the watchdog thawed the filesystem first.
    pub expired: bool,
}

impl BoundedFreeze {
    /// Freezes the filesystem mounted at `mountpoint` for at most `limit`.
    pub fn start(mountpoint: &Path, limit: Duration) -> Result<BoundedFreeze, BackendError> {
        let root = open_root(mountpoint)?;
        let (socket, theirs) = UnixStream::pair()
            .map_err(|e| BackendError::io("make the freeze watchdog's socket", mountpoint, e))?;
        let timeout_ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
        let (root_fd, their_fd) = (root.as_raw_fd(), theirs.as_raw_fd());
        // SAFETY: the child runs only `watchdog`, which makes async-signal-safe system calls
        // on descriptors and numbers prepared here, allocates nothing and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(BackendError::io(
                "start the freeze watchdog",
                mountpoint,
                std::io::Error::last_os_error(),
            ));
        }
        if pid == 0 {
            watchdog(root_fd, their_fd, timeout_ms);
        }
        drop(theirs);
        let mut freeze = BoundedFreeze {
            mountpoint: mountpoint.to_path_buf(),
            limit,
            watchdog: Some(pid),
            socket,
            fired: AtomicBool::new(false),
            started: Instant::now(),
        };
        // SAFETY: as for `freeze`: no argument is read, and `root` stays open during the call.
        match unsafe { rustix::ioctl::ioctl(&root, NoArg::<FIFREEZE>::new()) } {
            Ok(()) | Err(Errno::BUSY) => Ok(freeze),
            Err(e) => {
                freeze.stop_watchdog();
                Err(BackendError::io("freeze filesystem", mountpoint, e.into()))
            }
        }
    }

    /// The time limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Where the frozen filesystem is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the filesystem has stayed frozen since [`BoundedFreeze::start`]: `false` once the
    /// watchdog has begun to thaw it.
    pub fn intact(&self) -> bool {
        !self.watchdog_fired()
    }

    fn watchdog_fired(&self) -> bool {
        if self.fired.load(Ordering::SeqCst) {
            return true;
        }
        let mut byte = [0u8; 1];
        // End-of-file without the byte: the watchdog died without thawing (someone killed
        // it); the freeze itself is still in force.
        let fired = self.socket.set_nonblocking(true).is_err()
            || matches!((&self.socket).read(&mut byte), Ok(1) if byte[0] == THAWING);
        if fired {
            self.fired.store(true, Ordering::SeqCst);
        }
        fired
    }

    fn stop_watchdog(&mut self) {
        let Some(pid) = self.watchdog.take() else {
            return;
        };
        // SAFETY: `pid` is our own child, not yet reaped, so the id is still its own.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        let mut status = 0;
        // SAFETY: waits for that child; `status` is a valid place for its exit status.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {}
    }

    /// Stops the watchdog and thaws the filesystem (if the watchdog has not), and says whether
    /// the limit expired first.
    pub fn end(mut self) -> Result<FreezeEnd, BackendError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<FreezeEnd, BackendError> {
        let held = self.started.elapsed();
        self.stop_watchdog();
        let expired = self.watchdog_fired();
        thaw(&self.mountpoint)?;
        Ok(FreezeEnd {
            held: if expired { self.limit.min(held) } else { held },
            expired,
        })
    }
}

impl Drop for BoundedFreeze {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            if let Err(e) = self.finish() {
                tracing::warn!(error = %e, "cannot thaw a filesystem; its watchdog thaws it");
            }
        }
    }
}

/// The watchdog's life, in the forked child: wait until `timeout_ms` pass or the parent's end
/// of `socket` closes (the parent died), say so on `socket`, thaw the filesystem of `root`,
/// exit.
fn watchdog(root: i32, socket: i32, timeout_ms: i32) -> ! {
    let (low, high) = (root.min(socket), root.max(socket));
    // SAFETY: closes inherited descriptors other than the two this child uses (the daemon's
    // sockets, database, loop devices), so the child keeps nothing alive but the freeze.
    // close_range is a plain system call; failure (an old kernel) leaves them open.
    unsafe {
        if low > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (low - 1) as u32, 0u32);
        }
        if high > low + 1 {
            libc::syscall(
                libc::SYS_close_range,
                (low + 1) as u32,
                (high - 1) as u32,
                0u32,
            );
        }
        libc::syscall(libc::SYS_close_range, (high + 1) as u32, u32::MAX, 0u32);
    }
    let deadline = monotonic_ms().saturating_add(i64::from(timeout_ms));
    loop {
        let left = deadline
            .saturating_sub(monotonic_ms())
            .clamp(0, i64::from(i32::MAX)) as i32;
        let mut fds = [libc::pollfd {
            fd: socket,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, left) };
        let interrupted =
            ready < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
        if interrupted && left > 0 {
            continue;
        }
        break;
    }
    let byte = THAWING;
    // SAFETY: sends one byte from a live stack variable; MSG_NOSIGNAL, so a parent gone does
    // not kill this child with SIGPIPE before it thaws. Then FITHAW on the filesystem's root,
    // a descriptor this child holds open (no argument read), and `_exit`, which runs nothing
    // of the parent's.
    unsafe {
        libc::send(socket, (&byte as *const u8).cast(), 1, libc::MSG_NOSIGNAL);
        let _ = rustix::ioctl::ioctl(
            std::os::fd::BorrowedFd::borrow_raw(root),
            NoArg::<FITHAW>::new(),
        );
        libc::_exit(0)
    }
}

/// Milliseconds on the monotonic clock.
fn monotonic_ms() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    now.tv_sec * 1000 + now.tv_nsec / 1_000_000
}
