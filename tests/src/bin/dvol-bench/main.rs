//! `dvol-bench`: measures a real `dvol daemon` against its performance aims.
//!
//! Sections (all by default; `--only plugin,docker,...` picks some):
//! - `plugin`: plugin calls over the unix socket with N volumes (default 1,000): p50/p99 latency
//!   of Get, Path, Mount+Unmount and List (Create and Remove are reported for information).
//! - `docker`: `docker run --rm --network none -v VOL:/data IMG true` with the dvol driver
//!   against Docker's `local` driver, alternating in one run; the aim is on the ratio of medians.
//! - `memory`: the daemon's resident memory (VmRSS) idle and with the N volumes.
//! - `backends`: Create+Mount latency through the plugin socket per backend (directory, loop
//!   ext4, loop xfs, preallocated loop xfs; 1 GiB), round-robin; the ratio to directory.
//! - `throughput`: sequential write (fsync) and cold-cache read of a file inside a container on
//!   silver and gold volumes against Docker's `local` driver on the same disk, alternating; the
//!   aim is on the ratio of medians dvol/local.
//! - `history`: a bronze volume of `--history-gib` GiB (default 2) of mixed data; `dvol commit`
//!   (REST) against `cp -a` + `sync -f` (what ClusterHQ dvol did per commit) and `restic backup`
//!   after changing 0.1%, 1%, 10% and 100% of the bytes; the history store's size after ten
//!   1%-change commits; checkout time against the size of the difference; the first commit
//!   and a checkout that rewrites everything against `cp -a` and the physical limits (disk
//!   read and durable write, blake3, zstd and FastCDC per core) measured in the same run.
//! - `scale`: the first commit of a bronze volume of each `--scale-gib` size (default 2,20) of
//!   the history section's data; the daemon's peak resident memory while it runs (VmRSS every
//!   10 ms) against a fixed bound at every size.
//! - `transfer`: two hosts in network namespaces with TLS daemons; a bronze volume of
//!   `--transfer-gib` GiB (default: `--history-gib`) of the history section's data; `dvol push`
//!   against `rsync -a --delete` to an rsync daemon, alternating in one run: the first full
//!   transfer, `--transfer-rounds` rounds (default 3) after a 1% change, a push with nothing
//!   new and a 1% round over a link shaped to 1 Gbit/s; wall time, bytes on the wire (veth
//!   counters) and the daemons' peak memory.
//! - `database`: PostgreSQL 15 on a silver volume, pgbench at `--database-scale` (default 100,
//!   about 1.5 GiB), on an XFS root (commits by changed ranges; a bronze volume there too) and
//!   on the host's root;
//!   `--database-rounds` rounds (default 5) of `--database-seconds` of pgbench (default 30),
//!   each followed by a commit and `restic backup` of the same data and a checkout of the
//!   previous commit: bytes read per byte stored, commit time against restic and the disk,
//!   bytes a checkout wrote per byte that differs.
//! - `cluster`: Mount p99 of a daemon in a cluster (a real etcd) against one alone, and a load
//!   run of `--cluster-nodes` simulated nodes (default 1,000) and `--cluster-volumes` volumes
//!   (default 10,000) on one etcd: create and owner-change p99, writes per second at steady
//!   state, etcd's database size, and the projection to 10^6 volumes.
//!
//! The machine is shared and noisy, so only percentiles, medians and ratios are reported. A
//! missed aim is reported as MISS and does not change the exit status; a step that fails does
//! (non-zero).
//!
//! Usage: see [`USAGE`]. `DVOL_BIN` names the daemon binary.

mod backends;
mod cluster;
mod database;
mod docker;
mod history;
mod limits;
mod memory;
mod plugin;
mod readpoint;
mod scale;
mod throughput;
mod transfer;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use dvol_tests::{docker_ready, dvol_bin, http_unix, Daemon, HttpResponse, TEST_IMAGE};
use serde_json::{json, Value};

