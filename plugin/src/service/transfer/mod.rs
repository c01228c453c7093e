//! Volumes between hosts: remotes, push (this host sends), clone (this host receives), and
//! the receiving and sending halves of the protocol between daemons
//! ([`dvol_api::transfer`]).
//!
//! - [`remote`]: the remotes this daemon keeps, and the client that calls them;
//! - [`push`]: sending a volume's branch to a remote;
//! - [`receive`]: the receiving side of a push (sessions, the `have` query, the object
//!   stream, the branch move);
//! - [`clone`]: cloning a remote's volume, and the sending side of it (also of fetch);
//! - [`handover`]: moving a volume to a remote with its containers stopped only for the
//!   last delta;
//! - [`pull`]: fetching a remote's branch (objects and a remote-tracking ref) and pulling it
//!   into a local branch;
//! - [`retry`]: the daemon's own retry of a push, fetch or pull after a lost connection.
//!
//! What makes a transfer safe to cut at any moment:
//! - the receiver stores objects children first and only after their children (the history
//!   library's admission rule), durable in batches, so what arrived before a cut is a set of
//!   complete subtrees that a rerun does not send again (the receiver is asked which planned
//!   objects it holds);
//! - a receive leaves a marker in the history store while it is unfinished, so gc keeps the
//!   received objects for a day although no ref reaches them yet;
//! - the receiver's branch moves last, by compare-and-swap against the position the sender
//!   saw, once the whole closure of the new commit is durable; a branch that moved meanwhile
//!   is left alone and the push refused.

pub mod clone;
pub mod handover;
pub mod pull;
pub mod push;
pub mod receive;
pub mod remote;
pub mod retry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dvol_api::{IncomingPush, PushOffer};
use dvol_snapshot::CommitId;

use crate::error::TransferError;
use crate::names::VolumeName;

/// How long a new offer waits for the stream of the attempt it supersedes to stop.
const SUPERSEDE_PATIENCE: Duration = Duration::from_secs(30);

/// A receive session without a call for this long is forgotten (its objects stay; a rerun
/// starts a new session and finds them).
const SESSION_IDLE: Duration = Duration::from_secs(3600);

/// The receiving side of one push in progress.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// What the sender offered.
    pub offer: PushOffer,
    /// The volume on this host.
    pub volume: VolumeName,
    /// When a call last used the session.
    pub touched: Instant,
    /// Whether an object stream is being received.
    pub receiving: bool,
    /// Told when a newer offer of the same session supersedes the stream being received.
    pub stop: Arc<tokio::sync::Notify>,
    /// When the offer came.
    pub offered_at: chrono::DateTime<chrono::Utc>,
    /// How far its object stream got.
    pub stream: Arc<StreamCount>,
}

/// The stored bytes of a session's object stream: declared, and arrived so far.
#[derive(Debug, Default)]
pub(crate) struct StreamCount {
    declared: AtomicU64,
    received: AtomicU64,
}

impl Session {
    /// The session as `GET /v1/incoming` shows it.
    pub fn view(&self) -> IncomingPush {
        IncomingPush {
            volume: self.volume.to_string(),
            branch: self.offer.branch.clone(),
            commit: self.offer.tip.clone(),
            sender: self.offer.sender,
            offered_at: self.offered_at.to_rfc3339(),
            receiving: self.receiving,
            bytes_declared: self.stream.declared.load(Ordering::Relaxed),
            bytes_received: self.stream.received.load(Ordering::Relaxed),
        }
    }
}

/// The progress of a receive session's object stream: counted in the session, and logged at
/// most every [`PROGRESS_LOG_EVERY`].
pub(crate) struct StreamProgress {
    count: Arc<StreamCount>,
    volume: VolumeName,
    session: String,
    started: Instant,
    logged: Mutex<Instant>,
}

/// How often a receive logs how far it got.
const PROGRESS_LOG_EVERY: Duration = Duration::from_secs(5);

