//! Block volumes: snapshots of a block device or image file as a map of fixed 4 MiB chunks.
//!
//! A commit asks the file system where data is (`SEEK_DATA`/`SEEK_HOLE`) and reads only
//! allocated ranges; chunks in holes and chunks that read as all zeros are recorded as zero
//! (absent from the [`BlockMap`]); other chunks are stored like file chunks (zstd, deduplicated
//! by blake3 id). A checkout compares each chunk of the device with the wanted one (holes
//! need no read) and writes only chunks that differ; zero chunks of image files are punched
//! out as holes. A block commit re-reads all allocated data: there is no stat to compare.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{FallocateFlags, SeekFrom};

use crate::id::{CommitId, ObjectId, VolumeKey};
use crate::object::{BlockMap, Commit, CommitInfo, Content, DirMeta};
use crate::progress::{Phase, Progress};
use crate::repo::{io_err, Error, Repository, Result};
use crate::snapshot::HeadMove;
use crate::store::WriteBatch;

/// Chunk size of block maps.
pub const BLOCK_CHUNK: u32 = 4 * 1024 * 1024;

/// What a block commit or checkout did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Size of the device or image in bytes.
    pub size: u64,
    /// Chunks of the device.
    pub chunks: u64,
    /// Chunks skipped without reading because they are holes.
    pub hole_chunks: u64,
    /// Chunks read and found to be all zeros.
    pub zero_chunks: u64,
    /// Chunks holding data.
    pub data_chunks: u64,
    /// Bytes read from the device.
    pub bytes_read: u64,
    /// Chunks written (checkout).
    pub chunks_written: u64,
    /// Objects added to the store (commit).
    pub new_objects: u64,
    /// Bytes added to the store (commit).
    pub new_bytes_stored: u64,
}

/// The result of [`Repository::commit_block_device`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockCommitted {
    /// The new commit.
    pub id: CommitId,
    /// What it took.
    pub stats: BlockStats,
}

/// Finds which chunks hold data, walking the data regions of a file in order.
struct DataMap<'a> {
    file: &'a File,
    size: u64,
    region: Option<(u64, u64)>,
    supported: bool,
}

impl<'a> DataMap<'a> {
    fn new(file: &'a File, size: u64) -> DataMap<'a> {
        DataMap {
            file,
            size,
            region: None,
            supported: true,
        }
    }

    /// Whether `[start, end)` may contain data. Calls must have increasing `start`.
    fn has_data(&mut self, start: u64, end: u64) -> io::Result<bool> {
        if !self.supported {
            return Ok(true);
        }
        loop {
            if let Some((ds, de)) = self.region {
                if start < de {
                    return Ok(ds < end);
                }
            }
            let ds = match rustix::fs::seek(self.file, SeekFrom::Data(start)) {
                Ok(o) => o,
                Err(rustix::io::Errno::NXIO) => self.size,
                Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => {
                    self.supported = false;
                    return Ok(true);
                }
                Err(e) => return Err(e.into()),
            };
            if ds >= self.size {
                self.region = Some((self.size, u64::MAX));
                continue;
            }
            let de = match rustix::fs::seek(self.file, SeekFrom::Hole(ds)) {
                Ok(o) => o,
                Err(_) => self.size,
            };
            self.region = Some((ds, de.max(ds + 1)));
        }
    }
}

fn device_size(f: &File, path: &Path) -> Result<u64> {
    rustix::fs::seek(f, SeekFrom::End(0)).map_err(|e| io_err("seek", path)(e.into()))
}

fn read_chunk(f: &File, path: &Path, off: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, off)
        .map_err(io_err("read", path))?;
    Ok(buf)
}

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|x| *x == 0)
}

