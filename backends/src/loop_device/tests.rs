//! The loop backend against real loop devices, as root: every operation, crash leftovers,
//! growing, read points and clones (on an XFS root with reflink, mounted for the test).

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::attachment::{attachments_of, detach_device};
use super::grow::may_grow_mounted_ext4;
use super::{loop_attachments, LoopAttachment, LoopBackend, Reserve, LOOP_CONTROL};
use crate::freeze::BoundedFreeze;
use crate::mount_table::{is_mount_point, MountTable};
use crate::test_files::{noise, write_at, Ranges};
use crate::{
    Backend, BackendError, BackendKind, ByteSize, Effect, Filesystem, ReadPoint, VolumeSpec,
};

/// The tests share the host's loop devices and count them: one at a time.
static LOOP_TESTS: Mutex<()> = Mutex::new(());

/// A backend under a fresh temporary directory; on drop, unmounts and detaches whatever a
/// failed test left under it.
struct Fixture {
    dir: tempfile::TempDir,
    backend: LoopBackend,
    _serial: MutexGuard<'static, ()>,
}

impl Fixture {
    /// `None` (with a note) when this host cannot run loop tests.
    fn new() -> Option<Fixture> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: loop devices need root");
            return None;
        }
        if !Path::new(LOOP_CONTROL).exists() {
            eprintln!("skipped: {LOOP_CONTROL} is missing");
            return None;
        }
        let serial = LOOP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::Builder::new()
            .prefix("dvol-loop-test-")
            .tempdir_in("/tmp")
            .unwrap();
        let backend = LoopBackend::open(dir.path().join("images")).unwrap();
        Some(Fixture {
            dir,
            backend,
            _serial: serial,
        })
    }

    /// A fresh, empty mountpoint.
    fn target(&self, name: &str) -> PathBuf {
        let path = fs::canonicalize(self.dir.path()).unwrap().join(name);
        fs::create_dir(&path).unwrap();
        path
    }

    /// Loop devices serving files under this fixture.
    fn attachments(&self) -> Vec<LoopAttachment> {
        let root = fs::canonicalize(self.dir.path()).unwrap();
        loop_attachments()
            .unwrap()
            .into_iter()
            .filter(|a| a.backing_file.starts_with(&root))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let root = fs::canonicalize(self.dir.path()).unwrap();
        if let Ok(table) = MountTable::read() {
            let mut points: Vec<_> = table
                .mounts()
                .iter()
                .map(|m| &m.mount_point)
                .filter(|p| p.starts_with(&root))
                .collect();
            points.reverse();
            for point in points {
                let _ = sys_mount::unmount(point, sys_mount::UnmountFlags::DETACH);
            }
        }
        for attachment in self.attachments() {
            let _ = detach_device(&attachment.device);
        }
    }
}

fn spec(fs: Filesystem, size: &str) -> VolumeSpec {
    VolumeSpec {
        id: Uuid::new_v4(),
        size: Some(size.parse().unwrap()),
        filesystem: Some(fs),
        preallocate: false,
        max_overprovision: None,
    }
}

/// Total bytes of the filesystem mounted at `path`.
fn total_bytes(path: &Path) -> u64 {
    let stat = rustix::fs::statvfs(path).unwrap();
    stat.f_blocks * stat.f_frsize
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program).args(args).output().unwrap()
}

fn data_survives_remount(fs: Filesystem, size: &str) {
    let Some(fx) = Fixture::new() else { return };
    let spec = spec(fs, size);
    let target = fx.target("mnt");
    assert_eq!(fx.backend.create(&spec).unwrap(), Effect::Changed);
    assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
    assert!(is_mount_point(&target).unwrap());
    let fstype = MountTable::read()
        .unwrap()
        .mounts()
        .iter()
        .find(|m| m.mount_point == target)
        .unwrap()
        .fs_type
        .clone();
    assert_eq!(fstype, fs.as_str());
    fs::create_dir(target.join("dir")).unwrap();
    fs::write(target.join("dir/data"), b"kept across mounts").unwrap();
    assert_eq!(
        fx.backend.unmount(spec.id, &target).unwrap(),
        Effect::Changed
    );
    assert!(!target.join("dir").exists());
    assert!(fx.attachments().is_empty(), "{:?}", fx.attachments());
    assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
    assert_eq!(
        fs::read(target.join("dir/data")).unwrap(),
        b"kept across mounts"
    );
    assert_eq!(fx.attachments().len(), 1);
    assert_eq!(
        fx.backend.unmount(spec.id, &target).unwrap(),
        Effect::Changed
    );
    assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Changed);
    assert!(fx.attachments().is_empty());
}

#[test]
fn ext4_data_survives_unmount_and_remount() {
    data_survives_remount(Filesystem::Ext4, "32M");
}

#[test]
fn xfs_data_survives_unmount_and_remount() {
    data_survives_remount(Filesystem::Xfs, "300M");
}

#[test]
fn every_operation_is_idempotent() {
    let Some(fx) = Fixture::new() else { return };
    let spec = spec(Filesystem::Ext4, "32M");
    let target = fx.target("mnt");
    assert_eq!(
        fx.backend.unmount(spec.id, &target).unwrap(),
        Effect::Unchanged
    );
    assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Unchanged);
    assert_eq!(fx.backend.create(&spec).unwrap(), Effect::Changed);
    assert_eq!(fx.backend.create(&spec).unwrap(), Effect::Unchanged);
    assert_eq!(fx.backend.volumes().unwrap(), vec![spec.id]);
    assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
    assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Unchanged);
    assert_eq!(fx.attachments().len(), 1, "one device per mounted volume");
    let size: ByteSize = "48M".parse().unwrap();
    if may_grow_mounted_ext4() {
        assert_eq!(
            fx.backend.resize(&spec, size, &target).unwrap(),
            Effect::Changed
        );
        assert_eq!(
            fx.backend.resize(&spec, size, &target).unwrap(),
            Effect::Unchanged
        );
    }
    assert_eq!(
        fx.backend.unmount(spec.id, &target).unwrap(),
        Effect::Changed
    );
    assert_eq!(
        fx.backend.unmount(spec.id, &target).unwrap(),
        Effect::Unchanged
    );
    let bigger: ByteSize = "64M".parse().unwrap();
    assert_eq!(
        fx.backend.resize(&spec, bigger, &target).unwrap(),
        Effect::Changed
    );
    assert_eq!(
        fx.backend.resize(&spec, bigger, &target).unwrap(),
        Effect::Unchanged
    );
    assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Changed);
    assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Unchanged);
    assert!(fx.backend.volumes().unwrap().is_empty());
    assert!(fx.attachments().is_empty());
}

