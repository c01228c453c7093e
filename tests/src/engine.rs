//! How the tests share the one Docker Engine of the host, and leave it as they found it.
//!
//! # Sharing
//!
//! The tests run in parallel threads of one test binary, and one of them restarts the engine.
//! Every test that talks to the engine holds an [`EngineShare`] meanwhile (a daemon started for
//! Docker holds one for its lifetime, [`crate::docker_ready`] for its check); the restart test
//! holds the engine alone ([`EngineAlone`]), so it waits until no share is held, and later
//! shares wait until it is done.
//!
//! # What the engine keeps of a test daemon
//!
//! A daemon started for Docker serves the legacy plugin socket
//! `/run/docker/plugins/dvol-e2e-<random>.sock`. The engine (dockerd 20.10) keeps:
//!
//! - in `pkg/plugins`, every legacy plugin it activated, by name, with an HTTP client bound to
//!   the socket's path; removed only if an activation fails;
//! - in `volume/drivers` (`Store.extensions`, listed by `docker info` as `Plugins.Volume`), every
//!   legacy volume driver it looked up (`docker volume create -d`, `docker run
//!   --volume-driver`) or found while listing: `docker volume ls` and the lookup of a volume
//!   name it has no record of scan `/run/docker/plugins` and activate every socket there. An
//!   entry is never removed while the engine runs;
//! - in `volume/service` (`VolumeStore`), every volume name it was given, with its driver: in
//!   memory and in `/var/lib/docker/volumes/metadata.db`. A volume created as `NAME@PROFILE` or
//!   `NAME@snapshot-REF` is recorded under that name, while the driver lists it as `NAME`.
//!
//! Each call to a driver whose socket is gone costs about 15 s of connection retries
//! (`pkg/plugins` retries a refused connection with back-off and gives up after sleeping
//! 1+2+4+8 s). Looking up a volume name the engine has no record of (`docker volume inspect
//! NAME`, `docker volume rm NAME`) asks every driver of `Store.extensions` in turn; at start the
//! engine asks the driver of every volume `metadata.db` records (and of every container's
//! volume), and keeps the records it could not check. Hence:
//!
//! - a daemon that Docker does not need keeps its plugin socket in its own directory, where the
//!   engine never looks ([`crate::Daemon::start`]);
//! - when a daemon started for Docker is dropped, [`forget_driver`] makes the engine remove
//!   every volume it records for the daemon's driver, and no socket file is left;
//! - only a restart of the engine empties `Store.extensions`: `scripts/test.sh` restarts it
//!   after the tests (`scripts/start-dockerd.sh --restart`) and checks that a lookup of an
//!   unknown volume name is fast again.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::marker::PhantomData;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::docker;

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

// ---------------------------------------------------------------------------------------------
// Forgetting a test daemon's driver.
// ---------------------------------------------------------------------------------------------

/// Whether the engine has `driver` among its volume drivers (`docker info`'s `Plugins.Volume`,
/// which lists `Store.extensions`); `None` when the engine does not answer.
pub fn engine_knows_driver(driver: &str) -> Option<bool> {
    let out = docker(&["info", "--format", "{{json .Plugins.Volume}}"]);
    if !out.status.success() {
        return None;
    }
    let drivers: Vec<String> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Some(drivers.iter().any(|d| d == driver))
}

