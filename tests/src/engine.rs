//! How the tests of one process share the one Docker Engine of the host.
//!
//! The tests run in parallel threads of one test binary, and one of them restarts the engine.
//! Every test that talks to the engine holds an [`EngineShare`] meanwhile (a daemon started for
//! Docker holds one for its lifetime, [`crate::docker_ready`] for its check); the restart test
//! holds the engine alone ([`EngineAlone`]), so it waits until no share is held, and later
//! shares wait until it is done.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::{MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Shared by every test that uses the engine; taken alone by the test that restarts it.
static ENGINE: RwLock<()> = RwLock::new(());

/// What this thread holds of [`ENGINE`]. Shares nest (a test may hold several, e.g. a daemon's
/// and a readiness check's): the first takes the read lock, the last one dropped releases it,
/// so a thread never waits for a lock it already holds.
enum Held {
    Nothing,
    Shares {
        count: usize,
        _guard: RwLockReadGuard<'static, ()>,
    },
    Alone,
}

thread_local! {
    static HELD: RefCell<Held> = const { RefCell::new(Held::Nothing) };
}

/// A share of the Docker Engine: while any is held, no test restarts the engine. Bound to the
/// thread that took it (it may still be shared by reference with other threads).
pub struct EngineShare {
    /// Taken while this thread held the engine alone: nothing to release.
    under_alone: bool,
    _thread_bound: PhantomData<MutexGuard<'static, ()>>,
}

impl EngineShare {
    /// Takes a share, waiting while a test restarts the engine.
    pub fn take() -> EngineShare {
        let under_alone = HELD.with(|held| {
            let mut held = held.borrow_mut();
            match &mut *held {
                Held::Alone => true,
                Held::Shares { count, .. } => {
                    *count += 1;
                    false
                }
                Held::Nothing => {
                    let guard = ENGINE.read().unwrap_or_else(PoisonError::into_inner);
                    *held = Held::Shares {
                        count: 1,
                        _guard: guard,
                    };
                    false
                }
            }
        });
        EngineShare {
            under_alone,
            _thread_bound: PhantomData,
        }
    }
}

impl Drop for EngineShare {
    fn drop(&mut self) {
        if self.under_alone {
            return;
        }
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if let Held::Shares { count, .. } = &mut *held {
                *count -= 1;
                if *count == 0 {
                    *held = Held::Nothing;
                }
            }
        });
    }
}

/// The Docker Engine held alone, for a test that stops and starts it: taking it waits until no
/// other test holds a share. Shares this thread takes meanwhile (its own daemon's) are free.
/// Declare it before the test's daemon, so that the daemon drops first.
pub struct EngineAlone {
    _guard: RwLockWriteGuard<'static, ()>,
}

impl EngineAlone {
    /// Waits until no other test uses the engine, then holds it alone.
    pub fn take() -> EngineAlone {
        HELD.with(|held| {
            assert!(
                matches!(*held.borrow(), Held::Nothing),
                "take the engine alone before anything in this test holds a share of it"
            );
        });
        let guard = ENGINE.write().unwrap_or_else(PoisonError::into_inner);
        HELD.with(|held| *held.borrow_mut() = Held::Alone);
        EngineAlone { _guard: guard }
    }
}

impl Drop for EngineAlone {
    fn drop(&mut self) {
        HELD.with(|held| *held.borrow_mut() = Held::Nothing);
    }
}
