//! Volume history: commit, log, branch, tag, checkout, reset, diff, clone, fsck, gc.
//!
//! The history library (`dvol-snapshot`) stores content-addressed snapshots of a volume's
//! files; this module ties it to volumes: it finds the volume, holds its lock, makes its data
//! reachable (mounting it for the operation if no container has it mounted), and shapes the
//! results for the API. Stopping and starting the containers around checkout and reset is
//! done by the API layer ([`crate::containers`]), before this module takes the lock.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, Instant};

use dvol_backends::mount_table::is_mount_point;
use dvol_backends::{Backend, Effect, ReadPoint, VolumeSpec};
use dvol_snapshot::{ChangeKind, CommitId, CommitInfo, NoProgress, Progress, VolumeKey};
use serde::Serialize;
use tracing::{info, warn};

use crate::error::ServiceError;
use crate::names::VolumeRef;
use crate::service::VolumeService;
use crate::volume::Volume;

/// How a commit read the volume's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// A copy-on-write snapshot of the volume (LVM thin snapshot, reflinked image); the
    /// containers using it went on writing.
    Snapshot,
    /// The volume's filesystem, frozen while it was read; writers waited.
    Frozen,
    /// The data as it was: no container used the volume, or its backend (a directory) has no
    /// way to fix it, so only `--pause` makes the commit consistent.
    Live,
}

/// How an operation reaches a volume's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// The live data, for operations that write it (checkout, reset) or compare it (status).
    Live,
    /// The data fixed at one instant while containers use the volume (commit, clone from a
    /// volume): a copy-on-write snapshot or a frozen filesystem, as the backend can.
    PointInTime,
}

/// How long a history operation waits for another operation on the same volume.
pub const BUSY_PATIENCE: Duration = Duration::from_secs(2);

/// A commit as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CommitView {
    /// Full commit id (hex).
    pub id: String,
    /// Parent ids, first parent first.
    pub parents: Vec<String>,
    /// The message.
    pub message: String,
    /// Who made it.
    pub author: String,
    /// When, RFC 3339.
    pub time: String,
    /// Branches and tags pointing at it.
    pub refs: Vec<String>,
}

/// The result of a commit.
#[derive(Debug, Clone, Serialize)]
pub struct CommitResult {
    /// The new commit, or HEAD's commit when nothing changed (`changed` false: nothing is
    /// recorded then).
    pub commit: CommitView,
    /// The checked-out branch (moved only when `changed`), if not detached.
    pub branch: Option<String>,
    /// Whether the files differ from the previous commit.
    pub changed: bool,
    /// How the volume's data was fixed while it was read.
    pub read_from: ReadFrom,
    /// Files looked at.
    pub files_scanned: u64,
    /// Files read again because they changed.
    pub files_reread: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Objects that were not in the store yet.
    pub new_objects: u64,
    /// Bytes those objects take on disk.
    pub new_bytes_stored: u64,
}

/// A volume's log: its commits (newest first) and where HEAD is.
#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    /// The checked-out branch, if not detached.
    pub branch: Option<String>,
    /// The commit HEAD points at.
    pub head: Option<String>,
    /// Commits reachable from any branch or tag, children before parents.
    pub commits: Vec<CommitView>,
}

/// A branch or tag.
#[derive(Debug, Clone, Serialize)]
pub struct RefView {
    /// Its name.
    pub name: String,
    /// The commit it points at.
    pub commit: String,
    /// Whether it is checked out (branches only).
    pub current: bool,
}

/// One path that differs.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeView {
    /// Path inside the volume.
    pub path: String,
    /// added, removed or modified.
    pub kind: &'static str,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size before.
    pub old_size: Option<u64>,
    /// Size after.
    pub new_size: Option<u64>,
}

/// The result of a checkout or reset.
#[derive(Debug, Clone, Serialize)]
pub struct CheckoutView {
    /// The checked-out branch, if not detached.
    pub branch: Option<String>,
    /// The commit now in the volume.
    pub commit: String,
    /// Files written.
    pub files_written: u64,
    /// Files already right.
    pub files_unchanged: u64,
    /// Paths removed.
    pub removed: u64,
    /// Bytes written.
    pub bytes_written: u64,
}

/// What a `NAME@snapshot-REF` or `-o from=REF` clone starts from.
#[derive(Debug, Clone)]
pub enum CloneSource {
    /// A commit of any volume.
    Commit(CommitId),
    /// Another volume's current state.
    Volume(Volume),
}

