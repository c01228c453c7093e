//! Branches, tags and HEAD of each volume.
//!
//! Layout under `refs/<volume uuid>/`: `heads/<branch>` and `tags/<tag>` each hold a commit
//! id in hex and a newline; `HEAD` holds `ref: <branch>` (a branch is checked out, possibly
//! one with no commit yet) or a commit id (detached); `reflog` records their moves
//! ([`crate::reflog`]). Every update is one atomic rename.
//!
//! The store itself takes no lock: callers serialise the writers of one volume with the
//! volume's lock (`Repository::lock_volume`). [`RefStore::set_if`] and
//! [`RefStore::set_head_if`] are compare-and-swap updates under that lock: a ref moves only
//! if it still holds what the caller last saw, so a transfer's ref update cannot overwrite
//! a commit made (or another transfer received) meanwhile.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::{atomic_write, ensure_dir, fsync_dir, is_temp_name, remove_durably, temp_name};
use crate::id::{CommitId, VolumeKey};

/// The longest ref name accepted.
pub const MAX_REF_NAME: usize = 64;

/// Errors about refs.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    /// A branch or tag name breaks the naming rules.
    #[error("invalid {what} name '{name}': {why}; names are 1-64 characters of letters, digits, '_', '.', '-', starting with a letter or digit, without '..'")]
    InvalidName {
        /// "branch" or "tag".
        what: &'static str,
        /// The name given.
        name: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// A file system operation failed.
    #[error("refs: cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A compare-and-swap update found the branch or tag somewhere else than expected
    /// (boxed: it is rare, and keeps every other error small).
    #[error("{} '{}' moved meanwhile: expected {}, found {}; nothing was changed (look at the new position, then retry)", .0.what, .0.name, show_commit(&.0.expected), show_commit(&.0.current))]
    Moved(Box<MovedRef>),
    /// A compare-and-swap update found HEAD somewhere else than expected.
    #[error("HEAD moved meanwhile: expected {}, found {}; nothing was changed (look at the new position, then retry)", show_head(&.0.expected), show_head(&.0.current))]
    HeadMoved(Box<MovedHead>),
    /// A ref file does not hold a valid value.
    #[error("ref file {path} is corrupt (holds {content:?}); fix or remove it")]
    Corrupt {
        /// The ref file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
}

/// Where a branch or tag was expected and where it is ([`RefError::Moved`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedRef {
    /// "branch" or "tag".
    pub what: &'static str,
    /// Its name.
    pub name: String,
    /// Where the caller expected it (`None`: absent).
    pub expected: Option<CommitId>,
    /// Where it is (`None`: absent).
    pub current: Option<CommitId>,
}

/// What HEAD was expected to say and what it says ([`RefError::HeadMoved`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedHead {
    /// What the caller expected (`None`: no HEAD yet).
    pub expected: Option<HeadRef>,
    /// What HEAD says (`None`: no HEAD yet).
    pub current: Option<HeadRef>,
}

/// How an error message names an expected or found ref position.
fn show_commit(c: &Option<CommitId>) -> String {
    match c {
        Some(c) => format!("commit {c}"),
        None => "no such ref".to_string(),
    }
}

/// How an error message names an expected or found HEAD.
fn show_head(h: &Option<HeadRef>) -> String {
    match h {
        Some(HeadRef::Branch(b)) => format!("branch '{b}'"),
        Some(HeadRef::Detached(c)) => format!("detached at {c}"),
        None => "no HEAD".to_string(),
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RefError + 'a {
    move |source| RefError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Branch, tag or remote-tracking ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A branch (`heads/`): moves with commits.
    Branch,
    /// A tag (`tags/`): fixed.
    Tag,
    /// Where a remote's branch was when this host last fetched, pushed or cloned it
    /// (`remotes/REMOTE/BRANCH`, named `REMOTE/BRANCH`).
    Remote,
}

impl RefKind {
    /// Every kind: what keeps commits reachable.
    pub const ALL: [RefKind; 3] = [RefKind::Branch, RefKind::Tag, RefKind::Remote];

    fn dir(self) -> &'static str {
        match self {
            RefKind::Branch => "heads",
            RefKind::Tag => "tags",
            RefKind::Remote => "remotes",
        }
    }

    /// "branch", "tag" or "remote-tracking ref".
    pub fn noun(self) -> &'static str {
        match self {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
            RefKind::Remote => "remote-tracking ref",
        }
    }
}

/// What HEAD points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadRef {
    /// A branch is checked out (it may not exist yet: an unborn branch).
    Branch(String),
    /// A commit is checked out directly.
    Detached(CommitId),
}

