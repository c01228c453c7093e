//! Section `scale`: the first commit of a bronze volume of each `--scale-gib` size (default 2
//! and 20 GiB) of the history section's mixed data; the daemon's peak resident memory while it
//! runs (VmRSS sampled every 10 ms) against a fixed bound, and how it grows with the volume.

use std::time::Instant;

use anyhow::Result;
use dvol_tests::Daemon;
use serde_json::{json, Value};

use crate::history::{create_bronze, ensure_room, mb, remove_volume, u64_of, write_dataset};
use crate::memory::{mib, rss_kib, RssSampler};
use crate::{api_timed, round3, Args, Report};

/// The daemon's resident memory while it commits a volume of any size stays below this.
const AIM_COMMIT_RSS_MIB: f64 = 256.0;
/// Free space the section wants per size, in multiples of the volume: the volume and the store
/// (compressed, so smaller; the volume is removed before the next size).
const SCALE_DISK_FACTOR: f64 = 2.0;

/// One size's first commit.
struct ScaleSample {
    gib: f64,
    volume_bytes: u64,
    files: u64,
    write_s: f64,
    commit_s: f64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    rss_samples: usize,
    commit: Value,
}

/// Section `scale`: see the module documentation.
pub fn run(args: &Args, report: &mut Report, daemon: &Daemon, run_id: &str) -> Result<()> {
    let mut samples = Vec::new();
    for (i, &gib) in args.scale_gib.iter().enumerate() {
        ensure_room(
            "scale",
            &daemon.root,
            SCALE_DISK_FACTOR * gib,
            "--scale-gib",
            gib,
        )?;
        let name = format!("bench-scale-{run_id}-{i}");
        let data = create_bronze("scale", daemon, &name)?;
        let (ds, write_s, volume_bytes) = write_dataset("scale", &data, gib)?;
        let rss_before_kib = rss_kib(daemon.pid())?.0;
        let sampler = RssSampler::start(daemon.pid())?;
        let start = Instant::now();
        let committed = api_timed(
            daemon,
            "POST",
            &format!("/v1/volumes/{name}/commits"),
            &json!({ "message": format!("scale {gib} GiB") }),
            201,
        );
        let commit_s = start.elapsed().as_secs_f64();
        let (rss_peak_kib, rss_samples) = sampler.stop()?;
        let (_, commit) = committed?;
        eprintln!(
            "  scale {gib} GiB: commit {commit_s:.1} s, daemon VmRSS {:.1} -> peak {:.1} MiB",
            mib(rss_before_kib),
            mib(rss_peak_kib)
        );
        remove_volume(daemon, &name)?;
        samples.push(ScaleSample {
            gib,
            volume_bytes,
            files: ds.files() as u64,
            write_s,
            commit_s,
            rss_before_kib,
            rss_peak_kib,
            rss_samples,
            commit,
        });
    }

    report.line(format!(
        "scale method: per size, a bronze volume of the history section's mixed data written straight into its data dir, then `sync`; its first commit over REST while a thread reads the daemon's VmRSS from /proc every 10 ms; the volume is removed after (its objects stay in the store); aim: peak VmRSS < {AIM_COMMIT_RSS_MIB:.0} MiB at every size"
    ));
    let mut rows = Vec::new();
    for s in &samples {
        let pass = mib(s.rss_peak_kib) < AIM_COMMIT_RSS_MIB;
        let verdict = report.aim(&format!("scale commit RSS {} GiB", s.gib), pass);
        let read = u64_of(&s.commit, "bytes_read");
        report.line(format!(
            "scale {:>5} GiB ({:.0} MB, {} files, written in {:.0} s): first commit {:.1} s ({:.0} MB/s read, {} objects, {:.0} MB stored); daemon VmRSS {:.1} MiB before, peak {:.1} MiB (n={} samples)  aim < {AIM_COMMIT_RSS_MIB:.0} MiB  {verdict}",
            s.gib,
            mb(s.volume_bytes),
            s.files,
            s.write_s,
            s.commit_s,
            mb(read) / s.commit_s.max(1e-9),
            u64_of(&s.commit, "new_objects"),
            mb(u64_of(&s.commit, "new_bytes_stored")),
            mib(s.rss_before_kib),
            mib(s.rss_peak_kib),
            s.rss_samples,
        ));
        rows.push(json!({
            "gib": s.gib,
            "volume_bytes": s.volume_bytes,
            "files": s.files,
            "commit_s": round3(s.commit_s),
            "rss_before_kib": s.rss_before_kib,
            "rss_peak_kib": s.rss_peak_kib,
            "rss_samples": s.rss_samples,
            "aim_rss_mib_max": AIM_COMMIT_RSS_MIB,
            "pass": pass,
            "commit": s.commit,
        }));
    }
    if let (Some(small), Some(large)) = (samples.first(), samples.last()) {
        if samples.len() > 1 {
            report.line(format!(
                "scale peak VmRSS growth from {} to {} GiB: {:+.1} MiB for {:.1}x the data (for information)",
                small.gib,
                large.gib,
                mib(large.rss_peak_kib) - mib(small.rss_peak_kib),
                large.volume_bytes as f64 / small.volume_bytes.max(1) as f64,
            ));
        }
    }
    report.json.insert("scale".into(), json!({ "sizes": rows }));
    Ok(())
}
