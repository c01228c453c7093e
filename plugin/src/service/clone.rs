//! Volumes made from another volume or a commit: `NAME@snapshot-REF` and `-o from=REF`.
//!
//! A clone of a volume is made in constant time by the backend where it shares blocks (a
//! thin snapshot, a reflinked image); otherwise, and for a clone of a commit, the new volume
//! is created empty and filled from the history repository.

use dvol_backends::mount_table::is_mount_point;
use dvol_backends::{Backend, Effect, VolumeSpec};
use dvol_snapshot::{CommitId, CommitInfo, NoProgress, VolumeKey};
use tracing::{info, warn};

use super::locks::BUSY_PATIENCE;
use super::VolumeService;
use crate::error::{CloneSourceProblem, ForVolume, ServiceError};
use crate::names::VolumeName;
use crate::volume::{Volume, VolumeState};

/// What a `NAME@snapshot-REF` or `-o from=REF` clone starts from.
#[derive(Debug, Clone)]
pub enum CloneSource {
    /// A commit of any volume.
    Commit {
        /// The commit.
        commit: CommitId,
        /// The volume whose history it belongs to (the first by name whose refs or reflog
        /// reach it), if it still exists.
        owner: Option<Volume>,
    },
    /// Another volume's current state.
    Volume(Volume),
}

impl CloneSource {
    /// The volume a clone is like unless told otherwise: the source volume, or the volume the
    /// commit belongs to (its profile, size and filesystem).
    pub fn like(&self) -> Option<&Volume> {
        match self {
            CloneSource::Commit { owner, .. } => owner.as_ref(),
            CloneSource::Volume(from) => Some(from),
        }
    }
}

impl VolumeService {
    /// Finds what `prefix` (6+ hex digits of a volume UUID or a commit id) names. Several
    /// matches, or none, are an error that lists what there is.
    pub(super) fn resolve_clone_source(
        &self,
        volume: &VolumeName,
        prefix: &str,
    ) -> Result<CloneSource, ServiceError> {
        let problem = |problem| ServiceError::CloneSource {
            volume: volume.clone(),
            reference: prefix.to_string(),
            problem,
        };
        let wanted = prefix.to_ascii_lowercase().replace('-', "");
        if wanted.len() < 6 || !wanted.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(problem(CloneSourceProblem::NotHex));
        }
        let volumes: Vec<Volume> = self
            .list()
            .into_iter()
            .filter(|v| v.state == VolumeState::Ready)
            .filter(|v| v.id.simple().to_string().starts_with(&wanted))
            .collect();
        let commit = match self.history.find_commit(&wanted) {
            Ok(found) => found,
            Err(dvol_snapshot::Error::AmbiguousPrefix { candidates, .. }) => {
                return Err(problem(CloneSourceProblem::Ambiguous {
                    candidates: vec![format!("commits {candidates}")],
                }))
            }
            Err(source) => return Err(source).for_volume(volume),
        };
        match (volumes.as_slice(), commit) {
            ([one], None) => Ok(CloneSource::Volume(one.clone())),
            ([], Some(commit)) => Ok(CloneSource::Commit {
                commit,
                owner: self.commit_owner(commit),
            }),
            ([], None) => Err(problem(CloneSourceProblem::NoMatch)),
            (many, commit) => {
                let mut candidates: Vec<String> = many
                    .iter()
                    .map(|v| format!("volume {} ({})", v.name, v.id))
                    .collect();
                candidates.extend(commit.map(|c| format!("commit {c}")));
                Err(problem(CloneSourceProblem::Ambiguous { candidates }))
            }
        }
    }

    /// The volume `commit` belongs to: the first by name among those whose refs or reflog
    /// reach it. `None` if none does (its volume was removed) or the history cannot be read.
    fn commit_owner(&self, commit: CommitId) -> Option<Volume> {
        let owners = match self.history.owners_of(commit) {
            Ok(owners) => owners,
            Err(e) => {
                warn!(%commit, error = %e, "cannot tell which volume the commit belongs to; the clone gets the default profile");
                return None;
            }
        };
        self.list()
            .into_iter()
            .filter(|v| owners.contains(&VolumeKey(v.id)))
            .min_by(|a, b| a.name.cmp(&b.name))
    }

    /// Makes `volume` (not yet created) a copy-on-write copy of `from` when both live in the
    /// same backend and it can share blocks: constant time, and `from`'s containers are not
    /// stopped (its filesystem is frozen for the instant of the copy). The copy starts with
    /// no commits. `None` when the backend cannot: the caller copies the files instead.
    pub(super) fn instant_clone(
        &self,
        backend: &dyn Backend,
        spec: &VolumeSpec,
        volume: &Volume,
        from: &Volume,
    ) -> Result<Option<Effect>, ServiceError> {
        if from.backend != volume.backend || from.location != volume.location {
            return Ok(None);
        }
        let lock = self.locks.get(&from.name);
        let _guard = lock
            .try_hold(BUSY_PATIENCE)
            .ok_or_else(|| ServiceError::Busy {
                volume: from.name.clone(),
            })?;
        let mountpoint = self.mountpoint(from);
        let mounted = is_mount_point(&mountpoint).for_volume(&volume.name)?;
        backend
            .clone_volume(
                &Self::spec(from),
                mounted.then_some(mountpoint.as_path()),
                spec,
            )
            .for_volume(&volume.name)
    }

    /// Fills a freshly created volume from its clone source. Cloning from a volume reads the
    /// source's current files without stopping its containers; the clone's history starts
    /// with that state as its first commit.
    pub(super) fn fill_clone(
        &self,
        volume: &Volume,
        source: &CloneSource,
    ) -> Result<(), ServiceError> {
        let key = VolumeKey(volume.id);
        let commit = match source {
            CloneSource::Commit { commit, .. } => *commit,
            CloneSource::Volume(from) => {
                let message = format!("clone of volume {} ({})", from.name, from.id);
                self.with_fixed_data(from.name.as_str(), |_, data, _| {
                    // The clone's own history records the source's state; the source's
                    // branches and index are not touched.
                    self.history
                        .commit(&key, data, CommitInfo::now(message, "dvol"), &NoProgress)
                        .map(|c| c.id)
                        .for_volume(&volume.name)
                })?
            }
        };
        let mountpoint = self.mountpoint(volume);
        let backend = self.backend(volume)?;
        backend
            .mount(&Self::spec(volume), &mountpoint)
            .for_volume(&volume.name)?;
        let filled = match source {
            CloneSource::Commit { .. } => {
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
        .for_volume(&volume.name);
        backend
            .unmount(volume.id, &mountpoint)
            .for_volume(&volume.name)?;
        filled?;
        info!(volume = %volume.name, %commit, "filled from clone source");
        Ok(())
    }
}
