//! Checking a commit out into a directory, and cloning a volume from a commit.
//!
//! The target is made equal to the commit's tree by touching only what differs: entries
//! that are not in the tree are removed; files whose stat matches the index (or, without an
//! index entry, whose content hashes to the wanted id) keep their data and at most get
//! their owner, mode or mtime fixed; everything else is written to a temporary file in the
//! same directory and renamed into place. Symlinks in the target are never followed. The
//! file system is synced before the new index is saved, so a following commit reads nothing.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD, UTIME_OMIT};

use crate::chunker::{store_content, Sink};
use crate::fsutil::temp_name;
use crate::id::{CommitId, ObjectId, VolumeKey};
use crate::index::{Index, IndexEntry, StatKey};
use crate::object::{EntryKind, Tree, TreeEntry};
use crate::progress::{NoProgress, Phase, Progress};
use crate::refs::{HeadRef, RefKind};
use crate::repo::{io_err, Error, Repository, Result, DEFAULT_BRANCH};
use crate::snapshot::{join_rel, open_regular};

/// What a checkout did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutStats {
    /// Regular files (re)written.
    pub files_written: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Regular files already holding the right content.
    pub files_unchanged: u64,
    /// Of those, files that had to be read and hashed because the index did not vouch for them.
    pub files_verified: u64,
    /// Symlinks (re)created.
    pub symlinks_written: u64,
    /// Directories created.
    pub dirs_created: u64,
    /// Entries removed because the commit does not have them (a directory counts once).
    pub removed: u64,
    /// Entries whose owner, mode or mtime alone were fixed.
    pub metadata_updated: u64,
}

/// Converts nanoseconds since the epoch to a `SystemTime`.
pub(crate) fn system_time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn timespec(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

/// Wanted metadata of one entry.
#[derive(Clone, Copy)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
}

impl From<&TreeEntry> for Meta {
    fn from(e: &TreeEntry) -> Meta {
        Meta {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime_ns: e.mtime_ns,
        }
    }
}

fn remove_any(path: &Path, md: &fs::Metadata) -> Result<()> {
    let r = if md.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

fn lstat(path: &Path) -> Result<fs::Metadata> {
    fs::symlink_metadata(path).map_err(io_err("stat", path))
}

struct Checkout<'a> {
    repo: &'a Repository,
    old: &'a Index,
    new: Index,
    stats: CheckoutStats,
    progress: &'a dyn Progress,
}

