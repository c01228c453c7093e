//! Object types and their canonical encodings.
//!
//! Every object is a byte string stored under the blake3 hash of those bytes. Chunks are raw
//! file data; the structured objects (file chunk lists, trees, commits, block maps) start with
//! an 8-byte magic so their kind can be recognised from their content alone.

use chrono::{DateTime, FixedOffset, SecondsFormat};

use crate::codec::{DecodeError, Reader, Writer};
use crate::id::{CommitId, ObjectId};

const FILE_MAGIC: &[u8; 8] = b"dvolfil1";
const TREE_MAGIC: &[u8; 8] = b"dvoltre1";
const COMMIT_MAGIC: &[u8; 8] = b"dvolcom1";
const BLOCKMAP_MAGIC: &[u8; 8] = b"dvolblk1";

/// Errors about object contents.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object's bytes could not be decoded as the expected kind.
    #[error("object {id} is not a valid {kind}: {source}")]
    Decode {
        /// The object.
        id: ObjectId,
        /// The kind that was expected.
        kind: &'static str,
        /// What was wrong.
        source: DecodeError,
    },
    /// A commit's time is not RFC 3339.
    #[error("commit time '{0}' is not an RFC 3339 timestamp")]
    BadTime(String),
    /// A tree would contain an invalid or duplicate name.
    #[error("invalid tree entry name {0:?}")]
    BadName(String),
}

/// The kind of a structured object, recognised from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// Raw data (a file chunk or a symlink target).
    Chunk,
    /// A chunk list ([`FileObject`]).
    File,
    /// A directory listing ([`Tree`]).
    Tree,
    /// A [`Commit`].
    Commit,
    /// A block device map ([`BlockMap`]).
    BlockMap,
}

impl ObjectKind {
    /// Classifies an object by its content. Data that happens to start with a magic string is
    /// still data: kinds only matter where an object is reached through a typed reference.
    pub fn sniff(data: &[u8]) -> ObjectKind {
        if data.len() < 8 {
            return ObjectKind::Chunk;
        }
        match &data[..8] {
            m if m == FILE_MAGIC => ObjectKind::File,
            m if m == TREE_MAGIC => ObjectKind::Tree,
            m if m == COMMIT_MAGIC => ObjectKind::Commit,
            m if m == BLOCKMAP_MAGIC => ObjectKind::BlockMap,
            _ => ObjectKind::Chunk,
        }
    }
}

/// One chunk of a file: its id and uncompressed length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// The chunk's object id (hash of its uncompressed bytes).
    pub id: ObjectId,
    /// The chunk's length in bytes.
    pub len: u32,
}

/// A file that spans several chunks: the ordered chunk list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileObject {
    /// Total size in bytes (the sum of the chunk lengths).
    pub size: u64,
    /// The chunks, in file order.
    pub chunks: Vec<ChunkRef>,
}

