//! The content-addressed object store.
//!
//! Layout: `objects/<2 hex digits>/<62 hex digits>`, one file per object, named by the blake3
//! hash of the object's uncompressed content. A stored file is a one-byte encoding tag
//! (`0` raw, `1` zstd), the uncompressed length as a varint, and the payload. This stored
//! form is also the transfer form ([`ObjectStore::read_raw`] / [`ObjectStore::write_raw`]).
//!
//! Writes are atomic and durable per [`WriteBatch`]: each object goes to a temporary file in
//! its fan-out directory; [`WriteBatch::sync`] makes the batch's files durable together (one
//! `syncfs`), renames them into place and fsyncs the touched fan-out directories, all before
//! anything that refers to the objects (a ref) is written. A final-named object is therefore
//! always durable. Renames follow the order the objects were written in, and a flush renames
//! only a prefix of that order, so as long as writers store children before the objects that
//! name them, an object under its final name implies that everything it names is too, even
//! after a crash or a failed flush. Readers always verify the hash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::codec::{Reader, Writer};
use crate::fsutil::{fsync_dir, is_temp_name, temp_name};
use crate::id::ObjectId;

/// zstd level used for chunks and structured objects.
pub const ZSTD_LEVEL: i32 = 1;

/// The largest object accepted when decoding (guards allocations against corrupt headers).
pub const MAX_OBJECT: usize = 1 << 30;

const ENC_RAW: u8 = 0;
const ENC_ZSTD: u8 = 1;

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// Compresses with a per-thread reusable context.
fn compress(data: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        c.as_mut()?.compress(data).ok()
    })
}

/// Decompresses with a per-thread reusable context.
fn decompress(data: &[u8], len: usize) -> io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(d) => d.decompress(data, len),
            None => Err(io::Error::other("no zstd context")),
        }
    })
}