impl Checkout<'_> {
    fn record(&mut self, rel: Vec<u8>, path: &Path, kind: EntryKind, id: ObjectId) -> Result<()> {
        let stat = StatKey::of(&lstat(path)?);
        self.new.entries.insert(
            rel,
            IndexEntry {
                kind,
                stat,
                id,
                racy: false,
            },
        );
        Ok(())
    }

    /// Fixes owner (when root), mode (not for symlinks) and mtime; returns whether anything changed.
    fn apply_meta(
        &self,
        path: &Path,
        md: &fs::Metadata,
        want: Meta,
        symlink: bool,
    ) -> Result<bool> {
        let mut changed = false;
        if self.repo.as_root && (md.uid() != want.uid || md.gid() != want.gid) {
            std::os::unix::fs::lchown(path, Some(want.uid), Some(want.gid))
                .map_err(io_err("chown", path))?;
            changed = true;
        }
        if !symlink && (changed || md.mode() & 0o7777 != want.mode) {
            fs::set_permissions(path, Permissions::from_mode(want.mode))
                .map_err(io_err("chmod", path))?;
            changed = true;
        }
        let mtime = StatKey::of(md).mtime_ns;
        if mtime != want.mtime_ns {
            let ts = Timestamps {
                last_access: Timespec {
                    tv_sec: 0,
                    tv_nsec: UTIME_OMIT,
                },
                last_modification: timespec(want.mtime_ns),
            };
            rustix::fs::utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err("set mtime of", path)(e.into()))?;
            changed = true;
        }
        Ok(changed)
    }

    fn write_file(&mut self, dir: &Path, path: &Path, e: &TreeEntry) -> Result<()> {
        let tmp = dir.join(temp_name());
        let result = (|| {
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?;
            let chunks: Vec<ObjectId> = match e.kind {
                EntryKind::ChunkedFile => self
                    .repo
                    .read_file_object(&e.id)?
                    .chunks
                    .iter()
                    .map(|c| c.id)
                    .collect(),
                _ => vec![e.id],
            };
            let mut written = 0u64;
            for id in chunks {
                let data = self.repo.store.read(&id)?;
                write_sparse(&f, written, &data).map_err(io_err("write", &tmp))?;
                written += data.len() as u64;
            }
            if written != e.size {
                return Err(Error::Store(crate::store::StoreError::Corrupt {
                    id: e.id,
                    why: format!("content is {written} bytes, tree says {}", e.size),
                }));
            }
            f.set_len(written).map_err(io_err("truncate", &tmp))?;
            if self.repo.as_root {
                std::os::unix::fs::fchown(&f, Some(e.uid), Some(e.gid))
                    .map_err(io_err("chown", &tmp))?;
            }
            f.set_permissions(Permissions::from_mode(e.mode))
                .map_err(io_err("chmod", &tmp))?;
            f.set_times(FileTimes::new().set_modified(system_time(e.mtime_ns)))
                .map_err(io_err("set mtime of", &tmp))?;
            drop(f);
            fs::rename(&tmp, path).map_err(io_err("rename", path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        self.stats.files_written += 1;
        self.stats.bytes_written += e.size;
        Ok(())
    }

    fn write_symlink(
        &mut self,
        dir: &Path,
        path: &Path,
        target: &[u8],
        e: &TreeEntry,
    ) -> Result<()> {
        let tmp = dir.join(temp_name());
        let result = (|| {
            std::os::unix::fs::symlink(OsStr::from_bytes(target), &tmp)
                .map_err(io_err("create symlink", &tmp))?;
            let md = lstat(&tmp)?;
            self.apply_meta(&tmp, &md, Meta::from(e), true)?;
            fs::rename(&tmp, path).map_err(io_err("rename", path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        self.stats.symlinks_written += 1;
        Ok(())
    }

    fn same_file_content(
        &mut self,
        path: &Path,
        rel: &[u8],
        md: &fs::Metadata,
        e: &TreeEntry,
    ) -> Result<bool> {
        if !md.is_file() || md.len() != e.size {
            return Ok(false);
        }
        let stat = StatKey::of(md);
        if self
            .old
            .get(rel)
            .is_some_and(|ie| ie.kind == e.kind && ie.id == e.id && ie.matches(&stat))
        {
            return Ok(true);
        }
        self.stats.files_verified += 1;
        let Some((f, _)) = open_regular(path)? else {
            return Ok(false);
        };
        let c = store_content(f, path, &Sink::Hash { trees: None }, &NoProgress)?;
        Ok(c.kind == e.kind && c.id == e.id)
    }

    fn dir(&mut self, dir: &Path, rel: &[u8], tree: &Tree) -> Result<()> {
        let mut actual: HashMap<Vec<u8>, fs::Metadata> = HashMap::new();
        for ent in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let ent = ent.map_err(io_err("list", dir))?;
            let md = match fs::symlink_metadata(ent.path()) {
                Ok(md) => md,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat", &ent.path())(e)),
            };
            actual.insert(ent.file_name().into_vec(), md);
        }
        for (name, md) in &actual {
            if tree.get(name).is_none() {
                remove_any(&dir.join(OsStr::from_bytes(name)), md)?;
                self.stats.removed += 1;
            }
        }
        for e in &tree.entries {
            let path = dir.join(OsStr::from_bytes(&e.name));
            let rel = join_rel(rel, &e.name);
            let act = actual.get(&e.name);
            self.progress.advance(1);
            match e.kind {
                EntryKind::Dir => {
                    match act {
                        Some(md) if md.is_dir() => {}
                        other => {
                            if let Some(md) = other {
                                remove_any(&path, md)?;
                            }
                            fs::create_dir(&path).map_err(io_err("create", &path))?;
                            self.stats.dirs_created += 1;
                        }
                    }
                    let sub = self.repo.read_tree(&e.id)?;
                    self.dir(&path, &rel, &sub)?;
                    let md = lstat(&path)?;
                    self.apply_meta(&path, &md, Meta::from(e), false)?;
                    self.record(rel, &path, EntryKind::Dir, e.id)?;
                }
                EntryKind::File | EntryKind::ChunkedFile => {
                    let same = match act {
                        Some(md) => self.same_file_content(&path, &rel, md, e)?,
                        None => false,
                    };
                    let mut untouched = None;
                    if same {
                        self.stats.files_unchanged += 1;
                        if let Some(md) = act {
                            if self.apply_meta(&path, md, Meta::from(e), false)? {
                                self.stats.metadata_updated += 1;
                            } else {
                                untouched = Some(StatKey::of(md));
                            }
                        }
                    } else {
                        if let Some(md) = act.filter(|m| m.is_dir()) {
                            remove_any(&path, md)?;
                        }
                        self.write_file(dir, &path, e)?;
                    }
                    match untouched {
                        // Nothing was done to it: its stat is the one just read.
                        Some(stat) => {
                            self.new.entries.insert(
                                rel,
                                IndexEntry {
                                    kind: e.kind,
                                    stat,
                                    id: e.id,
                                    racy: false,
                                },
                            );
                        }
                        None => self.record(rel, &path, e.kind, e.id)?,
                    }
                }
                EntryKind::Symlink => {
                    let target = self.repo.store.read(&e.id)?;
                    let same = act.is_some_and(|m| m.file_type().is_symlink())
                        && fs::read_link(&path)
                            .ok()
                            .map(|t| t.into_os_string().into_vec())
                            .as_deref()
                            == Some(&target[..]);
                    if same {
                        if let Some(md) = act {
                            if self.apply_meta(&path, md, Meta::from(e), true)? {
                                self.stats.metadata_updated += 1;
                            }
                        }
                    } else {
                        if let Some(md) = act.filter(|m| m.is_dir()) {
                            remove_any(&path, md)?;
                        }
                        self.write_symlink(dir, &path, &target, e)?;
                    }
                    self.record(rel, &path, EntryKind::Symlink, e.id)?;
                }
            }
        }
        Ok(())
    }
}

impl Repository {
    /// Makes the directory `target` equal to `commit`'s tree (content, modes, symlinks,
    /// mtimes, and owners when running as root), touching only what differs, then records the
    /// result in `volume`'s index. Moves no ref: follow with [`Repository::set_head_branch`]
    /// (checkout of a branch), [`Repository::set_branch`] (reset --hard) or
    /// [`Repository::set_head_detached`]. Uncommitted changes in `target` are discarded (check
    /// [`Repository::status`] first to refuse). Containers must not write to `target` meanwhile.
    pub fn checkout(
        &self,
        volume: &VolumeKey,
        commit: CommitId,
        target: &Path,
        progress: &dyn Progress,
    ) -> Result<CheckoutStats> {
        let _repo = self.lock_shared()?;
        let _vol = self.lock_volume(volume)?;
        self.checkout_locked(volume, commit, target, progress)
    }

    fn checkout_locked(
        &self,
        volume: &VolumeKey,
        commit: CommitId,
        target: &Path,
        progress: &dyn Progress,
    ) -> Result<CheckoutStats> {
        let c = self.read_commit(commit)?;
        let tree_id = c.tree().ok_or(Error::NotATree(commit))?;
        match fs::symlink_metadata(target) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(Error::NotADirectory {
                    path: target.to_path_buf(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(target).map_err(io_err("create", target))?;
            }
            Err(e) => return Err(io_err("stat", target)(e)),
        }
        let old = self.load_index(volume)?;
        let tree = self.read_tree(&tree_id)?;
        progress.start(Phase::CHECKOUT, None);
        let mut co = Checkout {
            repo: self,
            old: &old,
            new: Index::default(),
            stats: CheckoutStats::default(),
            progress,
        };
        co.dir(target, b"", &tree)?;
        let md = lstat(target)?;
        let root = Meta {
            mode: c.root.mode,
            uid: c.root.uid,
            gid: c.root.gid,
            mtime_ns: c.root.mtime_ns,
        };
        co.apply_meta(target, &md, root, false)?;
        co.record(Vec::new(), target, EntryKind::Dir, tree_id)?;
        progress.finish();
        let f = File::open(target).map_err(io_err("open", target))?;
        rustix::fs::syncfs(&f).map_err(|e| io_err("sync", target)(e.into()))?;
        co.new.save(&self.index_path(volume))?;
        Ok(co.stats)
    }

    /// Creates volume `to` from `commit` (normally a commit of `from`): checks the commit out
    /// into `target` (an empty or new directory) and points `to`'s `master` at it. The new
    /// volume shares every object with the old one.
    pub fn clone_volume(
        &self,
        from: &VolumeKey,
        commit: CommitId,
        to: &VolumeKey,
        target: &Path,
        progress: &dyn Progress,
    ) -> Result<CheckoutStats> {
        if from == to || self.refs.has_volume(to) {
            return Err(Error::VolumeExists(*to));
        }
        let _repo = self.lock_shared()?;
        let _vol = self.lock_volume(to)?;
        let stats = self.checkout_locked(to, commit, target, progress)?;
        self.refs.set(to, RefKind::Branch, DEFAULT_BRANCH, commit)?;
        self.refs
            .set_head(to, &HeadRef::Branch(DEFAULT_BRANCH.to_string()))?;
        let message = format!("clone: from {}", commit.short(12));
        self.log_move(to, DEFAULT_BRANCH, None, Some(commit), &message)?;
        Ok(stats)
    }
}

/// The block size holes are kept at: a block of zeros in a file is not written, so the
/// filesystem leaves a hole there (a sparse file checks out sparse).
const HOLE_BLOCK: u64 = 4096;

/// Writes `data` at `offset` in `file`, skipping every piece of it that is all zeros within
/// one [`HOLE_BLOCK`]-aligned block of the file; runs of other pieces are written at once.
/// The caller sets the file's length after.
fn write_sparse(file: &fs::File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut run_start = None;
    let mut at = 0usize;
    while at < data.len() {
        let to_boundary = (HOLE_BLOCK - (offset + at as u64) % HOLE_BLOCK) as usize;
        let end = (at + to_boundary).min(data.len());
        if data[at..end].iter().all(|b| *b == 0) {
            if let Some(start) = run_start.take() {
                file.write_all_at(&data[start..at], offset + start as u64)?;
            }
        } else if run_start.is_none() {
            run_start = Some(at);
        }
        at = end;
    }
    if let Some(start) = run_start {
        file.write_all_at(&data[start..], offset + start as u64)?;
    }
    Ok(())
}
