//! Errors of the volume service. Each message says what failed, for which volume, and what to
//! do; the protocol layers only choose a status code from [`ServiceError::class`] and a stable
//! code from [`ServiceError::code`].
//!
//! Context travels as typed fields (the volume's [`VolumeName`], the profile, the option key),
//! never as text to be rewritten later. A backend or history error gets its volume attached in
//! one place, [`ForVolume::for_volume`].

use dvol_backends::BackendError;

use crate::containers::{not_resumed_text, ContainerError, Quiesce};
use crate::metadata::MetadataError;
use crate::names::{NameError, ProfileName, VolumeName};
use dvol_api::NotResumed;

/// The broad kinds of failure, for choosing a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong; repeating it will not help.
    Invalid,
    /// The volume does not exist.
    NotFound,
    /// The request conflicts with the volume's current state.
    Conflict,
    /// The backend needed cannot run on this host.
    Unavailable,
    /// dvol or the host failed.
    Internal,
}

/// Why a clone source (`NAME@snapshot-REF`, `-o from=REF`) names no single thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneSourceProblem {
    /// Fewer than 6 hex digits, or not hex.
    NotHex,
    /// No volume UUID and no commit id starts with it.
    NoMatch,
    /// In cluster mode: nothing starts with it on this node, nor on the nodes asked.
    NoMatchInCluster {
        /// The nodes that answered.
        asked: Vec<String>,
        /// The nodes that could not, each as `node: why`.
        failed: Vec<String>,
    },
    /// Several volumes or commits start with it.
    Ambiguous {
        /// What it matches, e.g. `volume db (3f2c...)`, `commit 9a1b...`.
        candidates: Vec<String>,
    },
}

impl std::fmt::Display for CloneSourceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloneSourceProblem::NotHex => {
                f.write_str("is not at least 6 hex digits of a volume UUID or commit id")
            }
            CloneSourceProblem::NoMatch => f.write_str(
                "matches no volume UUID and no commit; `docker volume inspect` shows volume UUIDs, `dvol log` commit ids",
            ),
            CloneSourceProblem::NoMatchInCluster { asked, failed } => {
                write!(
                    f,
                    "matches no volume UUID and no commit on this node{}",
                    if asked.is_empty() {
                        String::new()
                    } else {
                        format!(" nor on node(s) {}", asked.join(", "))
                    }
                )?;
                if !failed.is_empty() {
                    write!(
                        f,
                        "; not asked or not answered: {}; retry once they answer",
                        failed.join("; ")
                    )?;
                }
                Ok(())
            }
            CloneSourceProblem::Ambiguous { candidates } => write!(
                f,
                "is ambiguous: it matches {}; give more digits",
                candidates.join(", ")
            ),
        }
    }
}

