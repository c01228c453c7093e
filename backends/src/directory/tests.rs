//! The directory backend: volumes as folders, bind mounts, and, on an XFS root with reflink
//! (mounted for the test), read points that count the changed ranges of files.

use std::fs::File;
use std::process::Command;

use super::*;
use crate::test_files::{noise, write_at};

fn spec() -> VolumeSpec {
    VolumeSpec {
        id: Uuid::new_v4(),
        size: None,
        filesystem: None,
        preallocate: false,
        max_overprovision: None,
    }
}

#[test]
fn create_and_remove_are_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = DirectoryBackend::open(tmp.path().join("dir")).unwrap();
    let spec = spec();
    assert_eq!(backend.create(&spec).unwrap(), Effect::Changed);
    assert_eq!(backend.create(&spec).unwrap(), Effect::Unchanged);
    assert_eq!(backend.volumes().unwrap(), vec![spec.id]);
    fs::write(backend.data_dir(spec.id).join("f"), b"x").unwrap();
    assert_eq!(backend.remove(spec.id).unwrap(), Effect::Changed);
    assert_eq!(backend.remove(spec.id).unwrap(), Effect::Unchanged);
    assert!(backend.volumes().unwrap().is_empty());
}

#[test]
fn remove_does_not_follow_symlinks_out_of_the_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("keep"), b"precious").unwrap();
    let backend = DirectoryBackend::open(tmp.path().join("dir")).unwrap();
    let spec = spec();
    backend.create(&spec).unwrap();
    std::os::unix::fs::symlink(&outside, backend.data_dir(spec.id).join("link")).unwrap();
    backend.remove(spec.id).unwrap();
    assert_eq!(fs::read(outside.join("keep")).unwrap(), b"precious");
}

#[test]
fn mount_and_unmount_are_idempotent_and_visible_in_the_kernel_table() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: bind mounts need root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let backend = DirectoryBackend::open(tmp.path().join("dir")).unwrap();
    let spec = spec();
    backend.create(&spec).unwrap();
    let target = tmp.path().join("mnt");
    fs::create_dir(&target).unwrap();
    assert_eq!(backend.mount(&spec, &target).unwrap(), Effect::Changed);
    assert_eq!(backend.mount(&spec, &target).unwrap(), Effect::Unchanged);
    assert!(is_mount_point(&target).unwrap());
    fs::write(target.join("f"), b"through the mount").unwrap();
    assert_eq!(
        fs::read(backend.data_dir(spec.id).join("f")).unwrap(),
        b"through the mount"
    );
    assert_eq!(backend.unmount(spec.id, &target).unwrap(), Effect::Changed);
    assert_eq!(
        backend.unmount(spec.id, &target).unwrap(),
        Effect::Unchanged
    );
    assert!(!is_mount_point(&target).unwrap());
}

/// An XFS filesystem with reflink on a sparse image, loop-mounted under a temporary
/// directory; unmounted (its loop device freed by autoclear) on drop.
struct XfsRoot {
    dir: tempfile::TempDir,
    mounted: PathBuf,
}

impl XfsRoot {
    /// `None` (with a note) where this host cannot mount one, unless `DVOL_REQUIRE_ALL=1`.
    fn new() -> Option<XfsRoot> {
        let required = std::env::var("DVOL_REQUIRE_ALL").as_deref() == Ok("1");
        if !rustix::process::geteuid().is_root() {
            assert!(!required, "an XFS root needs root (DVOL_REQUIRE_ALL=1)");
            eprintln!("skipped: mounting an XFS root needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("dvol-dir-test-")
            .tempdir_in("/tmp")
            .unwrap();
        let image = dir.path().join("root.img");
        File::create(&image).unwrap().set_len(2 << 30).unwrap();
        let made = Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let mounted = dir.path().join("root");
        fs::create_dir(&mounted).unwrap();
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mounted)
            .output()
            .unwrap();
        assert!(mount.status.success(), "{mount:?}");
        Some(XfsRoot { dir, mounted })
    }
}

impl Drop for XfsRoot {
    fn drop(&mut self) {
        let _ = sys_mount::unmount(&self.mounted, sys_mount::UnmountFlags::DETACH);
        let _ = &self.dir;
    }
}

/// Sets the mtime of the file at `path`.
fn set_mtime(path: &Path, mtime: std::time::SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

fn mtime(path: &Path) -> std::time::SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

/// Offsets from a seed, spread over `[0, len)` in 8 KiB pages.
fn pages(seed: u64, count: usize, len: u64) -> Vec<u64> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (len / 8192)) * 8192
        })
        .collect()
}

