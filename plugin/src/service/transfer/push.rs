//! Sending a volume's branch, with the history it needs, to a remote (`dvol push`).
//!
//! One offer (the receiver answers with its commits of the volume: up to date ends here),
//! a plan made locally from those commits ([`dvol_snapshot::SendPlan`]), one `have` query
//! per [`MAX_HAVE_IDS`] planned objects, one object stream, one branch move.

use std::sync::Arc;

use dvol_api::transfer::pack;
use dvol_api::{
    PushAnswer, PushFinish, PushFinished, PushOffer, PushRequest, TransferOutcome, TransferResult,
    UpdateMode, MAX_HAVE_IDS, TRANSFER_PROTOCOL,
};
use dvol_snapshot::{CommitId, Phase, SendPlan, VolumeKey};
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::Method;
use tracing::info;

use super::super::{Reporter, VolumeService};
use super::remote::Peer;
use super::retry::{retries, retrying};
use crate::error::{Divergence, ForVolume, ServiceError, TransferError};
use crate::names::VolumeName;

/// What is being sent where.
#[derive(Debug)]
pub(super) struct Sending<'a> {
    /// The remote.
    pub peer: &'a Peer,
    /// The local volume.
    pub volume: &'a crate::volume::Volume,
    /// Its name on the remote.
    pub target: &'a VolumeName,
    /// The branch.
    pub branch: &'a str,
    /// The local volume as the API shows it (for a receiver that creates it).
    pub like: dvol_api::VolumeView,
    /// How the remote's branch may move.
    pub mode: UpdateMode,
    /// Stop, check out and restart on the remote.
    pub checkout: bool,
}

/// Object frames are sent in pieces of about this size.
const SEND_PIECE: usize = 1 << 20;

/// How many pieces may wait to be sent.
const PIECES_IN_FLIGHT: usize = 8;

impl VolumeService {
    /// Pushes volume `name`'s branch (the checked-out one unless the request names one) to
    /// the request's remote.
    pub async fn push(
        self: &Arc<Self>,
        name: String,
        request: PushRequest,
        progress: Reporter,
    ) -> Result<TransferResult, ServiceError> {
        let remote = request.remote.clone();
        let (peer, volume, branch, tip, like) = self
            .blocking(move |service| {
                let peer = service.peer(&remote)?;
                let volume = service.get(&name)?;
                service.refuse_moved(&volume)?;
                let key = VolumeKey(volume.id);
                let head = service.history.head(&key).for_volume(&volume.name)?;
                let branch = match request.branch.clone() {
                    Some(b) => b,
                    None => head.branch.clone().ok_or_else(|| TransferError::Detached {
                        volume: volume.name.clone(),
                    })?,
                };
                let tip = service.branch_tip(&volume, &branch)?;
                let like = service.view(volume.clone());
                Ok((peer, volume, branch, tip, like))
            })
            .await?;
        let target = match &request.as_name {
            Some(n) => VolumeName::parse(n)?,
            None => volume.name.clone(),
        };
        let sending = Sending {
            peer: &peer,
            volume: &volume,
            target: &target,
            branch: &branch,
            like,
            mode: request.mode,
            checkout: request.checkout,
        };
        let what = format!("push of volume {} to {}", volume.name, peer.name);
        let retries = retries(request.retries)?;
        let (mut result, attempts) = retrying(&what, retries, || {
            self.send_commit(&sending, tip, true, &progress)
        })
        .await?;
        result.attempts = attempts;
        Ok(result)
    }

