//! Moving a volume to another host with its containers stopped only for the last delta
//! (`dvol move VOLUME REMOTE`).
//!
//! 1. **Pre-copy**, while the containers keep running: rounds of a commit that moves no ref
//!    ([`dvol_snapshot::Repository::snapshot_detached`], at a read point like any commit of a
//!    volume in use), whose new objects are sent to the remote (objects only: its branches do
//!    not move). A round reads only what changed since the last one. Rounds end once one
//!    takes at most half of `--max-downtime`, or stops shrinking, after at most
//!    [`MAX_ROUNDS`].
//! 2. If the last round took longer than `--max-downtime`, the move is refused: nothing was
//!    stopped.
//! 3. **Downtime**: the volume's running containers are stopped (or, with `--wait-unmount`,
//!    its last unmount is awaited), a final commit is made on the checked-out branch (its
//!    parent is HEAD: the branch and what was not committed yet survive), and pushed; the
//!    remote creates the volume or moves its branch, and checks the commit out.
//! 4. **Handover**: this host records the volume as moved: Mount refuses it, naming the
//!    remote; its data stays, read-only, so a move back sends only what changed there.
//!
//! A failure before the handover starts the stopped containers again. The containers are
//! started on the remote by the user or the orchestrator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use dvol_api::{MoveRequest, MoveResult, MoveRound, UpdateMode};
use dvol_snapshot::{CommitInfo, NoProgress, VolumeKey};
use tracing::{info, warn};

use super::super::{Reporter, VolumeService};
use super::push::Sending;
use super::retry::{retries, retrying};
use crate::containers::Quiesce;
use crate::error::{ForVolume, ServiceError, TransferError};
use crate::metadata::MovedRecord;
use crate::volume::Volume;

/// Pre-copy rounds at most.
pub const MAX_ROUNDS: usize = 5;

/// `--max-downtime` unless told.
pub const DEFAULT_MAX_DOWNTIME: Duration = Duration::from_secs(5);

/// How long `--wait-unmount` waits.
const UNMOUNT_PATIENCE: Duration = Duration::from_secs(300);

