//! End-to-end harness: runs real `dvol daemon` processes beside the real Docker Engine.
//!
//! Each [`Daemon`] gets its own state root and sockets, so tests run in parallel without seeing
//! each other. A daemon started for Docker ([`Daemon::start_for_docker`]) registers with the
//! engine under its own driver name (`dvol-e2e-<random>`), and the engine forgets its volumes
//! when it is dropped; any other daemon stays out of the engine's sight ([`engine`] says why).
//! Helpers for the tests themselves are in [`fixtures`].
//!
//! For several hosts on one machine: [`netns`] makes hosts in network namespaces of their own,
//! [`host_engine`] a Docker Engine per host, [`Daemon::start_in`] a daemon in a host, and
//! [`certs`] the hosts' test certificates.
//!
//! A test whose component (the Docker Engine, root) is missing skips with a message, unless
//! `DVOL_REQUIRE_ALL=1`, where it fails: a green CI always means the real thing ran.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod certs;
pub mod engine;
pub mod etcd;
pub mod fixtures;
pub mod host_engine;
pub mod netns;
pub mod postgres;
pub mod relay;

use engine::EngineShare;
use host_engine::HostEngine;
use netns::Host;

/// The port a daemon in a test host listens on ([`Daemon::start_in`]).
pub const HOST_PORT: u16 = 7411;

/// The image the tests run containers from; built by `scripts/build-test-image.sh`.
pub const TEST_IMAGE: &str = "dvol-test/busybox:latest";

/// The PostgreSQL 15 image of the database tests; built by `scripts/build-database-image.sh`
/// from the host's Debian packages.
pub const DATABASE_IMAGE: &str = "dvol-test/postgres:15";

/// Whether `DVOL_REQUIRE_ALL=1` is set.
pub fn require_all() -> bool {
    std::env::var("DVOL_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Returns whether a test may go on: `true` when `available`; otherwise skips (returns
/// `false`) or, under `DVOL_REQUIRE_ALL=1`, panics naming the component.
pub fn require(component: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if require_all() {
        panic!("{component} is required (DVOL_REQUIRE_ALL=1) but not available");
    }
    eprintln!("SKIPPED: {component} is not available");
    false
}

/// Whether this process runs as root (mounts need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether the Docker Engine answers and the test image exists (building it if needed). Waits
/// while a test restarts the engine.
pub fn docker_ready() -> bool {
    let _share = EngineShare::take();
    let up = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !up {
        return false;
    }
    let script = repo_root().join("scripts/build-test-image.sh");
    Command::new("bash")
        .arg(script)
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the Docker Engine answers and the database image exists (building it if needed,
/// which needs PostgreSQL 15 installed on the host).
pub fn database_image_ready() -> bool {
    docker_ready()
        && Command::new("bash")
            .arg(repo_root().join("scripts/build-database-image.sh"))
            .status()
            .is_ok_and(|s| s.success())
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `dvol` binary built beside the tests (`DVOL_BIN` overrides).
pub fn dvol_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DVOL_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> -> target/<profile>/dvol
    let bin = exe.parent().unwrap().parent().unwrap().join("dvol");
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p dvol` (the test script does)",
        bin.display()
    );
    bin
}

/// Runs `docker` with `args` and returns its output.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

/// Runs `docker` and panics with its stderr unless it succeeds; returns trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A response from one of the daemon's sockets.
#[derive(Debug)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// Raw body (decoded, if it came chunked).
    pub body: Vec<u8>,
    /// Whether the body came chunked (`Transfer-Encoding: chunked`).
    pub chunked: bool,
}

impl HttpResponse {
    /// The body as JSON (`null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends one HTTP/1.1 request over a unix socket, without Content-Type (as the Docker Engine
/// does), and reads the whole answer.
pub fn http_unix(
    socket: &Path,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(150)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "unreadable HTTP response: {:?}",
                String::from_utf8_lossy(&raw)
            ),
        )
    })
}

/// Parses a whole HTTP/1.1 answer (status line, headers, body with a `Content-Length` or
/// chunked); `None` if it is not one.
pub fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = raw[split + 4..].to_vec();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if chunked {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16)
                    .ok()?;
            if size == 0 {
                break;
            }
            let start = line_end + 2;
            decoded.extend_from_slice(rest.get(start..start + size)?);
            rest = rest.get(start + size + 2..)?;
        }
        body = decoded;
    }
    Some(HttpResponse {
        status,
        body,
        chunked,
    })
}

