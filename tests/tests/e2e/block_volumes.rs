//! Block volumes end to end: loop-device images (silver: sparse ext4; gold without LVM: fully
//! allocated xfs) through a real `dvol daemon` and, where it matters, the real Docker Engine.
//!
//! What is checked: the Docker scenario on silver and gold, a full volume (ENOSPC), growing a
//! volume while a container writes to it (and the refusals: shrinking, growing a mounted ext4
//! filesystem without CAP_SYS_RESOURCE), loop-device leaks over many create/mount/unmount/
//! remove cycles, a crash of the daemon while containers use loop volumes, a simulated reboot
//! (mount and loop device gone behind the daemon's back), and configuration errors.
//!
//! Every test runs its own daemon (own root, own Docker driver name) and uses names of its own,
//! so the tests run in parallel. Loop devices are a host-wide resource other tests use at the
//! same time, so leak checks only count devices whose backing file lies under the test's own
//! daemon root. Containers are removed by drop guards, and the volumes Docker recorded when the
//! test's daemon drops, also when an assertion fails.

use dvol_backends::loop_device::LoopAttachment;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use dvol_tests::fixtures::*;
use dvol_tests::{daemon_must_fail, docker_ready, is_root, require, Daemon};
use serde_json::{json, Value};

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Helpers: Docker (the ones docker.rs shares are in `dvol_tests::fixtures`).
// ---------------------------------------------------------------------------------------------