impl VolumeService {
    /// Refuses to use a volume that moved to another host.
    pub(crate) fn refuse_moved(&self, volume: &Volume) -> Result<(), ServiceError> {
        match self.metadata.moved(volume.id)? {
            Some(moved) => Err(TransferError::Moved {
                volume: volume.name.clone(),
                remote: moved.remote,
                commit: moved.commit,
                at: moved.moved_at.to_rfc3339(),
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Hands volume `name` over to the request's remote (see the module's documentation).
    pub async fn move_volume(
        self: &Arc<Self>,
        name: String,
        request: MoveRequest,
        progress: Reporter,
    ) -> Result<MoveResult, ServiceError> {
        let max_downtime = request
            .max_downtime_ms
            .map_or(DEFAULT_MAX_DOWNTIME, Duration::from_millis);
        let remote = request.remote.clone();
        let only_if_unused = request.only_if_unused;
        let (peer, volume, branch) = self
            .blocking(move |service| {
                let peer = service.peer(&remote)?;
                let volume = service.get(&name)?;
                service.refuse_moved(&volume)?;
                if let Some(cluster) = service.cluster() {
                    if cluster.known_node(&peer.name).is_none() {
                        return Err(TransferError::NotANode {
                            volume: volume.name.clone(),
                            remote: peer.name.clone(),
                        }
                        .into());
                    }
                }
                let head = service
                    .history
                    .head(&VolumeKey(volume.id))
                    .for_volume(&volume.name)?;
                let branch = head.branch.ok_or_else(|| TransferError::Detached {
                    volume: volume.name.clone(),
                })?;
                Ok((peer, volume, branch))
            })
            .await?;
        if only_if_unused && volume.in_use() {
            return Err(self.in_use(&volume).await);
        }
        let sending = Sending {
            peer: &peer,
            volume: &volume,
            target: &volume.name,
            branch: &branch,
            like: self.view(volume.clone()),
            mode: UpdateMode::FastForward,
            checkout: false,
        };

        let retries = retries(request.retries)?;
        let mut rounds: Vec<MoveRound> = Vec::new();
        for round in 1..=MAX_ROUNDS {
            let started = Instant::now();
            let target = volume.name.to_string();
            let commit = self
                .blocking(move |service| {
                    service.snapshot_now(&target, format!("move: pre-copy round {round}"))
                })
                .await?;
            let snapshot_took = started.elapsed();
            // Tried again after a lost connection; the round's time is its last try's (the
            // waits between tries say nothing of the final round's length).
            let what = format!("pre-copy round {round} of moving volume {}", volume.name);
            let (sent, _) = retrying(&what, retries, || async {
                let sending_started = Instant::now();
                let sent = self.send_commit(&sending, commit, false, &progress).await?;
                Ok((sent, sending_started.elapsed()))
            })
            .await?;
            let (sent, sending_took) = sent;
            let done = MoveRound {
                objects: sent.objects_sent,
                bytes: sent.bytes_sent,
                millis: (snapshot_took + sending_took).as_millis() as u64,
            };
            info!(volume = %volume.name, round, objects = done.objects, bytes = done.bytes, millis = done.millis, "pre-copy round");
            let shrinking = rounds.last().is_none_or(|last| done.bytes < last.bytes);
            let fits = Duration::from_millis(done.millis) <= max_downtime / 2;
            rounds.push(done);
            if fits || !shrinking {
                break;
            }
        }
        let last = rounds.last().cloned().unwrap_or(MoveRound {
            objects: 0,
            bytes: 0,
            millis: 0,
        });
        if Duration::from_millis(last.millis) > max_downtime {
            return Err(TransferError::DowntimeTooLong {
                volume: volume.name.clone(),
                predicted_ms: last.millis,
                bytes: last.bytes,
                max_ms: max_downtime.as_millis() as u64,
            }
            .into());
        }

        let down = Instant::now();
        let stopped = if request.wait_unmount {
            self.wait_unmounted(&volume).await?;
            Vec::new()
        } else {
            let names = self.docker_names(&volume);
            let current = {
                let n = volume.name.to_string();
                self.blocking(move |service| service.get(&n)).await?
            };
            if request.only_if_unused && current.in_use() {
                return Err(self.in_use(&current).await);
            }
            let users = if current.in_use() {
                self.containers.running_users(&volume.name, &names).await?
            } else {
                Vec::new()
            };
            self.containers
                .quiesce(&volume.name, &users, Quiesce::Stop)
                .await?
        };
        let handed = self.hand_over(&sending, &volume, &progress).await;
        let transfer = match handed {
            Ok(t) => t,
            Err(e) => {
                let not_resumed = self.containers.start_again(&volume.name, &stopped).await;
                warn!(volume = %volume.name, error = %e, "move failed before the handover; the stopped containers were started again");
                if not_resumed.is_empty() {
                    return Err(e);
                }
                return Err(ServiceError::NotResumed {
                    source: Box::new(e),
                    how: Quiesce::Stop,
                    not_resumed,
                });
            }
        };
        let downtime_ms = down.elapsed().as_millis() as u64;
        info!(volume = %volume.name, remote = %peer.name, downtime_ms, rounds = rounds.len(), "moved");
        Ok(MoveResult {
            rounds,
            downtime_ms,
            stopped: stopped.iter().map(|c| c.name.clone()).collect(),
            transfer,
        })
    }

    /// A commit of the volume's files now, at a read point, moving no ref: a pre-copy
    /// round's, or the one a node of the cluster clones a volume of this node's from.
    pub(super) fn snapshot_now(
        &self,
        name: &str,
        message: String,
    ) -> Result<dvol_snapshot::CommitId, ServiceError> {
        self.with_fixed_data(name, |volume, data, read_from| {
            let backend = self.backend(volume)?;
            let intact = || {
                backend
                    .read_point_intact(volume.id)
                    .map_err(|e| e.to_string())
            };
            let info = CommitInfo::now(message, "dvol");
            let changes = self.point_changes(volume, backend.as_ref(), read_from);
            let id = self
                .history
                .snapshot_detached(
                    &VolumeKey(volume.id),
                    data,
                    changes.ranges(),
                    info,
                    &NoProgress,
                    &intact,
                )
                .for_volume(&volume.name)?
                .id;
            drop(changes);
            // The index is saved: the next round counts its changes from this point.
            backend.keep_read_point(volume.id);
            Ok(id)
        })
    }

    /// The final commit, its push, and the record that the volume moved.
    async fn hand_over(
        self: &Arc<Self>,
        sending: &Sending<'_>,
        volume: &Volume,
        progress: &Reporter,
    ) -> Result<dvol_api::TransferResult, ServiceError> {
        let target = volume.name.to_string();
        let message = format!("move to {}", sending.peer.name);
        let commit = self
            .blocking(move |service| {
                service
                    .commit(&target, &message, "dvol", &NoProgress)
                    .map(|c| c.commit.id)
            })
            .await?;
        let commit = super::parse_commit(&volume.name, &commit)?;
        let (name, target) = (volume.name.to_string(), sending.peer.name.clone());
        let clustered = self.cluster().is_some();
        if clustered {
            // The target may create its copy only while the record says it is moving there.
            let (name, target) = (name.clone(), target.clone());
            self.blocking(move |service| {
                service.require_cluster()?.begin_move(&name, &target)?;
                Ok(())
            })
            .await?;
        }
        let sent = self.send_commit(sending, commit, true, progress).await;
        let transfer = match sent {
            Ok(transfer) => transfer,
            Err(e) => {
                if clustered {
                    let name = name.clone();
                    let undone = self
                        .blocking(move |service| {
                            Ok(service.require_cluster()?.abort_move(&name)?)
                        })
                        .await;
                    if let Err(undo) = undone {
                        warn!(volume = %volume.name, error = %undo, "could not mark the volume ready again in the cluster after a failed move");
                    }
                }
                return Err(e);
            }
        };
        let (id, remote) = (volume.id, sending.peer.name.clone());
        self.blocking(move |service| {
            service.metadata.mark_moved(
                id,
                &MovedRecord {
                    remote,
                    commit: commit.to_string(),
                    moved_at: Utc::now(),
                },
            )?;
            if let Some(cluster) = service.cluster() {
                // The target has the volume whole: it owns it from the next epoch on.
                cluster.finish_move(&name, &target)?;
            }
            Ok(())
        })
        .await?;
        Ok(transfer)
    }

    /// The refusal of a volume that is mounted, naming the running containers that use it
    /// where the engine answers.
    async fn in_use(&self, volume: &Volume) -> ServiceError {
        let containers = self
            .containers
            .running_users(&volume.name, &self.docker_names(volume))
            .await
            .map(|users| users.into_iter().map(|c| c.name).collect())
            .unwrap_or_default();
        ServiceError::InUse {
            volume: volume.name.clone(),
            mounts: volume.mounts.values().map(|n| *n as usize).sum(),
            containers,
        }
    }

    /// Waits for the volume's last unmount.
    async fn wait_unmounted(self: &Arc<Self>, volume: &Volume) -> Result<(), ServiceError> {
        let deadline = Instant::now() + UNMOUNT_PATIENCE;
        loop {
            let n = volume.name.to_string();
            let current = self.blocking(move |service| service.get(&n)).await?;
            if !current.in_use() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.in_use(&current).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
