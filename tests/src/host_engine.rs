//! A private Docker Engine for one test host ([`HostEngine`]), side by side with the system
//! engine, which it leaves alone.
//!
//! The engine runs in the root network namespace (with `--iptables=false --ip6tables=false
//! --bridge=none`, so it touches no network configuration), with its data root, exec root,
//! pidfile, socket and log in a fresh directory `D` (`/tmp/dvh-XXXXXX`, short enough for the
//! socket paths under it).
//!
//! Every engine discovers volume plugins in `/run/docker/plugins`. So that the system engine
//! never sees a host's daemon (nor that engine the daemons of other tests), the engine runs in
//! a mount namespace of its own (`unshare --mount --propagation slave`) where `D/plugins` is
//! bind-mounted over `/run/docker/plugins`; a host's daemon puts its plugin socket in
//! [`HostEngine::plugins_dir`]. `D` is a shared mount in the root mount namespace, and the
//! daemon keeps its root under it ([`crate::Daemon::start_in`]), so the volumes the daemon
//! mounts propagate into the engine's mount namespace, as they would on a host of its own.
//!
//! The test image is built into the engine by `scripts/build-test-image.sh` (with
//! `DOCKER_HOST` pointing at it), which does not need the system engine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{run, runs};
use crate::{is_root, repo_root, require};

/// Whether a private engine can run here: root, with `dockerd`, `docker` and `unshare`.
pub fn available() -> bool {
    is_root()
        && runs("dockerd", "--version")
        && runs("docker", "--version")
        && runs("unshare", "--version")
}

/// A private `dockerd` of one test host, with the test image loaded. Dropping it stops the
/// engine and removes its directory. Drop a [`crate::Daemon`] started with it first (declare
/// the engine before the daemon).
pub struct HostEngine {
    dir: PathBuf,
    socket: PathBuf,
    child: Option<Child>,
    started_in: Duration,
}

impl HostEngine {
    /// Starts the engine, waits until it answers (60 s at most) and loads the test image.
    /// Panics with the engine's log if it does not come up.
    pub fn start() -> HostEngine {
        let began = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("dvh-")
            .tempdir_in("/tmp")
            .expect("tempdir")
            .keep();
        let mut engine = HostEngine {
            socket: dir.join("docker.sock"),
            dir,
            child: None,
            started_in: Duration::ZERO,
        };
        let dir = engine.dir.display().to_string();
        run("mount", &["--bind", &dir, &dir]);
        run("mount", &["--make-shared", &dir]);
        std::fs::create_dir_all(engine.plugins_dir()).expect("plugins dir");
        std::fs::write(engine.dir.join("daemon.json"), "{}\n").expect("daemon.json");
        let log = std::fs::File::create(engine.log_path()).expect("engine log");
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" /run/docker/plugins && shift && exec "$@""#)
            .arg("sh")
            .arg(engine.plugins_dir())
            .arg("dockerd")
            .arg(format!("--config-file={dir}/daemon.json"))
            .arg(format!("--data-root={dir}/data"))
            .arg(format!("--exec-root={dir}/exec"))
            .arg(format!("--pidfile={dir}/docker.pid"))
            .arg(format!("--host=unix://{}", engine.socket.display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        engine.child = Some(child);
        engine.wait_ready(Duration::from_secs(60));
        let built = Command::new("bash")
            .arg(repo_root().join("scripts/build-test-image.sh"))
            .env("DOCKER_HOST", engine.docker_host())
            .output()
            .expect("run build-test-image.sh");
        assert!(
            built.status.success(),
            "building the test image into {} failed: {}",
            engine.docker_host(),
            String::from_utf8_lossy(&built.stderr)
        );
        engine.started_in = began.elapsed();
        engine
    }

    /// For a test: [`HostEngine::start`], or `None` when the test skips because a private
    /// engine cannot run here (see [`require`]).
    pub fn for_test() -> Option<HostEngine> {
        require(
            "a private Docker Engine (root, dockerd, docker, unshare)",
            available(),
        )
        .then(HostEngine::start)
    }

    fn wait_ready(&mut self, patience: Duration) {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("dockerd exited with {status}; log:\n{}", self.log());
            }
            if self.docker(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "dockerd did not answer within {patience:?}; log:\n{}",
            self.log()
        );
    }

    /// The engine's directory (a shared mount; [`crate::Daemon::start_in`] puts a host
    /// daemon's root under it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The engine's API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://<socket>`, for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Where the engine discovers plugins: its `/run/docker/plugins`.
    pub fn plugins_dir(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    /// How long starting the engine and loading the test image took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    /// The engine's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs the docker CLI against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("--host")
            .arg(self.docker_host())
            .args(args)
            .output()
            .expect("run docker")
    }

    /// [`HostEngine::docker`]; panics with stderr unless it succeeds; returns trimmed stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} on {} failed: {}",
            self.docker_host(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops dockerd: SIGTERM, 20 s, then SIGKILL.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "dockerd of {} ignored SIGTERM; killing it",
            self.dir.display()
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

impl Drop for HostEngine {
    /// Stops the engine (its mount namespace, with the engine's mounts, goes with it), unmounts
    /// whatever is left under its directory and removes the directory.
    fn drop(&mut self) {
        self.stop();
        for mount in mounts_under(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&mount).status();
        }
        if mounts_under(&self.dir).is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("mounts left under {}; not removing it", self.dir.display());
        }
    }
}
