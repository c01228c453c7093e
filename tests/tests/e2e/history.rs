//! Volume history end to end: a real `dvol daemon`, its REST history API, and the real Docker
//! Engine around it.
//!
//! - the user story (commit, branch, checkout, reset, log, diff) with a container using the
//!   volume, on a directory (bronze) and a loop ext4 (silver) volume: the volume's containers
//!   are restarted around checkout and reset, other containers are not, and what the container
//!   sees after each checkout or reset is byte for byte what it saw when that state was
//!   committed;
//! - clones from the Docker CLI alone (`NAME@snapshot-UUIDPREFIX`, `-o from=COMMITPREFIX`);
//! - bad input over REST (unknown and ambiguous revisions, unknown snapshot references,
//!   uncommitted changes, busy volumes, deleting the checked-out branch);
//! - `kill -9` of the daemon in the middle of a commit and of a checkout.
//!
//! Each test runs its own daemon (own root, own Docker driver name) and its own volume and
//! container names, so the tests run in parallel. Containers are removed by drop guards, and
//! the volumes Docker recorded when the test's daemon drops, also when an assertion fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dvol_tests::fixtures::*;
use dvol_tests::{docker_ready, http_unix, require, Daemon, HttpResponse};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Containers and Docker volumes
// ---------------------------------------------------------------------------------------------

/// The loop every long-running test container runs.
const IDLE: &str = "while true; do sleep 1; done";

/// Lists every path under /data and hashes every file: equal output means equal content.
const CONTENT: &str = "cd /data && find . | sort && find . -type f | sort | xargs -r sha256sum";

/// What `docker inspect` says about a container's state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    started_at: String,
    running: bool,
    paused: bool,
}

/// Starts [`IDLE`] detached with `mount_args` (e.g. `-v NAME:/data`, or `--mount ...`), named
/// `prefix-<random>`. `--init` gives the shell an init that passes SIGTERM on, so the stops
/// around checkout and reset take no 30 s kill timeout.
fn run_idle(daemon: &Daemon, prefix: &str, mount_args: &[&str]) -> Container {
    Container::start_with(daemon, prefix, mount_args, &["--init"], IDLE)
}

/// What the history tests read of a container running [`IDLE`].
trait ContainerView {
    /// The volume at /data as this container sees it (paths and file hashes).
    fn content(&self, daemon: &Daemon) -> String;
    /// What `docker inspect` says about the container's state.
    fn state(&self, daemon: &Daemon) -> State;
    /// The host path Docker mounted for the container's volume (the plugin's mountpoint).
    fn mount_source(&self, daemon: &Daemon) -> String;
}

impl ContainerView for Container {
    fn content(&self, daemon: &Daemon) -> String {
        self.exec(daemon, CONTENT)
    }

    fn state(&self, daemon: &Daemon) -> State {
        let out = must(
            daemon,
            &[
                "inspect",
                "-f",
                "{{.State.StartedAt}}|{{.State.Running}}|{{.State.Paused}}",
                &self.0,
            ],
        );
        let parts: Vec<&str> = out.split('|').collect();
        assert_eq!(parts.len(), 3, "unexpected docker inspect output {out:?}");
        State {
            started_at: parts[0].to_string(),
            running: parts[1] == "true",
            paused: parts[2] == "true",
        }
    }

    fn mount_source(&self, daemon: &Daemon) -> String {
        must(
            daemon,
            &[
                "inspect",
                "--format",
                "{{range .Mounts}}{{.Source}}{{end}}",
                &self.0,
            ],
        )
    }
}

// ---------------------------------------------------------------------------------------------
// REST helpers
// ---------------------------------------------------------------------------------------------