/// Errors from the object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("object store: cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An earlier flush of the write batch failed; what it had not renamed was discarded.
    #[error("an earlier write of this batch of objects failed and its remaining objects were discarded; nothing more is stored through it: start the operation again")]
    BatchFailed,
    /// The object is not in the store.
    #[error("object {0} is missing from the store (run `dvol fsck`; restore it from another host with a transfer)")]
    Missing(ObjectId),
    /// The stored object cannot be decoded or its content does not hash to its id.
    #[error("object {id} is corrupt: {why} (run `dvol fsck`)")]
    Corrupt {
        /// The object.
        id: ObjectId,
        /// What is wrong with it.
        why: String,
    },
    /// Data offered for `id` hashes to something else.
    #[error("refusing object {expected}: its content hashes to {actual}")]
    HashMismatch {
        /// The id it was offered under.
        expected: ObjectId,
        /// The hash of its content.
        actual: ObjectId,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One entry found while listing the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFile {
    /// An object file.
    Object(ObjectId),
    /// A leftover temporary file (from an interrupted write).
    Temp(PathBuf),
    /// A file that is neither (reported by fsck, never deleted).
    Stray(PathBuf),
}

/// By default a batch flushes its pending objects (makes them durable and renames them into place) once
/// this many are waiting, so a huge commit holds bounded state.
pub const MAX_PENDING_OBJECTS: usize = 50_000;

/// ... or once this many stored bytes are waiting.
pub const MAX_PENDING_BYTES: u64 = 1 << 30;

/// Up to this many pending objects are made durable one `fdatasync` each; more take one
/// `syncfs` of the store's file system (which also writes back unrelated dirty data there, so
/// it only pays off for many objects).
pub const FDATASYNC_MAX_OBJECTS: usize = 8;

/// A pending object: where it waits, its stored size, and when it joined the batch.
#[derive(Debug)]
struct Pending {
    /// The temporary file; `None` while it is still being written.
    tmp: Option<PathBuf>,
    size: u64,
    /// Its position in the batch's write order (a key of [`BatchState::order`]).
    seq: u64,
}

#[derive(Debug, Default)]
struct BatchState {
    /// Objects of this batch not yet under their final name, by final path.
    pending: HashMap<PathBuf, Pending>,
    /// The final paths of the pending objects in the order they were first written: the
    /// order they are renamed in.
    order: BTreeMap<u64, PathBuf>,
    /// The next write-order position.
    next_seq: u64,
    /// Pending objects completely written (their `tmp` is set), and their stored bytes.
    ready: usize,
    ready_bytes: u64,
    /// Store roots written to (one `syncfs` each).
    roots: BTreeSet<PathBuf>,
    /// A flush failed: objects it discarded may be named by objects still pending, so
    /// nothing more may be renamed into place.
    failed: bool,
    /// Fan-out directories holding renames of this batch not yet made durable.
    dirs: BTreeSet<PathBuf>,
}

/// The objects written during one operation, made durable together.
///
/// [`ObjectStore::write`] and [`ObjectStore::write_raw`] only write an object to a temporary
/// file. [`WriteBatch::sync`] then makes all of them durable at once (one `syncfs`, or an
/// `fdatasync` each for a handful), renames each into place, and fsyncs the touched fan-out
/// directories. So a final-named object is always durable (a later writer trusting
/// [`ObjectStore::has`] may skip it), and nothing may refer to a batch's objects before its
/// `sync` returns. The batch also flushes by itself (durable + renamed, directories left for
/// `sync`) when [`MAX_PENDING_OBJECTS`] or [`MAX_PENDING_BYTES`] are waiting. Objects of a
/// batch dropped without `sync` are discarded (their temporary files removed); after a crash
/// they are temporary files that gc removes.
///
/// Objects are renamed into place in the order they were first written, and a flush stops
/// at the first object still being written: what a flush makes visible is always a prefix
/// of the write order, also when a rename fails midway. A caller that writes the children of
/// an object before the object itself (the commit walk, a transfer receiver) therefore never
/// leaves a final-named object whose children are still temporary files.
#[derive(Debug)]
pub struct WriteBatch {
    state: Mutex<BatchState>,
    /// Held while flushing, so that one flush runs at a time.
    flushing: Mutex<()>,
    objects: AtomicU64,
    bytes: AtomicU64,
    /// Durability calls made (`fdatasync`, `syncfs`, directory `fsync`).
    sync_calls: AtomicU64,
    max_objects: usize,
    max_bytes: u64,
}

impl Default for WriteBatch {
    fn default() -> WriteBatch {
        WriteBatch::with_limits(MAX_PENDING_OBJECTS, MAX_PENDING_BYTES)
    }
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// An empty batch that flushes once `max_objects` objects or `max_bytes` stored bytes
    /// are pending.
    pub fn with_limits(max_objects: usize, max_bytes: u64) -> WriteBatch {
        WriteBatch {
            state: Mutex::default(),
            flushing: Mutex::default(),
            objects: AtomicU64::default(),
            bytes: AtomicU64::default(),
            sync_calls: AtomicU64::default(),
            max_objects,
            max_bytes,
        }
    }

    /// Objects written through this batch.
    pub fn objects(&self) -> u64 {
        self.objects.load(Ordering::Relaxed)
    }

    /// Bytes stored (compressed) through this batch.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Durability calls made so far (`fdatasync`s, `syncfs`s and directory `fsync`s): what a
    /// batch saves over making each object durable on its own.
    pub fn sync_calls(&self) -> u64 {
        self.sync_calls.load(Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Objects written through the batch and not yet under their final names.
    pub fn pending(&self) -> usize {
        self.state().pending.len()
    }

    /// Makes every object written through the batch durable and visible: flushes the pending
    /// objects, then makes their renames durable (an fsync of each fan-out directory they were
    /// renamed into, or one `syncfs` when that is fewer calls). Call it after all writes to
    /// the batch have returned and before anything refers to the objects.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.flush(true)?;
        let (dirs, roots) = {
            let mut st = self.state();
            (std::mem::take(&mut st.dirs), st.roots.clone())
        };
        if dirs.len() > FDATASYNC_MAX_OBJECTS {
            self.syncfs(&roots)
        } else {
            self.fsync_dirs(&dirs)
        }
    }

    /// One `syncfs` of each store root: makes everything written there durable, renames
    /// included.
    fn syncfs(&self, roots: &BTreeSet<PathBuf>) -> Result<(), StoreError> {
        for root in roots {
            self.sync_calls.fetch_add(1, Ordering::Relaxed);
            File::open(root)
                .and_then(|f| rustix::fs::syncfs(&f).map_err(io::Error::from))
                .map_err(io_err("syncfs", root))?;
        }
        Ok(())
    }

    /// Fsyncs directories (makes the renames in them durable).
    fn fsync_dirs(&self, dirs: &BTreeSet<PathBuf>) -> Result<(), StoreError> {
        for d in dirs {
            self.sync_calls.fetch_add(1, Ordering::Relaxed);
            fsync_dir(d).map_err(io_err("fsync", d))?;
        }
        Ok(())
    }

    /// Makes the completely written pending objects durable and renames them into place
    /// (without fsyncing directories), in write order, stopping at the first object still
    /// being written by another thread. Unless `force`, only when a bound is reached.
    fn flush(&self, force: bool) -> Result<(), StoreError> {
        let _one = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let (items, roots, earlier_dirs) = {
            let st = self.state();
            if st.failed {
                return Err(StoreError::BatchFailed);
            }
            if !force && st.ready < self.max_objects && st.ready_bytes < self.max_bytes {
                return Ok(());
            }
            let mut items: Vec<FlushItem> = Vec::new();
            for (&seq, dest) in &st.order {
                let Some(tmp) = st.pending.get(dest).and_then(|p| p.tmp.clone()) else {
                    // Still being written: what follows may name it, so it waits too.
                    break;
                };
                let size = st.pending.get(dest).map_or(0, |p| p.size);
                items.push(FlushItem {
                    seq,
                    dest: dest.clone(),
                    tmp,
                    size,
                });
            }
            (items, st.roots.clone(), st.dirs.clone())
        };
        if items.is_empty() {
            return Ok(());
        }
        // Entries stay pending (so no writer of this batch writes them again) until renamed.
        let outcome = self.make_durable_and_rename(&items, &roots, &earlier_dirs);
        let mut st = self.state();
        for item in &items {
            st.pending.remove(&item.dest);
            st.order.remove(&item.seq);
            st.ready -= 1;
            st.ready_bytes -= item.size;
        }
        if outcome.earlier_renames_durable {
            for d in &earlier_dirs {
                st.dirs.remove(d);
            }
        }
        for item in &items[..outcome.renamed] {
            if let Some(dir) = item.dest.parent() {
                st.dirs.insert(dir.to_path_buf());
            }
        }
        if outcome.result.is_err() {
            st.failed = true;
        }
        outcome.result
    }

    /// The durability point of a flush, then the renames in write order. The durability
    /// point covers the items' data and the renames of earlier flushes (`earlier_dirs`), so
    /// no rename of this flush can outlive a crash that loses an earlier one. On error, the
    /// temporary files not yet renamed are removed (their objects were never visible), so
    /// exactly a prefix of `items` is left in place.
    fn make_durable_and_rename(
        &self,
        items: &[FlushItem],
        roots: &BTreeSet<PathBuf>,
        earlier_dirs: &BTreeSet<PathBuf>,
    ) -> FlushOutcome {
        let durable = if items.len() + earlier_dirs.len() <= FDATASYNC_MAX_OBJECTS {
            self.fsync_dirs(earlier_dirs).and_then(|()| {
                for item in items {
                    self.sync_calls.fetch_add(1, Ordering::Relaxed);
                    File::open(&item.tmp)
                        .and_then(|f| f.sync_data())
                        .map_err(io_err("fdatasync", &item.tmp))?;
                }
                Ok(())
            })
        } else {
            self.syncfs(roots)
        };
        if let Err(e) = durable {
            for item in items {
                let _ = fs::remove_file(&item.tmp);
            }
            return FlushOutcome {
                renamed: 0,
                earlier_renames_durable: false,
                result: Err(e),
            };
        }
        let renamed = |renamed, result| FlushOutcome {
            renamed,
            earlier_renames_durable: true,
            result,
        };
        for (i, item) in items.iter().enumerate() {
            match rename_noreplace(&item.tmp, &item.dest) {
                Ok(true) => {}
                Ok(false) => {
                    // A concurrent writer (another batch) stored the same object first.
                    let _ = fs::remove_file(&item.tmp);
                    self.objects.fetch_sub(1, Ordering::Relaxed);
                    self.bytes.fetch_sub(item.size, Ordering::Relaxed);
                }
                Err(e) => {
                    for rest in &items[i..] {
                        let _ = fs::remove_file(&rest.tmp);
                    }
                    return renamed(i, Err(e));
                }
            }
        }
        renamed(items.len(), Ok(()))
    }
}

/// What a flush's durability point and renames achieved.
#[derive(Debug)]
struct FlushOutcome {
    /// How many items (a prefix) are in place (renamed, or found already stored).
    renamed: usize,
    /// Whether the renames of earlier flushes were made durable.
    earlier_renames_durable: bool,
    /// The first error.
    result: Result<(), StoreError>,
}

/// A pending object taken by a flush.
#[derive(Debug)]
struct FlushItem {
    /// Its write-order position.
    seq: u64,
    /// Its final path.
    dest: PathBuf,
    /// Its temporary file.
    tmp: PathBuf,
    /// Its stored size.
    size: u64,
}

/// Renames `tmp` to `dest` unless `dest` exists; returns whether it renamed.
fn rename_noreplace(tmp: &Path, dest: &Path) -> Result<bool, StoreError> {
    let cwd = rustix::fs::CWD;
    match rustix::fs::renameat_with(cwd, tmp, cwd, dest, rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::EXIST) => Ok(false),
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            // File systems without RENAME_NOREPLACE: replacing equal content is harmless.
            fs::rename(tmp, dest)
                .map(|()| true)
                .map_err(io_err("rename", dest))
        }
        Err(e) => Err(io_err("rename", dest)(e.into())),
    }
}

