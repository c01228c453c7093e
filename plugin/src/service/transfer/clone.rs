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
use dvol_api::transfer::FETCH_ID_RECORD;
use dvol_api::{
    CloneRequest, FetchPlan, FetchRequest, ObjectsReceived, ResolveAnswer, ResolveRequest,
    ResolvedSource, TransferOutcome, TransferResult, TRANSFER_PROTOCOL,
};
use dvol_backends::Effect;
use dvol_snapshot::{CommitId, ObjectId, VolumeKey};
use tracing::{info, warn};

use super::super::clone::CloneSource;
use super::super::{Reporter, VolumeService};
use super::parse_commit;
use super::push::parse_peer_commit;
use super::remote::Peer;
use super::retry::{retries, retrying};
use crate::error::{CloneSourceProblem, ForVolume, ServiceError, TransferError};
use crate::names::{ProfileName, VolumeName};
use crate::volume::Volume;

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

    /// `POST /v1/transfer/fetch/ids`: the request's planned objects, in the order they would
    /// be sent, as [`FETCH_ID_RECORD`]-byte records (id, stored length).
    pub fn fetch_ids(&self, request: FetchRequest) -> Result<Vec<u8>, ServiceError> {
        let (_, _, plan) = self.fetch_target(&request)?;
        let mut records = Vec::with_capacity(plan.objects.len() * FETCH_ID_RECORD);
        for object in &plan.objects {
            records.extend_from_slice(object.id.as_bytes());
            records.extend_from_slice(&object.stored_len.to_le_bytes());
        }
        Ok(records)
    }

    /// `POST /v1/transfer/fetch/objects`: the request's objects as a pack, less those the
    /// caller says it holds.
    pub fn fetch_objects(self: &Arc<Self>, request: FetchRequest) -> Result<Body, ServiceError> {
        let (volume, _, mut plan) = self.fetch_target(&request)?;
        if !request.held.is_empty() {
            if request.held.len() != plan.objects.len().div_ceil(8) {
                return Err(TransferError::BadStream {
                    volume: volume.name.clone(),
                    problem: format!(
                        "its held bitmap has {} bytes for the {} planned objects",
                        request.held.len(),
                        plan.objects.len()
                    ),
                }
                .into());
            }
            let mut index = 0usize;
            plan.retain(|_| {
                let held = request.held[index / 8] & (1 << (index % 8)) != 0;
                index += 1;
                !held
            });
        }
        info!(volume = %volume.name, commit = %plan.tip, objects = plan.objects.len(), bytes = plan.bytes(), "sending objects");
        let (pieces, _reader) = self.pack_stream(plan, Arc::new(dvol_snapshot::NoProgress));
        Ok(Body::from_stream(pieces))
    }

    /// Makes a local volume from a remote's, with its whole history; tried again after lost
    /// connections as the request allows, each try fetching only what is still missing.
    pub async fn clone_remote(
        self: &Arc<Self>,
        request: CloneRequest,
        progress: Reporter,
    ) -> Result<TransferResult, ServiceError> {
        let what = format!("clone of volume {} from {}", request.volume, request.remote);
        let retries = retries(request.retries)?;
        let (mut result, attempts) = retrying(&what, retries, || {
            self.clone_once(&request, progress.clone())
        })
        .await?;
        result.attempts = attempts;
        Ok(result)
    }

    async fn clone_once(
        self: &Arc<Self>,
        request: &CloneRequest,
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
            held: Vec::new(),
        };
        let plan: FetchPlan = peer.json("/v1/transfer/fetch", &fetch).await?;
        let tip = parse_peer_commit(&peer, &plan.tip)?;
        let mut options: BTreeMap<String, String> = request.options.clone();
        like_sender(&mut options, &plan);
        self.check_can_take(&local, &options, &plan).await?;
        fetch.tip = Some(plan.tip.clone());
        let marker = receive_marker("clone", &peer.name, &request.volume, &tip);
        let received = self
            .receive_planned(&peer, &fetch, &plan, &marker, &local, progress)
            .await?;
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
        info!(volume = %local, remote = %peer.name, commit = %tip, objects = received.objects.objects_stored, skipped = received.skipped, "cloned from a remote");
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
            objects_sent: received.objects.objects_stored + received.objects.duplicates,
            bytes_sent: received.objects.bytes_received,
            objects_skipped: received.skipped,
            not_resumed: Vec::new(),
            attempts: 1,
        })
    }

    /// `POST /v1/transfer/resolve` (cluster mode): what `request`'s snapshot reference names
    /// here, for a node that could not resolve it. A commit is answered with a volume whose
    /// history holds it; a volume's UUID with a commit of its files now (made at a read point
    /// while its containers run, as a move's pre-copy round is: no branch moves). Nothing
    /// here is `found: None`; several things here are refused as ambiguous.
    pub fn resolve_for_peer(&self, request: ResolveRequest) -> Result<ResolveAnswer, ServiceError> {
        self.require_cluster()?;
        if request.protocol != TRANSFER_PROTOCOL {
            return Err(TransferError::Version {
                offered: request.protocol,
            }
            .into());
        }
        let name = VolumeName::parse(&request.volume)?;
        let found = match self.resolve_clone_source(&name, &request.reference) {
            Err(ServiceError::CloneSource {
                problem: CloneSourceProblem::NoMatch,
                ..
            }) => None,
            Err(e) => return Err(e),
            // Its volume was removed here: there is no history to send it from.
            Ok(CloneSource::Commit { owner: None, .. }) => None,
            Ok(CloneSource::Commit {
                commit,
                owner: Some(owner),
            }) => Some(ResolvedSource {
                volume: owner.name.to_string(),
                commit: commit.to_string(),
                of_volume: false,
            }),
            Ok(CloneSource::Volume(from)) => {
                self.refuse_not_owner(&from)?;
                self.refuse_moved(&from)?;
                let message = format!("clone of volume {} ({}) as {name}", from.name, from.id);
                let commit = self.snapshot_now(from.name.as_str(), message)?;
                info!(volume = %from.name, %commit, clone = %name, "a commit of the volume's files now, for a clone on another node");
                Some(ResolvedSource {
                    volume: from.name.to_string(),
                    commit: commit.to_string(),
                    of_volume: true,
                })
            }
        };
        Ok(ResolveAnswer { found })
    }

    /// Creates volume `name` from what snapshot reference `prefix` names on another node of
    /// the cluster, since it names nothing here (`docker run -v copy@snapshot-REF` on any
    /// node): every other live node is asked ([`VolumeService::resolve_for_peer`]); the one
    /// match's history is fetched from its node and the volume made here as a clone of that
    /// commit, like the source's volume (profile, size, filesystem) unless `options` say
    /// otherwise.
    pub(crate) async fn clone_from_cluster(
        self: &Arc<Self>,
        name: VolumeName,
        prefix: String,
        mut options: BTreeMap<String, String>,
    ) -> Result<(Volume, Effect), ServiceError> {
        let cluster = self.require_cluster()?.clone();
        let me = cluster.name();
        let request = ResolveRequest {
            protocol: TRANSFER_PROTOCOL,
            volume: name.to_string(),
            reference: prefix.clone(),
        };
        let mut found: Vec<(Peer, ResolvedSource)> = Vec::new();
        let (mut asked, mut failed) = (Vec::new(), Vec::new());
        for node in cluster.known_nodes().nodes {
            if node.name == me {
                continue;
            }
            let peer = match self.peer(&node.name) {
                Ok(peer) => peer,
                Err(e) => {
                    warn!(node = %node.name, error = %e, "cannot call the node to resolve a snapshot reference");
                    failed.push(format!("{}: {e}", node.name));
                    continue;
                }
            };
            match peer
                .json::<_, ResolveAnswer>("/v1/transfer/resolve", &request)
                .await
            {
                Ok(answer) => {
                    asked.push(node.name);
                    if let Some(source) = answer.found {
                        // A commit several nodes hold (one pushed or moved it) is one source.
                        if !found.iter().any(|(_, s)| s.commit == source.commit) {
                            found.push((peer, source));
                        }
                    }
                }
                Err(e) => {
                    warn!(node = %node.name, error = %e, "the node did not resolve a snapshot reference");
                    failed.push(format!("{}: {e}", node.name));
                }
            }
        }
        let problem = |problem| ServiceError::CloneSource {
            volume: name.clone(),
            reference: prefix.clone(),
            problem,
        };
        let (peer, source) = match found.len() {
            0 => {
                return Err(problem(CloneSourceProblem::NoMatchInCluster {
                    asked,
                    failed,
                }))
            }
            1 => found.remove(0),
            _ => {
                let candidates = found
                    .iter()
                    .map(|(peer, s)| {
                        let what = if s.of_volume { "volume" } else { "commit" };
                        format!("{what} {} on node {}", s.volume, peer.name)
                    })
                    .collect();
                return Err(problem(CloneSourceProblem::Ambiguous { candidates }));
            }
        };
        let fetch = FetchRequest {
            protocol: TRANSFER_PROTOCOL,
            volume: source.volume.clone(),
            branch: None,
            tip: Some(source.commit.clone()),
            known: Vec::new(),
            held: Vec::new(),
        };
        let plan: FetchPlan = peer.json("/v1/transfer/fetch", &fetch).await?;
        let tip = parse_peer_commit(&peer, &plan.tip)?;
        if tip.to_string() != source.commit {
            return Err(peer
                .protocol(format!(
                    "it planned commit {} for commit {}",
                    plan.tip, source.commit
                ))
                .into());
        }
        like_sender(&mut options, &plan);
        options.insert("from".into(), tip.to_string());
        self.check_can_take(&name, &options, &plan).await?;
        info!(volume = %name, node = %peer.name, source = %source.volume, commit = %tip, objects = plan.objects, bytes = plan.bytes, "cloning from another node of the cluster");
        let marker = receive_marker("clone", &peer.name, &source.volume, &tip);
        let progress = Arc::new(dvol_snapshot::NoProgress);
        self.receive_planned(&peer, &fetch, &plan, &marker, &name, progress)
            .await?;
        self.blocking(move |service| {
            let made = service.create(name.as_str(), &options)?;
            let _ = service.history.end_receive(&marker);
            Ok(made)
        })
        .await
    }

    /// Refuses, before any data moves, a clone this host cannot take: no profile
    /// `options["profile"]` here, or no room for the `plan`'s bytes.
    async fn check_can_take(
        self: &Arc<Self>,
        name: &VolumeName,
        options: &BTreeMap<String, String>,
        plan: &FetchPlan,
    ) -> Result<(), ServiceError> {
        let (name, profile, bytes) = (name.clone(), options["profile"].clone(), plan.bytes);
        self.blocking(move |service| {
            service.profile(&name, &ProfileName::parse(&profile)?)?;
            service.check_room(&name, bytes)
        })
        .await
    }

    /// Fetches `fetch`'s objects from `peer` and stores them under receive marker `marker`
    /// (for volume `local`, in messages); a sender that sends other than the `plan`ned
    /// number of objects is refused.
    pub(super) async fn receive_planned(
        self: &Arc<Self>,
        peer: &Peer,
        fetch: &FetchRequest,
        plan: &FetchPlan,
        marker: &str,
        local: &VolumeName,
        progress: Reporter,
    ) -> Result<Received, ServiceError> {
        let (fetch, held) = self.ask_without_held(peer, fetch, plan).await?;
        if held.objects == plan.objects {
            return Ok(Received {
                objects: ObjectsReceived {
                    objects_stored: 0,
                    duplicates: 0,
                    bytes_received: 0,
                },
                skipped: held.objects,
            });
        }
        let response = peer.fetch_objects(&fetch).await?;
        let body = Body::new(response.into_body());
        let objects = self
            .receive_stream(marker, local, body, held.bytes_wanted, progress, None)
            .await
            .map_err(|e| match e {
                // The sender's stream stopped short: the connection to it was lost.
                ServiceError::Transfer(cut) if matches!(*cut, TransferError::StreamCut { .. }) => {
                    ServiceError::from(peer.unreachable(cut))
                }
                e => e,
            })?;
        let sent = objects.objects_stored + objects.duplicates;
        if sent != plan.objects - held.objects {
            return Err(peer
                .protocol(format!(
                    "it sent {sent} objects of the {} it planned less the {} held here",
                    plan.objects, held.objects
                ))
                .into());
        }
        Ok(Received {
            objects,
            skipped: held.objects,
        })
    }

    /// `fetch`, asking `peer` not to send the planned objects this host holds already: it
    /// lists them (`fetch/ids`), and the answer's bitmap names those found here.
    async fn ask_without_held(
        self: &Arc<Self>,
        peer: &Peer,
        fetch: &FetchRequest,
        plan: &FetchPlan,
    ) -> Result<(FetchRequest, Held), ServiceError> {
        let mut fetch = fetch.clone();
        let mut held = Held {
            objects: 0,
            bytes_wanted: plan.bytes,
        };
        if plan.objects == 0 {
            return Ok((fetch, held));
        }
        let body = serde_json::to_vec(&fetch).map_err(|e| peer.protocol(e))?;
        let records = peer
            .bytes("/v1/transfer/fetch/ids", "application/json", body)
            .await?;
        if records.len() as u64 != plan.objects * FETCH_ID_RECORD as u64 {
            return Err(peer
                .protocol(format!(
                    "it listed {} bytes of ids for {} planned objects",
                    records.len(),
                    plan.objects
                ))
                .into());
        }
        let (bits, found, wanted) = self
            .blocking(move |service| {
                let mut bits = vec![0u8; (records.len() / FETCH_ID_RECORD).div_ceil(8)];
                let (mut found, mut wanted) = (0u64, 0u64);
                for (i, record) in records.chunks_exact(FETCH_ID_RECORD).enumerate() {
                    let mut id = [0u8; 32];
                    id.copy_from_slice(&record[..32]);
                    let mut len = [0u8; 8];
                    len.copy_from_slice(&record[32..]);
                    if service.history.has_object(&ObjectId::from_bytes(id)) {
                        bits[i / 8] |= 1 << (i % 8);
                        found += 1;
                    } else {
                        wanted = wanted.saturating_add(u64::from_le_bytes(len));
                    }
                }
                Ok((bits, found, wanted))
            })
            .await?;
        if found > 0 {
            fetch.held = bits;
            held = Held {
                objects: found,
                bytes_wanted: wanted,
            };
        }
        Ok((fetch, held))
    }
}

/// What a fetch received, and how many planned objects it did not ask for (held here).
pub(super) struct Received {
    /// What the stream brought.
    pub(super) objects: ObjectsReceived,
    /// Planned objects this host held already.
    pub(super) skipped: u64,
}

/// The planned objects of a fetch found here, and the stored bytes of the others.
struct Held {
    objects: u64,
    bytes_wanted: u64,
}

/// Fills in the options a clone from `plan`'s sender leaves unsaid: its profile, size and
/// filesystem.
fn like_sender(options: &mut BTreeMap<String, String>, plan: &FetchPlan) {
    options
        .entry("profile".into())
        .or_insert_with(|| plan.volume.profile.clone());
    if let Some(size) = plan.volume.size_bytes {
        options.entry("size".into()).or_insert(size.to_string());
    }
    if let Some(fs) = plan.volume.filesystem {
        options.entry("fs".into()).or_insert(fs.to_string());
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