const USAGE: &str = "usage: dvol-bench [--only SECTION,...] [--volumes N] [--rounds N] \
[--warmups N] [--samples N] [--mount-samples N] [--list-samples N] [--backend-samples N] \
[--throughput-rounds N] [--throughput-mib N] [--history-gib X] [--transfer-gib X] \
[--transfer-rounds N] [--scale-gib X,...] [--database-scale N] [--database-rounds N] \
[--database-seconds N] [--cluster-mounts N] [--cluster-nodes N] [--cluster-volumes N] \
[--cluster-seconds N] [--json PATH]
sections: plugin, docker, memory, backends, throughput, history, readpoint, scale, transfer, \
database, cluster \
(default: all)";

/// Size of the block volumes of the `backends`, `throughput` and `readpoint` sections.
const BLOCK_VOLUME_SIZE: &str = "1G";
/// `/proc/uptime`, the clock read inside the container, counts in hundredths of a second.
const UPTIME_RESOLUTION_S: f64 = 0.01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Plugin,
    Docker,
    Memory,
    Backends,
    Throughput,
    History,
    ReadPoint,
    Scale,
    Transfer,
    Database,
    Cluster,
}

impl Section {
    const ALL: [Section; 11] = [
        Section::Plugin,
        Section::Docker,
        Section::Memory,
        Section::Backends,
        Section::Throughput,
        Section::History,
        Section::ReadPoint,
        Section::Scale,
        Section::Transfer,
        Section::Database,
        Section::Cluster,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Plugin => "plugin",
            Section::Docker => "docker",
            Section::Memory => "memory",
            Section::Backends => "backends",
            Section::Throughput => "throughput",
            Section::History => "history",
            Section::ReadPoint => "readpoint",
            Section::Scale => "scale",
            Section::Transfer => "transfer",
            Section::Database => "database",
            Section::Cluster => "cluster",
        }
    }

    /// Parses `plugin,docker,...` into sections in run order, without repeats.
    fn parse_list(list: &str) -> Result<Vec<Section>> {
        let mut wanted = Vec::new();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let section = Section::ALL
                .into_iter()
                .find(|s| s.name() == word)
                .ok_or_else(|| anyhow!("--only: unknown section {word:?}\n{USAGE}"))?;
            wanted.push(section);
        }
        ensure!(
            !wanted.is_empty(),
            "--only needs at least one section\n{USAGE}"
        );
        Ok(Section::ALL
            .into_iter()
            .filter(|s| wanted.contains(s))
            .collect())
    }
}

