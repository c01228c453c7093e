//! Helpers the end-to-end tests share: unique names and command output; `docker` calls that must
//! succeed or fail, `docker run` with a dvol volume, a drop guard for containers and the names
//! of Docker volumes; the daemon's files and mounts; calls on the plugin protocol and the REST
//! API with the assertions several tests make.
//!
//! Every helper that talks to Docker or the daemon takes the test's [`Daemon`], so a failure
//! shows the daemon's log beside the message. Test modules bring them in with
//! `use dvol_tests::fixtures::*;`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{docker, http_unix, Daemon, HttpResponse, TEST_IMAGE};

// ---------------------------------------------------------------------------------------------
// Names, command output, waiting.
// ---------------------------------------------------------------------------------------------

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

/// A command's stdout exactly as printed (lossily decoded), for checks of the CLI's layout.
pub fn stdout_as_printed(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's stderr exactly as printed (lossily decoded), for checks of the CLI's layout.
pub fn stderr_as_printed(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that `out`, the output of `command` (e.g. `docker [...]`), shows success, else
/// panics with its stderr and the daemon's log; returns its trimmed stdout.
pub fn assert_succeeded(daemon: &Daemon, command: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{command} failed: {}\ndvol daemon log:\n{}",
        stderr(out),
        daemon.log()
    );
    stdout(out)
}

/// Asserts that `out`, the output of `command`, shows failure, else panics with its stdout and
/// the daemon's log; returns its trimmed stderr.
pub fn assert_failed(daemon: &Daemon, command: &str, out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{command} should have failed but printed: {}\ndvol daemon log:\n{}",
        stdout(out),
        daemon.log()
    );
    stderr(out)
}

/// Asserts that every one of `parts` occurs in `message`.
pub fn assert_contains_all(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "message should mention {part:?}: {message}"
        );
    }
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

// ---------------------------------------------------------------------------------------------
// Docker: commands, containers, volumes.
// ---------------------------------------------------------------------------------------------

/// Runs `docker args`, panicking with docker's stderr and the daemon's log unless it succeeds;
/// returns trimmed stdout.
pub fn must(daemon: &Daemon, args: &[&str]) -> String {
    assert_succeeded(daemon, &format!("docker {args:?}"), &docker(args))
}