/// Names `docker volume ls` lists for this daemon's driver.
fn docker_volume_names(daemon: &Daemon) -> Vec<String> {
    let filter = format!("driver={}", daemon.driver);
    must(daemon, &["volume", "ls", "-q", "--filter", &filter])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The total size in KiB of the filesystem at /data, from `df -Pk /data` output.
fn df_total_kib(df: &str) -> u64 {
    let last = df.lines().last().unwrap_or_else(|| panic!("no df output"));
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert!(fields.len() >= 6, "unexpected df output: {df}");
    fields[fields.len() - 5]
        .parse()
        .unwrap_or_else(|e| panic!("df size in {df:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Helpers: the daemon's view, loop devices, files.
// ---------------------------------------------------------------------------------------------

/// Where the loop backend keeps a volume's image.
fn image_path(daemon: &Daemon, id: &str) -> PathBuf {
    daemon.root.join("backends/loop").join(format!("{id}.img"))
}

/// The length of a file, panicking with the path if it cannot be read.
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

/// Runs the CLI against `daemon`; panics with its stderr unless it succeeds; returns stdout.
fn cli_ok(daemon: &Daemon, args: &[&str]) -> String {
    assert_succeeded(daemon, &format!("dvol {args:?}"), &daemon.cli(args))
}

/// Runs the CLI against `daemon`; it must fail; returns its stderr.
fn cli_fails(daemon: &Daemon, args: &[&str]) -> String {
    let err = assert_failed(daemon, &format!("dvol {args:?}"), &daemon.cli(args));
    assert!(!err.is_empty(), "dvol {args:?} failed without a message");
    err
}

/// Every bound loop device on the host, as the kernel reports it.
fn loop_attachments() -> Vec<LoopAttachment> {
    dvol_backends::loop_device::loop_attachments().expect("read /sys/block")
}

/// The loop devices whose backing file lies under the daemon's root (a deleted image shows as
/// `<path> (deleted)`, still under the root).
fn loop_devices_of(daemon: &Daemon) -> Vec<LoopAttachment> {
    let root = daemon.root.canonicalize().unwrap_or(daemon.root.clone());
    loop_attachments()
        .into_iter()
        .filter(|a| a.backing_file.starts_with(&root) || a.backing_file.starts_with(&daemon.root))
        .collect()
}

/// The loop devices serving one image.
fn loop_devices_serving(image: &Path) -> Vec<LoopAttachment> {
    let deleted = format!("{} (deleted)", image.display());
    loop_attachments()
        .into_iter()
        .filter(|a| a.backing_file == image || a.backing_file == Path::new(&deleted))
        .collect()
}

/// Waits until no mount and no loop device of the daemon remains.
fn wait_released(daemon: &Daemon) {
    wait_until(
        daemon,
        "no mount and no loop device under the daemon root remains",
        10,
        || daemon.kernel_mounts().is_empty() && loop_devices_of(daemon).is_empty(),
    );
}

/// Whether this process has CAP_SYS_RESOURCE (the daemon, its child, has the same set).
fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << CAP_SYS_RESOURCE) != 0)
}

// ---------------------------------------------------------------------------------------------
// 1. The Docker scenario on silver and gold
// ---------------------------------------------------------------------------------------------

/// How a profile's volumes look on this host (no LVM volume group: gold is a loop image).
struct Flavour {
    profile: &'static str,
    filesystem: &'static str,
    /// The size given to `docker volume create`.
    size: &'static str,
    /// Whether the image is fully allocated (gold) or sparse (silver).
    preallocated: bool,
    /// For the volume `docker run` creates: `None` uses `-v NAME@PROFILE` (profile default
    /// size); `Some(size)` uses `--mount` with `volume-opt=size=...`, to keep a gold image (10 GiB
    /// and fully allocated by default) small.
    run_size: Option<&'static str>,
}

fn docker_scenario(flavour: Flavour) {
    let daemon = Daemon::start_for_docker();
    let name = unique(&format!("blk-{}", flavour.profile));
    let size: u64 = flavour.size.trim_end_matches('M').parse::<u64>().unwrap() * MIB;
    let profile_opt = format!("profile={}", flavour.profile);
    let size_opt = format!("size={}", flavour.size);
    docker_volume_create(&daemon, &name, &[&size_opt, &profile_opt]);

    // Inspect: Docker shows what dvol made.
    let inspected = docker_volume_inspect(&daemon, &name);
    assert_eq!(inspected["Driver"], daemon.driver.as_str(), "{inspected:#}");
    let status = &inspected["Status"];
    assert_eq!(status["backend"], "loop", "{inspected:#}");
    assert_eq!(status["profile"], flavour.profile, "{inspected:#}");
    assert_eq!(status["filesystem"], flavour.filesystem, "{inspected:#}");
    let shown = status["size"].as_str().expect("Status.size");
    assert!(
        shown.starts_with(&format!("{}iB", flavour.size)),
        "Status.size should show {}: {shown}",
        flavour.size
    );
    let id = status["uuid"].as_str().expect("Status.uuid").to_string();
    assert_eq!(volume_id(&daemon, &name), id);
    let view = api_volume(&daemon, &name);
    assert_eq!(view["size_bytes"], size, "{view:#}");
    assert_eq!(view["backend"], "loop", "{view:#}");

    let image = image_path(&daemon, &id);
    let meta = std::fs::metadata(&image)
        .unwrap_or_else(|e| panic!("the image {} should exist: {e}", image.display()));
    assert_eq!(meta.len(), size, "image length");
    let allocated = meta.blocks() * 512;
    if flavour.preallocated {
        assert!(
            allocated >= size,
            "a {} image must be fully allocated: {allocated} of {size} bytes",
            flavour.profile
        );
    } else {
        assert!(
            allocated < size,
            "a {} image must be sparse: {allocated} of {size} bytes allocated",
            flavour.profile
        );
    }
    assert!(loop_devices_of(&daemon).is_empty(), "attached before use");

    // Write in one container, read in another.
    run_ok(
        &daemon,
        &name,
        "echo written-by-one > /data/f; dd if=/dev/urandom of=/data/blob bs=1k count=512 2>/dev/null; sha256sum /data/blob > /data/blob.sum; sync",
    );
    wait_released(&daemon);
    assert_eq!(
        run_ok(&daemon, &name, "cat /data/f; sha256sum -c /data/blob.sum"),
        "written-by-one\n/data/blob: OK"
    );
    wait_released(&daemon);

    // docker cp into a running container lands in the volume.
    let container = Container::start(&daemon, &name, "sleep 300");
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("copied");
    std::fs::write(&file, "copied in\n").unwrap();
    must(
        &daemon,
        &[
            "cp",
            &file.display().to_string(),
            &format!("{}:/data/copied", container.0),
        ],
    );
    assert_eq!(container.exec(&daemon, "cat /data/copied"), "copied in");
    assert_eq!(
        container.exec(&daemon, "cat /data/f"),
        "written-by-one",
        "the running container sees the earlier data"
    );
    let mountpoint = daemon.root.join("mounts").join(&id);
    assert_eq!(
        daemon.kernel_mounts(),
        vec![mountpoint.clone()],
        "one mount while the container runs"
    );
    let devices = loop_devices_serving(&image);
    assert_eq!(
        devices.len(),
        1,
        "one loop device serves the image: {devices:?}"
    );
    assert_eq!(loop_devices_of(&daemon), devices);

    // rm while in use fails and keeps the data.
    let err = must_fail(&daemon, &["volume", "rm", &name]);
    assert!(
        err.contains("in use"),
        "docker volume rm should say it is in use: {err}"
    );
    assert!(image.is_file(), "a refused rm must keep the image");
    assert!(api_names(&daemon).contains(&name));

    container.remove(&daemon);
    wait_released(&daemon);
    assert_eq!(
        run_ok(&daemon, &name, "cat /data/copied"),
        "copied in",
        "docker cp data survives the container"
    );
    wait_released(&daemon);

    // rm now deletes the image.
    must(&daemon, &["volume", "rm", &name]);
    assert!(!image.exists(), "{} should be gone", image.display());
    assert!(!mountpoint.exists(), "the mountpoint should be gone");
    assert_eq!(
        daemon.api("GET", &format!("/v1/volumes/{name}"), "").status,
        404
    );

    // `docker run` with NAME@PROFILE creates the volume.
    let base = unique(&format!("blk-run-{}", flavour.profile));
    let docker_name = format!("{base}@{}", flavour.profile);
    // Docker records only NAME@PROFILE; the driver lists the volume as NAME.
    let mount_spec;
    let mount_args: Vec<&str> = match flavour.run_size {
        None => {
            mount_spec = format!("{docker_name}:/data");
            vec!["-v", &mount_spec]
        }
        Some(size) => {
            mount_spec = format!(
                "type=volume,volume-driver={},src={docker_name},dst=/data,volume-opt=size={size}",
                daemon.driver
            );
            vec!["--mount", &mount_spec]
        }
    };
    let df = must(
        &daemon,
        &run_args(
            &daemon,
            &mount_args,
            &["--rm"],
            "echo via-run > /data/f && cat /data/f && df -Pk /data",
        ),
    );
    assert!(df.starts_with("via-run\n"), "{df}");
    wait_released(&daemon);
    let run_view = api_volume(&daemon, &base);
    assert_eq!(run_view["profile"], flavour.profile, "{run_view:#}");
    assert_eq!(run_view["backend"], "loop", "{run_view:#}");
    assert_eq!(run_view["filesystem"], flavour.filesystem, "{run_view:#}");
    let run_size = run_view["size_bytes"].as_u64().expect("size_bytes");
    let df_kib = df_total_kib(&df);
    assert!(
        df_kib * 1024 <= run_size && df_kib * 1024 >= run_size / 2,
        "the container sees a filesystem of about {run_size} bytes: {df}"
    );
    let run_id = run_view["id"].as_str().unwrap().to_string();
    let run_image = image_path(&daemon, &run_id);
    assert_eq!(file_len(&run_image), run_size);
    assert_eq!(
        docker_volume_inspect(&daemon, &docker_name)["Status"]["backend"],
        "loop"
    );
    // Docker keeps its record under the name it was given; the driver lists the volume by its
    // own name.
    assert!(
        docker_volume_names(&daemon).contains(&base),
        "docker volume ls should list {base}: {:?}",
        docker_volume_names(&daemon)
    );
    must(&daemon, &["volume", "rm", &docker_name]);
    assert!(
        !run_image.exists(),
        "{} should be gone after docker volume rm",
        run_image.display()
    );

    // Nothing left: no volume, no mount, no loop device, no image.
    assert!(api_names(&daemon).is_empty(), "{:?}", api_names(&daemon));
    assert!(
        daemon.kernel_mounts().is_empty(),
        "{:?}",
        daemon.kernel_mounts()
    );
    assert!(
        loop_devices_of(&daemon).is_empty(),
        "loop devices left: {:?}",
        loop_devices_of(&daemon)
    );
    let images: Vec<_> = std::fs::read_dir(daemon.root.join("backends/loop"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(images.is_empty(), "files left in backends/loop: {images:?}");
}

#[test]
fn silver_volume_docker_scenario() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    docker_scenario(Flavour {
        profile: "silver",
        filesystem: "ext4",
        size: "64M",
        preallocated: false,
        run_size: None,
    });
}

#[test]
fn gold_volume_docker_scenario() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    docker_scenario(Flavour {
        profile: "gold",
        filesystem: "xfs",
        size: "320M",
        preallocated: true,
        run_size: Some("320M"),
    });
}

// ---------------------------------------------------------------------------------------------
// 2. A full volume
// ---------------------------------------------------------------------------------------------

#[test]
fn a_full_volume_gives_enospc_and_recovers_after_deleting() {
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let name = unique("blk-full");
    let _volume = docker_volume_create(&daemon, &name, &["size=64M", "profile=silver"]);
    let image = image_path(&daemon, &volume_id(&daemon, &name));

    let out = run(
        &daemon,
        &name,
        "dd if=/dev/zero of=/data/big bs=1M count=100",
    );
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "writing 100M into a 64M volume must fail: {err}"
    );
    assert!(
        err.to_lowercase().contains("no space left"),
        "the writer should see ENOSPC: {err}"
    );
    assert_alive(&daemon);
    wait_released(&daemon);
    assert_eq!(file_len(&image), 64 * MIB, "the image must not grow");

    let big: u64 = run_ok(&daemon, &name, "wc -c < /data/big").parse().unwrap();
    assert!(
        big > 32 * MIB && big < 64 * MIB,
        "the volume filled up to its size: {big} bytes written"
    );
    let written = run_ok(
        &daemon,
        &name,
        "rm /data/big && dd if=/dev/zero of=/data/after bs=1M count=8 2>/dev/null && sync && wc -c < /data/after",
    );
    assert_eq!(written, (8 * MIB).to_string());
    assert_alive(&daemon);
    wait_released(&daemon);
    assert_eq!(api_volume(&daemon, &name)["mounted"], false);
}

