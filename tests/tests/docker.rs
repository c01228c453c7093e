//! End-to-end tests of dvol as a volume driver of the real Docker Engine.
//!
//! Each test runs its own `dvol daemon` (its own root and Docker driver name) and uses volume
//! and container names of its own, so the tests run in parallel. Containers and Docker volumes
//! are removed by drop guards, also when an assertion fails.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use dvol_tests::{docker, docker_ready, require, Daemon, TEST_IMAGE};
use serde_json::Value;

/// A name no other test (or test run) uses.
fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// Runs `docker args`, panicking with docker's stderr and the daemon's log unless it succeeds;
/// returns trimmed stdout.
fn must(daemon: &Daemon, args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}\ndvol daemon log:\n{}",
        stderr(&out),
        daemon.log()
    );
    stdout(&out)
}

/// Runs `docker args` that must fail; returns its stderr.
fn must_fail(daemon: &Daemon, args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        !out.status.success(),
        "docker {args:?} should have failed but printed: {}\ndvol daemon log:\n{}",
        stdout(&out),
        daemon.log()
    );
    stderr(&out)
}

/// `docker run` arguments: `script` in a container without network, with `mount` (a `-v`
/// value) served by `daemon`'s driver, and `extra` options.
fn run_args<'a>(
    daemon: &'a Daemon,
    mount: &'a str,
    extra: &[&'a str],
    script: &'a str,
) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--network",
        "none",
        "--volume-driver",
        &daemon.driver,
        "-v",
        mount,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[TEST_IMAGE, "sh", "-c", script]);
    args
}

/// `docker run --rm` of `script` with `volume` at /data; returns the raw output.
fn run(daemon: &Daemon, volume: &str, script: &str) -> Output {
    let mount = format!("{volume}:/data");
    docker(&run_args(daemon, &mount, &["--rm"], script))
}

/// `docker run --rm` of `script` with `volume` at /data, which must succeed; returns stdout.
fn run_ok(daemon: &Daemon, volume: &str, script: &str) -> String {
    let mount = format!("{volume}:/data");
    must(daemon, &run_args(daemon, &mount, &["--rm"], script))
}

/// A container, removed with `docker rm -f` when dropped.
struct Container(String);

impl Container {
    /// Starts `script` detached, with `volume` at /data.
    fn start(daemon: &Daemon, volume: &str, script: &str) -> Container {
        let container = Container(unique("dvol-e2e-ctr"));
        let mount = format!("{volume}:/data");
        must(
            daemon,
            &run_args(daemon, &mount, &["-d", "--name", &container.0], script),
        );
        container
    }

    /// Runs `script` inside the running container; returns stdout.
    fn exec(&self, daemon: &Daemon, script: &str) -> String {
        must(daemon, &["exec", &self.0, "sh", "-c", script])
    }

    /// Stops the container (its `sh` ignores SIGTERM, so after one second it is killed).
    fn stop(&self, daemon: &Daemon) {
        must(daemon, &["stop", "-t", "1", &self.0]);
    }

