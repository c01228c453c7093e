//! Receiving objects from another host, in batches.
//!
//! A sender streams objects in their stored form, children before the objects that name
//! them (the order [`Repository::missing_objects`] yields). A [`Receiver`] re-hashes each one
//! (the store refuses content that does not hash to its id), stores it through one
//! [`WriteBatch`] with bounded pending state ([`RECEIVE_BATCH_OBJECTS`],
//! [`RECEIVE_BATCH_BYTES`]) instead of making every object durable on its own, and applies
//! the **admission rule**: a structured object (a commit, tree, file chunk list or block map)
//! is accepted only if every object it names is already stored or was received earlier in
//! the same session. With the batch's ordered renames this keeps the store's invariant "an
//! object in place implies everything below it is in place", also after a crash mid-receive,
//! so a resumed transfer may trust [`Repository::has_object`] and the last complete commit
//! is a safe place for a ref.
//!
//! [`Receiver::checkpoint`] makes everything received so far durable and returns the last
//! commit received whole: the caller may then point a ref at it (with
//! [`Repository::update_ref_if`]). A receiver holds a [`Pin`], so garbage collection waits
//! while it is alive.
//!
//! A session that may be interrupted and resumed by a later process
//! ([`Repository::resumable_receiver`]) also leaves a marker, `incoming/<session>`, refreshed at
//! every checkpoint and removed by [`Repository::end_receive`] once the received commit has a
//! ref. [`Repository::receives_in_progress`] lists the markers younger than
//! [`RECEIVE_MARKER_MAX_AGE`]: while one exists, garbage collection is to keep unreferenced
//! objects younger than that age, so that a resumed transfer finds what the interrupted one
//! already stored.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::fsutil::{atomic_write, ensure_dir, remove_durably};
use crate::id::{CommitId, ObjectId};
use crate::object::{BlockMap, Commit, Content, FileObject, ObjectKind, Tree};
use crate::repo::{io_err, Error, Pin, Repository};
use crate::store::{ObjectStore, StoreError, WriteBatch};

/// A receiver's batch makes its objects durable (and renames them into place) at the latest
/// once this many are pending.
pub const RECEIVE_BATCH_OBJECTS: usize = 4096;

/// ... or once this many stored bytes are pending.
pub const RECEIVE_BATCH_BYTES: u64 = 16 << 20;

/// A receive marker older than this is ignored: its transfer is taken for abandoned.
pub const RECEIVE_MARKER_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// The longest receive session name accepted.
pub const MAX_SESSION_NAME: usize = 64;

/// Why an object was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// A structured object names an object that is neither stored nor received before it.
    #[error("refusing object {id}: it names object {missing}, which is neither stored here nor received before it; send the objects an object names before it (children first), or plan the transfer again from what this host has")]
    MissingChild {
        /// The refused object.
        id: ObjectId,
        /// The first object it names that is absent.
        missing: ObjectId,
    },
    /// The object's stored form does not decode or does not hash to its id.
    #[error("refusing received object {id}: {}; the sender's copy is damaged or was damaged on the way: run `dvol fsck` on the sending host, then send again", damage(.source))]
    Damaged {
        /// The refused object.
        id: ObjectId,
        /// [`StoreError::HashMismatch`] or [`StoreError::Corrupt`].
        source: StoreError,
    },
    /// The store could not write an object.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A receive session name breaks the naming rules.
    #[error("invalid receive session name '{0}'; use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit")]
    InvalidSession(String),
    /// The repository could not be locked, or a marker could not be written.
    #[error(transparent)]
    Repository(#[from] Error),
}

/// What is wrong with a damaged object, in words.
fn damage(e: &StoreError) -> String {
    match e {
        StoreError::HashMismatch { actual, .. } => format!("its content hashes to {actual}"),
        StoreError::Corrupt { why, .. } => format!("it does not decode ({why})"),
        other => other.to_string(),
    }
}

/// What happened to one received object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// It was new and is now stored (durable at the next checkpoint at the latest).
    Stored,
    /// The repository already had it (or it came earlier in this session).
    Duplicate,
}

