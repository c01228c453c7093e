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
//!   they return at once: the host test is what runs them for real. They include read points
//!   (thin snapshots mounted read-only) and the history user story at backend level: commits
//!   made with `dvol_snapshot::Repository` from read points of a mounted ext4 and xfs volume,
//!   branch, checkout and reset --hard, each restoring the committed content byte for byte
//!   (the store lives on the VM's tmpfs); commits by the changed ranges `thin_delta` gives;
//!   and PostgreSQL 15 (from the host's packages) running pgbench on a gold volume while it is
//!   committed, each commit cloned and started as a second server that must pass `pg_amcheck`.
//!
//! Environment: `DVOL_REQUIRE_ALL=1` turns a missing qemu or VM prerequisite into a failure
//! instead of a skip; `DVOL_LVM_VM_CACHE` overrides the image cache directory (default
//! `/var/cache/dvol-lvm-vm` as root, else `target/lvm-vm-cache`); `DVOL_VM_TEST=NAME` runs one
//! in-VM test only; `DVOL_VM_TIMEOUT` overrides the 600 s limit on a VM run (a software-emulated
//! VM on a loaded 2-core host took up to 251 s for all its tests but PostgreSQL's, which boots
//! a VM of its own at the same time and took 234 s alone).

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
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1536", "-smp", "1"])
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

/// The in-VM test that boots a VM of its own, beside the others' (the host's test threads run
/// both at once): under software emulation it takes about as long as all the others together.
const POSTGRES_TEST: &str =
    "in_vm_postgresql_on_gold_commits_while_pgbench_runs_recover_and_read_by_changed_ranges";

/// The in-VM test `DVOL_VM_TEST` names, if any.
fn only_test() -> Option<String> {
    std::env::var("DVOL_VM_TEST").ok().filter(|n| !n.is_empty())
}

#[test]
fn host_runs_the_lvm_tests_in_a_vm() {
    if in_vm() {
        return;
    }
    match only_test() {
        Some(name) if name == POSTGRES_TEST => {}
        Some(name) => run_in_vm(&format!("dvol_filter={name} dvol_exact=1")),
        None => run_in_vm(&format!("dvol_filter=in_vm_ dvol_skip={POSTGRES_TEST}")),
    }
}

#[test]
fn host_runs_postgresql_on_gold_in_a_vm() {
    if in_vm() {
        return;
    }
    match only_test() {
        Some(name) if name != POSTGRES_TEST => {}
        _ => run_in_vm(&format!("dvol_filter={POSTGRES_TEST} dvol_exact=1")),
    }
}

/// Boots the VM with the in-VM tests `selection` picks (kernel command line words for
/// `/init`) and asserts that they ran and passed.
fn run_in_vm(selection: &str) {
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

    let append = format!("console=ttyS0 quiet panic=-1 DVOL_IN_VM=1 {selection}");
    let timeout = std::env::var("DVOL_VM_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(600));

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
        max_overprovision: None,
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

// ------------------------------------------------------------------------------------------
// Read points and volume history on LVM volumes.
// ------------------------------------------------------------------------------------------

/// Lets the history index's racy-stat window pass, so a commit can trust what was written.
fn settle() {
    std::thread::sleep(Duration::from_millis(
        2 * (dvol_snapshot::snapshot::RACY_WINDOW_NS / 1_000_000) as u64 + 20,
    ));
}

/// Deterministic pseudo-random bytes (xorshift).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A digest of a volume's content: every path (sorted) with its type and permission bits,
/// regular files with size, mtime and every byte, symlinks with their target. The root's mode
/// is included; directory times are not.
fn content_hash(root: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, rel: &str, h: &mut blake3::Hasher) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = format!("{rel}/{}", name.to_string_lossy());
            let md = fs::symlink_metadata(&path).unwrap();
            let mode = md.mode() & 0o7777;
            if md.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                h.update(format!("L {rel} -> {}\n", target.display()).as_bytes());
            } else if md.is_dir() {
                h.update(format!("D {rel} {mode:o}\n").as_bytes());
                walk(&path, &rel, h);
            } else if md.is_file() {
                let mtime = md.mtime() * 1_000_000_000 + md.mtime_nsec();
                h.update(format!("F {rel} {mode:o} {} {mtime}\n", md.len()).as_bytes());
                h.update(&fs::read(&path).unwrap());
            } else {
                panic!("unexpected file type at {}", path.display());
            }
        }
    }
    let mut h = blake3::Hasher::new();
    let md = fs::symlink_metadata(root).unwrap();
    h.update(format!("root {:o}\n", md.mode() & 0o7777).as_bytes());
    walk(root, "", &mut h);
    h.finalize().to_hex().to_string()
}

