//! Copy-on-write end to end, with the real Docker Engine and a real `dvol daemon`: consistent
//! commits of loop volumes that a running container keeps writing, and instant clones.
//!
//! - On a daemon root without reflink (this host's ext4), the commit reads the volume frozen,
//!   says so (`read_from: frozen`), does not stop or restart the container, and the
//!   container's writes go on afterwards.
//! - `kill -9` of the daemon while a volume is frozen (during a real commit, and at a freeze
//!   with its mark left exactly as a crash leaves it): the restart thaws the filesystem, so
//!   the container's writes complete, and the history stays consistent.
//! - On a daemon root on XFS (an image the test mounts), images share blocks: a commit reads a
//!   reflinked copy (`read_from: snapshot`), and `docker run -v COPY@snapshot-UUID` makes the
//!   clone by reflink, like its source (profile, size), while the source's container runs.
//! - There, a commit after a few pages of a large file were written reads about a chunk per
//!   page, not the file (`files_read_by_ranges`), also once no container uses the volume; a
//!   clone of that commit holds exactly the file as it was, and checking that commit out
//!   again rewrites only the chunk that differs (`files_patched`). The same for a directory
//!   volume (bronze), read live with copies of its large files made at the read point. On
//!   ext4 every commit says why it read changed files whole (`full_read_reason`).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use dvol_tests::fixtures::*;
use dvol_tests::{docker_ready, is_root, require, Daemon};
use serde_json::Value;

/// A container that keeps rewriting `/data/counter` with the next number.
const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i > /data/counter.new; mv /data/counter.new /data/counter; sleep 0.05; done";

/// Whether the test may go on: it needs root (for `fsfreeze` and mounts) and the engine.
fn ready() -> bool {
    require("root", is_root()) && require("Docker Engine", docker_ready())
}

/// For a test that needs root and the Docker Engine: [`Daemon::start_for_docker`], or `None`
/// when the test skips.
fn daemon_for_test() -> Option<Daemon> {
    ready().then(Daemon::start_for_docker)
}

fn started_at(daemon: &Daemon, container: &Container) -> String {
    must(
        daemon,
        &["inspect", "-f", "{{.State.StartedAt}}", &container.0],
    )
}

/// Waits until the [`COUNTER`] container writes a number larger than it has now; `what` says
/// when.
fn wait_counter_moves(daemon: &Daemon, container: &Container, what: &str) {
    let seen = counter(daemon, container);
    wait_until(daemon, what, 10, || counter(daemon, container) > seen);
}

fn counter(daemon: &Daemon, container: &Container) -> u64 {
    container
        .exec(daemon, "cat /data/counter")
        .trim()
        .parse()
        .expect("counter")
}

/// A silver (loop ext4) volume of `size` used by a container running [`COUNTER`].
fn loop_volume_in_use(daemon: &Daemon, size: &str) -> (DockerVolume, Container) {
    let size = format!("size={size}");
    let volume = docker_volume_create(daemon, &unique("dvol-e2e-rp"), &["profile=silver", &size]);
    let container = Container::start(daemon, &volume.name, COUNTER);
    wait_until(daemon, "the container has written its counter", 20, || {
        !container
            .exec(daemon, "cat /data/counter 2>/dev/null || true")
            .is_empty()
    });
    (volume, container)
}

/// Writes rows `t1`..`t20` through the container, commits, checks the commit read the volume
/// as `read_from` says and recorded a change; returns when the container started.
fn commit_rows_read_from(
    daemon: &Daemon,
    volume: &DockerVolume,
    container: &Container,
    read_from: &str,
) -> String {
    container.exec(
        daemon,
        "mkdir -p /data/db && for i in $(seq 1 20); do echo row $i > /data/db/t$i; done",
    );
    let before = started_at(daemon, container);
    let result = commit(daemon, &volume.name, "while running");
    assert_eq!(result["read_from"], read_from, "{result:#}");
    assert_eq!(result["changed"], true, "{result:#}");
    if read_from == "frozen" {
        assert_eq!(
            result["full_read_reason"], "this storage cannot tell changed ranges",
            "{result:#}"
        );
    }
    before
}

