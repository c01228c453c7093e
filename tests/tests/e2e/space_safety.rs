//! Disk space and freezes, end to end, with the real Docker Engine and a real `dvol daemon`
//! whose state root is on a small ext4 filesystem of the test's own (an image it mounts):
//!
//! - sparse (silver) volumes are accepted only while the filesystem can back everything they
//!   were promised, less the reserve; the refusal says the numbers; `dvol node` shows free,
//!   total and promised bytes of that filesystem; every accepted volume can then be written
//!   full from a container, and what it wrote survives unmount and remount;
//! - `kill -9` of the daemon during a long frozen commit: the filesystem thaws at once (the
//!   freeze's watchdog outlives the daemon), a container's writes go on, with no restart;
//! - a freeze that reaches `freeze_limit_seconds` is lifted, and its commit fails and records
//!   nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dvol_tests::fixtures::{
    api_expect, host_write_finishes, run_ok, stderr, stdout, wait_until, Container, DockerVolume,
    ThawOnDrop,
};
use dvol_tests::{docker_ready, dvol_bin, http_unix, is_root, require, Daemon};
use serde_json::{json, Value};

fn ready() -> bool {
    require("root", is_root()) && require("Docker Engine", docker_ready())
}

/// A container that keeps rewriting `/data/counter` with the next number.
const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i > /data/counter.new; mv /data/counter.new /data/counter; sleep 0.05; done";

/// An ext4 filesystem of a given size on a sparse image, mounted under /tmp, and a folder
/// beside it for files that must not be on it; unmounted (lazily, in case a failed test left
/// something open) when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(mib: u64) -> SmallFs {
        let dir = tempfile::Builder::new()
            .prefix("dvol-e2e-space-")
            .tempdir()
            .unwrap();
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(mkfs.status.success(), "{mkfs:?}");
        std::fs::create_dir(dir.path().join("fs")).unwrap();
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir.path().join("fs"))
            .output()
            .unwrap();
        assert!(mount.status.success(), "{mount:?}");
        SmallFs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("fs")
    }

    /// Writes a configuration file beside the filesystem; returns the daemon arguments for it.
    fn config(&self, text: &str) -> Vec<String> {
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        vec!["--config".into(), path.display().to_string()]
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).output();
    }
}

/// The `dvol node --json` row of `profile`.
fn node_row(daemon: &Daemon, profile: &str) -> Value {
    let out = daemon.cli(&["node", "--json"]);
    assert!(out.status.success(), "dvol node: {}", stderr(&out));
    let node: Value = serde_json::from_slice(&out.stdout).unwrap();
    node["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profile"] == profile)
        .cloned()
        .unwrap_or_else(|| panic!("no {profile} in {node:#}"))
}

