//! Planning what to send to another host: the objects a receiver lacks, children first.
//!
//! A receiver that holds a commit holds everything below it (the admission rule of
//! [`crate::receive`]). So once the sender knows which of the receiver's commits it has too
//! (the **base**: the receiver's branch, tag and HEAD positions that are in the sender's
//! store), what the receiver lacks is found without asking it object by object:
//!
//! 1. the **new commits**: the tip and its ancestors that no base commit reaches, oldest first;
//! 2. for each new commit, what its snapshot has that its first parent's has not, by a Merkle
//!    walk that skips every subtree, file and chunk list whose id is unchanged at its path
//!    (objects below an unchanged id are in the parent's closure, which the receiver holds or
//!    gets earlier in the same plan).
//!
//! The plan lists each object once, in an order the receiver's admission rule accepts: every
//! object after the objects it names, each commit after its parents. It is a pure function of
//! (tip, base), so a transfer planned again after an interruption lists the same objects, and
//! the receiver's store tells which of them already arrived. A plan may still list an object
//! the receiver holds for another reason (another volume's history, a file moved to a new path):
//! asking the receiver which of the planned objects it has ([`Repository::has_object`] on its
//! side) removes those before any byte of content moves.
//!
//! The plan is held in memory: about 40 bytes per planned object.

use std::collections::{HashMap, HashSet};

use crate::id::{CommitId, ObjectId};
use crate::maint::Expect;
use crate::object::{BlockMap, Content, FileObject, Tree, TreeEntry};
use crate::repo::{io_err, Pin, Repository, Result};

/// One object of a [`SendPlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedObject {
    /// The object.
    pub id: ObjectId,
    /// Its stored (compressed) size: what it costs on the wire.
    pub stored_len: u64,
    /// Whether it is a commit: a receiver may point a ref at it once it arrived.
    pub commit: bool,
}

/// What to send so that a receiver holding the base commits holds the tip.
#[derive(Debug)]
pub struct SendPlan {
    /// The commit to send.
    pub tip: CommitId,
    /// The receiver's commits the sender has too, that the plan relies on.
    pub base: Vec<CommitId>,
    /// The commits the receiver lacks, oldest first (each after its parents).
    pub new_commits: Vec<CommitId>,
    /// The objects to send, each after the objects it names.
    pub objects: Vec<PlannedObject>,
    /// Keeps garbage collection from deleting planned objects while the plan lives.
    _pin: Pin,
}

impl SendPlan {
    /// The stored bytes of every planned object.
    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.stored_len).sum()
    }

    /// Keeps only the objects `keep` accepts (e.g. those the receiver said it lacks).
    pub fn retain(&mut self, keep: impl FnMut(&PlannedObject) -> bool) {
        self.objects.retain(keep);
    }
}

/// Builds a plan in post-order, each object once.
struct Planner<'r> {
    repo: &'r Repository,
    planned: HashSet<ObjectId>,
    out: Vec<PlannedObject>,
}

impl Planner<'_> {
    fn push(&mut self, id: ObjectId, commit: bool) -> Result<()> {
        let path = self.repo.store.path(&id);
        let stored_len = std::fs::metadata(&path)
            .map_err(io_err("read", &path))?
            .len();
        self.out.push(PlannedObject {
            id,
            stored_len,
            commit,
        });
        Ok(())
    }

    /// Plans `id` (a leaf) unless planned already.
    fn leaf(&mut self, id: ObjectId) -> Result<()> {
        if self.planned.insert(id) {
            self.push(id, false)?;
        }
        Ok(())
    }

    /// Plans the chunk list `new` and the chunks it has that `old` (the same path's chunk
    /// list in the parent, if any) has not.
    fn file(&mut self, old: Option<ObjectId>, new: ObjectId) -> Result<()> {
        if old == Some(new) || self.planned.contains(&new) {
            return Ok(());
        }
        let f = FileObject::decode(new, &self.repo.store.read(&new)?)?;
        let had: HashSet<ObjectId> = match old {
            Some(o) => FileObject::decode(o, &self.repo.store.read(&o)?)?
                .chunks
                .iter()
                .map(|c| c.id)
                .collect(),
            None => HashSet::new(),
        };
        for c in &f.chunks {
            if !had.contains(&c.id) {
                self.leaf(c.id)?;
            }
        }
        self.leaf(new)
    }

    /// Plans block map `new` and the chunks it has that `old` has not.
    fn block_map(&mut self, old: Option<ObjectId>, new: ObjectId) -> Result<()> {
        if old == Some(new) || self.planned.contains(&new) {
            return Ok(());
        }
        let m = BlockMap::decode(new, &self.repo.store.read(&new)?)?;
        let had: HashSet<ObjectId> = match old {
            Some(o) => BlockMap::decode(o, &self.repo.store.read(&o)?)?
                .chunks
                .iter()
                .map(|(_, c)| *c)
                .collect(),
            None => HashSet::new(),
        };
        for (_, c) in &m.chunks {
            if !had.contains(c) {
                self.leaf(*c)?;
            }
        }
        self.leaf(new)
    }

    /// Plans tree `new` and whatever below it differs from tree `old` at the same path.
    fn tree(&mut self, old: Option<ObjectId>, new: ObjectId) -> Result<()> {
        if old == Some(new) || self.planned.contains(&new) {
            return Ok(());
        }
        let tree = Tree::decode(new, &self.repo.store.read(&new)?)?;
        let old_tree = match old {
            Some(o) => Some(Tree::decode(o, &self.repo.store.read(&o)?)?),
            None => None,
        };
        let before: HashMap<&[u8], &TreeEntry> = old_tree
            .iter()
            .flat_map(|t| t.entries.iter())
            .map(|e| (e.name.as_slice(), e))
            .collect();
        for entry in &tree.entries {
            let was = before.get(entry.name.as_slice()).copied();
            if was.is_some_and(|w| w.id == entry.id) {
                continue;
            }
            let was_same_kind = was.filter(|w| w.kind == entry.kind).map(|w| w.id);
            match Expect::of_entry(entry.kind) {
                Expect::Tree => self.tree(was_same_kind, entry.id)?,
                Expect::File => self.file(was_same_kind, entry.id)?,
                Expect::Chunk | Expect::Commit | Expect::BlockMap => self.leaf(entry.id)?,
            }
        }
        self.leaf(new)
    }
}