/// A running `dvol daemon` with its own root and sockets.
pub struct Daemon {
    /// The volume driver name the Docker Engine knows the daemon by, if it was started for
    /// Docker (also the name of its plugin socket there).
    pub driver: String,
    /// The state root.
    pub root: PathBuf,
    /// The Docker plugin socket: in `/run/docker/plugins` for a daemon started for Docker,
    /// else in the daemon's own directory.
    pub plugin_socket: PathBuf,
    /// The REST API socket.
    pub api_socket: PathBuf,
    /// Extra daemon arguments (e.g. `--config`).
    pub extra_args: Vec<String>,
    /// For a daemon in a test host: the host's network namespace (`/run/netns/...`).
    netns: Option<PathBuf>,
    /// Environment for the daemon process (e.g. `DOCKER_HOST`).
    env: Vec<(String, String)>,
    /// For a daemon listening on TCP: where, and its token file.
    listen: Option<(std::net::SocketAddr, PathBuf)>,
    log: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
    /// For a daemon started for Docker: keeps the engine from being restarted meanwhile.
    engine: Option<EngineShare>,
}

impl Daemon {
    /// Starts a daemon on a fresh root with the built-in profiles, out of the Docker Engine's
    /// sight (its plugin socket lies in its own directory): for tests of the plugin protocol,
    /// the REST API and the CLI.
    pub fn start() -> Daemon {
        Self::start_with(Vec::new())
    }

    /// [`Daemon::start`] with extra daemon arguments.
    pub fn start_with(extra_args: Vec<String>) -> Daemon {
        Self::start_under(&std::env::temp_dir(), extra_args)
    }

    /// [`Daemon::start_with`] with the root, the REST socket and the log in a fresh directory
    /// under `parent` (e.g. on a filesystem a test mounted).
    pub fn start_under(parent: &Path, extra_args: Vec<String>) -> Daemon {
        Self::launch(parent, extra_args, false)
    }

    /// Starts a daemon on a fresh root that the Docker Engine knows as the volume driver
    /// [`Daemon::driver`]. It holds a share of the engine while it lives ([`EngineShare`]);
    /// when it is dropped, the engine forgets every volume it records for the driver
    /// ([`engine::forget_driver`]), and a failure to do so fails the test.
    pub fn start_for_docker() -> Daemon {
        Self::start_for_docker_under(&std::env::temp_dir(), Vec::new())
    }

    /// [`Daemon::start_for_docker`] with the root, the REST socket and the log in a fresh
    /// directory under `parent` (e.g. on a filesystem a test mounted), and extra daemon
    /// arguments.
    pub fn start_for_docker_under(parent: &Path, extra_args: Vec<String>) -> Daemon {
        Self::launch(parent, extra_args, true)
    }

    /// For a test of the Docker Engine: [`Daemon::start_for_docker`], or `None` when the test
    /// skips because the engine (or the test image) is missing (see [`require`]).
    pub fn for_docker_test() -> Option<Daemon> {
        require("Docker Engine", docker_ready()).then(Daemon::start_for_docker)
    }

    /// For a test that needs root (for mounts) but not Docker: [`Daemon::start`], or `None`
    /// when the test skips for want of root (see [`require`]).
    pub fn for_root_test() -> Option<Daemon> {
        require("root", is_root()).then(Daemon::start)
    }

    /// Starts a daemon in the test host `host` (its network namespace, through `nsenter
    /// --net`, which execs the daemon: [`Daemon::pid`] and [`Daemon::kill9`] are the
    /// daemon's), plus `extra_args` (e.g. `--tls-cert`/`--tls-key`).
    ///
    /// With `engine`, the daemon is that engine's volume driver [`Daemon::driver`]: its root
    /// lies under [`HostEngine::dir`], its plugin socket in [`HostEngine::plugins_dir`] (the
    /// engine's `/run/docker/plugins`), and `DOCKER_HOST` names the engine; the system
    /// engine never sees it. Drop the daemon before the engine. Without, its plugin socket
    /// lies in its own directory.
    ///
    /// With `listen`, it also serves the REST API on `<host addr>:`[`HOST_PORT`] with a
    /// fresh token in [`Daemon::token_file`]. Its unix sockets stay reachable from the test
    /// (unix sockets ignore network namespaces), so [`Daemon::api`] and [`Daemon::cli`] work.
    pub fn start_in(
        host: &Host,
        engine: Option<&HostEngine>,
        listen: bool,
        extra_args: Vec<String>,
    ) -> Daemon {
        Self::start_in_with(host, engine, listen.then_some(None), extra_args)
    }

