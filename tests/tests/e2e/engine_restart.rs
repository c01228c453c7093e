//! The Docker Engine restarts while a dvol volume exists: it must still know the volume and its
//! data afterwards.
//!
//! The test holds the engine alone ([`EngineAlone`]) while it runs, so restarting dockerd here
//! cannot break the other end-to-end tests running beside it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dvol_tests::engine::EngineAlone;
use dvol_tests::fixtures::*;
use dvol_tests::{docker, docker_ready, repo_root, require, Daemon};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::Value;

/// Where the engine this test restarts writes its log.
const DOCKERD_LOG: &str = "/tmp/dockerd-engine-restart.log";

/// Where the Docker Engine writes its pid.
const PID_FILE: &str = "/var/run/docker.pid";

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The pid of the running Docker Engine, from its pid file.
fn running_dockerd() -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(PID_FILE)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (!exited(pid)).then_some(pid)
}

/// Whether the Docker Engine answers.
fn engine_answers() -> bool {
    docker(&["version"]).status.success()
}

/// Stops the running Docker Engine (SIGTERM to the pid in its pid file) and waits for it to exit.
fn stop_engine() {
    let pid = running_dockerd().unwrap_or_else(|| panic!("no running dockerd in {PID_FILE}"));
    kill_process(Pid::from_raw(pid).expect("positive pid"), Signal::TERM).expect("SIGTERM dockerd");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !exited(pid) {
        assert!(
            Instant::now() < deadline,
            "dockerd (pid {pid}) did not exit within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the Docker Engine the way this machine starts it, unless one is already running, and
/// waits until it answers. Its start can outlast the script's 30 s: for every volume whose
/// driver is gone, the engine waits about 15 s for the plugin before it serves its API.
fn start_engine() -> bool {
    if running_dockerd().is_none() {
        let started = Command::new("bash")
            .arg(repo_root().join("scripts/start-dockerd.sh"))
            .env("DOCKERD_LOG", DOCKERD_LOG)
            .status();
        if !started.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("start-dockerd.sh: {started:?}; waiting for the engine it started");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while !engine_answers() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    true
}

/// Makes sure the Docker Engine runs again when dropped, even after a failed assertion.
struct EngineGuard;

impl Drop for EngineGuard {
    fn drop(&mut self) {
        if !start_engine() {
            eprintln!("could not start the Docker Engine again; see {DOCKERD_LOG}");
        }
    }
}

#[test]
fn the_engine_still_knows_a_dvol_volume_and_its_data_after_a_restart() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    let _alone = EngineAlone::take();
    let daemon = Daemon::start_for_docker();
    let volume = DockerVolume::new("engine-restart");
    run_ok(&daemon, &volume.name, "echo survives > /data/f");
    let uuid = daemon
        .api("GET", &format!("/v1/volumes/{}", volume.name), "")
        .json()["id"]
        .clone();
    assert!(uuid.is_string(), "the daemon should know {}", volume.name);

    {
        let _engine = EngineGuard;
        stop_engine();
        assert!(!engine_answers(), "the engine should be down");
        assert!(
            start_engine(),
            "the Docker Engine did not come back; see {DOCKERD_LOG}"
        );
    }

    let filter = format!("driver={}", daemon.driver);
    let listed = must(
        &daemon,
        &[
            "volume",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Driver}} {{.Name}}",
        ],
    );
    assert!(
        listed
            .lines()
            .any(|l| l == format!("{} {}", daemon.driver, volume.name)),
        "docker volume ls should still list {}: {listed}",
        volume.name
    );
    let inspected: Value =
        serde_json::from_str(&must(&daemon, &["volume", "inspect", &volume.name])).expect("JSON");
    assert_eq!(
        inspected[0]["Driver"],
        daemon.driver.as_str(),
        "{inspected:#}"
    );
    assert_eq!(inspected[0]["Status"]["uuid"], uuid, "{inspected:#}");
    assert!(
        Path::new(inspected[0]["Mountpoint"].as_str().expect("Mountpoint"))
            .starts_with(daemon.root.join("mounts")),
        "{inspected:#}"
    );
    assert_eq!(run_ok(&daemon, &volume.name, "cat /data/f"), "survives");
}
