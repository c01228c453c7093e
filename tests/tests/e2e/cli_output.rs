//! `--json` and `--quiet` on the commands that do something, against a real daemon: the JSON
//! has the REST API's field names (compared with the REST answer to the same call), `--quiet`
//! prints only the id or name made, and no progress.

use std::collections::BTreeSet;

use dvol_tests::fixtures::*;
use serde_json::{json, Value};

/// The keys of a JSON object.
fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("a JSON object: {value}"))
        .keys()
        .cloned()
        .collect()
}

/// Runs `dvol args`, which must succeed, and answers stdout and stderr as printed.
fn ok_with_stderr(user: &CliUser, args: &[&str]) -> (String, String) {
    let out = user.run(args);
    assert_succeeded(&user.daemon, &format!("dvol {args:?}"), &out);
    (stdout_as_printed(&out), stderr_as_printed(&out))
}

/// Runs `dvol args -q`: it must succeed and print `expected` on stdout and nothing on stderr
/// (no progress, no summary).
fn quiet(user: &CliUser, args: &[&str], expected: &str) {
    let mut args = args.to_vec();
    args.push("-q");
    let (stdout, stderr) = ok_with_stderr(user, &args);
    assert_eq!(stdout, expected, "stdout of dvol {args:?}");
    assert_eq!(stderr, "", "stderr of dvol {args:?}");
}

#[test]
fn history_commands_print_the_rest_answer_as_json_and_only_ids_when_quiet() {
    let Some(user) = CliUser::for_root_test() else {
        return;
    };
    let daemon = &user.daemon;

    // init: the volume as the REST API shows it; -q prints the name alone.
    let created = user.json(&["init", "outj", "--json"]);
    assert_eq!(created["name"], "outj", "{created}");
    assert_eq!(keys(&created), keys(&api_volume(daemon, "outj")));
    quiet(&user, &["init", "outq"], "outq\n");
    assert_eq!(
        std::fs::read_to_string(user.current_file()).unwrap().trim(),
        "outq",
        "init -q still makes the volume current"
    );
    let switched = user.json(&["switch", "outj", "--json"]);
    assert_eq!(switched["name"], "outj", "{switched}");
    quiet(&user, &["switch", "outj"], "");

    // commit: --json is the REST commit answer; -q prints the new commit's full id.
    let data = user.data_dir("outj");
    std::fs::write(data.join("a.txt"), b"first").unwrap();
    let first = user.json(&["commit", "-m", "first", "--json"]);
    assert_eq!(first["changed"], true, "{first}");
    assert_eq!(first["commit"]["message"], "first", "{first}");
    std::fs::write(data.join("b.txt"), b"by rest").unwrap();
    let by_rest = commit(daemon, "outj", "by rest");
    assert_eq!(keys(&first), keys(&by_rest));
    assert_eq!(keys(&first["commit"]), keys(&by_rest["commit"]));
    std::fs::write(data.join("c.txt"), b"third").unwrap();
    let (id, stderr) = ok_with_stderr(&user, &["commit", "-m", "third", "-q"]);
    assert_eq!(stderr, "", "commit -q shows no progress");
    let head = commit_log(daemon, "outj")["head"]
        .as_str()
        .expect("head")
        .to_string();
    assert_eq!(
        id,
        format!("{head}\n"),
        "commit -q prints the new commit's id"
    );

    // branch and tag: the ref made, the ref deleted as it was, the names under -q.
    let branch = user.json(&["branch", "side", "--json"]);
    assert_eq!(branch["name"], "side", "{branch}");
    assert_eq!(branch["commit"], head.as_str(), "{branch}");
    let rest_branches = api_expect(
        daemon,
        "GET",
        "/v1/volumes/outj/branches",
        &Value::Null,
        200,
    );
    assert_eq!(keys(&branch), keys(&rest_branches[0]));
    quiet(&user, &["branch"], "master\nside\n");
    let deleted = user.json(&["branch", "-d", "side", "--json"]);
    assert_eq!(deleted["name"], "side", "{deleted}");
    quiet(&user, &["branch"], "master\n");
    let tag = user.json(&["tag", "v1", "--json"]);
    assert_eq!(
        (tag["name"].as_str(), tag["commit"].as_str()),
        (Some("v1"), Some(head.as_str()))
    );
    quiet(&user, &["tag", "v2"], "");
    quiet(&user, &["tag"], "v1\nv2\n");
    assert_eq!(user.json(&["tag", "-d", "v2", "--json"])["name"], "v2");

    // checkout and reset: the REST answer (same keys as a REST checkout); nothing under -q.
    let detached = user.json(&["checkout", "HEAD^", "--json"]);
    assert_eq!(detached["branch"], Value::Null, "{detached}");
    assert_eq!(detached["removed"], 1, "c.txt goes: {detached}");
    let by_rest = api_expect(
        daemon,
        "POST",
        "/v1/volumes/outj/checkout",
        &json!({ "ref": "master" }),
        200,
    );
    assert_eq!(keys(&detached), keys(&by_rest));
    quiet(&user, &["checkout", "v1"], "");
    quiet(&user, &["checkout", "master"], "");
    let reset = user.json(&["reset", "--hard", "HEAD~2", "--json"]);
    assert_eq!(reset["branch"], "master", "{reset}");
    assert_eq!(reset["removed"], 2, "b.txt and c.txt go: {reset}");
    assert_eq!(keys(&reset), keys(&by_rest));
    assert!(!data.join("b.txt").exists());
    quiet(&user, &["reset", "--hard", "v1"], "");
    assert_eq!(std::fs::read(data.join("c.txt")).unwrap(), b"third");

    // gc and fsck: their reports; nothing under -q.
    let gc = user.json(&["gc", "--json"]);
    assert!(gc["objects_kept"].as_u64().unwrap() > 0, "{gc}");
    quiet(&user, &["gc"], "");
    let fsck = user.json(&["fsck", "--json"]);
    assert_eq!(fsck["clean"], true, "{fsck}");
    quiet(&user, &["fsck"], "");

    // rm: the volume as it was; the current volume is forgotten.
    let removed = user.json(&["rm", "outq", "--json"]);
    assert_eq!(removed["name"], "outq", "{removed}");
    assert!(!api_names(daemon).contains(&"outq".to_string()));
    quiet(&user, &["rm", "outj"], "");
    assert!(
        !user.current_file().exists(),
        "rm -q forgets the current volume"
    );
    assert_fsck_clean(daemon, "after the output checks");
}

