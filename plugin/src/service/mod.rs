//! The volume service: the one owner of volume state.
//!
//! Every surface (the Docker plugin protocol, the REST API) calls into [`VolumeService`]. Its
//! operations are synchronous: backend and history work is blocking I/O, which the async
//! layers run on blocking threads through [`VolumeService::blocking`]. The operations that
//! stop and start containers around their work ([`VolumeService::around_containers`] and the
//! `*_with_containers` operations built on it) are async, since they talk to the container
//! engine; their blocking part runs through [`VolumeService::blocking`] too.
//!
//! One file per group of operations, each an `impl VolumeService` over the state private to
//! this module:
//! - [`lifecycle`]: create, remove, mount, unmount, resize, and crash recovery at open;
//! - [`clone`]: volumes made from another volume or a commit (`NAME@snapshot-REF`);
//! - [`read_point`]: reaching a volume's data, live or fixed at one instant;
//! - [`history`]: commit, log, refs, status, diff, checkout, reset;
//! - [`journal`]: the operation journal that lets a checkout or reset a crash interrupted
//!   be finished at the next start;
//! - [`maintenance`]: fsck and gc of the history repository;
//! - [`quiesce`]: stopping or pausing the containers that use a volume around an operation;
//! - [`node`]: what this host offers;
//! - [`full`]: what the daemon cannot do while its state root is full;
//! - [`stale`]: dropping the mount ids of containers that are gone;
//! - [`transfer`]: remotes, push and clone between hosts;
//! - [`cluster`]: what create, remove, mount and move record in a cluster's registry.
//!
//! Consistency rules:
//! - Operations on one volume name are serialised by its name lock; different names run in
//!   parallel (see the locking table in the crate's documentation).
//! - Create and remove are recorded as `creating`/`removing` before any storage is touched, so
//!   a crash mid-way is finished or rolled back by [`VolumeService::open`].
//! - Whether a volume is mounted is asked of the kernel. Mount ids are kept in the metadata
//!   database only to know when the last user is gone; at start they are dropped for any
//!   volume the kernel says is not mounted, and at start and on a remove refused as in use
//!   for any volume no container uses any more ([`stale`]).
//! - Memory, database and kernel agree after a failure: a kernel change that can be undone
//!   (a mount) is undone when its record fails; one that cannot (an unmount) is made only
//!   after its record; memory changes only once the database holds the change.
//! - A remove that fails halfway leaves the volume listed as `removing`, with the reason;
//!   only lookups, unmounts and a retried remove reach it.
//! - Checkout and reset are journaled from before they stop a container or touch a file
//!   until the containers run again; a crash in between is rolled forward at the next start
//!   ([`journal`]).

mod clone;
pub mod cluster;
mod full;
mod history;
mod journal;
mod lifecycle;
mod locks;
mod maintenance;
mod node;
mod options;
mod quiesce;
mod read_point;
mod stale;
#[cfg(test)]
mod tests;
pub mod transfer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

use dvol_backends::{Backend, BackendError, VolumeSpec};
use uuid::Uuid;

use crate::containers::Containers;
use crate::error::{ForVolume, ServiceError};
use crate::metadata::Metadata;
use crate::metrics::Metrics;
use crate::names::{ProfileName, VolumeName, VolumeRef};
use crate::profile::Profile;
use crate::volume::{Layout, Volume, VolumeState};

pub use locks::BUSY_PATIENCE;
pub use options::{CreateOptions, KNOWN_OPTIONS};

/// Where a long operation reports its progress.
pub type Reporter = Arc<dyn dvol_snapshot::Progress + Send>;

/// An operation's answer, and the containers that could not be started again after it
/// ([`VolumeService::around_containers`]).
#[derive(Debug)]
pub struct Quiesced<T> {
    /// The operation's answer.
    pub value: T,
    /// Containers stopped (or paused) for it that could not be started (or unpaused) again;
    /// empty normally.
    pub not_resumed: Vec<dvol_api::NotResumed>,
}

/// The volume service.
pub struct VolumeService {
    layout: Layout,
    profiles: Vec<Profile>,
    default_profile: ProfileName,
    backends: Vec<Arc<dyn Backend>>,
    metadata: Metadata,
    host_id: Uuid,
    volumes: RwLock<BTreeMap<VolumeName, Volume>>,
    locks: locks::NameLocks,
    history: dvol_snapshot::Repository,
    containers: Containers,
    sessions: transfer::Sessions,
    metrics: Arc<Metrics>,
    cluster: OnceLock<cluster::ClusterLink>,
}

impl std::fmt::Debug for VolumeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeService")
            .field("root", &self.layout.root())
            .finish_non_exhaustive()
    }
}

impl VolumeService {
    /// Sets how the containers using a volume are found and stopped: the driver name the
    /// engine knows this plugin by (the plugin socket's name) and the engine.
    pub fn set_containers(&mut self, containers: Containers) {
        self.containers = containers;
    }

