//! `dvol-bench`: measures a real `dvol daemon` against its performance aims.
//!
//! 1. Plugin calls over the unix socket with N volumes (default 1,000): p50/p99 latency of
//!    Get, Path, Mount+Unmount and List (Create and Remove are reported for information).
//! 2. `docker run --rm --network none -v VOL:/data IMG true` with the dvol driver against
//!    Docker's `local` driver, alternating in one run; the aim is on the ratio of medians.
//! 3. The daemon's resident memory (VmRSS) idle and with the N volumes.
//!
//! The machine is shared and noisy, so only percentiles and ratios are reported. A missed aim
//! is reported as MISS and does not change the exit status; a step that fails does (non-zero).
//!
//! Usage: `dvol-bench [--volumes N] [--rounds N] [--warmups N] [--samples N]
//! [--mount-samples N] [--list-samples N] [--json PATH]`. `DVOL_BIN` names the daemon binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use dvol_tests::{docker_ready, dvol_bin, http_unix, Daemon, HttpResponse, TEST_IMAGE};
use serde_json::{json, Value};

const USAGE: &str = "usage: dvol-bench [--volumes N] [--rounds N] [--warmups N] [--samples N] \
[--mount-samples N] [--list-samples N] [--json PATH]";

/// Aims.
const AIM_GET_P99_US: f64 = 1_000.0;
const AIM_PATH_P99_US: f64 = 1_000.0;
const AIM_LIST_P99_US: f64 = 20_000.0;
const AIM_RUN_RATIO: f64 = 1.10;
const AIM_RSS_MIB: f64 = 30.0;

#[derive(Debug, Clone)]
struct Args {
    volumes: usize,
    rounds: usize,
    warmups: usize,
    samples: usize,
    mount_samples: usize,
    list_samples: usize,
    json: Option<PathBuf>,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args {
            volumes: 1_000,
            rounds: 15,
            warmups: 2,
            samples: 2_000,
            mount_samples: 500,
            list_samples: 200,
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
                "--json" => args.json = Some(PathBuf::from(&value)),
                other => bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        Ok(args)
    }
}