impl Repository {
    /// Snapshots a block device or image file as a new commit of `volume` (on HEAD's branch,
    /// with HEAD as parent). The device should not be written meanwhile (freeze or snapshot it).
    pub fn commit_block_device(
        &self,
        volume: &VolumeKey,
        device: &Path,
        info: CommitInfo,
        progress: &dyn Progress,
    ) -> Result<BlockCommitted> {
        let _repo = self.lock_shared()?;
        let _vol = self.lock_volume(volume)?;
        let (head, head_existed, parent) = self.commit_parent(volume)?;
        let f = File::open(device).map_err(io_err("open", device))?;
        let size = device_size(&f, device)?;
        let cs = u64::from(BLOCK_CHUNK);
        let n = size.div_ceil(cs);
        let mut stats = BlockStats {
            size,
            chunks: n,
            ..BlockStats::default()
        };
        let batch = WriteBatch::new();
        let mut data = DataMap::new(&f, size);
        let mut map = BlockMap {
            size,
            chunk_size: BLOCK_CHUNK,
            chunks: Vec::new(),
        };
        progress.start(Phase::READ_DEVICE, Some(size));
        for i in 0..n {
            let start = i * cs;
            let end = (start + cs).min(size);
            if !data.has_data(start, end).map_err(io_err("seek", device))? {
                stats.hole_chunks += 1;
                progress.advance(end - start);
                continue;
            }
            let buf = read_chunk(&f, device, start, (end - start) as usize)?;
            stats.bytes_read += buf.len() as u64;
            progress.advance(end - start);
            if is_zero(&buf) {
                stats.zero_chunks += 1;
                continue;
            }
            stats.data_chunks += 1;
            let id = ObjectId::hash(&buf);
            self.store.write(&id, &buf, &batch)?;
            map.chunks.push((i, id));
        }
        progress.finish();
        let enc = map.encode();
        let map_id = ObjectId::hash(&enc);
        self.store.write(&map_id, &enc, &batch)?;
        let commit = Commit::new(
            Content::BlockMap(map_id),
            DirMeta::default(),
            parent.into_iter().collect(),
            info,
        );
        self.store.write(&commit.id.0, &commit.encode(), &batch)?;
        batch.sync()?;
        stats.new_objects = batch.objects();
        stats.new_bytes_stored = batch.bytes();
        let moved = HeadMove {
            head: &head,
            head_existed,
            parent,
            message: &commit.info.message,
        };
        self.advance_head(volume, &moved, commit.id)?;
        Ok(BlockCommitted {
            id: commit.id,
            stats,
        })
    }