/// Checks a branch or tag name: `[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 64 characters, no
/// `..`, and not `HEAD`.
pub fn validate_ref_name(kind: RefKind, name: &str) -> Result<(), RefError> {
    if kind == RefKind::Remote {
        let Some((remote, branch)) = name.split_once('/') else {
            return Err(RefError::InvalidName {
                what: kind.noun(),
                name: name.to_string(),
                why: "it is not REMOTE/BRANCH",
            });
        };
        validate_ref_name(RefKind::Branch, remote)?;
        return validate_ref_name(RefKind::Branch, branch);
    }
    let bad = |why| {
        Err(RefError::InvalidName {
            what: kind.noun(),
            name: name.to_string(),
            why,
        })
    };
    let b = name.as_bytes();
    if b.is_empty() {
        return bad("it is empty");
    }
    if b.len() > MAX_REF_NAME {
        return bad("it is longer than 64 characters");
    }
    if !b[0].is_ascii_alphanumeric() {
        return bad("it does not start with a letter or digit");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        return bad("it contains a character other than letters, digits, '_', '.', '-'");
    }
    if name.contains("..") {
        return bad("it contains '..'");
    }
    if name == "HEAD" {
        return bad("HEAD is reserved");
    }
    Ok(())
}

/// The refs of all volumes.
#[derive(Debug)]
pub struct RefStore {
    root: PathBuf,
    trash: PathBuf,
}

impl RefStore {
    /// Opens (creating if needed) the ref store at `root`; deleted volumes pass through
    /// `trash` so that removal is one atomic rename.
    pub fn open(root: &Path, trash: &Path) -> Result<RefStore, RefError> {
        ensure_dir(root).map_err(io_err("create", root))?;
        ensure_dir(trash).map_err(io_err("create", trash))?;
        Ok(RefStore {
            root: root.to_path_buf(),
            trash: trash.to_path_buf(),
        })
    }

    fn vol_dir(&self, v: &VolumeKey) -> PathBuf {
        self.root.join(v.as_path_component())
    }

    fn ref_path(&self, v: &VolumeKey, kind: RefKind, name: &str) -> PathBuf {
        self.vol_dir(v).join(kind.dir()).join(name)
    }

    fn read_id(path: &Path) -> Result<Option<CommitId>, RefError> {
        match fs::read_to_string(path) {
            Ok(s) => s
                .trim_end()
                .parse::<CommitId>()
                .map(Some)
                .map_err(|_| RefError::Corrupt {
                    path: path.to_path_buf(),
                    content: s,
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", path)(e)),
        }
    }

    /// The commit a branch or tag points to, if it exists.
    pub fn get(
        &self,
        v: &VolumeKey,
        kind: RefKind,
        name: &str,
    ) -> Result<Option<CommitId>, RefError> {
        validate_ref_name(kind, name)?;
        Self::read_id(&self.ref_path(v, kind, name))
    }

    /// Creates or moves a branch or tag.
    pub fn set(
        &self,
        v: &VolumeKey,
        kind: RefKind,
        name: &str,
        id: CommitId,
    ) -> Result<(), RefError> {
        validate_ref_name(kind, name)?;
        let p = self.ref_path(v, kind, name);
        let dir = p.parent().unwrap_or(&self.root);
        ensure_dir(dir).map_err(io_err("create", dir))?;
        atomic_write(&p, format!("{id}\n").as_bytes()).map_err(io_err("write", &p))
    }

    /// Creates or moves a branch or tag to `new` only if it currently points at `expected`
    /// (`None`: only if it does not exist yet); a mismatch changes nothing and returns
    /// [`RefError::Moved`] with where the ref is. The write is atomic. The caller holds the
    /// volume's lock, the same lock every other ref write of the volume is made under, so
    /// that the comparison and the write are one step.
    pub fn set_if(
        &self,
        v: &VolumeKey,
        kind: RefKind,
        name: &str,
        expected: Option<CommitId>,
        new: CommitId,
    ) -> Result<(), RefError> {
        let current = self.get(v, kind, name)?;
        if current != expected {
            return Err(RefError::Moved(Box::new(MovedRef {
                what: kind.noun(),
                name: name.to_string(),
                expected,
                current,
            })));
        }
        self.set(v, kind, name, new)
    }

    /// Deletes a branch or tag; returns whether it existed.
    pub fn delete(&self, v: &VolumeKey, kind: RefKind, name: &str) -> Result<bool, RefError> {
        validate_ref_name(kind, name)?;
        let p = self.ref_path(v, kind, name);
        remove_durably(&p).map_err(io_err("remove", &p))
    }

    /// All branches or tags of a volume, sorted by name.
    pub fn list(&self, v: &VolumeKey, kind: RefKind) -> Result<Vec<(String, CommitId)>, RefError> {
        let dir = self.vol_dir(v).join(kind.dir());
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io_err("list", &dir))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if kind == RefKind::Remote {
                // One directory per remote, one file per branch.
                if validate_ref_name(RefKind::Branch, name).is_err() {
                    continue;
                }
                let remote = Self::list_dir(&ent.path(), RefKind::Branch)?;
                out.extend(
                    remote
                        .into_iter()
                        .map(|(b, id)| (format!("{name}/{b}"), id)),
                );
                continue;
            }
            if is_temp_name(name.as_bytes()) || validate_ref_name(kind, name).is_err() {
                continue;
            }
            if let Some(id) = Self::read_id(&ent.path())? {
                out.push((name.to_string(), id));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The refs of one directory, named as refs of `kind`.
    fn list_dir(dir: &Path, kind: RefKind) -> Result<Vec<(String, CommitId)>, RefError> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", dir)(e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io_err("list", dir))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_temp_name(name.as_bytes()) || validate_ref_name(kind, name).is_err() {
                continue;
            }
            if let Some(id) = Self::read_id(&ent.path())? {
                out.push((name.to_string(), id));
            }
        }
        Ok(out)
    }

