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
//!   1%-change commits; checkout time against the size of the difference.
//!
//! The machine is shared and noisy, so only percentiles, medians and ratios are reported. A
//! missed aim is reported as MISS and does not change the exit status; a step that fails does
//! (non-zero).
//!
//! Usage: see [`USAGE`]. `DVOL_BIN` names the daemon binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use dvol_tests::{docker_ready, dvol_bin, http_unix, Daemon, HttpResponse, TEST_IMAGE};
use serde_json::{json, Value};

const USAGE: &str = "usage: dvol-bench [--only SECTION,...] [--volumes N] [--rounds N] \
[--warmups N] [--samples N] [--mount-samples N] [--list-samples N] [--backend-samples N] \
[--throughput-rounds N] [--throughput-mib N] [--history-gib X] [--json PATH]
sections: plugin, docker, memory, backends, throughput, history, readpoint (default: all)";

/// Aims.
const AIM_GET_P99_US: f64 = 1_000.0;
const AIM_PATH_P99_US: f64 = 1_000.0;
const AIM_LIST_P99_US: f64 = 20_000.0;
const AIM_RUN_RATIO: f64 = 1.10;
const AIM_RSS_MIB: f64 = 30.0;
const AIM_THROUGHPUT_RATIO: f64 = 0.80;
/// A 1%-change commit is at least this many times faster than `cp -a` + `sync -f`...
const AIM_COMMIT_VS_CP: f64 = 20.0;
/// ... and than `restic backup`.
const AIM_COMMIT_VS_RESTIC: f64 = 2.0;
/// The history store after a full and ten 1%-change commits, over the volume's size.
const AIM_STORE_RATIO: f64 = 1.3;
/// Checkout time of the 1% difference over that of the full difference (this benchmark's own
/// threshold for "grows with the difference, not the volume": the difference is ~100x smaller;
/// the walk over every path is a fixed cost).
const AIM_CHECKOUT_SCALING: f64 = 0.10;

/// Size of the block volumes of the `backends` and `throughput` sections.
const BLOCK_VOLUME_SIZE: &str = "1G";
/// The largest file `--throughput-mib` may ask for on a 1 GiB volume (ext4 keeps ~5% back).
const MAX_THROUGHPUT_MIB: usize = 900;
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
}

impl Section {
    const ALL: [Section; 7] = [
        Section::Plugin,
        Section::Docker,
        Section::Memory,
        Section::Backends,
        Section::Throughput,
        Section::History,
        Section::ReadPoint,
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
            throughput_rounds: 5,
            throughput_mib: 512,
            history_gib: 2.0,
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
                        args.throughput_mib <= MAX_THROUGHPUT_MIB,
                        "--throughput-mib must be at most {MAX_THROUGHPUT_MIB} (the volumes are {BLOCK_VOLUME_SIZE})"
                    );
                }
                "--history-gib" => {
                    let gib: f64 = value
                        .parse()
                        .with_context(|| format!("--history-gib {value:?}: not a number"))?;
                    ensure!(
                        gib.is_finite() && (0.01..=64.0).contains(&gib),
                        "--history-gib must be between 0.01 and 64"
                    );
                    args.history_gib = gib;
                }
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

/// A kept-alive HTTP/1.1 connection to the plugin socket, as the engine's Go client keeps one.
struct KeepAlive {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl KeepAlive {
    fn connect(socket: &Path) -> Result<KeepAlive> {
        let writer = UnixStream::connect(socket)
            .with_context(|| format!("connect to {}", socket.display()))?;
        writer.set_read_timeout(Some(Duration::from_secs(150)))?;
        let reader = BufReader::new(writer.try_clone()?);
        Ok(KeepAlive { writer, reader })
    }