fn body_text(response: &HttpResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// Asserts an API error: status, code, and that the message contains each of `parts`.
/// Returns the message.
fn api_expect_error(
    daemon: &Daemon,
    method: &str,
    path: &str,
    body: &Value,
    status: u16,
    code: &str,
    parts: &[&str],
) -> String {
    let error = api_expect(daemon, method, path, body, status);
    assert_eq!(
        error["error"]["code"], code,
        "{method} {path} {body}: wrong error code: {error:#}"
    );
    let message = error["error"]["message"]
        .as_str()
        .expect("error message")
        .to_string();
    for part in parts {
        assert!(
            message.contains(part),
            "{method} {path} {body}: the message should mention {part:?}: {message}"
        );
    }
    message
}

/// Commits and returns the new commit's id.
fn commit_id(daemon: &Daemon, volume: &str, message: &str) -> String {
    let result = commit(daemon, volume, message);
    assert_eq!(result["commit"]["message"], message, "{result:#}");
    result["commit"]["id"].as_str().expect("commit id").into()
}

fn checkout(daemon: &Daemon, volume: &str, request: Value) -> Value {
    api_expect(
        daemon,
        "POST",
        &format!("/v1/volumes/{volume}/checkout"),
        &request,
        200,
    )
}

fn reset(daemon: &Daemon, volume: &str, rev: &str) -> Value {
    api_expect(
        daemon,
        "POST",
        &format!("/v1/volumes/{volume}/reset"),
        &json!({ "ref": rev }),
        200,
    )
}

fn head(daemon: &Daemon, volume: &str) -> Option<String> {
    commit_log(daemon, volume)["head"]
        .as_str()
        .map(str::to_string)
}

/// The commits of the log by id: (parents, message).
fn log_commits(daemon: &Daemon, volume: &str) -> BTreeMap<String, (Vec<String>, String)> {
    commit_log(daemon, volume)["commits"]
        .as_array()
        .expect("commits")
        .iter()
        .map(|c| {
            let parents = c["parents"]
                .as_array()
                .expect("parents")
                .iter()
                .map(|p| p.as_str().expect("parent id").to_string())
                .collect();
            (
                c["id"].as_str().expect("id").to_string(),
                (parents, c["message"].as_str().expect("message").to_string()),
            )
        })
        .collect()
}

/// Non-directory changes as `path -> kind`.
fn file_changes(changes: &Value) -> BTreeMap<String, String> {
    changes
        .as_array()
        .unwrap_or_else(|| panic!("a list of changes expected: {changes:#}"))
        .iter()
        .filter(|c| c["is_dir"] != true)
        .map(|c| {
            let path = c["path"].as_str().expect("path");
            let path = path.trim_start_matches("./").trim_start_matches('/');
            (path.to_string(), c["kind"].as_str().expect("kind").into())
        })
        .collect()
}

fn diff(daemon: &Daemon, volume: &str, from: &str, to: &str) -> Value {
    api_expect(
        daemon,
        "GET",
        &format!("/v1/volumes/{volume}/diff?from={from}&to={to}"),
        &Value::Null,
        200,
    )
}

fn branches(daemon: &Daemon, volume: &str) -> BTreeMap<String, (String, bool)> {
    api_expect(
        daemon,
        "GET",
        &format!("/v1/volumes/{volume}/branches"),
        &Value::Null,
        200,
    )
    .as_array()
    .expect("branches")
    .iter()
    .map(|b| {
        (
            b["name"].as_str().expect("name").to_string(),
            (
                b["commit"].as_str().expect("commit").to_string(),
                b["current"] == true,
            ),
        )
    })
    .collect()
}

/// Asserts that each `(name, commit, current)` of `expected` is a branch of the volume at that
/// commit, checked out or not.
fn assert_branches(daemon: &Daemon, volume: &str, expected: &[(&str, &str, bool)]) {
    let listed = branches(daemon, volume);
    for &(name, commit, current) in expected {
        assert_eq!(
            listed.get(name),
            Some(&(commit.to_string(), current)),
            "{listed:?}"
        );
    }
}

/// Creates a volume over REST; returns its UUID.
fn create_volume(daemon: &Daemon, name: &str, options: Value) -> String {
    let view = api_expect(
        daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": name, "options": options }),
        201,
    );
    view["id"].as_str().expect("id").to_string()
}

/// Mounts and unmounts a volume through the plugin protocol, as the engine would, and checks
/// that `file` is readable at the mountpoint meanwhile.
fn plugin_mount_round_trip(daemon: &Daemon, name: &str, file: &str) {
    let body = mount_body(name, "history-test-mount");
    let mounted = plugin_ok(daemon, "VolumeDriver.Mount", &body);
    let mountpoint = PathBuf::from(mounted["Mountpoint"].as_str().expect("Mountpoint"));
    assert!(
        mountpoint.join(file).is_file(),
        "{file} should be readable at {} after Mount",
        mountpoint.display()
    );
    plugin_ok(daemon, "VolumeDriver.Unmount", &body);
    wait_no_mounts(daemon);
}

// ---------------------------------------------------------------------------------------------
// 1. The user story
// ---------------------------------------------------------------------------------------------

/// The user story's containers: `ctr` uses the volume, `bystander` uses another one. Checkouts
/// and resets must restart `ctr` and leave `bystander` alone.
struct Watched<'a> {
    daemon: &'a Daemon,
    volume: &'a str,
    ctr: &'a Container,
    bystander: &'a Container,
    /// The bystander's state before the first checkout; it must never change.
    bystander_before: State,
    /// The volume's container's state before the next checkout or reset.
    ctr_before: State,
}

impl<'a> Watched<'a> {
    fn new(
        daemon: &'a Daemon,
        volume: &'a str,
        ctr: &'a Container,
        bystander: &'a Container,
    ) -> Watched<'a> {
        Watched {
            daemon,
            volume,
            ctr_before: ctr.state(daemon),
            bystander_before: bystander.state(daemon),
            ctr,
            bystander,
        }
    }

    /// After `what`, a checkout or reset that answered `view`: HEAD is `commit` on `branch`;
    /// the volume's container was stopped and started again, the bystander was not; the
    /// container sees exactly `content` (that of the commit `commit_name`) and nothing is
    /// uncommitted.
    fn assert_moved(
        &mut self,
        what: &str,
        view: &Value,
        branch: &str,
        commit: &str,
        content: &str,
        commit_name: &str,
    ) {
        assert_eq!(view["branch"], branch, "{view:#}");
        assert_eq!(view["commit"], commit, "{view:#}");
        let after = self.ctr.state(self.daemon);
        assert!(
            after.running && !after.paused,
            "{what}: the volume's container should be running again: {after:?}\ndvol daemon log:\n{}",
            self.daemon.log()
        );
        assert_ne!(
            after.started_at, self.ctr_before.started_at,
            "{what}: the volume's container should have been stopped and started again"
        );
        assert_eq!(
            self.bystander.state(self.daemon),
            self.bystander_before,
            "{what}: a container that does not use the volume must not be touched"
        );
        self.ctr_before = after;
        assert_eq!(
            self.ctr.content(self.daemon),
            content,
            "after {what} the container must see the {commit_name} commit"
        );
        assert_eq!(
            volume_status(self.daemon, self.volume),
            json!([]),
            "clean after {what}"
        );
    }
}

