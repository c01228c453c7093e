//! The CLI's tools around the daemon: the daemon's log formats and filter, `dvol doctor`,
//! shell completions and manual pages.

use std::path::Path;
use std::process::{Command, Output};

use dvol_tests::fixtures::*;
use dvol_tests::{daemon_must_fail, dvol_bin, is_root, require, Daemon};
use serde_json::Value;

/// Every check `dvol doctor` makes against a daemon whose profiles are the built-in ones.
const CHECKS: &[&str] = &[
    "privileges",
    "loop-control",
    "mkfs.ext4",
    "mkfs.xfs",
    "daemon",
    "lvm:gold",
    "docker",
    "plugin-dir",
    "plugin-socket",
    "root-lock",
    "root-space",
];

/// The doctor's lines by check name: (status, rest of the line).
fn doctor_lines(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let status = parts.next().unwrap_or_default().to_string();
            let check = parts.next().unwrap_or_default().to_string();
            (status, check, line.to_string())
        })
        .collect()
}

/// The check `name` of a `dvol doctor --json` answer.
fn json_check<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["checks"]
        .as_array()
        .expect("checks is an array")
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {answer:#}"))
}

/// Runs `dvol ARGS` without a daemon.
fn dvol(args: &[&str]) -> Output {
    Command::new(dvol_bin())
        .args(args)
        .output()
        .expect("run dvol")
}

/// The doctor of `daemon`, told the daemon's state root and plugin socket.
fn doctor(daemon: &Daemon, extra: &[&str]) -> Output {
    let root = daemon.root.display().to_string();
    let plugin = daemon.plugin_socket.display().to_string();
    let mut args = vec!["doctor", "--root", &root, "--plugin-socket", &plugin];
    args.extend(extra);
    daemon.cli(&args)
}

