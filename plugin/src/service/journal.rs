//! The operation journal: checkout and reset, which replace a volume's data, finish even when
//! the daemon dies in their middle.
//!
//! Before a checkout or reset stops a container, its entry is recorded in the metadata
//! database (one SQLite transaction, durable when it returns): the volume, the operation,
//! the revision and the containers it stops (phase `stopping`). Before it touches a file the
//! entry gets the target commit, where HEAD is to go and where HEAD was (phase `writing`);
//! once data and HEAD are done (or the operation failed and said so to its caller) it moves
//! to `resuming`, and once the containers run again it is deleted.
//!
//! A crash leaves the entry. The next start rolls it forward, never back:
//! - `writing`: the files may be half old, half new, with `.dvol-tmp-*` files among them. The
//!   checkout to the same target runs again (it is idempotent: every file is made to match
//!   the target's tree and every entry not in it, temporary files included, is removed), then
//!   HEAD moves as the operation meant it to; the entry moves to `resuming`. Rolling back
//!   would need the old files, which the checkout already overwrote (only their commit is
//!   kept, and uncommitted changes were refused or, with `--force`, meant to be discarded);
//!   the target, on the contrary, is always in the store, and it is what the user asked for.
//! - `stopping`: nothing was written; only the containers are started again.
//! - `resuming`: once the daemon serves the plugin socket again (starting a container asks
//!   it to mount the volume), the containers the operation stopped are started again and the
//!   entry is deleted. One that cannot be started is logged with the command to start it.
//!
//! The first two happen in [`VolumeService::open`], before anything else uses the volumes;
//! the last in [`VolumeService::resume_interrupted_operations`], which the daemon calls once
//! it serves.

use chrono::Utc;
use std::path::Path;

use dvol_snapshot::{CheckoutStats, CommitId, NoProgress, Progress, VolumeKey};
use tracing::{error, info, warn};
use uuid::Uuid;

use super::VolumeService;
use crate::containers::ContainerRef;
use crate::error::{ForVolume, ServiceError};
use crate::metadata::{JournalEntry, JournalOperation, JournalPhase, StoppedContainer};
use crate::volume::Volume;

/// A new journal entry for `operation` on the volume `volume` to `rev`, which is about to
/// stop `stopped`.
pub(super) fn new_entry(
    volume: &Volume,
    operation: JournalOperation,
    rev: &str,
    new_branch: Option<&str>,
    stopped: &[ContainerRef],
) -> JournalEntry {
    JournalEntry {
        id: Uuid::new_v4(),
        volume: volume.id,
        operation,
        rev: rev.to_string(),
        new_branch: new_branch.map(str::to_string),
        target: None,
        branch: None,
        previous_branch: None,
        previous_commit: None,
        stopped: stopped
            .iter()
            .map(|c| StoppedContainer {
                id: c.id.clone(),
                name: c.name.clone(),
            })
            .collect(),
        phase: JournalPhase::Stopping,
        started_at: Utc::now(),
    }
}

/// An entry being written by one operation, and whether that operation made it (then it
/// deletes it when done) or was given it by the caller that stopped the containers (which
/// deletes it once they run again).
pub(super) struct Recording {
    entry: JournalEntry,
    own: bool,
}

impl Recording {
    /// The entry as recorded.
    pub(super) fn entry(&self) -> &JournalEntry {
        &self.entry
    }
}

impl VolumeService {
    /// Records `entry` durably; a failure names the volume and the operation, and nothing was
    /// changed by it.
    pub(super) fn record(&self, volume: &Volume, entry: &JournalEntry) -> Result<(), ServiceError> {
        self.metadata
            .put_journal(entry)
            .map_err(|source| ServiceError::Journal {
                volume: volume.name.clone(),
                operation: entry.operation.as_str(),
                source: Box::new(source),
            })
    }

    /// Deletes a finished operation's entry; a failure is logged (the next start then starts
    /// its containers again, which is harmless for those running).
    pub(super) fn forget(&self, volume: &Volume, id: Uuid) {
        if let Err(e) = self.metadata.delete_journal(id) {
            warn!(volume = %volume.name, error = %e, "could not clear the operation journal; the next start tries to start the stopped containers again");
        }
    }

    /// Records, before the data is touched, that the operation now writes `volume`'s files to
    /// `target`, where HEAD is to go (`branch`, for a checkout) and where it was. `given` is
    /// the entry of the caller that stopped the containers; without it, `fresh` makes one.
    pub(super) fn record_writing(
        &self,
        volume: &Volume,
        given: Option<JournalEntry>,
        fresh: impl FnOnce() -> JournalEntry,
        target: CommitId,
        branch: Option<&str>,
    ) -> Result<Recording, ServiceError> {
        let own = given.is_none();
        let mut entry = given.unwrap_or_else(fresh);
        let head = self
            .history
            .head(&VolumeKey(volume.id))
            .for_volume(&volume.name)?;
        entry.target = Some(target.to_string());
        entry.branch = branch.map(str::to_string);
        entry.previous_branch = head.branch;
        entry.previous_commit = head.commit.map(|c| c.to_string());
        entry.phase = JournalPhase::Writing;
        self.record(volume, &entry)?;
        Ok(Recording { entry, own })
    }