impl StreamProgress {
    /// The progress of `session`'s stream into `volume`.
    pub fn new(session: &Session, id: &str) -> Self {
        let now = Instant::now();
        StreamProgress {
            count: session.stream.clone(),
            volume: session.volume.clone(),
            session: id.to_string(),
            started: now,
            logged: Mutex::new(now),
        }
    }
}

impl dvol_snapshot::Progress for StreamProgress {
    fn start(&self, _phase: dvol_snapshot::Phase, total: Option<u64>) {
        self.count
            .declared
            .store(total.unwrap_or(0), Ordering::Relaxed);
        self.count.received.store(0, Ordering::Relaxed);
    }

    fn advance(&self, n: u64) {
        let received = self.count.received.fetch_add(n, Ordering::Relaxed) + n;
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.elapsed() >= PROGRESS_LOG_EVERY {
            *logged = Instant::now();
            let declared = self.count.declared.load(Ordering::Relaxed);
            let secs = self.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(volume = %self.volume, session = %self.session, bytes = received, of = declared, mb_per_s = format!("{:.1}", received as f64 / secs / 1e6), "receiving objects");
        }
    }

    fn finish(&self) {}
}

/// The receive sessions of this daemon.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// One lock per receiving volume, held from a finish's look at the branch to its move:
    /// of two pushes finishing at once, the second sees where the first moved the branch.
    finishing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Sessions {
    /// The lock that serialises the finishes of pushes into `volume`.
    pub fn finish_lock(&self, volume: &VolumeName) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.finishing.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        map.entry(volume.to_string()).or_default().clone()
    }

    /// Starts (or restarts) session `id`. A stream the session still receives belongs to an
    /// earlier attempt of the same sender (its connection cut, say, before this host noticed):
    /// it is told to stop, and waited for (at most [`SUPERSEDE_PATIENCE`]; blocking) while it
    /// keeps what arrived whole.
    pub fn start(&self, id: &str, session: Session) -> Result<(), TransferError> {
        let deadline = Instant::now() + SUPERSEDE_PATIENCE;
        let mut told = false;
        loop {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, s| s.receiving || s.touched.elapsed() < SESSION_IDLE);
            match map.get(id) {
                Some(old) if old.receiving => {
                    if !told {
                        tracing::warn!(session = id, volume = %old.volume, "a newer offer of this push supersedes the object stream still being received; stopping it");
                        old.stop.notify_one();
                        told = true;
                    }
                    if Instant::now() >= deadline {
                        return Err(TransferError::BadStream {
                            volume: session.volume.clone(),
                            problem: format!(
                                "a push of branch {} from the same host is still receiving objects after {} s; wait for it to finish",
                                session.offer.branch,
                                SUPERSEDE_PATIENCE.as_secs()
                            ),
                        });
                    }
                }
                _ => {
                    map.insert(id.to_string(), session);
                    return Ok(());
                }
            }
            drop(map);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The session `id`, touched.
    pub fn get(&self, id: &str) -> Result<Session, TransferError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let session = map.get_mut(id).ok_or_else(|| TransferError::NoSession {
            session: id.to_string(),
        })?;
        session.touched = Instant::now();
        Ok(session.clone())
    }

    /// Marks session `id` as receiving objects (refused if it already is); `false` clears it.
    pub fn set_receiving(&self, id: &str, receiving: bool) -> Result<(), TransferError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let session = map.get_mut(id).ok_or_else(|| TransferError::NoSession {
            session: id.to_string(),
        })?;
        if receiving && session.receiving {
            return Err(TransferError::BadStream {
                volume: session.volume.clone(),
                problem: "this session is receiving objects already".into(),
            });
        }
        session.receiving = receiving;
        session.touched = Instant::now();
        Ok(())
    }

    /// The sessions, oldest offer first.
    pub fn list(&self) -> Vec<Session> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut sessions: Vec<Session> = map
            .values()
            .filter(|s| s.receiving || s.touched.elapsed() < SESSION_IDLE)
            .cloned()
            .collect();
        sessions.sort_by_key(|s| s.offered_at);
        sessions
    }

    /// Forgets session `id`.
    pub fn end(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }
}