    /// Makes a block device or image file equal to a block commit, writing only the chunks
    /// that differ (image files are resized to the commit's size; a device must be at least
    /// that large, and bytes past it are left alone). Moves no ref.
    pub fn checkout_block_device(
        &self,
        volume: &VolumeKey,
        commit: CommitId,
        device: &Path,
        progress: &dyn Progress,
    ) -> Result<BlockStats> {
        let _repo = self.lock_shared()?;
        let _vol = self.lock_volume(volume)?;
        let c = self.read_commit(commit)?;
        let Content::BlockMap(map_id) = c.content else {
            return Err(Error::NotABlockMap(commit));
        };
        let map = self.read_block_map(&map_id)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(device)
            .map_err(io_err("open", device))?;
        let is_file = f.metadata().map_err(io_err("stat", device))?.is_file();
        let have = device_size(&f, device)?;
        if is_file && have != map.size {
            f.set_len(map.size).map_err(io_err("resize", device))?;
        } else if have < map.size {
            return Err(Error::DeviceTooSmall {
                path: device.to_path_buf(),
                have,
                need: map.size,
                commit,
            });
        }
        let cs = u64::from(map.chunk_size);
        let n = map.size.div_ceil(cs);
        let wanted: std::collections::HashMap<u64, ObjectId> = map.chunks.iter().copied().collect();
        let mut stats = BlockStats {
            size: map.size,
            chunks: n,
            ..BlockStats::default()
        };
        let mut data = DataMap::new(&f, map.size);
        progress.start(Phase::WRITE_DEVICE, Some(map.size));
        for i in 0..n {
            let start = i * cs;
            let end = (start + cs).min(map.size);
            let len = (end - start) as usize;
            let current: Option<ObjectId> =
                if data.has_data(start, end).map_err(io_err("seek", device))? {
                    let buf = read_chunk(&f, device, start, len)?;
                    stats.bytes_read += len as u64;
                    (!is_zero(&buf)).then(|| ObjectId::hash(&buf))
                } else {
                    stats.hole_chunks += 1;
                    None
                };
            let want = wanted.get(&i).copied();
            if want.is_some() {
                stats.data_chunks += 1;
            } else {
                stats.zero_chunks += 1;
            }
            if current != want {
                match want {
                    Some(id) => {
                        let buf = self.store.read(&id)?;
                        if buf.len() != len {
                            return Err(Error::Store(crate::store::StoreError::Corrupt {
                                id,
                                why: format!("block chunk is {} bytes, expected {len}", buf.len()),
                            }));
                        }
                        f.write_all_at(&buf, start)
                            .map_err(io_err("write", device))?;
                    }
                    None => {
                        let punched = is_file
                            && rustix::fs::fallocate(
                                &f,
                                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                                start,
                                end - start,
                            )
                            .is_ok();
                        if !punched {
                            f.write_all_at(&vec![0u8; len], start)
                                .map_err(io_err("write", device))?;
                        }
                    }
                }
                stats.chunks_written += 1;
            }
            progress.advance(end - start);
        }
        f.sync_all().map_err(io_err("fsync", device))?;
        progress.finish();
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use crate::GcOptions;

    const MIB: u64 = 1024 * 1024;

    fn pattern(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    fn file_hash(p: &Path) -> String {
        blake3::hash(&std::fs::read(p).unwrap())
            .to_hex()
            .to_string()
    }

    #[test]
    fn block_image_commit_and_checkout() {
        let d = tempfile::tempdir().unwrap();
        let repo = Repository::open(&d.path().join("history")).unwrap();
        let vol = VolumeKey::new_random();
        let img = d.path().join("disk.img");
        // 64 MiB sparse image: data in chunks 0, 5 and 15 (partly), explicit zeros in chunk 9.
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&img)
            .unwrap();
        f.set_len(64 * MIB).unwrap();
        f.write_all_at(&pattern(1, 4096), 0).unwrap();
        f.write_all_at(&pattern(2, 4 * MIB as usize), 5 * 4 * MIB)
            .unwrap();
        f.write_all_at(&vec![0u8; 4 * MIB as usize], 9 * 4 * MIB)
            .unwrap();
        f.write_all_at(&pattern(3, 1000), 15 * 4 * MIB + 100)
            .unwrap();
        f.sync_all().unwrap();
        let h1 = file_hash(&img);
        let c1 = repo
            .commit_block_device(&vol, &img, CommitInfo::now("b1", "t"), &NoProgress)
            .unwrap();
        assert_eq!(c1.stats.chunks, 16);
        assert_eq!(c1.stats.data_chunks, 3);
        assert_eq!(c1.stats.zero_chunks, 1);
        assert_eq!(c1.stats.hole_chunks, 12);
        assert_eq!(c1.stats.bytes_read, 4 * 4 * MIB);
        assert_eq!(c1.stats.new_objects, 5); // 3 chunks, map, commit
                                             // Change one chunk, commit again: one new chunk.
        f.write_all_at(b"changed", 5 * 4 * MIB + 10).unwrap();
        let h2 = file_hash(&img);
        let c2 = repo
            .commit_block_device(&vol, &img, CommitInfo::now("b2", "t"), &NoProgress)
            .unwrap();
        assert_eq!(c2.stats.new_objects, 3);
        assert_eq!(repo.read_commit(c2.id).unwrap().parents, vec![c1.id]);
        assert_eq!(repo.head(&vol).unwrap().commit, Some(c2.id));
        // Back to c1: one chunk written.
        let st = repo
            .checkout_block_device(&vol, c1.id, &img, &NoProgress)
            .unwrap();
        assert_eq!(st.chunks_written, 1);
        assert_eq!(file_hash(&img), h1);
        // Into a fresh empty image: data chunks written, holes stay holes.
        let img2 = d.path().join("fresh.img");
        File::create(&img2).unwrap();
        let st = repo
            .checkout_block_device(&vol, c2.id, &img2, &NoProgress)
            .unwrap();
        assert_eq!(st.chunks_written, 3);
        assert_eq!(file_hash(&img2), h2);
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&img2).unwrap().blocks() * 512 <= 13 * MIB);
        // A zero chunk in the target is punched back out.
        f.write_all_at(&pattern(9, 100), 12 * 4 * MIB).unwrap();
        let st = repo
            .checkout_block_device(&vol, c1.id, &img, &NoProgress)
            .unwrap();
        assert_eq!(st.chunks_written, 1);
        assert_eq!(file_hash(&img), h1);
        // Block commits are part of reachability, fsck and gc.
        assert!(repo.fsck(&NoProgress).unwrap().is_clean());
        assert_eq!(
            repo.gc(&NoProgress, &GcOptions::prune_now())
                .unwrap()
                .objects_removed,
            0
        );
        assert_eq!(repo.reachable_objects(c2.id).count(), 8); // 2 commits, 2 maps, 4 distinct chunks
        assert!(matches!(
            repo.checkout(&vol, c1.id, &d.path().join("x"), &NoProgress),
            Err(Error::NotATree(_))
        ));
    }
}