    /// Checks `target` out into `data` and moves HEAD as `recording`'s operation means to,
    /// then records that the data and HEAD are done with, whether they succeeded or not.
    /// `verified` is the commit `data` was just found to hold exactly, with nothing writing
    /// since (the checkout then touches only the directories that differ), if it was checked.
    /// Returns what the checkout did and the commits the move left behind.
    pub(super) fn write_recorded(
        &self,
        volume: &Volume,
        data: &Path,
        (verified, target): (Option<CommitId>, CommitId),
        recording: Recording,
        progress: &dyn Progress,
    ) -> Result<(CheckoutStats, Vec<dvol_snapshot::Commit>), ServiceError> {
        let key = VolumeKey(volume.id);
        let checked_out = match verified {
            Some(base) => self
                .history
                .checkout_from(&key, base, target, data, progress),
            None => self.history.checkout(&key, target, data, progress),
        };
        let done = checked_out.for_volume(&volume.name).and_then(|stats| {
            let left = self.move_head_as_recorded(volume, recording.entry(), target, false)?;
            Ok((stats, left))
        });
        self.record_written(volume, recording);
        done
    }

    /// Records that the data and HEAD are done with (the operation finished or failed and
    /// says so to its caller): what remains is to start the stopped containers again.
    pub(super) fn record_written(&self, volume: &Volume, recording: Recording) {
        let Recording { mut entry, own } = recording;
        if own {
            self.forget(volume, entry.id);
            return;
        }
        entry.phase = JournalPhase::Resuming;
        if let Err(e) = self.record(volume, &entry) {
            warn!(volume = %volume.name, error = %e, "could not record the end of the operation's writes in the journal");
        }
    }

    /// Moves HEAD as `entry`'s operation means to, to `target`: a checkout puts HEAD on its
    /// branch (creating a `-b` branch) or detaches it at the target; a reset moves HEAD's
    /// branch. When `finishing` an interrupted operation, a move already made is not made
    /// again. Returns the commits the move left behind.
    pub(super) fn move_head_as_recorded(
        &self,
        volume: &Volume,
        entry: &JournalEntry,
        target: CommitId,
        finishing: bool,
    ) -> Result<Vec<dvol_snapshot::Commit>, ServiceError> {
        let key = VolumeKey(volume.id);
        let head = self.history.head(&key).for_volume(&volume.name)?;
        let left = match (entry.operation, &entry.branch) {
            (JournalOperation::Checkout, Some(branch)) => {
                if let Some(new) = entry.new_branch.as_deref().filter(|n| n == branch) {
                    let exists = finishing
                        && self
                            .history
                            .branches(&key)
                            .for_volume(&volume.name)?
                            .iter()
                            .any(|b| b.name == new);
                    if !exists {
                        self.history
                            .create_branch(&key, new, target, &entry.rev)
                            .for_volume(&volume.name)?;
                    }
                }
                if finishing && head.branch.as_ref() == Some(branch) {
                    Vec::new()
                } else {
                    self.history
                        .set_head_branch(&key, branch)
                        .for_volume(&volume.name)?
                }
            }
            (JournalOperation::Checkout, None) => {
                if finishing && head.branch.is_none() && head.commit == Some(target) {
                    Vec::new()
                } else {
                    self.history
                        .set_head_detached(&key, target, &entry.rev)
                        .for_volume(&volume.name)?
                }
            }
            (JournalOperation::Reset, _) => {
                if finishing && head.commit == Some(target) {
                    Vec::new()
                } else {
                    self.history
                        .reset_head(&key, target, &entry.rev)
                        .for_volume(&volume.name)?
                }
            }
        };
        Ok(left)
    }

