//! The LVM backend against real LVM, inside a small qemu VM.
//!
//! The host kernel has no device-mapper, so LVM cannot run here. This file plays two roles:
//!
//! - On the host, [`host_runs_the_lvm_tests_in_a_vm`] builds (once, cached) a VM image with
//!   `scripts/lvm-vm/build.sh`, packs this very test binary as the VM's payload with
//!   `scripts/lvm-vm/payload.sh`, boots it under qemu with a fresh 1 GiB disk, and asserts the
//!   `DVOL-VM-RESULT: PASS` line the VM's `/init` prints after running the payload.
//! - Inside the VM (`DVOL_IN_VM=1`, set by `/init`), the `in_vm_*` tests exercise
//!   [`LvmBackend`] against volume group `dvoltest` and thin pool `dvoltest/pool`. On the host
//!   they return at once: the host test is what runs them for real.
//!
//! Environment: `DVOL_REQUIRE_ALL=1` turns a missing qemu or VM prerequisite into a failure
//! instead of a skip; `DVOL_LVM_VM_CACHE` overrides the image cache directory (default
//! `/var/cache/dvol-lvm-vm` as root, else `target/lvm-vm-cache`); `DVOL_VM_TEST=NAME` runs one
//! in-VM test only; `DVOL_VM_TIMEOUT` overrides the 240 s limit on a VM run.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dvol_backends::lvm::{self, LvmBackend, StrayKind};
use dvol_backends::{Backend, BackendError, BackendKind, ByteSize, Effect, Filesystem, VolumeSpec};
use uuid::Uuid;

const VG: &str = "dvoltest";
const POOL: &str = "pool";
/// The thin pool `/init` makes, in bytes.
const POOL_BYTES: u64 = 512 << 20;
const MIB: u64 = 1 << 20;
/// A ratio large enough that the main pool never refuses the functional tests.
const RATIO: f64 = 4.0;

fn in_vm() -> bool {
    std::env::var_os("DVOL_IN_VM").is_some()
}

// ------------------------------------------------------------------------------------------
// The host side: boot the VM and judge its result.
// ------------------------------------------------------------------------------------------

/// Skips (or, with `DVOL_REQUIRE_ALL=1`, fails) because a prerequisite is missing.
fn missing(why: &str) {
    if std::env::var("DVOL_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{why} (DVOL_REQUIRE_ALL=1: the LVM tests must run)");
    }
    eprintln!("skipped: {why}; set DVOL_REQUIRE_ALL=1 to make this a failure");
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DVOL_LVM_VM_CACHE") {
        return dir.into();
    }
    if rustix::process::geteuid().is_root() {
        PathBuf::from("/var/cache/dvol-lvm-vm")
    } else {
        workspace_root().join("target/lvm-vm-cache")
    }
}

/// `name` in `$PATH` (qemu is not a tool the backend runs, so the test looks where a user would).
fn find_program(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The kernel and base initramfs from build.sh, or `None` if a prerequisite is missing.
fn build_image() -> Option<(PathBuf, PathBuf)> {
    let script = workspace_root().join("scripts/lvm-vm/build.sh");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg(cache_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(3) => {
            missing(&format!("cannot build the LVM test VM: {}", stderr.trim()));
            return None;
        }
        code => panic!("{} failed ({code:?}):\n{stderr}", script.display()),
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("build.sh printed no {key}:\n{stdout}\n{stderr}"))
    };
    eprintln!(
        "VM image ready in {:.1}s (cache {})",
        started.elapsed().as_secs_f64(),
        cache_dir().display()
    );
    Some((value("kernel="), value("initrd=")))
}

/// What one VM run printed on its serial console.
struct VmRun {
    log: String,
    result: Option<String>,
    boot_to_result: Option<Duration>,
    timed_out: bool,
}

