//! Times one checkout of a commit into a directory, for profiling the checkout path on real
//! data (`perf record`, `valgrind --tool=callgrind`); pair it with the `commit_dir` example,
//! which prints the commit it made.
//!
//! Run: `cargo run --release -p dvol-snapshot --example checkout_dir -- STORE VOLUME_UUID COMMIT DIR`

use std::path::Path;
use std::time::Instant;

use dvol_snapshot::{NoProgress, Repository, VolumeKey};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, volume, commit, dir] = args.as_slice() else {
        eprintln!("usage: checkout_dir STORE VOLUME_UUID COMMIT DIR");
        std::process::exit(2);
    };
    let volume = VolumeKey(volume.parse().expect("a volume UUID"));
    let repo = Repository::open(Path::new(store)).expect("open the store");
    let commit = repo.resolve(&volume, commit).expect("resolve the commit");
    std::fs::create_dir_all(dir).expect("create the directory");
    let start = Instant::now();
    let s = repo
        .checkout(&volume, commit, Path::new(dir), &NoProgress)
        .expect("checkout");
    println!(
        "{:.3} s: {} files written, {:.1} MB written, {} removed",
        start.elapsed().as_secs_f64(),
        s.files_written,
        s.bytes_written as f64 / 1e6,
        s.removed
    );
}
