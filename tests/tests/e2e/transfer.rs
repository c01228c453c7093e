//! Volumes between hosts: push, clone, fetch, pull and move between daemons in network
//! namespaces of their own (a host with a Docker Engine of its own where containers matter),
//! over TCP with TLS (test certificates), with the CLI of each host talking only to its own
//! daemon.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use dvol_tests::certs::TestCa;
use dvol_tests::fixtures::*;
use dvol_tests::host_engine::HostEngine;
use dvol_tests::netns::{Host, Topology};
use dvol_tests::relay::Relay;
use dvol_tests::{Daemon, HOST_PORT, TEST_IMAGE};

/// Runs the CLI of `daemon`'s host; its stdout, after asserting success.
fn dvol_ok(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.cli(args);
    assert_succeeded(daemon, &format!("dvol {}", args.join(" ")), &out)
}

/// Runs the CLI of `daemon`'s host; its stderr, after asserting failure.
fn dvol_fails(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.cli(args);
    assert_failed(daemon, &format!("dvol {}", args.join(" ")), &out)
}

/// A daemon of `host` listening with TLS (a certificate for its address from `ca`).
fn tls_daemon(host: &Host, ca: &TestCa, dir: &Path) -> Daemon {
    Daemon::start_in_tls(host, None, ca, dir)
}

/// `from` knows `to` as remote `name`, trusting `ca`.
fn add_remote(from: &Daemon, name: &str, to: &Daemon, host: &Host, ca: &Path) {
    let url = format!("tcp://{}:{HOST_PORT}", host.addr());
    dvol_ok(
        from,
        &[
            "remote",
            "add",
            name,
            &url,
            "--token-file",
            &to.token_file().display().to_string(),
            "--ca",
            &ca.display().to_string(),
        ],
    );
}

