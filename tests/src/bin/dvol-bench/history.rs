//! Section `history`: a bronze volume of `--history-gib` GiB (default 2) of mixed data; `dvol
//! commit` (REST) against `cp -a` + `sync -f` (what ClusterHQ dvol did per commit) and `restic
//! backup` after changing 0.1%, 1%, 10% and 100% of the bytes; the history store's size after
//! ten 1%-change commits; checkout time against the size of the difference, and a checkout that
//! rewrites every file against `cp -a`; the first commit and that checkout against the
//! physical limits measured at the end (see `limits`).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use dvol_tests::Daemon;
use serde_json::{json, Value};

use crate::{api_get, api_timed, median, round1, round3, rounded, Args, Report};

/// A 1%-change commit is at least this many times faster than `cp -a` + `sync -f`...
const AIM_COMMIT_VS_CP: f64 = 60.0;
/// ... and than `restic backup`.
const AIM_COMMIT_VS_RESTIC: f64 = 10.0;
/// The history store after a full and ten 1%-change commits, over the volume's size.
const AIM_STORE_RATIO: f64 = 1.3;
/// Checkout time of the 1% difference over that of the full difference (this benchmark's own
/// threshold for "grows with the difference, not the volume": the difference is ~100x smaller;
/// the walk over every path is a fixed cost).
const AIM_CHECKOUT_SCALING: f64 = 0.10;
/// The first (full) commit takes at most this much of `cp -a` + `sync -f`'s time...
const AIM_FIRST_COMMIT_VS_CP: f64 = 0.7;
/// ... and of `restic backup`'s.
const AIM_FIRST_COMMIT_VS_RESTIC: f64 = 0.4;
/// A checkout that rewrites every file takes at most this much of `cp -a` + `sync -f`'s time.
const AIM_FULL_CHECKOUT_VS_CP: f64 = 1.0;
/// The physical limits are measured on this much of the volume's data.
const LIMITS_SAMPLE_BYTES: u64 = 512 * MIB;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
pub(crate) const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Small files (1-16 KiB) per GiB of the data set: 20,000 at the default 2 GiB.
const SMALL_FILES_PER_GIB: f64 = 10_000.0;
const SMALL_MIN: u64 = KIB;
const SMALL_MAX: u64 = 16 * KIB;
/// Shares of the bytes in text-like and page-like (compressible binary) files; random
/// binaries take what is left after them and the small files.
const TEXT_SHARE: f64 = 0.30;
const PAGES_SHARE: f64 = 0.30;
/// Generated content is written in pieces of at most this size.
const PIECE: u64 = 4 * MIB;
/// A changed file up to this size (dvol's smallest chunk) is rewritten whole.
const WHOLE_REWRITE_MAX: u64 = 256 * KIB;
/// An in-place rewrite of a larger file covers this many bytes (less when the budget is less).
const REGION_MIN: u64 = 64 * KIB;
const REGION_MAX: u64 = 8 * MIB;
/// Files added by a change are at most this large.
const ADDED_MAX: u64 = 32 * MIB;

/// The changes timed: (fraction of the volume's bytes, label, commits). The ten 1% commits are
/// also the ones the store size is measured after; a 100% change is timed once (it writes and
/// stores the whole volume again).
const HISTORY_FRACTIONS: [(f64, &str, usize); 4] = [
    (0.001, "0.1%", 3),
    (0.01, "1%", 10),
    (0.10, "10%", 3),
    (1.0, "100%", 1),
];
/// The index of the 1% entry in [`HISTORY_FRACTIONS`].
const ONE_PERCENT: usize = 1;
/// dvol commits timed with nothing changed.
const NO_CHANGE_COMMITS: usize = 3;
/// Round trips (to the older commit, back to the branch) per checkout difference.
const CHECKOUT_ROUNDS: usize = 2;
const RESTIC_PASSWORD: &str = "dvol-bench";
/// Free space the section wants on the daemon's filesystem, in multiples of the volume: the
/// volume, one `cp -a` copy at a time, dvol's store and restic's repository.
const HISTORY_DISK_FACTOR: f64 = 5.0;

/// The seed of the data set's generator.
const DATA_SEED: u64 = 0x5EED_D01B_E4C4;

/// SplitMix64: a fast, seeded generator for the benchmark's data (nothing secret).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = words.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// What a generated file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    /// Log-like lines of words and numbers: compresses a few times.
    Text,
    /// 4 KiB pages of records repeated from a small palette, zero-padded, like a database
    /// file: compresses well.
    Pages,
    /// SplitMix64 output: does not compress.
    Random,
}

const WORDS: [&str; 32] = [
    "INFO",
    "WARN",
    "DEBUG",
    "request",
    "response",
    "user",
    "session",
    "volume",
    "commit",
    "checkout",
    "branch",
    "mount",
    "container",
    "started",
    "stopped",
    "GET",
    "POST",
    "/api/v1",
    "items",
    "orders",
    "status=200",
    "status=404",
    "took",
    "ms",
    "bytes",
    "id",
    "region",
    "eu-west",
    "cache",
    "miss",
    "hit",
    "retry",
];

impl DataKind {
    fn ext(self) -> &'static str {
        match self {
            DataKind::Text => "log",
            DataKind::Pages => "db",
            DataKind::Random => "bin",
        }
    }

    /// `len` bytes of this kind of content.
    fn content(self, rng: &mut Rng, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 4096);
        match self {
            DataKind::Text => {
                while out.len() < len {
                    let r = rng.next();
                    match r & 15 {
                        0 => out.push(b'\n'),
                        1..=3 => {
                            let n = (r >> 20) % 1_000_000;
                            out.extend_from_slice(n.to_string().as_bytes());
                            out.push(b' ');
                        }
                        _ => {
                            out.extend_from_slice(
                                WORDS[(r >> 8) as usize % WORDS.len()].as_bytes(),
                            );
                            out.push(b' ');
                        }
                    }
                }
            }
            DataKind::Pages => {
                const RECORD: usize = 48;
                const RECORDS: u64 = 64;
                let mut palette = vec![0u8; RECORD * RECORDS as usize];
                rng.fill(&mut palette);
                while out.len() < len {
                    let start = out.len();
                    out.extend_from_slice(&rng.next().to_le_bytes());
                    let used = rng.between(1024, 4000) as usize;
                    while out.len() - start < used {
                        let k = rng.below(RECORDS) as usize * RECORD;
                        out.extend_from_slice(&palette[k..k + RECORD]);
                    }
                    out.resize(start + 4096, 0);
                }
            }
            DataKind::Random => {
                out.resize(len, 0);
                rng.fill(&mut out);
            }
        }
        out.truncate(len);
        out
    }
}

/// One file of the data set.
#[derive(Debug, Clone)]
struct DataFile {
    rel: String,
    kind: DataKind,
    size: u64,
    /// One of the many small files (1-16 KiB).
    small: bool,
}

/// The files in the volume's data directory, as the benchmark wrote them.
pub(crate) struct Dataset {
    dir: PathBuf,
    files: Vec<DataFile>,
    rng: Rng,
    /// Files added by changes so far (to name the next).
    added: usize,
}

