//! Volume history on the wire: commits, the log, branches and tags, changes between states,
//! checkout and reset, and the requests that ask for them.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/volumes/{name}/commits`: what to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// The commit message.
    pub message: String,
    /// Who commits; defaults to `dvol`.
    #[serde(default)]
    pub author: Option<String>,
    /// Pause the containers using the volume meanwhile, for a consistent point.
    #[serde(default)]
    pub pause: bool,
}

/// `POST /v1/volumes/{name}/branches` and `/tags`: a new branch or tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefRequest {
    /// The new branch or tag.
    pub name: String,
    /// Where it points: a revision (default `HEAD`).
    #[serde(default)]
    pub at: Option<String>,
}

/// `POST /v1/volumes/{name}/checkout`: what to put into the volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// A branch, tag, commit id prefix, `HEAD^`, `HEAD~N`.
    #[serde(rename = "ref")]
    pub rev: String,
    /// Create this branch at `ref` and check it out.
    #[serde(default)]
    pub new_branch: Option<String>,
    /// Discard uncommitted changes.
    #[serde(default)]
    pub force: bool,
    /// Stop also the containers that the engine deletes when they stop (`docker run --rm`):
    /// they are gone afterwards. Without it such a container makes the checkout refuse
    /// (`container_removed_on_stop`) before anything is stopped or changed.
    #[serde(default)]
    pub stop_removable: bool,
}

/// `POST /v1/volumes/{name}/reset`: a hard reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The revision to reset to.
    #[serde(rename = "ref")]
    pub rev: String,
    /// Stop also the containers that the engine deletes when they stop (`docker run --rm`):
    /// they are gone afterwards. Without it such a container makes the reset refuse
    /// (`container_removed_on_stop`) before anything is stopped or changed.
    #[serde(default)]
    pub stop_removable: bool,
}

/// `GET /v1/volumes/{name}/diff` query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// The older revision; without it, the first parent of `to` (nothing, for a root
    /// commit): the changes `to` made.
    pub from: Option<String>,
    /// The newer revision (default `HEAD`).
    pub to: Option<String>,
}

/// How a commit read the volume's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// A copy-on-write snapshot of the volume (LVM thin snapshot, reflinked image); the
    /// containers using it went on writing.
    Snapshot,
    /// The volume's filesystem, frozen while it was read; writers waited.
    Frozen,
    /// The data as it was: no container used the volume, or its backend (a directory) has no
    /// way to fix it, so only `pause` makes the commit consistent.
    Live,
}

/// A commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommitView {
    /// Full commit id (hex).
    pub id: String,
    /// Parent ids, first parent first.
    pub parents: Vec<String>,
    /// The message.
    pub message: String,
    /// Who made it.
    pub author: String,
    /// When, RFC 3339.
    pub time: String,
    /// Branches pointing at it, and tags as `tag: NAME`.
    pub refs: Vec<String>,
}

/// The answer of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommitResult {
    /// The new commit, or HEAD's commit when nothing changed (`changed` false: nothing is
    /// recorded then).
    pub commit: CommitView,
    /// The checked-out branch (moved only when `changed`), if not detached.
    pub branch: Option<String>,
    /// Whether the files differ from the previous commit.
    pub changed: bool,
    /// How the volume's data was fixed while it was read.
    pub read_from: ReadFrom,
    /// Files looked at.
    pub files_scanned: u64,
    /// Files read again because they changed.
    pub files_reread: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Of the files read, those read only around their changed ranges: the storage told
    /// which byte ranges changed since the read point of the previous commit.
    #[serde(default)]
    #[schema(required = true)]
    pub files_read_by_ranges: u64,
    /// Why changed files were read whole rather than by their changed ranges: null when the
    /// storage told the ranges.
    #[serde(default)]
    pub full_read_reason: Option<String>,
    /// Objects that were not in the store yet.
    pub new_objects: u64,
    /// Bytes those objects take on disk.
    pub new_bytes_stored: u64,
    /// Containers paused for the commit that could not be unpaused again; empty normally.
    /// Always sent; a client may read its absence as empty.
    #[serde(default)]
    #[schema(required = true)]
    pub containers_not_resumed: Vec<NotResumed>,
}

/// A volume's log: its commits (newest first) and where HEAD is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogView {
    /// The checked-out branch, if not detached.
    pub branch: Option<String>,
    /// The commit HEAD points at.
    pub head: Option<String>,
    /// Commits reachable from any branch or tag, children before parents.
    pub commits: Vec<CommitView>,
}

/// A branch or tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefView {
    /// Its name.
    pub name: String,
    /// The commit it points at.
    pub commit: String,
    /// Whether it is checked out (branches only).
    pub current: bool,
}

/// How a path differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Only in the newer state.
    Added,
    /// Only in the older state.
    Removed,
    /// In both, with other content, mode or owner.
    Modified,
}

/// One path that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChangeView {
    /// Path inside the volume.
    pub path: String,
    /// How it differs.
    pub kind: ChangeKind,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size before.
    pub old_size: Option<u64>,
    /// Size after.
    pub new_size: Option<u64>,
}

/// The answer of a checkout or reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckoutView {
    /// The checked-out branch, if not detached.
    pub branch: Option<String>,
    /// The commit now in the volume.
    pub commit: String,
    /// Files written.
    pub files_written: u64,
    /// Of those, files whose differing chunks alone were rewritten, in place (large files
    /// the index vouched for); the others were written whole.
    #[serde(default)]
    pub files_patched: u64,
    /// Files already right.
    pub files_unchanged: u64,
    /// Paths removed.
    pub removed: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Containers stopped for the operation that could not be started again; empty normally.
    /// Always sent; a client may read its absence as empty.
    #[serde(default)]
    #[schema(required = true)]
    pub containers_not_resumed: Vec<NotResumed>,
    /// Commits the move left behind: the old HEAD (or branch) reached them and no branch, tag
    /// or HEAD does now. Only the reflog keeps them, until gc's grace period ends; a branch
    /// at the newest (`dvol branch NAME ID`) keeps them for good. Newest first; empty normally.
    #[serde(default)]
    pub left_behind: Vec<LeftBehind>,
}

/// A commit a checkout or reset left unreachable from every branch and tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeftBehind {
    /// Full commit id (hex).
    pub id: String,
    /// Its message.
    pub message: String,
}

/// One move of a volume's HEAD or of one of its branches (`GET /v1/volumes/{name}/reflog`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReflogEntryView {
    /// When, RFC 3339.
    pub time: String,
    /// `HEAD` (HEAD itself moved: a checkout, or a commit or reset on a detached HEAD) or the
    /// branch that moved.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The commit it pointed at before; none when it was created (or HEAD had no commit).
    pub old: Option<String>,
    /// The commit it points at after; none when the branch was deleted.
    pub new: Option<String>,
    /// The operation, e.g. `commit: fix schema`, `checkout: moving from master to v1`.
    pub message: String,
}

/// `GET /v1/volumes/{name}/reflog` query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReflogQuery {
    /// Answer at most this many entries (the newest).
    pub limit: Option<usize>,
}

/// A container stopped (or paused) for an operation that could not be started (or unpaused)
/// again afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotResumed {
    /// The container's name.
    pub container: String,
    /// Why it could not be started again.
    pub error: String,
}