#[test]
fn volume_and_remote_commands_print_the_rest_answer_as_json_and_names_when_quiet() {
    let Some(user) = CliUser::for_root_test() else {
        return;
    };
    let daemon = &user.daemon;

    quiet(
        &user,
        &["volume", "create", "vq@silver", "-o", "size=64M"],
        "vq\n",
    );
    let made = user.json(&["volume", "create", "vj", "--json"]);
    assert_eq!(keys(&made), keys(&api_volume(daemon, "vj")));
    let grown = user.json(&["volume", "resize", "vq", "96M", "--json"]);
    assert_eq!(grown["size_bytes"], 96u64 << 20, "{grown}");
    assert_eq!(keys(&grown), keys(&api_volume(daemon, "vq")));
    quiet(&user, &["volume", "resize", "vq", "128M"], "");
    assert_eq!(api_volume(daemon, "vq")["size_bytes"], 128u64 << 20);
    let removed = user.json(&["volume", "rm", "vq", "vj", "--json"]);
    let names: Vec<&str> = removed
        .as_array()
        .expect("a list of the volumes removed")
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["vq", "vj"], "{removed}");
    assert!(api_names(daemon).is_empty(), "{:?}", api_names(daemon));
    // One that does not exist: an error, and the other one is still removed.
    user.ok(&["volume", "create", "vk"]);
    let out = user.run(&["volume", "rm", "-q", "vk", "no-such-volume"]);
    assert_failed(daemon, "volume rm -q vk no-such-volume", &out);
    assert_eq!(stdout(&out), "", "nothing on stdout under -q");
    assert!(stderr(&out).contains("no-such-volume"), "{}", stderr(&out));
    assert!(api_names(daemon).is_empty(), "vk is removed all the same");

    // remote add and rm: the remote as the REST API lists it (never its token).
    let token = daemon.root.join("remote.token");
    std::fs::write(&token, "secret-token\n").unwrap();
    let token = token.to_str().unwrap();
    let added = user.json(&[
        "remote",
        "add",
        "far",
        "tcp://127.0.0.1:9",
        "--token-file",
        token,
        "--json",
    ]);
    let listed = api_expect(daemon, "GET", "/v1/remotes", &Value::Null, 200);
    assert_eq!(keys(&added), keys(&listed[0]));
    assert_eq!(added["url"], "tcp://127.0.0.1:9", "{added}");
    assert!(!added.to_string().contains("secret-token"), "{added}");
    quiet(
        &user,
        &[
            "remote",
            "add",
            "near",
            "tcp://127.0.0.1:10",
            "--token-file",
            token,
        ],
        "",
    );
    assert_eq!(user.json(&["remote", "rm", "far", "--json"])["name"], "far");
    quiet(&user, &["remote", "rm", "near"], "");
    let left = api_expect(daemon, "GET", "/v1/remotes", &Value::Null, 200);
    assert_eq!(left, json!([]));
}
