//! The volume service in cluster mode: what create, remove, mount, unmount and move record in
//! the cluster's registry ([`crate::cluster`]), and how a node's own volumes are reconciled
//! with it after each (re)connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use dvol_api::{ClusterVolume, ClusterVolumeState};
use dvol_backends::Effect;
use tracing::{info, warn};

use super::VolumeService;
use crate::cluster::{Claim, Cluster};
use crate::error::{CloneSourceProblem, ClusterError, ServiceError, TransferError};
use crate::metadata::RemoteRecord;
use crate::names::VolumeName;
use crate::volume::{Volume, VolumeState};

/// This node's place in a cluster: the registry, and how it calls the other nodes.
pub struct ClusterLink {
    /// The registry.
    pub registry: Arc<Cluster>,
    /// The bearer token every node of the cluster accepts (the daemons share it).
    pub token: String,
    /// The CA that signs the nodes' TLS certificates; `None`: the nodes speak plain TCP.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink")
            .field("registry", &self.registry)
            .field("tls", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// The name part of a Docker volume reference (`NAME`, `NAME@PROFILE`).
fn volume_name(reference: &str) -> String {
    reference
        .split_once('@')
        .map_or(reference, |(name, _)| name)
        .to_string()
}

impl VolumeService {
    /// Puts this service in cluster mode (once, at start).
    pub fn join_cluster(&self, link: ClusterLink) {
        if self.cluster.set(link).is_err() {
            warn!("the daemon joined a cluster already; the second join is ignored");
        }
    }

    /// The registry, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get().map(|link| &link.registry)
    }

    /// The registry, or the refusal of a cluster call on a daemon without one.
    pub fn require_cluster(&self) -> Result<&Arc<Cluster>, ServiceError> {
        self.cluster()
            .ok_or_else(|| ClusterError::NotClustered.into())
    }

    /// Node `name` of the cluster as a remote to call, if the registry knows it with an
    /// address.
    pub(crate) fn cluster_node_remote(&self, name: &str) -> Option<RemoteRecord> {
        let link = self.cluster.get()?;
        let node = link.registry.known_node(name)?;
        Some(RemoteRecord {
            name: node.name,
            url: node.address?,
            token: link.token.clone(),
            ca_pem: link.ca_pem.clone().filter(|_| node.tls),
            added_at: Utc::now(),
        })
    }

    /// Claims a new volume's name in the cluster before its storage is made. A name another
    /// node holds is refused, unless that node is moving the volume here.
    pub(super) fn claim_in_cluster(&self, volume: &Volume) -> Result<(), ServiceError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        let me = cluster.name();
        let record = ClusterVolume {
            name: volume.name.to_string(),
            owner: me.clone(),
            profile: volume.profile.to_string(),
            size_bytes: volume.size.map(dvol_backends::ByteSize::bytes),
            epoch: 1,
            state: ClusterVolumeState::Ready,
            target: None,
            created_at: volume.created_rfc3339(),
            owner_alive: false,
            mounted_on: Vec::new(),
        };
        match cluster.claim(&record)? {
            Claim::Ours => Ok(()),
            Claim::Taken(theirs)
                if theirs.state == ClusterVolumeState::Moving
                    && theirs.target.as_deref() == Some(me.as_str()) =>
            {
                info!(volume = %volume.name, from = %theirs.owner, "creating the copy a move hands over");
                Ok(())
            }
            Claim::Taken(theirs) if theirs.owner == me => {
                // A record of ours with no volume here: a create a crash interrupted.
                Ok(())
            }
            Claim::Taken(theirs) => Err(ClusterError::OwnedElsewhere {
                volume: theirs.name.clone(),
                owner: theirs.owner.clone(),
                epoch: theirs.epoch,
                how: "; every node lists it already (`docker volume ls`), and only its owner mounts it".into(),
            }
            .into()),
        }
    }