/// Errors from [`crate::service::VolumeService`].
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A name breaks the grammar.
    #[error(transparent)]
    Name(#[from] NameError),
    /// No such volume.
    #[error("no volume named {volume:?}; `dvol volume ls` lists the volumes on this host", volume = volume.as_str())]
    NotFound {
        /// The name asked for.
        volume: VolumeName,
    },
    /// A profile that is not configured.
    #[error("volume {volume}: unknown profile {profile:?}; profiles on this host: {}", join(known), profile = profile.as_str())]
    UnknownProfile {
        /// The volume being created.
        volume: VolumeName,
        /// The profile asked for.
        profile: ProfileName,
        /// The configured profiles.
        known: Vec<ProfileName>,
    },
    /// An existing volume referred to with another profile.
    #[error("volume {volume} already exists with profile {actual}, not {requested}; refer to it as {volume} or {volume}@{actual}")]
    ProfileMismatch {
        /// The volume.
        volume: VolumeName,
        /// Its real profile.
        actual: ProfileName,
        /// The profile in the request.
        requested: ProfileName,
    },
    /// An option dvol does not know.
    #[error("volume {volume}: unknown option {key:?}; known options: {known}")]
    UnknownOption {
        /// The volume being created.
        volume: VolumeName,
        /// The option's key, shortened.
        key: String,
        /// The options dvol knows.
        known: &'static str,
    },
    /// A known option with a bad value.
    #[error("volume {volume}: option {key}: {message}")]
    BadOption {
        /// The volume being created.
        volume: VolumeName,
        /// The option's key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The volume is mounted.
    #[error("volume {volume} is in use {}; stop the containers using it, then retry", users_text(*mounts, containers))]
    InUse {
        /// The volume.
        volume: VolumeName,
        /// How many mount ids are active.
        mounts: usize,
        /// The running containers that use it, by name, where the engine was asked.
        containers: Vec<String>,
    },
    /// The volume is being removed, or a remove of it failed halfway.
    #[error("volume {volume} is being removed ({}); retry `dvol volume rm {volume}`", problem.as_deref().unwrap_or("a remove is running"))]
    Removing {
        /// The volume.
        volume: VolumeName,
        /// Why its last remove failed, if one did.
        problem: Option<String>,
    },
    /// A remove failed halfway: the volume stays listed as `removing`.
    #[error("volume {volume} could not be removed: {}; it stays listed as removing: fix that, then retry `dvol volume rm {volume}`", source.reason())]
    RemoveFailed {
        /// The volume.
        volume: VolumeName,
        /// What failed.
        #[source]
        source: Box<ServiceError>,
    },
    /// The volume's backend failed.
    #[error("volume {volume}: {source}")]
    Backend {
        /// The volume.
        volume: VolumeName,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// A backend failed while the daemon set up or surveyed the host, for no one volume.
    #[error("this host: {0}")]
    Host(#[source] BackendError),
    /// A history operation on one volume failed.
    #[error("volume {volume}: {source}")]
    History {
        /// The volume.
        volume: VolumeName,
        /// The history library's error.
        #[source]
        source: dvol_snapshot::Error,
    },
    /// An operation on the history repository as a whole (open, fsck, gc) failed.
    #[error("history repository: {0}")]
    Repository(#[source] dvol_snapshot::Error),
    /// Another operation holds the volume.
    #[error("volume {volume} is busy with another operation; retry when it finishes")]
    Busy {
        /// The volume.
        volume: VolumeName,
    },
    /// Checkout or reset would lose changes.
    #[error("volume {volume} has uncommitted changes ({}); commit them, or pass --force to discard them", uncommitted_summary(*changed, examples))]
    Uncommitted {
        /// The volume.
        volume: VolumeName,
        /// How many paths differ from HEAD.
        changed: usize,
        /// The first few of them.
        examples: Vec<String>,
    },
    /// A clone source prefix matches nothing or several things.
    #[error("volume {volume}: snapshot reference {reference:?} {problem}")]
    CloneSource {
        /// The volume being created.
        volume: VolumeName,
        /// The prefix given.
        reference: String,
        /// What is wrong with it.
        problem: CloneSourceProblem,
    },
    /// Checkout or reset would have to stop containers that the engine deletes when they stop
    /// (`docker run --rm`).
    #[error("volume {volume}: {operation} would stop {}, which the engine deletes when it stops (it was run with --rm), so nothing was stopped or changed; stop it yourself, or pass --stop-removable to let the {operation} stop it for good", removable_text(containers))]
    RemovedOnStop {
        /// The volume.
        volume: VolumeName,
        /// `checkout` or `reset`.
        operation: &'static str,
        /// The containers, as (name, short id).
        containers: Vec<(String, String)>,
    },
    /// Containers could not be stopped or paused.
    #[error(transparent)]
    Containers(#[from] ContainerError),
    /// An operation failed after containers were stopped (or paused) for it, and some of them
    /// could not be started (or unpaused) again.
    #[error("{source}; also, {}", not_resumed_text(*how, not_resumed))]
    NotResumed {
        /// Why the operation failed.
        source: Box<ServiceError>,
        /// Whether they were stopped or paused.
        how: Quiesce,
        /// The containers left stopped or paused.
        not_resumed: Vec<NotResumed>,
    },
    /// The metadata database failed.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A checkout or reset could not be recorded in the operation journal, so it did not go
    /// on.
    #[error("volume {volume}: cannot record the {operation} in the operation journal, so it did not touch the volume's files: {source}; free space under the state root, then retry")]
    Journal {
        /// The volume.
        volume: VolumeName,
        /// `checkout` or `reset`.
        operation: &'static str,
        /// The database's error.
        #[source]
        source: Box<MetadataError>,
    },
    /// Setting up the state root failed.
    #[error("state root {path}: {source}")]
    Root {
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// gc's `prune` is neither `now` nor a duration.
    #[error("gc: prune {value:?} is not `now` or a duration such as 90m, 1h, 14d or 2w (units s, m, h, d, w)")]
    BadPrune {
        /// The value given.
        value: String,
    },
    /// A push, clone or remote failed ([`TransferError`]).
    #[error(transparent)]
    Transfer(#[from] Box<TransferError>),
    /// The cluster's registry refused or could not be reached ([`ClusterError`]).
    #[error(transparent)]
    Cluster(#[from] Box<ClusterError>),
    /// A worker thread running the operation died.
    #[error(
        "internal error: the operation's worker failed: {message}; the daemon's log has details"
    )]
    Worker {
        /// The runtime's report.
        message: String,
    },
}

/// Why a push, clone or remote call failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// No remote of that name.
    #[error("no remote named {remote:?}; `dvol remote ls` lists them, `dvol remote add NAME tcp://HOST:PORT --token-file F` adds one")]
    UnknownRemote {
        /// The name asked for.
        remote: String,
    },
    /// A remote of that name exists.
    #[error(
        "remote {remote} exists already (at {url}); `dvol remote rm {remote}` first to change it"
    )]
    RemoteExists {
        /// Its name.
        remote: String,
        /// Where it points.
        url: String,
    },
    /// A transfer asked for more retries than allowed.
    #[error("{retries} retries asked; at most {max} are allowed (0: never try again)")]
    TooManyRetries {
        /// What was asked.
        retries: u32,
        /// The most allowed.
        max: u32,
    },
    /// A remote's name, address, token or CA is unusable.
    #[error("remote {remote}: {problem}")]
    BadRemote {
        /// Its name.
        remote: String,
        /// What is wrong, and what to give instead.
        problem: String,
    },
    /// The remote's daemon cannot be reached, or the connection broke.
    #[error("remote {remote} ({url}): {reason}; check that its daemon runs with --listen on that address and that this host can reach it, then retry (what arrived is kept: a retry sends only the rest)")]
    Unreachable {
        /// Its name.
        remote: String,
        /// Its address.
        url: String,
        /// What failed.
        reason: String,
        /// Whether trying again may succeed: a lost or refused connection, a time-out; not a
        /// certificate or TLS error.
        transient: bool,
    },
    /// The remote's daemon refused the call.
    #[error("remote {remote} refused: {message}")]
    Refused {
        /// Its name.
        remote: String,
        /// The HTTP status it answered.
        status: u16,
        /// Its error code, if it sent one.
        code: Option<String>,
        /// Its message.
        message: String,
        /// The containers its error named (for `in_use`).
        containers: Vec<String>,
    },
    /// The remote answered something that is not the protocol.
    #[error("remote {remote}: {problem}; is it a dvol daemon of a compatible version?")]
    Protocol {
        /// Its name.
        remote: String,
        /// What was wrong with its answer.
        problem: String,
    },
    /// The receiver's branch has commits the sender lacks.
    #[error("volume {volume}: branch {branch} has diverged: {} has {} commit(s) that {} lacks ({}) and {} has {} that {} lacks ({}); pull first, or push with --stash (keep the other side's commits on a stash branch) or --force", sides.receiver, sides.theirs.len(), sides.sender, short_list(&sides.theirs), sides.sender, sides.ours.len(), sides.receiver, short_list(&sides.ours))]
    Diverged {
        /// The volume.
        volume: VolumeName,
        /// The branch.
        branch: String,
        /// Both sides and their commits since the merge base.
        sides: Box<Divergence>,
    },
    /// The two volumes share no commit.
    #[error("volume {volume}: the histories of {sender} and {receiver} share no commit (unrelated volumes of the same name); push with --as NAME to another name, or --force to replace the other side's branch")]
    Unrelated {
        /// The volume.
        volume: VolumeName,
        /// Who sends.
        sender: String,
        /// Who receives.
        receiver: String,
    },
    /// The branch moved after the transfer started (another push or a commit came first).
    #[error("volume {volume}: branch {branch} moved meanwhile (now at {now}); pull first, then push again")]
    MovedMeanwhile {
        /// The volume.
        volume: VolumeName,
        /// The branch.
        branch: String,
        /// Where it is now.
        now: String,
    },
    /// The receiver's branch is checked out by a volume containers use.
    #[error("volume {volume}: branch {branch} is checked out and the volume is in use ({mounts} active mount(s)); push with --checkout to stop its containers, check the new commit out and start them again, or push another branch")]
    InUse {
        /// The volume.
        volume: VolumeName,
        /// The branch.
        branch: String,
        /// Active mounts.
        mounts: u32,
    },
    /// The volume's HEAD is detached, and no branch was named.
    #[error("volume {volume}: HEAD is detached; name the branch to send")]
    Detached {
        /// The volume.
        volume: VolumeName,
    },
    /// Not enough free space for the objects offered.
    #[error("volume {volume}: the transfer needs {} for its objects but the state root {root} has {} free; free space there (or `dvol gc`), then retry", mib(*needed), mib(*free))]
    NoSpace {
        /// The volume.
        volume: VolumeName,
        /// Stored bytes offered.
        needed: u64,
        /// Free bytes.
        free: u64,
        /// The state root.
        root: String,
    },
    /// A malformed object stream, or objects the store refused.
    #[error("volume {volume}: the object stream was refused: {problem}")]
    BadStream {
        /// The volume.
        volume: VolumeName,
        /// What was wrong.
        problem: String,
    },
    /// An object stream that ended before its end frame: its connection was lost.
    #[error("volume {volume}: the object stream ended before its end frame, after {objects} object(s); the complete ones are kept, send the rest")]
    StreamCut {
        /// The volume.
        volume: VolumeName,
        /// Objects that arrived whole.
        objects: u64,
    },
    /// The volume moved to another host.
    #[error("volume {volume} moved to remote {remote} at {at} (commit {commit}); this host keeps its last data read-only: use it there, or bring it back with `dvol move {volume} HOST` there, or `dvol clone {remote} {volume} NEW-NAME` here")]
    Moved {
        /// The volume.
        volume: VolumeName,
        /// Where it went.
        remote: String,
        /// Its last commit.
        commit: String,
        /// When, RFC 3339.
        at: String,
    },
    /// In cluster mode a volume moves only to another node of the cluster.
    #[error("volume {volume} is in a cluster: it moves only to another node of it, and {remote} is none (`dvol cluster nodes` lists them)")]
    NotANode {
        /// The volume.
        volume: VolumeName,
        /// The remote asked for.
        remote: String,
    },
    /// The final round of a move would take longer than allowed.
    #[error("volume {volume}: the last pre-copy round took {predicted_ms} ms ({bytes} bytes), more than --max-downtime {max_ms} ms allows for the final round; nothing was stopped. Retry when the volume changes less, or allow more downtime")]
    DowntimeTooLong {
        /// The volume.
        volume: VolumeName,
        /// The predicted final round.
        predicted_ms: u64,
        /// Bytes the last round sent.
        bytes: u64,
        /// What was allowed.
        max_ms: u64,
    },
    /// A clone's local volume exists already.
    #[error("volume {volume} exists on this host; give the clone another name (`dvol clone REMOTE VOLUME NEW-NAME`), or pull into it")]
    LocalExists {
        /// The volume.
        volume: VolumeName,
    },
    /// No transfer session of that id (it finished, expired or the daemon restarted).
    #[error("no transfer session {session}; start the transfer again")]
    NoSession {
        /// The session.
        session: String,
    },
    /// The remote is this host, and the receiving volume the sending one.
    #[error("volume {volume}: the remote is this host and the volume itself; name another host's daemon as the remote (or push with --as NAME for a copy here)")]
    IntoItself {
        /// The volume.
        volume: VolumeName,
    },
    /// The peer speaks another protocol version.
    #[error("this daemon speaks transfer protocol {TRANSFER_PROTOCOL}, the peer {offered}; run the same dvol version on both")]
    Version {
        /// What the peer offered.
        offered: u32,
    },
}

use dvol_api::TRANSFER_PROTOCOL;

impl TransferError {
    /// The broad kind, for a status code.
    pub fn class(&self) -> ErrorClass {
        match self {
            TransferError::UnknownRemote { .. } | TransferError::NoSession { .. } => {
                ErrorClass::NotFound
            }
            TransferError::BadRemote { .. }
            | TransferError::TooManyRetries { .. }
            | TransferError::BadStream { .. }
            | TransferError::IntoItself { .. }
            | TransferError::Version { .. } => ErrorClass::Invalid,
            TransferError::RemoteExists { .. }
            | TransferError::Diverged { .. }
            | TransferError::Unrelated { .. }
            | TransferError::MovedMeanwhile { .. }
            | TransferError::InUse { .. }
            | TransferError::LocalExists { .. }
            | TransferError::Moved { .. }
            | TransferError::DowntimeTooLong { .. }
            | TransferError::NotANode { .. }
            | TransferError::Detached { .. }
            | TransferError::NoSpace { .. } => ErrorClass::Conflict,
            TransferError::Unreachable { .. } | TransferError::StreamCut { .. } => {
                ErrorClass::Unavailable
            }
            TransferError::Refused { status, .. } => match status {
                404 => ErrorClass::NotFound,
                409 | 507 => ErrorClass::Conflict,
                400..=499 => ErrorClass::Invalid,
                _ => ErrorClass::Unavailable,
            },
            TransferError::Protocol { .. } => ErrorClass::Unavailable,
        }
    }

    /// A stable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            TransferError::UnknownRemote { .. } => "unknown_remote",
            TransferError::RemoteExists { .. } => "remote_exists",
            TransferError::BadRemote { .. } => "invalid_remote",
            TransferError::TooManyRetries { .. } => "invalid_retries",
            TransferError::Unreachable { .. } => "remote_unreachable",
            TransferError::Refused { .. } => "remote_refused",
            TransferError::Protocol { .. } => "remote_protocol",
            TransferError::Diverged { .. } => "diverged",
            TransferError::Unrelated { .. } => "unrelated_histories",
            TransferError::MovedMeanwhile { .. } => "moved_meanwhile",
            TransferError::InUse { .. } => "in_use",
            TransferError::Detached { .. } => "detached_head",
            TransferError::NoSpace { .. } => "no_space",
            TransferError::BadStream { .. } => "bad_object_stream",
            TransferError::StreamCut { .. } => "object_stream_cut",
            TransferError::NoSession { .. } => "no_session",
            TransferError::LocalExists { .. } => "volume_exists",
            TransferError::Moved { .. } => "moved",
            TransferError::DowntimeTooLong { .. } => "downtime_too_long",
            TransferError::NotANode { .. } => "not_a_cluster_node",
            TransferError::Version { .. } => "protocol_version",
            TransferError::IntoItself { .. } => "into_itself",
        }
    }
}

/// Why the cluster's registry (etcd) refused an operation or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The node cannot prove its lease, or etcd did not answer in time.
    #[error("cluster unreachable: {what} for volume {volume} needs the registry at {endpoints}, which {reason}; running containers keep their volumes; retry once etcd answers (`dvol cluster nodes` shows what this node last knew)")]
    Unreachable {
        /// The operation refused.
        what: &'static str,
        /// The volume.
        volume: String,
        /// The etcd endpoints.
        endpoints: String,
        /// What failed.
        reason: String,
    },
    /// Another node owns the volume.
    #[error("volume {volume} belongs to node {owner} (epoch {epoch}){how}")]
    OwnedElsewhere {
        /// The volume.
        volume: String,
        /// Its owner.
        owner: String,
        /// Its fencing epoch.
        epoch: u64,
        /// What to do, as a clause.
        how: String,
    },
    /// The volume is mounted on its owner, so it cannot follow a container elsewhere.
    #[error("volume {volume} is in use on node {owner} {}: stop {} there, or run `dvol move {volume} {here}` on {owner}", users_text(*mounts as usize, containers), if containers.len() == 1 { "it" } else { "them" })]
    InUseElsewhere {
        /// The volume.
        volume: String,
        /// Its owner.
        owner: String,
        /// This node.
        here: String,
        /// The owner's mounts, as far as this node knows.
        mounts: u32,
        /// The running containers that use it on the owner, by name, where the owner said.
        containers: Vec<String>,
    },
    /// A push carries an epoch lower than the registry's: its sender no longer owns the
    /// volume.
    #[error("fenced: the push of volume {volume} carries epoch {offered}, but the cluster's registry is at epoch {current} (owner {owner}): the sender no longer owns it; nothing was changed here")]
    Fenced {
        /// The volume.
        volume: String,
        /// The epoch the push carries.
        offered: u64,
        /// The registry's.
        current: u64,
        /// The owner at that epoch.
        owner: String,
    },
    /// The volume's record changed between reading it and changing it.
    #[error("volume {volume} changed in the cluster's registry meanwhile (another node moved, created or removed it); retry")]
    ChangedMeanwhile {
        /// The volume.
        volume: String,
    },
    /// The change feed was asked for from a revision etcd no longer keeps.
    #[error("the registry's changes before revision {compacted} were compacted away (asked from {since}): list again with GET /v1/cluster/volumes and follow from its revision + 1")]
    Compacted {
        /// The revision asked for.
        since: i64,
        /// The oldest revision etcd keeps.
        compacted: i64,
    },
    /// A cluster call reached a daemon that is not in cluster mode.
    #[error("this daemon is not in cluster mode; start it with `dvol daemon --cluster http://ETCD:2379`")]
    NotClustered,
    /// The registry holds a record this daemon cannot read.
    #[error("the cluster's registry holds an unreadable record at {key}: {problem}")]
    BadRecord {
        /// The key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

impl ClusterError {
    /// The class of the error, for the HTTP status.
    pub fn class(&self) -> ErrorClass {
        match self {
            ClusterError::Unreachable { .. } => ErrorClass::Unavailable,
            ClusterError::OwnedElsewhere { .. }
            | ClusterError::InUseElsewhere { .. }
            | ClusterError::Fenced { .. }
            | ClusterError::ChangedMeanwhile { .. } => ErrorClass::Conflict,
            ClusterError::NotClustered | ClusterError::Compacted { .. } => ErrorClass::Invalid,
            ClusterError::BadRecord { .. } => ErrorClass::Internal,
        }
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ClusterError::Unreachable { .. } => "cluster_unreachable",
            ClusterError::OwnedElsewhere { .. } => "owned_elsewhere",
            ClusterError::InUseElsewhere { .. } => "in_use_elsewhere",
            ClusterError::Fenced { .. } => "fenced",
            ClusterError::ChangedMeanwhile { .. } => "cluster_changed_meanwhile",
            ClusterError::NotClustered => "not_clustered",
            ClusterError::Compacted { .. } => "revision_compacted",
            ClusterError::BadRecord { .. } => "cluster_bad_record",
        }
    }
}

impl From<ClusterError> for ServiceError {
    fn from(e: ClusterError) -> Self {
        ServiceError::Cluster(Box::new(e))
    }
}

impl From<TransferError> for ServiceError {
    fn from(e: TransferError) -> Self {
        ServiceError::Transfer(Box::new(e))
    }
}

/// `12.3 MiB`
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// The two sides of a [`TransferError::Diverged`].
#[derive(Debug)]
pub struct Divergence {
    /// Who sends.
    pub sender: String,
    /// Who receives.
    pub receiver: String,
    /// The sender's commits since the merge base, newest first (`ID message`).
    pub ours: Vec<String>,
    /// The receiver's commits since the merge base, newest first.
    pub theirs: Vec<String>,
}

/// The first few entries of a commit list, for a message.
fn short_list(commits: &[String]) -> String {
    let mut text: Vec<&str> = commits.iter().take(5).map(String::as_str).collect();
    if commits.len() > 5 {
        text.push("...");
    }
    text.join("; ")
}

fn join(names: &[ProfileName]) -> String {
    crate::config::join_names(names.iter())
}

/// `container web (id 0123456789ab), container worker (id ...)`
fn removable_text(containers: &[(String, String)]) -> String {
    containers
        .iter()
        .map(|(name, id)| format!("container {name} (id {id})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `by container web` or `by containers web, db` where the names are known, else
/// `(2 active mount(s))`.
fn users_text(mounts: usize, containers: &[String]) -> String {
    match containers {
        [] => format!("({mounts} active mount(s))"),
        [one] => format!("by container {one}"),
        many => format!("by containers {}", many.join(", ")),
    }
}

/// `3 path(s): a, b, c, ...`
fn uncommitted_summary(changed: usize, examples: &[String]) -> String {
    let mut summary = format!("{changed} path(s): {}", examples.join(", "));
    if changed > examples.len() {
        summary.push_str(", ...");
    }
    summary
}

impl ServiceError {
    /// The running containers the error names, by name: those that use a volume in use.
    pub fn containers(&self) -> &[String] {
        match self {
            ServiceError::InUse { containers, .. } => containers,
            ServiceError::Cluster(e) => match e.as_ref() {
                ClusterError::InUseElsewhere { containers, .. } => containers,
                _ => &[],
            },
            // A remote's refusal keeps the containers its own error named.
            ServiceError::Transfer(e) => match e.as_ref() {
                TransferError::Refused { containers, .. } => containers,
                _ => &[],
            },
            _ => &[],
        }
    }

    /// The broad kind of failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            ServiceError::Name(_)
            | ServiceError::UnknownProfile { .. }
            | ServiceError::UnknownOption { .. }
            | ServiceError::BadOption { .. }
            | ServiceError::CloneSource { .. }
            | ServiceError::BadPrune { .. } => ErrorClass::Invalid,
            ServiceError::NotFound { .. } => ErrorClass::NotFound,
            ServiceError::ProfileMismatch { .. }
            | ServiceError::InUse { .. }
            | ServiceError::Removing { .. }
            | ServiceError::Busy { .. }
            | ServiceError::Uncommitted { .. }
            | ServiceError::RemovedOnStop { .. }
            | ServiceError::Containers(_) => ErrorClass::Conflict,
            ServiceError::Backend { source, .. } | ServiceError::Host(source) => {
                backend_class(source)
            }
            ServiceError::History { source, .. } | ServiceError::Repository(source) => {
                history_class(source)
            }
            ServiceError::NotResumed { source, .. } | ServiceError::RemoveFailed { source, .. } => {
                source.class()
            }
            ServiceError::Transfer(e) => e.class(),
            ServiceError::Cluster(e) => e.class(),
            ServiceError::Metadata(_)
            | ServiceError::Journal { .. }
            | ServiceError::Root { .. }
            | ServiceError::Worker { .. } => ErrorClass::Internal,
        }
    }

    /// What went wrong, without the `volume NAME: ` the message of a backend or history
    /// error starts with: for sentences that name the volume themselves.
    pub fn reason(&self) -> String {
        match self {
            ServiceError::Backend { source, .. } => source.to_string(),
            ServiceError::History { source, .. } => source.to_string(),
            ServiceError::RemoveFailed { source, .. } => source.reason(),
            other => other.to_string(),
        }
    }

    /// A stable machine-readable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Name(_) => "invalid_name",
            ServiceError::NotFound { .. } => "not_found",
            ServiceError::UnknownProfile { .. } => "unknown_profile",
            ServiceError::ProfileMismatch { .. } => "profile_mismatch",
            ServiceError::UnknownOption { .. } => "unknown_option",
            ServiceError::BadOption { .. } => "invalid_option",
            ServiceError::InUse { .. } => "in_use",
            ServiceError::Backend { source, .. } | ServiceError::Host(source) => match source {
                BackendError::Refused(_) => "refused",
                BackendError::Unavailable(_) => "backend_unavailable",
                BackendError::FreezeExpired { .. } => "freeze_expired",
                _ => "backend_failed",
            },
            ServiceError::History { source, .. } | ServiceError::Repository(source) => {
                match history_class(source) {
                    ErrorClass::NotFound => "unknown_revision",
                    ErrorClass::Invalid => "invalid_revision",
                    ErrorClass::Conflict => "history_conflict",
                    _ => "history_failed",
                }
            }
            ServiceError::Busy { .. } => "busy",
            ServiceError::Uncommitted { .. } => "uncommitted_changes",
            ServiceError::CloneSource { .. } => "bad_snapshot_reference",
            ServiceError::BadPrune { .. } => "invalid_prune",
            ServiceError::RemovedOnStop { .. } => "container_removed_on_stop",
            ServiceError::Containers(_) => "containers_failed",
            ServiceError::NotResumed { source, .. } => source.code(),
            ServiceError::Removing { .. } => "removing",
            ServiceError::RemoveFailed { .. } => "remove_failed",
            ServiceError::Metadata(_) => "metadata_failed",
            ServiceError::Journal { .. } => "journal_failed",
            ServiceError::Root { .. } => "state_root_failed",
            ServiceError::Transfer(e) => e.code(),
            ServiceError::Cluster(e) => e.code(),
            ServiceError::Worker { .. } => "internal",
        }
    }
}

