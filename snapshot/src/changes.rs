//! Commits that read what changed, not whole files: the storage tells which byte ranges of a
//! file may differ from what the index recorded for its path ([`ChangedRanges`]), and the
//! file is chunked again only around them ([`store_changed`]).
//!
//! Why this gives the ids a whole read would: the chunker starts afresh at every chunk, and
//! where it cuts a chunk depends only on the chunk's bytes and the one byte after it (the cut
//! test at offset `e` has consumed byte `e`). So a chunk of the recorded chunk list that no
//! change touches, nor the byte after it, is cut the same way again and keeps its id;
//! chunking restarts at the start of the first chunk a change touches and goes on until it
//! reaches a boundary of the recorded list again, from where the recorded chunks apply once
//! more. The window a new chunk is cut from grows by [`STEP`] until the chunker finds a cut
//! inside it (a cut inside a shorter window is the cut of a full one), so a change of a few
//! bytes reads about one chunk; where the changes run on, it is read at once up to the next
//! recorded chunk that holds (at most a chunk's worth), so a file changed throughout costs
//! about what a whole read does.

use std::fs::File;
use std::ops::Range;
use std::path::Path;

use crate::chunker::{file_content, FileContent, Sink, MAX_CHUNK};
use crate::id::ObjectId;
use crate::object::{ChunkRef, FileObject};
use crate::progress::Progress;
use crate::repo::{io_err, Result};
use crate::sparse::{cut_point, ReadBuffer, SparseReader};

/// How much a new chunk's window grows at a time while no cut is found in it.
const STEP: usize = 256 * 1024;

/// Which byte ranges of the files of a commit's source may have changed, as the storage
/// under it can tell (a thin pool's changed blocks, the extents a reflinked copy no longer
/// shares).
///
/// The contract: for the regular file at `rel`, `Some(ranges)` promises that outside
/// `ranges` (offsets in the file as it is now) its bytes equal, offset for offset, the
/// content the volume's index recorded for `rel` (what the last commit or checkout read or
/// wrote there). `None`: nothing is known, the file is read whole. A source may promise this
/// only for a commit read from a point that does not change while it is read, and only if
/// the index is no older than the point its changes are counted from.
pub trait ChangedRanges: Sync {
    /// The ranges of `rel` (a path below the commit's source, raw bytes) that may differ.
    fn changed_ranges(&self, rel: &[u8]) -> Option<Vec<Range<u64>>>;
}

