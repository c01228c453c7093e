//! Section `throughput`: sequential write (fsync) and cold-cache read of a file inside a
//! container on silver and gold volumes against Docker's `local` driver on the same disk,
//! alternating; the aim is on the ratio of medians dvol/local.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use anyhow::{anyhow, ensure, Context, Result};
use dvol_tests::Daemon;
use serde_json::json;

use crate::{
    api_get, docker_run, median, opts_text, resolved, round1, round3, run_docker, sorted, Args,
    DockerCleanup, Report, BLOCK_VOLUME_SIZE, UPTIME_RESOLUTION_S,
};

/// A dvol volume writes at least this much of the `local` driver's speed...
const AIM_WRITE_RATIO: f64 = 0.90;
/// ... and reads at least as fast.
const AIM_READ_RATIO: f64 = 1.0;
/// The largest file `--throughput-mib` may ask for on a 1 GiB volume (ext4 keeps ~5% back).
pub const MAX_THROUGHPUT_MIB: usize = 900;

/// A volume driver the `throughput` section writes and reads through.
struct ThroughputCase {
    key: &'static str,
    /// Whether the volume is dvol's (else Docker's `local` driver).
    dvol: bool,
    opts: &'static [(&'static str, &'static str)],
}

const THROUGHPUT_CASES: [ThroughputCase; 3] = [
    ThroughputCase {
        key: "silver",
        dvol: true,
        opts: &[("profile", "silver"), ("size", BLOCK_VOLUME_SIZE)],
    },
    ThroughputCase {
        key: "gold",
        dvol: true,
        opts: &[("profile", "gold"), ("size", BLOCK_VOLUME_SIZE)],
    },
    ThroughputCase {
        key: "local",
        dvol: false,
        opts: &[],
    },
];

/// Writes dirty pages back and drops the host's page cache (all of it: the loop image's pages
/// and the pages of the filesystem inside), so the next read comes from the disk.
pub(crate) fn drop_caches() -> Result<()> {
    let status = Command::new("sync").status().context("run sync")?;
    ensure!(status.success(), "sync failed: {status}");
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("write /proc/sys/vm/drop_caches")
}

/// The clock a command run in a container was timed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContainerClock {
    /// busybox `adjtimex`: the kernel's wall clock, in microseconds.
    Adjtimex,
    /// `/proc/uptime`: monotonic, in hundredths of a second.
    Uptime,
}

/// Runs the shell command `command` in a container on `volume` and returns how long it took,
/// timed inside the container: container start and stop, which dwarf and blur a dd, are left
/// out. Busybox's `date` has no sub-second format, so two other clocks are read around the
/// command: `/proc/uptime` by the shell's builtin `read` (monotonic, 10 ms steps) and, inside
/// that, busybox `adjtimex` (the wall clock in microseconds; a short process each time, about a
/// millisecond). The microsecond figure is used when the image has the applet and it agrees
/// with the uptime figure to within the latter's resolution (a wall-clock step would not);
/// otherwise the uptime figure.
fn timed_in_container(volume: &str, label: &str, command: &str) -> Result<(f64, ContainerClock)> {
    let script = format!(
        "read u0 rest < /proc/uptime; busybox adjtimex 2>/dev/null; {command} || exit 1; \
         busybox adjtimex 2>/dev/null; read u1 rest < /proc/uptime; echo \"uptime $u0 $u1\""
    );
    let (_, out) = docker_run(volume, label, &["sh", "-c", &script])?;
    let numbers = |text: &str| -> Vec<f64> {
        text.split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect()
    };
    let uptimes = out
        .lines()
        .find_map(|l| l.strip_prefix("uptime "))
        .map(numbers)
        .filter(|v| v.len() == 2)
        .ok_or_else(|| anyhow!("container printed {out:?}, without the two uptimes"))?;
    let uptime = uptimes[1] - uptimes[0];
    let field = |key: &str| -> Vec<f64> {
        out.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .flat_map(numbers)
            .collect()
    };
    let (secs, usecs) = (field("time.tv_sec:"), field("time.tv_usec:"));
    if secs.len() == 2 && usecs.len() == 2 {
        let wall = (secs[1] - secs[0]) + (usecs[1] - usecs[0]) / 1e6;
        if wall > 0.0 && (wall - uptime).abs() <= 3.0 * UPTIME_RESOLUTION_S {
            return Ok((wall, ContainerClock::Adjtimex));
        }
    }
    ensure!(
        uptime >= UPTIME_RESOLUTION_S,
        "`{command}` took under {UPTIME_RESOLUTION_S} s, too short to time with /proc/uptime; raise --throughput-mib"
    );
    Ok((uptime, ContainerClock::Uptime))
}