/// Which backend errors are the caller's.
fn backend_class(e: &BackendError) -> ErrorClass {
    match e {
        BackendError::Refused(_) => ErrorClass::Invalid,
        BackendError::Unavailable(_) => ErrorClass::Unavailable,
        BackendError::FreezeExpired { .. } => ErrorClass::Conflict,
        _ => ErrorClass::Internal,
    }
}

/// Which history errors are the caller's.
fn history_class(e: &dvol_snapshot::Error) -> ErrorClass {
    use dvol_snapshot::Error as E;
    match e {
        E::UnknownRevision { .. } | E::NoSuchRef { .. } | E::NoParent { .. } | E::NoCommits(_) => {
            ErrorClass::NotFound
        }
        E::BadRevision { .. } | E::AmbiguousPrefix { .. } | E::Ref(_) | E::Id(_) => {
            ErrorClass::Invalid
        }
        E::RefExists { .. } | E::DeleteCurrentBranch { .. } | E::VolumeExists(_) => {
            ErrorClass::Conflict
        }
        E::NotRecorded { .. } => ErrorClass::Conflict,
        _ => ErrorClass::Internal,
    }
}

/// Attaches the volume an error is about: the one way a backend or history error becomes a
/// [`ServiceError`] that names its volume.
pub trait ForVolume<T> {
    /// The error, as a [`ServiceError`] about `volume`.
    fn for_volume(self, volume: &VolumeName) -> Result<T, ServiceError>;
}