fn user_story(profile: &str, mount_options: &[&str]) {
    let daemon = Daemon::start_for_docker();
    let volume = DockerVolume::new("demo");
    let other = DockerVolume::new("other");
    let name = volume.name.clone();
    let source = volume.alias(profile);
    let other_source = other.alias("bronze");

    // The volume, through Docker: `-v NAME@PROFILE:/data`, or --mount with volume options.
    let mount = if mount_options.is_empty() {
        format!("{source}:/data")
    } else {
        let opts: Vec<String> = mount_options
            .iter()
            .map(|o| format!("volume-opt={o}"))
            .collect();
        format!(
            "type=volume,volume-driver={},src={source},dst=/data,{}",
            daemon.driver,
            opts.join(",")
        )
    };
    let flag = if mount_options.is_empty() {
        "-v"
    } else {
        "--mount"
    };
    let other_mount = format!("{other_source}:/data");
    let bystander = run_idle(&daemon, "dvol-hist-by", &["-v", &other_mount]);
    let ctr = run_idle(&daemon, "dvol-hist-ctr", &[flag, &mount]);
    let view = api_expect(
        &daemon,
        "GET",
        &format!("/v1/volumes/{name}"),
        &Value::Null,
        200,
    );
    assert_eq!(view["profile"], profile, "{view:#}");
    if profile == "silver" {
        assert_eq!(view["backend"], "loop", "{view:#}");
        assert_eq!(view["size_bytes"], 64u64 << 20, "{view:#}");
    }
    let volume_path = format!("/v1/volumes/{name}");
    assert_eq!(
        commit_log(&daemon, &name)["head"],
        Value::Null,
        "no commit yet"
    );

    // Data, then "clean schema", committed with the container paused (not restarted).
    ctr.exec(
        &daemon,
        "mkdir -p /data/db /data/etc \
         && echo 'CREATE TABLE t (id int);' > /data/db/schema.sql \
         && seq 1 5000 > /data/db/rows \
         && echo port=5432 > /data/etc/app.conf \
         && ln -s db/schema.sql /data/schema-link",
    );
    let clean = ctr.content(&daemon);
    let before = ctr.state(&daemon);
    let result = api_expect(
        &daemon,
        "POST",
        &format!("{volume_path}/commits"),
        &json!({ "message": "clean schema", "author": "tester", "pause": true }),
        201,
    );
    let c1 = result["commit"]["id"].as_str().expect("id").to_string();
    assert_eq!(result["branch"], "master", "{result:#}");
    assert_eq!(result["commit"]["parents"], json!([]), "{result:#}");
    assert_eq!(result["commit"]["author"], "tester", "{result:#}");
    assert!(
        result["files_scanned"].as_u64().unwrap_or(0) >= 3,
        "{result:#}"
    );
    let after = ctr.state(&daemon);
    assert_eq!(
        after.started_at, before.started_at,
        "commit --pause must pause the container, not restart it"
    );
    assert!(
        after.running && !after.paused,
        "after commit --pause the container runs unpaused: {after:?}"
    );
    assert_eq!(ctr.content(&daemon), clean, "a commit must not change data");
    assert_eq!(
        volume_status(&daemon, &name),
        json!([]),
        "nothing uncommitted"
    );

    // More work, uncommitted.
    ctr.exec(
        &daemon,
        "seq 5001 6000 >> /data/db/rows \
         && echo 'ALTER TABLE t ADD v int;' >> /data/db/schema.sql \
         && echo 'UPDATE t SET v = 1;' > /data/db/migration-2.sql",
    );
    let dirty = ctr.content(&daemon);
    let expected_dirty = BTreeMap::from([
        ("db/migration-2.sql".to_string(), "added".to_string()),
        ("db/rows".to_string(), "modified".to_string()),
        ("db/schema.sql".to_string(), "modified".to_string()),
    ]);
    assert_eq!(file_changes(&volume_status(&daemon, &name)), expected_dirty);

    // A branch at HEAD.
    let branch = api_expect(
        &daemon,
        "POST",
        &format!("{volume_path}/branches"),
        &json!({ "name": "experiment" }),
        201,
    );
    assert_eq!(branch["commit"], c1.as_str(), "{branch:#}");
    assert_branches(
        &daemon,
        &name,
        &[("master", &c1, true), ("experiment", &c1, false)],
    );

    // Checkout with uncommitted changes is refused, naming them; the data stays.
    let message = api_expect_error(
        &daemon,
        "POST",
        &format!("{volume_path}/checkout"),
        &json!({ "ref": "experiment" }),
        409,
        "uncommitted_changes",
        &[&name],
    );
    assert!(
        expected_dirty.keys().any(|p| message.contains(p.as_str())),
        "the refusal should name an uncommitted path: {message}"
    );
    let state = ctr.state(&daemon);
    assert!(
        state.running && !state.paused,
        "after a refused checkout the container runs: {state:?}"
    );
    eprintln!(
        "{profile}: the refused checkout {} the container",
        if state.started_at == before.started_at {
            "did not restart"
        } else {
            "restarted"
        }
    );
    assert_eq!(
        ctr.content(&daemon),
        dirty,
        "a refused checkout keeps the data"
    );
    assert_eq!(head(&daemon, &name).as_deref(), Some(c1.as_str()));

    // Commit first, then check out the experiment: the container is restarted, the bystander
    // is not, and the container sees exactly the "clean schema" state.
    let c2 = commit_id(&daemon, &name, "more data");
    assert_eq!(ctr.content(&daemon), dirty);
    let more = dirty;
    let mut watched = Watched::new(&daemon, &name, &ctr, &bystander);
    assert!(
        watched.bystander_before.running,
        "{:?}",
        watched.bystander_before
    );
    let view = checkout(&daemon, &name, json!({ "ref": "experiment" }));
    watched.assert_moved(
        "checkout experiment",
        &view,
        "experiment",
        &c1,
        &clean,
        "'clean schema'",
    );
    assert_eq!(commit_log(&daemon, &name)["branch"], "experiment");

    // Work on the experiment, commit, tag it.
    ctr.exec(
        &daemon,
        "echo 'CREATE INDEX i ON t (id);' > /data/db/index.sql && rm /data/etc/app.conf",
    );
    let c3 = commit_id(&daemon, &name, "experiment: index");
    let idea = ctr.content(&daemon);
    api_expect(
        &daemon,
        "POST",
        &format!("{volume_path}/tags"),
        &json!({ "name": "idea" }),
        201,
    );

    // Break things, then reset --hard HEAD^: back to "clean schema".
    ctr.exec(
        &daemon,
        "rm -rf /data/db /data/schema-link && echo garbage > /data/oops",
    );
    assert_ne!(ctr.content(&daemon), idea);
    let view = reset(&daemon, &name, "HEAD^");
    watched.assert_moved(
        "reset --hard HEAD^",
        &view,
        "experiment",
        &c1,
        &clean,
        "'clean schema'",
    );
    assert_branches(
        &daemon,
        &name,
        &[("experiment", &c1, true), ("master", &c2, false)],
    );

    // Back to master.
    let view = checkout(&daemon, &name, json!({ "ref": "master" }));
    watched.assert_moved(
        "checkout master",
        &view,
        "master",
        &c2,
        &more,
        "'more data'",
    );

    // The log: master's two commits and the tagged experiment, with parents, children first.
    let full = commit_log(&daemon, &name);
    assert_eq!(full["branch"], "master", "{full:#}");
    assert_eq!(full["head"], c2.as_str(), "{full:#}");
    let order: Vec<&str> = full["commits"]
        .as_array()
        .expect("commits")
        .iter()
        .map(|c| c["id"].as_str().expect("id"))
        .collect();
    let commits = log_commits(&daemon, &name);
    assert_eq!(
        commits,
        BTreeMap::from([
            (c1.clone(), (vec![], "clean schema".to_string())),
            (c2.clone(), (vec![c1.clone()], "more data".to_string())),
            (
                c3.clone(),
                (vec![c1.clone()], "experiment: index".to_string())
            ),
        ]),
        "log: {full:#}"
    );
    let position = |id: &str| order.iter().position(|c| *c == id).unwrap();
    assert!(
        position(&c1) > position(&c2) && position(&c1) > position(&c3),
        "children come before parents: {order:?}"
    );
    let refs_of = |id: &str| {
        full["commits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()["refs"]
            .clone()
    };
    assert!(
        refs_of(&c3)
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap_or("").contains("idea")),
        "the tag shows in the log: {full:#}"
    );

    // diff master experiment, and master idea.
    assert_eq!(
        file_changes(&diff(&daemon, &name, "master", "experiment")),
        BTreeMap::from([
            ("db/migration-2.sql".to_string(), "removed".to_string()),
            ("db/rows".to_string(), "modified".to_string()),
            ("db/schema.sql".to_string(), "modified".to_string()),
        ])
    );
    assert_eq!(
        file_changes(&diff(&daemon, &name, "experiment", "idea")),
        BTreeMap::from([
            ("db/index.sql".to_string(), "added".to_string()),
            ("etc/app.conf".to_string(), "removed".to_string()),
        ])
    );
    assert_fsck_clean(&daemon, "after the story");

    // The idea is still reachable: check it out detached and see its content.
    let view = checkout(&daemon, &name, json!({ "ref": "idea" }));
    assert_eq!(view["branch"], Value::Null, "a tag detaches HEAD: {view:#}");
    assert_eq!(view["commit"], c3.as_str(), "{view:#}");
    assert_eq!(ctr.content(&daemon), idea, "checkout of the tag 'idea'");
}