    /// [`Daemon::start_in`] as node `host.name()` of the cluster whose registry is at
    /// `etcd_url`, listening on TCP with `token`, which every node of the cluster shares.
    pub fn start_in_cluster(
        host: &Host,
        engine: Option<&HostEngine>,
        etcd_url: &str,
        token: &str,
        mut extra_args: Vec<String>,
    ) -> Daemon {
        extra_args.extend([
            "--cluster".to_string(),
            etcd_url.to_string(),
            "--node-name".to_string(),
            host.name().to_string(),
        ]);
        Self::start_in_with(host, engine, Some(Some(token.to_string())), extra_args)
    }

    /// [`Daemon::start_in`]; `listen`: `Some(token)` listens, with `token` or a fresh one.
    fn start_in_with(
        host: &Host,
        engine: Option<&HostEngine>,
        listen: Option<Option<String>>,
        extra_args: Vec<String>,
    ) -> Daemon {
        let parent = engine.map_or_else(std::env::temp_dir, |e| e.dir().to_path_buf());
        let mut daemon = Self::prepare(&parent, extra_args, false);
        daemon.netns = Some(host.netns());
        if let Some(engine) = engine {
            daemon.plugin_socket = engine.plugins_dir().join(format!("{}.sock", daemon.driver));
            daemon
                .env
                .push(("DOCKER_HOST".to_string(), engine.docker_host()));
        }
        if let Some(token) = listen {
            let token_file = daemon._tmp.path().join("token");
            let token = token.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
            std::fs::write(&token_file, format!("{token}\n")).expect("write token file");
            std::fs::set_permissions(
                &token_file,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .expect("chmod token file");
            let addr = std::net::SocketAddr::from((host.addr(), HOST_PORT));
            daemon.listen = Some((addr, token_file));
        }
        daemon.spawn();
        daemon
    }

    /// [`Daemon::start_in`] listening with TLS: a certificate for the host's address, signed
    /// by `ca`, written under `dir`.
    pub fn start_in_tls(
        host: &Host,
        engine: Option<&HostEngine>,
        ca: &certs::TestCa,
        dir: &Path,
    ) -> Daemon {
        let cert = ca.issue_for_ip(host.addr(), dir);
        let tls = vec![
            "--tls-cert".to_string(),
            cert.cert.display().to_string(),
            "--tls-key".to_string(),
            cert.key.display().to_string(),
        ];
        Self::start_in(host, engine, true, tls)
    }

    fn launch(parent: &Path, extra_args: Vec<String>, for_docker: bool) -> Daemon {
        let mut daemon = Self::prepare(parent, extra_args, for_docker);
        daemon.spawn();
        daemon
    }

    /// A daemon not yet running, with a fresh directory under `parent`.
    fn prepare(parent: &Path, extra_args: Vec<String>, for_docker: bool) -> Daemon {
        let tmp = tempfile::Builder::new()
            .prefix("dvol-e2e-")
            .tempdir_in(parent)
            .expect("tempdir");
        let id = uuid::Uuid::new_v4().simple().to_string();
        let driver = format!("dvol-e2e-{}", &id[..10]);
        let (plugin_socket, engine) = if for_docker {
            let socket = PathBuf::from(format!("/run/docker/plugins/{driver}.sock"));
            (socket, Some(EngineShare::take()))
        } else {
            (tmp.path().join("plugin.sock"), None)
        };
        Daemon {
            plugin_socket,
            api_socket: tmp.path().join("api.sock"),
            root: tmp.path().join("root"),
            log: tmp.path().join("daemon.log"),
            driver,
            extra_args,
            netns: None,
            env: Vec::new(),
            listen: None,
            child: None,
            _tmp: tmp,
            engine,
        }
    }

    /// The TCP address the daemon listens on, if started with `listen` ([`Daemon::start_in`]).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.listen.as_ref().map(|(addr, _)| *addr)
    }

    /// The token file of a daemon listening on TCP ([`Daemon::start_in`]); panics for another.
    pub fn token_file(&self) -> &Path {
        &self.listen.as_ref().expect("daemon listens on TCP").1
    }