impl<T> ForVolume<T> for Result<T, BackendError> {
    fn for_volume(self, volume: &VolumeName) -> Result<T, ServiceError> {
        self.map_err(|source| ServiceError::Backend {
            volume: volume.clone(),
            source,
        })
    }
}

impl<T> ForVolume<T> for Result<T, dvol_snapshot::Error> {
    fn for_volume(self, volume: &VolumeName) -> Result<T, ServiceError> {
        self.map_err(|source| ServiceError::History {
            volume: volume.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> VolumeName {
        VolumeName::parse(n).unwrap()
    }

    #[test]
    fn history_errors_lead_with_the_volume_name() {
        let revision: Result<(), _> = Err(dvol_snapshot::Error::UnknownRevision {
            volume: dvol_snapshot::VolumeKey(uuid::Uuid::new_v4()),
            rev: "nosuch".into(),
            available: "branches: master".into(),
        });
        let e = revision.for_volume(&name("demo")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "volume demo: unknown revision 'nosuch'; branches: master"
        );
        assert_eq!(
            (e.class(), e.code()),
            (ErrorClass::NotFound, "unknown_revision")
        );
    }

    #[test]
    fn in_use_errors_name_the_containers_where_known() {
        let in_use = |containers: &[&str]| ServiceError::InUse {
            volume: name("db"),
            mounts: 2,
            containers: containers.iter().map(|c| c.to_string()).collect(),
        };
        assert_eq!(
            in_use(&[]).to_string(),
            "volume db is in use (2 active mount(s)); stop the containers using it, then retry"
        );
        assert_eq!(
            in_use(&["web"]).to_string(),
            "volume db is in use by container web; stop the containers using it, then retry"
        );
        assert_eq!(in_use(&["web", "job"]).containers(), ["web", "job"]);
        let elsewhere: ServiceError = ClusterError::InUseElsewhere {
            volume: "db".into(),
            owner: "a".into(),
            here: "b".into(),
            mounts: 1,
            containers: vec!["web".into(), "job".into()],
        }
        .into();
        assert_eq!(
            elsewhere.to_string(),
            "volume db is in use on node a by containers web, job: stop them there, or run `dvol move db b` on a"
        );
        assert_eq!(elsewhere.containers(), ["web", "job"]);
        assert_eq!(elsewhere.code(), "in_use_elsewhere");
        let refused: ServiceError = TransferError::Refused {
            remote: "b".into(),
            status: 409,
            code: Some("in_use".into()),
            message: "volume db is in use by container web".into(),
            containers: vec!["web".into()],
        }
        .into();
        assert_eq!(refused.containers(), ["web"], "forwarded from the remote");
    }

    #[test]
    fn a_reference_found_nowhere_in_the_cluster_names_who_was_asked() {
        let problem = CloneSourceProblem::NoMatchInCluster {
            asked: vec!["a".into(), "b".into()],
            failed: vec!["c: remote c is unreachable".into()],
        };
        assert_eq!(
            problem.to_string(),
            "matches no volume UUID and no commit on this node nor on node(s) a, b; not asked or not answered: c: remote c is unreachable; retry once they answer"
        );
        let alone = CloneSourceProblem::NoMatchInCluster {
            asked: Vec::new(),
            failed: Vec::new(),
        };
        assert_eq!(
            alone.to_string(),
            "matches no volume UUID and no commit on this node"
        );
    }

    #[test]
    fn uncommitted_changes_show_the_first_paths() {
        let e = ServiceError::Uncommitted {
            volume: name("db"),
            changed: 5,
            examples: vec!["a".into(), "b".into(), "c".into()],
        };
        assert_eq!(
            e.to_string(),
            "volume db has uncommitted changes (5 path(s): a, b, c, ...); commit them, or pass --force to discard them"
        );
    }

    #[test]
    fn a_container_run_with_rm_is_named_with_its_id_and_the_way_out() {
        let e = ServiceError::RemovedOnStop {
            volume: name("db"),
            operation: "checkout",
            containers: vec![("web".into(), "0123456789ab".into())],
        };
        assert_eq!(
            (e.class(), e.code()),
            (ErrorClass::Conflict, "container_removed_on_stop")
        );
        assert_eq!(
            e.to_string(),
            "volume db: checkout would stop container web (id 0123456789ab), which the engine \
             deletes when it stops (it was run with --rm), so nothing was stopped or changed; stop \
             it yourself, or pass --stop-removable to let the checkout stop it for good"
        );
    }

    #[test]
    fn a_failure_with_containers_left_stopped_keeps_its_code_and_names_them() {
        let e = ServiceError::NotResumed {
            source: Box::new(ServiceError::Busy { volume: name("v") }),
            how: Quiesce::Stop,
            not_resumed: vec![NotResumed {
                container: "web".into(),
                error: "port is already allocated".into(),
            }],
        };
        assert_eq!((e.class(), e.code()), (ErrorClass::Conflict, "busy"));
        assert_eq!(
            e.to_string(),
            "volume v is busy with another operation; retry when it finishes; also, container web \
             could not be started again (port is already allocated); start it with `docker start web`"
        );
    }
}