#[test]
fn story_commit_branch_checkout_reset_on_a_directory_volume() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    user_story("bronze", &[]);
}

#[test]
fn story_commit_branch_checkout_reset_on_a_loop_ext4_volume() {
    if !require("Docker Engine", docker_ready()) {
        return;
    }
    user_story("silver", &["size=64M"]);
}

// ---------------------------------------------------------------------------------------------
// 2. Clones from the Docker CLI
// ---------------------------------------------------------------------------------------------

#[test]
fn clone_from_the_docker_cli_with_a_uuid_prefix_and_a_commit_prefix() {
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let volume = DockerVolume::new("src");
    let copy = DockerVolume::new("copy");
    let copy2 = DockerVolume::new("copy2");
    let source = volume.alias("bronze");
    let mount = format!("{source}:/data");
    let ctr = run_idle(&daemon, "dvol-hist-src", &["-v", &mount]);
    ctr.exec(
        &daemon,
        "mkdir -p /data/app && seq 1 20000 > /data/app/numbers && echo v1 > /data/app/version",
    );
    let original = ctr.content(&daemon);

    // The UUID, from the Docker CLI alone: the mountpoint ends with it. Docker 20.10 leaves
    // `.Mounts.Source` empty for a plugin volume in the container whose `docker run` created
    // it (the engine caches the path only after that container mounted it); then the name in
    // `.Mounts` and `docker volume inspect` give the mountpoint, still from the CLI alone.
    let mut source_path = ctr.mount_source(&daemon);
    if source_path.is_empty() {
        let mounted_name = must(
            &daemon,
            &[
                "inspect",
                "--format",
                "{{range .Mounts}}{{.Name}}{{end}}",
                &ctr.0,
            ],
        );
        assert_eq!(mounted_name, source, "the container's volume name");
        source_path = must(
            &daemon,
            &[
                "volume",
                "inspect",
                "--format",
                "{{.Mountpoint}}",
                &mounted_name,
            ],
        );
        eprintln!(
            "docker inspect .Mounts.Source is empty for {}; docker volume inspect {mounted_name} gives {source_path}",
            ctr.0
        );
    }
    let uuid = source_path.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        uuid,
        volume_id(&daemon, &volume.name),
        "mountpoint {source_path} should end with the volume's UUID"
    );
    let prefix: String = uuid.replace('-', "")[..8].to_string();

    let before = ctr.state(&daemon);
    let clone_source = copy.alias(&format!("snapshot-{prefix}"));
    let clone_mount = format!("{clone_source}:/data");
    let clone = run_idle(&daemon, "dvol-hist-clone", &["-v", &clone_mount]);
    assert_eq!(
        ctr.state(&daemon),
        before,
        "cloning a volume must not stop, pause or restart its container"
    );
    assert_eq!(
        clone.content(&daemon),
        original,
        "the clone must see the source's files"
    );
    let view = api_expect(
        &daemon,
        "GET",
        &format!("/v1/volumes/{}", copy.name),
        &Value::Null,
        200,
    );
    assert_ne!(
        view["id"],
        uuid.as_str(),
        "the clone is a volume of its own"
    );
    assert_eq!(
        commit_log(&daemon, &volume.name)["head"],
        Value::Null,
        "cloning must not commit in the source's history"
    );

    // Writes in the clone stay in the clone, and the other way round.
    clone.exec(
        &daemon,
        "echo clone-only > /data/app/mine && echo v2 > /data/app/version && rm /data/app/numbers",
    );
    let cloned = clone.content(&daemon);
    assert_ne!(cloned, original);
    assert_eq!(
        ctr.content(&daemon),
        original,
        "writing in the clone must not change the source"
    );
    ctr.exec(&daemon, "echo source-later > /data/app/later");
    assert_eq!(
        clone.content(&daemon),
        cloned,
        "the source's writes stay out of the clone"
    );

    // -o from=<commit id prefix>: the committed content, not the current one.
    ctr.exec(&daemon, "rm /data/app/later");
    assert_eq!(ctr.content(&daemon), original);
    let c1 = commit_id(&daemon, &volume.name, "v1");
    ctr.exec(
        &daemon,
        "echo v3 > /data/app/version && echo x > /data/app/extra",
    );
    let from = format!("from={}", &c1[..10]);
    docker_volume_create(&daemon, &copy2.name, &[&from]);
    let seen = run_ok(&daemon, &copy2.name, CONTENT);
    assert_eq!(
        seen, original,
        "a volume created with -o from=COMMIT must hold that commit's content"
    );
    assert_ne!(
        ctr.content(&daemon),
        original,
        "the source moved on meanwhile"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Bad input over REST
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_history_requests_get_clear_errors() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let name = "bad";
    let uuid = create_volume(&daemon, name, json!({})).replace('-', "");
    let data = data_dir(&daemon, &volume_id(&daemon, name));
    let path = format!("/v1/volumes/{name}");

    // No commits yet.
    api_expect_error(
        &daemon,
        "POST",
        &format!("{path}/reset"),
        &json!({ "ref": "HEAD" }),
        404,
        "unknown_revision",
        &["no commits"],
    );

    std::fs::write(data.join("a"), "a\n").unwrap();
    let c1 = commit_id(&daemon, name, "first");
    api_expect(
        &daemon,
        "POST",
        &format!("{path}/branches"),
        &json!({ "name": "side" }),
        201,
    );
    api_expect(
        &daemon,
        "POST",
        &format!("{path}/tags"),
        &json!({ "name": "v1" }),
        201,
    );

    // An unknown revision: 404, saying what exists.
    for (method, endpoint, body) in [
        ("POST", "checkout", json!({ "ref": "nosuch" })),
        ("POST", "reset", json!({ "ref": "nosuch" })),
        ("GET", "diff?from=nosuch", Value::Null),
        ("POST", "branches", json!({ "name": "b2", "at": "nosuch" })),
    ] {
        api_expect_error(
            &daemon,
            method,
            &format!("{path}/{endpoint}"),
            &body,
            404,
            "unknown_revision",
            &["nosuch", "master", "side", "v1"],
        );
    }
    // Past the root commit.
    api_expect_error(
        &daemon,
        "POST",
        &format!("{path}/checkout"),
        &json!({ "ref": "HEAD~3" }),
        404,
        "unknown_revision",
        &["HEAD~3"],
    );
    // Unknown volume.
    api_expect_error(
        &daemon,
        "POST",
        "/v1/volumes/nosuchvolume/commits",
        &json!({ "message": "x" }),
        404,
        "not_found",
        &["nosuchvolume"],
    );
    // A malformed body.
    api_expect_error(
        &daemon,
        "POST",
        &format!("{path}/checkout"),
        &json!({ "rev": "master" }),
        400,
        "bad_body",
        &[],
    );

    // Make commits until two share a 4-digit prefix: that prefix is ambiguous. Keep the volume
    // mounted meanwhile so each commit does not mount it again.
    let keep = json!({ "Name": name, "ID": "keep" }).to_string();
    assert!(daemon.plugin("VolumeDriver.Mount", &keep).status == 200);
    let mut ids: Vec<String> = vec![c1.clone()];
    let mut ambiguous = None;
    for i in 0..5000 {
        std::fs::write(data.join("counter"), format!("{i}\n")).unwrap();
        let id = commit_id(&daemon, name, &format!("commit {i}"));
        if let Some(other) = ids.iter().find(|o| o[..4] == id[..4]) {
            ambiguous = Some((id[..4].to_string(), other.clone(), id.clone()));
            ids.push(id);
            break;
        }
        ids.push(id);
    }
    assert!(daemon.plugin("VolumeDriver.Unmount", &keep).status == 200);
    let (prefix, first, second) = ambiguous.expect("two of 5000 commits share 4 hex digits");
    eprintln!(
        "ambiguous prefix {prefix} after {} commits: {first} {second}",
        ids.len()
    );
    for (method, endpoint, body) in [
        ("POST", "checkout".to_string(), json!({ "ref": prefix })),
        ("POST", "reset".to_string(), json!({ "ref": prefix })),
        ("GET", format!("diff?from={prefix}"), Value::Null),
    ] {
        api_expect_error(
            &daemon,
            method,
            &format!("{path}/{endpoint}"),
            &body,
            400,
            "invalid_revision",
            &["ambiguous", &first[..16], &second[..16]],
        );
    }
    // Six digits of one of them are enough.
    let view = api_expect(
        &daemon,
        "GET",
        &format!("{path}/diff?from={}&to={}", &first[..6], &second[..6]),
        &Value::Null,
        200,
    );
    assert!(view.is_array(), "{view:#}");
    // A 4-digit prefix that matches no commit.
    let unmatched = (0..=0xffffu32)
        .map(|n| format!("{n:04x}"))
        .find(|p| !ids.iter().any(|id| id.starts_with(p.as_str())))
        .unwrap();
    api_expect_error(
        &daemon,
        "POST",
        &format!("{path}/checkout"),
        &json!({ "ref": unmatched }),
        404,
        "unknown_revision",
        &[&unmatched, "master"],
    );

    // NAME@snapshot-REF that matches nothing: refused, nothing created.
    let nothing = (0..)
        .map(|n: u32| format!("{n:06x}"))
        .find(|p| !ids.iter().any(|id| id.starts_with(p.as_str())) && !uuid.starts_with(p.as_str()))
        .unwrap();
    let message = api_expect_error(
        &daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": format!("clone@snapshot-{nothing}") }),
        400,
        "bad_snapshot_reference",
        &[&nothing, "matches no volume UUID and no commit"],
    );
    eprintln!("snapshot-{nothing}: {message}");
    api_expect_error(
        &daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": "clone2", "options": { "from": nothing } }),
        400,
        "bad_snapshot_reference",
        &[&nothing],
    );
    api_expect_error(
        &daemon,
        "POST",
        "/v1/volumes",
        &json!({ "name": "clone3@snapshot-abc" }),
        400,
        "invalid_name",
        &["6 hex digits"],
    );
    for clone in ["clone", "clone2", "clone3"] {
        api_expect(
            &daemon,
            "GET",
            &format!("/v1/volumes/{clone}"),
            &Value::Null,
            404,
        );
    }

    // Uncommitted changes: checkout refused with 409 naming the path, unless forced.
    let committed = host_content(&data);
    std::fs::write(data.join("dirty-notes.txt"), "not committed\n").unwrap();
    api_expect_error(
        &daemon,
        "POST",
        &format!("{path}/checkout"),
        &json!({ "ref": "side" }),
        409,
        "uncommitted_changes",
        &["dirty-notes.txt", "force"],
    );
    assert!(
        data.join("dirty-notes.txt").is_file(),
        "a refused checkout keeps the change"
    );
    assert_eq!(commit_log(&daemon, name)["branch"], "master");
    let view = checkout(&daemon, name, json!({ "ref": "side", "force": true }));
    assert_eq!(view["branch"], "side", "{view:#}");
    assert_eq!(view["commit"], c1.as_str(), "{view:#}");
    assert!(
        !data.join("dirty-notes.txt").exists(),
        "--force discards the change"
    );
    assert!(
        !data.join("counter").exists(),
        "side is at the first commit"
    );
    assert_eq!(std::fs::read_to_string(data.join("a")).unwrap(), "a\n");
    let view = checkout(&daemon, name, json!({ "ref": "master" }));
    assert_eq!(view["branch"], "master", "{view:#}");
    assert_eq!(host_content(&data), committed);

    // Branches: the checked-out one cannot be deleted; others can; unknown ones are 404.
    api_expect_error(
        &daemon,
        "DELETE",
        &format!("{path}/branches/master"),
        &Value::Null,
        409,
        "history_conflict",
        &["master", "checked out"],
    );
    api_expect_error(
        &daemon,
        "POST",
        &format!("{path}/branches"),
        &json!({ "name": "side" }),
        409,
        "history_conflict",
        &["side", "already exists"],
    );
    api_expect(
        &daemon,
        "DELETE",
        &format!("{path}/branches/side"),
        &Value::Null,
        204,
    );
    api_expect_error(
        &daemon,
        "DELETE",
        &format!("{path}/branches/side"),
        &Value::Null,
        404,
        "unknown_revision",
        &["side", "master"],
    );
    assert_eq!(
        branches(&daemon, name).keys().cloned().collect::<Vec<_>>(),
        vec!["master".to_string()]
    );
    assert_fsck_clean(&daemon, "after the bad requests");
}