    /// Removes the container now, checking that Docker succeeds.
    fn remove(self, daemon: &Daemon) {
        must(daemon, &["rm", "-f", &self.0]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

/// A test's Docker volume (and the aliases Docker recorded for it), removed when dropped.
///
/// Docker asks every driver it has ever seen about a name it has no record of, about 15 s per
/// driver whose socket is gone (every earlier test daemon's), so the guard never removes a
/// name Docker does not know: the volume only while this daemon still lists it, and aliases
/// only once the test has recorded that Docker knows them.
struct DockerVolume {
    name: String,
    driver: String,
    aliases: Vec<String>,
}

impl DockerVolume {
    /// A volume named `prefix-<random>`.
    fn new(daemon: &Daemon, prefix: &str) -> DockerVolume {
        DockerVolume::named(daemon, unique(prefix))
    }

    fn named(daemon: &Daemon, name: String) -> DockerVolume {
        DockerVolume {
            name,
            driver: daemon.driver.clone(),
            aliases: Vec::new(),
        }
    }
}

impl Drop for DockerVolume {
    fn drop(&mut self) {
        let filter = format!("driver={}", self.driver);
        let listed = docker(&["volume", "ls", "-q", "--filter", &filter]);
        if stdout(&listed).lines().any(|l| l == self.name) {
            let _ = docker(&["volume", "rm", "-f", &self.name]);
        }
        for alias in &self.aliases {
            let _ = docker(&["volume", "rm", "-f", alias]);
        }
    }
}

/// The volume as the daemon's REST API shows it.
fn api_volume(daemon: &Daemon, name: &str) -> Value {
    let response = daemon.api("GET", &format!("/v1/volumes/{name}"), "");
    assert_eq!(
        response.status,
        200,
        "GET /v1/volumes/{name}: {}",
        String::from_utf8_lossy(&response.body)
    );
    response.json()
}

/// The names of the volumes the daemon's REST API lists.
fn api_names(daemon: &Daemon) -> Vec<String> {
    let response = daemon.api("GET", "/v1/volumes", "");
    assert_eq!(response.status, 200);
    response
        .json()
        .as_array()
        .expect("volume list")
        .iter()
        .map(|v| v["name"].as_str().expect("name").to_string())
        .collect()
}

/// The volume's UUID, as the daemon's REST API shows it.
fn volume_id(daemon: &Daemon, name: &str) -> String {
    api_volume(daemon, name)["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// Where the directory backend keeps a volume's data.
fn data_dir(daemon: &Daemon, id: &str) -> PathBuf {
    daemon.root.join("backends/directory").join(id)
}

/// `DRIVER NAME` lines of `docker volume ls`, optionally only for `driver`.
fn docker_volume_ls(daemon: &Daemon, driver: Option<&str>) -> Vec<String> {
    let filter = driver.map(|d| format!("driver={d}"));
    let mut args = vec!["volume", "ls", "--format", "{{.Driver}} {{.Name}}"];
    if let Some(filter) = &filter {
        args.extend_from_slice(&["--filter", filter]);
    }
    must(daemon, &args).lines().map(str::to_string).collect()
}

/// `docker volume inspect NAME` as JSON.
fn docker_volume_inspect(daemon: &Daemon, name: &str) -> Value {
    let out = must(daemon, &["volume", "inspect", name]);
    let all: Value = serde_json::from_str(&out).expect("docker volume inspect JSON");
    all[0].clone()
}

/// Waits until `done` holds, panicking with `what` and the daemon's log after `secs` seconds.
fn wait_until(daemon: &Daemon, what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting until {what}; dvol daemon log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until no mount under the daemon's root remains.
fn wait_no_mounts(daemon: &Daemon) {
    wait_until(daemon, "no mount under the daemon root remains", 10, || {
        daemon.kernel_mounts().is_empty()
    });
}

/// Whether `s` is an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    fn digits(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() < 20 || !matches!(b[10], b'T' | b't') {
        return false;
    }
    let (date, time) = (&s[..10], &s[11..]);
    let date_ok = digits(&date[..4])
        && &date[4..5] == "-"
        && digits(&date[5..7])
        && &date[7..8] == "-"
        && digits(&date[8..10]);
    let clock_ok = time.len() >= 8
        && digits(&time[..2])
        && &time[2..3] == ":"
        && digits(&time[3..5])
        && &time[5..6] == ":"
        && digits(&time[6..8]);
    if !(date_ok && clock_ok) {
        return false;
    }
    let mut rest = &time[8..];
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        if end == 0 {
            return false;
        }
        rest = &frac[end..];
    }
    match rest {
        "Z" | "z" => true,
        offset => {
            offset.len() == 6
                && matches!(&offset[..1], "+" | "-")
                && digits(&offset[1..3])
                && &offset[3..4] == ":"
                && digits(&offset[4..6])
        }
    }
}

#[test]
fn volume_create_ls_and_inspect_show_dvol_details() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let daemon = Daemon::start();
    let volume = DockerVolume::new(&daemon, "create");
    let name = volume.name.as_str();

    let created = must(
        &daemon,
        &[
            "volume",
            "create",
            "-d",
            &daemon.driver,
            name,
            "-o",
            "size=1G",
        ],
    );
    assert_eq!(created, name);

    // A plain `docker volume ls`, as a user types it.
    let listed = docker_volume_ls(&daemon, None);
    assert!(
        listed.contains(&format!("{} {name}", daemon.driver)),
        "docker volume ls should list {name} with driver {}: {listed:?}",
        daemon.driver
    );

    let inspected = docker_volume_inspect(&daemon, name);
    assert_eq!(inspected["Name"], name, "{inspected:#}");
    assert_eq!(inspected["Driver"], daemon.driver.as_str(), "{inspected:#}");
    let status = inspected["Status"].as_object().expect("Status map");
    for key in ["uuid", "profile", "backend", "size", "created"] {
        assert!(
            status.contains_key(key),
            "Status lacks {key}: {inspected:#}"
        );
    }
    let id = status["uuid"].as_str().expect("uuid");
    uuid::Uuid::parse_str(id).expect("Status.uuid is a UUID");
    assert_eq!(status["profile"], "bronze", "{inspected:#}");
    assert_eq!(status["backend"], "directory", "{inspected:#}");
    let size = status["size"].as_str().expect("size");
    assert!(size.starts_with("1GiB"), "size should show 1G: {size}");
    assert!(
        is_rfc3339(status["created"].as_str().expect("created")),
        "{inspected:#}"
    );
    let created_at = inspected["CreatedAt"].as_str().expect("CreatedAt");
    assert!(
        is_rfc3339(created_at),
        "CreatedAt is not RFC 3339: {created_at}"
    );

    let mountpoint = inspected["Mountpoint"].as_str().expect("Mountpoint");
    assert!(
        mountpoint.ends_with(&format!("/mounts/{id}")),
        "{mountpoint}"
    );
    assert_eq!(
        PathBuf::from(mountpoint),
        daemon.root.join("mounts").join(id)
    );

    let api = api_volume(&daemon, name);
    assert_eq!(api["id"], id);
    assert_eq!(api["size_bytes"], 1u64 << 30);
    assert!(
        data_dir(&daemon, id).is_dir(),
        "the volume's data directory should exist"
    );
}

#[test]
fn data_written_in_one_container_is_read_in_another() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let daemon = Daemon::start();
    let volume = DockerVolume::new(&daemon, "share");

    run_ok(&daemon, &volume.name, "echo hi > /data/f");
    assert_eq!(run_ok(&daemon, &volume.name, "cat /data/f"), "hi");

    let id = volume_id(&daemon, &volume.name);
    let on_host = std::fs::read_to_string(data_dir(&daemon, &id).join("f")).expect("data on host");
    assert_eq!(on_host, "hi\n");
}

#[test]
fn profile_suffix_creates_the_volume_and_a_wrong_profile_is_refused() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let daemon = Daemon::start();
    let mut volume = DockerVolume::new(&daemon, "suffix");
    let bronze = format!("{}@bronze", volume.name);
    let gold = format!("{}@gold", volume.name);

