//! Times one commit of a directory into a history store, for profiling the commit path on
//! real data (`perf record`, `valgrind --tool=callgrind`): the first commit of a fresh store,
//! or the next commit of an existing one.
//!
//! Run: `cargo run --release -p dvol-snapshot --example commit_dir -- DIR STORE [VOLUME_UUID]`

use std::path::Path;
use std::time::Instant;

use dvol_snapshot::{CommitInfo, Phase, Progress, Repository, VolumeKey};

/// Prints when each phase starts and ends, in seconds since the commit began.
struct PhaseClock(Instant);

impl Progress for PhaseClock {
    fn start(&self, phase: Phase, _total: Option<u64>) {
        eprintln!(
            "{:7.3} s  {} starts",
            self.0.elapsed().as_secs_f64(),
            phase.name
        );
    }
    fn advance(&self, _n: u64) {}
    fn finish(&self) {
        eprintln!("{:7.3} s  phase ends", self.0.elapsed().as_secs_f64());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(store)) = (args.next(), args.next()) else {
        eprintln!("usage: commit_dir DIR STORE [VOLUME_UUID]");
        std::process::exit(2);
    };
    let volume = match args.next() {
        Some(u) => VolumeKey(u.parse().expect("a volume UUID")),
        None => VolumeKey(uuid::Uuid::nil()),
    };
    let repo = Repository::open(Path::new(&store)).expect("open the store");
    let start = Instant::now();
    let c = repo
        .commit(
            &volume,
            Path::new(&dir),
            CommitInfo::now("profile", "bench"),
            &PhaseClock(start),
        )
        .expect("commit");
    let s = &c.stats;
    println!(
        "{:.3} s: {} files read, {:.1} MB read, {} objects, {:.1} MB stored",
        start.elapsed().as_secs_f64(),
        s.files_reread,
        s.bytes_read as f64 / 1e6,
        s.new_objects,
        s.new_bytes_stored as f64 / 1e6
    );
}
