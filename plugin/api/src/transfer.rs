//! Volumes between hosts: remotes, the push and clone calls a CLI makes of its own daemon,
//! and the protocol daemons speak to each other (`dvol-transfer/1`).
//!
//! The CLI talks only to its own daemon; the daemon keeps each remote's address, token and
//! CA, and calls the other daemon's `/v1/transfer/...` endpoints over TCP (TLS when the
//! remote has a CA) with the remote's bearer token.
//!
//! A push, seen from the receiver R:
//! 1. `POST /v1/transfer/push` ([`PushOffer`] → [`PushAnswer`]): what the sender S offers
//!    (volume, branch, tip, profile and size); R refuses here, before any data moves, what it
//!    cannot take (no such profile, no room, the branch checked out in a volume in use), and
//!    answers with its commits of that volume, from which S plans the objects R lacks.
//! 2. `POST /v1/transfer/sessions/{session}/have` (ids → bitmap): which planned objects R
//!    already holds (from another volume's history, say): those are not sent.
//! 3. `POST /v1/transfer/sessions/{session}/objects` (a [`pack`] → [`ObjectsReceived`]): the
//!    objects, children first; R re-hashes each and makes them durable in batches.
//! 4. `POST /v1/transfer/sessions/{session}/finish` ([`PushFinish`] → [`PushFinished`]): R
//!    moves its branch by compare-and-swap (creating the volume if it had none), and checks the
//!    new commit out when the branch is checked out.
//!
//! A clone, seen from the sender S: `POST /v1/transfer/fetch` ([`FetchRequest`] →
//! [`FetchPlan`]: the tip, profile, size and what the transfer costs), then
//! `POST /v1/transfer/fetch/objects` (the same request with the tip → a [`pack`] of every
//! object the caller lacks).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::volume::VolumeView;

/// The version of the protocol between daemons this build speaks.
pub const TRANSFER_PROTOCOL: u32 = 1;

/// The most object ids one `have` call may ask about.
pub const MAX_HAVE_IDS: usize = 16_384;

/// `POST /v1/remotes`: another daemon this one may push to and clone from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddRemote {
    /// The remote's name here (letters, digits, `-`, `_`, `.`; up to 64).
    pub name: String,
    /// Where its daemon listens: `tcp://HOST:PORT`.
    pub url: String,
    /// The bearer token of the remote daemon's `--token-file`. Kept by this daemon (readable
    /// only by root), never logged, never answered.
    pub token: String,
    /// PEM of the CA that signs the remote daemon's TLS certificate: with it the remote is
    /// reached over TLS and its certificate must be signed by this CA; without it, over plain
    /// TCP.
    #[serde(default)]
    pub ca_pem: Option<String>,
}

/// A remote as listed (`GET /v1/remotes`); its token is never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RemoteView {
    /// The remote's name here.
    pub name: String,
    /// Where its daemon listens.
    pub url: String,
    /// Whether it is reached over TLS (a CA was given).
    pub tls: bool,
    /// When it was added, RFC 3339.
    pub added_at: String,
}

/// How a receiver's branch may be moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMode {
    /// Only forwards: the receiver's branch must be an ancestor of the new commit.
    #[default]
    FastForward,
    /// Like `force`, but the receiver's old position is kept first as a branch
    /// `NAME-stash-DATE-ID`.
    Stash,
    /// Move the branch whatever its position (the old commits stay reachable from the
    /// receiver's reflog until it expires).
    Force,
}