#[test]
fn a_full_volume_fails_writes_with_enospc_and_recovers() {
    let Some(fx) = Fixture::new() else { return };
    let spec = spec(Filesystem::Ext4, "32M");
    let target = fx.target("mnt");
    fx.backend.create(&spec).unwrap();
    fx.backend.mount(&spec, &target).unwrap();
    let big = target.join("big");
    let chunk = vec![0xa5u8; 1 << 20];
    let result = (|| {
        let mut file = File::create(&big)?;
        for _ in 0..64 {
            file.write_all(&chunk)?;
        }
        file.sync_all()
    })();
    let err = result.expect_err("64 MiB must not fit in a 32 MiB volume");
    assert!(
        err.kind() == ErrorKind::StorageFull || err.raw_os_error() == Some(28),
        "{err:?}"
    );
    fs::remove_file(&big).unwrap();
    let mut file = File::create(target.join("small")).unwrap();
    for _ in 0..8 {
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
    drop(file);
    fx.backend.unmount(spec.id, &target).unwrap();
    fx.backend.remove(spec.id).unwrap();
}

#[test]
fn sizes_below_the_filesystem_minimum_are_refused_with_the_minimum() {
    let Some(fx) = Fixture::new() else { return };
    let xfs = spec(Filesystem::Xfs, "100M");
    let err = fx.backend.create(&xfs).unwrap_err();
    assert!(err.is_refusal(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "size 100MiB is below the 300MiB minimum for xfs"
    );
    let ext4 = spec(Filesystem::Ext4, "8M");
    let err = fx.backend.validate(&ext4).unwrap_err();
    assert!(
        err.is_refusal() && err.to_string().contains("16MiB minimum for ext4"),
        "{err}"
    );
    let no_size = VolumeSpec {
        size: None,
        ..spec(Filesystem::Ext4, "1G")
    };
    let err = fx.backend.validate(&no_size).unwrap_err();
    assert!(
        err.is_refusal() && err.to_string().contains("loop volumes need a size"),
        "{err}"
    );
    let huge = VolumeSpec {
        preallocate: true,
        ..spec(Filesystem::Ext4, "8T")
    };
    let err = fx.backend.create(&huge).unwrap_err();
    assert!(err.is_refusal(), "{err:?}");
    assert!(
        err.to_string().contains("needs 8TiB allocated now"),
        "{err}"
    );
    assert!(fx.backend.volumes().unwrap().is_empty());
    assert_eq!(fs::read_dir(fx.backend.root()).unwrap().count(), 0);
}

/// Whether the filesystem holding `path` is ext4 (statfs magic 0xEF53).
fn on_ext4(path: &Path) -> bool {
    rustix::fs::statfs(path).unwrap().f_type as u32 == 0xEF53
}

#[test]
fn a_volume_larger_than_the_roots_largest_file_is_refused_with_the_limit() {
    let Some(fx) = Fixture::new() else { return };
    if !on_ext4(fx.backend.root()) {
        assert!(
            std::env::var("DVOL_REQUIRE_ALL").as_deref() != Ok("1"),
            "an ext4 /tmp is required (DVOL_REQUIRE_ALL=1) but /tmp is not ext4"
        );
        eprintln!("skipped: /tmp is not ext4");
        return;
    }
    let block = rustix::fs::statfs(fx.backend.root()).unwrap().f_bsize as u64;
    let limit = ((1u64 << 32) - 1) * block;
    // Sparse, and allowed any overcommit: only the file size limit stands in the way.
    let huge = VolumeSpec {
        max_overprovision: Some(100_000.0),
        ..spec(Filesystem::Ext4, "17T")
    };
    for err in [
        fx.backend.validate(&huge).unwrap_err(),
        fx.backend.create(&huge).unwrap_err(),
    ] {
        assert!(err.is_refusal(), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("a 17TiB volume does not fit in one image file")
                && message.contains(&format!("its largest file is {limit} bytes"))
                && message.contains("ext4"),
            "{message}"
        );
    }
    assert!(fx.backend.volumes().unwrap().is_empty());
    assert_eq!(fs::read_dir(fx.backend.root()).unwrap().count(), 0);

    // Where the type is not known, the kernel's EFBIG says the same, and the half-built
    // image is gone.
    let temp = fx.backend.temp_path(huge.id);
    let err = fx
        .backend
        .build_image(&temp, Filesystem::Ext4, "17T".parse().unwrap(), false)
        .unwrap_err();
    assert!(err.is_refusal(), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("its largest file is {limit} bytes")),
        "{err}"
    );
    fx.backend.discard_temp(huge.id).unwrap();
    assert_eq!(fs::read_dir(fx.backend.root()).unwrap().count(), 0);
}

fn resize_mounted(fs: Filesystem, from: &str, to: &str) {
    let Some(fx) = Fixture::new() else { return };
    let spec = spec(fs, from);
    let target = fx.target("mnt");
    fx.backend.create(&spec).unwrap();
    fx.backend.mount(&spec, &target).unwrap();
    fs::write(target.join("f"), b"before resize").unwrap();
    let before = total_bytes(&target);
    let to: ByteSize = to.parse().unwrap();
    if fs == Filesystem::Ext4 && !may_grow_mounted_ext4() {
        // This host (a container without CAP_SYS_RESOURCE) cannot grow a mounted ext4
        // filesystem: the refusal must say so and leave the image as it was.
        let err = fx.backend.resize(&spec, to, &target).unwrap_err();
        assert!(err.to_string().contains("CAP_SYS_RESOURCE"), "{err}");
        let image = fs::metadata(fx.backend.image_path(spec.id)).unwrap();
        assert_eq!(image.len(), spec.size.unwrap().bytes());
        let smaller: ByteSize = "16M".parse().unwrap();
        let err = fx.backend.resize(&spec, smaller, &target).unwrap_err();
        assert!(
            err.is_refusal() && err.to_string().contains("cannot shrink"),
            "{err}"
        );
        eprintln!("note: no CAP_SYS_RESOURCE; online ext4 growth checked as refused");
        fx.backend.unmount(spec.id, &target).unwrap();
        fx.backend.remove(spec.id).unwrap();
        return;
    }
    assert_eq!(
        fx.backend.resize(&spec, to, &target).unwrap(),
        Effect::Changed
    );
    let after = total_bytes(&target);
    assert!(after > before, "{fs}: {before} -> {after}");
    let added = to.bytes() - spec.size.unwrap().bytes();
    assert!(
        after - before >= added * 9 / 10,
        "{fs}: grew by too little for {added} more bytes: {before} -> {after}"
    );
    assert_eq!(fs::read(target.join("f")).unwrap(), b"before resize");
    assert_eq!(
        fs::metadata(fx.backend.image_path(spec.id)).unwrap().len(),
        to.bytes()
    );
    let smaller = spec.size.unwrap();
    let err = fx.backend.resize(&spec, smaller, &target).unwrap_err();
    assert!(err.is_refusal(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&to.to_string()) && message.contains(&smaller.to_string()),
        "{message}"
    );
    assert_eq!(total_bytes(&target), after);
    fx.backend.unmount(spec.id, &target).unwrap();
    fx.backend.remove(spec.id).unwrap();
    assert!(fx.attachments().is_empty());
}

#[test]
fn ext4_resize_while_mounted_grows_the_filesystem_and_shrink_is_refused() {
    resize_mounted(Filesystem::Ext4, "32M", "64M");
}

#[test]
fn xfs_resize_while_mounted_grows_the_filesystem_and_shrink_is_refused() {
    resize_mounted(Filesystem::Xfs, "300M", "400M");
}

fn resize_unmounted(fs: Filesystem, from: &str, to: &str) {
    let Some(fx) = Fixture::new() else { return };
    let spec = spec(fs, from);
    let target = fx.target("mnt");
    fx.backend.create(&spec).unwrap();
    fx.backend.mount(&spec, &target).unwrap();
    fs::write(target.join("f"), b"before resize").unwrap();
    let before = total_bytes(&target);
    fx.backend.unmount(spec.id, &target).unwrap();
    let to: ByteSize = to.parse().unwrap();
    assert_eq!(
        fx.backend.resize(&spec, to, &target).unwrap(),
        Effect::Changed
    );
    assert!(!is_mount_point(&target).unwrap());
    assert!(fx.attachments().is_empty(), "{:?}", fx.attachments());
    fx.backend.mount(&spec, &target).unwrap();
    let after = total_bytes(&target);
    assert!(after > before, "{fs}: {before} -> {after}");
    assert_eq!(fs::read(target.join("f")).unwrap(), b"before resize");
    fx.backend.unmount(spec.id, &target).unwrap();
    fx.backend.remove(spec.id).unwrap();
}

#[test]
fn ext4_resize_while_unmounted_checks_and_grows_the_filesystem() {
    resize_unmounted(Filesystem::Ext4, "32M", "48M");
}

#[test]
fn xfs_resize_while_unmounted_grows_the_filesystem() {
    resize_unmounted(Filesystem::Xfs, "300M", "350M");
}

#[test]
fn preallocated_images_are_fully_allocated_and_others_sparse() {
    let Some(fx) = Fixture::new() else { return };
    let full = VolumeSpec {
        preallocate: true,
        ..spec(Filesystem::Ext4, "64M")
    };
    fx.backend.create(&full).unwrap();
    let meta = fs::metadata(fx.backend.image_path(full.id)).unwrap();
    assert_eq!(meta.len(), 64 << 20);
    assert!(meta.blocks() * 512 >= 64 << 20, "{} blocks", meta.blocks());
    let target = fx.target("mnt");
    let size: ByteSize = "96M".parse().unwrap();
    fx.backend.resize(&full, size, &target).unwrap();
    let meta = fs::metadata(fx.backend.image_path(full.id)).unwrap();
    assert!(
        meta.blocks() * 512 >= 96 << 20,
        "{} blocks after resize",
        meta.blocks()
    );
    fx.backend.mount(&full, &target).unwrap();
    assert!(total_bytes(&target) > 80 << 20);
    fx.backend.unmount(full.id, &target).unwrap();

    let sparse = spec(Filesystem::Ext4, "64M");
    fx.backend.create(&sparse).unwrap();
    let meta = fs::metadata(fx.backend.image_path(sparse.id)).unwrap();
    assert_eq!(meta.len(), 64 << 20);
    assert!(meta.blocks() * 512 < 32 << 20, "{} blocks", meta.blocks());
    fx.backend.remove(full.id).unwrap();
    fx.backend.remove(sparse.id).unwrap();
}

#[test]
fn two_hundred_cycles_leak_no_loop_device() {
    let Some(fx) = Fixture::new() else { return };
    let before = loop_attachments().unwrap().len();
    let target = fx.target("mnt");
    let started = Instant::now();
    for _ in 0..200 {
        let spec = spec(Filesystem::Ext4, "16M");
        assert_eq!(fx.backend.create(&spec).unwrap(), Effect::Changed);
        assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
        assert_eq!(
            fx.backend.unmount(spec.id, &target).unwrap(),
            Effect::Changed
        );
        assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Changed);
    }
    let elapsed = started.elapsed();
    eprintln!("200 create/mount/unmount/remove cycles took {elapsed:?}");
    assert!(fx.attachments().is_empty(), "{:?}", fx.attachments());
    let after = loop_attachments().unwrap().len();
    // Only this process's devices are known to be quiet; others (a concurrent test run)
    // may attach and detach their own meanwhile, so theirs are reported, not asserted.
    if after != before {
        eprintln!("note: attached loop devices went from {before} to {after} (none of them ours)");
    }
    assert!(fx.backend.volumes().unwrap().is_empty());
}

