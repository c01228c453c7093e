//! Volume history: commit, log, branches and tags, status, diff, checkout and reset.
//!
//! The history library (`dvol-snapshot`) stores content-addressed snapshots of a volume's
//! files; these operations tie it to volumes: they find the volume, hold its lock, make its
//! data reachable ([`super::read_point`]) and shape the results as the API shows them.
//! Stopping the containers around checkout and reset is [`super::quiesce`]'s, before these
//! take the lock.

use dvol_api::{
    ChangeKind, ChangeView, CheckoutView, CommitResult, CommitView, LeftBehind, LogView, RefView,
    ReflogEntryView,
};
use dvol_snapshot::{CommitId, CommitInfo, Progress, VolumeKey};
use std::path::Path;
use std::time::Instant;
use tracing::{info, warn};

use super::journal::new_entry;
use super::VolumeService;
use crate::error::{ForVolume, ServiceError};
use crate::metadata::{JournalEntry, JournalOperation};
use crate::metrics::CheckoutKind;
use crate::volume::Volume;

/// How many changed paths an "uncommitted changes" refusal names.
const UNCOMMITTED_EXAMPLES: usize = 3;

fn change_view(change: &dvol_snapshot::Change) -> ChangeView {
    ChangeView {
        path: change.path.display().to_string(),
        kind: match change.kind {
            dvol_snapshot::ChangeKind::Added => ChangeKind::Added,
            dvol_snapshot::ChangeKind::Removed => ChangeKind::Removed,
            dvol_snapshot::ChangeKind::Modified => ChangeKind::Modified,
        },
        is_dir: change.is_dir,
        old_size: change.old_size,
        new_size: change.new_size,
    }
}

fn checkout_view(
    branch: Option<String>,
    commit: dvol_snapshot::CommitId,
    stats: &dvol_snapshot::CheckoutStats,
    left_behind: &[dvol_snapshot::Commit],
) -> CheckoutView {
    CheckoutView {
        left_behind: left_behind
            .iter()
            .map(|c| LeftBehind {
                id: c.id.to_string(),
                message: c.info.message.clone(),
            })
            .collect(),
        branch,
        commit: commit.to_string(),
        files_written: stats.files_written,
        files_patched: stats.files_patched,
        files_unchanged: stats.files_unchanged,
        removed: stats.removed,
        bytes_written: stats.bytes_written,
        containers_not_resumed: Vec::new(),
    }
}

/// Logs the commits a checkout or reset of `volume` left unreachable from every ref.
fn warn_left_behind(volume: &Volume, left: &[dvol_snapshot::Commit]) {
    if let Some(newest) = left.first() {
        warn!(volume = %volume.name, commits = left.len(), newest = %newest.id, "commits left behind, kept only by the reflog until gc's grace period ends");
    }
}

impl VolumeService {
    pub(super) fn commit_view(
        &self,
        volume: &Volume,
        commit: &dvol_snapshot::Commit,
    ) -> CommitView {
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
        let started = Instant::now();
        let result = self.with_fixed_data(reference, |volume, data, read_from| {
            let key = VolumeKey(volume.id);
            let info = CommitInfo::now(message, author);
            // Recorded only if the read point held until everything was read.
            let backend = self.backend(volume)?;
            let intact = || backend.read_point_intact(volume.id).map_err(|e| e.to_string());
            let changes = self.point_changes(volume, backend.as_ref(), read_from);
            let committed = self
                .history
                .commit_verified(&key, data, changes.ranges(), info, progress, &intact)
                .for_volume(&volume.name)?;
            let full_read_reason = changes.full_read_reason();
            drop(changes);
            // Recorded (the index saved): this point is what the next one's changes count from.
            backend.keep_read_point(volume.id);
            let commit = self
                .history
                .read_commit(committed.id)
                .for_volume(&volume.name)?;
            let head = self.history.head(&key).for_volume(&volume.name)?;
            info!(volume = %volume.name, commit = %committed.id, files_reread = committed.stats.files_reread, "committed");
            Ok(CommitResult {
                commit: self.commit_view(volume, &commit),
                branch: head.branch,
                changed: !committed.stats.unchanged,
                read_from,
                files_scanned: committed.stats.files_scanned,
                files_reread: committed.stats.files_reread,
                bytes_read: committed.stats.bytes_read,
                files_read_by_ranges: committed.stats.files_read_by_ranges,
                full_read_reason,
                new_objects: committed.stats.new_objects,
                new_bytes_stored: committed.stats.new_bytes_stored,
                containers_not_resumed: Vec::new(),
            })
        })?;
        self.metrics.commit(
            started.elapsed(),
            result.bytes_read,
            result.new_bytes_stored,
        );
        Ok(result)
    }