/// `POST /v1/volumes/{name}/push`: send a volume's branch and its history to a remote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// The remote's name.
    pub remote: String,
    /// The branch to send; the checked-out one if absent.
    #[serde(default)]
    pub branch: Option<String>,
    /// The volume's name on the remote; the same name if absent.
    #[serde(default, rename = "as")]
    pub as_name: Option<String>,
    /// How the remote's branch may move.
    #[serde(default)]
    pub mode: UpdateMode,
    /// When the branch is checked out on the remote by a volume that containers use: stop
    /// them, check the new commit out and start them again (else such a push is refused).
    #[serde(default)]
    pub checkout: bool,
    /// How many times the daemon tries again, waiting 1 s, 2 s, 4 s and so on (at most 30 s),
    /// when the connection to the remote is lost or cannot be made ([`DEFAULT_RETRIES`] if
    /// absent; 0: never; at most [`MAX_RETRIES`]). What arrived is kept, so each try sends
    /// only the rest. Refusals and certificate errors are not tried again.
    #[serde(default)]
    pub retries: Option<u32>,
}

/// How many times a push, fetch or pull is tried again after a lost connection, unless the
/// request says otherwise.
pub const DEFAULT_RETRIES: u32 = 3;

/// The most retries a request may ask for (about 9 minutes of waiting in all).
pub const MAX_RETRIES: u32 = 20;

/// `POST /v1/clone`: make a local volume from a remote's volume, with its whole history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneRequest {
    /// The remote's name.
    pub remote: String,
    /// The volume on the remote.
    pub volume: String,
    /// The branch to clone; the remote volume's checked-out one if absent.
    #[serde(default)]
    pub branch: Option<String>,
    /// The local volume's name; the remote volume's if absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Options of the new volume (`profile`, `size`, `fs`); the remote volume's if absent.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// How many times the daemon tries the transfer again after a lost connection, as for a
    /// push ([`DEFAULT_RETRIES`] if absent; 0: never).
    #[serde(default)]
    pub retries: Option<u32>,
}

/// `POST /v1/volumes/{name}/fetch` and `/pull`: bring a remote volume's branch here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// The remote's name.
    pub remote: String,
    /// The volume on the remote; the same name as here if absent.
    #[serde(default)]
    pub volume: Option<String>,
    /// The remote's branch; its checked-out one if absent. A pull moves the local branch of
    /// the same name (the checked-out one when the remote's is not named).
    #[serde(default)]
    pub branch: Option<String>,
    /// How the local branch may move (pull only; a fetch moves only the remote-tracking ref).
    #[serde(default)]
    pub mode: UpdateMode,
    /// How many times the daemon tries the transfer again after a lost connection, as for a
    /// push ([`DEFAULT_RETRIES`] if absent; 0: never).
    #[serde(default)]
    pub retries: Option<u32>,
}

/// `POST /v1/volumes/{name}/move`: hand the volume over to a remote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// The remote.
    pub remote: String,
    /// The longest the volume's containers may stay stopped, in milliseconds (default 5000):
    /// when the last pre-copy round took longer, the move is refused before anything stops.
    #[serde(default)]
    pub max_downtime_ms: Option<u64>,
    /// Wait (up to 5 minutes) for the volume's last unmount instead of stopping its containers
    /// (for orchestrators that stop them).
    #[serde(default)]
    pub wait_unmount: bool,
    /// Refuse (409 `in_use`) instead of stopping containers or waiting when the volume is in
    /// use: what a node of a cluster asks when a container there needs the volume.
    #[serde(default)]
    pub only_if_unused: bool,
    /// How many times each pre-copy round is tried again after a lost connection, as for a
    /// push ([`DEFAULT_RETRIES`] if absent; 0: never). The final round, with the containers
    /// stopped, is not: a failure there starts them again.
    #[serde(default)]
    pub retries: Option<u32>,
}

/// One pre-copy round of a move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MoveRound {
    /// Objects sent.
    pub objects: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// How long the round took (snapshot and send), in milliseconds.
    pub millis: u64,
}

/// The answer of a move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MoveResult {
    /// The pre-copy rounds, while the containers kept running.
    pub rounds: Vec<MoveRound>,
    /// From stopping the containers (or the last unmount) to the handover, in milliseconds.
    pub downtime_ms: u64,
    /// The containers stopped for the move (the user or the orchestrator starts them on the
    /// remote).
    pub stopped: Vec<String>,
    /// The final round: the last commit sent and the remote's branch moved to it.
    pub transfer: TransferResult,
}