/// One change of the data set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mutation {
    /// Files rewritten whole.
    whole: u64,
    /// Regions rewritten in place in larger files.
    regions: u64,
    rewritten_bytes: u64,
    added: u64,
    added_bytes: u64,
    deleted: u64,
    deleted_bytes: u64,
}

impl Mutation {
    pub(crate) fn changed_bytes(&self) -> u64 {
        self.rewritten_bytes + self.added_bytes + self.deleted_bytes
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "files_rewritten_whole": self.whole,
            "regions_rewritten": self.regions,
            "rewritten_bytes": self.rewritten_bytes,
            "files_added": self.added,
            "added_bytes": self.added_bytes,
            "files_deleted": self.deleted,
            "deleted_bytes": self.deleted_bytes,
        })
    }
}

pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

impl Dataset {
    /// Writes about `gib` GiB into `dir`: the small files, then text, pages and random files.
    pub(crate) fn build(dir: &Path, gib: f64, seed: u64) -> Result<Dataset> {
        let total = (gib * GIB) as u64;
        let mut ds = Dataset {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            rng: Rng(seed),
            added: 0,
        };
        let smalls = ((SMALL_FILES_PER_GIB * gib).round() as usize).max(10);
        for i in 0..smalls {
            let kind = match i % 4 {
                0 | 1 => DataKind::Text,
                2 => DataKind::Pages,
                _ => DataKind::Random,
            };
            let size = ds.rng.between(SMALL_MIN, SMALL_MAX);
            let rel = format!("small/{:03}/f{i:05}.{}", i / 200, kind.ext());
            ds.create(rel, kind, size, true)?;
        }
        let text = (TEXT_SHARE * total as f64) as u64;
        let pages = (PAGES_SHARE * total as f64) as u64;
        ds.fill("text", DataKind::Text, text, 64 * KIB, 4 * MIB)?;
        ds.fill("pages", DataKind::Pages, pages, MIB, 32 * MIB)?;
        let random = total.saturating_sub(ds.total());
        ds.fill("random", DataKind::Random, random, 4 * MIB, 128 * MIB)?;
        Ok(ds)
    }

    /// Files of `kind` of `lo..=hi` bytes under `prefix/` until `budget` bytes.
    fn fill(&mut self, prefix: &str, kind: DataKind, budget: u64, lo: u64, hi: u64) -> Result<()> {
        let mut left = budget;
        let mut i = 0;
        while left > 0 {
            let mut size = self.rng.between(lo, hi).min(left);
            if left - size < lo {
                size = left;
            }
            let rel = format!("{prefix}/{:02}/{prefix}-{i:04}.{}", i / 16, kind.ext());
            self.create(rel, kind, size, false)?;
            left -= size;
            i += 1;
        }
        Ok(())
    }

    pub(crate) fn total(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// How many files the data set holds.
    pub(crate) fn files(&self) -> usize {
        self.files.len()
    }

    fn path(&self, file: &DataFile) -> PathBuf {
        self.dir.join(&file.rel)
    }

    /// Writes `size` bytes of `kind` to `path` from the start (creating or truncating it).
    fn write_whole(&mut self, path: &Path, kind: DataKind, size: u64) -> Result<()> {
        let mut f =
            std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
        let mut left = size;
        while left > 0 {
            let n = left.min(PIECE);
            f.write_all(&kind.content(&mut self.rng, n as usize))
                .with_context(|| format!("write {}", path.display()))?;
            left -= n;
        }
        Ok(())
    }

    fn create(&mut self, rel: String, kind: DataKind, size: u64, small: bool) -> Result<()> {
        let path = self.dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("mkdir {}", parent.display()))?;
        }
        self.write_whole(&path, kind, size)?;
        self.files.push(DataFile {
            rel,
            kind,
            size,
            small,
        });
        Ok(())
    }

    /// Changes `fraction` of the bytes (see the section's report for how).
    pub(crate) fn mutate(&mut self, fraction: f64) -> Result<Mutation> {
        let mut m = Mutation::default();
        if fraction >= 1.0 {
            for i in 0..self.files.len() {
                let file = self.files[i].clone();
                self.write_whole(&self.path(&file), file.kind, file.size)?;
                m.whole += 1;
                m.rewritten_bytes += file.size;
            }
            self.delete_some(&mut m, 3, 0)?;
            self.add_some(&mut m, 3, 0)?;
            return Ok(m);
        }
        let target = ((fraction * self.total() as f64) as u64).max(1);
        self.delete_some(&mut m, 2, target / 20)?;
        self.add_some(&mut m, 2, target / 20)?;
        let budget = target.saturating_sub(m.added_bytes + m.deleted_bytes);
        self.rewrite(&mut m, budget)?;
        Ok(m)
    }

    /// Deletes random files (at least `count`) until `budget` bytes, each no larger than a
    /// small file or what is left of the budget.
    fn delete_some(&mut self, m: &mut Mutation, count: u64, budget: u64) -> Result<()> {
        let start = m.deleted;
        let mut attempts = 0;
        while (m.deleted - start < count || m.deleted_bytes < budget)
            && attempts < 1_000_000
            && self.files.len() > 1
        {
            attempts += 1;
            let i = self.rng.below(self.files.len() as u64) as usize;
            let cap = SMALL_MAX.max(budget.saturating_sub(m.deleted_bytes));
            if self.files[i].size > cap {
                continue;
            }
            let file = self.files.swap_remove(i);
            let path = self.path(&file);
            std::fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
            m.deleted += 1;
            m.deleted_bytes += file.size;
        }
        Ok(())
    }

    /// Adds files (at least `count` small ones) until `budget` bytes: small files, then text,
    /// pages or random files of up to [`ADDED_MAX`].
    fn add_some(&mut self, m: &mut Mutation, count: u64, budget: u64) -> Result<()> {
        let start = m.added;
        while m.added - start < count || m.added_bytes < budget {
            let left = budget.saturating_sub(m.added_bytes);
            let n = self.added;
            self.added += 1;
            if m.added - start < count || left <= SMALL_MAX {
                let size = self.rng.between(SMALL_MIN, SMALL_MAX);
                let rel = format!("added/{:03}/a{n:06}.log", n / 200);
                self.create(rel, DataKind::Text, size, true)?;
                m.added_bytes += size;
            } else {
                let kind =
                    [DataKind::Text, DataKind::Pages, DataKind::Random][self.rng.below(3) as usize];
                let size = self.rng.between(REGION_MIN, ADDED_MAX).min(left);
                let rel = format!("added/{:03}/a{n:06}.{}", n / 200, kind.ext());
                self.create(rel, kind, size, false)?;
                m.added_bytes += size;
            }
            m.added += 1;
        }
        Ok(())
    }

    /// Rewrites `budget` bytes: half in files picked at random by count (mostly small files;
    /// a 64 KiB region of a larger one), half in files picked by size (mostly large ones).
    fn rewrite(&mut self, m: &mut Mutation, budget: u64) -> Result<()> {
        let mut done = std::collections::HashSet::new();
        let mut spent = 0;
        let half = budget / 2;
        let mut attempts = 0;
        while spent < half && attempts < 1_000_000 {
            attempts += 1;
            let i = self.rng.below(self.files.len() as u64) as usize;
            spent += self.rewrite_one(i, half - spent, true, m, &mut done)?;
        }
        let mut ends = Vec::with_capacity(self.files.len());
        let mut sum = 0;
        for f in &self.files {
            sum += f.size;
            ends.push(sum);
        }
        while spent < budget && attempts < 2_000_000 {
            attempts += 1;
            let x = self.rng.below(sum);
            let i = ends.partition_point(|&end| end <= x);
            spent += self.rewrite_one(i, budget - spent, false, m, &mut done)?;
        }
        Ok(())
    }

    /// Rewrites file `i` whole (one of at most [`WHOLE_REWRITE_MAX`] or, unless `by_count`, one
    /// within `left` bytes) or a region of it ([`REGION_MIN`] when `by_count`, else up to
    /// [`REGION_MAX`]); returns the bytes written (0 for a file already rewritten whole).
    fn rewrite_one(
        &mut self,
        i: usize,
        left: u64,
        by_count: bool,
        m: &mut Mutation,
        done: &mut std::collections::HashSet<usize>,
    ) -> Result<u64> {
        if done.contains(&i) {
            return Ok(0);
        }
        let file = self.files[i].clone();
        let path = self.path(&file);
        if file.size <= WHOLE_REWRITE_MAX || (!by_count && file.size <= left) {
            self.write_whole(&path, file.kind, file.size)?;
            done.insert(i);
            m.whole += 1;
            m.rewritten_bytes += file.size;
            return Ok(file.size);
        }
        let most = if by_count {
            REGION_MIN
        } else {
            REGION_MAX.min(file.size)
        };
        let len = self.rng.between(REGION_MIN, most).min(left).max(1);
        let offset = self.rng.below(file.size - len + 1) & !4095;
        let data = file.kind.content(&mut self.rng, len as usize);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        std::os::unix::fs::FileExt::write_all_at(&f, &data, offset)
            .with_context(|| format!("write {}", path.display()))?;
        m.regions += 1;
        m.rewritten_bytes += len;
        Ok(len)
    }

    /// (files, bytes) of a category: the small files, or the other files of `kind`.
    fn category(&self, small: bool, kind: Option<DataKind>) -> (usize, u64) {
        let chosen = self
            .files
            .iter()
            .filter(|f| f.small == small && kind.is_none_or(|k| f.kind == k));
        chosen.fold((0, 0), |(n, b), f| (n + 1, b + f.size))
    }
}