impl Repository {
    /// Plans sending `tip` to a receiver that holds the `base` commits (and so everything
    /// below them). Base commits this repository lacks are ignored (the receiver has
    /// history this host has not; the caller decides whether that is a divergence).
    pub fn plan_send(&self, tip: CommitId, base: &[CommitId]) -> Result<SendPlan> {
        let pin = self.pin()?;
        let base: Vec<CommitId> = base
            .iter()
            .copied()
            .filter(|c| self.store.has(&c.0))
            .collect();
        let new_commits = self.commits_not_in(tip, &base)?;
        let mut planner = Planner {
            repo: self,
            planned: HashSet::new(),
            out: Vec::new(),
        };
        for &c in &new_commits {
            let commit = self.read_commit(c)?;
            let parent = match commit.parents.first() {
                Some(p) => Some(self.read_commit(*p)?.content),
                None => None,
            };
            match (parent, commit.content) {
                (Some(Content::Tree(old)), Content::Tree(new)) => planner.tree(Some(old), new)?,
                (_, Content::Tree(new)) => planner.tree(None, new)?,
                (Some(Content::BlockMap(old)), Content::BlockMap(new)) => {
                    planner.block_map(Some(old), new)?
                }
                (_, Content::BlockMap(new)) => planner.block_map(None, new)?,
            }
            planner.planned.insert(c.0);
            planner.push(c.0, true)?;
        }
        Ok(SendPlan {
            tip,
            base,
            new_commits,
            objects: planner.out,
            _pin: pin,
        })
    }

    /// The commits `tip` has (itself and its ancestors) that no commit of `base` reaches, each
    /// after its parents: what one side of a divergence has that the other lacks.
    pub fn commits_not_in(&self, tip: CommitId, base: &[CommitId]) -> Result<Vec<CommitId>> {
        let known: HashSet<CommitId> = self
            .walk_commits(base.iter().copied(), &HashSet::new())?
            .iter()
            .map(|c| c.id)
            .collect();
        self.commits_oldest_first(tip, &known)
    }

