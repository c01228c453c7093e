//! The wire types of dvol's REST API, version 1: every request body, answer, progress event
//! and error body that crosses the API, used by the daemon (`dvol-plugin`) to answer and by
//! the CLI (`dvol`) to ask. Each derives its OpenAPI schema, so the document the daemon serves
//! at `/v1/openapi.json` is generated from these types and cannot drift from them.
//!
//! - [`error`]: the error body every failing call answers.
//! - [`volume`]: volumes, creating and resizing them.
//! - [`node`]: the daemon's health, this host and its profiles.
//! - [`history`]: commits, refs, changes, checkout and reset, and the containers an operation
//!   could not start again.
//! - [`maintenance`]: fsck and gc of the history repository.
//! - [`progress`]: the progress stream of long calls (`Accept: application/x-ndjson`).
//! - [`transfer`]: remotes, push and clone, and the protocol between daemons.
//! - [`cluster`]: the nodes and volumes of a cluster's shared registry.
//!
//! The types hold plain data only; validation (names, sizes, revisions) is the daemon's.

/// The header every answer of dvol's REST API carries (value: the API version, `1`): a client
/// that gets an answer without it is talking to another program (the Docker Engine's socket, the
/// plugin socket) and says so.
pub const API_HEADER: &str = "dvol-api";

pub mod cluster;
pub mod error;
pub mod history;
pub mod maintenance;
pub mod node;
pub mod progress;
pub mod transfer;
pub mod volume;

pub use cluster::{
    ClusterEvent, ClusterEventKind, ClusterMount, ClusterNode, ClusterNodes, ClusterVolume,
    ClusterVolumeState, ClusterVolumes,
};
pub use error::{ErrorBody, ErrorDetail};
pub use history::{
    ChangeKind, ChangeView, CheckoutRequest, CheckoutView, CommitRequest, CommitResult, CommitView,
    DiffQuery, LeftBehind, LogView, NotResumed, ReadFrom, RefRequest, RefView, ReflogEntryView,
    ReflogQuery, ResetRequest,
};
pub use maintenance::{FsckView, GcRequest, GcView};
pub use node::{Health, NodeInfo, ProfileCapacity, ProfileConfigView, ProfileView};
pub use progress::{ProgressEvent, StreamLine, Unit, NDJSON};
pub use transfer::{
    AddRemote, CloneRequest, FetchPlan, FetchRequest, IncomingPush, MoveRequest, MoveResult,
    MoveRound, ObjectsReceived, PullRequest, PushAnswer, PushFinish, PushFinished, PushOffer,
    PushRequest, RemoteView, ResolveAnswer, ResolveRequest, ResolvedSource, TransferOutcome,
    TransferResult, UpdateMode, DEFAULT_RETRIES, MAX_HAVE_IDS, MAX_RETRIES, TRANSFER_PROTOCOL,
};
pub use volume::{CreateVolume, MovedTo, ResizeVolume, VolumeState, VolumeView};
