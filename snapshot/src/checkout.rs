//! Checking a commit out into a directory, and cloning a volume from a commit.
//!
//! The target is made equal to the commit's tree by touching only what differs: entries
//! that are not in the tree are removed; files whose stat matches the index (or, without an
//! index entry, whose content hashes to the wanted id) keep their data and at most get
//! their owner, mode or mtime fixed; everything else is written to a temporary file in the
//! same directory and renamed into place. Fifos, sockets and device nodes are recreated with
//! `mknodat`, hard links with `linkat` from the group's first name. Everything is done
//! relative to directory descriptors (directories opened with `O_NOFOLLOW | O_DIRECTORY`,
//! entries changed with `*at` calls that do not follow), so any depth works and a symlink in
//! the target, even one swapped in for a directory meanwhile, is never followed. The file
//! system is synced before the new index is saved, so a following commit reads nothing.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, FileTimes, Permissions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, UTIME_OMIT};

use crate::chunker::{store_content, Sink};
use crate::dirfd::{
    chmod_nofollow, errno_err, fstat, list_names, lstat_at, open_below, open_dir, open_regular_at,
    open_root, remove_all_at, short_path, Lstat,
};
use crate::fsutil::temp_name;
use crate::id::{CommitId, ObjectId, VolumeKey};
use crate::index::{Index, IndexEntry, StatKey};
use crate::object::{ChunkRef, EntryKind, SpecialNode, Tree, TreeEntry};
use crate::parallel::map_parallel;
use crate::progress::{NoProgress, Phase, Progress};
use crate::refs::{validate_ref_name, HeadRef, RefKind};
use crate::repo::{io_err, Error, Repository, Result, DEFAULT_BRANCH};
use crate::snapshot::join_rel;

/// A test's hook into the checkout (see [`BEFORE_ENTER`]).
#[cfg(test)]
pub(crate) type EnterHook = Box<dyn Fn(&[u8])>;

#[cfg(test)]
thread_local! {
    /// Called with a directory's relative path just before the checkout enters it, so a test
    /// can change the target at that moment.
    pub(crate) static BEFORE_ENTER: std::cell::RefCell<Option<EnterHook>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
thread_local! {
    /// How many names the checkouts on this thread have stat'ed in the target's directories.
    pub(crate) static NAMES_LOOKED_AT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// What a checkout did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutStats {
    /// Regular files (re)written.
    pub files_written: u64,
    /// Of those, files whose differing chunks alone were rewritten, in place.
    pub files_patched: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Regular files already holding the right content.
    pub files_unchanged: u64,
    /// Of those, files that had to be read and hashed because the index did not vouch for them.
    pub files_verified: u64,
    /// Symlinks (re)created.
    pub symlinks_written: u64,
    /// Fifos, sockets and device nodes (re)created.
    pub special_files_written: u64,
    /// Hard links (re)made.
    pub hard_links_written: u64,
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

fn timestamps(mtime_ns: i64) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: timespec(mtime_ns),
    }
}

fn special_file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::Socket => FileType::Socket,
        EntryKind::CharDevice => FileType::CharacterDevice,
        EntryKind::BlockDevice => FileType::BlockDevice,
        _ => FileType::Fifo,
    }
}

fn owner(want: Meta) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(want.uid)), Some(Gid::from_raw(want.gid)))
}

struct Checkout<'a> {
    repo: &'a Repository,
    /// The target, for error messages.
    root: &'a Path,
    /// The target, open.
    root_fd: BorrowedFd<'a>,
    /// Inodes of kept files with several links: a second entry finding one is rewritten
    /// (unless it is a hard link entry), so names the commit keeps apart are not linked.
    claimed: HashSet<u64>,
    old: &'a Index,
    new: Index,
    stats: CheckoutStats,
    progress: &'a dyn Progress,
    /// Whether the target is known to hold the base tree, so that a directory whose tree is
    /// the same in both is left alone ([`Repository::checkout_from`]).
    from_base: bool,
    /// The directories left alone: their old index entries are kept.
    kept_dirs: HashSet<Vec<u8>>,
    /// Set when a hard link turns up in a checkout from a base: its group may span a
    /// directory left alone, so the checkout is done again in full.
    needs_full: bool,
}

