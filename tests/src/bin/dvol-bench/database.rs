//! Section `database`: PostgreSQL 15 (the local image `scripts/build-database-image.sh`
//! builds), pgbench at `--database-scale`, on two daemon roots: an XFS filesystem the section
//! makes (loop images and directory volumes share blocks there, so commits read by changed
//! ranges; the aims apply to a silver volume there, a bronze one is reported beside it) and
//! the host's own root (whole-file reads where it cannot share blocks; reported, not aimed).
//!
//! Each round runs pgbench for `--database-seconds`, stops the server cleanly, then commits
//! (REST) and runs `restic backup` of the same files, then checks the previous commit out
//! (the commit the round started from: the checkout undoes the round's pgbench). What it had
//! to change is measured independently: the volume's regular files are hashed in 4 KiB blocks
//! before and after, and every block that differs (or exists on one side only) counts. So
//! every round starts from the same commit.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use dvol_tests::postgres::Postgres;
use dvol_tests::{database_image_ready, Daemon, TEST_IMAGE};
use serde_json::{json, Value};

use crate::{api_timed, median, round3, run_docker, Args, Report};

/// Block size of the checkout's difference count: the page size of the filesystems involved.
const BLOCK: usize = 4096;
/// Size of the XFS filesystem the section makes (a sparse image under $TMPDIR).
const XFS_POOL_BYTES: u64 = 24 << 30;
/// Size of the silver volume the database lives in.
const VOLUME_SIZE: &str = "8G";
/// Fixed part of the commit-time aim: 0.5 s plus the new data at the disk's write speed.
const COMMIT_FIXED_S: f64 = 0.5;

/// An XFS filesystem (reflink on) on a sparse image, mounted for a daemon root; unmounted
/// when dropped.
struct XfsRoot {
    dir: tempfile::TempDir,
}