    /// Finishes the data and HEAD of every operation a crash interrupted (see the module's
    /// documentation); called at open, once the registry is built, before anything else
    /// uses the volumes. The containers are started later, by
    /// [`VolumeService::resume_interrupted_operations`].
    pub(super) fn finish_interrupted_operations(&self) {
        let entries = match self.metadata.journal() {
            Ok(entries) => entries,
            Err(e) => {
                error!(error = %e, "cannot read the operation journal: checkouts or resets a crash interrupted are not finished; the volumes they wrote may hold part of the old and part of the new files");
                return;
            }
        };
        for entry in entries {
            let Some(volume) = self.list().into_iter().find(|v| v.id == entry.volume) else {
                // The volume's record is gone (its row cascades); nothing to finish.
                let _ = self.metadata.delete_journal(entry.id);
                continue;
            };
            match entry.phase {
                JournalPhase::Stopping => {
                    info!(volume = %volume.name, operation = entry.operation.as_str(), rev = %entry.rev, "an interrupted {} had not touched the files yet; it is not finished, its stopped containers are started again", entry.operation.as_str());
                    self.mark_resuming(&volume, entry);
                }
                JournalPhase::Writing => match self.finish_writing(&volume, &entry) {
                    Ok(stats) => {
                        info!(
                            volume = %volume.name,
                            target = entry.target.as_deref().unwrap_or_default(),
                            rev = %entry.rev,
                            branch = ?entry.branch,
                            previous_branch = ?entry.previous_branch,
                            previous_commit = ?entry.previous_commit,
                            files_written = stats.files_written,
                            removed = stats.removed,
                            "finished an interrupted {}: the volume holds the target commit and HEAD is where the {} put it",
                            entry.operation.as_str(),
                            entry.operation.as_str(),
                        );
                        self.mark_resuming(&volume, entry);
                    }
                    Err(e) => {
                        error!(volume = %volume.name, rev = %entry.rev, error = %e, "could not finish an interrupted {}: the volume may hold part of the old and part of the new files; retried at the next start, or run `dvol checkout --force {}` (or `dvol reset --hard`) on it", entry.operation.as_str(), entry.target.as_deref().unwrap_or(&entry.rev));
                    }
                },
                JournalPhase::Resuming => {}
            }
        }
    }

    /// Runs the interrupted operation's checkout again, to the same target, and moves HEAD.
    fn finish_writing(
        &self,
        volume: &Volume,
        entry: &JournalEntry,
    ) -> Result<dvol_snapshot::CheckoutStats, ServiceError> {
        let target: CommitId = entry
            .target
            .as_deref()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| ServiceError::Journal {
                volume: volume.name.clone(),
                operation: entry.operation.as_str(),
                source: Box::new(crate::metadata::MetadataError::Corrupt {
                    path: self.layout.database(),
                    uuid: volume.id.to_string(),
                    problem: format!("journal entry {} has no target commit", entry.id),
                }),
            })?;
        self.with_data(volume.name.as_str(), |volume, data| {
            let stats = self
                .history
                .checkout(&VolumeKey(volume.id), target, data, &NoProgress)
                .for_volume(&volume.name)?;
            self.move_head_as_recorded(volume, entry, target, true)?;
            Ok(stats)
        })
    }

    /// Moves `entry` to the phase where only its containers are left to start.
    fn mark_resuming(&self, volume: &Volume, mut entry: JournalEntry) {
        entry.phase = JournalPhase::Resuming;
        if let Err(e) = self.record(volume, &entry) {
            warn!(volume = %volume.name, error = %e, "could not record the finished operation in the journal; the next start finishes it again");
        }
    }

    /// Starts again the containers that operations interrupted by a crash had stopped, and
    /// clears their journal entries. The daemon calls it once it serves the plugin socket:
    /// the engine asks the plugin to mount the volume for each start.
    pub async fn resume_interrupted_operations(self: &std::sync::Arc<Self>) {
        let entries = match self.blocking(|s| Ok(s.metadata.journal()?)).await {
            Ok(entries) => entries,
            Err(e) => {
                error!(error = %e, "cannot read the operation journal: containers stopped by an interrupted checkout or reset stay stopped");
                return;
            }
        };
        for entry in entries
            .into_iter()
            .filter(|e| e.phase == JournalPhase::Resuming)
        {
            let Some(volume) = self.list().into_iter().find(|v| v.id == entry.volume) else {
                continue;
            };
            let stopped: Vec<ContainerRef> = entry
                .stopped
                .iter()
                .map(|c| ContainerRef {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    removed_on_stop: false,
                })
                .collect();
            let failed = self.containers.start_again(&volume.name, &stopped).await;
            for f in &failed {
                warn!(volume = %volume.name, container = %f.container, error = %f.error, "could not start again a container an interrupted {} had stopped; start it with `docker start {}`", entry.operation.as_str(), f.container);
            }
            if !stopped.is_empty() {
                info!(volume = %volume.name, containers = ?entry.stopped.iter().map(|c| &c.name).collect::<Vec<_>>(), not_started = failed.len(), "started again the containers an interrupted {} had stopped", entry.operation.as_str());
            }
            let id = entry.id;
            let _ = self
                .blocking(move |s| {
                    s.forget(&volume, id);
                    Ok(())
                })
                .await;
        }
    }
}