impl Checkout<'_> {
    /// Copies the old index's entries below the directories left alone into the new index:
    /// their files are as the old index saw them.
    fn keep_entries_of_kept_dirs(&mut self) {
        if self.kept_dirs.is_empty() {
            return;
        }
        for (rel, entry) in &self.old.entries {
            let below_kept = rel
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'/')
                .any(|(i, _)| self.kept_dirs.contains(&rel[..i]));
            if below_kept {
                self.new.entries.insert(rel.clone(), *entry);
            }
        }
    }

    /// The names of directory `rel` to stat in a checkout from `base`, which the directory
    /// holds: those whose entry `tree` removes or changes, every directory and hard link
    /// (they are always entered or checked), and any the old index does not cover.
    fn names_to_look_at(&self, rel: &[u8], tree: &Tree, base: &Tree) -> Vec<Vec<u8>> {
        let removed = base
            .entries
            .iter()
            .filter(|b| tree.get(&b.name).is_none())
            .map(|b| b.name.clone());
        let differing = tree
            .entries
            .iter()
            .filter(|e| {
                self.kept_as_in_base(&join_rel(rel, &e.name), e, base)
                    .is_none()
            })
            .map(|e| e.name.clone());
        removed.chain(differing).collect()
    }

    /// The old index entry of `rel`, if entry `e` of the wanted tree is the same as in
    /// `base` (which the target holds) and needs nothing done: a file, symlink or special
    /// file, not a directory or hard link.
    fn kept_as_in_base(&self, rel: &[u8], e: &TreeEntry, base: &Tree) -> Option<IndexEntry> {
        if matches!(e.kind, EntryKind::Dir | EntryKind::HardLink) || base.get(&e.name) != Some(e) {
            return None;
        }
        self.old
            .entries
            .get(rel)
            .filter(|old| old.kind == e.kind && old.id == e.id)
            .copied()
    }

    fn record_stat(&mut self, rel: Vec<u8>, stat: StatKey, kind: EntryKind, id: ObjectId) {
        self.new.entries.insert(
            rel,
            IndexEntry {
                kind,
                stat,
                id,
                racy: false,
            },
        );
    }

    fn record(
        &mut self,
        rel: Vec<u8>,
        dir: BorrowedFd<'_>,
        name: &[u8],
        kind: EntryKind,
        id: ObjectId,
    ) -> Result<()> {
        let st = lstat_at(dir, name).map_err(errno_err("stat", self.root, &rel))?;
        self.record_stat(rel, st.key, kind, id);
        Ok(())
    }

    fn remove(&self, dir: BorrowedFd<'_>, name: &[u8], rel: &[u8], st: &Lstat) -> Result<()> {
        remove_all_at(dir, name, st.is_dir()).map_err(errno_err("remove", self.root, rel))
    }

    /// Fixes owner (when root), mode (not for symlinks) and mtime of `name` in `dir`, never
    /// following it; returns whether anything changed.
    #[allow(clippy::too_many_arguments)]
    fn apply_meta_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        st: &Lstat,
        want: Meta,
        symlink: bool,
    ) -> Result<bool> {
        let mut changed = false;
        if self.repo.as_root && (st.key.uid != want.uid || st.key.gid != want.gid) {
            let (uid, gid) = owner(want);
            rustix::fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno_err("chown", self.root, rel))?;
            changed = true;
        }
        if !symlink && (changed || st.key.mode & 0o7777 != want.mode) {
            chmod_nofollow(dir, name, want.mode).map_err(errno_err("chmod", self.root, rel))?;
            changed = true;
        }
        if st.key.mtime_ns != want.mtime_ns {
            rustix::fs::utimensat(
                dir,
                name,
                &timestamps(want.mtime_ns),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno_err("set mtime of", self.root, rel))?;
            changed = true;
        }
        Ok(changed)
    }

    /// Like [`Checkout::apply_meta_at`], through an open file or directory.
    fn apply_meta_fd(
        &self,
        fd: BorrowedFd<'_>,
        rel: &[u8],
        st: &Lstat,
        want: Meta,
    ) -> Result<bool> {
        let mut changed = false;
        if self.repo.as_root && (st.key.uid != want.uid || st.key.gid != want.gid) {
            let (uid, gid) = owner(want);
            rustix::fs::fchown(fd, uid, gid).map_err(errno_err("chown", self.root, rel))?;
            changed = true;
        }
        if changed || st.key.mode & 0o7777 != want.mode {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(want.mode))
                .map_err(errno_err("chmod", self.root, rel))?;
            changed = true;
        }
        if st.key.mtime_ns != want.mtime_ns {
            rustix::fs::futimens(fd, &timestamps(want.mtime_ns)).map_err(errno_err(
                "set mtime of",
                self.root,
                rel,
            ))?;
            changed = true;
        }
        Ok(changed)
    }

    /// Writes a temporary file in `dir` with `fill`, then renames it over `name`.
    fn replace_with(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        fill: impl FnOnce(&str) -> Result<()>,
    ) -> Result<()> {
        let tmp = temp_name();
        let result = fill(&tmp).and_then(|()| {
            rustix::fs::renameat(dir, tmp.as_str(), dir, name)
                .map_err(errno_err("rename", self.root, rel))
        });
        if result.is_err() {
            let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
        }
        result
    }

    /// Writes file entry `e` as `name` in `dir`: only the chunks that differ from `patch`
    /// (the chunk list the file is known to hold, see [`FileWrite::Patch`]) in place, else
    /// all of it to a temporary file renamed over it. Returns the bytes written. Touches
    /// nothing of the checkout's own state, so several run at once
    /// ([`Checkout::write_files`]).
    fn write_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        e: &TreeEntry,
        how: FileWrite,
    ) -> Result<u64> {
        if let FileWrite::Patch(held) = how {
            if let Some(written) = self.patch_file(dir, name, rel, e, &held)? {
                return Ok(written);
            }
        }
        let shown = short_path(self.root, rel);
        self.replace_with(dir, name, rel, |tmp| {
            let fd = rustix::fs::openat(
                dir,
                tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(errno_err("create", self.root, rel))?;
            let f = File::from(fd);
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
                write_sparse(&f, written, &data).map_err(io_err("write", &shown))?;
                written += data.len() as u64;
            }
            if written != e.size {
                return Err(Error::Store(crate::store::StoreError::Corrupt {
                    id: e.id,
                    why: format!("content is {written} bytes, tree says {}", e.size),
                }));
            }
            f.set_len(written).map_err(io_err("truncate", &shown))?;
            self.finish_file(&f, e, &shown)
        })?;
        Ok(e.size)
    }

    /// Gives the written file `f` entry `e`'s owner (when root), mode and mtime.
    fn finish_file(&self, f: &File, e: &TreeEntry, shown: &Path) -> Result<()> {
        if self.repo.as_root {
            std::os::unix::fs::fchown(f, Some(e.uid), Some(e.gid))
                .map_err(io_err("chown", shown))?;
        }
        f.set_permissions(Permissions::from_mode(e.mode))
            .map_err(io_err("chmod", shown))?;
        f.set_times(FileTimes::new().set_modified(system_time(e.mtime_ns)))
            .map_err(io_err("set mtime of", shown))
    }

    /// Rewrites, in place, the chunks of the file `name` in `dir` that differ between the
    /// content `held` it is known to hold and entry `e`'s (all of a small file, which is one
    /// chunk); returns the bytes written, or `None` (nothing touched) if the file is no
    /// longer the one the index vouched for (not a regular file with one name, or another
    /// size). A crash midway leaves the file torn but its stat changed, so the checkout done
    /// again at restart rewrites it.
    fn patch_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        e: &TreeEntry,
        held: &Held,
    ) -> Result<Option<u64>> {
        let shown = short_path(self.root, rel);
        let (Some(held_chunks), Some(wanted)) = (
            self.chunks_of(held.kind, &held.id, held.size)?,
            self.chunks_of(e.kind, &e.id, e.size)?,
        ) else {
            return Ok(None);
        };
        let fd = match rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Gone or swapped for a symlink; or not writable in place (a read-only file when
            // not root, a program running from it): written whole instead.
            Err(
                rustix::io::Errno::LOOP
                | rustix::io::Errno::NOENT
                | rustix::io::Errno::ACCESS
                | rustix::io::Errno::PERM
                | rustix::io::Errno::TXTBSY,
            ) => return Ok(None),
            Err(err) => return Err(errno_err("open", self.root, rel)(err)),
        };
        let st = fstat(fd.as_fd()).map_err(errno_err("stat", self.root, rel))?;
        if !st.is_file() || st.nlink != 1 || st.key.size != held.size {
            return Ok(None);
        }
        let f = File::from(fd);
        let mut kept = held_chunks.iter().scan(0u64, |at, c| {
            let start = *at;
            *at += u64::from(c.len);
            Some((start, c))
        });
        let mut next_kept = kept.next();
        let (mut at, mut written) = (0u64, 0u64);
        for c in &wanted {
            while next_kept.is_some_and(|(start, _)| start < at) {
                next_kept = kept.next();
            }
            let same = next_kept.is_some_and(|(start, k)| start == at && k == c);
            if !same {
                let data = self.repo.store.read(&c.id)?;
                write_in_place(&f, at, &data).map_err(io_err("write", &shown))?;
                written += data.len() as u64;
            }
            at += u64::from(c.len);
        }
        if at != e.size {
            return Err(Error::Store(crate::store::StoreError::Corrupt {
                id: e.id,
                why: format!("content is {at} bytes, tree says {}", e.size),
            }));
        }
        f.set_len(at).map_err(io_err("truncate", &shown))?;
        self.finish_file(&f, e, &shown)?;
        Ok(Some(written))
    }

    /// Writes the file entries of `pending` (in `dir`, at their paths below the root), on up to
    /// the repository's threads at once, then records each in the index, in order. The files
    /// of one directory do not depend on each other; a hard link or a subdirectory that could
    /// name one of them is only handled after this returns. On an error, the files not yet
    /// written are left as they were and the first error is returned.
    fn write_files(
        &mut self,
        dir: BorrowedFd<'_>,
        pending: &mut Vec<(Vec<u8>, &TreeEntry, FileWrite)>,
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let jobs = std::mem::take(pending);
        let this = &*self;
        let written = map_parallel(
            &jobs,
            self.repo.threads,
            || (),
            |_, (rel, e, how)| this.write_file(dir, &e.name, rel, e, *how),
        )?;
        for ((rel, e, how), written) in jobs.into_iter().zip(written) {
            self.stats.files_written += 1;
            self.stats.bytes_written += written;
            if matches!(how, FileWrite::Patch(_)) && written < e.size {
                self.stats.files_patched += 1;
            }
            self.record(rel, dir, &e.name, e.kind, e.id)?;
        }
        Ok(())
    }

    fn write_symlink(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        target: &[u8],
        e: &TreeEntry,
    ) -> Result<()> {
        self.replace_with(dir, name, rel, |tmp| {
            rustix::fs::symlinkat(target, dir, tmp).map_err(errno_err(
                "create symlink",
                self.root,
                rel,
            ))?;
            let st = lstat_at(dir, tmp.as_bytes()).map_err(errno_err("stat", self.root, rel))?;
            self.apply_meta_at(dir, tmp.as_bytes(), rel, &st, Meta::from(e), true)?;
            Ok(())
        })?;
        self.stats.symlinks_written += 1;
        Ok(())
    }

    fn write_special(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        node: SpecialNode,
        e: &TreeEntry,
    ) -> Result<()> {
        let file_type = special_file_type(node.kind);
        let dev = rustix::fs::makedev(node.major, node.minor);
        self.replace_with(dir, name, rel, |tmp| {
            rustix::fs::mknodat(dir, tmp, file_type, Mode::from_raw_mode(0o600), dev)
                .map_err(errno_err("create special file", self.root, rel))?;
            let st = lstat_at(dir, tmp.as_bytes()).map_err(errno_err("stat", self.root, rel))?;
            // mknod applies the umask: the mode is fixed here.
            self.apply_meta_at(dir, tmp.as_bytes(), rel, &st, Meta::from(e), false)?;
            Ok(())
        })?;
        self.stats.special_files_written += 1;
        Ok(())
    }

    /// Makes `name` in `dir` another name of the file checked out before at the path that
    /// the entry's chunk holds (`linkat` from that file's directory, then a rename).
    fn hard_link(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: Vec<u8>,
        act: Option<&Lstat>,
        e: &TreeEntry,
    ) -> Result<()> {
        let first = self.repo.store.read(&e.id)?;
        let corrupt =
            |why: String| Error::Store(crate::store::StoreError::Corrupt { id: e.id, why });
        let Some(first_entry) = self.new.entries.get(&first).filter(|ie| ie.kind.is_file()) else {
            let shown = short_path(self.root, &first);
            return Err(corrupt(format!(
                "hard link to {}, which is not a file checked out before it",
                shown.display()
            )));
        };
        let (first_kind, first_id) = (first_entry.kind, first_entry.id);
        let ino = first_entry.stat.ino;
        let same = act.is_some_and(|st| st.is_file() && st.key.ino == ino);
        if !same {
            if let Some(st) = act.filter(|st| st.is_dir()) {
                self.remove(dir, name, &rel, st)?;
            }
            let (first_dir, first_name) = match first.iter().rposition(|b| *b == b'/') {
                Some(i) => (&first[..i], &first[i + 1..]),
                None => (&b""[..], &first[..]),
            };
            let from = open_below(self.root_fd, first_dir)
                .map_err(errno_err("open", self.root, first_dir))?;
            self.replace_with(dir, name, &rel, |tmp| {
                rustix::fs::linkat(&from, first_name, dir, tmp, AtFlags::empty())
                    .map_err(errno_err("hard link", self.root, &rel))
            })?;
            self.stats.hard_links_written += 1;
        }
        let st = lstat_at(dir, name).map_err(errno_err("stat", self.root, &rel))?;
        // A new link changed the inode's change time: the first name's entry follows.
        self.record_stat(first, st.key, first_kind, first_id);
        self.record_stat(rel, st.key, EntryKind::HardLink, e.id);
        Ok(())
    }

    /// How to write entry `e` over the file at `rel` (stat `st`): in place, only the chunks
    /// that differ, where the index vouches for what the file holds and it has one name;
    /// else whole, to a temporary file renamed over it.
    fn how_to_write(&self, rel: &[u8], st: &Lstat, e: &TreeEntry) -> FileWrite {
        let held = self.old.get(rel).filter(|ie| {
            ie.kind.is_file()
                && e.kind.is_file()
                && st.is_file()
                && st.nlink == 1
                && ie.matches(&st.key)
        });
        match held {
            Some(ie) => FileWrite::Patch(Held {
                kind: ie.kind,
                id: ie.id,
                size: ie.stat.size,
            }),
            None => FileWrite::Whole,
        }
    }

    /// The chunks of file content `id` of `kind` and `size` bytes: a chunked file's list,
    /// or a small file's one chunk (`None` if it is too large to be one).
    fn chunks_of(
        &self,
        kind: EntryKind,
        id: &ObjectId,
        size: u64,
    ) -> Result<Option<Vec<ChunkRef>>> {
        Ok(match kind {
            EntryKind::ChunkedFile => Some(self.repo.read_file_object(id)?.chunks),
            _ if size == 0 => Some(Vec::new()),
            _ => u32::try_from(size)
                .ok()
                .map(|len| vec![ChunkRef { id: *id, len }]),
        })
    }

    fn same_file_content(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        rel: &[u8],
        st: &Lstat,
        e: &TreeEntry,
    ) -> Result<bool> {
        if !st.is_file() || st.key.size != e.size {
            return Ok(false);
        }
        // Where the index vouches for the file, it says what the file holds: the same
        // content has the same kind and id, so a different one needs no reading.
        if let Some(ie) = self.old.get(rel).filter(|ie| ie.matches(&st.key)) {
            return Ok(ie.kind == e.kind && ie.id == e.id);
        }
        self.stats.files_verified += 1;
        let shown = short_path(self.root, rel);
        let opened = open_regular_at(dir, name).map_err(|e| io_err("open", &shown)(e.into()))?;
        let Some((f, _)) = opened else {
            return Ok(false);
        };
        let c = store_content(f, &shown, &Sink::Hash { trees: None }, &NoProgress)?;
        Ok(c.kind == e.kind && c.id == e.id)
    }

    /// Makes the open directory `dir` (`rel` below the target) equal to `tree`; `base` is
    /// the base tree of the same directory in a checkout from a base, if it has one there.
    fn dir(
        &mut self,
        dir: BorrowedFd<'_>,
        rel: &[u8],
        tree: &Tree,
        base: Option<&Tree>,
    ) -> Result<()> {
        let mut actual: HashMap<Vec<u8>, Lstat> = HashMap::new();
        let base = base.filter(|_| self.from_base);
        let names = match base {
            // The directory holds exactly `base` (the caller's status found no change), so
            // only the names whose entry differs need a look, not the whole listing.
            Some(base) => self.names_to_look_at(rel, tree, base),
            None => list_names(dir).map_err(errno_err("list", self.root, rel))?,
        };
        #[cfg(test)]
        NAMES_LOOKED_AT.with(|n| n.set(n.get() + names.len()));
        for name in names {
            match lstat_at(dir, &name) {
                Ok(st) => {
                    actual.insert(name, st);
                }
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(errno_err("stat", self.root, &join_rel(rel, &name))(e)),
            }
        }
        for (name, st) in &actual {
            if tree.get(name).is_none() {
                self.remove(dir, name, &join_rel(rel, name), st)?;
                self.stats.removed += 1;
            }
        }
        // Files to write, written together before the next entry that could depend on them
        // (a subdirectory or a hard link) and at the end.
        let mut pending: Vec<(Vec<u8>, &TreeEntry, FileWrite)> = Vec::new();
        for e in &tree.entries {
            let name = e.name.as_slice();
            let rel = join_rel(rel, name);
            let act = actual.get(name);
            if matches!(e.kind, EntryKind::File | EntryKind::ChunkedFile) {
                self.progress.advance(e.size);
            }
            if act.is_none() {
                if let Some(kept) = base.and_then(|b| self.kept_as_in_base(&rel, e, b)) {
                    self.new.entries.insert(rel, kept);
                    if matches!(e.kind, EntryKind::File | EntryKind::ChunkedFile) {
                        self.stats.files_unchanged += 1;
                    }
                    continue;
                }
            }
            if matches!(e.kind, EntryKind::Dir | EntryKind::HardLink) {
                self.write_files(dir, &mut pending)?;
            }
            match e.kind {
                EntryKind::Dir => {
                    let base_entry = base
                        .and_then(|b| b.get(name))
                        .filter(|b| b.kind == EntryKind::Dir);
                    let unchanged = act.is_some_and(|st| st.is_dir())
                        && base_entry.is_some_and(|b| b.id == e.id);
                    match act {
                        Some(st) if st.is_dir() => {}
                        other => {
                            if let Some(st) = other {
                                self.remove(dir, name, &rel, st)?;
                            }
                            rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                                .map_err(errno_err("create", self.root, &rel))?;
                            self.stats.dirs_created += 1;
                        }
                    }
                    #[cfg(test)]
                    BEFORE_ENTER.with(|h| h.borrow().as_ref().map(|f| f(&rel)));
                    // O_NOFOLLOW | O_DIRECTORY: a symlink swapped in meanwhile is refused.
                    let sub = open_dir(dir, name).map_err(errno_err(
                        "enter directory",
                        self.root,
                        &rel,
                    ))?;
                    if unchanged {
                        // It holds the base's tree, which is the wanted one.
                        self.kept_dirs.insert(rel.clone());
                    } else {
                        let sub_tree = self.repo.read_tree(&e.id)?;
                        let sub_base = match base_entry {
                            Some(b) => Some(self.repo.read_tree(&b.id)?),
                            None => None,
                        };
                        self.dir(sub.as_fd(), &rel, &sub_tree, sub_base.as_ref())?;
                        if self.needs_full {
                            return Ok(());
                        }
                    }
                    let stat_sub =
                        || fstat(sub.as_fd()).map_err(errno_err("stat", self.root, &rel));
                    let mut st = stat_sub()?;
                    if self.apply_meta_fd(sub.as_fd(), &rel, &st, Meta::from(e))? {
                        st = stat_sub()?;
                    }
                    self.record_stat(rel, st.key, EntryKind::Dir, e.id);
                }
                EntryKind::File | EntryKind::ChunkedFile => {
                    if self.from_base && act.is_some_and(|st| st.is_file() && st.nlink > 1) {
                        self.needs_full = true;
                        return Ok(());
                    }
                    let same = match act {
                        Some(st) if st.nlink > 1 && self.claimed.contains(&st.key.ino) => false,
                        Some(st) => self.same_file_content(dir, name, &rel, st, e)?,
                        None => false,
                    };
                    if let Some(st) = act.filter(|st| same && st.nlink > 1) {
                        self.claimed.insert(st.key.ino);
                    }
                    match act {
                        Some(st) if same => {
                            self.stats.files_unchanged += 1;
                            if self.apply_meta_at(dir, name, &rel, st, Meta::from(e), false)? {
                                self.stats.metadata_updated += 1;
                                self.record(rel, dir, name, e.kind, e.id)?;
                            } else {
                                // Nothing was done to it: its stat is the one just read.
                                self.record_stat(rel, st.key, e.kind, e.id);
                            }
                        }
                        _ => {
                            if let Some(st) = act.filter(|st| st.is_dir()) {
                                self.remove(dir, name, &rel, st)?;
                            }
                            let how =
                                act.map_or(FileWrite::Whole, |st| self.how_to_write(&rel, st, e));
                            pending.push((rel, e, how));
                        }
                    }
                }
                EntryKind::Symlink => {
                    let target = self.repo.store.read(&e.id)?;
                    let same = act.is_some_and(|st| st.is_symlink())
                        && rustix::fs::readlinkat(dir, name, Vec::new())
                            .ok()
                            .map(|t| t.into_bytes())
                            .as_deref()
                            == Some(&target[..]);
                    match act {
                        Some(st) if same => {
                            if self.apply_meta_at(dir, name, &rel, st, Meta::from(e), true)? {
                                self.stats.metadata_updated += 1;
                            }
                        }
                        _ => {
                            if let Some(st) = act.filter(|st| st.is_dir()) {
                                self.remove(dir, name, &rel, st)?;
                            }
                            self.write_symlink(dir, name, &rel, &target, e)?;
                        }
                    }
                    self.record(rel, dir, name, EntryKind::Symlink, e.id)?;
                }
                kind if kind.is_special() => {
                    let description = self.repo.store.read(&e.id)?;
                    let node = SpecialNode::decode(kind, &description).ok_or_else(|| {
                        Error::Store(crate::store::StoreError::Corrupt {
                            id: e.id,
                            why: format!("not a description of a {kind:?} node"),
                        })
                    })?;
                    let dev = rustix::fs::makedev(node.major, node.minor);
                    let same = act.is_some_and(|st| {
                        st.file_type() == special_file_type(kind)
                            && (!matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice)
                                || st.rdev == dev)
                    });
                    match act {
                        Some(st) if same => {
                            if self.apply_meta_at(dir, name, &rel, st, Meta::from(e), false)? {
                                self.stats.metadata_updated += 1;
                            }
                        }
                        _ => {
                            if let Some(st) = act.filter(|st| st.is_dir()) {
                                self.remove(dir, name, &rel, st)?;
                            }
                            self.write_special(dir, name, &rel, node, e)?;
                        }
                    }
                    self.record(rel, dir, name, kind, e.id)?;
                }
                EntryKind::HardLink if self.from_base => {
                    self.needs_full = true;
                    return Ok(());
                }
                EntryKind::HardLink => self.hard_link(dir, name, rel, act, e)?,
                _ => {
                    return Err(Error::Store(crate::store::StoreError::Corrupt {
                        id: e.id,
                        why: format!("tree entry of unknown kind {:?}", e.kind),
                    }))
                }
            }
        }
        self.write_files(dir, &mut pending)
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
        self.checkout_locked(volume, commit, target, None, progress)
    }

    /// [`Repository::checkout`] of a target known to hold exactly `base`'s tree: the caller
    /// found no change against `base` ([`Repository::status`] with `base` at HEAD) and nothing
    /// has written to `target` since. Directories whose tree is the same in `base` and
    /// `commit` are then left alone, unread, so the cost follows what differs, not the size of
    /// the volume. Where a hard link turns up in what differs (its group could span a
    /// directory left alone), it checks out in full instead.
    pub fn checkout_from(
        &self,
        volume: &VolumeKey,
        base: CommitId,
        commit: CommitId,
        target: &Path,
        progress: &dyn Progress,
    ) -> Result<CheckoutStats> {
        let _repo = self.lock_shared()?;
        let _vol = self.lock_volume(volume)?;
        self.checkout_locked(volume, commit, target, Some(base), progress)
    }

    fn checkout_locked(
        &self,
        volume: &VolumeKey,
        commit: CommitId,
        target: &Path,
        base: Option<CommitId>,
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
        let root_fd = match open_root(target) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                return Err(Error::NotADirectory {
                    path: target.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err("open", target)(e.into())),
        };
        let old = self.load_index(volume)?;
        let tree = self.read_tree(&tree_id)?;
        let base_tree = match base {
            Some(base) => {
                let base = self.read_commit(base)?;
                Some(self.read_tree(&base.tree().ok_or(Error::NotATree(base.id))?)?)
            }
            None => None,
        };
        progress.start(
            Phase::CHECKOUT,
            Some(self.content_bytes(&tree, base_tree.as_ref())?),
        );
        let mut co = Checkout {
            repo: self,
            root: target,
            root_fd: root_fd.as_fd(),
            claimed: HashSet::new(),
            old: &old,
            new: Index::default(),
            stats: CheckoutStats::default(),
            progress,
            from_base: base_tree.is_some(),
            kept_dirs: HashSet::new(),
            needs_full: false,
        };
        co.dir(root_fd.as_fd(), b"", &tree, base_tree.as_ref())?;
        if co.needs_full {
            return self.checkout_locked(volume, commit, target, None, progress);
        }
        co.keep_entries_of_kept_dirs();
        let root = Meta {
            mode: c.root.mode,
            uid: c.root.uid,
            gid: c.root.gid,
            mtime_ns: c.root.mtime_ns,
        };
        let stat_root = || fstat(root_fd.as_fd()).map_err(|e| io_err("stat", target)(e.into()));
        let mut st = stat_root()?;
        if co.apply_meta_fd(root_fd.as_fd(), b"", &st, root)? {
            st = stat_root()?;
        }
        co.record_stat(Vec::new(), st.key, EntryKind::Dir, tree_id);
        progress.finish();
        rustix::fs::syncfs(&root_fd).map_err(|e| io_err("sync", target)(e.into()))?;
        co.new.save(&self.index_path(volume))?;
        Ok(co.stats)
    }

    /// The content bytes of every file under `tree` (hard links count once) but in the
    /// directories whose tree is the same in `base`: the total of a checkout's progress.
    /// Reads the tree objects only.
    fn content_bytes(&self, tree: &Tree, base: Option<&Tree>) -> Result<u64> {
        let mut total = 0u64;
        for e in &tree.entries {
            match e.kind {
                EntryKind::File | EntryKind::ChunkedFile => total += e.size,
                EntryKind::Dir => {
                    let base_entry = base
                        .and_then(|b| b.get(&e.name))
                        .filter(|b| b.kind == EntryKind::Dir);
                    if base_entry.is_some_and(|b| b.id == e.id) {
                        continue;
                    }
                    let base_tree = match base_entry {
                        Some(b) => Some(self.read_tree(&b.id)?),
                        None => None,
                    };
                    total += self.content_bytes(&self.read_tree(&e.id)?, base_tree.as_ref())?;
                }
                _ => {}
            }
        }
        Ok(total)
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
        if from == to {
            return Err(Error::VolumeExists(*to));
        }
        let message = format!("clone: from {}", commit.short(12));
        self.create_from_commit(to, DEFAULT_BRANCH, commit, target, &message, progress)
    }

    /// Creates the history of volume `to` (which has none yet) at `commit`: checks the commit
    /// out into `target` (an empty or new directory), points branch `branch` at it and checks
    /// that branch out; the reflog records the move as `message`. A volume received from
    /// another host starts so, with the sender's branch and commit ids.
    pub fn create_from_commit(
        &self,
        to: &VolumeKey,
        branch: &str,
        commit: CommitId,
        target: &Path,
        message: &str,
        progress: &dyn Progress,
    ) -> Result<CheckoutStats> {
        validate_ref_name(RefKind::Branch, branch)?;
        if self.refs.has_volume(to) {
            return Err(Error::VolumeExists(*to));
        }
        let _repo = self.lock_shared()?;
        let _vol = self.lock_volume(to)?;
        let stats = self.checkout_locked(to, commit, target, None, progress)?;
        self.refs.set(to, RefKind::Branch, branch, commit)?;
        self.refs
            .set_head(to, &HeadRef::Branch(branch.to_string()))?;
        self.log_move(to, branch, None, Some(commit), message)?;
        Ok(stats)
    }
}

