//! End-to-end tests of dvol as a volume driver of the real Docker Engine.
//!
//! Each test runs its own `dvol daemon` (its own root and Docker driver name) and uses volume
//! and container names of its own, so the tests run in parallel. Containers are removed by drop
//! guards, and the volumes Docker recorded when the test's daemon drops, also when an assertion
//! fails.

use std::path::PathBuf;

use dvol_tests::fixtures::*;
use dvol_tests::Daemon;
use serde_json::Value;

/// `DRIVER NAME` lines of `docker volume ls`, optionally only for `driver`.
fn docker_volume_ls(daemon: &Daemon, driver: Option<&str>) -> Vec<String> {
    let filter = driver.map(|d| format!("driver={d}"));
    let mut args = vec!["volume", "ls", "--format", "{{.Driver}} {{.Name}}"];
    if let Some(filter) = &filter {
        args.extend_from_slice(&["--filter", filter]);
    }
    must(daemon, &args).lines().map(str::to_string).collect()
}

#[test]
fn volume_create_ls_and_inspect_show_dvol_details() {
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = docker_volume_create(&daemon, &unique("create"), &["size=1G"]);
    let name = volume.name.as_str();

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
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = DockerVolume::new("share");

    run_ok(&daemon, &volume.name, "echo hi > /data/f");
    assert_eq!(run_ok(&daemon, &volume.name, "cat /data/f"), "hi");

    let id = volume_id(&daemon, &volume.name);
    let on_host = std::fs::read_to_string(data_dir(&daemon, &id).join("f")).expect("data on host");
    assert_eq!(on_host, "hi\n");
}

#[test]
fn profile_suffix_creates_the_volume_and_a_wrong_profile_is_refused() {
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = DockerVolume::new("suffix");
    let bronze = format!("{}@bronze", volume.name);
    let gold = format!("{}@gold", volume.name);

    // Docker records the volume as NAME@bronze; the driver lists it as NAME.
    run_ok(&daemon, &bronze, "echo bronze-data > /data/f");

    let inspect = daemon.cli(&["volume", "inspect", &volume.name]);
    assert!(
        inspect.status.success(),
        "dvol volume inspect: {}",
        stderr(&inspect)
    );
    let view: Value = serde_json::from_slice(&inspect.stdout).expect("dvol volume inspect JSON");
    assert_eq!(view["name"], volume.name.as_str(), "{view:#}");
    assert_eq!(view["profile"], "bronze", "{view:#}");

    // `-v NAME:/data` makes Docker record NAME as well.
    let content = run_ok(&daemon, &volume.name, "cat /data/f");
    assert_eq!(content, "bronze-data");

    // Refused by the driver, so Docker records no NAME@gold.
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
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = DockerVolume::new("cp");
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
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = DockerVolume::new("restart");
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
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = DockerVolume::new("inuse");
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
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let base = unique("bad");
    // dvol refuses both, so Docker records neither.
    let long = DockerVolume::named(format!("{base}{}", "x".repeat(70 - base.len())));
    let snapshot = DockerVolume::named(format!("{base}@snapshot-zz"));
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
    let Some(mut daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = DockerVolume::new("crash");
    let container = Container::start(
        &daemon,
        &volume.name,
        "i=0; while true; do echo $i >> /data/log; i=$((i+1)); sleep 0.1; done",
    );
    let log = [data_dir(&daemon, &volume_id(&daemon, &volume.name)).join("log")];
    wait_files_grow(&daemon, &log, "the container writes");

    daemon.kill9();
    wait_files_grow(
        &daemon,
        &log,
        "the container keeps writing while dvol is down",
    );
    daemon.spawn();
    wait_files_grow(
        &daemon,
        &log,
        "the container keeps writing after dvol restarts",
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
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = DockerVolume::new("runrm");

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
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = DockerVolume::new("twice");
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