/// How many commits of each side a divergence report lists.
const DIVERGENCE_LISTED: usize = 20;

impl super::VolumeService {
    /// The commits `tip` has that no commit of `base` reaches, newest first (at most
    /// [`DIVERGENCE_LISTED`]), each as `ID first-line-of-message`: one side of a divergence.
    pub(crate) fn commits_between(
        &self,
        volume: &VolumeName,
        tip: CommitId,
        base: &[CommitId],
    ) -> Result<Vec<String>, crate::error::ServiceError> {
        use crate::error::ForVolume;
        let mut ids = self.history.commits_not_in(tip, base).for_volume(volume)?;
        ids.reverse();
        ids.iter()
            .take(DIVERGENCE_LISTED)
            .map(|c| {
                let commit = self.history.read_commit(*c).for_volume(volume)?;
                let message = commit.info.message.lines().next().unwrap_or("");
                Ok(format!("{} {message}", c.short(12)))
            })
            .collect()
    }

    /// Keeps commit `at` as branch `BRANCH-stash-DATE-ID` of `volume` before a diverged
    /// `branch` is moved (`why`: what moves it, for the reflog); answers the stash's name.
    pub(crate) fn stash_branch(
        &self,
        volume: &crate::volume::Volume,
        branch: &str,
        at: CommitId,
        why: &str,
    ) -> Result<String, crate::error::ServiceError> {
        use crate::error::ForVolume;
        let stash = format!(
            "{branch}-stash-{}-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S"),
            at.short(7)
        );
        self.history
            .create_branch(&dvol_snapshot::VolumeKey(volume.id), &stash, at, why)
            .for_volume(&volume.name)?;
        tracing::info!(volume = %volume.name, stash = %stash, commit = %at, "kept the diverged branch");
        Ok(stash)
    }

    /// Where `volume`'s branch `branch` points.
    pub(crate) fn branch_tip(
        &self,
        volume: &crate::volume::Volume,
        branch: &str,
    ) -> Result<CommitId, crate::error::ServiceError> {
        use crate::error::ForVolume;
        let key = dvol_snapshot::VolumeKey(volume.id);
        let branches = self.history.branches(&key).for_volume(&volume.name)?;
        if let Some(found) = branches.iter().find(|b| b.name == branch) {
            return Ok(found.commit);
        }
        let names: Vec<&str> = branches.iter().map(|b| b.name.as_str()).collect();
        Err(crate::error::ServiceError::History {
            volume: volume.name.clone(),
            source: dvol_snapshot::Error::NoSuchRef {
                volume: key,
                what: "branch",
                name: branch.to_string(),
                available: format!("branches: {}", names.join(", ")),
            },
        })
    }
}

/// A commit id from the wire.
pub(crate) fn parse_commit(volume: &VolumeName, text: &str) -> Result<CommitId, TransferError> {
    text.parse().map_err(|e| TransferError::BadStream {
        volume: volume.clone(),
        problem: format!("{text:?} is not a commit id: {e}"),
    })
}

/// The session id of a push of `branch` of `volume` from `sender`: the same for a rerun, so
/// that its receive marker is reused.
pub(crate) fn session_id(sender: uuid::Uuid, volume: &str, branch: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in [
        sender.as_bytes().as_slice(),
        volume.as_bytes(),
        branch.as_bytes(),
    ] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    format!("push-{}", &hasher.finalize().to_hex()[..24])
}

/// Whether `error`, or an error it was caused by, is the filesystem being full (`ENOSPC`, or
/// `EDQUOT` for a quota).
pub(crate) fn out_of_space(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded
            {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::out_of_space;

    #[test]
    fn a_full_disk_is_recognised_through_the_errors_it_caused() {
        let full = std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
        let store = dvol_snapshot::store::StoreError::Io {
            op: "write",
            path: "/x".into(),
            source: full,
        };
        let received = dvol_snapshot::receive::ReceiveError::Store(store);
        assert!(out_of_space(&received));
        let other = std::io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error());
        assert!(!out_of_space(&other));
    }
}