// ---------------------------------------------------------------------------------------------
// 3. Resize
// ---------------------------------------------------------------------------------------------

#[test]
fn an_xfs_volume_grows_while_a_container_writes_and_shrinking_is_refused() {
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let name = unique("blk-grow");
    let _volume = docker_volume_create(&daemon, &name, &["size=320M", "fs=xfs", "profile=silver"]);
    let id = volume_id(&daemon, &name);
    let image = image_path(&daemon, &id);
    let container = Container::start(
        &daemon,
        &name,
        "i=0; while true; do echo line-$i >> /data/log; i=$((i+1)); sleep 0.05; done",
    );
    let log = [daemon.root.join("mounts").join(&id).join("log")];
    wait_files_grow(&daemon, &log, "the container writes");
    let before = df_total_kib(&container.exec(&daemon, "df -Pk /data"));

    let started = Instant::now();
    let out = cli_ok(&daemon, &["volume", "resize", &name, "512M"]);
    eprintln!(
        "online xfs resize 320M -> 512M took {:?}",
        started.elapsed()
    );
    assert_contains_all(&out, &[&name, "512MiB"]);
    assert_eq!(api_volume(&daemon, &name)["size_bytes"], 512 * MIB);
    assert_eq!(file_len(&image), 512 * MIB);

    let after = df_total_kib(&container.exec(&daemon, "df -Pk /data"));
    let added_kib = 192 * 1024;
    assert!(
        after >= before + added_kib * 8 / 10,
        "the container should see about 192 MiB more: {before} KiB -> {after} KiB"
    );
    assert!(
        container.running(&daemon),
        "the writer must survive the resize"
    );
    wait_files_grow(&daemon, &log, "the writer keeps writing after the resize");
    let tail = container.exec(&daemon, "tail -n 1 /data/log");
    assert!(tail.starts_with("line-"), "{tail}");

    // Shrinking is refused, with a message, and changes nothing.
    let err = cli_fails(&daemon, &["volume", "resize", &name, "256M"]);
    assert_contains_all(&err, &["cannot shrink", "256MiB"]);
    let response = daemon.api(
        "POST",
        &format!("/v1/volumes/{name}/resize"),
        &json!({ "size": "256M" }).to_string(),
    );
    assert_contains_all(&api_error(&response, 400, "refused"), &["cannot shrink"]);
    assert_eq!(api_volume(&daemon, &name)["size_bytes"], 512 * MIB);
    assert_eq!(file_len(&image), 512 * MIB);
    assert_eq!(
        df_total_kib(&container.exec(&daemon, "df -Pk /data")),
        after
    );
    assert!(container.running(&daemon));

    container.remove(&daemon);
    wait_released(&daemon);
    // The grown filesystem is intact after unmounting: mounted again, it has the log.
    let lines: u64 = run_ok(&daemon, &name, "wc -l < /data/log").parse().unwrap();
    assert!(lines > 0);
    must(&daemon, &["volume", "rm", &name]);
    wait_released(&daemon);
    assert!(!image.exists());
}