    run_ok(&daemon, &bronze, "echo bronze-data > /data/f");
    volume.aliases.push(bronze);

    let inspect = daemon.cli(&["volume", "inspect", &volume.name]);
    assert!(
        inspect.status.success(),
        "dvol volume inspect: {}",
        stderr(&inspect)
    );
    let view: Value = serde_json::from_slice(&inspect.stdout).expect("dvol volume inspect JSON");
    assert_eq!(view["name"], volume.name.as_str(), "{view:#}");
    assert_eq!(view["profile"], "bronze", "{view:#}");

    assert_eq!(run_ok(&daemon, &volume.name, "cat /data/f"), "bronze-data");

    let out = run(&daemon, &gold, "true");
    assert!(
        !out.status.success(),
        "{gold} should be refused: the volume is bronze"
    );
    let err = stderr(&out);
    assert!(
        err.contains("bronze"),
        "the error should name the real profile: {err}"
    );
    assert_eq!(api_names(&daemon), vec![volume.name.clone()]);
    assert_eq!(api_volume(&daemon, &volume.name)["profile"], "bronze");
}

#[test]
fn docker_cp_into_a_running_container_lands_in_the_volume() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let daemon = Daemon::start();
    let volume = DockerVolume::new(&daemon, "cp");
    let container = Container::start(&daemon, &volume.name, "sleep 300");

    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("copied");
    std::fs::write(&file, "copied in\n").unwrap();
    let source = file.display().to_string();
    must(
        &daemon,
        &["cp", &source, &format!("{}:/data/copied", container.0)],
    );

    assert_eq!(container.exec(&daemon, "cat /data/copied"), "copied in");
    // docker cp mounted and unmounted once more with the container's mount id: one mount remains.
    let mounts = api_volume(&daemon, &volume.name)["mounts"].clone();
    let total: u64 = mounts
        .as_object()
        .expect("mounts")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(
        total, 1,
        "one active mount expected after docker cp: {mounts}"
    );

    container.remove(&daemon);
    wait_no_mounts(&daemon);
    assert_eq!(
        run_ok(&daemon, &volume.name, "cat /data/copied"),
        "copied in"
    );
}

