//! The `dvol` CLI against a real daemon: tables, `--json`, and one-line errors.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Output, Stdio};

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

    let version = json(daemon.cli(&["version", "--json"]));
    assert_eq!(version["client"]["version"], node["version"], "{version}");
    assert_eq!(version["daemon"]["version"], node["version"], "{version}");
    assert_eq!(version["client"]["api"], 1);
    let gone = std::process::Command::new(dvol_bin())
        .args(["--host", "unix:///nonexistent/dvol.sock", "version"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "no daemon: a non-zero exit");
    assert!(
        String::from_utf8_lossy(&gone.stdout).starts_with("client: dvol "),
        "the client's part is printed all the same"
    );
    // The daemon's stderr is a file here, not a terminal: no colour codes in its log.
    assert!(!daemon.log().contains('\u{1b}'), "{}", daemon.log());
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

    // The plugin socket (dvol's, but not its API) and the Docker Engine's socket answer HTTP
    // too: the CLI says what it reached instead of passing their answers on.
    let plugin = format!("unix://{}", daemon.plugin_socket.display());
    let wrong = std::process::Command::new(dvol_bin())
        .args(["--host", &plugin, "volume", "ls"])
        .output()
        .unwrap();
    fails_with(wrong, "is not a dvol API socket");
    if dvol_tests::require("Docker Engine", dvol_tests::docker_ready()) {
        let docker = std::process::Command::new(dvol_bin())
            .args(["--host", "unix:///var/run/docker.sock", "log", "-V", "x"])
            .output()
            .unwrap();
        let message = String::from_utf8_lossy(&docker.stderr).to_string();
        assert!(!docker.status.success());
        assert!(
            message.contains("is not a dvol API socket") && message.contains("Docker"),
            "{message}"
        );
    }
}

/// A loop volume larger than the state root's filesystem can hold in one file (ext4: 16 TiB
/// less one block) is refused naming that limit, and leaves nothing behind; sizes written
/// loosely are refused naming the accepted forms.
#[test]
fn sizes_beyond_the_roots_largest_file_or_loosely_written_are_refused() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let stat = rustix::fs::statfs(&daemon.root).unwrap();
    if stat.f_type as u32 != 0xEF53 {
        assert!(
            !dvol_tests::require_all(),
            "an ext4 state root is required (DVOL_REQUIRE_ALL=1); {} is not ext4",
            daemon.root.display()
        );
        eprintln!("skipped: the state root is not on ext4");
        return;
    }
    let limit = ((1u64 << 32) - 1) * stat.f_bsize as u64;
    fails_with(
        daemon.cli(&["volume", "create", "huge@silver", "-o", "size=17T"]),
        "a 17TiB volume does not fit in one image file on the filesystem holding",
    );
    fails_with(
        daemon.cli(&["volume", "create", "huge@silver", "-o", "size=17T"]),
        &format!("its largest file is {limit} bytes"),
    );
    assert_eq!(
        json(daemon.cli(&["volume", "ls", "--json"])),
        Value::Array(vec![])
    );
    let images = daemon.root.join("backends").join("loop");
    let left: Vec<_> = std::fs::read_dir(&images)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", images.display());

    for loose in ["1_000M", "16.M", "10 M", "1e3", " 1G", "+1G"] {
        fails_with(
            daemon.cli(&[
                "volume",
                "create",
                "loose@silver",
                "-o",
                &format!("size={loose}"),
            ]),
            "512M, 10G, 1.5T, 10GiB, or a byte count such as 1073741824",
        );
    }
    assert!(
        ok(daemon.cli(&["volume", "create", "exact@silver", "-o", "size=64MiB"])).contains("exact")
    );
    ok(daemon.cli(&["volume", "rm", "exact"]));
}

/// Runs `dvol args` against `daemon` with its current volume kept in `config`.
fn cli_in(daemon: &Daemon, config: &tempfile::TempDir, args: &[&str]) -> Output {
    daemon
        .cli_command(args)
        .env("DVOL_CONFIG_DIR", config.path())
        .env("USER", "tester")
        .output()
        .expect("run dvol")
}

/// The backend directory holding bronze volume `name`'s files.
fn bronze_data(daemon: &Daemon, name: &str) -> PathBuf {
    let inspected = json(daemon.cli(&["volume", "inspect", name]));
    assert_eq!(inspected["backend"], "directory", "{inspected}");
    daemon
        .root
        .join("backends")
        .join("directory")
        .join(inspected["id"].as_str().unwrap())
}

