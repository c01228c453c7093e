//! Reachability, verification (fsck) and garbage collection.
//!
//! The roots are every branch, tag and detached HEAD of every volume, every commit a
//! volume's reflog names, plus every object a volume's index refers to (commits reuse index
//! ids without re-checking the store, so they must survive gc). Garbage collection also keeps,
//! for a grace period ([`GcOptions`]), reflog entries and every object written within it
//! (and what they refer to); older reflog entries expire. [`Reachable`] walks from roots in post-order (children before the
//! objects that refer to them), which is also the order a receiver should store objects in.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::id::{CommitId, ObjectId};
use crate::object::{
    BlockMap, Commit, Content, EntryKind, FileObject, ObjectError, ObjectKind, Tree,
};
use crate::progress::{Phase, Progress};
use crate::receive::{ReceiveError, RECEIVE_MARKER_MAX_AGE};
use crate::reflog;
use crate::refs::{HeadRef, RefKind};
use crate::repo::{io_err, Error, Repository, Result};
use crate::store::{StoreError, StoreFile};

/// What kind of object a reference expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Commit,
    Tree,
    File,
    Chunk,
    BlockMap,
}

impl Expect {
    pub(crate) fn of_entry(kind: EntryKind) -> Expect {
        match kind {
            EntryKind::ChunkedFile => Expect::File,
            EntryKind::Dir => Expect::Tree,
            // One chunk: the content, a symlink's target, a hard link's first name, a special
            // file's kind and device number.
            EntryKind::File
            | EntryKind::Symlink
            | EntryKind::HardLink
            | EntryKind::Fifo
            | EntryKind::Socket
            | EntryKind::CharDevice
            | EntryKind::BlockDevice => Expect::Chunk,
        }
    }
}

/// Typed starting points of a reachability walk.
type Roots = Vec<(ObjectId, Expect)>;

/// The roots of reachability, by where they come from.
struct RootSet {
    /// Branches, tags, detached HEADs and indexes.
    refs: Roots,
    /// Commits the reflog entries name.
    reflog: Roots,
    /// Refs that could not be read.
    bad: Vec<String>,
}

/// How long garbage collection keeps history nothing refers to any more: two weeks.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(14 * 24 * 3600);

/// What [`Repository::gc`] keeps beyond what refs and indexes reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// Reflog entries made within this period keep the commits they name, objects written
    /// within it are kept, and older reflog entries are expired. Zero (`--prune=now`) keeps
    /// nothing beyond the refs and indexes and empties every reflog.
    pub grace: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: DEFAULT_GC_GRACE,
        }
    }
}

impl GcOptions {
    /// Collect everything unreferenced now: no grace period.
    pub fn prune_now() -> Self {
        GcOptions {
            grace: Duration::ZERO,
        }
    }
}

struct Frame {
    id: ObjectId,
    expect: Expect,
    children: Option<Vec<(ObjectId, Expect)>>,
    next: usize,
}

/// Iterator over the objects reachable from some roots, children before parents, each once.
/// Objects the `have` predicate accepts are skipped together with everything below them.
/// Items are errors when an object on the way is missing or corrupt.
pub struct Reachable<'r> {
    repo: &'r Repository,
    stack: Vec<Frame>,
    pending_roots: Vec<(ObjectId, Expect)>,
    seen: HashSet<ObjectId>,
    have: Box<dyn Fn(&ObjectId) -> bool + 'r>,
}

fn children_of(
    repo: &Repository,
    id: &ObjectId,
    expect: Expect,
) -> Result<Vec<(ObjectId, Expect)>> {
    Ok(match expect {
        Expect::Chunk => Vec::new(),
        Expect::Commit => {
            let c = Commit::decode(*id, &repo.store.read(id)?)?;
            let mut v = vec![match c.content {
                Content::Tree(t) => (t, Expect::Tree),
                Content::BlockMap(b) => (b, Expect::BlockMap),
            }];
            v.extend(c.parents.iter().map(|p| (p.0, Expect::Commit)));
            v
        }
        Expect::Tree => {
            let t = Tree::decode(*id, &repo.store.read(id)?)?;
            t.entries
                .iter()
                .map(|e| (e.id, Expect::of_entry(e.kind)))
                .collect()
        }
        Expect::File => {
            let f = FileObject::decode(*id, &repo.store.read(id)?)?;
            f.chunks.iter().map(|c| (c.id, Expect::Chunk)).collect()
        }
        Expect::BlockMap => {
            let m = BlockMap::decode(*id, &repo.store.read(id)?)?;
            m.chunks.iter().map(|(_, c)| (*c, Expect::Chunk)).collect()
        }
    })
}

