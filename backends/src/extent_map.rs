//! Where a file's bytes lie on its device (FIEMAP), and which byte ranges two maps disagree on:
//! how a commit learns what changed between two copy-on-write copies without reading them.
//!
//! Two maps agree on a byte when both leave it a hole, or both place it at the same physical
//! offset with the same "unwritten" state (allocated but reading as zeros). Blocks that two
//! reflinked copies still share hold the same bytes; a write to either copy moves its block
//! elsewhere. So where the maps of two copies of an image agree, the bytes are equal; and a
//! file inside the image holds the same bytes at a logical range if both copies' filesystems
//! map the range to the same image offsets and those offsets are among the agreeing ones.
//! Anything the kernel cannot place exactly (delayed allocation, inline or encoded data)
//! makes the whole map unusable: the caller reads the file whole.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use fiemap::{FiemapExtent, FiemapExtentFlags};

/// One mapped extent of a file: `len` bytes at logical offset `logical` lie at `physical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the file.
    pub logical: u64,
    /// Offset on the device (for a file in a loop-mounted image: in the image).
    pub physical: u64,
    /// Length in bytes.
    pub len: u64,
    /// Allocated but never written: reads as zeros.
    pub unwritten: bool,
}

/// Why a file's extent map could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ExtentMapError {
    /// The FIEMAP call failed (the filesystem does not support it, the file vanished).
    #[error("cannot map the extents of {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An extent whose place the kernel cannot give exactly.
    #[error("the extents of {path} are not all placed on disk (flags {flags:#x})")]
    Unplaced {
        /// The file.
        path: PathBuf,
        /// The extent's FIEMAP flags.
        flags: u32,
    },
}

/// Flags that make an extent's physical offset unusable for comparison.
fn unplaced() -> FiemapExtentFlags {
    FiemapExtentFlags::UNKNOWN
        | FiemapExtentFlags::DELALLOC
        | FiemapExtentFlags::ENCODED
        | FiemapExtentFlags::DATA_ENCRYPTED
        | FiemapExtentFlags::NOT_ALIGNED
        | FiemapExtentFlags::DATA_INLINE
        | FiemapExtentFlags::DATA_TAIL
}

/// The extents of `file` (at `path`, for messages), in logical order.
pub fn extents_of(file: &File, path: &Path) -> Result<Vec<Extent>, ExtentMapError> {
    let io = |source| ExtentMapError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for extent in fiemap::Fiemap::new(file) {
        let FiemapExtent {
            fe_logical,
            fe_physical,
            fe_length,
            fe_flags,
            ..
        } = extent.map_err(io)?;
        if fe_flags.intersects(unplaced()) {
            return Err(ExtentMapError::Unplaced {
                path: path.to_path_buf(),
                flags: fe_flags.bits(),
            });
        }
        out.push(Extent {
            logical: fe_logical,
            physical: fe_physical,
            len: fe_length,
            unwritten: fe_flags.contains(FiemapExtentFlags::UNWRITTEN),
        });
    }
    out.sort_by_key(|e| e.logical);
    Ok(out)
}

/// The bytes of `file` (at `path`, for messages) that lie in blocks no other file shares:
/// what deleting it would give back on a filesystem that shares blocks between files.
pub fn unshared_bytes(file: &File, path: &Path) -> Result<u64, ExtentMapError> {
    let mut bytes = 0u64;
    for extent in fiemap::Fiemap::new(file) {
        let extent = extent.map_err(|source| ExtentMapError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if !extent.fe_flags.contains(FiemapExtentFlags::SHARED) {
            bytes = bytes.saturating_add(extent.fe_length);
        }
    }
    Ok(bytes)
}

/// Where one map places a byte: nowhere (a hole), or at a physical offset, written or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Hole,
    At { physical: u64, unwritten: bool },
}

