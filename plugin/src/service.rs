//! The volume service: the one owner of volume state.
//!
//! Every surface (the Docker plugin protocol, the REST API) calls into [`VolumeService`]. It is
//! synchronous: backend work is blocking I/O, and the async layers run it on blocking threads.
//!
//! Consistency rules:
//! - Operations on one volume name are serialised by a lock; different names run in parallel.
//! - Create and remove are recorded as `creating`/`removing` before any storage is touched, so
//!   a crash mid-way is finished or rolled back by [`VolumeService::open`].
//! - Whether a volume is mounted is asked of the kernel. Mount ids are kept in the database
//!   only to know when the last user is gone; at start they are dropped for any volume the
//!   kernel says is not mounted.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use chrono::Utc;
use dvol_backends::mount_table::MountTable;
use dvol_backends::{
    Backend, BackendError, BackendKind, ByteSize, Capacity, Effect, Filesystem, VolumeSpec,
};
use serde::Serialize;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::{join_names, Config};
use crate::error::ServiceError;
use crate::history::CloneSource;
use crate::names::{ProfileName, Suffix, VolumeName, VolumeRef};
use crate::profile::{resolve, HostBackends, Profile};
use crate::store::Store;
use crate::volume::{Layout, Volume, VolumeState};

/// The option keys `docker volume create -o` and the REST API accept.
pub const KNOWN_OPTIONS: &str = "size, profile, fs, from";

/// Options for a new volume, parsed from Docker's `Opts` map or a REST body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOptions {
    /// Overrides the profile's size.
    pub size: Option<ByteSize>,
    /// The profile, if not given in the name.
    pub profile: Option<ProfileName>,
    /// Overrides the profile's filesystem.
    pub filesystem: Option<Filesystem>,
    /// Clone source (not supported yet).
    pub from: Option<String>,
}

impl CreateOptions {
    /// Parses string options, refusing unknown keys and bad values.
    pub fn parse(
        volume: &VolumeName,
        opts: &BTreeMap<String, String>,
    ) -> Result<Self, ServiceError> {
        let mut parsed = CreateOptions::default();
        let bad = |key: &'static str, message: String| ServiceError::BadOption {
            volume: volume.to_string(),
            key,
            message,
        };
        for (key, value) in opts {
            match key.as_str() {
                "size" => {
                    parsed.size = Some(value.parse().map_err(|e| bad("size", format!("{e}")))?)
                }
                "profile" => {
                    parsed.profile =
                        Some(ProfileName::parse(value).map_err(|e| bad("profile", e.to_string()))?)
                }
                "fs" => parsed.filesystem = Some(value.parse().map_err(|e| bad("fs", e))?),
                "from" => parsed.from = Some(value.clone()),
                _ => {
                    return Err(ServiceError::UnknownOption {
                        volume: volume.to_string(),
                        key: key.chars().take(64).collect(),
                        known: KNOWN_OPTIONS,
                    })
                }
            }
        }
        Ok(parsed)
    }
}

/// What `GET /v1/node` reports.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    /// This host's stable id.
    pub id: Uuid,
    /// The host name.
    pub hostname: String,
    /// The dvol version.
    pub version: &'static str,
    /// The backends this host can run.
    pub backends: Vec<BackendKind>,
    /// Capacity per profile.
    pub profiles: Vec<ProfileCapacity>,
    /// How many volumes exist.
    pub volumes: usize,
}

/// Room for new volumes of one profile.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileCapacity {
    /// The profile.
    pub profile: ProfileName,
    /// Its backend, if available.
    pub backend: Option<BackendKind>,
    /// Whether volumes of this profile can be created here.
    pub available: bool,
    /// Space behind the backend; absent if it could not be measured.
    pub capacity: Option<Capacity>,
}

/// One lock per volume name, made on first use.
#[derive(Default)]
struct NameLocks {
    locks: Mutex<HashMap<VolumeName, Arc<Mutex<()>>>>,
}

/// A held volume lock.
pub(crate) struct NameGuard {
    lock: Arc<Mutex<()>>,
}

