//! Profiles as they resolve on this host: which backend really serves each one, and why.

use dvol_backends::BackendKind;
use serde::Serialize;

use crate::config::{Config, ProfileConfig};
use crate::names::ProfileName;

/// A configured profile resolved against the backends this host can run.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// The profile's name.
    pub name: ProfileName,
    /// What the configuration asks for.
    pub config: ProfileConfig,
    /// The backend that really serves it.
    pub backend: BackendKind,
    /// Why that backend, in a sentence.
    pub reason: String,
    /// Whether volumes without a profile get this one.
    pub default: bool,
}

impl Serialize for ProfileName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Resolves every configured profile against the backends available on this host.
pub fn resolve(config: &Config, available: &[BackendKind]) -> Vec<Profile> {
    config
        .profiles
        .iter()
        .map(|(name, profile)| {
            let (backend, reason) = if available.contains(&profile.backend) {
                (profile.backend, format!("configured backend {}", profile.backend))
            } else {
                (
                    BackendKind::Directory,
                    format!(
                        "configured backend {} is not available in this build of dvol; volumes are directories without a size limit",
                        profile.backend
                    ),
                )
            };
            Profile {
                name: name.clone(),
                config: profile.clone(),
                backend,
                reason,
                default: *name == config.default_profile,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_fall_back_to_directories_and_say_why() {
        let profiles = resolve(&Config::builtin(), &[BackendKind::Directory]);
        assert_eq!(profiles.len(), 3);
        for p in &profiles {
            assert_eq!(p.backend, BackendKind::Directory);
        }
        let gold = profiles.iter().find(|p| p.name.as_str() == "gold").unwrap();
        assert!(
            gold.reason.contains("lvm is not available"),
            "{}",
            gold.reason
        );
        let bronze = profiles
            .iter()
            .find(|p| p.name.as_str() == "bronze")
            .unwrap();
        assert!(bronze.default);
        assert_eq!(bronze.reason, "configured backend directory");
    }
}