/// Runs `docker args` that must fail; returns its stderr.
pub fn must_fail(daemon: &Daemon, args: &[&str]) -> String {
    assert_failed(daemon, &format!("docker {args:?}"), &docker(args))
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
        let mount = format!("{volume}:/data");
        Container::start_with(daemon, "dvol-e2e-ctr", &["-v", &mount], &[], script)
    }

    /// Starts `script` detached as a container named `prefix-<random>`, with the volume
    /// arguments `mount` and the options `extra` (as [`run_args`] takes them).
    pub fn start_with(
        daemon: &Daemon,
        prefix: &str,
        mount: &[&str],
        extra: &[&str],
        script: &str,
    ) -> Container {
        let container = Container(unique(prefix));
        let mut options = vec!["-d", "--name", container.0.as_str()];
        options.extend_from_slice(extra);
        must(daemon, &run_args(daemon, mount, &options, script));
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

/// The name of a Docker volume a test uses, e.g. in `docker run -v NAME:/data`.
///
/// Nothing is removed by hand: Docker records every name a volume was created under (`NAME`,
/// or `NAME@PROFILE` and `NAME@snapshot-REF` when `docker run -v` created it so), and when the
/// test's daemon is dropped, the harness makes the engine forget every name it records for the
/// daemon's driver ([`crate::engine::forget_driver`]), also after a failed assertion or a
/// `kill -9` of the daemon.
pub struct DockerVolume {
    /// The volume's name.
    pub name: String,
}

impl DockerVolume {
    /// A volume named `prefix-<random>`.
    pub fn new(prefix: &str) -> DockerVolume {
        DockerVolume::named(unique(prefix))
    }

    /// A volume with exactly this name.
    pub fn named(name: impl Into<String>) -> DockerVolume {
        DockerVolume { name: name.into() }
    }

    /// The name `NAME@suffix` (e.g. `NAME@silver`, `NAME@snapshot-1234abcd`), under which
    /// `docker run -v` makes Docker record the volume.
    pub fn alias(&self, suffix: &str) -> String {
        format!("{}@{suffix}", self.name)
    }
}

/// `docker volume create -d DRIVER NAME -o OPT...` with the daemon's driver, which must print
/// NAME.
pub fn docker_volume_create(daemon: &Daemon, name: &str, opts: &[&str]) -> DockerVolume {
    let mut args = vec!["volume", "create", "-d", &daemon.driver, name];
    for opt in opts {
        args.extend_from_slice(&["-o", opt]);
    }
    assert_eq!(must(daemon, &args), name);
    DockerVolume::named(name)
}

/// `docker volume inspect NAME` as JSON.
pub fn docker_volume_inspect(daemon: &Daemon, name: &str) -> Value {
    let out = must(daemon, &["volume", "inspect", name]);
    let all: Value = serde_json::from_str(&out).expect("docker volume inspect JSON");
    all[0].clone()
}

// ---------------------------------------------------------------------------------------------
// The daemon's files and mounts.
// ---------------------------------------------------------------------------------------------

/// Where the directory backend keeps a volume's data.
pub fn data_dir(daemon: &Daemon, id: &str) -> PathBuf {
    daemon.root.join("backends/directory").join(id)
}

/// Whether the kernel reports a mount at `path` (under the daemon's root).
pub fn is_kernel_mounted(daemon: &Daemon, path: &Path) -> bool {
    daemon.kernel_mounts().iter().any(|m| m == path)
}

/// Waits until no mount under the daemon's root remains.
pub fn wait_no_mounts(daemon: &Daemon) {
    wait_until(daemon, "no mount under the daemon root remains", 10, || {
        daemon.kernel_mounts().is_empty()
    });
}

/// Waits until each file of `paths` is longer than it is now (a missing file counts as empty),
/// e.g. a log a container keeps writing; panics with `what` and the daemon's log after 10 s.
pub fn wait_files_grow(daemon: &Daemon, paths: &[PathBuf], what: &str) {
    let lens = || -> Vec<u64> {
        paths
            .iter()
            .map(|path| std::fs::metadata(path).map_or(0, |m| m.len()))
            .collect()
    };
    let before = lens();
    wait_until(daemon, what, 10, || {
        lens().iter().zip(&before).all(|(now, then)| now > then)
    });
}

// ---------------------------------------------------------------------------------------------
// The plugin protocol.
// ---------------------------------------------------------------------------------------------

/// The body `{"Name": NAME}` of Get, Path and Remove.
pub fn name_body(name: &str) -> String {
    json!({ "Name": name }).to_string()
}

/// The body `{"Name": NAME, "Opts": OPTS}` of Create.
pub fn create_body(name: &str, opts: Value) -> String {
    json!({ "Name": name, "Opts": opts }).to_string()
}

/// The body `{"Name": NAME, "ID": ID}` of Mount and Unmount.
pub fn mount_body(name: &str, id: &str) -> String {
    json!({ "Name": name, "ID": id }).to_string()
}

/// The `Err` of a plugin answer, if it is non-empty.
pub fn plugin_err(response: &HttpResponse) -> Option<String> {
    response.json()["Err"]
        .as_str()
        .filter(|e| !e.is_empty())
        .map(str::to_string)
}

/// Calls a plugin method that must succeed: HTTP 200 and no `Err`. Returns the answer.
pub fn plugin_ok(daemon: &Daemon, method: &str, body: &str) -> Value {
    let response = daemon.plugin(method, body);
    assert!(
        response.status == 200 && plugin_err(&response).is_none(),
        "{method} {body} must succeed: HTTP {} {:?}; log:\n{}",
        response.status,
        response.json(),
        daemon.log()
    );
    response.json()
}

/// Calls a plugin method that must fail with HTTP `status` and a non-empty `Err`; returns it.
pub fn plugin_fails(daemon: &Daemon, method: &str, body: &str, status: u16) -> String {
    let response = daemon.plugin(method, body);
    assert_eq!(
        response.status,
        status,
        "{method} {}: {:?}",
        body.escape_debug(),
        response.json()
    );
    plugin_err(&response).unwrap_or_else(|| {
        panic!(
            "{method} {} must answer a non-empty Err: {:?}",
            body.escape_debug(),
            response.json()
        )
    })
}

/// Creates a volume through the plugin protocol (`create` is the Create body), mounts `name`
/// with `mount_id` and returns the mountpoint.
pub fn plugin_create_and_mount(
    daemon: &Daemon,
    create: &str,
    name: &str,
    mount_id: &str,
) -> PathBuf {
    plugin_ok(daemon, "VolumeDriver.Create", create);
    let mounted = plugin_ok(daemon, "VolumeDriver.Mount", &mount_body(name, mount_id));
    PathBuf::from(mounted["Mountpoint"].as_str().expect("Mountpoint"))
}

/// After a restart of a daemon whose mount of `name` at `mountpoint` went away while it was
/// down (as at a reboot): asserts that the daemon forgot the stale mount ids, and that a new
/// Mount with `mount_id` really mounts the volume again at the same place.
pub fn assert_lost_mount_forgotten(daemon: &Daemon, name: &str, mount_id: &str, mountpoint: &Path) {
    let view = api_volume(daemon, name);
    assert_eq!(view["mounted"], false, "{view:#}");
    assert_eq!(
        view["mounts"],
        json!({}),
        "stale mount ids survived: {view:#}"
    );
    let got = plugin_ok(daemon, "VolumeDriver.Get", &name_body(name));
    assert_eq!(got["Volume"]["Status"]["mounts"], "0", "{got}");

    let again = plugin_ok(daemon, "VolumeDriver.Mount", &mount_body(name, mount_id));
    assert_eq!(again["Mountpoint"], mountpoint.to_str().unwrap());
    assert!(
        is_kernel_mounted(daemon, mountpoint),
        "a new Mount after the lost one must really mount; log:\n{}",
        daemon.log()
    );
    assert_eq!(api_volume(daemon, name)["mounts"], json!({ mount_id: 1 }));
}

/// Unmounts `name` (mount id `mount_id`) through the plugin protocol, asserts that
/// `mountpoint` is no longer mounted, and removes the volume.
pub fn plugin_unmount_and_remove(daemon: &Daemon, name: &str, mount_id: &str, mountpoint: &Path) {
    plugin_ok(daemon, "VolumeDriver.Unmount", &mount_body(name, mount_id));
    assert!(!is_kernel_mounted(daemon, mountpoint));
    plugin_ok(daemon, "VolumeDriver.Remove", &name_body(name));
}

/// Asserts that both sockets still answer: REST health and the plugin handshake.
pub fn assert_alive(daemon: &Daemon) {
    let health = daemon.api("GET", "/v1/health", "");
    assert_eq!(health.status, 200, "health: {:?}", health.json());
    assert_eq!(health.json()["status"], "ok");
    plugin_ok(daemon, "Plugin.Activate", "");
}

// ---------------------------------------------------------------------------------------------
// The REST API.
// ---------------------------------------------------------------------------------------------

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

/// Asserts a REST error answer: status, `error.code` and a non-empty `error.message`; returns
/// the message.
pub fn api_error(response: &HttpResponse, status: u16, code: &str) -> String {
    let body = response.json();
    assert_eq!(
        response.status,
        status,
        "{body} ({})",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "error without a message: {body}");
    message.to_string()
}

/// The volume as the daemon's REST API shows it; panics unless the API answers 200.
pub fn api_volume(daemon: &Daemon, name: &str) -> Value {
    api_expect(
        daemon,
        "GET",
        &format!("/v1/volumes/{name}"),
        &Value::Null,
        200,
    )
}

/// The names of the volumes the daemon's REST API lists; panics unless the API answers 200.
pub fn api_names(daemon: &Daemon) -> Vec<String> {
    api_expect(daemon, "GET", "/v1/volumes", &Value::Null, 200)
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

/// The volume's history as `GET /v1/volumes/NAME/commits` shows it (HTTP 200 asserted).
pub fn commit_log(daemon: &Daemon, volume: &str) -> Value {
    api_expect(
        daemon,
        "GET",
        &format!("/v1/volumes/{volume}/commits"),
        &Value::Null,
        200,
    )
}

/// The volume's uncommitted changes as `GET /v1/volumes/NAME/status` lists them (HTTP 200
/// asserted).
pub fn volume_status(daemon: &Daemon, volume: &str) -> Value {
    api_expect(
        daemon,
        "GET",
        &format!("/v1/volumes/{volume}/status"),
        &Value::Null,
        200,
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

/// Sends `POST path` with `body` to the daemon's REST API from a thread, waits with `until_kill`
/// for the moment to kill, kills the daemon with SIGKILL (leaving it down) and returns the
/// status the request was answered with before the kill, if it was.
pub fn kill9_during_request(
    daemon: &mut Daemon,
    path: &str,
    body: &str,
    until_kill: impl FnOnce(&Daemon),
) -> Option<u16> {
    let socket = daemon.api_socket.clone();
    let (path, body) = (path.to_string(), body.to_string());
    let request = std::thread::spawn(move || http_unix(&socket, "POST", &path, body.as_bytes()));
    until_kill(daemon);
    daemon.kill9();
    request
        .join()
        .expect("request thread")
        .ok()
        .map(|r| r.status)
}

/// Whether `s` is an RFC 3339 date-time: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, each field in
/// its range.
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .map(|_| s[range].parse::<u32>().unwrap())
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if b.len() < 20 || !matches!(b[10], b'T' | b't') || separators.iter().any(|&(i, c)| b[i] != c) {
        return false;
    }
    let fields = [
        (digits(0..4), 0..=9999),
        (digits(5..7), 1..=12),
        (digits(8..10), 1..=31),
        (digits(11..13), 0..=23),
        (digits(14..16), 0..=59),
        (digits(17..19), 0..=60),
    ];
    if !fields
        .into_iter()
        .all(|(value, range)| value.is_some_and(|v| range.contains(&v)))
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return false;
        }
        rest = &fraction[len..];
    }
    let offset = rest.as_bytes();
    matches!(rest, "Z" | "z")
        || (offset.len() == 6
            && matches!(offset[0], b'+' | b'-')
            && offset[3] == b':'
            && [1, 2, 4, 5].iter().all(|&i| offset[i].is_ascii_digit()))
}

/// Thaws the filesystem at the path when dropped, so a failing test leaves nothing frozen.
pub struct ThawOnDrop(pub PathBuf);

impl Drop for ThawOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).output();
    }
}

