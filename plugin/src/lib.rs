//! The dvol daemon as a library.
//!
//! - [`service::VolumeService`] owns volume state: the metadata database ([`metadata`]), the
//!   backends, mount bookkeeping, history and crash recovery; one file per group of
//!   operations under [`service`].
//! - [`docker`] speaks the Docker volume plugin protocol; [`rest`] the REST control API, one
//!   file per resource, with its OpenAPI document generated from the routes and the wire
//!   types of the `dvol-api` crate. Both are thin: they parse a request, call the service,
//!   and shape the answer.
//! - [`containers`] finds, stops and starts the containers that use a volume.
//! - [`daemon`] binds the sockets and serves both protocols until shutdown; it logs what it
//!   cannot do with its privileges ([`privileges`]) and tells a service manager when it is
//!   ready and when it stops ([`readiness`]).
//! - [`config`], [`profile`] and [`names`] turn user input into validated values.
//! - [`metrics`] counts calls and history work for `GET /metrics` (Prometheus text format).
//!
//! `dvol daemon` (the `dvol` crate) is a few lines over [`daemon::run`]; the table of locks
//! below says what may run together.
//!
//! # Locks
//!
//! | lock | guards | taken by |
//! |---|---|---|
//! | name lock, one per volume name (`service::locks`) | a volume's record, storage, mounts and data | create, remove, mount, unmount, resize, dropping stale mount ids at start: waiting (a remove refused as in use asks the engine for the volume's running containers while holding it, at most [`containers::ENGINE_PATIENCE`]; listing calls no plugin). Commit, status, checkout, reset: waiting at most [`service::BUSY_PATIENCE`], then `busy` |
//! | registry lock (an `RwLock` over the volumes by name) | the in-memory registry | every lookup (read); publish and remove (write); never held across I/O |
//! | metadata connection mutex ([`metadata::Metadata`]) | the SQLite connection; each change is one transaction | each metadata call, briefly |
//! | repository flock `<root>/history/lock` (in `dvol-snapshot`) | objects against deletion | shared: commit, checkout, ref creation and moves, fsck (whole call); exclusive: gc (whole call) |
//! | volume flock `<root>/history/locks/<uuid>` (in `dvol-snapshot`) | one volume's refs and index | exclusive: commit, checkout, ref creation, moves and deletion of that volume |
//! | root flock `<root>/daemon.lock` ([`root_lock`]) | the whole state root against a second daemon | the daemon, from before it opens the state until it exits |
//! | container quiescing ([`service::VolumeService::around_containers`]) | the volume's running containers, stopped or paused | checkout, reset, `commit --pause`; taken before the name lock, released after it |
//!
//! Which operations may run together:
//! - any two on different volumes, except that gc waits for every commit, checkout, ref
//!   change and fsck in progress and holds new ones back until it ends (and fsck waits for
//!   gc);
//! - on one volume, the reads (Docker `Get`, `Path`, `List`; REST `GET` of volumes, log,
//!   branches, tags, diff) run beside anything, reading refs without a lock;
//! - branch and tag creation and deletion take no name lock: they run beside a commit or
//!   checkout of the same volume, one at a time with it through the volume flock;
//! - everything else on one volume runs one at a time under its name lock;
//! - creating a clone holds the new name's lock and then takes the source's (waiting at most
//!   [`service::BUSY_PATIENCE`]): for the instant of a block-sharing copy, or for the whole
//!   commit of the source when its files are copied;
//! - quiescing is taken before the name lock and never while holding it, so a checkout that
//!   waits for containers to stop does not block the Docker `Unmount` those containers send
//!   on their way out.

pub mod body;
pub mod cluster;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod docker;
pub mod error;
pub mod metadata;
pub mod metrics;
pub mod names;
pub mod privileges;
pub mod profile;
pub mod readiness;
pub mod rest;
pub mod root_lock;
pub mod service;
pub mod tls;
pub mod volume;

pub use error::{ErrorClass, ServiceError};
pub use service::VolumeService;