#[test]
fn a_json_log_is_one_object_per_line_with_level_target_and_fields() {
    let daemon = Daemon::start_with(vec![
        "--log-format".into(),
        "json".into(),
        "--log".into(),
        "info,dvol_plugin=debug".into(),
    ]);
    // The daemon logs `serving` once its sockets are bound, which may be after they answer.
    wait_until(&daemon, "the daemon logs `serving`", 10, || {
        daemon.log().contains("\"serving\"")
    });
    let log = daemon.log();
    let events: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in\n{log}")))
        .collect();
    assert!(!events.is_empty(), "no log at all");
    for event in &events {
        assert!(
            event["level"].is_string()
                && event["target"].is_string()
                && event["fields"].is_object()
                && event["timestamp"].is_string(),
            "{event}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "INFO" && e["fields"]["message"] == "serving"),
        "no `serving` event: {log}"
    );
    // The harness activated the plugin: dvol_plugin=debug lets its debug event through.
    assert!(
        events.iter().any(|e| e["level"] == "DEBUG"
            && e["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("dvol_plugin"))),
        "no debug event of dvol_plugin: {log}"
    );
}

#[test]
fn a_text_log_into_a_file_has_no_colour_and_the_default_filter_no_debug() {
    let daemon = Daemon::start();
    wait_until(&daemon, "the daemon logs `serving`", 10, || {
        daemon.log().contains("serving")
    });
    let log = daemon.log();
    assert!(
        !log.contains('\u{1b}'),
        "escape bytes in a log file: {log:?}"
    );
    assert!(!log.trim_start().starts_with('{'), "text, not JSON: {log}");
    assert!(!log.contains("DEBUG"), "info hides debug: {log}");
}

#[test]
fn a_log_filter_naming_no_target_is_refused_naming_the_directive_and_the_targets() {
    let dir = tempfile::tempdir().unwrap();
    let err = daemon_must_fail(dir.path(), &["--log", "info,dvol_plugn=debug"]);
    assert_contains_all(
        &err,
        &[
            "\"dvol_plugn=debug\"",
            "dvol_plugin",
            "dvol_backends",
            "dvol_snapshot",
            "rustls",
        ],
    );
    let err = daemon_must_fail(dir.path(), &["--log", "foo=info"]);
    assert_contains_all(&err, &["\"foo=info\"", "dvol_plugin"]);
    let err = daemon_must_fail(dir.path(), &["--log", "dvol_plugin=loud"]);
    assert_contains_all(&err, &["cannot parse", "\"dvol_plugin=loud\""]);
}

#[test]
fn a_log_filter_naming_a_crate_of_the_daemon_works() {
    let daemon = Daemon::start_with(vec!["--log".into(), "dvol_plugin=debug".into()]);
    assert_alive(&daemon);
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains("DEBUG") && l.contains("dvol_plugin")),
        "no debug line of dvol_plugin: {log}"
    );
}

#[test]
fn doctor_on_a_working_host_passes_every_check() {
    if !require("root", is_root()) {
        return;
    }
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let out = doctor(&daemon, &[]);
    let text = stdout_as_printed(&out);
    assert!(
        out.status.success(),
        "doctor failed on a working host:\n{text}{}",
        stderr_as_printed(&out)
    );
    let lines = doctor_lines(&text);
    for name in CHECKS {
        let (status, _, line) = lines
            .iter()
            .find(|(_, check, _)| check == name)
            .unwrap_or_else(|| panic!("no check {name}:\n{text}"));
        assert!(status == "ok" || status == "warn", "{line}");
    }
    for (status, _, line) in &lines {
        assert!(
            ["ok", "warn"].contains(&status.as_str()),
            "unexpected line {line:?}"
        );
        if status == "warn" {
            assert!(line.contains(" — "), "a warning says what to do: {line}");
        }
    }
    for name in ["daemon", "plugin-socket", "root-lock", "docker"] {
        let (status, _, line) = lines.iter().find(|(_, c, _)| c == name).unwrap();
        assert_eq!(status, "ok", "{line}");
    }
    let (_, _, lock) = lines.iter().find(|(_, c, _)| c == "root-lock").unwrap();
    assert!(lock.contains(&format!("pid {}", daemon.pid())), "{lock}");

    let out = doctor(&daemon, &["--json"]);
    assert!(out.status.success(), "{}", stderr_as_printed(&out));
    let answer: Value = serde_json::from_str(&stdout_as_printed(&out)).expect("JSON");
    assert_eq!(answer["failed"], 0, "{answer:#}");
    for name in CHECKS {
        let check = json_check(&answer, name);
        assert!(
            check["status"] == "ok" || check["status"] == "warn",
            "{check}"
        );
        assert!(check["detail"].is_string(), "{check}");
    }
    assert_eq!(json_check(&answer, "daemon")["status"], "ok");
}

#[test]
fn doctor_without_a_daemon_fails_the_daemon_check_and_still_checks_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nobody.sock");
    let host = format!("unix://{}", socket.display());
    let root = dir.path().join("root");
    let root = root.to_str().unwrap();
    let out = dvol(&["--host", &host, "doctor", "--root", root]);
    let text = stdout_as_printed(&out);
    assert!(
        !out.status.success(),
        "doctor passed without a daemon:\n{text}"
    );
    let lines = doctor_lines(&text);
    let (status, _, line) = lines
        .iter()
        .find(|(_, c, _)| c == "daemon")
        .unwrap_or_else(|| panic!("no daemon check:\n{text}"));
    assert_eq!(status, "fail", "{line}");
    assert_contains_all(line, &[&format!("not answering on {host}"), "dvol daemon"]);
    for name in [
        "privileges",
        "loop-control",
        "mkfs.ext4",
        "docker",
        "root-space",
    ] {
        assert!(
            lines.iter().any(|(_, c, _)| c == name),
            "the host check {name} runs without a daemon:\n{text}"
        );
    }
    let err = stderr_as_printed(&out);
    assert!(err.starts_with("dvol: ") && err.contains("daemon"), "{err}");

    let out = dvol(&["--host", &host, "doctor", "--root", root, "--json"]);
    assert!(!out.status.success());
    let answer: Value = serde_json::from_str(&stdout_as_printed(&out)).expect("JSON");
    assert_eq!(
        json_check(&answer, "daemon")["status"],
        "fail",
        "{answer:#}"
    );
    assert!(answer["failed"].as_u64().unwrap() >= 1, "{answer:#}");
}

