//! Options for a new volume, as `docker volume create -o` and the REST API give them.

use std::collections::BTreeMap;

use dvol_backends::{ByteSize, Filesystem};

use crate::error::ServiceError;
use crate::names::{ProfileName, VolumeName};

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
    /// Clone source: 6+ hex digits of a volume UUID or commit id.
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
            volume: volume.clone(),
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
                        volume: volume.clone(),
                        key: key.chars().take(64).collect(),
                        known: KNOWN_OPTIONS,
                    })
                }
            }
        }
        Ok(parsed)
    }
}
