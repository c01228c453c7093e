//! Helpers the Docker end-to-end tests share: unique names, `docker` calls that must succeed or
//! fail, `docker run` with a dvol volume, drop guards for containers and Docker volumes, and the
//! daemon's REST view of a volume.
//!
//! Every helper that talks to Docker takes the test's [`Daemon`], so a failure shows the
//! daemon's log beside Docker's message. Test files bring them in with
//! `use dvol_tests::fixtures::*;`.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{docker, Daemon, TEST_IMAGE};

/// A name no other test (or test run) uses: `prefix-` and 12 random hex digits.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// A command's stdout, lossily decoded and trimmed.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A command's stderr, lossily decoded and trimmed.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

/// Runs `docker args`, panicking with docker's stderr and the daemon's log unless it succeeds;
/// returns trimmed stdout.
pub fn must(daemon: &Daemon, args: &[&str]) -> String {
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
pub fn must_fail(daemon: &Daemon, args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        !out.status.success(),
        "docker {args:?} should have failed but printed: {}\ndvol daemon log:\n{}",
        stdout(&out),
        daemon.log()
    );
    stderr(&out)
}

/// `docker run` arguments: `script` in a container without network, with the volume arguments
/// `mount` (`["-v", "NAME:/data"]` or `["--mount", "type=volume,..."]`) served by `daemon`'s
/// driver, and `extra` options.
pub fn run_args<'a>(
    daemon: &'a Daemon,
    mount: &[&'a str],
    extra: &[&'a str],
    script: &'a str,
) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--network",
        "none",
        "--volume-driver",
        &daemon.driver,
    ];
    args.extend_from_slice(mount);
    args.extend_from_slice(extra);
    args.extend_from_slice(&[TEST_IMAGE, "sh", "-c", script]);
    args
}

/// `docker run --rm` of `script` with `volume` at /data; returns the raw output.
pub fn run(daemon: &Daemon, volume: &str, script: &str) -> Output {
    let mount = format!("{volume}:/data");
    docker(&run_args(daemon, &["-v", &mount], &["--rm"], script))
}

/// `docker run --rm` of `script` with `volume` at /data, which must succeed; returns stdout.
pub fn run_ok(daemon: &Daemon, volume: &str, script: &str) -> String {
    let mount = format!("{volume}:/data");
    must(
        daemon,
        &run_args(daemon, &["-v", &mount], &["--rm"], script),
    )
}

/// A container, removed with `docker rm -f` when dropped. The field is its name.
pub struct Container(pub String);

impl Container {
    /// Starts `script` detached, with `volume` at /data, as a container named
    /// `dvol-e2e-ctr-<random>`.
    pub fn start(daemon: &Daemon, volume: &str, script: &str) -> Container {
        let container = Container(unique("dvol-e2e-ctr"));
        let mount = format!("{volume}:/data");
        must(
            daemon,
            &run_args(
                daemon,
                &["-v", &mount],
                &["-d", "--name", &container.0],
                script,
            ),
        );
        container
    }

    /// Runs `script` inside the running container; returns stdout.
    pub fn exec(&self, daemon: &Daemon, script: &str) -> String {
        must(daemon, &["exec", &self.0, "sh", "-c", script])
    }

    /// Whether Docker says the container runs.
    pub fn running(&self, daemon: &Daemon) -> bool {
        must(daemon, &["inspect", "-f", "{{.State.Running}}", &self.0]) == "true"
    }

    /// Stops the container (its `sh` ignores SIGTERM, so after one second it is killed).
    pub fn stop(&self, daemon: &Daemon) {
        must(daemon, &["stop", "-t", "1", &self.0]);
    }

    /// Removes the container now, checking that Docker succeeds.
    pub fn remove(self, daemon: &Daemon) {
        must(daemon, &["rm", "-f", &self.0]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

/// A test's Docker volume (and the aliases Docker recorded for it), removed with
/// `docker volume rm -f` when dropped.
///
/// Docker asks every driver it has ever seen about a name it has no record of, about 15 s per
/// driver whose socket is gone (every earlier test daemon's), so the guard never removes a
/// name Docker does not know: `name` only while this daemon's driver lists it (or while the
/// test has marked it [`known`](DockerVolume::known)), and aliases only once the test has
/// recorded that Docker knows them.
pub struct DockerVolume {
    /// The volume's name.
    pub name: String,
    /// Whether Docker is known to keep a record of `name` even though the driver may not list
    /// it (a `NAME@PROFILE` that `docker run` recorded: Docker keeps it, while the driver lists
    /// the volume as `NAME`); the guard then removes `name` unconditionally.
    pub known: bool,
    /// Other names Docker recorded for this volume (e.g. `NAME@PROFILE`), each removed when
    /// the guard drops.
    pub aliases: Vec<String>,
    /// The driver Docker knows the test's daemon by (`docker volume ls --filter driver=`).
    driver: String,
}

impl DockerVolume {
    /// A volume named `prefix-<random>`.
    pub fn new(daemon: &Daemon, prefix: &str) -> DockerVolume {
        DockerVolume::named(daemon, unique(prefix))
    }

    /// A volume with exactly this name.
    pub fn named(daemon: &Daemon, name: impl Into<String>) -> DockerVolume {
        DockerVolume {
            name: name.into(),
            known: false,
            aliases: Vec::new(),
            driver: daemon.driver.clone(),
        }
    }
}

impl Drop for DockerVolume {
    fn drop(&mut self) {
        let filter = format!("driver={}", self.driver);
        let listed = docker(&["volume", "ls", "-q", "--filter", &filter]);
        if self.known || stdout(&listed).lines().any(|l| l == self.name) {
            let _ = docker(&["volume", "rm", "-f", &self.name]);
        }
        for alias in &self.aliases {
            let _ = docker(&["volume", "rm", "-f", alias]);
        }
    }
}

/// `docker volume inspect NAME` as JSON.
pub fn docker_volume_inspect(daemon: &Daemon, name: &str) -> Value {
    let out = must(daemon, &["volume", "inspect", name]);
    let all: Value = serde_json::from_str(&out).expect("docker volume inspect JSON");
    all[0].clone()
}

/// Waits until `done` holds, panicking with `what` and the daemon's log after `secs` seconds.
pub fn wait_until(daemon: &Daemon, what: &str, secs: u64, mut done: impl FnMut() -> bool) {
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

/// The volume as the daemon's REST API shows it; panics unless the API answers 200.
pub fn api_volume(daemon: &Daemon, name: &str) -> Value {
    let response = daemon.api("GET", &format!("/v1/volumes/{name}"), "");
    assert_eq!(
        response.status,
        200,
        "GET /v1/volumes/{name}: {}",
        String::from_utf8_lossy(&response.body)
    );
    response.json()
}

/// The names of the volumes the daemon's REST API lists; panics unless the API answers 200.
pub fn api_names(daemon: &Daemon) -> Vec<String> {
    let response = daemon.api("GET", "/v1/volumes", "");
    assert_eq!(response.status, 200, "{:?}", response.json());
    response
        .json()
        .as_array()
        .expect("volume list")
        .iter()
        .map(|v| v["name"].as_str().expect("name").to_string())
        .collect()
}

/// The volume's UUID, as the daemon's REST API shows it.
pub fn volume_id(daemon: &Daemon, name: &str) -> String {
    api_volume(daemon, name)["id"]
        .as_str()
        .expect("id")
        .to_string()
}