#[test]
fn mount_recovers_from_devices_a_crash_left_behind() {
    let Some(fx) = Fixture::new() else { return };
    let spec = spec(Filesystem::Ext4, "32M");
    let image = fx.backend.image_path(spec.id);
    let image_arg = image.to_str().unwrap();
    let target = fx.target("mnt");
    fx.backend.create(&spec).unwrap();
    fx.backend.mount(&spec, &target).unwrap();
    fs::write(target.join("f"), b"survives").unwrap();

    // Someone unmounts and detaches behind the backend's back.
    let device = attachments_of(&image).unwrap()[0].device.clone();
    assert!(run("umount", &[target.to_str().unwrap()]).status.success());
    // Autoclear has usually detached it already; losetup may find nothing to do.
    let _ = run("losetup", &["-d", device.to_str().unwrap()]);
    assert_eq!(
        fx.backend.unmount(spec.id, &target).unwrap(),
        Effect::Unchanged
    );
    assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
    assert_eq!(fs::read(target.join("f")).unwrap(), b"survives");
    fx.backend.unmount(spec.id, &target).unwrap();

    // A crash between attaching and mounting leaves a device attached without autoclear.
    let out = run("losetup", &["-f", "--show", image_arg]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fx.attachments().len(), 1);
    assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
    assert_eq!(
        fx.attachments().len(),
        1,
        "the leftover was replaced, not kept"
    );
    assert_eq!(fs::read(target.join("f")).unwrap(), b"survives");
    assert_eq!(
        fx.backend.unmount(spec.id, &target).unwrap(),
        Effect::Changed
    );
    assert!(fx.attachments().is_empty());

    // The same leftover found by unmount (nothing mounted) and by remove.
    assert!(run("losetup", &["-f", image_arg]).status.success());
    assert_eq!(
        fx.backend.unmount(spec.id, &target).unwrap(),
        Effect::Changed
    );
    assert!(fx.attachments().is_empty());
    assert!(run("losetup", &["-f", image_arg]).status.success());
    assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Changed);
    assert!(fx.attachments().is_empty());
    assert!(!image.exists());
}