    /// Starts the daemon process again (after [`Daemon::kill9`] or [`Daemon::stop`]).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let mut command = netns::command_in(self.netns.as_deref(), dvol_bin());
        if let Some((addr, token_file)) = &self.listen {
            command
                .arg("--token-file")
                .arg(token_file)
                .arg("daemon")
                .arg("--listen")
                .arg(addr.to_string());
        } else {
            command.arg("daemon");
        }
        let child = command
            .arg("--root")
            .arg(&self.root)
            .arg("--plugin-socket")
            .arg(&self.plugin_socket)
            .arg("--api-socket")
            .arg(&self.api_socket)
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("DVOL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dvol daemon");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dvol daemon exited with {status}; log:\n{}", self.log());
            }
            if http_unix(&self.api_socket, "GET", "/v1/health", b"").is_ok_and(|r| r.status == 200)
                && http_unix(&self.plugin_socket, "POST", "/Plugin.Activate", b"")
                    .is_ok_and(|r| r.status == 200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "dvol daemon did not answer within 20 s; log:\n{}",
            self.log()
        );
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9 daemon");
            child.wait().expect("reap daemon");
        }
    }

    /// Stops the daemon with SIGTERM and returns its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        child.wait().expect("reap daemon")
    }

    /// Calls a plugin method with a raw body, exactly as the engine would.
    pub fn plugin(&self, method: &str, body: &str) -> HttpResponse {
        http_unix(
            &self.plugin_socket,
            "POST",
            &format!("/{method}"),
            body.as_bytes(),
        )
        .expect("plugin call")
    }

    /// Calls the REST API.
    pub fn api(&self, method: &str, path: &str, body: &str) -> HttpResponse {
        http_unix(&self.api_socket, method, path, body.as_bytes()).expect("API call")
    }

    /// Runs the `dvol` CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run dvol")
    }

    /// The `dvol` CLI command against this daemon, for a caller to add to (e.g. environment).
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(dvol_bin());
        command
            .arg("--host")
            .arg(format!("unix://{}", self.api_socket.display()))
            .args(args);
        command
    }

    /// The mountpoint the daemon reports for a volume (via the REST API).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        let volume = self.api("GET", &format!("/v1/volumes/{name}"), "").json();
        PathBuf::from(volume["mountpoint"].as_str().expect("mountpoint"))
    }

    /// Mount points under this daemon's root that the kernel reports.
    pub fn kernel_mounts(&self) -> Vec<PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(&self.root))
            .collect()
    }
}

impl Drop for Daemon {
    /// Kills the daemon; for one started for Docker, makes the engine forget its volumes; leaves
    /// no socket file and no mount under the root. Panics (unless the test already does) if
    /// the engine still records a volume of the driver.
    fn drop(&mut self) {
        self.kill9();
        let forgotten = match self.engine {
            Some(_) => engine::forget_driver(&self.driver, &self.plugin_socket),
            None => Ok(()),
        };
        let _ = std::fs::remove_file(&self.plugin_socket);
        for mount in self.kernel_mounts() {
            let _ = Command::new("umount").arg("-l").arg(&mount).status();
        }
        if let Err(problem) = forgotten {
            let message = format!(
                "the Docker Engine did not forget the volumes of {}: {problem}",
                self.driver
            );
            if std::thread::panicking() {
                eprintln!("{message}");
            } else {
                panic!("{message}");
            }
        }
    }
}

/// Runs `dvol daemon` on `root` with the sockets `plugin_socket` and `api_socket`, plus `args`;
/// it must exit non-zero within `patience`. Returns its stderr.
pub fn daemon_fails_to_start(
    root: &Path,
    plugin_socket: &Path,
    api_socket: &Path,
    args: &[&str],
    patience: Duration,
) -> String {
    let mut child = Command::new(dvol_bin())
        .arg("daemon")
        .arg("--root")
        .arg(root)
        .arg("--plugin-socket")
        .arg(plugin_socket)
        .arg("--api-socket")
        .arg(api_socket)
        .args(args)
        .env_remove("DVOL_TOKEN_FILE")
        .env("DVOL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dvol daemon");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + patience;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "dvol daemon {args:?} still running after {patience:?}; it should refuse to start"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap();
    assert!(
        !status.success(),
        "dvol daemon {args:?} exited with {status}: {stderr}"
    );
    stderr
}

/// Runs `dvol daemon` with its own root and sockets under `dir` plus `args`; it must exit
/// non-zero within 10 s without creating its sockets. Returns its stderr.
pub fn daemon_must_fail(dir: &Path, args: &[&str]) -> String {
    let plugin_socket = dir.join("plugin.sock");
    let api_socket = dir.join("api.sock");
    let root = dir.join("root");
    let patience = Duration::from_secs(10);
    let stderr = daemon_fails_to_start(&root, &plugin_socket, &api_socket, args, patience);
    assert!(
        !plugin_socket.exists() && !api_socket.exists(),
        "a refused daemon bound its sockets"
    );
    stderr
}