#[test]
fn silver_volumes_are_refused_when_the_disk_cannot_back_them_and_accepted_ones_keep_their_data() {
    if !ready() {
        return;
    }
    let small = SmallFs::mount(400);
    let config = small.config(
        r#"
default_profile = "silver"
reserve = "64MiB"
reserve_percent = 0
[profiles.silver]
backend = "loop"
size = "64M"
filesystem = "ext4"
[profiles.bronze]
backend = "directory"
"#,
    );
    let daemon = Daemon::start_for_docker_under(&small.path(), config);
    let mut volumes: Vec<DockerVolume> = Vec::new();
    let refusal = loop {
        assert!(
            volumes.len() < 20,
            "20 silver volumes of 64M accepted on a 400M filesystem; dvol node: {:#}",
            node_row(&daemon, "silver")
        );
        let volume = DockerVolume::new("dvol-e2e-full");
        let response = http_unix(
            &daemon.api_socket,
            "POST",
            "/v1/volumes",
            json!({ "name": volume.name }).to_string().as_bytes(),
        )
        .unwrap();
        match response.status {
            201 => volumes.push(volume),
            _ => break response,
        }
    };
    assert_eq!(
        refusal.status,
        400,
        "{}",
        String::from_utf8_lossy(&refusal.body)
    );
    let error = refusal.json()["error"].clone();
    assert_eq!(error["code"], "refused", "{error:#}");
    let message = error["message"].as_str().unwrap();
    for needle in [
        "not enough disk space for a 64MiB volume",
        "in reserve",
        "already promised",
        "max_overprovision",
    ] {
        assert!(message.contains(needle), "{needle:?} missing: {message}");
    }
    assert!(
        volumes.len() >= 3,
        "only {} accepted: {message}",
        volumes.len()
    );

    // `dvol node` measures the small filesystem, and counts the promises.
    let silver = node_row(&daemon, "silver");
    let capacity = &silver["capacity"];
    let total = capacity["total_bytes"].as_u64().unwrap();
    let free = capacity["free_bytes"].as_u64().unwrap();
    let promised = capacity["promised_bytes"].as_u64().unwrap();
    assert!(total < 400 << 20, "{silver:#}");
    assert_eq!(capacity["reserved_bytes"], 64 << 20, "{silver:#}");
    assert!(
        promised > (volumes.len() as u64 - 1) * (48 << 20),
        "{silver:#}"
    );
    assert!(promised + (64 << 20) <= free, "{silver:#}");
    assert_eq!(node_row(&daemon, "bronze")["capacity"]["promised_bytes"], 0);
    let table = daemon.cli(&["node"]);
    assert!(stdout(&table).contains("PROMISED"), "{}", stdout(&table));

    // Every accepted volume is written full; what it wrote is there after a remount.
    for volume in &volumes {
        let written = run_ok(
            &daemon,
            &volume.name,
            "dd if=/dev/urandom of=/data/fill bs=1M 2>/dev/null; sync; \
             ls -l /data/fill | awk '{print $5}'; md5sum /data/fill | cut -d' ' -f1",
        );
        let lines: Vec<&str> = written.lines().collect();
        let size: u64 = lines[0].trim().parse().unwrap();
        assert!(size > 40 << 20, "{} took only {size} bytes", volume.name);
        let again = run_ok(&daemon, &volume.name, "md5sum /data/fill | cut -d' ' -f1");
        assert_eq!(
            again.trim(),
            lines[1].trim(),
            "{} lost data; kernel log:\n{}",
            volume.name,
            kernel_log_tail()
        );
    }
    let after = node_row(&daemon, "silver");
    assert!(
        after["capacity"]["promised_bytes"].as_u64().unwrap() < promised / 2,
        "written volumes are still promised: {after:#}"
    );
}

/// The last lines of the kernel's log, for a failure message.
fn kernel_log_tail() -> String {
    let out = Command::new("dmesg").output();
    out.map(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    })
    .unwrap_or_default()
}

/// A daemon whose root is on `small`, with one silver profile and `freeze_limit_seconds`.
fn daemon_with_freeze_limit(small: &SmallFs, seconds: u64) -> Daemon {
    let config = small.config(&format!(
        r#"
default_profile = "silver"
freeze_limit_seconds = {seconds}
[profiles.silver]
backend = "loop"
size = "1G"
filesystem = "ext4"
"#
    ));
    Daemon::start_for_docker_under(&small.path(), config)
}

/// A silver volume holding `mib` MiB of random data in files, used by a container running
/// [`COUNTER`].
fn busy_volume(daemon: &Daemon, mib: u64) -> (DockerVolume, Container) {
    let volume = DockerVolume::new("dvol-e2e-freeze");
    run_ok(
        daemon,
        &volume.name,
        &format!(
            "for i in $(seq 1 {}); do dd if=/dev/urandom of=/data/f$i bs=1M count=64 2>/dev/null; done; sync",
            mib / 64
        ),
    );
    let container = Container::start(daemon, &volume.name, COUNTER);
    wait_until(daemon, "the container has written its counter", 20, || {
        !container
            .exec(daemon, "cat /data/counter 2>/dev/null || true")
            .is_empty()
    });
    (volume, container)
}

fn counter(daemon: &Daemon, container: &Container) -> u64 {
    container
        .exec(daemon, "cat /data/counter")
        .trim()
        .parse()
        .expect("counter")
}