#[test]
fn create_and_remove_clean_up_an_interrupted_create() {
    let Some(fx) = Fixture::new() else { return };
    let spec = spec(Filesystem::Ext4, "32M");
    let temp = fx.backend.temp_path(spec.id);
    let file = File::create(&temp).unwrap();
    file.set_len(8 << 20).unwrap();
    assert!(run("losetup", &["-f", temp.to_str().unwrap()])
        .status
        .success());
    assert!(
        fx.backend.volumes().unwrap().is_empty(),
        "a temporary image is no volume"
    );
    assert_eq!(fx.backend.create(&spec).unwrap(), Effect::Changed);
    assert!(!temp.exists());
    assert!(fx.attachments().is_empty());
    let target = fx.target("mnt");
    assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
    fx.backend.unmount(spec.id, &target).unwrap();

    let other = Uuid::new_v4();
    fs::write(fx.backend.temp_path(other), b"half made").unwrap();
    assert_eq!(fx.backend.remove(other).unwrap(), Effect::Changed);
    assert!(!fx.backend.temp_path(other).exists());
    fx.backend.remove(spec.id).unwrap();
}

#[test]
fn unmounting_a_busy_volume_is_an_error_and_a_failed_mount_detaches() {
    let Some(fx) = Fixture::new() else { return };
    let spec = spec(Filesystem::Ext4, "32M");
    let target = fx.target("mnt");
    fx.backend.create(&spec).unwrap();
    fx.backend.mount(&spec, &target).unwrap();
    let open = File::create(target.join("held-open")).unwrap();
    let err = fx.backend.unmount(spec.id, &target).unwrap_err();
    assert!(err.to_string().contains("a process still uses it"), "{err}");
    assert!(is_mount_point(&target).unwrap());
    drop(open);
    assert_eq!(
        fx.backend.unmount(spec.id, &target).unwrap(),
        Effect::Changed
    );

    // An ext4 image mounted as xfs fails, and must not leave its device attached.
    let wrong = VolumeSpec {
        filesystem: Some(Filesystem::Xfs),
        ..spec.clone()
    };
    assert!(fx.backend.mount(&wrong, &target).is_err());
    assert!(!is_mount_point(&target).unwrap());
    assert!(fx.attachments().is_empty(), "{:?}", fx.attachments());
    // A volume mounted elsewhere is not mounted a second time.
    fx.backend.mount(&spec, &target).unwrap();
    let second = fx.target("mnt2");
    let err = fx.backend.mount(&spec, &second).unwrap_err();
    assert!(
        err.is_refusal() && err.to_string().contains("already mounted"),
        "{err}"
    );
    let err = fx.backend.remove(spec.id).unwrap_err();
    assert!(err.is_refusal(), "{err}");
    fx.backend.unmount(spec.id, &target).unwrap();
    fx.backend.remove(spec.id).unwrap();
}

#[test]
fn reports_capacity_and_lists_only_volume_images() {
    let Some(fx) = Fixture::new() else { return };
    assert_eq!(fx.backend.kind(), BackendKind::Loop);
    assert!(fx.backend.enforces_size());
    let capacity = fx.backend.capacity().unwrap();
    assert!(capacity.total_bytes >= capacity.free_bytes && capacity.free_bytes > 0);
    let a = spec(Filesystem::Ext4, "16M");
    let b = spec(Filesystem::Ext4, "16M");
    fx.backend.create(&a).unwrap();
    fx.backend.create(&b).unwrap();
    fs::write(fx.backend.root().join("notes.txt"), b"x").unwrap();
    fs::write(fx.backend.root().join("not-a-uuid.img"), b"x").unwrap();
    let mut listed = fx.backend.volumes().unwrap();
    listed.sort();
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(listed, expected);
    fx.backend.remove(a.id).unwrap();
    fx.backend.remove(b.id).unwrap();
}

/// Starts a writer appending to `file` and reports whether it finished within `wait`.
fn write_finishes_within(file: PathBuf, wait: Duration) -> (bool, std::thread::JoinHandle<()>) {
    let (done, finished) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        fs::write(&file, b"written during the read point").unwrap();
        let _ = done.send(());
    });
    (finished.recv_timeout(wait).is_ok(), writer)
}

#[test]
fn a_read_point_without_reflink_freezes_writers_until_released() {
    let Some(fx) = Fixture::new() else { return };
    let spec = spec(Filesystem::Ext4, "64M");
    let target = fx.target("mnt");
    let scratch = fx.target("scratch");
    fx.backend.create(&spec).unwrap();
    fx.backend.mount(&spec, &target).unwrap();
    fs::write(target.join("before"), b"committed").unwrap();
    // /tmp is ext4 here: no reflink, so the volume's own filesystem is frozen.
    let point = fx.backend.read_point(&spec, &target, &scratch).unwrap();
    assert_eq!(point, ReadPoint::Frozen);
    assert!(!fx.backend.point_path(spec.id).exists());
    assert_eq!(fs::read(target.join("before")).unwrap(), b"committed");
    let (finished, writer) =
        write_finishes_within(target.join("after"), Duration::from_millis(500));
    assert!(!finished, "a write went through a frozen filesystem");
    assert_eq!(
        fx.backend
            .release_read_point(spec.id, &target, &scratch)
            .unwrap(),
        Effect::Changed
    );
    writer.join().unwrap();
    assert_eq!(
        fs::read(target.join("after")).unwrap(),
        b"written during the read point"
    );
    assert_eq!(
        fx.backend
            .release_read_point(spec.id, &target, &scratch)
            .unwrap(),
        Effect::Unchanged
    );
    fx.backend.unmount(spec.id, &target).unwrap();
    fx.backend.remove(spec.id).unwrap();
}

