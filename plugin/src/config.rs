//! Daemon configuration: profiles and the default profile, from TOML.
//!
//! A profile is a named service level: a backend and its settings. With no configuration file
//! the built-in gold, silver and bronze profiles apply. Every error names the file, the line
//! and the key at fault.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dvol_backends::loop_device::{Reserve, DEFAULT_FREEZE_LIMIT};
use dvol_backends::{BackendKind, ByteSize, Filesystem};
use serde::Deserialize;
use toml::Spanned;

use crate::names::ProfileName;

/// The built-in configuration, used when no configuration file exists.
pub const BUILTIN_CONFIG: &str = r#"
default_profile = "bronze"

[profiles.gold]
backend = "lvm"
volume_group = "dvol"
thin_pool = "gold"
size = "10G"
filesystem = "xfs"

[profiles.silver]
backend = "loop"
size = "5G"
filesystem = "ext4"

[profiles.bronze]
backend = "directory"
"#;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or breaks the schema.
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the offending key.
        line: usize,
        /// The key or text at fault.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    default_profile: Option<Spanned<String>>,
    /// At least this much of the state root's filesystem is kept from volume promises.
    reserve: Option<Spanned<ByteSize>>,
    /// ... or this share of it, in percent, if that is larger.
    reserve_percent: Option<Spanned<f64>>,
    /// The longest a commit may keep a volume frozen, in seconds.
    freeze_limit_seconds: Option<Spanned<u64>>,
    /// How long a TCP client has to send a request's header, in seconds.
    tcp_header_timeout_seconds: Option<Spanned<u64>>,
    /// How many TCP connections are served at once.
    tcp_max_connections: Option<Spanned<u64>>,
    #[serde(default)]
    profiles: BTreeMap<Spanned<String>, Spanned<ProfileConfig>>,
}

/// One profile as written in the configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// `directory`, `loop` or `lvm`.
    pub backend: BackendKind,
    /// The LVM volume group (lvm only).
    pub volume_group: Option<String>,
    /// The LVM thin pool in that group (lvm only).
    pub thin_pool: Option<String>,
    /// The default size of new volumes.
    pub size: Option<ByteSize>,
    /// The filesystem of new volumes (block backends).
    pub filesystem: Option<Filesystem>,
    /// How far what volumes are promised may exceed the room for them: the virtual sizes of
    /// a thin pool's volumes against the pool (lvm), what sparse images have not written yet
    /// against the free space less the reserve (loop). Default 1.0: no overcommit.
    pub max_overprovision: Option<f64>,
    /// In cluster mode: whether a volume of this profile follows its container, moving to
    /// the node whose Docker Engine mounts it when no container uses it on its owner.
    /// Default true; false makes such a mount fail, naming the owner.
    pub follow: Option<bool>,
}

/// The limits of the REST API's TCP listener (`--listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// How long a client has to send a complete request header, counted from when the
    /// daemon starts waiting for one: on a new connection, and after each answer on a
    /// kept-alive one (so an idle kept-alive connection is closed after this long too).
    /// Config key `tcp_header_timeout_seconds`.
    pub header_timeout: Duration,
    /// How many connections are served at once; further ones wait in the kernel's listen
    /// backlog until one closes. Config key `tcp_max_connections`.
    pub max_connections: usize,
}

impl TcpLimits {
    /// 10 s to send a header, 256 connections at once.
    pub const DEFAULT: TcpLimits = TcpLimits {
        header_timeout: Duration::from_secs(10),
        max_connections: 256,
    };
    /// The longest header time-out accepted, in seconds.
    const MAX_HEADER_TIMEOUT_SECONDS: u64 = 3600;
    /// The most connections accepted as a limit.
    const MAX_CONNECTIONS: u64 = 65_536;
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The profile for volumes created without one.
    pub default_profile: ProfileName,
    /// Profiles by name.
    pub profiles: BTreeMap<ProfileName, ProfileConfig>,
    /// Where the configuration came from, for reports.
    pub source: String,
    /// Whether this is the built-in configuration (which may fall back, see [`crate::profile`]).
    pub builtin: bool,
    /// Room on the state root's filesystem kept from what loop volumes are promised, for the
    /// metadata database and the history store.
    pub reserve: Reserve,
    /// The longest a commit may keep a volume frozen; then the freeze is lifted and the
    /// commit fails.
    pub freeze_limit: Duration,
    /// The limits of the TCP listener.
    pub tcp: TcpLimits,
}

