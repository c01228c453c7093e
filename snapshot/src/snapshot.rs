//! Snapshotting a directory tree into a commit.
//!
//! A commit walks the source with `lstat` only, compares every regular file with the volume's
//! [`Index`], and re-reads just the files whose stat changed (in parallel). Re-read files are
//! read by their data extents only (holes read as zeros; see `sparse`) and split by
//! content-defined chunking (FastCDC: 256 KiB min, 1 MiB average, 4 MiB max), so an
//! edit in a large file stores only the chunks around it. Symlinks are recorded, never
//! followed; fifos, sockets and device nodes are recorded (kind, mode, owner, mtime, device
//! number), never opened; other mounts below the source are not entered. The walk works
//! relative to directory descriptors (see `dirfd`), so no depth is too deep.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::FileType;

use crate::dirfd::{
    errno_err, fstat, list_names, lstat_at, open_below, open_dir, open_regular_at, open_root,
    short_path, vanished,
};

use crate::id::{CommitId, ObjectId, VolumeKey};
use crate::index::{Index, IndexEntry, StatKey};
use crate::object::{
    Commit, CommitInfo, Content, DirMeta, EntryKind, SpecialNode, Tree, TreeEntry,
};
use crate::parallel::map_parallel;
use crate::progress::{Phase, Progress};
use crate::reflog;
use crate::refs::{HeadRef, RefKind};
use crate::repo::{io_err, Error, Repository, Result, DEFAULT_BRANCH};
use crate::store::WriteBatch;

use crate::changes::{store_changed, ChangedRanges};
use crate::chunker::{FileContent, Sink, MAX_CHUNK};
use crate::object::FileObject;
use crate::sparse::ReadBuffer;
use std::ops::Range;

/// A file whose inode changed less than this long before it was read is re-read next time.
pub const RACY_WINDOW_NS: i64 = 50_000_000;

/// Why a path was left out of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The root of another mount.
    MountPoint,
    /// It disappeared or changed type while being read.
    Vanished,
}

/// A path left out of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path, relative to the snapshot root.
    pub path: PathBuf,
    /// Why.
    pub reason: SkipReason,
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Regular files seen.
    pub files_scanned: u64,
    /// Directories seen (the root excluded).
    pub dirs_scanned: u64,
    /// Symlinks seen.
    pub symlinks: u64,
    /// Fifos, sockets and device nodes seen (recorded, never opened).
    pub special_files: u64,
    /// Regular files that are another name of a file seen before (recorded as hard links;
    /// also counted in `files_scanned`).
    pub hard_links: u64,
    /// Files re-read because their stat changed (or they were new).
    pub files_reread: u64,
    /// Bytes read from those files: their data, not their holes (which read as zeros).
    pub bytes_read: u64,
    /// Of the re-read files, those read only around their changed ranges (see
    /// [`ChangedRanges`]), not whole.
    pub files_read_by_ranges: u64,
    /// Objects added to the store (chunks, chunk lists, trees and the commit).
    pub new_objects: u64,
    /// Bytes added to the store (compressed).
    pub new_bytes_stored: u64,
    /// Paths left out, with the reason.
    pub skipped: Vec<Skipped>,
    /// Whether nothing changed since the parent commit (equal tree and root directory
    /// metadata): no commit was recorded, no ref moved, and [`Committed::id`] is the parent.
    pub unchanged: bool,
}

/// The result of [`Repository::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The new commit, or HEAD's commit if nothing changed (`stats.unchanged`).
    pub id: CommitId,
    /// What it took.
    pub stats: CommitStats,
}

/// Nanoseconds since the epoch, now.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// How many directory descriptors a commit keeps open between the walk and the reading of
/// changed files: a quarter of the open-file limit, at most 4,096. Directories beyond that
/// are opened again, one name at a time from the root, when their files are read.
fn held_dir_budget() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024);
    usize::try_from(limit / 4).unwrap_or(4096).clamp(16, 4096)
}

pub(crate) fn join_rel(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(rel.len() + name.len() + 1);
    if !rel.is_empty() {
        v.extend_from_slice(rel);
        v.push(b'/');
    }
    v.extend_from_slice(name);
    v
}

