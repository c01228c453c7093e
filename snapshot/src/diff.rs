//! Comparing commits with each other and with a directory.
//!
//! Trees are compared by id, so identical subtrees are skipped without being read. A path is
//! *modified* when its content, type-preserving kind, mode or owner differ; an mtime change
//! alone is not reported. A path that changes type (file to directory, fifo to socket, ...)
//! is reported as removed and added; a file that becomes (or stops being) a hard link to
//! another name is modified. A change of a hard-linked file's content shows on its first name
//! (the one the content is recorded with).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::chunker::Sink;
use crate::id::{CommitId, ObjectId, VolumeKey};
use crate::object::{EntryKind, Tree, TreeEntry};
use crate::progress::NoProgress;
use crate::repo::{Error, Repository, Result};
use crate::snapshot::{join_rel, rel_path};

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Only in the newer side.
    Added,
    /// Only in the older side.
    Removed,
    /// In both, with different content, mode or owner.
    Modified,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The path, relative to the volume root.
    pub path: PathBuf,
    /// How it changed.
    pub kind: ChangeKind,
    /// Whether the path is a directory (on the side where it exists; the newer if both).
    pub is_dir: bool,
    /// Size on the older side (files and symlinks).
    pub old_size: Option<u64>,
    /// Size on the newer side (files and symlinks).
    pub new_size: Option<u64>,
}

fn size_of(e: &TreeEntry) -> Option<u64> {
    (e.kind != EntryKind::Dir).then_some(e.size)
}

struct Differ<'a> {
    load: &'a dyn Fn(&ObjectId) -> Result<Tree>,
    out: Vec<Change>,
}

impl Differ<'_> {
    fn one_side(&mut self, e: &TreeEntry, rel: &[u8], kind: ChangeKind) -> Result<()> {
        let path = join_rel(rel, &e.name);
        let (old_size, new_size) = match kind {
            ChangeKind::Removed => (size_of(e), None),
            _ => (None, size_of(e)),
        };
        self.out.push(Change {
            path: rel_path(&path),
            kind,
            is_dir: e.kind == EntryKind::Dir,
            old_size,
            new_size,
        });
        if e.kind == EntryKind::Dir {
            let t = (self.load)(&e.id)?;
            for c in &t.entries {
                self.one_side(c, &path, kind)?;
            }
        }
        Ok(())
    }

    fn trees(&mut self, a: &Tree, b: &Tree, rel: &[u8]) -> Result<()> {
        let (mut i, mut j) = (0, 0);
        while i < a.entries.len() || j < b.entries.len() {
            let x = a.entries.get(i);
            let y = b.entries.get(j);
            match (x, y) {
                (Some(x), Some(y)) if x.name == y.name => {
                    self.pair(x, y, rel)?;
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.name < y.name => {
                    self.one_side(x, rel, ChangeKind::Removed)?;
                    i += 1;
                }
                (Some(_), Some(y)) => {
                    self.one_side(y, rel, ChangeKind::Added)?;
                    j += 1;
                }
                (Some(x), None) => {
                    self.one_side(x, rel, ChangeKind::Removed)?;
                    i += 1;
                }
                (None, Some(y)) => {
                    self.one_side(y, rel, ChangeKind::Added)?;
                    j += 1;
                }
                (None, None) => break,
            }
        }
        Ok(())
    }

    fn pair(&mut self, x: &TreeEntry, y: &TreeEntry, rel: &[u8]) -> Result<()> {
        let meta_differs = x.mode != y.mode || x.uid != y.uid || x.gid != y.gid;
        let path = join_rel(rel, &x.name);
        // A regular file, whether its content is in the entry or it is a hard link.
        let regular = |k: EntryKind| k.is_file() || k == EntryKind::HardLink;
        let same_type = (regular(x.kind) && regular(y.kind)) || x.kind == y.kind;
        if !same_type {
            self.one_side(x, rel, ChangeKind::Removed)?;
            return self.one_side(y, rel, ChangeKind::Added);
        }
        if x.kind == EntryKind::Dir {
            if meta_differs {
                self.out.push(Change {
                    path: rel_path(&path),
                    kind: ChangeKind::Modified,
                    is_dir: true,
                    old_size: None,
                    new_size: None,
                });
            }
            if x.id != y.id {
                let (ta, tb) = ((self.load)(&x.id)?, (self.load)(&y.id)?);
                self.trees(&ta, &tb, &path)?;
            }
        } else if x.id != y.id || x.kind != y.kind || meta_differs {
            self.out.push(Change {
                path: rel_path(&path),
                kind: ChangeKind::Modified,
                is_dir: false,
                old_size: Some(x.size),
                new_size: Some(y.size),
            });
        }
        Ok(())
    }
}

/// Lists the changes from tree `a` to tree `b` (`None`: empty), in path order.
pub(crate) fn diff_trees(
    load: &dyn Fn(&ObjectId) -> Result<Tree>,
    a: Option<ObjectId>,
    b: Option<ObjectId>,
) -> Result<Vec<Change>> {
    let mut d = Differ {
        load,
        out: Vec::new(),
    };
    if a == b {
        return Ok(d.out);
    }
    let ta = a.map(|id| load(&id)).transpose()?.unwrap_or_default();
    let tb = b.map(|id| load(&id)).transpose()?.unwrap_or_default();
    d.trees(&ta, &tb, b"")?;
    Ok(d.out)
}

impl Repository {
    fn commit_tree(&self, c: CommitId) -> Result<ObjectId> {
        self.read_commit(c)?.tree().ok_or(Error::NotATree(c))
    }

    /// The changes from commit `a` to commit `b`: added, removed and modified paths with
    /// their sizes. Identical subtrees are skipped by id.
    pub fn diff(&self, a: CommitId, b: CommitId) -> Result<Vec<Change>> {
        let (ta, tb) = (self.commit_tree(a)?, self.commit_tree(b)?);
        diff_trees(&|id| self.read_tree(id), Some(ta), Some(tb))
    }

    /// The changes commit `c` made: from its first parent, or from nothing for a root commit.
    pub fn changes_of(&self, c: CommitId) -> Result<Vec<Change>> {
        let commit = self.read_commit(c)?;
        let tb = commit.tree().ok_or(Error::NotATree(c))?;
        let ta = match commit.parents.first() {
            Some(parent) => Some(self.commit_tree(*parent)?),
            None => None,
        };
        diff_trees(&|id| self.read_tree(id), ta, Some(tb))
    }

    /// The uncommitted changes in `dir` (the volume's directory) relative to HEAD. Reads only
    /// files whose stat differs from the index, and stores nothing.
    pub fn status(&self, volume: &VolumeKey, dir: &Path) -> Result<Vec<Change>> {
        let base = match self.head(volume)?.commit {
            Some(c) => Some(self.commit_tree(c)?),
            None => None,
        };
        let old = self.load_index(volume)?;
        let trees = Mutex::new(HashMap::new());
        let scanned = self.scan(
            dir,
            &old,
            None,
            &Sink::Hash {
                trees: Some(&trees),
            },
            &NoProgress,
        )?;
        let trees = trees.into_inner().unwrap_or_else(|e| e.into_inner());
        let load = |id: &ObjectId| match trees.get(id) {
            Some(t) => Ok(t.clone()),
            None => self.read_tree(id),
        };
        diff_trees(&load, base, Some(scanned.tree))
    }
}