#[test]
fn stopping_and_starting_a_container_keeps_its_data() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let daemon = Daemon::start();
    let volume = DockerVolume::new(&daemon, "restart");
    let container = Container::start(&daemon, &volume.name, "echo boot >> /data/boots; sleep 300");
    wait_until(&daemon, "the first boot is written", 10, || {
        container.exec(&daemon, "cat /data/boots 2>/dev/null || true") == "boot"
    });

    container.stop(&daemon);
    wait_no_mounts(&daemon);
    assert_eq!(api_volume(&daemon, &volume.name)["mounted"], false);

    must(&daemon, &["start", &container.0]);
    wait_until(&daemon, "the second boot is written", 10, || {
        container.exec(&daemon, "wc -l < /data/boots") == "2"
    });
    assert_eq!(container.exec(&daemon, "cat /data/boots"), "boot\nboot");
    assert_eq!(api_volume(&daemon, &volume.name)["mounted"], true);
}

#[test]
fn removing_a_volume_in_use_fails_until_its_container_is_gone() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let daemon = Daemon::start();
    let volume = DockerVolume::new(&daemon, "inuse");
    let container = Container::start(&daemon, &volume.name, "echo x > /data/f; sleep 300");
    wait_until(&daemon, "the container wrote its file", 10, || {
        container.exec(&daemon, "cat /data/f 2>/dev/null || true") == "x"
    });
    let id = volume_id(&daemon, &volume.name);

    let err = must_fail(&daemon, &["volume", "rm", &volume.name]);
    assert!(
        err.contains("in use"),
        "docker volume rm should say it is in use: {err}"
    );
    assert!(api_names(&daemon).contains(&volume.name));
    assert!(
        data_dir(&daemon, &id).join("f").is_file(),
        "data must survive a refused rm"
    );

    container.remove(&daemon);
    must(&daemon, &["volume", "rm", &volume.name]);
    assert!(
        !data_dir(&daemon, &id).exists(),
        "the data directory should be gone"
    );
    assert!(
        !daemon.root.join("mounts").join(&id).exists(),
        "the mountpoint should be gone"
    );
    assert!(!api_names(&daemon).contains(&volume.name));
    assert_eq!(
        daemon
            .api("GET", &format!("/v1/volumes/{}", volume.name), "")
            .status,
        404
    );
    let listed = docker_volume_ls(&daemon, Some(&daemon.driver));
    assert!(
        listed.is_empty(),
        "docker volume ls should not list it: {listed:?}"
    );
    assert!(
        daemon.kernel_mounts().is_empty(),
        "{:?}",
        daemon.kernel_mounts()
    );
}

