//! The `dvol` CLI against a real daemon: tables, `--json`, and one-line errors.

use std::process::Output;

use dvol_tests::fixtures::*;
use dvol_tests::{dvol_bin, Daemon};
use serde_json::Value;

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "dvol failed: {}",
        stderr_as_printed(&out)
    );
    stdout_as_printed(&out)
}

/// Asserts a failure with exactly one line on stderr containing `expected`.
fn fails_with(out: Output, expected: &str) {
    assert!(
        !out.status.success(),
        "dvol should fail; stdout: {}",
        stdout_as_printed(&out)
    );
    let err = stderr_as_printed(&out);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one-line error expected: {err:?}"
    );
    assert!(
        err.starts_with("dvol: ") && err.contains(expected),
        "{err:?} lacks {expected:?}"
    );
}

fn json(out: Output) -> Value {
    serde_json::from_str(&ok(out)).expect("valid JSON")
}

#[test]
fn volume_commands_round_trip() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    assert_eq!(
        ok(daemon.cli(&["volume", "create", "cli-a@silver", "-o", "size=64M"])).trim(),
        "cli-a"
    );
    let created = json(daemon.cli(&["volume", "create", "cli-b", "--json"]));
    assert_eq!(created["profile"], "bronze", "the default profile applies");

    let table = ok(daemon.cli(&["volume", "ls"]));
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{table}");
    let row_a = lines.next().unwrap();
    assert!(
        row_a.starts_with("cli-a") && row_a.contains("silver") && row_a.contains("64MiB"),
        "{table}"
    );
    assert!(lines.next().unwrap().starts_with("cli-b"), "{table}");

    let listed = json(daemon.cli(&["volume", "ls", "--json"]));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cli-a", "cli-b"]);

    let inspected = json(daemon.cli(&["volume", "inspect", "cli-a@silver"]));
    assert_eq!(inspected["size_bytes"], 64u64 << 20);
    assert_eq!(
        (
            inspected["backend"].as_str(),
            inspected["size_enforced"].as_bool()
        ),
        (Some("loop"), Some(true))
    );

    // Grow it (unmounted: e2fsck + resize2fs); shrinking is refused with both sizes.
    assert!(ok(daemon.cli(&["volume", "resize", "cli-a", "96M"])).contains("96MiB"));
    fails_with(
        daemon.cli(&["volume", "resize", "cli-a", "32M"]),
        "cannot shrink",
    );
    assert!(inspected["mountpoint"]
        .as_str()
        .unwrap()
        .ends_with(inspected["id"].as_str().unwrap()));

    ok(daemon.cli(&["volume", "rm", "cli-a", "cli-b"]));
    assert_eq!(
        json(daemon.cli(&["volume", "ls", "--json"])),
        Value::Array(vec![])
    );
}

#[test]
fn profile_and_node_reports() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let table = ok(daemon.cli(&["profile", "ls"]));
    assert!(table.contains("bronze (default)"), "{table}");
    // Without a volume group "dvol" on this host, built-in gold falls back to a fully
    // allocated loop image and says why; silver is a sparse loop image.
    let gold = table.lines().find(|l| l.starts_with("gold")).unwrap();
    assert!(
        gold.contains("loop (preallocated)") && gold.contains("volume group dvol"),
        "{table}"
    );
    let silver = table.lines().find(|l| l.starts_with("silver")).unwrap();
    assert!(
        silver.contains("loop") && silver.contains("5GiB"),
        "{table}"
    );
    let profiles = json(daemon.cli(&["profile", "ls", "--json"]));
    assert_eq!(profiles.as_array().unwrap().len(), 3);

    let node = json(daemon.cli(&["node", "--json"]));
    assert_eq!(node["volumes"], 0);
    assert_eq!(node["backends"], serde_json::json!(["directory", "loop"]));
    let text = ok(daemon.cli(&["node"]));
    assert!(
        text.contains("backends: directory, loop") && text.contains("FREE"),
        "{text}"
    );
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    fails_with(
        daemon.cli(&["volume", "create", "../x"]),
        "invalid volume name",
    );
    fails_with(
        daemon.cli(&["volume", "create", "x@platinum"]),
        "unknown profile",
    );
    fails_with(
        daemon.cli(&["volume", "create", "x", "-o", "size"]),
        "KEY=VALUE",
    );
    fails_with(
        daemon.cli(&["volume", "create", "x", "-o", "size=-1"]),
        "invalid size",
    );
    fails_with(
        daemon.cli(&["volume", "inspect", "nothing"]),
        "no volume named \"nothing\"",
    );

    let unreachable = std::process::Command::new(dvol_bin())
        .args(["--host", "unix:///nonexistent/dvol.sock", "volume", "ls"])
        .output()
        .unwrap();
    fails_with(unreachable, "is `dvol daemon` running?");
    let bad_host = std::process::Command::new(dvol_bin())
        .args(["--host", "ftp:/x", "volume", "ls"])
        .output()
        .unwrap();
    fails_with(bad_host, "invalid --host");
}