/// A filesystem of `mib` MiB made by `mkfs` (its arguments but the image) on a sparse image
/// under the fixture, mounted at the fixture's `name` (so the fixture unmounts it).
fn mount_image(fx: &Fixture, name: &str, mib: u64, mkfs: &[&str]) -> PathBuf {
    let image = fx.dir.path().join(format!("{name}.img"));
    File::create(&image).unwrap().set_len(mib << 20).unwrap();
    let image = image.to_str().unwrap();
    let made = run(mkfs[0], &[&mkfs[1..], &[image]].concat());
    assert!(made.status.success(), "{made:?}");
    let point = fx.target(name);
    let mounted = run("mount", &["-o", "loop", image, point.to_str().unwrap()]);
    assert!(mounted.status.success(), "{mounted:?}");
    point
}

/// A backend whose images live on an XFS filesystem with reflink (mounted under the
/// fixture, so the fixture unmounts it), and the folder of its images.
fn backend_on_xfs(fx: &Fixture) -> (LoopBackend, PathBuf) {
    let pool = mount_image(fx, "pool", 2048, &["mkfs.xfs", "-q", "-m", "reflink=1"]);
    let backend = LoopBackend::open(pool.join("images")).unwrap();
    let images = backend.root().to_path_buf();
    (backend, images)
}

fn sized_spec(fs: Filesystem) -> VolumeSpec {
    spec(fs, if fs == Filesystem::Xfs { "300M" } else { "64M" })
}

fn reflinked_read_point_does_not_hold_writers(fs: Filesystem) {
    let Some(fx) = Fixture::new() else { return };
    let (backend, images) = backend_on_xfs(&fx);
    let spec = sized_spec(fs);
    let target = fx.target("mnt");
    let scratch = fx.target("scratch");
    backend.create(&spec).unwrap();
    backend.mount(&spec, &target).unwrap();
    fs::write(target.join("before"), b"committed").unwrap();
    let before = fs::metadata(target.join("before")).unwrap();

    let point = backend.read_point(&spec, &target, &scratch).unwrap();
    assert_eq!(point, ReadPoint::Snapshot(scratch.clone()));
    let (finished, writer) = write_finishes_within(target.join("after"), Duration::from_secs(10));
    assert!(finished, "a write waited for a reflinked read point");
    writer.join().unwrap();
    assert_eq!(fs::read(scratch.join("before")).unwrap(), b"committed");
    assert!(
        !scratch.join("after").exists(),
        "the copy saw a later write"
    );
    // A block copy keeps inode numbers and times, so the history index stays valid.
    let copied = fs::metadata(scratch.join("before")).unwrap();
    assert_eq!(
        (copied.ino(), copied.mtime_nsec(), copied.ctime_nsec()),
        (before.ino(), before.mtime_nsec(), before.ctime_nsec())
    );
    assert!(
        fs::write(scratch.join("x"), b"").is_err(),
        "the copy is writable"
    );

    assert_eq!(
        backend
            .release_read_point(spec.id, &target, &scratch)
            .unwrap(),
        Effect::Changed
    );
    assert!(!is_mount_point(&scratch).unwrap());
    assert!(!backend.point_path(spec.id).exists());
    let serving: Vec<_> = loop_attachments()
        .unwrap()
        .into_iter()
        .filter(|a| a.backing_file.starts_with(&images))
        .collect();
    assert_eq!(
        serving.len(),
        1,
        "only the volume's own device: {serving:?}"
    );
    assert_eq!(
        backend
            .release_read_point(spec.id, &target, &scratch)
            .unwrap(),
        Effect::Unchanged
    );
    backend.unmount(spec.id, &target).unwrap();
    backend.remove(spec.id).unwrap();
}

#[test]
fn an_ext4_read_point_on_an_xfs_root_is_a_reflinked_copy() {
    reflinked_read_point_does_not_hold_writers(Filesystem::Ext4);
}

#[test]
fn an_xfs_read_point_on_an_xfs_root_is_a_reflinked_copy() {
    reflinked_read_point_does_not_hold_writers(Filesystem::Xfs);
}

fn a_clone_shares_blocks_and_has_its_own_identity(fs: Filesystem) {
    let Some(fx) = Fixture::new() else { return };
    let (backend, _) = backend_on_xfs(&fx);
    let source = sized_spec(fs);
    let source_mnt = fx.target("source");
    backend.create(&source).unwrap();
    backend.mount(&source, &source_mnt).unwrap();
    fs::write(source_mnt.join("data"), b"state at the clone").unwrap();

    let target = VolumeSpec {
        id: Uuid::new_v4(),
        ..source.clone()
    };
    assert_eq!(
        backend
            .clone_volume(&source, Some(&source_mnt), &target)
            .unwrap(),
        Some(Effect::Changed)
    );
    assert_eq!(
        backend
            .clone_volume(&source, Some(&source_mnt), &target)
            .unwrap(),
        Some(Effect::Unchanged)
    );
    assert!(!backend.temp_path(target.id).exists());
    // Mounted beside its source (XFS refuses a second mount of one UUID).
    let target_mnt = fx.target("clone");
    backend.mount(&target, &target_mnt).unwrap();
    assert_eq!(
        fs::read(target_mnt.join("data")).unwrap(),
        b"state at the clone"
    );
    fs::write(target_mnt.join("data"), b"the clone's own").unwrap();
    // The source is thawed, and neither sees the other's writes.
    fs::write(source_mnt.join("later"), b"after the clone").unwrap();
    assert_eq!(
        fs::read(source_mnt.join("data")).unwrap(),
        b"state at the clone"
    );
    assert!(!target_mnt.join("later").exists());
    let mut listed = backend.volumes().unwrap();
    listed.sort();
    let mut expected = vec![source.id, target.id];
    expected.sort();
    assert_eq!(listed, expected);

    backend.unmount(target.id, &target_mnt).unwrap();
    assert_eq!(backend.remove(target.id).unwrap(), Effect::Changed);
    backend.unmount(source.id, &source_mnt).unwrap();
    backend.remove(source.id).unwrap();
}