pub(crate) fn rel_path(rel: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(rel))
}

enum NodeKind {
    File {
        known: Option<FileContent>,
        /// The first name (in path order) of an inode with several names in the walk.
        first_of_group: bool,
    },
    /// Another name of the regular file first named `first` (a hard link).
    Link {
        first: Vec<u8>,
    },
    Dir {
        children: Vec<Node>,
        /// The open directory, kept when files in it must be read.
        fd: Option<Arc<OwnedFd>>,
    },
    Symlink(Vec<u8>),
    Special(SpecialNode),
}

struct Node {
    /// The path below the root; the name is its last `name_len` bytes.
    rel: Vec<u8>,
    name_len: usize,
    stat: StatKey,
    /// Hard link count (regular files).
    nlink: u32,
    kind: NodeKind,
}

impl Node {
    fn name(&self) -> &[u8] {
        &self.rel[self.rel.len() - self.name_len..]
    }
}

/// Turns every regular file that shares its inode with an earlier one (in path order:
/// sorted names, depth first, as the tree is encoded) into a link to that first name.
/// `firsts` maps an inode to its first name; only files with several links are looked at.
fn find_hard_links(nodes: &mut [Node], firsts: &mut HashMap<u64, Vec<u8>>) {
    for n in nodes {
        match &mut n.kind {
            NodeKind::File { first_of_group, .. } if n.nlink > 1 => {
                match firsts.get_mut(&n.stat.ino) {
                    Some(first) => {
                        n.kind = NodeKind::Link {
                            first: first.clone(),
                        }
                    }
                    None => {
                        *first_of_group = true;
                        firsts.insert(n.stat.ino, n.rel.clone());
                    }
                }
            }
            NodeKind::Dir { children, .. } => find_hard_links(children, firsts),
            _ => {}
        }
    }
}

struct FileOutcome {
    content: FileContent,
    /// Bytes really read: holes are not.
    read: u64,
    index_stat: StatKey,
    stat: StatKey,
    racy: bool,
    /// Read only around its changed ranges.
    by_ranges: bool,
}

/// What one reading thread keeps from file to file.
#[derive(Default)]
struct Reader {
    /// The directory it opened last (for jobs whose directory the walk did not keep open).
    reopened: Option<(Vec<u8>, Arc<OwnedFd>)>,
    buffer: ReadBuffer,
}

/// A file to read: its directory (open, or to be opened again from the root) and name,
/// borrowed from the walk's nodes.
struct ReadJob<'a> {
    rel: &'a [u8],
    name_at: usize,
    dir: Option<&'a Arc<OwnedFd>>,
    dir_rel: &'a [u8],
    size: u64,
}

impl ReadJob<'_> {
    fn name(&self) -> &[u8] {
        &self.rel[self.name_at..]
    }
}

/// The result of scanning a directory.
pub(crate) struct Scanned {
    pub tree: ObjectId,
    pub root: DirMeta,
    pub index: Index,
    pub stats: CommitStats,
}

struct Walker<'a> {
    root: &'a Path,
    root_dev: u64,
    index: &'a Index,
    stats: CommitStats,
    progress: &'a dyn Progress,
    held_dirs: usize,
    held_dir_budget: usize,
}

