//! The receiving side of a push: the offer, the `have` query, the object stream and the
//! branch move (see [`dvol_api::transfer`] for the calls).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use dvol_api::transfer::pack::{self, Frame};
use dvol_api::{
    IncomingPush, ObjectsReceived, PushAnswer, PushFinish, PushFinished, PushOffer, ResetRequest,
    TransferOutcome, UpdateMode, MAX_HAVE_IDS, TRANSFER_PROTOCOL,
};
use dvol_snapshot::receive::ReceiveError;
use dvol_snapshot::refs::{validate_ref_name, RefError, RefKind};
use dvol_snapshot::{CommitId, NoProgress, ObjectId, Phase, VolumeKey};
use http_body_util::BodyExt;
use tracing::{info, warn};

use super::super::{Reporter, VolumeService};
use super::{out_of_space, parse_commit, session_id, Session, StreamProgress};
use crate::error::{Divergence, ForVolume, ServiceError, TransferError};
use crate::names::VolumeName;
use crate::service::history::ResetPrecondition;
use crate::volume::{Volume, VolumeState};

/// Free space kept beyond what an object stream declares, for the database and the batch's
/// temporary files.
const SPACE_MARGIN: u64 = 64 << 20;

/// An object stream that brings no byte for this long is taken for cut.
const STREAM_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// How many of the receiving branch's commits an answer lists for a divergence report.
const RECENT_COMMITS: usize = 50;