/// Runs a command; fails unless it exits 0. Returns its output.
pub(crate) fn run_ok(cmd: &mut Command) -> Result<std::process::Output> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out)
}

/// The host's 1-minute load average (/proc/loadavg).
fn load_average() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").context("read /proc/loadavg")?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("unreadable /proc/loadavg: {text:?}"))
}

/// Writes all dirty pages back (`sync`), so that no timed step pays for an earlier one's.
pub(crate) fn sync_host() -> Result<()> {
    run_ok(&mut Command::new("sync")).map(drop)
}

/// `du -sb PATH` (apparent bytes) or, with `apparent` false, `du -s -B1 PATH` (allocated).
pub(crate) fn du_bytes(path: &Path, apparent: bool) -> Result<u64> {
    let flag = if apparent { "-sb" } else { "-sB1" };
    let out = run_ok(Command::new("du").arg(flag).arg(path))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("du {flag} {}: unreadable {text:?}", path.display()))
}

/// The sizes of the regular files below `path`, added up (`find -type f`): unlike `du -sb`,
/// directory sizes (which depend on the order names were added and removed) do not count.
pub(crate) fn file_bytes(path: &Path) -> Result<u64> {
    let out = run_ok(
        Command::new("find")
            .arg(path)
            .args(["-type", "f", "-printf", "%s\\n"]),
    )?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|n| {
            n.parse::<u64>()
                .map_err(|e| anyhow!("find {}: size {n:?}: {e}", path.display()))
        })
        .sum()
}

/// Bytes free (`field` "avail") or used ("used") on the filesystem of `path`, from `df -B1`.
pub(crate) fn df_bytes(path: &Path, field: &str) -> Result<u64> {
    let out = run_ok(
        Command::new("df")
            .args(["-B1", &format!("--output={field}")])
            .arg(path),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| anyhow!("df {}: unreadable {text:?}", path.display()))
}

pub(crate) fn u64_of(value: &Value, key: &str) -> u64 {
    value[key].as_u64().unwrap_or(0)
}

/// A commit with each tool after one change (or of the initial data).
struct Trial {
    mutation: Option<Mutation>,
    /// The changed bytes over the volume's bytes before the change.
    changed: f64,
    dvol_s: f64,
    /// The daemon's CPU time (user + system) during the commit.
    dvol_cpu_s: f64,
    /// Of which in the kernel (system time).
    dvol_sys_s: f64,
    /// The host's 1-minute load average when the trial began (other work on the machine).
    load: f64,
    cp_s: f64,
    restic_s: f64,
    /// dvol's `CommitResult`.
    commit: Value,
    /// restic's JSON summary.
    restic: Value,
}

impl Trial {
    fn commit_id(&self) -> String {
        self.commit["commit"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn json(&self) -> Value {
        let c = &self.commit;
        json!({
            "changed_fraction": round3(self.changed * 100.0) / 100.0,
            "change": self.mutation.as_ref().map(Mutation::json),
            "dvol_s": round3(self.dvol_s),
            "dvol_cpu_s": round3(self.dvol_cpu_s),
            "dvol_sys_s": round3(self.dvol_sys_s),
            "load_average_1min": self.load,
            "cp_a_sync_s": round3(self.cp_s),
            "restic_s": round3(self.restic_s),
            "dvol": {
                "commit": c["commit"]["id"],
                "files_scanned": c["files_scanned"],
                "files_reread": c["files_reread"],
                "bytes_read": c["bytes_read"],
                "new_objects": c["new_objects"],
                "new_bytes_stored": c["new_bytes_stored"],
            },
            "restic": {
                "files_new": self.restic["files_new"],
                "files_changed": self.restic["files_changed"],
                "data_added": self.restic["data_added"],
                "total_bytes_processed": self.restic["total_bytes_processed"],
            },
        })
    }
}

/// One checkout, timed.
struct CheckoutSample {
    seconds: f64,
    /// `cp -a` + `sync -f` of the volume timed right after, when asked for.
    copy_s: Option<f64>,
    bytes_written: u64,
    files_written: u64,
    removed: u64,
}

/// The volume, its data, and the peers' places.
struct HistoryBench<'a> {
    daemon: &'a Daemon,
    name: String,
    data: PathBuf,
    work: PathBuf,
    /// Timed commits so far (the peers' order rotates with it).
    trials: usize,
    /// The daemon's process id and the kernel's clock ticks per second (for its CPU time).
    pid: u32,
    clk_tck: f64,
    /// Bytes used on the filesystem before the section wrote anything, and the most used
    /// beyond that seen so far (sampled with each `cp -a` copy present and after each round).
    disk_base: u64,
    disk_peak: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Dvol,
    CpA,
    Restic,
}

impl HistoryBench<'_> {
    fn restic(&self) -> Command {
        let mut cmd = Command::new("restic");
        cmd.env("RESTIC_REPOSITORY", self.work.join("restic-repo"))
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .env("RESTIC_CACHE_DIR", self.work.join("restic-cache"));
        cmd
    }