/// What a push or clone did to the receiver's branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferOutcome {
    /// The receiver already had the commit on that branch: nothing was sent.
    UpToDate,
    /// The receiver's volume did not exist: it was created at the commit.
    Created,
    /// The branch moved forward.
    FastForward,
    /// The receiver's branch was kept as a stash branch, then moved.
    Stashed,
    /// The branch was moved although it had commits the sender has not.
    Forced,
}

/// The answer of a push, clone, fetch or pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TransferResult {
    /// The remote.
    pub remote: String,
    /// The volume on the receiving side.
    pub volume: String,
    /// The branch on the receiving side.
    pub branch: String,
    /// The commit the branch now points at (full id).
    pub commit: String,
    /// Where it pointed before, if it existed.
    pub old_commit: Option<String>,
    /// What happened.
    pub outcome: TransferOutcome,
    /// The stash branch keeping the receiver's old position (`stash` mode).
    #[serde(default)]
    pub stashed_as: Option<String>,
    /// Whether the new commit was checked out into the receiving volume's files.
    pub checked_out: bool,
    /// Commits the receiver lacked.
    pub commits: u64,
    /// Objects sent.
    pub objects_sent: u64,
    /// Stored (compressed) bytes of the objects sent.
    pub bytes_sent: u64,
    /// Planned objects the receiver already held (from other history), not sent.
    pub objects_skipped: u64,
    /// Containers stopped for the checkout that could not be started again; empty normally.
    #[serde(default)]
    pub not_resumed: Vec<crate::history::NotResumed>,
    /// How many tries it took: more than 1 when the daemon tried again after a lost
    /// connection (a push or pull whose answer was lost may then say `up_to_date`).
    #[serde(default = "one_attempt")]
    pub attempts: u32,
}

fn one_attempt() -> u32 {
    1
}

/// `GET /v1/incoming`: a push another host is sending here, from its offer until its branch
/// move (or, for one whose sender went away, until it has been idle an hour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IncomingPush {
    /// The volume on this host.
    pub volume: String,
    /// The branch the push moves.
    pub branch: String,
    /// The commit it brings (full id).
    pub commit: String,
    /// The sending host's id.
    pub sender: Uuid,
    /// When the offer came (RFC 3339).
    pub offered_at: String,
    /// Whether its object stream is arriving now.
    pub receiving: bool,
    /// The stored bytes its object stream declared (0 before the stream starts).
    pub bytes_declared: u64,
    /// The stored bytes that arrived so far.
    pub bytes_received: u64,
}

/// `POST /v1/transfer/push` (daemon to daemon): what a sender offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushOffer {
    /// The protocol version the sender speaks ([`TRANSFER_PROTOCOL`]).
    pub protocol: u32,
    /// The sending host's id.
    pub sender: Uuid,
    /// The volume's name on the receiver.
    pub volume: String,
    /// The branch to move.
    pub branch: String,
    /// The commit to send (full id).
    pub tip: String,
    /// The sending volume, for a receiver that has none yet: profile, size, filesystem.
    pub like: VolumeView,
    /// How the branch may move.
    pub mode: UpdateMode,
    /// Stop, check out and restart a receiving volume in use.
    pub checkout: bool,
    /// In cluster mode, where the sender owns the volume (of the same name): the fencing
    /// epoch it owns it at. A receiver of the same cluster refuses the push (409 `fenced`),
    /// at the offer and again before its branch moves, once the registry holds a higher
    /// epoch for the volume: the sender no longer owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// The receiver's answer to a [`PushOffer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushAnswer {
    /// The session the next calls name.
    pub session: String,
    /// Whether the volume exists on the receiver.
    pub volume_exists: bool,
    /// Where the receiver's branch points, if it exists.
    pub branch_tip: Option<String>,
    /// Every commit the receiver's refs of this volume point at (branches, tags, HEAD): the
    /// sender's base.
    pub tips: Vec<String>,
    /// The receiver branch's newest commits (up to 50, newest first), for the sender to
    /// describe a divergence.
    pub recent: Vec<crate::history::CommitView>,
    /// The receiver's root commits of the branch (first commits, without parents) when it has
    /// no more than 50 commits to list them by: a sender with none of them has an unrelated
    /// history.
    pub roots: Vec<String>,
}