impl FileObject {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(FILE_MAGIC);
        w.uvar(self.size);
        w.uvar(self.chunks.len() as u64);
        for c in &self.chunks {
            w.id(&c.id);
            w.uvar(u64::from(c.len));
        }
        w.finish()
    }

    /// Decodes the object `id`.
    pub fn decode(id: ObjectId, data: &[u8]) -> Result<FileObject, ObjectError> {
        let wrap = |source| ObjectError::Decode {
            id,
            kind: "file chunk list",
            source,
        };
        let mut r = Reader::new(data, "file chunk list");
        r.magic(FILE_MAGIC).map_err(wrap)?;
        let size = r.uvar().map_err(wrap)?;
        let n = r.count(33).map_err(wrap)?;
        let mut chunks = Vec::with_capacity(n);
        let mut total = 0u64;
        for _ in 0..n {
            let id = r.id().map_err(wrap)?;
            let len = r.u32var().map_err(wrap)?;
            total += u64::from(len);
            chunks.push(ChunkRef { id, len });
        }
        r.end().map_err(wrap)?;
        if total != size {
            return Err(wrap(DecodeError::Invalid(
                "file size (chunk lengths do not add up)",
            )));
        }
        Ok(FileObject { size, chunks })
    }
}

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file held in a single chunk: `id` is that chunk (files up to one chunk,
    /// including empty files).
    File,
    /// A regular file of several chunks: `id` is a [`FileObject`] listing them.
    ChunkedFile,
    /// A directory: `id` is its [`Tree`].
    Dir,
    /// A symbolic link: `id` is a chunk holding the link target (never followed).
    Symlink,
    /// A named pipe: `id` is a chunk holding its [`SpecialNode`] description; size 0.
    Fifo,
    /// A unix socket node: `id` is a chunk holding its [`SpecialNode`] description; size 0.
    /// (A checkout recreates the node; no process listens on it.)
    Socket,
    /// A character device node: `id` is a chunk holding its [`SpecialNode`] description
    /// (with the device number); size 0.
    CharDevice,
    /// A block device node, like [`EntryKind::CharDevice`].
    BlockDevice,
    /// Another name of a regular file that an earlier entry holds (a hard link): `id` is a
    /// chunk holding that entry's path from the volume root (`a/b/c`), the first name of the
    /// inode in path order; mode, owner, mtime and size are the file's. The content is stored
    /// once, with the first name.
    HardLink,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::File => 0,
            EntryKind::ChunkedFile => 1,
            EntryKind::Dir => 2,
            EntryKind::Symlink => 3,
            EntryKind::Fifo => 4,
            EntryKind::Socket => 5,
            EntryKind::CharDevice => 6,
            EntryKind::BlockDevice => 7,
            EntryKind::HardLink => 8,
        }
    }

    fn from_code(c: u8) -> Option<EntryKind> {
        Some(match c {
            0 => EntryKind::File,
            1 => EntryKind::ChunkedFile,
            2 => EntryKind::Dir,
            3 => EntryKind::Symlink,
            4 => EntryKind::Fifo,
            5 => EntryKind::Socket,
            6 => EntryKind::CharDevice,
            7 => EntryKind::BlockDevice,
            8 => EntryKind::HardLink,
            _ => return None,
        })
    }

    /// The one-byte code of this kind in tree and index encodings.
    pub fn to_code(self) -> u8 {
        self.code()
    }

    /// The kind with this one-byte code, if any.
    pub fn of_code(code: u8) -> Option<EntryKind> {
        EntryKind::from_code(code)
    }

    /// Whether this is a fifo, socket or device node ([`SpecialNode`]).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            EntryKind::Fifo | EntryKind::Socket | EntryKind::CharDevice | EntryKind::BlockDevice
        )
    }

    /// Whether this is a regular file (single- or multi-chunk).
    pub fn is_file(self) -> bool {
        matches!(self, EntryKind::File | EntryKind::ChunkedFile)
    }
}

/// What a special file entry's content chunk says: the node's kind and, for device nodes,
/// the device number. Encoded as text (`fifo`, `socket`, `char 1:3`, `block 7:0`), so equal
/// nodes share one chunk and the number does not depend on the host's `dev_t` layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialNode {
    /// [`EntryKind::Fifo`], [`EntryKind::Socket`], [`EntryKind::CharDevice`] or
    /// [`EntryKind::BlockDevice`].
    pub kind: EntryKind,
    /// Device major number (0 for fifos and sockets).
    pub major: u32,
    /// Device minor number (0 for fifos and sockets).
    pub minor: u32,
}

impl SpecialNode {
    /// The chunk content describing the node.
    pub fn encode(&self) -> Vec<u8> {
        match self.kind {
            EntryKind::CharDevice => format!("char {}:{}", self.major, self.minor).into_bytes(),
            EntryKind::BlockDevice => format!("block {}:{}", self.major, self.minor).into_bytes(),
            EntryKind::Socket => b"socket".to_vec(),
            _ => b"fifo".to_vec(),
        }
    }

    /// Reads the description of a node of `kind`; `None` if it does not describe one.
    pub fn decode(kind: EntryKind, data: &[u8]) -> Option<SpecialNode> {
        let text = std::str::from_utf8(data).ok()?;
        let device = |prefix: &str| {
            let (major, minor) = text.strip_prefix(prefix)?.split_once(':')?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        };
        let (major, minor) = match kind {
            EntryKind::Fifo if text == "fifo" => (0, 0),
            EntryKind::Socket if text == "socket" => (0, 0),
            EntryKind::CharDevice => device("char ")?,
            EntryKind::BlockDevice => device("block ")?,
            _ => return None,
        };
        Some(SpecialNode { kind, major, minor })
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// The file name (raw bytes: Unix names need not be UTF-8). Never empty, `.`, `..`, and
    /// never contains `/` or NUL.
    pub name: Vec<u8>,
    /// What the entry is.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Size in bytes (files and hard links: content length; symlinks: target length;
    /// directories and special files: 0).
    pub size: u64,
    /// The content object (see [`EntryKind`]).
    pub id: ObjectId,
}

/// Checks a tree entry name.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// A directory listing, entries sorted by name bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    /// The entries, strictly increasing by name.
    pub entries: Vec<TreeEntry>,
}

