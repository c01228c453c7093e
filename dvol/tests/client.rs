//! The typed client against the real daemon, run in-process on temporary sockets with one
//! directory profile: every endpoint's answer decodes into its `dvol-api` type and says what
//! the call did.
//!
//! Committing bind-mounts the volume, so the history calls need root: without it they are
//! skipped with a message, unless `DVOL_REQUIRE_ALL=1`, where the test fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dvol::client::{Client, DaemonError, Host};
use dvol_api::{
    ChangeKind, CheckoutRequest, CommitRequest, CreateVolume, DiffQuery, ProgressEvent, RefRequest,
    ResetRequest, ResizeVolume,
};
use dvol_plugin::daemon::{run, DaemonOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CONFIG: &str = r#"default_profile = "bronze"

[profiles.bronze]
backend = "directory"
"#;

/// A daemon serving a temporary root until [`Daemon::stop`].
struct Daemon {
    root: PathBuf,
    api_socket: PathBuf,
    stop: oneshot::Sender<()>,
    /// The daemon, ending with its error as text.
    running: JoinHandle<Result<(), String>>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, CONFIG).expect("write the configuration");
        let options = DaemonOptions {
            root: dir.path().join("root"),
            config,
            config_required: true,
            plugin_socket: dir.path().join("plugin.sock"),
            api_socket: dir.path().join("api.sock"),
            listen: None,
            token_file: None,
            tls_cert: None,
            tls_key: None,
            docker_driver: None,
            cluster: None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let (root, api_socket) = (options.root.clone(), options.api_socket.clone());
        let shutdown = async {
            let _ = stopped.await;
        };
        let running =
            tokio::spawn(async { run(options, shutdown).await.map_err(|e| e.to_string()) });
        Daemon {
            root,
            api_socket,
            stop,
            running,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::new(Host::Unix(self.api_socket.clone()), None)
    }

    /// Where a directory volume's files live.
    fn data_dir(&self, id: impl std::fmt::Display) -> PathBuf {
        self.root
            .join("backends")
            .join("directory")
            .join(id.to_string())
    }

    /// Stops the daemon through its `shutdown` future and waits for it to end.
    async fn stop(self) {
        self.stop.send(()).expect("the daemon is running");
        let ended = tokio::time::timeout(Duration::from_secs(30), self.running)
            .await
            .expect("the daemon stops within 30 s");
        ended
            .expect("daemon task")
            .expect("the daemon ends cleanly");
    }
}

/// Waits until the daemon answers `GET /v1/health`.
async fn wait_for_health(client: &Client) -> dvol_api::Health {
    for _ in 0..200 {
        if let Ok(health) = client.health().await {
            return health;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the daemon did not answer /v1/health within 10 s");
}

/// The daemon's error behind a failed call.
fn daemon_error(result: anyhow::Result<impl std::fmt::Debug>) -> DaemonError {
    let error = result.expect_err("the daemon refuses the call");
    error
        .downcast_ref::<DaemonError>()
        .unwrap_or_else(|| panic!("not an answer of the daemon: {error:#}"))
        .clone()
}

/// Whether the history calls can run: root, or a failure under `DVOL_REQUIRE_ALL=1`.
fn root_available() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("DVOL_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("root is required (DVOL_REQUIRE_ALL=1) but not available");
    }
    eprintln!("SKIPPED: the history calls need root (committing bind-mounts the volume)");
    false
}

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).expect("write into the volume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_decodes_into_its_type() {
    let daemon = Daemon::start();
    let client = daemon.client();

    let health = wait_for_health(&client).await;
    assert_eq!(health.status, "ok");
    assert_eq!(health.version, env!("CARGO_PKG_VERSION"));

    let profiles = client.profiles().await.expect("profiles");
    assert_eq!(profiles.len(), 1, "{profiles:?}");
    let bronze = &profiles[0];
    assert_eq!(bronze.name, "bronze");
    assert!(bronze.default && bronze.available, "{bronze:?}");
    assert_eq!(
        bronze.backend.map(|b| b.to_string()).as_deref(),
        Some("directory")
    );

    let node = client.node().await.expect("node");
    assert_eq!(node.volumes, 0);
    assert!(node.backends.iter().any(|b| b.to_string() == "directory"));
    assert_eq!(node.profiles.len(), 1);
    assert_eq!(node.profiles[0].profile, "bronze");
    assert!(node.profiles[0].capacity.is_some_and(|c| c.total_bytes > 0));

    let request = CreateVolume {
        name: "typed".into(),
        options: Default::default(),
    };
    let created = client.create_volume(&request).await.expect("create");
    assert_eq!(
        (created.name.as_str(), created.profile.as_str()),
        ("typed", "bronze")
    );
    assert_eq!(created.backend.to_string(), "directory");
    assert!(!created.mounted);
    let again = client.create_volume(&request).await.expect("create again");
    assert_eq!(
        again.id, created.id,
        "creating it again answers the same volume"
    );
    let listed = client.volumes().await.expect("volumes");
    assert_eq!(listed, std::slice::from_ref(&created));
    assert_eq!(client.volume("typed").await.expect("volume"), created);

    let refused = daemon_error(
        client
            .resize_volume("typed", &ResizeVolume { size: "1G".into() })
            .await,
    );
    assert!(
        refused.status >= 400 && refused.code.is_some(),
        "{refused:?}"
    );
    assert!(
        refused
            .message
            .contains("directory volumes have no size limit"),
        "{refused:?}"
    );
    let missing = daemon_error(client.volume("no-such-volume").await);
    assert_eq!(missing.status, 404, "{missing:?}");
    assert!(missing.message.contains("no-such-volume"), "{missing:?}");

    let log = client.log("typed").await.expect("empty log");
    assert!(log.commits.is_empty() && log.head.is_none(), "{log:?}");

    if root_available() {
        history_calls(&client, &daemon.data_dir(created.id)).await;
    }

    client.remove_volume("typed").await.expect("remove");
    assert!(client.volumes().await.expect("volumes").is_empty());
    daemon.stop().await;
}

/// Commit, log, status, refs, diff, checkout, reset, fsck and gc on the volume `typed`, whose
/// files are in `data`.
async fn history_calls(client: &Client, data: &Path) {
    write(data, "a.txt", "one");
    let status = client.status("typed").await.expect("status");
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(
        (status[0].path.as_str(), status[0].kind),
        ("a.txt", ChangeKind::Added)
    );
    assert_eq!(status[0].new_size, Some(3));

    let first = client
        .commit("typed", &commit_request("first"), None)
        .await
        .expect("commit without progress");
    assert!(first.changed, "{first:?}");
    assert_eq!(first.commit.message, "first");
    assert_eq!(first.commit.author, "tester");
    assert!(first.containers_not_resumed.is_empty());
    let branch = first.branch.clone().expect("a branch is checked out");

    write(data, "b.txt", "two");
    let mut events: Vec<ProgressEvent> = Vec::new();
    let second = client
        .commit(
            "typed",
            &commit_request("second"),
            Some(&mut |e| events.push(e.clone())),
        )
        .await
        .expect("commit with progress");
    assert!(second.changed && second.files_scanned >= 2, "{second:?}");
    assert_eq!(
        second.commit.parents,
        std::slice::from_ref(&first.commit.id)
    );
    assert!(!events.is_empty(), "the commit streamed its progress");
    assert!(events.iter().any(|e| e.finished), "{events:?}");

    let log = client.log("typed").await.expect("log");
    let ids: Vec<&str> = log.commits.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [second.commit.id.as_str(), first.commit.id.as_str()]);
    assert_eq!(log.head.as_deref(), Some(second.commit.id.as_str()));
    assert_eq!(log.branch.as_deref(), Some(branch.as_str()));
    assert!(client.status("typed").await.expect("status").is_empty());

    let at_first = RefRequest {
        name: "exp".into(),
        at: Some(first.commit.id[..12].to_string()),
    };
    let exp = client
        .create_branch("typed", &at_first)
        .await
        .expect("branch");
    assert_eq!(
        (exp.name.as_str(), exp.commit.as_str()),
        ("exp", first.commit.id.as_str())
    );
    let branches = client.branches("typed").await.expect("branches");
    let names: Vec<(&str, bool)> = branches
        .iter()
        .map(|b| (b.name.as_str(), b.current))
        .collect();
    assert!(names.contains(&("exp", false)), "{branches:?}");
    assert!(names.contains(&(branch.as_str(), true)), "{branches:?}");

    let tag_request = RefRequest {
        name: "v1".into(),
        at: None,
    };
    let v1 = client.create_tag("typed", &tag_request).await.expect("tag");
    assert_eq!(v1.commit, second.commit.id);
    let tags = client.tags("typed").await.expect("tags");
    assert_eq!(tags.len(), 1);
    assert_eq!(
        (tags[0].name.as_str(), tags[0].commit.as_str()),
        ("v1", v1.commit.as_str())
    );

    let query = DiffQuery {
        from: Some(first.commit.id.clone()),
        to: Some("v1".into()),
    };
    let diff = client.diff("typed", &query).await.expect("diff");
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert_eq!(
        (diff[0].path.as_str(), diff[0].kind),
        ("b.txt", ChangeKind::Added)
    );

    let mut events = 0;
    let to_exp = CheckoutRequest {
        rev: "exp".into(),
        new_branch: None,
        force: false,
        stop_removable: false,
    };
    let checked_out = client
        .checkout("typed", &to_exp, Some(&mut |_| events += 1))
        .await
        .expect("checkout exp");
    assert_eq!(checked_out.branch.as_deref(), Some("exp"));
    assert_eq!(checked_out.commit, first.commit.id);
    assert_eq!(checked_out.removed, 1, "b.txt goes: {checked_out:?}");
    assert!(events > 0, "the checkout streamed its progress");
    assert!(!data.join("b.txt").exists());

    write(data, "c.txt", "three");
    let reset = client
        .reset(
            "typed",
            &ResetRequest {
                rev: "v1".into(),
                stop_removable: false,
            },
            None,
        )
        .await
        .expect("reset --hard v1");
    assert_eq!(reset.branch.as_deref(), Some("exp"));
    assert_eq!(reset.commit, second.commit.id);
    assert!(data.join("b.txt").exists() && !data.join("c.txt").exists());

    let back = CheckoutRequest {
        rev: branch.clone(),
        new_branch: None,
        force: false,
        stop_removable: false,
    };
    let checked_out = client
        .checkout("typed", &back, None)
        .await
        .expect("checkout back");
    assert_eq!(checked_out.branch.as_deref(), Some(branch.as_str()));
    client
        .delete_branch("typed", "exp")
        .await
        .expect("delete branch");
    let branches = client.branches("typed").await.expect("branches");
    assert!(branches.iter().all(|b| b.name != "exp"), "{branches:?}");
    let gone = daemon_error(client.delete_branch("typed", "exp").await);
    assert_eq!(gone.status, 404, "{gone:?}");

    let mut phases = Vec::new();
    let fsck = client
        .fsck(Some(&mut |e| phases.push(e.phase.clone())))
        .await
        .expect("fsck");
    assert!(fsck.clean && fsck.objects_checked > 0, "{fsck:?}");
    assert!(!phases.is_empty(), "fsck streamed its progress");
    let gc = client
        .gc(&dvol_api::GcRequest::default(), None)
        .await
        .expect("gc");
    assert!(gc.objects_kept > 0, "{gc:?}");
}

fn commit_request(message: &str) -> CommitRequest {
    CommitRequest {
        message: message.into(),
        author: Some("tester".into()),
        pause: false,
    }
}