/// A file name, a commit message and an author with newlines and terminal escapes cannot
/// forge lines in the text output: each shows as one C-style escaped line (as git quotes
/// paths), while `--json` keeps the exact bytes.
#[test]
fn names_with_control_characters_are_escaped_in_text_and_exact_in_json() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let config = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| ok(cli_in(&daemon, &config, args));
    run(&["init", "spoof"]);
    let data = bronze_data(&daemon, "spoof");
    let evil = "x\n M evil";
    std::fs::write(data.join(evil), b"abc").unwrap();
    std::fs::write(data.join("bell\x07\x1b[2Jclear"), b"d").unwrap();
    std::fs::write(data.join("quote\"back\\slash"), b"e").unwrap();
    std::fs::write(data.join("plain.txt"), b"f").unwrap();

    let status = run(&["status"]);
    let lines: Vec<&str> = status.lines().collect();
    assert!(
        lines.contains(&"A \"x\\n M evil\" (3B)"),
        "the name shows as one quoted line: {status:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(" M evil") || l.starts_with("M evil")),
        "no forged line: {status:?}"
    );
    assert!(
        lines.contains(&"A \"bell\\a\\033[2Jclear\" (1B)"),
        "{status:?}"
    );
    assert!(
        lines.contains(&"A \"quote\\\"back\\\\slash\" (1B)"),
        "{status:?}"
    );
    assert!(lines.contains(&"A plain.txt (1B)"), "{status:?}");
    assert!(
        !status.contains('\x1b') && !status.contains('\x07'),
        "{status:?}"
    );
    assert!(
        status.contains("4 uncommitted change(s): 4 added"),
        "{status:?}"
    );

    let exact = json(cli_in(&daemon, &config, &["status", "--json"]));
    let paths: Vec<&str> = exact
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&evil),
        "--json keeps the exact name: {paths:?}"
    );

    // A message and an author with a carriage return and an escape sequence.
    let message = "fine\r[master 000000000000] forged\x1b[1A";
    run(&["commit", "-m", message, "--author", "eve\x1b[2K"]);
    let oneline = run(&["log", "--graph"]);
    assert!(
        !oneline.contains('\r') && !oneline.contains('\x1b'),
        "{oneline:?}"
    );
    assert!(
        oneline.contains("fine\\r[master 000000000000] forged\\033[1A"),
        "{oneline:?}"
    );
    let full = run(&["log"]);
    assert!(!full.contains('\r') && !full.contains('\x1b'), "{full:?}");
    assert!(full.contains("Author: eve\\033[2K"), "{full:?}");
    let reflog = run(&["reflog"]);
    assert!(
        !reflog.contains('\r') && !reflog.contains('\x1b'),
        "{reflog:?}"
    );
    assert!(reflog.contains("forged\\033[1A"), "{reflog:?}");
    let logged = json(cli_in(&daemon, &config, &["log", "--json"]));
    assert_eq!(logged["commits"][0]["message"], message, "{logged}");

    std::fs::remove_file(data.join(evil)).unwrap();
    run(&["commit", "-m", "gone"]);
    let diff = run(&["diff", "HEAD^"]);
    assert!(diff.lines().any(|l| l == "D \"x\\n M evil\""), "{diff:?}");

    // An error quoting what the user typed cannot forge lines or escapes either.
    let out = cli_in(&daemon, &config, &["checkout", "nosuch\x1b[2J\rforged"]);
    assert!(!out.status.success());
    let err = stderr_as_printed(&out);
    // The progress line before the error names the revision too.
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err:?}");
    assert!(lines[0].ends_with("..."), "{err:?}");
    assert!(lines[1].starts_with("dvol: "), "{err:?}");
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    for line in lines {
        assert!(line.contains("nosuch\\033[2J\\rforged"), "{err:?}");
    }
}

/// `dvol status | head -1`: when the reader of its output goes away, dvol stops quietly
/// with status 141 (128 + SIGPIPE, what a shell reports for git or ls killed by the signal),
/// not with a panic.
#[test]
fn a_closed_output_pipe_ends_dvol_quietly() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let config = tempfile::tempdir().unwrap();
    ok(cli_in(&daemon, &config, &["init", "piped"]));
    let data = bronze_data(&daemon, "piped");
    // More than a pipe holds (64 KiB), so dvol is still writing when the reader goes.
    for i in 0..10_000 {
        std::fs::write(data.join(format!("file-{i:05}")), b"x").unwrap();
    }
    for args in [&["status"][..], &["status", "--json"]] {
        let mut child = daemon
            .cli_command(args)
            .env("DVOL_CONFIG_DIR", config.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader takes one line, as `head -1` does, and goes away.
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 1];
        let _ = stdout.read(&mut first);
        drop(stdout);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "dvol {args:?}: {stderr}"
        );
        assert_eq!(status.code(), Some(141), "dvol {args:?}: {status} {stderr}");
    }
}
