//! dvol as a managed (v2) Docker plugin, with the real engine: `scripts/managed-plugin/build.sh`
//! builds the plugin from the freshly built `dvol`, `docker plugin create` and `enable` install
//! it, and containers use its silver and bronze volumes as they use the legacy socket plugin's;
//! the host's `dvol` CLI reaches the daemon inside the plugin through the bind-mounted REST API
//! socket. After `docker plugin disable` and `rm`, nothing of it is left mounted or attached.
//!
//! The plugin has a name of its own (`dvol-e2e-managed-<random>`), so it never meets the legacy
//! plugins of the other tests (whose sockets lie in `/run/docker/plugins`; a managed plugin's
//! socket lies in a directory the engine makes for it). A [`ManagedPlugin`] guard removes its
//! containers, volumes and the plugin itself when dropped, also after a failed assertion.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dvol_tests::engine::EngineShare;
use dvol_tests::fixtures::{stderr, stdout, unique, Container};
use dvol_tests::{docker, docker_ready, dvol_bin, is_root, repo_root, require, TEST_IMAGE};
use serde_json::Value;

/// Where `scripts/start-dockerd.sh` has the engine log, which holds the plugin's output.
fn dockerd_log() -> PathBuf {
    std::env::var_os("DOCKERD_LOG").map_or_else(|| PathBuf::from("/tmp/dockerd.log"), Into::into)
}

/// An installed managed plugin: built, created and enabled. Dropping it removes the containers
/// and volumes of its driver and the plugin (and with it its state), unmounting what it left.
struct ManagedPlugin {
    /// The name given to `docker plugin create`.
    name: String,
    /// The volume driver name the engine knows it by (`NAME:latest`).
    driver: String,
    /// The engine's id of the plugin.
    id: String,
    /// The plugin directory, the host directories mounted into the plugin (`api`, `config`)
    /// and the CLI's config directory.
    dir: tempfile::TempDir,
    /// Whether the test already removed the plugin.
    removed: bool,
    /// Keeps the engine from being restarted by another test meanwhile.
    _engine: EngineShare,
}

impl ManagedPlugin {
    /// Builds the plugin from the test's `dvol`, creates it, points its `api` and `config`
    /// mounts at directories of the test, and enables it.
    fn install() -> ManagedPlugin {
        let engine = EngineShare::take();
        let name = unique("dvol-e2e-managed");
        let dir = tempfile::Builder::new()
            .prefix("dvol-e2e-managed-")
            .tempdir()
            .expect("tempdir");
        for sub in ["api", "config", "cli"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        let plugin_dir = dir.path().join("plugin");
        let build = Command::new("bash")
            .arg(repo_root().join("scripts/managed-plugin/build.sh"))
            .args(["--name", &name])
            .arg(dvol_bin())
            .arg(&plugin_dir)
            .output()
            .expect("run build.sh");
        assert!(
            build.status.success(),
            "scripts/managed-plugin/build.sh failed: {}\n{}",
            stderr(&build),
            stdout(&build)
        );
        let mut plugin = ManagedPlugin {
            driver: format!("{name}:latest"),
            name,
            id: String::new(),
            dir,
            removed: false,
            _engine: engine,
        };
        plugin.must(&[
            "plugin",
            "create",
            &plugin.name,
            plugin_dir.to_str().unwrap(),
        ]);
        plugin.id = plugin.must(&["plugin", "inspect", "-f", "{{.Id}}", &plugin.name]);
        let api = format!("api.source={}", plugin.dir.path().join("api").display());
        let config = format!(
            "config.source={}",
            plugin.dir.path().join("config").display()
        );
        plugin.must(&["plugin", "set", &plugin.name, &api, &config]);
        plugin.must(&["plugin", "enable", &plugin.name]);
        plugin
    }

    /// The REST API socket on the host.
    fn api_socket(&self) -> PathBuf {
        self.dir.path().join("api/dvol.sock")
    }

    /// Where the engine keeps the plugin (rootfs, propagated mount).
    fn engine_dir(&self) -> PathBuf {
        PathBuf::from("/var/lib/docker/plugins").join(&self.id)
    }

    /// The plugin's output so far, from the engine's log (empty if it is elsewhere).
    fn log(&self) -> String {
        if self.id.is_empty() {
            return String::new();
        }
        std::fs::read_to_string(dockerd_log())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(&self.id))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asserts that `out`, the output of `what`, shows success; returns its stdout.
    fn succeeded(&self, what: &str, out: &Output) -> String {
        assert!(
            out.status.success(),
            "{what} failed: {}\n{}\nplugin log:\n{}",
            stderr(out),
            stdout(out),
            self.log()
        );
        stdout(out)
    }

    /// Runs `docker args`, which must succeed; returns its stdout.
    fn must(&self, args: &[&str]) -> String {
        self.succeeded(&format!("docker {args:?}"), &docker(args))
    }

    /// `docker run --rm` of `script` in the test image with `volume` at /data through the
    /// plugin's driver, which must succeed; returns its stdout.
    fn run(&self, volume: &str, script: &str) -> String {
        let mount = format!("{volume}:/data");
        self.must(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--volume-driver",
            &self.name,
            "-v",
            &mount,
            TEST_IMAGE,
            "sh",
            "-c",
            script,
        ])
    }