impl Config {
    /// The built-in profiles.
    pub fn builtin() -> Self {
        let mut config =
            Self::parse(BUILTIN_CONFIG, Path::new("<built-in>")).expect("built-in config is valid");
        config.builtin = true;
        config
    }

    /// Loads `path`. When `required` is false and the file does not exist, the built-in
    /// configuration applies.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::builtin()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses and validates configuration text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |span: std::ops::Range<usize>, message: String| {
            let start = span.start.min(text.len());
            let end = span.end.clamp(start, text.len());
            // A value's error names the key it is assigned to (`size = "-1"` -> size); an
            // unknown key's error spans the key itself.
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let key = match text[line_start..start].split_once('=') {
                Some((key, _)) if !key.trim().is_empty() => key.trim(),
                _ => text[start..end].lines().next().unwrap_or("").trim(),
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line: text[..start].matches('\n').count() + 1,
                key: if key.is_empty() {
                    "(top level)".into()
                } else {
                    key.to_string()
                },
                message,
            }
        };
        let file: ConfigFile = toml::from_str(text)
            .map_err(|e| invalid(e.span().unwrap_or(0..0), e.message().to_string()))?;

        let mut profiles = BTreeMap::new();
        for (name, profile) in file.profiles {
            let span = name.span();
            let profile_name = ProfileName::parse(name.get_ref())
                .map_err(|e| invalid(span.clone(), e.to_string()))?;
            if profile_name.as_str().starts_with("snapshot-") {
                return Err(invalid(
                    span,
                    "profile names may not start with \"snapshot-\": that suffix clones volumes"
                        .into(),
                ));
            }
            let table_span = profile.span();
            let profile = profile.into_inner();
            validate_profile(&profile).map_err(|message| invalid(table_span, message))?;
            profiles.insert(profile_name, profile);
        }
        if profiles.is_empty() {
            return Err(invalid(
                0..0,
                "no profiles defined: add at least one [profiles.NAME] table".into(),
            ));
        }

        let default_profile = match file.default_profile {
            Some(name) => {
                let span = name.span();
                let parsed = ProfileName::parse(name.get_ref())
                    .map_err(|e| invalid(span.clone(), e.to_string()))?;
                if !profiles.contains_key(&parsed) {
                    return Err(invalid(
                        span,
                        format!(
                            "default_profile {:?} is not defined; defined profiles: {}",
                            parsed.as_str(),
                            join_names(profiles.keys())
                        ),
                    ));
                }
                parsed
            }
            None if profiles.len() == 1 => profiles.keys().next().cloned().expect("one profile"),
            None => {
                return Err(invalid(
                    0..0,
                    format!(
                        "default_profile is missing; set it to one of {}",
                        join_names(profiles.keys())
                    ),
                ))
            }
        };

        let mut reserve = Reserve::DEFAULT;
        if let Some(bytes) = file.reserve {
            reserve.min_bytes = bytes.into_inner().bytes();
        }
        if let Some(percent) = file.reserve_percent {
            let span = percent.span();
            let percent = percent.into_inner();
            if !(percent.is_finite() && (0.0..=50.0).contains(&percent)) {
                return Err(invalid(
                    span,
                    format!("reserve_percent {percent} is out of range: use a number from 0 to 50"),
                ));
            }
            reserve.percent = percent;
        }
        let freeze_limit = match file.freeze_limit_seconds {
            Some(seconds) => {
                let span = seconds.span();
                match seconds.into_inner() {
                    0 => {
                        return Err(invalid(
                            span,
                            "freeze_limit_seconds must be at least 1".into(),
                        ))
                    }
                    seconds => Duration::from_secs(seconds),
                }
            }
            None => DEFAULT_FREEZE_LIMIT,
        };

        let mut tcp = TcpLimits::DEFAULT;
        if let Some(seconds) = file.tcp_header_timeout_seconds {
            let span = seconds.span();
            let seconds = seconds.into_inner();
            if !(1..=TcpLimits::MAX_HEADER_TIMEOUT_SECONDS).contains(&seconds) {
                return Err(invalid(
                    span,
                    format!(
                        "tcp_header_timeout_seconds {seconds} is out of range: use 1 to {}",
                        TcpLimits::MAX_HEADER_TIMEOUT_SECONDS
                    ),
                ));
            }
            tcp.header_timeout = Duration::from_secs(seconds);
        }
        if let Some(count) = file.tcp_max_connections {
            let span = count.span();
            let count = count.into_inner();
            if !(1..=TcpLimits::MAX_CONNECTIONS).contains(&count) {
                return Err(invalid(
                    span,
                    format!(
                        "tcp_max_connections {count} is out of range: use 1 to {}",
                        TcpLimits::MAX_CONNECTIONS
                    ),
                ));
            }
            tcp.max_connections = count as usize;
        }

        Ok(Config {
            default_profile,
            profiles,
            source: path.display().to_string(),
            builtin: false,
            reserve,
            freeze_limit,
            tcp,
        })
    }
}