/// `ranges` sorted, merged and clipped to `[0, size)`; the part of the file beyond the
/// recorded size (`base_size`), if it grew, counts as changed.
fn normalize(mut ranges: Vec<Range<u64>>, size: u64, base_size: u64) -> Vec<Range<u64>> {
    if size > base_size {
        ranges.push(base_size..size);
    }
    ranges.retain(|r| r.start < r.end.min(size));
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        let r = r.start..r.end.min(size);
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// Whether any of `ranges` (sorted, merged) meets `[start, end)`.
fn touches(ranges: &[Range<u64>], start: u64, end: u64) -> bool {
    let first_after = ranges.partition_point(|r| r.end <= start);
    ranges.get(first_after).is_some_and(|r| r.start < end)
}

/// Chunks the regular file `file` (at `path`, `size` bytes now) as
/// [`store_file`](crate::sparse::store_file) does, reading only around `changed` (see
/// [`ChangedRanges`]): the chunks of `base`, the chunk list recorded for this path, that no
/// change touches are taken as they were. Returns the content and the bytes really read.
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_changed(
    file: &File,
    path: &Path,
    size: u64,
    base: &FileObject,
    changed: Vec<Range<u64>>,
    buffer: &mut ReadBuffer,
    sink: &Sink<'_>,
    progress: &dyn Progress,
) -> Result<(FileContent, u64)> {
    let changed = normalize(changed, size, base.size);
    let starts: Vec<u64> = base
        .chunks
        .iter()
        .scan(0u64, |at, c| {
            let start = *at;
            *at += u64::from(c.len);
            Some(start)
        })
        .collect();
    // A recorded chunk holds if its bytes and the byte after it are untouched and still
    // there; the last one (cut where the file ended) only if the file ends there still.
    let holds = |k: usize| {
        let (start, end) = (starts[k], starts[k] + u64::from(base.chunks[k].len));
        if end == base.size {
            size == base.size && !touches(&changed, start, end)
        } else {
            end < size && !touches(&changed, start, end + 1)
        }
    };
    // Where the recorded chunks apply again: the start of the first one from index `k` on
    // that holds, cached with its index. A window is read at once up to there (at most a
    // chunk's worth), so a file changed throughout is read in long runs, each byte scanned
    // for a cut about once, not in steps of `STEP` scanned again at each step.
    let mut resume: Option<(usize, u64)> = None;
    let mut resume_from = |k: usize| -> u64 {
        match resume {
            Some((j, at)) if j >= k => at,
            _ => {
                let j = (k..starts.len())
                    .find(|&j| holds(j))
                    .unwrap_or(starts.len());
                let at = starts.get(j).copied().unwrap_or(size);
                resume = Some((j, at));
                at
            }
        }
    };
    let mut reader = SparseReader::new(file, path);
    let buf = buffer.get();
    let mut chunks = Vec::with_capacity(base.chunks.len());
    // The next chunk starts at `pos`; `buf[start..end]` holds the bytes from `pos` on that
    // were read ahead (none after a recorded chunk was taken).
    let (mut pos, mut k) = (0u64, 0usize);
    let (mut start, mut end) = (0usize, 0usize);
    let mut ended = false;
    while pos < size && !ended {
        while k < starts.len() && starts[k] < pos {
            k += 1;
        }
        if k < starts.len() && starts[k] == pos && holds(k) {
            let chunk = base.chunks[k];
            chunks.push(chunk);
            pos += u64::from(chunk.len);
            progress.advance(u64::from(chunk.len));
            k += 1;
            (start, end) = (0, 0);
            continue;
        }
        if start == end {
            (start, end) = (0, 0);
            reader.seek(pos);
        }
        let ahead = resume_from(k).saturating_sub(pos).min(MAX_CHUNK as u64) as usize;
        let count = loop {
            let have = end - start;
            let at_end = ended || have as u64 >= size - pos;
            if have > 0 {
                let count = cut_point(&buf[start..end]);
                if count < have || have == MAX_CHUNK || at_end {
                    break count;
                }
            }
            if start + MAX_CHUNK > buf.len() {
                buf.copy_within(start..end, 0);
                (start, end) = (0, end - start);
            }
            let want = (have + STEP).max(ahead).min(MAX_CHUNK);
            let got = reader
                .fill(&mut buf[end..start + want])
                .map_err(io_err("read", path))?;
            end += got;
            // The file ended before its size said (truncated while read): cut what is there.
            ended = got == 0;
            if ended && start == end {
                break 0;
            }
        };
        if count == 0 {
            break;
        }
        let data = &buf[start..start + count];
        let id = ObjectId::hash(data);
        sink.put(&id, data)?;
        progress.advance(count as u64);
        chunks.push(ChunkRef {
            id,
            len: count as u32,
        });
        pos += count as u64;
        start += count;
        ended = ended && start == end;
    }
    Ok((file_content(chunks, pos, sink)?, reader.read))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::id::VolumeKey;
    use crate::object::CommitInfo;
    use crate::progress::NoProgress;
    use crate::repo::Repository;

    /// Changed ranges known exactly: each file's bytes compared, page by page, with what it
    /// held at the last commit, and then widened at random (a source may say more).
    struct Oracle(HashMap<Vec<u8>, Vec<Range<u64>>>);

    impl ChangedRanges for Oracle {
        fn changed_ranges(&self, rel: &[u8]) -> Option<Vec<Range<u64>>> {
            self.0.get(rel).cloned()
        }
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        /// Bytes that are random or text-like (compressible), as databases hold both.
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            let text = self.below(2) == 0;
            self.bytes_of(len, text)
        }
        /// Random bytes, or text-like ones (a period of 29: cut only at the largest chunk).
        fn bytes_of(&mut self, len: usize, text: bool) -> Vec<u8> {
            (0..len)
                .map(|i| {
                    if text {
                        b"row 00042 | alpha beta gamma\n"[i % 29]
                    } else {
                        self.next() as u8
                    }
                })
                .collect()
        }
    }

    /// The pages (4 KiB) where `new` differs from `old`, as ranges of `new`.
    fn differing(old: &[u8], new: &[u8]) -> Vec<Range<u64>> {
        const PAGE: usize = 4096;
        let mut out: Vec<Range<u64>> = Vec::new();
        for at in (0..new.len()).step_by(PAGE) {
            let end = (at + PAGE).min(new.len());
            if old.get(at..end) != Some(&new[at..end]) {
                match out.last_mut() {
                    Some(r) if r.end == at as u64 => r.end = end as u64,
                    _ => out.push(at as u64..end as u64),
                }
            }
        }
        out
    }

    /// One change to `path`, picked at random; what the file holds after is read back.
    fn mutate(rng: &mut Rng, dir: &Path, names: &[&str]) {
        let name = names[rng.below(names.len() as u64) as usize];
        let path = dir.join(name);
        let len = fs::metadata(&path).unwrap().len();
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        match rng.below(7) {
            // Overwrites in place: database pages, or a larger stretch.
            0 | 1 => {
                for _ in 0..1 + rng.below(6) {
                    let size = if rng.below(3) == 0 { 1 << 20 } else { 8192 };
                    let at = rng.below(len.saturating_sub(size as u64));
                    file.write_all_at(&rng.bytes(size), at).unwrap();
                }
            }
            // An append.
            2 => {
                let size = rng.below(3 << 20) as usize + 1;
                file.write_all_at(&rng.bytes(size), len).unwrap();
            }
            // A truncation.
            3 => file.set_len(len - rng.below(len / 3)).unwrap(),
            // A hole punched in the middle.
            4 => {
                let at = rng.below(len / 2) & !4095;
                let size = (rng.below(2 << 20) + 4096) & !4095;
                rustix::fs::fallocate(
                    &file,
                    rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                    at,
                    size,
                )
                .unwrap();
            }
            // Replaced by another file of the same size and mtime.
            5 => {
                let mtime = fs::metadata(&path).unwrap().modified().unwrap();
                let other = dir.join(".replacement");
                let mut data = fs::read(&path).unwrap();
                let at = rng.below(data.len() as u64) as usize;
                data[at] ^= 0x5a;
                fs::write(&other, &data).unwrap();
                fs::File::options()
                    .write(true)
                    .open(&other)
                    .unwrap()
                    .set_modified(mtime)
                    .unwrap();
                fs::rename(&other, &path).unwrap();
            }
            // Only the stat: the same bytes written again.
            _ => {
                let mut head = vec![0u8; 4096];
                file.read_exact_at(&mut head, 0).unwrap();
                file.write_all_at(&head, 0).unwrap();
            }
        }
    }

    /// A volume committed by changed ranges, and a second store that reads the same
    /// directory whole each time, to compare with.
    struct Pair {
        repo: Repository,
        whole: Repository,
        volume: VolumeKey,
    }

    impl Pair {
        /// Both stores in `tmp`; the volume's first commit of `dir`, read whole.
        fn new(tmp: &Path, dir: &Path) -> (Pair, crate::snapshot::CommitStats) {
            let pair = Pair {
                repo: Repository::open(&tmp.join("repo")).unwrap(),
                whole: Repository::open(&tmp.join("whole")).unwrap(),
                volume: VolumeKey::new_random(),
            };
            let first = pair
                .repo
                .commit(&pair.volume, dir, CommitInfo::now("m", "t"), &NoProgress)
                .unwrap();
            (pair, first.stats)
        }

        /// Commits `dir` by the ranges `oracle` gives; asserts the tree equals a whole read's.
        fn commit(&self, dir: &Path, oracle: &Oracle, what: &str) -> crate::snapshot::CommitStats {
            let info = || CommitInfo::now("m", "t");
            let ranged = self
                .repo
                .commit_verified(
                    &self.volume,
                    dir,
                    Some(oracle),
                    info(),
                    &NoProgress,
                    &|| Ok(()),
                )
                .unwrap();
            let full = self
                .whole
                .commit(&VolumeKey::new_random(), dir, info(), &NoProgress)
                .unwrap();
            assert_eq!(
                self.repo.read_commit(ranged.id).unwrap().tree(),
                self.whole.read_commit(full.id).unwrap().tree(),
                "{what}: the tree read by changed ranges differs from a whole read"
            );
            ranged.stats
        }
    }

    #[test]
    fn commits_read_by_changed_ranges_equal_whole_reads_on_random_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir(&dir).unwrap();
        let names = ["base/16384", "base/16385", "wal", "big.img"];
        fs::create_dir(dir.join("base")).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for (i, name) in names.iter().enumerate() {
            let len = (5 + 3 * i) << 20;
            let mut data = Vec::with_capacity(len);
            while data.len() < len {
                let piece = rng.bytes(256 * 1024);
                data.extend_from_slice(&piece);
            }
            fs::write(dir.join(name), &data).unwrap();
        }
        let (pair, _) = Pair::new(tmp.path(), &dir);
        let contents = |dir: &Path| -> HashMap<Vec<u8>, Vec<u8>> {
            names
                .iter()
                .map(|n| (n.as_bytes().to_vec(), fs::read(dir.join(n)).unwrap()))
                .collect()
        };
        let mut recorded = contents(&dir);
        let mut by_ranges = 0;
        for round in 0..12 {
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &dir, &names);
            }
            let now = contents(&dir);
            let oracle = Oracle(
                now.iter()
                    .map(|(rel, data)| {
                        let mut ranges = differing(&recorded[rel], data);
                        if rng.below(4) == 0 {
                            let at = rng.below(data.len() as u64);
                            ranges.push(at..at + rng.below(1 << 20));
                        }
                        (rel.clone(), ranges)
                    })
                    .collect(),
            );
            let stats = pair.commit(&dir, &oracle, &format!("round {round}"));
            by_ranges += stats.files_read_by_ranges;
            recorded = now;
        }
        assert!(by_ranges > 0, "no file was read by its changed ranges");
        let report = pair.repo.fsck(&NoProgress).unwrap();
        assert!(report.is_clean(), "{report:?}");
    }

    #[test]
    fn a_few_pages_written_in_a_large_file_cost_a_few_chunks_to_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir(&dir).unwrap();
        let mut rng = Rng(7);
        let path = dir.join("table");
        let data = rng.bytes_of(64 << 20, false);
        fs::write(&path, &data).unwrap();
        let (pair, first) = Pair::new(tmp.path(), &dir);
        assert_eq!(first.bytes_read, 64 << 20);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut changed = Vec::new();
        for at in [5u64 << 20, 31 << 20, 60 << 20] {
            file.write_all_at(&[0xa5; 8192], at).unwrap();
            changed.push(at..at + 8192);
        }
        let oracle = Oracle(HashMap::from([(b"table".to_vec(), changed)]));
        let ranged = pair.commit(&dir, &oracle, "three 8 KiB writes");
        assert_eq!(ranged.files_read_by_ranges, 1);
        let bound = 3 * (MAX_CHUNK + STEP) as u64;
        assert!(
            ranged.bytes_read <= bound,
            "read {} bytes for three 8 KiB writes (at most {bound})",
            ranged.bytes_read
        );
        // The first byte of a chunk decides where the chunk before it ends: a change of that
        // byte alone cuts the one before again.
        let entry = pair.repo.load_index(&pair.volume).unwrap().entries[&b"table".to_vec()];
        let chunks = pair.repo.read_file_object(&entry.id).unwrap().chunks;
        let boundary: u64 = chunks[..3].iter().map(|c| u64::from(c.len)).sum();
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, boundary).unwrap();
        file.write_all_at(&[!byte[0]], boundary).unwrap();
        let oracle = Oracle(HashMap::from([(
            b"table".to_vec(),
            std::iter::once(boundary..boundary + 1).collect(),
        )]));
        pair.commit(&dir, &oracle, "a change of a chunk's first byte");
        // Nothing changed but the stat: nothing is read at all.
        file.write_all_at(&data[..8192], 0).unwrap();
        let oracle = Oracle(HashMap::from([(b"table".to_vec(), Vec::new())]));
        let touched = pair.commit(&dir, &oracle, "a stat-only change");
        assert_eq!(touched.files_reread, 1);
        assert_eq!(touched.bytes_read, 0);
    }

    #[test]
    fn ranges_are_sorted_merged_clipped_and_grown_by_an_append() {
        assert_eq!(
            normalize(vec![10..20, 0..5, 15..30, 100..200], 150, 150),
            vec![0..5, 10..30, 100..150]
        );
        assert_eq!(normalize(vec![], 120, 100), vec![100..120]);
        assert_eq!(
            normalize(vec![5..5, 200..300], 100, 100),
            Vec::<Range<u64>>::new()
        );
    }

    #[test]
    fn touching_is_half_open() {
        let r = vec![10..20, 40..50];
        assert!(!touches(&r, 0, 10));
        assert!(touches(&r, 0, 11));
        assert!(!touches(&r, 20, 40));
        assert!(touches(&r, 19, 20));
        assert!(touches(&r, 45, 46));
        assert!(!touches(&r, 50, 60));
    }
}
