//! The content-addressed object store.
//!
//! Layout: `objects/<2 hex digits>/<62 hex digits>`, one file per object, named by the blake3
//! hash of the object's uncompressed content. A stored file is a one-byte encoding tag
//! (`0` raw, `1` zstd), the uncompressed length as a varint, and the payload. This stored
//! form is also the transfer form ([`ObjectStore::read_raw`] / [`ObjectStore::write_raw`]).
//!
//! Writes are atomic and durable: a temporary file in the fan-out directory is written and
//! fdatasynced, then renamed into place; the fan-out directories touched by a [`WriteBatch`]
//! are fsynced by [`WriteBatch::sync`] before anything that refers to the objects (a ref) is
//! written. Readers always verify the hash.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
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

/// Tracks the fan-out directories written during one operation so they can be fsynced once.
#[derive(Debug, Default)]
pub struct WriteBatch {
    dirs: Mutex<BTreeSet<u8>>,
    objects: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Objects written through this batch.
    pub fn objects(&self) -> u64 {
        self.objects.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes stored (compressed) through this batch.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Makes every object written through the batch durable (fsyncs the touched directories).
    pub fn sync(&self, store: &ObjectStore) -> Result<(), StoreError> {
        let dirs = std::mem::take(&mut *self.dirs.lock().unwrap_or_else(|e| e.into_inner()));
        for d in dirs {
            let p = store.fanout(d);
            fsync_dir(&p).map_err(io_err("fsync", &p))?;
        }
        Ok(())
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

    /// Stores `data` under `id` unless already present. `id` must be `ObjectId::hash(data)`
    /// (the caller has computed it). Returns the stored size if the object was new.
    pub fn write(
        &self,
        id: &ObjectId,
        data: &[u8],
        batch: &WriteBatch,
    ) -> Result<Option<u64>, StoreError> {
        debug_assert_eq!(ObjectId::hash(data), *id);
        if self.has(id) {
            return Ok(None);
        }
        let stored = Self::encode_stored(data);
        Ok(self
            .put_stored(id, &stored, batch)?
            .then_some(stored.len() as u64))
    }

    /// Writes the stored form durably under `id`; returns whether this call created it (a
    /// concurrent writer of the same object may win the race; the existing file is kept).
    fn put_stored(
        &self,
        id: &ObjectId,
        stored: &[u8],
        batch: &WriteBatch,
    ) -> Result<bool, StoreError> {
        let dest = self.path(id);
        let dir = dest.parent().unwrap_or(&self.root).to_path_buf();
        let tmp = dir.join(temp_name());
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?;
            f.write_all(stored).map_err(io_err("write", &tmp))?;
            f.sync_data().map_err(io_err("fdatasync", &tmp))?;
            drop(f);
            let cwd = rustix::fs::CWD;
            match rustix::fs::renameat_with(
                cwd,
                &tmp,
                cwd,
                &dest,
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => Ok(true),
                Err(rustix::io::Errno::EXIST) => Ok(false),
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                    // File systems without RENAME_NOREPLACE: replacing equal content is harmless.
                    fs::rename(&tmp, &dest)
                        .map(|()| true)
                        .map_err(io_err("rename", &dest))
                }
                Err(e) => Err(io_err("rename", &dest)(e.into())),
            }
        })();
        let created = match result {
            Ok(true) => true,
            other => {
                let _ = fs::remove_file(&tmp);
                other?
            }
        };
        if created {
            batch
                .dirs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.as_bytes()[0]);
            batch
                .objects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            batch
                .bytes
                .fetch_add(stored.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(created)
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
    /// to `id`. Returns whether it was new.
    pub fn write_raw(
        &self,
        id: &ObjectId,
        stored: &[u8],
        batch: &WriteBatch,
    ) -> Result<bool, StoreError> {
        let data = Self::decode_stored(id, stored).map_err(|e| match e {
            StoreError::Corrupt { why, .. } if why.starts_with("content hashes to") => {
                StoreError::HashMismatch {
                    expected: *id,
                    actual: ObjectId::hash(
                        &Self::decode_stored_unchecked(stored).unwrap_or_default(),
                    ),
                }
            }
            other => other,
        })?;
        drop(data);
        if self.has(id) {
            return Ok(false);
        }
        self.put_stored(id, stored, batch)
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
        b.sync(&s).unwrap();
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
        assert_eq!(s.read_raw(&sid).unwrap()[0], ENC_RAW);
        assert_eq!(s.list().unwrap().len(), 2);
        assert_eq!(s.ids_with_prefix(&id.to_hex()[..5]).unwrap(), vec![id]);
    }
}