/// The block size holes are kept at: a block of zeros in a file is not written, so the
/// filesystem leaves a hole there (a sparse file checks out sparse).
const HOLE_BLOCK: u64 = 4096;

/// How a file of the checkout is written.
#[derive(Debug, Clone, Copy)]
enum FileWrite {
    /// Whole, to a temporary file renamed over the old one.
    Whole,
    /// In place, the chunks that differ from this content, which the index vouches the
    /// file holds (whole if the file turns out to have changed meanwhile).
    Patch(Held),
}

/// The content the index vouches a file holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    kind: EntryKind,
    id: ObjectId,
    size: u64,
}

/// Writes `data` at `offset` in the existing `file`, in place: pieces that are all zeros
/// within one [`HOLE_BLOCK`]-aligned block become holes (punched, or written as zeros where
/// the filesystem cannot punch), as [`write_sparse`] leaves them in a new file.
fn write_in_place(file: &fs::File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut at = 0usize;
    while at < data.len() {
        // A run of blocks of one kind: data, or zeros.
        let zeros = block_is_zero(data, offset, at);
        let mut end = at;
        while end < data.len() && block_is_zero(data, offset, end) == zeros {
            end += (HOLE_BLOCK - (offset + end as u64) % HOLE_BLOCK) as usize;
            end = end.min(data.len());
        }
        let (start, len) = (offset + at as u64, (end - at) as u64);
        let punched = zeros
            && rustix::fs::fallocate(
                file,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                start,
                len,
            )
            .is_ok();
        if !punched {
            file.write_all_at(&data[at..end], start)?;
        }
        at = end;
    }
    Ok(())
}

/// Whether the piece of `data` from `at` to the next [`HOLE_BLOCK`] boundary of the file
/// (`data` starts at file offset `offset`) is all zeros.
fn block_is_zero(data: &[u8], offset: u64, at: usize) -> bool {
    let to_boundary = (HOLE_BLOCK - (offset + at as u64) % HOLE_BLOCK) as usize;
    data[at..(at + to_boundary).min(data.len())]
        .iter()
        .all(|b| *b == 0)
}

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