fn validate_profile(profile: &ProfileConfig) -> Result<(), String> {
    match profile.backend {
        BackendKind::Lvm => {
            if profile.volume_group.is_none() || profile.thin_pool.is_none() {
                return Err("backend \"lvm\" needs volume_group and thin_pool".into());
            }
        }
        BackendKind::Directory | BackendKind::Loop => {
            if profile.volume_group.is_some() || profile.thin_pool.is_some() {
                return Err(format!(
                    "volume_group and thin_pool apply only to backend \"lvm\", not {:?}",
                    profile.backend.as_str()
                ));
            }
        }
    }
    if let Some(ratio) = profile.max_overprovision {
        if profile.backend == BackendKind::Directory {
            return Err(
                "max_overprovision applies only to backends \"lvm\" and \"loop\": directory volumes promise no space".into(),
            );
        }
        if !(ratio.is_finite() && (1.0..=100.0).contains(&ratio)) {
            return Err(format!(
                "max_overprovision {ratio} is out of range: use a number from 1.0 to 100.0"
            ));
        }
    }
    if profile.backend == BackendKind::Directory && profile.filesystem.is_some() {
        return Err("filesystem does not apply to backend \"directory\": volumes live on the host's filesystem".into());
    }
    Ok(())
}

/// Joins profile names for a message.
pub fn join_names<'a>(names: impl Iterator<Item = &'a ProfileName>) -> String {
    names
        .map(ProfileName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/dvol/config.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn builtin_has_three_profiles_and_bronze_default() {
        let config = Config::builtin();
        assert_eq!(config.default_profile.as_str(), "bronze");
        let names: Vec<_> = config.profiles.keys().map(|p| p.as_str()).collect();
        assert_eq!(names, ["bronze", "gold", "silver"]);
        assert_eq!(
            config.profiles[&ProfileName::parse("silver").unwrap()].size,
            Some("5G".parse().unwrap())
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let msg = error(
            "default_profile = \"a\"\n[profiles.a]\nbackend = \"directory\"\ncolour = \"red\"\n",
        );
        assert!(
            msg.starts_with("/etc/dvol/config.toml:4: colour: unknown field"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_backend_is_refused_with_the_choices() {
        let msg = error("[profiles.a]\nbackend = \"tape\"\n");
        assert!(
            msg.starts_with("/etc/dvol/config.toml:2: backend: unknown variant `tape`"),
            "{msg}"
        );
        assert!(msg.contains("directory") && msg.contains("lvm"), "{msg}");
    }

    #[test]
    fn bad_size_is_refused_at_its_line() {
        let msg = error("[profiles.a]\nbackend = \"loop\"\nsize = \"-1\"\n");
        assert!(
            msg.starts_with("/etc/dvol/config.toml:3: size: invalid size \"-1\""),
            "{msg}"
        );
        let msg = error("[profiles.a]\nbackend = \"loop\"\nsize = \"1E\"\n");
        assert!(msg.contains("largest volume"), "{msg}");
    }

    #[test]
    fn default_profile_must_exist() {
        let msg = error("default_profile = \"gold\"\n[profiles.a]\nbackend = \"directory\"\n");
        assert!(
            msg.starts_with("/etc/dvol/config.toml:1: default_profile: default_profile \"gold\""),
            "{msg}"
        );
        assert!(msg.contains("defined profiles: a"), "{msg}");
    }

    #[test]
    fn lvm_needs_its_group_and_pool() {
        let msg = error("[profiles.g]\nbackend = \"lvm\"\n");
        assert!(msg.contains("needs volume_group and thin_pool"), "{msg}");
    }

    #[test]
    fn overprovision_ratio_is_checked() {
        let msg = error("[profiles.g]\nbackend = \"lvm\"\nvolume_group = \"v\"\nthin_pool = \"p\"\nmax_overprovision = 0.5\n");
        assert!(msg.contains("out of range"), "{msg}");
        let msg = error("[profiles.g]\nbackend = \"directory\"\nmax_overprovision = 2.0\n");
        assert!(msg.contains("applies only to backends"), "{msg}");
    }

    #[test]
    fn loop_profiles_take_an_overprovision_ratio() {
        let config =
            parse("[profiles.s]\nbackend = \"loop\"\nsize = \"1G\"\nmax_overprovision = 2.5\n")
                .unwrap();
        assert_eq!(
            config.profiles[&ProfileName::parse("s").unwrap()].max_overprovision,
            Some(2.5)
        );
        let msg = error("[profiles.s]\nbackend = \"loop\"\nmax_overprovision = 0.5\n");
        assert!(msg.contains("out of range"), "{msg}");
    }

    #[test]
    fn reserve_and_freeze_limit_have_defaults_and_can_be_set() {
        let config = Config::builtin();
        assert_eq!(config.reserve, Reserve::DEFAULT);
        assert_eq!(config.reserve.of(100 << 30), 2 << 30);
        assert_eq!(config.reserve.of(1 << 30), 256 << 20);
        assert_eq!(config.freeze_limit, DEFAULT_FREEZE_LIMIT);
        let config = parse(
            "reserve = \"64MiB\"\nreserve_percent = 5\nfreeze_limit_seconds = 7\n[profiles.a]\nbackend = \"directory\"\n",
        )
        .unwrap();
        assert_eq!(
            config.reserve,
            Reserve {
                min_bytes: 64 << 20,
                percent: 5.0
            }
        );
        assert_eq!(config.freeze_limit, Duration::from_secs(7));
        let msg = error("reserve_percent = 80\n[profiles.a]\nbackend = \"directory\"\n");
        assert!(
            msg.starts_with("/etc/dvol/config.toml:1: reserve_percent:") && msg.contains("0 to 50"),
            "{msg}"
        );
        let msg = error("freeze_limit_seconds = 0\n[profiles.a]\nbackend = \"directory\"\n");
        assert!(msg.contains("at least 1"), "{msg}");
        let msg = error("reserve = \"lots\"\n[profiles.a]\nbackend = \"directory\"\n");
        assert!(
            msg.starts_with("/etc/dvol/config.toml:1: reserve:"),
            "{msg}"
        );
    }

    #[test]
    fn tcp_limits_have_defaults_and_can_be_set() {
        assert_eq!(Config::builtin().tcp, TcpLimits::DEFAULT);
        assert_eq!(
            TcpLimits::DEFAULT,
            TcpLimits {
                header_timeout: Duration::from_secs(10),
                max_connections: 256
            }
        );
        let config = parse(
            "tcp_header_timeout_seconds = 2\ntcp_max_connections = 8\n[profiles.a]\nbackend = \"directory\"\n",
        )
        .unwrap();
        assert_eq!(
            config.tcp,
            TcpLimits {
                header_timeout: Duration::from_secs(2),
                max_connections: 8
            }
        );
        let msg = error("tcp_header_timeout_seconds = 0\n[profiles.a]\nbackend = \"directory\"\n");
        assert!(
            msg.starts_with("/etc/dvol/config.toml:1: tcp_header_timeout_seconds:")
                && msg.contains("1 to 3600"),
            "{msg}"
        );
        let msg = error("tcp_max_connections = 0\n[profiles.a]\nbackend = \"directory\"\n");
        assert!(msg.contains("1 to 65536"), "{msg}");
    }

    #[test]
    fn bad_profile_names_and_syntax_are_refused() {
        assert!(
            error("[profiles.\"a/b\"]\nbackend = \"directory\"\n").contains("invalid profile name")
        );
        assert!(error("[profiles.snapshot-x]\nbackend = \"directory\"\n").contains("snapshot-"));
        assert!(error("[profiles.a\nbackend = 1").starts_with("/etc/dvol/config.toml:1:"));
        assert!(error("").contains("no profiles defined"));
    }

    #[test]
    fn missing_optional_file_means_builtin_but_required_file_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("none.toml");
        assert_eq!(Config::load(&missing, false).unwrap().profiles.len(), 3);
        assert!(Config::load(&missing, true)
            .unwrap_err()
            .to_string()
            .contains("cannot read configuration"));
    }
}
