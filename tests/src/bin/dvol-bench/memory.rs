//! Section `memory`: the daemon's resident memory (VmRSS) idle and with the N volumes; and
//! [`RssSampler`], which the `history` and `scale` sections use to find the daemon's peak
//! resident memory during one call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use crate::{round3, Args, Report};

const AIM_RSS_MIB: f64 = 30.0;

/// Resident memory of a process from /proc/<pid>/status, in KiB: (VmRSS, VmHWM).
pub fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status (did the daemon exit?)"))?;
    let field = |key: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// VmRSS after letting the daemon settle.
pub fn settled_rss_kib(pid: u32) -> Result<u64> {
    std::thread::sleep(Duration::from_millis(300));
    Ok(rss_kib(pid)?.0)
}

/// How often [`RssSampler`] reads VmRSS.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// Reads a process's VmRSS every 10 ms on a thread of its own until stopped: the largest value
/// seen is the process's peak resident memory during what ran meanwhile (VmHWM could not say
/// it: it is the peak since the process started).
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(u64, usize)>>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Result<RssSampler> {
        let first = rss_kib(pid)?.0;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut peak, mut samples) = (first, 1);
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(RSS_SAMPLE_INTERVAL);
                peak = peak.max(rss_kib(pid)?.0);
                samples += 1;
            }
            Ok((peak, samples))
        });
        Ok(RssSampler { stop, thread })
    }

    /// Stops sampling: the largest VmRSS seen, in KiB, and how many samples it is the largest of.
    pub fn stop(self) -> Result<(u64, usize)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the VmRSS sampling thread panicked"))?
    }
}

/// KiB as MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Section `memory`: judges the largest VmRSS of `points` (taken with the volumes).
pub fn run(
    args: &Args,
    report: &mut Report,
    idle_rss: u64,
    peak_rss: u64,
    points: &[(&str, &str, u64)],
) {
    let with_volumes = points.iter().map(|&(_, _, kib)| kib).max().unwrap_or(0);
    let rss_pass = mib(with_volumes) < AIM_RSS_MIB;
    let detail: Vec<String> = points
        .iter()
        .map(|(_, label, kib)| format!("{label} {:.1}", mib(*kib)))
        .collect();
    report.line(format!(
        "memory RSS idle, no volumes            {:>6.1} MiB  (for information)",
        mib(idle_rss)
    ));
    let verdict = report.aim("RSS", rss_pass);
    report.line(format!(
        "memory RSS with {:>5} volumes          {:>6.1} MiB  aim < {AIM_RSS_MIB:.0} MiB  {verdict}   ({}; the largest is judged)",
        args.volumes,
        mib(with_volumes),
        detail.join(", ")
    ));
    report.line(format!(
        "memory peak RSS (VmHWM) up to here      {:>6.1} MiB  (for information)",
        mib(peak_rss)
    ));
    let mut value = json!({
        "idle_rss_kib": idle_rss,
        "rss_with_volumes_kib": with_volumes,
        "rss_with_volumes_mib": round3(mib(with_volumes)),
        "peak_rss_kib": peak_rss,
        "aim_rss_mib_max": AIM_RSS_MIB,
        "pass": rss_pass,
    });
    for (key, _, kib) in points {
        value[*key] = json!(kib);
    }
    report.json.insert("memory".into(), value);
}