/// The stat fields the history index compares, for every regular file under `root`, by path.
fn file_stats(root: &Path) -> Vec<(String, u64, i64, i64, u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, u64, i64, i64, u64, u32)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let rel = format!("{rel}/{}", entry.file_name().to_string_lossy());
            let md = fs::symlink_metadata(entry.path()).unwrap();
            if md.is_dir() {
                walk(&entry.path(), &rel, out);
            } else if md.is_file() {
                out.push((
                    rel,
                    md.ino(),
                    md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                    md.ctime() * 1_000_000_000 + md.ctime_nsec(),
                    md.len(),
                    md.mode(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out.sort();
    out
}

/// Mixed content: text, random binary, a sparse file, a symlink, an empty directory, an
/// executable and a private file.
fn write_mixed_files(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(root.join("schema")).unwrap();
    fs::write(
        root.join("schema/tables.sql"),
        "CREATE TABLE users (id INT PRIMARY KEY, name TEXT);\n",
    )
    .unwrap();
    fs::create_dir_all(root.join("data/blobs")).unwrap();
    fs::write(root.join("data/blobs/random.bin"), noise(1, 300 * 1024)).unwrap();
    fs::write(root.join("data/small.bin"), noise(2, 4097)).unwrap();
    {
        // 8 MiB apparent size, two 4 KiB extents written.
        let f = fs::File::create(root.join("data/sparse.img")).unwrap();
        f.set_len(8 * MIB).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&noise(3, 4096), MIB).unwrap();
        f.write_all_at(&noise(4, 4096), 6 * MIB).unwrap();
    }
    std::os::unix::fs::symlink("schema/tables.sql", root.join("current-schema")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("secret"), "private\n").unwrap();
    fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
}

fn sync_fs(path: &Path) {
    let f = fs::File::open(path).unwrap();
    rustix::fs::syncfs(&f).unwrap();
}

/// The names of the dvol read point snapshots in the volume group.
fn read_point_lvs() -> Vec<String> {
    lvm_cmd(&["lvs", "--noheadings", "-o", "lv_name", VG])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| l.ends_with("-rp"))
        .collect()
}

fn is_mounted(path: &Path) -> bool {
    dvol_backends::mount_table::is_mount_point(path).unwrap()
}

#[test]
fn in_vm_read_point_is_a_thin_snapshot_fixed_at_one_instant() {
    if !in_vm() {
        return;
    }
    let b = backend();
    let s = spec(48, Filesystem::Ext4);
    let mnt = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let (target, point) = (mnt.path(), scratch.path());
    b.create(&s).unwrap();
    b.mount(&s, target).unwrap();
    write_mixed_files(target);
    sync_fs(target);
    let before = content_hash(target);
    let stats_before = file_stats(target);

    let t0 = Instant::now();
    assert_eq!(
        b.read_point(&s, target, point).unwrap(),
        dvol_backends::ReadPoint::Snapshot(point.to_path_buf())
    );
    println!(
        "TIMING read point (thin snapshot + ro mount, ext4 48MiB) {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    assert!(is_mounted(point));
    assert_eq!(read_point_lvs(), vec![lvm::read_point_lv_name(s.id)]);
    // The snapshot is a block copy: same content, inode numbers, sizes, modes and times.
    assert_eq!(content_hash(point), before);
    let stats_snapshot = file_stats(point);
    assert_eq!(stats_snapshot, stats_before);
    println!(
        "read point keeps inode numbers, mtimes and ctimes of all {} files",
        stats_snapshot.len()
    );
    // Read-only.
    let err = fs::write(point.join("new"), b"x").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );

    // Writes to the volume after the read point do not reach it.
    fs::write(target.join("after-read-point"), b"later").unwrap();
    fs::write(target.join("schema/tables.sql"), "DROP TABLE users;\n").unwrap();
    fs::remove_file(target.join("data/small.bin")).unwrap();
    sync_fs(target);
    assert!(!point.join("after-read-point").exists());
    assert!(point.join("data/small.bin").exists());
    assert_eq!(content_hash(point), before);
    assert_ne!(content_hash(target), before);

    // Never a volume; reported as a read point, not as a stray volume.
    assert_eq!(b.volumes().unwrap(), vec![s.id]);
    let strays = b.foreign_or_orphans(&[s.id]).unwrap();
    assert_eq!(
        strays
            .iter()
            .map(|x| (x.name.clone(), x.kind))
            .collect::<Vec<_>>(),
        vec![(
            format!("{VG}/{}", lvm::read_point_lv_name(s.id)),
            StrayKind::ReadPoint(s.id)
        )]
    );
    println!("stray: {}", strays[0]);
    // A second read point of the same volume while this one is in use is refused.
    let other = tempfile::tempdir().unwrap();
    let msg = expect_refused(b.read_point(&s, target, other.path()));
    assert_contains(&msg, &["already has a read point mounted at", "retry"]);
    // Releasing while the snapshot is busy says so and keeps it.
    let held = fs::File::open(point.join("secret")).unwrap();
    let err = b.release_read_point(s.id, target, point).unwrap_err();
    assert_contains(&err.to_string(), &["still uses it"]);
    drop(held);

    let t0 = Instant::now();
    assert_eq!(
        b.release_read_point(s.id, target, point).unwrap(),
        Effect::Changed
    );
    println!(
        "TIMING release read point (umount + lvremove) {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(
        b.release_read_point(s.id, target, point).unwrap(),
        Effect::Unchanged
    );
    assert!(!is_mounted(point));
    assert!(read_point_lvs().is_empty());
    assert!(fs::read_dir(point).unwrap().next().is_none());

    // A crash between lvcreate and the mount leaves an unmounted snapshot: release removes it.
    let leftover = lvm::read_point_lv_name(s.id);
    let create_leftover = || {
        lvm_cmd(&[
            "lvcreate",
            "-q",
            "-y",
            "-s",
            "-kn",
            "-n",
            &leftover,
            "--addtag",
            "dvol",
            "--addtag",
            &lvm::id_tag(s.id),
            "--addtag",
            lvm::READ_POINT_TAG,
            &format!("{VG}/{}", lvm::lv_name(s.id)),
        ])
    };
    create_leftover();
    assert!(lv_exists(&leftover));
    assert!(!b.volumes().unwrap().contains(&Uuid::nil()));
    assert_eq!(
        b.release_read_point(s.id, target, point).unwrap(),
        Effect::Changed
    );
    assert!(!lv_exists(&leftover));
    // ... and a new read point replaces such a leftover with a fresh snapshot.
    create_leftover();
    fs::write(target.join("newest"), b"after the leftover").unwrap();
    b.read_point(&s, target, point).unwrap();
    assert_eq!(
        fs::read(point.join("newest")).unwrap(),
        b"after the leftover"
    );
    // A crash after the mount: the daemon's start-up release unmounts and removes.
    assert_eq!(
        b.release_read_point(s.id, target, point).unwrap(),
        Effect::Changed
    );
    assert!(read_point_lvs().is_empty() && !is_mounted(point));

    // Removing the volume also removes a read point it left.
    create_leftover();
    b.unmount(s.id, target).unwrap();
    assert_eq!(b.remove(s.id).unwrap(), Effect::Changed);
    assert!(!lv_exists(&leftover) && !lv_exists(&lvm::lv_name(s.id)));
}

/// The user story of the history issue at backend level: commits made from read points of a
/// mounted LVM volume, branches, checkout and reset --hard, each restoring the committed
/// content byte for byte.
fn history_user_story(fs_kind: Filesystem, mib: u64) {
    use dvol_snapshot::{CommitInfo, NoProgress, Repository, VolumeKey};

    let b = backend();
    let s = spec(mib, fs_kind);
    let mnt = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    // The store lives on the VM's tmpfs.
    let store = tempfile::tempdir().unwrap();
    let (target, point) = (mnt.path(), scratch.path());
    let repo = Repository::open(&store.path().join("history")).unwrap();
    let vol = VolumeKey(s.id);
    b.create(&s).unwrap();
    b.mount(&s, target).unwrap();
    let started = Instant::now();

    // Commits `message` from a read point while the volume stays mounted; returns the commit,
    // the content hash of what was committed and the files re-read.
    let commit = |message: &str| {
        settle();
        sync_fs(target);
        let rp = b.read_point(&s, target, point).unwrap();
        assert_eq!(rp, dvol_backends::ReadPoint::Snapshot(point.to_path_buf()));
        let hash = content_hash(point);
        // Nothing writes to the volume meanwhile: the snapshot equals the volume.
        assert_eq!(hash, content_hash(target), "{fs_kind}: read point differs");
        let committed = repo
            .commit(
                &vol,
                point,
                CommitInfo::now(message, "vm@dvol"),
                &NoProgress,
            )
            .unwrap();
        assert_eq!(
            b.release_read_point(s.id, target, point).unwrap(),
            Effect::Changed
        );
        assert!(!is_mounted(point) && read_point_lvs().is_empty());
        (committed.id, hash, committed.stats)
    };
    let checkout = |rev: &str| {
        let id = repo.resolve(&vol, rev).unwrap();
        repo.checkout(&vol, id, target, &NoProgress).unwrap();
        id
    };

    write_mixed_files(target);
    let (a, hash_a, stats) = commit("clean schema");
    assert_eq!((stats.files_scanned, stats.symlinks), (7, 2), "{stats:?}");
    // A second read point of the unchanged volume: the snapshot's stat data matches the
    // index, so no file is read again.
    let (same, hash_same, stats) = commit("nothing changed");
    assert_eq!(hash_same, hash_a);
    assert!(stats.unchanged, "{stats:?}");
    println!(
        "{fs_kind}: commit from a fresh read point of an unchanged volume re-read {} of {} files",
        stats.files_reread, stats.files_scanned
    );
    assert_eq!(stats.files_reread, 0, "{fs_kind}: {stats:?}");
    // Keep the story's history linear: master back at A.
    repo.set_branch(&vol, "master", a).unwrap();
    let _ = same;

    // Change files and commit B on master.
    fs::write(
        target.join("schema/tables.sql"),
        "CREATE TABLE users (id INT PRIMARY KEY, name TEXT, email TEXT);\n",
    )
    .unwrap();
    fs::write(
        target.join("schema/migration-2.sql"),
        "ALTER TABLE users ADD email TEXT;\n",
    )
    .unwrap();
    fs::write(target.join("data/blobs/random.bin"), noise(5, 200 * 1024)).unwrap();
    fs::remove_file(target.join("data/small.bin")).unwrap();
    let (b_id, hash_b, stats) = commit("add email");
    assert_eq!(repo.read_commit(b_id).unwrap().parents, vec![a]);
    assert_eq!(stats.files_reread, 2 + 1, "{fs_kind}: {stats:?}");

    // Branch experiment at B and check it out.
    repo.create_branch(&vol, "experiment", b_id, "HEAD")
        .unwrap();
    assert_eq!(checkout("experiment"), b_id);
    repo.set_head_branch(&vol, "experiment").unwrap();
    assert_eq!(content_hash(target), hash_b);

    // Break things and commit C on experiment.
    fs::remove_dir_all(target.join("schema")).unwrap();
    fs::write(target.join("data/blobs/random.bin"), b"truncated").unwrap();
    fs::remove_file(target.join("current-schema")).unwrap();
    fs::write(target.join("current-schema"), b"now a file").unwrap();
    fs::remove_dir(target.join("empty")).unwrap();
    fs::write(target.join("empty"), b"was a directory").unwrap();
    let (c, hash_c, _) = commit("broken");
    assert_ne!(hash_c, hash_b);
    assert_eq!(repo.resolve(&vol, "master").unwrap(), b_id);

    // reset --hard HEAD^ (C's parent, B).
    let parent = checkout("HEAD^");
    assert_eq!(parent, b_id);
    repo.set_branch(&vol, "experiment", parent).unwrap();
    assert_eq!(content_hash(target), hash_b, "{fs_kind}: reset --hard to B");

    // Break things without committing, then reset --hard HEAD^ again (B's parent, A).
    fs::write(target.join("data/sparse.img"), b"overwritten").unwrap();
    fs::write(target.join("junk"), noise(6, 50_000)).unwrap();
    fs::remove_file(target.join("run.sh")).unwrap();
    let parent = checkout("HEAD^");
    assert_eq!(parent, a);
    repo.set_branch(&vol, "experiment", parent).unwrap();
    assert_eq!(content_hash(target), hash_a, "{fs_kind}: reset --hard to A");

    // Checkout master (B), then experiment (A), then C by id.
    checkout("master");
    repo.set_head_branch(&vol, "master").unwrap();
    assert_eq!(content_hash(target), hash_b, "{fs_kind}: checkout master");
    checkout("experiment");
    repo.set_head_branch(&vol, "experiment").unwrap();
    assert_eq!(
        content_hash(target),
        hash_a,
        "{fs_kind}: checkout experiment"
    );
    let detached = c.to_string();
    repo.checkout(
        &vol,
        repo.resolve(&vol, &detached).unwrap(),
        target,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(content_hash(target), hash_c, "{fs_kind}: checkout C");
    checkout("master");
    assert_eq!(content_hash(target), hash_b, "{fs_kind}: back to master");

    // The sparse file's content came back; report whether its holes did too.
    {
        use std::os::unix::fs::MetadataExt;
        let md = fs::metadata(target.join("data/sparse.img")).unwrap();
        println!(
            "{fs_kind}: sparse.img after checkout: {} bytes, {} KiB allocated",
            md.len(),
            md.blocks() / 2
        );
    }
    // The store's own integrity check agrees.
    let report = repo.fsck(&NoProgress).unwrap();
    assert!(report.is_clean(), "{report:?}");
    println!(
        "TIMING {fs_kind} history story ({mib}MiB volume, 4 commits from read points, 7 checkouts) {:.1} s",
        started.elapsed().as_secs_f64()
    );

    b.unmount(s.id, target).unwrap();
    b.remove(s.id).unwrap();
    assert!(read_point_lvs().is_empty());
}

#[test]
fn in_vm_history_user_story_on_ext4_from_read_points() {
    if !in_vm() {
        return;
    }
    history_user_story(Filesystem::Ext4, 48);
}

#[test]
fn in_vm_history_user_story_on_xfs_from_read_points() {
    if !in_vm() {
        return;
    }
    history_user_story(Filesystem::Xfs, 300);
}

#[test]
fn in_vm_clone_is_a_thin_snapshot_with_its_own_identity() {
    if !in_vm() {
        return;
    }
    let b = backend();
    for (fs_kind, mib) in [(Filesystem::Ext4, 48), (Filesystem::Xfs, 300)] {
        let source = spec(mib, fs_kind);
        let source_mnt = tempfile::tempdir().unwrap();
        b.create(&source).unwrap();
        b.mount(&source, source_mnt.path()).unwrap();
        write_mixed_files(source_mnt.path());
        sync_fs(source_mnt.path());
        let committed = content_hash(source_mnt.path());

        let target = VolumeSpec {
            id: Uuid::new_v4(),
            ..source.clone()
        };
        let t0 = Instant::now();
        assert_eq!(
            b.clone_volume(&source, Some(source_mnt.path()), &target)
                .unwrap(),
            Some(Effect::Changed)
        );
        println!(
            "TIMING clone of a {mib} MiB {fs_kind} thin volume: {:.0} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
        assert_eq!(
            b.clone_volume(&source, Some(source_mnt.path()), &target)
                .unwrap(),
            Some(Effect::Unchanged)
        );
        assert!(!lv_exists(&lvm::incomplete_lv_name(target.id)));
        let tags = lvm_cmd(&[
            "lvs",
            "--noheadings",
            "-o",
            "lv_tags",
            &format!("{VG}/{}", lvm::lv_name(target.id)),
        ]);
        assert!(tags.contains(&lvm::id_tag(target.id)), "{tags}");
        assert!(!tags.contains(&lvm::id_tag(source.id)), "{tags}");
        let mut listed = b.volumes().unwrap();
        listed.retain(|id| *id == source.id || *id == target.id);
        assert_eq!(listed.len(), 2, "{listed:?}");

        // Mounted beside its source (XFS refuses two mounts of one UUID), with its data.
        let target_mnt = tempfile::tempdir().unwrap();
        b.mount(&target, target_mnt.path()).unwrap();
        assert_eq!(content_hash(target_mnt.path()), committed);
        fs::write(target_mnt.path().join("only-in-the-clone"), b"clone").unwrap();
        fs::write(source_mnt.path().join("only-in-the-source"), b"source").unwrap();
        assert!(!source_mnt.path().join("only-in-the-clone").exists());
        assert!(!target_mnt.path().join("only-in-the-source").exists());

        b.unmount(target.id, target_mnt.path()).unwrap();
        assert_eq!(b.remove(target.id).unwrap(), Effect::Changed);
        assert!(!lv_exists(&lvm::lv_name(target.id)));
        b.unmount(source.id, source_mnt.path()).unwrap();
        b.remove(source.id).unwrap();
    }
    // A clone of another size or filesystem is left to the caller.
    let source = spec(48, Filesystem::Ext4);
    b.create(&source).unwrap();
    let bigger = spec(64, Filesystem::Ext4);
    assert_eq!(b.clone_volume(&source, None, &bigger).unwrap(), None);
    assert!(!lv_exists(&lvm::incomplete_lv_name(bigger.id)));
    b.remove(source.id).unwrap();
}

/// The files a changed-range story starts with: name and MiB.
const STORY_FILES: [(&str, u64); 6] = [
    ("table", 24),
    ("wal", 2),
    ("other", 2),
    ("b", 2),
    ("same", 2),
    ("still", 2),
];

/// The bytes of `ranges`.
fn covered(ranges: &[std::ops::Range<u64>]) -> u64 {
    ranges.iter().map(|r| r.end - r.start).sum()
}

/// The read point's changed ranges as a commit asks for them.
struct Ranges<'a>(&'a dyn dvol_backends::FileChanges);

impl dvol_snapshot::ChangedRanges for Ranges<'_> {
    fn changed_ranges(&self, rel: &[u8]) -> Option<Vec<std::ops::Range<u64>>> {
        use std::os::unix::ffi::OsStrExt;
        self.0
            .changed_ranges(Path::new(std::ffi::OsStr::from_bytes(rel)))
    }
}

/// Commits the read point `point` as `volume`, as the daemon does: changed files are read only
/// around the ranges `files` tells, or whole without them.
fn commit_by_ranges(
    repo: &dvol_snapshot::Repository,
    volume: &dvol_snapshot::VolumeKey,
    point: &Path,
    files: Option<&dyn dvol_backends::FileChanges>,
    message: &str,
) -> dvol_snapshot::Committed {
    use dvol_snapshot::{ChangedRanges, CommitInfo, NoProgress};
    let ranges = files.map(Ranges);
    repo.commit_verified(
        volume,
        point,
        ranges.as_ref().map(|r| r as &dyn ChangedRanges),
        CommitInfo::now(message, "vm@dvol"),
        &NoProgress,
        &|| Ok(()),
    )
    .unwrap()
}

/// Commits `point` again, every file read whole, into `whole` (as a new volume), and asserts
/// that its tree equals that of `ranged`, a commit in `repo` of the same point; the whole one.
fn assert_as_whole_read(
    repo: &dvol_snapshot::Repository,
    ranged: dvol_snapshot::CommitId,
    whole: &dvol_snapshot::Repository,
    point: &Path,
    what: &str,
) -> dvol_snapshot::Committed {
    use dvol_snapshot::{CommitInfo, NoProgress, VolumeKey};
    let full = whole
        .commit(
            &VolumeKey::new_random(),
            point,
            CommitInfo::now("whole", "vm@dvol"),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(
        repo.read_commit(ranged).unwrap().tree(),
        whole.read_commit(full.id).unwrap().tree(),
        "{what}: the tree read by changed ranges differs from a whole read"
    );
    full
}

/// One round of seeded changes of the kinds a database and its neighbours make: pages
/// rewritten in place, an append, a truncate, a hole punched, a file renamed over another of
/// the same size and mtime, a file replaced by another of the same size and mtime. "still"
/// is never touched.
fn mutate(root: &Path, seed: u64) {
    use std::os::unix::fs::FileExt;
    let mut rng = seed;
    let mut below = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let open = |name: &str| {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(root.join(name))
            .unwrap()
    };
    let table = open("table");
    let table_len = table.metadata().unwrap().len();
    for _ in 0..1 + below(4) {
        let at = below(table_len / 8192) * 8192;
        table.write_all_at(&noise(seed ^ at, 8192), at).unwrap();
    }
    match below(3) {
        0 => {
            let at = below(table_len / 65536) * 65536;
            rustix::fs::fallocate(
                &table,
                rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
                at,
                65536,
            )
            .unwrap();
        }
        1 => table.set_len(table_len + 12288).unwrap(),
        _ => {}
    }
    let wal = open("wal");
    let wal_len = wal.metadata().unwrap().len();
    if below(2) == 0 && wal_len > MIB {
        wal.set_len(wal_len - below(MIB)).unwrap();
    } else {
        wal.write_all_at(&noise(seed + 1, 100 << 10), wal_len)
            .unwrap();
    }
    // Renamed over another of the same size and mtime; then made again, new.
    let mtime = fs::metadata(root.join("other"))
        .unwrap()
        .modified()
        .unwrap();
    let b = open("b");
    b.set_len(fs::metadata(root.join("other")).unwrap().len())
        .unwrap();
    b.set_modified(mtime).unwrap();
    drop(b);
    fs::rename(root.join("b"), root.join("other")).unwrap();
    fs::write(root.join("b"), noise(seed + 2, 2 << 20)).unwrap();
    // Replaced by another file of the same size and mtime.
    let same = fs::metadata(root.join("same")).unwrap();
    let new = root.join("same.new");
    fs::write(&new, noise(seed + 3, same.len() as usize)).unwrap();
    fs::File::options()
        .write(true)
        .open(&new)
        .unwrap()
        .set_modified(same.modified().unwrap())
        .unwrap();
    fs::rename(&new, root.join("same")).unwrap();
}

/// Commits made from read points by the ranges `thin_delta` and the extent maps give equal
/// commits that read every file whole, round after round of seeded changes (and a grow); the
/// base is kept, replaced, left as it was when a point is not kept, reported in the capacity
/// and removed with its volume.
fn changed_ranges_story(fs_kind: Filesystem, mib: u64, rounds: u64) {
    use dvol_backends::{ChangesSinceBase, NoChanges};
    use dvol_snapshot::{Repository, VolumeKey};

    let b = backend();
    assert!(
        b.counts_changes(),
        "dmsetup and thin_delta are in the VM image"
    );
    let mut s = spec(mib, fs_kind);
    let mnt = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let (target, point) = (mnt.path(), scratch.path());
    let base_mount = point.with_file_name(format!(
        "{}.base",
        point.file_name().unwrap().to_string_lossy()
    ));
    let base_lv = lvm::base_lv_name(s.id);
    b.create(&s).unwrap();
    b.mount(&s, target).unwrap();
    for (seed, (name, mib)) in STORY_FILES.iter().enumerate() {
        fs::write(
            target.join(name),
            noise(seed as u64 + 1, (*mib * MIB) as usize),
        )
        .unwrap();
    }
    let repo = Repository::open(&store.path().join("history")).unwrap();
    let whole = Repository::open(&store.path().join("whole")).unwrap();
    let volume = VolumeKey(s.id);
    let started = Instant::now();
    let mut by_ranges = 0;
    for round in 0..=rounds {
        if round == 2 {
            // A grown volume: a larger device and a grown filesystem since the base.
            let grown = size(mib + 32);
            b.resize(&s, grown, target).unwrap();
            s.size = Some(grown);
        }
        if round > 0 {
            mutate(target, 0x5eed + round);
        }
        settle();
        sync_fs(target);
        b.read_point(&s, target, point).unwrap();
        let changes = b.changes_since_base(&s, point);
        let files = match (&changes, round) {
            (ChangesSinceBase::Unknown(NoChanges::NoBase), 0) => None,
            (ChangesSinceBase::Ranges(files), r) if r > 0 => Some(files.as_ref()),
            (ChangesSinceBase::Unknown(why), _) => panic!("{fs_kind} round {round}: {why}"),
            (ChangesSinceBase::Ranges(_), _) => panic!("changes without a base"),
        };
        if let Some(files) = files {
            let still = files.changed_ranges(Path::new("still")).unwrap();
            // An unchanged file may share a 64 KiB pool block with a change, no more.
            assert!(
                covered(&still) <= 64 << 10,
                "{fs_kind} round {round}: still {still:?}"
            );
            assert_eq!(
                covered(&files.changed_ranges(Path::new("other")).unwrap()),
                2 << 20,
                "{fs_kind} round {round}: a file renamed over another is new throughout"
            );
            let table = files.changed_ranges(Path::new("table")).unwrap();
            assert!(
                !table.is_empty() && covered(&table) <= 4 << 20,
                "{fs_kind} round {round}: table {table:?}"
            );
        }
        let ranged = commit_by_ranges(&repo, &volume, point, files, "round");
        let full = assert_as_whole_read(
            &repo,
            ranged.id,
            &whole,
            point,
            &format!("{fs_kind} round {round}"),
        );
        if round > 0 {
            assert!(
                ranged.stats.bytes_read < full.stats.bytes_read / 2,
                "{fs_kind} round {round}: read {} of {} bytes",
                ranged.stats.bytes_read,
                full.stats.bytes_read
            );
            by_ranges += ranged.stats.files_read_by_ranges;
        }
        drop(changes);
        b.keep_read_point(s.id);
        assert_eq!(
            b.release_read_point(s.id, target, point).unwrap(),
            Effect::Changed
        );
        assert!(lv_exists(&base_lv), "{fs_kind} round {round}: no base kept");
        assert!(read_point_lvs().is_empty() && !is_mounted(point) && !base_mount.exists());
        eprintln!(
            "TIMING {fs_kind} round {round}: read {} of {} bytes ({} files by ranges)",
            ranged.stats.bytes_read, full.stats.bytes_read, ranged.stats.files_read_by_ranges
        );
    }
    assert!(by_ranges >= rounds, "{by_ranges} files read by ranges");

    // A point not kept (a commit that failed, or a daemon killed while the base was
    // mounted): releasing it unmounts the base and leaves the older base as it was.
    settle();
    b.read_point(&s, target, point).unwrap();
    let ChangesSinceBase::Ranges(files) = b.changes_since_base(&s, point) else {
        panic!("no changed ranges")
    };
    drop(files);
    assert!(is_mounted(&base_mount));
    b.release_read_point(s.id, target, point).unwrap();
    assert!(!base_mount.exists() && !is_mounted(point) && read_point_lvs().is_empty());
    assert!(lv_exists(&base_lv));

    // The base holds alone what the volume rewrote since it was kept.
    let before = b.capacity().unwrap().base_bytes;
    assert!(
        before <= 2 << 20,
        "{fs_kind}: a base just kept holds {before} bytes alone"
    );
    {
        use std::os::unix::fs::FileExt;
        let table = fs::OpenOptions::new()
            .write(true)
            .open(target.join("table"))
            .unwrap();
        table
            .write_all_at(&noise(99, (16 * MIB) as usize), 0)
            .unwrap();
        table.sync_all().unwrap();
    }
    let held = b.capacity().unwrap().base_bytes;
    assert!(
        (16 * MIB..=24 * MIB).contains(&held),
        "{fs_kind}: 16 MiB rewritten, the base holds {held} bytes alone"
    );
    assert!(
        b.strays(&[s.id]).unwrap().is_empty(),
        "a base is its volume's"
    );
    assert_eq!(
        b.volumes()
            .unwrap()
            .iter()
            .filter(|id| **id == s.id)
            .count(),
        1
    );

    b.unmount(s.id, target).unwrap();
    assert_eq!(b.remove(s.id).unwrap(), Effect::Changed);
    assert!(!lv_exists(&base_lv) && !lv_exists(&lvm::lv_name(s.id)));
    eprintln!(
        "TIMING {fs_kind} changed-range story ({rounds} rounds): {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn in_vm_changed_ranges_from_thin_delta_equal_whole_reads_on_ext4() {
    if !in_vm() {
        return;
    }
    changed_ranges_story(Filesystem::Ext4, 128, 5);
}

#[test]
fn in_vm_changed_ranges_from_thin_delta_equal_whole_reads_on_xfs() {
    if !in_vm() {
        return;
    }
    changed_ranges_story(Filesystem::Xfs, 300, 3);
}

// ------------------------------------------------------------------------------------------
// A running PostgreSQL on a gold volume: commits by changed ranges that recover.
// ------------------------------------------------------------------------------------------

/// Where the VM image keeps PostgreSQL 15 (build.sh copies it from the host's packages).
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The uid and gid of user postgres in the VM image.
const PG_UID: u32 = 999;
/// pgbench's scale: 100,000 accounts, about 15 MiB, so the accounts table is a file of many
/// chunks (and the VM, a debug build under software emulation, reads it in seconds).
const PG_SCALE: u64 = 1;

/// A PostgreSQL client or server program, run as user postgres.
fn pg_command(program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(Path::new(PG_BIN).join(program));
    command
        .uid(PG_UID)
        .gid(PG_UID)
        .current_dir("/tmp")
        .env("TZ", "UTC")
        .env("HOME", "/tmp");
    command
}

/// Runs `command` to its end; its stdout, or a panic with what it printed.
fn pg_must(command: &mut Command) -> String {
    let out = command.output().expect("run a PostgreSQL program");
    assert!(
        out.status.success(),
        "{command:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A PostgreSQL server on the cluster in `data` (made by initdb if it holds none), talking
/// only on a Unix socket in /tmp at `port`; stopped (fast shutdown) when dropped.
struct PgServer {
    child: std::process::Child,
    port: u16,
}

impl PgServer {
    fn start(data: &Path, port: u16) -> PgServer {
        if !data.join("PG_VERSION").exists() {
            fs::create_dir_all(data).unwrap();
            rustix::fs::chown(
                data,
                Some(rustix::fs::Uid::from_raw(PG_UID)),
                Some(rustix::fs::Gid::from_raw(PG_UID)),
            )
            .unwrap();
            pg_must(pg_command("initdb").arg("-D").arg(data).args([
                "-E",
                "UTF8",
                "--locale=C",
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                // 1 MiB WAL segments instead of 16: less to read in the VM.
                "--wal-segsize=1",
            ]));
        }
        let log = PathBuf::from(format!("/tmp/postgres-{port}.log"));
        let child = pg_command("postgres")
            .arg("-D")
            .arg(data)
            .args(["-k", "/tmp", "-p", &port.to_string()])
            .args(["-c", "listen_addresses=", "-c", "shared_buffers=32MB"])
            .args(["-c", "max_wal_size=16MB", "-c", "min_wal_size=4MB"])
            .args(["-c", "jit=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start postgres");
        let server = PgServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(180);
        while server.try_query("select 1").is_none() {
            assert!(
                Instant::now() < deadline,
                "postgres on {} did not accept connections within 180 s: {}",
                data.display(),
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    fn client(&self, program: &str) -> Command {
        let mut command = pg_command(program);
        command.args(["-h", "/tmp", "-p", &self.port.to_string(), "-U", "postgres"]);
        command
    }

    fn try_query(&self, sql: &str) -> Option<String> {
        let out = self
            .client("psql")
            .args(["-XAtc", sql, "postgres"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The value of `sql` (one row, one column).
    fn query(&self, sql: &str) -> String {
        pg_must(self.client("psql").args(["-XAtc", sql, "postgres"]))
    }

    /// Rows in pgbench's history table: one per transaction committed.
    fn history_rows(&self) -> u64 {
        let rows = self.query("select count(*) from pgbench_history");
        rows.parse()
            .unwrap_or_else(|_| panic!("history rows: {rows:?}"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        interrupt(&self.child);
        let _ = self.child.wait();
    }
}

/// Sends `child` SIGINT: a fast shutdown for the server, the end of a run for pgbench.
fn interrupt(child: &std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
}

/// A commit made while pgbench ran, with the history rows counted just before and after it.
struct PgCommit {
    id: dvol_snapshot::CommitId,
    rows_before: u64,
    rows_after: u64,
}

/// PostgreSQL on a gold (xfs) volume runs pgbench while the volume is committed three times
/// from read points, as the daemon does: the commits after the first read the database's files
/// by the changed ranges `thin_delta` gives, and each commit's tree equals a whole re-read's.
/// Each commit, cloned into a new gold volume, starts as a second server, which recovers from
/// the commit's instant as from a crash, and must pass `pg_amcheck` (heap and every index)
/// and hold pgbench's invariants: every account row, the balances of accounts, tellers and
/// branches each summing to the deltas of the history, and as many history rows as were
/// committed between just before the commit and just after it.
#[test]
fn in_vm_postgresql_on_gold_commits_while_pgbench_runs_recover_and_read_by_changed_ranges() {
    use dvol_backends::{ChangesSinceBase, NoChanges};
    use dvol_snapshot::{NoProgress, Repository, VolumeKey};
    if !in_vm() {
        return;
    }
    let started = Instant::now();
    let b = backend();
    let s = spec(320, Filesystem::Xfs);
    let mnt = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let (target, point) = (mnt.path(), scratch.path());
    let repo = Repository::open(&store.path().join("history")).unwrap();
    let whole = Repository::open(&store.path().join("whole")).unwrap();
    let volume = VolumeKey(s.id);
    b.create(&s).unwrap();
    b.mount(&s, target).unwrap();

    let server = PgServer::start(&target.join("pg"), 5432);
    pg_must(
        server
            .client("pgbench")
            .args(["-i", "-q", "-s", &PG_SCALE.to_string(), "postgres"]),
    );
    eprintln!(
        "TIMING postgres on gold: initdb, start and pgbench -i -s {PG_SCALE}: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let bench = server
        .client("pgbench")
        .args(["-c", "2", "-T", "1800", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgbench");
    let mut taken = Vec::new();
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        let rows_before = server.history_rows();
        let commit_started = Instant::now();
        b.read_point(&s, target, point).unwrap();
        let changes = b.changes_since_base(&s, point);
        let files = match &changes {
            ChangesSinceBase::Unknown(NoChanges::NoBase) if round == 0 => None,
            ChangesSinceBase::Ranges(files) if round > 0 => Some(files.as_ref()),
            ChangesSinceBase::Unknown(why) => panic!("round {round}: {why}"),
            ChangesSinceBase::Ranges(_) => panic!("changes without a base"),
        };
        let ranged = commit_by_ranges(&repo, &volume, point, files, "during pgbench");
        let commit_took = commit_started.elapsed();
        // The first commit reads every file whole; the others are checked against a whole read.
        let whole_bytes = if round > 0 {
            let what = format!("postgres round {round}");
            assert_as_whole_read(&repo, ranged.id, &whole, point, &what)
                .stats
                .bytes_read
        } else {
            ranged.stats.bytes_read
        };
        drop(changes);
        b.keep_read_point(s.id);
        b.release_read_point(s.id, target, point).unwrap();
        let rows_after = server.history_rows();
        assert!(
            rows_after > rows_before,
            "pgbench did not run during commit {round}"
        );
        if round > 0 {
            assert!(
                ranged.stats.files_read_by_ranges > 0,
                "round {round}: no file read by changed ranges: {:?}",
                ranged.stats
            );
        }
        eprintln!(
            "TIMING postgres on gold, commit {round} during pgbench: {:.2}s, read {} bytes \
             ({} files by ranges; a whole read {} bytes), stored {} bytes",
            commit_took.as_secs_f64(),
            ranged.stats.bytes_read,
            ranged.stats.files_read_by_ranges,
            whole_bytes,
            ranged.stats.new_bytes_stored
        );
        taken.push(PgCommit {
            id: ranged.id,
            rows_before,
            rows_after,
        });
    }
    // Ended by this test (SIGINT), not by an error of its own.
    interrupt(&bench);
    let out = bench.wait_with_output().expect("wait for pgbench");
    assert!(
        out.status.success()
            || std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(2),
        "pgbench failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);

    for (i, t) in taken.iter().enumerate() {
        let copy = spec(320, Filesystem::Xfs);
        let copy_mnt = tempfile::tempdir().unwrap();
        b.create(&copy).unwrap();
        b.mount(&copy, copy_mnt.path()).unwrap();
        repo.clone_volume(
            &volume,
            t.id,
            &VolumeKey(copy.id),
            copy_mnt.path(),
            &NoProgress,
        )
        .unwrap();
        let second = PgServer::start(&copy_mnt.path().join("pg"), 5433 + i as u16);
        pg_must(second.client("pg_amcheck").args([
            "--install-missing",
            "--heapallindexed",
            "-d",
            "postgres",
        ]));
        let accounts = second.query("select count(*) from pgbench_accounts");
        assert_eq!(accounts, (PG_SCALE * 100_000).to_string(), "commit {i}");
        let sums = second.query(
            "select (select sum(abalance) from pgbench_accounts) || ' ' || \
             (select sum(tbalance) from pgbench_tellers) || ' ' || \
             (select sum(bbalance) from pgbench_branches) || ' ' || \
             (select coalesce(sum(delta), 0) from pgbench_history)",
        );
        let sums: Vec<&str> = sums.split(' ').collect();
        assert!(
            sums.len() == 4 && sums.iter().all(|s| *s == sums[0]),
            "commit {i}: balances of accounts, tellers, branches and the history's deltas differ: {sums:?}"
        );
        let rows = second.history_rows();
        assert!(
            (t.rows_before..=t.rows_after).contains(&rows),
            "commit {i} holds {rows} history rows; {} were committed just before it and {} just after",
            t.rows_before,
            t.rows_after
        );
        eprintln!(
            "commit {i}: the clone recovered, passed pg_amcheck and holds {rows} transactions ({}..={})",
            t.rows_before, t.rows_after
        );
        drop(second);
        b.unmount(copy.id, copy_mnt.path()).unwrap();
        b.remove(copy.id).unwrap();
    }
    let report = repo.fsck(&NoProgress).unwrap();
    assert!(report.is_clean(), "{report:?}");
    b.unmount(s.id, target).unwrap();
    b.remove(s.id).unwrap();
    assert!(read_point_lvs().is_empty());
    eprintln!(
        "TIMING postgres on gold story: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