#[test]
fn growing_a_mounted_ext4_volume_is_refused_clearly_and_works_once_unmounted() {
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let name = unique("blk-ext4");
    let _volume = docker_volume_create(&daemon, &name, &["size=64M", "profile=silver"]);
    let id = volume_id(&daemon, &name);
    let image = image_path(&daemon, &id);
    let container = Container::start(&daemon, &name, "echo kept > /data/f; sleep 300");
    wait_until(&daemon, "the container wrote its file", 10, || {
        container.exec(&daemon, "cat /data/f 2>/dev/null || true") == "kept"
    });
    let before = df_total_kib(&container.exec(&daemon, "df -Pk /data"));
    let resize_path = format!("/v1/volumes/{name}/resize");
    let body = json!({ "size": "128M" }).to_string();

    if has_cap_sys_resource() {
        eprintln!("note: this process has CAP_SYS_RESOURCE: mounted ext4 growth must work");
        let response = daemon.api("POST", &resize_path, &body);
        assert_eq!(response.status, 200, "{:?}", response.json());
        let after = df_total_kib(&container.exec(&daemon, "df -Pk /data"));
        assert!(after > before, "{before} -> {after}");
        container.remove(&daemon);
        wait_released(&daemon);
        return;
    }

    // No CAP_SYS_RESOURCE: a clear "unavailable" refusal that changes nothing.
    let response = daemon.api("POST", &resize_path, &body);
    let message = api_error(&response, 503, "backend_unavailable");
    assert_contains_all(&message, &[&name, "mounted", "CAP_SYS_RESOURCE"]);
    assert!(
        message.contains("stop the containers") || message.contains("unmount"),
        "the message should say how to resize: {message}"
    );
    let err = cli_fails(&daemon, &["volume", "resize", &name, "128M"]);
    assert_contains_all(&err, &[&name, "mounted"]);
    assert_eq!(api_volume(&daemon, &name)["size_bytes"], 64 * MIB);
    assert_eq!(file_len(&image), 64 * MIB, "the image must not grow");
    assert_eq!(
        df_total_kib(&container.exec(&daemon, "df -Pk /data")),
        before
    );
    assert!(container.running(&daemon));
    assert_eq!(container.exec(&daemon, "cat /data/f"), "kept");

    // Unmounted, the same resize works.
    container.remove(&daemon);
    wait_released(&daemon);
    let out = cli_ok(&daemon, &["volume", "resize", &name, "128M"]);
    assert_contains_all(&out, &[&name, "128MiB"]);
    assert_eq!(api_volume(&daemon, &name)["size_bytes"], 128 * MIB);
    assert_eq!(file_len(&image), 128 * MIB);
    let out = run_ok(&daemon, &name, "cat /data/f; df -Pk /data");
    assert!(out.starts_with("kept\n"), "{out}");
    let after = df_total_kib(&out);
    assert!(
        after >= before + 64 * 1024 * 8 / 10,
        "a new container should see about 64 MiB more: {before} KiB -> {after} KiB"
    );
    wait_released(&daemon);
    must(&daemon, &["volume", "rm", &name]);
    assert!(!image.exists());
}