    /// What HEAD says, or `None` if the volume has no HEAD yet.
    pub fn head(&self, v: &VolumeKey) -> Result<Option<HeadRef>, RefError> {
        let p = self.vol_dir(v).join("HEAD");
        let s = match fs::read_to_string(&p) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", &p)(e)),
        };
        let t = s.trim_end();
        if let Some(b) = t.strip_prefix("ref: ") {
            if validate_ref_name(RefKind::Branch, b).is_ok() {
                return Ok(Some(HeadRef::Branch(b.to_string())));
            }
        } else if let Ok(id) = t.parse::<CommitId>() {
            return Ok(Some(HeadRef::Detached(id)));
        }
        Err(RefError::Corrupt {
            path: p,
            content: s,
        })
    }

    /// Points HEAD at a branch or a commit.
    pub fn set_head(&self, v: &VolumeKey, head: &HeadRef) -> Result<(), RefError> {
        let dir = self.vol_dir(v);
        ensure_dir(&dir).map_err(io_err("create", &dir))?;
        let text = match head {
            HeadRef::Branch(b) => {
                validate_ref_name(RefKind::Branch, b)?;
                format!("ref: {b}\n")
            }
            HeadRef::Detached(id) => format!("{id}\n"),
        };
        let p = dir.join("HEAD");
        atomic_write(&p, text.as_bytes()).map_err(io_err("write", &p))
    }

    /// Points HEAD at `new` only if it currently says `expected` (`None`: only if the volume
    /// has no HEAD yet); a mismatch changes nothing and returns [`RefError::HeadMoved`] with
    /// what HEAD says. The caller holds the volume's lock (see [`RefStore::set_if`]).
    pub fn set_head_if(
        &self,
        v: &VolumeKey,
        expected: Option<&HeadRef>,
        new: &HeadRef,
    ) -> Result<(), RefError> {
        let current = self.head(v)?;
        if current.as_ref() != expected {
            return Err(RefError::HeadMoved(Box::new(MovedHead {
                expected: expected.cloned(),
                current,
            })));
        }
        self.set_head(v, new)
    }

    /// The volume's reflog file ([`crate::reflog`]), beside its refs.
    pub fn reflog_path(&self, v: &VolumeKey) -> PathBuf {
        self.vol_dir(v).join("reflog")
    }

    /// Makes the volume's directory of refs exist (before its first reflog entry).
    pub fn ensure_volume_dir(&self, v: &VolumeKey) -> Result<(), RefError> {
        let dir = self.vol_dir(v);
        ensure_dir(&dir).map_err(io_err("create", &dir))
    }

    /// Whether the volume has any refs (a HEAD, branch or tag).
    pub fn has_volume(&self, v: &VolumeKey) -> bool {
        self.vol_dir(v).exists()
    }

    /// Every volume with refs.
    pub fn volumes(&self) -> Result<Vec<VolumeKey>, RefError> {
        let rd = fs::read_dir(&self.root).map_err(io_err("list", &self.root))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io_err("list", &self.root))?;
            if let Some(v) = ent
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<VolumeKey>().ok())
            {
                out.push(v);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Drops all refs of a volume: one atomic rename into the trash, then deletion.
    /// Returns whether the volume had refs.
    pub fn remove_volume(&self, v: &VolumeKey) -> Result<bool, RefError> {
        let dir = self.vol_dir(v);
        let dest = self
            .trash
            .join(format!("{}{}", temp_name(), v.as_path_component()));
        match fs::rename(&dir, &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err("move to trash", &dir)(e)),
        }
        fsync_dir(&self.root).map_err(io_err("fsync", &self.root))?;
        self.empty_trash()?;
        Ok(true)
    }

    /// Deletes whatever is in the trash (left by an interrupted volume removal).
    pub fn empty_trash(&self) -> Result<(), RefError> {
        let rd = fs::read_dir(&self.trash).map_err(io_err("list", &self.trash))?;
        for ent in rd {
            let ent = ent.map_err(io_err("list", &self.trash))?;
            let p = ent.path();
            let r = if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(io_err("remove", &p))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ObjectId;

    #[test]
    fn names() {
        for ok in ["master", "a", "v1.0", "feature_x-2", "9lives"] {
            validate_ref_name(RefKind::Branch, ok).unwrap();
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            ".hidden",
            "-x",
            "a..b",
            "a/b",
            "HEAD",
            "a b",
            "x^",
            "y~1",
            long.as_str(),
        ] {
            assert!(validate_ref_name(RefKind::Branch, bad).is_err(), "{bad}");
        }
        let msg = validate_ref_name(RefKind::Tag, "a/b")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("tag name 'a/b'"), "{msg}");
    }

    #[test]
    fn set_get_list_delete_head() {
        let d = tempfile::tempdir().unwrap();
        let rs = RefStore::open(&d.path().join("refs"), &d.path().join("trash")).unwrap();
        let v = VolumeKey::new_random();
        let c = CommitId(ObjectId::hash(b"c"));
        assert_eq!(rs.head(&v).unwrap(), None);
        rs.set(&v, RefKind::Branch, "master", c).unwrap();
        rs.set(&v, RefKind::Tag, "v1", c).unwrap();
        rs.set_head(&v, &HeadRef::Branch("master".into())).unwrap();
        assert_eq!(rs.get(&v, RefKind::Branch, "master").unwrap(), Some(c));
        assert_eq!(
            rs.list(&v, RefKind::Tag).unwrap(),
            vec![("v1".to_string(), c)]
        );
        assert_eq!(rs.head(&v).unwrap(), Some(HeadRef::Branch("master".into())));
        rs.set_head(&v, &HeadRef::Detached(c)).unwrap();
        assert_eq!(rs.head(&v).unwrap(), Some(HeadRef::Detached(c)));
        assert_eq!(rs.volumes().unwrap(), vec![v]);
        assert!(rs.delete(&v, RefKind::Tag, "v1").unwrap());
        assert!(!rs.delete(&v, RefKind::Tag, "v1").unwrap());
        assert!(rs.remove_volume(&v).unwrap());
        assert!(rs.volumes().unwrap().is_empty());
        assert!(!rs.remove_volume(&v).unwrap());
    }

    fn commit_ids(n: usize) -> Vec<CommitId> {
        (0..n)
            .map(|i| CommitId(ObjectId::hash(format!("commit {i}").as_bytes())))
            .collect()
    }

    fn ref_store() -> (tempfile::TempDir, RefStore) {
        let d = tempfile::tempdir().unwrap();
        let rs = RefStore::open(&d.path().join("refs"), &d.path().join("trash")).unwrap();
        (d, rs)
    }

    #[test]
    fn set_if_moves_only_from_the_expected_position() {
        let (_d, rs) = ref_store();
        let v = VolumeKey::new_random();
        let c = commit_ids(3);
        // Create-only: succeeds while absent, then refuses.
        rs.set_if(&v, RefKind::Branch, "main", None, c[0]).unwrap();
        assert_eq!(rs.get(&v, RefKind::Branch, "main").unwrap(), Some(c[0]));
        match rs.set_if(&v, RefKind::Branch, "main", None, c[1]) {
            Err(RefError::Moved(m)) => {
                assert_eq!(
                    (m.what, m.name.as_str(), m.expected, m.current),
                    ("branch", "main", None, Some(c[0]))
                );
            }
            other => panic!("create-only over an existing branch: {other:?}"),
        }
        // Success from the current position.
        rs.set_if(&v, RefKind::Branch, "main", Some(c[0]), c[1])
            .unwrap();
        assert_eq!(rs.get(&v, RefKind::Branch, "main").unwrap(), Some(c[1]));
        // Mismatch: nothing changes and the current position is returned.
        let err = rs
            .set_if(&v, RefKind::Branch, "main", Some(c[0]), c[2])
            .unwrap_err();
        match &err {
            RefError::Moved(m) => assert_eq!((m.expected, m.current), (Some(c[0]), Some(c[1]))),
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("branch 'main' moved meanwhile"), "{msg}");
        assert!(msg.contains(&c[1].to_string()), "{msg}");
        assert_eq!(rs.get(&v, RefKind::Branch, "main").unwrap(), Some(c[1]));
        // Expecting a ref that does not exist.
        assert!(matches!(
            rs.set_if(&v, RefKind::Tag, "v1", Some(c[0]), c[2]),
            Err(RefError::Moved(m)) if m.current.is_none()
        ));
        assert_eq!(rs.get(&v, RefKind::Tag, "v1").unwrap(), None);
        // Names are still checked.
        assert!(matches!(
            rs.set_if(&v, RefKind::Tag, "a/b", None, c[2]),
            Err(RefError::InvalidName { .. })
        ));
    }

    #[test]
    fn set_head_if_moves_only_from_the_expected_head() {
        let (_d, rs) = ref_store();
        let v = VolumeKey::new_random();
        let c = commit_ids(2);
        let master = HeadRef::Branch("master".into());
        rs.set_head_if(&v, None, &master).unwrap();
        match rs.set_head_if(&v, None, &HeadRef::Detached(c[0])) {
            Err(RefError::HeadMoved(m)) => {
                assert_eq!((m.expected, m.current), (None, Some(master.clone())));
            }
            other => panic!("{other:?}"),
        }
        rs.set_head_if(&v, Some(&master), &HeadRef::Detached(c[0]))
            .unwrap();
        let err = rs
            .set_head_if(&v, Some(&master), &HeadRef::Detached(c[1]))
            .unwrap_err();
        assert!(err.to_string().contains("HEAD moved meanwhile"), "{err}");
        assert_eq!(rs.head(&v).unwrap(), Some(HeadRef::Detached(c[0])));
    }

    #[test]
    fn racing_updates_from_the_same_position_have_one_winner() {
        use crate::{CommitInfo, NoProgress, Repository};
        let d = tempfile::tempdir().unwrap();
        let repo = Repository::open(&d.path().join("history")).unwrap();
        let v = VolumeKey::new_random();
        let src = d.path().join("v");
        fs::create_dir_all(&src).unwrap();
        let threads = 6;
        let mut commits = Vec::new();
        for i in 0..=threads {
            fs::write(src.join("f"), format!("version {i}")).unwrap();
            let info = CommitInfo::now(format!("c{i}"), "tester@host");
            commits.push(repo.commit(&v, &src, info, &NoProgress).unwrap().id);
        }
        for round in 0..10 {
            let start = commits[round % commits.len()];
            // Each round starts from a fresh position everyone has seen.
            let seen = repo.refs.get(&v, RefKind::Branch, "transfer").unwrap();
            repo.update_ref_if(&v, RefKind::Branch, "transfer", seen, start, "reset")
                .unwrap();
            let barrier = std::sync::Barrier::new(threads);
            let results: Vec<(CommitId, Result<(), crate::Error>)> = std::thread::scope(|sc| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let (repo, barrier) = (&repo, &barrier);
                        let target = commits[(round + t + 1) % commits.len()];
                        sc.spawn(move || {
                            barrier.wait();
                            let r = repo.update_ref_if(
                                &v,
                                RefKind::Branch,
                                "transfer",
                                Some(start),
                                target,
                                "transfer: received",
                            );
                            (target, r)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners: Vec<CommitId> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(t, _)| *t)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            let now = repo.refs.get(&v, RefKind::Branch, "transfer").unwrap();
            assert_eq!(now, Some(winners[0]));
            // Every loser was told where the winner put it.
            for (_, r) in &results {
                if let Err(e) = r {
                    match e {
                        crate::Error::Ref(RefError::Moved(m)) => {
                            assert_eq!(m.current, now);
                        }
                        other => panic!("{other}"),
                    }
                }
            }
        }
        // The reflog records one move per round for the winner, plus the resets.
        let moves = repo
            .reflog(&v)
            .unwrap()
            .iter()
            .filter(|e| e.reference == "transfer")
            .count();
        assert_eq!(moves, 20);
    }
}
