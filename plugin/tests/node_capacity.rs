//! `node_info` measures each profile on what really backs it, and counts what sparse loop
//! volumes are promised: a loop backend whose images live on a small ext4 filesystem the test
//! mounts, beside a directory backend on the host's filesystem. Needs root and loop devices
//! (skipped without them, failing under `DVOL_REQUIRE_ALL=1`).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use dvol_backends::directory::DirectoryBackend;
use dvol_backends::loop_device::{LoopBackend, Reserve, LOOP_CONTROL};
use dvol_backends::{Backend, BackendKind};
use dvol_plugin::config::Config;
use dvol_plugin::profile::HostBackends;
use dvol_plugin::volume::Layout;
use dvol_plugin::VolumeService;

const CONFIG: &str = r#"
default_profile = "silver"
[profiles.silver]
backend = "loop"
size = "64M"
[profiles.bronze]
backend = "directory"
"#;

/// Unmounts the small filesystem (lazily) when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

fn runnable() -> bool {
    let ok = rustix::process::geteuid().is_root() && Path::new(LOOP_CONTROL).exists();
    if !ok && std::env::var("DVOL_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("root and loop devices are required (DVOL_REQUIRE_ALL=1)");
    }
    if !ok {
        eprintln!("SKIPPED: needs root and loop devices");
    }
    ok
}

#[test]
fn node_info_measures_each_profile_on_its_own_storage_with_promises() {
    if !runnable() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("small.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(mkfs.status.success(), "{mkfs:?}");
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-o", "loop"])
        .arg(&image)
        .arg(&small)
        .output()
        .unwrap();
    assert!(mounted.status.success(), "{mounted:?}");
    let _unmount = Unmount(small.clone());

    let layout = Layout::new(tmp.path().join("root"));
    let directory: Arc<dyn Backend> =
        Arc::new(DirectoryBackend::open(layout.backend_dir(BackendKind::Directory)).unwrap());
    let reserve = Reserve {
        min_bytes: 16 << 20,
        percent: 0.0,
    };
    let loop_device: Arc<dyn Backend> = Arc::new(
        LoopBackend::open(small.join("images"))
            .unwrap()
            .with_reserve(reserve),
    );
    let mut host = HostBackends::directory_only(directory, "");
    host.loop_device = Ok(loop_device);
    let config = Config::parse(CONFIG, Path::new("test.toml")).unwrap();
    let service = VolumeService::open(layout, &config, host).unwrap();
    service.create("a", &Default::default()).unwrap();
    service.create("b", &Default::default()).unwrap();

    let node = service.node_info();
    let row = |name: &str| {
        node.profiles
            .iter()
            .find(|p| p.profile == name)
            .and_then(|p| p.capacity)
            .unwrap()
    };
    let (silver, bronze) = (row("silver"), row("bronze"));
    assert!(silver.total_bytes < 300 << 20, "{silver:?}");
    assert!(bronze.total_bytes > silver.total_bytes, "{bronze:?}");
    assert_eq!(silver.reserved_bytes, 16 << 20);
    // Two 64 MiB sparse images, less what mkfs wrote into them.
    assert!(
        silver.promised_bytes > 100 << 20 && silver.promised_bytes < 128 << 20,
        "{silver:?}"
    );
    assert_eq!(bronze.promised_bytes, 0);
    for name in ["a", "b"] {
        service.remove(name).unwrap();
    }
}