#[test]
fn doctor_fails_a_profile_on_a_missing_volume_group_naming_it() {
    if !require("root", is_root()) {
        return;
    }
    let (daemon, vg, _config) = daemon_with_a_missing_volume_group("dvol-doctor-vg");
    let out = doctor(&daemon, &[]);
    let text = stdout_as_printed(&out);
    assert!(!out.status.success(), "doctor passed:\n{text}");
    let lines = doctor_lines(&text);
    let (status, _, line) = lines
        .iter()
        .find(|(_, c, _)| c == "lvm:fast")
        .unwrap_or_else(|| panic!("no check of profile fast:\n{text}"));
    assert_eq!(status, "fail", "{line}");
    assert_contains_all(line, &[&format!("volume group {vg} not found"), " — "]);
    let (status, _, line) = lines.iter().find(|(_, c, _)| c == "daemon").unwrap();
    assert_eq!(status, "ok", "{line}");
    assert!(stderr_as_printed(&out).contains("lvm:fast"));

    let out = doctor(&daemon, &["--json"]);
    assert!(!out.status.success());
    let answer: Value = serde_json::from_str(&stdout_as_printed(&out)).expect("JSON");
    let fast = json_check(&answer, "lvm:fast");
    assert_eq!(fast["status"], "fail", "{fast}");
    assert!(fast["detail"].as_str().unwrap().contains(&vg), "{fast}");
    assert!(fast["fix"].is_string(), "{fast}");
}

/// The subcommands `dvol --help` lists (but `help`).
fn subcommands() -> Vec<String> {
    let help = stdout_as_printed(&dvol(&["--help"]));
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A description that wraps goes on deeper: only the lines of two spaces name one.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() > 20, "{help}");
    names
}

#[test]
fn bash_completions_parse_and_offer_the_subcommands() {
    let out = dvol(&["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr_as_printed(&out));
    let script = stdout_as_printed(&out);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dvol.bash");
    std::fs::write(&file, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        stderr_as_printed(&check)
    );
    for name in subcommands() {
        assert!(script.contains(&name), "no {name} in the bash completions");
    }
    assert!(script.contains("complete"), "{script}");
    for shell in ["zsh", "fish"] {
        let out = dvol(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr_as_printed(&out));
        assert!(stdout_as_printed(&out).contains("doctor"), "{shell}");
    }
    let out = dvol(&["completions", "tcsh"]);
    assert!(!out.status.success(), "an unknown shell is refused");
}

/// Whether `program` runs here.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Asserts that `page` is a manual page: a `.TH` header naming `title`, and, where groff is
/// installed, rendered by it (reading UTF-8, as `man` has it read) without a warning.
fn assert_man_page(page: &Path, title: &str) {
    let text = std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    let header = text
        .lines()
        .find(|l| l.starts_with(".TH "))
        .unwrap_or_else(|| panic!("no .TH in {}", page.display()));
    assert!(header.starts_with(&format!(".TH {title} 1")), "{header}");
    if installed("groff") {
        let out = Command::new("groff")
            // -P-cbou: plain text, without bold or underline by overstriking.
            .args(["-k", "-man", "-Tutf8", "-ww", "-P-cbou"])
            .arg(page)
            .output()
            .unwrap();
        let shown = stdout_as_printed(&out);
        assert!(
            out.status.success() && stderr_as_printed(&out).is_empty(),
            "groff on {}: {}",
            page.display(),
            stderr_as_printed(&out)
        );
        assert!(
            shown.starts_with(&format!("{title}(1)"))
                && shown.contains(&format!("NAME\n       {title} ")),
            "{shown}"
        );
    }
}

#[test]
fn man_writes_a_readable_page_for_dvol_and_each_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    let out = dvol(&["man", "--dir", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr_as_printed(&out));
    assert_man_page(&pages.join("dvol.1"), "dvol");
    for name in subcommands() {
        let title = format!("dvol-{name}");
        assert_man_page(&pages.join(format!("{title}.1")), &title);
    }
    assert_man_page(&pages.join("dvol-volume-create.1"), "dvol-volume-create");
    let written = std::fs::read_dir(&pages).unwrap().count();
    assert!(
        stdout_as_printed(&out).contains(&format!("wrote {written} manual pages")),
        "{}",
        stdout_as_printed(&out)
    );
}