impl Walker<'_> {
    fn skip(&mut self, rel: &[u8], reason: SkipReason) {
        self.stats.skipped.push(Skipped {
            path: rel_path(rel),
            reason,
        });
    }

    /// Walks the open directory `dir` (`rel` below the root); returns its entries, sorted,
    /// and whether any file in it must be read.
    fn walk(&mut self, dir: BorrowedFd<'_>, rel: &[u8]) -> Result<(Vec<Node>, bool)> {
        let names = list_names(dir).map_err(errno_err("list", self.root, rel))?;
        let mut nodes = Vec::with_capacity(names.len());
        let mut unread_files = false;
        for name in names {
            let rel = join_rel(rel, &name);
            let st = match lstat_at(dir, &name) {
                Ok(st) => st,
                Err(e) if vanished(e) => {
                    self.skip(&rel, SkipReason::Vanished);
                    continue;
                }
                Err(e) => return Err(errno_err("stat", self.root, &rel)(e)),
            };
            self.progress.advance(1);
            let stat = st.key;
            let kind = match st.file_type() {
                FileType::RegularFile => {
                    self.stats.files_scanned += 1;
                    let known = self
                        .index
                        .get(&rel)
                        .filter(|e| e.kind.is_file() && e.matches(&stat))
                        .map(|e| FileContent {
                            kind: e.kind,
                            id: e.id,
                            size: stat.size,
                        });
                    unread_files |= known.is_none();
                    NodeKind::File {
                        known,
                        first_of_group: false,
                    }
                }
                FileType::Directory => {
                    if st.dev != self.root_dev || st.mount_root {
                        self.skip(&rel, SkipReason::MountPoint);
                        continue;
                    }
                    let sub = match open_dir(dir, &name) {
                        Ok(fd) => fd,
                        Err(e) if vanished(e) => {
                            self.skip(&rel, SkipReason::Vanished);
                            continue;
                        }
                        Err(e) => return Err(errno_err("open", self.root, &rel)(e)),
                    };
                    self.stats.dirs_scanned += 1;
                    let (children, unread) = self.walk(sub.as_fd(), &rel)?;
                    let fd = (unread && self.held_dirs < self.held_dir_budget).then(|| {
                        self.held_dirs += 1;
                        Arc::new(sub)
                    });
                    NodeKind::Dir { children, fd }
                }
                FileType::Symlink => match rustix::fs::readlinkat(dir, name.as_slice(), Vec::new())
                {
                    Ok(t) => {
                        self.stats.symlinks += 1;
                        NodeKind::Symlink(t.into_bytes())
                    }
                    Err(e) if vanished(e) || e == rustix::io::Errno::INVAL => {
                        self.skip(&rel, SkipReason::Vanished);
                        continue;
                    }
                    Err(e) => return Err(errno_err("read link", self.root, &rel)(e)),
                },
                other => {
                    let kind = match other {
                        FileType::Socket => EntryKind::Socket,
                        FileType::Fifo => EntryKind::Fifo,
                        FileType::CharacterDevice => EntryKind::CharDevice,
                        FileType::BlockDevice => EntryKind::BlockDevice,
                        _ => {
                            self.skip(&rel, SkipReason::Vanished);
                            continue;
                        }
                    };
                    self.stats.special_files += 1;
                    let device = matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice);
                    let (major, minor) = match device {
                        true => (rustix::fs::major(st.rdev), rustix::fs::minor(st.rdev)),
                        false => (0, 0),
                    };
                    NodeKind::Special(SpecialNode { kind, major, minor })
                }
            };
            nodes.push(Node {
                name_len: name.len(),
                rel,
                stat,
                nlink: st.nlink,
                kind,
            });
        }
        nodes.sort_by(|a, b| a.name().cmp(b.name()));
        Ok((nodes, unread_files))
    }
}

/// The files of `nodes` to read, in path order (the order [`Repository::build_tree`] takes
/// their outcomes in).
fn collect_jobs<'a>(
    nodes: &'a [Node],
    dir: Option<&'a Arc<OwnedFd>>,
    dir_rel: &'a [u8],
    out: &mut Vec<ReadJob<'a>>,
) {
    for n in nodes {
        match &n.kind {
            NodeKind::File { known: None, .. } => out.push(ReadJob {
                rel: &n.rel,
                name_at: n.rel.len() - n.name_len,
                dir,
                dir_rel,
                size: n.stat.size,
            }),
            NodeKind::Dir { children, fd } => collect_jobs(children, fd.as_ref(), &n.rel, out),
            _ => {}
        }
    }
}

/// What a file's changed ranges are counted against: the chunk list the index recorded for
/// its path, and the ranges that may differ from it.
struct RangeBase {
    base: FileObject,
    changed: Vec<Range<u64>>,
}