#[test]
fn an_ext4_clone_on_an_xfs_root_shares_blocks() {
    a_clone_shares_blocks_and_has_its_own_identity(Filesystem::Ext4);
}

#[test]
fn an_xfs_clone_on_an_xfs_root_shares_blocks_and_mounts_beside_its_source() {
    a_clone_shares_blocks_and_has_its_own_identity(Filesystem::Xfs);
}

#[test]
fn a_clone_without_block_sharing_is_left_to_the_caller() {
    let Some(fx) = Fixture::new() else { return };
    let source = spec(Filesystem::Ext4, "64M");
    fx.backend.create(&source).unwrap();
    let target = VolumeSpec {
        id: Uuid::new_v4(),
        ..source.clone()
    };
    // /tmp is ext4: no reflink.
    assert_eq!(
        fx.backend.clone_volume(&source, None, &target).unwrap(),
        None
    );
    let bigger = VolumeSpec {
        size: Some("128M".parse().unwrap()),
        ..target.clone()
    };
    assert_eq!(
        fx.backend.clone_volume(&source, None, &bigger).unwrap(),
        None
    );
    assert_eq!(fx.backend.volumes().unwrap(), vec![source.id]);
    assert!(!fx.backend.temp_path(target.id).exists());
    fx.backend.remove(source.id).unwrap();
}

/// A backend whose images live on an ext4 filesystem of `mib` MiB (an image mounted under
/// the fixture, so the fixture unmounts it), keeping `reserve` from promises.
fn backend_on_small_ext4(fx: &Fixture, mib: u64, reserve: Reserve) -> LoopBackend {
    let small = mount_image(fx, "small", mib, &["mkfs.ext4", "-q", "-F", "-m", "0"]);
    LoopBackend::open(small.join("images"))
        .unwrap()
        .with_reserve(reserve)
}

/// Fills the filesystem mounted at `target` with a file of pseudo-random 1 MiB blocks until
/// it is full, syncing; returns how many blocks were written and synced.
fn fill(target: &Path, seed: u64) -> u64 {
    let mut file = File::create(target.join("fill")).unwrap();
    let mut blocks = 0;
    loop {
        let block = noise(seed + blocks, 1 << 20);
        match file.write_all(&block).and_then(|()| file.sync_data()) {
            Ok(()) => blocks += 1,
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(rustix::io::Errno::NOSPC.raw_os_error()),
                    "the volume's own ENOSPC, nothing else: {e}"
                );
                return blocks;
            }
        }
    }
}

/// A 64 MiB ext4 volume of `backend`, made and mounted at the fixture's `mnt`.
fn mounted_volume(fx: &Fixture, backend: &LoopBackend) -> (VolumeSpec, PathBuf) {
    let spec = spec(Filesystem::Ext4, "64M");
    let target = fx.target("mnt");
    backend.create(&spec).unwrap();
    backend.mount(&spec, &target).unwrap();
    (spec, target)
}

#[test]
fn the_reserve_is_the_larger_of_its_floor_and_share() {
    assert_eq!(Reserve::DEFAULT.of(1 << 30), 256 << 20);
    assert_eq!(Reserve::DEFAULT.of(100 << 30), 2 << 30);
    assert_eq!(Reserve::DEFAULT.of(100 << 20), 100 << 20);
    assert_eq!(Reserve::NONE.of(1 << 30), 0);
}

#[test]
fn sparse_volumes_are_refused_once_promises_exceed_the_free_space_and_keep_their_data() {
    let Some(fx) = Fixture::new() else { return };
    let reserve = Reserve {
        min_bytes: 32 << 20,
        percent: 0.0,
    };
    let backend = backend_on_small_ext4(&fx, 320, reserve);
    let empty = backend.capacity().unwrap();
    assert_eq!(empty.promised_bytes, 0);
    assert_eq!(empty.reserved_bytes, 32 << 20);
    assert!(empty.total_bytes < 320 << 20, "{empty:?}");

    // Create 64 MiB sparse volumes until refused: the promises never pass free - reserve.
    let mut accepted = Vec::new();
    let refusal = loop {
        assert!(
            accepted.len() < 20,
            "never refused: {:?}",
            backend.capacity()
        );
        let volume = spec(Filesystem::Ext4, "64M");
        match backend.create(&volume) {
            Ok(_) => accepted.push(volume),
            Err(e) => break e,
        }
        let now = backend.capacity().unwrap();
        assert!(
            now.promised_bytes <= now.free_bytes - now.reserved_bytes,
            "promised more than the room: {now:?}"
        );
    };
    assert!(refusal.is_refusal(), "{refusal}");
    let message = refusal.to_string();
    for needle in [
        "not enough disk space for a 64MiB volume",
        "kept in reserve",
        "already promised",
        "max_overprovision",
    ] {
        assert!(message.contains(needle), "{needle:?} missing: {message}");
    }
    assert!(
        accepted.len() >= 2,
        "{} accepted; {message}",
        accepted.len()
    );
    let full = backend.capacity().unwrap();
    assert!(
        full.promised_bytes + (64 << 20) > full.free_bytes - full.reserved_bytes,
        "refused with room left: {full:?}"
    );
    // Nothing of the refused volume is left behind.
    assert_eq!(backend.volumes().unwrap().len(), accepted.len());

    // Growing is refused the same way; a preallocated volume must fit what promises leave.
    let target = fx.target("mnt");
    let err = backend
        .resize(&accepted[0], "256M".parse().unwrap(), &target)
        .unwrap_err();
    assert!(
        err.is_refusal() && err.to_string().contains("growing volume"),
        "{err}"
    );
    let allocated = VolumeSpec {
        preallocate: true,
        ..spec(Filesystem::Ext4, "64M")
    };
    let err = backend.create(&allocated).unwrap_err();
    assert!(err.to_string().contains("allocated now"), "{err}");

    // Every accepted volume can be written full, and what it wrote survives a remount.
    for (i, volume) in accepted.iter().enumerate() {
        backend.mount(volume, &target).unwrap();
        let blocks = fill(&target, i as u64 * 1000);
        assert!(blocks >= 40, "volume {i} took only {blocks} MiB");
        backend.unmount(volume.id, &target).unwrap();
        backend.mount(volume, &target).unwrap();
        let data = fs::read(target.join("fill")).unwrap();
        for block in 0..blocks {
            let at = (block << 20) as usize;
            assert!(
                data[at..at + (1 << 20)] == noise(i as u64 * 1000 + block, 1 << 20)[..],
                "volume {i} lost block {block} of {blocks}"
            );
        }
        backend.unmount(volume.id, &target).unwrap();
    }
    let written = backend.capacity().unwrap();
    assert!(
        written.promised_bytes < full.promised_bytes / 4,
        "written volumes still promised {written:?}"
    );

    for volume in &accepted {
        backend.remove(volume.id).unwrap();
    }

    // A ratio above 1 accepts more than the room, knowingly.
    let mut more = 0;
    for _ in 0..20 {
        let volume = VolumeSpec {
            max_overprovision: Some(3.0),
            ..spec(Filesystem::Ext4, "64M")
        };
        if backend.create(&volume).is_err() {
            break;
        }
        more += 1;
    }
    assert!(
        more > accepted.len(),
        "a ratio of 3 accepted {more}, no more than {}",
        accepted.len()
    );
    for id in backend.volumes().unwrap() {
        backend.remove(id).unwrap();
    }
}

