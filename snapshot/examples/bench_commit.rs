//! Micro benchmark: a commit after a 1% change of ~200 MB of mixed data, against `cp -a` of
//! the same tree, in the same run.
//!
//! Run: `cargo run --release -p dvol-snapshot --example bench_commit [-- SIZE_MB]`
//! (builds its data in a temporary directory under `$TMPDIR`, default /tmp).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dvol_snapshot::{CommitInfo, NoProgress, Repository, VolumeKey};

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        "volume", "commit", "branch", "docker", "mysql", "page", "row", "index", "lorem", "ipsum",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut x = seed | 1;
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(words[(x >> 60) as usize % words.len()].as_bytes());
        out.push(if x & 0xf == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn write(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// Builds ~`mb` MB: many small text files, medium random files, a few large half-random files.
fn build(src: &Path, mb: usize) -> u64 {
    let unit = mb as u64 * 1024 * 1024 / 200;
    let mut total = 0u64;
    // 40%: 4000 small text files (1-40 KiB) in 40 dirs.
    let n_small = 4000u64;
    let small_budget = unit * 80;
    for i in 0..n_small {
        let len = (small_budget / n_small) as usize / 2
            + (i as usize * 7919) % (small_budget / n_small) as usize;
        write(
            &src.join(format!("small/d{}/f{i}.txt", i % 40)),
            &text(i, len),
        );
        total += len as u64;
    }
    // 30%: 60 medium random files.
    for i in 0..60u64 {
        let len = (unit * 60 / 60) as usize;
        write(&src.join(format!("medium/m{i}.bin")), &noise(1000 + i, len));
        total += len as u64;
    }
    // 30%: 3 large files, half random half text (database-like).
    for i in 0..3u64 {
        let half = (unit * 20) as usize / 2;
        let mut data = noise(5000 + i, half);
        data.extend_from_slice(&text(6000 + i, half));
        write(&src.join(format!("large/db{i}.dat")), &data);
        total += data.len() as u64;
    }
    std::os::unix::fs::symlink("large/db0.dat", src.join("current")).unwrap();
    total
}

/// Changes ~1% of the bytes: rewrites 1% of the small files, overwrites 1 MiB inside a large
/// file in place, adds a file and deletes two.
fn change_one_percent(src: &Path, total: u64) -> u64 {
    let mut changed = 0u64;
    for i in (0..4000u64).step_by(100) {
        let p = src.join(format!("small/d{}/f{i}.txt", i % 40));
        let len = fs::metadata(&p).unwrap().len() as usize;
        write(&p, &text(i + 77_777, len));
        changed += len as u64;
    }
    let f = fs::OpenOptions::new()
        .write(true)
        .open(src.join("large/db1.dat"))
        .unwrap();
    let patch = noise(424242, 1024 * 1024);
    f.write_all_at(&patch, 3 * 1024 * 1024 + 12345).unwrap();
    changed += patch.len() as u64;
    let add = (total / 100).saturating_sub(changed).max(64 * 1024) as usize;
    write(&src.join("medium/new.bin"), &noise(31337, add));
    changed += add as u64;
    fs::remove_file(src.join("small/d1/f1.txt")).unwrap();
    fs::remove_file(src.join("small/d2/f2.txt")).unwrap();
    changed
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

fn sync() {
    Command::new("sync").status().unwrap();
}

fn main() {
    let mb: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let total = build(&src, mb);
    sync();
    std::thread::sleep(Duration::from_millis(200));
    let repo = Repository::open(&tmp.path().join("history")).unwrap();
    let vol = VolumeKey::new_random();
    println!(
        "data: {:.1} MB in {} files",
        total as f64 / 1e6,
        4000 + 60 + 3
    );

    let (c1, t_first) = time(|| {
        repo.commit(&vol, &src, CommitInfo::now("initial", "bench"), &NoProgress)
            .unwrap()
    });
    let stored: u64 = walk_size(&tmp.path().join("history/objects"));
    println!(
        "first commit:        {:8.3} s  ({} files read, {:.1} MB read, {} objects, {:.1} MB stored)",
        secs(t_first),
        c1.stats.files_reread,
        c1.stats.bytes_read as f64 / 1e6,
        c1.stats.new_objects,
        stored as f64 / 1e6
    );
    let (_, t_cp) = time(|| {
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(tmp.path().join("copy1"))
            .status()
            .unwrap()
            .success();
        assert!(ok);
    });
    let (_, t_sync) = time(sync);
    println!(
        "cp -a (full copy):   {:8.3} s  (+ sync {:.3} s)",
        secs(t_cp),
        secs(t_sync)
    );

    let changed = change_one_percent(&src, total);
    std::thread::sleep(Duration::from_millis(200));
    let (c2, t_inc) = time(|| {
        repo.commit(
            &vol,
            &src,
            CommitInfo::now("1% change", "bench"),
            &NoProgress,
        )
        .unwrap()
    });
    println!(
        "1% change commit:    {:8.3} s  ({:.1} MB changed; {} of {} files read, {:.1} MB read, {} objects, {:.2} MB stored)",
        secs(t_inc),
        changed as f64 / 1e6,
        c2.stats.files_reread,
        c2.stats.files_scanned,
        c2.stats.bytes_read as f64 / 1e6,
        c2.stats.new_objects,
        c2.stats.new_bytes_stored as f64 / 1e6
    );
    let (_, t_cp2) = time(|| {
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(tmp.path().join("copy2"))
            .status()
            .unwrap()
            .success();
        assert!(ok);
    });
    let (_, t_sync2) = time(sync);
    println!(
        "cp -a after change:  {:8.3} s  (+ sync {:.3} s)",
        secs(t_cp2),
        secs(t_sync2)
    );
    let (c3, t_none) = time(|| {
        repo.commit(
            &vol,
            &src,
            CommitInfo::now("no change", "bench"),
            &NoProgress,
        )
        .unwrap()
    });
    println!(
        "no-change commit:    {:8.3} s  ({} files read)",
        secs(t_none),
        c3.stats.files_reread
    );
    let (st, t_status) = time(|| repo.status(&vol, &src).unwrap());
    println!(
        "status:              {:8.3} s  ({} changes)",
        secs(t_status),
        st.len()
    );
    let (co, t_co) = time(|| repo.checkout(&vol, c1.id, &src, &NoProgress).unwrap());
    println!(
        "checkout of first:   {:8.3} s  ({} files written, {:.1} MB written, {} removed, {} unchanged)",
        secs(t_co),
        co.files_written,
        co.bytes_written as f64 / 1e6,
        co.removed,
        co.files_unchanged
    );
    let (_, t_clone) = time(|| {
        repo.clone_volume(
            &vol,
            c2.id,
            &VolumeKey::new_random(),
            &tmp.path().join("clone"),
            &NoProgress,
        )
        .unwrap()
    });
    println!("clone (full checkout): {:6.3} s", secs(t_clone));
    println!(
        "ratio: cp -a / 1%-commit = {:.1}x; (cp -a + sync) / 1%-commit = {:.1}x",
        secs(t_cp2) / secs(t_inc),
        (secs(t_cp2) + secs(t_sync2)) / secs(t_inc)
    );
}

fn walk_size(p: &Path) -> u64 {
    let mut t = 0;
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        t += if md.is_dir() {
            walk_size(&e.path())
        } else {
            md.len()
        };
    }
    t
}