    fn restic_backup(&self) -> Result<Value> {
        let out = run_ok(
            self.restic()
                .args(["backup", "--json", "--quiet"])
                .arg(&self.data),
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message_type"] == "summary")
            .ok_or_else(|| anyhow!("restic backup printed no summary: {text:?}"))
    }

    fn sample_disk(&mut self) -> Result<()> {
        let used = df_bytes(&self.data, "used")?;
        self.disk_peak = self.disk_peak.max(used.saturating_sub(self.disk_base));
        Ok(())
    }

    /// The daemon's CPU time so far (user, system; from /proc/PID/stat), in seconds.
    fn daemon_cpu_s(&self) -> Result<(f64, f64)> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .with_context(|| format!("read /proc/{}/stat", self.pid))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        // After the command name: state is field 3; utime and stime are fields 14 and 15.
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        let (user, system) = ticks(11)
            .zip(ticks(12))
            .ok_or_else(|| anyhow!("unreadable /proc/{}/stat: {stat:?}", self.pid))?;
        Ok((user as f64 / self.clk_tck, system as f64 / self.clk_tck))
    }

    /// A dvol commit over REST: (wall time, the daemon's CPU time as (user + system, system),
    /// `CommitResult`).
    fn dvol_commit(&self, message: &str) -> Result<(Duration, (f64, f64), Value)> {
        let (user0, sys0) = self.daemon_cpu_s()?;
        let (took, result) = api_timed(
            self.daemon,
            "POST",
            &format!("/v1/volumes/{}/commits", self.name),
            &json!({ "message": message }),
            201,
        )?;
        let (user1, sys1) = self.daemon_cpu_s()?;
        let sys = sys1 - sys0;
        Ok((took, (user1 - user0 + sys, sys), result))
    }

    /// Commits with dvol, copies with `cp -a` + `sync -f` and backs up with restic, in an order
    /// that rotates from one trial to the next, each after an untimed `sync`. With `cp_first`,
    /// `cp -a` goes first (so that its copy is gone before the stores grow by a volume).
    fn trial(
        &mut self,
        label: &str,
        mutation: Option<Mutation>,
        before: u64,
        cp_first: bool,
    ) -> Result<Trial> {
        let n = self.trials;
        self.trials += 1;
        let mut order = [Peer::Dvol, Peer::CpA, Peer::Restic];
        if cp_first {
            order = [Peer::CpA, Peer::Dvol, Peer::Restic];
        } else {
            order.rotate_left(n % 3);
        }
        let mut trial = Trial {
            changed: mutation
                .as_ref()
                .map_or(1.0, |m| m.changed_bytes() as f64 / before.max(1) as f64),
            mutation,
            dvol_s: 0.0,
            dvol_cpu_s: 0.0,
            dvol_sys_s: 0.0,
            load: load_average()?,
            cp_s: 0.0,
            restic_s: 0.0,
            commit: Value::Null,
            restic: Value::Null,
        };
        for peer in order {
            sync_host()?;
            match peer {
                Peer::Dvol => {
                    let (took, cpu, result) = self.dvol_commit(&format!("bench {label} #{n}"))?;
                    trial.dvol_s = took.as_secs_f64();
                    (trial.dvol_cpu_s, trial.dvol_sys_s) = cpu;
                    trial.commit = result;
                }
                Peer::CpA => trial.cp_s = self.copy_timed()?,
                Peer::Restic => {
                    let start = Instant::now();
                    trial.restic = self.restic_backup()?;
                    trial.restic_s = start.elapsed().as_secs_f64();
                }
            }
        }
        self.sample_disk()?;
        let c = &trial.commit;
        eprintln!(
            "  history commit {label:<5} #{n:<2} changed {:>7.3}%: dvol {:>7.2} s  cp -a+sync {:>7.2} s  restic {:>7.2} s   (dvol re-read {} files, {:.1} MB; stored {} objects, {:.1} MB)",
            trial.changed * 100.0,
            trial.dvol_s,
            trial.cp_s,
            trial.restic_s,
            u64_of(c, "files_reread"),
            mb(u64_of(c, "bytes_read")),
            u64_of(c, "new_objects"),
            mb(u64_of(c, "new_bytes_stored")),
        );
        Ok(trial)
    }

    /// `cp -a DATA COPY && sync -f COPY`, timed; the copy is removed after (untimed).
    fn copy_timed(&mut self) -> Result<f64> {
        let copy = self.work.join("copy");
        let start = Instant::now();
        run_ok(Command::new("cp").arg("-a").arg(&self.data).arg(&copy))?;
        run_ok(Command::new("sync").arg("-f").arg(&copy))?;
        let took = start.elapsed().as_secs_f64();
        self.sample_disk()?;
        std::fs::remove_dir_all(&copy).with_context(|| format!("remove {}", copy.display()))?;
        Ok(took)
    }

    fn checkout(&self, rev: &str) -> Result<CheckoutSample> {
        sync_host()?;
        let (took, v) = api_timed(
            self.daemon,
            "POST",
            &format!("/v1/volumes/{}/checkout", self.name),
            &json!({ "ref": rev, "force": true }),
            200,
        )?;
        Ok(CheckoutSample {
            seconds: took.as_secs_f64(),
            copy_s: None,
            bytes_written: u64_of(&v, "bytes_written"),
            files_written: u64_of(&v, "files_written"),
            removed: u64_of(&v, "removed"),
        })
    }

    /// Checks out `target` and `branch` again, [`CHECKOUT_ROUNDS`] times; every checkout is a
    /// sample (both directions cross the same difference), and with `copy` each is followed
    /// by a timed `cp -a` of the volume (the peer of a checkout that rewrites everything).
    /// Ends on `branch` at `head`.
    fn checkout_trips(
        &mut self,
        target: &str,
        branch: &str,
        head: &str,
        copy: bool,
    ) -> Result<Vec<CheckoutSample>> {
        let mut samples = Vec::new();
        for _ in 0..CHECKOUT_ROUNDS {
            for rev in [target, branch] {
                let mut sample = self.checkout(rev)?;
                if copy {
                    sync_host()?;
                    sample.copy_s = Some(self.copy_timed()?);
                }
                samples.push(sample);
            }
        }
        let log = api_get(self.daemon, &format!("/v1/volumes/{}/commits", self.name))?;
        ensure!(
            log["branch"] == branch && log["head"] == head,
            "after checking out {branch} again, HEAD is {} on {}",
            log["head"],
            log["branch"]
        );
        Ok(samples)
    }
}

/// Medians of a checkout series: (seconds, bytes written, files written, removed).
fn checkout_medians(samples: &[CheckoutSample]) -> (f64, f64, f64, f64) {
    let of =
        |f: &dyn Fn(&CheckoutSample) -> f64| median(&samples.iter().map(f).collect::<Vec<_>>());
    (
        of(&|s| s.seconds),
        of(&|s| s.bytes_written as f64),
        of(&|s| s.files_written as f64),
        of(&|s| s.removed as f64),
    )
}