#[test]
fn a_commit_of_a_loop_volume_in_use_reads_it_frozen_and_leaves_the_container_running() {
    let Some(daemon) = daemon_for_test() else {
        return;
    };
    let (volume, container) = loop_volume_in_use(&daemon, "128M");
    let before = commit_rows_read_from(&daemon, &volume, &container, "frozen");
    assert!(!counts_changes(&daemon, "silver"), "on ext4");
    let diff = volume_status(&daemon, &volume.name);
    // Everything but the counter (rewritten since) is exactly what was committed.
    for change in diff.as_array().expect("status") {
        let path = change["path"].as_str().unwrap_or_default();
        assert!(path.starts_with("counter"), "{path} changed: {diff:#}");
    }

    assert!(
        container.running(&daemon),
        "the commit stopped the container"
    );
    assert_eq!(
        started_at(&daemon, &container),
        before,
        "the container restarted"
    );
    wait_counter_moves(
        &daemon,
        &container,
        "the container writes again after the commit",
    );
    assert!(
        !daemon
            .root
            .join("read-points")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "a read point directory outlived the commit"
    );
    let mountpoint = daemon.mountpoint(&volume.name);
    assert!(host_write_finishes(
        &mountpoint,
        "host",
        Duration::from_secs(5)
    ));
    assert_fsck_clean(&daemon, "after a frozen commit");
}

#[test]
fn kill9_while_a_volume_is_frozen_thaws_it_at_restart() {
    let Some(mut daemon) = daemon_for_test() else {
        return;
    };
    let (volume, container) = loop_volume_in_use(&daemon, "512M");
    let mountpoint = daemon.mountpoint(&volume.name);
    let _thaw = ThawOnDrop(mountpoint.clone());
    // 160 MiB of incompressible files, so a commit runs long enough to be killed inside.
    container.exec(
        &daemon,
        "mkdir -p /data/blobs && for i in $(seq 1 40); do \
         dd if=/dev/urandom of=/data/blobs/b$i bs=1M count=4 2>/dev/null; done",
    );
    let first = commit(&daemon, &volume.name, "base");
    let base = first["commit"]["id"].as_str().unwrap().to_string();
    container.exec(
        &daemon,
        "for i in $(seq 1 40); do dd if=/dev/urandom of=/data/blobs/b$i bs=1M count=4 \
         conv=notrunc 2>/dev/null; done",
    );

    // A real commit, killed while it reads the frozen volume.
    let path = format!("/v1/volumes/{}/commits", volume.name);
    let answered = kill9_during_request(
        &mut daemon,
        &path,
        r#"{"message":"interrupted"}"#,
        |daemon| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !daemon.log().contains("reading at a fixed point") {
                assert!(Instant::now() < deadline, "no read point: {}", daemon.log());
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(100));
        },
    );
    eprintln!("the commit killed while frozen was answered: {answered:?}");
    let frozen = !host_write_finishes(&mountpoint, "during-crash", Duration::from_millis(500));

    daemon.spawn();
    assert!(
        host_write_finishes(&mountpoint, "after-restart", Duration::from_secs(10)),
        "the volume is still frozen after the restart; log:\n{}",
        daemon.log()
    );
    if frozen {
        assert!(
            daemon
                .log()
                .contains("released a read point left by a crash"),
            "{}",
            daemon.log()
        );
    }
    assert!(!daemon
        .root
        .join("read-points")
        .read_dir()
        .unwrap()
        .any(|_| true));
    wait_counter_moves(
        &daemon,
        &container,
        "the container writes after the restart",
    );
    assert_fsck_clean(&daemon, "after kill -9 during a frozen commit");
    let log = commit_log(&daemon, &volume.name);
    let head = log["head"].as_str().unwrap();
    let messages: Vec<&str> = log["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"].as_str().unwrap())
        .collect();
    assert!(
        head == base || messages[0] == "interrupted",
        "HEAD is neither the old commit nor the whole new one: {log:#}"
    );
    let again = commit(&daemon, &volume.name, "after the crash");
    assert_eq!(again["read_from"], "frozen", "{again:#}");
    assert_fsck_clean(&daemon, "after the commit following the crash");
}