#[test]
fn a_frozen_read_point_is_thawed_at_its_limit_and_says_so() {
    let Some(fx) = Fixture::new() else { return };
    let backend = fx
        .backend
        .clone()
        .with_freeze_limit(Duration::from_millis(700));
    let (spec, target) = mounted_volume(&fx, &backend);
    let scratch = fx.target("scratch");
    let started = Instant::now();
    assert_eq!(
        backend.read_point(&spec, &target, &scratch).unwrap(),
        ReadPoint::Frozen
    );
    assert!(backend.read_point_intact(spec.id).is_ok());
    let (finished, writer) = write_finishes_within(target.join("after"), Duration::from_secs(5));
    assert!(finished, "the freeze outlived its limit");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
        "thawed after {waited:?}"
    );
    writer.join().unwrap();
    for _ in 0..2 {
        let err = backend.read_point_intact(spec.id).unwrap_err();
        assert!(
            err.to_string().contains("reached its limit of 0.7s"),
            "{err}"
        );
    }
    assert_eq!(
        backend
            .release_read_point(spec.id, &target, &scratch)
            .unwrap(),
        Effect::Changed
    );
    assert!(backend.read_point_intact(spec.id).is_ok());
    backend.unmount(spec.id, &target).unwrap();
    backend.remove(spec.id).unwrap();
}

#[test]
fn a_freeze_ends_when_the_process_holding_it_dies() {
    // A child process of the test freezes through the library and is killed with SIGKILL:
    // the watchdog it forked thaws the filesystem.
    let Some(fx) = Fixture::new() else { return };
    let (spec, target) = mounted_volume(&fx, &fx.backend);
    let exe = std::env::current_exe().unwrap();
    let mut holder = Command::new(exe)
        .args([
            "--exact",
            "loop_device::tests::freeze_holder",
            "--ignored",
            "--nocapture",
        ])
        .env("DVOL_FREEZE_HOLDER", &target)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The holder prints once the freeze is in force.
    let mut out = holder.stdout.take().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&seen).contains("frozen") {
        assert!(Instant::now() < deadline, "the holder never froze");
        let mut byte = [0u8; 256];
        let n = std::io::Read::read(&mut out, &mut byte).unwrap();
        assert!(
            n > 0,
            "the holder exited: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&byte[..n]);
    }
    let (finished, writer) =
        write_finishes_within(target.join("during"), Duration::from_millis(300));
    assert!(!finished, "not frozen");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let started = Instant::now();
    writer.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "thawed only after {:?}",
        started.elapsed()
    );
    // The watchdog thaws, then exits: until it has, it holds the filesystem open.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fx.backend.unmount(spec.id, &target) {
            Err(BackendError::Io { ref source, .. })
                if source.kind() == ErrorKind::ResourceBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            done => {
                done.unwrap();
                break;
            }
        }
    }
    fx.backend.remove(spec.id).unwrap();
}

/// Not a test on its own: run by [`a_freeze_ends_when_the_process_holding_it_dies`], it
/// freezes the filesystem named by `DVOL_FREEZE_HOLDER` for an hour and waits to be killed.
#[test]
#[ignore]
fn freeze_holder() {
    let Some(target) = std::env::var_os("DVOL_FREEZE_HOLDER") else {
        return;
    };
    let frozen = BoundedFreeze::start(Path::new(&target), Duration::from_secs(3600)).unwrap();
    println!("frozen");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(3600));
    drop(frozen);
}

/// `autoclear` and `dio` of the loop device serving the fixture's one image.
fn loop_flags(fx: &Fixture) -> (String, String) {
    let attached = fx.attachments();
    assert_eq!(attached.len(), 1, "{attached:?}");
    let name = attached[0].device.file_name().unwrap().to_owned();
    let flag = |f: &str| {
        let path = Path::new("/sys/block").join(&name).join("loop").join(f);
        fs::read_to_string(path).unwrap().trim().to_string()
    };
    (flag("autoclear"), flag("dio"))
}

#[test]
fn a_mounted_image_is_served_with_autoclear_and_direct_io() {
    let Some(fx) = Fixture::new() else { return };
    let spec = spec(Filesystem::Ext4, "64M");
    let target = fx.target("mnt");
    fx.backend.create(&spec).unwrap();
    fx.backend.mount(&spec, &target).unwrap();
    assert_eq!(loop_flags(&fx), ("1".into(), "1".into()), "on /tmp's disk");
    fs::write(target.join("f"), b"direct").unwrap();
    fx.backend.unmount(spec.id, &target).unwrap();
    assert!(fx.attachments().is_empty(), "autoclear detached it");
    fx.backend.remove(spec.id).unwrap();
}

fn covered(ranges: &[std::ops::Range<u64>]) -> u64 {
    ranges.iter().map(|r| r.end - r.start).sum()
}

