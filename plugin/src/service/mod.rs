//! The volume service: the one owner of volume state.
//!
//! Every surface (the Docker plugin protocol, the REST API) calls into [`VolumeService`]. Its
//! operations are synchronous: backend and history work is blocking I/O, and the async layers
//! run it on blocking threads ([`VolumeService::blocking`]). Only stopping and starting the
//! containers around an operation ([`VolumeService::around_containers`]) is async, since it
//! talks to the container engine.
//!
//! One file per group of operations, each an `impl VolumeService` over the state private to
//! this module:
//! - [`lifecycle`]: create, remove, mount, unmount, resize, and crash recovery at open;
//! - [`clone`]: volumes made from another volume or a commit (`NAME@snapshot-REF`);
//! - [`read_point`]: reaching a volume's data, live or fixed at one instant;
//! - [`history`]: commit, log, refs, status, diff, checkout, reset, fsck, gc;
//! - [`quiesce`]: stopping or pausing the containers that use a volume around an operation;
//! - [`node`]: what this host offers.
//!
//! Consistency rules:
//! - Operations on one volume name are serialised by its name lock; different names run in
//!   parallel (see the locking table in the crate's documentation).
//! - Create and remove are recorded as `creating`/`removing` before any storage is touched, so
//!   a crash mid-way is finished or rolled back by [`VolumeService::open`].
//! - Whether a volume is mounted is asked of the kernel. Mount ids are kept in the metadata
//!   database only to know when the last user is gone; at start they are dropped for any
//!   volume the kernel says is not mounted.

mod clone;
mod history;
mod lifecycle;
mod locks;
mod node;
mod options;
mod quiesce;
mod read_point;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use dvol_backends::{Backend, BackendError, VolumeSpec};
use uuid::Uuid;

use crate::config::Config;
use crate::containers::{Containers, DockerEngine};
use crate::error::{ForVolume, ServiceError};
use crate::metadata::Metadata;
use crate::names::{ProfileName, VolumeName, VolumeRef};
use crate::profile::{resolve, HostBackends, Profile};
use crate::volume::{Layout, Volume};

pub use clone::CloneSource;
pub use locks::BUSY_PATIENCE;
pub use options::{CreateOptions, KNOWN_OPTIONS};
pub use quiesce::{Quiesced, Reporter};

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
}

impl std::fmt::Debug for VolumeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeService")
            .field("root", &self.layout.root())
            .finish_non_exhaustive()
    }
}

impl VolumeService {
    /// Opens the state under `layout`, resolves the profiles against `host`'s backends, and
    /// finishes or rolls back whatever a previous run left half-done. Containers are found
    /// through the Docker Engine under the driver name `dvol` until
    /// [`VolumeService::set_containers`] says otherwise.
    pub fn open(layout: Layout, config: &Config, host: HostBackends) -> Result<Self, ServiceError> {
        let (metadata, history) = lifecycle::open_state(&layout)?;
        let host_id = metadata.host_id()?;
        let profiles = resolve(config, &host);
        lifecycle::report_profiles(&profiles);
        let service = VolumeService {
            profiles,
            default_profile: config.default_profile.clone(),
            layout,
            backends: host.ready(),
            metadata,
            host_id,
            volumes: RwLock::new(BTreeMap::new()),
            locks: locks::NameLocks::default(),
            history,
            containers: Containers::new("dvol", Arc::new(DockerEngine)),
        };
        service.recover()?;
        Ok(service)
    }

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

    /// The state layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The profiles as resolved on this host.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// A volume's mountpoint, whether or not it is mounted.
    pub fn mountpoint(&self, volume: &Volume) -> PathBuf {
        self.layout.mountpoint(volume.id)
    }

    /// Whether the volume's size is a hard limit.
    pub fn enforces_size(&self, volume: &Volume) -> bool {
        volume.size.is_some() && self.backend(volume).is_ok_and(|b| b.enforces_size())
    }

    /// Looks a volume up by `NAME` or `NAME@PROFILE`. Never touches a backend.
    pub fn get(&self, reference: &str) -> Result<Volume, ServiceError> {
        self.lookup(&VolumeRef::parse(reference)?)
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

    /// The volume `reference` names, checking the profile it asks for, if any.
    fn lookup(&self, reference: &VolumeRef) -> Result<Volume, ServiceError> {
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