#[derive(Debug, Clone)]
struct Args {
    sections: Vec<Section>,
    volumes: usize,
    rounds: usize,
    warmups: usize,
    samples: usize,
    mount_samples: usize,
    list_samples: usize,
    backend_samples: usize,
    throughput_rounds: usize,
    throughput_mib: usize,
    history_gib: f64,
    /// The `transfer` section's volume size; `history_gib` unless given.
    transfer_gib: Option<f64>,
    transfer_rounds: usize,
    /// The `scale` section's volume sizes, in GiB.
    scale_gib: Vec<f64>,
    /// The `database` section's pgbench scale, rounds and seconds of pgbench per round.
    database_scale: u64,
    database_rounds: usize,
    database_seconds: u64,
    /// The `cluster` section's Mount calls per daemon, simulated nodes and volumes, and the
    /// steady-state window in seconds.
    cluster_mounts: usize,
    cluster_nodes: usize,
    cluster_volumes: usize,
    cluster_seconds: u64,
    json: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            sections: Section::ALL.to_vec(),
            volumes: 1_000,
            rounds: 15,
            warmups: 2,
            samples: 2_000,
            mount_samples: 500,
            list_samples: 200,
            backend_samples: 15,
            throughput_rounds: 9,
            throughput_mib: 512,
            history_gib: 2.0,
            transfer_gib: None,
            transfer_rounds: 3,
            scale_gib: vec![2.0, 20.0],
            database_scale: 100,
            database_rounds: 5,
            database_seconds: 30,
            cluster_mounts: 300,
            cluster_nodes: 1_000,
            cluster_volumes: 10_000,
            cluster_seconds: 30,
            json: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = it
                .next()
                .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))?;
            let number = || -> Result<usize> {
                let n: usize = value
                    .parse()
                    .with_context(|| format!("{flag} {value:?}: not a number\n{USAGE}"))?;
                ensure!(n > 0, "{flag} must be at least 1");
                Ok(n)
            };
            match flag.as_str() {
                "--only" => args.sections = Section::parse_list(&value)?,
                "--volumes" => args.volumes = number()?,
                "--rounds" => args.rounds = number()?,
                "--warmups" => {
                    args.warmups = value
                        .parse()
                        .with_context(|| format!("--warmups {value:?}: not a number"))?
                }
                "--samples" => args.samples = number()?,
                "--mount-samples" => args.mount_samples = number()?,
                "--list-samples" => args.list_samples = number()?,
                "--backend-samples" => args.backend_samples = number()?,
                "--throughput-rounds" => args.throughput_rounds = number()?,
                "--throughput-mib" => {
                    args.throughput_mib = number()?;
                    ensure!(
                        args.throughput_mib <= throughput::MAX_THROUGHPUT_MIB,
                        "--throughput-mib must be at most {} (the volumes are {BLOCK_VOLUME_SIZE})",
                        throughput::MAX_THROUGHPUT_MIB
                    );
                }
                "--history-gib" => args.history_gib = gib_value(&flag, &value)?,
                "--transfer-gib" => args.transfer_gib = Some(gib_value(&flag, &value)?),
                "--transfer-rounds" => args.transfer_rounds = number()?,
                "--scale-gib" => {
                    args.scale_gib = value
                        .split(',')
                        .map(|gib| gib_value(&flag, gib.trim()))
                        .collect::<Result<_>>()?
                }
                "--database-scale" => args.database_scale = number()? as u64,
                "--database-rounds" => args.database_rounds = number()?,
                "--database-seconds" => args.database_seconds = number()? as u64,
                "--cluster-mounts" => args.cluster_mounts = number()?,
                "--cluster-nodes" => args.cluster_nodes = number()?,
                "--cluster-volumes" => args.cluster_volumes = number()?,
                "--cluster-seconds" => args.cluster_seconds = number()? as u64,
                "--json" => args.json = Some(PathBuf::from(&value)),
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        Ok(args)
    }

    fn runs(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }

    /// Whether the run creates the N volumes (the plugin and memory sections share them).
    fn needs_volumes(&self) -> bool {
        self.runs(Section::Plugin) || self.runs(Section::Memory)
    }
}

/// A volume size in GiB for `flag`: a number between 0.01 and 64.
fn gib_value(flag: &str, value: &str) -> Result<f64> {
    let gib: f64 = value
        .parse()
        .with_context(|| format!("{flag} {value:?}: not a number"))?;
    ensure!(
        gib.is_finite() && (0.01..=64.0).contains(&gib),
        "{flag} must be between 0.01 and 64"
    );
    Ok(gib)
}

// ---------------------------------------------------------------------------------------------
// Figures: percentiles, medians, rounding.

/// Percentiles of one measured quantity, in the unit of the values they were taken from.
#[derive(Debug, Clone)]
struct Stats {
    samples: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Stats {
        let sorted = sorted(values);
        Stats {
            samples: sorted.len(),
            p50: percentile(&sorted, 50.0),
            p90: percentile(&sorted, 90.0),
            p99: percentile(&sorted, 99.0),
            max: *sorted.last().expect("at least one sample"),
        }
    }
}

/// Latency percentiles in microseconds.
fn stats(samples: &[Duration]) -> Stats {
    Stats::of(&micros(samples))
}

fn micros(samples: &[Duration]) -> Vec<f64> {
    samples.iter().map(|d| d.as_secs_f64() * 1e6).collect()
}

