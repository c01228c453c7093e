//! Cutting a file's data into content-defined chunks (FastCDC) and storing them: the chunk
//! sizes, where the objects go ([`Sink`]: the store, or nowhere when only hashing), and the
//! content reference of a file ([`FileContent`]). The commit's tree walk
//! ([`crate::snapshot`]), the reading of sparse files ([`crate::sparse`]), checkout and status
//! all cut files here, so equal bytes always get equal ids.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;

use fastcdc::v2020::StreamCDC;

use crate::id::ObjectId;
use crate::object::{ChunkRef, EntryKind, FileObject, Tree};
use crate::progress::Progress;
use crate::repo::{io_err, Result};
use crate::store::{ObjectStore, WriteBatch};

/// Smallest content-defined chunk (files up to this size are one chunk).
pub const MIN_CHUNK: usize = 256 * 1024;
/// Average content-defined chunk size.
pub const AVG_CHUNK: usize = 1024 * 1024;
/// Largest content-defined chunk.
pub const MAX_CHUNK: usize = 4 * 1024 * 1024;

/// Where the objects produced by a scan go.
pub(crate) enum Sink<'a> {
    /// Into the store.
    Store {
        store: &'a ObjectStore,
        batch: &'a WriteBatch,
    },
    /// Nowhere (hash only); trees optionally kept in memory (for status).
    Hash {
        trees: Option<&'a Mutex<HashMap<ObjectId, Tree>>>,
    },
}

impl Sink<'_> {
    pub(crate) fn put(&self, id: &ObjectId, data: &[u8]) -> Result<()> {
        if let Sink::Store { store, batch } = self {
            store.write(id, data, batch)?;
        }
        Ok(())
    }

    pub(crate) fn put_tree(&self, id: &ObjectId, tree: &Tree, enc: &[u8]) -> Result<()> {
        match self {
            Sink::Store { .. } => self.put(id, enc),
            Sink::Hash { trees: Some(m) } => {
                m.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(*id, tree.clone());
                Ok(())
            }
            Sink::Hash { trees: None } => Ok(()),
        }
    }
}

/// The content reference of a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileContent {
    pub kind: EntryKind,
    pub id: ObjectId,
    pub size: u64,
}

/// Chunks everything `reader` yields, sends the chunks (and chunk list) to `sink`.
pub(crate) fn store_content<R: Read>(
    mut reader: R,
    path: &Path,
    sink: &Sink<'_>,
    progress: &dyn Progress,
) -> Result<FileContent> {
    let mut head = Vec::new();
    (&mut reader)
        .take(MIN_CHUNK as u64 + 1)
        .read_to_end(&mut head)
        .map_err(io_err("read", path))?;
    if head.len() <= MIN_CHUNK {
        let id = ObjectId::hash(&head);
        sink.put(&id, &head)?;
        progress.advance(head.len() as u64);
        return Ok(FileContent {
            kind: EntryKind::File,
            id,
            size: head.len() as u64,
        });
    }
    let mut chunks = Vec::new();
    let mut size = 0u64;
    for chunk in StreamCDC::new(
        io::Cursor::new(head).chain(reader),
        MIN_CHUNK,
        AVG_CHUNK,
        MAX_CHUNK,
    ) {
        let chunk = chunk.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(e) => io_err("read", path)(e),
            other => io_err("chunk", path)(io::Error::other(other.to_string())),
        })?;
        let id = ObjectId::hash(&chunk.data);
        sink.put(&id, &chunk.data)?;
        progress.advance(chunk.length as u64);
        size += chunk.length as u64;
        chunks.push(ChunkRef {
            id,
            len: chunk.length as u32,
        });
    }
    file_content(chunks, size, sink)
}

/// The content of a file of `size` bytes cut into `chunks`: the chunk itself if there is
/// one, else the chunk list (sent to `sink`).
pub(crate) fn file_content(
    chunks: Vec<ChunkRef>,
    size: u64,
    sink: &Sink<'_>,
) -> Result<FileContent> {
    if let [only] = chunks[..] {
        return Ok(FileContent {
            kind: EntryKind::File,
            id: only.id,
            size,
        });
    }
    let enc = FileObject { size, chunks }.encode();
    let id = ObjectId::hash(&enc);
    sink.put(&id, &enc)?;
    Ok(FileContent {
        kind: EntryKind::ChunkedFile,
        id,
        size,
    })
}