/// What a category of the data mix holds.
fn mix_what(category: &str) -> &'static str {
    match category {
        "small" => "small files of 1-16 KiB (half text-like, a quarter page-like, a quarter random)",
        "text" => "text-like files of 64 KiB-4 MiB (log lines of words and numbers; compressible)",
        "pages" => "page-like binaries of 1-32 MiB (4 KiB pages of 48-byte records from a 64-record palette, zero-padded; compressible)",
        _ => "random binaries of 4-128 MiB (SplitMix64; incompressible)",
    }
}

/// Fails unless the filesystem of `path` has `gib` GiB free (`flag` `asked` wants them).
pub(crate) fn ensure_room(
    section: &str,
    path: &Path,
    gib: f64,
    flag: &str,
    asked: f64,
) -> Result<()> {
    let need = (gib * GIB) as u64;
    let avail = df_bytes(path, "avail")?;
    ensure!(
        avail >= need,
        "{section}: {:.1} GB free on the filesystem of {}, {:.1} GB wanted for {flag} {asked}",
        avail as f64 / 1e9,
        path.display(),
        need as f64 / 1e9
    );
    Ok(())
}

/// Creates bronze volume `name` on `daemon` (REST) and returns its data directory.
pub(crate) fn create_bronze(section: &str, daemon: &Daemon, name: &str) -> Result<PathBuf> {
    let (_, volume) = api_timed(
        daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": name, "options": { "profile": "bronze" } }),
        201,
    )?;
    bronze_data(section, daemon, &volume)
}

/// Removes volume `name` from `daemon` (REST).
pub(crate) fn remove_volume(daemon: &Daemon, name: &str) -> Result<()> {
    api_timed(
        daemon,
        "DELETE",
        &format!("/v1/volumes/{name}"),
        &Value::Null,
        204,
    )
    .map(drop)
}

/// The data directory of a bronze volume on `daemon`, from its REST view `volume`.
pub(crate) fn bronze_data(section: &str, daemon: &Daemon, volume: &Value) -> Result<PathBuf> {
    ensure!(
        volume["backend"] == "directory",
        "{section}: the bronze volume {} resolved to {} (expected directory)",
        volume["name"],
        volume["backend"]
    );
    let id = volume["id"]
        .as_str()
        .ok_or_else(|| anyhow!("volume {} has no id: {volume}", volume["name"]))?;
    let data = daemon.root.join("backends/directory").join(id);
    ensure!(
        data.is_dir(),
        "{section}: {} is not a directory",
        data.display()
    );
    Ok(data)
}

/// Writes about `gib` GiB of the mixed data set into `data`, then `sync`: the data set, the
/// seconds it took and its size (`du -sb`).
pub(crate) fn write_dataset(section: &str, data: &Path, gib: f64) -> Result<(Dataset, f64, u64)> {
    eprintln!(
        "  {section}: writing {gib} GiB of data into {}",
        data.display()
    );
    let start = Instant::now();
    let ds = Dataset::build(data, gib, DATA_SEED)?;
    sync_host()?;
    let build_s = start.elapsed().as_secs_f64();
    Ok((ds, build_s, du_bytes(data, true)?))
}