    /// `tip` and its ancestors that are not in `stop`, each after its parents.
    fn commits_oldest_first(
        &self,
        tip: CommitId,
        stop: &HashSet<CommitId>,
    ) -> Result<Vec<CommitId>> {
        let mut out = Vec::new();
        let mut done: HashSet<CommitId> = HashSet::new();
        // (commit, its parents once read): a commit is emitted when its parents are.
        let mut stack: Vec<(CommitId, Option<Vec<CommitId>>)> = vec![(tip, None)];
        while let Some((c, parents)) = stack.pop() {
            if stop.contains(&c) || done.contains(&c) {
                continue;
            }
            match parents {
                None => {
                    let parents = self.read_commit(c)?.parents;
                    let pending: Vec<CommitId> = parents
                        .iter()
                        .copied()
                        .filter(|p| !stop.contains(p) && !done.contains(p))
                        .collect();
                    stack.push((c, Some(parents)));
                    stack.extend(pending.into_iter().rev().map(|p| (p, None)));
                }
                Some(_) => {
                    done.insert(c);
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    /// Whether `ancestor` is `commit` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: CommitId, commit: CommitId) -> Result<bool> {
        if ancestor == commit {
            return Ok(true);
        }
        let mut seen = HashSet::new();
        let mut queue = vec![commit];
        while let Some(c) = queue.pop() {
            if !seen.insert(c) {
                continue;
            }
            for p in self.read_commit(c)?.parents {
                if p == ancestor {
                    return Ok(true);
                }
                queue.push(p);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::tests::noise;
    use crate::{CommitInfo, NoProgress, VolumeKey};

    fn write(path: &Path, data: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    fn commit(repo: &Repository, vol: &VolumeKey, dir: &Path, message: &str) -> CommitId {
        repo.commit(
            vol,
            dir,
            CommitInfo::now(message, "tester@host"),
            &NoProgress,
        )
        .unwrap()
        .id
    }

    /// Sends `plan` to `dest` as a receiver would get it; returns the objects stored.
    fn deliver(src: &Repository, plan: &SendPlan, dest: &Repository) -> u64 {
        let objects: Vec<(ObjectId, Vec<u8>)> = plan
            .objects
            .iter()
            .map(|o| (o.id, src.read_raw_object(&o.id).unwrap()))
            .collect();
        let (last, stats) = dest
            .receive(objects.iter().map(|(i, s)| (*i, s)))
            .expect("the plan's order is one the admission rule accepts");
        assert_eq!(last, Some(plan.tip));
        stats.objects_stored
    }

    #[test]
    fn a_plan_from_nothing_is_the_whole_closure_and_an_incremental_one_only_what_changed() {
        let d = tempfile::tempdir().unwrap();
        let src = Repository::open(&d.path().join("src")).unwrap();
        let dest = Repository::open(&d.path().join("dest")).unwrap();
        let vol = VolumeKey::new_random();
        let dir = d.path().join("vol");
        for i in 0..20 {
            write(
                &dir.join(format!("d{}/f{i}", i % 4)),
                format!("file {i}").as_bytes(),
            );
        }
        write(&dir.join("big/data.bin"), &noise(7, 12 << 20));
        write(&dir.join("same-a"), b"twin");
        write(&dir.join("deep/x/same-b"), b"twin");
        std::os::unix::fs::symlink("d0/f0", dir.join("link")).unwrap();
        let one = commit(&src, &vol, &dir, "one");

        let full = src.plan_send(one, &[]).unwrap();
        let closure: HashSet<ObjectId> = src.reachable_objects(one).map(|id| id.unwrap()).collect();
        let planned: HashSet<ObjectId> = full.objects.iter().map(|o| o.id).collect();
        assert_eq!(planned, closure, "a plan from nothing is the whole closure");
        assert_eq!(planned.len(), full.objects.len(), "each object once");
        assert_eq!(full.new_commits, vec![one]);
        assert_eq!(deliver(&src, &full, &dest), closure.len() as u64);

        // One small file and one chunk of the big file change; two commits on top.
        write(&dir.join("d1/f1"), b"file 1, changed");
        let two = commit(&src, &vol, &dir, "two");
        let mut big = noise(7, 12 << 20);
        big[6 << 20] ^= 0xff;
        write(&dir.join("big/data.bin"), &big);
        let three = commit(&src, &vol, &dir, "three");

        let plan = src.plan_send(three, &[one]).unwrap();
        assert_eq!(plan.new_commits, vec![two, three], "oldest first");
        let new: HashSet<ObjectId> = plan.objects.iter().map(|o| o.id).collect();
        assert!(
            new.iter().all(|id| !dest.has_object(id)),
            "nothing the receiver has"
        );
        // two: root tree, d1 tree, the new f1 chunk, the commit. three: root tree, big tree,
        // its chunk list, at most two chunks (the changed one and, if a boundary moved, its
        // neighbour), the commit.
        assert!((9..=12).contains(&plan.objects.len()), "{:?}", plan.objects);
        deliver(&src, &plan, &dest);
        assert!(dest.fsck(&NoProgress).unwrap().is_clean());
        assert!(dest.is_ancestor(one, three).unwrap());
        assert!(!dest.is_ancestor(three, one).unwrap());

        let nothing = src.plan_send(three, &[three]).unwrap();
        assert!(nothing.objects.is_empty() && nothing.new_commits.is_empty());
    }

    #[test]
    fn base_commits_the_sender_lacks_are_ignored() {
        let d = tempfile::tempdir().unwrap();
        let src = Repository::open(&d.path().join("src")).unwrap();
        let vol = VolumeKey::new_random();
        let dir = d.path().join("vol");
        write(&dir.join("f"), b"x");
        let one = commit(&src, &vol, &dir, "one");
        let unknown = CommitId(ObjectId::hash(b"a commit of another host"));
        let plan = src.plan_send(one, &[unknown]).unwrap();
        assert!(plan.base.is_empty());
        assert_eq!(plan.new_commits, vec![one]);
    }
}