fn read_one(
    dir: BorrowedFd<'_>,
    name: &[u8],
    shown: &Path,
    range_base: Option<RangeBase>,
    buffer: &mut ReadBuffer,
    sink: &Sink<'_>,
    progress: &dyn Progress,
) -> Result<Option<FileOutcome>> {
    let opened = open_regular_at(dir, name).map_err(|e| io_err("open", shown)(e.into()))?;
    let Some((f, pre)) = opened else {
        return Ok(None);
    };
    let by_ranges = range_base.is_some() && pre.key.size > MAX_CHUNK as u64;
    let (content, read) = match range_base {
        Some(RangeBase { base, changed }) if by_ranges => store_changed(
            &f,
            shown,
            pre.key.size,
            &base,
            changed,
            buffer,
            sink,
            progress,
        )?,
        _ => crate::sparse::store_file(&f, shown, buffer, sink, progress)?,
    };
    let post = fstat(f.as_fd()).map_err(|e| io_err("stat", shown)(e.into()))?;
    let (pre, post) = (pre.key, post.key);
    let mut stat = post;
    stat.size = content.size;
    let racy = pre != post || post.ctime_ns > now_ns() - RACY_WINDOW_NS;
    Ok(Some(FileOutcome {
        content,
        read,
        index_stat: pre,
        stat,
        racy,
        by_ranges,
    }))
}

fn mode_bits(stat: &StatKey) -> u32 {
    stat.mode & 0o7777
}

impl Repository {
    /// What the file `rel` (`size` bytes at the walk) can be read against, if `changes` know
    /// its changed ranges and the index recorded a chunk list for it; files of one window
    /// or less are read whole.
    fn range_base(
        &self,
        old: &Index,
        rel: &[u8],
        size: u64,
        changes: Option<&dyn ChangedRanges>,
    ) -> Option<RangeBase> {
        let changes = changes?;
        if size <= MAX_CHUNK as u64 {
            return None;
        }
        let entry = old.get(rel).filter(|e| e.kind == EntryKind::ChunkedFile)?;
        let changed = changes.changed_ranges(rel)?;
        let base = self.read_file_object(&entry.id).ok()?;
        Some(RangeBase { base, changed })
    }

    /// Reads the files of `jobs` in parallel; a file's directory is the descriptor the walk
    /// kept, or is opened again from `root_fd` one name at a time. Returns each job's outcome
    /// in the order of `jobs` (`None`: the file vanished). Files whose changed ranges
    /// `changes` know are read only around them.
    #[allow(clippy::too_many_arguments)]
    fn read_changed(
        &self,
        root: &Path,
        root_fd: &Arc<OwnedFd>,
        jobs: &[ReadJob<'_>],
        old: &Index,
        changes: Option<&dyn ChangedRanges>,
        sink: &Sink<'_>,
        progress: &dyn Progress,
    ) -> Result<Vec<Option<FileOutcome>>> {
        let read_job = |reader: &mut Reader, job: &ReadJob<'_>| {
            let dir = match job.dir {
                Some(fd) => fd.clone(),
                None => match &reader.reopened {
                    Some((rel, fd)) if rel.as_slice() == job.dir_rel => fd.clone(),
                    _ => match open_below(root_fd.as_fd(), job.dir_rel) {
                        Ok(fd) => {
                            let fd = Arc::new(fd);
                            reader.reopened = Some((job.dir_rel.to_vec(), fd.clone()));
                            fd
                        }
                        Err(e) if vanished(e) => return Ok(None),
                        Err(e) => return Err(errno_err("open", root, job.dir_rel)(e)),
                    },
                },
            };
            let shown = short_path(root, job.rel);
            read_one(
                dir.as_fd(),
                job.name(),
                &shown,
                self.range_base(old, job.rel, job.size, changes),
                &mut reader.buffer,
                sink,
                progress,
            )
        };
        map_parallel(jobs, self.threads, Reader::default, read_job)
    }