impl Tree {
    /// The canonical encoding. Entries must be sorted and unique (see [`Tree::sort`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(TREE_MAGIC);
        w.uvar(self.entries.len() as u64);
        for e in &self.entries {
            w.bytes(&e.name);
            w.u8(e.kind.code());
            w.uvar(u64::from(e.mode));
            w.uvar(u64::from(e.uid));
            w.uvar(u64::from(e.gid));
            w.ivar(e.mtime_ns);
            w.uvar(e.size);
            w.id(&e.id);
        }
        w.finish()
    }

    /// Sorts entries by name.
    pub fn sort(&mut self) {
        self.entries.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Looks an entry up by name.
    pub fn get(&self, name: &[u8]) -> Option<&TreeEntry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Decodes the tree `id`, checking names and order.
    pub fn decode(id: ObjectId, data: &[u8]) -> Result<Tree, ObjectError> {
        let wrap = |source| ObjectError::Decode {
            id,
            kind: "tree",
            source,
        };
        let mut r = Reader::new(data, "tree");
        r.magic(TREE_MAGIC).map_err(wrap)?;
        let n = r.count(40).map_err(wrap)?;
        let mut entries: Vec<TreeEntry> = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.bytes().map_err(wrap)?.to_vec();
            if !valid_name(&name) {
                return Err(wrap(DecodeError::Invalid("tree entry name")));
            }
            if let Some(prev) = entries.last() {
                if prev.name >= name {
                    return Err(wrap(DecodeError::Invalid("tree entry order")));
                }
            }
            let kind = EntryKind::from_code(r.u8().map_err(wrap)?)
                .ok_or(wrap(DecodeError::Invalid("tree entry kind")))?;
            let mode = r.u32var().map_err(wrap)?;
            let uid = r.u32var().map_err(wrap)?;
            let gid = r.u32var().map_err(wrap)?;
            let mtime_ns = r.ivar().map_err(wrap)?;
            let size = r.uvar().map_err(wrap)?;
            let eid = r.id().map_err(wrap)?;
            entries.push(TreeEntry {
                name,
                kind,
                mode,
                uid,
                gid,
                mtime_ns,
                size,
                id: eid,
            });
        }
        r.end().map_err(wrap)?;
        Ok(Tree { entries })
    }
}

/// Metadata of a volume's root directory, kept in the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirMeta {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// What a commit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A directory tree (filesystem volumes): the root [`Tree`].
    Tree(ObjectId),
    /// A block device image: a [`BlockMap`].
    BlockMap(ObjectId),
}

impl Content {
    /// The object id, whatever the kind.
    pub fn id(&self) -> ObjectId {
        match self {
            Content::Tree(id) | Content::BlockMap(id) => *id,
        }
    }
}

/// The author-supplied part of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// The commit message.
    pub message: String,
    /// Who made the commit (free text, e.g. `user@host`).
    pub author: String,
    /// When the commit was made.
    pub time: DateTime<FixedOffset>,
}

impl CommitInfo {
    /// A commit info stamped with the current time (UTC).
    pub fn now(message: impl Into<String>, author: impl Into<String>) -> CommitInfo {
        CommitInfo {
            message: message.into(),
            author: author.into(),
            time: chrono::Utc::now().fixed_offset(),
        }
    }
}

/// A commit: a snapshot of a volume plus its history links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The commit's id (the hash of its encoding; not itself encoded).
    pub id: CommitId,
    /// The snapshot.
    pub content: Content,
    /// The volume root directory's metadata (zero for block commits).
    pub root: DirMeta,
    /// Parent commits (first parent first); empty for a root commit.
    pub parents: Vec<CommitId>,
    /// Message, author and time.
    pub info: CommitInfo,
}

impl Commit {
    /// Builds a commit and computes its id.
    pub fn new(
        content: Content,
        root: DirMeta,
        parents: Vec<CommitId>,
        info: CommitInfo,
    ) -> Commit {
        let mut c = Commit {
            id: CommitId(ObjectId::from_bytes([0; 32])),
            content,
            root,
            parents,
            info,
        };
        c.id = CommitId(ObjectId::hash(&c.encode()));
        c
    }

    /// The root tree, for filesystem commits.
    pub fn tree(&self) -> Option<ObjectId> {
        match self.content {
            Content::Tree(t) => Some(t),
            Content::BlockMap(_) => None,
        }
    }