impl<'r> Reachable<'r> {
    pub(crate) fn new(
        repo: &'r Repository,
        roots: Vec<(ObjectId, Expect)>,
        have: Box<dyn Fn(&ObjectId) -> bool + 'r>,
    ) -> Self {
        Self::walk(repo, roots, have, HashSet::new())
    }

    /// A walk that skips the objects of `seen` (and what is below them) as if it had been
    /// there already; [`Reachable::into_seen`] gives the set back with what it went through.
    /// What a mark needs, without a second copy of its set.
    pub(crate) fn beyond(
        repo: &'r Repository,
        roots: Vec<(ObjectId, Expect)>,
        seen: HashSet<ObjectId>,
    ) -> Self {
        Self::walk(repo, roots, Box::new(|_| false), seen)
    }

    fn walk(
        repo: &'r Repository,
        mut roots: Vec<(ObjectId, Expect)>,
        have: Box<dyn Fn(&ObjectId) -> bool + 'r>,
        seen: HashSet<ObjectId>,
    ) -> Self {
        roots.reverse();
        Reachable {
            repo,
            stack: Vec::new(),
            pending_roots: roots,
            seen,
            have,
        }
    }

    /// Every object the walk went through (also those it could not read), with the set it
    /// started from.
    pub(crate) fn into_seen(self) -> HashSet<ObjectId> {
        self.seen
    }
}

impl Iterator for Reachable<'_> {
    type Item = Result<ObjectId>;

    fn next(&mut self) -> Option<Result<ObjectId>> {
        loop {
            if self.stack.is_empty() {
                let (id, expect) = self.pending_roots.pop()?;
                if !(self.have)(&id) && self.seen.insert(id) {
                    self.stack.push(Frame {
                        id,
                        expect,
                        children: None,
                        next: 0,
                    });
                }
                continue;
            }
            let repo = self.repo;
            let top = self.stack.last_mut()?;
            if top.children.is_none() {
                match children_of(repo, &top.id, top.expect) {
                    Ok(c) => top.children = Some(c),
                    Err(e) => {
                        self.stack.pop();
                        return Some(Err(e));
                    }
                }
            }
            let children = top.children.as_deref().unwrap_or_default();
            if let Some(&(cid, expect)) = children.get(top.next) {
                top.next += 1;
                if !(self.have)(&cid) && self.seen.insert(cid) {
                    self.stack.push(Frame {
                        id: cid,
                        expect,
                        children: None,
                        next: 0,
                    });
                }
                continue;
            }
            let done = self.stack.pop()?;
            return Some(Ok(done.id));
        }
    }
}

/// The result of [`Repository::fsck`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Object files read and verified.
    pub objects_checked: u64,
    /// Their total uncompressed size.
    pub bytes_checked: u64,
    /// Objects reachable from the roots.
    pub reachable: u64,
    /// Objects no root reaches (removed by the next gc).
    pub unreachable: u64,
    /// Objects that do not decode or do not hash to their name.
    pub corrupt: Vec<ObjectId>,
    /// Objects referred to but absent.
    pub missing: Vec<ObjectId>,
    /// Refs that cannot be read, or point to something that is not a commit.
    pub bad_refs: Vec<String>,
    /// Leftover temporary files (removed by the next gc).
    pub temp_files: u64,
    /// Files in the object directories that are not objects (never touched).
    pub stray_files: Vec<PathBuf>,
}

impl FsckReport {
    /// Whether nothing is corrupt, missing or broken.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.bad_refs.is_empty()
    }
}

/// The result of [`Repository::gc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Objects in the store before.
    pub objects_before: u64,
    /// Objects kept (reachable).
    pub objects_kept: u64,
    /// Objects deleted.
    pub objects_removed: u64,
    /// Stored bytes deleted.
    pub bytes_removed: u64,
    /// Temporary files deleted.
    pub temp_files_removed: u64,
    /// Objects kept only because a reflog entry younger than the grace period reaches them.
    pub kept_for_reflog: u64,
    /// Objects kept only because they (or an object referring to them) were written within
    /// the grace period.
    pub kept_recent: u64,
    /// Reflog entries older than the grace period, deleted.
    pub reflog_entries_expired: u64,
}