    /// The tree of `nodes` (the directory `rel_dir`), its subtrees first; records every path
    /// in `new`. `outcomes` gives the files that were read, in the order
    /// [`collect_jobs`] listed them (path order, which this walk follows too).
    #[allow(clippy::too_many_arguments)]
    fn build_tree(
        &self,
        nodes: Vec<Node>,
        rel_dir: &[u8],
        outcomes: &mut std::vec::IntoIter<Option<FileOutcome>>,
        groups: &mut HashMap<Vec<u8>, (u64, StatKey)>,
        old: &Index,
        new: &mut Index,
        sink: &Sink<'_>,
        stats: &mut CommitStats,
    ) -> Result<ObjectId> {
        let mut tree = Tree {
            entries: Vec::with_capacity(nodes.len()),
        };
        for node in nodes {
            let Node {
                rel,
                name_len,
                stat: node_stat,
                kind: node_kind,
                ..
            } = node;
            let first_of_group = matches!(
                node_kind,
                NodeKind::File {
                    first_of_group: true,
                    ..
                }
            );
            let entry = |kind, id, racy| IndexEntry {
                kind,
                stat: node_stat,
                id,
                racy,
            };
            let (kind, id, size, stat, indexed) = match node_kind {
                NodeKind::File { known: Some(c), .. } => {
                    (c.kind, c.id, c.size, node_stat, entry(c.kind, c.id, false))
                }
                NodeKind::File { known: None, .. } => match outcomes.next().flatten() {
                    Some(o) => {
                        stats.files_reread += 1;
                        stats.bytes_read += o.read;
                        stats.files_read_by_ranges += u64::from(o.by_ranges);
                        let indexed = IndexEntry {
                            kind: o.content.kind,
                            stat: o.index_stat,
                            id: o.content.id,
                            racy: o.racy,
                        };
                        (
                            o.content.kind,
                            o.content.id,
                            o.content.size,
                            o.stat,
                            indexed,
                        )
                    }
                    None => {
                        stats.skipped.push(Skipped {
                            path: rel_path(&rel),
                            reason: SkipReason::Vanished,
                        });
                        continue;
                    }
                },
                NodeKind::Dir { children, .. } => {
                    let id =
                        self.build_tree(children, &rel, outcomes, groups, old, new, sink, stats)?;
                    (
                        EntryKind::Dir,
                        id,
                        0,
                        node_stat,
                        entry(EntryKind::Dir, id, false),
                    )
                }
                NodeKind::Symlink(target) => {
                    let id = ObjectId::hash(&target);
                    let known = old
                        .get(&rel)
                        .is_some_and(|e| e.kind == EntryKind::Symlink && e.id == id);
                    if !known {
                        sink.put(&id, &target)?;
                    }
                    let size = target.len() as u64;
                    (
                        EntryKind::Symlink,
                        id,
                        size,
                        node_stat,
                        entry(EntryKind::Symlink, id, false),
                    )
                }
                NodeKind::Special(node) => {
                    let description = node.encode();
                    let id = ObjectId::hash(&description);
                    let known = old
                        .get(&rel)
                        .is_some_and(|e| e.kind == node.kind && e.id == id);
                    if !known {
                        sink.put(&id, &description)?;
                    }
                    (node.kind, id, 0, node_stat, entry(node.kind, id, false))
                }
                NodeKind::Link { first } => {
                    // The first name was recorded before (path order), unless it vanished.
                    let Some(&(size, stat)) = groups.get(&first) else {
                        stats.skipped.push(Skipped {
                            path: rel_path(&rel),
                            reason: SkipReason::Vanished,
                        });
                        continue;
                    };
                    stats.hard_links += 1;
                    let id = ObjectId::hash(&first);
                    let known = old
                        .get(&rel)
                        .is_some_and(|e| e.kind == EntryKind::HardLink && e.id == id);
                    if !known {
                        sink.put(&id, &first)?;
                    }
                    (
                        EntryKind::HardLink,
                        id,
                        size,
                        stat,
                        entry(EntryKind::HardLink, id, false),
                    )
                }
            };
            if first_of_group {
                groups.insert(rel.clone(), (size, stat));
            }
            tree.entries.push(TreeEntry {
                name: rel[rel.len() - name_len..].to_vec(),
                kind,
                mode: mode_bits(&stat),
                uid: stat.uid,
                gid: stat.gid,
                mtime_ns: stat.mtime_ns,
                size,
                id,
            });
            new.entries.insert(rel, indexed);
        }
        let enc = tree.encode();
        let id = ObjectId::hash(&enc);
        let known = old
            .get(rel_dir)
            .is_some_and(|e| e.kind == EntryKind::Dir && e.id == id);
        if !known || matches!(sink, Sink::Hash { trees: Some(_) }) {
            sink.put_tree(&id, &tree, &enc)?;
        }
        Ok(id)
    }

