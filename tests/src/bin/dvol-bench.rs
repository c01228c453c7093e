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
[--throughput-rounds N] [--throughput-mib N] [--json PATH]
sections: plugin, docker, memory, backends, throughput (default: all)";

/// Aims.
const AIM_GET_P99_US: f64 = 1_000.0;
const AIM_PATH_P99_US: f64 = 1_000.0;
const AIM_LIST_P99_US: f64 = 20_000.0;
const AIM_RUN_RATIO: f64 = 1.10;
const AIM_RSS_MIB: f64 = 30.0;
const AIM_THROUGHPUT_RATIO: f64 = 0.80;

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
}

impl Section {
    const ALL: [Section; 5] = [
        Section::Plugin,
        Section::Docker,
        Section::Memory,
        Section::Backends,
        Section::Throughput,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Plugin => "plugin",
            Section::Docker => "docker",
            Section::Memory => "memory",
            Section::Backends => "backends",
            Section::Throughput => "throughput",
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
        let response = HttpResponse { status, body };
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
            "docker_version": docker_version,
            "cpus": cpus,
            "daemon_binary": bin.display().to_string(),
        }),
    );

    // The daemon is declared first so the Docker cleanup (declared after) drops first, while
    // the daemon still answers the engine's Remove calls.
    let mut daemon = Daemon::start();
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
