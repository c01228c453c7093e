//! The per-volume index: for every path of the volume's directory as last committed or
//! checked out, its `lstat` fields and the object holding its content.
//!
//! A commit re-reads only the files whose stat no longer matches; a checkout rewrites only
//! the files whose stat or content id differ. The index is a cache: losing it costs one full
//! re-read, never correctness. Entries whose change time was too close to the moment they
//! were read are marked *racy* and are re-read next time (a write in the same clock tick
//! would not change the stat).
//!
//! File: `index/<volume uuid>` = magic `dvolidx1`, zstd-compressed body, blake3 of the body.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::codec::{DecodeError, Reader, Writer};
use crate::fsutil::atomic_write;
use crate::id::ObjectId;
use crate::object::EntryKind;

const INDEX_MAGIC: &[u8; 8] = b"dvolidx1";

/// Errors about index files.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file system operation failed.
    #[error("index: cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The index file is damaged (it will be rebuilt by the next commit or checkout).
    #[error("index {path} is corrupt: {why}")]
    Corrupt {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The stat fields the index compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatKey {
    /// Size in bytes.
    pub size: u64,
    /// Modification time (ns since the epoch).
    pub mtime_ns: i64,
    /// Inode change time (ns since the epoch).
    pub ctime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Full `st_mode` (type and permissions).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl StatKey {
    /// The key of an `lstat` result.
    pub fn of(md: &fs::Metadata) -> StatKey {
        StatKey {
            size: md.size(),
            mtime_ns: md
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.mtime_nsec()),
            ctime_ns: md
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.ctime_nsec()),
            ino: md.ino(),
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
        }
    }
}

/// One path in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// What the path was.
    pub kind: EntryKind,
    /// Its stat when recorded.
    pub stat: StatKey,
    /// Its content object (chunk, chunk list, tree or symlink target).
    pub id: ObjectId,
    /// Whether the stat cannot be trusted (changed too recently): re-read next time.
    pub racy: bool,
}

impl IndexEntry {
    /// Whether the file at this path is known to still hold `self.id`, given its current stat.
    pub fn matches(&self, now: &StatKey) -> bool {
        !self.racy && self.stat == *now
    }
}

/// The index of one volume: relative path (`a/b/c`, raw bytes) to entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    /// The entries.
    pub entries: HashMap<Vec<u8>, IndexEntry>,
}

fn kind_code(k: EntryKind) -> u8 {
    k.to_code()
}

fn kind_from(c: u8) -> Option<EntryKind> {
    EntryKind::of_code(c)
}

impl Index {
    /// Encodes the index (entries sorted by path).
    pub fn encode(&self) -> Vec<u8> {
        let mut keys: Vec<&Vec<u8>> = self.entries.keys().collect();
        keys.sort();
        let mut w = Writer::new();
        w.uvar(keys.len() as u64);
        for k in keys {
            let e = &self.entries[k];
            w.bytes(k);
            w.u8(kind_code(e.kind));
            w.uvar(e.stat.size);
            w.ivar(e.stat.mtime_ns);
            w.ivar(e.stat.ctime_ns);
            w.uvar(e.stat.ino);
            w.uvar(u64::from(e.stat.mode));
            w.uvar(u64::from(e.stat.uid));
            w.uvar(u64::from(e.stat.gid));
            w.id(&e.id);
            w.u8(u8::from(e.racy));
        }
        let body = w.finish();
        let compressed = zstd::bulk::compress(&body, 1).unwrap_or_else(|_| Vec::new());
        let mut out = Writer::new();
        out.raw(INDEX_MAGIC);
        out.uvar(body.len() as u64);
        out.bytes(&compressed);
        out.raw(blake3::hash(&body).as_bytes());
        out.finish()
    }

    /// Decodes an index file's bytes.
    pub fn decode(data: &[u8]) -> Result<Index, DecodeError> {
        let mut r = Reader::new(data, "index");
        r.magic(INDEX_MAGIC)?;
        let len = usize::try_from(r.uvar()?).map_err(|_| DecodeError::Invalid("index length"))?;
        let compressed = r.bytes()?;
        let sum = r.raw(32)?;
        r.end()?;
        let body = zstd::bulk::decompress(compressed, len)
            .map_err(|_| DecodeError::Invalid("index compression"))?;
        if body.len() != len || blake3::hash(&body).as_bytes() != sum {
            return Err(DecodeError::Invalid("index checksum"));
        }
        let mut r = Reader::new(&body, "index");
        let n = r.count(42)?;
        let mut entries = HashMap::with_capacity(n);
        for _ in 0..n {
            let path = r.bytes()?.to_vec();
            let kind = kind_from(r.u8()?).ok_or(DecodeError::Invalid("index entry kind"))?;
            let stat = StatKey {
                size: r.uvar()?,
                mtime_ns: r.ivar()?,
                ctime_ns: r.ivar()?,
                ino: r.uvar()?,
                mode: r.u32var()?,
                uid: r.u32var()?,
                gid: r.u32var()?,
            };
            let id = r.id()?;
            let racy = r.u8()? != 0;
            entries.insert(
                path,
                IndexEntry {
                    kind,
                    stat,
                    id,
                    racy,
                },
            );
        }
        r.end()?;
        Ok(Index { entries })
    }

    /// Loads the index at `path`; a missing file is an empty index.
    pub fn load(path: &Path) -> Result<Index, IndexError> {
        match fs::read(path) {
            Ok(b) => Index::decode(&b).map_err(|e| IndexError::Corrupt {
                path: path.to_path_buf(),
                why: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(IndexError::Io {
                op: "read",
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    /// Loads the index, treating a corrupt file as empty (it is only a cache).
    pub fn load_or_empty(path: &Path) -> Result<Index, IndexError> {
        match Index::load(path) {
            Err(IndexError::Corrupt { .. }) => Ok(Index::default()),
            other => other,
        }
    }

    /// Saves the index atomically.
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        atomic_write(path, &self.encode()).map_err(|e| IndexError::Io {
            op: "write",
            path: path.to_path_buf(),
            source: e,
        })
    }

    /// Looks a path up.
    pub fn get(&self, path: &[u8]) -> Option<&IndexEntry> {
        self.entries.get(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let mut ix = Index::default();
        let stat = StatKey {
            size: 5,
            mtime_ns: -3,
            ctime_ns: 9,
            ino: 77,
            mode: 0o100644,
            uid: 1,
            gid: 2,
        };
        ix.entries.insert(
            b"a/b".to_vec(),
            IndexEntry {
                kind: EntryKind::File,
                stat,
                id: ObjectId::hash(b"x"),
                racy: true,
            },
        );
        ix.entries.insert(
            b"a".to_vec(),
            IndexEntry {
                kind: EntryKind::Dir,
                stat,
                id: ObjectId::hash(b"y"),
                racy: false,
            },
        );
        let enc = ix.encode();
        assert_eq!(Index::decode(&enc).unwrap(), ix);
        let mut bad = enc.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(Index::decode(&bad).is_err());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ix");
        assert_eq!(Index::load(&p).unwrap(), Index::default());
        ix.save(&p).unwrap();
        assert_eq!(Index::load(&p).unwrap(), ix);
        fs::write(&p, b"junk").unwrap();
        assert!(Index::load(&p).is_err());
        assert_eq!(Index::load_or_empty(&p).unwrap(), Index::default());
    }
}
