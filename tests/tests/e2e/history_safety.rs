//! History that must not vanish, against a real daemon and the real CLI: a commit on a detached
//! HEAD is named when checkout leaves it behind, kept by gc, listed by `dvol reflog`, restored
//! with `dvol branch NAME ID`, and removed only by `gc --prune=now`; `dvol tag -d`; a clone of
//! a commit of a silver (loop) volume is a silver volume of the same size.

use std::path::{Path, PathBuf};

use dvol_tests::fixtures::*;
use dvol_tests::{is_root, require, Daemon};
use serde_json::Value;

/// The CLI user of one volume: every history command names it with `-V`, so no
/// current-volume file is involved.
struct User {
    daemon: Daemon,
    volume: &'static str,
}

impl User {
    /// Runs `dvol args`, with `-V VOLUME` after the command word unless it is gc or fsck.
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut full: Vec<&str> = args.to_vec();
        if !matches!(args[0], "gc" | "fsck" | "volume") {
            full.splice(1..1, ["-V", self.volume]);
        }
        self.daemon.cli(&full)
    }

    /// Runs `dvol args`, which must succeed; returns (stdout, stderr).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dvol {args:?} failed: {}\ndvol daemon log:\n{}",
            stderr(&out),
            self.daemon.log()
        );
        (stdout(&out), stderr(&out))
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args).0).expect("valid JSON")
    }

    /// Runs `dvol args`, which must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "dvol {args:?} should fail; stdout: {}",
            stdout(&out)
        );
        stderr(&out)
    }

    /// The backend directory holding the (bronze) volume's files.
    fn data_dir(&self) -> PathBuf {
        let uuid = volume_id(&self.daemon, self.volume);
        self.daemon.root.join("backends/directory").join(uuid)
    }

    /// Writes `content` to the volume's file `f` and commits it; returns the commit id.
    fn commit(&self, data: &Path, content: &str, message: &str) -> String {
        std::fs::write(data.join("f"), content).unwrap();
        self.ok(&["commit", "-m", message]);
        self.json(&["log", "--json"])["head"]
            .as_str()
            .expect("HEAD commit")
            .to_string()
    }
}

/// `docker volume create -d <daemon's driver> [-o OPT]... NAME`.
fn docker_create(daemon: &Daemon, name: &str, options: &[&str]) {
    let mut args = vec!["volume", "create", "-d", &daemon.driver];
    for option in options {
        args.extend(["-o", option]);
    }
    args.push(name);
    must(daemon, &args);
}

/// The reflog's messages, newest first.
fn reflog_messages(user: &User) -> Vec<String> {
    user.json(&["reflog", "--json"])
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["message"].as_str().expect("message").to_string())
        .collect()
}