// ---------------------------------------------------------------------------------------------
// 4. Loop-device leaks
// ---------------------------------------------------------------------------------------------

/// Create/mount/unmount/remove cycles; `DVOL_LOOP_CYCLES` overrides.
const LEAK_CYCLES: usize = 1000;

#[test]
fn a_thousand_loop_volume_cycles_leak_no_loop_device() {
    if !require("root", is_root()) {
        return;
    }
    let cycles: usize = std::env::var("DVOL_LOOP_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LEAK_CYCLES);
    let daemon = Daemon::start();
    let before = loop_devices_of(&daemon);
    let host_before = loop_attachments().len();

    let started = Instant::now();
    for i in 0..cycles {
        let name = format!("leak-{i}");
        plugin_ok(
            &daemon,
            "VolumeDriver.Create",
            &json!({ "Name": name, "Opts": { "profile": "silver", "size": "16M" } }).to_string(),
        );
        let mounted = plugin_ok(&daemon, "VolumeDriver.Mount", &mount_body(&name, "m"));
        let mountpoint = PathBuf::from(mounted["Mountpoint"].as_str().expect("Mountpoint"));
        if i % 100 == 0 {
            assert!(
                is_kernel_mounted(&daemon, &mountpoint),
                "cycle {i}: Mount must really mount"
            );
            assert_eq!(
                loop_devices_of(&daemon).len(),
                before.len() + 1,
                "cycle {i}"
            );
        }
        plugin_ok(&daemon, "VolumeDriver.Unmount", &mount_body(&name, "m"));
        plugin_ok(&daemon, "VolumeDriver.Remove", &name_body(&name));
        if i % 100 == 99 {
            let leaked = loop_devices_of(&daemon);
            assert_eq!(
                leaked,
                before,
                "after {} cycles ({:?}): loop devices under the root",
                i + 1,
                started.elapsed()
            );
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{cycles} create/mount/unmount/remove cycles took {elapsed:?} ({:?} per cycle); host loop devices: {host_before} before, {} after",
        elapsed / cycles.max(1) as u32,
        loop_attachments().len()
    );

    assert_eq!(
        loop_devices_of(&daemon),
        before,
        "loop devices under the daemon root after {cycles} cycles"
    );
    assert!(before.is_empty(), "{before:?}");
    assert!(
        daemon.kernel_mounts().is_empty(),
        "{:?}",
        daemon.kernel_mounts()
    );
    assert!(api_names(&daemon).is_empty(), "{:?}", api_names(&daemon));
    let listed = plugin_ok(&daemon, "VolumeDriver.List", "{}");
    assert_eq!(listed["Volumes"], json!([]), "{listed}");
    let left: Vec<_> = std::fs::read_dir(daemon.root.join("backends/loop"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "images left: {left:?}");
    assert_alive(&daemon);
}

// ---------------------------------------------------------------------------------------------
// 5. kill -9 while containers use loop volumes
// ---------------------------------------------------------------------------------------------

#[test]
fn kill9_while_containers_use_loop_volumes_disturbs_nothing() {
    let Some(mut daemon) = Daemon::for_docker_test() else {
        return;
    };
    let writer = "i=0; while true; do echo $i >> /data/log; i=$((i+1)); sleep 0.1; done";
    let mut volumes = Vec::new();
    let mut containers = Vec::new();
    let mut logs = Vec::new();
    let mut images = Vec::new();
    for (profile, size) in [("silver", "64M"), ("gold", "320M")] {
        let name = unique(&format!("blk-crash-{profile}"));
        let profile_opt = format!("profile={profile}");
        let size_opt = format!("size={size}");
        volumes.push(docker_volume_create(
            &daemon,
            &name,
            &[&size_opt, &profile_opt],
        ));
        let id = volume_id(&daemon, &name);
        containers.push(Container::start(&daemon, &name, writer));
        logs.push(daemon.root.join("mounts").join(&id).join("log"));
        images.push(image_path(&daemon, &id));
    }
    wait_files_grow(&daemon, &logs, "both containers write");
    assert_eq!(loop_devices_of(&daemon).len(), 2);

    daemon.kill9();
    wait_files_grow(&daemon, &logs, "both keep writing while dvol is down");
    assert_eq!(daemon.kernel_mounts().len(), 2, "mounts outlive the daemon");
    for image in &images {
        assert_eq!(loop_devices_serving(image).len(), 1, "{}", image.display());
    }

    daemon.spawn();
    wait_files_grow(&daemon, &logs, "both keep writing after dvol restarts");
    let mut listed = api_names(&daemon);
    listed.sort();
    let mut expected: Vec<String> = volumes.iter().map(|v| v.name.clone()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for volume in &volumes {
        let view = api_volume(&daemon, &volume.name);
        assert_eq!(view["mounted"], true, "{view:#}");
        assert_ne!(view["mounts"], json!({}), "{view:#}");
    }
    let docker_listed = docker_volume_names(&daemon);
    for volume in &volumes {
        assert!(docker_listed.contains(&volume.name), "{docker_listed:?}");
    }
    for container in &containers {
        assert!(container.running(&daemon));
    }

    for container in containers {
        container.stop(&daemon);
        container.remove(&daemon);
    }
    for volume in &volumes {
        must(&daemon, &["volume", "rm", &volume.name]);
    }
    wait_released(&daemon);
    for image in &images {
        assert!(!image.exists(), "{} should be gone", image.display());
        assert!(loop_devices_serving(image).is_empty());
    }
    assert!(api_names(&daemon).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 6. Simulated reboot
// ---------------------------------------------------------------------------------------------

#[test]
fn a_loop_volume_whose_mount_and_device_vanished_is_remounted_on_demand() {
    let Some(mut daemon) = Daemon::for_root_test() else {
        return;
    };
    let mountpoint = plugin_create_and_mount(
        &daemon,
        &create_body("reboot@silver", json!({ "size": "32M" })),
        "reboot",
        "r1",
    );
    let id = volume_id(&daemon, "reboot");
    let image = image_path(&daemon, &id);
    assert!(is_kernel_mounted(&daemon, &mountpoint));
    std::fs::write(mountpoint.join("file"), b"before the reboot").unwrap();
    let devices = loop_devices_serving(&image);
    assert_eq!(devices.len(), 1, "{devices:?}");
    let device = devices[0].device.clone();

    // The "reboot": the daemon dies, then the mount and the loop device go away.
    daemon.kill9();
    let status = Command::new("umount").arg(&mountpoint).status().unwrap();
    assert!(status.success(), "umount {}", mountpoint.display());
    if loop_devices_serving(&image).is_empty() {
        eprintln!(
            "note: auto-clear detached {} with the unmount; no losetup -d needed",
            device.display()
        );
    } else {
        let out = Command::new("losetup")
            .arg("-d")
            .arg(&device)
            .output()
            .unwrap();
        assert!(
            out.status.success() || loop_devices_serving(&image).is_empty(),
            "losetup -d {}: {}",
            device.display(),
            stderr(&out)
        );
    }
    wait_until(&daemon, "the loop device is detached", 5, || {
        loop_devices_serving(&image).is_empty()
    });
    assert!(!is_kernel_mounted(&daemon, &mountpoint));

    daemon.spawn();
    assert_lost_mount_forgotten(&daemon, "reboot", "r1", &mountpoint);
    assert_eq!(loop_devices_serving(&image).len(), 1, "re-attached");
    assert_eq!(
        std::fs::read(mountpoint.join("file")).unwrap(),
        b"before the reboot"
    );

    plugin_unmount_and_remove(&daemon, "reboot", "r1", &mountpoint);
    wait_released(&daemon);
    assert!(!image.exists());
    assert!(api_names(&daemon).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 7. Configuration errors
// ---------------------------------------------------------------------------------------------

#[test]
fn an_lvm_profile_with_a_missing_volume_group_is_unavailable_with_the_reason() {
    if !require("root", is_root()) {
        return;
    }
    let (daemon, vg, _config) = daemon_with_a_missing_volume_group("dvol-missing-vg");
    assert_alive(&daemon);

    let table = cli_ok(&daemon, &["profile", "ls"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("fast"))
        .unwrap_or_else(|| panic!("no row for fast: {table}"));
    assert_contains_all(row, &["unavailable", "volume group", &vg]);
    let profiles: Value =
        serde_json::from_str(&cli_ok(&daemon, &["profile", "ls", "--json"])).unwrap();
    let fast = profiles
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "fast")
        .expect("fast listed");
    assert_eq!(fast["available"], false, "{fast:#}");
    let reason = fast["reason"].as_str().expect("reason");
    assert_contains_all(reason, &["volume group", &vg]);
    let bronze = profiles
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bronze")
        .expect("bronze listed");
    assert_eq!(bronze["available"], true, "{bronze:#}");

    for body in [
        json!({ "name": "v@fast" }),
        json!({ "name": "v", "options": { "profile": "fast" } }),
    ] {
        let response = daemon.api("POST", "/v1/volumes", &body.to_string());
        let message = api_error(&response, 503, "backend_unavailable");
        assert_contains_all(&message, &["fast", reason]);
    }
    let response = daemon.plugin(
        "VolumeDriver.Create",
        &json!({ "Name": "v@fast", "Opts": null }).to_string(),
    );
    let err = plugin_err(&response).unwrap_or_else(|| {
        panic!(
            "plugin Create with an unavailable profile must fail: {:?}",
            response.json()
        )
    });
    assert_contains_all(&err, &["fast", reason]);
    let err = cli_fails(&daemon, &["volume", "create", "v@fast"]);
    assert_contains_all(&err, &["fast", reason]);
    assert!(api_names(&daemon).is_empty(), "{:?}", api_names(&daemon));

    // The rest of the daemon works.
    cli_ok(&daemon, &["volume", "create", "ok@bronze"]);
    assert_eq!(api_names(&daemon), vec!["ok".to_string()]);
    assert_alive(&daemon);
}

#[test]
fn an_unknown_filesystem_in_the_config_is_refused_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "default_profile = \"silver\"\n[profiles.silver]\nbackend = \"loop\"\nfilesystem = \"btrfs\"\nsize = \"1G\"\n",
    )
    .unwrap();
    let err = daemon_must_fail(dir.path(), &["--config", config.to_str().unwrap()]);
    let location = format!("{}:4:", config.display());
    assert_contains_all(&err, &[&location, "btrfs", "ext4", "xfs"]);
    assert!(
        err.contains("filesystem"),
        "the error should name the key `filesystem`, not only its value: {err}"
    );
}

#[test]
fn a_size_below_the_filesystem_minimum_is_refused_naming_the_minimum() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };

    let err = cli_fails(
        &daemon,
        &[
            "volume",
            "create",
            "small@silver",
            "-o",
            "fs=xfs",
            "-o",
            "size=100M",
        ],
    );
    assert_contains_all(&err, &["small", "100MiB", "300MiB minimum", "xfs"]);

    let body =
        json!({ "name": "small", "options": { "profile": "silver", "fs": "xfs", "size": "100M" } });
    let response = daemon.api("POST", "/v1/volumes", &body.to_string());
    let message = api_error(&response, 400, "refused");
    assert_contains_all(&message, &["300MiB minimum", "xfs"]);

    // Gold is xfs here: the same minimum applies.
    let response = daemon.plugin(
        "VolumeDriver.Create",
        &json!({ "Name": "small@gold", "Opts": { "size": "100M" } }).to_string(),
    );
    let err = plugin_err(&response)
        .unwrap_or_else(|| panic!("a 100M gold volume must be refused: {:?}", response.json()));
    assert_contains_all(&err, &["300MiB minimum", "xfs"]);

    assert!(api_names(&daemon).is_empty(), "{:?}", api_names(&daemon));
    if let Ok(entries) = std::fs::read_dir(daemon.root.join("backends/loop")) {
        let left: Vec<_> = entries.map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "refused creates left files: {left:?}");
    }
    assert!(loop_devices_of(&daemon).is_empty());
    assert_alive(&daemon);
}
