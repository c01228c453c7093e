//! The REST API against a property-based fuzzer: schemathesis reads the OpenAPI document a
//! real `dvol daemon` serves on TCP (`--listen`, with the bearer token), generates requests for
//! every operation (valid and invalid bodies, paths and queries) and checks that no answer is a
//! 5xx, that every answer's status and content type are documented for its operation and that
//! every JSON body matches its documented schema.
//!
//! schemathesis comes from PyPI, pinned to [`SCHEMATHESIS_VERSION`]; `scripts/install-deps.sh`
//! installs it in [`VENV`]. The test finds it there, at `DVOL_SCHEMATHESIS`, or on `PATH`; without
//! it the test skips, and under `DVOL_REQUIRE_ALL=1` it fails. Each run draws a new seed and
//! prints it with the output; `DVOL_SCHEMATHESIS_SEED=N` runs that seed again.
//!
//! Some operations are left out, each for the reason [`EXCLUDED`] gives. The volume operations
//! work on a seeded volume (commits, a tag and a branch), and the transfer operations on a
//! remote that is the daemon itself, so they reach more than "no such volume" or "no such
//! remote".

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dvol_tests::{is_root, require, Daemon};
use serde_json::Value;

/// The schemathesis release the test is written for (`scripts/install-deps.sh` installs it).
const SCHEMATHESIS_VERSION: &str = "4.32.5";

/// The virtual environment `scripts/install-deps.sh` installs schemathesis in.
const VENV: &str = "/opt/dvol-test-venv";

/// The token the fuzzed daemon requires on TCP.
const TOKEN: &str = "api-schema-fuzz-token-0123456789abcdef";

/// The operations the fuzzer leaves alone, and why.
const EXCLUDED: &[(&str, &str)] = &[
    (
        "addRemote",
        "it stores whatever URL the fuzzer invents, and push, pull, fetch, move and clone would then connect to those hosts",
    ),
    (
        "receiveObjects",
        "an object stream between daemons (application/octet-stream frames), not JSON the fuzzer can shape",
    ),
    (
        "fetchObjects",
        "an object stream between daemons (application/octet-stream frames), not JSON the fuzzer can shape",
    ),
    (
        "gc",
        "it rewrites the whole history repository every call; fsck covers the maintenance routes",
    ),
];

/// At most this many generated requests per operation and phase: the run takes about a minute.
const MAX_EXAMPLES: u32 = 30;

/// The run is killed (and the test fails) after this long.
const TIME_LIMIT: Duration = Duration::from_secs(240);

/// The volume the volume operations work on, and the one `DELETE /v1/volumes/{name}` may remove.
const SEEDED: &str = "fuzz-seeded";
const DOOMED: &str = "fuzz-doomed";

/// The remote the transfer operations use: the fuzzed daemon itself.
const REMOTE: &str = "self";

/// schemathesis' configuration: the volume operations work on [`SEEDED`] (the transfer ones
/// with [`REMOTE`]), clone clones it from [`REMOTE`], and the delete removes [`DOOMED`];
/// every other field and parameter is the fuzzer's.
fn fuzz_config_toml() -> String {
    format!(
        r#"[[operations]]
include-path-regex = '^/v1/volumes/\{{name\}}/'
exclude-operation-id = ["push", "pull", "fetch", "move"]
parameters = {{ "path.name" = "{SEEDED}" }}

[[operations]]
include-operation-id = ["push", "pull", "fetch", "move"]
parameters = {{ "path.name" = "{SEEDED}", "body.remote" = "{REMOTE}" }}

[[operations]]
include-operation-id = "clone"
parameters = {{ "body.remote" = "{REMOTE}", "body.volume" = "{SEEDED}" }}

[[operations]]
include-operation-id = "deleteVolume"
parameters = {{ "path.name" = "{DOOMED}" }}
"#
    )
}