/// Counts of a receive session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Objects stored (new to this repository).
    pub objects_stored: u64,
    /// Objects received that the repository already had.
    pub duplicates_skipped: u64,
    /// Stored (compressed) bytes of the objects stored.
    pub bytes_stored: u64,
    /// Stored bytes of every object received, duplicates included.
    pub bytes_received: u64,
    /// Durability calls made (`fdatasync`, `syncfs`, directory `fsync`).
    pub sync_calls: u64,
}

/// A receive session: stores a children-first stream of objects through one write batch.
/// Dropping it without a [`Receiver::checkpoint`] discards the objects received since the
/// last one that are still pending (those already flushed stay; they are complete subtrees).
#[derive(Debug)]
pub struct Receiver<'r> {
    repo: &'r Repository,
    batch: WriteBatch,
    stats: ReceiveStats,
    /// The last commit received (stored or duplicate): its closure is complete.
    last_commit: Option<CommitId>,
    /// The session's marker, for a resumable session.
    marker: Option<PathBuf>,
    _pin: Pin,
}

/// The marker of a receive session that has not ended ([`Repository::resumable_receiver`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveMarker {
    /// The session's name.
    pub session: String,
    /// When the session last started or made a checkpoint.
    pub updated: SystemTime,
}

/// The objects a structured object names (for a commit: its tree or block map, then its
/// parents), or nothing for a chunk. Data that starts like a structured object but does not
/// decode as one is a chunk ([`ObjectKind::sniff`]).
fn named_objects(id: &ObjectId, data: &[u8]) -> Vec<ObjectId> {
    match ObjectKind::sniff(data) {
        ObjectKind::Chunk => Vec::new(),
        ObjectKind::Commit => Commit::decode(*id, data)
            .map(|c| {
                let content = match c.content {
                    Content::Tree(t) | Content::BlockMap(t) => t,
                };
                std::iter::once(content)
                    .chain(c.parents.iter().map(|p| p.0))
                    .collect()
            })
            .unwrap_or_default(),
        ObjectKind::Tree => Tree::decode(*id, data)
            .map(|t| t.entries.iter().map(|e| e.id).collect())
            .unwrap_or_default(),
        ObjectKind::File => FileObject::decode(*id, data)
            .map(|f| f.chunks.iter().map(|c| c.id).collect())
            .unwrap_or_default(),
        ObjectKind::BlockMap => BlockMap::decode(*id, data)
            .map(|m| m.chunks.iter().map(|(_, c)| *c).collect())
            .unwrap_or_default(),
    }
}

/// Whether `data` is a commit that decodes as one.
fn is_commit(id: &ObjectId, data: &[u8]) -> bool {
    ObjectKind::sniff(data) == ObjectKind::Commit && Commit::decode(*id, data).is_ok()
}

impl Receiver<'_> {
    /// Verifies and stores one object received in stored form as `id`. Refuses (storing
    /// nothing) an object whose content does not hash to `id` or does not decode
    /// ([`ReceiveError::Damaged`]), and a structured object naming an object that is neither
    /// stored nor received before it ([`ReceiveError::MissingChild`]).
    /// A refusal leaves the session usable: what was accepted before still counts.
    pub fn receive(&mut self, id: &ObjectId, stored: &[u8]) -> Result<Received, ReceiveError> {
        let store = &self.repo.store;
        let data = ObjectStore::verify_stored(id, stored)
            .map_err(|source| ReceiveError::Damaged { id: *id, source })?;
        self.stats.bytes_received += stored.len() as u64;
        let commit = is_commit(id, &data);
        let outcome = if store.has_or_pending(id, &self.batch) {
            Received::Duplicate
        } else {
            // Tree entries may repeat an id; checking it twice is harmless.
            if let Some(missing) = named_objects(id, &data)
                .into_iter()
                .find(|child| !store.has_or_pending(child, &self.batch))
            {
                return Err(ReceiveError::MissingChild { id: *id, missing });
            }
            if store.write_verified(id, stored, &self.batch)? {
                Received::Stored
            } else {
                Received::Duplicate
            }
        };
        match outcome {
            Received::Stored => {
                self.stats.objects_stored += 1;
                self.stats.bytes_stored += stored.len() as u64;
            }
            Received::Duplicate => self.stats.duplicates_skipped += 1,
        }
        if commit {
            self.last_commit = Some(CommitId(*id));
        }
        Ok(outcome)
    }

    /// Makes everything received so far durable and visible, and returns the last commit
    /// received (its whole closure is now stored), if any: a ref may point at it now.
    pub fn checkpoint(&mut self) -> Result<Option<CommitId>, ReceiveError> {
        self.batch.sync()?;
        self.stats.sync_calls = self.batch.sync_calls();
        if let Some(marker) = &self.marker {
            write_marker(marker, self.last_commit)?;
        }
        Ok(self.last_commit)
    }

    /// The last commit received whole (durable only after [`Receiver::checkpoint`]).
    pub fn last_commit(&self) -> Option<CommitId> {
        self.last_commit
    }

    /// The session's counts so far.
    pub fn stats(&self) -> ReceiveStats {
        ReceiveStats {
            sync_calls: self.batch.sync_calls(),
            ..self.stats
        }
    }

    /// Objects received but not yet in place (at most [`RECEIVE_BATCH_OBJECTS`]).
    pub fn pending(&self) -> usize {
        self.batch.pending()
    }

    /// Ends the session with a checkpoint: the last commit received and the counts.
    pub fn finish(mut self) -> Result<(Option<CommitId>, ReceiveStats), ReceiveError> {
        let last = self.checkpoint()?;
        Ok((last, self.stats()))
    }
}