impl Drop for WriteBatch {
    /// Discards the objects never synced: removes their temporary files.
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for p in st.pending.values() {
            if let Some(tmp) = &p.tmp {
                let _ = fs::remove_file(tmp);
            }
        }
    }
}

/// The object store under one directory.
#[derive(Debug)]
pub struct ObjectStore {
    root: PathBuf,
}

impl ObjectStore {
    /// Opens (creating if needed) the store at `root`, with all 256 fan-out directories.
    pub fn open(root: &Path) -> Result<ObjectStore, StoreError> {
        crate::fsutil::ensure_dir(root).map_err(io_err("create", root))?;
        let mut created = false;
        for b in 0..=255u8 {
            let p = root.join(format!("{b:02x}"));
            match fs::create_dir(&p) {
                Ok(()) => created = true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", &p)(e)),
            }
        }
        if created {
            fsync_dir(root).map_err(io_err("fsync", root))?;
        }
        Ok(ObjectStore {
            root: root.to_path_buf(),
        })
    }

    fn fanout(&self, b: u8) -> PathBuf {
        self.root.join(format!("{b:02x}"))
    }

    /// The file holding object `id`.
    pub fn path(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..])
    }

    /// Whether the store has object `id` (without verifying it).
    pub fn has(&self, id: &ObjectId) -> bool {
        fs::symlink_metadata(self.path(id)).is_ok()
    }

    /// Encodes `data` in the stored form (compressing when that saves space).
    pub fn encode_stored(data: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        let compressed = if data.len() >= 64 {
            compress(data)
        } else {
            None
        };
        match compressed {
            Some(c) if c.len() + 8 < data.len() => {
                w.u8(ENC_ZSTD);
                w.uvar(data.len() as u64);
                w.raw(&c);
            }
            _ => {
                w.u8(ENC_RAW);
                w.uvar(data.len() as u64);
                w.raw(data);
            }
        }
        w.finish()
    }

    /// Decodes a stored form and checks that the content hashes to `id`.
    pub fn decode_stored(id: &ObjectId, stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt {
            id: *id,
            why: why.to_string(),
        };
        let mut r = Reader::new(stored, "stored object");
        let enc = r.u8().map_err(|e| corrupt(&e.to_string()))?;
        let len = r.uvar().map_err(|e| corrupt(&e.to_string()))?;
        let len = usize::try_from(len).map_err(|_| corrupt("length out of range"))?;
        let rest = r.rest();
        let data = match enc {
            ENC_RAW => {
                if rest.len() != len {
                    return Err(corrupt("raw length mismatch"));
                }
                rest.to_vec()
            }
            ENC_ZSTD => {
                if len > MAX_OBJECT {
                    return Err(corrupt("implausible length"));
                }
                let d = decompress(rest, len).map_err(|e| corrupt(&format!("zstd: {e}")))?;
                if d.len() != len {
                    return Err(corrupt("decompressed length mismatch"));
                }
                d
            }
            _ => return Err(corrupt("unknown encoding tag")),
        };
        let actual = ObjectId::hash(&data);
        if actual != *id {
            return Err(corrupt(&format!("content hashes to {}", actual.short(16))));
        }
        Ok(data)
    }

    /// Stores `data` under `id` through `batch` unless already present (in the store or
    /// pending in the batch). `id` must be `ObjectId::hash(data)` (the caller has computed
    /// it). Returns the stored size if the object was new. Durable and visible once the
    /// batch is synced.
    pub fn write(
        &self,
        id: &ObjectId,
        data: &[u8],
        batch: &WriteBatch,
    ) -> Result<Option<u64>, StoreError> {
        debug_assert_eq!(ObjectId::hash(data), *id);
        if self.has(id) || batch.state().pending.contains_key(&self.path(id)) {
            return Ok(None);
        }
        let stored = Self::encode_stored(data);
        Ok(self
            .put_stored(id, &stored, batch)?
            .then_some(stored.len() as u64))
    }

    /// Writes the stored form of `id` to a temporary file pending in `batch` (durable and
    /// renamed into place by [`WriteBatch::sync`]); returns false if the batch already has
    /// the object pending. A concurrent writer of the same object in another batch may
    /// rename first; the existing file is then kept.
    fn put_stored(
        &self,
        id: &ObjectId,
        stored: &[u8],
        batch: &WriteBatch,
    ) -> Result<bool, StoreError> {
        let dest = self.path(id);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let size = stored.len() as u64;
        {
            let mut st = batch.state();
            if st.failed {
                return Err(StoreError::BatchFailed);
            }
            if st.pending.contains_key(&dest) {
                return Ok(false);
            }
            let seq = st.next_seq;
            st.next_seq += 1;
            st.order.insert(seq, dest.clone());
            st.pending.insert(
                dest.clone(),
                Pending {
                    tmp: None,
                    size,
                    seq,
                },
            );
        }
        let tmp = dir.join(temp_name());
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?;
            f.write_all(stored).map_err(io_err("write", &tmp))
        })();
        let full = {
            let mut st = batch.state();
            if let Err(e) = written {
                if let Some(p) = st.pending.remove(&dest) {
                    st.order.remove(&p.seq);
                }
                drop(st);
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            match st.pending.get_mut(&dest) {
                Some(p) => p.tmp = Some(tmp),
                None => {
                    // Unreachable: only completely written objects leave the batch.
                    drop(st);
                    let _ = fs::remove_file(&tmp);
                    return Ok(false);
                }
            }
            st.ready += 1;
            st.ready_bytes += size;
            if !st.roots.contains(&self.root) {
                st.roots.insert(self.root.clone());
            }
            st.ready >= batch.max_objects || st.ready_bytes >= batch.max_bytes
        };
        batch.objects.fetch_add(1, Ordering::Relaxed);
        batch.bytes.fetch_add(size, Ordering::Relaxed);
        if full {
            batch.flush(false)?;
        }
        Ok(true)
    }

    /// Reads the stored (transfer) form of `id` without decoding it.
    pub fn read_raw(&self, id: &ObjectId) -> Result<Vec<u8>, StoreError> {
        let p = self.path(id);
        fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::Missing(*id)
            } else {
                StoreError::Io {
                    op: "read",
                    path: p.clone(),
                    source: e,
                }
            }
        })
    }

    /// Reads, decompresses and verifies object `id`.
    pub fn read(&self, id: &ObjectId) -> Result<Vec<u8>, StoreError> {
        let raw = self.read_raw(id)?;
        Self::decode_stored(id, &raw)
    }

    /// Stores an object received in stored form, after checking that it decodes and hashes
    /// to `id`, through `batch` (see [`ObjectStore::write`]). Returns whether it was new.
    pub fn write_raw(
        &self,
        id: &ObjectId,
        stored: &[u8],
        batch: &WriteBatch,
    ) -> Result<bool, StoreError> {
        drop(Self::verify_stored(id, stored)?);
        self.write_verified(id, stored, batch)
    }

    /// Decodes a stored form offered as object `id` (received from another host): its
    /// content, or [`StoreError::HashMismatch`] if it hashes to something else, or
    /// [`StoreError::Corrupt`] if it does not decode.
    pub fn verify_stored(id: &ObjectId, stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        Self::decode_stored(id, stored).map_err(|e| match e {
            StoreError::Corrupt { why, .. } if why.starts_with("content hashes to") => {
                StoreError::HashMismatch {
                    expected: *id,
                    actual: ObjectId::hash(
                        &Self::decode_stored_unchecked(stored).unwrap_or_default(),
                    ),
                }
            }
            other => other,
        })
    }

    /// Stores a stored form that [`ObjectStore::verify_stored`] accepted for `id` through
    /// `batch`, unless the store has it; returns whether it was new.
    pub(crate) fn write_verified(
        &self,
        id: &ObjectId,
        stored: &[u8],
        batch: &WriteBatch,
    ) -> Result<bool, StoreError> {
        if self.has(id) {
            return Ok(false);
        }
        self.put_stored(id, stored, batch)
    }

    /// Whether object `id` is in the store or pending in `batch` (written through it, to be
    /// in place before anything written after it).
    pub(crate) fn has_or_pending(&self, id: &ObjectId, batch: &WriteBatch) -> bool {
        self.has(id) || batch.state().pending.contains_key(&self.path(id))
    }

    fn decode_stored_unchecked(stored: &[u8]) -> Option<Vec<u8>> {
        let mut r = Reader::new(stored, "stored object");
        let enc = r.u8().ok()?;
        let len = usize::try_from(r.uvar().ok()?).ok()?;
        let rest = r.rest();
        match enc {
            ENC_RAW => Some(rest.to_vec()),
            ENC_ZSTD => decompress(rest, len.min(MAX_OBJECT)).ok(),
            _ => None,
        }
    }

    /// Removes object `id` (no directory fsync; see [`ObjectStore::sync_all_dirs`]).
    pub fn remove(&self, id: &ObjectId) -> Result<bool, StoreError> {
        let p = self.path(id);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &p)(e)),
        }
    }

    /// Removes a file found by [`ObjectStore::list`] (temporary files).
    pub fn remove_file(&self, path: &Path) -> Result<(), StoreError> {
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", path)(e)),
        }
    }

    /// Fsyncs every fan-out directory (after a batch of removals).
    pub fn sync_all_dirs(&self) -> Result<(), StoreError> {
        for b in 0..=255u8 {
            let p = self.fanout(b);
            fsync_dir(&p).map_err(io_err("fsync", &p))?;
        }
        Ok(())
    }

    /// Lists every file in the store, one fan-out directory at a time.
    pub fn list(&self) -> Result<Vec<StoreFile>, StoreError> {
        let mut out = Vec::new();
        for b in 0..=255u8 {
            let dir = self.fanout(b);
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("list", &dir)(e)),
            };
            let prefix = format!("{b:02x}");
            for ent in rd {
                let ent = ent.map_err(io_err("list", &dir))?;
                let name = ent.file_name();
                let name_b = name.as_encoded_bytes();
                let path = ent.path();
                if is_temp_name(name_b) {
                    out.push(StoreFile::Temp(path));
                    continue;
                }
                match std::str::from_utf8(name_b)
                    .ok()
                    .and_then(|n| ObjectId::from_hex(&format!("{prefix}{n}")).ok())
                {
                    Some(id) => out.push(StoreFile::Object(id)),
                    None => out.push(StoreFile::Stray(path)),
                }
            }
        }
        Ok(out)
    }

    /// Every object id whose hex form starts with `prefix` (at least 2 digits, lower case).
    pub fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<ObjectId>, StoreError> {
        let dir = self.root.join(&prefix[..2]);
        let rest = &prefix[2..];
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        for ent in rd {
            let ent = ent.map_err(io_err("list", &dir))?;
            let name = ent.file_name();
            if let Some(n) = name.to_str() {
                if n.starts_with(rest) {
                    if let Ok(id) = ObjectId::from_hex(&format!("{}{n}", &prefix[..2])) {
                        out.push(id);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_dedupe_and_verify() {
        let d = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(&d.path().join("objects")).unwrap();
        let b = WriteBatch::new();
        let data = vec![7u8; 100_000];
        let id = ObjectId::hash(&data);
        let n = s.write(&id, &data, &b).unwrap().unwrap();
        assert!(n < 1000, "zeros compress: {n}");
        assert_eq!(s.write(&id, &data, &b).unwrap(), None);
        b.sync().unwrap();
        assert_eq!(b.objects(), 1);
        assert_eq!(s.read(&id).unwrap(), data);
        // Raw transfer form round trip into a second store.
        let s2 = ObjectStore::open(&d.path().join("objects2")).unwrap();
        let raw = s.read_raw(&id).unwrap();
        assert!(s2.write_raw(&id, &raw, &b).unwrap());
        assert!(!s2.write_raw(&id, &raw, &b).unwrap());
        let other = ObjectId::hash(b"x");
        assert!(matches!(
            s2.write_raw(&other, &raw, &b),
            Err(StoreError::HashMismatch { .. })
        ));
        assert!(matches!(s.read(&other), Err(StoreError::Missing(_))));
        // Incompressible small data is stored raw.
        let small = b"abc".to_vec();
        let sid = ObjectId::hash(&small);
        s.write(&sid, &small, &b).unwrap();
        b.sync().unwrap();
        assert_eq!(s.read_raw(&sid).unwrap()[0], ENC_RAW);
        assert_eq!(s.list().unwrap().len(), 2);
        assert_eq!(s.ids_with_prefix(&id.to_hex()[..5]).unwrap(), vec![id]);
    }

    fn temps(s: &ObjectStore) -> usize {
        s.list()
            .unwrap()
            .iter()
            .filter(|f| matches!(f, StoreFile::Temp(_)))
            .count()
    }

    fn objects(n: usize, salt: u8) -> Vec<(ObjectId, Vec<u8>)> {
        (0..n)
            .map(|i| {
                let data = format!("object {i} salt {salt}").repeat(20).into_bytes();
                (ObjectId::hash(&data), data)
            })
            .collect()
    }

    #[test]
    fn batch_objects_appear_only_when_synced() {
        // Both ways of making a batch durable: a few fdatasyncs, one syncfs.
        for n in [3, FDATASYNC_MAX_OBJECTS + 5] {
            let d = tempfile::tempdir().unwrap();
            let s = ObjectStore::open(&d.path().join("objects")).unwrap();
            let b = WriteBatch::new();
            let objs = objects(n, 1);
            for (id, data) in &objs {
                assert!(s.write(id, data, &b).unwrap().is_some());
                // Pending in the batch: written once only, not yet visible.
                assert_eq!(s.write(id, data, &b).unwrap(), None);
                assert!(!s
                    .write_raw(id, &ObjectStore::encode_stored(data), &b)
                    .unwrap());
                assert!(!s.has(id));
            }
            assert_eq!(b.pending(), n);
            assert_eq!(temps(&s), n);
            assert_eq!(b.objects(), n as u64);
            b.sync().unwrap();
            assert_eq!(b.pending(), 0);
            assert_eq!(temps(&s), 0);
            for (id, data) in &objs {
                assert_eq!(&s.read(id).unwrap(), data);
            }
            // Syncing again is a no-op.
            b.sync().unwrap();
            assert_eq!(s.list().unwrap().len(), n);
        }
    }

    #[test]
    fn crash_before_sync_leaves_only_temporary_files() {
        let d = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(&d.path().join("objects")).unwrap();
        let objs = objects(20, 2);
        let b = WriteBatch::new();
        for (id, data) in &objs {
            s.write(id, data, &b).unwrap();
        }
        // The process dies before the batch is synced (no destructor runs).
        std::mem::forget(b);
        assert!(objs.iter().all(|(id, _)| !s.has(id)));
        let files = s.list().unwrap();
        assert_eq!(files.len(), 20);
        assert!(files.iter().all(|f| matches!(f, StoreFile::Temp(_))));
        // A retry writes every object again (none is trusted from the lost batch).
        let b = WriteBatch::new();
        for (id, data) in &objs {
            assert!(s.write(id, data, &b).unwrap().is_some());
        }
        b.sync().unwrap();
        assert_eq!(b.objects(), 20);
        assert!(objs.iter().all(|(id, data)| &s.read(id).unwrap() == data));
    }

    #[test]
    fn dropped_batch_discards_its_objects() {
        let d = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(&d.path().join("objects")).unwrap();
        let objs = objects(5, 3);
        {
            let b = WriteBatch::new();
            for (id, data) in &objs {
                s.write(id, data, &b).unwrap();
            }
            assert_eq!(temps(&s), 5);
        }
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn full_batch_flushes_by_itself() {
        let d = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(&d.path().join("objects")).unwrap();
        let objs = objects(10, 4);
        let b = WriteBatch::with_limits(4, u64::MAX);
        for (id, data) in &objs {
            s.write(id, data, &b).unwrap();
            assert!(b.pending() < 4);
        }
        // Flushed twice (after 4 and 8 objects), two still pending.
        assert_eq!(objs.iter().filter(|(id, _)| s.has(id)).count(), 8);
        assert_eq!(b.pending(), 2);
        // Objects flushed earlier are found in the store, not written again.
        assert_eq!(s.write(&objs[0].0, &objs[0].1, &b).unwrap(), None);
        b.sync().unwrap();
        assert_eq!(b.objects(), 10);
        assert!(objs.iter().all(|(id, data)| &s.read(id).unwrap() == data));
        // A byte bound works the same way.
        let objs = objects(6, 5);
        let b = WriteBatch::with_limits(usize::MAX, 1);
        for (id, data) in &objs {
            s.write(id, data, &b).unwrap();
            assert!(s.has(id));
        }
        assert_eq!(b.pending(), 0);
        assert_eq!(temps(&s), 0);
    }

    #[test]
    fn concurrent_batches_share_objects() {
        let d = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(&d.path().join("objects")).unwrap();
        let objs = objects(12, 6);
        let (b1, b2) = (WriteBatch::new(), WriteBatch::new());
        for (id, data) in &objs {
            s.write(id, data, &b1).unwrap();
            s.write(id, data, &b2).unwrap();
        }
        b1.sync().unwrap();
        b2.sync().unwrap();
        // The second batch found every object in place and counts none as its own.
        assert_eq!((b1.objects(), b2.objects()), (12, 0));
        assert_eq!(b2.bytes(), 0);
        assert_eq!(s.list().unwrap().len(), 12);
        assert!(objs.iter().all(|(id, data)| &s.read(id).unwrap() == data));
        // Many threads writing through one batch: each object once.
        let b = WriteBatch::new();
        let objs = objects(40, 7);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for (id, data) in &objs {
                        s.write(id, data, &b).unwrap();
                    }
                });
            }
        });
        assert_eq!(b.objects(), 40);
        b.sync().unwrap();
        assert_eq!(temps(&s), 0);
        assert_eq!(s.list().unwrap().len(), 52);
    }

    /// The temporary file object `id` waits in while pending in `batch`.
    fn temp_file_of(s: &ObjectStore, b: &WriteBatch, id: &ObjectId) -> PathBuf {
        b.state().pending[&s.path(id)].tmp.clone().unwrap()
    }

    #[test]
    fn failed_flush_leaves_exactly_a_prefix_of_the_write_order() {
        let d = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(&d.path().join("objects")).unwrap();
        let (n, k) = (40, 17);
        let objs = objects(n, 8);
        let b = WriteBatch::new();
        for (id, data) in &objs {
            s.write(id, data, &b).unwrap();
        }
        // The k-th object's temporary file disappears: its rename fails for real (ENOENT).
        fs::remove_file(temp_file_of(&s, &b, &objs[k].0)).unwrap();
        let err = b.sync().unwrap_err();
        assert!(err.to_string().contains("cannot rename"), "{err}");
        let visible: Vec<bool> = objs.iter().map(|(id, _)| s.has(id)).collect();
        let expected: Vec<bool> = (0..n).map(|i| i < k).collect();
        assert_eq!(visible, expected, "only objects 0..{k} may be in place");
        // The rest are gone entirely (no temporary files left behind), and the batch is empty.
        assert_eq!(temps(&s), 0);
        assert_eq!(b.pending(), 0);
        for (id, data) in &objs[..k] {
            assert_eq!(&s.read(id).unwrap(), data);
        }
        // Later objects may name discarded ones: the batch refuses them and any further sync.
        let more = objects(3, 14);
        assert!(matches!(
            s.write(&more[0].0, &more[0].1, &b),
            Err(StoreError::BatchFailed)
        ));
        assert!(matches!(b.sync(), Err(StoreError::BatchFailed)));
        assert!(!s.has(&more[0].0));
        assert_eq!(temps(&s), 0);
    }

    #[test]
    fn flush_stops_at_an_object_still_being_written() {
        let d = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(&d.path().join("objects")).unwrap();
        let b = WriteBatch::new();
        let objs = objects(12, 9);
        s.write(&objs[0].0, &objs[0].1, &b).unwrap();
        // Another thread has begun writing objs[1] (its entry exists, its file is not ready).
        let in_progress = s.path(&objs[1].0);
        {
            let mut st = b.state();
            let seq = st.next_seq;
            st.next_seq += 1;
            st.order.insert(seq, in_progress.clone());
            st.pending.insert(
                in_progress.clone(),
                Pending {
                    tmp: None,
                    size: 1,
                    seq,
                },
            );
        }
        // Objects written after it (they may name it) must wait for it.
        for (id, data) in &objs[2..] {
            s.write(id, data, &b).unwrap();
        }
        b.sync().unwrap();
        assert!(s.has(&objs[0].0));
        assert!(objs[1..].iter().all(|(id, _)| !s.has(id)));
        assert_eq!(b.pending(), 11);
        // Once it is written, everything goes in.
        {
            let mut st = b.state();
            let p = st.pending.remove(&in_progress).unwrap();
            st.order.remove(&p.seq);
        }
        s.write(&objs[1].0, &objs[1].1, &b).unwrap();
        b.sync().unwrap();
        assert!(objs.iter().all(|(id, _)| s.has(id)));
        assert_eq!(temps(&s), 0);
    }

    #[test]
    fn batch_counts_its_durability_calls() {
        let d = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(&d.path().join("objects")).unwrap();
        // Few objects: one fdatasync each, then one fsync per touched fan-out directory.
        let b = WriteBatch::new();
        let few = objects(3, 10);
        for (id, data) in &few {
            s.write(id, data, &b).unwrap();
        }
        b.sync().unwrap();
        let dirs: BTreeSet<_> = few
            .iter()
            .map(|(id, _)| s.path(id).parent().unwrap().to_path_buf())
            .collect();
        assert_eq!(b.sync_calls(), 3 + dirs.len() as u64);
        // Many objects: one syncfs for their data, one for the renames into many directories.
        let b = WriteBatch::new();
        for (id, data) in &objects(1000, 11) {
            s.write(id, data, &b).unwrap();
        }
        b.sync().unwrap();
        assert_eq!(b.sync_calls(), 2);
        // Flushed by itself three times: each flush's syncfs also makes the renames of the
        // flush before durable, so only the last flush's renames need one more call.
        let b = WriteBatch::with_limits(300, u64::MAX);
        for (id, data) in &objects(1000, 12) {
            s.write(id, data, &b).unwrap();
        }
        b.sync().unwrap();
        assert_eq!(b.sync_calls(), 3 + 1 + 1);
        // Few objects after a flush into many directories: the earlier renames are made
        // durable before the new ones (here by one syncfs, cheaper than an fsync each).
        let b = WriteBatch::with_limits(100, u64::MAX);
        let objs = objects(103, 13);
        for (id, data) in &objs {
            s.write(id, data, &b).unwrap();
        }
        assert_eq!(b.sync_calls(), 1);
        b.sync().unwrap();
        let last_dirs: BTreeSet<_> = objs[100..]
            .iter()
            .map(|(id, _)| s.path(id).parent().unwrap().to_path_buf())
            .collect();
        assert_eq!(b.sync_calls(), 2 + last_dirs.len() as u64);
    }
}