/// The answer of `POST /v1/transfer/sessions/{session}/objects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ObjectsReceived {
    /// Objects new to the receiver, now durable.
    pub objects_stored: u64,
    /// Objects it had already.
    pub duplicates: u64,
    /// Stored bytes received.
    pub bytes_received: u64,
}

/// `POST /v1/transfer/sessions/{session}/finish`: move the branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushFinish {
    /// Where the sender saw the receiver's branch ([`PushAnswer::branch_tip`]): the branch
    /// moves only if it still points there.
    pub old: Option<String>,
    /// The commit to point it at, which the receiver now holds whole.
    pub new: String,
}

/// The receiver's answer to a [`PushFinish`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PushFinished {
    /// What happened.
    pub outcome: TransferOutcome,
    /// The stash branch (`stash` mode).
    pub stashed_as: Option<String>,
    /// Whether the commit was checked out into the volume's files.
    pub checked_out: bool,
    /// Containers that could not be started again after the checkout.
    #[serde(default)]
    pub not_resumed: Vec<crate::history::NotResumed>,
}

/// `POST /v1/transfer/fetch` and `/v1/transfer/fetch/objects` (daemon to daemon): what the
/// caller wants from the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    /// The protocol version the caller speaks.
    pub protocol: u32,
    /// The volume on the sender.
    pub volume: String,
    /// Its branch; the checked-out one if absent.
    #[serde(default)]
    pub branch: Option<String>,
    /// The commit to send, as a [`FetchPlan`] named it (for `fetch/objects`).
    #[serde(default)]
    pub tip: Option<String>,
    /// Commits the caller holds whole (the sender's base).
    #[serde(default)]
    pub known: Vec<String>,
    /// For `fetch/objects`: which of the planned objects the caller holds already (left by
    /// an interrupted try, or shared with another of its volumes), not to be sent: bit `i %
    /// 8` of byte `i / 8` for the `i`th object `fetch/ids` listed. Empty: send them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<u8>,
}

/// The size of one record of a `fetch/ids` answer: a planned object's id (32 bytes) and its
/// stored length (8 bytes, little-endian), in the order the objects would be sent.
pub const FETCH_ID_RECORD: usize = 40;

/// The sender's answer to a [`FetchRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FetchPlan {
    /// The volume as the sender has it (profile, size, filesystem).
    pub volume: VolumeView,
    /// The branch.
    pub branch: String,
    /// Its commit (full id).
    pub tip: String,
    /// Commits the caller lacks.
    pub commits: u64,
    /// Objects the transfer sends.
    pub objects: u64,
    /// Their stored bytes.
    pub bytes: u64,
}

/// `POST /v1/transfer/resolve` (daemon to daemon, cluster mode): what a snapshot reference
/// (`NAME@snapshot-REF`) the caller could not resolve names on the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// The protocol version the caller speaks.
    pub protocol: u32,
    /// The volume the caller is creating (for messages).
    pub volume: String,
    /// The reference: 6 or more hex digits of a volume UUID or commit id.
    pub reference: String,
}

