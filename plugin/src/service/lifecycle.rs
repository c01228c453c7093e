//! A volume's life: opening the state and recovering from a crash, create, mount, unmount,
//! resize and remove.

use std::collections::BTreeMap;
use std::fs::Permissions;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use chrono::Utc;
use dvol_backends::mount_table::MountTable;
use dvol_backends::{Backend, BackendError, BackendKind, ByteSize, Effect, Filesystem, VolumeSpec};
use tracing::{info, warn};
use uuid::Uuid;

use super::clone::CloneSource;
use super::locks::NameLocks;
use super::options::CreateOptions;
use super::stale::Asked;
use super::VolumeService;
use crate::config::Config;
use crate::containers::{Containers, DockerEngine};
use crate::error::{ForVolume, ServiceError};
use crate::metadata::Metadata;
use crate::metrics::Metrics;
use crate::names::{ProfileName, Suffix, VolumeName, VolumeRef};
use crate::profile::{resolve, HostBackends, Profile};
use crate::volume::{Layout, Volume, VolumeState};

/// Makes the state root and opens the metadata database and the history repository in it.
///
/// The root and the history store are 0700 and the database 0600, set on every open, so a
/// root made by an older dvol (0711, world-readable objects and database) is closed too. The
/// Docker Engine runs as root and still reaches the mountpoints under `<root>/mounts`.
fn open_state(layout: &Layout) -> Result<(Metadata, dvol_snapshot::Repository), ServiceError> {
    for (dir, mode) in [
        (layout.root().to_path_buf(), 0o700),
        (layout.mounts_dir(), 0o711),
    ] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, Permissions::from_mode(mode)))
            .map_err(|source| ServiceError::Root { path: dir, source })?;
    }
    let metadata = Metadata::open(&layout.database())?;
    let history_dir = layout.history_dir();
    let history =
        dvol_snapshot::Repository::open(&history_dir).map_err(ServiceError::Repository)?;
    std::fs::set_permissions(&history_dir, Permissions::from_mode(0o700)).map_err(|source| {
        ServiceError::Root {
            path: history_dir,
            source,
        }
    })?;
    Ok((metadata, history))
}

/// Logs what each profile resolved to.
fn report_profiles(profiles: &[Profile]) {
    for profile in profiles {
        if profile.available {
            info!(profile = %profile.name, reason = %profile.reason, "profile ready");
        } else {
            warn!(profile = %profile.name, reason = %profile.reason, "profile unavailable on this host");
        }
    }
}

impl VolumeService {
    /// Opens the state under `layout`, resolves the profiles against `host`'s backends, and
    /// finishes or rolls back whatever a previous run left half-done. Containers are found
    /// through the Docker Engine under the driver name `dvol` until
    /// [`VolumeService::set_containers`] says otherwise.
    pub fn open(layout: Layout, config: &Config, host: HostBackends) -> Result<Self, ServiceError> {
        let (metadata, history) = open_state(&layout)?;
        let host_id = metadata.host_id()?;
        let profiles = resolve(config, &host);
        report_profiles(&profiles);
        let service = VolumeService {
            profiles,
            default_profile: config.default_profile.clone(),
            layout,
            backends: host.ready(),
            metadata,
            host_id,
            volumes: RwLock::new(BTreeMap::new()),
            locks: NameLocks::default(),
            history,
            containers: Containers::new("dvol", Arc::new(DockerEngine::default())),
            sessions: super::transfer::Sessions::default(),
            cluster: std::sync::OnceLock::new(),
            // Its families are fixed names and labels, checked by its tests.
            metrics: Arc::new(Metrics::new().expect("the metric families are valid")),
        };
        service.recover()?;
        service.finish_interrupted_operations();
        service.report_problems();
        Ok(service)
    }

