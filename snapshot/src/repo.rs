//! The repository: one per host, holding the object store and every volume's refs and index.
//!
//! This module opens the repository and implements history: resolving revisions, log,
//! branches, tags and HEAD. Snapshotting, checkout, diff, maintenance and block devices live
//! in their own modules as further `impl Repository` blocks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::{atomic_write, ensure_dir, remove_durably, FileLock};
use crate::id::{CommitId, IdError, ObjectId, VolumeKey};
use crate::index::{Index, IndexError};
use crate::object::{BlockMap, Commit, FileObject, ObjectError, ObjectKind, Tree};
use crate::reflog::{self, ReflogEntry};
use crate::refs::{validate_ref_name, HeadRef, RefError, RefKind, RefStore};
use crate::store::{ObjectStore, StoreError, WriteBatch};

/// The repository format this library reads and writes.
pub const FORMAT: &str = "dvol-history 1";

/// The branch a volume's first commit creates.
pub const DEFAULT_BRANCH: &str = "master";

/// Errors from repository operations.
///
/// Messages do not name the volume: a caller knows it by a name its user recognises and leads
/// the message with that; the volume's key is a typed field of the variants that have one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A ref failure.
    #[error(transparent)]
    Ref(#[from] RefError),
    /// An index failure.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// An object could not be decoded.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// An id could not be parsed.
    #[error(transparent)]
    Id(#[from] IdError),
    /// A file system operation outside the store failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The repository was written by an incompatible version.
    #[error("repository {path} has format '{found}'; this dvol understands '{FORMAT}'")]
    Format {
        /// The repository.
        path: PathBuf,
        /// The format it declares.
        found: String,
    },
    /// A revision names nothing.
    #[error("unknown revision '{rev}'; {available}")]
    UnknownRevision {
        /// The volume.
        volume: VolumeKey,
        /// The revision given.
        rev: String,
        /// What exists instead.
        available: String,
    },
    /// A revision is not well formed.
    #[error("invalid revision '{rev}': {why} (use a branch, tag, HEAD, a commit id prefix of at least 4 hex digits, optionally followed by ^, ^N, ~ or ~N)")]
    BadRevision {
        /// The revision given.
        rev: String,
        /// What is wrong.
        why: String,
    },
    /// A commit id prefix matches several commits.
    #[error("commit prefix '{prefix}' is ambiguous; candidates: {candidates}")]
    AmbiguousPrefix {
        /// The volume.
        volume: VolumeKey,
        /// The prefix given.
        prefix: String,
        /// The matching commit ids, comma-separated.
        candidates: String,
    },
    /// `^`/`~` went past a root commit.
    #[error("'{rev}' does not exist: commit {commit} has no parent number {n}")]
    NoParent {
        /// The volume.
        volume: VolumeKey,
        /// The revision given.
        rev: String,
        /// The commit without that parent.
        commit: CommitId,
        /// The parent number asked for.
        n: usize,
    },
    /// The volume has no commit yet.
    #[error("no commits yet; commit first")]
    NoCommits(VolumeKey),
    /// A branch or tag already exists.
    #[error("{what} '{name}' already exists (at {commit}); pick another name or delete it first")]
    RefExists {
        /// The volume.
        volume: VolumeKey,
        /// "branch" or "tag".
        what: &'static str,
        /// The name.
        name: String,
        /// Where it points.
        commit: CommitId,
    },
    /// A branch or tag does not exist.
    #[error("no {what} named '{name}'; {available}")]
    NoSuchRef {
        /// The volume.
        volume: VolumeKey,
        /// "branch" or "tag".
        what: &'static str,
        /// The name.
        name: String,
        /// What exists instead.
        available: String,
    },
    /// Deleting the checked-out branch was refused.
    #[error("cannot delete branch '{name}': it is checked out; check out another branch first")]
    DeleteCurrentBranch {
        /// The volume.
        volume: VolumeKey,
        /// The branch.
        name: String,
    },
    /// An object that should be a commit is something else.
    #[error("object {0} is not a commit")]
    NotACommit(ObjectId),
    /// A filesystem operation was asked of a block-device commit.
    #[error("commit {0} holds a block device image, not a directory tree; use the block device operations")]
    NotATree(CommitId),
    /// A block-device operation was asked of a filesystem commit.
    #[error("commit {0} holds a directory tree, not a block device image")]
    NotABlockMap(CommitId),
    /// A snapshot source or checkout target is unusable.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A volume that must be new already has history.
    #[error("it already has history; delete it first or use another volume")]
    VolumeExists(VolumeKey),
    /// Garbage collection stopped before deleting anything.
    #[error("garbage collection aborted, nothing was deleted: {0}; run fsck")]
    GcAborted(String),
    /// A block device is smaller than the image to check out.
    #[error("device {path} holds {have} bytes but commit {commit} needs {need}; grow it first")]
    DeviceTooSmall {
        /// The device.
        path: PathBuf,
        /// Its size.
        have: u64,
        /// The image size.
        need: u64,
        /// The commit.
        commit: CommitId,
    },
    /// A commit's caller found what was read untrustworthy before it was recorded.
    #[error("the commit was not recorded: {reason}")]
    NotRecorded {
        /// Why, in the caller's words.
        reason: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A branch of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    /// Its name.
    pub name: String,
    /// The commit it points to.
    pub commit: CommitId,
    /// Whether it is checked out (HEAD points to it).
    pub current: bool,
}

/// A tag of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Its name.
    pub name: String,
    /// The commit it points to.
    pub commit: CommitId,
}

/// Where a volume's HEAD is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The checked-out branch, or `None` when detached.
    pub branch: Option<String>,
    /// The current commit, or `None` before the first commit.
    pub commit: Option<CommitId>,
}

