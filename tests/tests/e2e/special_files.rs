//! Fifos, unix sockets and device nodes in a directory (bronze) volume's history, end to end:
//! a real daemon, its REST API and the `dvol` CLI. They are committed, `dvol status` shows
//! nothing to commit, a checkout of another commit and back keeps them (a checkout of a
//! commit without them removes them), and a clone from the commit (`NAME@snapshot-REF`) has
//! them with the same kind, mode and device number. Needs root (device nodes).

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use dvol_tests::fixtures::*;
use dvol_tests::Daemon;
use serde_json::{json, Value};

/// What the test compares of each special file: its kind, permission bits and device number.
fn specials(dir: &Path) -> Vec<(String, &'static str, u32, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list the volume") {
        let entry = entry.expect("list the volume");
        let md = std::fs::symlink_metadata(entry.path()).expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_char_device() {
            "char device"
        } else if ft.is_block_device() {
            "block device"
        } else {
            continue;
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, kind, md.mode() & 0o7777, md.rdev()));
    }
    out.sort();
    out
}

fn create_bronze(daemon: &Daemon, name: &str) -> String {
    let view = api_expect(
        daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": name, "options": { "profile": "bronze" } }),
        201,
    );
    assert_eq!(view["backend"], "directory", "{view:#}");
    view["id"].as_str().expect("id").to_string()
}

fn checkout(daemon: &Daemon, volume: &str, rev: &str) -> Value {
    api_expect(
        daemon,
        "POST",
        &format!("/v1/volumes/{volume}/checkout"),
        &json!({ "ref": rev }),
        200,
    )
}

/// `dvol status` of `volume`, which must have nothing to commit.
fn assert_clean(daemon: &Daemon, volume: &str, when: &str) {
    let out = daemon.cli(&["status", "--volume", volume]);
    let text = assert_succeeded(daemon, "dvol status", &out);
    assert!(text.contains("nothing to commit"), "{when}: {text}");
    let changes = volume_status(daemon, volume);
    assert_eq!(changes, json!([]), "{when}: {changes:#}");
}

#[test]
fn fifos_sockets_and_devices_survive_commit_checkout_and_clone() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let volume = unique("special");
    let id = create_bronze(&daemon, &volume);
    let data = data_dir(&daemon, &id);
    std::fs::write(data.join("plain"), b"v0\n").expect("write");
    let c0 = commit(&daemon, &volume, "before the special files");
    let c0 = c0["commit"]["id"].as_str().expect("id").to_string();

    let _listener =
        std::os::unix::net::UnixListener::bind(data.join("sock")).expect("bind a unix socket");
    let status = std::process::Command::new("mkfifo")
        .args(["-m", "0640"])
        .arg(data.join("fifo"))
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo");
    let status = std::process::Command::new("mknod")
        .args(["-m", "0666"])
        .arg(data.join("null"))
        .args(["c", "1", "3"])
        .status()
        .expect("run mknod");
    assert!(status.success(), "mknod c 1 3");
    std::fs::set_permissions(data.join("sock"), std::fs::Permissions::from_mode(0o750))
        .expect("chmod the socket");
    let expected = specials(&data);
    assert_eq!(
        expected.iter().map(|s| s.1).collect::<Vec<_>>(),
        ["fifo", "char device", "socket"],
        "{expected:?}"
    );
    assert_eq!(expected[1].3, libc_makedev(1, 3));

    let changes = volume_status(&daemon, &volume);
    assert_eq!(
        changes.as_array().map(Vec::len),
        Some(3),
        "status lists the new special files: {changes:#}"
    );
    let c1 = commit(&daemon, &volume, "with special files");
    let c1 = c1["commit"]["id"].as_str().expect("id").to_string();
    assert_clean(&daemon, &volume, "after the commit");

    // Another commit that keeps them, and a checkout of it and back.
    std::fs::write(data.join("plain"), b"v2\n").expect("write");
    let c2 = commit(&daemon, &volume, "plain changed");
    let c2 = c2["commit"]["id"].as_str().expect("id").to_string();
    checkout(&daemon, &volume, &c1);
    assert_eq!(specials(&data), expected, "after checking out {c1}");
    assert_clean(&daemon, &volume, "after checking out the commit with them");
    checkout(&daemon, &volume, &c2);
    assert_eq!(specials(&data), expected, "after checking out {c2}");
    // A commit without them removes them; checking the commit with them out brings them back.
    checkout(&daemon, &volume, &c0);
    assert_eq!(specials(&data), [], "after checking out {c0}");
    checkout(&daemon, &volume, &c1);
    assert_eq!(specials(&data), expected, "after checking {c1} out again");
    assert_clean(&daemon, &volume, "after checking out and back");

    // A clone from the commit has them too.
    let clone = unique("special-clone");
    let view = api_expect(
        &daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": format!("{clone}@snapshot-{}", &c1[..12]) }),
        201,
    );
    let clone_id = view["id"].as_str().expect("id").to_string();
    let clone_data = data_dir(&daemon, &clone_id);
    assert_eq!(specials(&clone_data), expected, "in the clone");
    assert_eq!(
        std::fs::read(clone_data.join("plain")).expect("read"),
        b"v0\n"
    );
    assert_clean(&daemon, &clone, "the clone");
    assert_fsck_clean(&daemon, "after the clone");
}

/// Linux's `makedev` (the glibc encoding of a device number in `st_rdev`).
fn libc_makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}