impl XfsRoot {
    fn mount() -> Result<XfsRoot> {
        let dir = tempfile::Builder::new()
            .prefix("dvol-bench-xfs-")
            .tempdir()?;
        let image = dir.path().join("root.img");
        std::fs::File::create(&image)?.set_len(XFS_POOL_BYTES)?;
        crate::history::run_ok(
            Command::new("mkfs.xfs")
                .args(["-q", "-m", "reflink=1"])
                .arg(&image),
        )?;
        std::fs::create_dir(dir.path().join("root"))?;
        crate::history::run_ok(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(dir.path().join("root")),
        )?;
        Ok(XfsRoot { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

impl Drop for XfsRoot {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.path()).output();
    }
}

/// One round's figures.
struct Round {
    commit_s: f64,
    bytes_read: u64,
    bytes_stored: u64,
    files_by_ranges: u64,
    restic_s: f64,
    checkout_s: f64,
    checkout_written: u64,
    checkout_differ: u64,
}

impl Round {
    fn json(&self) -> Value {
        json!({
            "commit_s": round3(self.commit_s),
            "bytes_read": self.bytes_read,
            "bytes_stored": self.bytes_stored,
            "files_read_by_ranges": self.files_by_ranges,
            "restic_s": round3(self.restic_s),
            "checkout_s": round3(self.checkout_s),
            "checkout_bytes_written": self.checkout_written,
            "checkout_bytes_differ": self.checkout_differ,
        })
    }
}

pub fn run(args: &Args, report: &mut Report, run_id: &str) -> Result<()> {
    ensure!(
        database_image_ready(),
        "the database image could not be built: install postgresql-15 and postgresql-client-15 \
         (bash scripts/install-deps.sh)"
    );
    report.line(format!(
        "database: PostgreSQL 15, pgbench scale {} (about {:.1} GiB), {} rounds of {} s of \
         pgbench (2 clients), each followed by a commit, restic backup of the same files and a \
         checkout of the previous commit",
        args.database_scale,
        args.database_scale as f64 * 15.0 / 1024.0,
        args.database_rounds,
        args.database_seconds
    ));
    let xfs = XfsRoot::mount()?;
    let mut all = serde_json::Map::new();
    for (label, root, profile, aimed) in [
        ("xfs", Some(xfs.path()), "silver", true),
        ("xfs-bronze", Some(xfs.path()), "bronze", false),
        ("host", None, "silver", false),
    ] {
        let daemon = match &root {
            Some(root) => Daemon::start_for_docker_under(root, Vec::new()),
            None => Daemon::start_for_docker(),
        };
        let rounds = one_root(args, report, &daemon, label, profile, run_id)
            .with_context(|| format!("database section on the {label} root"))?;
        summarise(report, label, aimed, &rounds, &daemon)?;
        all.insert(
            label.into(),
            Value::Array(rounds.iter().map(Round::json).collect()),
        );
    }
    report.json.insert("database".into(), Value::Object(all));
    Ok(())
}

/// The rounds on one daemon root, in a volume of `profile`.
fn one_root(
    args: &Args,
    report: &mut Report,
    daemon: &Daemon,
    label: &str,
    profile: &str,
    run_id: &str,
) -> Result<Vec<Round>> {
    let name = format!("bench-db-{label}-{run_id}");
    run_docker(&[
        "volume",
        "create",
        "-d",
        &daemon.driver,
        "-o",
        &format!("profile={profile}"),
        "-o",
        &format!("size={VOLUME_SIZE}"),
        &name,
    ])?;
    let pg = Postgres::start(daemon, &name);
    let started = Instant::now();
    pg.init_pgbench(daemon, args.database_scale);
    let init_s = started.elapsed().as_secs_f64();
    pg.stop(daemon);
    // Keeps the volume mounted while the server is stopped, for restic and the block hashes.
    // It ends on SIGTERM (a shell's PID 1 would ignore it, and each checkout, which stops the
    // volume's containers, would wait out the engine's stop timeout).
    let mount = format!("{name}:/data");
    let holder = run_docker(&[
        "run",
        "-d",
        "--network",
        "none",
        "--volume-driver",
        &daemon.driver,
        "-v",
        &mount,
        TEST_IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; sleep 1000000 & wait",
    ])?;
    let data = daemon.mountpoint(&name);
    let commits = format!("/v1/volumes/{name}/commits");
    let (first_t, first) = api_timed(daemon, "POST", &commits, &json!({"message": "loaded"}), 201)?;
    // Every round starts from this commit and its checkout goes back to it: it undoes exactly
    // the round's pgbench.
    let previous = commit_id(&first)?;
    let work = tempfile::Builder::new()
        .prefix("dvol-bench-restic-")
        .tempdir()?;
    let restic = |sub: &[&str]| -> Command {
        let mut cmd = Command::new("restic");
        cmd.env("RESTIC_REPOSITORY", work.path().join("repo"))
            .env("RESTIC_PASSWORD", "dvol-bench")
            .env("RESTIC_CACHE_DIR", work.path().join("cache"))
            .args(sub);
        cmd
    };
    crate::history::run_ok(&mut restic(&["init", "--repository-version", "2"]))?;
    let started = Instant::now();
    crate::history::run_ok(restic(&["backup", "--quiet"]).arg(&data))?;
    let restic_first = started.elapsed().as_secs_f64();
    report.line(format!(
        "database {label}: pgbench -i {:.0} s; first commit {:.2} s (read {:.0} MB, stored {:.0} MB); \
         restic's first backup {restic_first:.2} s",
        init_s,
        first_t.as_secs_f64(),
        mb(u64_of(&first, "bytes_read")),
        mb(u64_of(&first, "new_bytes_stored")),
    ));

    let mut rounds = Vec::new();
    for round in 0..args.database_rounds {
        pg.restart(daemon);
        let bench = pg.pgbench(args.database_seconds);
        let out = bench.wait_with_output()?;
        ensure!(
            out.status.success(),
            "pgbench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tps = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("tps"))
            .unwrap_or_default()
            .to_string();
        pg.stop(daemon);
        let (commit_t, c) = api_timed(
            daemon,
            "POST",
            &commits,
            &json!({"message": format!("round {round}")}),
            201,
        )?;
        let started = Instant::now();
        crate::history::run_ok(restic(&["backup", "--quiet"]).arg(&data))?;
        let restic_s = started.elapsed().as_secs_f64();
        let before = block_digests(&data)?;
        let (checkout_t, co) = api_timed(
            daemon,
            "POST",
            &format!("/v1/volumes/{name}/checkout"),
            &json!({"ref": previous, "force": true}),
            200,
        )?;
        let data = daemon.mountpoint(&name);
        let after = block_digests(&data)?;
        let r = Round {
            commit_s: commit_t.as_secs_f64(),
            bytes_read: u64_of(&c, "bytes_read"),
            bytes_stored: u64_of(&c, "new_bytes_stored"),
            files_by_ranges: u64_of(&c, "files_read_by_ranges"),
            restic_s,
            checkout_s: checkout_t.as_secs_f64(),
            checkout_written: u64_of(&co, "bytes_written"),
            checkout_differ: differing_bytes(&before, &after),
        };
        report.line(format!(
            "  database {label} round {round} ({tps}): commit {:.2} s read {:.1} MB ({} files by \
             ranges{}) stored {:.1} MB = {:.2}x | restic {:.2} s | checkout of the previous {:.2} s \
             wrote {:.1} MB ({} files patched: only their differing chunks) for {:.1} MB that differ = {:.2}x",
            r.commit_s,
            mb(r.bytes_read),
            r.files_by_ranges,
            c["full_read_reason"]
                .as_str()
                .map(|why| format!("; read whole: {why}"))
                .unwrap_or_default(),
            mb(r.bytes_stored),
            ratio(r.bytes_read, r.bytes_stored),
            r.restic_s,
            r.checkout_s,
            mb(r.checkout_written),
            co["files_patched"],
            mb(r.checkout_differ),
            ratio(r.checkout_written, r.checkout_differ),
        ));
        rounds.push(r);
    }
    run_docker(&["rm", "-f", &holder])?;
    drop(pg);
    Ok(rounds)
}

/// Medians of the rounds on one root, with the aims where `aimed`.
fn summarise(
    report: &mut Report,
    label: &str,
    aimed: bool,
    rounds: &[Round],
    daemon: &Daemon,
) -> Result<()> {
    let med = |f: &dyn Fn(&Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    let read_per_stored = med(&|r| ratio(r.bytes_read, r.bytes_stored));
    let commit_s = med(&|r| r.commit_s);
    let stored = med(&|r| r.bytes_stored as f64);
    let restic_s = med(&|r| r.restic_s);
    let written_per_differ = med(&|r| ratio(r.checkout_written, r.checkout_differ));
    let disk = durable_write_mbs(&daemon.root)?;
    let commit_bound = COMMIT_FIXED_S + stored / 1e6 / disk;
    if aimed {
        let a = report.aim("database read/stored", read_per_stored <= 2.0);
        let b = report.aim("database commit vs disk", commit_s <= commit_bound);
        let c = report.aim("database commit vs restic", commit_s <= 0.1 * restic_s);
        let d = report.aim(
            "database checkout written/differ",
            written_per_differ <= 2.0,
        );
        report.line(format!(
            "database {label} medians: bytes read / stored {read_per_stored:.2}x (aim <= 2) {a}; \
             commit {commit_s:.2} s, aim <= {COMMIT_FIXED_S} s + {:.1} MB at {disk:.0} MB/s = \
             {commit_bound:.2} s {b}; restic {restic_s:.2} s: {:.3}x (aim <= 0.1x) {c}; checkout \
             written / differ {written_per_differ:.2}x (aim <= 2) {d}",
            stored / 1e6,
            commit_s / restic_s
        ));
    } else {
        report.line(format!(
            "database {label} medians (reported, not aimed): bytes read / stored \
             {read_per_stored:.2}x; commit {commit_s:.2} s against restic {restic_s:.2} s: \
             {:.3}x; checkout written / differ {written_per_differ:.2}x; disk {disk:.0} MB/s",
            commit_s / restic_s
        ));
    }
    Ok(())
}

/// The commit's id in a commit answer.
fn commit_id(answer: &Value) -> Result<String> {
    answer["commit"]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no commit id in {answer}"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_default()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / (b as f64).max(1.0)
}

/// The blake3 digest of every 4 KiB block of every regular file below `dir`, by path.
fn block_digests(dir: &Path) -> Result<HashMap<PathBuf, Vec<[u8; 32]>>> {
    let mut out = HashMap::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut buf = vec![0u8; 1 << 20];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("list {}", d.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let mut file = std::fs::File::open(&path)?;
                let mut blocks = Vec::new();
                loop {
                    let n = read_full(&mut file, &mut buf)?;
                    blocks.extend(buf[..n].chunks(BLOCK).map(|b| *blake3::hash(b).as_bytes()));
                    if n < buf.len() {
                        break;
                    }
                }
                out.insert(path.strip_prefix(dir)?.to_path_buf(), blocks);
            }
        }
    }
    Ok(out)
}

fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Bytes in blocks that differ between two sets of block digests, or exist on one side only.
fn differing_bytes(
    a: &HashMap<PathBuf, Vec<[u8; 32]>>,
    b: &HashMap<PathBuf, Vec<[u8; 32]>>,
) -> u64 {
    let mut blocks = 0usize;
    for (path, x) in a {
        match b.get(path) {
            Some(y) => {
                blocks += x.iter().zip(y).filter(|(p, q)| p != q).count();
                blocks += x.len().abs_diff(y.len());
            }
            None => blocks += x.len(),
        }
    }
    blocks += b
        .iter()
        .filter(|(path, _)| !a.contains_key(*path))
        .map(|(_, y)| y.len())
        .sum::<usize>();
    (blocks * BLOCK) as u64
}

/// The durable write speed (MB/s) of the filesystem holding `dir`: 256 MiB written and
/// fdatasynced, the median of three.
fn durable_write_mbs(dir: &Path) -> Result<f64> {
    use std::io::Write;
    let path = dir.join("bench-write-speed");
    let data = vec![0x5au8; 1 << 20];
    let mut speeds = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut f = std::fs::File::create(&path)?;
        for _ in 0..256 {
            f.write_all(&data)?;
        }
        f.sync_data()?;
        speeds.push(256.0 * 1.048_576 / started.elapsed().as_secs_f64());
        std::fs::remove_file(&path)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(median(&speeds))
}