    /// Runs the host's `dvol` CLI against the plugin's daemon; it must succeed. Returns stdout.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(dvol_bin())
            .arg("--host")
            .arg(format!("unix://{}", self.api_socket().display()))
            .args(args)
            .env("DVOL_CONFIG_DIR", self.dir.path().join("cli"))
            .env("USER", "tester")
            .output()
            .expect("run dvol");
        self.succeeded(&format!("dvol {args:?}"), &out)
    }

    /// `dvol volume inspect NAME` (JSON) through the host's CLI.
    fn cli_volume(&self, name: &str) -> Value {
        serde_json::from_str(&self.cli(&["volume", "inspect", name])).expect("JSON")
    }

    /// `docker volume inspect NAME`.
    fn docker_volume(&self, name: &str) -> Value {
        let out = self.must(&["volume", "inspect", name]);
        serde_json::from_str::<Value>(&out).expect("JSON")[0].clone()
    }

    /// The names the engine records for the plugin's driver.
    fn docker_volumes(&self) -> Vec<String> {
        let filter = format!("driver={}", self.driver);
        let out = docker(&["volume", "ls", "-q", "--filter", &filter]);
        stdout(&out)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Disables and removes the plugin, which must succeed.
    fn uninstall(&mut self) {
        self.must(&["plugin", "disable", &self.name]);
        self.must(&["plugin", "rm", &self.name]);
        self.removed = true;
    }
}

impl Drop for ManagedPlugin {
    /// Removes the containers using the driver's volumes, the volumes and the plugin, and
    /// unmounts whatever stays under the plugin's directory.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if std::thread::panicking() {
            eprintln!("managed plugin {} log:\n{}", self.name, self.log());
        }
        for volume in self.docker_volumes() {
            let users = docker(&["ps", "-aq", "--filter", &format!("volume={volume}")]);
            for container in stdout(&users).split_whitespace() {
                let _ = docker(&["rm", "-f", container]);
            }
            let _ = docker(&["volume", "rm", "-f", &volume]);
        }
        let _ = docker(&["plugin", "disable", "-f", &self.name]);
        let _ = docker(&["plugin", "rm", "-f", &self.name]);
        if !self.id.is_empty() {
            for mount in mounts_under(&self.engine_dir()).iter().rev() {
                let _ = Command::new("umount").arg("-l").arg(mount).status();
            }
        }
    }
}

/// Mount points the kernel reports at or under `dir` (this process's mount namespace, the
/// engine's).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// The backing files of the attached loop devices, as the kernel names them.
fn loop_backing_files() -> Vec<String> {
    let Ok(devices) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    devices
        .flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("loop/backing_file")).ok())
        .map(|f| f.trim().to_string())
        .collect()
}

/// Seconds since the epoch, for `docker events --since/--until`.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

