//! Cloning a remote's volume with its whole history (`dvol clone REMOTE VOLUME[:BRANCH]
//! [LOCAL]`), and the sending side of it (`/v1/transfer/fetch`).
//!
//! The caller asks the sender for its plan first (tip, profile, size and what the transfer
//! costs) and refuses before any data moves what it cannot take (no such profile here, no
//! room, a volume of that name). Then the sender streams the objects; the caller stores them
//! as a push's receiver does, under a receive marker, creates the volume like the sender's
//! (or as the options say: any backend to any backend) and checks the commit out.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use dvol_api::{
    CloneRequest, FetchPlan, FetchRequest, TransferOutcome, TransferResult, TRANSFER_PROTOCOL,
};
use dvol_snapshot::{CommitId, VolumeKey};
use tracing::info;

use super::super::{Reporter, VolumeService};
use super::parse_commit;
use super::push::parse_peer_commit;
use crate::error::{ForVolume, ServiceError, TransferError};
use crate::names::{ProfileName, VolumeName};

impl VolumeService {
    /// The volume, branch and tip a [`FetchRequest`] names, and its plan.
    fn fetch_target(
        &self,
        request: &FetchRequest,
    ) -> Result<(crate::volume::Volume, String, dvol_snapshot::SendPlan), ServiceError> {
        if request.protocol != TRANSFER_PROTOCOL {
            return Err(TransferError::Version {
                offered: request.protocol,
            }
            .into());
        }
        let volume = self.get(&request.volume)?;
        let key = VolumeKey(volume.id);
        let head = self.history.head(&key).for_volume(&volume.name)?;
        let branch = match &request.branch {
            Some(b) => b.clone(),
            None => head.branch.ok_or_else(|| TransferError::Detached {
                volume: volume.name.clone(),
            })?,
        };
        let tip = match &request.tip {
            Some(t) => parse_commit(&volume.name, t)?,
            None => self.branch_tip(&volume, &branch)?,
        };
        let known: Vec<CommitId> = request
            .known
            .iter()
            .map(|k| parse_commit(&volume.name, k))
            .collect::<Result<_, _>>()?;
        let plan = self
            .history
            .plan_send(tip, &known)
            .for_volume(&volume.name)?;
        Ok((volume, branch, plan))
    }

    /// `POST /v1/transfer/fetch`: what sending the request's volume would take.
    pub fn fetch_plan(&self, request: FetchRequest) -> Result<FetchPlan, ServiceError> {
        let (volume, branch, plan) = self.fetch_target(&request)?;
        Ok(FetchPlan {
            volume: self.view(volume),
            branch,
            tip: plan.tip.to_string(),
            commits: plan.new_commits.len() as u64,
            objects: plan.objects.len() as u64,
            bytes: plan.bytes(),
        })
    }

    /// `POST /v1/transfer/fetch/objects`: the request's objects as a pack.
    pub fn fetch_objects(self: &Arc<Self>, request: FetchRequest) -> Result<Body, ServiceError> {
        let (volume, _, plan) = self.fetch_target(&request)?;
        info!(volume = %volume.name, commit = %plan.tip, objects = plan.objects.len(), bytes = plan.bytes(), "sending objects");
        let (pieces, _reader) = self.pack_stream(plan, Arc::new(dvol_snapshot::NoProgress));
        Ok(Body::from_stream(pieces))
    }

    /// Makes a local volume from a remote's, with its whole history.
    pub async fn clone_remote(
        self: &Arc<Self>,
        request: CloneRequest,
        progress: Reporter,
    ) -> Result<TransferResult, ServiceError> {
        let local = VolumeName::parse(request.name.as_deref().unwrap_or(&request.volume))?;
        let remote = request.remote.clone();
        let name = local.clone();
        let peer = self
            .blocking(move |service| {
                let peer = service.peer(&remote)?;
                match service.get(name.as_str()) {
                    Ok(_) => Err(TransferError::LocalExists { volume: name }.into()),
                    Err(ServiceError::NotFound { .. }) => Ok(peer),
                    Err(e) => Err(e),
                }
            })
            .await?;
        let mut fetch = FetchRequest {
            protocol: TRANSFER_PROTOCOL,
            volume: request.volume.clone(),
            branch: request.branch.clone(),
            tip: None,
            known: Vec::new(),
        };
        let plan: FetchPlan = peer.json("/v1/transfer/fetch", &fetch).await?;
        let tip = parse_peer_commit(&peer, &plan.tip)?;
        let mut options: BTreeMap<String, String> = request.options.clone();
        options
            .entry("profile".into())
            .or_insert_with(|| plan.volume.profile.clone());
        if let Some(size) = plan.volume.size_bytes {
            options.entry("size".into()).or_insert(size.to_string());
        }
        if let Some(fs) = plan.volume.filesystem {
            options.entry("fs".into()).or_insert(fs.to_string());
        }
        let (name, profile, bytes) = (local.clone(), options["profile"].clone(), plan.bytes);
        self.blocking(move |service| {
            let profile = ProfileName::parse(&profile)?;
            service.profile(&name, &profile)?;
            service.check_room(&name, bytes)
        })
        .await?;
        fetch.tip = Some(plan.tip.clone());
        let response = peer.fetch_objects(&fetch).await?;
        let marker = receive_marker("clone", &peer.name, &request.volume, &tip);
        let received = self
            .receive_stream(
                &marker,
                &local,
                Body::new(response.into_body()),
                plan.bytes,
                progress,
                None,
            )
            .await?;
        if received.objects_stored + received.duplicates != plan.objects {
            return Err(peer
                .protocol(format!(
                    "it sent {} objects of the {} it planned",
                    received.objects_stored + received.duplicates,
                    plan.objects
                ))
                .into());
        }
        let (name, branch, remote_name) = (local.clone(), plan.branch.clone(), peer.name.clone());
        let from = format!("{}:{}", peer.name, request.volume);
        self.blocking(move |service| {
            let (volume, _) = service.create(name.as_str(), &options)?;
            let message = format!("clone: from {from} at {}", tip.short(12));
            if let Err(e) = service.fill_from_commit(&volume, &branch, tip, &message) {
                service.destroy_after_failure(&volume, "clone");
                return Err(e);
            }
            service
                .history
                .set_remote_ref(&VolumeKey(volume.id), &remote_name, &branch, tip)
                .for_volume(&volume.name)?;
            let _ = service.history.end_receive(&marker);
            Ok(())
        })
        .await?;
        info!(volume = %local, remote = %peer.name, commit = %tip, objects = received.objects_stored, "cloned from a remote");
        Ok(TransferResult {
            remote: peer.name.clone(),
            volume: local.to_string(),
            branch: plan.branch,
            commit: tip.to_string(),
            old_commit: None,
            outcome: TransferOutcome::Created,
            stashed_as: None,
            checked_out: true,
            commits: plan.commits,
            objects_sent: received.objects_stored + received.duplicates,
            bytes_sent: received.bytes_received,
            objects_skipped: 0,
            not_resumed: Vec::new(),
        })
    }
}

/// The receive marker of a clone or fetch (`what`): the same for a rerun of the same one.
pub(super) fn receive_marker(what: &str, remote: &str, volume: &str, tip: &CommitId) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in [remote, volume] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.update(tip.0.as_bytes());
    format!("{what}-{}", &hasher.finalize().to_hex()[..24])
}
