//! Running under a service manager: the systemd unit `scripts/systemd/dvol.service` passes
//! `systemd-analyze verify`; the real daemon tells `$NOTIFY_SOCKET` it is ready only once
//! its sockets serve, and that it stops on SIGTERM; and started without root it says, one
//! warning each, what it cannot do, while serving directory volumes all the same.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dvol_tests::fixtures::{create_body, mount_body, plugin_err};
use dvol_tests::{dvol_bin, http_unix, is_root, parse_response, repo_root, require, Daemon};
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// The unit file.
// ---------------------------------------------------------------------------------------------

/// Where the unit lives in the repository, and the binary its `ExecStart=` runs.
const UNIT: &str = "scripts/systemd/dvol.service";
const INSTALLED_BIN: &str = "/usr/local/bin/dvol";
/// How long the daemon lets running calls finish at shutdown (`DRAIN_LIMIT` in
/// `plugin/src/daemon.rs`); the unit must wait longer before it kills.
const DRAIN_SECONDS: u64 = 10;

fn unit_text() -> String {
    let path = repo_root().join(UNIT);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn systemd_analyze_available() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `systemd-analyze verify` on `text` saved as `dvol.service` in a fresh directory, with
/// its `ExecStart=` binary pointed at the `dvol` built for the tests (verify checks that the
/// binary exists, and this machine need not have dvol installed). Returns what it said about
/// the unit, or its whole output if it failed: `Ok` only for a clean pass.
fn verify(text: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("dvol.service");
    let bin = dvol_bin();
    std::fs::write(
        &unit,
        text.replace(INSTALLED_BIN, &bin.display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Complaints about the system's own units are not the unit's.
    let about_unit: Vec<&str> = said
        .lines()
        .filter(|line| {
            line.contains("dvol.service") || line.contains(&*dir.path().to_string_lossy())
        })
        .collect();
    if !out.status.success() {
        return Err(format!(
            "systemd-analyze verify exited with {}:\n{said}",
            out.status
        ));
    }
    if !about_unit.is_empty() {
        return Err(about_unit.join("\n"));
    }
    Ok(())
}

/// The value of each `key=` line of the unit, in order.
fn settings<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    if !require(
        "systemd-analyze (Debian package systemd)",
        systemd_analyze_available(),
    ) {
        return;
    }
    let text = unit_text();
    verify(&text).unwrap_or_else(|said| panic!("{UNIT} does not verify cleanly:\n{said}"));

    // The check sees what is wrong: a type systemd does not know (only a warning, with exit
    // status 0) and a missing binary.
    let bad_type = text.replace("Type=notify", "Type=notifyy");
    let said = verify(&bad_type).expect_err("a unit with Type=notifyy passed");
    assert!(said.contains("notifyy"), "{said}");
    let said = verify(&text.replace(INSTALLED_BIN, "/nonexistent/dvol"))
        .expect_err("a unit whose binary is missing passed");
    assert!(said.contains("/nonexistent/dvol"), "{said}");
}

#[test]
fn the_unit_starts_the_installed_daemon_before_docker_and_waits_for_its_readiness() {
    let text = unit_text();
    let one = |key: &str| {
        let values = settings(&text, key);
        assert_eq!(
            values.len(),
            1,
            "{UNIT}: {key}= should appear once: {values:?}"
        );
        values[0]
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("ExecStart"), format!("{INSTALLED_BIN} daemon"));
    assert!(one("Before")
        .split_whitespace()
        .any(|u| u == "docker.service"));
    assert_eq!(one("Restart"), "on-failure");
    // SIGTERM to the daemon alone, which drains its calls; the rest is killed after it.
    assert_eq!(one("KillMode"), "mixed");
    let stop: u64 = one("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop > DRAIN_SECONDS,
        "TimeoutStopSec={stop} leaves the daemon no time to drain"
    );
    assert!(one("LimitNOFILE").parse::<u64>().unwrap() >= 65536);
    // The daemon's mounts must be seen by the Docker Engine: no private mount namespace.
    for key in [
        "PrivateTmp",
        "ProtectSystem",
        "ProtectHome",
        "PrivateDevices",
        "MountFlags",
    ] {
        assert!(settings(&text, key).is_empty(), "{UNIT} sets {key}=");
    }
}

// ---------------------------------------------------------------------------------------------
// Readiness through $NOTIFY_SOCKET.
// ---------------------------------------------------------------------------------------------

/// A `dvol daemon` process this file started itself, killed if a test ends while it runs.
struct Process {
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    /// Spawns `command` with stdout and stderr into `log`.
    fn spawn(mut command: Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).expect("daemon log");
        let child = command
            .env("DVOL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn dvol daemon");
        Process {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }

    /// Sends SIGTERM.
    fn terminate(&mut self) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    }

    /// Waits at most `patience` for the process to exit.
    fn wait(&mut self, patience: Duration) -> ExitStatus {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.exited() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "dvol daemon still running {patience:?} after SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The service manager's end of `$NOTIFY_SOCKET`: a datagram socket the test binds.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        NotifySocket { socket, path }
    }

    /// The next message, or `None` if none comes within `patience`.
    fn next(&self, patience: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(patience)).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8(buf[..n].to_vec()).expect("a UTF-8 notification")),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("notify socket: {e}"),
        }
    }

    /// Messages until one holds the line `line`; returns those before it and that one.
    fn until(
        &self,
        line: &str,
        process: &mut Process,
        patience: Duration,
    ) -> (Vec<String>, String) {
        let deadline = Instant::now() + patience;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {line} within {patience:?}; got {before:?}; log:\n{}",
                process.log()
            );
            if let Some(message) = self.next(left.min(Duration::from_millis(500))) {
                if message.lines().any(|l| l == line) {
                    return (before, message);
                }
                before.push(message);
            } else if let Some(status) = process.exited() {
                panic!(
                    "dvol daemon exited with {status} before {line}; got {before:?}; log:\n{}",
                    process.log()
                );
            }
        }
    }
}

