//! Disk space, end to end, with the real Docker Engine and a real `dvol daemon` whose state
//! root is on a small ext4 filesystem of the test's own (an image it mounts):
//!
//! - sparse (silver) volumes are accepted only while the filesystem can back everything they
//!   were promised, less the reserve; the refusal says the numbers; `dvol node` shows free,
//!   total and promised bytes of that filesystem; every accepted volume can then be written
//!   full from a container, and what it wrote survives unmount and remount.

use std::path::PathBuf;
use std::process::Command;

use dvol_tests::fixtures::{run_ok, stderr, stdout, DockerVolume};
use dvol_tests::{docker_ready, http_unix, is_root, require, Daemon};
use serde_json::{json, Value};

fn ready() -> bool {
    require("root", is_root()) && require("Docker Engine", docker_ready())
}

/// An ext4 filesystem of a given size on a sparse image, mounted under /tmp, and a folder
/// beside it for files that must not be on it; unmounted (lazily, in case a failed test left
/// something open) when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(mib: u64) -> SmallFs {
        let dir = tempfile::Builder::new()
            .prefix("dvol-e2e-space-")
            .tempdir()
            .unwrap();
        let image = dir.path().join("fs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(mkfs.status.success(), "{mkfs:?}");
        std::fs::create_dir(dir.path().join("fs")).unwrap();
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(dir.path().join("fs"))
            .output()
            .unwrap();
        assert!(mount.status.success(), "{mount:?}");
        SmallFs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("fs")
    }

    /// Writes a configuration file beside the filesystem; returns the daemon arguments for it.
    fn config(&self, text: &str) -> Vec<String> {
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        vec!["--config".into(), path.display().to_string()]
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).output();
    }
}

/// The `dvol node --json` row of `profile`.
fn node_row(daemon: &Daemon, profile: &str) -> Value {
    let out = daemon.cli(&["node", "--json"]);
    assert!(out.status.success(), "dvol node: {}", stderr(&out));
    let node: Value = serde_json::from_slice(&out.stdout).unwrap();
    node["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["profile"] == profile)
        .cloned()
        .unwrap_or_else(|| panic!("no {profile} in {node:#}"))
}

#[test]
fn silver_volumes_are_refused_when_the_disk_cannot_back_them_and_accepted_ones_keep_their_data() {
    if !ready() {
        return;
    }
    let small = SmallFs::mount(400);
    let config = small.config(
        r#"
default_profile = "silver"
reserve = "64MiB"
reserve_percent = 0
[profiles.silver]
backend = "loop"
size = "64M"
filesystem = "ext4"
[profiles.bronze]
backend = "directory"
"#,
    );
    let daemon = Daemon::start_under(&small.path(), config);
    let mut volumes: Vec<DockerVolume> = Vec::new();
    let refusal = loop {
        assert!(
            volumes.len() < 20,
            "20 silver volumes of 64M accepted on a 400M filesystem; dvol node: {:#}",
            node_row(&daemon, "silver")
        );
        let volume = DockerVolume::new(&daemon, "dvol-e2e-full").recorded();
        let response = http_unix(
            &daemon.api_socket,
            "POST",
            "/v1/volumes",
            json!({ "name": volume.name }).to_string().as_bytes(),
        )
        .unwrap();
        match response.status {
            201 => volumes.push(volume),
            _ => break response,
        }
    };
    assert_eq!(
        refusal.status,
        400,
        "{}",
        String::from_utf8_lossy(&refusal.body)
    );
    let error = refusal.json()["error"].clone();
    assert_eq!(error["code"], "refused", "{error:#}");
    let message = error["message"].as_str().unwrap();
    for needle in [
        "not enough disk space for a 64MiB volume",
        "in reserve",
        "already promised",
        "max_overprovision",
    ] {
        assert!(message.contains(needle), "{needle:?} missing: {message}");
    }
    assert!(
        volumes.len() >= 3,
        "only {} accepted: {message}",
        volumes.len()
    );

    // `dvol node` measures the small filesystem, and counts the promises.
    let silver = node_row(&daemon, "silver");
    let capacity = &silver["capacity"];
    let total = capacity["total_bytes"].as_u64().unwrap();
    let free = capacity["free_bytes"].as_u64().unwrap();
    let promised = capacity["promised_bytes"].as_u64().unwrap();
    assert!(total < 400 << 20, "{silver:#}");
    assert_eq!(capacity["reserved_bytes"], 64 << 20, "{silver:#}");
    assert!(
        promised > (volumes.len() as u64 - 1) * (48 << 20),
        "{silver:#}"
    );
    assert!(promised + (64 << 20) <= free, "{silver:#}");
    assert_eq!(node_row(&daemon, "bronze")["capacity"]["promised_bytes"], 0);
    let table = daemon.cli(&["node"]);
    assert!(stdout(&table).contains("PROMISED"), "{}", stdout(&table));

    // Every accepted volume is written full; what it wrote is there after a remount.
    for volume in &volumes {
        let written = run_ok(
            &daemon,
            &volume.name,
            "dd if=/dev/urandom of=/data/fill bs=1M 2>/dev/null; sync; \
             ls -l /data/fill | awk '{print $5}'; md5sum /data/fill | cut -d' ' -f1",
        );
        let lines: Vec<&str> = written.lines().collect();
        let size: u64 = lines[0].trim().parse().unwrap();
        assert!(size > 40 << 20, "{} took only {size} bytes", volume.name);
        let again = run_ok(&daemon, &volume.name, "md5sum /data/fill | cut -d' ' -f1");
        assert_eq!(
            again.trim(),
            lines[1].trim(),
            "{} lost data; kernel log:\n{}",
            volume.name,
            kernel_log_tail()
        );
    }
    let after = node_row(&daemon, "silver");
    assert!(
        after["capacity"]["promised_bytes"].as_u64().unwrap() < promised / 2,
        "written volumes are still promised: {after:#}"
    );
}

/// The last lines of the kernel's log, for a failure message.
fn kernel_log_tail() -> String {
    let out = Command::new("dmesg").output();
    out.map(|o| {
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    })
    .unwrap_or_default()
}
