//! What the crate's tests write into volumes and how they hand a backend's changed ranges to
//! the history library.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// `len` bytes that do not compress, the same for the same `seed`.
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut bytes);
    bytes
}

/// Writes `data` at `at` in the file at `path`, durably.
pub(crate) fn write_at(path: &Path, data: &[u8], at: u64) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(data, at).unwrap();
    file.sync_all().unwrap();
}

/// The history library's view of a backend's changed ranges.
pub(crate) struct Ranges<'a>(pub(crate) &'a dyn crate::FileChanges);

impl dvol_snapshot::ChangedRanges for Ranges<'_> {
    fn changed_ranges(&self, rel: &[u8]) -> Option<Vec<std::ops::Range<u64>>> {
        self.0
            .changed_ranges(Path::new(std::ffi::OsStr::from_bytes(rel)))
    }
}
