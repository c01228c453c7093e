//! Section `readpoint`: 1%-change commits of a loop volume a container keeps writing, dvol's read
//! point against `--pause`, and how long the writer is held up by each.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use dvol_tests::{Daemon, TEST_IMAGE};
use serde_json::json;

use crate::{
    api_timed, docker_run, median, round1, rounded, run_docker, Args, DockerCleanup, Report,
    BLOCK_VOLUME_SIZE, UPTIME_RESOLUTION_S,
};

/// Files of 1 MiB the read point volume holds; a 1% change rewrites 1% of them.
const READ_POINT_FILES: usize = 256;

/// The stamps (`/proc/uptime`, seconds) a writer container appended to `ticks`, in order.
fn ticks(path: &Path) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect())
}

/// Host's `/proc/uptime`: the clock the container's stamps use (one kernel).
fn uptime() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/uptime")?;
    text.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| anyhow!("unreadable /proc/uptime: {text:?}"))
}

/// The longest time between two stamps that spans part of `[from, to]`: how long the writer
/// was held up while the commit ran.
fn longest_gap(stamps: &[f64], from: f64, to: f64) -> f64 {
    stamps
        .windows(2)
        .filter(|w| w[1] >= from && w[0] <= to)
        .map(|w| w[1] - w[0])
        .fold(0.0, f64::max)
}

/// A container appends a stamp every 10 ms to a loop (silver) volume while 1%-change commits
/// run: dvol's commit reads the volume at a fixed point (on a root without reflink, its
/// filesystem frozen while read) against the peer `--pause` (the container paused around
/// the commit). Reports the commit time and the longest gap in the stamps for each.
pub fn run(
    args: &Args,
    report: &mut Report,
    daemon: &Daemon,
    cleanup: &mut DockerCleanup,
    run_id: &str,
) -> Result<()> {
    let name = format!("bench-rp-{run_id}");
    let label = cleanup.label.clone();
    cleanup.create_volume(
        &name,
        &daemon.driver,
        &[("profile", "silver"), ("size", BLOCK_VOLUME_SIZE)],
    )?;
    let fill = format!(
        "mkdir -p /data/f && i=0; while [ $i -lt {READ_POINT_FILES} ]; do \
         dd if=/dev/urandom of=/data/f/$i bs=1M count=1 2>/dev/null; i=$((i+1)); done"
    );
    docker_run(&name, &label, &["sh", "-c", &fill])?;
    let mount = format!("{name}:/data");
    let writer = run_docker(&[
        "run",
        "-d",
        "--init",
        "--network",
        "none",
        "--label",
        &label,
        "-v",
        &mount,
        TEST_IMAGE,
        "sh",
        "-c",
        "while true; do cat /proc/uptime >> /data/ticks; usleep 10000; done",
    ])?;
    let ticks_path = daemon.mountpoint(&name).join("ticks");
    let commit_path = format!("/v1/volumes/{name}/commits");
    api_timed(
        daemon,
        "POST",
        &commit_path,
        &json!({"message": "base"}),
        201,
    )?;

    let rounds = args.rounds.clamp(3, 9);
    let changed = (READ_POINT_FILES / 100).max(1);
    let mut rows: Vec<(&str, f64, f64)> = Vec::new();
    let mut read_from = String::new();
    for round in 0..rounds * 2 {
        let pause = (round % 2 == 1) ^ (round / 2 % 2 == 1);
        let rewrite = format!(
            "for i in $(seq {} {}); do dd if=/dev/urandom of=/data/f/$i bs=1M count=1 \
             conv=notrunc 2>/dev/null; done; sync",
            round * changed % READ_POINT_FILES,
            round * changed % READ_POINT_FILES + changed - 1
        );
        run_docker(&["exec", &writer, "sh", "-c", &rewrite])?;
        std::thread::sleep(Duration::from_millis(300));
        let from = uptime()?;
        let body = json!({"message": format!("round {round}"), "pause": pause});
        let (took, answer) = api_timed(daemon, "POST", &commit_path, &body, 201)?;
        let to = uptime()?;
        std::thread::sleep(Duration::from_millis(300));
        let gap = longest_gap(&ticks(&ticks_path)?, from, to);
        if !pause {
            read_from = answer["read_from"].as_str().unwrap_or_default().to_string();
        }
        rows.push((
            if pause { "pause" } else { "dvol" },
            took.as_secs_f64(),
            gap,
        ));
    }
    let baseline = {
        let stamps = ticks(&ticks_path)?;
        let end = stamps.last().copied().unwrap_or_default();
        std::thread::sleep(Duration::from_secs(2));
        longest_gap(&ticks(&ticks_path)?, end + 0.05, uptime()?)
    };
    run_docker(&["rm", "-f", &writer])?;
    cleanup.remove_volume(&name)?;

    let pick = |mode: &str, f: fn(&(&str, f64, f64)) -> f64| -> Vec<f64> {
        rows.iter().filter(|r| r.0 == mode).map(f).collect()
    };
    let (dvol_time, dvol_gap) = (
        median(&pick("dvol", |r| r.1)),
        median(&pick("dvol", |r| r.2)),
    );
    let (pause_time, pause_gap) = (
        median(&pick("pause", |r| r.1)),
        median(&pick("pause", |r| r.2)),
    );
    report.line(format!(
        "readpoint: a silver (loop ext4) volume of {READ_POINT_FILES} MiB in {READ_POINT_FILES} files, \
         a container appending a stamp every 10 ms; {changed} files rewritten per commit; \
         stamps from /proc/uptime ({UPTIME_RESOLUTION_S} s resolution); n={rounds} each, \
         alternating; longest gap between stamps while the commit ran (no commit: {:.0} ms)",
        baseline * 1e3
    ));
    report.line(format!(
        "readpoint commit 1%  dvol (read_from={read_from}) {:>6.0} ms, writer held up {:>6.0} ms | \
         --pause {:>6.0} ms, writer held up {:>6.0} ms | held-up ratio dvol/pause {:.2}",
        dvol_time * 1e3,
        dvol_gap * 1e3,
        pause_time * 1e3,
        pause_gap * 1e3,
        dvol_gap / pause_gap.max(f64::EPSILON)
    ));
    report.json.insert(
        "read_points".into(),
        json!({
            "files": READ_POINT_FILES,
            "changed_files": changed,
            "rounds": rounds,
            "read_from": read_from,
            "baseline_gap_ms": round1(baseline * 1e3),
            "dvol": {"commit_ms": rounded(&pick("dvol", |r| r.1 * 1e3)), "held_up_ms": rounded(&pick("dvol", |r| r.2 * 1e3))},
            "pause": {"commit_ms": rounded(&pick("pause", |r| r.1 * 1e3)), "held_up_ms": rounded(&pick("pause", |r| r.2 * 1e3))},
        }),
    );
    Ok(())
}