    /// Drops a removed volume's record from the cluster, unless the volume moved away (then
    /// its record is its new owner's).
    pub(super) fn release_in_cluster(&self, volume: &Volume) -> Result<(), ServiceError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        if self.metadata.moved(volume.id)?.is_some() {
            return Ok(());
        }
        match cluster.release(volume.name.as_str()) {
            Ok(()) => Ok(()),
            // A copy left after another node took the volume: only the copy goes.
            Err(ClusterError::OwnedElsewhere { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Proves that this node may mount `volume` (see [`Cluster::prove_mount`]).
    pub(super) fn prove_mount_in_cluster(
        &self,
        volume: &Volume,
        mounts: u32,
    ) -> Result<(), ServiceError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        let epoch = cluster.prove_mount(volume.name.as_str(), mounts)?;
        if mounts == 1 {
            // The node's mount log: from here until the matching release, this node may
            // write the volume. A checker compares the logs of all nodes with etcd's history.
            info!(volume = %volume.name, epoch, "mount log: writable here");
        }
        Ok(())
    }

    /// The node's mount log: the volume's last mount here was released (its kernel mount is
    /// gone), or its first one failed.
    pub(super) fn log_released(&self, volume: &Volume) {
        if self.cluster().is_some() {
            info!(volume = %volume.name, "mount log: released here");
        }
    }

    /// The epoch at which this node owns `volume`, when sent as `target` (the same name) in
    /// cluster mode: what a push of it carries ([`dvol_api::PushOffer::epoch`]).
    pub(super) fn owned_epoch(&self, volume: &Volume, target: &VolumeName) -> Option<u64> {
        let cluster = self.cluster()?;
        let record = cluster.known_volume(volume.name.as_str())?;
        (volume.name == *target && record.owner == cluster.name()).then_some(record.epoch)
    }

    /// Refuses to take this node's copy of `volume` for the volume when the registry names
    /// another owner: its files here are not current.
    pub(super) fn refuse_not_owner(&self, volume: &Volume) -> Result<(), ServiceError> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        match cluster.known_volume(volume.name.as_str()) {
            Some(record) if record.owner != cluster.name() => Err(ClusterError::OwnedElsewhere {
                volume: volume.name.to_string(),
                how: format!(
                    "; the copy on node {} is not current: use a commit id or the UUID of the volume on {}",
                    cluster.name(),
                    record.owner
                ),
                owner: record.owner,
                epoch: record.epoch,
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Refuses a push into `name` that carries `epoch` (the sender's) once the registry holds
    /// a higher one: the sender no longer owns the volume. Read from etcd, not the cache.
    pub(super) fn refuse_fenced(
        &self,
        name: &VolumeName,
        epoch: Option<u64>,
    ) -> Result<(), ServiceError> {
        let (Some(cluster), Some(offered)) = (self.cluster(), epoch) else {
            return Ok(());
        };
        match cluster.volume("receiving a push", name.as_str())? {
            Some((record, _)) if record.epoch > offered => Err(ClusterError::Fenced {
                volume: name.to_string(),
                offered,
                current: record.epoch,
                owner: record.owner,
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Drops the local record that `volume` moved away, once the registry proved that this
    /// node owns it again (a move back that found nothing to send leaves it).
    pub(super) fn owned_again(&self, volume: &Volume) {
        match self.metadata.moved(volume.id) {
            Ok(Some(_)) => match self.metadata.clear_moved(volume.id) {
                Ok(()) => info!(volume = %volume.name, "owned by this node again"),
                Err(e) => {
                    warn!(volume = %volume.name, error = %e, "could not drop the record of its move away")
                }
            },
            Ok(None) => {}
            Err(e) => {
                warn!(volume = %volume.name, error = %e, "could not read the record of a move away")
            }
        }
    }

    /// Records in the cluster how many mounts of `volume` this node still holds.
    pub(super) fn unmounted_in_cluster(&self, volume: &Volume) {
        if let Some(cluster) = self.cluster() {
            cluster.record_unmount(volume.name.as_str(), volume.mounts.values().sum());
        }
    }

    /// Why a volume this node does not have cannot be mounted here, if the cluster knows it.
    pub(super) fn refuse_elsewhere(&self, name: &str) -> Option<ServiceError> {
        let cluster = self.cluster()?;
        let record = cluster.known_volume(name)?;
        let me = cluster.name();
        if !record.mounted_on.is_empty() && !record.mounted_on.contains(&me) {
            return Some(
                ClusterError::InUseElsewhere {
                    volume: name.to_string(),
                    owner: record.owner.clone(),
                    here: me,
                    mounts: record.mounted_on.len() as u32,
                    containers: Vec::new(),
                }
                .into(),
            );
        }
        Some(
            ClusterError::OwnedElsewhere {
                volume: name.to_string(),
                owner: record.owner.clone(),
                epoch: record.epoch,
                how: format!(
                    "{}; run `dvol move {name} {me}` on {} to bring it here",
                    if record.owner_alive {
                        ""
                    } else {
                        ", which is unavailable (its lease ended)"
                    },
                    record.owner
                ),
            }
            .into(),
        )
    }

    /// Creates `reference` with `options` ([`VolumeService::create`]); in cluster mode, a
    /// clone whose snapshot reference names nothing here is made from the node where it
    /// names a volume or commit ([`VolumeService::clone_from_cluster`]).
    pub async fn create_anywhere(
        self: &Arc<Self>,
        reference: String,
        options: BTreeMap<String, String>,
    ) -> Result<(Volume, Effect), ServiceError> {
        let (r, o) = (reference, options.clone());
        let first = self.blocking(move |s| s.create(&r, &o)).await;
        match first {
            Err(ServiceError::CloneSource {
                volume,
                reference,
                problem: CloneSourceProblem::NoMatch,
            }) if self.cluster().is_some() => {
                self.clone_from_cluster(volume, reference, options).await
            }
            other => other,
        }
    }

    /// Mounts volume `name` for `mount_id` ([`VolumeService::mount`]); in cluster mode, a
    /// volume another node owns, that no container uses there and whose profile lets it
    /// follow, is first moved here by its owner (the final round runs while this Mount
    /// waits), then mounted.
    pub async fn mount_following(
        self: &Arc<Self>,
        name: String,
        mount_id: String,
    ) -> Result<(Volume, std::path::PathBuf), ServiceError> {
        let (n, id) = (name.clone(), mount_id.clone());
        let first = self.blocking(move |s| s.mount(&n, &id)).await;
        // Whether a container uses it there is the owner's to say: this node's cache may be
        // behind, and only the owner can name the containers.
        let owner = match &first {
            Err(ServiceError::Cluster(e)) => match e.as_ref() {
                ClusterError::OwnedElsewhere { owner, .. }
                | ClusterError::InUseElsewhere { owner, .. } => owner.clone(),
                _ => return first,
            },
            _ => return first,
        };
        let Some(record) = self
            .cluster()
            .and_then(|c| c.known_volume(&volume_name(&name)))
        else {
            return first;
        };
        if !self.follows(&record.profile) || !record.owner_alive {
            return first;
        }
        let me = self.require_cluster()?.name();
        let peer = match self.peer(&owner) {
            Ok(peer) => peer,
            Err(_) => return first,
        };
        info!(volume = %record.name, owner = %owner, "the volume follows its container here: asking its owner to move it");
        let request = dvol_api::MoveRequest {
            remote: me,
            max_downtime_ms: None,
            wait_unmount: false,
            only_if_unused: true,
            // A container waits for it: one more try, not the backoff of a user's move.
            retries: Some(1),
        };
        let body = serde_json::to_vec(&request).map_err(|e| ServiceError::Worker {
            message: e.to_string(),
        })?;
        let path = format!("/v1/volumes/{}/move", record.name);
        match peer.bytes(&path, "application/json", body).await {
            Ok(_) => {}
            Err(TransferError::Refused {
                code: Some(code),
                containers,
                ..
            }) if code == "in_use" => {
                return Err(ClusterError::InUseElsewhere {
                    volume: record.name.clone(),
                    owner,
                    here: request.remote,
                    mounts: (record.mounted_on.len() as u32).max(1),
                    containers,
                }
                .into())
            }
            Err(e) => return Err(e.into()),
        }
        info!(volume = %record.name, from = %owner, "moved here to follow its container");
        self.blocking(move |s| s.mount(&name, &mount_id)).await
    }

    /// Whether volumes of profile `profile` follow their container (`follow`, default yes).
    fn follows(&self, profile: &str) -> bool {
        self.profiles
            .iter()
            .find(|p| p.name.as_str() == profile)
            .is_none_or(|p| p.config.follow.unwrap_or(true))
    }

    /// Brings this node's volumes and the registry in line, saying what it changed: a
    /// volume here that the registry lacks is registered; a record of this node's for which
    /// no volume exists here (a create a crash interrupted) is dropped; and, at the `first`
    /// reconciling since the daemon started, a move of this node's that a crash cut short
    /// (its record still `moving`, ownership not handed over) is called off: the volume is
    /// this node's, ready, and the target's copy, if one was made, waits for the next move.
    pub fn reconcile_cluster(&self, first: bool) {
        let Some(cluster) = self.cluster() else {
            return;
        };
        // The watch may list the registry before the lease is granted: changes need it.
        if !cluster.wait_for_lease(crate::cluster::LEASE_TTL) {
            warn!(
                "reconciling with the cluster: no lease yet; trying again at the next reconnection"
            );
            return;
        }
        let local = self.list();
        for volume in &local {
            if volume.state != VolumeState::Ready
                || self.metadata.moved(volume.id).ok().flatten().is_some()
            {
                continue;
            }
            match cluster.known_volume(volume.name.as_str()) {
                None => match self.claim_in_cluster(volume) {
                    Ok(()) => {
                        info!(volume = %volume.name, "reconciled: registered in the cluster")
                    }
                    Err(e) => {
                        warn!(volume = %volume.name, error = %e, "reconciling: could not register it")
                    }
                },
                Some(record) if record.owner != cluster.name() => {
                    warn!(volume = %volume.name, owner = %record.owner, "reconciling: another node owns this name; this node's copy is not mounted until it is removed or moved back")
                }
                Some(_) => {}
            }
        }
        for record in cluster.known_owned() {
            let here = local.iter().any(|v| v.name.as_str() == record.name);
            if first && here && record.state == ClusterVolumeState::Moving {
                match cluster.abort_move(&record.name) {
                    Ok(()) => {
                        info!(volume = %record.name, target = ?record.target, "reconciled: called off a move a crash interrupted; the volume is this node's")
                    }
                    Err(e) => {
                        warn!(volume = %record.name, error = %e, "reconciling: could not call off an interrupted move")
                    }
                }
                continue;
            }
            if here || record.state != ClusterVolumeState::Ready {
                continue;
            }
            let Ok(name) = VolumeName::parse(&record.name) else {
                continue;
            };
            // Under the name lock, so a create in progress (claimed, storage not yet made)
            // is not taken for an interrupted one.
            let lock = self.locks.get(&name);
            let _guard = lock.hold();
            if self.get(name.as_str()).is_ok() {
                continue;
            }
            match cluster.release(&record.name) {
                Ok(()) => {
                    info!(volume = %record.name, "reconciled: dropped the record of a create that did not finish here")
                }
                Err(e) => {
                    warn!(volume = %record.name, error = %e, "reconciling: could not drop a record without a volume")
                }
            }
        }
    }
}