    /// Runs blocking service work on a blocking thread, off the async workers.
    pub async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&VolumeService) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        let service = self.clone();
        tokio::task::spawn_blocking(move || work(&service))
            .await
            .map_err(|e| ServiceError::Worker {
                message: e.to_string(),
            })?
    }

    /// A volume as the API shows it.
    pub fn view(&self, volume: Volume) -> dvol_api::VolumeView {
        let moved_to = self.moved_to(&volume);
        dvol_api::VolumeView {
            id: volume.id,
            name: volume.name.to_string(),
            profile: volume.profile.to_string(),
            backend: volume.backend,
            size_bytes: volume.size.map(dvol_backends::ByteSize::bytes),
            size_enforced: self.enforces_size(&volume),
            filesystem: volume.filesystem,
            mountpoint: self.mountpoint(&volume).display().to_string(),
            created_at: volume.created_rfc3339(),
            mounted: volume.in_use(),
            mounts: volume.mounts,
            moved_to,
            state: volume.state,
            problem: volume.problem,
        }
    }

    /// Where `volume` was moved to, if it was (a metadata read that fails shows as not moved;
    /// mounts still check it strictly).
    pub fn moved_to(&self, volume: &Volume) -> Option<dvol_api::MovedTo> {
        let moved = self.metadata.moved(volume.id).ok().flatten()?;
        Some(dvol_api::MovedTo {
            remote: moved.remote,
            commit: moved.commit,
            moved_at: moved.moved_at.to_rfc3339(),
        })
    }

    /// The daemon's metrics, counted by every surface and by the service itself.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The state layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The profiles as resolved on this host.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// Whether commits of `profile`'s volumes read only the changed ranges of changed files
    /// (its backend's read points count them here: LVM thin volumes with `thin_delta`, loop
    /// images and directory volumes on a root that shares blocks).
    pub fn counts_changes(&self, profile: &Profile) -> bool {
        self.backends.iter().any(|b| {
            Some(b.kind()) == profile.backend
                && b.location() == profile.location
                && b.counts_changes()
        })
    }

    /// A volume's mountpoint, whether or not it is mounted.
    pub fn mountpoint(&self, volume: &Volume) -> PathBuf {
        self.layout.mountpoint(volume.id)
    }

    /// Whether the volume's size is a hard limit.
    pub fn enforces_size(&self, volume: &Volume) -> bool {
        volume.size.is_some() && self.backend(volume).is_ok_and(|b| b.enforces_size())
    }

    /// Looks a volume up by `NAME` or `NAME@PROFILE`, in any state (a volume a remove failed
    /// on is `removing`). Never touches a backend.
    pub fn get(&self, reference: &str) -> Result<Volume, ServiceError> {
        self.find(&VolumeRef::parse(reference)?)
    }

    /// Every volume, by name.
    pub fn list(&self) -> Vec<Volume> {
        self.volumes
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect()
    }

    /// The names the Docker Engine may know the volume by: its name and recorded aliases.
    pub fn docker_names(&self, volume: &Volume) -> Vec<String> {
        let mut names = vec![volume.name.to_string()];
        names.extend(self.metadata.aliases(volume.id).unwrap_or_default());
        names
    }

    /// The backend serving `volume`.
    fn backend(&self, volume: &Volume) -> Result<&Arc<dyn Backend>, ServiceError> {
        self.backends
            .iter()
            .find(|b| b.kind() == volume.backend && b.location() == volume.location)
            .ok_or_else(|| {
                BackendError::Unavailable(format!(
                    "its {} backend{} is unavailable on this host; `dvol profile ls` says why",
                    volume.backend,
                    volume
                        .location
                        .as_deref()
                        .map(|l| format!(" ({l})"))
                        .unwrap_or_default()
                ))
            })
            .for_volume(&volume.name)
    }

    /// What a backend needs to know of `volume`.
    fn spec(volume: &Volume) -> VolumeSpec {
        VolumeSpec {
            id: volume.id,
            size: volume.size,
            filesystem: volume.filesystem,
            preallocate: false,
            max_overprovision: None,
        }
    }

    /// What a backend needs to know of `volume` to give it more room: the spec, with how its
    /// profile allocates (when the profile still resolves to the volume's backend).
    fn spec_to_grow(&self, volume: &Volume) -> VolumeSpec {
        let spec = Self::spec(volume);
        match self.profiles.iter().find(|p| p.name == volume.profile) {
            Some(profile) if profile.backend == Some(volume.backend) => VolumeSpec {
                preallocate: profile.preallocate,
                max_overprovision: profile.config.max_overprovision,
                ..spec
            },
            _ => spec,
        }
    }

    /// The usable volume `reference` names, checking the profile it asks for, if any. A
    /// volume being removed is refused: only lookups and a retried remove reach it.
    fn lookup(&self, reference: &VolumeRef) -> Result<Volume, ServiceError> {
        let volume = self.find(reference)?;
        if volume.state == VolumeState::Removing {
            return Err(ServiceError::Removing {
                volume: volume.name,
                problem: volume.problem,
            });
        }
        Ok(volume)
    }

    /// The volume `reference` names in any state, checking the profile it asks for, if any.
    fn find(&self, reference: &VolumeRef) -> Result<Volume, ServiceError> {
        let volume = self
            .volumes
            .read()
            .expect("registry lock")
            .get(&reference.name)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound {
                volume: reference.name.clone(),
            })?;
        if let Some(requested) = reference.profile() {
            if *requested != volume.profile {
                return Err(ServiceError::ProfileMismatch {
                    volume: volume.name.clone(),
                    actual: volume.profile.clone(),
                    requested: requested.clone(),
                });
            }
        }
        Ok(volume)
    }

    /// Makes `volume`'s record the one every lookup sees.
    fn publish(&self, volume: Volume) {
        self.volumes
            .write()
            .expect("registry lock")
            .insert(volume.name.clone(), volume);
    }
}