    /// The volume's commits and HEAD.
    pub fn log(&self, reference: &str) -> Result<LogView, ServiceError> {
        let volume = self.get(reference)?;
        let key = VolumeKey(volume.id);
        let head = self.history.head(&key).for_volume(&volume.name)?;
        let commits = self.history.commits(&key).for_volume(&volume.name)?;
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
            .for_volume(&volume.name)?;
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
            .for_volume(&volume.name)?;
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
        let commit = self
            .history
            .resolve(&key, at.unwrap_or("HEAD"))
            .for_volume(&volume.name)?;
        if tag {
            self.history.create_tag(&key, name, commit)
        } else {
            self.history
                .create_branch(&key, name, commit, at.unwrap_or("HEAD"))
        }
        .for_volume(&volume.name)?;
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
            .for_volume(&volume.name)
    }

    /// Deletes a tag.
    pub fn delete_tag(&self, reference: &str, tag: &str) -> Result<(), ServiceError> {
        let volume = self.get(reference)?;
        self.history
            .delete_tag(&VolumeKey(volume.id), tag)
            .for_volume(&volume.name)
    }

    /// The volume's reflog, newest first, at most `limit` entries.
    pub fn reflog(
        &self,
        reference: &str,
        limit: Option<usize>,
    ) -> Result<Vec<ReflogEntryView>, ServiceError> {
        let volume = self.get(reference)?;
        let entries = self
            .history
            .reflog(&VolumeKey(volume.id))
            .for_volume(&volume.name)?;
        Ok(entries
            .into_iter()
            .take(limit.unwrap_or(usize::MAX))
            .map(|e| ReflogEntryView {
                time: dvol_snapshot::object::format_time(&e.time.fixed_offset()),
                reference: e.reference,
                old: e.old.map(|c| c.to_string()),
                new: e.new.map(|c| c.to_string()),
                message: e.message,
            })
            .collect())
    }

    /// Uncommitted changes in the volume against HEAD.
    pub fn status(&self, reference: &str) -> Result<Vec<ChangeView>, ServiceError> {
        self.with_data(reference, |volume, data| {
            let changes = self
                .history
                .status(&VolumeKey(volume.id), data)
                .for_volume(&volume.name)?;
            Ok(changes.iter().map(change_view).collect())
        })
    }