/// Whether a write of a new file at `dir` from this process finishes within `wait`. A write
/// stuck on a frozen filesystem is left to finish when it thaws.
pub fn host_write_finishes(dir: &Path, name: &str, wait: Duration) -> bool {
    let (done, finished) = mpsc::channel();
    let path = dir.join(name);
    std::thread::spawn(move || {
        std::fs::write(&path, b"written from the host").unwrap();
        let _ = done.send(());
    });
    finished.recv_timeout(wait).is_ok()
}

// ---------------------------------------------------------------------------------------------
// Volume data on the host.
// ---------------------------------------------------------------------------------------------

/// Fills `dir/d0` … `dir/d{dirs-1}` with 30 files of `kib` KiB of random data each, written
/// with dd.
pub fn write_random_files(dir: &Path, dirs: usize, kib: usize) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "set -e; cd \"$1\"; for d in $(seq 0 $(($2 - 1))); do mkdir -p d$d; \
             for f in $(seq 0 29); do dd if=/dev/urandom of=d$d/f$f bs=$3k count=1 status=none; done; done",
        )
        .arg("sh")
        .arg(dir)
        .arg(dirs.to_string())
        .arg(kib.to_string())
        .output()
        .expect("run dd");
    assert!(
        out.status.success(),
        "writing random files: {}",
        stderr(&out)
    );
}