fn change_view(change: &dvol_snapshot::Change) -> ChangeView {
    ChangeView {
        path: change.path.display().to_string(),
        kind: match change.kind {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Modified => "modified",
        },
        is_dir: change.is_dir,
        old_size: change.old_size,
        new_size: change.new_size,
    }
}

impl VolumeService {
    fn history_error(volume: &Volume) -> impl Fn(dvol_snapshot::Error) -> ServiceError + '_ {
        move |source| ServiceError::History {
            volume: volume.name.to_string(),
            source,
        }
    }

    /// Runs `work` with the volume locked and its live data reachable at its mountpoint. A
    /// volume no container uses is mounted for the operation and unmounted after.
    pub(crate) fn with_data<T>(
        &self,
        reference: &str,
        work: impl FnOnce(&Volume, &Path) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        self.with_volume_data(reference, Access::Live, |volume, data, _| {
            work(volume, data)
        })
    }

    /// Like [`VolumeService::with_data`], for reading: the data of a volume that containers
    /// use is first fixed at one instant, and `work` learns how ([`ReadFrom`]).
    pub(crate) fn with_fixed_data<T>(
        &self,
        reference: &str,
        work: impl FnOnce(&Volume, &Path, ReadFrom) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        self.with_volume_data(reference, Access::PointInTime, work)
    }

    fn with_volume_data<T>(
        &self,
        reference: &str,
        access: Access,
        work: impl FnOnce(&Volume, &Path, ReadFrom) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let reference = VolumeRef::parse(reference)?;
        let lock = self.locks_get(&reference.name);
        let _guard = lock
            .try_hold(BUSY_PATIENCE)
            .ok_or_else(|| ServiceError::Busy {
                volume: reference.name.to_string(),
            })?;
        let volume = self.lookup(&reference)?;
        let mountpoint = self.mountpoint(&volume);
        let backend = self.backend(&volume)?;
        let failed = |source| ServiceError::Backend {
            volume: volume.name.to_string(),
            source,
        };
        let mounted_here = backend
            .mount(&Self::spec(&volume), &mountpoint)
            .map_err(failed)?
            == Effect::Changed;
        let result = if mounted_here || access == Access::Live {
            work(&volume, &mountpoint, ReadFrom::Live)
        } else {
            self.at_read_point(&volume, backend.as_ref(), &mountpoint, |data, read_from| {
                work(&volume, data, read_from)
            })
        };
        if mounted_here {
            if let Err(e) = backend.unmount(volume.id, &mountpoint) {
                warn!(volume = %volume.name, error = %e, "could not unmount after a history operation");
            }
        }
        result
    }

    /// Runs `work` on the data of the volume mounted at `mountpoint` fixed at one instant
    /// (a copy-on-write snapshot or a frozen filesystem, as the backend can), then releases
    /// the point. The scratch directory marks the point until it is released, so a crash
    /// leaves a mark the next start releases.
    fn at_read_point<T>(
        &self,
        volume: &Volume,
        backend: &dyn Backend,
        mountpoint: &Path,
        work: impl FnOnce(&Path, ReadFrom) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let failed = |source| ServiceError::Backend {
            volume: volume.name.to_string(),
            source,
        };
        let scratch = self.layout().read_point(volume.id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&scratch)
            .map_err(|source| ServiceError::Root {
                path: scratch.clone(),
                source,
            })?;
        let started = Instant::now();
        let result = backend
            .read_point(&Self::spec(volume), mountpoint, &scratch)
            .map_err(failed)
            .and_then(|point| {
                info!(volume = %volume.name, point = ?point, "reading at a fixed point");
                match point {
                    ReadPoint::Snapshot(path) => work(&path, ReadFrom::Snapshot),
                    ReadPoint::Frozen => work(mountpoint, ReadFrom::Frozen),
                    ReadPoint::Live => work(mountpoint, ReadFrom::Live),
                }
            });
        // Released whatever happened: a frozen filesystem must not outlive the operation.
        match backend.release_read_point(volume.id, mountpoint, &scratch) {
            Ok(_) => {
                if let Err(e) = std::fs::remove_dir(&scratch) {
                    warn!(volume = %volume.name, error = %e, "could not remove read point directory");
                }
                info!(volume = %volume.name, held_ms = started.elapsed().as_millis() as u64, "read point released");
                result
            }
            Err(e) => {
                warn!(volume = %volume.name, error = %e, "could not release read point; retried at next start");
                result.and(Err(failed(e)))
            }
        }
    }

    /// Releases the read points a crash left behind (their scratch directories remain), so
    /// no volume stays frozen and no snapshot lingers. Called at start, before anything else
    /// touches the volumes.
    pub(crate) fn release_stale_read_points(&self, volumes: &[Volume]) {
        let Ok(entries) = std::fs::read_dir(self.layout().read_points_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let scratch = entry.path();
            let volume = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<uuid::Uuid>().ok())
                .and_then(|id| volumes.iter().find(|v| v.id == id));
            let Some(volume) = volume else {
                warn!(path = %scratch.display(), "read point of no known volume; left untouched");
                continue;
            };
            let released = self.backend(volume).and_then(|backend| {
                backend
                    .release_read_point(volume.id, &self.mountpoint(volume), &scratch)
                    .map_err(|source| ServiceError::Backend {
                        volume: volume.name.to_string(),
                        source,
                    })
            });
            match released {
                Ok(effect) => {
                    info!(volume = %volume.name, ?effect, "released a read point left by a crash");
                    if let Err(e) = std::fs::remove_dir(&scratch) {
                        warn!(volume = %volume.name, error = %e, "could not remove read point directory");
                    }
                }
                Err(e) => {
                    warn!(volume = %volume.name, error = %e, "could not release a read point left by a crash")
                }
            }
        }
    }

    fn commit_view(&self, volume: &Volume, commit: &dvol_snapshot::Commit) -> CommitView {
        let key = VolumeKey(volume.id);
        let mut refs: Vec<String> = self
            .history
            .branches(&key)
            .unwrap_or_default()
            .into_iter()
            .filter(|b| b.commit == commit.id)
            .map(|b| b.name)
            .collect();
        refs.extend(
            self.history
                .tags(&key)
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.commit == commit.id)
                .map(|t| format!("tag: {}", t.name)),
        );
        CommitView {
            id: commit.id.to_string(),
            parents: commit.parents.iter().map(ToString::to_string).collect(),
            message: commit.info.message.clone(),
            author: commit.info.author.clone(),
            time: dvol_snapshot::object::format_time(&commit.info.time),
            refs,
        }
    }

    /// Records the volume's current files as a commit on the checked-out branch.
    pub fn commit(
        &self,
        reference: &str,
        message: &str,
        author: &str,
        progress: &dyn Progress,
    ) -> Result<CommitResult, ServiceError> {
        self.with_fixed_data(reference, |volume, data, read_from| {
            let key = VolumeKey(volume.id);
            let history = Self::history_error(volume);
            let info = CommitInfo::now(message, author);
            let committed = self.history.commit(&key, data, info, progress).map_err(&history)?;
            let commit = self.history.read_commit(committed.id).map_err(&history)?;
            let head = self.history.head(&key).map_err(&history)?;
            info!(volume = %volume.name, commit = %committed.id, files_reread = committed.stats.files_reread, "committed");
            Ok(CommitResult {
                commit: self.commit_view(volume, &commit),
                branch: head.branch,
                changed: !committed.stats.unchanged,
                read_from,
                files_scanned: committed.stats.files_scanned,
                files_reread: committed.stats.files_reread,
                bytes_read: committed.stats.bytes_read,
                new_objects: committed.stats.new_objects,
                new_bytes_stored: committed.stats.new_bytes_stored,
            })
        })
    }

    /// The volume's commits and HEAD.
    pub fn log(&self, reference: &str) -> Result<LogView, ServiceError> {
        let volume = self.get(reference)?;
        let key = VolumeKey(volume.id);
        let history = Self::history_error(&volume);
        let head = self.history.head(&key).map_err(&history)?;
        let commits = self.history.history(&key).map_err(&history)?;
        Ok(LogView {
            branch: head.branch,
            head: head.commit.map(|c| c.to_string()),
            commits: commits
                .iter()
                .map(|c| self.commit_view(&volume, c))
                .collect(),
        })
    }

    /// The volume's branches.
    pub fn branches(&self, reference: &str) -> Result<Vec<RefView>, ServiceError> {
        let volume = self.get(reference)?;
        let branches = self
            .history
            .branches(&VolumeKey(volume.id))
            .map_err(Self::history_error(&volume))?;
        Ok(branches
            .into_iter()
            .map(|b| RefView {
                name: b.name,
                commit: b.commit.to_string(),
                current: b.current,
            })
            .collect())
    }

    /// The volume's tags.
    pub fn tags(&self, reference: &str) -> Result<Vec<RefView>, ServiceError> {
        let volume = self.get(reference)?;
        let tags = self
            .history
            .tags(&VolumeKey(volume.id))
            .map_err(Self::history_error(&volume))?;
        Ok(tags
            .into_iter()
            .map(|t| RefView {
                name: t.name,
                commit: t.commit.to_string(),
                current: false,
            })
            .collect())
    }

    /// Creates a branch (`tag` false) or tag at `at` (default HEAD).
    pub fn create_ref(
        &self,
        reference: &str,
        name: &str,
        at: Option<&str>,
        tag: bool,
    ) -> Result<RefView, ServiceError> {
        let volume = self.get(reference)?;
        let key = VolumeKey(volume.id);
        let history = Self::history_error(&volume);
        let commit = self
            .history
            .resolve(&key, at.unwrap_or("HEAD"))
            .map_err(&history)?;
        if tag {
            self.history
                .create_tag(&key, name, commit)
                .map_err(&history)?;
        } else {
            self.history
                .create_branch(&key, name, commit)
                .map_err(&history)?;
        }
        Ok(RefView {
            name: name.to_string(),
            commit: commit.to_string(),
            current: false,
        })
    }

    /// Deletes a branch; the checked-out one is refused.
    pub fn delete_branch(&self, reference: &str, branch: &str) -> Result<(), ServiceError> {
        let volume = self.get(reference)?;
        self.history
            .delete_branch(&VolumeKey(volume.id), branch)
            .map_err(Self::history_error(&volume))
    }

    /// Uncommitted changes in the volume against HEAD.
    pub fn status(&self, reference: &str) -> Result<Vec<ChangeView>, ServiceError> {
        self.with_data(reference, |volume, data| {
            let changes = self
                .history
                .status(&VolumeKey(volume.id), data)
                .map_err(Self::history_error(volume))?;
            Ok(changes.iter().map(change_view).collect())
        })
    }

    /// Differences from `from` to `to` (default HEAD).
    pub fn diff(
        &self,
        reference: &str,
        from: &str,
        to: Option<&str>,
    ) -> Result<Vec<ChangeView>, ServiceError> {
        let volume = self.get(reference)?;
        let key = VolumeKey(volume.id);
        let history = Self::history_error(&volume);
        let a = self.history.resolve(&key, from).map_err(&history)?;
        let b = self
            .history
            .resolve(&key, to.unwrap_or("HEAD"))
            .map_err(&history)?;
        let changes = self.history.diff(a, b).map_err(&history)?;
        Ok(changes.iter().map(change_view).collect())
    }

    /// Refuses when the volume has uncommitted changes, before anything is stopped or written.
    pub fn check_committed(&self, reference: &str) -> Result<(), ServiceError> {
        self.with_data(reference, |volume, data| {
            self.refuse_uncommitted(volume, data)
        })
    }

    fn refuse_uncommitted(&self, volume: &Volume, data: &Path) -> Result<(), ServiceError> {
        let key = VolumeKey(volume.id);
        if self
            .history
            .head(&key)
            .map_err(Self::history_error(volume))?
            .commit
            .is_none()
        {
            return Ok(());
        }
        let changes = self
            .history
            .status(&key, data)
            .map_err(Self::history_error(volume))?;
        if changes.is_empty() {
            return Ok(());
        }
        let mut summary = format!("{} path(s): ", changes.len());
        let shown: Vec<String> = changes
            .iter()
            .take(3)
            .map(|c| c.path.display().to_string())
            .collect();
        summary.push_str(&shown.join(", "));
        if changes.len() > 3 {
            summary.push_str(", ...");
        }
        Err(ServiceError::Uncommitted {
            volume: volume.name.to_string(),
            summary,
        })
    }

    /// Checks out `rev` into the volume: a branch becomes the current branch; anything else
    /// detaches HEAD. With `new_branch`, creates that branch at `rev` first and checks it out.
    /// Uncommitted changes are refused unless `force`.
    pub fn checkout(
        &self,
        reference: &str,
        rev: &str,
        new_branch: Option<&str>,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<CheckoutView, ServiceError> {
        self.with_data(reference, |volume, data| {
            let key = VolumeKey(volume.id);
            let history = Self::history_error(volume);
            if !force {
                self.refuse_uncommitted(volume, data)?;
            }
            let commit = self.history.resolve(&key, rev).map_err(&history)?;
            let stats = self.history.checkout(&key, commit, data, progress).map_err(&history)?;
            let branch = match new_branch {
                Some(name) => {
                    self.history.create_branch(&key, name, commit).map_err(&history)?;
                    Some(name.to_string())
                }
                None => self
                    .history
                    .branches(&key)
                    .map_err(&history)?
                    .into_iter()
                    .find(|b| b.name == rev)
                    .map(|b| b.name),
            };
            match &branch {
                Some(name) => self.history.set_head_branch(&key, name),
                None => self.history.set_head_detached(&key, commit),
            }
            .map_err(&history)?;
            info!(volume = %volume.name, %commit, branch = ?branch, files_written = stats.files_written, "checked out");
            Ok(CheckoutView {
                branch,
                commit: commit.to_string(),
                files_written: stats.files_written,
                files_unchanged: stats.files_unchanged,
                removed: stats.removed,
                bytes_written: stats.bytes_written,
            })
        })
    }

    /// `reset --hard REV`: the volume's files and its current branch (or detached HEAD) go to
    /// `rev`; uncommitted changes are discarded.
    pub fn reset_hard(
        &self,
        reference: &str,
        rev: &str,
        progress: &dyn Progress,
    ) -> Result<CheckoutView, ServiceError> {
        self.with_data(reference, |volume, data| {
            let key = VolumeKey(volume.id);
            let history = Self::history_error(volume);
            let commit = self.history.resolve(&key, rev).map_err(&history)?;
            let stats = self
                .history
                .checkout(&key, commit, data, progress)
                .map_err(&history)?;
            let head = self.history.head(&key).map_err(&history)?;
            match &head.branch {
                Some(branch) => self.history.set_branch(&key, branch, commit),
                None => self.history.set_head_detached(&key, commit),
            }
            .map_err(&history)?;
            info!(volume = %volume.name, %commit, "reset");
            Ok(CheckoutView {
                branch: head.branch,
                commit: commit.to_string(),
                files_written: stats.files_written,
                files_unchanged: stats.files_unchanged,
                removed: stats.removed,
                bytes_written: stats.bytes_written,
            })
        })
    }

    /// Finds what `prefix` (6+ hex digits of a volume UUID or a commit id) names. Several
    /// matches, or none, are an error that lists what there is.
    pub(crate) fn resolve_clone_source(
        &self,
        volume: &crate::names::VolumeName,
        prefix: &str,
    ) -> Result<CloneSource, ServiceError> {
        let problem = |problem: String| ServiceError::CloneSource {
            volume: volume.to_string(),
            reference: prefix.to_string(),
            problem,
        };
        let wanted = prefix.to_ascii_lowercase().replace('-', "");
        if wanted.len() < 6 || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(problem(
                "is not at least 6 hex digits of a volume UUID or commit id".into(),
            ));
        }
        let volumes: Vec<Volume> = self
            .list()
            .into_iter()
            .filter(|v| v.id.simple().to_string().starts_with(&wanted))
            .collect();
        let commit = match self.history.find_commit(&wanted) {
            Ok(found) => found,
            Err(dvol_snapshot::Error::AmbiguousPrefix { candidates, .. }) => {
                return Err(problem(format!(
                    "is ambiguous: it matches commits {candidates}; give more digits"
                )))
            }
            Err(source) => {
                return Err(ServiceError::History {
                    volume: volume.to_string(),
                    source,
                })
            }
        };
        match (volumes.as_slice(), commit) {
            ([one], None) => Ok(CloneSource::Volume(one.clone())),
            ([], Some(commit)) => Ok(CloneSource::Commit(commit)),
            ([], None) => Err(problem(
                "matches no volume UUID and no commit; `docker volume inspect` shows volume UUIDs, `dvol log` commit ids".into(),
            )),
            (many, commit) => {
                let mut candidates: Vec<String> =
                    many.iter().map(|v| format!("volume {} ({})", v.name, v.id)).collect();
                candidates.extend(commit.map(|c| format!("commit {c}")));
                Err(problem(format!("is ambiguous: it matches {}; give more digits", candidates.join(", "))))
            }
        }
    }

    /// Makes `volume` (not yet created) a copy-on-write copy of `from` when both live in the
    /// same backend and it can share blocks: constant time, and `from`'s containers are not
    /// stopped (its filesystem is frozen for the instant of the copy). The copy starts with
    /// no commits. `None` when the backend cannot: the caller copies the files instead.
    pub(crate) fn instant_clone(
        &self,
        backend: &dyn Backend,
        spec: &VolumeSpec,
        volume: &Volume,
        from: &Volume,
    ) -> Result<Option<Effect>, ServiceError> {
        if from.backend != volume.backend || from.location != volume.location {
            return Ok(None);
        }
        let lock = self.locks_get(&from.name);
        let _guard = lock
            .try_hold(BUSY_PATIENCE)
            .ok_or_else(|| ServiceError::Busy {
                volume: from.name.to_string(),
            })?;
        let failed = |source| ServiceError::Backend {
            volume: volume.name.to_string(),
            source,
        };
        let mountpoint = self.mountpoint(from);
        let mounted = is_mount_point(&mountpoint).map_err(failed)?;
        backend
            .clone_volume(
                &Self::spec(from),
                mounted.then_some(mountpoint.as_path()),
                spec,
            )
            .map_err(failed)
    }

    /// Fills a freshly created volume from its clone source. Cloning from a volume reads the
    /// source's current files without stopping its containers; the clone's history starts
    /// with that state as its first commit.
    pub(crate) fn fill_clone(
        &self,
        volume: &Volume,
        source: &CloneSource,
    ) -> Result<(), ServiceError> {
        let key = VolumeKey(volume.id);
        let history = Self::history_error(volume);
        let commit = match source {
            CloneSource::Commit(commit) => *commit,
            CloneSource::Volume(from) => {
                let message = format!("clone of volume {} ({})", from.name, from.id);
                self.with_fixed_data(from.name.as_str(), |_, data, _| {
                    // The clone's own history records the source's state; the source's
                    // branches and index are not touched.
                    self.history
                        .commit(&key, data, CommitInfo::now(message, "dvol"), &NoProgress)
                        .map(|c| c.id)
                        .map_err(&history)
                })?
            }
        };
        let mountpoint = self.mountpoint(volume);
        let backend = self.backend(volume)?;
        let failed = |source| ServiceError::Backend {
            volume: volume.name.to_string(),
            source,
        };
        backend
            .mount(&Self::spec(volume), &mountpoint)
            .map_err(failed)?;
        let filled = match source {
            CloneSource::Commit(_) => {
                let owner = VolumeKey(uuid::Uuid::nil());
                self.history
                    .clone_volume(&owner, commit, &key, &mountpoint, &NoProgress)
                    .map(drop)
            }
            CloneSource::Volume(_) => self
                .history
                .checkout(&key, commit, &mountpoint, &NoProgress)
                .map(drop),
        }
        .map_err(&history);
        backend.unmount(volume.id, &mountpoint).map_err(failed)?;
        filled?;
        info!(volume = %volume.name, %commit, "filled from clone source");
        Ok(())
    }

    /// Re-reads and re-hashes every object; reports what is corrupt or missing.
    pub fn fsck(&self, progress: &dyn Progress) -> Result<dvol_snapshot::FsckReport, ServiceError> {
        self.history
            .fsck(progress)
            .map_err(|source| ServiceError::History {
                volume: "(all)".into(),
                source,
            })
    }

    /// Deletes objects no branch, tag or index refers to.
    pub fn gc(&self, progress: &dyn Progress) -> Result<dvol_snapshot::GcReport, ServiceError> {
        self.history
            .gc(progress)
            .map_err(|source| ServiceError::History {
                volume: "(all)".into(),
                source,
            })
    }

    /// The names the Docker Engine may know the volume by: its name and recorded aliases.
    pub fn docker_names(&self, volume: &Volume) -> Vec<String> {
        let mut names = vec![volume.name.to_string()];
        names.extend(self.store_aliases(volume));
        names
    }

    /// Sets the driver name the Docker Engine knows this plugin by (the plugin socket's name),
    /// so only containers mounting volumes through this plugin are stopped.
    pub fn set_docker_driver(&mut self, driver: &str) {
        self.containers = crate::containers::Containers::new(driver);
    }

    /// The containers helper, for the API layer.
    pub fn containers(&self) -> &crate::containers::Containers {
        &self.containers
    }
}
