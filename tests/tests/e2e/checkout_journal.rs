//! Checkout and reset that nothing can leave half done, with the real Docker Engine:
//!
//! - `kill -9` of the daemon in the middle of a checkout that stopped a running container:
//!   the restart finishes the checkout from the operation journal (the volume holds exactly
//!   the target commit, no `.dvol-tmp-*` file is left among the user's files, HEAD is where
//!   the checkout meant it to be) and starts the container again;
//! - a container run with `docker run --rm`, which the engine deletes when it stops: checkout
//!   and reset refuse to stop it, naming it, and change nothing, unless `--stop-removable`.
//!
//! Each test runs its own daemon (own root, own Docker driver name) and its own names.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dvol_tests::fixtures::*;
use dvol_tests::Daemon;
use serde_json::{json, Value};

/// A container's loop; it ends at once on SIGTERM, so a stop takes about a second, not the
/// engine's stop timeout.
const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// The name of the temporary files the history library writes before renaming them.
const TEMP_PREFIX: &str = ".dvol-tmp-";

/// The `.dvol-tmp-*` files under `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                found.push(entry.path());
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(entry.path());
            }
        }
    }
    found
}

/// Commits the volume over REST; returns the commit's id.
fn commit_id(daemon: &Daemon, volume: &str, message: &str) -> String {
    commit(daemon, volume, message)["commit"]["id"]
        .as_str()
        .expect("commit id")
        .to_string()
}

/// HEAD's commit and branch, as the log says.
fn head(daemon: &Daemon, volume: &str) -> (Option<String>, Option<String>) {
    let log = commit_log(daemon, volume);
    (
        log["head"].as_str().map(str::to_string),
        log["branch"].as_str().map(str::to_string),
    )
}

/// Whether Docker knows a container of this name.
fn exists(name: &str) -> bool {
    // `container inspect`: a bare `inspect` of a missing name goes on to ask every volume
    // driver the engine knows, the dead ones of earlier tests included, for minutes.
    dvol_tests::docker(&["container", "inspect", name])
        .status
        .success()
}

/// The container's full id.
fn container_id(daemon: &Daemon, name: &str) -> String {
    must(daemon, &["inspect", "-f", "{{.Id}}", name])
}

