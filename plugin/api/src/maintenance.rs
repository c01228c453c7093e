//! Maintenance of the history repository shared by every volume: fsck and gc.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/fsck`: what a full check of the repository found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FsckView {
    /// Whether everything checked out.
    pub clean: bool,
    /// Objects re-read and re-hashed.
    pub objects_checked: u64,
    /// Objects whose content does not match their id.
    pub corrupt: Vec<String>,
    /// Objects referred to but absent.
    pub missing: Vec<String>,
    /// Refs that point at nothing usable.
    pub bad_refs: Vec<String>,
    /// Objects no ref reaches (removed by gc).
    pub unreachable: u64,
}

/// `POST /v1/gc` body (optional): how much unreferenced history to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// The grace period: `now` (keep nothing beyond branches, tags and HEADs) or a duration
    /// such as `90m`, `1h`, `14d`, `2w` (units s, m, h, d, w). Reflog entries younger than it
    /// keep the commits they name, objects written within it are kept, and older reflog
    /// entries are expired. Default two weeks.
    #[serde(default)]
    pub prune: Option<String>,
}

/// `POST /v1/gc`: what garbage collection removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GcView {
    /// Objects kept.
    pub objects_kept: u64,
    /// Objects deleted.
    pub objects_removed: u64,
    /// Bytes freed.
    pub bytes_removed: u64,
    /// Of the objects kept, those kept only because a reflog entry younger than the grace
    /// period reaches them.
    #[serde(default)]
    pub kept_for_reflog: u64,
    /// Of the objects kept, those kept only because they were written within the grace period.
    #[serde(default)]
    pub kept_recent: u64,
    /// Reflog entries older than the grace period, deleted.
    #[serde(default)]
    pub reflog_entries_expired: u64,
    /// The grace period used, e.g. `14d` or `now`.
    pub grace: String,
}