#[test]
fn silver_and_bronze_volumes_of_the_managed_plugin_serve_containers_and_the_host_cli() {
    if !require("Docker Engine", docker_ready())
        || !require("root", is_root())
        || !require(
            "busybox-static (/bin/busybox)",
            Path::new("/bin/busybox").exists(),
        )
    {
        return;
    }
    let started = Instant::now();
    let mut plugin = ManagedPlugin::install();
    assert_eq!(
        plugin.must(&["plugin", "inspect", "-f", "{{.Enabled}}", &plugin.name]),
        "true"
    );
    eprintln!(
        "managed plugin built, created and enabled in {:?}",
        started.elapsed()
    );

    // A silver volume (an ext4 image on a loop device), created with `docker volume create`.
    let orders = unique("orders");
    let orders_silver = format!("{orders}@silver");
    assert_eq!(
        plugin.must(&["volume", "create", "-d", &plugin.name, &orders_silver]),
        orders_silver
    );
    let mounted = plugin.run(
        &orders_silver,
        "echo 'order 1' > /data/orders.txt && grep ' /data ' /proc/mounts",
    );
    assert!(
        mounted.starts_with("/dev/loop") && mounted.contains(" ext4 "),
        "a silver volume is an ext4 filesystem on a loop device: {mounted}"
    );
    assert_eq!(
        plugin.run(&orders_silver, "cat /data/orders.txt"),
        "order 1"
    );

    // A bronze volume (a directory), created by `docker run -v`.
    let logs = unique("logs");
    let logs_bronze = format!("{logs}@bronze");
    plugin.run(&logs_bronze, "echo 'line 1' > /data/app.log");
    assert_eq!(plugin.run(&logs_bronze, "cat /data/app.log"), "line 1");

    // The engine lists and inspects them with the plugin's driver.
    let filter = format!("driver={}", plugin.driver);
    let listed = plugin.must(&[
        "volume",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Driver}} {{.Name}}",
    ]);
    for name in [&orders, &logs] {
        assert!(
            listed
                .lines()
                .any(|l| l == format!("{} {name}", plugin.driver)),
            "docker volume ls should list {name} with driver {}: {listed}",
            plugin.driver
        );
    }
    let inspected = plugin.docker_volume(&orders_silver);
    assert_eq!(inspected["Driver"], plugin.driver.as_str(), "{inspected:#}");
    assert_eq!(inspected["Status"]["profile"], "silver", "{inspected:#}");
    assert_eq!(inspected["Status"]["backend"], "loop", "{inspected:#}");
    let uuid = inspected["Status"]["uuid"]
        .as_str()
        .expect("uuid")
        .to_string();

    // The host's CLI, through the REST API socket the plugin binds in the host's directory.
    let ls = plugin.cli(&["volume", "ls"]);
    for (name, profile) in [(&orders, "silver"), (&logs, "bronze")] {
        assert!(
            ls.lines()
                .any(|l| l.starts_with(name.as_str()) && l.contains(profile)),
            "dvol volume ls should list {name} ({profile}): {ls}"
        );
    }
    assert_eq!(plugin.cli_volume(&orders)["id"], uuid.as_str());
    plugin.cli(&["-V", &orders, "commit", "-m", "x"]);
    let log = plugin.cli(&["-V", &orders, "log", "--oneline"]);
    assert!(
        log.lines().next().is_some_and(|l| l.ends_with(" x")),
        "{log}"
    );

    // While a container runs, the volume is mounted in the engine's mount namespace at the
    // host path of the propagated mount; and the daemon finds that container by the plugin's
    // driver name: a commit with --pause pauses and unpauses it.
    let container = unique("dvol-e2e-managed-ctr");
    let mount = format!("{orders_silver}:/data");
    plugin.must(&[
        "run",
        "-d",
        "--name",
        &container,
        "--network",
        "none",
        "--volume-driver",
        &plugin.name,
        "-v",
        &mount,
        TEST_IMAGE,
        "sh",
        "-c",
        "trap exit TERM; echo 'order 2' >> /data/orders.txt; while true; do sleep 1; done",
    ]);
    let running = Container(container.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while plugin.must(&["exec", &running.0, "cat", "/data/orders.txt"]) != "order 1\norder 2" {
        assert!(
            Instant::now() < deadline,
            "the container did not write order 2"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let host_mountpoint = plugin
        .engine_dir()
        .join("propagated-mount/mounts")
        .join(&uuid);
    assert!(
        mounts_under(&host_mountpoint).contains(&host_mountpoint),
        "{} should be mounted while a container uses the volume; plugin log:\n{}",
        host_mountpoint.display(),
        plugin.log()
    );
    let since = now_secs();
    plugin.cli(&["-V", &orders, "commit", "--pause", "-m", "paused"]);
    let until = (now_secs() + 1).to_string();
    let filter = format!("container={container}");
    let actions = plugin.must(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until,
        "--filter",
        &filter,
        "--format",
        "{{.Action}}",
    ]);
    assert!(
        actions.lines().any(|a| a == "pause") && actions.lines().any(|a| a == "unpause"),
        "commit --pause should pause and unpause {container} (DVOL_DOCKER_DRIVER): {actions:?}; \
         plugin log:\n{}",
        plugin.log()
    );
    let status = plugin.cli(&["-V", &orders, "status"]);
    assert!(
        !status.contains("orders.txt"),
        "the paused commit took order 2: {status}"
    );
    drop(running);
    assert_eq!(
        plugin.run(&orders_silver, "cat /data/orders.txt"),
        "order 1\norder 2"
    );

    // `docker volume rm` removes them from the plugin too.
    let image = format!("{uuid}.img");
    assert!(
        !loop_backing_files().iter().any(|f| f.contains(&image)),
        "no container uses {orders}, so its image should not be attached: {:?}",
        loop_backing_files()
    );
    plugin.must(&["volume", "rm", &orders_silver, &logs_bronze]);
    let ls = plugin.cli(&["volume", "ls"]);
    assert!(
        !ls.contains(&orders) && !ls.contains(&logs),
        "docker volume rm should remove the volumes from dvol: {ls}"
    );
    assert!(
        plugin.docker_volumes().is_empty(),
        "{:?}",
        plugin.docker_volumes()
    );

    // Disabled and removed, the plugin leaves no mount and no attached image behind.
    let engine_dir = plugin.engine_dir();
    plugin.uninstall();
    assert_eq!(mounts_under(&engine_dir), Vec::<PathBuf>::new());
    assert!(!engine_dir.exists(), "{} is left", engine_dir.display());
    assert!(
        !loop_backing_files().iter().any(|f| f.contains(&image)),
        "a loop device stays attached to {image}: {:?}",
        loop_backing_files()
    );
    assert!(
        !plugin.api_socket().exists(),
        "the daemon should remove its API socket when it stops"
    );
    eprintln!("managed plugin scenario took {:?}", started.elapsed());
}
