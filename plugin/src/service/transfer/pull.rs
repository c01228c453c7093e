//! Fetching a remote volume's branch into a local volume (`dvol fetch`: objects and the
//! remote-tracking ref `REMOTE/BRANCH`) and pulling it (`dvol pull`: a fetch, then the local
//! branch moves to it and, where it is checked out, the new commit is checked out with the
//! volume's containers stopped meanwhile, as `dvol checkout` does).

use std::sync::Arc;

use dvol_api::{
    FetchPlan, FetchRequest, PullRequest, ResetRequest, TransferOutcome, TransferResult,
    UpdateMode, TRANSFER_PROTOCOL,
};
use dvol_snapshot::refs::RefKind;
use dvol_snapshot::{CommitId, NoProgress, VolumeKey};
use tracing::info;

use super::super::{Reporter, VolumeService};
use super::clone::Received;
use super::push::parse_peer_commit;
use super::retry::{retries, retrying};
use crate::error::{Divergence, ForVolume, ServiceError, TransferError};
use crate::service::history::ResetPrecondition;
use crate::volume::Volume;

/// What a fetch brought.
struct Fetched {
    volume: Volume,
    branch: String,
    tip: CommitId,
    result: TransferResult,
}

impl VolumeService {
    /// Brings the request's remote branch into local volume `name`: its objects, and the
    /// remote-tracking ref `REMOTE/BRANCH` pointed at it. The local branches do not move.
    pub async fn fetch_remote(
        self: &Arc<Self>,
        name: String,
        request: PullRequest,
        progress: Reporter,
    ) -> Result<TransferResult, ServiceError> {
        Ok(self.fetch_retrying(name, &request, progress).await?.result)
    }

    /// [`Self::fetch_into`], tried again after lost connections as the request allows.
    async fn fetch_retrying(
        self: &Arc<Self>,
        name: String,
        request: &PullRequest,
        progress: Reporter,
    ) -> Result<Fetched, ServiceError> {
        let what = format!("fetch of volume {name} from {}", request.remote);
        let retries = retries(request.retries)?;
        let (mut fetched, attempts) = retrying(&what, retries, || {
            self.fetch_into(name.clone(), request, progress.clone())
        })
        .await?;
        fetched.result.attempts = attempts;
        Ok(fetched)
    }

    async fn fetch_into(
        self: &Arc<Self>,
        name: String,
        request: &PullRequest,
        progress: Reporter,
    ) -> Result<Fetched, ServiceError> {
        let remote = request.remote.clone();
        let (peer, volume, known) = self
            .blocking(move |service| {
                let peer = service.peer(&remote)?;
                let volume = service.get(&name)?;
                let known = service
                    .history
                    .ref_tips(&VolumeKey(volume.id))
                    .for_volume(&volume.name)?;
                Ok((peer, volume, known))
            })
            .await?;
        let remote_volume = request
            .volume
            .clone()
            .unwrap_or_else(|| volume.name.to_string());
        let mut fetch = FetchRequest {
            protocol: TRANSFER_PROTOCOL,
            volume: remote_volume.clone(),
            branch: request.branch.clone(),
            tip: None,
            known: known.iter().map(CommitId::to_string).collect(),
            held: Vec::new(),
        };
        let plan: FetchPlan = peer.json("/v1/transfer/fetch", &fetch).await?;
        let tip = parse_peer_commit(&peer, &plan.tip)?;
        let key = VolumeKey(volume.id);
        let tracking = format!("{}/{}", peer.name, plan.branch);
        let old = {
            let (n, t) = (volume.name.clone(), tracking.clone());
            self.blocking(move |service| {
                Ok(service
                    .history
                    .remote_refs(&key)
                    .for_volume(&n)?
                    .into_iter()
                    .find(|(name, _)| *name == t)
                    .map(|(_, c)| c))
            })
            .await?
        };
        let mut received = Received {
            objects: dvol_api::ObjectsReceived {
                objects_stored: 0,
                duplicates: 0,
                bytes_received: 0,
            },
            skipped: 0,
        };
        let have_tip = self
            .blocking(move |service| Ok(service.history.read_commit(tip).is_ok()))
            .await?;
        let marker = super::clone::receive_marker("fetch", &peer.name, &remote_volume, &tip);
        if !have_tip {
            let (n, bytes) = (volume.name.clone(), plan.bytes);
            self.blocking(move |service| service.check_room(&n, bytes))
                .await?;
            fetch.tip = Some(plan.tip.clone());
            received = self
                .receive_planned(&peer, &fetch, &plan, &marker, &volume.name, progress)
                .await?;
        }
        let (n, remote_name, branch) =
            (volume.name.clone(), peer.name.clone(), plan.branch.clone());
        let m = marker.clone();
        self.blocking(move |service| {
            service
                .history
                .set_remote_ref(&key, &remote_name, &branch, tip)
                .for_volume(&n)?;
            let _ = service.history.end_receive(&m);
            Ok(())
        })
        .await?;
        info!(volume = %volume.name, remote = %peer.name, branch = %plan.branch, commit = %tip, objects = received.objects.objects_stored, skipped = received.skipped, "fetched");
        let outcome = if old == Some(tip) {
            TransferOutcome::UpToDate
        } else if old.is_none() {
            TransferOutcome::Created
        } else {
            TransferOutcome::FastForward
        };
        let result = TransferResult {
            remote: peer.name.clone(),
            volume: volume.name.to_string(),
            branch: tracking,
            commit: tip.to_string(),
            old_commit: old.map(|c| c.to_string()),
            outcome,
            stashed_as: None,
            checked_out: false,
            commits: plan.commits,
            objects_sent: received.objects.objects_stored + received.objects.duplicates,
            bytes_sent: received.objects.bytes_received,
            objects_skipped: received.skipped,
            not_resumed: Vec::new(),
            attempts: 1,
        };
        Ok(Fetched {
            volume,
            branch: plan.branch,
            tip,
            result,
        })
    }