/// Latency percentiles of one measured operation, in microseconds.
#[derive(Debug, Clone)]
struct Stats {
    samples: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn stats(samples: &[Duration]) -> Stats {
    let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    Stats {
        samples: us.len(),
        p50: percentile(&us, 50.0),
        p90: percentile(&us, 90.0),
        p99: percentile(&us, 99.0),
        max: *us.last().expect("at least one sample"),
    }
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

    fn latency(&mut self, key: &str, label: &str, s: &Stats, aim_p99_us: Option<f64>) {
        let aim = match aim_p99_us {
            Some(aim) => {
                let pass = s.p99 < aim;
                self.aims.push((label.to_string(), pass));
                format!("aim p99 < {aim:>6.0} us  {}", verdict(pass))
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

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn run_docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("run docker")?;
    ensure!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Removes the containers and Docker volumes of this run when dropped (also on error and
/// panic). Declared after the daemon so it runs while the daemon still answers.
struct DockerCleanup {
    label: String,
    volumes: Vec<String>,
    done: bool,
}

impl DockerCleanup {
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

fn timed_docker_run(volume: &str, label: &str) -> Result<Duration> {
    let mount = format!("{volume}:/data");
    let args = [
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        label,
        "-v",
        &mount,
        TEST_IMAGE,
        "true",
    ];
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
    Ok(took)
}

fn median_ms(samples: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    }
}

fn spread_ms(samples: &[Duration]) -> (f64, f64) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 10.0), percentile(&ms, 90.0))
}

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

    let mut report = Report {
        lines: Vec::new(),
        json: serde_json::Map::new(),
        aims: Vec::new(),
    };
    report.line(format!(
        "dvol benchmark: {} volumes; Get/Path n={}, Mount+Unmount n={}, List n={}; docker run {} rounds + {} warm-ups per driver; dockerd {docker_version}; {cpus} CPUs",
        args.volumes, args.samples, args.mount_samples, args.list_samples, args.rounds, args.warmups
    ));
    report.line(format!("daemon binary: {}", bin.display()));
    report.line(
        "plugin latencies: one round trip each, on a new unix-socket connection per call (connect + HTTP + JSON), as the harness calls; keep-alive lines reuse one connection as the engine's Go client does".to_string(),
    );
    report.json.insert(
        "config".into(),
        json!({
            "volumes": args.volumes,
            "rounds": args.rounds,
            "warmups": args.warmups,
            "samples_get_path": args.samples,
            "samples_mount_unmount": args.mount_samples,
            "samples_list": args.list_samples,
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

/// Runs the three measurements against `daemon`, adding to `report`, then removes every
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

    // --- 3a. Idle memory. Let the daemon settle first.
    std::thread::sleep(Duration::from_millis(300));
    let (idle_rss, _) = rss_kib(pid)?;

    // --- 1. Plugin calls.
    let names: Vec<String> = (0..args.volumes).map(volume_name).collect();
    let bodies: Vec<Vec<u8>> = names.iter().map(|n| name_body(n)).collect();

    let mut create = Vec::with_capacity(args.volumes);
    for name in &names {
        let body = json!({ "Name": name, "Opts": null }).to_string();
        let (took, _) = timed_call(&socket, "/VolumeDriver.Create", body.as_bytes())?;
        create.push(took);
    }
    report.latency("create", "Create", &stats(&create), None);
    std::thread::sleep(Duration::from_millis(300));
    let (created_rss, _) = rss_kib(pid)?;

    // Warm up the read paths (not measured).
    for i in 0..100.min(args.samples) {
        timed_call(&socket, "/VolumeDriver.Get", &bodies[i % args.volumes])?;
    }

    let mut get = Vec::with_capacity(args.samples);
    for k in 0..args.samples {
        let i = k % args.volumes;
        let (took, body) = timed_call(&socket, "/VolumeDriver.Get", &bodies[i])?;
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
        let (took, body) = timed_call(&socket, "/VolumeDriver.Path", &bodies[i])?;
        ensure!(
            body["Mountpoint"].as_str().is_some_and(|m| !m.is_empty()),
            "Path {} answered {body}",
            names[i]
        );
        path.push(took);
    }
    report.latency("path", "Path", &stats(&path), Some(AIM_PATH_P99_US));

    // Same calls on one kept-alive connection: what the engine's client sees.
    let mut conn = KeepAlive::connect(&socket)?;
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
        let (m, answer) = timed_call(&socket, "/VolumeDriver.Mount", &body)?;
        ensure!(
            answer["Mountpoint"].as_str().is_some_and(|m| !m.is_empty()),
            "Mount {} answered {answer}",
            names[i]
        );
        let (u, _) = timed_call(&socket, "/VolumeDriver.Unmount", &body)?;
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
        timed_call(&socket, "/VolumeDriver.List", b"{}")?;
    }
    let mut list = Vec::with_capacity(args.list_samples);
    for _ in 0..args.list_samples {
        let (took, body) = timed_call(&socket, "/VolumeDriver.List", b"{}")?;
        let count = body["Volumes"].as_array().map_or(0, Vec::len);
        ensure!(
            count == args.volumes,
            "List answered {count} volumes, expected {}",
            args.volumes
        );
        list.push(took);
    }
    report.latency("list", "List", &stats(&list), Some(AIM_LIST_P99_US));
    std::thread::sleep(Duration::from_millis(300));
    let (loaded_rss, _) = rss_kib(pid)?;

    // --- 2. docker run: dvol vs local, alternating.
    let dvol_volume = format!("dvolbench-{run_id}-dvol");
    let local_volume = format!("dvolbench-{run_id}-local");
    cleanup.volumes.push(dvol_volume.clone());
    run_docker(&["volume", "create", "-d", &daemon.driver, &dvol_volume])?;
    cleanup.volumes.push(local_volume.clone());
    run_docker(&["volume", "create", "-d", "local", &local_volume])?;
    let label = cleanup.label.clone();
    for _ in 0..args.warmups {
        timed_docker_run(&dvol_volume, &label)?;
        timed_docker_run(&local_volume, &label)?;
    }
    let mut run_dvol = Vec::with_capacity(args.rounds);
    let mut run_local = Vec::with_capacity(args.rounds);
    let mut round_ratios = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        // Alternate which driver goes first so neither always follows the other.
        let (d, l) = if round % 2 == 0 {
            let d = timed_docker_run(&dvol_volume, &label)?;
            (d, timed_docker_run(&local_volume, &label)?)
        } else {
            let l = timed_docker_run(&local_volume, &label)?;
            (timed_docker_run(&dvol_volume, &label)?, l)
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
    let (dvol_med, local_med) = (median_ms(&run_dvol), median_ms(&run_local));
    let ((dvol_p10, dvol_p90), (local_p10, local_p90)) =
        (spread_ms(&run_dvol), spread_ms(&run_local));
    let ratio = dvol_med / local_med;
    round_ratios.sort_by(f64::total_cmp);
    let n = round_ratios.len();
    let ratio_of_rounds = if n % 2 == 1 {
        round_ratios[n / 2]
    } else {
        (round_ratios[n / 2 - 1] + round_ratios[n / 2]) / 2.0
    };
    let ratio_pass = ratio <= AIM_RUN_RATIO;
    report.aims.push(("docker run ratio".into(), ratio_pass));
    report.line(format!(
        "docker run dvol  driver    n={:<3} median {dvol_med:>7.1} ms  (p10 {dvol_p10:.1}, p90 {dvol_p90:.1})",
        run_dvol.len()
    ));
    report.line(format!(
        "docker run local driver    n={:<3} median {local_med:>7.1} ms  (p10 {local_p10:.1}, p90 {local_p90:.1})",
        run_local.len()
    ));
    report.line(format!(
        "docker run ratio dvol/local of medians {ratio:.3}  aim <= {AIM_RUN_RATIO:.2}  {}   (median of per-round ratios {ratio_of_rounds:.3}; for information)",
        verdict(ratio_pass)
    ));
    report.json.insert(
        "docker_run".into(),
        json!({
            "rounds": args.rounds,
            "warmups": args.warmups,
            "dvol": {"median_ms": round3(dvol_med), "p10_ms": round3(dvol_p10), "p90_ms": round3(dvol_p90),
                     "samples_ms": run_dvol.iter().map(|d| round3(d.as_secs_f64() * 1e3)).collect::<Vec<_>>()},
            "local": {"median_ms": round3(local_med), "p10_ms": round3(local_p10), "p90_ms": round3(local_p90),
                      "samples_ms": run_local.iter().map(|d| round3(d.as_secs_f64() * 1e3)).collect::<Vec<_>>()},
            "ratio_of_medians": round3(ratio),
            "median_of_round_ratios": round3(ratio_of_rounds),
            "aim_ratio_max": AIM_RUN_RATIO,
            "pass": ratio_pass,
        }),
    );

    // --- 3b. Memory with the volumes, after all the traffic.
    let (end_rss, peak_rss) = rss_kib(pid)?;
    let with_volumes = created_rss.max(loaded_rss).max(end_rss);
    let rss_pass = mib(with_volumes) < AIM_RSS_MIB;
    report.aims.push(("RSS".into(), rss_pass));
    report.line(format!(
        "memory RSS idle, no volumes            {:>6.1} MiB  (for information)",
        mib(idle_rss)
    ));
    report.line(format!(
        "memory RSS with {:>5} volumes          {:>6.1} MiB  aim < {AIM_RSS_MIB:.0} MiB  {}   (after create {:.1}, after plugin calls {:.1}, after docker runs {:.1}; the largest is judged)",
        args.volumes,
        mib(with_volumes),
        verdict(rss_pass),
        mib(created_rss),
        mib(loaded_rss),
        mib(end_rss)
    ));
    report.line(format!(
        "memory peak RSS (VmHWM) over the run    {:>6.1} MiB  (for information)",
        mib(peak_rss)
    ));
    report.json.insert(
        "memory".into(),
        json!({
            "idle_rss_kib": idle_rss,
            "rss_after_create_kib": created_rss,
            "rss_after_plugin_calls_kib": loaded_rss,
            "rss_after_docker_runs_kib": end_rss,
            "rss_with_volumes_kib": with_volumes,
            "rss_with_volumes_mib": round3(mib(with_volumes)),
            "peak_rss_kib": peak_rss,
            "aim_rss_mib_max": AIM_RSS_MIB,
            "pass": rss_pass,
        }),
    );

    // --- Cleanup: containers and Docker volumes, then the plugin volumes, then the daemon.
    cleanup.run()?;
    let mut remove = Vec::with_capacity(args.volumes);
    for body in &bodies {
        let (took, _) = timed_call(&socket, "/VolumeDriver.Remove", body)?;
        remove.push(took);
    }
    report.latency("remove", "Remove", &stats(&remove), None);
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