#[test]
fn a_freeze_a_crash_left_marked_is_thawed_at_restart() {
    let Some(mut daemon) = daemon_for_test() else {
        return;
    };
    let (volume, container) = loop_volume_in_use(&daemon, "64M");
    let mountpoint = daemon.mountpoint(&volume.name);
    let id = volume_id(&daemon, &volume.name);
    let _thaw = ThawOnDrop(mountpoint.clone());
    // Exactly what a crash between freezing and releasing leaves: the mark, and the freeze.
    let mark = daemon.root.join("read-points").join(&id);
    std::fs::create_dir_all(&mark).unwrap();
    daemon.kill9();
    let frozen = Command::new("fsfreeze")
        .arg("-f")
        .arg(&mountpoint)
        .output()
        .unwrap();
    assert!(frozen.status.success(), "{frozen:?}");
    assert!(!host_write_finishes(
        &mountpoint,
        "frozen",
        Duration::from_millis(300)
    ));

    daemon.spawn();
    assert!(
        host_write_finishes(&mountpoint, "thawed", Duration::from_secs(10)),
        "still frozen after the restart; log:\n{}",
        daemon.log()
    );
    assert!(!mark.exists(), "the read point mark outlived its release");
    assert!(daemon
        .log()
        .contains("released a read point left by a crash"));
    wait_counter_moves(
        &daemon,
        &container,
        "the container writes after the restart",
    );
}

/// An XFS filesystem with reflink on a sparse image, mounted under /tmp; unmounted (lazily, in
/// case a failed test left something open) when dropped.
pub(crate) struct XfsPool {
    dir: tempfile::TempDir,
}

impl XfsPool {
    pub(crate) fn mount() -> XfsPool {
        let dir = tempfile::Builder::new()
            .prefix("dvol-e2e-xfs-")
            .tempdir()
            .unwrap();
        let image = dir.path().join("pool.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(4 << 30)
            .unwrap();
        let mkfs = Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(mkfs.status.success(), "{mkfs:?}");
        std::fs::create_dir(dir.path().join("pool")).unwrap();
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir.path().join("pool"))
            .output()
            .unwrap();
        assert!(mount.status.success(), "{mount:?}");
        XfsPool { dir }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("pool")
    }
}

impl Drop for XfsPool {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).output();
    }
}

#[test]
fn on_a_reflink_root_commits_read_a_copy_and_clones_share_blocks() {
    if !ready() {
        return;
    }
    let pool = XfsPool::mount();
    let daemon = Daemon::start_for_docker_under(&pool.path(), Vec::new());
    let (volume, container) = loop_volume_in_use(&daemon, "256M");
    let before = commit_rows_read_from(&daemon, &volume, &container, "snapshot");

    let source = api_volume(&daemon, &volume.name);
    let uuid = source["id"].as_str().unwrap().replace('-', "");
    let copy = DockerVolume::new("dvol-e2e-cow-copy");
    let alias = copy.alias(&format!("snapshot-{}", &uuid[..8]));
    let started = Instant::now();
    let rows = run_ok(&daemon, &alias, "cat /data/db/t1 /data/db/t20");
    eprintln!(
        "docker run on a reflinked clone took {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(rows, "row 1\nrow 20");
    assert!(
        daemon.log().contains("cloned by sharing blocks"),
        "the clone was copied file by file; log:\n{}",
        daemon.log()
    );
    let clone = api_volume(&daemon, &copy.name);
    assert_eq!(clone["profile"], source["profile"], "{clone:#}");
    assert_eq!(clone["size"], source["size"], "{clone:#}");
    assert_eq!(clone["filesystem"], source["filesystem"], "{clone:#}");
    let log = commit_log(&daemon, &copy.name);
    assert_eq!(
        log["head"],
        Value::Null,
        "an instant clone starts with no commits: {log:#}"
    );

    // The source's container never stopped and writes on; the clone is its own.
    assert_eq!(started_at(&daemon, &container), before);
    wait_counter_moves(&daemon, &container, "the container writes after the clone");
    run_ok(&daemon, &alias, "echo changed > /data/db/t1");
    assert_eq!(container.exec(&daemon, "cat /data/db/t1"), "row 1");
    assert_fsck_clean(&daemon, "after a reflinked commit and clone");
}

/// Writes 8 KiB of random bytes at each of `pages` (8 KiB page numbers) of `/data/table`,
/// in place and durably, through `container`.
fn write_pages(daemon: &Daemon, container: &Container, pages: &[u64]) {
    for page in pages {
        container.exec(
            daemon,
            &format!(
                "dd if=/dev/urandom of=/data/table bs=8k count=1 seek={page} conv=notrunc,fsync 2>/dev/null"
            ),
        );
    }
}

/// Whether `GET /v1/profiles` says commits of `profile`'s volumes read by changed ranges.
fn counts_changes(daemon: &Daemon, profile: &str) -> bool {
    let profiles = api_expect(daemon, "GET", "/v1/profiles", &Value::Null, 200);
    let found = profiles
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == profile))
        .unwrap_or_else(|| panic!("no {profile} profile: {profiles:#}"));
    found["changed_ranges"]
        .as_bool()
        .unwrap_or_else(|| panic!("{found:#}"))
}

