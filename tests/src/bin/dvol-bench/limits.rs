//! The physical limits the history figures are read against, measured in the same run on the
//! volume's own data: the disk's cold read and durable write speed, and, on one core, the
//! speed of what a commit does to every byte it stores (blake3, zstd at dvol's level,
//! FastCDC at dvol's chunk sizes).

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use dvol_snapshot::chunker::{AVG_CHUNK, MAX_CHUNK, MIN_CHUNK};
use dvol_snapshot::store::ZSTD_LEVEL;
use serde_json::{json, Value};

use crate::{median, round1};

/// Each per-core speed is the median of this many passes over the sample.
const PASSES: usize = 3;
/// The durable write is timed on a file of this size.
const WRITE_BYTES: usize = 512 * 1024 * 1024;

/// What was measured, in MB/s (10^6 bytes).
pub(crate) struct Limits {
    /// Files of the sample and their bytes.
    pub files: usize,
    pub bytes: u64,
    /// Sequential read of the sample after the page cache was dropped.
    pub disk_read: f64,
    /// Writing [`WRITE_BYTES`] and `fdatasync`.
    pub disk_write: f64,
    /// One core each, on the sample in memory, in 1 MiB pieces (blake3, zstd).
    pub blake3: f64,
    pub zstd: f64,
    /// Decompressing what `zstd` compressed (its input bytes per second).
    pub unzstd: f64,
    pub fastcdc: f64,
}

impl Limits {
    /// Seconds one core needs per MB a commit reads: cutting, hashing, compressing.
    pub fn commit_s_per_mb(&self) -> f64 {
        1.0 / self.blake3 + 1.0 / self.zstd + 1.0 / self.fastcdc
    }

    /// Seconds one core needs per MB a checkout writes: decompressing, verifying the hash.
    pub fn checkout_s_per_mb(&self) -> f64 {
        1.0 / self.blake3 + 1.0 / self.unzstd
    }

    pub fn json(&self) -> Value {
        json!({
            "sample_files": self.files,
            "sample_bytes": self.bytes,
            "disk_cold_read_mb_s": round1(self.disk_read),
            "disk_durable_write_mb_s": round1(self.disk_write),
            "blake3_mb_s_per_core": round1(self.blake3),
            "zstd_level1_mb_s_per_core": round1(self.zstd),
            "zstd_decompress_mb_s_per_core": round1(self.unzstd),
            "fastcdc_mb_s_per_core": round1(self.fastcdc),
        })
    }
}

/// Every regular file below `dir`.
fn files_below(dir: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            files_below(&entry.path(), out)?;
        } else if meta.is_file() {
            out.push((entry.path(), meta.len()));
        }
    }
    Ok(())
}

fn mbs(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds.max(1e-9)
}

/// The median speed of `PASSES` runs of `f` over `bytes` bytes.
fn per_core(bytes: u64, mut f: impl FnMut()) -> f64 {
    let speeds: Vec<f64> = (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            f();
            mbs(bytes, start.elapsed().as_secs_f64())
        })
        .collect();
    median(&speeds)
}

/// Measures on up to `sample_cap` bytes of the files below `data` (picked in an order that
/// mixes the data set's kinds), writing the durable-write file into `work`. Drops the host's
/// page cache (after a `sync`).
pub(crate) fn measure(data: &Path, work: &Path, sample_cap: u64) -> Result<Limits> {
    let mut files = Vec::new();
    files_below(data, &mut files)?;
    files.sort_by_key(|(path, _)| {
        let mut h = DefaultHasher::new();
        path.hash(&mut h);
        h.finish()
    });
    let mut picked = Vec::new();
    let mut bytes = 0u64;
    for (path, len) in files {
        if bytes >= sample_cap {
            break;
        }
        bytes += len;
        picked.push(path);
    }
    ensure!(!picked.is_empty(), "no files below {}", data.display());

    crate::throughput::drop_caches()?;
    let start = Instant::now();
    let mut sample = Vec::with_capacity(bytes as usize);
    for path in &picked {
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut sample))
            .with_context(|| format!("read {}", path.display()))?;
    }
    let disk_read = mbs(sample.len() as u64, start.elapsed().as_secs_f64());
    let bytes = sample.len() as u64;

    let pieces: Vec<&[u8]> = sample.chunks(AVG_CHUNK).collect();
    let blake3 = per_core(bytes, || {
        for p in &pieces {
            std::hint::black_box(blake3::hash(p));
        }
    });
    let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).context("zstd context")?;
    let zstd = per_core(bytes, || {
        for p in &pieces {
            std::hint::black_box(compressor.compress(p).ok());
        }
    });
    let compressed = pieces
        .iter()
        .map(|p| compressor.compress(p).map(|c| (c, p.len())))
        .collect::<std::io::Result<Vec<_>>>()
        .context("zstd compress")?;
    let mut decompressor = zstd::bulk::Decompressor::new().context("zstd context")?;
    let unzstd = per_core(bytes, || {
        for (c, len) in &compressed {
            std::hint::black_box(decompressor.decompress(c, *len).ok());
        }
    });
    let fastcdc = per_core(bytes, || {
        let cuts = fastcdc::v2020::FastCDC::new(&sample, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK).count();
        std::hint::black_box(cuts);
    });

    let path = work.join("limits-write");
    let block = vec![0x5au8; 4 * 1024 * 1024];
    let start = Instant::now();
    {
        let mut f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
        for _ in 0..WRITE_BYTES / block.len() {
            f.write_all(&block)?;
        }
        f.sync_data()?;
    }
    let disk_write = mbs(WRITE_BYTES as u64, start.elapsed().as_secs_f64());
    std::fs::remove_file(&path)?;

    Ok(Limits {
        files: picked.len(),
        bytes,
        disk_read,
        disk_write,
        blake3,
        zstd,
        unzstd,
        fastcdc,
    })
}