/// Writes a receive marker (atomically), recording the last complete commit received.
fn write_marker(path: &std::path::Path, last_commit: Option<CommitId>) -> Result<(), Error> {
    let text = match last_commit {
        Some(c) => format!("dvol-receive 1\nlast-complete-commit {c}\n"),
        None => "dvol-receive 1\n".to_string(),
    };
    atomic_write(path, text.as_bytes()).map_err(io_err("write", path))
}

impl Repository {
    /// Starts a receive session ([`Receiver`]); garbage collection waits until it is dropped.
    pub fn receiver(&self) -> Result<Receiver<'_>, ReceiveError> {
        self.receiver_with_limits(RECEIVE_BATCH_OBJECTS, RECEIVE_BATCH_BYTES)
    }

    /// A receive session whose batch flushes at `max_objects` objects or `max_bytes` bytes.
    pub(crate) fn receiver_with_limits(
        &self,
        max_objects: usize,
        max_bytes: u64,
    ) -> Result<Receiver<'_>, ReceiveError> {
        Ok(Receiver {
            repo: self,
            batch: WriteBatch::with_limits(max_objects, max_bytes),
            stats: ReceiveStats::default(),
            last_commit: None,
            marker: None,
            _pin: self.pin()?,
        })
    }

    fn incoming_dir(&self) -> PathBuf {
        self.root.join("incoming")
    }

    fn marker_path(&self, session: &str) -> Result<PathBuf, ReceiveError> {
        let b = session.as_bytes();
        let valid = !b.is_empty()
            && b.len() <= MAX_SESSION_NAME
            && b[0].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !valid {
            return Err(ReceiveError::InvalidSession(session.to_string()));
        }
        Ok(self.incoming_dir().join(session))
    }

    /// Starts (or resumes) the receive session `session` ([`Receiver`]) and records it in a
    /// marker that outlives this process until [`Repository::end_receive`]; each checkpoint
    /// refreshes it. Resuming means receiving again what the sender still finds missing:
    /// what the interrupted session stored is kept and skipped.
    pub fn resumable_receiver(&self, session: &str) -> Result<Receiver<'_>, ReceiveError> {
        let path = self.marker_path(session)?;
        let mut receiver = self.receiver()?;
        let dir = self.incoming_dir();
        ensure_dir(&dir).map_err(io_err("create", &dir))?;
        write_marker(&path, None)?;
        receiver.marker = Some(path);
        Ok(receiver)
    }

    /// Ends receive session `session`: removes its marker (after the ref that makes the
    /// received commit reachable is set, or to abandon the session). Returns whether it
    /// existed.
    pub fn end_receive(&self, session: &str) -> Result<bool, ReceiveError> {
        let path = self.marker_path(session)?;
        Ok(remove_durably(&path).map_err(io_err("remove", &path))?)
    }

    /// Every receive session that has not ended, sorted by name, however old.
    pub fn receive_markers(&self) -> Result<Vec<ReceiveMarker>, ReceiveError> {
        let dir = self.incoming_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &dir)(e).into()),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(io_err("list", &dir))?;
            let Some(session) = ent.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if crate::fsutil::is_temp_name(session.as_bytes()) {
                continue;
            }
            let path = ent.path();
            let updated = match ent.metadata().and_then(|m| m.modified()) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat", &path)(e).into()),
            };
            out.push(ReceiveMarker { session, updated });
        }
        out.sort_by(|a, b| a.session.cmp(&b.session));
        Ok(out)
    }

    /// The receive sessions whose marker is younger than [`RECEIVE_MARKER_MAX_AGE`]. While
    /// any exists, garbage collection must keep the unreferenced objects younger than that
    /// age (what the interrupted transfer stored, which a resumed one skips).
    pub fn receives_in_progress(&self) -> Result<Vec<ReceiveMarker>, ReceiveError> {
        let now = SystemTime::now();
        Ok(self
            .receive_markers()?
            .into_iter()
            .filter(|m| {
                now.duration_since(m.updated)
                    .map_or(true, |age| age < RECEIVE_MARKER_MAX_AGE)
            })
            .collect())
    }

    /// Receives a whole children-first stream of `(id, stored form)` ([`Receiver`]) and makes
    /// it durable; returns the last commit received and the counts. At the first refused
    /// object it stops: the objects before it are made durable and kept (a retry skips
    /// them), nothing after it is read, and the refusal is returned.
    pub fn receive<S: AsRef<[u8]>>(
        &self,
        objects: impl IntoIterator<Item = (ObjectId, S)>,
    ) -> Result<(Option<CommitId>, ReceiveStats), ReceiveError> {
        let mut receiver = self.receiver()?;
        for (id, stored) in objects {
            if let Err(e) = receiver.receive(&id, stored.as_ref()) {
                // Keep the valid prefix; the refusal matters more than a failure to keep it.
                let _ = receiver.checkpoint();
                return Err(e);
            }
        }
        receiver.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::refs::RefKind;
    use crate::tests::noise;
    use crate::{CommitInfo, NoProgress, VolumeKey};

    fn write(path: &Path, data: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    /// A repository with two commits of a tree holding small files, a file of several
    /// chunks, a subdirectory and a symlink; returns the tip.
    fn source(dir: &Path) -> (Repository, VolumeKey, CommitId) {
        let repo = Repository::open(&dir.join("history")).unwrap();
        let vol = VolumeKey::new_random();
        let src = dir.join("vol");
        write(&src.join("a.txt"), b"alpha");
        write(&src.join("sub/b.txt"), b"beta");
        write(&src.join("sub/deeper/c.bin"), &noise(1, 3 << 20));
        std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
        let info = |m: &str| CommitInfo::now(m, "tester@host");
        repo.commit(&vol, &src, info("one"), &NoProgress).unwrap();
        write(&src.join("sub/b.txt"), b"beta, changed");
        write(&src.join("new.txt"), b"new");
        let tip = repo
            .commit(&vol, &src, info("two"), &NoProgress)
            .unwrap()
            .id;
        (repo, vol, tip)
    }

    /// The closure of `tip` in send order, with stored forms.
    fn stream(repo: &Repository, tip: CommitId) -> Vec<(ObjectId, Vec<u8>)> {
        repo.reachable_objects(tip)
            .map(|id| {
                let id = id.unwrap();
                (id, repo.read_raw_object(&id).unwrap())
            })
            .collect()
    }

    fn temp_files(repo: &Repository) -> usize {
        repo.store
            .list()
            .unwrap()
            .iter()
            .filter(|f| matches!(f, crate::store::StoreFile::Temp(_)))
            .count()
    }

    #[test]
    fn receiving_a_commits_closure_gives_the_same_commit_and_a_clean_repository() {
        let d = tempfile::tempdir().unwrap();
        let (src, vol, tip) = source(d.path());
        let objects = stream(&src, tip);
        let dest = Repository::open(&d.path().join("dest")).unwrap();
        let (last, stats) = dest.receive(objects.iter().map(|(i, s)| (*i, s))).unwrap();
        assert_eq!(last, Some(tip));
        assert_eq!(stats.objects_stored, objects.len() as u64);
        assert_eq!(stats.duplicates_skipped, 0);
        let total: u64 = objects.iter().map(|(_, s)| s.len() as u64).sum();
        assert_eq!((stats.bytes_stored, stats.bytes_received), (total, total));
        assert_eq!(temp_files(&dest), 0);
        dest.update_ref_if(&vol, RefKind::Branch, "master", None, tip, "transfer")
            .unwrap();
        let report = dest.fsck(&NoProgress).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.unreachable, 0);
        assert_eq!(report.reachable, objects.len() as u64);
        assert_eq!(
            dest.read_commit(tip).unwrap(),
            src.read_commit(tip).unwrap()
        );
        // The same stream again: everything is a duplicate, nothing is written.
        let (last, again) = dest.receive(objects.iter().map(|(i, s)| (*i, s))).unwrap();
        assert_eq!(last, Some(tip));
        assert_eq!(again.objects_stored, 0);
        assert_eq!(again.duplicates_skipped, objects.len() as u64);
        assert_eq!(again.sync_calls, 0);
    }

    #[test]
    fn a_corrupt_object_is_refused_by_id_and_nothing_after_it_is_stored() {
        let d = tempfile::tempdir().unwrap();
        let (src, _vol, tip) = source(d.path());
        let mut objects = stream(&src, tip);
        let k = objects.len() / 2;
        let bad = objects[k].0;
        // Bytes of another object offered under this id.
        objects[k].1 = objects[0].1.clone();
        let dest = Repository::open(&d.path().join("dest")).unwrap();
        let err = dest
            .receive(objects.iter().map(|(i, s)| (*i, s)))
            .unwrap_err();
        match &err {
            ReceiveError::Damaged {
                id,
                source: StoreError::HashMismatch { expected, .. },
            } => assert_eq!((*id, *expected), (bad, bad)),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains(&bad.to_string()), "{err}");
        // The objects before it are kept, it and everything after it are not stored.
        for (i, (id, _)) in objects.iter().enumerate() {
            assert_eq!(
                dest.has_object(id),
                i < k,
                "object {i} of {}",
                objects.len()
            );
        }
        assert_eq!(temp_files(&dest), 0);
        // A flipped byte in a stored form is refused the same way (it names the id).
        let mut receiver = dest.receiver().unwrap();
        let mut flipped = objects[k + 1].1.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let err = receiver.receive(&objects[k + 1].0, &flipped).unwrap_err();
        assert!(matches!(err, ReceiveError::Damaged { id, .. } if id == objects[k + 1].0));
        let msg = err.to_string();
        assert!(msg.contains(&objects[k + 1].0.to_string()), "{msg}");
        assert!(msg.contains("fsck` on the sending host"), "{msg}");
        assert_eq!(receiver.checkpoint().unwrap(), None);
        assert!(!dest.has_object(&objects[k + 1].0));
    }

    #[test]
    fn a_tree_sent_before_its_children_is_refused_naming_the_missing_child() {
        let d = tempfile::tempdir().unwrap();
        let (src, _vol, tip) = source(d.path());
        let objects = stream(&src, tip);
        let root = src.read_commit(tip).unwrap().tree().unwrap();
        let (pos, stored) = objects
            .iter()
            .enumerate()
            .find(|(_, (id, _))| *id == root)
            .map(|(i, (_, s))| (i, s.clone()))
            .unwrap();
        let first_child = src.read_tree(&root).unwrap().entries[0].id;
        let dest = Repository::open(&d.path().join("dest")).unwrap();
        let mut receiver = dest.receiver().unwrap();
        match receiver.receive(&root, &stored) {
            Err(ReceiveError::MissingChild { id, missing }) => {
                assert_eq!((id, missing), (root, first_child));
            }
            other => panic!("{other:?}"),
        }
        // A commit before its tree is refused too.
        let commit = objects.last().unwrap();
        assert!(matches!(
            receiver.receive(&commit.0, &commit.1),
            Err(ReceiveError::MissingChild { .. })
        ));
        // Sent in order, the same objects are accepted: the refusals left nothing behind.
        for (id, s) in &objects[..pos] {
            receiver.receive(id, s).unwrap();
        }
        assert_eq!(receiver.receive(&root, &stored).unwrap(), Received::Stored);
        for (id, s) in &objects[pos + 1..] {
            receiver.receive(id, s).unwrap();
        }
        assert_eq!(receiver.checkpoint().unwrap(), Some(tip));
        assert!(objects.iter().all(|(id, _)| dest.has_object(id)));
    }

    /// `n` distinct small chunks in stored form.
    fn small_objects(n: usize) -> Vec<(ObjectId, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let data = format!("small object {i}").into_bytes();
                (ObjectId::hash(&data), ObjectStore::encode_stored(&data))
            })
            .collect()
    }

    #[test]
    fn ten_thousand_small_objects_take_a_bounded_number_of_syncs() {
        let d = tempfile::tempdir().unwrap();
        let dest = Repository::open(&d.path().join("dest")).unwrap();
        let objects = small_objects(10_000);
        let started = std::time::Instant::now();
        let mut receiver = dest.receiver().unwrap();
        for (id, s) in &objects {
            assert_eq!(receiver.receive(id, s).unwrap(), Received::Stored);
            assert!(receiver.pending() < RECEIVE_BATCH_OBJECTS);
        }
        let (last, stats) = receiver.finish().unwrap();
        let took = started.elapsed();
        assert_eq!(last, None, "no commit was received");
        assert_eq!(stats.objects_stored, 10_000);
        // Three batches of at most 4,096 objects, one syncfs each, and one for the renames of
        // the last (one object per fsync would be 10,000 fdatasyncs and 10,000 fsyncs).
        assert_eq!(stats.sync_calls, 4, "{stats:?}");
        assert!(objects.iter().all(|(id, _)| dest.has_object(id)));
        eprintln!(
            "received 10,000 objects with {} sync calls in {took:?}",
            stats.sync_calls
        );
    }

    #[test]
    fn an_interrupted_receive_leaves_only_complete_subtrees() {
        let d = tempfile::tempdir().unwrap();
        let (src, _vol, tip) = source(d.path());
        let objects = stream(&src, tip);
        let dest = Repository::open(&d.path().join("dest")).unwrap();
        // Small batches, so that several flushes happen before the "crash".
        let mut receiver = dest.receiver_with_limits(3, u64::MAX).unwrap();
        let cut = objects.len() - 2;
        for (id, s) in &objects[..cut] {
            receiver.receive(id, s).unwrap();
        }
        // The process dies: no destructor, no checkpoint.
        std::mem::forget(receiver);
        let stored: Vec<ObjectId> = objects
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| dest.has_object(id))
            .collect();
        assert!(!stored.is_empty() && stored.len() < cut, "{}", stored.len());
        // Whatever is in place has everything it names in place.
        for id in &stored {
            let data = dest.read_object(id).unwrap();
            for child in named_objects(id, &data) {
                assert!(dest.has_object(&child), "{id} is stored without {child}");
            }
        }
        // A resumed transfer sends only what is missing, and completes.
        let rest: Vec<(ObjectId, Vec<u8>)> = src
            .missing_objects(tip, |id| dest.has_object(id))
            .map(|id| {
                let id = id.unwrap();
                (id, src.read_raw_object(&id).unwrap())
            })
            .collect();
        assert_eq!(rest.len(), objects.len() - stored.len());
        let (last, _) = dest.receive(rest).unwrap();
        assert_eq!(last, Some(tip));
        assert!(objects.iter().all(|(id, _)| dest.has_object(id)));
    }

    #[test]
    fn named_objects_lists_what_the_walk_follows() {
        let d = tempfile::tempdir().unwrap();
        let (src, _vol, tip) = source(d.path());
        let commit = src.read_commit(tip).unwrap();
        let data = src.read_object(&tip.0).unwrap();
        let mut expected = vec![commit.tree().unwrap()];
        expected.extend(commit.parents.iter().map(|p| p.0));
        assert_eq!(named_objects(&tip.0, &data), expected);
        // Over the whole closure: what the objects name is exactly what the walk reaches
        // (besides the tip), and always comes before the object naming it.
        let objects = stream(&src, tip);
        let position: std::collections::HashMap<ObjectId, usize> = objects
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i))
            .collect();
        let mut named = std::collections::HashSet::from([tip.0]);
        for (i, (id, _)) in objects.iter().enumerate() {
            for child in named_objects(id, &src.read_object(id).unwrap()) {
                assert!(position[&child] < i, "{child} comes after {id}");
                named.insert(child);
            }
        }
        assert_eq!(named.len(), objects.len());
        // Data that merely starts like a tree is a chunk.
        assert!(named_objects(&ObjectId::hash(b"x"), b"dvoltre1 not a tree").is_empty());
    }

    #[test]
    fn a_resumable_session_leaves_a_marker_until_it_ends() {
        let d = tempfile::tempdir().unwrap();
        let (src, vol, tip) = source(d.path());
        let objects = stream(&src, tip);
        let dest = Repository::open(&d.path().join("dest")).unwrap();
        assert!(dest.receives_in_progress().unwrap().is_empty());
        let mut receiver = dest.resumable_receiver("from-host-a.1").unwrap();
        for (id, s) in &objects[..3] {
            receiver.receive(id, s).unwrap();
        }
        receiver.checkpoint().unwrap();
        // The process dies mid-transfer: the marker stays, naming the session.
        std::mem::forget(receiver);
        let names = |m: Vec<ReceiveMarker>| m.into_iter().map(|m| m.session).collect::<Vec<_>>();
        assert_eq!(
            names(dest.receives_in_progress().unwrap()),
            ["from-host-a.1"]
        );
        // Resumed: the rest arrives, the checkpoint records the commit, the marker is fresh.
        let mut receiver = dest.resumable_receiver("from-host-a.1").unwrap();
        for (id, s) in &objects[3..] {
            receiver.receive(id, s).unwrap();
        }
        assert_eq!(receiver.checkpoint().unwrap(), Some(tip));
        let marker = fs::read_to_string(dest.path().join("incoming/from-host-a.1")).unwrap();
        assert!(
            marker.contains(&format!("last-complete-commit {tip}")),
            "{marker}"
        );
        drop(receiver);
        // A marker not refreshed for a day is taken for abandoned, but still listed.
        let old = dest.resumable_receiver("stale").unwrap();
        drop(old);
        fs::File::options()
            .write(true)
            .open(dest.path().join("incoming/stale"))
            .unwrap()
            .set_modified(SystemTime::now() - RECEIVE_MARKER_MAX_AGE - Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            names(dest.receives_in_progress().unwrap()),
            ["from-host-a.1"]
        );
        assert_eq!(
            names(dest.receive_markers().unwrap()),
            ["from-host-a.1", "stale"]
        );
        // Ending a session removes its marker.
        dest.update_ref_if(&vol, RefKind::Branch, "master", None, tip, "transfer")
            .unwrap();
        assert!(dest.end_receive("from-host-a.1").unwrap());
        assert!(!dest.end_receive("from-host-a.1").unwrap());
        assert!(dest.receives_in_progress().unwrap().is_empty());
        for bad in ["", "../x", ".hidden", "a/b"] {
            assert!(matches!(
                dest.resumable_receiver(bad),
                Err(ReceiveError::InvalidSession(_))
            ));
        }
    }

    #[test]
    fn gc_keeps_what_an_interrupted_receive_stored_even_when_pruning_now() {
        let d = tempfile::tempdir().unwrap();
        let (src, _vol, tip) = source(d.path());
        let objects = stream(&src, tip);
        let dest = Repository::open(&d.path().join("dest")).unwrap();
        let half = objects.len() / 2;
        let mut receiver = dest.resumable_receiver("from-host-a.2").unwrap();
        for (id, s) in &objects[..half] {
            receiver.receive(id, s).unwrap();
        }
        receiver.checkpoint().unwrap();
        // The connection drops (the session ends without `end_receive`): nothing refers to
        // these objects yet, and the marker stays.
        drop(receiver);
        let kept = |r: &Repository| {
            objects[..half]
                .iter()
                .filter(|(id, _)| r.has_object(id))
                .count()
        };
        assert_eq!(kept(&dest), half);
        let report = dest
            .gc(&NoProgress, &crate::GcOptions::prune_now())
            .unwrap();
        assert_eq!(report.objects_removed, 0, "{report:?}");
        assert_eq!(
            kept(&dest),
            half,
            "gc deleted what the interrupted receive stored"
        );
        // Once the session ends (abandoned), pruning now collects them.
        assert!(dest.end_receive("from-host-a.2").unwrap());
        let report = dest
            .gc(&NoProgress, &crate::GcOptions::prune_now())
            .unwrap();
        assert_eq!(report.objects_removed, half as u64, "{report:?}");
        assert_eq!(kept(&dest), 0);
    }
}