fn millis(samples: &[Duration]) -> Vec<f64> {
    samples.iter().map(|d| d.as_secs_f64() * 1e3).collect()
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median: the middle value, or the mean of the middle two.
fn median(values: &[f64]) -> f64 {
    let sorted = sorted(values);
    let n = sorted.len();
    assert!(n > 0, "median of no values");
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The 10th and 90th percentiles.
fn spread(values: &[f64]) -> (f64, f64) {
    let sorted = sorted(values);
    (percentile(&sorted, 10.0), percentile(&sorted, 90.0))
}

fn stats_json(s: &Stats) -> Value {
    json!({
        "samples": s.samples,
        "p50_us": round1(s.p50),
        "p90_us": round1(s.p90),
        "p99_us": round1(s.p99),
        "max_us": round1(s.max),
    })
}

fn rounded(values: &[f64]) -> Vec<f64> {
    values.iter().copied().map(round3).collect()
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// The report: plain-text lines and the same figures as JSON.
struct Report {
    lines: Vec<String>,
    json: serde_json::Map<String, Value>,
    aims: Vec<(String, bool)>,
}

impl Report {
    fn line(&mut self, text: String) {
        eprintln!("{text}");
        self.lines.push(text);
    }

    fn aim(&mut self, name: &str, pass: bool) -> &'static str {
        self.aims.push((name.to_string(), pass));
        verdict(pass)
    }

    fn latency(&mut self, key: &str, label: &str, s: &Stats, aim_p99_us: Option<f64>) {
        let aim = match aim_p99_us {
            Some(aim) => {
                let pass = s.p99 < aim;
                format!("aim p99 < {aim:>6.0} us  {}", self.aim(label, pass))
            }
            None => "(no aim; for information)".to_string(),
        };
        self.line(format!(
            "plugin {label:<24} n={:<5} p50 {:>8.1} us  p90 {:>8.1} us  p99 {:>8.1} us  max {:>9.1} us  {aim}",
            s.samples, s.p50, s.p90, s.p99, s.max
        ));
        let mut value = stats_json(s);
        if let Some(aim) = aim_p99_us {
            value["aim_p99_us"] = json!(aim);
            value["pass"] = json!(s.p99 < aim);
        }
        self.json
            .entry("plugin_calls")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .insert(key.to_string(), value);
    }
}

// ---------------------------------------------------------------------------------------------
// The plugin socket.

/// Calls a plugin method on a new connection (as the harness does), times the round trip and
/// checks the answer: HTTP 200 and no `Err`. Returns the time and the parsed body.
fn timed_call(socket: &Path, path: &str, body: &[u8]) -> Result<(Duration, Value)> {
    let start = Instant::now();
    let response = http_unix(socket, "POST", path, body);
    let took = start.elapsed();
    let response = response.with_context(|| format!("plugin call {path}"))?;
    Ok((took, checked(path, &response)?))
}

fn checked(path: &str, response: &HttpResponse) -> Result<Value> {
    let body = response.json();
    ensure!(
        response.status == 200,
        "plugin call {path}: HTTP {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    if let Some(err) = body.get("Err").and_then(Value::as_str) {
        ensure!(err.is_empty(), "plugin call {path}: Err {err:?}");
    }
    Ok(body)
}

fn volume_name(i: usize) -> String {
    format!("bench-{i:05}")
}

fn name_body(name: &str) -> Vec<u8> {
    json!({ "Name": name }).to_string().into_bytes()
}

/// A GET on the daemon's REST API, answered with 200.
fn api_get(daemon: &Daemon, path: &str) -> Result<Value> {
    let response = http_unix(&daemon.api_socket, "GET", path, b"")
        .with_context(|| format!("API GET {path}"))?;
    ensure!(
        response.status == 200,
        "API GET {path}: HTTP {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    Ok(response.json())
}

/// What a volume resolved to, e.g. `directory`, `loop ext4 sparse`, `loop xfs preallocated`,
/// from the REST API (`profiles` is the answer of `GET /v1/profiles`).
fn resolved(daemon: &Daemon, profiles: &Value, name: &str) -> Result<String> {
    let volume = api_get(daemon, &format!("/v1/volumes/{name}"))?;
    let backend = volume["backend"]
        .as_str()
        .ok_or_else(|| anyhow!("volume {name} has no backend: {volume}"))?;
    let mut text = backend.to_string();
    if let Some(fs) = volume["filesystem"].as_str() {
        text = format!("{text} {fs}");
    }
    if backend == "loop" {
        let preallocated = profiles
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == volume["profile"]))
            .and_then(|p| p["preallocate"].as_bool())
            .unwrap_or(false);
        text += if preallocated {
            " preallocated"
        } else {
            " sparse"
        };
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------------
// Docker.

/// Runs `docker ARGS`, timing it; fails unless it succeeds. Returns the time and trimmed stdout.
fn timed_docker(args: &[&str]) -> Result<(Duration, String)> {
    let start = Instant::now();
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("run docker")?;
    let took = start.elapsed();
    ensure!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok((
        took,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

fn run_docker(args: &[&str]) -> Result<String> {
    timed_docker(args).map(|(_, out)| out)
}

/// `docker run --rm --network none` of the test image with `volume` at /data and `command`.
fn docker_run(volume: &str, label: &str, command: &[&str]) -> Result<(Duration, String)> {
    let mount = format!("{volume}:/data");
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        label,
        "-v",
        &mount,
        TEST_IMAGE,
    ];
    args.extend_from_slice(command);
    timed_docker(&args)
}

/// Removes the containers and Docker volumes of this run when dropped (also on error and
/// panic). Declared after the daemon so it runs while the daemon still answers.
struct DockerCleanup {
    label: String,
    volumes: Vec<String>,
    done: bool,
}

impl DockerCleanup {
    /// Creates a Docker volume with `driver` and `-o KEY=VALUE` options, to be removed later.
    fn create_volume(&mut self, name: &str, driver: &str, opts: &[(&str, &str)]) -> Result<()> {
        self.volumes.push(name.to_string());
        let opts: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["volume", "create", "-d", driver];
        for opt in &opts {
            args.extend(["-o", opt.as_str()]);
        }
        args.push(name);
        run_docker(&args).map(drop)
    }

    /// Removes a Docker volume made by [`DockerCleanup::create_volume`].
    fn remove_volume(&mut self, name: &str) -> Result<()> {
        run_docker(&["volume", "rm", name])?;
        self.volumes.retain(|v| v != name);
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        self.done = true;
        let mut problems = Vec::new();
        let filter = format!("label={}", self.label);
        match run_docker(&["ps", "-aq", "--filter", &filter]) {
            Ok(ids) => {
                for id in ids.lines().filter(|l| !l.is_empty()) {
                    if let Err(e) = run_docker(&["rm", "-f", id]) {
                        problems.push(e.to_string());
                    }
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
        for volume in std::mem::take(&mut self.volumes) {
            if let Err(e) = run_docker(&["volume", "rm", "-f", &volume]) {
                problems.push(e.to_string());
            }
        }
        ensure!(problems.is_empty(), "cleanup: {}", problems.join("; "));
        Ok(())
    }
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.run() {
                eprintln!("dvol-bench: {e:#}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("dvol-bench: FAILED: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse()?;
    ensure!(
        dvol_tests::is_root(),
        "dvol-bench needs root (the daemon bind-mounts volumes)"
    );
    ensure!(
        docker_ready(),
        "the Docker Engine does not answer or the test image {TEST_IMAGE} could not be built \
         (start it with scripts/start-dockerd.sh)"
    );
    let bin = dvol_bin();
    ensure!(
        bin.exists(),
        "{} not found; build with `cargo build --release -p dvol`",
        bin.display()
    );
    let docker_version = run_docker(&["version", "--format", "{{.Server.Version}}"])?;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let sections: Vec<&str> = args.sections.iter().map(|s| s.name()).collect();

    let mut report = Report {
        lines: Vec::new(),
        json: serde_json::Map::new(),
        aims: Vec::new(),
    };
    report.line(format!(
        "dvol benchmark: sections {}; dockerd {docker_version}; {cpus} CPUs",
        sections.join(",")
    ));
    report.line(format!("daemon binary: {}", bin.display()));
    report.json.insert(
        "config".into(),
        json!({
            "sections": sections,
            "volumes": args.volumes,
            "rounds": args.rounds,
            "warmups": args.warmups,
            "samples_get_path": args.samples,
            "samples_mount_unmount": args.mount_samples,
            "samples_list": args.list_samples,
            "samples_backends": args.backend_samples,
            "throughput_rounds": args.throughput_rounds,
            "throughput_mib": args.throughput_mib,
            "history_gib": args.history_gib,
            "transfer_gib": args.transfer_gib.unwrap_or(args.history_gib),
            "transfer_rounds": args.transfer_rounds,
            "scale_gib": args.scale_gib,
            "docker_version": docker_version,
            "cpus": cpus,
            "daemon_binary": bin.display().to_string(),
        }),
    );

    // The daemon is declared first so the Docker cleanup (declared after) drops first, while
    // the daemon still answers the engine's Remove calls.
    let mut daemon = Daemon::start_for_docker();
    let run_id = daemon.driver["dvol-e2e-".len()..].to_string();
    let mut cleanup = DockerCleanup {
        label: format!("dvol-bench={run_id}"),
        volumes: Vec::new(),
        done: false,
    };
    let pid = daemon.pid();
    let outcome = measure(&args, &mut report, &mut daemon, &mut cleanup, &run_id);
    if outcome.is_err() && !cleanup.done {
        // Docker can only forget a plugin volume while the plugin answers: bring a dead daemon
        // back on the same state (and sockets) before cleaning up.
        if !alive(pid) {
            eprintln!("dvol-bench: the daemon died; restarting it on the same state to clean up");
            daemon.kill9();
            daemon.spawn();
        }
        if let Err(e) = cleanup.run() {
            eprintln!("dvol-bench: {e:#}");
        }
    }
    outcome?;

    let passed = report.aims.iter().filter(|(_, p)| *p).count();
    let missed: Vec<String> = report
        .aims
        .iter()
        .filter(|(_, p)| !*p)
        .map(|(n, _)| n.clone())
        .collect();
    report.line(format!(
        "summary: {} aims, {passed} PASS, {} MISS{}",
        report.aims.len(),
        missed.len(),
        if missed.is_empty() {
            String::new()
        } else {
            format!(" ({})", missed.join(", "))
        }
    ));
    report.json.insert(
        "summary".into(),
        json!({"aims": report.aims.len(), "passed": passed, "missed": missed}),
    );

    println!();
    println!("==== dvol-bench report ====");
    for line in &report.lines {
        println!("{line}");
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&Value::Object(report.json.clone()))?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("write JSON report {}", path.display()))?;
        println!("JSON report written to {}", path.display());
    }
    Ok(())
}

/// Whether process `pid` runs (exists and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|state| !state.trim_start().starts_with('Z'))
    })
}

/// Runs the chosen sections against `daemon`, adding to `report`, then removes every
/// container and volume and stops the daemon.
fn measure(
    args: &Args,
    report: &mut Report,
    daemon: &mut Daemon,
    cleanup: &mut DockerCleanup,
    run_id: &str,
) -> Result<()> {
    let pid = daemon.pid();
    let socket = daemon.plugin_socket.clone();
    report.line(format!(
        "daemon pid {pid}, driver {}, root {}",
        daemon.driver,
        daemon.root.display()
    ));

    // Memory checkpoints: (JSON key, label, VmRSS KiB). Idle first, before any volume.
    let idle_rss = memory::settled_rss_kib(pid)?;
    let mut rss_points: Vec<(&str, &str, u64)> = Vec::new();

    let names: Vec<String> = if args.needs_volumes() {
        (0..args.volumes).map(volume_name).collect()
    } else {
        Vec::new()
    };
    let bodies: Vec<Vec<u8>> = names.iter().map(|n| name_body(n)).collect();
    if args.needs_volumes() {
        let mut create = Vec::with_capacity(args.volumes);
        for name in &names {
            let body = json!({ "Name": name, "Opts": null }).to_string();
            let (took, _) = timed_call(&socket, "/VolumeDriver.Create", body.as_bytes())?;
            create.push(took);
        }
        if args.runs(Section::Plugin) {
            report.line(format!(
                "plugin calls: {} volumes; Get/Path n={}, Mount+Unmount n={}, List n={}; one round trip each, on a new unix-socket connection per call (connect + HTTP + JSON), as the harness calls; keep-alive lines reuse one connection as the engine's Go client does",
                args.volumes, args.samples, args.mount_samples, args.list_samples
            ));
            report.latency("create", "Create", &stats(&create), None);
        }
        rss_points.push((
            "rss_after_create_kib",
            "after create",
            memory::settled_rss_kib(pid)?,
        ));
    }

    if args.runs(Section::Plugin) {
        plugin::run(args, report, daemon, &names, &bodies)?;
        rss_points.push((
            "rss_after_plugin_calls_kib",
            "after plugin calls",
            memory::settled_rss_kib(pid)?,
        ));
    }
    if args.runs(Section::Docker) {
        docker::run(args, report, daemon, cleanup, run_id)?;
    }
    if args.runs(Section::Memory) {
        let (end_rss, peak_rss) = memory::rss_kib(pid)?;
        rss_points.push(if args.runs(Section::Docker) {
            ("rss_after_docker_runs_kib", "after docker runs", end_rss)
        } else {
            ("rss_at_end_kib", "at the end", end_rss)
        });
        memory::run(args, report, idle_rss, peak_rss, &rss_points);
    }
    if args.needs_volumes() {
        let mut remove = Vec::with_capacity(args.volumes);
        for body in &bodies {
            let (took, _) = timed_call(&socket, "/VolumeDriver.Remove", body)?;
            remove.push(took);
        }
        if args.runs(Section::Plugin) {
            report.latency("remove", "Remove", &stats(&remove), None);
        }
    }
    if args.runs(Section::Backends) {
        backends::run(args, report, daemon)?;
    }
    if args.runs(Section::Throughput) {
        throughput::run(args, report, daemon, cleanup, run_id)?;
    }
    if args.runs(Section::History) {
        history::run(args, report, daemon, run_id)?;
    }
    if args.runs(Section::ReadPoint) {
        readpoint::run(args, report, daemon, cleanup, run_id)?;
    }
    if args.runs(Section::Scale) {
        scale::run(args, report, daemon, run_id)?;
    }
    if args.runs(Section::Transfer) {
        transfer::run(args, report, run_id)?;
    }
    if args.runs(Section::Database) {
        database::run(args, report, run_id)?;
    }
    if args.runs(Section::Cluster) {
        cluster::run(args, report)?;
    }

    // --- Cleanup: containers and Docker volumes, then the daemon.
    cleanup.run()?;
    let (_, body) = timed_call(&socket, "/VolumeDriver.List", b"{}")?;
    let left = body["Volumes"].as_array().map_or(0, Vec::len);
    ensure!(left == 0, "{left} volumes left after removing them all");
    let status = daemon.stop();
    ensure!(
        status.success(),
        "daemon exited with {status} on SIGTERM; log:\n{}",
        daemon.log()
    );
    let log = strip_ansi(&daemon.log());
    let mut seen = Vec::new();
    let mut count = 0;
    for line in log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
    {
        count += 1;
        let message = line.split_once(' ').map_or(line, |(_, rest)| rest).trim();
        if !seen.iter().any(|s: &String| s == message) {
            seen.push(message.to_string());
        }
    }
    if count > 0 {
        report.line(format!(
            "daemon log: {count} warning/error lines ({} distinct), first: {}",
            seen.len(),
            seen[0]
        ));
    }
    report.json.insert(
        "daemon_log_warnings".into(),
        json!({"lines": count, "distinct": seen}),
    );

    Ok(())
}

/// `-o` options as a `k=v k=v` text.
fn opts_text(opts: &[(&str, &str)]) -> String {
    let words: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    words.join(" ")
}

// ---------------------------------------------------------------------------------------------
// The REST API and the daemon's log.

/// A call on the daemon's REST API, timed (the wall time of the round trip); fails unless it
/// answers `want`. Returns the time and the JSON body.
fn api_timed(
    daemon: &Daemon,
    method: &str,
    path: &str,
    body: &Value,
    want: u16,
) -> Result<(Duration, Value)> {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let start = Instant::now();
    let response = http_unix(&daemon.api_socket, method, path, &body);
    let took = start.elapsed();
    let response = response.with_context(|| format!("API {method} {path}"))?;
    ensure!(
        response.status == want,
        "API {method} {path}: HTTP {} (expected {want}): {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    Ok((took, response.json()))
}

/// The text without terminal colour codes (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
