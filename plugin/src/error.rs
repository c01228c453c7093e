//! Errors of the volume service. Each message says what failed, for which volume, and what to
//! do; the protocol layers only choose a status code from [`ServiceError::class`].

use dvol_backends::BackendError;

use crate::names::NameError;
use crate::store::StoreError;

/// The broad kinds of failure, for choosing a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong; repeating it will not help.
    Invalid,
    /// The volume does not exist.
    NotFound,
    /// The request conflicts with the volume's current state.
    Conflict,
    /// A feature that is not built yet.
    Unsupported,
    /// The backend needed cannot run on this host.
    Unavailable,
    /// dvol or the host failed.
    Internal,
}

/// Errors from [`crate::service::VolumeService`].
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A name breaks the grammar.
    #[error(transparent)]
    Name(#[from] NameError),
    /// No such volume.
    #[error("no volume named {0:?}; `dvol volume ls` lists the volumes on this host")]
    NotFound(String),
    /// A profile that is not configured.
    #[error("volume {volume}: unknown profile {profile:?}; profiles on this host: {known}")]
    UnknownProfile {
        /// The volume being created.
        volume: String,
        /// The profile asked for.
        profile: String,
        /// The configured profiles.
        known: String,
    },
    /// An existing volume referred to with another profile.
    #[error("volume {volume} already exists with profile {actual}, not {requested}; refer to it as {volume} or {volume}@{actual}")]
    ProfileMismatch {
        /// The volume.
        volume: String,
        /// Its real profile.
        actual: String,
        /// The profile in the request.
        requested: String,
    },
    /// An option dvol does not know.
    #[error("volume {volume}: unknown option {key:?}; known options: {known}")]
    UnknownOption {
        /// The volume being created.
        volume: String,
        /// The option's key.
        key: String,
        /// The options dvol knows.
        known: &'static str,
    },
    /// A known option with a bad value.
    #[error("volume {volume}: option {key}: {message}")]
    BadOption {
        /// The volume being created.
        volume: String,
        /// The option's key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The volume is mounted.
    #[error("volume {volume} is in use ({mounts} active mount(s)); stop the containers using it, then retry")]
    InUse {
        /// The volume.
        volume: String,
        /// How many mount ids are active.
        mounts: usize,
    },
    /// A feature that is not built yet.
    #[error("volume {volume}: {feature} is not supported yet")]
    Unsupported {
        /// The volume.
        volume: String,
        /// What was asked for.
        feature: &'static str,
    },
    /// The volume's backend failed.
    #[error("volume {volume}: {source}")]
    Backend {
        /// The volume.
        volume: String,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// A history operation failed.
    #[error("{}", history_message(.volume, .source))]
    History {
        /// The volume.
        volume: String,
        /// The history library's error.
        #[source]
        source: dvol_snapshot::Error,
    },
    /// Another operation holds the volume.
    #[error("volume {volume} is busy with another operation; retry when it finishes")]
    Busy {
        /// The volume.
        volume: String,
    },
    /// Checkout or reset would lose changes.
    #[error("volume {volume} has uncommitted changes ({summary}); commit them, or pass --force to discard them")]
    Uncommitted {
        /// The volume.
        volume: String,
        /// How many paths, and the first few.
        summary: String,
    },
    /// A clone source prefix matches nothing or several things.
    #[error("volume {volume}: snapshot reference {reference:?} {problem}")]
    CloneSource {
        /// The volume being created.
        volume: String,
        /// The prefix given.
        reference: String,
        /// "matches nothing ..." or "is ambiguous: ...".
        problem: String,
    },
    /// Containers could not be stopped or paused.
    #[error(transparent)]
    Containers(#[from] crate::containers::ContainerError),
    /// The metadata database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Setting up the state root failed.
    #[error("state root {path}: {source}")]
    Root {
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl ServiceError {
    /// The broad kind of failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            ServiceError::Name(_)
            | ServiceError::UnknownProfile { .. }
            | ServiceError::UnknownOption { .. }
            | ServiceError::BadOption { .. } => ErrorClass::Invalid,
            ServiceError::NotFound(_) => ErrorClass::NotFound,
            ServiceError::ProfileMismatch { .. } | ServiceError::InUse { .. } => {
                ErrorClass::Conflict
            }
            ServiceError::Unsupported { .. } => ErrorClass::Unsupported,
            ServiceError::Backend { source, .. } => match source {
                BackendError::Refused(_) => ErrorClass::Invalid,
                BackendError::Unavailable(_) => ErrorClass::Unavailable,
                _ => ErrorClass::Internal,
            },
            ServiceError::History { source, .. } => history_class(source),
            ServiceError::Busy { .. } | ServiceError::Uncommitted { .. } => ErrorClass::Conflict,
            ServiceError::CloneSource { .. } => ErrorClass::Invalid,
            ServiceError::Containers(_) => ErrorClass::Conflict,
            ServiceError::Store(_) | ServiceError::Root { .. } => ErrorClass::Internal,
        }
    }

    /// A stable machine-readable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Name(_) => "invalid_name",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::UnknownProfile { .. } => "unknown_profile",
            ServiceError::ProfileMismatch { .. } => "profile_mismatch",
            ServiceError::UnknownOption { .. } => "unknown_option",
            ServiceError::BadOption { .. } => "invalid_option",
            ServiceError::InUse { .. } => "in_use",
            ServiceError::Unsupported { .. } => "not_supported",
            ServiceError::Backend { source, .. } => match source {
                BackendError::Refused(_) => "refused",
                BackendError::Unavailable(_) => "backend_unavailable",
                _ => "backend_failed",
            },
            ServiceError::History { source, .. } => match history_class(source) {
                ErrorClass::NotFound => "unknown_revision",
                ErrorClass::Invalid => "invalid_revision",
                ErrorClass::Conflict => "history_conflict",
                _ => "history_failed",
            },
            ServiceError::Busy { .. } => "busy",
            ServiceError::Uncommitted { .. } => "uncommitted_changes",
            ServiceError::CloneSource { .. } => "bad_snapshot_reference",
            ServiceError::Containers(_) => "containers_failed",
            ServiceError::Store(_) => "metadata_failed",
            ServiceError::Root { .. } => "state_root_failed",
        }
    }
}

/// Which history errors are the caller's.
fn history_class(e: &dvol_snapshot::Error) -> ErrorClass {
    use dvol_snapshot::Error as E;
    match e {
        E::UnknownRevision { .. } | E::NoSuchRef { .. } | E::NoParent { .. } | E::NoCommits(_) => {
            ErrorClass::NotFound
        }
        E::BadRevision { .. } | E::AmbiguousPrefix { .. } | E::Ref(_) | E::Id(_) => {
            ErrorClass::Invalid
        }
        E::RefExists { .. } | E::DeleteCurrentBranch { .. } | E::VolumeExists(_) => {
            ErrorClass::Conflict
        }
        _ => ErrorClass::Internal,
    }
}

/// The history library names volumes by UUID ("volume 3f2c...: unknown revision"); users know
/// them by name, so the name replaces the UUID, or leads the message when it has none.
fn history_message(volume: &str, source: &dvol_snapshot::Error) -> String {
    let text = source.to_string();
    match text
        .strip_prefix("volume ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((id, rest)) if uuid::Uuid::parse_str(id).is_ok() => format!("volume {volume}: {rest}"),
        _ => format!("volume {volume}: {text}"),
    }
}