/// What a [`ResolveRequest`]'s reference names on the sender: nothing, or one source the
/// caller fetches with [`FetchRequest`] (`volume`, `tip` = `commit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResolvedSource {
    /// The sender's volume whose history holds the commit.
    pub volume: String,
    /// The commit (full id). For a volume's UUID, a commit of its files now, made for the
    /// caller (no branch of the sender's moves).
    pub commit: String,
    /// Whether the reference named a volume (its current state) rather than a commit.
    pub of_volume: bool,
}

/// The sender's answer to a [`ResolveRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResolveAnswer {
    /// What the reference names there; absent if nothing.
    pub found: Option<ResolvedSource>,
}

/// The object stream between daemons: `DVOLPK\x01`, then frames `type: u8, length: u32
/// (little endian), body`.
///
/// | type | body |
/// |---|---|
/// | `1` object | id (32 bytes), then the object's stored form |
/// | `0x7f` end | objects (u64 LE), stored bytes (u64 LE) |
///
/// A stream without its end frame was cut short; a receiver keeps the complete objects it
/// got before the cut.
pub mod pack {
    /// The stream's first bytes.
    pub const MAGIC: &[u8; 7] = b"DVOLPK\x01";
    /// An object frame.
    pub const OBJECT: u8 = 1;
    /// The end frame.
    pub const END: u8 = 0x7f;
    /// The largest frame body accepted (an object is at most a few MiB stored).
    pub const MAX_FRAME: usize = 16 << 20;
    /// The media type of a pack body.
    pub const MEDIA_TYPE: &str = "application/x-dvol-pack";

    /// Appends an object frame.
    pub fn object(out: &mut Vec<u8>, id: &[u8; 32], stored: &[u8]) {
        out.push(OBJECT);
        out.extend_from_slice(&((32 + stored.len()) as u32).to_le_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(stored);
    }

    /// Appends the end frame.
    pub fn end(out: &mut Vec<u8>, objects: u64, bytes: u64) {
        out.push(END);
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&objects.to_le_bytes());
        out.extend_from_slice(&bytes.to_le_bytes());
    }

