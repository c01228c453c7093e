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

/// `POST /v1/gc`: what garbage collection removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GcView {
    /// Objects kept.
    pub objects_kept: u64,
    /// Objects deleted.
    pub objects_removed: u64,
    /// Bytes freed.
    pub bytes_removed: u64,
}