    /// Scans `source` against `old`, sending new objects to `sink`; files whose changed
    /// ranges `changes` know are read only around them.
    pub(crate) fn scan(
        &self,
        source: &Path,
        old: &Index,
        changes: Option<&dyn ChangedRanges>,
        sink: &Sink<'_>,
        progress: &dyn Progress,
    ) -> Result<Scanned> {
        let root_fd = match open_root(source) {
            Ok(fd) => Arc::new(fd),
            Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                return Err(Error::NotADirectory {
                    path: source.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err("open", source)(e.into())),
        };
        let root_st = fstat(root_fd.as_fd()).map_err(|e| io_err("stat", source)(e.into()))?;
        let root_stat = root_st.key;
        progress.start(Phase::SCAN, None);
        let mut walker = Walker {
            root: source,
            root_dev: root_st.dev,
            index: old,
            stats: CommitStats::default(),
            progress,
            held_dirs: 0,
            held_dir_budget: held_dir_budget(),
        };
        let (mut nodes, _) = walker.walk(root_fd.as_fd(), b"")?;
        find_hard_links(&mut nodes, &mut HashMap::new());
        progress.finish();
        let mut stats = walker.stats;
        let mut jobs = Vec::new();
        collect_jobs(&nodes, Some(&root_fd), b"", &mut jobs);
        let total: u64 = jobs.iter().map(|j| j.size).sum();
        progress.start(Phase::READ, Some(total));
        let outcomes = self.read_changed(source, &root_fd, &jobs, old, changes, sink, progress)?;
        drop(jobs);
        progress.finish();
        // Every node and the root: the index never grows (and rehashes) while it is built.
        let paths = stats.files_scanned + stats.dirs_scanned + stats.symlinks + stats.special_files;
        let mut index = Index {
            entries: HashMap::with_capacity(usize::try_from(paths).unwrap_or(0) + 1),
        };
        let mut groups = HashMap::new();
        let tree = self.build_tree(
            nodes,
            b"",
            &mut outcomes.into_iter(),
            &mut groups,
            old,
            &mut index,
            sink,
            &mut stats,
        )?;
        index.entries.insert(
            Vec::new(),
            IndexEntry {
                kind: EntryKind::Dir,
                stat: root_stat,
                id: tree,
                racy: false,
            },
        );
        let root = DirMeta {
            mode: mode_bits(&root_stat),
            uid: root_stat.uid,
            gid: root_stat.gid,
            mtime_ns: root_stat.mtime_ns,
        };
        Ok(Scanned {
            tree,
            root,
            index,
            stats,
        })
    }

    /// Snapshots the directory `source` as a new commit of `volume` on the checked-out branch
    /// (a volume's first commit creates `master`), with HEAD's commit as parent. Only files
    /// whose stat changed since the last commit or checkout are read. If the tree and root
    /// metadata equal HEAD's commit, nothing is recorded: no ref moves, the refreshed index is
    /// saved, and HEAD's commit is returned with `stats.unchanged` set. A volume's first commit
    /// is always recorded, even of an empty directory.
    pub fn commit(
        &self,
        volume: &VolumeKey,
        source: &Path,
        info: CommitInfo,
        progress: &dyn Progress,
    ) -> Result<Committed> {
        let _repo = self.lock_shared()?;
        let _vol = self.lock_volume(volume)?;
        let prepared = self.prepare_commit(volume, source, None, info, progress)?;
        self.publish_commit(volume, &prepared)?;
        Ok(Committed {
            id: prepared.id,
            stats: prepared.stats,
        })
    }

    /// Like [`Repository::commit`], but asks `verify` after everything was read and written
    /// and before any ref moves: an `Err(reason)` (the data read cannot be trusted, e.g. a
    /// freeze was lifted while reading) records nothing and fails with
    /// [`Error::NotRecorded`]. The objects written stay for gc to collect. Files whose
    /// changed ranges `changes` know are read only around them.
    pub fn commit_verified(
        &self,
        volume: &VolumeKey,
        source: &Path,
        changes: Option<&dyn ChangedRanges>,
        info: CommitInfo,
        progress: &dyn Progress,
        verify: &dyn Fn() -> std::result::Result<(), String>,
    ) -> Result<Committed> {
        let _repo = self.lock_shared()?;
        let _vol = self.lock_volume(volume)?;
        let prepared = self.prepare_verified(volume, source, changes, info, progress, verify)?;
        self.publish_commit(volume, &prepared)?;
        Ok(Committed {
            id: prepared.id,
            stats: prepared.stats,
        })
    }

    /// Records the directory `source` as a commit whose parent is HEAD's commit, without
    /// moving any ref: what a move's pre-copy rounds send while the volume keeps changing. The
    /// index (a stat cache) is saved, so the next commit reads only what changed since. The
    /// commit is reachable from no ref: gc may collect it once older than its grace period
    /// (or once a receiver holds it, which keeps its own copy). `verify` is asked as for
    /// [`Repository::commit_verified`], and so are `changes`.
    pub fn snapshot_detached(
        &self,
        volume: &VolumeKey,
        source: &Path,
        changes: Option<&dyn ChangedRanges>,
        info: CommitInfo,
        progress: &dyn Progress,
        verify: &dyn Fn() -> std::result::Result<(), String>,
    ) -> Result<Committed> {
        let _repo = self.lock_shared()?;
        let _vol = self.lock_volume(volume)?;
        let prepared = self.prepare_verified(volume, source, changes, info, progress, verify)?;
        prepared.index.save(&self.index_path(volume))?;
        Ok(Committed {
            id: prepared.id,
            stats: prepared.stats,
        })
    }

    /// [`Repository::prepare_commit`], then `verify`: an `Err(reason)` fails with
    /// [`Error::NotRecorded`]. The caller holds the repository's and the volume's locks.
    fn prepare_verified(
        &self,
        volume: &VolumeKey,
        source: &Path,
        changes: Option<&dyn ChangedRanges>,
        info: CommitInfo,
        progress: &dyn Progress,
        verify: &dyn Fn() -> std::result::Result<(), String>,
    ) -> Result<PreparedCommit> {
        let prepared = self.prepare_commit(volume, source, changes, info, progress)?;
        verify().map_err(|reason| Error::NotRecorded { reason })?;
        Ok(prepared)
    }

    /// First half of a commit: writes every object, including the commit (unless nothing
    /// changed), durably, but moves no ref. (Exposed within the crate so tests can simulate a
    /// crash between the halves.)
    pub(crate) fn prepare_commit(
        &self,
        volume: &VolumeKey,
        source: &Path,
        changes: Option<&dyn ChangedRanges>,
        info: CommitInfo,
        progress: &dyn Progress,
    ) -> Result<PreparedCommit> {
        let (head, head_existed, parent) = self.commit_parent(volume)?;
        let message = info.message.clone();
        let old = self.load_index(volume)?;
        let batch = WriteBatch::new();
        let sink = Sink::Store {
            store: &self.store,
            batch: &batch,
        };
        let scanned = self.scan(source, &old, changes, &sink, progress)?;
        let mut stats = scanned.stats;
        if let Some(p) = parent {
            let pc = self.read_commit(p)?;
            stats.unchanged = pc.tree() == Some(scanned.tree) && pc.root == scanned.root;
        }
        let id = match parent {
            Some(p) if stats.unchanged => p,
            _ => {
                let commit = Commit::new(
                    Content::Tree(scanned.tree),
                    scanned.root,
                    parent.into_iter().collect(),
                    info,
                );
                self.store.write(&commit.id.0, &commit.encode(), &batch)?;
                commit.id
            }
        };
        // Objects a lost index made the scan rewrite are synced even when nothing changed.
        batch.sync()?;
        stats.new_objects = batch.objects();
        stats.new_bytes_stored = batch.bytes();
        Ok(PreparedCommit {
            id,
            index: scanned.index,
            stats,
            head,
            head_existed,
            parent,
            message,
        })
    }

    /// Second half of a commit: moves the branch (or detached HEAD) unless nothing changed,
    /// then saves the index.
    pub(crate) fn publish_commit(&self, volume: &VolumeKey, p: &PreparedCommit) -> Result<()> {
        if !p.stats.unchanged {
            let moved = HeadMove {
                head: &p.head,
                head_existed: p.head_existed,
                parent: p.parent,
                message: &p.message,
            };
            self.advance_head(volume, &moved, p.id)?;
        }
        p.index.save(&self.index_path(volume))?;
        Ok(())
    }

    /// HEAD's branch (or a detached HEAD) and its commit, as a new commit's parent.
    pub(crate) fn commit_parent(
        &self,
        volume: &VolumeKey,
    ) -> Result<(HeadRef, bool, Option<CommitId>)> {
        let head_file = self.refs.head(volume)?;
        let head = head_file
            .clone()
            .unwrap_or_else(|| HeadRef::Branch(DEFAULT_BRANCH.to_string()));
        let parent = match &head {
            HeadRef::Branch(b) => self.refs.get(volume, RefKind::Branch, b)?,
            HeadRef::Detached(c) => Some(*c),
        };
        Ok((head, head_file.is_some(), parent))
    }

    /// Moves HEAD's branch (or the detached HEAD) to a new commit, one atomic rename, and
    /// records it in the reflog as `commit: MSG` (`commit (initial): MSG` for the first).
    pub(crate) fn advance_head(
        &self,
        volume: &VolumeKey,
        moved: &HeadMove<'_>,
        id: CommitId,
    ) -> Result<()> {
        let reference = match moved.head {
            HeadRef::Branch(b) => {
                self.refs.set(volume, RefKind::Branch, b, id)?;
                if !moved.head_existed {
                    self.refs.set_head(volume, moved.head)?;
                }
                b.as_str()
            }
            HeadRef::Detached(_) => {
                self.refs.set_head(volume, &HeadRef::Detached(id))?;
                reflog::HEAD
            }
        };
        let first_line = moved.message.lines().next().unwrap_or_default();
        let message = match moved.parent {
            Some(_) => format!("commit: {first_line}"),
            None => format!("commit (initial): {first_line}"),
        };
        self.log_move(volume, reference, moved.parent, Some(id), &message)
    }
}

/// Where a new commit goes: HEAD as it was when the commit started.
pub(crate) struct HeadMove<'a> {
    /// HEAD's branch, or the detached HEAD.
    pub head: &'a HeadRef,
    /// Whether the HEAD file existed (else it is written with the first commit).
    pub head_existed: bool,
    /// HEAD's commit: the new commit's parent.
    pub parent: Option<CommitId>,
    /// The new commit's message.
    pub message: &'a str,
}