/// Starts `dvol commit` of `volume` in the background.
fn start_commit(daemon: &Daemon, volume: &str) -> std::process::Child {
    Command::new(dvol_bin())
        .arg("--host")
        .arg(format!("unix://{}", daemon.api_socket.display()))
        .args(["commit", "-V", volume, "-m", "long"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the volume at `mountpoint` is frozen: the daemon said so, and a write blocks.
fn wait_frozen(daemon: &Daemon, mountpoint: &Path) {
    wait_until(daemon, "the commit reads the volume frozen", 60, || {
        daemon
            .log()
            .lines()
            .any(|l| l.contains("reading at a fixed point") && l.contains("Frozen"))
    });
    assert!(
        !host_write_finishes(mountpoint, "probe", Duration::from_millis(300)),
        "the volume is not frozen; log:\n{}",
        daemon.log()
    );
}

#[test]
fn kill_9_during_a_long_frozen_commit_thaws_the_volume_without_a_restart() {
    if !ready() {
        return;
    }
    let small = SmallFs::mount(1536);
    let limit = 60;
    let mut daemon = daemon_with_freeze_limit(&small, limit);
    let (volume, container) = busy_volume(&daemon, 512);
    let mountpoint = daemon.mountpoint(&volume.name);
    let _thaw = ThawOnDrop(mountpoint.clone());
    let mut commit = start_commit(&daemon, &volume.name);
    wait_frozen(&daemon, &mountpoint);

    daemon.kill9();
    let killed = Instant::now();
    assert!(
        host_write_finishes(&mountpoint, "after-kill", Duration::from_secs(limit)),
        "still frozen {limit} s after kill -9 of the daemon; log:\n{}",
        daemon.log()
    );
    let thawed = killed.elapsed();
    let _ = commit.wait();
    let seen = counter(&daemon, &container);
    wait_until(
        &daemon,
        "the container writes again, the daemon still down",
        10,
        || counter(&daemon, &container) > seen,
    );
    eprintln!("thawed {thawed:?} after kill -9 of the daemon (limit {limit} s)");
    assert!(
        thawed < Duration::from_secs(5),
        "thawed only after {thawed:?}"
    );

    // The next daemon finds the volume thawed and commits it.
    daemon.spawn();
    let again = api_expect(
        &daemon,
        "POST",
        &format!("/v1/volumes/{}/commits", volume.name),
        &json!({ "message": "after the crash" }),
        201,
    );
    assert_eq!(again["read_from"], "frozen", "{again:#}");
}

#[test]
fn a_freeze_that_reaches_its_limit_is_lifted_and_its_commit_records_nothing() {
    if !ready() {
        return;
    }
    let small = SmallFs::mount(1536);
    let daemon = daemon_with_freeze_limit(&small, 1);
    let (volume, container) = busy_volume(&daemon, 512);
    let mountpoint = daemon.mountpoint(&volume.name);
    let _thaw = ThawOnDrop(mountpoint.clone());
    let started = Instant::now();
    let commit = start_commit(&daemon, &volume.name);
    wait_frozen(&daemon, &mountpoint);
    assert!(
        host_write_finishes(&mountpoint, "after-limit", Duration::from_secs(5)),
        "the freeze outlived its 1 s limit; log:\n{}",
        daemon.log()
    );
    let resumed = started.elapsed();
    let out = commit.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the commit was recorded although its freeze was lifted after {resumed:?}: {}",
        stdout(&out)
    );
    let message = stderr(&out);
    for needle in [
        "not recorded",
        "reached its limit of 1s",
        "freeze_limit_seconds",
    ] {
        assert!(message.contains(needle), "{needle:?} missing: {message}");
    }
    let log = api_expect(
        &daemon,
        "GET",
        &format!("/v1/volumes/{}/commits", volume.name),
        &Value::Null,
        200,
    );
    assert_eq!(log["commits"], json!([]), "{log:#}");
    let seen = counter(&daemon, &container);
    wait_until(&daemon, "the container writes on", 10, || {
        counter(&daemon, &container) > seen
    });
    eprintln!("writers resumed {resumed:?} after the commit began (limit 1 s)");
}