fn u64_of(result: &Value, key: &str) -> u64 {
    result[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key}: {result:#}"))
}

#[test]
fn on_a_reflink_root_a_commit_reads_only_around_the_pages_written_since_the_last() {
    reads_only_around_the_pages_written(&["profile=silver", "size=512M"], "snapshot");
}

#[test]
fn on_a_reflink_root_a_directory_volume_commit_reads_only_around_the_pages_written() {
    reads_only_around_the_pages_written(&["profile=bronze"], "live");
}

/// On a daemon root on XFS, a volume made with `options` is committed while a container
/// writes pages of a large file (read at `read_from`), then while none uses it; each commit
/// reads only around the pages, and a clone and a checkout give the file back exactly.
fn reads_only_around_the_pages_written(options: &[&str], read_from: &str) {
    if !ready() {
        return;
    }
    let pool = XfsPool::mount();
    let daemon = Daemon::start_for_docker_under(&pool.path(), Vec::new());
    let volume = docker_volume_create(&daemon, &unique("dvol-e2e-ranges"), options);
    let profile = api_volume(&daemon, &volume.name)["profile"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(counts_changes(&daemon, &profile), "{profile} on XFS");
    let container = Container::start(&daemon, &volume.name, "sleep 600");
    container.exec(
        &daemon,
        "dd if=/dev/urandom of=/data/table bs=1M count=96 conv=fsync 2>/dev/null",
    );
    let first = commit(&daemon, &volume.name, "loaded");
    assert_eq!(first["read_from"], read_from, "{first:#}");
    assert_eq!(u64_of(&first, "files_read_by_ranges"), 0, "{first:#}");
    assert!(
        first["full_read_reason"]
            .as_str()
            .is_some_and(|r| r.contains("no base")),
        "{first:#}"
    );

    write_pages(&daemon, &container, &[100, 4000, 11000]);
    let digest = container.exec(&daemon, "sha256sum < /data/table");
    let second = commit(&daemon, &volume.name, "three pages");
    assert_eq!(u64_of(&second, "files_read_by_ranges"), 1, "{second:#}");
    assert_eq!(second["full_read_reason"], Value::Null, "{second:#}");
    let read = u64_of(&second, "bytes_read");
    assert!(
        read <= 3 * (5 << 20),
        "read {read} bytes of a 96 MiB file for three 8 KiB pages: {second:#}"
    );
    eprintln!("a commit after three pages written read {read} bytes of 96 MiB");

    // No container uses the volume now: the commit still reads at a read point, by ranges.
    drop(container);
    run_ok(
        &daemon,
        &volume.name,
        "dd if=/dev/urandom of=/data/table bs=8k count=1 seek=7000 conv=notrunc,fsync 2>/dev/null",
    );
    let idle = commit(&daemon, &volume.name, "one page, unused volume");
    assert_eq!(u64_of(&idle, "files_read_by_ranges"), 1, "{idle:#}");
    assert!(u64_of(&idle, "bytes_read") <= 5 << 20, "{idle:#}");

    // The second commit, cloned, holds the file exactly as it was then.
    let id = second["commit"]["id"].as_str().unwrap();
    let copy = docker_volume_create(
        &daemon,
        &unique("dvol-e2e-ranges-copy"),
        &[&format!("from={}", &id[..12])],
    );
    assert_eq!(
        run_ok(&daemon, &copy.name, "sha256sum < /data/table"),
        digest
    );

    // Checking the second commit out again rewrites, in place, only the chunk around the
    // page the idle commit changed (a checkout works this way on any root).
    let back = api_expect(
        &daemon,
        "POST",
        &format!("/v1/volumes/{}/checkout", volume.name),
        &serde_json::json!({ "ref": id }),
        200,
    );
    assert_eq!(u64_of(&back, "files_written"), 1, "{back:#}");
    assert_eq!(u64_of(&back, "files_patched"), 1, "{back:#}");
    let written = u64_of(&back, "bytes_written");
    assert!(
        written <= 2 * (4 << 20),
        "rewrote {written} bytes of a 96 MiB file for one 8 KiB page: {back:#}"
    );
    eprintln!("a checkout undoing one page wrote {written} bytes of 96 MiB");
    assert_eq!(
        run_ok(&daemon, &volume.name, "sha256sum < /data/table"),
        digest
    );
    assert_fsck_clean(&daemon, "after commits read by changed ranges");
}