/// A commit whose objects are written but whose ref is not yet moved.
pub(crate) struct PreparedCommit {
    /// The new commit, or the parent if nothing changed (`stats.unchanged`).
    pub id: CommitId,
    pub index: Index,
    pub stats: CommitStats,
    head: HeadRef,
    head_existed: bool,
    parent: Option<CommitId>,
    message: String,
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::id::VolumeKey;
    use crate::object::CommitInfo;
    use crate::progress::NoProgress;
    use crate::repo::{Error, Repository};

    #[test]
    fn a_commit_whose_verification_fails_records_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("src");
        fs::create_dir(&source).unwrap();
        fs::write(source.join("a"), b"first").unwrap();
        let repo = Repository::open(&tmp.path().join("repo")).unwrap();
        let volume = VolumeKey::new_random();
        let info = || CommitInfo::now("m", "t");
        let refused = repo.commit_verified(&volume, &source, None, info(), &NoProgress, &|| {
            Err("the freeze was lifted".into())
        });
        match refused {
            Err(e @ Error::NotRecorded { .. }) => {
                assert!(e.to_string().contains("the freeze was lifted"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert!(repo.commits(&volume).unwrap().is_empty());
        let kept = repo
            .commit_verified(&volume, &source, None, info(), &NoProgress, &|| Ok(()))
            .unwrap();
        assert_eq!(repo.commits(&volume).unwrap()[0].id, kept.id);
    }
}