    fn call(&mut self, path: &str, body: &[u8]) -> Result<(Duration, Value)> {
        let start = Instant::now();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(body)?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line)?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("keep-alive {path}: bad status line {status_line:?}"))?;
        let mut length = None;
        loop {
            let mut line = String::new();
            ensure!(
                self.reader.read_line(&mut line)? > 0,
                "keep-alive {path}: connection closed in the headers"
            );
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length =
            length.ok_or_else(|| anyhow!("keep-alive {path}: answer without Content-Length"))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        let took = start.elapsed();
        let response = HttpResponse {
            status,
            body,
            chunked: false,
        };
        Ok((took, checked(path, &response)?))
    }
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

/// Resident memory of a process from /proc/<pid>/status, in KiB: (VmRSS, VmHWM).
fn rss_kib(pid: u32) -> Result<(u64, u64)> {
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
fn settled_rss_kib(pid: u32) -> Result<u64> {
    std::thread::sleep(Duration::from_millis(300));
    Ok(rss_kib(pid)?.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
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
    let idle_rss = settled_rss_kib(pid)?;
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
            settled_rss_kib(pid)?,
        ));
    }

    if args.runs(Section::Plugin) {
        plugin_calls(args, report, daemon, &names, &bodies)?;
        rss_points.push((
            "rss_after_plugin_calls_kib",
            "after plugin calls",
            settled_rss_kib(pid)?,
        ));
    }
    if args.runs(Section::Docker) {
        docker_runs(args, report, daemon, cleanup, run_id)?;
    }
    if args.runs(Section::Memory) {
        let (end_rss, peak_rss) = rss_kib(pid)?;
        rss_points.push(if args.runs(Section::Docker) {
            ("rss_after_docker_runs_kib", "after docker runs", end_rss)
        } else {
            ("rss_at_end_kib", "at the end", end_rss)
        });
        memory(args, report, idle_rss, peak_rss, &rss_points);
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
        backends(args, report, daemon)?;
    }
    if args.runs(Section::Throughput) {
        throughput(args, report, daemon, cleanup, run_id)?;
    }
    if args.runs(Section::History) {
        history(args, report, daemon, run_id)?;
    }
    if args.runs(Section::ReadPoint) {
        read_points(args, report, daemon, cleanup, run_id)?;
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

/// Section `plugin`: Get, Path (new connection and keep-alive), Mount+Unmount and List on the
/// volumes `names` (already created).
fn plugin_calls(
    args: &Args,
    report: &mut Report,
    daemon: &Daemon,
    names: &[String],
    bodies: &[Vec<u8>],
) -> Result<()> {
    let socket = &daemon.plugin_socket;
    // Warm up the read paths (not measured).
    for i in 0..100.min(args.samples) {
        timed_call(socket, "/VolumeDriver.Get", &bodies[i % args.volumes])?;
    }

    let mut get = Vec::with_capacity(args.samples);
    for k in 0..args.samples {
        let i = k % args.volumes;
        let (took, body) = timed_call(socket, "/VolumeDriver.Get", &bodies[i])?;
        ensure!(
            body["Volume"]["Name"] == names[i].as_str()
                && body["Volume"]["Mountpoint"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
            "Get {} answered {body}",
            names[i]
        );
        get.push(took);
    }
    report.latency("get", "Get", &stats(&get), Some(AIM_GET_P99_US));

    let mut path = Vec::with_capacity(args.samples);
    for k in 0..args.samples {
        let i = (k * 7 + 3) % args.volumes;
        let (took, body) = timed_call(socket, "/VolumeDriver.Path", &bodies[i])?;
        ensure!(
            body["Mountpoint"].as_str().is_some_and(|m| !m.is_empty()),
            "Path {} answered {body}",
            names[i]
        );
        path.push(took);
    }
    report.latency("path", "Path", &stats(&path), Some(AIM_PATH_P99_US));

    // Same calls on one kept-alive connection: what the engine's client sees.
    let mut conn = KeepAlive::connect(socket)?;
    let mut get_ka = Vec::with_capacity(args.samples);
    for k in 0..args.samples {
        let i = (k * 13 + 5) % args.volumes;
        let (took, body) = conn.call("/VolumeDriver.Get", &bodies[i])?;
        ensure!(
            body["Volume"]["Name"] == names[i].as_str(),
            "Get {} answered {body}",
            names[i]
        );
        get_ka.push(took);
    }
    report.latency("get_keepalive", "Get (keep-alive)", &stats(&get_ka), None);
    let mut path_ka = Vec::with_capacity(args.samples);
    for k in 0..args.samples {
        let i = (k * 11 + 1) % args.volumes;
        let (took, _) = conn.call("/VolumeDriver.Path", &bodies[i])?;
        path_ka.push(took);
    }
    report.latency(
        "path_keepalive",
        "Path (keep-alive)",
        &stats(&path_ka),
        None,
    );
    drop(conn);

    // Mount+Unmount: one pair is one sample; each pair a distinct volume (cycling when there
    // are fewer volumes than samples) and a fresh mount id.
    let mut mount_pairs = Vec::with_capacity(args.mount_samples);
    let mut mounts = Vec::with_capacity(args.mount_samples);
    let mut unmounts = Vec::with_capacity(args.mount_samples);
    for k in 0..args.mount_samples {
        let i = (k * 17 + 9) % args.volumes;
        let body = json!({ "Name": names[i], "ID": format!("bench-mount-{k:05}") })
            .to_string()
            .into_bytes();
        let (m, answer) = timed_call(socket, "/VolumeDriver.Mount", &body)?;
        ensure!(
            answer["Mountpoint"].as_str().is_some_and(|m| !m.is_empty()),
            "Mount {} answered {answer}",
            names[i]
        );
        let (u, _) = timed_call(socket, "/VolumeDriver.Unmount", &body)?;
        mounts.push(m);
        unmounts.push(u);
        mount_pairs.push(m + u);
    }
    report.latency(
        "mount_unmount",
        "Mount+Unmount (pair)",
        &stats(&mount_pairs),
        None,
    );
    report.latency("mount", "  of which Mount", &stats(&mounts), None);
    report.latency("unmount", "  of which Unmount", &stats(&unmounts), None);
    let leftover = daemon.kernel_mounts();
    ensure!(
        leftover
            .iter()
            .all(|p| !p.starts_with(daemon.root.join("mounts"))),
        "volumes still mounted after Unmount: {leftover:?}"
    );

    for _ in 0..5.min(args.list_samples) {
        timed_call(socket, "/VolumeDriver.List", b"{}")?;
    }
    let mut list = Vec::with_capacity(args.list_samples);
    for _ in 0..args.list_samples {
        let (took, body) = timed_call(socket, "/VolumeDriver.List", b"{}")?;
        let count = body["Volumes"].as_array().map_or(0, Vec::len);
        ensure!(
            count == args.volumes,
            "List answered {count} volumes, expected {}",
            args.volumes
        );
        list.push(took);
    }
    report.latency("list", "List", &stats(&list), Some(AIM_LIST_P99_US));
    Ok(())
}

/// Section `docker`: `docker run ... true` with a dvol volume against a `local` one,
/// alternating which goes first.
fn docker_runs(
    args: &Args,
    report: &mut Report,
    daemon: &Daemon,
    cleanup: &mut DockerCleanup,
    run_id: &str,
) -> Result<()> {
    let dvol_volume = format!("dvolbench-{run_id}-dvol");
    let local_volume = format!("dvolbench-{run_id}-local");
    cleanup.create_volume(&dvol_volume, &daemon.driver, &[])?;
    cleanup.create_volume(&local_volume, "local", &[])?;
    let label = cleanup.label.clone();
    let timed_run = |volume: &str| docker_run(volume, &label, &["true"]).map(|(took, _)| took);
    for _ in 0..args.warmups {
        timed_run(&dvol_volume)?;
        timed_run(&local_volume)?;
    }
    let mut run_dvol = Vec::with_capacity(args.rounds);
    let mut run_local = Vec::with_capacity(args.rounds);
    let mut round_ratios = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        // Alternate which driver goes first so neither always follows the other.
        let (d, l) = if round % 2 == 0 {
            let d = timed_run(&dvol_volume)?;
            (d, timed_run(&local_volume)?)
        } else {
            let l = timed_run(&local_volume)?;
            (timed_run(&dvol_volume)?, l)
        };
        eprintln!(
            "  round {:>2}: dvol {:>7.1} ms  local {:>7.1} ms",
            round + 1,
            d.as_secs_f64() * 1e3,
            l.as_secs_f64() * 1e3
        );
        run_dvol.push(d);
        run_local.push(l);
        round_ratios.push(d.as_secs_f64() / l.as_secs_f64());
    }
    cleanup.remove_volume(&dvol_volume)?;
    cleanup.remove_volume(&local_volume)?;

    let (dvol_ms, local_ms) = (millis(&run_dvol), millis(&run_local));
    let (dvol_med, local_med) = (median(&dvol_ms), median(&local_ms));
    let ((dvol_p10, dvol_p90), (local_p10, local_p90)) = (spread(&dvol_ms), spread(&local_ms));
    let ratio = dvol_med / local_med;
    let ratio_of_rounds = median(&round_ratios);
    let ratio_pass = ratio <= AIM_RUN_RATIO;
    report.line(format!(
        "docker run: `docker run --rm --network none -v VOL:/data {TEST_IMAGE} true`, {} rounds + {} warm-ups per driver, alternating which goes first",
        args.rounds, args.warmups
    ));
    report.line(format!(
        "docker run dvol  driver    n={:<3} median {dvol_med:>7.1} ms  (p10 {dvol_p10:.1}, p90 {dvol_p90:.1})",
        run_dvol.len()
    ));
    report.line(format!(
        "docker run local driver    n={:<3} median {local_med:>7.1} ms  (p10 {local_p10:.1}, p90 {local_p90:.1})",
        run_local.len()
    ));
    let verdict = report.aim("docker run ratio", ratio_pass);
    report.line(format!(
        "docker run ratio dvol/local of medians {ratio:.3}  aim <= {AIM_RUN_RATIO:.2}  {verdict}   (median of per-round ratios {ratio_of_rounds:.3}; for information)"
    ));
    report.json.insert(
        "docker_run".into(),
        json!({
            "rounds": args.rounds,
            "warmups": args.warmups,
            "dvol": {"median_ms": round3(dvol_med), "p10_ms": round3(dvol_p10), "p90_ms": round3(dvol_p90),
                     "samples_ms": rounded(&dvol_ms)},
            "local": {"median_ms": round3(local_med), "p10_ms": round3(local_p10), "p90_ms": round3(local_p90),
                      "samples_ms": rounded(&local_ms)},
            "ratio_of_medians": round3(ratio),
            "median_of_round_ratios": round3(ratio_of_rounds),
            "aim_ratio_max": AIM_RUN_RATIO,
            "pass": ratio_pass,
        }),
    );
    Ok(())
}

/// Section `memory`: judges the largest VmRSS of `points` (taken with the volumes).
fn memory(
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

/// A kind of volume the `backends` section creates and mounts: plugin `Create` options.
struct BackendCase {
    key: &'static str,
    opts: &'static [(&'static str, &'static str)],
}

const BACKEND_CASES: [BackendCase; 4] = [
    BackendCase {
        key: "directory",
        opts: &[("profile", "bronze")],
    },
    BackendCase {
        key: "loop_ext4",
        opts: &[("profile", "silver"), ("size", BLOCK_VOLUME_SIZE)],
    },
    BackendCase {
        key: "loop_xfs",
        opts: &[
            ("profile", "silver"),
            ("size", BLOCK_VOLUME_SIZE),
            ("fs", "xfs"),
        ],
    },
    BackendCase {
        key: "loop_xfs_preallocated",
        opts: &[("profile", "gold"), ("size", BLOCK_VOLUME_SIZE)],
    },
];

/// `-o` options as a `k=v k=v` text.
fn opts_text(opts: &[(&str, &str)]) -> String {
    let words: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    words.join(" ")
}

/// Section `backends`: Create then Mount (timed together) through the plugin socket, then
/// Unmount and Remove (not timed), for each backend in turn, one warm-up round first.
fn backends(args: &Args, report: &mut Report, daemon: &Daemon) -> Result<()> {
    let socket = &daemon.plugin_socket;
    let profiles = api_get(daemon, "/v1/profiles")?;
    let n = args.backend_samples;
    let cases = BACKEND_CASES.len();
    let mut create: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); cases];
    let mut mount: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); cases];
    let mut resolutions = vec![String::new(); cases];
    for round in 0..=n {
        // Round 0 warms up (and finds what each case resolves to); the first case of a round
        // rotates so that no backend always follows the same one.
        for c in (0..cases).map(|k| (k + round) % cases) {
            let case = &BACKEND_CASES[c];
            let name = format!("bench-backend-{}-{round:03}", case.key.replace('_', "-"));
            let opts: serde_json::Map<String, Value> = case
                .opts
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            let create_body = json!({ "Name": name, "Opts": opts }).to_string();
            let mount_body = json!({ "Name": name, "ID": format!("bench-{name}") }).to_string();
            let (c_took, _) = timed_call(socket, "/VolumeDriver.Create", create_body.as_bytes())?;
            let (m_took, answer) =
                timed_call(socket, "/VolumeDriver.Mount", mount_body.as_bytes())?;
            ensure!(
                answer["Mountpoint"].as_str().is_some_and(|m| !m.is_empty()),
                "Mount {name} answered {answer}"
            );
            if round == 0 {
                resolutions[c] = resolved(daemon, &profiles, &name)?;
            } else {
                create[c].push(c_took);
                mount[c].push(m_took);
            }
            timed_call(socket, "/VolumeDriver.Unmount", mount_body.as_bytes())?;
            timed_call(socket, "/VolumeDriver.Remove", &name_body(&name))?;
        }
        if round > 0 {
            let ms = |d: &Vec<Duration>| d.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
            let figures: Vec<String> = (0..cases)
                .map(|c| {
                    format!(
                        "{} {:.1}+{:.1}",
                        BACKEND_CASES[c].key,
                        ms(&create[c]),
                        ms(&mount[c])
                    )
                })
                .collect();
            eprintln!(
                "  round {round:>2} (create+mount ms): {}",
                figures.join("  ")
            );
        }
    }

    report.line(format!(
        "backends: Create then Mount through the plugin socket, timed together (then Unmount + Remove, untimed); n={n} per backend, round-robin after 1 warm-up round; block volumes {BLOCK_VOLUME_SIZE}"
    ));
    let totals: Vec<Vec<f64>> = (0..cases)
        .map(|c| {
            let pairs: Vec<Duration> = create[c]
                .iter()
                .zip(&mount[c])
                .map(|(a, b)| *a + *b)
                .collect();
            millis(&pairs)
        })
        .collect();
    let directory = Stats::of(&totals[0]);
    let mut json_cases = serde_json::Map::new();
    for (c, case) in BACKEND_CASES.iter().enumerate() {
        let total = Stats::of(&totals[c]);
        let (create_p50, mount_p50) = (median(&millis(&create[c])), median(&millis(&mount[c])));
        let (ratio_p50, ratio_p90) = (total.p50 / directory.p50, total.p90 / directory.p90);
        report.line(format!(
            "backend {:<38} {:<22} create+mount p50 {:>7.1} ms  p90 {:>7.1} ms  (create p50 {create_p50:>6.1}, mount p50 {mount_p50:>5.1})  {ratio_p50:>5.1}x directory at p50 ({ratio_p90:.1}x at p90)",
            opts_text(case.opts),
            resolutions[c],
            total.p50,
            total.p90,
        ));
        json_cases.insert(
            case.key.to_string(),
            json!({
                "options": opts_text(case.opts),
                "resolved": resolutions[c],
                "samples": total.samples,
                "create_mount_p50_ms": round3(total.p50),
                "create_mount_p90_ms": round3(total.p90),
                "create_mount_max_ms": round3(total.max),
                "create_p50_ms": round3(create_p50),
                "mount_p50_ms": round3(mount_p50),
                "ratio_p50_to_directory": round3(ratio_p50),
                "ratio_p90_to_directory": round3(ratio_p90),
                "samples_ms": rounded(&totals[c]),
            }),
        );
    }
    report.line(
        "backend lvm thin: not measured here (no volume group on the host); create+mount is measured inside the VM by `cargo test -p dvol-backends --test lvm_vm`: about 1.3 s for ext4 64 MiB under TCG emulation, not comparable to host figures".to_string(),
    );
    report.json.insert(
        "backends".into(),
        json!({ "samples": n, "size": BLOCK_VOLUME_SIZE, "cases": json_cases }),
    );
    Ok(())
}

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
fn drop_caches() -> Result<()> {
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
fn throughput(
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
            for (what, ratio) in [("write", w / local_write), ("read", r / local_read)] {
                // Judged as printed, so that a 0.800 never reads MISS.
                let ratio = round3(ratio);
                let pass = ratio >= AIM_THROUGHPUT_RATIO;
                value[format!("{what}_ratio_to_local")] = json!(ratio);
                value[format!("{what}_pass")] = json!(pass);
                ratio_lines.push((case.key, what, ratio, pass));
            }
        }
        json_cases.insert(case.key.to_string(), value);
    }
    for (driver, what, ratio, pass) in ratio_lines {
        let verdict = report.aim(&format!("throughput {driver} {what}"), pass);
        report.line(format!(
            "throughput ratio {:<12} {what:<5} of medians {ratio:.3}  aim >= {AIM_THROUGHPUT_RATIO:.2}  {verdict}",
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
            "aim_ratio_min": AIM_THROUGHPUT_RATIO,
            "cases": json_cases,
        }),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Section `history`.

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

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
struct Dataset {
    dir: PathBuf,
    files: Vec<DataFile>,
    rng: Rng,
    /// Files added by changes so far (to name the next).
    added: usize,
}

/// One change of the data set.
#[derive(Debug, Clone, Default)]
struct Mutation {
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
    fn changed_bytes(&self) -> u64 {
        self.rewritten_bytes + self.added_bytes + self.deleted_bytes
    }

    fn json(&self) -> Value {
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

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

impl Dataset {
    /// Writes about `gib` GiB into `dir`: the small files, then text, pages and random files.
    fn build(dir: &Path, gib: f64, seed: u64) -> Result<Dataset> {
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

    fn total(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
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
    fn mutate(&mut self, fraction: f64) -> Result<Mutation> {
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
fn run_ok(cmd: &mut Command) -> Result<std::process::Output> {
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
fn sync_host() -> Result<()> {
    run_ok(&mut Command::new("sync")).map(drop)
}

/// `du -sb PATH` (apparent bytes) or, with `apparent` false, `du -s -B1 PATH` (allocated).
fn du_bytes(path: &Path, apparent: bool) -> Result<u64> {
    let flag = if apparent { "-sb" } else { "-sB1" };
    let out = run_ok(Command::new("du").arg(flag).arg(path))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("du {flag} {}: unreadable {text:?}", path.display()))
}

/// Bytes free (`field` "avail") or used ("used") on the filesystem of `path`, from `df -B1`.
fn df_bytes(path: &Path, field: &str) -> Result<u64> {
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

fn u64_of(value: &Value, key: &str) -> u64 {
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
                Peer::CpA => {
                    let copy = self.work.join(format!("copy{n}"));
                    let start = Instant::now();
                    run_ok(Command::new("cp").arg("-a").arg(&self.data).arg(&copy))?;
                    run_ok(Command::new("sync").arg("-f").arg(&copy))?;
                    trial.cp_s = start.elapsed().as_secs_f64();
                    self.sample_disk()?;
                    std::fs::remove_dir_all(&copy)
                        .with_context(|| format!("remove {}", copy.display()))?;
                }
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
            bytes_written: u64_of(&v, "bytes_written"),
            files_written: u64_of(&v, "files_written"),
            removed: u64_of(&v, "removed"),
        })
    }

    /// Checks out `target` and `branch` again, [`CHECKOUT_ROUNDS`] times; every checkout is a
    /// sample (both directions cross the same difference). Ends on `branch` at `head`.
    fn checkout_trips(
        &self,
        target: &str,
        branch: &str,
        head: &str,
    ) -> Result<Vec<CheckoutSample>> {
        let mut samples = Vec::new();
        for _ in 0..CHECKOUT_ROUNDS {
            samples.push(self.checkout(target)?);
            samples.push(self.checkout(branch)?);
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

/// Section `history`: see the module documentation and the report's method lines.
fn history(args: &Args, report: &mut Report, daemon: &Daemon, run_id: &str) -> Result<()> {
    let started = Instant::now();
    let gib = args.history_gib;
    let restic_version =
        String::from_utf8_lossy(&run_ok(Command::new("restic").arg("version"))?.stdout)
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
    let need = (HISTORY_DISK_FACTOR * gib * GIB) as u64;
    let avail = df_bytes(&daemon.root, "avail")?;
    ensure!(
        avail >= need,
        "history: {:.1} GB free on the filesystem of {}, {:.1} GB wanted for --history-gib {gib}",
        avail as f64 / 1e9,
        daemon.root.display(),
        need as f64 / 1e9
    );
    let work = tempfile::Builder::new()
        .prefix("dvol-bench-history-")
        .tempdir()
        .context("history work directory")?;
    let same_fs = std::fs::metadata(work.path())?.dev() == std::fs::metadata(&daemon.root)?.dev();

    let name = format!("bench-history-{run_id}");
    let (_, volume) = api_timed(
        daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": name, "options": { "profile": "bronze" } }),
        201,
    )?;
    ensure!(
        volume["backend"] == "directory",
        "history: the bronze volume resolved to {} (expected directory)",
        volume["backend"]
    );
    let id = volume["id"]
        .as_str()
        .ok_or_else(|| anyhow!("volume {name} has no id: {volume}"))?;
    let data = daemon.root.join("backends/directory").join(id);
    ensure!(
        data.is_dir(),
        "history: {} is not a directory",
        data.display()
    );
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

    eprintln!(
        "  history: writing {gib} GiB of data into {}",
        data.display()
    );
    let build_start = Instant::now();
    let mut ds = Dataset::build(&data, gib, 0x5EED_D01B_E4C4)?;
    sync_host()?;
    let build_s = build_start.elapsed().as_secs_f64();
    let volume_bytes = du_bytes(&data, true)?;
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
    let co_one = bench.checkout_trips(&ids[ids.len() - 2], &branch, &head)?;
    let co_ten = bench.checkout_trips(&ids[0], &branch, &head)?;
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
    let co_full = bench.checkout_trips(&ids[0], &branch, &last)?;
    sync_host()?;
    let commits_end = api_get(daemon, &format!("/v1/volumes/{name}/commits"))?["commits"]
        .as_array()
        .map_or(0, Vec::len);
    let end_volume = du_bytes(&data, true)?;
    let end_store = du_bytes(&history_dir, true)?;
    let end_restic = du_bytes(&restic_repo, true)?;
    api_timed(
        daemon,
        "DELETE",
        &format!("/v1/volumes/{name}"),
        &Value::Null,
        204,
    )?;
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

// ---------------------------------------------------------------------------------------------
// Read points: how long a commit holds up the writers of a volume in use.

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
fn read_points(
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