fn boot(
    qemu: &Path,
    kernel: &Path,
    initrd: &Path,
    disk: &Path,
    append: &str,
    timeout: Duration,
) -> VmRun {
    let qemu_stderr = disk.with_file_name("qemu.stderr");
    let started = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1"])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args(["-device", "virtio-rng-pci"])
        .arg("-append")
        .arg(append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&qemu_stderr).expect("create qemu stderr file"))
        .spawn()
        .expect("start qemu-system-x86_64");
    let stdout = child.stdout.take().expect("qemu stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader
            .read_until(b'\n', &mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            if tx.send(text).is_err() {
                break;
            }
            line.clear();
        }
    });
    let deadline = started + timeout;
    let mut run = VmRun {
        log: String::new(),
        result: None,
        boot_to_result: None,
        timed_out: false,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(pos) = line.find("DVOL-VM-RESULT: ") {
                    run.result = Some(line[pos + "DVOL-VM-RESULT: ".len()..].trim().to_string());
                    run.boot_to_result = Some(started.elapsed());
                }
                eprintln!("vm| {line}");
                run.log.push_str(&line);
                run.log.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                run.timed_out = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    if let Ok(mut f) = fs::File::open(&qemu_stderr) {
        let mut err = String::new();
        let _ = f.read_to_string(&mut err);
        if !err.trim().is_empty() {
            run.log.push_str("--- qemu stderr ---\n");
            run.log.push_str(&err);
        }
    }
    run
}