    /// The canonical encoding (the id is the blake3 hash of it).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(COMMIT_MAGIC);
        match self.content {
            Content::Tree(id) => {
                w.u8(0);
                w.id(&id);
            }
            Content::BlockMap(id) => {
                w.u8(1);
                w.id(&id);
            }
        }
        w.uvar(u64::from(self.root.mode));
        w.uvar(u64::from(self.root.uid));
        w.uvar(u64::from(self.root.gid));
        w.ivar(self.root.mtime_ns);
        w.uvar(self.parents.len() as u64);
        for p in &self.parents {
            w.id(&p.0);
        }
        w.bytes(self.info.message.as_bytes());
        w.bytes(self.info.author.as_bytes());
        w.bytes(format_time(&self.info.time).as_bytes());
        w.finish()
    }

    /// Decodes the commit `id`.
    pub fn decode(id: ObjectId, data: &[u8]) -> Result<Commit, ObjectError> {
        let wrap = |source| ObjectError::Decode {
            id,
            kind: "commit",
            source,
        };
        let mut r = Reader::new(data, "commit");
        r.magic(COMMIT_MAGIC).map_err(wrap)?;
        let kind = r.u8().map_err(wrap)?;
        let cid = r.id().map_err(wrap)?;
        let content = match kind {
            0 => Content::Tree(cid),
            1 => Content::BlockMap(cid),
            _ => return Err(wrap(DecodeError::Invalid("commit content kind"))),
        };
        let root = DirMeta {
            mode: r.u32var().map_err(wrap)?,
            uid: r.u32var().map_err(wrap)?,
            gid: r.u32var().map_err(wrap)?,
            mtime_ns: r.ivar().map_err(wrap)?,
        };
        let n = r.count(32).map_err(wrap)?;
        let mut parents = Vec::with_capacity(n);
        for _ in 0..n {
            parents.push(CommitId(r.id().map_err(wrap)?));
        }
        let message = r.string().map_err(wrap)?;
        let author = r.string().map_err(wrap)?;
        let time_s = r.string().map_err(wrap)?;
        r.end().map_err(wrap)?;
        let time = DateTime::parse_from_rfc3339(&time_s)
            .map_err(|_| ObjectError::BadTime(time_s.clone()))?;
        Ok(Commit {
            id: CommitId(id),
            content,
            root,
            parents,
            info: CommitInfo {
                message,
                author,
                time,
            },
        })
    }
}

/// Formats a commit time as RFC 3339 (the form that is hashed).
pub fn format_time(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A block device image: which fixed-size chunks hold data. Chunks not listed are zero
/// (holes and all-zero chunks are both recorded by absence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMap {
    /// Size of the device or image in bytes.
    pub size: u64,
    /// Chunk size in bytes (the last chunk may be shorter).
    pub chunk_size: u32,
    /// `(chunk index, chunk id)` for the non-zero chunks, increasing by index.
    pub chunks: Vec<(u64, ObjectId)>,
}