#[test]
fn on_an_xfs_root_a_commit_reads_only_the_ranges_written_since_the_last_one() {
    use crate::{ChangesSinceBase, NoChanges};
    use dvol_snapshot::{ChangedRanges, CommitInfo, NoProgress, Repository, VolumeKey};
    let Some(fx) = Fixture::new() else { return };
    let (backend, _) = backend_on_xfs(&fx);
    let spec = spec(Filesystem::Ext4, "256M");
    let target = fx.target("mnt");
    let scratch = fx.target("scratch");
    backend.create(&spec).unwrap();
    backend.mount(&spec, &target).unwrap();
    assert!(backend.counts_changes());
    for (name, seed, mib) in [
        ("table", 1, 48),
        ("other", 2, 8),
        ("b", 3, 8),
        ("same", 4, 8),
    ] {
        fs::write(target.join(name), noise(seed, mib << 20)).unwrap();
    }
    rustix::fs::sync();
    let repo = Repository::open(&fx.dir.path().join("history")).unwrap();
    let whole = Repository::open(&fx.dir.path().join("whole")).unwrap();
    let volume = VolumeKey(spec.id);
    let commit = |changes: Option<&dyn ChangedRanges>| {
        let info = CommitInfo::now("m", "t");
        repo.commit_verified(&volume, &scratch, changes, info, &NoProgress, &|| Ok(()))
            .unwrap()
    };

    // The first commit at a read point has no base; keeping its point makes one.
    backend.read_point(&spec, &target, &scratch).unwrap();
    match backend.changes_since_base(&spec, &scratch) {
        ChangesSinceBase::Unknown(NoChanges::NoBase) => {}
        ChangesSinceBase::Unknown(other) => panic!("{other}"),
        ChangesSinceBase::Ranges(_) => panic!("changes without a base"),
    }
    commit(None);
    backend.keep_read_point(spec.id);
    backend
        .release_read_point(spec.id, &target, &scratch)
        .unwrap();
    assert!(backend.base_path(spec.id).is_file());
    assert!(!backend.point_path(spec.id).exists());

    // Three database pages written; "b" renamed over "other" (same size, same mtime).
    for at in [3u64 << 20, 20 << 20, 47 << 20] {
        write_at(&target.join("table"), &[0x5a; 8192], at);
    }
    let mtime = fs::metadata(target.join("other"))
        .unwrap()
        .modified()
        .unwrap();
    File::options()
        .write(true)
        .open(target.join("b"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::rename(target.join("b"), target.join("other")).unwrap();
    rustix::fs::sync();

    backend.read_point(&spec, &target, &scratch).unwrap();
    let ChangesSinceBase::Ranges(files) = backend.changes_since_base(&spec, &scratch) else {
        panic!("no changed ranges at the second read point")
    };
    let table = files.changed_ranges(Path::new("table")).unwrap();
    assert!(
        (3 * 8192..=3 << 20).contains(&covered(&table)),
        "three 8 KiB writes gave {table:?}"
    );
    for at in [3u64 << 20, 20 << 20, 47 << 20] {
        assert!(
            table.iter().any(|r| r.start <= at && at + 8192 <= r.end),
            "{at}: {table:?}"
        );
    }
    assert_eq!(
        files.changed_ranges(Path::new("other")).unwrap(),
        vec![0..8 << 20],
        "a file renamed over another is new throughout"
    );
    // The root shares blocks in its own block size (4 KiB), the image's filesystem allocates
    // in 1 KiB: an unchanged file may be given the rest of a root block something else
    // changed in, no more.
    let same = files.changed_ranges(Path::new("same")).unwrap();
    assert!(
        covered(&same) <= 4096,
        "an unchanged file is given {same:?}"
    );
    assert_eq!(files.changed_ranges(Path::new("b")), None, "gone");
    let ranged = commit(Some(&Ranges(files.as_ref())));
    drop(files);
    // The commit reads again what its stat says changed: table and other, and same only when
    // it was written too close to the last commit for the index to vouch for it (racy). A
    // sliver the extent maps give same does not make it read: its stat is unchanged.
    assert!(
        (2..=3).contains(&ranged.stats.files_reread),
        "{:?}",
        ranged.stats
    );
    let same_reread = ranged.stats.files_reread - 2;
    assert_eq!(
        ranged.stats.files_read_by_ranges, ranged.stats.files_reread,
        "every file read again is read by its ranges: {:?}",
        ranged.stats
    );
    let table_read = ranged.stats.bytes_read - (8 << 20);
    assert!(
        table_read <= (3 + same_reread) * (4 << 20) + (1 << 20),
        "read {table_read} bytes of table (and of same: {same:?}) for three pages"
    );
    let full = whole
        .commit(
            &VolumeKey::new_random(),
            &scratch,
            CommitInfo::now("m", "t"),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(
        repo.read_commit(ranged.id).unwrap().tree(),
        whole.read_commit(full.id).unwrap().tree(),
        "the tree read by changed ranges differs from a whole read"
    );

    // A daemon killed while the base is mounted: the release at start unmounts it and keeps
    // the older base (this point was not kept).
    let ChangesSinceBase::Ranges(files) = backend.changes_since_base(&spec, &scratch) else {
        panic!("no changed ranges")
    };
    drop(files);
    let base_mount = backend.root().join(format!("{}.img.base.mnt", spec.id));
    assert!(is_mount_point(&base_mount).unwrap());
    backend
        .release_read_point(spec.id, &target, &scratch)
        .unwrap();
    assert!(!base_mount.exists());
    assert!(!is_mount_point(&scratch).unwrap());
    assert!(backend.base_path(spec.id).is_file());
    assert!(!backend.point_path(spec.id).exists());

    // The base holds alone what the volume rewrote since it was kept: after 48 MiB of
    // "table" are overwritten in place, at least those blocks (and the journal's), counted
    // in the capacity, and given back when the volume goes.
    let before = backend.capacity().unwrap().base_bytes;
    assert!(
        before < 8 << 20,
        "a base just kept holds {before} bytes alone"
    );
    write_at(&target.join("table"), &noise(9, 48 << 20), 0);
    rustix::fs::sync();
    let held = backend.capacity().unwrap().base_bytes;
    assert!(
        (48 << 20..=72 << 20).contains(&held),
        "48 MiB rewritten, the base holds {held} bytes alone"
    );

    backend.unmount(spec.id, &target).unwrap();
    backend.remove(spec.id).unwrap();
    assert!(!backend.base_path(spec.id).exists());
    assert_eq!(backend.capacity().unwrap().base_bytes, 0);
    let id = spec.id.to_string();
    let left: Vec<_> = fx
        .attachments()
        .into_iter()
        .filter(|a| a.backing_file.to_string_lossy().contains(&id))
        .collect();
    assert!(left.is_empty(), "loop devices left: {left:?}");
}