#[test]
fn a_detached_commit_is_named_kept_listed_restored_and_only_pruned_on_request() {
    if !require("root", is_root()) {
        return;
    }
    let user = User {
        daemon: Daemon::start(),
        volume: "story",
    };
    user.ok(&["volume", "create", "story"]);
    let data = user.data_dir();
    user.commit(&data, "one", "one");
    user.ok(&["tag", "v1"]);
    let two = user.commit(&data, "two", "two");

    // Work on a detached HEAD, then go back to master: the warning names the commit.
    let (out, _) = user.ok(&["checkout", "v1"]);
    assert!(out.contains("detached"), "{out}");
    let detached = user.commit(&data, "detached work", "experiment on v1");
    let (_, warning) = user.ok(&["checkout", "master"]);
    let short = &detached[..12];
    assert!(
        warning.contains("Warning: you are leaving 1 commit behind")
            && warning.contains(&format!("{short} experiment on v1"))
            && warning.contains(&format!("`dvol branch NAME {short}` keeps it")),
        "checkout must name the commit it leaves behind: {warning:?}"
    );
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "two");

    // gc keeps it: the reflog names it.
    let gc = user.json(&["gc", "--json"]);
    assert_eq!(gc["objects_removed"], 0, "{gc}");
    assert!(gc["kept_for_reflog"].as_u64().unwrap() > 0, "{gc}");
    let fsck = user.json(&["fsck", "--json"]);
    assert_eq!(
        (fsck["clean"].as_bool(), fsck["unreachable"].as_u64()),
        (Some(true), Some(0)),
        "{fsck}"
    );

    // dvol reflog lists it, newest first.
    let (listing, _) = user.ok(&["reflog"]);
    let first = listing.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&two[..12])
            && first.contains("HEAD")
            && first.ends_with(&format!("checkout: moving from {short} to master")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(short) && l.ends_with("commit: experiment on v1")),
        "{listing}"
    );
    assert_eq!(
        reflog_messages(&user),
        [
            format!("checkout: moving from {short} to master"),
            "commit: experiment on v1".to_string(),
            "checkout: moving from master to v1".to_string(),
            "commit: two".to_string(),
            "commit (initial): one".to_string(),
        ]
    );
    assert_eq!(
        user.json(&["reflog", "--json", "-n", "2"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // dvol branch keep ID restores it.
    let (out, _) = user.ok(&["branch", "keep", short]);
    assert!(
        out.contains(&format!("created branch keep at {short}")),
        "{out}"
    );
    let (_, warning) = user.ok(&["checkout", "keep"]);
    assert!(!warning.contains("Warning"), "{warning:?}");
    assert_eq!(
        std::fs::read_to_string(data.join("f")).unwrap(),
        "detached work"
    );
    user.ok(&["checkout", "master"]);

    // Another commit left behind, then gc --prune=now: the reflog expires and the unreferenced
    // commit goes; the branch keeps its commit.
    user.ok(&["checkout", "v1"]);
    let abandoned = user.commit(&data, "abandoned", "abandoned");
    let (_, warning) = user.ok(&["checkout", "master"]);
    assert!(
        warning.contains(&format!("{} abandoned", &abandoned[..12])),
        "{warning:?}"
    );
    let kept = user.json(&["gc", "--json"]);
    assert_eq!(kept["objects_removed"], 0, "{kept}");
    let (pruned, _) = user.ok(&["gc", "--prune=now"]);
    assert!(
        pruned.starts_with("removed ") && !pruned.starts_with("removed 0 "),
        "{pruned}"
    );
    assert!(pruned.contains("expired"), "{pruned}");
    assert!(reflog_messages(&user).is_empty());
    let gone = user.fails(&["checkout", &abandoned[..12]]);
    assert!(gone.contains("unknown revision"), "{gone}");
    user.ok(&["checkout", "keep"]);
    assert_eq!(
        std::fs::read_to_string(data.join("f")).unwrap(),
        "detached work"
    );
    user.ok(&["checkout", "master"]);
    let fsck = user.json(&["fsck", "--json"]);
    assert_eq!(
        (fsck["clean"].as_bool(), fsck["unreachable"].as_u64()),
        (Some(true), Some(0)),
        "{fsck}"
    );
    let bad = user.fails(&["gc", "--prune=soon"]);
    assert!(bad.contains("prune \"soon\""), "{bad}");

    // reset --hard off a commit no other ref reaches warns too.
    let (_, warning) = user.ok(&["reset", "--hard", "HEAD^"]);
    assert!(
        warning.contains("leaving 1 commit behind")
            && warning.contains(&format!("{} two", &two[..12])),
        "{warning:?}"
    );
    assert_eq!(reflog_messages(&user)[0], "reset: moving to HEAD^");

    // dvol tag -d.
    let (out, _) = user.ok(&["tag", "-d", "v1"]);
    assert_eq!(out.trim(), "deleted tag v1");
    assert_eq!(user.json(&["tag", "--json"]), serde_json::json!([]));
    let missing = user.fails(&["tag", "-d", "v1"]);
    assert!(missing.contains("no tag named 'v1'"), "{missing}");
    user.ok(&["tag", "v1"]);
}

#[test]
fn a_clone_of_a_commit_of_a_silver_volume_is_a_silver_volume_of_the_same_size() {
    let Some(daemon) = Daemon::for_docker_test() else {
        return;
    };
    let source = DockerVolume::new("silver-src");
    docker_create(&daemon, &source.name, &["profile=silver", "size=64M"]);
    run_ok(&daemon, &source.name, "echo committed > /data/f");
    let id = commit(&daemon, &source.name, "state")["commit"]["id"]
        .as_str()
        .expect("commit id")
        .to_string();
    run_ok(&daemon, &source.name, "echo later > /data/f");
    let origin = api_volume(&daemon, &source.name);
    assert_eq!(
        (origin["profile"].as_str(), origin["backend"].as_str()),
        (Some("silver"), Some("loop")),
        "{origin}"
    );

    // NAME@snapshot-<commit prefix>, from the Docker CLI.
    let copy = DockerVolume::new("silver-copy");
    let copy_name = copy.alias(&format!("snapshot-{}", &id[..10]));
    docker_create(&daemon, &copy_name, &[]);
    let view = api_volume(&daemon, &copy.name);
    assert_eq!(
        (
            view["profile"].as_str(),
            view["backend"].as_str(),
            &view["size_bytes"],
            &view["filesystem"]
        ),
        (
            Some("silver"),
            Some("loop"),
            &origin["size_bytes"],
            &origin["filesystem"]
        ),
        "a clone of a commit is a volume like the commit's: {view:#}"
    );
    assert_eq!(run_ok(&daemon, &copy_name, "cat /data/f"), "committed");

    // -o from=<commit prefix>, with an explicit size: the option wins, the profile follows.
    let sized = DockerVolume::new("silver-sized");
    let from = format!("from={}", &id[..10]);
    docker_create(&daemon, &sized.name, &[&from, "size=96M"]);
    let view = api_volume(&daemon, &sized.name);
    assert_eq!(
        (view["profile"].as_str(), view["size_bytes"].as_u64()),
        (Some("silver"), Some(96 << 20)),
        "{view:#}"
    );
}