/// The object an error is about, and whether it is missing (else corrupt).
fn error_object(e: &Error) -> Option<(ObjectId, bool)> {
    match e {
        Error::Store(StoreError::Missing(id)) => Some((*id, true)),
        Error::Store(StoreError::Corrupt { id, .. }) => Some((*id, false)),
        Error::Object(ObjectError::Decode { id, .. }) => Some((*id, false)),
        _ => None,
    }
}

impl Repository {
    /// Every object reachable from `commit` (its tree or block map, all chunks, and all
    /// ancestors), children before the objects that refer to them.
    pub fn reachable_objects(&self, commit: CommitId) -> Reachable<'_> {
        Reachable::new(self, vec![(commit.0, Expect::Commit)], Box::new(|_| false))
    }

    /// Like [`Repository::reachable_objects`], but skips every object `have` accepts and all
    /// objects below it: what to send to a receiver that has the objects `have` names (a
    /// store holding an object holds everything below it).
    pub fn missing_objects<'a>(
        &'a self,
        commit: CommitId,
        have: impl Fn(&ObjectId) -> bool + 'a,
    ) -> Reachable<'a> {
        Reachable::new(self, vec![(commit.0, Expect::Commit)], Box::new(have))
    }

    /// Roots of reachability, and descriptions of refs that could not be read.
    fn roots(&self) -> Result<RootSet> {
        let mut set = RootSet {
            refs: Vec::new(),
            reflog: Vec::new(),
            bad: Vec::new(),
        };
        for v in self.volumes()? {
            for kind in RefKind::ALL {
                match self.refs.list(&v, kind) {
                    Ok(list) => set
                        .refs
                        .extend(list.into_iter().map(|(_, c)| (c.0, Expect::Commit))),
                    Err(e) => set.bad.push(format!("volume {v}: {e}")),
                }
            }
            match self.refs.head(&v) {
                Ok(Some(HeadRef::Detached(c))) => set.refs.push((c.0, Expect::Commit)),
                Ok(_) => {}
                Err(e) => set.bad.push(format!("volume {v}: {e}")),
            }
            let path = self.refs.reflog_path(&v);
            match reflog::read(&path) {
                Ok(entries) => set.reflog.extend(
                    entries
                        .iter()
                        .flat_map(|e| e.commits())
                        .map(|c| (c.0, Expect::Commit)),
                ),
                Err(e) => set
                    .bad
                    .push(format!("volume {v}: cannot read {}: {e}", path.display())),
            }
            let index = self.load_index(&v)?;
            set.refs.extend(
                index
                    .entries
                    .values()
                    .map(|e| (e.id, Expect::of_entry(e.kind))),
            );
        }
        Ok(set)
    }

    /// Deletes every volume's reflog entries made at or before `cutoff`; returns how many.
    fn expire_reflogs(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<u64> {
        let mut expired = 0;
        for v in self.refs.volumes()? {
            let _l = self.lock_volume(&v)?;
            let path = self.refs.reflog_path(&v);
            expired += reflog::expire(&path, cutoff).map_err(io_err("expire", &path))?;
        }
        Ok(expired)
    }

    /// Marks everything reachable from `roots` that `marked` lacks; returns how many were new.
    fn mark(
        &self,
        roots: Roots,
        marked: &mut HashSet<ObjectId>,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let mut walk = Reachable::beyond(self, roots, std::mem::take(marked));
        let mut new = 0u64;
        let outcome = walk.by_ref().try_for_each(|item| {
            item?;
            new += 1;
            progress.advance(1);
            Ok::<(), Error>(())
        });
        *marked = walk.into_seen();
        outcome.map_err(|e| Error::GcAborted(e.to_string()))?;
        Ok(new)
    }

    /// The kind of a stored object, for walking from it.
    fn expect_of(&self, id: &ObjectId) -> Option<Expect> {
        let data = self.store.read(id).ok()?;
        Some(match ObjectKind::sniff(&data) {
            ObjectKind::Commit => Expect::Commit,
            ObjectKind::Tree => Expect::Tree,
            ObjectKind::File => Expect::File,
            ObjectKind::BlockMap => Expect::BlockMap,
            ObjectKind::Chunk => Expect::Chunk,
        })
    }

    /// Verifies the repository: every object is re-read, decompressed and re-hashed, and
    /// everything reachable from every ref and index is present and well formed.
    pub fn fsck(&self, progress: &dyn Progress) -> Result<FsckReport> {
        let _l = self.lock_shared()?;
        let mut rep = FsckReport::default();
        let files = self.store.list()?;
        let mut present: HashSet<ObjectId> = HashSet::new();
        let mut corrupt: HashSet<ObjectId> = HashSet::new();
        let nobj = files
            .iter()
            .filter(|f| matches!(f, StoreFile::Object(_)))
            .count();
        progress.start(Phase::VERIFY_OBJECTS, Some(nobj as u64));
        for f in files {
            match f {
                StoreFile::Object(id) => {
                    match self.store.read(&id) {
                        Ok(data) => {
                            rep.bytes_checked += data.len() as u64;
                            present.insert(id);
                        }
                        Err(StoreError::Corrupt { .. }) => {
                            corrupt.insert(id);
                            present.insert(id);
                        }
                        Err(StoreError::Missing(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rep.objects_checked += 1;
                    progress.advance(1);
                }
                StoreFile::Temp(_) => rep.temp_files += 1,
                StoreFile::Stray(p) => rep.stray_files.push(p),
            }
        }
        progress.finish();
        progress.start(Phase::CHECK_REFERENCES, None);
        let RootSet {
            mut refs,
            reflog,
            bad,
        } = self.roots()?;
        refs.extend(reflog);
        let roots = refs;
        rep.bad_refs = bad;
        let mut missing: HashSet<ObjectId> = HashSet::new();
        // Objects the walk met but could not read because they are absent: not reachable.
        let mut absent_unread = 0u64;
        for (id, expect) in &roots {
            if *expect == Expect::Commit && present.contains(id) && !corrupt.contains(id) {
                let ok = self
                    .store
                    .read(id)
                    .map(|d| ObjectKind::sniff(&d) == ObjectKind::Commit)
                    .unwrap_or(false);
                if !ok {
                    rep.bad_refs
                        .push(format!("a ref points to {id}, which is not a commit"));
                }
            }
        }
        // The walk's own set of what it went through is the reachable set (no second copy).
        let mut walk = Reachable::new(self, roots, Box::new(|_| false));
        for item in walk.by_ref() {
            progress.advance(1);
            match item {
                Ok(id) => {
                    if !present.contains(&id) {
                        missing.insert(id);
                    }
                }
                Err(e) => match error_object(&e) {
                    Some((id, true)) => {
                        if missing.insert(id) {
                            absent_unread += 1;
                        }
                    }
                    Some((id, false)) => {
                        corrupt.insert(id);
                    }
                    None => return Err(e),
                },
            }
        }
        progress.finish();
        let reachable = walk.into_seen();
        rep.reachable = reachable.len() as u64 - absent_unread;
        rep.unreachable = present.iter().filter(|id| !reachable.contains(id)).count() as u64;
        rep.corrupt = corrupt.into_iter().collect();
        rep.corrupt.sort();
        rep.missing = missing.into_iter().collect();
        rep.missing.sort();
        Ok(rep)
    }

    /// How young an unreferenced object must be to be kept: the grace period, but at least
    /// [`RECEIVE_MARKER_MAX_AGE`] while a receive session is in progress or was interrupted
    /// less than that long ago (what it stored is not referenced yet, and a resumed transfer
    /// skips it), even with `--prune=now`.
    fn object_grace(&self, options: &GcOptions) -> Result<Duration> {
        let receiving = match self.receives_in_progress() {
            Ok(markers) => !markers.is_empty(),
            Err(ReceiveError::Repository(e)) => return Err(e),
            Err(ReceiveError::Store(e)) => return Err(e.into()),
            // Reading markers fails only with the two above.
            Err(_) => true,
        };
        Ok(if receiving {
            options.grace.max(RECEIVE_MARKER_MAX_AGE)
        } else {
            options.grace
        })
    }

    /// Deletes every object no ref, index or young reflog entry of any volume reaches, except
    /// objects written within the grace period (and what they refer to), and leftover
    /// temporary files; expires reflog entries older than the grace period first. Waits for
    /// running commits and checkouts and blocks new ones meanwhile. If any reachable object
    /// cannot be read, nothing is deleted. Objects are deleted referrers first, so a crash
    /// part-way never leaves an object whose children are gone. While a receive session is
    /// in progress or was interrupted less than a day ago, objects younger than a day are kept
    /// whatever the grace period ([`Repository::receives_in_progress`]).
    pub fn gc(&self, progress: &dyn Progress, options: &GcOptions) -> Result<GcReport> {
        let _l = self.lock_exclusive()?;
        self.refs.empty_trash()?;
        let mut rep = GcReport::default();
        let grace = chrono::Duration::from_std(options.grace).unwrap_or(chrono::Duration::MAX);
        let cutoff = chrono::Utc::now()
            .checked_sub_signed(grace)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        rep.reflog_entries_expired = self.expire_reflogs(cutoff)?;
        let roots = self.roots()?;
        if !roots.bad.is_empty() {
            return Err(Error::GcAborted(roots.bad.join("; ")));
        }
        progress.start(Phase::MARK, None);
        let mut marked: HashSet<ObjectId> = HashSet::new();
        self.mark(roots.refs, &mut marked, progress)?;
        rep.kept_for_reflog = self.mark(roots.reflog, &mut marked, progress)?;
        let files = self.store.list()?;
        let young_since = SystemTime::now()
            .checked_sub(self.object_grace(options)?)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let young: Roots = files
            .iter()
            .filter_map(|f| match f {
                StoreFile::Object(id) if !marked.contains(id) => Some(id),
                _ => None,
            })
            .filter(|id| {
                std::fs::symlink_metadata(self.store.path(id))
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t > young_since)
            })
            .filter_map(|id| Some((*id, self.expect_of(id)?)))
            .collect();
        // What a young object refers to is kept with it; a child that is already missing
        // or corrupt is kept as it is.
        let mut walk = Reachable::beyond(self, young, std::mem::take(&mut marked));
        rep.kept_recent = walk.by_ref().flatten().count() as u64;
        marked = walk.into_seen();
        progress.finish();
        let mut garbage: Vec<ObjectId> = Vec::new();
        for f in files {
            match f {
                StoreFile::Object(id) => {
                    rep.objects_before += 1;
                    if !marked.contains(&id) {
                        garbage.push(id);
                    }
                }
                StoreFile::Temp(p) => {
                    self.store.remove_file(&p)?;
                    rep.temp_files_removed += 1;
                }
                StoreFile::Stray(_) => {}
            }
        }
        rep.objects_kept = rep.objects_before - garbage.len() as u64;
        // Order the garbage referrers-first (Kahn's algorithm on the garbage subgraph).
        let gset: HashSet<ObjectId> = garbage.iter().copied().collect();
        let mut edges: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
        let mut indeg: HashMap<ObjectId, usize> = garbage.iter().map(|g| (*g, 0)).collect();
        for g in &garbage {
            let Some(expect) = self.expect_of(g).filter(|e| *e != Expect::Chunk) else {
                continue;
            };
            let kids: Vec<ObjectId> = children_of(self, g, expect)
                .map(|v| {
                    v.into_iter()
                        .map(|(c, _)| c)
                        .filter(|c| gset.contains(c) && c != g)
                        .collect()
                })
                .unwrap_or_default();
            for k in &kids {
                *indeg.entry(*k).or_default() += 1;
            }
            edges.insert(*g, kids);
        }
        let mut queue: VecDeque<ObjectId> =
            garbage.iter().filter(|g| indeg[*g] == 0).copied().collect();
        let mut order = Vec::with_capacity(garbage.len());
        let mut done: HashSet<ObjectId> = HashSet::new();
        while let Some(g) = queue.pop_front() {
            if !done.insert(g) {
                continue;
            }
            order.push(g);
            for k in edges.get(&g).map(|v| v.as_slice()).unwrap_or_default() {
                if let Some(d) = indeg.get_mut(k) {
                    *d = d.saturating_sub(1);
                    if *d == 0 {
                        queue.push_back(*k);
                    }
                }
            }
        }
        order.extend(garbage.iter().filter(|g| !done.contains(*g)).copied());
        progress.start(Phase::SWEEP, Some(order.len() as u64));
        for g in order {
            let size = std::fs::symlink_metadata(self.store.path(&g))
                .map(|m| m.len())
                .unwrap_or(0);
            if self.store.remove(&g)? {
                rep.objects_removed += 1;
                rep.bytes_removed += size;
            }
            progress.advance(1);
        }
        self.store.sync_all_dirs()?;
        progress.finish();
        Ok(rep)
    }
}