/// Section `throughput`: per round and driver (the order rotating each round), a fresh volume,
/// a sequential write with fsync and, after dropping the host's caches, a sequential read.
pub fn run(
    args: &Args,
    report: &mut Report,
    daemon: &Daemon,
    cleanup: &mut DockerCleanup,
    run_id: &str,
) -> Result<()> {
    let mib = args.throughput_mib;
    let bytes = (mib as f64) * 1024.0 * 1024.0;
    let write = format!("dd if=/dev/zero of=/data/f bs=1M count={mib} conv=fsync");
    let read = "dd if=/data/f of=/dev/null bs=1M";
    let profiles = api_get(daemon, "/v1/profiles")?;
    let docker_root = run_docker(&["info", "--format", "{{.DockerRootDir}}"])?;
    let same_fs = std::fs::metadata(&daemon.root)?.dev() == std::fs::metadata(&docker_root)?.dev();
    let label = cleanup.label.clone();
    let cases = THROUGHPUT_CASES.len();
    let mut write_mbs: Vec<Vec<f64>> = vec![Vec::new(); cases];
    let mut read_mbs: Vec<Vec<f64>> = vec![Vec::new(); cases];
    let mut resolutions = vec!["docker local".to_string(); cases];
    // How many of the timings had the microsecond clock (the others: /proc/uptime).
    let mut fine_clock = 0;
    for round in 0..args.throughput_rounds {
        let mut figures = Vec::new();
        for c in (0..cases).map(|k| (k + round) % cases) {
            let case = &THROUGHPUT_CASES[c];
            let volume = format!("dvolbench-{run_id}-tp-{}-{round}", case.key);
            let driver = if case.dvol { &daemon.driver } else { "local" };
            cleanup.create_volume(&volume, driver, case.opts)?;
            if case.dvol && round == 0 {
                resolutions[c] = resolved(daemon, &profiles, &volume)?;
            }
            drop_caches()?;
            let (w_seconds, w_clock) = timed_in_container(&volume, &label, &write)?;
            drop_caches()?;
            let (r_seconds, r_clock) = timed_in_container(&volume, &label, read)?;
            let (w, r) = (bytes / 1e6 / w_seconds, bytes / 1e6 / r_seconds);
            fine_clock += usize::from(w_clock == ContainerClock::Adjtimex)
                + usize::from(r_clock == ContainerClock::Adjtimex);
            cleanup.remove_volume(&volume)?;
            figures.push(format!("{} write {w:>6.0} read {r:>6.0}", case.key));
            write_mbs[c].push(w);
            read_mbs[c].push(r);
        }
        eprintln!("  round {:>2} (MB/s): {}", round + 1, figures.join("  "));
    }

    let timings = 2 * cases * args.throughput_rounds;
    report.line(format!(
        "throughput: {mib} MiB sequential in a container, dd bs=1M: write from /dev/zero with conv=fsync, then read to /dev/null after sync + drop_caches on the host; a fresh {BLOCK_VOLUME_SIZE} volume per driver and round; {} rounds, the driver order rotating each round; timed inside the container ({fine_clock} of {timings} timings by busybox adjtimex in us, the rest by /proc/uptime in 10 ms steps); MB = 10^6 bytes; dvol root and Docker root {docker_root} on the same filesystem: {}",
        args.throughput_rounds,
        if same_fs { "yes" } else { "NO" }
    ));
    let local = cases - 1;
    let (local_write, local_read) = (median(&write_mbs[local]), median(&read_mbs[local]));
    let mut json_cases = serde_json::Map::new();
    let mut ratio_lines = Vec::new();
    for (c, case) in THROUGHPUT_CASES.iter().enumerate() {
        let (w, r) = (median(&write_mbs[c]), median(&read_mbs[c]));
        let range = |v: &[f64]| {
            let s = sorted(v);
            format!("{:.0}-{:.0}", s[0], s[s.len() - 1])
        };
        report.line(format!(
            "throughput {:<7} {:<22} write median {w:>6.0} MB/s (range {:>9})  read median {r:>6.0} MB/s (range {:>9})",
            case.key,
            resolutions[c],
            range(&write_mbs[c]),
            range(&read_mbs[c]),
        ));
        let mut value = json!({
            "driver": if case.dvol { "dvol" } else { "local" },
            "options": opts_text(case.opts),
            "resolved": resolutions[c],
            "write_median_mb_s": round1(w),
            "read_median_mb_s": round1(r),
            "write_samples_mb_s": write_mbs[c].iter().copied().map(round1).collect::<Vec<_>>(),
            "read_samples_mb_s": read_mbs[c].iter().copied().map(round1).collect::<Vec<_>>(),
        });
        if case.dvol {
            for (what, ratio, aim) in [
                ("write", w / local_write, AIM_WRITE_RATIO),
                ("read", r / local_read, AIM_READ_RATIO),
            ] {
                // Judged as printed, so that a 0.900 never reads MISS.
                let ratio = round3(ratio);
                let pass = ratio >= aim;
                value[format!("{what}_ratio_to_local")] = json!(ratio);
                value[format!("{what}_pass")] = json!(pass);
                ratio_lines.push((case.key, what, ratio, aim, pass));
            }
        }
        json_cases.insert(case.key.to_string(), value);
    }
    for (driver, what, ratio, aim, pass) in ratio_lines {
        let verdict = report.aim(&format!("throughput {driver} {what}"), pass);
        report.line(format!(
            "throughput ratio {:<12} {what:<5} of medians {ratio:.3}  aim >= {aim:.2}  {verdict}",
            format!("{driver}/local")
        ));
    }
    report.json.insert(
        "throughput".into(),
        json!({
            "rounds": args.throughput_rounds,
            "mib": mib,
            "size": BLOCK_VOLUME_SIZE,
            "same_filesystem_as_docker_root": same_fs,
            "timings_by_adjtimex_us_clock": fine_clock,
            "timings_by_proc_uptime": timings - fine_clock,
            "aim_write_ratio_min": AIM_WRITE_RATIO,
            "aim_read_ratio_min": AIM_READ_RATIO,
            "cases": json_cases,
        }),
    );
    Ok(())
}
