//! Micro benchmark: a commit of one large sparse file (3 GiB apparent, a few MiB of data),
//! the case of a database's preallocated file or a VM image inside a volume.
//!
//! Run: `cargo run --release -p dvol-snapshot --example bench_sparse [-- SIZE_GIB]`
//! (builds its file in a temporary directory under `$TMPDIR`, default /tmp). Prints the time,
//! the bytes read and the commit id, which must not depend on how the file's zeros are stored.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use dvol_snapshot::{CommitInfo, NoProgress, Repository, VolumeKey};

fn main() {
    let gib: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("SIZE_GIB is a whole number"))
        .unwrap_or(3);
    let tmp = tempfile::tempdir().expect("temporary directory");
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let size = gib << 30;
    let file = File::create(src.join("sparse.img")).unwrap();
    file.set_len(size).unwrap();
    // 1 MiB of data every 256 MiB, and at the very end.
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut at = 0;
    while at + data.len() as u64 <= size {
        file.write_all_at(&data, at).unwrap();
        at += 256 << 20;
    }
    file.write_all_at(&data, size - data.len() as u64).unwrap();
    file.sync_all().unwrap();
    drop(file);

    let repo = Repository::open(&tmp.path().join("repo")).unwrap();
    let started = Instant::now();
    let committed = repo
        .commit(
            &VolumeKey(uuid::Uuid::nil()),
            &src,
            CommitInfo::now("sparse", "bench"),
            &NoProgress,
        )
        .unwrap();
    let elapsed = started.elapsed();
    println!(
        "sparse file of {gib} GiB: commit in {:.2} s, {} MiB read, {} objects, {} KiB stored, commit {}",
        elapsed.as_secs_f64(),
        committed.stats.bytes_read >> 20,
        committed.stats.new_objects,
        committed.stats.new_bytes_stored >> 10,
        committed.id
    );
}