    /// Rebuilds the in-memory registry from the metadata database and the kernel's mount
    /// table, finishing interrupted creates and removes.
    pub(super) fn recover(&self) -> Result<(), ServiceError> {
        let table = MountTable::read().map_err(ServiceError::Host)?;
        let mut registry = BTreeMap::new();
        let volumes = self.metadata.load()?;
        self.release_stale_read_points(&volumes);
        for mut volume in volumes {
            let mountpoint = self.layout.mountpoint(volume.id);
            let mounted = table.is_mounted(&mountpoint);
            match volume.state {
                VolumeState::Creating | VolumeState::Removing => {
                    info!(volume = %volume.name, state = volume.state.as_str(), "finishing interrupted operation: removing the volume");
                    if let Err(e) = self.destroy(&volume) {
                        warn!(volume = %volume.name, error = %e, "could not clean up; listed as removing until `dvol volume rm` or the next start finishes");
                        if volume.state == VolumeState::Creating {
                            if let Err(e) =
                                self.metadata.set_state(volume.id, VolumeState::Removing)
                            {
                                warn!(volume = %volume.name, error = %e, "could not record it as removing; the next start rolls its create back again");
                            }
                        }
                        volume.state = VolumeState::Removing;
                        volume.problem = Some(e.reason());
                        registry.insert(volume.name.clone(), volume);
                    }
                    continue;
                }
                VolumeState::Ready => {}
            }
            if !mounted && volume.in_use() {
                info!(volume = %volume.name, "kernel reports it unmounted: dropping stale mount ids");
                match self.metadata.set_mounts(volume.id, &BTreeMap::new()) {
                    Ok(()) => volume.mounts.clear(),
                    // Kept in memory as in the database; dropped at a later start.
                    Err(e) => {
                        warn!(volume = %volume.name, error = %e, "could not drop stale mount ids")
                    }
                }
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
        let mountpoint = self.layout.mountpoint(volume.id);
        backend
            .unmount(volume.id, &mountpoint)
            .for_volume(&volume.name)?;
        backend.remove(volume.id).for_volume(&volume.name)?;
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
        self.metadata.delete(volume.id)?;
        Ok(())
    }

    /// Makes sure the volume's mountpoint directory exists.
    fn ensure_mountpoint(&self, volume: &Volume) -> Result<PathBuf, ServiceError> {
        let path = self.layout.mountpoint(volume.id);
        match std::fs::DirBuilder::new().mode(0o755).create(&path) {
            Ok(()) => Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(path),
            Err(source) => Err(ServiceError::Root { path, source }),
        }
    }

    /// The configured profile `name`, for creating `volume`.
    pub(super) fn profile(
        &self,
        volume: &VolumeName,
        name: &ProfileName,
    ) -> Result<&Profile, ServiceError> {
        self.profiles
            .iter()
            .find(|p| p.name == *name)
            .ok_or_else(|| ServiceError::UnknownProfile {
                volume: volume.clone(),
                profile: name.clone(),
                known: self.profiles.iter().map(|p| p.name.clone()).collect(),
            })
    }

    /// Creates `reference` (`NAME`, `NAME@PROFILE` or `NAME@snapshot-REF`) with `options`.
    /// Creating a volume that exists returns it unchanged, unless the request names another
    /// profile.
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
                    volume: reference.name.clone(),
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
                    volume: reference.name.clone(),
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
            Err(ServiceError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }

        // Resolved only for a volume to make: re-creating an existing clone needs no source.
        let clone_source = options
            .from
            .as_deref()
            .map(|from| self.resolve_clone_source(&name, from))
            .transpose()?;
        // A clone of a volume, or of a commit of one, is, unless told otherwise, a volume like it.
        let like = clone_source.as_ref().and_then(CloneSource::like);
        let profile_name = requested
            .clone()
            .or_else(|| like.map(|from| from.profile.clone()))
            .unwrap_or_else(|| self.default_profile.clone());
        let profile = self.profile(&name, &profile_name)?;
        let like = like.filter(|from| from.profile == profile.name);
        let Some(kind) = profile.backend.filter(|_| profile.available) else {
            return Err(BackendError::Unavailable(format!(
                "profile {} is unavailable on this host: {}",
                profile.name, profile.reason
            )))
            .for_volume(&name);
        };
        if kind == BackendKind::Directory && options.filesystem.is_some() {
            return Err(ServiceError::BadOption {
                volume: name,
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
            problem: None,
        };
        let spec = VolumeSpec {
            preallocate: profile.preallocate,
            max_overprovision: profile.config.max_overprovision,
            ..Self::spec(&volume)
        };
        let backend = self.backend(&volume)?;
        backend.validate(&spec).for_volume(&name)?;
        self.metadata.insert(&volume)?;
        // Claimed after the record (a crash in between leaves a `creating` record that the
        // next start rolls back, and a claim that reconciling drops) and before the storage.
        if let Err(e) = self.claim_in_cluster(&volume) {
            self.destroy_after_failure(&volume, "create");
            return Err(e);
        }
        let mut fill = clone_source.clone();
        let made = self
            .make_storage(backend.as_ref(), &spec, &volume, &mut fill)
            .and_then(|_| self.ensure_mountpoint(&volume))
            .and_then(|_| Ok(self.metadata.set_state(volume.id, VolumeState::Ready)?));
        if let Err(e) = made {
            self.destroy_after_failure(&volume, "create");
            if let Err(release) = self.release_in_cluster(&volume) {
                warn!(volume = %name, error = %release, "could not release the name in the cluster after a failed create; reconciling drops it");
            }
            return Err(e);
        }
        let volume = Volume {
            state: VolumeState::Ready,
            ..volume
        };
        if let Some(source) = &fill {
            if let Err(e) = self.fill_clone(&volume, source) {
                self.destroy_after_failure(&volume, "clone");
                return Err(e);
            }
        }
        info!(volume = %name, id = %volume.id, profile = %volume.profile, backend = %volume.backend, "created");
        self.publish(volume.clone());
        Ok((volume, Effect::Changed))
    }

    /// Removes what a failed create made; what cannot be removed now is removed at next start.
    pub(super) fn destroy_after_failure(&self, volume: &Volume, what: &str) {
        if let Err(cleanup) = self.destroy(volume) {
            warn!(volume = %volume.name, error = %cleanup, "cleanup after failed {what}; will retry at next start");
        }
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
        if let Some(CloneSource::Volume(from)) = fill.as_ref() {
            if self.instant_clone(backend, spec, volume, from)?.is_some() {
                info!(volume = %volume.name, from = %from.name, "cloned by sharing blocks");
                *fill = None;
                return Ok(());
            }
        }
        backend.create(spec).map(drop).for_volume(&volume.name)
    }

    /// Records that the Docker Engine knows a volume by `alias` (e.g. `orders@gold`).
    pub fn remember_alias(&self, alias: &str, volume: &Volume) {
        if alias != volume.name.as_str() {
            if let Err(e) = self.metadata.add_alias(alias, volume.id) {
                warn!(volume = %volume.name, alias, error = %e, "could not record alias");
            }
        }
    }

    /// Deletes a volume and its data. Refused while it is mounted, unless no container uses it
    /// any more (see [`VolumeService::drop_stale_mounts`]). A remove that fails halfway leaves
    /// the volume listed as `removing`, with the reason; removing it again retries.
    ///
    /// When the metadata database cannot record `removing` because its filesystem is full,
    /// the storage is freed first and the record deleted after, so a full state root can be
    /// emptied.
    pub fn remove(&self, reference: &str) -> Result<Effect, ServiceError> {
        let reference = VolumeRef::parse(reference)?;
        let lock = self.locks.get(&reference.name);
        let _guard = lock.hold();
        let mut volume = self.find(&reference)?;
        if volume.state != VolumeState::Removing {
            let mut containers = Vec::new();
            if volume.in_use() {
                let asked;
                (volume, asked) = self.drop_stale_mounts(volume);
                if let Asked::Answered(users) = asked {
                    containers = users;
                }
            }
            if volume.in_use() {
                return Err(ServiceError::InUse {
                    volume: volume.name,
                    mounts: volume.mounts.len(),
                    containers,
                });
            }
            self.release_in_cluster(&volume)?;
            match self.metadata.set_state(volume.id, VolumeState::Removing) {
                Ok(()) => {}
                Err(e) if e.is_storage_full() => {
                    warn!(volume = %volume.name, error = %e, "cannot record the remove: the state root is full; freeing the storage first");
                }
                Err(e) => return Err(e.into()),
            }
            volume.state = VolumeState::Removing;
        }
        volume.problem = None;
        self.publish(volume.clone());
        if let Err(e) = self.destroy(&volume) {
            let e = ServiceError::RemoveFailed {
                volume: volume.name.clone(),
                source: Box::new(e),
            };
            warn!(volume = %volume.name, error = %e, "remove failed; listed as removing until a retry or the next start finishes");
            volume.problem = Some(e.reason());
            self.publish(volume);
            return Err(e);
        }
        self.volumes
            .write()
            .expect("registry lock")
            .remove(&volume.name);
        info!(volume = %volume.name, id = %volume.id, "removed");
        self.metadata.keep_reserve();
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
        let mut volume = match self.lookup(&reference) {
            Err(ServiceError::NotFound { volume }) => {
                return Err(self
                    .refuse_elsewhere(volume.as_str())
                    .unwrap_or(ServiceError::NotFound { volume }))
            }
            found => found?,
        };
        // In cluster mode the registry says who owns it (a volume moved away and back is
        // this node's again); without one, the local record of a move is the last word.
        let held: u32 = volume.mounts.values().sum();
        if self.cluster().is_some() {
            self.prove_mount_in_cluster(&volume, held + 1)?;
            self.owned_again(&volume);
        } else {
            self.refuse_moved(&volume)?;
        }
        let mounted = self.mount_proven(&mut volume, mount_id);
        if mounted.is_err() {
            // The mount record written when proving ownership counts one mount too many.
            self.unmounted_in_cluster(&volume);
            if held == 0 {
                self.log_released(&volume);
            }
        }
        mounted.map(|mountpoint| (volume, mountpoint))
    }

    /// [`VolumeService::mount`] once the volume may be mounted here.
    fn mount_proven(&self, volume: &mut Volume, mount_id: &str) -> Result<PathBuf, ServiceError> {
        let mountpoint = self.ensure_mountpoint(volume)?;
        let backend = self.backend(volume)?;
        let effect = backend
            .mount(&Self::spec(volume), &mountpoint)
            .for_volume(&volume.name)?;
        *volume.mounts.entry(mount_id.to_string()).or_insert(0) += 1;
        if let Err(e) = self.metadata.set_mounts(volume.id, &volume.mounts) {
            // Not recorded: undo the kernel mount this call made, so kernel, database and
            // memory (untouched) agree again.
            if effect == Effect::Changed {
                if let Err(undo) = backend.unmount(volume.id, &mountpoint) {
                    warn!(volume = %volume.name, error = %undo, "could not undo the mount of a failed Mount; the next start unmounts it");
                }
            }
            return Err(e.into());
        }
        self.publish(volume.clone());
        Ok(mountpoint)
    }

    /// Releases one mount by `mount_id`; the last release unmounts. An id that is not
    /// mounted is tolerated (the engine repeats unmounts after a restart).
    pub fn unmount(&self, reference: &str, mount_id: &str) -> Result<Effect, ServiceError> {
        let reference = VolumeRef::parse(reference)?;
        let lock = self.locks.get(&reference.name);
        let _guard = lock.hold();
        let mut volume = self.find(&reference)?;
        let before = volume.mounts.clone();
        let Some(count) = volume.mounts.get_mut(mount_id) else {
            warn!(volume = %volume.name, mount_id, "unmount for an id that is not mounted; ignored");
            return Ok(Effect::Unchanged);
        };
        *count -= 1;
        if *count == 0 {
            volume.mounts.remove(mount_id);
        }
        // The record first: a kernel unmount cannot be undone, a record can. If it fails,
        // nothing changed (the id stays until the engine says no container uses the volume).
        self.metadata.set_mounts(volume.id, &volume.mounts)?;
        if volume.mounts.is_empty() {
            let mountpoint = self.layout.mountpoint(volume.id);
            let unmounted = self
                .backend(&volume)
                .and_then(|b| b.unmount(volume.id, &mountpoint).for_volume(&volume.name));
            if let Err(e) = unmounted {
                // Still mounted: record the id again so memory, database and kernel agree.
                match self.metadata.set_mounts(volume.id, &before) {
                    Ok(()) => volume.mounts = before,
                    Err(undo) => {
                        warn!(volume = %volume.name, error = %undo, "could not record the mount id again after a failed unmount; the next start unmounts the volume")
                    }
                }
                self.publish(volume);
                return Err(e);
            }
            self.log_released(&volume);
        }
        self.unmounted_in_cluster(&volume);
        self.publish(volume);
        Ok(Effect::Changed)
    }

    /// Grows a volume to `size` (e.g. `20G`), online if it is mounted. Shrinking is refused.
    pub fn resize(&self, reference: &str, size: &str) -> Result<Volume, ServiceError> {
        let reference = VolumeRef::parse(reference)?;
        let new_size: ByteSize =
            size.parse().map_err(
                |e: dvol_backends::size::SizeError| ServiceError::BadOption {
                    volume: reference.name.clone(),
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
            .resize(&self.spec_to_grow(&volume), new_size, &mountpoint)
            .for_volume(&volume.name)?;
        if effect == Effect::Changed {
            self.metadata.set_size(volume.id, new_size)?;
            volume.size = Some(new_size);
            info!(volume = %volume.name, size = %new_size, "resized");
            self.publish(volume.clone());
        }
        Ok(volume)
    }
}