/// The piece of `map` around logical offset `at`: how it places `at`, and where that stops
/// holding (the next extent boundary). `next` is the index of the first extent not ending at
/// or before `at`, advanced as `at` grows.
fn place(map: &[Extent], next: &mut usize, at: u64) -> (Place, u64) {
    while *next < map.len() && map[*next].logical + map[*next].len <= at {
        *next += 1;
    }
    match map.get(*next) {
        Some(e) if e.logical <= at => (
            Place::At {
                physical: e.physical + (at - e.logical),
                unwritten: e.unwritten,
            },
            e.logical + e.len,
        ),
        Some(e) => (Place::Hole, e.logical),
        None => (Place::Hole, u64::MAX),
    }
}

/// Appends `r` to the sorted ranges `out`, merging it with the last one if they meet.
fn push(out: &mut Vec<Range<u64>>, r: Range<u64>) {
    if r.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(last) if last.end >= r.start => last.end = last.end.max(r.end),
        _ => out.push(r),
    }
}

/// The ranges of `[0, len)` where the maps `new` and `old` disagree (see the module's text).
pub fn disagreements(new: &[Extent], old: &[Extent], len: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    let mut at = 0;
    while at < len {
        let (a, a_end) = place(new, &mut i, at);
        let (b, b_end) = place(old, &mut j, at);
        let end = a_end.min(b_end).min(len);
        if a != b {
            push(&mut out, at..end);
        }
        at = end;
    }
    out
}

/// The logical ranges of the file mapped by `map` whose written bytes lie in `changed`
/// (sorted physical ranges of the device).
pub fn mapped_into(map: &[Extent], changed: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    for e in map.iter().filter(|e| !e.unwritten) {
        let (start, end) = (e.physical, e.physical + e.len);
        let first = changed.partition_point(|r| r.end <= start);
        for r in changed[first..].iter().take_while(|r| r.start < end) {
            let (from, to) = (r.start.max(start), r.end.min(end));
            out.push(e.logical + (from - start)..e.logical + (to - start));
        }
    }
    out.sort_by_key(|r| r.start);
    let mut merged = Vec::with_capacity(out.len());
    for r in out {
        push(&mut merged, r);
    }
    merged
}

/// The ranges of a file (`len` bytes now) inside a copy of a device image that may differ
/// from the same path inside an older copy: where the two files' maps disagree, and where
/// they agree on image offsets that changed between the copies (`image_changed`).
pub fn file_changes(
    new: &[Extent],
    old: &[Extent],
    len: u64,
    image_changed: &[Range<u64>],
) -> Vec<Range<u64>> {
    let mut out = disagreements(new, old, len);
    out.extend(mapped_into(new, image_changed));
    out.sort_by_key(|r| r.start);
    let mut merged = Vec::with_capacity(out.len());
    for r in out {
        push(&mut merged, r.start..r.end.min(len));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(logical: u64, physical: u64, len: u64) -> Extent {
        Extent {
            logical,
            physical,
            len,
            unwritten: false,
        }
    }

    #[test]
    fn maps_agree_where_both_place_a_byte_alike_or_both_leave_a_hole() {
        let old = [at(0, 1000, 100), at(200, 5000, 100)];
        // The same, but bytes 50..60 moved (a copy-on-write write) and 300..350 appended.
        let new = [
            at(0, 1000, 50),
            at(50, 9000, 10),
            at(60, 1060, 40),
            at(200, 5000, 150),
        ];
        assert_eq!(disagreements(&new, &old, 350), vec![50..60, 300..350]);
        assert_eq!(disagreements(&old, &old, 300), Vec::<Range<u64>>::new());
        let unwritten = [Extent {
            unwritten: true,
            ..at(0, 1000, 100)
        }];
        assert_eq!(disagreements(&unwritten, &old, 100), vec![0..100]);
        // A hole where data was.
        assert_eq!(disagreements(&[at(0, 1000, 40)], &old, 100), vec![40..100]);
    }

    #[test]
    fn written_bytes_in_changed_image_ranges_map_back_to_the_file() {
        let map = [at(0, 4096, 8192), at(8192, 65536, 4096)];
        let changed = [0..100, 6000..7000, 65536 + 4000..65536 + 5000];
        assert_eq!(
            mapped_into(&map, &changed),
            vec![1904..2904, 8192 + 4000..8192 + 4096]
        );
        assert_eq!(
            file_changes(&map, &map, 12288, &changed),
            vec![1904..2904, 12192..12288]
        );
    }
}