/// schemathesis' command: `DVOL_SCHEMATHESIS`, the venv of `scripts/install-deps.sh`, or `PATH`.
fn schemathesis() -> Option<PathBuf> {
    let candidates = std::env::var_os("DVOL_SCHEMATHESIS")
        .map(PathBuf::from)
        .into_iter()
        .chain([Path::new(VENV).join("bin/schemathesis")])
        .chain(
            std::env::var_os("PATH")
                .map(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join("schemathesis"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
    candidates.into_iter().find(|candidate| {
        Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A port free right now on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Calls the daemon's REST API on its unix socket and asserts the status.
fn api_ok(daemon: &Daemon, method: &str, path: &str, body: &str, status: u16) -> Value {
    let response = daemon.api(method, path, body);
    let value = response.json();
    assert_eq!(response.status, status, "{method} {path} {body}: {value}");
    value
}

/// Runs `command` to its end or until [`TIME_LIMIT`], returning its exit success and output.
fn run_bounded(mut command: Command) -> (bool, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start schemathesis");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            break Some(status);
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = format!("{}{}", out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => (status.success(), output),
        None => (
            false,
            format!(
                "schemathesis was killed after {} s\n{output}",
                TIME_LIMIT.as_secs()
            ),
        ),
    }
}

/// The number of operations a document lists (a path item's other keys, such as shared
/// `parameters`, are not operations).
fn operation_count(document: &Value) -> usize {
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    document["paths"]
        .as_object()
        .expect("the document has paths")
        .values()
        .map(|item| METHODS.iter().filter(|m| item.get(**m).is_some()).count())
        .sum()
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_its_schema() {
    if !require("root", is_root()) {
        return;
    }
    let found = schemathesis();
    if !require(
        &format!(
            "schemathesis {SCHEMATHESIS_VERSION} (scripts/install-deps.sh installs it in {VENV})"
        ),
        found.is_some(),
    ) {
        return;
    }
    let schemathesis = found.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "default_profile = \"bronze\"\n[profiles.bronze]\nbackend = \"directory\"\n",
    )
    .unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let daemon = Daemon::start_with(vec![
        "--config".into(),
        config.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--token-file".into(),
        token_file.display().to_string(),
    ]);

    // A volume with history for the volume operations, and one for the delete to remove.
    for name in [SEEDED, DOOMED] {
        api_ok(
            &daemon,
            "POST",
            "/v1/volumes",
            &format!(r#"{{"name":"{name}"}}"#),
            201,
        );
    }
    let volume = format!("/v1/volumes/{SEEDED}");
    for message in ["first", "second"] {
        api_ok(
            &daemon,
            "POST",
            &format!("{volume}/commits"),
            &format!(r#"{{"message":"{message}"}}"#),
            201,
        );
    }
    api_ok(
        &daemon,
        "POST",
        &format!("{volume}/tags"),
        r#"{"name":"v1"}"#,
        201,
    );
    api_ok(
        &daemon,
        "POST",
        &format!("{volume}/branches"),
        r#"{"name":"side"}"#,
        201,
    );

    let document = api_ok(&daemon, "GET", "/v1/openapi.json", "", 200);
    // schemathesis leaves out the operation that serves the document it loads.
    let total = operation_count(&document) - 1;
    let selected = total - EXCLUDED.len();

    let fuzz_config = dir.path().join("schemathesis.toml");
    std::fs::write(&fuzz_config, fuzz_config_toml()).unwrap();

    let mut command = Command::new(&schemathesis);
    command
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(&fuzz_config)
        .arg("run")
        .arg(format!("http://127.0.0.1:{port}/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", &MAX_EXAMPLES.to_string()])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        .args(["--wait-for-schema", "30"])
        .arg("--no-color");
    // Each run draws a new seed and prints it; DVOL_SCHEMATHESIS_SEED replays one.
    if let Some(seed) = std::env::var_os("DVOL_SCHEMATHESIS_SEED") {
        command.arg("--seed").arg(seed);
    }
    for (operation, _why) in EXCLUDED {
        command.args(["--exclude-operation-id", operation]);
    }
    let started = Instant::now();
    let (passed, output) = run_bounded(command);
    eprintln!(
        "schemathesis ran {:.1} s:\n{output}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        passed,
        "schemathesis found answers that are 5xx or break the OpenAPI document (each failure above has a curl line to reproduce it); daemon log:\n{}",
        daemon.log()
    );
    assert!(
        output.contains(&format!("Selected: {selected}/{total}"))
            && output.contains(&format!("Tested: {selected}")),
        "schemathesis did not test the {selected} operations of {total} it should have:\n{output}"
    );
    // The daemon survived the run and still answers with the token.
    api_ok(&daemon, "GET", "/v1/health", "", 200);
    api_ok(&daemon, "GET", &volume, "", 200);
}