#[test]
fn kill9_during_a_checkout_is_finished_at_restart_and_its_container_started_again() {
    let Some(mut daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = docker_volume_create(&daemon, &unique("journal"), &[]);
    let name = volume.name.as_str();
    let data = data_dir(&daemon, &volume_id(&daemon, name));
    write_random_files(&data, 12, 1024);
    let big = commit_id(&daemon, name, "big A");
    let big_content = host_content(&data);
    api_expect(
        &daemon,
        "POST",
        &format!("/v1/volumes/{name}/branches"),
        &json!({ "name": "big" }),
        201,
    );
    std::fs::remove_dir_all(data.join("d11")).unwrap();
    write_random_files(&data, 11, 1024);
    std::fs::write(data.join("only-on-master"), "m\n").unwrap();
    let master = commit_id(&daemon, name, "big B");
    assert_ne!(big, master);

    let container = Container::start_with(
        &daemon,
        "dvol-e2e-journal",
        &["-v", &format!("{name}:/data")],
        &[],
        IDLE,
    );
    assert!(container.running(&daemon));

    // Killed as soon as the checkout is seen writing the volume's files.
    let mut seen_stopped = false;
    let mut seen_temp = Vec::new();
    let answered = kill9_during_request(
        &mut daemon,
        &format!("/v1/volumes/{name}/checkout"),
        &json!({ "ref": "big" }).to_string(),
        |daemon| {
            let deadline = Instant::now() + Duration::from_secs(120);
            while seen_temp.is_empty() && Instant::now() < deadline {
                seen_temp = temp_files(&data);
            }
            seen_stopped = !container.running(daemon);
        },
    );
    assert!(
        !seen_temp.is_empty(),
        "the checkout never wrote a temporary file; log:\n{}",
        daemon.log()
    );
    assert_eq!(answered, None, "the kill must land during the checkout");
    assert!(
        seen_stopped,
        "the container is stopped while the checkout writes"
    );
    eprintln!(
        "killed mid-checkout; temporary files then: {}",
        seen_temp.len()
    );

    daemon.spawn();
    wait_until(
        &daemon,
        "the container stopped for the checkout runs again",
        60,
        || container.running(&daemon),
    );
    assert_eq!(
        temp_files(&data),
        Vec::<PathBuf>::new(),
        "no temporary file is left among the user's files"
    );
    assert!(
        host_content(&data) == big_content,
        "the volume holds exactly the checkout's target commit"
    );
    assert_eq!(
        head(&daemon, name),
        (Some(big.clone()), Some("big".to_string()))
    );
    assert_eq!(volume_status(&daemon, name), json!([]));
    assert_fsck_clean(&daemon, "after the restart finished the checkout");
    let log = daemon.log();
    assert!(
        log.contains("finished an interrupted checkout"),
        "the restart says what it did; log:\n{log}"
    );
    // What the container sees is the target commit too.
    assert_eq!(
        container.exec(&daemon, "test -e /data/d11/f0 && echo yes"),
        "yes"
    );
    assert_eq!(
        container.exec(&daemon, "test -e /data/only-on-master || echo gone"),
        "gone"
    );
    // The journal is cleared: a second restart changes nothing and starts nothing.
    std::fs::write(data.join("after"), "after\n").unwrap();
    daemon.stop();
    daemon.spawn();
    assert_eq!(
        std::fs::read_to_string(data.join("after")).unwrap(),
        "after\n"
    );
    container.remove(&daemon);
}

/// Posts `body` to the volume's `operation` (checkout, reset); returns the status and body.
fn post(daemon: &Daemon, volume: &str, operation: &str, body: Value) -> (u16, Value) {
    let response = daemon.api(
        "POST",
        &format!("/v1/volumes/{volume}/{operation}"),
        &body.to_string(),
    );
    (response.status, response.json())
}

#[test]
fn a_container_run_with_rm_is_not_stopped_by_checkout_or_reset_unless_told() {
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = docker_volume_create(&daemon, &unique("removable"), &[]);
    let name = volume.name.as_str();
    let data = data_dir(&daemon, &volume_id(&daemon, name));
    std::fs::write(data.join("f"), "one\n").unwrap();
    let one = commit_id(&daemon, name, "one");
    std::fs::write(data.join("f"), "two\n").unwrap();
    let two = commit_id(&daemon, name, "two");
    let container = Container::start_with(
        &daemon,
        "dvol-e2e-rm",
        &["-v", &format!("{name}:/data")],
        &["--rm"],
        IDLE,
    );
    let id = container_id(&daemon, &container.0);
    let started_at = must(
        &daemon,
        &["inspect", "-f", "{{.State.StartedAt}}", &container.0],
    );

    for (operation, body) in [
        ("checkout", json!({ "ref": "HEAD^" })),
        ("reset", json!({ "ref": "HEAD^" })),
    ] {
        let (status, answer) = post(&daemon, name, operation, body);
        assert_eq!(status, 409, "{operation}: {answer:#}");
        assert_eq!(
            answer["error"]["code"], "container_removed_on_stop",
            "{answer:#}"
        );
        let message = answer["error"]["message"].as_str().unwrap();
        assert_contains_all(
            message,
            &[name, &container.0, &id[..12], "--rm", "--stop-removable"],
        );
    }
    let out = daemon.cli(&["checkout", "-V", name, "HEAD^"]);
    let refused = assert_failed(
        &daemon,
        "dvol checkout of a volume a --rm container uses",
        &out,
    );
    assert_contains_all(&refused, &[&container.0, "--stop-removable"]);
    // Nothing was stopped or changed.
    assert!(container.running(&daemon));
    assert_eq!(
        must(
            &daemon,
            &["inspect", "-f", "{{.State.StartedAt}}", &container.0]
        ),
        started_at,
        "the container was never stopped"
    );
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "two\n");
    assert_eq!(head(&daemon, name), (Some(two), Some("master".to_string())));

    // Told to, the checkout stops it, and the engine deletes it.
    let out = daemon.cli(&["checkout", "-V", name, "--stop-removable", &one]);
    assert_succeeded(&daemon, "dvol checkout --stop-removable", &out);
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "one\n");
    assert_eq!(head(&daemon, name), (Some(one), None));
    wait_until(&daemon, "the engine removed the --rm container", 30, || {
        !exists(&container.0)
    });
    assert!(
        !daemon.log().contains("could not resume container"),
        "a container the engine removed is not started again; log:\n{}",
        daemon.log()
    );
}
