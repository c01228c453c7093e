//! Name locks: one mutex per volume name, made on first use, so operations on one volume run
//! one at a time and operations on different volumes run in parallel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::names::VolumeName;

/// How long a history operation waits for another operation on the same volume.
pub const BUSY_PATIENCE: Duration = Duration::from_secs(2);

/// One lock per volume name.
#[derive(Default)]
pub(super) struct NameLocks {
    locks: Mutex<HashMap<VolumeName, Arc<Mutex<()>>>>,
}

/// The lock of one name, not yet held.
pub(super) struct NameLock {
    lock: Arc<Mutex<()>>,
}

impl NameLocks {
    /// The lock of `name`.
    pub(super) fn get(&self, name: &VolumeName) -> NameLock {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        NameLock {
            lock: locks.entry(name.clone()).or_default().clone(),
        }
    }
}

impl NameLock {
    /// Waits for the lock.
    pub(super) fn hold(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the lock if it frees up within `patience`.
    pub(super) fn try_hold(&self, patience: Duration) -> Option<MutexGuard<'_, ()>> {
        let deadline = Instant::now() + patience;
        loop {
            match self.lock.try_lock() {
                Ok(guard) => return Some(guard),
                Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(TryLockError::WouldBlock) => return None,
            }
        }
    }
}
