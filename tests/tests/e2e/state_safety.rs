//! The daemon's state under failure, with the real daemon binary: a remove that fails
//! halfway, mount ids a crashed engine left behind, one daemon per state root, the modes of
//! the state root, and a state root whose filesystem is full.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dvol_tests::fixtures::*;
use dvol_tests::{daemon_fails_to_start, docker_ready, is_root, require, Daemon};
use serde_json::{json, Value};

/// A file that cannot be deleted (`chattr +i`) until dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn plant(dir: &Path) -> Immutable {
        let file = dir.join("pinned");
        std::fs::write(&file, b"cannot be deleted").unwrap();
        let status = Command::new("chattr")
            .arg("+i")
            .arg(&file)
            .status()
            .unwrap();
        assert!(status.success(), "chattr +i {}", file.display());
        Immutable(file)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// The directory backend's data directory of the volume `name`.
fn data_dir(daemon: &Daemon, name: &str) -> PathBuf {
    daemon
        .root
        .join("backends/directory")
        .join(volume_id(daemon, name))
}

/// The volume `name` in the REST listing.
fn listed(daemon: &Daemon, name: &str) -> Value {
    let all = api_expect(daemon, "GET", "/v1/volumes", &Value::Null, 200);
    all.as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not listed: {all:#}"))
}

/// The answer of a plugin call, which must carry no `Err`.
fn plugin_ok(daemon: &Daemon, method: &str, body: &Value) -> Value {
    let answer = daemon.plugin(method, &body.to_string()).json();
    assert!(
        answer.get("Err").is_none_or(|e| e == ""),
        "{method} {body}: {answer}\ndvol daemon log:\n{}",
        daemon.log()
    );
    answer
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_remove_that_fails_halfway_stays_listed_as_removing_and_can_be_retried() {
    if !require("root", is_root()) {
        return;
    }
    let daemon = Daemon::start();
    api_expect(
        &daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": "half" }),
        201,
    );
    let pinned = Immutable::plant(&data_dir(&daemon, "half"));

    let out = daemon.cli(&["volume", "rm", "half"]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("volume half could not be removed")
            && message.contains("retry `dvol volume rm half`"),
        "{message}"
    );

    // Listed everywhere, as removing, with the reason.
    let view = listed(&daemon, "half");
    assert_eq!(view["state"], "removing", "{view}");
    let problem = view["problem"].as_str().expect("a problem").to_string();
    assert!(problem.contains("Operation not permitted"), "{problem}");
    let table = stdout(&daemon.cli(&["volume", "ls"]));
    let row = table
        .lines()
        .find(|l| l.starts_with("half "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("removing"), "{table}");
    let list = plugin_ok(&daemon, "VolumeDriver.List", &json!({}));
    assert!(
        list["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["Name"] == "half"),
        "{list}"
    );
    let got = plugin_ok(&daemon, "VolumeDriver.Get", &json!({ "Name": "half" }));
    assert_eq!(got["Volume"]["Status"]["state"], "removing", "{got}");
    assert_eq!(
        got["Volume"]["Status"]["problem"],
        problem.as_str(),
        "{got}"
    );

    // The name is not free yet: a clear refusal, never SQLite's.
    let refused = api_expect(
        &daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": "half" }),
        409,
    );
    let text = refused["error"]["message"].as_str().unwrap();
    assert_eq!(
        text,
        format!("volume half is being removed ({problem}); retry `dvol volume rm half`")
    );
    assert!(!text.contains("UNIQUE"), "{text}");
    let docker_create = daemon
        .plugin(
            "VolumeDriver.Create",
            &json!({ "Name": "half" }).to_string(),
        )
        .json();
    assert!(
        docker_create["Err"]
            .as_str()
            .is_some_and(|e| e.contains("is being removed")),
        "{docker_create}"
    );

    // Fixed: the retry finishes without a restart, and the name can be used again.
    drop(pinned);
    let out = daemon.cli(&["volume", "rm", "half"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!api_names(&daemon).contains(&"half".to_string()));
    api_expect(
        &daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": "half" }),
        201,
    );
}

#[test]
fn a_remove_that_failed_before_a_restart_is_still_listed_after_it() {
    if !require("root", is_root()) {
        return;
    }
    let mut daemon = Daemon::start();
    api_expect(
        &daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": "kept" }),
        201,
    );
    let pinned = Immutable::plant(&data_dir(&daemon, "kept"));
    api_expect(&daemon, "DELETE", "/v1/volumes/kept", &Value::Null, 500);
    daemon.kill9();
    daemon.spawn();
    let view = listed(&daemon, "kept");
    assert_eq!(view["state"], "removing", "{view}");
    assert!(view["problem"].as_str().is_some(), "{view}");
    drop(pinned);
    api_expect(&daemon, "DELETE", "/v1/volumes/kept", &Value::Null, 204);
    assert!(api_names(&daemon).is_empty());
}

/// Runs a second `dvol daemon` with `root` and sockets `plugin` and `api`; it must exit
/// non-zero within 20 s. Returns its stderr.
fn second_daemon_fails(root: &Path, plugin: &Path, api: &Path) -> String {
    daemon_fails_to_start(root, plugin, api, &[], Duration::from_secs(20))
}

#[test]
fn one_daemon_per_state_root_and_a_failed_start_removes_only_its_own_sockets() {
    if !require("root", is_root()) {
        return;
    }
    let mut daemon = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let [plugin, api] = ["plugin.sock", "api.sock"].map(|s| tmp.path().join(s));

    let text = second_daemon_fails(&daemon.root, &plugin, &api);
    assert!(
        text.contains(&format!(
            "in use by another dvol daemon (pid {})",
            daemon.pid()
        )),
        "{text}"
    );
    assert!(
        !plugin.exists() && !api.exists(),
        "the refused daemon bound sockets"
    );
    assert_eq!(daemon.api("GET", "/v1/health", "").status, 200);

    // Another root, but the first daemon's plugin socket: refused, and that socket stays.
    let other_root = tmp.path().join("other-root");
    let text = second_daemon_fails(&other_root, &daemon.plugin_socket, &api);
    assert!(text.contains("in use by a running process"), "{text}");
    assert!(daemon.plugin_socket.exists());
    assert_eq!(
        daemon.plugin("Plugin.Activate", "").status,
        200,
        "the first daemon's socket must still answer"
    );

    // A start that fails after binding its plugin socket removes that socket.
    let blocker = tmp.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let text = second_daemon_fails(&other_root, &plugin, &blocker.join("api.sock"));
    assert!(text.contains("api.sock"), "{text}");
    assert!(
        !plugin.exists(),
        "the failed start left its plugin socket behind"
    );

    // kill -9 never blocks a restart: the kernel drops the lock with the process.
    daemon.kill9();
    daemon.spawn();
    let pid = std::fs::read_to_string(daemon.root.join("daemon.lock")).unwrap();
    assert_eq!(pid.trim(), daemon.pid().to_string());
}

#[test]
fn the_state_root_is_owner_only_and_containers_still_see_their_volumes() {
    if !require("root", is_root()) || !require("Docker Engine", docker_ready()) {
        return;
    }
    let mut daemon = Daemon::start_for_docker();
    daemon.kill9();
    // As an older dvol left it.
    let set = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    set(&daemon.root, 0o711);
    set(&daemon.root.join("history"), 0o755);
    set(&daemon.root.join("dvol.db"), 0o644);
    daemon.spawn();
    assert_eq!(mode(&daemon.root), 0o700);
    assert_eq!(mode(&daemon.root.join("history")), 0o700);
    assert_eq!(mode(&daemon.root.join("dvol.db")), 0o600);

    let volume = DockerVolume::new("modes");
    run_ok(&daemon, &volume.name, "echo through-the-engine > /data/f");
    assert_eq!(
        run_ok(&daemon, &volume.name, "cat /data/f"),
        "through-the-engine"
    );
    let ctr = Container::start(&daemon, &volume.name, "trap : TERM; sleep 600 & wait");
    assert_eq!(ctr.exec(&daemon, "cat /data/f"), "through-the-engine");
    ctr.remove(&daemon);
}

#[test]
fn mount_ids_of_containers_gone_while_the_daemon_was_down_are_dropped_at_start() {
    if !require("root", is_root()) || !require("Docker Engine", docker_ready()) {
        return;
    }
    let mut daemon = Daemon::start_for_docker();
    let volume = DockerVolume::new("stale");
    let ctr = Container::start(&daemon, &volume.name, "trap : TERM; sleep 600 & wait");
    assert_eq!(api_volume(&daemon, &volume.name)["mounted"], true);

    // The daemon dies; the container goes while it is down, so no Unmount reaches dvol.
    daemon.kill9();
    ctr.remove(&daemon);
    daemon.spawn();

    let view = api_volume(&daemon, &volume.name);
    assert_eq!(
        view["mounts"],
        json!({}),
        "stale ids kept: {view}\n{}",
        daemon.log()
    );
    assert_eq!(view["mounted"], false, "{view}");
    must(&daemon, &["volume", "rm", &volume.name]);
    assert!(
        daemon.kernel_mounts().is_empty(),
        "{:?}",
        daemon.kernel_mounts()
    );
}

/// A small tmpfs of the test's own, unmounted when dropped.
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs");
        SmallFs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes files until the filesystem has no room left.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path().join("fill")).unwrap();
        let chunk = vec![1u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        for i in 0.. {
            if std::fs::write(self.path().join(format!("fill-{i}")), b"x").is_err() {
                break;
            }
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

#[test]
fn a_full_state_root_still_starts_says_so_and_volumes_can_be_removed() {
    if !require("root", is_root()) {
        return;
    }
    let fs = SmallFs::mount("48m");
    let mut daemon = Daemon::start_under(fs.path(), Vec::new());
    // The daemon's log lives on the same filesystem: room kept for it.
    let log = daemon.root.parent().unwrap().join("daemon.log");
    let kept = Command::new("fallocate")
        .args(["-n", "-l", "8M"])
        .arg(&log)
        .status()
        .unwrap();
    assert!(kept.success(), "fallocate the log");
    for name in ["full-a", "full-b"] {
        api_expect(
            &daemon,
            "POST",
            "/v1/volumes",
            &json!({ "name": name }),
            201,
        );
    }
    std::fs::write(data_dir(&daemon, "full-a").join("data"), vec![7u8; 4 << 20]).unwrap();
    assert_eq!(daemon.stop().code(), Some(0));

    fs.fill();
    daemon.spawn();
    let node = api_expect(&daemon, "GET", "/v1/node", &Value::Null, 200);
    let problems = node["problems"].as_array().expect("problems").clone();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.contains("is full"))),
        "{node:#}"
    );
    assert!(daemon.log().contains("is full"), "{}", daemon.log());
    assert_eq!(api_names(&daemon), ["full-a", "full-b"]);

    // An empty directory volume frees nothing: its record still gets through.
    api_expect(&daemon, "DELETE", "/v1/volumes/full-b", &Value::Null, 204);
    api_expect(&daemon, "DELETE", "/v1/volumes/full-a", &Value::Null, 204);
    assert!(api_names(&daemon).is_empty());
    daemon.kill9();
    daemon.spawn();
    assert!(api_names(&daemon).is_empty(), "the removes were recorded");
}