/// Writes `count` small distinct files under `dir` (in subdirectories of 100).
fn write_many_files(dir: &Path, tag: &str, count: usize) {
    for i in 0..count {
        let sub = dir.join(format!("d{:04}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&sub).unwrap();
        }
        std::fs::write(sub.join(format!("f{i}")), format!("{tag} {i}\n")).unwrap();
    }
}

/// Runs `holder` (a long history request) on a thread; 500 ms later sends `commit` on the same
/// volume. Returns (holder response, commit response, commit's duration, whether the holder
/// was still running when the commit was answered).
fn race_commit_against(
    daemon: &Daemon,
    volume: &str,
    holder_path: String,
    holder_body: Value,
) -> (HttpResponse, HttpResponse, Duration, bool) {
    let socket = daemon.api_socket.clone();
    let holder = std::thread::spawn(move || {
        let response = http_unix(
            &socket,
            "POST",
            &holder_path,
            holder_body.to_string().as_bytes(),
        );
        (response, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let response = daemon.api(
        "POST",
        &format!("/v1/volumes/{volume}/commits"),
        &json!({ "message": "while busy" }).to_string(),
    );
    let answered = Instant::now();
    let (held, held_until) = holder.join().expect("holder thread");
    let held = held.expect("holder request");
    (held, response, answered - start, held_until > answered)
}

#[test]
fn a_history_operation_on_a_busy_volume_answers_busy() {
    let Some(daemon) = Daemon::for_root_test() else {
        return;
    };
    let name = "busy";
    let id = create_volume(&daemon, name, json!({}));
    let data = data_dir(&daemon, &id);
    std::fs::write(data.join("seed"), "seed\n").unwrap();
    let empty = commit_id(&daemon, name, "seed only");

    // A commit of many new files holds the volume for seconds: a second commit meanwhile
    // waits its patience (2 s) and answers busy. If the holder happened to be too quick, try
    // again with more files.
    let mut files = 30_000;
    let mut observed = false;
    for attempt in 0..3 {
        write_many_files(&data, &format!("attempt {attempt}"), files);
        let started = Instant::now();
        let (held, response, waited, still_held) = race_commit_against(
            &daemon,
            name,
            format!("/v1/volumes/{name}/commits"),
            json!({ "message": format!("many files {attempt}") }),
        );
        eprintln!(
            "attempt {attempt}: {files} files; holder {} after {:?}; second commit {} after {waited:?}; holder still running when answered: {still_held}",
            held.status,
            started.elapsed(),
            response.status
        );
        assert_eq!(held.status, 201, "holder commit: {}", body_text(&held));
        if still_held {
            assert_eq!(
                response.status,
                409,
                "a commit while another commit holds the volume must answer busy: {}\ndvol daemon log:\n{}",
                body_text(&response),
                daemon.log()
            );
            let error = response.json();
            assert_eq!(error["error"]["code"], "busy", "{error:#}");
            let message = error["error"]["message"].as_str().unwrap_or("");
            assert!(
                message.contains("busy") && message.contains(name),
                "{message}"
            );
            assert!(
                waited >= Duration::from_millis(1900),
                "busy only after waiting its patience (2 s), not after {waited:?}"
            );
            observed = true;
            break;
        }
        // The holder finished first: the second commit either waited for it or (if the holder
        // ended right at the patience's end) answered busy; both are right.
        assert!(
            response.status == 201 || response.status == 409,
            "{}",
            body_text(&response)
        );
        files *= 2;
    }
    assert!(
        observed,
        "could not hold the volume long enough to observe busy; see the attempts above"
    );

    // A checkout that writes all those files again holds the volume too.
    let tip = head(&daemon, name).expect("head");
    checkout(
        &daemon,
        name,
        json!({ "ref": empty.clone(), "force": true }),
    );
    assert!(!data.join("d0000").exists(), "checkout of the seed commit");
    let (held, response, waited, still_held) = race_commit_against(
        &daemon,
        name,
        format!("/v1/volumes/{name}/checkout"),
        json!({ "ref": tip.clone() }),
    );
    eprintln!(
        "checkout holder {}; commit {} after {waited:?}; holder still running: {still_held}",
        held.status, response.status
    );
    assert_eq!(held.status, 200, "holder checkout: {}", body_text(&held));
    if still_held {
        assert_eq!(response.status, 409, "{}", body_text(&response));
        assert_eq!(response.json()["error"]["code"], "busy");
    } else {
        eprintln!("the checkout finished within the commit's patience; busy not observable there");
        assert!(response.status == 201 || response.status == 409);
    }
    assert_eq!(
        volume_status(&daemon, name),
        json!([]),
        "the checkout completed"
    );
    // Once free, the volume takes commits again (on the detached HEAD, after the racing
    // commit if it got through).
    let before = head(&daemon, name).expect("head");
    std::fs::write(data.join("after"), "after\n").unwrap();
    let after = commit(&daemon, name, "after the race");
    assert_eq!(after["commit"]["parents"], json!([before]), "{after:#}");
    assert_eq!(after["changed"], true, "{after:#}");
    assert_fsck_clean(&daemon, "after the races");
}

// ---------------------------------------------------------------------------------------------
// 4. kill -9 during commit and checkout
// ---------------------------------------------------------------------------------------------

/// Sends `body` to `path` from a thread, kills the daemon `delay` later, restarts it; returns
/// whether the request was answered before the kill (and how).
fn kill_during(daemon: &mut Daemon, path: &str, body: Value, delay: Duration) -> Option<u16> {
    let sent = Instant::now();
    let answered = kill9_during_request(daemon, path, &body.to_string(), |_| {
        std::thread::sleep(delay.saturating_sub(sent.elapsed()));
    });
    daemon.spawn();
    // A mount the killed operation made for itself has no user: the restart removes it.
    wait_no_mounts(daemon);
    answered
}

#[test]
fn kill9_during_a_commit_leaves_the_old_or_the_whole_new_commit() {
    let Some(mut daemon) = Daemon::for_root_test() else {
        return;
    };
    let name = "crashcommit";
    let id = create_volume(&daemon, name, json!({}));
    let data = data_dir(&daemon, &id);
    write_random_files(&data, 10, 683);
    let started = Instant::now();
    let mut previous = commit_id(&daemon, name, "base");
    let full = started.elapsed().as_millis() as u64;
    eprintln!("a commit of 300 new files (200 MiB) takes {full} ms here");
    let mut interrupted = 0;

    // Early, and late in the commit (where the ref moves and the index is saved).
    let mut delays = vec![50u64, 200, full / 2, full * 9 / 10];
    delays.sort_unstable();
    delays.dedup();
    for delay_ms in delays {
        write_random_files(&data, 10, 683);
        let written = host_content(&data);
        let message = format!("crash at {delay_ms} ms");
        let answered = kill_during(
            &mut daemon,
            &format!("/v1/volumes/{name}/commits"),
            json!({ "message": message }),
            Duration::from_millis(delay_ms),
        );
        if answered.is_none() {
            interrupted += 1;
        }
        assert_fsck_clean(
            &daemon,
            &format!("after kill -9 {delay_ms} ms into a commit"),
        );

        let head = head(&daemon, name).expect("a head after restart");
        let commits = log_commits(&daemon, name);
        let changes = file_changes(&volume_status(&daemon, name));
        if head == previous {
            eprintln!("{delay_ms} ms: commit absent after the crash (answered: {answered:?})");
            assert!(
                answered.is_none(),
                "the commit was answered {answered:?} but is not in the log"
            );
            assert!(!commits.values().any(|(_, m)| *m == message), "{commits:?}");
            assert_eq!(
                changes.len(),
                300,
                "without the commit, all 300 rewritten files are uncommitted: {changes:?}"
            );
        } else {
            eprintln!("{delay_ms} ms: commit whole after the crash (answered: {answered:?})");
            let (parents, found) = commits.get(&head).expect("head in the log");
            assert_eq!(found, &message);
            assert_eq!(parents, &vec![previous.clone()]);
            assert_eq!(
                changes,
                BTreeMap::new(),
                "the new commit holds exactly the files on disk"
            );
            let changed = file_changes(&diff(&daemon, name, &previous, &head));
            assert_eq!(changed.len(), 300, "{changed:?}");
            assert!(changed.values().all(|k| k == "modified"), "{changed:?}");
            previous = head;
        }
        assert_eq!(
            host_content(&data),
            written,
            "the volume's files are untouched"
        );

        plugin_mount_round_trip(&daemon, name, "d0/f0");
        std::fs::write(data.join(format!("after-{delay_ms}")), "after\n").unwrap();
        let result = commit(&daemon, name, &format!("after crash {delay_ms}"));
        assert_eq!(result["commit"]["parents"], json!([previous]), "{result:#}");
        previous = result["commit"]["id"].as_str().unwrap().to_string();
        assert_eq!(volume_status(&daemon, name), json!([]));
        assert_fsck_clean(
            &daemon,
            &format!("after the commit following {delay_ms} ms"),
        );
    }
    assert!(
        interrupted > 0,
        "no kill landed during a commit; the delays need adjusting"
    );
    let gc = api_expect(&daemon, "POST", "/v1/gc", &Value::Null, 200);
    eprintln!("gc after the crashes: {gc}");
    assert_fsck_clean(&daemon, "after gc");
    // The last commit still checks out to exactly the files.
    let written = host_content(&data);
    std::fs::remove_dir_all(data.join("d3")).unwrap();
    reset(&daemon, name, "HEAD");
    assert_eq!(host_content(&data), written);
}

#[test]
fn kill9_during_a_checkout_leaves_a_volume_that_checks_out_again() {
    let Some(mut daemon) = Daemon::for_root_test() else {
        return;
    };
    let name = "crashcheckout";
    let id = create_volume(&daemon, name, json!({}));
    let data = data_dir(&daemon, &id);
    write_random_files(&data, 10, 683);
    let big = commit_id(&daemon, name, "big A");
    let big_content = host_content(&data);
    api_expect(
        &daemon,
        "POST",
        &format!("/v1/volumes/{name}/branches"),
        &json!({ "name": "big" }),
        201,
    );
    write_random_files(&data, 10, 683);
    std::fs::write(data.join("only-on-master"), "m\n").unwrap();
    let master = commit_id(&daemon, name, "big B");
    let master_content = host_content(&data);
    let started = Instant::now();
    checkout(&daemon, name, json!({ "ref": "big" }));
    let full = started.elapsed().as_millis() as u64;
    eprintln!("a checkout rewriting 300 files (200 MiB) takes {full} ms here");
    assert_eq!(host_content(&data), big_content);
    checkout(&daemon, name, json!({ "ref": "master" }));
    assert_eq!(host_content(&data), master_content);
    let mut interrupted = 0;

    let mut delays = vec![30u64, 100, full / 2, full * 9 / 10];
    delays.sort_unstable();
    delays.dedup();
    for delay_ms in delays {
        let answered = kill_during(
            &mut daemon,
            &format!("/v1/volumes/{name}/checkout"),
            json!({ "ref": "big" }),
            Duration::from_millis(delay_ms),
        );
        eprintln!("{delay_ms} ms: checkout answered before the kill: {answered:?}");
        if answered.is_none() {
            interrupted += 1;
        }
        assert_fsck_clean(
            &daemon,
            &format!("after kill -9 {delay_ms} ms into a checkout"),
        );
        let now = head(&daemon, name).expect("head");
        assert!(
            now == big || now == master,
            "HEAD is one of the two commits after the crash: {now}"
        );
        plugin_mount_round_trip(&daemon, name, "d0/f0");

        let view = checkout(&daemon, name, json!({ "ref": "big", "force": true }));
        assert_eq!(view["commit"], big.as_str(), "{view:#}");
        assert_eq!(view["branch"], "big", "{view:#}");
        assert_eq!(
            host_content(&data),
            big_content,
            "checkout --force after a crashed checkout must give the committed content"
        );
        assert_eq!(volume_status(&daemon, name), json!([]));

        let view = checkout(&daemon, name, json!({ "ref": "master" }));
        assert_eq!(view["commit"], master.as_str(), "{view:#}");
        assert_eq!(host_content(&data), master_content);
    }
    assert!(
        interrupted > 0,
        "no kill landed during a checkout; the delays need adjusting"
    );
    assert_fsck_clean(&daemon, "at the end");
    let listed: BTreeSet<String> = branches(&daemon, name).into_keys().collect();
    assert_eq!(
        listed,
        BTreeSet::from(["big".to_string(), "master".to_string()])
    );
}