impl NameLocks {
    fn get(&self, name: &VolumeName) -> NameGuard {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        NameGuard {
            lock: locks.entry(name.clone()).or_default().clone(),
        }
    }
}

impl NameGuard {
    /// Waits for the lock.
    fn hold(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the lock if it frees up within `patience`.
    pub(crate) fn try_hold(&self, patience: std::time::Duration) -> Option<MutexGuard<'_, ()>> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match self.lock.try_lock() {
                Ok(guard) => return Some(guard),
                Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(std::sync::TryLockError::WouldBlock) => return None,
            }
        }
    }
}

/// The volume service.
pub struct VolumeService {
    layout: Layout,
    profiles: Vec<Profile>,
    default_profile: ProfileName,
    backends: Vec<Arc<dyn Backend>>,
    store: Store,
    host_id: Uuid,
    volumes: RwLock<BTreeMap<VolumeName, Volume>>,
    locks: NameLocks,
    pub(crate) history: dvol_snapshot::Repository,
    pub(crate) containers: crate::containers::Containers,
}

impl std::fmt::Debug for VolumeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeService")
            .field("root", &self.layout.root())
            .finish_non_exhaustive()
    }
}

impl VolumeService {
    /// Opens the state under `layout`, resolves the profiles against `backends`, and finishes
    /// or rolls back whatever a previous run left half-done.
    pub fn open(layout: Layout, config: &Config, host: HostBackends) -> Result<Self, ServiceError> {
        for dir in [layout.root().to_path_buf(), layout.mounts_dir()] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(&dir)
                .map_err(|source| ServiceError::Root { path: dir, source })?;
        }
        let store = Store::open(&layout.database())?;
        let host_id = store.host_id()?;
        let history = dvol_snapshot::Repository::open(&layout.history_dir()).map_err(|source| {
            ServiceError::History {
                volume: "(all)".into(),
                source,
            }
        })?;
        let profiles = resolve(config, &host);
        for profile in &profiles {
            if profile.available {
                info!(profile = %profile.name, reason = %profile.reason, "profile ready");
            } else {
                warn!(profile = %profile.name, reason = %profile.reason, "profile unavailable on this host");
            }
        }
        let service = VolumeService {
            profiles,
            default_profile: config.default_profile.clone(),
            layout,
            backends: host.ready(),
            store,
            host_id,
            volumes: RwLock::new(BTreeMap::new()),
            locks: NameLocks::default(),
            history,
            containers: crate::containers::Containers::new("dvol"),
        };
        service.recover()?;
        Ok(service)
    }

    /// Rebuilds the in-memory registry from the database and the kernel's mount table.
    fn recover(&self) -> Result<(), ServiceError> {
        let table = MountTable::read().map_err(|source| ServiceError::Backend {
            volume: "(all)".into(),
            source,
        })?;
        let mut registry = BTreeMap::new();
        let volumes = self.store.load()?;
        self.release_stale_read_points(&volumes);
        for mut volume in volumes {
            let mountpoint = self.layout.mountpoint(volume.id);
            let mounted = table.is_mounted(&mountpoint);
            match volume.state {
                VolumeState::Creating | VolumeState::Removing => {
                    info!(volume = %volume.name, state = volume.state.as_str(), "finishing interrupted operation: removing the volume");
                    if let Err(e) = self.destroy(&volume) {
                        warn!(volume = %volume.name, error = %e, "could not clean up; will retry at next start");
                    }
                    continue;
                }
                VolumeState::Ready => {}
            }
            if !mounted && volume.in_use() {
                info!(volume = %volume.name, "kernel reports it unmounted: dropping stale mount ids");
                volume.mounts.clear();
                self.store.set_mounts(volume.id, &volume.mounts)?;
            }
            if mounted && !volume.in_use() {
                info!(volume = %volume.name, "mounted without a recorded user: unmounting");
                if let Err(e) = self.backend(&volume)?.unmount(volume.id, &mountpoint) {
                    warn!(volume = %volume.name, error = %e, "could not unmount stray mount");
                }
            }
            if let Err(e) = self.ensure_mountpoint(&volume) {
                warn!(volume = %volume.name, error = %e, "mountpoint missing");
            }
            registry.insert(volume.name.clone(), volume);
        }
        let known: Vec<Uuid> = registry.values().map(|v: &Volume| v.id).collect();
        for backend in &self.backends {
            match backend.strays(&known) {
                Ok(strays) => strays
                    .iter()
                    .for_each(|stray| warn!(backend = %backend.kind(), "{stray}")),
                Err(e) => {
                    warn!(backend = %backend.kind(), error = %e, "could not list backend storage")
                }
            }
        }
        *self.volumes.write().expect("registry lock") = registry;
        Ok(())
    }

    /// Deletes a volume's mount, storage and record. Used for remove and for crash recovery.
    fn destroy(&self, volume: &Volume) -> Result<(), ServiceError> {
        let backend = self.backend(volume)?;
        let failed = |source| ServiceError::Backend {
            volume: volume.name.to_string(),
            source,
        };
        let mountpoint = self.layout.mountpoint(volume.id);
        backend.unmount(volume.id, &mountpoint).map_err(failed)?;
        backend.remove(volume.id).map_err(failed)?;
        match std::fs::remove_dir(&mountpoint) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ServiceError::Root {
                    path: mountpoint,
                    source,
                })
            }
        }
        if let Err(e) = self
            .history
            .delete_volume(&dvol_snapshot::VolumeKey(volume.id))
        {
            warn!(volume = %volume.name, error = %e, "could not drop the volume's history refs; gc keeps its objects");
        }
        self.store.delete(volume.id)?;
        Ok(())
    }

    fn ensure_mountpoint(&self, volume: &Volume) -> Result<PathBuf, ServiceError> {
        let path = self.layout.mountpoint(volume.id);
        match std::fs::DirBuilder::new().mode(0o755).create(&path) {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(path),
            Err(source) => Err(ServiceError::Root { path, source }),
        }
    }

    pub(crate) fn backend(&self, volume: &Volume) -> Result<&Arc<dyn Backend>, ServiceError> {
        self.backends
            .iter()
            .find(|b| b.kind() == volume.backend && b.location() == volume.location)
            .ok_or_else(|| ServiceError::Backend {
                volume: volume.name.to_string(),
                source: BackendError::Unavailable(format!(
                    "its {} backend{} is unavailable on this host; `dvol profile ls` says why",
                    volume.backend,
                    volume
                        .location
                        .as_deref()
                        .map(|l| format!(" ({l})"))
                        .unwrap_or_default()
                )),
            })
    }

    pub(crate) fn spec(volume: &Volume) -> VolumeSpec {
        VolumeSpec {
            id: volume.id,
            size: volume.size,
            filesystem: volume.filesystem,
            preallocate: false,
        }
    }

    /// Whether the volume's size is a hard limit.
    pub fn enforces_size(&self, volume: &Volume) -> bool {
        volume.size.is_some() && self.backend(volume).is_ok_and(|b| b.enforces_size())
    }

    fn profile(&self, volume: &VolumeName, name: &ProfileName) -> Result<&Profile, ServiceError> {
        self.profiles
            .iter()
            .find(|p| p.name == *name)
            .ok_or_else(|| ServiceError::UnknownProfile {
                volume: volume.to_string(),
                profile: name.to_string(),
                known: join_names(self.profiles.iter().map(|p| &p.name)),
            })
    }

    pub(crate) fn locks_get(&self, name: &VolumeName) -> NameGuard {
        self.locks.get(name)
    }

    pub(crate) fn store_aliases(&self, volume: &Volume) -> Vec<String> {
        self.store.aliases(volume.id).unwrap_or_default()
    }

    pub(crate) fn lookup(&self, reference: &VolumeRef) -> Result<Volume, ServiceError> {
        let volume = self
            .volumes
            .read()
            .expect("registry lock")
            .get(&reference.name)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(reference.name.to_string()))?;
        if let Some(requested) = reference.profile() {
            if *requested != volume.profile {
                return Err(ServiceError::ProfileMismatch {
                    volume: volume.name.to_string(),
                    actual: volume.profile.to_string(),
                    requested: requested.to_string(),
                });
            }
        }
        Ok(volume)
    }

    fn publish(&self, volume: Volume) {
        self.volumes
            .write()
            .expect("registry lock")
            .insert(volume.name.clone(), volume);
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

    /// Creates `reference` (`NAME` or `NAME@PROFILE`) with `options`. Creating a volume that
    /// exists returns it unchanged, unless the request names another profile.
    pub fn create(
        &self,
        reference: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<(Volume, Effect), ServiceError> {
        let reference = VolumeRef::parse(reference)?;
        let mut options = CreateOptions::parse(&reference.name, options)?;
        if let Suffix::Snapshot(source) = &reference.suffix {
            if options.from.as_ref().is_some_and(|from| from != source) {
                return Err(ServiceError::BadOption {
                    volume: reference.name.to_string(),
                    key: "from",
                    message: format!(
                        "the name clones {source} but the option says {}; give one",
                        options.from.as_deref().unwrap_or_default()
                    ),
                });
            }
            options.from = Some(source.clone());
        }
        let requested = match (reference.profile(), &options.profile) {
            (Some(in_name), Some(in_option)) if in_name != in_option => {
                return Err(ServiceError::BadOption {
                    volume: reference.name.to_string(),
                    key: "profile",
                    message: format!(
                        "the name asks for profile {in_name} but the option asks for {in_option}; give one"
                    ),
                })
            }
            (in_name, in_option) => in_name.or(in_option.as_ref()).cloned(),
        };
        let name = reference.name.clone();
        let lock = self.locks.get(&name);
        let _guard = lock.hold();

        let check_profile = VolumeRef {
            name: name.clone(),
            suffix: requested.clone().map_or(Suffix::None, Suffix::Profile),
        };
        match self.lookup(&check_profile) {
            Ok(existing) => return Ok((existing, Effect::Unchanged)),
            Err(ServiceError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }

        // Resolved only for a volume to make: re-creating an existing clone needs no source.
        let clone_source = options
            .from
            .as_deref()
            .map(|from| self.resolve_clone_source(&name, from))
            .transpose()?;
        // A clone of a volume is, unless told otherwise, a volume like it.
        let like = match &clone_source {
            Some(CloneSource::Volume(from)) => Some(from),
            _ => None,
        };
        let profile_name = requested
            .clone()
            .or_else(|| like.map(|from| from.profile.clone()))
            .unwrap_or_else(|| self.default_profile.clone());
        let profile = self.profile(&name, &profile_name)?;
        let like = like.filter(|from| from.profile == profile.name);
        let Some(kind) = profile.backend.filter(|_| profile.available) else {
            return Err(ServiceError::Backend {
                volume: name.to_string(),
                source: BackendError::Unavailable(format!(
                    "profile {} is unavailable on this host: {}",
                    profile.name, profile.reason
                )),
            });
        };
        if kind == BackendKind::Directory && options.filesystem.is_some() {
            return Err(ServiceError::BadOption {
                volume: name.to_string(),
                key: "fs",
                message: format!(
                    "profile {} stores volumes as directories on the host's filesystem; fs applies only to loop and lvm profiles",
                    profile.name
                ),
            });
        }
        let volume = Volume {
            id: Uuid::new_v4(),
            name: name.clone(),
            profile: profile.name.clone(),
            backend: kind,
            location: profile.location.clone(),
            size: options
                .size
                .or(like.and_then(|from| from.size))
                .or(profile.config.size),
            filesystem: match kind {
                BackendKind::Directory => None,
                _ => Some(
                    options
                        .filesystem
                        .or(like.and_then(|from| from.filesystem))
                        .or(profile.config.filesystem)
                        .unwrap_or(Filesystem::Ext4),
                ),
            },
            created_at: Utc::now(),
            state: VolumeState::Creating,
            mounts: BTreeMap::new(),
        };
        let spec = VolumeSpec {
            preallocate: profile.preallocate,
            ..Self::spec(&volume)
        };
        let backend = self.backend(&volume)?;
        backend
            .validate(&spec)
            .map_err(|source| ServiceError::Backend {
                volume: name.to_string(),
                source,
            })?;
        self.store.insert(&volume)?;
        let mut fill = clone_source.clone();
        let made = self
            .make_storage(backend.as_ref(), &spec, &volume, &mut fill)
            .and_then(|_| self.ensure_mountpoint(&volume))
            .and_then(|_| Ok(self.store.set_state(volume.id, VolumeState::Ready)?));
        if let Err(e) = made {
            if let Err(cleanup) = self.destroy(&volume) {
                warn!(volume = %name, error = %cleanup, "cleanup after failed create; will retry at next start");
            }
            return Err(e);
        }
        let volume = Volume {
            state: VolumeState::Ready,
            ..volume
        };
        if let Some(source) = &fill {
            if let Err(e) = self.fill_clone(&volume, source) {
                if let Err(cleanup) = self.destroy(&volume) {
                    warn!(volume = %name, error = %cleanup, "cleanup after failed clone; will retry at next start");
                }
                return Err(e);
            }
        }
        info!(volume = %name, id = %volume.id, profile = %volume.profile, backend = %volume.backend, "created");
        self.publish(volume.clone());
        Ok((volume, Effect::Changed))
    }

    /// Makes a new volume's storage: a copy-on-write copy of the volume it clones where its
    /// backend shares blocks (then `fill` is cleared: nothing is left to copy), else an empty
    /// volume for [`VolumeService::fill_clone`] to fill.
    fn make_storage(
        &self,
        backend: &dyn Backend,
        spec: &VolumeSpec,
        volume: &Volume,
        fill: &mut Option<CloneSource>,
    ) -> Result<(), ServiceError> {
        let failed = |source| ServiceError::Backend {
            volume: volume.name.to_string(),
            source,
        };
        if let Some(CloneSource::Volume(from)) = fill.as_ref() {
            if self.instant_clone(backend, spec, volume, from)?.is_some() {
                info!(volume = %volume.name, from = %from.name, "cloned by sharing blocks");
                *fill = None;
                return Ok(());
            }
        }
        backend.create(spec).map(drop).map_err(failed)
    }

    /// Records that the Docker Engine knows a volume by `alias` (e.g. `orders@gold`).
    pub fn remember_alias(&self, alias: &str, volume: &Volume) {
        if alias != volume.name.as_str() {
            if let Err(e) = self.store.add_alias(alias, volume.id) {
                warn!(volume = %volume.name, alias, error = %e, "could not record alias");
            }
        }
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

    /// Deletes a volume and its data. Refused while it is mounted.
    pub fn remove(&self, reference: &str) -> Result<Effect, ServiceError> {
        let reference = VolumeRef::parse(reference)?;
        let lock = self.locks.get(&reference.name);
        let _guard = lock.hold();
        let volume = self.lookup(&reference)?;
        if volume.in_use() {
            return Err(ServiceError::InUse {
                volume: volume.name.to_string(),
                mounts: volume.mounts.len(),
            });
        }
        self.store.set_state(volume.id, VolumeState::Removing)?;
        self.volumes
            .write()
            .expect("registry lock")
            .remove(&volume.name);
        if let Err(e) = self.destroy(&volume) {
            warn!(volume = %volume.name, error = %e, "remove failed; will retry at next start");
            return Err(e);
        }
        info!(volume = %volume.name, id = %volume.id, "removed");
        Ok(Effect::Changed)
    }

    /// Mounts a volume for Docker's mount id `mount_id` and returns the mountpoint. Repeated
    /// mounts with one id are counted, so each needs its own unmount.
    pub fn mount(
        &self,
        reference: &str,
        mount_id: &str,
    ) -> Result<(Volume, PathBuf), ServiceError> {
        let reference = VolumeRef::parse(reference)?;
        let lock = self.locks.get(&reference.name);
        let _guard = lock.hold();
        let mut volume = self.lookup(&reference)?;
        let mountpoint = self.ensure_mountpoint(&volume)?;
        let failed = |source| ServiceError::Backend {
            volume: volume.name.to_string(),
            source,
        };
        let effect = self
            .backend(&volume)?
            .mount(&Self::spec(&volume), &mountpoint)
            .map_err(failed)?;
        let before = volume.mounts.clone();
        *volume.mounts.entry(mount_id.to_string()).or_insert(0) += 1;
        if let Err(e) = self.store.set_mounts(volume.id, &volume.mounts) {
            if before.is_empty() && effect == Effect::Changed {
                let _ = self.backend(&volume)?.unmount(volume.id, &mountpoint);
            }
            return Err(e.into());
        }
        self.publish(volume.clone());
        Ok((volume, mountpoint))
    }

    /// Releases one mount by `mount_id`; the last release unmounts. An id that is not
    /// mounted is tolerated (the engine repeats unmounts after a restart).
    pub fn unmount(&self, reference: &str, mount_id: &str) -> Result<Effect, ServiceError> {
        let reference = VolumeRef::parse(reference)?;
        let lock = self.locks.get(&reference.name);
        let _guard = lock.hold();
        let mut volume = self.lookup(&reference)?;
        let Some(count) = volume.mounts.get_mut(mount_id) else {
            warn!(volume = %volume.name, mount_id, "unmount for an id that is not mounted; ignored");
            return Ok(Effect::Unchanged);
        };
        *count -= 1;
        if *count == 0 {
            volume.mounts.remove(mount_id);
        }
        if volume.mounts.is_empty() {
            let mountpoint = self.layout.mountpoint(volume.id);
            self.backend(&volume)?
                .unmount(volume.id, &mountpoint)
                .map_err(|source| ServiceError::Backend {
                    volume: volume.name.to_string(),
                    source,
                })?;
        }
        self.store.set_mounts(volume.id, &volume.mounts)?;
        self.publish(volume);
        Ok(Effect::Changed)
    }

    /// Grows a volume to `size` (e.g. `20G`), online if it is mounted. Shrinking is refused.
    pub fn resize(&self, reference: &str, size: &str) -> Result<Volume, ServiceError> {
        let reference = VolumeRef::parse(reference)?;
        let new_size: ByteSize =
            size.parse().map_err(
                |e: dvol_backends::size::SizeError| ServiceError::BadOption {
                    volume: reference.name.to_string(),
                    key: "size",
                    message: e.to_string(),
                },
            )?;
        let lock = self.locks.get(&reference.name);
        let _guard = lock.hold();
        let mut volume = self.lookup(&reference)?;
        let mountpoint = self.layout.mountpoint(volume.id);
        let effect = self
            .backend(&volume)?
            .resize(&Self::spec(&volume), new_size, &mountpoint)
            .map_err(|source| ServiceError::Backend {
                volume: volume.name.to_string(),
                source,
            })?;
        if effect == Effect::Changed {
            self.store.set_size(volume.id, new_size)?;
            volume.size = Some(new_size);
            info!(volume = %volume.name, size = %new_size, "resized");
            self.publish(volume.clone());
        }
        Ok(volume)
    }

    /// What this host offers: identity, backends and capacity per profile.
    pub fn node_info(&self) -> NodeInfo {
        let mut backends: Vec<_> = self.backends.iter().map(|b| b.kind()).collect();
        backends.sort();
        backends.dedup();
        NodeInfo {
            id: self.host_id,
            hostname: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            version: env!("CARGO_PKG_VERSION"),
            backends,
            profiles: self
                .profiles
                .iter()
                .map(|p| ProfileCapacity {
                    profile: p.name.clone(),
                    backend: p.backend,
                    available: p.available,
                    capacity: self
                        .backends
                        .iter()
                        .find(|b| Some(b.kind()) == p.backend && b.location() == p.location)
                        .and_then(|b| b.capacity().ok()),
                })
                .collect(),
            volumes: self.volumes.read().expect("registry lock").len(),
        }
    }
}