#[test]
fn names_dvol_refuses_fail_docker_run_with_dvols_message() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let daemon = Daemon::start();
    let base = unique("bad");
    let long = DockerVolume::named(&daemon, format!("{base}{}", "x".repeat(70 - base.len())));
    let snapshot = DockerVolume::named(&daemon, format!("{base}@snapshot-zz"));
    assert_eq!(long.name.len(), 70);

    for (volume, message) in [(&long, "at most 64 characters"), (&snapshot, "snapshot")] {
        let out = run(&daemon, &volume.name, "true");
        assert!(
            !out.status.success(),
            "docker run with {} should fail",
            volume.name
        );
        let err = stderr(&out);
        assert!(
            err.contains(message),
            "stderr should carry dvol's message {message:?}: {err}"
        );
    }
    assert!(
        api_names(&daemon).is_empty(),
        "no volume should have been created"
    );
}

#[test]
fn a_crashed_daemon_comes_back_without_disturbing_a_writing_container() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let mut daemon = Daemon::start();
    let volume = DockerVolume::new(&daemon, "crash");
    let container = Container::start(
        &daemon,
        &volume.name,
        "i=0; while true; do echo $i >> /data/log; i=$((i+1)); sleep 0.1; done",
    );
    let log = data_dir(&daemon, &volume_id(&daemon, &volume.name)).join("log");
    let log_len = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    wait_until(&daemon, "the container writes", 10, || log_len() > 0);

    daemon.kill9();
    let before = log_len();
    wait_until(
        &daemon,
        "the container keeps writing while dvol is down",
        10,
        || log_len() > before,
    );
    daemon.spawn();
    let before = log_len();
    wait_until(
        &daemon,
        "the container keeps writing after dvol restarts",
        10,
        || log_len() > before,
    );

    let listed = docker_volume_ls(&daemon, Some(&daemon.driver));
    assert!(
        listed.contains(&format!("{} {}", daemon.driver, volume.name)),
        "docker volume ls should still list {}: {listed:?}",
        volume.name
    );
    assert_eq!(api_volume(&daemon, &volume.name)["mounted"], true);

    container.stop(&daemon);
    container.remove(&daemon);
    must(&daemon, &["volume", "rm", &volume.name]);
    wait_no_mounts(&daemon);
    assert!(api_names(&daemon).is_empty());
}

#[test]
fn docker_run_rm_leaves_no_mount_behind() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let daemon = Daemon::start();
    let volume = DockerVolume::new(&daemon, "runrm");

    assert_eq!(
        run_ok(&daemon, &volume.name, "echo x > /data/f; cat /data/f"),
        "x"
    );
    wait_no_mounts(&daemon);
    let view = api_volume(&daemon, &volume.name);
    assert_eq!(view["mounted"], false, "{view:#}");
    assert_eq!(view["mounts"], serde_json::json!({}), "{view:#}");
}

#[test]
fn two_containers_share_one_volume_at_once() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let daemon = Daemon::start();
    let volume = DockerVolume::new(&daemon, "twice");
    let a = Container::start(&daemon, &volume.name, "echo a > /data/a; sleep 300");
    let b = Container::start(&daemon, &volume.name, "echo b > /data/b; sleep 300");
    wait_until(&daemon, "both containers wrote", 10, || {
        a.exec(&daemon, "cat /data/b 2>/dev/null || true") == "b"
            && b.exec(&daemon, "cat /data/a 2>/dev/null || true") == "a"
    });
    a.exec(&daemon, "echo from-a > /data/later");
    assert_eq!(b.exec(&daemon, "cat /data/later"), "from-a");
    assert_eq!(
        daemon.kernel_mounts().len(),
        1,
        "{:?}",
        daemon.kernel_mounts()
    );

    a.stop(&daemon);
    b.exec(&daemon, "echo still > /data/still");
    assert_eq!(b.exec(&daemon, "cat /data/still /data/a"), "still\na");
    assert_eq!(api_volume(&daemon, &volume.name)["mounted"], true);

    b.stop(&daemon);
    wait_no_mounts(&daemon);
    assert_eq!(api_volume(&daemon, &volume.name)["mounted"], false);
}
