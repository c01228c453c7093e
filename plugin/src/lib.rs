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
//! - [`daemon`] binds the sockets and serves both protocols until shutdown.
//! - [`config`], [`profile`] and [`names`] turn user input into validated values.
//!
//! `dvol daemon` (the `dvol` crate) is a few lines over [`daemon::run`].
//!
//! # Locks
//!
//! | lock | guards | held by |
//! |---|---|---|
//! | name lock, one per volume name (`service::locks`) | a volume's record, storage, mounts and history refs | create, remove, mount, unmount, resize, dropping stale mount ids at start (waiting); a remove refused as in use asks the engine for the volume's running containers while holding it (at most [`containers::ENGINE_PATIENCE`]; listing calls no plugin); commit, status, checkout, reset, clone from it (waiting at most [`service::BUSY_PATIENCE`], then `busy`) |
//! | registry lock (`RwLock` over the volumes by name) | the in-memory registry | every lookup (read), publish and remove (write), never across I/O |
//! | metadata connection mutex ([`metadata::Metadata`]) | the SQLite connection; each change is one transaction | each metadata call, briefly |
//! | repository flock `<root>/history/lock` (in `dvol-snapshot`) | the object store against deletion | shared by every history call; exclusive by gc's sweep |
//! | per-volume flocks `<root>/history/locks/<uuid>` (in `dvol-snapshot`) | one volume's refs and index | exclusive by commit, checkout and ref changes of that volume |
//! | root flock `<root>/daemon.lock` ([`root_lock`]) | the whole state root against a second daemon | the daemon, from before it opens the state until it exits |
//! | container quiescing ([`service::VolumeService::around_containers`]) | the volume's running containers, stopped or paused | checkout, reset, `commit --pause`, around (and outside) the name lock |
//!
//! Which operations may run together: any two on different volumes. On one volume, only
//! lookups (Docker `Get`, `Path`, `List`, REST `GET` of a volume, log, branches, tags, diff)
//! run beside anything; everything else on that volume runs one at a time. A clone from a
//! volume holds the source's name lock for the instant of its copy. `fsck` runs beside everything;
//! `gc` waits for running history calls and holds new ones back while it sweeps. Quiescing is taken before the
//! name lock and never while holding it, so a checkout that waits for containers to stop
//! does not block the Docker Unmount those containers send on their way out.

pub mod body;
pub mod config;
pub mod containers;
pub mod daemon;
pub mod docker;
pub mod error;
pub mod metadata;
pub mod names;
pub mod profile;
pub mod rest;
pub mod root_lock;
pub mod service;
pub mod volume;

pub use error::{ErrorClass, ServiceError};
pub use service::VolumeService;