/// While alive, garbage collection waits: hold one across a sequence of object writes that
/// ends with a ref update (a transfer receiving objects).
#[derive(Debug)]
pub struct Pin {
    _lock: FileLock,
}

/// The history repository of one host.
#[derive(Debug)]
pub struct Repository {
    pub(crate) root: PathBuf,
    pub(crate) store: ObjectStore,
    pub(crate) refs: RefStore,
    pub(crate) index_dir: PathBuf,
    pub(crate) locks_dir: PathBuf,
    pub(crate) as_root: bool,
    pub(crate) threads: usize,
}

impl Repository {
    /// Opens the repository at `dir`, creating it if needed.
    ///
    /// Layout: `FORMAT`, `lock`, `objects/xx/...`, `refs/<volume>/{HEAD,heads/,tags/}`,
    /// `index/<volume>`, `locks/<volume>`, `trash/`.
    pub fn open(dir: &Path) -> Result<Repository> {
        ensure_dir(dir).map_err(io_err("create", dir))?;
        let fmt_path = dir.join("FORMAT");
        match fs::read_to_string(&fmt_path) {
            Ok(s) if s.trim_end() == FORMAT => {}
            Ok(s) => {
                return Err(Error::Format {
                    path: dir.to_path_buf(),
                    found: s.trim_end().to_string(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                atomic_write(&fmt_path, format!("{FORMAT}\n").as_bytes())
                    .map_err(io_err("write", &fmt_path))?;
            }
            Err(e) => return Err(io_err("read", &fmt_path)(e)),
        }
        let store = ObjectStore::open(&dir.join("objects"))?;
        let refs = RefStore::open(&dir.join("refs"), &dir.join("trash"))?;
        let index_dir = dir.join("index");
        ensure_dir(&index_dir).map_err(io_err("create", &index_dir))?;
        let locks_dir = dir.join("locks");
        ensure_dir(&locks_dir).map_err(io_err("create", &locks_dir))?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        Ok(Repository {
            root: dir.to_path_buf(),
            store,
            refs,
            index_dir,
            locks_dir,
            as_root: rustix::process::geteuid().is_root(),
            threads,
        })
    }

    /// The repository directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    pub(crate) fn lock_shared(&self) -> Result<FileLock> {
        let p = self.root.join("lock");
        FileLock::shared(&p).map_err(io_err("lock", &p))
    }

    pub(crate) fn lock_exclusive(&self) -> Result<FileLock> {
        let p = self.root.join("lock");
        FileLock::exclusive(&p).map_err(io_err("lock", &p))
    }

    pub(crate) fn lock_volume(&self, v: &VolumeKey) -> Result<FileLock> {
        let p = self.locks_dir.join(v.as_path_component());
        FileLock::exclusive(&p).map_err(io_err("lock", &p))
    }

    pub(crate) fn index_path(&self, v: &VolumeKey) -> PathBuf {
        self.index_dir.join(v.as_path_component())
    }

    /// Keeps garbage collection away until the returned [`Pin`] is dropped.
    pub fn pin(&self) -> Result<Pin> {
        Ok(Pin {
            _lock: self.lock_shared()?,
        })
    }

    /// Every volume that has refs or an index.
    pub fn volumes(&self) -> Result<Vec<VolumeKey>> {
        let mut set: std::collections::BTreeSet<VolumeKey> =
            self.refs.volumes()?.into_iter().collect();
        let rd = fs::read_dir(&self.index_dir).map_err(io_err("list", &self.index_dir))?;
        for ent in rd {
            let ent = ent.map_err(io_err("list", &self.index_dir))?;
            if let Some(v) = ent
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<VolumeKey>().ok())
            {
                set.insert(v);
            }
        }
        Ok(set.into_iter().collect())
    }

    // ----- objects -----

    /// Whether object `id` is in the store.
    pub fn has_object(&self, id: &ObjectId) -> bool {
        self.store.has(id)
    }

    /// The verified, uncompressed content of object `id`.
    pub fn read_object(&self, id: &ObjectId) -> Result<Vec<u8>> {
        Ok(self.store.read(id)?)
    }

    /// The stored (compressed) form of object `id`, as sent between hosts.
    pub fn read_raw_object(&self, id: &ObjectId) -> Result<Vec<u8>> {
        Ok(self.store.read_raw(id)?)
    }

    /// Stores an object received in stored form after checking that it hashes to `id`;
    /// returns whether it was new. Durable when this returns. Write children before the
    /// objects that refer to them (the order [`Repository::reachable_objects`] yields), and
    /// hold a [`Pin`] until the ref that makes them reachable is set.
    pub fn write_raw_object(&self, id: &ObjectId, stored: &[u8]) -> Result<bool> {
        let _l = self.lock_shared()?;
        let batch = WriteBatch::new();
        let new = self.store.write_raw(id, stored, &batch)?;
        batch.sync()?;
        Ok(new)
    }

    /// Reads commit `id`.
    pub fn read_commit(&self, id: CommitId) -> Result<Commit> {
        let data = self.store.read(&id.0)?;
        if ObjectKind::sniff(&data) != ObjectKind::Commit {
            return Err(Error::NotACommit(id.0));
        }
        Ok(Commit::decode(id.0, &data)?)
    }

    /// Reads tree `id`.
    pub fn read_tree(&self, id: &ObjectId) -> Result<Tree> {
        Ok(Tree::decode(*id, &self.store.read(id)?)?)
    }

    /// Reads chunk list `id`.
    pub fn read_file_object(&self, id: &ObjectId) -> Result<FileObject> {
        Ok(FileObject::decode(*id, &self.store.read(id)?)?)
    }

    /// Reads block map `id`.
    pub fn read_block_map(&self, id: &ObjectId) -> Result<BlockMap> {
        Ok(BlockMap::decode(*id, &self.store.read(id)?)?)
    }

    fn is_commit(&self, id: &ObjectId) -> bool {
        self.store
            .read(id)
            .map(|d| ObjectKind::sniff(&d) == ObjectKind::Commit)
            .unwrap_or(false)
    }

    fn ensure_commit(&self, id: CommitId) -> Result<()> {
        self.read_commit(id).map(|_| ())
    }

    // ----- HEAD, branches, tags -----

    pub(crate) fn head_ref(&self, v: &VolumeKey) -> Result<HeadRef> {
        Ok(self
            .refs
            .head(v)?
            .unwrap_or_else(|| HeadRef::Branch(DEFAULT_BRANCH.to_string())))
    }

    /// Where HEAD is: the checked-out branch (none when detached) and its commit (none before
    /// the first commit).
    pub fn head(&self, volume: &VolumeKey) -> Result<Head> {
        Ok(match self.head_ref(volume)? {
            HeadRef::Branch(b) => {
                let commit = self.refs.get(volume, RefKind::Branch, &b)?;
                Head {
                    branch: Some(b),
                    commit,
                }
            }
            HeadRef::Detached(c) => Head {
                branch: None,
                commit: Some(c),
            },
        })
    }

    /// How a reflog message names where HEAD is: its branch, or its commit's short id.
    fn head_name(head: &HeadRef) -> String {
        match head {
            HeadRef::Branch(b) => b.clone(),
            HeadRef::Detached(c) => c.short(12),
        }
    }

    /// Records a move of `reference` ([`reflog::HEAD`] or a branch) in the volume's reflog.
    /// The caller holds the volume's lock.
    pub(crate) fn log_move(
        &self,
        volume: &VolumeKey,
        reference: &str,
        old: Option<CommitId>,
        new: Option<CommitId>,
        message: &str,
    ) -> Result<()> {
        self.refs.ensure_volume_dir(volume)?;
        let path = self.refs.reflog_path(volume);
        let entry = ReflogEntry::now(reference, old, new, message);
        reflog::append(&path, &entry).map_err(io_err("append to", &path))
    }

    /// The volume's reflog: every move of its HEAD and branches, newest first.
    pub fn reflog(&self, volume: &VolumeKey) -> Result<Vec<ReflogEntry>> {
        let path = self.refs.reflog_path(volume);
        let mut entries = reflog::read(&path).map_err(io_err("read", &path))?;
        entries.reverse();
        Ok(entries)
    }

    /// Points HEAD at `head` and records the move as `message`; returns the commits the old
    /// HEAD leaves behind ([`Repository::left_behind`]). The caller holds the volume's lock.
    fn move_head(&self, volume: &VolumeKey, head: HeadRef, message: &str) -> Result<Vec<Commit>> {
        let old = self.head(volume)?.commit;
        self.refs.set_head(volume, &head)?;
        let new = self.head(volume)?.commit;
        self.log_move(volume, reflog::HEAD, old, new, message)?;
        old.map_or(Ok(Vec::new()), |old| self.left_behind(volume, old))
    }

    /// Checks out branch `branch` as far as refs go (HEAD points at it). The branch must exist.
    /// The caller makes the directory match with [`Repository::checkout`] first. Records
    /// `checkout: moving from OLD to BRANCH` in the reflog and returns the commits the old
    /// HEAD leaves behind (a detached HEAD's commits that no branch or tag reaches).
    pub fn set_head_branch(&self, volume: &VolumeKey, branch: &str) -> Result<Vec<Commit>> {
        let _r = self.lock_shared()?;
        let _l = self.lock_volume(volume)?;
        if self.refs.get(volume, RefKind::Branch, branch)?.is_none() {
            return Err(self.no_such_ref(volume, RefKind::Branch, branch));
        }
        let from = Self::head_name(&self.head_ref(volume)?);
        let message = format!("checkout: moving from {from} to {branch}");
        self.move_head(volume, HeadRef::Branch(branch.to_string()), &message)
    }

    /// Detaches HEAD at `commit`, which the user named `rev` (recorded in the reflog as
    /// `checkout: moving from OLD to REV`). Returns the commits the old HEAD leaves behind.
    pub fn set_head_detached(
        &self,
        volume: &VolumeKey,
        commit: CommitId,
        rev: &str,
    ) -> Result<Vec<Commit>> {
        let _r = self.lock_shared()?;
        let _l = self.lock_volume(volume)?;
        self.ensure_commit(commit)?;
        let from = Self::head_name(&self.head_ref(volume)?);
        let message = format!("checkout: moving from {from} to {rev}");
        self.move_head(volume, HeadRef::Detached(commit), &message)
    }

    /// `reset --hard` as far as refs go: moves HEAD's branch (or a detached HEAD) to `commit`,
    /// which the user named `rev` (recorded as `reset: moving to REV`). Returns the commits the
    /// move leaves behind: those the old position reached that no branch, tag or HEAD does.
    pub fn reset_head(
        &self,
        volume: &VolumeKey,
        commit: CommitId,
        rev: &str,
    ) -> Result<Vec<Commit>> {
        let _r = self.lock_shared()?;
        let _l = self.lock_volume(volume)?;
        self.ensure_commit(commit)?;
        let message = format!("reset: moving to {rev}");
        match self.head_ref(volume)? {
            HeadRef::Branch(branch) => {
                let old = self.refs.get(volume, RefKind::Branch, &branch)?;
                self.refs.set(volume, RefKind::Branch, &branch, commit)?;
                if self.refs.head(volume)?.is_none() {
                    self.refs
                        .set_head(volume, &HeadRef::Branch(branch.clone()))?;
                }
                self.log_move(volume, &branch, old, Some(commit), &message)?;
                old.map_or(Ok(Vec::new()), |old| self.left_behind(volume, old))
            }
            HeadRef::Detached(_) => self.move_head(volume, HeadRef::Detached(commit), &message),
        }
    }

    /// Creates or moves branch `branch` to `commit` (recorded as `branch: set to COMMIT`).
    pub fn set_branch(&self, volume: &VolumeKey, branch: &str, commit: CommitId) -> Result<()> {
        let _r = self.lock_shared()?;
        let _l = self.lock_volume(volume)?;
        validate_ref_name(RefKind::Branch, branch)?;
        self.ensure_commit(commit)?;
        let old = self.refs.get(volume, RefKind::Branch, branch)?;
        self.refs.set(volume, RefKind::Branch, branch, commit)?;
        let message = format!("branch: set to {}", commit.short(12));
        self.log_move(volume, branch, old, Some(commit), &message)
    }

    /// Moves branch or tag `name` to `new` only if it still points at `expected` (`None`:
    /// only if it does not exist yet), as one step under the volume's lock; a branch's move
    /// is recorded in the reflog as `message`. A ref moved meanwhile (a commit, or another
    /// transfer, came first) is left alone and reported as [`RefError::Moved`] with its
    /// current position. `new` must be a stored commit (with its whole closure, as a receiver
    /// ensures).
    pub fn update_ref_if(
        &self,
        volume: &VolumeKey,
        kind: RefKind,
        name: &str,
        expected: Option<CommitId>,
        new: CommitId,
        message: &str,
    ) -> Result<()> {
        let _r = self.lock_shared()?;
        let _l = self.lock_volume(volume)?;
        validate_ref_name(kind, name)?;
        self.ensure_commit(new)?;
        self.refs.set_if(volume, kind, name, expected, new)?;
        if kind == RefKind::Branch {
            self.log_move(volume, name, expected, Some(new), message)?;
        }
        Ok(())
    }

    /// The commits reachable from `from` (itself and its ancestors) that none of the volume's
    /// branches, tags or HEAD reaches, newest first: what a move away from `from` leaves for
    /// the reflog alone to keep (and gc to delete once its entries expire).
    pub fn left_behind(&self, volume: &VolumeKey, from: CommitId) -> Result<Vec<Commit>> {
        let kept: HashSet<CommitId> = self.volume_commits(volume)?.iter().map(|c| c.id).collect();
        let mut out = self.walk_commits([from], &kept)?;
        out.sort_by(|a, b| b.info.time.cmp(&a.info.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The volume's branches, sorted by name, the checked-out one marked.
    pub fn branches(&self, volume: &VolumeKey) -> Result<Vec<Branch>> {
        let head = self.head_ref(volume)?;
        Ok(self
            .refs
            .list(volume, RefKind::Branch)?
            .into_iter()
            .map(|(name, commit)| {
                let current = matches!(&head, HeadRef::Branch(b) if *b == name);
                Branch {
                    name,
                    commit,
                    current,
                }
            })
            .collect())
    }

    /// Creates branch `name` at `at`, which the user named `from` (recorded in the reflog as
    /// `branch: created from FROM`); an existing branch is an error.
    pub fn create_branch(
        &self,
        volume: &VolumeKey,
        name: &str,
        at: CommitId,
        from: &str,
    ) -> Result<()> {
        let message = format!("branch: created from {from}");
        self.create_ref(volume, RefKind::Branch, name, at, Some(&message))
    }

    /// Deletes branch `name`; refuses the checked-out branch.
    pub fn delete_branch(&self, volume: &VolumeKey, name: &str) -> Result<()> {
        let _l = self.lock_volume(volume)?;
        validate_ref_name(RefKind::Branch, name)?;
        if self.head_ref(volume)? == HeadRef::Branch(name.to_string()) {
            return Err(Error::DeleteCurrentBranch {
                volume: *volume,
                name: name.to_string(),
            });
        }
        let Some(old) = self.refs.get(volume, RefKind::Branch, name)? else {
            return Err(self.no_such_ref(volume, RefKind::Branch, name));
        };
        self.refs.delete(volume, RefKind::Branch, name)?;
        // Its commits stay reachable from the reflog until the entry expires.
        self.log_move(volume, name, Some(old), None, "branch: deleted")
    }

    /// The volume's tags, sorted by name.
    pub fn tags(&self, volume: &VolumeKey) -> Result<Vec<Tag>> {
        Ok(self
            .refs
            .list(volume, RefKind::Tag)?
            .into_iter()
            .map(|(name, commit)| Tag { name, commit })
            .collect())
    }

    /// Creates tag `name` at `at`; an existing tag is an error.
    pub fn create_tag(&self, volume: &VolumeKey, name: &str, at: CommitId) -> Result<()> {
        self.create_ref(volume, RefKind::Tag, name, at, None)
    }

    /// Deletes tag `name`.
    pub fn delete_tag(&self, volume: &VolumeKey, name: &str) -> Result<()> {
        let _l = self.lock_volume(volume)?;
        if !self.refs.delete(volume, RefKind::Tag, name)? {
            return Err(self.no_such_ref(volume, RefKind::Tag, name));
        }
        Ok(())
    }

    /// Creates a branch or tag, recording `logged` in the reflog if given.
    fn create_ref(
        &self,
        volume: &VolumeKey,
        kind: RefKind,
        name: &str,
        at: CommitId,
        logged: Option<&str>,
    ) -> Result<()> {
        let _r = self.lock_shared()?;
        let _l = self.lock_volume(volume)?;
        validate_ref_name(kind, name)?;
        if let Some(commit) = self.refs.get(volume, kind, name)? {
            return Err(Error::RefExists {
                volume: *volume,
                what: kind.noun(),
                name: name.to_string(),
                commit,
            });
        }
        self.ensure_commit(at)?;
        self.refs.set(volume, kind, name, at)?;
        match logged {
            Some(message) => self.log_move(volume, name, None, Some(at), message),
            None => Ok(()),
        }
    }

    fn available_refs(&self, volume: &VolumeKey) -> String {
        let names = |k| {
            self.refs
                .list(volume, k)
                .map(|l| l.into_iter().map(|(n, _)| n).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        let (b, t) = (names(RefKind::Branch), names(RefKind::Tag));
        let mut text = match (b.is_empty(), t.is_empty()) {
            (true, true) => "the volume has no branches or tags".to_string(),
            (false, true) => format!("branches: {b}"),
            (true, false) => format!("tags: {t}"),
            (false, false) => format!("branches: {b}; tags: {t}"),
        };
        let r = names(RefKind::Remote);
        if !r.is_empty() {
            text.push_str(&format!("; remote-tracking: {r}"));
        }
        text
    }

    fn no_such_ref(&self, volume: &VolumeKey, kind: RefKind, name: &str) -> Error {
        Error::NoSuchRef {
            volume: *volume,
            what: kind.noun(),
            name: name.to_string(),
            available: self.available_refs(volume),
        }
    }

    /// Deletes a volume's refs, reflog and index. Its objects are removed by the next [`Repository::gc`]
    /// unless other volumes share them.
    pub fn delete_volume(&self, volume: &VolumeKey) -> Result<()> {
        let _l = self.lock_volume(volume)?;
        self.refs.remove_volume(volume)?;
        let ip = self.index_path(volume);
        remove_durably(&ip).map_err(io_err("remove", &ip))?;
        Ok(())
    }

    pub(crate) fn load_index(&self, volume: &VolumeKey) -> Result<Index> {
        Ok(Index::load_or_empty(&self.index_path(volume))?)
    }

    // ----- revisions and history -----

    /// Records where `remote`'s branch `branch` is (after a fetch, push or clone): the
    /// remote-tracking ref `REMOTE/BRANCH`, which `resolve` accepts and gc keeps. `commit`
    /// must be stored with its closure.
    pub fn set_remote_ref(
        &self,
        volume: &VolumeKey,
        remote: &str,
        branch: &str,
        commit: CommitId,
    ) -> Result<()> {
        let _r = self.lock_shared()?;
        let _l = self.lock_volume(volume)?;
        let name = format!("{remote}/{branch}");
        validate_ref_name(RefKind::Remote, &name)?;
        self.ensure_commit(commit)?;
        Ok(self.refs.set(volume, RefKind::Remote, &name, commit)?)
    }

    /// The remote-tracking refs of a volume (`REMOTE/BRANCH`), by name.
    pub fn remote_refs(&self, volume: &VolumeKey) -> Result<Vec<(String, CommitId)>> {
        Ok(self.refs.list(volume, RefKind::Remote)?)
    }

    /// The commits the volume's branches, tags, remote-tracking refs and detached HEAD point
    /// at.
    pub fn ref_tips(&self, volume: &VolumeKey) -> Result<Vec<CommitId>> {
        let mut tips: Vec<CommitId> = Vec::new();
        for kind in RefKind::ALL {
            tips.extend(self.refs.list(volume, kind)?.into_iter().map(|(_, c)| c));
        }
        if let Some(HeadRef::Detached(c)) = self.refs.head(volume)? {
            tips.push(c);
        }
        Ok(tips)
    }

    /// Every commit reachable from `starts` (themselves and their ancestors), except those in
    /// `stop` and their ancestors that only `stop` leads to; each once.
    pub(crate) fn walk_commits(
        &self,
        starts: impl IntoIterator<Item = CommitId>,
        stop: &HashSet<CommitId>,
    ) -> Result<Vec<Commit>> {
        let mut seen: HashSet<CommitId> = HashSet::new();
        let mut queue: VecDeque<CommitId> = starts.into_iter().collect();
        let mut out = Vec::new();
        while let Some(c) = queue.pop_front() {
            if stop.contains(&c) || !seen.insert(c) {
                continue;
            }
            let commit = self.read_commit(c)?;
            queue.extend(commit.parents.iter().copied());
            out.push(commit);
        }
        Ok(out)
    }

    /// Every commit reachable from the volume's branches, tags and HEAD.
    pub(crate) fn volume_commits(&self, volume: &VolumeKey) -> Result<Vec<Commit>> {
        self.walk_commits(self.ref_tips(volume)?, &HashSet::new())
    }

    /// The volumes whose branches, tags, HEAD or reflog reach `commit`, in key order: whose
    /// history the commit belongs to (for a clone of it to be like them).
    pub fn owners_of(&self, commit: CommitId) -> Result<Vec<VolumeKey>> {
        let mut owners = Vec::new();
        for v in self.refs.volumes()? {
            let mut starts = self.ref_tips(&v)?;
            starts.extend(self.reflog(&v)?.iter().flat_map(|e| e.commits()));
            if self
                .walk_commits(starts, &HashSet::new())?
                .iter()
                .any(|c| c.id == commit)
            {
                owners.push(v);
            }
        }
        Ok(owners)
    }

    /// Every commit of the volume (reachable from any of its refs), newest first, for
    /// drawing a graph (`dvol log --graph`): each [`Commit`] lists its parents.
    pub fn commits(&self, volume: &VolumeKey) -> Result<Vec<Commit>> {
        let mut all = self.volume_commits(volume)?;
        // Children before parents: order by time, then make sure no parent precedes a child.
        all.sort_by(|a, b| b.info.time.cmp(&a.info.time).then(a.id.cmp(&b.id)));
        let pos: HashMap<CommitId, usize> =
            all.iter().enumerate().map(|(i, c)| (c.id, i)).collect();
        let mut indeg: HashMap<CommitId, usize> = HashMap::new();
        for c in &all {
            for p in &c.parents {
                if pos.contains_key(p) {
                    *indeg.entry(*p).or_default() += 1;
                }
            }
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = all
            .iter()
            .enumerate()
            .filter(|(_, c)| indeg.get(&c.id).copied().unwrap_or(0) == 0)
            .map(|(i, _)| std::cmp::Reverse(i))
            .collect();
        let mut out = Vec::with_capacity(all.len());
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            let c = &all[i];
            for p in &c.parents {
                if let Some(d) = indeg.get_mut(p) {
                    *d -= 1;
                    if *d == 0 {
                        ready.push(std::cmp::Reverse(pos[p]));
                    }
                }
            }
            out.push(c.clone());
        }
        Ok(out)
    }

    /// The first-parent history from `start` (any revision [`Repository::resolve`] accepts),
    /// newest first.
    pub fn log(&self, volume: &VolumeKey, start: &str) -> Result<Vec<Commit>> {
        let mut id = Some(self.resolve(volume, start)?);
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        while let Some(c) = id {
            if !seen.insert(c) {
                break;
            }
            let commit = self.read_commit(c)?;
            id = commit.parents.first().copied();
            out.push(commit);
        }
        Ok(out)
    }

    /// Resolves a revision: `HEAD`, a branch, a tag, or a unique commit id prefix (at least 4
    /// hex digits), followed by any number of `^`, `^N` (N-th parent), `~` or `~N` (N-th
    /// first-parent ancestor). Refs win over id prefixes.
    pub fn resolve(&self, volume: &VolumeKey, rev: &str) -> Result<CommitId> {
        let split = rev.find(['^', '~']).unwrap_or(rev.len());
        let (base, mut suffix) = rev.split_at(split);
        if base.is_empty() {
            return Err(Error::BadRevision {
                rev: rev.to_string(),
                why: "it has no base before ^ or ~".into(),
            });
        }
        let mut id = self.resolve_base(volume, base, rev)?;
        while !suffix.is_empty() {
            let op = suffix.as_bytes()[0];
            let digits_end = suffix[1..]
                .find(|c: char| !c.is_ascii_digit())
                .map(|i| i + 1)
                .unwrap_or(suffix.len());
            let digits = &suffix[1..digits_end];
            if digits_end < suffix.len() && !matches!(suffix.as_bytes()[digits_end], b'^' | b'~') {
                return Err(Error::BadRevision {
                    rev: rev.to_string(),
                    why: format!("unexpected '{}'", &suffix[digits_end..]),
                });
            }
            let n: usize = if digits.is_empty() {
                1
            } else {
                digits.parse().map_err(|_| Error::BadRevision {
                    rev: rev.to_string(),
                    why: format!("bad number '{digits}'"),
                })?
            };
            if op == b'^' {
                if n > 0 {
                    let c = self.read_commit(id)?;
                    id = *c.parents.get(n - 1).ok_or(Error::NoParent {
                        volume: *volume,
                        rev: rev.to_string(),
                        commit: id,
                        n,
                    })?;
                }
            } else {
                for _ in 0..n {
                    let c = self.read_commit(id)?;
                    id = *c.parents.first().ok_or(Error::NoParent {
                        volume: *volume,
                        rev: rev.to_string(),
                        commit: id,
                        n: 1,
                    })?;
                }
            }
            suffix = &suffix[digits_end..];
        }
        Ok(id)
    }

    fn resolve_base(&self, volume: &VolumeKey, base: &str, rev: &str) -> Result<CommitId> {
        if base == "HEAD" || base == "@" {
            return self.head(volume)?.commit.ok_or(Error::NoCommits(*volume));
        }
        if validate_ref_name(RefKind::Branch, base).is_ok() {
            if let Some(c) = self.refs.get(volume, RefKind::Branch, base)? {
                return Ok(c);
            }
            if let Some(c) = self.refs.get(volume, RefKind::Tag, base)? {
                return Ok(c);
            }
        }
        if validate_ref_name(RefKind::Remote, base).is_ok() {
            if let Some(c) = self.refs.get(volume, RefKind::Remote, base)? {
                return Ok(c);
            }
        }
        let unknown = || Error::UnknownRevision {
            volume: *volume,
            rev: rev.to_string(),
            available: self.available_refs(volume),
        };
        let hex = base.bytes().all(|c| c.is_ascii_hexdigit());
        if hex && base.len() < ObjectId::MIN_PREFIX {
            return Err(Error::BadRevision {
                rev: rev.to_string(),
                why: format!(
                    "'{base}' is too short: give at least {} hex digits of a commit id",
                    ObjectId::MIN_PREFIX
                ),
            });
        }
        let Ok(prefix) = ObjectId::parse_prefix(base) else {
            return Err(unknown());
        };
        // Commits of this volume first, then any commit in the store.
        let mut found: Vec<CommitId> = self
            .volume_commits(volume)?
            .into_iter()
            .map(|c| c.id)
            .filter(|c| prefix.matches(&c.0))
            .collect();
        if found.is_empty() {
            found = self
                .store
                .ids_with_prefix(prefix.as_str())?
                .into_iter()
                .filter(|id| self.is_commit(id))
                .map(CommitId)
                .collect();
        }
        found.sort();
        match found.len() {
            0 => Err(unknown()),
            1 => Ok(found[0]),
            _ => Err(Error::AmbiguousPrefix {
                volume: *volume,
                prefix: base.to_string(),
                candidates: found
                    .iter()
                    .map(|c| c.short(16))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Finds a commit anywhere in the repository by id prefix (at least 4 hex digits), for
    /// `NAME@snapshot-REF` clones.
    pub fn find_commit(&self, prefix: &str) -> Result<Option<CommitId>> {
        let p = ObjectId::parse_prefix(prefix)?;
        let found: Vec<CommitId> = self
            .store
            .ids_with_prefix(p.as_str())?
            .into_iter()
            .filter(|id| self.is_commit(id))
            .map(CommitId)
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(Some(found[0])),
            _ => Err(Error::AmbiguousPrefix {
                volume: VolumeKey(uuid::Uuid::nil()),
                prefix: prefix.to_string(),
                candidates: found
                    .iter()
                    .map(|c| c.short(16))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}