/// Every path of `dir` with its type, mode, owner, mtime (ns), size (of what is not a
/// directory), whether it has holes (allocated less than its size) and symlink target, then the
/// hash of every file: equal digests mean equal trees, on any filesystem (directory sizes and
/// exact block counts differ between filesystems and are left out).
fn tree_digest(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "cd \"$1\" && find . -mindepth 1 -path ./lost+found -prune -o -printf '%p\\t%y\\t%m\\t%U:%G\\t%T@\\t%s\\t%b\\t%l\\n' | LC_ALL=C sort \
             && find . -path ./lost+found -prune -o -type f -print | LC_ALL=C sort | xargs -r sha256sum",
        )
        .arg("sh")
        .arg(dir)
        .output()
        .expect("digest");
    assert!(
        out.status.success(),
        "digest of {}: {}",
        dir.display(),
        stderr(&out)
    );
    stdout(&out)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 8 {
                return line.to_string();
            }
            let (size, blocks): (u64, u64) = (f[5].parse().unwrap(), f[6].parse().unwrap());
            let size = if f[1] == "d" {
                "-".to_string()
            } else {
                size.to_string()
            };
            let holes = f[1] == "f" && blocks * 512 < f[5].parse::<u64>().unwrap();
            format!(
                "{} {} {} {} {} {size} holes={holes} {}",
                f[0], f[1], f[2], f[3], f[4], f[7]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The digest of volume `name`'s files on `daemon`, read while the daemon has it mounted.
fn volume_digest(daemon: &Daemon, name: &str) -> String {
    let mounted = plugin_ok(daemon, "VolumeDriver.Mount", &mount_body(name, "digest"));
    let path = mounted["Mountpoint"]
        .as_str()
        .expect("mountpoint")
        .to_string();
    let digest = tree_digest(Path::new(&path));
    plugin_ok(daemon, "VolumeDriver.Unmount", &mount_body(name, "digest"));
    digest
}

/// Runs `script` in volume `name`'s files on `daemon` (mounted meanwhile).
fn in_volume(daemon: &Daemon, name: &str, script: &str) {
    let mounted = plugin_ok(daemon, "VolumeDriver.Mount", &mount_body(name, "writer"));
    let path = mounted["Mountpoint"]
        .as_str()
        .expect("mountpoint")
        .to_string();
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(&path)
        .output()
        .expect("sh");
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    plugin_ok(daemon, "VolumeDriver.Unmount", &mount_body(name, "writer"));
}

/// The commit ids of volume `name`'s log on `daemon`, newest first.
fn log_ids(daemon: &Daemon, name: &str) -> Vec<String> {
    let log: Value =
        serde_json::from_str(&dvol_ok(daemon, &["log", "-V", name, "--json"])).unwrap();
    log["commits"]
        .as_array()
        .expect("commits")
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn push_json(daemon: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["push"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(&dvol_ok(daemon, &all)).expect("push --json")
}

/// Runs `script` (busybox `sh`) in a container of `engine` with volume `name` of `daemon` at
/// `/data`; its stdout.
fn run_with(engine: &HostEngine, daemon: &Daemon, name: &str, script: &str) -> String {
    let volume = format!("{name}:/data");
    engine.docker_ok(&[
        "run",
        "--rm",
        "--volume-driver",
        &daemon.driver,
        "-v",
        &volume,
        TEST_IMAGE,
        "sh",
        "-c",
        script,
    ])
}

/// What a container of `engine` sees in volume `name`: every path with its type, mode, owner,
/// mtime (ns), size and symlink target, and every file's hash, sorted.
fn seen_by_container(engine: &HostEngine, daemon: &Daemon, name: &str) -> String {
    let listing = run_with(
        engine,
        daemon,
        name,
        "cd /data && find . ! -type d -exec stat -c '%n|%F|%a|%u:%g|%y|%s|%N' {} + \
         && find . -type d -exec stat -c '%n|%F|%a|%u:%g|%y' {} + \
         && find . -type f -exec sha256sum {} +",
    );
    let mut lines: Vec<&str> = listing.lines().collect();
    lines.sort_unstable();
    assert!(lines.len() > 100, "the container saw the files: {listing}");
    lines.join("\n")
}

#[test]
fn push_then_clone_carry_a_volume_and_its_history_between_hosts_and_send_only_what_is_new() {
    let Some(topology) = Topology::for_test(&["a", "b", "c"]) else {
        return;
    };
    // a and b are hosts with a Docker Engine each.
    let (Some(engine_a), Some(engine_b)) = (HostEngine::for_test(), HostEngine::for_test()) else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dvol test CA");
    let (ha, hb, hc) = (topology.host("a"), topology.host("b"), topology.host("c"));
    let a = Daemon::start_in_tls(ha, Some(&engine_a), &ca, certs.path());
    let b = Daemon::start_in_tls(hb, Some(&engine_b), &ca, certs.path());
    let c = tls_daemon(hc, &ca, certs.path());
    add_remote(&a, "b", &b, hb, ca.pem_path());
    add_remote(&c, "b", &b, hb, ca.pem_path());
    let remotes: Value = serde_json::from_str(&dvol_ok(&a, &["remote", "ls", "--json"])).unwrap();
    assert_eq!(remotes[0]["name"], "b");
    assert_eq!(remotes[0]["tls"], true);
    assert!(
        !remotes.to_string().contains(
            &std::fs::read_to_string(b.token_file())
                .unwrap()
                .trim()
                .to_string()
        ),
        "the token is never answered"
    );

    dvol_ok(&a, &["init", "orders@bronze"]);
    in_volume(
        &a,
        "orders",
        "mkdir -p db/base && seq 1 200000 > db/base/table && chmod 640 db/base/table \
         && ln -s base/table db/link && truncate -s 64M db/sparse && printf x | dd of=db/sparse bs=1 seek=10M conv=notrunc status=none \
         && touch -d '2020-01-02 03:04:05.123456789' db/base/table && mkfifo db/pipe",
    );
    let source = a.root.clone();
    write_random_files(&volume_data(&a, "orders"), 3, 64);
    dvol_ok(&a, &["commit", "-V", "orders", "-m", "nightly"]);

    let first = push_json(&a, &["-V", "orders", "b"]);
    assert_eq!(first["outcome"], "created", "{first:#}");
    assert_eq!(first["checked_out"], true);
    assert_eq!(
        log_ids(&b, "orders"),
        log_ids(&a, "orders"),
        "the same commit ids"
    );
    assert_eq!(
        volume_digest(&b, "orders"),
        volume_digest(&a, "orders"),
        "the same files"
    );
    assert_eq!(
        seen_by_container(&engine_b, &b, "orders"),
        seen_by_container(&engine_a, &a, "orders"),
        "a container on b sees what one on a sees"
    );
    let full_objects = first["objects_sent"].as_u64().unwrap();
    assert!(full_objects > 90, "{first:#}");

    // One file changes: the second push sends only the new objects.
    in_volume(&a, "orders", "echo more >> db/base/table");
    dvol_ok(&a, &["commit", "-V", "orders", "-m", "more"]);
    let second = push_json(&a, &["-V", "orders", "b"]);
    assert_eq!(second["outcome"], "fast_forward", "{second:#}");
    let sent = second["objects_sent"].as_u64().unwrap();
    assert!(
        (2..=6).contains(&sent),
        "a one-file change sends its chunk, the trees above it and the commit: {second:#}"
    );
    assert!(
        second["bytes_sent"].as_u64().unwrap() < 1 << 20,
        "{second:#}"
    );
    assert_eq!(log_ids(&b, "orders"), log_ids(&a, "orders"));
    assert_eq!(volume_digest(&b, "orders"), volume_digest(&a, "orders"));

    let third = push_json(&a, &["-V", "orders", "b"]);
    assert_eq!(third["outcome"], "up_to_date", "{third:#}");
    assert_eq!(third["objects_sent"], 0);

    // A container on a writes once more; then the volume moves to b, where a container sees
    // a's last state, and a's engine can no longer mount it.
    let script = "echo last >> /data/db/base/table && sync";
    run_with(&engine_a, &a, "orders", script);
    let last_on_a = seen_by_container(&engine_a, &a, "orders");
    let moved: Value =
        serde_json::from_str(&dvol_ok(&a, &["move", "orders", "b", "--json"])).unwrap();
    assert!(moved["stopped"].as_array().unwrap().is_empty(), "{moved:#}");
    assert_eq!(seen_by_container(&engine_b, &b, "orders"), last_on_a);
    let volume = "orders:/data";
    let out = engine_a.docker(&[
        "run",
        "--rm",
        "--volume-driver",
        &a.driver,
        "-v",
        volume,
        TEST_IMAGE,
        "true",
    ]);
    assert!(!out.status.success(), "a refuses to mount a moved volume");
    assert!(
        stderr(&out).contains("moved to remote b"),
        "{}",
        stderr(&out)
    );
    assert_eq!(log_ids(&b, "orders"), log_ids(&a, "orders"));
    assert!(log(&b, "orders").contains("move to b"));
    let view: Value = serde_json::from_str(&dvol_ok(&a, &["volume", "inspect", "orders"])).unwrap();
    assert_eq!(view["moved_to"]["remote"], "b", "{view:#}");
    assert_eq!(view["moved_to"]["commit"], log_ids(&a, "orders")[0]);
    assert!(dvol_ok(&a, &["volume", "ls"]).contains("moved to b"));
    let view: Value = serde_json::from_str(&dvol_ok(&b, &["volume", "inspect", "orders"])).unwrap();
    assert!(view.get("moved_to").is_none(), "b owns it: {view:#}");

    // A third host clones from b (a chain a -> b -> c) into another profile and name.
    let cloned: Value = serde_json::from_str(&dvol_ok(
        &c,
        &[
            "clone",
            "b",
            "orders",
            "orders-test",
            "-o",
            "profile=bronze",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(cloned["outcome"], "created", "{cloned:#}");
    assert_eq!(log_ids(&c, "orders-test"), log_ids(&b, "orders"));
    assert_eq!(
        volume_digest(&c, "orders-test"),
        volume_digest(&b, "orders")
    );
    // Any backend to any backend: a directory volume cloned into a loop-mounted ext4 one.
    let silver: Value = serde_json::from_str(&dvol_ok(
        &c,
        &[
            "clone",
            "b",
            "orders",
            "orders-silver",
            "-o",
            "profile=silver",
            "-o",
            "size=256M",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(silver["outcome"], "created", "{silver:#}");
    let view: Value =
        serde_json::from_str(&dvol_ok(&c, &["volume", "inspect", "orders-silver"])).unwrap();
    assert_eq!(view["profile"], "silver");
    assert_eq!(
        volume_digest(&c, "orders-silver"),
        volume_digest(&b, "orders")
    );
    let again = dvol_fails(&c, &["clone", "b", "orders", "orders-test"]);
    assert!(again.contains("exists on this host"), "{again}");

    for (daemon, when) in [(&a, "on a"), (&b, "on b"), (&c, "on c")] {
        assert_fsck_clean(daemon, when);
    }
    let _ = source;
}

#[test]
fn diverged_branches_are_refused_kept_as_a_stash_or_forced_and_bad_credentials_refused() {
    let Some(topology) = Topology::for_test(&["a", "b"]) else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dvol test CA");
    let other_ca = TestCa::new("another CA");
    let (ha, hb) = (topology.host("a"), topology.host("b"));
    let a = tls_daemon(ha, &ca, certs.path());
    let b = tls_daemon(hb, &ca, certs.path());
    add_remote(&a, "b", &b, hb, ca.pem_path());

    dvol_ok(&a, &["init", "ledger@bronze"]);
    in_volume(&a, "ledger", "echo one > f");
    dvol_ok(&a, &["commit", "-V", "ledger", "-m", "one"]);
    push_json(&a, &["-V", "ledger", "b"]);

    // Both sides commit on master.
    in_volume(&b, "ledger", "echo on-b > f");
    dvol_ok(&b, &["commit", "-V", "ledger", "-m", "made on b"]);
    in_volume(&a, "ledger", "echo on-a > f");
    dvol_ok(&a, &["commit", "-V", "ledger", "-m", "made on a"]);
    let b_tip = log_ids(&b, "ledger")[0].clone();

    let refused = dvol_fails(&a, &["push", "-V", "ledger", "b"]);
    assert_contains_all(
        &refused,
        &["diverged", "made on b", "made on a", "--stash", "--force"],
    );
    assert_eq!(
        log_ids(&b, "ledger")[0],
        b_tip,
        "a refused push changes nothing"
    );

    let stashed = push_json(&a, &["-V", "ledger", "b", "--stash"]);
    assert_eq!(stashed["outcome"], "stashed", "{stashed:#}");
    let stash = stashed["stashed_as"].as_str().unwrap().to_string();
    assert!(stash.starts_with("master-stash-"), "{stash}");
    let branches = dvol_ok(&b, &["branch", "-V", "ledger"]);
    assert!(branches.contains(&stash), "{branches}");
    let after = log_ids(&b, "ledger");
    assert_eq!(
        after[0],
        log_ids(&a, "ledger")[0],
        "master moved to a's commit"
    );
    assert!(
        after.contains(&b_tip),
        "b's own commit is kept on the stash branch"
    );
    assert_eq!(volume_digest(&b, "ledger"), volume_digest(&a, "ledger"));

    // b moves on again; --force replaces its branch.
    in_volume(&b, "ledger", "echo again-b > f");
    dvol_ok(&b, &["commit", "-V", "ledger", "-m", "again on b"]);
    let forced = push_json(&a, &["-V", "ledger", "b", "--force"]);
    assert_eq!(forced["outcome"], "forced", "{forced:#}");
    assert_eq!(log_ids(&b, "ledger")[0], log_ids(&a, "ledger")[0]);

    // An unrelated volume of the same name.
    dvol_ok(&b, &["init", "other@bronze"]);
    in_volume(&b, "other", "echo b > f");
    dvol_ok(&b, &["commit", "-V", "other", "-m", "b's own"]);
    dvol_ok(&a, &["init", "other@bronze"]);
    in_volume(&a, "other", "echo a > f");
    dvol_ok(&a, &["commit", "-V", "other", "-m", "a's own"]);
    let unrelated = dvol_fails(&a, &["push", "-V", "other", "b"]);
    assert!(unrelated.contains("share no commit"), "{unrelated}");

    // A wrong token, and a CA that did not sign b's certificate.
    let wrong_token = certs.path().join("wrong.token");
    std::fs::write(&wrong_token, "not-the-token\n").unwrap();
    let url = format!("tcp://{}:{HOST_PORT}", hb.addr());
    dvol_ok(
        &a,
        &[
            "remote",
            "add",
            "b-bad-token",
            &url,
            "--token-file",
            &wrong_token.display().to_string(),
            "--ca",
            &ca.pem_path().display().to_string(),
        ],
    );
    let denied = dvol_fails(&a, &["push", "-V", "ledger", "b-bad-token"]);
    assert!(denied.contains("bearer token"), "{denied}");
    dvol_ok(
        &a,
        &[
            "remote",
            "add",
            "b-other-ca",
            &url,
            "--token-file",
            &b.token_file().display().to_string(),
            "--ca",
            &other_ca.pem_path().display().to_string(),
        ],
    );
    let untrusted = dvol_fails(&a, &["push", "-V", "ledger", "b-other-ca"]);
    assert!(untrusted.contains("not signed by the CA"), "{untrusted}");

    assert_fsck_clean(&a, "on a");
    assert_fsck_clean(&b, "on b");
}

/// Where volume `name`'s files are, mounted for the caller's writes until the next
/// [`in_volume`] (a bronze volume's directory).
fn volume_data(daemon: &Daemon, name: &str) -> std::path::PathBuf {
    let view: Value = serde_json::from_str(&dvol_ok(daemon, &["volume", "inspect", name])).unwrap();
    data_dir(daemon, view["id"].as_str().unwrap())
}

/// Stored bytes of every object in `daemon`'s history store.
fn stored_bytes(daemon: &Daemon) -> u64 {
    let out = Command::new("du")
        .args(["-sb"])
        .arg(daemon.root.join("history/objects"))
        .output()
        .expect("du");
    stdout(&out)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du -sb")
}

/// Whether `daemon` has a receive in progress (a marker in its history store).
fn receiving(daemon: &Daemon) -> bool {
    std::fs::read_dir(daemon.root.join("history/incoming")).is_ok_and(|mut d| d.next().is_some())
}

/// Starts `dvol push -V VOLUME REMOTE --retries 0 --json` on `daemon`'s host (the test
/// decides what runs again), waits until `relay` has
/// forwarded `bytes` more and the receiver `to` keeps a receive marker, and returns the
/// running CLI.
fn push_under_way(
    daemon: &Daemon,
    volume: &str,
    remote: &str,
    relay: &Relay,
    to: &Daemon,
    bytes: u64,
) -> std::process::Child {
    let before = relay.forwarded();
    let child = daemon
        .cli_command(&["push", "-V", volume, remote, "--retries", "0", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn dvol push");
    wait_until(to, "the push to be under way", 60, || {
        relay.forwarded() >= before + bytes && receiving(to)
    });
    child
}

#[test]
fn a_push_cut_at_ten_points_or_killed_on_either_side_resumes_with_only_what_is_missing() {
    let Some(topology) = Topology::for_test(&["a", "b"]) else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dvol test CA");
    let (ha, hb) = (topology.host("a"), topology.host("b"));
    let mut a = tls_daemon(ha, &ca, certs.path());
    let mut b = tls_daemon(hb, &ca, certs.path());
    let relay = Relay::start(hb, HOST_PORT + 1, (hb.addr(), HOST_PORT).into());
    let url = format!("tcp://{}", relay.addr());
    dvol_ok(
        &a,
        &[
            "remote",
            "add",
            "b",
            &url,
            "--token-file",
            &b.token_file().display().to_string(),
            "--ca",
            &ca.pem_path().display().to_string(),
        ],
    );
    dvol_ok(&a, &["init", "big@bronze"]);
    write_random_files(&volume_data(&a, "big"), 4, 256);
    dvol_ok(&a, &["commit", "-V", "big", "-m", "30 MiB"]);
    let full = stored_bytes(&a);
    let first_tip = log_ids(&a, "big")[0].clone();

    // Cuts at ten points, from the TLS handshake to deep into the object stream; each rerun
    // (by hand: the daemon's own retries are off) continues where the last left off, so the
    // later points may never be reached.
    let mut done = None;
    for offset in [
        1_500u64,
        9_000,
        40_000,
        300_000,
        1 << 20,
        3 << 20,
        7 << 20,
        12 << 20,
        19 << 20,
        27 << 20,
    ] {
        relay.cut_after(Some(offset));
        let out = a.cli(&["push", "-V", "big", "b", "--retries", "0", "--json"]);
        if out.status.success() {
            done = Some(serde_json::from_str::<Value>(&stdout(&out)).unwrap());
            break;
        }
        let message = stderr(&out);
        assert!(message.contains("remote b"), "cut at {offset}: {message}");
        assert_fsck_clean(&b, &format!("after a cut at byte {offset}"));
        let created = b.api("GET", "/v1/volumes/big", "");
        if created.status == 200 {
            assert_eq!(
                log_ids(&b, "big")[0],
                first_tip,
                "old-or-new after a cut at {offset}"
            );
        }
    }
    relay.cut_after(None);
    assert!(relay.cuts() >= 6, "cuts made: {}", relay.cuts());
    let done = match done {
        Some(d) => d,
        None => push_json(&a, &["-V", "big", "b"]),
    };
    assert_eq!(done["outcome"], "created", "{done:#}");
    assert!(
        done["objects_skipped"].as_u64().unwrap() > 0,
        "the last push resumed: {done:#}"
    );
    assert_eq!(log_ids(&b, "big"), log_ids(&a, "big"));
    assert_eq!(volume_digest(&b, "big"), volume_digest(&a, "big"));
    assert!(
        relay.forwarded() <= full + full / 10 + (4 << 20),
        "all attempts together sent {} bytes for {full} stored: each sent only what was missing",
        relay.forwarded()
    );

    // By default the daemon tries again by itself after a cut: one call, two tries, and the
    // second sends only what the first did not get across.
    write_random_files(&volume_data(&a, "big"), 4, 256);
    dvol_ok(&a, &["commit", "-V", "big", "-m", "30 MiB again"]);
    let (cuts, before) = (relay.cuts(), relay.forwarded());
    let added = stored_bytes(&a) - full;
    // Past the receive's first durability point (16 MiB).
    relay.cut_after(Some(22 << 20));
    let retried = push_json(&a, &["-V", "big", "b"]);
    relay.cut_after(None);
    assert_eq!(relay.cuts(), cuts + 1, "one cut made");
    assert_eq!(retried["outcome"], "fast_forward", "{retried:#}");
    assert_eq!(retried["attempts"], 2, "{retried:#}");
    assert!(
        retried["objects_skipped"].as_u64().unwrap() > 0,
        "the second try skipped what the first sent: {retried:#}"
    );
    assert!(
        relay.forwarded() - before <= added + added / 10 + (4 << 20),
        "both tries together sent {} bytes for {added} new stored bytes",
        relay.forwarded() - before
    );
    assert!(
        a.log().contains("trying again"),
        "a's log says it tried again"
    );
    assert_eq!(log_ids(&b, "big"), log_ids(&a, "big"));
    assert_eq!(volume_digest(&b, "big"), volume_digest(&a, "big"));
    assert_fsck_clean(&b, "after a push the daemon tried again");
    let first_tip = log_ids(&a, "big")[0].clone();

    // The receiver killed mid-stream, then the sender: each rerun sends only the rest.
    topology.shape("a", "100mbit");
    write_random_files(&volume_data(&a, "big"), 4, 256);
    dvol_ok(&a, &["commit", "-V", "big", "-m", "30 MiB more"]);
    // Past the first durability point of the receive (16 MiB).
    let push = push_under_way(&a, "big", "b", &relay, &b, 22 << 20);
    // The receiver shows the push arriving: which volume, from which host, how far.
    let incoming = api_expect(&b, "GET", "/v1/incoming", &Value::Null, 200);
    let table = dvol_ok(&b, &["incoming"]);
    b.kill9();
    let a_id = api_expect(&a, "GET", "/v1/node", &Value::Null, 200)["id"].clone();
    let arriving = incoming
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["volume"] == "big")
        .unwrap_or_else(|| panic!("b lists no push of big: {incoming:#}"));
    assert_eq!(arriving["sender"], a_id, "{arriving:#}");
    assert_eq!(arriving["branch"], "master", "{arriving:#}");
    let (got, of) = (
        arriving["bytes_received"].as_u64().unwrap(),
        arriving["bytes_declared"].as_u64().unwrap(),
    );
    assert!(
        got > 0 && got <= of && of >= 20 << 20,
        "{got} of {of} bytes: {arriving:#}"
    );
    assert!(
        table.contains("big") && table.contains("FROM HOST"),
        "{table}"
    );
    let out = push.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the push fails when its receiver dies"
    );
    assert!(stderr(&out).contains("remote b"), "{}", stderr(&out));
    b.spawn();
    assert_fsck_clean(&b, "right after the receiver's kill -9");
    assert_eq!(log_ids(&b, "big")[0], first_tip, "the branch is old-or-new");
    let resumed = push_json(&a, &["-V", "big", "b"]);
    assert_eq!(resumed["outcome"], "fast_forward", "{resumed:#}");
    assert!(
        resumed["objects_skipped"].as_u64().unwrap() > 0,
        "{resumed:#}"
    );
    assert_eq!(volume_digest(&b, "big"), volume_digest(&a, "big"));

    write_random_files(&volume_data(&a, "big"), 4, 256);
    dvol_ok(&a, &["commit", "-V", "big", "-m", "and more"]);
    let push = push_under_way(&a, "big", "b", &relay, &b, 8 << 20);
    a.kill9();
    let _ = push.wait_with_output();
    a.spawn();
    assert_fsck_clean(&a, "right after the sender's kill -9");
    assert_fsck_clean(&b, "after the sender's kill -9");
    let resumed = push_json(&a, &["-V", "big", "b"]);
    assert_eq!(resumed["outcome"], "fast_forward", "{resumed:#}");
    assert!(
        resumed["objects_skipped"].as_u64().unwrap() > 0,
        "{resumed:#}"
    );
    assert_eq!(log_ids(&b, "big"), log_ids(&a, "big"));
    assert_eq!(volume_digest(&b, "big"), volume_digest(&a, "big"));
    assert!(
        !receiving(&b),
        "no receive marker is left once the pushes finished"
    );
    assert_eq!(
        api_expect(&b, "GET", "/v1/incoming", &Value::Null, 200),
        serde_json::json!([]),
        "a finished push is no longer listed as incoming"
    );
}

#[test]
fn a_rerun_supersedes_a_stream_the_receiver_still_holds_open_and_a_cut_clone_fetches_only_the_rest()
{
    let Some(topology) = Topology::for_test(&["a", "b"]) else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dvol test CA");
    let (ha, hb) = (topology.host("a"), topology.host("b"));
    let a = tls_daemon(ha, &ca, certs.path());
    let b = tls_daemon(hb, &ca, certs.path());
    let relay = Relay::start(hb, HOST_PORT + 1, (hb.addr(), HOST_PORT).into());
    dvol_ok(
        &a,
        &[
            "remote",
            "add",
            "b",
            &format!("tcp://{}", relay.addr()),
            "--token-file",
            &b.token_file().display().to_string(),
            "--ca",
            &ca.pem_path().display().to_string(),
        ],
    );
    dvol_ok(&a, &["init", "stalled@bronze"]);
    write_random_files(&volume_data(&a, "stalled"), 4, 256);
    dvol_ok(&a, &["commit", "-V", "stalled", "-m", "30 MiB"]);

    // The sender loses its connection 20 MiB into the stream; the receiver's side stays open
    // and silent, as after a partition it has not noticed (it would wait 60 s for a byte).
    relay.stall_after(20 << 20);
    let lost = dvol_fails(&a, &["push", "-V", "stalled", "b", "--retries", "0"]);
    assert!(lost.contains("remote b"), "{lost}");
    assert!(receiving(&b), "b still receives the stalled stream");
    let started = std::time::Instant::now();
    let resumed = push_json(&a, &["-V", "stalled", "b"]);
    assert_eq!(resumed["outcome"], "created", "{resumed:#}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the rerun did not wait for the stalled stream's idle time-out: {:?}",
        started.elapsed()
    );
    assert!(
        resumed["objects_skipped"].as_u64().unwrap() > 0,
        "what arrived before the stall was kept: {resumed:#}"
    );
    assert!(
        b.log().contains("superseded by a newer attempt"),
        "b says it stopped the old stream"
    );
    assert_eq!(log_ids(&b, "stalled"), log_ids(&a, "stalled"));
    assert_eq!(volume_digest(&b, "stalled"), volume_digest(&a, "stalled"));
    assert_fsck_clean(&b, "after a superseded stream");

    // A remote that is this host itself: moving a volume into itself is refused, and the
    // volume stays this host's.
    add_remote(&a, "me", &a, ha, ca.pem_path());
    let refused = dvol_fails(&a, &["move", "stalled", "me"]);
    assert!(refused.contains("the remote is this host"), "{refused}");
    let view: Value =
        serde_json::from_str(&dvol_ok(&a, &["volume", "inspect", "stalled"])).unwrap();
    assert!(view.get("moved_to").is_none(), "{view:#}");
    dvol_ok(&a, &["push", "-V", "stalled", "me", "--as", "stalled-copy"]);
    assert_eq!(log_ids(&a, "stalled-copy"), log_ids(&a, "stalled"));

    // A clone from b cut on the way back, past the first durability point of its receive
    // (16 MiB): the daemon tries again by itself, and the second try fetches only what the
    // first did not keep.
    dvol_ok(&b, &["init", "fresh@bronze"]);
    write_random_files(&volume_data(&b, "fresh"), 4, 256);
    let stored_before = stored_bytes(&b);
    dvol_ok(&b, &["commit", "-V", "fresh", "-m", "30 MiB on b"]);
    let fresh = stored_bytes(&b) - stored_before;
    let (cuts, back) = (relay.cuts(), relay.returned());
    relay.cut_back_after(Some(22 << 20));
    let cloned: Value = serde_json::from_str(&dvol_ok(&a, &["clone", "b", "fresh", "--json"]))
        .expect("clone --json");
    relay.cut_back_after(None);
    assert_eq!(relay.cuts(), cuts + 1, "one cut made");
    assert_eq!(cloned["outcome"], "created", "{cloned:#}");
    assert_eq!(cloned["attempts"], 2, "{cloned:#}");
    assert!(
        cloned["objects_skipped"].as_u64().unwrap() > 0,
        "the second try did not fetch what the first kept: {cloned:#}"
    );
    assert!(
        relay.returned() - back <= fresh + fresh / 10 + (4 << 20),
        "both tries together brought {} bytes for {fresh} stored",
        relay.returned() - back
    );
    assert!(
        a.log().contains("trying again"),
        "a's log says it tried again"
    );
    assert_eq!(log_ids(&a, "fresh"), log_ids(&b, "fresh"));
    assert_eq!(volume_digest(&a, "fresh"), volume_digest(&b, "fresh"));
    assert_fsck_clean(&a, "after a clone the daemon tried again");

    // Cloned again under another name: every object is here already, and none is sent.
    let back = relay.returned();
    let again: Value = serde_json::from_str(&dvol_ok(
        &a,
        &["clone", "b", "fresh", "fresh-again", "--json"],
    ))
    .expect("clone --json");
    assert_eq!(again["objects_sent"], 0, "{again:#}");
    assert_eq!(again["bytes_sent"], 0, "{again:#}");
    assert!(again["objects_skipped"].as_u64().unwrap() > 0, "{again:#}");
    assert!(
        relay.returned() - back < 1 << 20,
        "a clone of what is here brought {} bytes",
        relay.returned() - back
    );
    assert_eq!(volume_digest(&a, "fresh-again"), volume_digest(&b, "fresh"));

    // A move whose first pre-copy round is cut: the round is tried again, and the move
    // completes.
    dvol_ok(&a, &["init", "moving@bronze"]);
    write_random_files(&volume_data(&a, "moving"), 4, 256);
    dvol_ok(&a, &["commit", "-V", "moving", "-m", "30 MiB to move"]);
    let digest = volume_digest(&a, "moving");
    let cuts = relay.cuts();
    relay.cut_after(Some(10 << 20));
    let moved: Value = serde_json::from_str(&dvol_ok(&a, &["move", "moving", "b", "--json"]))
        .expect("move --json");
    relay.cut_after(None);
    assert_eq!(relay.cuts(), cuts + 1, "one cut made");
    assert!(
        a.log().contains("pre-copy round 1 of moving volume moving"),
        "a's log says it tried the round again"
    );
    assert_eq!(moved["transfer"]["outcome"], "created", "{moved:#}");
    assert_eq!(volume_digest(&b, "moving"), digest);
    let view: Value = serde_json::from_str(&dvol_ok(&a, &["volume", "inspect", "moving"])).unwrap();
    assert_eq!(view["moved_to"]["remote"], "b", "{view:#}");
}

#[test]
fn of_two_concurrent_pushes_one_wins_and_a_receiver_without_room_refuses_before_the_data() {
    let Some(topology) = Topology::for_test(&["a", "b", "c"]) else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dvol test CA");
    let (ha, hb, hc) = (topology.host("a"), topology.host("b"), topology.host("c"));
    let a = tls_daemon(ha, &ca, certs.path());
    let mut b = tls_daemon(hb, &ca, certs.path());
    let c = tls_daemon(hc, &ca, certs.path());
    add_remote(&a, "b", &b, hb, ca.pem_path());
    add_remote(&c, "b", &b, hb, ca.pem_path());

    dvol_ok(&a, &["init", "shared@bronze"]);
    in_volume(&a, "shared", "echo base > f");
    dvol_ok(&a, &["commit", "-V", "shared", "-m", "base"]);
    push_json(&a, &["-V", "shared", "b"]);
    dvol_ok(&c, &["clone", "b", "shared"]);
    write_random_files(&volume_data(&a, "shared"), 2, 256);
    dvol_ok(&a, &["commit", "-V", "shared", "-m", "from a"]);
    write_random_files(&volume_data(&c, "shared"), 2, 256);
    dvol_ok(&c, &["commit", "-V", "shared", "-m", "from c"]);
    let pushes: Vec<std::process::Child> = [&a, &c]
        .iter()
        .map(|d| {
            d.cli_command(&["push", "-V", "shared", "b", "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<std::process::Output> = pushes
        .into_iter()
        .map(|p| p.wait_with_output().unwrap())
        .collect();
    let won: Vec<usize> = (0..2).filter(|i| outs[*i].status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one push wins: {:?}",
        outs.iter().map(stderr).collect::<Vec<_>>()
    );
    let lost = stderr(&outs[1 - won[0]]);
    assert!(
        lost.contains("moved meanwhile") || lost.contains("diverged"),
        "the other is told to pull first: {lost}"
    );
    let winner = if won[0] == 0 { &a } else { &c };
    assert_eq!(log_ids(&b, "shared")[0], log_ids(winner, "shared")[0]);
    assert_eq!(volume_digest(&b, "shared"), volume_digest(winner, "shared"));
    assert_fsck_clean(&b, "after two concurrent pushes");

    // b's state root moves to a 160 MiB filesystem; a offers 120 MiB (plus the margin).
    let root = move_root_to_tmpfs(&mut b, "160m");
    dvol_ok(&a, &["init", "huge@bronze"]);
    write_random_files(&volume_data(&a, "huge"), 4, 1024);
    dvol_ok(&a, &["commit", "-V", "huge", "-m", "120 MiB"]);
    let before = stored_bytes(&b);
    let refused = dvol_fails(&a, &["push", "-V", "huge", "b"]);
    assert_contains_all(&refused, &["needs", "free", "dvol gc"]);
    assert!(
        stored_bytes(&b) < before + (1 << 20),
        "nothing of the bulk arrived: {} -> {}",
        before,
        stored_bytes(&b)
    );
    assert_fsck_clean(&b, "after a push refused for room");
    b.stop();
    drop(root);
}

/// Runs `args`, asserting success.
fn run_ok(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

/// A state root on a tmpfs of its own, unmounted (lazily, so also under a daemon still
/// running) when dropped.
struct TmpfsRoot(String);

impl Drop for TmpfsRoot {
    fn drop(&mut self) {
        let _ = Command::new("umount").args(["-l", &self.0]).output();
    }
}

/// Restarts `daemon` with its state root (copied) on a tmpfs of `size` (`160m`).
fn move_root_to_tmpfs(daemon: &mut Daemon, size: &str) -> TmpfsRoot {
    daemon.stop();
    let old = daemon.root.with_extension("old");
    std::fs::rename(&daemon.root, &old).unwrap();
    std::fs::create_dir(&daemon.root).unwrap();
    let root = daemon.root.display().to_string();
    run_ok(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        &format!("size={size}"),
        "dvol-small-root",
        &root,
    ]);
    let mounted = TmpfsRoot(root.clone());
    run_ok(&["cp", "-a", &format!("{}/.", old.display()), &root]);
    daemon.spawn();
    mounted
}

#[test]
fn a_receiver_whose_disk_fills_mid_stream_says_so_keeps_what_arrived_and_the_rerun_sends_the_rest()
{
    let Some(topology) = Topology::for_test(&["a", "b"]) else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dvol test CA");
    let (ha, hb) = (topology.host("a"), topology.host("b"));
    let a = tls_daemon(ha, &ca, certs.path());
    let mut b = tls_daemon(hb, &ca, certs.path());
    add_remote(&a, "b", &b, hb, ca.pem_path());
    // Room for the objects and the checkout, so the push passes the check before the data.
    let root = move_root_to_tmpfs(&mut b, "400m");
    dvol_ok(&a, &["init", "filling@bronze"]);
    write_random_files(&volume_data(&a, "filling"), 4, 1024);
    dvol_ok(&a, &["commit", "-V", "filling", "-m", "120 MiB"]);
    let full = stored_bytes(&a);
    topology.shape("a", "200mbit");

    let before = stored_bytes(&b);
    let push = a
        .cli_command(&["push", "-V", "filling", "b", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Past the first durability point (16 MiB), then the disk fills up under the receiver.
    wait_until(&b, "20 MiB of the push to arrive", 60, || {
        stored_bytes(&b) >= before + (20 << 20)
    });
    let filler = Path::new(&root.0).join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "status=none"])
        .arg(format!("of={}", filler.display()))
        .output()
        .unwrap();
    let out = push.wait_with_output().unwrap();
    assert!(!out.status.success(), "the push fails on a full receiver");
    assert_contains_all(&stderr(&out), &["filling", "remote b", "free space there"]);
    let arrived = stored_bytes(&b) - before;
    assert!(
        arrived >= 16 << 20,
        "what arrived before the disk filled is kept: {arrived} bytes"
    );
    assert_eq!(
        b.api("GET", "/v1/volumes/filling", "").status,
        404,
        "the volume is not made from a part of its objects"
    );
    assert_fsck_clean(&b, "with its disk full after a refused stream");

    std::fs::remove_file(&filler).unwrap();
    let resumed = push_json(&a, &["-V", "filling", "b"]);
    assert_eq!(resumed["outcome"], "created", "{resumed:#}");
    assert!(
        resumed["objects_skipped"].as_u64().unwrap() > 0,
        "the rerun skips what arrived: {resumed:#}"
    );
    assert!(
        resumed["bytes_sent"].as_u64().unwrap() + (16 << 20) <= full,
        "the rerun sends only the rest: {resumed:#}"
    );
    assert_eq!(log_ids(&b, "filling"), log_ids(&a, "filling"));
    assert_eq!(volume_digest(&b, "filling"), volume_digest(&a, "filling"));
    assert_fsck_clean(&b, "after the rerun");
    b.stop();
    drop(root);
}

#[test]
fn fetch_brings_commits_and_a_remote_tracking_ref_and_pull_moves_and_checks_out_the_branch() {
    let Some(topology) = Topology::for_test(&["a", "b"]) else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dvol test CA");
    let (ha, hb) = (topology.host("a"), topology.host("b"));
    let a = tls_daemon(ha, &ca, certs.path());
    let b = tls_daemon(hb, &ca, certs.path());
    add_remote(&a, "b", &b, hb, ca.pem_path());
    add_remote(&b, "a", &a, ha, ca.pem_path());

    dvol_ok(&a, &["init", "orders@bronze"]);
    write_random_files(&volume_data(&a, "orders"), 2, 64);
    dvol_ok(&a, &["commit", "-V", "orders", "-m", "one"]);
    push_json(&a, &["-V", "orders", "b"]);
    let one = log_ids(&a, "orders")[0].clone();

    in_volume(
        &a,
        "orders",
        "echo two > d0/f0 && mkdir -p new && echo n > new/f",
    );
    dvol_ok(&a, &["commit", "-V", "orders", "-m", "two"]);
    let two = log_ids(&a, "orders")[0].clone();
    let fetched: Value =
        serde_json::from_str(&dvol_ok(&b, &["fetch", "a", "orders", "--json"])).unwrap();
    assert_eq!(fetched["branch"], "a/master", "{fetched:#}");
    assert_eq!(fetched["commit"], two.as_str());
    let sent = fetched["objects_sent"].as_u64().unwrap();
    assert!((3..=8).contains(&sent), "only the new objects: {fetched:#}");
    // The local branch stays; the remote-tracking ref is a revision like any other.
    let branches: Value =
        serde_json::from_str(&dvol_ok(&b, &["branch", "-V", "orders", "--json"])).unwrap();
    assert_eq!(branches[0]["commit"], one.as_str(), "{branches:#}");
    let diff = dvol_ok(&b, &["diff", "-V", "orders", "master", "a/master"]);
    assert!(diff.contains("new/f") && diff.contains("d0/f0"), "{diff}");
    let again: Value =
        serde_json::from_str(&dvol_ok(&b, &["fetch", "a", "orders", "--json"])).unwrap();
    assert_eq!(again["outcome"], "up_to_date");
    assert_eq!(again["objects_sent"], 0);
    dvol_ok(
        &b,
        &["init", &format!("orders-at-two@snapshot-{}", &two[..12])],
    );
    assert_eq!(
        volume_digest(&b, "orders-at-two"),
        volume_digest(&a, "orders"),
        "a clone of the fetched commit has its files"
    );

    let pulled: Value =
        serde_json::from_str(&dvol_ok(&b, &["pull", "a", "orders", "--json"])).unwrap();
    assert_eq!(pulled["outcome"], "fast_forward", "{pulled:#}");
    assert_eq!(pulled["checked_out"], true);
    assert_eq!(
        pulled["objects_sent"], 0,
        "the fetch brought everything already"
    );
    assert_eq!(log_ids(&b, "orders")[0], two);
    assert_eq!(volume_digest(&b, "orders"), volume_digest(&a, "orders"));

    // Diverged: refused, then kept as a stash.
    in_volume(&a, "orders", "echo three > d1/f1");
    dvol_ok(&a, &["commit", "-V", "orders", "-m", "three on a"]);
    in_volume(&b, "orders", "echo mine > d1/f2");
    dvol_ok(&b, &["commit", "-V", "orders", "-m", "mine on b"]);
    let refused = dvol_fails(&b, &["pull", "a", "orders"]);
    assert_contains_all(&refused, &["diverged", "three on a", "mine on b"]);
    let stashed: Value =
        serde_json::from_str(&dvol_ok(&b, &["pull", "a", "orders", "--stash", "--json"])).unwrap();
    assert_eq!(stashed["outcome"], "stashed", "{stashed:#}");
    assert_eq!(volume_digest(&b, "orders"), volume_digest(&a, "orders"));
    assert_fsck_clean(&a, "on a");
    assert_fsck_clean(&b, "on b");
}

/// The stamps a writer left in `text`: every line a number.
fn stamps(text: &str) -> Vec<u64> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[test]
fn move_hands_a_volume_a_container_keeps_writing_to_over_with_every_write_and_the_source_refuses_it(
) {
    let Some(topology) = Topology::for_test(&["a", "b"]) else {
        return;
    };
    let Some(engine) = HostEngine::for_test() else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dvol test CA");
    let (ha, hb) = (topology.host("a"), topology.host("b"));
    let a = Daemon::start_in_tls(ha, Some(&engine), &ca, certs.path());
    let b = tls_daemon(hb, &ca, certs.path());
    add_remote(&a, "b", &b, hb, ca.pem_path());

    engine.docker_ok(&["volume", "create", "-d", &a.driver, "orders"]);
    engine.docker_ok(&["volume", "create", "-d", &a.driver, "busy"]);
    let writer = |volume: &str, name: &str| {
        let mount = format!("{volume}:/data");
        engine.docker_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "-v",
            &mount,
            TEST_IMAGE,
            "sh",
            "-c",
            "trap 'exit 0' TERM; i=0; while :; do i=$((i+1)); echo $i >> /data/stamps; sync; sleep 0.01; done",
        ])
    };
    writer("orders", "orders-writer");
    let stamps_file = a.mountpoint("orders").join("stamps");
    wait_until(&a, "the writer to have written 50 stamps", 60, || {
        std::fs::read_to_string(&stamps_file).is_ok_and(|t| stamps(&t).len() >= 50)
    });

    // Too little downtime allowed: refused before anything stops.
    writer("busy", "busy-writer");
    write_random_files(&a.mountpoint("busy"), 4, 512);
    let refused = dvol_fails(&a, &["move", "busy", "b", "--max-downtime", "1ms"]);
    assert!(refused.contains("--max-downtime"), "{refused}");
    let running = engine.docker_ok(&["inspect", "-f", "{{.State.Running}}", "busy-writer"]);
    assert_eq!(running.trim(), "true", "a refused move stops nothing");

    let moved: Value =
        serde_json::from_str(&dvol_ok(&a, &["move", "orders", "b", "--json"])).unwrap();
    assert!(!moved["rounds"].as_array().unwrap().is_empty(), "{moved:#}");
    eprintln!(
        "move: {} pre-copy round(s), downtime {} ms, final round {} bytes",
        moved["rounds"].as_array().unwrap().len(),
        moved["downtime_ms"],
        moved["transfer"]["bytes_sent"]
    );
    assert_eq!(moved["stopped"][0], "orders-writer", "{moved:#}");
    assert!(
        moved["downtime_ms"].as_u64().unwrap() < 5_000,
        "the containers stayed stopped only for the final round: {moved:#}"
    );
    let running = engine.docker_ok(&["inspect", "-f", "{{.State.Running}}", "orders-writer"]);
    assert_eq!(running.trim(), "false", "the writer is stopped on a");

    // Every stamp the writer made on a is on b, without a gap.
    let id: Value = serde_json::from_str(&dvol_ok(&a, &["volume", "inspect", "orders"])).unwrap();
    let on_a =
        std::fs::read_to_string(data_dir(&a, id["id"].as_str().unwrap()).join("stamps")).unwrap();
    let mounted = plugin_ok(&b, "VolumeDriver.Mount", &mount_body("orders", "check"));
    let on_b =
        std::fs::read_to_string(Path::new(mounted["Mountpoint"].as_str().unwrap()).join("stamps"))
            .unwrap();
    plugin_ok(&b, "VolumeDriver.Unmount", &mount_body("orders", "check"));
    let (sa, sb) = (stamps(&on_a), stamps(&on_b));
    assert_eq!(sb, sa, "b has exactly a's last state");
    assert_eq!(
        sb,
        (1..=sb.len() as u64).collect::<Vec<_>>(),
        "no stamp lost"
    );
    assert!(log(&b, "orders").contains("move to b"));

    // a refuses the volume now, through the engine and the plugin protocol alike.
    let out = engine.docker(&["run", "--rm", "-v", "orders:/data", TEST_IMAGE, "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("moved to remote b"),
        "{}",
        stderr(&out)
    );
    let refused = dvol_fails(&a, &["push", "-V", "orders", "b"]);
    assert!(refused.contains("moved to remote b"), "{refused}");

    engine.docker_ok(&["rm", "-f", "orders-writer", "busy-writer"]);
    assert_fsck_clean(&a, "on a after the move");
    assert_fsck_clean(&b, "on b after the move");
    engine.docker_ok(&["volume", "rm", "orders", "busy"]);
}

/// `dvol log` of volume `name` on `daemon`.
fn log(daemon: &Daemon, name: &str) -> String {
    dvol_ok(daemon, &["log", "-V", name])
}

#[test]
fn a_move_whose_final_round_fails_starts_the_stopped_container_again_and_keeps_the_volume() {
    let Some(topology) = Topology::for_test(&["a", "b"]) else {
        return;
    };
    let Some(engine) = HostEngine::for_test() else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dvol test CA");
    let (ha, hb) = (topology.host("a"), topology.host("b"));
    let a = Daemon::start_in_tls(ha, Some(&engine), &ca, certs.path());
    let mut b = tls_daemon(hb, &ca, certs.path());
    add_remote(&a, "b", &b, hb, ca.pem_path());
    // About 1 MB/s: the final round of a few MB takes seconds, long enough to lose b in it.
    topology.shape("a", "8mbit");

    engine.docker_ok(&["volume", "create", "-d", &a.driver, "ledger"]);
    engine.docker_ok(&[
        "run",
        "-d",
        "--name",
        "ledger-writer",
        "-v",
        "ledger:/data",
        TEST_IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; i=0; while :; do i=$((i+1)); echo $i >> /data/stamps; \
         head -c 65536 /dev/urandom > /data/blob-$((i % 50)); sync; sleep 0.01; done",
    ]);
    let stamps_file = a.mountpoint("ledger").join("stamps");
    wait_until(&a, "the writer to have written 60 stamps", 60, || {
        std::fs::read_to_string(&stamps_file).is_ok_and(|t| stamps(&t).len() >= 60)
    });
    let running = || {
        engine
            .docker_ok(&["inspect", "-f", "{{.State.Running}}", "ledger-writer"])
            .trim()
            == "true"
    };
    let mover = a
        .cli_command(&["move", "ledger", "b", "--max-downtime", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(&a, "the move to stop the writer", 120, || !running());
    b.kill9();
    let out = mover.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the move fails when the remote dies in its final round"
    );
    assert!(stderr(&out).contains("remote b"), "{}", stderr(&out));
    wait_until(&a, "the writer to run again", 30, running);
    // The volume is still a's: the engine mounts it again.
    engine.docker_ok(&["run", "--rm", "-v", "ledger:/data", TEST_IMAGE, "true"]);
    b.spawn();
    assert_fsck_clean(&a, "on a after the failed move");
    assert_fsck_clean(&b, "on b after its kill -9");
    engine.docker_ok(&["rm", "-f", "ledger-writer"]);
    engine.docker_ok(&["volume", "rm", "ledger"]);
}

#[test]
fn a_push_to_a_branch_checked_out_in_a_volume_in_use_is_refused_unless_checkout_which_restarts_its_container(
) {
    let Some(topology) = Topology::for_test(&["a", "b"]) else {
        return;
    };
    let Some(engine) = HostEngine::for_test() else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new("dvol test CA");
    let (ha, hb) = (topology.host("a"), topology.host("b"));
    let a = tls_daemon(ha, &ca, certs.path());
    let b = Daemon::start_in_tls(hb, Some(&engine), &ca, certs.path());
    add_remote(&a, "b", &b, hb, ca.pem_path());

    dvol_ok(&a, &["init", "site@bronze"]);
    in_volume(&a, "site", "echo v1 > index.html");
    dvol_ok(&a, &["commit", "-V", "site", "-m", "v1"]);
    push_json(&a, &["-V", "site", "b"]);
    engine.docker_ok(&["volume", "create", "-d", &b.driver, "site"]);
    engine.docker_ok(&[
        "run",
        "-d",
        "--name",
        "site-server",
        "-v",
        "site:/data",
        TEST_IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    let started = || engine.docker_ok(&["inspect", "-f", "{{.State.StartedAt}}", "site-server"]);
    let first_start = started();

    in_volume(&a, "site", "echo v2 > index.html");
    dvol_ok(&a, &["commit", "-V", "site", "-m", "v2"]);
    let refused = dvol_fails(&a, &["push", "-V", "site", "b"]);
    assert_contains_all(&refused, &["in use", "--checkout"]);
    assert_eq!(started(), first_start, "a refused push stops nothing");

    let pushed = push_json(&a, &["-V", "site", "b", "--checkout"]);
    assert_eq!(pushed["outcome"], "fast_forward", "{pushed:#}");
    assert_eq!(pushed["checked_out"], true);
    assert_ne!(
        started(),
        first_start,
        "the container was stopped and started again"
    );
    let running = engine.docker_ok(&["inspect", "-f", "{{.State.Running}}", "site-server"]);
    assert_eq!(running.trim(), "true");
    let seen = engine.docker_ok(&["exec", "site-server", "cat", "/data/index.html"]);
    assert_eq!(seen.trim(), "v2", "the container sees the pushed commit");
    engine.docker_ok(&["rm", "-f", "site-server"]);
    engine.docker_ok(&["volume", "rm", "site"]);
    assert_fsck_clean(&b, "on b after a push with --checkout");
}
