//! Reading a regular file for a commit without reading its holes.
//!
//! A sparse file (a database's preallocated file, a VM image) can be gigabytes long and hold
//! a few megabytes of data. [`store_file`] asks the kernel where the data is
//! (`SEEK_DATA`/`SEEK_HOLE`), reads only that, and takes holes as the zeros they read as. The
//! stored result is byte-identical to [`store_content`](crate::chunker::store_content) of the
//! same bytes: the same content-defined chunks (cut exactly as the streaming chunker cuts
//! them), the same ids. A stretch of zeros long enough for a whole window of the chunker is
//! cut without scanning it: the chunker's hash starts afresh at every chunk, so its cut point
//! in zeros is always the same ([`zero_cut`]), and so is the chunk's id.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::OnceLock;

use fastcdc::v2020::{cut, select_masks, Normalization};
use rustix::fs::SeekFrom;
use rustix::io::Errno;

use crate::chunker::{file_content, FileContent, Sink, AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
use crate::id::ObjectId;
use crate::object::{ChunkRef, EntryKind};
use crate::progress::Progress;
use crate::repo::{io_err, Result};

/// The chunker's masks, as the streaming chunker picks them (normalisation level 1).
fn masks() -> (u64, u64) {
    static MASKS: OnceLock<(u64, u64)> = OnceLock::new();
    *MASKS.get_or_init(|| select_masks(AVG_CHUNK, Normalization::Level1))
}

/// Where the chunker cuts `window`, the bytes from a chunk's start on (at most [`MAX_CHUNK`]).
pub(crate) fn cut_point(window: &[u8]) -> usize {
    let (mask_s, mask_l) = masks();
    cut(
        window,
        MIN_CHUNK,
        AVG_CHUNK,
        MAX_CHUNK,
        mask_s,
        mask_l,
        mask_s << 1,
        mask_l << 1,
    )
    .1
}

/// A chunk of zeros: its length, where the chunker cuts a full window of zeros, and its id.
struct ZeroChunk {
    len: usize,
    id: ObjectId,
}

/// The chunk the chunker cuts from a full window of zeros, computed once.
fn zero_cut() -> &'static ZeroChunk {
    static ZERO: OnceLock<ZeroChunk> = OnceLock::new();
    ZERO.get_or_init(|| {
        let zeros = vec![0u8; MAX_CHUNK];
        let len = cut_point(&zeros);
        ZeroChunk {
            len,
            id: ObjectId::hash(&zeros[..len]),
        }
    })
}

/// A file read by position, data extents only: holes read as zeros without a read.
pub(crate) struct SparseReader<'a> {
    file: &'a File,
    path: &'a Path,
    /// The next byte to hand out.
    pos: u64,
    /// The current extent, `[pos, end)`: data when `data` is set, else a hole.
    end: u64,
    data: bool,
    /// No byte at or after `end` exists (the last extent).
    last: bool,
    /// Bytes really read from the file.
    pub(crate) read: u64,
}

impl<'a> SparseReader<'a> {
    pub(crate) fn new(file: &'a File, path: &'a Path) -> Self {
        SparseReader {
            file,
            path,
            pos: 0,
            end: 0,
            data: true,
            last: false,
            read: 0,
        }
    }

    /// Finds the extent that starts at `pos`. Where the filesystem cannot say (no
    /// `SEEK_DATA`), the rest of the file is taken as data, read as before.
    fn locate(&mut self) -> io::Result<()> {
        let fd = self.file;
        match rustix::fs::seek(fd, SeekFrom::Data(self.pos)) {
            Ok(start) if start > self.pos => {
                self.data = false;
                self.end = start;
                self.last = false;
            }
            Ok(_) => {
                self.data = true;
                self.end = rustix::fs::seek(fd, SeekFrom::Hole(self.pos))?;
                // A file growing under the reader: read on past the extent's end.
                self.last = false;
            }
            // No data at or after `pos`: a hole to the end of the file.
            Err(Errno::NXIO) => {
                let size = self.file.metadata()?.len();
                self.data = false;
                self.end = size.max(self.pos);
                self.last = true;
            }
            Err(Errno::INVAL | Errno::OPNOTSUPP) => {
                self.data = true;
                self.end = u64::MAX;
                self.last = true;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Moves to byte `pos`: the next [`SparseReader::fill`] starts there.
    pub(crate) fn seek(&mut self, pos: u64) {
        self.pos = pos;
        self.end = pos;
        self.data = true;
        self.last = false;
    }

    /// Fills `buf` from `pos` on; fewer bytes only at the end of the file.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            if self.pos >= self.end {
                if self.last {
                    break;
                }
                self.locate()?;
                if self.pos >= self.end {
                    if self.last {
                        break;
                    }
                    continue;
                }
            }
            let want = ((self.end - self.pos).min((buf.len() - done) as u64)) as usize;
            let n = if self.data {
                let n = self.file.read_at(&mut buf[done..done + want], self.pos)?;
                if n == 0 {
                    // The file ended inside what was an extent (truncated while read).
                    self.end = self.pos;
                    self.last = true;
                    break;
                }
                self.read += n as u64;
                n
            } else {
                buf[done..done + want].fill(0);
                want
            };
            done += n;
            self.pos += n as u64;
        }
        Ok(done)
    }