    /// A frame read from a stream.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Frame {
        /// An object: its id and stored form.
        Object {
            /// The id the sender claims (the receiver re-hashes).
            id: [u8; 32],
            /// The stored form.
            stored: Vec<u8>,
        },
        /// The end: what the sender says it sent.
        End {
            /// Objects sent.
            objects: u64,
            /// Their stored bytes.
            bytes: u64,
        },
    }

    /// Why a stream is malformed.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum PackError {
        /// The stream does not start with [`MAGIC`].
        NotAPack,
        /// A frame of an unknown type.
        UnknownFrame(u8),
        /// A frame longer than [`MAX_FRAME`], or too short for its type.
        BadLength {
            /// The frame's type.
            frame: u8,
            /// The length it declares.
            length: usize,
        },
        /// Bytes after the end frame.
        AfterEnd,
    }

    impl std::fmt::Display for PackError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                PackError::NotAPack => f.write_str("the body is not a dvol object stream (no DVOLPK header)"),
                PackError::UnknownFrame(t) => write!(f, "unknown frame type {t} in the object stream"),
                PackError::BadLength { frame, length } => write!(
                    f,
                    "frame of type {frame} declares {length} bytes, which is not a valid length for it (at most {MAX_FRAME})"
                ),
                PackError::AfterEnd => f.write_str("bytes after the end of the object stream"),
            }
        }
    }

    impl std::error::Error for PackError {}

    /// Decodes a stream fed in pieces of any size.
    #[derive(Debug, Default)]
    pub struct Reader {
        buf: Vec<u8>,
        at: usize,
        started: bool,
        ended: bool,
    }

    impl Reader {
        /// A reader at the start of a stream.
        pub fn new() -> Reader {
            Reader::default()
        }

        /// Adds the next bytes of the stream.
        pub fn feed(&mut self, bytes: &[u8]) {
            if self.at > 0 && self.at == self.buf.len() {
                self.buf.clear();
                self.at = 0;
            } else if self.at > (1 << 20) {
                self.buf.drain(..self.at);
                self.at = 0;
            }
            self.buf.extend_from_slice(bytes);
        }

        /// Whether the end frame was read.
        pub fn ended(&self) -> bool {
            self.ended
        }

        /// The next complete frame, `None` until more bytes arrive.
        pub fn next_frame(&mut self) -> Result<Option<Frame>, PackError> {
            let rest = &self.buf[self.at..];
            if !self.started {
                if rest.len() < MAGIC.len() {
                    return if MAGIC.starts_with(rest) {
                        Ok(None)
                    } else {
                        Err(PackError::NotAPack)
                    };
                }
                if &rest[..MAGIC.len()] != MAGIC {
                    return Err(PackError::NotAPack);
                }
                self.started = true;
                self.at += MAGIC.len();
                return self.next_frame();
            }
            if rest.is_empty() {
                return Ok(None);
            }
            if self.ended {
                return Err(PackError::AfterEnd);
            }
            if rest.len() < 5 {
                return Ok(None);
            }
            let kind = rest[0];
            let length = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let valid = match kind {
                OBJECT => (32..=MAX_FRAME).contains(&length),
                END => length == 16,
                other => return Err(PackError::UnknownFrame(other)),
            };
            if !valid {
                return Err(PackError::BadLength {
                    frame: kind,
                    length,
                });
            }
            if rest.len() < 5 + length {
                return Ok(None);
            }
            let body = &rest[5..5 + length];
            let frame = if kind == OBJECT {
                let mut id = [0u8; 32];
                id.copy_from_slice(&body[..32]);
                Frame::Object {
                    id,
                    stored: body[32..].to_vec(),
                }
            } else {
                self.ended = true;
                let objects = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
                let bytes = u64::from_le_bytes(body[8..16].try_into().unwrap_or_default());
                Frame::End { objects, bytes }
            };
            self.at += 5 + length;
            Ok(Some(frame))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn stream() -> Vec<u8> {
            let mut out = MAGIC.to_vec();
            object(&mut out, &[1; 32], b"first");
            object(&mut out, &[2; 32], &[7; 1000]);
            end(&mut out, 2, 1005);
            out
        }

        #[test]
        fn a_stream_fed_byte_by_byte_decodes_to_its_frames() {
            let mut reader = Reader::new();
            let mut frames = Vec::new();
            for b in stream() {
                reader.feed(&[b]);
                while let Some(f) = reader.next_frame().unwrap() {
                    frames.push(f);
                }
            }
            assert_eq!(frames.len(), 3);
            assert_eq!(
                frames[0],
                Frame::Object {
                    id: [1; 32],
                    stored: b"first".to_vec()
                }
            );
            assert_eq!(
                frames[2],
                Frame::End {
                    objects: 2,
                    bytes: 1005
                }
            );
            assert!(reader.ended());
        }

        #[test]
        fn malformed_streams_are_refused() {
            let mut r = Reader::new();
            r.feed(b"GET / HTTP/1.1\r\n");
            assert_eq!(r.next_frame(), Err(PackError::NotAPack));

            let mut r = Reader::new();
            let mut s = MAGIC.to_vec();
            s.extend_from_slice(&[9, 0, 0, 0, 0]);
            r.feed(&s);
            assert_eq!(r.next_frame(), Err(PackError::UnknownFrame(9)));

            let mut r = Reader::new();
            let mut s = MAGIC.to_vec();
            s.push(OBJECT);
            s.extend_from_slice(&u32::MAX.to_le_bytes());
            r.feed(&s);
            assert!(matches!(r.next_frame(), Err(PackError::BadLength { .. })));

            let mut r = Reader::new();
            let mut s = stream();
            s.push(OBJECT);
            r.feed(&s);
            while let Ok(Some(_)) = r.next_frame() {}
            assert_eq!(r.next_frame(), Err(PackError::AfterEnd));
        }
    }
}