/// A directory's content as the host sees it: every path, and a hash of every file.
pub fn host_content(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . | LC_ALL=C sort && find . -type f | LC_ALL=C sort | xargs -r sha256sum")
        .arg("sh")
        .arg(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "hashing {}: {}",
        dir.display(),
        stderr(&out)
    );
    stdout(&out)
}

/// A daemon whose config has profile `bronze` (directory, the default) and profile `fast` on
/// LVM volume group `VG` (a unique name from `prefix`) that does not exist; `VG`, and the
/// config file (deleted when dropped; keep it while the daemon may restart).
pub fn daemon_with_a_missing_volume_group(
    prefix: &str,
) -> (Daemon, String, tempfile::NamedTempFile) {
    let vg = unique(prefix);
    let config = tempfile::Builder::new()
        .prefix("dvol-config-")
        .suffix(".toml")
        .tempfile()
        .expect("config file");
    std::fs::write(
        config.path(),
        format!(
            "default_profile = \"bronze\"\n\
             [profiles.bronze]\nbackend = \"directory\"\n\
             [profiles.fast]\nbackend = \"lvm\"\nvolume_group = \"{vg}\"\nthin_pool = \"pool\"\n\
             size = \"1G\"\nfilesystem = \"xfs\"\n"
        ),
    )
    .expect("write config");
    let daemon = Daemon::start_with(vec!["--config".into(), config.path().display().to_string()]);
    (daemon, vg, config)
}