/// The seeded changes of round `round` to the volume folder `data`.
fn mutate(data: &Path, round: u64) {
    const MIB: u64 = 1 << 20;
    let table = data.join("db/table");
    let index = data.join("db/index");
    for (k, at) in pages(round, 4, 40 * MIB).into_iter().enumerate() {
        write_at(&table, &noise(100 * round + k as u64, 8192), at);
    }
    for at in pages(round + 50, 1, 12 * MIB) {
        write_at(&index, &noise(1000 + round, 8192), at);
    }
    match round {
        1 => {
            // Renamed over another file of the same size, with its mtime.
            let was = mtime(&data.join("other"));
            set_mtime(&data.join("b"), was);
            fs::rename(data.join("b"), data.join("other")).unwrap();
        }
        2 => {
            // A hole punched, and the table grown.
            let file = File::options().write(true).open(&index).unwrap();
            rustix::fs::fallocate(
                &file,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                3 * MIB,
                MIB,
            )
            .unwrap();
            file.sync_all().unwrap();
            let len = fs::metadata(&table).unwrap().len();
            write_at(&table, &noise(77, 3 << 20), len);
        }
        3 => {
            // The log truncated and written again; a file rewritten in place with its size
            // and mtime kept.
            let wal = data.join("wal");
            File::options()
                .write(true)
                .open(&wal)
                .unwrap()
                .set_len(2 * MIB)
                .unwrap();
            write_at(&wal, &noise(78, 5 << 20), 2 * MIB);
            let other = data.join("other");
            let was = mtime(&other);
            write_at(&other, &noise(79, 2 << 20), 5 * MIB);
            set_mtime(&other, was);
        }
        _ => {
            // A new large file; the log gone.
            fs::write(data.join("new"), noise(80 + round, 6 << 20)).unwrap();
            let _ = fs::remove_file(data.join("wal"));
        }
    }
    rustix::fs::sync();
}