    /// Sends commit `tip` and what it needs; with `finish`, moves the receiver's branch to
    /// it (else the objects only arrive: a move's pre-copy round).
    pub(super) async fn send_commit(
        self: &Arc<Self>,
        sending: &Sending<'_>,
        tip: CommitId,
        finish: bool,
        progress: &Reporter,
    ) -> Result<TransferResult, ServiceError> {
        let Sending {
            peer,
            volume,
            target,
            branch,
            ..
        } = *sending;
        let branch = branch.to_string();
        let offer = PushOffer {
            protocol: TRANSFER_PROTOCOL,
            sender: self.host_id,
            volume: target.to_string(),
            branch: branch.clone(),
            tip: tip.to_string(),
            like: sending.like.clone(),
            mode: sending.mode,
            checkout: sending.checkout,
            epoch: self.owned_epoch(sending.volume, target),
        };
        let answer: PushAnswer = peer.json("/v1/transfer/push", &offer).await?;
        let their_tip = answer
            .branch_tip
            .as_deref()
            .map(|t| parse_peer_commit(peer, t))
            .transpose()?;
        let mut result = TransferResult {
            remote: peer.name.clone(),
            volume: target.to_string(),
            branch: branch.clone(),
            commit: tip.to_string(),
            old_commit: their_tip.map(|c| c.to_string()),
            outcome: TransferOutcome::UpToDate,
            stashed_as: None,
            checked_out: false,
            commits: 0,
            objects_sent: 0,
            bytes_sent: 0,
            objects_skipped: 0,
            not_resumed: Vec::new(),
            attempts: 1,
        };
        if their_tip == Some(tip) {
            info!(volume = %volume.name, remote = %peer.name, %branch, "up to date");
            return Ok(result);
        }
        if let Some(theirs) = their_tip {
            self.check_divergence(peer, &volume.name, &offer, &answer, theirs, tip)
                .await?;
        }
        let tips: Vec<CommitId> = answer
            .tips
            .iter()
            .map(|t| parse_peer_commit(peer, t))
            .collect::<Result<_, _>>()?;
        let n = volume.name.clone();
        let mut plan = self
            .blocking(move |service| service.history.plan_send(tip, &tips).for_volume(&n))
            .await?;
        result.commits = plan.new_commits.len() as u64;
        let planned = plan.objects.len() as u64;
        self.drop_what_they_have(peer, &answer.session, &mut plan, progress)
            .await?;
        result.objects_skipped = planned - plan.objects.len() as u64;
        result.objects_sent = plan.objects.len() as u64;
        result.bytes_sent = plan.bytes();
        self.send_objects(peer, &answer.session, plan, progress)
            .await?;
        if !finish {
            return Ok(result);
        }
        let finished: PushFinished = peer
            .json(
                &format!("/v1/transfer/sessions/{}/finish", answer.session),
                &PushFinish {
                    old: answer.branch_tip.clone(),
                    new: tip.to_string(),
                },
            )
            .await?;
        let (n, r, b) = (volume.name.clone(), peer.name.clone(), branch.clone());
        let key = VolumeKey(volume.id);
        self.blocking(move |service| {
            service
                .history
                .set_remote_ref(&key, &r, &b, tip)
                .for_volume(&n)
        })
        .await?;
        result.outcome = finished.outcome;
        result.stashed_as = finished.stashed_as;
        result.checked_out = finished.checked_out;
        result.not_resumed = finished.not_resumed;
        info!(volume = %volume.name, remote = %peer.name, %branch, commit = %tip, outcome = ?result.outcome, objects = result.objects_sent, bytes = result.bytes_sent, "pushed");
        Ok(result)
    }

    /// Refuses a push whose receiver has commits this host lacks, unless the mode allows it;
    /// an unrelated history is refused unless forced.
    async fn check_divergence(
        self: &Arc<Self>,
        peer: &Peer,
        local: &VolumeName,
        offer: &PushOffer,
        answer: &PushAnswer,
        theirs: CommitId,
        tip: CommitId,
    ) -> Result<(), ServiceError> {
        let target = VolumeName::parse(&offer.volume)?;
        let mode = offer.mode;
        let n = local.clone();
        let fast = self
            .blocking(move |service| {
                Ok(service.history.has_object(&theirs.0)
                    && service.history.is_ancestor(theirs, tip).for_volume(&n)?)
            })
            .await?;
        if fast {
            return Ok(());
        }
        let recent = answer.recent.clone();
        let roots = answer.roots.clone();
        let n = local.clone();
        let (base, ours, unrelated) = self
            .blocking(move |service| {
                let has = |id: &str| {
                    id.parse::<CommitId>()
                        .is_ok_and(|c| service.history.has_object(&c.0))
                };
                let base = recent.iter().position(|c| has(&c.id));
                let unrelated =
                    base.is_none() && !roots.is_empty() && !roots.iter().any(|r| has(r));
                let base_id = base.and_then(|i| recent[i].id.parse::<CommitId>().ok());
                let ours = service.commits_between(&n, tip, base_id.as_slice())?;
                Ok((base, ours, unrelated))
            })
            .await?;
        if unrelated && mode != UpdateMode::Force {
            return Err(TransferError::Unrelated {
                volume: target,
                sender: "this host".into(),
                receiver: format!("remote {}", peer.name),
            }
            .into());
        }
        if mode != UpdateMode::FastForward {
            return Ok(());
        }
        let theirs_list: Vec<String> = answer
            .recent
            .iter()
            .take(base.unwrap_or(answer.recent.len()))
            .map(|c| format!("{} {}", &c.id[..12.min(c.id.len())], first_line(&c.message)))
            .collect();
        Err(TransferError::Diverged {
            volume: target,
            branch: offer.branch.clone(),
            sides: Box::new(Divergence {
                sender: "this host".into(),
                receiver: format!("remote {}", peer.name),
                ours,
                theirs: theirs_list,
            }),
        }
        .into())
    }