    /// Whether the bytes `[pos, pos + len)` are a hole the reader knows of or can find
    /// without reading.
    fn hole_ahead(&mut self, len: u64) -> io::Result<bool> {
        if self.pos >= self.end && !self.last {
            self.locate()?;
        }
        Ok(!self.data && self.end >= self.pos.saturating_add(len))
    }

    /// Passes over `len` bytes of a hole that [`SparseReader::hole_ahead`] found.
    fn skip(&mut self, len: u64) {
        self.pos += len;
    }
}

/// Chunks the regular file `file` (at `path`) like
/// [`store_content`](crate::chunker::store_content) and sends the chunks (and chunk list) to
/// `sink`, reading only its data extents. Returns the content and the bytes really read.
pub(crate) fn store_file(
    file: &File,
    path: &Path,
    buffer: &mut ReadBuffer,
    sink: &Sink<'_>,
    progress: &dyn Progress,
) -> Result<(FileContent, u64)> {
    let mut reader = SparseReader::new(file, path);
    let buf = buffer.get();
    // `buf[start..end]` holds the bytes from the current chunk's start on: at most a window
    // (`MAX_CHUNK`), as the streaming chunker sees them.
    let (mut start, mut end) = (
        0,
        reader
            .fill(&mut buf[..MAX_CHUNK])
            .map_err(io_err("read", path))?,
    );
    if end <= MIN_CHUNK {
        let id = ObjectId::hash(&buf[..end]);
        sink.put(&id, &buf[..end])?;
        progress.advance(end as u64);
        let content = FileContent {
            kind: EntryKind::File,
            id,
            size: end as u64,
        };
        return Ok((content, reader.read));
    }
    let zero = zero_cut();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    loop {
        // A chunk that starts in a hole spanning a whole window is cut where zeros are cut.
        if start == end
            && reader
                .hole_ahead(MAX_CHUNK as u64)
                .map_err(io_err("read", path))?
        {
            sink.put(&zero.id, &buf_zeros()[..zero.len])?;
            reader.skip(zero.len as u64);
            progress.advance(zero.len as u64);
            size += zero.len as u64;
            chunks.push(ChunkRef {
                id: zero.id,
                len: zero.len as u32,
            });
            continue;
        }
        // The rest moves to the buffer's start only when a whole window no longer fits
        // after it: once every few chunks, not after each.
        if start + MAX_CHUNK > buf.len() {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        end += reader
            .fill(&mut buf[end..start + MAX_CHUNK])
            .map_err(io_err("read", reader.path))?;
        if start == end {
            break;
        }
        let count = cut_point(&buf[start..end]);
        let data = &buf[start..start + count];
        let id = ObjectId::hash(data);
        sink.put(&id, data)?;
        progress.advance(count as u64);
        size += count as u64;
        chunks.push(ChunkRef {
            id,
            len: count as u32,
        });
        start += count;
    }
    Ok((file_content(chunks, size, sink)?, reader.read))
}

/// The buffer a reading thread reuses from file to file (allocated on first use).
#[derive(Default)]
pub(crate) struct ReadBuffer(Vec<u8>);

impl ReadBuffer {
    /// Four windows of the chunker: the unchunked rest of a window moves to the start only
    /// when less than a window is left after it.
    const LEN: usize = 4 * MAX_CHUNK;

    pub(crate) fn get(&mut self) -> &mut [u8] {
        if self.0.len() != Self::LEN {
            self.0 = vec![0u8; Self::LEN];
        }
        &mut self.0
    }
}

/// [`MAX_CHUNK`] zeros, shared.
fn buf_zeros() -> &'static [u8] {
    static ZEROS: OnceLock<Vec<u8>> = OnceLock::new();
    ZEROS.get_or_init(|| vec![0u8; MAX_CHUNK])
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

    use super::zero_cut;
    use crate::chunker::MAX_CHUNK;
    use crate::id::{CommitId, VolumeKey};
    use crate::object::CommitInfo;
    use crate::progress::NoProgress;
    use crate::repo::Repository;

    const MIB: u64 = 1 << 20;

    /// Where a file holds data, and the data.
    type Extents = Vec<(u64, Vec<u8>)>;

    /// Bytes that are not zeros and do not repeat.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        blake3::Hasher::new()
            .update(&seed.to_le_bytes())
            .finalize_xof()
            .fill(&mut bytes);
        bytes
    }

    /// Extents of data in a 64 MiB file: at the start, across 4 MiB windows, short runs in
    /// long holes, and the last bytes.
    fn extents() -> Extents {
        vec![
            (0, noise(1, 300 * 1024)),
            (5 * MIB + 12_345, noise(2, 3 * MIB as usize)),
            (17 * MIB, noise(3, 4096)),
            (17 * MIB + 8192, noise(4, 1)),
            (40 * MIB - 7, noise(5, 2 * MIB as usize)),
            (64 * MIB - 100, noise(6, 100)),
        ]
    }

    fn same_times(path: &Path) {
        let at = Timespec {
            tv_sec: 1_700_000_000,
            tv_nsec: 0,
        };
        let times = Timestamps {
            last_access: at,
            last_modification: at,
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    /// A volume directory with one file of `len` bytes holding `extents`, written sparsely
    /// (only the extents) or densely (every byte, the zeros too).
    fn volume(dir: &Path, len: u64, extents: &[(u64, Vec<u8>)], dense: bool) {
        fs::create_dir(dir).unwrap();
        let file = dir.join("db.img");
        if dense {
            let mut bytes = vec![0u8; len as usize];
            for (at, data) in extents {
                bytes[*at as usize..*at as usize + data.len()].copy_from_slice(data);
            }
            fs::write(&file, bytes).unwrap();
        } else {
            use std::os::unix::fs::FileExt;
            let f = fs::File::create(&file).unwrap();
            f.set_len(len).unwrap();
            for (at, data) in extents {
                f.write_all_at(data, *at).unwrap();
            }
        }
        same_times(&file);
        same_times(dir);
    }

    fn commit(repo: &Repository, dir: &Path) -> (CommitId, crate::snapshot::CommitStats) {
        let info = CommitInfo {
            message: "same".into(),
            author: "test".into(),
            time: chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap(),
        };
        let committed = repo
            .commit(&VolumeKey::new_random(), dir, info, &NoProgress)
            .unwrap();
        (committed.id, committed.stats)
    }

    fn allocated(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn a_sparse_file_commits_to_the_id_of_the_same_bytes_written_densely() {
        let tmp = tempfile::tempdir().unwrap();
        let len = 64 * MIB;
        let extents = extents();
        let data: u64 = extents.iter().map(|(_, d)| d.len() as u64).sum();
        let (sparse, dense) = (tmp.path().join("sparse"), tmp.path().join("dense"));
        volume(&sparse, len, &extents, false);
        volume(&dense, len, &extents, true);
        let sparse_alloc = allocated(&sparse.join("db.img"));
        assert!(
            sparse_alloc < len / 4,
            "the test filesystem must keep holes (allocated {sparse_alloc} of {len})"
        );

        let repo = Repository::open(&tmp.path().join("repo")).unwrap();
        let (dense_id, dense_stats) = commit(&repo, &dense);
        let (sparse_id, sparse_stats) = commit(&repo, &sparse);
        assert_eq!(
            sparse_id, dense_id,
            "holes must read as zeros and chunk the same"
        );
        assert_eq!(dense_stats.bytes_read, len);
        // Only the data extents are read (the filesystem rounds extents to its blocks).
        assert!(
            sparse_stats.bytes_read >= data && sparse_stats.bytes_read <= sparse_alloc,
            "read {} for {data} bytes of data ({sparse_alloc} allocated)",
            sparse_stats.bytes_read
        );
    }

    #[test]
    fn small_and_empty_and_all_hole_files_match_their_dense_twins() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::open(&tmp.path().join("repo")).unwrap();
        let cases: Vec<(u64, Extents)> = vec![
            (0, vec![]),
            (100, vec![(10, noise(7, 5))]),
            (256 * 1024, vec![]),
            (256 * 1024 + 1, vec![(256 * 1024, noise(8, 1))]),
            (3 * MAX_CHUNK as u64 + 5, vec![]),
            (MAX_CHUNK as u64, vec![(MAX_CHUNK as u64 - 1, noise(9, 1))]),
        ];
        for (i, (len, extents)) in cases.iter().enumerate() {
            let sparse = tmp.path().join(format!("s{i}"));
            let dense = tmp.path().join(format!("d{i}"));
            volume(&sparse, *len, extents, false);
            volume(&dense, *len, extents, true);
            assert_eq!(
                commit(&repo, &sparse).0,
                commit(&repo, &dense).0,
                "file of {len} bytes"
            );
        }
    }

    #[test]
    fn zeros_are_cut_at_the_largest_chunk() {
        // Not needed for correctness (any cut point is taken as the chunker gives it), but the
        // fast path skips whole holes only when a window of zeros is one whole chunk.
        assert_eq!(zero_cut().len, MAX_CHUNK);
    }
}
