//! Profiles as they resolve on this host: which backend really serves each one, and why.
//!
//! The backends are probed once at start ([`HostBackends`]); a profile whose backend cannot
//! run here is reported as unavailable with the reason, at start and by `dvol profile ls`,
//! rather than discovered at the first `docker run`. Only the built-in configuration falls
//! back: built-in gold becomes a fully allocated loop image when its volume group is missing.

use std::collections::BTreeMap;
use std::sync::Arc;

use dvol_backends::{Backend, BackendKind};

use crate::config::{Config, ProfileConfig};
use crate::names::ProfileName;

/// The backends this host can run, probed once at start. A failed probe keeps its reason.
pub struct HostBackends {
    /// Always available.
    pub directory: Arc<dyn Backend>,
    /// The loop backend, or why it cannot run.
    pub loop_device: Result<Arc<dyn Backend>, String>,
    /// LVM thin pools by (volume group, thin pool), or why each cannot be used.
    pub lvm: BTreeMap<(String, String), Result<Arc<dyn Backend>, String>>,
}

impl HostBackends {
    /// Only the directory backend; loop and LVM report `reason`.
    pub fn directory_only(directory: Arc<dyn Backend>, reason: &str) -> Self {
        HostBackends {
            directory,
            loop_device: Err(reason.to_string()),
            lvm: BTreeMap::new(),
        }
    }

    /// Every backend that probed fine.
    pub fn ready(&self) -> Vec<Arc<dyn Backend>> {
        std::iter::once(Ok(&self.directory))
            .chain(std::iter::once(self.loop_device.as_ref()))
            .chain(self.lvm.values().map(Result::as_ref))
            .filter_map(Result::ok)
            .cloned()
            .collect()
    }
}

/// A configured profile resolved against the backends available on this host.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The profile's name.
    pub name: ProfileName,
    /// What the configuration asks for.
    pub config: ProfileConfig,
    /// Whether volumes of this profile can be created here.
    pub available: bool,
    /// The backend that really serves it (absent when unavailable).
    pub backend: Option<BackendKind>,
    /// Where in that backend (`VG/POOL` for LVM).
    pub location: Option<String>,
    /// Whether images are fully allocated at create time.
    pub preallocate: bool,
    /// Why this backend, or why none, in a sentence.
    pub reason: String,
    /// Whether volumes without a profile get this one.
    pub default: bool,
}

struct Resolution {
    backend: Option<BackendKind>,
    location: Option<String>,
    preallocate: bool,
    reason: String,
}

fn served_by(
    kind: BackendKind,
    location: Option<String>,
    preallocate: bool,
    reason: String,
) -> Resolution {
    Resolution {
        backend: Some(kind),
        location,
        preallocate,
        reason,
    }
}

fn unavailable(reason: String) -> Resolution {
    Resolution {
        backend: None,
        location: None,
        preallocate: false,
        reason,
    }
}

fn resolve_one(profile: &ProfileConfig, host: &HostBackends, builtin: bool) -> Resolution {
    match profile.backend {
        BackendKind::Directory => served_by(
            BackendKind::Directory,
            None,
            false,
            "directory on the host's filesystem".into(),
        ),
        BackendKind::Loop => match &host.loop_device {
            Ok(_) => served_by(
                BackendKind::Loop,
                None,
                false,
                "sparse image file on a loop device".into(),
            ),
            Err(why) => unavailable(format!("loop backend unavailable: {why}")),
        },
        BackendKind::Lvm => {
            let vg = profile.volume_group.clone().unwrap_or_default();
            let pool = profile.thin_pool.clone().unwrap_or_default();
            match host.lvm.get(&(vg.clone(), pool.clone())) {
                Some(Ok(_)) => served_by(
                    BackendKind::Lvm,
                    Some(format!("{vg}/{pool}")),
                    false,
                    format!("thin volumes in pool {vg}/{pool}"),
                ),
                found => {
                    let why = match found {
                        Some(Err(why)) => why.clone(),
                        _ => format!("thin pool {vg}/{pool} was not probed"),
                    };
                    match (&host.loop_device, builtin) {
                        (Ok(_), true) => served_by(
                            BackendKind::Loop,
                            None,
                            true,
                            format!(
                                "{why}; using a fully allocated image on a loop device instead"
                            ),
                        ),
                        _ => unavailable(why),
                    }
                }
            }
        }
    }
}

/// Resolves every configured profile against the backends available on this host.
pub fn resolve(config: &Config, host: &HostBackends) -> Vec<Profile> {
    config
        .profiles
        .iter()
        .map(|(name, profile)| {
            let resolution = resolve_one(profile, host, config.builtin);
            Profile {
                name: name.clone(),
                config: profile.clone(),
                available: resolution.backend.is_some(),
                backend: resolution.backend,
                location: resolution.location,
                preallocate: resolution.preallocate,
                reason: resolution.reason,
                default: *name == config.default_profile,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvol_backends::directory::DirectoryBackend;

    fn host(loop_ok: bool) -> (HostBackends, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let directory: Arc<dyn Backend> = Arc::new(DirectoryBackend::open(tmp.path()).unwrap());
        let mut host = HostBackends::directory_only(directory.clone(), "no /dev/loop-control");
        if loop_ok {
            // Any ready backend stands in for the loop backend: resolution only asks whether one is there.
            host.loop_device = Ok(directory);
        }
        host.lvm.insert(
            ("dvol".into(), "gold".into()),
            Err("volume group dvol not found".into()),
        );
        (host, tmp)
    }

    fn find<'a>(profiles: &'a [Profile], name: &str) -> &'a Profile {
        profiles.iter().find(|p| p.name.as_str() == name).unwrap()
    }

    #[test]
    fn builtin_gold_falls_back_to_a_fully_allocated_loop_image() {
        let (host, _tmp) = host(true);
        let profiles = resolve(&Config::builtin(), &host);
        let gold = find(&profiles, "gold");
        assert_eq!(gold.backend, Some(BackendKind::Loop));
        assert!(gold.preallocate);
        assert!(
            gold.reason.contains("volume group dvol not found"),
            "{}",
            gold.reason
        );
        let silver = find(&profiles, "silver");
        assert_eq!(
            (silver.backend, silver.preallocate),
            (Some(BackendKind::Loop), false)
        );
        let bronze = find(&profiles, "bronze");
        assert_eq!(bronze.backend, Some(BackendKind::Directory));
        assert!(bronze.default);
    }

    #[test]
    fn without_loop_devices_block_profiles_are_unavailable_with_the_reason() {
        let (host, _tmp) = host(false);
        let profiles = resolve(&Config::builtin(), &host);
        let silver = find(&profiles, "silver");
        assert!(!silver.available);
        assert!(
            silver.reason.contains("no /dev/loop-control"),
            "{}",
            silver.reason
        );
        assert!(!find(&profiles, "gold").available);
    }

    #[test]
    fn a_configured_lvm_profile_does_not_fall_back() {
        let (host, _tmp) = host(true);
        let config = Config::parse(
            "[profiles.gold]\nbackend = \"lvm\"\nvolume_group = \"dvol\"\nthin_pool = \"gold\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
        let gold = &resolve(&config, &host)[0];
        assert!(!gold.available);
        assert_eq!(gold.reason, "volume group dvol not found");
    }
}