/// Section `history`: see the module documentation and the report's method lines.
pub fn run(args: &Args, report: &mut Report, daemon: &Daemon, run_id: &str) -> Result<()> {
    let started = Instant::now();
    let gib = args.history_gib;
    let restic_version =
        String::from_utf8_lossy(&run_ok(Command::new("restic").arg("version"))?.stdout)
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
    ensure_room(
        "history",
        &daemon.root,
        HISTORY_DISK_FACTOR * gib,
        "--history-gib",
        gib,
    )?;
    let work = tempfile::Builder::new()
        .prefix("dvol-bench-history-")
        .tempdir()
        .context("history work directory")?;
    let same_fs = std::fs::metadata(work.path())?.dev() == std::fs::metadata(&daemon.root)?.dev();

    let name = format!("bench-history-{run_id}");
    let data = create_bronze("history", daemon, &name)?;
    let mut bench = HistoryBench {
        daemon,
        name: name.clone(),
        data: data.clone(),
        work: work.path().to_path_buf(),
        trials: 0,
        pid: daemon.pid(),
        clk_tck: String::from_utf8_lossy(&run_ok(Command::new("getconf").arg("CLK_TCK"))?.stdout)
            .trim()
            .parse()
            .context("getconf CLK_TCK")?,
        disk_base: df_bytes(&daemon.root, "used")?,
        disk_peak: 0,
    };

    let (mut ds, build_s, volume_bytes) = write_dataset("history", &data, gib)?;
    let mix = [
        ("small", ds.category(true, None)),
        ("text", ds.category(false, Some(DataKind::Text))),
        ("pages", ds.category(false, Some(DataKind::Pages))),
        ("random", ds.category(false, Some(DataKind::Random))),
    ];
    run_ok(bench.restic().args(["init", "--repository-version", "2"]))?;

    // The first (full) commit, then the ten 1% commits the store is measured after.
    let first = bench.trial("full", None, 0, false)?;
    let branch = first.commit["branch"]
        .as_str()
        .unwrap_or("master")
        .to_string();
    let mut ids = vec![first.commit_id()];
    let mut by_fraction: Vec<Vec<Trial>> = HISTORY_FRACTIONS.iter().map(|_| Vec::new()).collect();
    let (one_fraction, one_label, one_n) = HISTORY_FRACTIONS[ONE_PERCENT];
    for _ in 0..one_n {
        let before = ds.total();
        let m = ds.mutate(one_fraction)?;
        let t = bench.trial(one_label, Some(m), before, false)?;
        ids.push(t.commit_id());
        by_fraction[ONE_PERCENT].push(t);
    }
    sync_host()?;
    let history_dir = daemon.root.join("history");
    let store_volume = du_bytes(&data, true)?;
    let store_apparent = du_bytes(&history_dir, true)?;
    let store_allocated = du_bytes(&history_dir, false)?;
    let restic_repo = bench.work.join("restic-repo");
    let restic_apparent = du_bytes(&restic_repo, true)?;
    let restic_allocated = du_bytes(&restic_repo, false)?;
    let commits_then = ids.len();

    // Checkouts from HEAD: HEAD~1 (one 1% change) and the first commit (ten of them).
    let head = ids[ids.len() - 1].clone();
    let co_one = bench.checkout_trips(&ids[ids.len() - 2], &branch, &head, false)?;
    let co_ten = bench.checkout_trips(&ids[0], &branch, &head, false)?;
    // Untimed: files the checkouts rewrote have new inodes and times, which restic (and dvol,
    // for what its index does not know) would read again at the next commit.
    let (_, _, settle) = bench.dvol_commit("bench settle after checkouts")?;
    let settle_new_commit = settle["commit"]["id"].as_str() != Some(head.as_str());
    bench.restic_backup()?;
    // dvol's fixed cost: commits with nothing changed (the walk, trees, commit, index).
    let mut still: Vec<(f64, f64, Value)> = Vec::new();
    for k in 0..NO_CHANGE_COMMITS {
        sync_host()?;
        let (took, cpu, result) = bench.dvol_commit(&format!("bench no change #{k}"))?;
        still.push((took.as_secs_f64(), cpu.0, result));
    }

    for (i, &(fraction, label, n)) in HISTORY_FRACTIONS.iter().enumerate() {
        if i == ONE_PERCENT {
            continue;
        }
        for _ in 0..n {
            let before = ds.total();
            let m = ds.mutate(fraction)?;
            let t = bench.trial(label, Some(m), before, fraction >= 1.0)?;
            ids.push(t.commit_id());
            by_fraction[i].push(t);
        }
    }
    // The first commit from a HEAD that differs from it everywhere.
    let last = ids[ids.len() - 1].clone();
    let co_full = bench.checkout_trips(&ids[0], &branch, &last, true)?;
    sync_host()?;
    let commits_end = api_get(daemon, &format!("/v1/volumes/{name}/commits"))?["commits"]
        .as_array()
        .map_or(0, Vec::len);
    let end_volume = du_bytes(&data, true)?;
    let end_store = du_bytes(&history_dir, true)?;
    let end_restic = du_bytes(&restic_repo, true)?;
    let limits = crate::limits::measure(&data, &bench.work, LIMITS_SAMPLE_BYTES)?;
    remove_volume(daemon, &name)?;
    let elapsed = started.elapsed().as_secs_f64();

    // --- Report.
    let mix_total = (mix.iter().map(|(_, (_, b))| b).sum::<u64>() as f64).max(1.0);
    let mix_text: Vec<String> = mix
        .iter()
        .map(|(key, (n, bytes))| {
            let share = 100.0 * *bytes as f64 / mix_total;
            format!("{n} {}: {:.0} MB ({share:.0}%)", mix_what(key), mb(*bytes))
        })
        .collect();
    let first_read = u64_of(&first.commit, "bytes_read");
    let first_stored = u64_of(&first.commit, "new_bytes_stored");
    report.line(format!(
        "history: bronze volume (directory backend), {:.0} MB ({gib} GiB asked) written straight into its data dir in {build_s:.1} s; dvol's first commit stored {:.0} MB for {:.0} MB read ({:.2}x smaller)",
        mb(volume_bytes),
        mb(first_stored),
        mb(first_read),
        first_read as f64 / first_stored.max(1) as f64,
    ));
    report.line(format!("history data mix: {}", mix_text.join("; ")));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    report.line(format!(
        "history method: per commit, in an order rotating from commit to commit, each after an untimed `sync`: dvol = REST POST /v1/volumes/NAME/commits, wall time of the call (dvol makes a commit's new objects durable together: one syncfs, or an fdatasync each for up to 8); cp -a = `cp -a DATA COPY && sync -f COPY` timed together (what ClusterHQ dvol did per commit; ext4, so a real copy; the copy is deleted after, untimed); restic = `{restic_version}` `restic backup --json --quiet DATA` into a repository (format 2, compression auto) initialised once before the first commit, cache on (RESTIC_CACHE_DIR in the work dir, so its incremental parent-snapshot scan is used); page cache warm; copies and restic repo on the daemon's filesystem: {}; host load = the 1-minute load average at the start of each round ({cpus} CPUs): dvol's commit is CPU-bound, cp -a mostly I/O, so other work on the host lowers cp-a/dvol; MB = 10^6 bytes",
        if same_fs { "yes" } else { "NO" }
    ));
    report.line(
        "history changes: a fraction f of the volume's bytes: about 5% of it deletes random files (at least 2, each at most 16 KiB or what is left), 5% adds files (at least 2 small ones, then text/page/random files of up to 32 MiB), the rest rewrites: half on files picked at random by count (mostly small files; files up to 256 KiB rewritten whole, a 64 KiB region of larger ones), half on files picked by size (a 64 KiB-8 MiB region rewritten in place in files over 256 KiB, or the whole file if it fits in what is left); 100%: every file rewritten whole with new content, 3 small files deleted and 3 added".to_string(),
    );

    let mut fractions_json = serde_json::Map::new();
    let lines_for = |label: &str, trials: &[Trial], report: &mut Report| -> Value {
        let col = |f: &dyn Fn(&Trial) -> f64| -> Vec<f64> { trials.iter().map(f).collect() };
        let (dvol, cp, restic) = (col(&|t| t.dvol_s), col(&|t| t.cp_s), col(&|t| t.restic_s));
        let (d, c, r) = (median(&dvol), median(&cp), median(&restic));
        let cp_ratios = col(&|t| t.cp_s / t.dvol_s);
        let restic_ratios = col(&|t| t.restic_s / t.dvol_s);
        let changed = median(&col(&|t| t.changed * 100.0));
        let stat = |key: &str| median(&col(&|t| u64_of(&t.commit, key) as f64));
        let rstat = |key: &str| median(&col(&|t| u64_of(&t.restic, key) as f64));
        report.line(format!(
            "history commit {label:<5} n={:<2} changed {changed:>7.3}%  dvol {d:>7.2} s  cp -a+sync {c:>7.2} s  restic {r:>7.2} s   cp-a/dvol {:>6.1}x  restic/dvol {:>5.1}x  (medians; median of per-commit ratios {:.1}x, {:.1}x; host load {:.1})",
            trials.len(),
            c / d,
            r / d,
            median(&cp_ratios),
            median(&restic_ratios),
            median(&col(&|t| t.load)),
        ));
        let change = trials
            .iter()
            .filter_map(|t| t.mutation.as_ref())
            .collect::<Vec<_>>();
        let change_text = if change.is_empty() {
            "all files new".to_string()
        } else {
            let m = |f: &dyn Fn(&Mutation) -> u64| {
                median(&change.iter().map(|m| f(m) as f64).collect::<Vec<_>>())
            };
            format!(
                "{:.0} files rewritten whole + {:.0} regions = {:.1} MB, +{:.0} files {:.1} MB, -{:.0} files {:.1} MB",
                m(&|m| m.whole),
                m(&|m| m.regions),
                mb(m(&|m| m.rewritten_bytes) as u64),
                m(&|m| m.added),
                mb(m(&|m| m.added_bytes) as u64),
                m(&|m| m.deleted),
                mb(m(&|m| m.deleted_bytes) as u64),
            )
        };
        report.line(format!(
            "history   {label:<5} medians: change {change_text}; dvol daemon CPU {:.2} s (of which system {:.2} s), lstat {:.0} files, re-read {:.0} files {:.1} MB ({:.0} MB/s of the commit's time), {:.0} new objects {:.1} MB stored; restic {:.0}+{:.0} files new+changed, {:.1} MB added",
            median(&col(&|t| t.dvol_cpu_s)),
            median(&col(&|t| t.dvol_sys_s)),
            stat("files_scanned"),
            stat("files_reread"),
            mb(stat("bytes_read") as u64),
            mb(stat("bytes_read") as u64) / d,
            stat("new_objects"),
            mb(stat("new_bytes_stored") as u64),
            rstat("files_new"),
            rstat("files_changed"),
            mb(rstat("data_added") as u64),
        ));
        json!({
            "commits": trials.len(),
            "changed_percent_median": round3(changed),
            "dvol_median_s": round3(d),
            "dvol_cpu_median_s": round3(median(&col(&|t| t.dvol_cpu_s))),
            "dvol_sys_median_s": round3(median(&col(&|t| t.dvol_sys_s))),
            "cp_a_sync_median_s": round3(c),
            "restic_median_s": round3(r),
            "load_average_median": round3(median(&col(&|t| t.load))),
            "cp_a_over_dvol_of_medians": round3(c / d),
            "restic_over_dvol_of_medians": round3(r / d),
            "cp_a_over_dvol_median_of_ratios": round3(median(&cp_ratios)),
            "restic_over_dvol_median_of_ratios": round3(median(&restic_ratios)),
            "trials": trials.iter().map(Trial::json).collect::<Vec<_>>(),
        })
    };
    fractions_json.insert(
        "full".into(),
        lines_for("full", std::slice::from_ref(&first), report),
    );
    for (i, &(_, label, _)) in HISTORY_FRACTIONS.iter().enumerate() {
        let value = lines_for(label, &by_fraction[i], report);
        fractions_json.insert(label.into(), value);
    }
    let one = &by_fraction[ONE_PERCENT];
    let one_d = median(&one.iter().map(|t| t.dvol_s).collect::<Vec<_>>());
    let one_cp = round3(median(&one.iter().map(|t| t.cp_s).collect::<Vec<_>>()) / one_d);
    let one_restic = round3(median(&one.iter().map(|t| t.restic_s).collect::<Vec<_>>()) / one_d);
    let (cp_pass, restic_pass) = (
        one_cp >= AIM_COMMIT_VS_CP,
        one_restic >= AIM_COMMIT_VS_RESTIC,
    );
    let verdict = report.aim("history 1% commit vs cp -a", cp_pass);
    report.line(format!(
        "history 1%-change commit cp-a/dvol of medians {one_cp:>6.1}x  aim >= {AIM_COMMIT_VS_CP:.0}x  {verdict}"
    ));
    let verdict = report.aim("history 1% commit vs restic", restic_pass);
    report.line(format!(
        "history 1%-change commit restic/dvol of medians {one_restic:>5.1}x  aim >= {AIM_COMMIT_VS_RESTIC:.0}x  {verdict}"
    ));

    // The first (full) commit against its peers and its limits.
    let first_vs_cp = round3(first.dvol_s / first.cp_s);
    let first_vs_restic = round3(first.dvol_s / first.restic_s);
    let (first_cp_pass, first_restic_pass) = (
        first_vs_cp <= AIM_FIRST_COMMIT_VS_CP,
        first_vs_restic <= AIM_FIRST_COMMIT_VS_RESTIC,
    );
    let verdict = report.aim("history first commit vs cp -a", first_cp_pass);
    report.line(format!(
        "history first full commit dvol/cp-a {first_vs_cp:.3}x ({:.2} s / {:.2} s)  aim <= {AIM_FIRST_COMMIT_VS_CP}x  {verdict}",
        first.dvol_s, first.cp_s,
    ));
    let verdict = report.aim("history first commit vs restic", first_restic_pass);
    report.line(format!(
        "history first full commit dvol/restic {first_vs_restic:.3}x ({:.2} s / {:.2} s)  aim <= {AIM_FIRST_COMMIT_VS_RESTIC}x  {verdict}",
        first.dvol_s, first.restic_s,
    ));
    let cpu_bound = mb(first_read) * limits.commit_s_per_mb() / cpus.max(1) as f64;
    let write_bound = mb(first_stored) / limits.disk_write;
    let copy_bound = mb(first_read) / limits.disk_write;
    report.line(format!(
        "history limits (same run, at the end of the section, on {} files, {:.0} MB of the volume): disk cold read {:.0} MB/s, durable write {:.0} MB/s; one core: blake3 {:.0} MB/s, zstd -{} {:.0} MB/s (decompress {:.0} MB/s), FastCDC {:.0} MB/s",
        limits.files,
        mb(limits.bytes),
        limits.disk_read,
        limits.disk_write,
        limits.blake3,
        dvol_snapshot::store::ZSTD_LEVEL,
        limits.zstd,
        limits.unzstd,
        limits.fastcdc,
    ));
    report.line(format!(
        "history first full commit against its limits: cutting+hashing+compressing {:.0} MB on {cpus} cores {cpu_bound:.2} s; making {:.0} MB stored durable {write_bound:.2} s; dvol {:.2} s = {:.2}x the larger; dvol CPU {:.2} s (system {:.2} s) = {:.2}x the CPU bound's {:.2} s; cp -a+sync {:.2} s = {:.2}x its bound, writing {:.0} MB durably ({copy_bound:.2} s)",
        mb(first_read),
        mb(first_stored),
        first.dvol_s,
        first.dvol_s / cpu_bound.max(write_bound),
        first.dvol_cpu_s,
        first.dvol_sys_s,
        first.dvol_cpu_s / (cpu_bound * cpus.max(1) as f64),
        cpu_bound * cpus.max(1) as f64,
        first.cp_s,
        first.cp_s / copy_bound,
        mb(first_read),
    ));

    // Store size.
    let store_ratio = round3(store_apparent as f64 / store_volume as f64);
    let store_pass = store_ratio <= AIM_STORE_RATIO;
    let verdict = report.aim("history store size", store_pass);
    report.line(format!(
        "history store after the full + {} 1%-change commits: du -sb <root>/history {:.0} MB = {store_ratio:.3}x the volume (du -sb {:.0} MB)  aim <= {AIM_STORE_RATIO}x  {verdict}   (allocated, du -s -B1: {:.0} MB = {:.3}x)",
        commits_then - 1,
        mb(store_apparent),
        mb(store_volume),
        mb(store_allocated),
        store_allocated as f64 / store_volume as f64,
    ));
    report.line(format!(
        "history store peers after the same {commits_then} snapshots: restic repository du -sb {:.0} MB = {:.3}x (allocated {:.0} MB = {:.3}x); cp -a per commit (ClusterHQ dvol): {commits_then} full copies = {commits_then}.0x ({:.0} MB, computed)",
        mb(restic_apparent),
        restic_apparent as f64 / store_volume as f64,
        mb(restic_allocated),
        restic_allocated as f64 / store_volume as f64,
        mb(store_volume) * commits_then as f64,
    ));

    // Checkouts.
    let series = [
        ("1%", "HEAD~1 (one 1% change)", &co_one),
        ("~10%", "the first commit (ten 1% changes)", &co_ten),
        ("full", "the first commit after a 100% change", &co_full),
    ];
    let mut checkout_json = serde_json::Map::new();
    let mut medians = Vec::new();
    for (key, what, samples) in series {
        let (s, bytes, files, removed) = checkout_medians(samples);
        let ms_per_mb = s * 1e3 / mb(bytes as u64).max(1e-9);
        report.line(format!(
            "history checkout {key:<5} HEAD <-> {what:<38} n={} median {s:>6.2} s  wrote {:>7.1} MB in {files:.0} files, removed {removed:.0} ({:.2}% of the volume's bytes)  {ms_per_mb:>7.2} ms per MB",
            samples.len(),
            mb(bytes as u64),
            100.0 * bytes / store_volume as f64,
        ));
        checkout_json.insert(
            key.into(),
            json!({
                "between": format!("HEAD and {what}"),
                "samples": samples.len(),
                "median_s": round3(s),
                "median_bytes_written": bytes,
                "median_files_written": files,
                "median_removed": removed,
                "ms_per_mb": round3(ms_per_mb),
                "samples_s": rounded(&samples.iter().map(|s| s.seconds).collect::<Vec<_>>()),
            }),
        );
        medians.push((s, bytes));
    }
    let full_copy = median(&co_full.iter().filter_map(|s| s.copy_s).collect::<Vec<_>>());
    let full_checkout = medians[2].0;
    let full_vs_cp = round3(full_checkout / full_copy);
    let full_pass = full_vs_cp <= AIM_FULL_CHECKOUT_VS_CP;
    let verdict = report.aim("history full checkout vs cp -a", full_pass);
    let checkout_cpu = mb(medians[2].1 as u64) * limits.checkout_s_per_mb() / cpus.max(1) as f64;
    let checkout_write = mb(medians[2].1 as u64) / limits.disk_write;
    report.line(format!(
        "history full checkout / cp -a+sync of the volume (alternating, n={}) {full_vs_cp:.3}x ({full_checkout:.2} s / {full_copy:.2} s, medians)  aim <= {AIM_FULL_CHECKOUT_VS_CP}x  {verdict}; its limits: decompressing+verifying {:.0} MB on {cpus} cores {checkout_cpu:.2} s, writing it durably {checkout_write:.2} s",
        co_full.len(),
        mb(medians[2].1 as u64),
    ));
    let scaling = round3(medians[0].0 / medians[2].0);
    let diff_ratio = medians[0].1 / medians[2].1.max(1.0);
    let scaling_pass = scaling <= AIM_CHECKOUT_SCALING;
    let verdict = report.aim("history checkout scaling", scaling_pass);
    report.line(format!(
        "history checkout time 1%-diff / full-diff {scaling:.3} (their differences: {diff_ratio:.3}; ~10%-diff / full-diff {:.3})  aim <= {AIM_CHECKOUT_SCALING:.2}  {verdict}",
        medians[1].0 / medians[2].0,
    ));
    report.line(format!(
        "history after the checkouts, untimed: a dvol commit re-read {} files ({:.1} MB): checkout keeps dvol's index current; it {}; a restic backup too, so that the next timed commits start even",
        u64_of(&settle, "files_reread"),
        mb(u64_of(&settle, "bytes_read")),
        match (settle_new_commit, settle["changed"].as_bool()) {
            (true, Some(false)) => "made a new commit, answering changed=false (an empty commit: the daemon commits even when nothing changed, though CommitResult's doc says it returns the current one)",
            (true, _) => "made a new commit (an empty one: the daemon commits even when nothing changed, though CommitResult's doc says it returns the current one)",
            (false, _) => "returned the current commit",
        },
    ));
    let still_s: Vec<f64> = still.iter().map(|(s, _, _)| *s).collect();
    let still_cpu = median(&still.iter().map(|(_, c, _)| *c).collect::<Vec<_>>());
    let still_scanned = still
        .last()
        .map_or(0, |(_, _, v)| u64_of(v, "files_scanned"));
    let still_reread = still
        .iter()
        .map(|(_, _, v)| u64_of(v, "files_reread"))
        .max();
    let still_changed: Vec<String> = still
        .iter()
        .map(|(_, _, v)| v["changed"].to_string())
        .collect();
    report.line(format!(
        "history dvol commit with nothing changed (its fixed cost: lstat of {still_scanned} files, trees, commit, index save) n={NO_CHANGE_COMMITS}: median {:.3} s, daemon CPU {still_cpu:.2} s, re-read at most {} files, answered changed = {}",
        median(&still_s),
        still_reread.unwrap_or(0),
        still_changed.join("/"),
    ));
    report.line(format!(
        "history end: {} commits; volume {:.0} MB, <root>/history {:.0} MB, restic repo {:.0} MB (+ one cp -a copy at a time, deleted after); peak disk use of the section {:.0} MB (df used, sampled with each copy present and after each round; the 100% round runs cp -a first); section took {:.0} s",
        commits_end,
        mb(end_volume),
        mb(end_store),
        mb(end_restic),
        mb(bench.disk_peak),
        elapsed,
    ));

    report.json.insert(
        "history".into(),
        json!({
            "gib": gib,
            "volume_bytes": volume_bytes,
            "build_s": round3(build_s),
            "mix": mix.iter().map(|(k, (n, b))| json!({"category": k, "files": n, "bytes": b})).collect::<Vec<_>>(),
            "restic_version": restic_version,
            "same_filesystem": same_fs,
            "commits": Value::Object(fractions_json),
            "aim_cp_a_over_dvol_min": AIM_COMMIT_VS_CP,
            "aim_restic_over_dvol_min": AIM_COMMIT_VS_RESTIC,
            "cp_a_over_dvol_1pct": one_cp,
            "restic_over_dvol_1pct": one_restic,
            "cp_a_pass": cp_pass,
            "restic_pass": restic_pass,
            "store": {
                "commits": commits_then,
                "volume_bytes": store_volume,
                "history_bytes": store_apparent,
                "history_allocated_bytes": store_allocated,
                "ratio": store_ratio,
                "aim_ratio_max": AIM_STORE_RATIO,
                "pass": store_pass,
                "restic_bytes": restic_apparent,
                "restic_allocated_bytes": restic_allocated,
                "cp_a_copies_ratio": commits_then,
            },
            "checkout": Value::Object(checkout_json),
            "checkout_scaling": scaling,
            "full_checkout_over_cp_a": full_vs_cp,
            "full_checkout_cp_a_median_s": round3(full_copy),
            "aim_full_checkout_over_cp_a_max": AIM_FULL_CHECKOUT_VS_CP,
            "full_checkout_pass": full_pass,
            "first_commit_over_cp_a": first_vs_cp,
            "first_commit_over_restic": first_vs_restic,
            "aim_first_commit_over_cp_a_max": AIM_FIRST_COMMIT_VS_CP,
            "aim_first_commit_over_restic_max": AIM_FIRST_COMMIT_VS_RESTIC,
            "first_commit_cp_a_pass": first_cp_pass,
            "first_commit_restic_pass": first_restic_pass,
            "limits": limits.json(),
            "aim_checkout_scaling_max": AIM_CHECKOUT_SCALING,
            "checkout_scaling_pass": scaling_pass,
            "settle_commit_files_reread": settle["files_reread"],
            "settle_made_new_commit": settle_new_commit,
            "no_change_commit": {
                "samples_s": rounded(&still_s),
                "median_s": round3(median(&still_s)),
                "cpu_median_s": round3(still_cpu),
                "files_scanned": still_scanned,
            },
            "peak_disk_bytes": bench.disk_peak,
            "end": {"commits": commits_end, "volume_bytes": end_volume, "history_bytes": end_store, "restic_bytes": end_restic},
            "elapsed_s": round1(elapsed),
        }),
    );
    Ok(())
}