#[test]
fn on_an_xfs_root_commits_read_only_changed_ranges_and_equal_whole_reads() {
    use crate::test_files::Ranges;
    use crate::{ChangesSinceBase, NoChanges};
    use dvol_snapshot::{ChangedRanges, CommitInfo, NoProgress, Repository, VolumeKey};
    const MIB: usize = 1 << 20;
    let Some(root) = XfsRoot::new() else { return };
    let backend = DirectoryBackend::open(root.mounted.join("volumes")).unwrap();
    assert!(backend.counts_changes(), "XFS with reflink shares blocks");
    let spec = spec();
    backend.create(&spec).unwrap();
    let data = backend.data_dir(spec.id);
    fs::create_dir_all(data.join("db")).unwrap();
    fs::create_dir_all(data.join("small")).unwrap();
    for (name, seed, mib) in [
        ("db/table", 1, 40),
        ("db/index", 2, 12),
        ("wal", 3, 6),
        ("same", 4, 8),
        ("other", 5, 8),
        ("b", 6, 8),
    ] {
        fs::write(data.join(name), noise(seed, mib * MIB)).unwrap();
    }
    for k in 0..20 {
        fs::write(data.join(format!("small/{k}")), noise(200 + k, 10_000)).unwrap();
    }
    std::os::unix::fs::symlink("db/table", data.join("link")).unwrap();
    rustix::fs::sync();

    let scratch = root.dir.path().join("scratch");
    let repo = Repository::open(&root.dir.path().join("history")).unwrap();
    let whole = Repository::open(&root.dir.path().join("whole")).unwrap();
    let volume = VolumeKey(spec.id);
    let commit = |changes: Option<&dyn ChangedRanges>| {
        repo.commit_verified(
            &volume,
            &data,
            changes,
            CommitInfo::now("m", "t"),
            &NoProgress,
            &|| Ok(()),
        )
        .unwrap()
    };
    let read_whole = || {
        let key = VolumeKey::new_random();
        let made = whole
            .commit(&key, &data, CommitInfo::now("m", "t"), &NoProgress)
            .unwrap();
        (whole.read_commit(made.id).unwrap().tree(), made.stats)
    };
    let copies = |dir: &Path| fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);

    // The first commit has no base; keeping its point makes one, with a copy of each file
    // of a megabyte or more.
    assert_eq!(
        backend.read_point(&spec, &data, &scratch).unwrap(),
        ReadPoint::Live
    );
    assert!(matches!(
        backend.changes_since_base(&spec, &scratch),
        ChangesSinceBase::Unknown(NoChanges::NoBase)
    ));
    commit(None);
    backend.keep_read_point(spec.id);
    backend
        .release_read_point(spec.id, &data, &scratch)
        .unwrap();
    assert_eq!(copies(&backend.base_dir(spec.id)), 6);
    assert!(!backend.point_dir(spec.id).exists());

    let (mut read_ranged, mut read_full) = (0u64, 0u64);
    for round in 1..=5u64 {
        mutate(&data, round);
        backend.read_point(&spec, &data, &scratch).unwrap();
        let ChangesSinceBase::Ranges(files) = backend.changes_since_base(&spec, &scratch) else {
            panic!("round {round}: no changed ranges")
        };
        assert_eq!(
            files.changed_ranges(Path::new("same")),
            Some(std::iter::once(8 << 20..u64::MAX).collect()),
            "round {round}: an untouched file has nothing changed but what it may grow by"
        );
        let (expected, full) = read_whole();
        if round == 4 {
            // A write after the point was taken, where nothing else changed: this commit
            // may miss it, the next must not.
            write_at(&data.join("db/table"), &noise(4444, 8192), 30 << 20);
        }
        let ranged = commit(Some(&Ranges(files.as_ref())));
        drop(files);
        assert!(
            ranged.stats.files_read_by_ranges >= 2,
            "round {round}: {:?}",
            ranged.stats
        );
        if round != 4 {
            assert_eq!(
                repo.read_commit(ranged.id).unwrap().tree(),
                expected,
                "round {round}: the tree read by changed ranges differs from a whole read"
            );
        }
        read_ranged += ranged.stats.bytes_read;
        read_full += full.bytes_read;
        eprintln!(
            "round {round}: read {} of {} bytes a whole read takes",
            ranged.stats.bytes_read, full.bytes_read
        );
        backend.keep_read_point(spec.id);
        backend
            .release_read_point(spec.id, &data, &scratch)
            .unwrap();
        assert!(!backend.point_dir(spec.id).exists());
    }
    assert!(
        read_ranged * 2 < read_full,
        "changed ranges read {read_ranged} bytes, whole reads {read_full}"
    );
    let report = repo.fsck(&NoProgress).unwrap();
    assert!(
        report.corrupt.is_empty() && report.missing.is_empty() && report.bad_refs.is_empty(),
        "{report:?}"
    );

    // A point that was not kept (its commit failed, or a crash: a new daemon releases it at
    // start) leaves the older base as it was.
    backend.read_point(&spec, &data, &scratch).unwrap();
    let before = copies(&backend.base_dir(spec.id));
    let restarted = DirectoryBackend::open(root.mounted.join("volumes")).unwrap();
    restarted
        .release_read_point(spec.id, &data, &scratch)
        .unwrap();
    assert!(!backend.point_dir(spec.id).exists());
    assert_eq!(copies(&backend.base_dir(spec.id)), before);

    // The base holds alone what the volume rewrote since: counted in the capacity, and
    // given back with the volume.
    let held = backend.capacity().unwrap().base_bytes;
    assert!(held < 16 << 20, "a base just kept holds {held} bytes alone");
    write_at(&data.join("db/table"), &noise(9, 40 * MIB), 0);
    let held = backend.capacity().unwrap().base_bytes;
    assert!(
        (40 << 20..=44 << 20).contains(&held),
        "40 MiB rewritten, the base holds {held} bytes alone"
    );
    backend.remove(spec.id).unwrap();
    assert!(!backend.base_dir(spec.id).exists());
    assert_eq!(backend.capacity().unwrap().base_bytes, 0);
}

#[test]
fn on_an_ext4_root_read_points_make_no_copies() {
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let backend = DirectoryBackend::open(tmp.path().join("dir")).unwrap();
    if backend.counts_changes() {
        eprintln!("skipped: /tmp shares blocks here");
        return;
    }
    let spec = spec();
    backend.create(&spec).unwrap();
    fs::write(backend.data_dir(spec.id).join("f"), vec![1u8; 2 << 20]).unwrap();
    let data = backend.data_dir(spec.id);
    backend.read_point(&spec, &data, tmp.path()).unwrap();
    assert!(matches!(
        backend.changes_since_base(&spec, tmp.path()),
        crate::ChangesSinceBase::Unknown(crate::NoChanges::NotSupported)
    ));
    backend.keep_read_point(spec.id);
    backend
        .release_read_point(spec.id, &data, tmp.path())
        .unwrap();
    assert!(!backend.base_dir(spec.id).exists());
    assert!(!backend.point_dir(spec.id).exists());
}