    /// Differences from `from` to `to` (default HEAD).
    pub fn diff(
        &self,
        reference: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<ChangeView>, ServiceError> {
        let volume = self.get(reference)?;
        let key = VolumeKey(volume.id);
        let resolve = |rev| self.history.resolve(&key, rev).for_volume(&volume.name);
        let b = resolve(to.unwrap_or("HEAD"))?;
        let changes = match from {
            Some(from) => self.history.diff(resolve(from)?, b),
            None => self.history.changes_of(b),
        }
        .for_volume(&volume.name)?;
        Ok(changes.iter().map(change_view).collect())
    }

    /// Refuses when the volume has uncommitted changes, before anything is stopped or written.
    pub fn check_committed(&self, reference: &str) -> Result<(), ServiceError> {
        self.with_data(reference, |volume, data| {
            self.refuse_uncommitted(volume, data).map(|_| ())
        })
    }

    /// Refuses when the volume's files at `data` differ from its HEAD commit; answers that
    /// commit (`None` when HEAD has none yet), which the files then hold exactly.
    fn refuse_uncommitted(
        &self,
        volume: &Volume,
        data: &Path,
    ) -> Result<Option<CommitId>, ServiceError> {
        let key = VolumeKey(volume.id);
        let head = self.history.head(&key).for_volume(&volume.name)?;
        let Some(commit) = head.commit else {
            return Ok(None);
        };
        let changes = self.history.status(&key, data).for_volume(&volume.name)?;
        if changes.is_empty() {
            return Ok(Some(commit));
        }
        Err(ServiceError::Uncommitted {
            volume: volume.name.clone(),
            changed: changes.len(),
            examples: changes
                .iter()
                .take(UNCOMMITTED_EXAMPLES)
                .map(|c| c.path.display().to_string())
                .collect(),
        })
    }

    /// Checks out `rev` into the volume: a branch becomes the current branch; anything else
    /// detaches HEAD. With `new_branch`, creates that branch at `rev` first and checks it out.
    /// Uncommitted changes are refused unless `force`. Recorded in the operation journal
    /// ([`super::journal`]) while it writes, so a crash in its middle is finished at the next
    /// start.
    pub fn checkout(
        &self,
        reference: &str,
        rev: &str,
        new_branch: Option<&str>,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<CheckoutView, ServiceError> {
        self.checkout_recorded(reference, rev, new_branch, force, progress, None)
    }

    /// [`VolumeService::checkout`], recorded in `entry` (made by the caller that stopped the
    /// volume's containers, naming them) or, without one, in an entry of its own.
    pub(super) fn checkout_recorded(
        &self,
        reference: &str,
        rev: &str,
        new_branch: Option<&str>,
        force: bool,
        progress: &dyn Progress,
        entry: Option<JournalEntry>,
    ) -> Result<CheckoutView, ServiceError> {
        let started = Instant::now();
        let view = self.with_data(reference, |volume, data| {
            let key = VolumeKey(volume.id);
            let verified = match force {
                false => self.refuse_uncommitted(volume, data)?,
                true => None,
            };
            let commit = self.history.resolve(&key, rev).for_volume(&volume.name)?;
            let branch = match new_branch {
                Some(name) => Some(name.to_string()),
                None => self
                    .history
                    .branches(&key)
                    .for_volume(&volume.name)?
                    .into_iter()
                    .find(|b| b.name == rev)
                    .map(|b| b.name),
            };
            let fresh = || new_entry(volume, JournalOperation::Checkout, rev, new_branch, &[]);
            let recording =
                self.record_writing(volume, entry, fresh, commit, branch.as_deref())?;
            let (stats, left) =
                self.write_recorded(volume, data, (verified, commit), recording, progress)?;
            info!(volume = %volume.name, %commit, branch = ?branch, files_written = stats.files_written, "checked out");
            warn_left_behind(volume, &left);
            Ok(checkout_view(branch, commit, &stats, &left))
        })?;
        self.metrics.checkout(
            CheckoutKind::Checkout,
            started.elapsed(),
            view.bytes_written,
        );
        Ok(view)
    }

    /// `reset --hard REV`: the volume's files and its current branch (or detached HEAD) go to
    /// `rev`; uncommitted changes are discarded. Recorded in the operation journal like
    /// [`VolumeService::checkout`].
    pub fn reset_hard(
        &self,
        reference: &str,
        rev: &str,
        progress: &dyn Progress,
    ) -> Result<CheckoutView, ServiceError> {
        self.reset_recorded(reference, rev, progress, None, None)
    }

    /// [`VolumeService::reset_hard`], recorded in `entry` or in an entry of its own (see
    /// [`VolumeService::checkout_recorded`]).
    /// With `precondition`, the reset happens only if it holds when the volume's lock is
    /// held (and the containers stopped): a compare-and-swap for those who checked the volume
    /// before.
    pub(super) fn reset_recorded(
        &self,
        reference: &str,
        rev: &str,
        progress: &dyn Progress,
        entry: Option<JournalEntry>,
        precondition: Option<&ResetPrecondition>,
    ) -> Result<CheckoutView, ServiceError> {
        let started = Instant::now();
        let view = self.with_data(reference, |volume, data| {
            let key = VolumeKey(volume.id);
            let verified = match precondition {
                Some(expected) => self.check_precondition(volume, data, expected)?,
                None => None,
            };
            let commit = self.history.resolve(&key, rev).for_volume(&volume.name)?;
            let fresh = || new_entry(volume, JournalOperation::Reset, rev, None, &[]);
            let recording = self.record_writing(volume, entry, fresh, commit, None)?;
            let (stats, left) =
                self.write_recorded(volume, data, (verified, commit), recording, progress)?;
            let head = self.history.head(&key).for_volume(&volume.name)?;
            info!(volume = %volume.name, %commit, "reset");
            warn_left_behind(volume, &left);
            Ok(checkout_view(head.branch, commit, &stats, &left))
        })?;
        self.metrics
            .checkout(CheckoutKind::Reset, started.elapsed(), view.bytes_written);
        Ok(view)
    }

    /// Refuses unless `expected` holds for `volume` (its files at `data`); answers the HEAD
    /// commit the files then hold exactly, as [`VolumeService::refuse_uncommitted`] does.
    fn check_precondition(
        &self,
        volume: &Volume,
        data: &Path,
        expected: &ResetPrecondition,
    ) -> Result<Option<CommitId>, ServiceError> {
        let key = VolumeKey(volume.id);
        let head = self.history.head(&key).for_volume(&volume.name)?;
        let now = self
            .history
            .branches(&key)
            .for_volume(&volume.name)?
            .into_iter()
            .find(|b| b.name == expected.branch)
            .map(|b| b.commit);
        if head.branch.as_deref() != Some(expected.branch.as_str()) || now != expected.at {
            return Err(crate::error::TransferError::MovedMeanwhile {
                volume: volume.name.clone(),
                branch: expected.branch.clone(),
                now: now.map_or("nothing (deleted)".into(), |c| c.to_string()),
            }
            .into());
        }
        self.refuse_uncommitted(volume, data)
    }
}

/// What a reset for someone who checked the volume before requires still to hold: HEAD on
/// `branch`, the branch at `at`, and no uncommitted changes.
#[derive(Debug, Clone)]
pub(crate) struct ResetPrecondition {
    /// The branch HEAD must be on.
    pub branch: String,
    /// Where the branch must be.
    pub at: Option<CommitId>,
}