/// Makes the engine remove every volume it records for `driver`, whose daemon the caller has
/// stopped, and leaves no socket file at `socket`, the driver's plugin socket. Returns what
/// could not be done.
///
/// A [`StandIn`] answers on `socket` meanwhile. Its `List` fails, and for a driver whose `List`
/// fails, `docker volume ls --filter driver=DRIVER` lists every name the engine records for
/// that driver (`NAME`, `NAME@PROFILE`, `NAME@snapshot-REF`), not what the driver lists. Then
/// `docker volume rm -f` of each name (after removing the containers still using it) asks the
/// stand-in's `Get` and `Remove`, and the engine drops the name from memory and from
/// `metadata.db`. A driver the engine never loaded has no volumes; and listing it would load
/// it, so it is left alone.
pub fn forget_driver(driver: &str, socket: &Path) -> Result<(), String> {
    match engine_knows_driver(driver) {
        Some(true) => {}
        Some(false) => {
            let _ = std::fs::remove_file(socket);
            return Ok(());
        }
        None => {
            let _ = std::fs::remove_file(socket);
            return Err("the Docker Engine does not answer `docker info`".to_string());
        }
    }
    let stand_in =
        StandIn::serve(socket).map_err(|e| format!("a stand-in on {}: {e}", socket.display()))?;
    let recorded = recorded_volumes(driver)?;
    stand_in.recognize(&recorded);
    let mut problems: Vec<String> = recorded
        .iter()
        .filter_map(|name| remove_recorded_volume(name).err())
        .collect();
    let left = recorded_volumes(driver)?;
    drop(stand_in);
    if !left.is_empty() {
        problems.push(format!("the engine still records {left:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The names the engine records for `driver`, while a [`StandIn`] answers for it.
fn recorded_volumes(driver: &str) -> Result<Vec<String>, String> {
    let filter = format!("driver={driver}");
    let out = docker(&["volume", "ls", "-q", "--filter", &filter]);
    if !out.status.success() {
        return Err(format!(
            "docker volume ls --filter {filter}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// `docker volume rm -f NAME`; if a container still uses the volume, removes the containers
/// using it and tries again.
fn remove_recorded_volume(name: &str) -> Result<(), String> {
    let remove = || docker(&["volume", "rm", "-f", name]);
    if remove().status.success() {
        return Ok(());
    }
    let users = docker(&["ps", "-aq", "--filter", &format!("volume={name}")]);
    for id in String::from_utf8_lossy(&users.stdout).split_whitespace() {
        let _ = docker(&["rm", "-f", id]);
    }
    let out = remove();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "docker volume rm -f {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A minimal volume plugin on the socket of a test daemon that is gone, so the engine can
/// forget its volumes ([`forget_driver`]): `Plugin.Activate` and `Capabilities` answer as a
/// local volume driver; `List` fails; `Get` finds the names it was told to
/// ([`StandIn::recognize`]), with no mountpoint; `Remove`, `Path` and `Unmount` succeed;
/// `Create` and `Mount` fail. Answers every request on a connection of its own, and removes
/// the socket file when dropped.
pub struct StandIn {
    socket: PathBuf,
    known: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    /// Binds `socket` (replacing a stale socket file there) and answers on a thread.
    pub fn serve(socket: &Path) -> std::io::Result<StandIn> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let known = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (names, stopped) = (Arc::clone(&known), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let names = Arc::clone(&names);
                    std::thread::spawn(move || answer_one(stream, &names));
                }
            }
        });
        Ok(StandIn {
            socket: socket.to_path_buf(),
            known,
            stop,
            thread: Some(thread),
        })
    }

    /// Lets `Get` find `names` (and nothing else, so that the engine, probing every driver for
    /// a name it does not know, never records another test's name under this driver).
    pub fn recognize(&self, names: &[String]) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.extend(names.iter().cloned());
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, so that it sees the stop.
        let _ = UnixStream::connect(&self.socket);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Reads one request and answers it with `Connection: close`.
fn answer_one(mut stream: UnixStream, known: &Mutex<BTreeSet<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some((path, body)) = read_request(&mut stream) else {
        return;
    };
    let name = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["Name"].as_str().map(str::to_string))
        .unwrap_or_default();
    let recognized = known
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&name);
    let gone = "the dvol test daemon of this driver is gone";
    let answer = match path.trim_start_matches('/') {
        "Plugin.Activate" => json!({ "Implements": ["VolumeDriver"] }),
        "VolumeDriver.Capabilities" => json!({ "Capabilities": { "Scope": "local" } }),
        "VolumeDriver.Get" if recognized => {
            json!({ "Volume": { "Name": name, "Mountpoint": "" }, "Err": "" })
        }
        "VolumeDriver.Get" => json!({ "Err": format!("no volume named {name:?}") }),
        "VolumeDriver.Path" => json!({ "Mountpoint": "", "Err": "" }),
        "VolumeDriver.Remove" | "VolumeDriver.Unmount" => json!({ "Err": "" }),
        _ => json!({ "Err": gone }),
    };
    let body = answer.to_string();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()));
}

/// The path and body of one HTTP/1.1 request (a body only with `Content-Length`).
fn read_request(stream: &mut UnixStream) -> Option<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1)?.to_string();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, body))
}