#[test]
fn host_runs_the_lvm_tests_in_a_vm() {
    if in_vm() {
        return;
    }
    let Some(qemu) = find_program("qemu-system-x86_64") else {
        return missing(
            "qemu-system-x86_64 not found (scripts/install-deps.sh installs qemu-system-x86)",
        );
    };
    let Some((kernel, base_initrd)) = build_image() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");

    // The payload is this test binary; the kernel unpacks the appended cpio after the base.
    let payload = tmp.path().join("payload.cpio");
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/lvm-vm/payload.sh"))
        .arg(&exe)
        .arg(&payload)
        .output()
        .expect("run payload.sh");
    assert!(
        out.status.success(),
        "payload.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let initrd = tmp.path().join("initrd");
    {
        let mut f = fs::File::create(&initrd).expect("create initrd");
        let mut base = fs::read(&base_initrd).expect("read base initrd");
        // The kernel takes an uncompressed cpio that follows a compressed one only at a
        // 4-byte aligned offset (it skips zero padding to get there).
        base.resize(base.len().next_multiple_of(512), 0);
        f.write_all(&base).unwrap();
        f.write_all(&fs::read(&payload).expect("read payload"))
            .unwrap();
    }
    let disk = tmp.path().join("disk.img");
    fs::File::create(&disk)
        .and_then(|f| f.set_len(1 << 30))
        .expect("create sparse disk image");

    let mut append = String::from("console=ttyS0 quiet panic=-1 DVOL_IN_VM=1");
    match std::env::var("DVOL_VM_TEST") {
        Ok(name) if !name.is_empty() => {
            append.push_str(&format!(" dvol_filter={name} dvol_exact=1"))
        }
        _ => append.push_str(" dvol_filter=in_vm_"),
    }
    let timeout = std::env::var("DVOL_VM_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(240));

    let run = boot(&qemu, &kernel, &initrd, &disk, &append, timeout);
    let log = &run.log;
    assert!(
        !run.timed_out,
        "the VM did not finish within {timeout:?}; its log:\n{log}"
    );
    match run.result.as_deref() {
        Some("PASS") => {}
        Some(other) => panic!("the VM reported {other}; its log:\n{log}"),
        None => panic!("the VM printed no DVOL-VM-RESULT line; its log:\n{log}"),
    }
    // libtest inside the VM must have run the in-VM tests, not filtered them all away.
    let passed: usize = log
        .lines()
        .filter_map(|l| l.split("test result: ok. ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(passed >= 1, "no in-VM test ran; the VM log:\n{log}");
    eprintln!(
        "LVM VM: {passed} in-VM tests passed; boot to result {:.1}s",
        run.boot_to_result.unwrap_or_default().as_secs_f64()
    );
}

// ------------------------------------------------------------------------------------------
// The VM side: real LVM.
// ------------------------------------------------------------------------------------------

/// Runs `lvm ARGS` directly (for the test's own setup: foreign LVs, extra pools).
fn lvm_cmd(args: &[&str]) -> String {
    let out = Command::new("/usr/sbin/lvm")
        .args(args)
        .output()
        .expect("run lvm");
    assert!(
        out.status.success(),
        "lvm {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lv_exists(name: &str) -> bool {
    Command::new("/usr/sbin/lvm")
        .args(["lvs", &format!("{VG}/{name}")])
        .output()
        .expect("run lvm")
        .status
        .success()
}

fn backend() -> LvmBackend {
    LvmBackend::probe(VG, POOL, RATIO).expect("probe dvoltest/pool")
}

fn spec(mib: u64, fs: Filesystem) -> VolumeSpec {
    VolumeSpec {
        id: Uuid::new_v4(),
        size: Some(ByteSize::from_bytes(mib * MIB).unwrap()),
        filesystem: Some(fs),
        preallocate: false,
    }
}

fn size(mib: u64) -> ByteSize {
    ByteSize::from_bytes(mib * MIB).unwrap()
}

/// Total bytes of the filesystem mounted at `path`.
fn fs_bytes(path: &Path) -> u64 {
    let st = rustix::fs::statvfs(path).expect("statvfs");
    st.f_blocks * st.f_frsize
}

fn expect_refused(result: Result<impl std::fmt::Debug, BackendError>) -> String {
    match result {
        Err(BackendError::Refused(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn expect_unavailable(result: Result<impl std::fmt::Debug, BackendError>) -> String {
    match result {
        Err(BackendError::Unavailable(message)) => message,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn assert_contains(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} missing in: {message}");
    }
}

#[test]
fn in_vm_probe_finds_the_pool_and_explains_what_is_missing() {
    if !in_vm() {
        return;
    }
    let b = backend();
    assert_eq!(b.kind(), BackendKind::Lvm);
    assert_eq!(b.location().as_deref(), Some("dvoltest/pool"));
    assert!(b.enforces_size());
    let cap = b.capacity().unwrap();
    assert_eq!(cap.total_bytes, POOL_BYTES);
    assert!(
        cap.free_bytes <= cap.total_bytes && cap.free_bytes > POOL_BYTES / 2,
        "{cap:?}"
    );

    let msg = expect_unavailable(LvmBackend::probe("nosuchvg", POOL, RATIO));
    assert_contains(
        &msg,
        &[
            "volume group nosuchvg not found",
            "vgs lists: dvoltest",
            "create it or change the profile",
        ],
    );
    let msg = expect_unavailable(LvmBackend::probe(VG, "nosuchpool", RATIO));
    assert_contains(
        &msg,
        &[
            "thin pool nosuchpool not found in volume group dvoltest",
            "thin pools there: pool",
        ],
    );
    // An LV that is not a thin pool.
    lvm_cmd(&[
        "lvcreate",
        "-q",
        "-y",
        "--thin",
        "-V",
        "8m",
        "-n",
        "notapool",
        "dvoltest/pool",
    ]);
    let msg = expect_unavailable(LvmBackend::probe(VG, "notapool", RATIO));
    assert_contains(&msg, &["dvoltest/notapool is not a thin pool"]);
    lvm_cmd(&["lvremove", "-q", "-y", "dvoltest/notapool"]);
    let msg = expect_unavailable(LvmBackend::probe("-y", POOL, RATIO));
    assert_contains(&msg, &["invalid volume group name"]);

    // validate: a size is required and must fit the filesystem.
    let mut sizeless = spec(64, Filesystem::Ext4);
    sizeless.size = None;
    assert_contains(&expect_refused(b.validate(&sizeless)), &["needs a size"]);
    let msg = expect_refused(b.validate(&spec(100, Filesystem::Xfs)));
    assert_contains(&msg, &["too small for xfs", "300MiB"]);
    b.validate(&spec(300, Filesystem::Xfs)).unwrap();
    b.validate(&spec(64, Filesystem::Ext4)).unwrap();
}

#[test]
fn in_vm_create_mount_write_remount_read_remove() {
    if !in_vm() {
        return;
    }
    let b = backend();
    let s = spec(64, Filesystem::Ext4);
    let mnt = tempfile::tempdir().unwrap();
    let target = mnt.path();

    b.validate(&s).unwrap();
    let t0 = Instant::now();
    assert_eq!(b.create(&s).unwrap(), Effect::Changed);
    let created = t0.elapsed();
    assert_eq!(b.mount(&s, target).unwrap(), Effect::Changed);
    let mounted = t0.elapsed();
    println!(
        "TIMING lvcreate+mkfs.ext4 (64MiB) {:.0} ms, mount {:.0} ms, total {:.0} ms",
        created.as_secs_f64() * 1e3,
        (mounted - created).as_secs_f64() * 1e3,
        mounted.as_secs_f64() * 1e3
    );
    assert_eq!(b.create(&s).unwrap(), Effect::Unchanged);
    assert_eq!(b.mount(&s, target).unwrap(), Effect::Unchanged);
    assert!(b.volumes().unwrap().contains(&s.id));
    assert!(b.device(s.id).exists());
    assert!(fs_bytes(target) > 50 * MIB && fs_bytes(target) <= 64 * MIB);

    {
        let mut f = fs::File::create(target.join("hello.txt")).unwrap();
        f.write_all(b"kept across mounts").unwrap();
        f.sync_all().unwrap();
    }
    // A file held open keeps the mount busy: unmount must say so, not detach lazily.
    let held = fs::File::open(target.join("hello.txt")).unwrap();
    let err = b.unmount(s.id, target).unwrap_err();
    assert_contains(&err.to_string(), &["still in use"]);
    drop(held);
    assert_eq!(b.unmount(s.id, target).unwrap(), Effect::Changed);
    assert_eq!(b.unmount(s.id, target).unwrap(), Effect::Unchanged);
    assert!(!target.join("hello.txt").exists());

    assert_eq!(b.mount(&s, target).unwrap(), Effect::Changed);
    assert_eq!(
        fs::read(target.join("hello.txt")).unwrap(),
        b"kept across mounts"
    );
    assert_eq!(b.unmount(s.id, target).unwrap(), Effect::Changed);

    assert_eq!(b.remove(s.id).unwrap(), Effect::Changed);
    assert_eq!(b.remove(s.id).unwrap(), Effect::Unchanged);
    assert!(!b.volumes().unwrap().contains(&s.id));
    assert!(!lv_exists(&lvm::lv_name(s.id)));

    // xfs too, timed the same way.
    let x = spec(300, Filesystem::Xfs);
    let t0 = Instant::now();
    assert_eq!(b.create(&x).unwrap(), Effect::Changed);
    let created = t0.elapsed();
    assert_eq!(b.mount(&x, target).unwrap(), Effect::Changed);
    println!(
        "TIMING lvcreate+mkfs.xfs (300MiB) {:.0} ms, mount {:.0} ms",
        created.as_secs_f64() * 1e3,
        (t0.elapsed() - created).as_secs_f64() * 1e3
    );
    fs::write(target.join("x"), b"xfs").unwrap();
    assert_eq!(b.unmount(x.id, target).unwrap(), Effect::Changed);
    assert_eq!(b.remove(x.id).unwrap(), Effect::Changed);
}

#[test]
fn in_vm_resize_grows_the_filesystem_online_and_offline_and_refuses_shrink() {
    if !in_vm() {
        return;
    }
    let b = backend();
    let mut s = spec(64, Filesystem::Ext4);
    let mnt = tempfile::tempdir().unwrap();
    let target = mnt.path();
    b.create(&s).unwrap();
    b.mount(&s, target).unwrap();
    fs::write(target.join("data"), b"survives growth").unwrap();
    let before = fs_bytes(target);

    // Online, while mounted.
    let t0 = Instant::now();
    assert_eq!(b.resize(&s, size(128), target).unwrap(), Effect::Changed);
    println!(
        "TIMING online grow ext4 64->128MiB {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let after = fs_bytes(target);
    assert!(after > before + 56 * MIB, "statvfs: {before} -> {after}");
    s.size = Some(size(128));
    // Asking again for the same size changes nothing.
    assert_eq!(b.resize(&s, size(128), target).unwrap(), Effect::Unchanged);

    // Shrinking is refused with both sizes.
    let msg = expect_refused(b.resize(&s, size(64), target));
    assert_contains(&msg, &["cannot shrink", "from 128MiB to 64MiB"]);

    // Offline: e2fsck + resize2fs.
    b.unmount(s.id, target).unwrap();
    assert_eq!(b.resize(&s, size(192), target).unwrap(), Effect::Changed);
    s.size = Some(size(192));
    b.mount(&s, target).unwrap();
    assert!(
        fs_bytes(target) > after + 56 * MIB,
        "offline grow: {after} -> {}",
        fs_bytes(target)
    );
    assert_eq!(fs::read(target.join("data")).unwrap(), b"survives growth");
    b.unmount(s.id, target).unwrap();
    b.remove(s.id).unwrap();

    // xfs: offline (through a temporary mount) and online.
    let mut x = spec(300, Filesystem::Xfs);
    b.create(&x).unwrap();
    b.mount(&x, target).unwrap();
    let initial = fs_bytes(target);
    b.unmount(x.id, target).unwrap();
    assert_eq!(b.resize(&x, size(340), target).unwrap(), Effect::Changed);
    x.size = Some(size(340));
    b.mount(&x, target).unwrap();
    let offline = fs_bytes(target);
    assert!(
        offline > initial + 32 * MIB,
        "offline xfs grow: {initial} -> {offline}"
    );
    let t0 = Instant::now();
    assert_eq!(b.resize(&x, size(400), target).unwrap(), Effect::Changed);
    println!(
        "TIMING online grow xfs 340->400MiB {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let online = fs_bytes(target);
    assert!(
        online > offline + 48 * MIB,
        "online xfs grow: {offline} -> {online}"
    );
    b.unmount(x.id, target).unwrap();
    b.remove(x.id).unwrap();
}

#[test]
fn in_vm_a_new_instance_rediscovers_volumes_and_leaves_foreign_lvs_alone() {
    if !in_vm() {
        return;
    }
    let first = backend();
    let a = spec(32, Filesystem::Ext4);
    let c = spec(32, Filesystem::Ext4);
    first.create(&a).unwrap();
    first.create(&c).unwrap();
    // Foreign LVs: one plain, one named like dvol's but without its tags.
    lvm_cmd(&[
        "lvcreate",
        "-q",
        "-y",
        "--thin",
        "-V",
        "16m",
        "-n",
        "foreign",
        "dvoltest/pool",
    ]);
    let impostor = Uuid::new_v4();
    let impostor_name = lvm::lv_name(impostor);
    lvm_cmd(&[
        "lvcreate",
        "-q",
        "-y",
        "--thin",
        "-V",
        "16m",
        "-n",
        &impostor_name,
        "dvoltest/pool",
    ]);

    let second = backend();
    let mut ids = second.volumes().unwrap();
    ids.sort();
    let mut expected = vec![a.id, c.id];
    expected.sort();
    assert_eq!(
        ids, expected,
        "the new instance lists exactly dvol's volumes"
    );

    let strays = second.foreign_or_orphans(&[a.id]).unwrap();
    let kinds: Vec<_> = strays.iter().map(|s| (s.name.clone(), s.kind)).collect();
    assert!(
        kinds.contains(&("dvoltest/foreign".to_string(), StrayKind::Foreign)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(format!("dvoltest/{impostor_name}"), StrayKind::Foreign)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(
            format!("dvoltest/{}", lvm::lv_name(c.id)),
            StrayKind::Orphan(c.id)
        )),
        "{kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|(n, _)| n.contains(&a.id.simple().to_string())),
        "{kinds:?}"
    );
    for stray in &strays {
        println!("stray: {stray}");
    }

    // An LV named like a volume but not made by dvol is refused, not touched.
    let msg = expect_refused(second.remove(impostor));
    assert_contains(&msg, &["not made by dvol"]);
    let impostor_spec = VolumeSpec {
        id: impostor,
        ..spec(16, Filesystem::Ext4)
    };
    expect_refused(second.create(&impostor_spec));
    assert!(lv_exists(&impostor_name) && lv_exists("foreign"));

    // A creation that stopped between lvcreate and the rename is cleaned up by create.
    let crashed = spec(32, Filesystem::Ext4);
    let tag = lvm::id_tag(crashed.id);
    let temp_name = lvm::incomplete_lv_name(crashed.id);
    lvm_cmd(&[
        "lvcreate",
        "-q",
        "-y",
        "--thin",
        "-V",
        "32m",
        "-n",
        &temp_name,
        "--addtag",
        "dvol",
        "--addtag",
        &tag,
        "dvoltest/pool",
    ]);
    assert!(!second.volumes().unwrap().contains(&crashed.id));
    let strays = second.foreign_or_orphans(&[a.id, c.id]).unwrap();
    assert!(
        strays
            .iter()
            .any(|s| s.kind == StrayKind::Incomplete(crashed.id)),
        "{strays:?}"
    );
    assert_eq!(second.create(&crashed).unwrap(), Effect::Changed);
    assert!(!lv_exists(&temp_name));
    let mnt = tempfile::tempdir().unwrap();
    second.mount(&crashed, mnt.path()).unwrap();
    fs::write(mnt.path().join("f"), b"ok").unwrap();
    second.unmount(crashed.id, mnt.path()).unwrap();

    for id in [a.id, c.id, crashed.id] {
        assert_eq!(second.remove(id).unwrap(), Effect::Changed);
    }
    assert!(second.volumes().unwrap().is_empty());
    assert!(
        lv_exists(&impostor_name) && lv_exists("foreign"),
        "foreign LVs were touched"
    );
    lvm_cmd(&[
        "lvremove",
        "-q",
        "-y",
        "dvoltest/foreign",
        &format!("dvoltest/{impostor_name}"),
    ]);
}

#[test]
fn in_vm_refuses_overprovision_and_a_nearly_full_pool_with_numbers() {
    if !in_vm() {
        return;
    }
    // A 64 MiB pool that may be provisioned twice over.
    lvm_cmd(&[
        "lvcreate",
        "-q",
        "-y",
        "--type",
        "thin-pool",
        "-L",
        "64m",
        "-n",
        "small",
        VG,
    ]);
    let small = LvmBackend::probe(VG, "small", 2.0).unwrap();
    let first = spec(100, Filesystem::Ext4);
    small.validate(&first).unwrap();
    small.create(&first).unwrap();
    let msg = expect_refused(small.validate(&spec(29, Filesystem::Ext4)));
    assert_contains(
        &msg,
        &[
            "dvoltest/small",
            "100MiB already provisioned",
            "29MiB requested",
            "129MiB",
            "2x",
            "64MiB",
            "128MiB allowed",
        ],
    );
    println!("refusal: {msg}");
    small.validate(&spec(28, Filesystem::Ext4)).unwrap();
    // Growing counts against the same limit.
    let msg = expect_refused(small.resize(&first, size(129), Path::new("/nonexistent")));
    assert_contains(&msg, &["128MiB allowed"]);
    small.remove(first.id).unwrap();

    // A 32 MiB pool with 31 MiB written: above the 95% data limit.
    lvm_cmd(&[
        "lvcreate",
        "-q",
        "-y",
        "--type",
        "thin-pool",
        "-L",
        "32m",
        "-n",
        "full",
        VG,
    ]);
    lvm_cmd(&[
        "lvcreate",
        "-q",
        "-y",
        "--thin",
        "-V",
        "32m",
        "-n",
        "filler",
        "dvoltest/full",
    ]);
    {
        let mut dev = fs::OpenOptions::new()
            .write(true)
            .open("/dev/dvoltest/filler")
            .unwrap();
        let chunk = vec![0xa5u8; MIB as usize];
        for _ in 0..31 {
            dev.write_all(&chunk).unwrap();
        }
        dev.sync_all().unwrap();
    }
    let full = LvmBackend::probe(VG, "full", 10.0).unwrap();
    let msg = expect_refused(full.validate(&spec(16, Filesystem::Ext4)));
    assert_contains(&msg, &["dvoltest/full is 96.9% full (data)", "95%"]);
    println!("refusal: {msg}");
    let cap = full.capacity().unwrap();
    assert_eq!(cap.total_bytes, 32 * MIB);
    assert!(cap.free_bytes <= 2 * MIB, "{cap:?}");

    lvm_cmd(&[
        "lvremove",
        "-q",
        "-y",
        "dvoltest/filler",
        "dvoltest/full",
        "dvoltest/small",
    ]);
}
