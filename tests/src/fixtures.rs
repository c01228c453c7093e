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

use crate::{docker, http_unix, Daemon, TEST_IMAGE};

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

/// A test's Docker volume and the names Docker recorded for it, removed with
/// `docker volume rm -f` when dropped.
///
/// Docker records the names a volume was created under: `NAME` after
/// `docker volume create NAME` or `docker run -v NAME:/...`, and `NAME@PROFILE` or
/// `NAME@snapshot-REF` when `docker run -v` created it under that name (the aliases). The dvol
/// driver lists the volume as `NAME` either way, so the driver listing `NAME` does not mean
/// Docker knows `NAME`. Removing a name Docker has no record of makes it ask every driver it
/// has ever seen, about 15 s per driver whose socket is gone (every earlier test daemon's),
/// so the guard removes only the names the test recorded: `name` when the test marked it
/// [`plain`](DockerVolume::plain) (and the driver still lists it, so a volume the test already
/// removed, or never created, is left alone), and each alias. Where Docker recorded only an
/// alias, the dvol side of `NAME` is the daemon's own to clean up.
///
/// Tests declare their daemon before the guards, so a guard drops while the daemon still runs.
pub struct DockerVolume {
    /// The volume's name.
    pub name: String,
    /// Whether Docker recorded `name` itself (`docker volume create NAME`, or
    /// `docker run -v NAME:/...`). Mark it only when the test itself makes Docker record
    /// `name`, not when the driver merely lists it.
    pub plain: bool,
    /// Other names Docker recorded for this volume (e.g. `NAME@PROFILE`), each removed when
    /// the guard drops. A test that removes one itself takes it out of the list.
    pub aliases: Vec<String>,
    /// The driver Docker knows the test's daemon by (`docker volume ls --filter driver=`).
    driver: String,
}

impl DockerVolume {
    /// A volume named `prefix-<random>`, no name of it recorded by Docker yet.
    pub fn new(daemon: &Daemon, prefix: &str) -> DockerVolume {
        DockerVolume::named(daemon, unique(prefix))
    }

    /// A volume with exactly this name, no name of it recorded by Docker yet.
    pub fn named(daemon: &Daemon, name: impl Into<String>) -> DockerVolume {
        DockerVolume {
            name: name.into(),
            plain: false,
            aliases: Vec::new(),
            driver: daemon.driver.clone(),
        }
    }

    /// Marks that Docker records the plain name: the test uses it only as
    /// `docker volume create NAME` or `-v NAME:/...`. Safe to mark before that command, as the
    /// guard removes `name` only while the driver lists it, and only Docker creates it then.
    pub fn recorded(mut self) -> DockerVolume {
        self.plain = true;
        self
    }

    /// Records that Docker knows the volume as `NAME@suffix`; returns that name.
    pub fn alias(&mut self, suffix: &str) -> String {
        let alias = format!("{}@{suffix}", self.name);
        self.aliases.push(alias.clone());
        alias
    }
}

impl Drop for DockerVolume {
    fn drop(&mut self) {
        if self.plain {
            let filter = format!("driver={}", self.driver);
            let listed = docker(&["volume", "ls", "-q", "--filter", &filter]);
            if stdout(&listed).lines().any(|l| l == self.name) {
                let _ = docker(&["volume", "rm", "-f", &self.name]);
            }
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

/// Calls the daemon's REST API and asserts the status; returns the JSON body. `Value::Null`
/// sends no body (a GET answered without reading a body would close the connection on the
/// unread bytes, which resets it). Failures show the daemon's log.
pub fn api_expect(daemon: &Daemon, method: &str, path: &str, body: &Value, status: u16) -> Value {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let response = http_unix(&daemon.api_socket, method, path, body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}; dvol daemon log:\n{}", daemon.log()));
    assert_eq!(
        response.status,
        status,
        "{method} {path} {body}: expected {status}, got {}: {}\ndvol daemon log:\n{}",
        response.status,
        String::from_utf8_lossy(&response.body),
        daemon.log()
    );
    response.json()
}

/// Commits `volume` over REST with `message`; returns the answer (HTTP 201 asserted).
pub fn commit(daemon: &Daemon, volume: &str, message: &str) -> Value {
    api_expect(
        daemon,
        "POST",
        &format!("/v1/volumes/{volume}/commits"),
        &serde_json::json!({ "message": message }),
        201,
    )
}

/// Runs `fsck` over REST and asserts it is clean (nothing corrupt, missing or badly
/// referenced); `when` says at which point of the test. Returns the report.
pub fn assert_fsck_clean(daemon: &Daemon, when: &str) -> Value {
    let report = api_expect(daemon, "POST", "/v1/fsck", &Value::Null, 200);
    assert_eq!(
        report["clean"],
        true,
        "fsck {when} should be clean: {report:#}\ndvol daemon log:\n{}",
        daemon.log()
    );
    for key in ["corrupt", "missing", "bad_refs"] {
        assert_eq!(
            report[key],
            serde_json::json!([]),
            "fsck {when}: {report:#}"
        );
    }
    report
}