impl VolumeService {
    /// `POST /v1/transfer/push`: checks what a sender offers and answers with this host's
    /// commits of the volume. Everything that would make the push fail at its end (an unknown
    /// profile, the branch checked out in a volume in use or with uncommitted changes) is
    /// refused here, before any data moves.
    pub fn offer_push(&self, offer: PushOffer) -> Result<PushAnswer, ServiceError> {
        if offer.protocol != TRANSFER_PROTOCOL {
            return Err(TransferError::Version {
                offered: offer.protocol,
            }
            .into());
        }
        let name = VolumeName::parse(&offer.volume)?;
        validate_ref_name(RefKind::Branch, &offer.branch)
            .map_err(dvol_snapshot::Error::from)
            .for_volume(&name)?;
        parse_commit(&name, &offer.tip)?;
        self.refuse_fenced(&name, offer.epoch)?;
        let existing = match self.get(name.as_str()) {
            Ok(v) => Some(v),
            Err(ServiceError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut answer = PushAnswer {
            session: session_id(offer.sender, name.as_str(), &offer.branch),
            volume_exists: existing.is_some(),
            branch_tip: None,
            tips: Vec::new(),
            recent: Vec::new(),
            roots: Vec::new(),
        };
        match &existing {
            Some(volume) if volume.id == offer.like.id => {
                // The remote is this host and the volume itself: a push would change nothing,
                // and a move would mark the only copy as moved away.
                return Err(TransferError::IntoItself {
                    volume: name.clone(),
                }
                .into());
            }
            Some(volume) => {
                if volume.state != VolumeState::Ready {
                    return Err(ServiceError::Busy {
                        volume: name.clone(),
                    });
                }
                let key = VolumeKey(volume.id);
                let head = self.history.head(&key).for_volume(&name)?;
                if head.commit.is_none() {
                    return Err(TransferError::BadRemote {
                        remote: "this host".into(),
                        problem: format!(
                            "volume {name} exists here without any commit; remove it, or push with --as NAME to another name"
                        ),
                    }
                    .into());
                }
                let branch_tip = self
                    .history
                    .branches(&key)
                    .for_volume(&name)?
                    .into_iter()
                    .find(|b| b.name == offer.branch)
                    .map(|b| b.commit);
                answer.branch_tip = branch_tip.map(|c| c.to_string());
                let up_to_date = answer.branch_tip.as_deref() == Some(offer.tip.as_str());
                if !up_to_date {
                    answer.tips = self
                        .history
                        .ref_tips(&key)
                        .for_volume(&name)?
                        .iter()
                        .map(CommitId::to_string)
                        .collect();
                }
                // An up-to-date sender needs nothing more: the answer stays one small message.
                if let Some(tip) = branch_tip.filter(|_| !up_to_date) {
                    let log = self.history.log(&key, &tip.to_string()).for_volume(&name)?;
                    if log.len() <= RECENT_COMMITS {
                        answer.roots = log
                            .iter()
                            .filter(|c| c.parents.is_empty())
                            .map(|c| c.id.to_string())
                            .collect();
                    }
                    answer.recent = log
                        .iter()
                        .take(RECENT_COMMITS)
                        .map(|c| self.commit_view(volume, c))
                        .collect();
                }
                let checked_out = head.branch.as_deref() == Some(offer.branch.as_str());
                let moves = answer.branch_tip.as_deref() != Some(offer.tip.as_str());
                if checked_out && moves {
                    if volume.in_use() && !offer.checkout {
                        return Err(TransferError::InUse {
                            volume: name,
                            branch: offer.branch,
                            mounts: volume.mounts.values().sum(),
                        }
                        .into());
                    }
                    self.check_committed(name.as_str())?;
                }
            }
            None => {
                let profile = crate::names::ProfileName::parse(&offer.like.profile)?;
                self.profile(&name, &profile)?;
            }
        }
        self.sessions.start(
            &answer.session,
            Session {
                offer,
                volume: name,
                touched: Instant::now(),
                receiving: false,
                stop: Arc::default(),
                offered_at: chrono::Utc::now(),
                stream: Arc::default(),
            },
        )?;
        Ok(answer)
    }

    /// `POST /v1/transfer/sessions/{session}/have`: for each 32-byte object id in `ids`, one
    /// bit (least significant first) set if this host holds the object, and so everything
    /// below it.
    pub fn have_objects(&self, session: &str, ids: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let s = self.sessions.get(session)?;
        if ids.len() % 32 != 0 || ids.len() / 32 > MAX_HAVE_IDS {
            return Err(TransferError::BadStream {
                volume: s.volume,
                problem: format!(
                    "a have query is up to {MAX_HAVE_IDS} ids of 32 bytes each; this one has {} bytes",
                    ids.len()
                ),
            }
            .into());
        }
        let mut bits = vec![0u8; (ids.len() / 32).div_ceil(8)];
        for (i, id) in ids.chunks_exact(32).enumerate() {
            let mut raw = [0u8; 32];
            raw.copy_from_slice(id);
            if self.history.has_object(&ObjectId::from_bytes(raw)) {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        Ok(bits)
    }

    /// `GET /v1/incoming`: the pushes other hosts are sending here.
    pub fn incoming(&self) -> Vec<IncomingPush> {
        self.sessions.list().iter().map(Session::view).collect()
    }

    /// `POST /v1/transfer/sessions/{session}/objects`: receives an object stream of
    /// `declared` stored bytes. Refused before reading it when the state root lacks the room.
    /// Each object is re-hashed and admitted only after the objects it names; a stream cut
    /// short keeps every object that arrived whole.
    pub async fn receive_objects(
        self: &Arc<Self>,
        session: String,
        declared: u64,
        body: Body,
    ) -> Result<ObjectsReceived, ServiceError> {
        let s = self.sessions.get(&session)?;
        if let Err(refused) = self.check_room(&s.volume, declared) {
            // Nothing is stored, but the stream is read to its end: a sender still writing it
            // then gets this answer, not a connection closed under it.
            let mut body = body;
            while let Ok(Some(Ok(_))) = tokio::time::timeout(STREAM_IDLE, body.frame()).await {}
            return Err(refused);
        }
        self.sessions.set_receiving(&session, true)?;
        let progress = Arc::new(StreamProgress::new(&s, &session));
        let result = self
            .receive_stream(&session, &s.volume, body, declared, progress, Some(&s.stop))
            .await;
        let _ = self.sessions.set_receiving(&session, false);
        result
    }

    pub(super) fn check_room(
        &self,
        volume: &VolumeName,
        declared: u64,
    ) -> Result<(), ServiceError> {
        let free = self.free_bytes()?;
        if free < declared.saturating_add(SPACE_MARGIN) {
            return Err(self.no_space(volume, declared, free));
        }
        Ok(())
    }

    /// Free bytes of the state root, for an unprivileged writer.
    fn free_bytes(&self) -> Result<u64, ServiceError> {
        let root = self.layout.root();
        let stat = rustix::fs::statvfs(root).map_err(|e| ServiceError::Root {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// The "no space" refusal of a transfer into `volume` that needs `needed` stored bytes
    /// where `free` are free.
    fn no_space(&self, volume: &VolumeName, needed: u64, free: u64) -> ServiceError {
        TransferError::NoSpace {
            volume: volume.clone(),
            needed,
            free,
            root: self.layout.root().display().to_string(),
        }
        .into()
    }

    /// Stores the object stream `body` (of about `total` stored bytes) under receive marker
    /// `session`, until its end or until `stop` is told.
    pub(super) async fn receive_stream(
        self: &Arc<Self>,
        session: &str,
        volume: &VolumeName,
        mut body: Body,
        total: u64,
        progress: Reporter,
        stop: Option<&tokio::sync::Notify>,
    ) -> Result<ObjectsReceived, ServiceError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
        let marker = session.to_string();
        let name = volume.clone();
        let store = self.blocking(move |service| {
            let bad = |problem: String| -> ServiceError {
                TransferError::BadStream {
                    volume: name.clone(),
                    problem,
                }
                .into()
            };
            // The disk filling up is "no space" (free space, push again: what arrived is
            // kept), not a stream the receiver refuses.
            let refused = |e: ReceiveError| -> ServiceError {
                if out_of_space(&e) {
                    let free = service.free_bytes().unwrap_or(0);
                    warn!(volume = %name, error = %e, free, "the state root is full; the object stream is refused");
                    service.no_space(&name, total, free)
                } else {
                    bad(e.to_string())
                }
            };
            let mut receiver = service
                .history
                .resumable_receiver(&marker)
                .map_err(refused)?;
            let mut reader = pack::Reader::new();
            let mut ended = false;
            progress.start(Phase::RECEIVE, Some(total));
            let outcome = (|| -> Result<(), ServiceError> {
                while let Some(bytes) = rx.blocking_recv() {
                    reader.feed(&bytes);
                    while let Some(frame) = reader.next_frame().map_err(|e| bad(e.to_string()))? {
                        match frame {
                            Frame::Object { id, stored } => {
                                receiver
                                    .receive(&ObjectId::from_bytes(id), &stored)
                                    .map_err(refused)?;
                                progress.advance(stored.len() as u64);
                            }
                            Frame::End { .. } => ended = true,
                        }
                    }
                }
                Ok(())
            })();
            // What arrived whole is kept, also when the stream failed or was cut.
            let kept = receiver.checkpoint().map_err(refused);
            let stats = receiver.stats();
            service.metrics.transfer_received(stats.bytes_received);
            outcome?;
            kept?;
            progress.finish();
            if !ended {
                return Err(TransferError::StreamCut {
                    volume: name.clone(),
                    objects: stats.objects_stored + stats.duplicates_skipped,
                }
                .into());
            }
            Ok(ObjectsReceived {
                objects_stored: stats.objects_stored,
                duplicates: stats.duplicates_skipped,
                bytes_received: stats.bytes_received,
            })
        });
        let feed = async {
            // Once the store gave up (a refused object, a full disk) the rest of the stream
            // is read and dropped, so that the sender, still writing it, gets the answer
            // instead of a connection closed under it.
            let mut tx = Some(tx);
            let stopped = async {
                match stop {
                    Some(stop) => stop.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(stopped);
            loop {
                let next = tokio::select! {
                    next = tokio::time::timeout(STREAM_IDLE, body.frame()) => next,
                    () = &mut stopped => {
                        warn!(volume = %volume, session, "object stream superseded by a newer attempt of the same push; stopped");
                        break;
                    }
                };
                let frame = match next {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(_) => {
                        warn!(volume = %volume, session, "object stream idle for {STREAM_IDLE:?}; taken for cut");
                        break;
                    }
                };
                match frame {
                    Ok(frame) => {
                        if let (Ok(data), Some(sender)) = (frame.into_data(), &tx) {
                            if sender.send(data).await.is_err() {
                                tx = None;
                            }
                        }
                    }
                    Err(e) => {
                        warn!(volume = %volume, session, error = %e, "object stream cut");
                        break;
                    }
                }
            }
            drop(tx);
        };
        let ((), stored) = tokio::join!(feed, store);
        let received = stored?;
        info!(volume = %volume, session, stored = received.objects_stored, duplicates = received.duplicates, bytes = received.bytes_received, "objects received");
        Ok(received)
    }

    /// `POST /v1/transfer/sessions/{session}/finish`: points the branch at the received
    /// commit (compare-and-swap against where the sender saw it), creating the volume if
    /// there is none, and checks the commit out when the branch is checked out.
    pub async fn finish_push(
        self: &Arc<Self>,
        session: String,
        finish: PushFinish,
    ) -> Result<PushFinished, ServiceError> {
        let s = self.sessions.get(&session)?;
        let name = s.volume.clone();
        let lock = self.sessions.finish_lock(&name);
        let _finishing = lock.lock().await;
        let new = parse_commit(&name, &finish.new)?;
        let old = finish
            .old
            .as_deref()
            .map(|o| parse_commit(&name, o))
            .transpose()?;
        let (check, epoch) = (name.clone(), s.offer.epoch);
        self.blocking(move |service| {
            if service.history.read_commit(new).is_err() {
                return Err(TransferError::BadStream {
                    volume: check,
                    problem: format!("commit {new} has not arrived whole; push again"),
                }
                .into());
            }
            // The branch moves only while the sender still owns the volume.
            service.refuse_fenced(&check, epoch)
        })
        .await?;
        let offer = s.offer.clone();
        let existing = {
            let n = name.clone();
            self.blocking(move |service| match service.get(n.as_str()) {
                Ok(v) => Ok(Some(v)),
                Err(ServiceError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            })
            .await?
        };
        let finished = match existing {
            None => {
                let offer = offer.clone();
                self.blocking(move |service| service.create_received(&name, &offer, new))
                    .await?
            }
            Some(volume) => {
                let id = volume.id;
                let moved = self.move_received(volume, &offer, old, new).await?;
                // A volume that had moved away and is pushed back is this host's again.
                self.blocking(move |service| Ok(service.metadata.clear_moved(id)?))
                    .await?;
                moved
            }
        };
        let marker = session.clone();
        self.blocking(move |service| {
            if let Err(e) = service.history.end_receive(&marker) {
                warn!(session = %marker, error = %e, "cannot remove the receive marker; gc ignores it after a day");
            }
            Ok(())
        })
        .await?;
        self.sessions.end(&session);
        Ok(finished)
    }

    /// Creates volume `name` like the sender's, at commit `new` on the offered branch.
    fn create_received(
        &self,
        name: &VolumeName,
        offer: &PushOffer,
        new: CommitId,
    ) -> Result<PushFinished, ServiceError> {
        let mut options = BTreeMap::new();
        options.insert("profile".to_string(), offer.like.profile.clone());
        if let Some(size) = offer.like.size_bytes {
            options.insert("size".to_string(), size.to_string());
        }
        if let Some(fs) = offer.like.filesystem {
            options.insert("fs".to_string(), fs.to_string());
        }
        let (volume, _) = self.create(name.as_str(), &options)?;
        let message = format!("push: received {}", new.short(12));
        if let Err(e) = self.fill_from_commit(&volume, &offer.branch, new, &message) {
            self.destroy_after_failure(&volume, "push");
            return Err(e);
        }
        info!(volume = %name, commit = %new, branch = %offer.branch, "created from a push");
        Ok(PushFinished {
            outcome: TransferOutcome::Created,
            stashed_as: None,
            checked_out: true,
            not_resumed: Vec::new(),
        })
    }

    /// Checks out `commit` into a new, empty volume and starts its history there on `branch`.
    pub(super) fn fill_from_commit(
        &self,
        volume: &Volume,
        branch: &str,
        commit: CommitId,
        message: &str,
    ) -> Result<(), ServiceError> {
        let mountpoint = self.mountpoint(volume);
        let backend = self.backend(volume)?;
        backend
            .mount(&Self::spec(volume), &mountpoint)
            .for_volume(&volume.name)?;
        let filled = self
            .history
            .create_from_commit(
                &VolumeKey(volume.id),
                branch,
                commit,
                &mountpoint,
                message,
                &NoProgress,
            )
            .map(drop)
            .for_volume(&volume.name);
        backend
            .unmount(volume.id, &mountpoint)
            .for_volume(&volume.name)?;
        filled
    }

    /// Moves an existing volume's branch to `new` as the offer's mode allows.
    async fn move_received(
        self: &Arc<Self>,
        volume: Volume,
        offer: &PushOffer,
        old: Option<CommitId>,
        new: CommitId,
    ) -> Result<PushFinished, ServiceError> {
        let name = volume.name.clone();
        let key = VolumeKey(volume.id);
        let branch = offer.branch.clone();
        let (current, checked_out) = {
            let branch = branch.clone();
            let name = name.clone();
            self.blocking(move |service| {
                let head = service.history.head(&key).for_volume(&name)?;
                let current = service
                    .history
                    .branches(&key)
                    .for_volume(&name)?
                    .into_iter()
                    .find(|b| b.name == branch)
                    .map(|b| b.commit);
                Ok((current, head.branch.as_deref() == Some(branch.as_str())))
            })
            .await?
        };
        if current != old {
            return Err(TransferError::MovedMeanwhile {
                volume: name,
                branch,
                now: current.map_or("nothing (deleted)".into(), |c| c.to_string()),
            }
            .into());
        }
        if current == Some(new) {
            return Ok(PushFinished {
                outcome: TransferOutcome::UpToDate,
                stashed_as: None,
                checked_out: false,
                not_resumed: Vec::new(),
            });
        }
        let mut outcome = TransferOutcome::FastForward;
        let mut stashed_as = None;
        if let Some(current) = current {
            let (ff, n) = (current, name.clone());
            let fast = self
                .blocking(move |service| service.history.is_ancestor(ff, new).for_volume(&n))
                .await?;
            if !fast {
                match offer.mode {
                    UpdateMode::FastForward => {
                        let n = name.clone();
                        let (ours, theirs) = self
                            .blocking(move |service| {
                                Ok((
                                    service.commits_between(&n, new, &[current])?,
                                    service.commits_between(&n, current, &[new])?,
                                ))
                            })
                            .await?;
                        return Err(TransferError::Diverged {
                            volume: name,
                            branch,
                            sides: Box::new(Divergence {
                                sender: "the sender".into(),
                                receiver: "this host".into(),
                                ours,
                                theirs,
                            }),
                        }
                        .into());
                    }
                    UpdateMode::Force => outcome = TransferOutcome::Forced,
                    UpdateMode::Stash => {
                        let (v, b) = (volume.clone(), branch.clone());
                        let stash = self
                            .blocking(move |service| {
                                service.stash_branch(&v, &b, current, "a diverged push")
                            })
                            .await?;
                        stashed_as = Some(stash);
                        outcome = TransferOutcome::Stashed;
                    }
                }
            }
        }
        if checked_out {
            if volume.in_use() && !offer.checkout {
                return Err(TransferError::InUse {
                    volume: name,
                    branch,
                    mounts: volume.mounts.values().sum(),
                }
                .into());
            }
            // Checked again with the containers stopped and the volume locked: a local commit
            // or a write since the checks above makes the push refuse, never lose them.
            let view = self
                .reset_with_containers_if(
                    name.to_string(),
                    ResetRequest {
                        rev: new.to_string(),
                        stop_removable: false,
                    },
                    Some(ResetPrecondition {
                        branch: branch.clone(),
                        at: current,
                    }),
                    Arc::new(NoProgress),
                )
                .await?;
            info!(volume = %name, %branch, commit = %new, "checked out a push");
            return Ok(PushFinished {
                outcome,
                stashed_as,
                checked_out: true,
                not_resumed: view.containers_not_resumed,
            });
        }
        let message = format!("push: {}", new.short(12));
        let n = name.clone();
        self.blocking(move |service| {
            service
                .history
                .update_ref_if(&key, RefKind::Branch, &branch, current, new, &message)
                .map_err(|e| match e {
                    dvol_snapshot::Error::Ref(RefError::Moved(moved)) => {
                        TransferError::MovedMeanwhile {
                            volume: n.clone(),
                            branch: branch.clone(),
                            now: moved
                                .current
                                .map_or("nothing (deleted)".into(), |c| c.to_string()),
                        }
                        .into()
                    }
                    other => ServiceError::History {
                        volume: n.clone(),
                        source: other,
                    },
                })
        })
        .await?;
        Ok(PushFinished {
            outcome,
            stashed_as,
            checked_out: false,
            not_resumed: Vec::new(),
        })
    }
}