    /// Fetches the request's remote branch into local volume `name`, then moves the local
    /// branch of the same name to it (fast-forward unless the mode allows more) and, where
    /// that branch is checked out, checks the new commit out with the volume's containers
    /// stopped meanwhile. Uncommitted changes are refused before anything moves.
    pub async fn pull(
        self: &Arc<Self>,
        name: String,
        request: PullRequest,
        progress: Reporter,
    ) -> Result<TransferResult, ServiceError> {
        let fetched = self.fetch_retrying(name, &request, progress).await?;
        let Fetched {
            volume,
            branch,
            tip,
            mut result,
        } = fetched;
        let key = VolumeKey(volume.id);
        let n = volume.name.clone();
        let b = branch.clone();
        let (local, checked_out) = self
            .blocking(move |service| {
                let head = service.history.head(&key).for_volume(&n)?;
                let local = service
                    .history
                    .branches(&key)
                    .for_volume(&n)?
                    .into_iter()
                    .find(|x| x.name == b)
                    .map(|x| x.commit);
                Ok((local, head.branch.as_deref() == Some(b.as_str())))
            })
            .await?;
        result.branch = branch.clone();
        result.old_commit = local.map(|c| c.to_string());
        if checked_out && local != Some(tip) {
            // Refused here before the work below; checked again under the volume's lock.
            let target = volume.name.to_string();
            self.blocking(move |service| service.check_committed(&target))
                .await?;
        }
        result.outcome = TransferOutcome::FastForward;
        if let Some(local) = local {
            let n = volume.name.clone();
            let (behind, ahead) = self
                .blocking(move |service| {
                    Ok((
                        service.history.is_ancestor(local, tip).for_volume(&n)?,
                        service.history.is_ancestor(tip, local).for_volume(&n)?,
                    ))
                })
                .await?;
            if ahead {
                result.outcome = TransferOutcome::UpToDate;
                result.commit = local.to_string();
                return Ok(result);
            }
            if !behind {
                let branch_name = branch.clone();
                match request.mode {
                    UpdateMode::FastForward => {
                        let n = volume.name.clone();
                        let (ours, theirs) = self
                            .blocking(move |service| {
                                Ok((
                                    service.commits_between(&n, tip, &[local])?,
                                    service.commits_between(&n, local, &[tip])?,
                                ))
                            })
                            .await?;
                        return Err(TransferError::Diverged {
                            volume: volume.name,
                            branch,
                            sides: Box::new(Divergence {
                                sender: format!("remote {}", request.remote),
                                receiver: "this host".into(),
                                ours,
                                theirs,
                            }),
                        }
                        .into());
                    }
                    UpdateMode::Force => result.outcome = TransferOutcome::Forced,
                    UpdateMode::Stash => {
                        let v = volume.clone();
                        let stash = self
                            .blocking(move |service| {
                                service.stash_branch(&v, &branch_name, local, "a diverged pull")
                            })
                            .await?;
                        result.stashed_as = Some(stash);
                        result.outcome = TransferOutcome::Stashed;
                    }
                }
            }
        }
        if checked_out {
            // A local commit or a write since the checks above makes the pull refuse, never
            // lose them.
            let view = self
                .reset_with_containers_if(
                    volume.name.to_string(),
                    ResetRequest {
                        rev: tip.to_string(),
                        stop_removable: false,
                    },
                    Some(ResetPrecondition {
                        branch: branch.clone(),
                        at: local,
                    }),
                    Arc::new(NoProgress),
                )
                .await?;
            result.checked_out = true;
            result.not_resumed = view.containers_not_resumed;
        } else {
            let (n, b) = (volume.name.clone(), branch.clone());
            let message = format!("pull: {}", tip.short(12));
            self.blocking(move |service| {
                service
                    .history
                    .update_ref_if(&key, RefKind::Branch, &b, local, tip, &message)
                    .for_volume(&n)
            })
            .await?;
        }
        info!(volume = %volume.name, %branch, commit = %tip, outcome = ?result.outcome, "pulled");
        result.commit = tip.to_string();
        Ok(result)
    }
}