impl BlockMap {
    /// The canonical encoding (indexes are delta-encoded).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(BLOCKMAP_MAGIC);
        w.uvar(self.size);
        w.uvar(u64::from(self.chunk_size));
        w.uvar(self.chunks.len() as u64);
        let mut prev: Option<u64> = None;
        for (idx, id) in &self.chunks {
            w.uvar(match prev {
                None => *idx,
                Some(p) => idx - p - 1,
            });
            prev = Some(*idx);
            w.id(id);
        }
        w.finish()
    }

    /// Decodes the block map `id`.
    pub fn decode(id: ObjectId, data: &[u8]) -> Result<BlockMap, ObjectError> {
        let wrap = |source| ObjectError::Decode {
            id,
            kind: "block map",
            source,
        };
        let mut r = Reader::new(data, "block map");
        r.magic(BLOCKMAP_MAGIC).map_err(wrap)?;
        let size = r.uvar().map_err(wrap)?;
        let chunk_size = r.u32var().map_err(wrap)?;
        if chunk_size == 0 {
            return Err(wrap(DecodeError::Invalid("block map chunk size")));
        }
        let n = r.count(33).map_err(wrap)?;
        let nchunks = size.div_ceil(u64::from(chunk_size));
        let mut chunks = Vec::with_capacity(n);
        let mut prev: Option<u64> = None;
        for _ in 0..n {
            let d = r.uvar().map_err(wrap)?;
            let idx = match prev {
                None => Some(d),
                Some(p) => p.checked_add(d).and_then(|x| x.checked_add(1)),
            }
            .filter(|i| *i < nchunks)
            .ok_or(wrap(DecodeError::Invalid("block map index")))?;
            prev = Some(idx);
            chunks.push((idx, r.id().map_err(wrap)?));
        }
        r.end().map_err(wrap)?;
        Ok(BlockMap {
            size,
            chunk_size,
            chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: EntryKind) -> TreeEntry {
        TreeEntry {
            name: name.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            mtime_ns: -5,
            size: 12,
            id: ObjectId::hash(name.as_bytes()),
        }
    }

    #[test]
    fn tree_round_trip_and_checks() {
        let mut t = Tree {
            entries: vec![entry("b", EntryKind::Dir), entry("a", EntryKind::File)],
        };
        t.sort();
        let enc = t.encode();
        let id = ObjectId::hash(&enc);
        assert_eq!(Tree::decode(id, &enc).unwrap(), t);
        assert_eq!(ObjectKind::sniff(&enc), ObjectKind::Tree);
        assert!(t.get(b"b").is_some() && t.get(b"c").is_none());
        // Unsorted entries are rejected.
        let bad = Tree {
            entries: vec![entry("b", EntryKind::Dir), entry("a", EntryKind::File)],
        };
        assert!(Tree::decode(id, &bad.encode()).is_err());
        let bad = Tree {
            entries: vec![entry("a/b", EntryKind::File)],
        };
        assert!(Tree::decode(id, &bad.encode()).is_err());
    }

    #[test]
    fn commit_ids_are_content_hashes() {
        let info = CommitInfo {
            message: "m".into(),
            author: "me".into(),
            time: DateTime::parse_from_rfc3339("2024-05-06T07:08:09.123+02:00").unwrap(),
        };
        let tree = ObjectId::hash(b"t");
        let a = Commit::new(
            Content::Tree(tree),
            DirMeta::default(),
            vec![],
            info.clone(),
        );
        let b = Commit::new(
            Content::Tree(tree),
            DirMeta::default(),
            vec![],
            info.clone(),
        );
        assert_eq!(a.id, b.id);
        let enc = a.encode();
        assert_eq!(ObjectId::hash(&enc), a.id.0);
        assert_eq!(Commit::decode(a.id.0, &enc).unwrap(), a);
        let c = Commit::new(Content::Tree(tree), DirMeta::default(), vec![a.id], info);
        assert_ne!(c.id, a.id);
        assert_eq!(
            Commit::decode(c.id.0, &c.encode()).unwrap().parents,
            vec![a.id]
        );
    }

    #[test]
    fn file_and_blockmap_round_trip() {
        let f = FileObject {
            size: 7,
            chunks: vec![
                ChunkRef {
                    id: ObjectId::hash(b"1"),
                    len: 3,
                },
                ChunkRef {
                    id: ObjectId::hash(b"2"),
                    len: 4,
                },
            ],
        };
        let enc = f.encode();
        assert_eq!(FileObject::decode(ObjectId::hash(&enc), &enc).unwrap(), f);
        let m = BlockMap {
            size: 10 << 22,
            chunk_size: 1 << 22,
            chunks: vec![(0, ObjectId::hash(b"a")), (7, ObjectId::hash(b"b"))],
        };
        let enc = m.encode();
        assert_eq!(BlockMap::decode(ObjectId::hash(&enc), &enc).unwrap(), m);
    }
}

#[cfg(test)]
mod stable_ids {
    use super::*;

    /// A tree of every kind that existed before special files and hard links: its encoding
    /// (and so every existing commit id) must never change.
    #[test]
    fn trees_of_the_original_kinds_keep_their_ids() {
        let e = |name: &str, kind, mode, size| TreeEntry {
            name: name.as_bytes().to_vec(),
            kind,
            mode,
            uid: 1000,
            gid: 100,
            mtime_ns: 1_700_000_000_123_456_789,
            size,
            id: ObjectId::hash(name.as_bytes()),
        };
        let t = Tree {
            entries: vec![
                e("big", EntryKind::ChunkedFile, 0o644, 5 << 20),
                e("dir", EntryKind::Dir, 0o755, 0),
                e("file", EntryKind::File, 0o4750, 12),
                e("link", EntryKind::Symlink, 0o777, 4),
            ],
        };
        assert_eq!(
            ObjectId::hash(&t.encode()).to_string(),
            "e8bf7fa18c2930dc8ea5a1419c61dd1d021000e3e07773bdcebf678ae20cce1d"
        );
    }
}