/// A daemon and a CLI user with their own config directory.
pub struct CliUser {
    /// The daemon it talks to.
    pub daemon: Daemon,
    /// Its config directory (`DVOL_CONFIG_DIR`: the current volume).
    pub config: tempfile::TempDir,
}

impl CliUser {
    /// A user of a daemon of its own ([`Daemon::for_root_test`]); `None` when the test skips.
    pub fn for_root_test() -> Option<CliUser> {
        Some(CliUser {
            daemon: Daemon::for_root_test()?,
            config: tempfile::tempdir().expect("config dir"),
        })
    }

    /// Runs `dvol --host <daemon> args` as this user.
    pub fn run(&self, args: &[&str]) -> Output {
        self.daemon
            .cli_command(args)
            .env("DVOL_CONFIG_DIR", self.config.path())
            .env("USER", "tester")
            .output()
            .expect("run dvol")
    }

    /// Runs `dvol args`, which must succeed; returns its stdout as printed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_succeeded(&self.daemon, &format!("dvol {args:?}"), &out);
        stdout_as_printed(&out)
    }

    /// Runs `dvol args`, which must succeed, and parses its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).expect("valid JSON")
    }

    /// Asserts `dvol args` fails with one error line `dvol: ...` containing `expected`. Long
    /// operations may print one progress line (`... volume X...`) before it.
    pub fn fails(&self, args: &[&str], expected: &str) -> String {
        let out = self.run(args);
        assert_failed(&self.daemon, &format!("dvol {args:?}"), &out);
        let err = stderr_as_printed(&out);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("dvol: ") || !l.ends_with("..."))
            .collect();
        assert_eq!(lines.len(), 1, "one-line error expected: {err:?}");
        assert!(
            lines[0].starts_with("dvol: ") && lines[0].contains(expected),
            "{err:?} lacks {expected:?}"
        );
        lines[0].to_string()
    }

    /// The file that names the current volume.
    pub fn current_file(&self) -> PathBuf {
        self.config.path().join("current")
    }

    /// The backend directory holding a bronze volume's files.
    pub fn data_dir(&self, volume: &str) -> PathBuf {
        let inspected = self.json(&["volume", "inspect", volume]);
        assert_eq!(inspected["backend"], "directory", "{inspected}");
        let uuid = inspected["id"].as_str().expect("uuid");
        self.daemon
            .root
            .join("backends")
            .join("directory")
            .join(uuid)
    }
}