/// The `STATUS=` of a notification.
fn status_of(message: &str) -> &str {
    message
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= in {message:?}"))
}

/// One request to the REST API on TCP with the bearer `token`; no retry.
fn http_tcp(addr: &str, path: &str, token: &str) -> std::io::Result<dvol_tests::HttpResponse> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| std::io::Error::other("unreadable HTTP response"))
}

/// Starts the daemon with `NOTIFY_SOCKET` on a socket of the test's, and checks that
/// `READY=1` comes once, after a status line about opening the state, and that at that very
/// moment (no retry) the plugin socket answers `Plugin.Activate` and the API socket
/// `GET /v1/node`, and with `tcp` the TCP listener, whose address the status names, too.
/// Then SIGTERM: `STOPPING=1` comes, and the daemon exits 0 without its sockets.
fn ready_only_once_serving(tcp: bool) {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let plugin_socket = dir.path().join("plugin.sock");
    let api_socket = dir.path().join("api.sock");
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut command = Command::new(dvol_bin());
    if tcp {
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, &token).unwrap();
        std::fs::set_permissions(
            &token_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        command.arg("--token-file").arg(&token_file);
    }
    command.arg("daemon");
    if tcp {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    command
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--plugin-socket")
        .arg(&plugin_socket)
        .arg("--api-socket")
        .arg(&api_socket)
        .env("NOTIFY_SOCKET", &notify.path);
    let mut daemon = Process::spawn(command, dir.path().join("daemon.log"));

    let (before, ready) = notify.until("READY=1", &mut daemon, Duration::from_secs(60));
    // Answered at once, by the daemon that said it was ready.
    let activate = http_unix(&plugin_socket, "POST", "/Plugin.Activate", b"").unwrap_or_else(|e| {
        panic!(
            "plugin socket right after READY=1: {e}; log:\n{}",
            daemon.log()
        )
    });
    assert_eq!(activate.status, 200);
    assert_eq!(activate.json()["Implements"], json!(["VolumeDriver"]));
    let node = http_unix(&api_socket, "GET", "/v1/node", b"").unwrap_or_else(|e| {
        panic!(
            "API socket right after READY=1: {e}; log:\n{}",
            daemon.log()
        )
    });
    assert_eq!(node.status, 200, "{:?}", node.json());
    assert!(
        node.json().is_object(),
        "{:?}",
        String::from_utf8_lossy(&node.body)
    );

    assert!(
        before
            .iter()
            .any(|m| status_of(m).starts_with("opening the state in")),
        "no status line while the state opens: {before:?}"
    );
    assert!(before.iter().all(|m| !m.contains("READY=1")), "{before:?}");
    let serving = status_of(&ready);
    assert!(serving.starts_with("serving 0 volumes: "), "{serving}");
    assert!(
        serving.contains(&plugin_socket.display().to_string()),
        "{serving}"
    );
    assert!(
        serving.contains(&api_socket.display().to_string()),
        "{serving}"
    );
    match serving.split_once("REST API on TCP ") {
        Some((_, addr)) if tcp => {
            let answer = http_tcp(addr, "/v1/node", &token)
                .unwrap_or_else(|e| panic!("TCP listener {addr} right after READY=1: {e}"));
            assert_eq!(answer.status, 200, "{:?}", answer.json());
            let refused = http_tcp(addr, "/v1/node", "wrong").unwrap();
            assert_eq!(
                refused.status, 401,
                "the listener named is not the daemon's"
            );
        }
        None if !tcp => {}
        other => panic!("tcp = {tcp}, but the status says {serving:?} ({other:?})"),
    }
    // Said once.
    assert_eq!(notify.next(Duration::from_millis(300)), None);

    daemon.terminate();
    let (_, stopping) = notify.until("STOPPING=1", &mut daemon, Duration::from_secs(15));
    assert!(status_of(&stopping).starts_with("stopping"), "{stopping}");
    let status = daemon.wait(Duration::from_secs(20));
    assert!(status.success(), "{status}; log:\n{}", daemon.log());
    assert!(!plugin_socket.exists() && !api_socket.exists());
}

#[test]
fn ready_comes_once_both_sockets_serve_and_stopping_on_sigterm() {
    ready_only_once_serving(false);
}

#[test]
fn with_a_tcp_listener_ready_comes_once_it_serves_too() {
    ready_only_once_serving(true);
}

/// A SIGTERM sent the moment the API socket appears (a service manager stopping a daemon it
/// has just started) stops the daemon cleanly: exit 0, sockets removed. The signal handlers
/// used to be installed only once the daemon served, so such a signal killed it instead
/// (28 of 30 rounds before the fix).
#[test]
fn a_sigterm_right_after_start_stops_the_daemon_cleanly() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let plugin_socket = dir.path().join("plugin.sock");
        let api_socket = dir.path().join("api.sock");
        let mut command = Command::new(dvol_bin());
        command
            .arg("daemon")
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--plugin-socket")
            .arg(&plugin_socket)
            .arg("--api-socket")
            .arg(&api_socket);
        let mut daemon = Process::spawn(command, dir.path().join("daemon.log"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !api_socket.exists() {
            if let Some(status) = daemon.exited() {
                panic!(
                    "round {round}: exited with {status}; log:
{}",
                    daemon.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no API socket in 30 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        daemon.terminate();
        let status = daemon.wait(Duration::from_secs(20));
        assert!(
            status.success(),
            "round {round}: {status}; log:\n{}",
            daemon.log()
        );
        assert!(
            !plugin_socket.exists() && !api_socket.exists(),
            "round {round}: a socket was left behind"
        );
    }
}

#[test]
fn a_start_that_fails_says_why_and_never_ready() {
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    // A file where the state root should be.
    let root = dir.path().join("root");
    std::fs::write(&root, "not a directory").unwrap();
    let mut command = Command::new(dvol_bin());
    command
        .arg("daemon")
        .arg("--root")
        .arg(&root)
        .arg("--plugin-socket")
        .arg(dir.path().join("plugin.sock"))
        .arg("--api-socket")
        .arg(dir.path().join("api.sock"))
        .env("NOTIFY_SOCKET", &notify.path);
    let mut daemon = Process::spawn(command, dir.path().join("daemon.log"));
    let status = daemon.wait(Duration::from_secs(20));
    assert!(!status.success(), "a daemon on a file as root started");
    let mut messages = Vec::new();
    while let Some(message) = notify.next(Duration::from_millis(200)) {
        messages.push(message);
    }
    assert!(
        messages.iter().all(|m| !m.contains("READY=1")),
        "{messages:?}"
    );
    let last = messages
        .last()
        .unwrap_or_else(|| panic!("no status; log:\n{}", daemon.log()));
    assert!(status_of(last).starts_with("failed: "), "{messages:?}");
    assert!(
        status_of(last).contains(&*root.to_string_lossy()),
        "{messages:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Without root.
// ---------------------------------------------------------------------------------------------

/// The user and group the unprivileged daemon runs as (`nobody` on Debian).
const NOBODY: u32 = 65534;

/// The start of each warning, with what it must name as missing.
const LIMITS: [(&str, &[&str]); 4] = [
    ("cannot bind-mount volumes", &["CAP_SYS_ADMIN"]),
    (
        "cannot attach loop devices",
        &["CAP_SYS_ADMIN", "/dev/loop-control"],
    ),
    ("cannot use LVM", &["root", "CAP_SYS_ADMIN"]),
    ("cannot chown files", &["CAP_CHOWN"]),
];

/// The log's lines that say the daemon lacks a privilege.
fn limit_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| LIMITS.iter().any(|(start, _)| l.contains(start)))
        .collect()
}

fn setpriv_available() -> bool {
    Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Waits until both sockets answer, as the daemon's owner would call them.
fn wait_serving(process: &mut Process, plugin_socket: &Path, api_socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = process.exited() {
            panic!("dvol daemon exited with {status}; log:\n{}", process.log());
        }
        if http_unix(api_socket, "GET", "/v1/health", b"").is_ok_and(|r| r.status == 200)
            && http_unix(plugin_socket, "POST", "/Plugin.Activate", b"")
                .is_ok_and(|r| r.status == 200)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dvol daemon did not answer within 30 s; log:\n{}",
            process.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn without_root_the_daemon_says_what_it_cannot_do_and_serves_directory_volumes() {
    if !require("root (to start the daemon as another user)", is_root())
        || !require("setpriv (Debian package util-linux)", setpriv_available())
    {
        return;
    }
    // A directory the user owns, for its root, its sockets and a copy of the binary (the
    // build's own may lie where that user cannot reach it).
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("nobody");
    std::fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(NOBODY), Some(NOBODY)).unwrap();
    let bin = own.join("dvol");
    if std::fs::hard_link(dvol_bin(), &bin).is_err() {
        std::fs::copy(dvol_bin(), &bin).unwrap();
    }
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let plugin_socket = own.join("plugin.sock");
    let api_socket = own.join("api.sock");
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(&bin)
        .arg("daemon")
        .arg("--root")
        .arg(own.join("root"))
        .arg("--plugin-socket")
        .arg(&plugin_socket)
        .arg("--api-socket")
        .arg(&api_socket)
        .env_remove("NOTIFY_SOCKET");
    let mut daemon = Process::spawn(command, dir.path().join("daemon.log"));
    wait_serving(&mut daemon, &plugin_socket, &api_socket);

    // It is that user, and serves directory volumes: create works, Mount fails as said.
    let pid = daemon.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("65534")),
        "the daemon does not run as {NOBODY}:\n{status}"
    );
    let created = http_unix(
        &plugin_socket,
        "POST",
        "/VolumeDriver.Create",
        create_body("unprivileged", json!({})).as_bytes(),
    )
    .unwrap();
    assert_eq!(plugin_err(&created), None, "log:\n{}", daemon.log());
    let listed = http_unix(&api_socket, "GET", "/v1/volumes", b"").unwrap();
    assert!(
        listed.json().to_string().contains("unprivileged"),
        "{:?}",
        listed.json()
    );
    let mounted = http_unix(
        &plugin_socket,
        "POST",
        "/VolumeDriver.Mount",
        mount_body("unprivileged", "m").as_bytes(),
    )
    .unwrap();
    assert!(
        plugin_err(&mounted).is_some(),
        "Mount worked without CAP_SYS_ADMIN: {:?}",
        mounted.json()
    );

    daemon.terminate();
    let status = daemon.wait(Duration::from_secs(20));
    let log = daemon.log();
    assert!(status.success(), "{status}; log:\n{log}");
    for (start, missing) in LIMITS {
        let line = log
            .lines()
            .find(|l| l.contains(start))
            .unwrap_or_else(|| panic!("no line \"{start}\" in the log:\n{log}"));
        assert!(line.contains("WARN"), "not a warning: {line}");
        for what in missing {
            assert!(
                line.contains(what),
                "\"{start}\" does not name {what}: {line}"
            );
        }
        assert!(line.contains("uid 65534, not root"), "{line}");
        assert!(line.contains("run it as root"), "no remedy in: {line}");
    }
    assert_eq!(
        limit_lines(&log).len(),
        LIMITS.len(),
        "each said once:\n{log}"
    );
    assert!(
        log.contains("give it CAP_SYS_ADMIN (AmbientCapabilities=CAP_SYS_ADMIN"),
        "{log}"
    );
}

/// Whether this process holds CAP_SYS_ADMIN and CAP_CHOWN and opens `/dev/loop-control`:
/// then a daemon it starts lacks nothing.
fn fully_privileged() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let loop_control = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .is_ok();
    is_root() && effective & (1 << 21) != 0 && effective & 1 != 0 && loop_control
}

#[test]
fn as_root_the_daemon_warns_of_no_missing_privilege() {
    if !require(
        "root with CAP_SYS_ADMIN, CAP_CHOWN and /dev/loop-control",
        fully_privileged(),
    ) {
        return;
    }
    let mut daemon = Daemon::start();
    assert!(daemon.stop().success());
    let log = daemon.log();
    assert!(
        log.contains("serving"),
        "the log is not the daemon's:\n{log}"
    );
    assert_eq!(limit_lines(&log), Vec::<&str>::new(), "log:\n{log}");
}