    /// Asks the receiver which planned objects it holds already and drops those.
    async fn drop_what_they_have(
        self: &Arc<Self>,
        peer: &Peer,
        session: &str,
        plan: &mut SendPlan,
        progress: &Reporter,
    ) -> Result<(), ServiceError> {
        progress.start(Phase::NEGOTIATE, Some(plan.objects.len() as u64));
        let mut had = vec![false; plan.objects.len()];
        for (batch, objects) in plan.objects.chunks(MAX_HAVE_IDS).enumerate() {
            let mut ids = Vec::with_capacity(objects.len() * 32);
            for o in objects {
                ids.extend_from_slice(o.id.as_bytes());
            }
            let bits = peer
                .bytes(
                    &format!("/v1/transfer/sessions/{session}/have"),
                    "application/octet-stream",
                    ids,
                )
                .await?;
            if bits.len() != objects.len().div_ceil(8) {
                return Err(peer
                    .protocol(format!(
                        "its have answer has {} bytes for {} ids",
                        bits.len(),
                        objects.len()
                    ))
                    .into());
            }
            for i in 0..objects.len() {
                had[batch * MAX_HAVE_IDS + i] = bits[i / 8] & (1 << (i % 8)) != 0;
            }
            progress.advance(objects.len() as u64);
        }
        progress.finish();
        let mut index = 0;
        plan.retain(|_| {
            let keep = !had[index];
            index += 1;
            keep
        });
        Ok(())
    }

    /// Streams the plan's objects in their stored form.
    async fn send_objects(
        self: &Arc<Self>,
        peer: &Peer,
        session: &str,
        plan: SendPlan,
        progress: &Reporter,
    ) -> Result<(), ServiceError> {
        let total = plan.bytes();
        let count = plan.objects.len() as u64;
        let (pieces, reader) = self.pack_stream(plan, progress.clone());
        let body = StreamBody::new(pieces.map(|piece| piece.map(Frame::data))).boxed_unsync();
        let sent = peer
            .call(
                Method::POST,
                &format!("/v1/transfer/sessions/{session}/objects"),
                pack::MEDIA_TYPE,
                &[("dvol-bytes", total.to_string())],
                body,
            )
            .await;
        if let Ok(Err(e)) = reader.await {
            return Err(ServiceError::Repository(e));
        }
        let answer = sent?
            .into_body()
            .collect()
            .await
            .map_err(|e| peer.unreachable(e))?
            .to_bytes();
        let received: dvol_api::ObjectsReceived =
            serde_json::from_slice(&answer).map_err(|e| peer.protocol(e))?;
        if received.objects_stored + received.duplicates != count {
            return Err(peer
                .protocol(format!(
                    "it says it received {} objects of the {count} sent",
                    received.objects_stored + received.duplicates
                ))
                .into());
        }
        Ok(())
    }

    /// The plan's objects as a pack, in pieces of about [`SEND_PIECE`] bytes, read on a
    /// blocking thread at most [`PIECES_IN_FLIGHT`] pieces ahead of the connection; the
    /// reader's outcome once the stream ends or its consumer goes away.
    pub(super) fn pack_stream(
        self: &Arc<Self>,
        plan: SendPlan,
        progress: Reporter,
    ) -> (
        impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        tokio::task::JoinHandle<Result<(), dvol_snapshot::Error>>,
    ) {
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(PIECES_IN_FLIGHT);
        let service = self.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let total = plan.bytes();
            progress.start(Phase::SEND, Some(total));
            let mut piece = pack::MAGIC.to_vec();
            for object in &plan.objects {
                let stored = match service.history.read_raw_object(&object.id) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                        return Err(e);
                    }
                };
                pack::object(&mut piece, object.id.as_bytes(), &stored);
                service.metrics.transfer_sent(stored.len() as u64);
                progress.advance(object.stored_len);
                if piece.len() >= SEND_PIECE
                    && tx
                        .blocking_send(Ok(Bytes::from(std::mem::take(&mut piece))))
                        .is_err()
                {
                    return Ok(());
                }
            }
            pack::end(&mut piece, plan.objects.len() as u64, total);
            let _ = tx.blocking_send(Ok(Bytes::from(piece)));
            progress.finish();
            Ok(())
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (stream, reader)
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// A commit id the remote sent.
pub(super) fn parse_peer_commit(peer: &Peer, text: &str) -> Result<CommitId, TransferError> {
    text.parse()
        .map_err(|e| peer.protocol(format!("{text:?} is not a commit id: {e}")))
}
