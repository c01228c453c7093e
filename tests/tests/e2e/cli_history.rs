//! dvol's git-like CLI verbs against a real daemon: the current volume, commit, log (and its
//! graph), status, branch, tag, checkout, reset, diff, rm, fsck and gc; one-line errors.
//!
//! Each test keeps its current-volume file in its own `DVOL_CONFIG_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

use dvol_tests::dvol_bin;
use dvol_tests::fixtures::*;
use serde_json::Value;

/// `(name, current)` of each entry of a `--json` list of volumes or branches.
fn names_and_current(listed: &Value) -> Vec<(&str, bool)> {
    listed
        .as_array()
        .expect("a JSON list")
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v["current"].as_bool().unwrap()))
        .collect()
}

fn write(dir: &Path, rel: &str, content: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn read(dir: &Path, rel: &str) -> Option<Vec<u8>> {
    std::fs::read(dir.join(rel)).ok()
}

/// Some bytes that do not compress to nothing, spanning several chunks.
fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The largest file under `dir` (the object store's fan-out directories).
fn largest_object(dir: &Path) -> PathBuf {
    let mut best: Option<(u64, PathBuf)> = None;
    for fanout in std::fs::read_dir(dir).unwrap() {
        let fanout = fanout.unwrap().path();
        if !fanout.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&fanout).unwrap() {
            let path = entry.unwrap().path();
            let len = std::fs::metadata(&path).unwrap().len();
            if best.as_ref().is_none_or(|(l, _)| len > *l) {
                best = Some((len, path));
            }
        }
    }
    best.expect("objects in the store").1
}

/// The full id of HEAD, from `dvol log --json`.
fn head(user: &CliUser) -> String {
    user.json(&["log", "--json"])["head"]
        .as_str()
        .expect("head")
        .to_string()
}

#[test]
fn init_switch_list_and_rm_keep_the_current_volume() {
    let Some(user) = CliUser::for_root_test() else {
        return;
    };
    user.fails(&["log"], "no current volume");
    let err = user.fails(&["status"], "dvol switch NAME");
    assert!(err.contains("-V NAME"), "{err}");

    let out = user.ok(&["init", "alpha"]);
    assert!(
        out.contains("created volume alpha (bronze, directory)") && out.contains("current"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(user.current_file()).unwrap(),
        "alpha\n"
    );
    user.ok(&["init", "beta@bronze", "-o", "size=1G"]);
    assert_eq!(
        std::fs::read_to_string(user.current_file()).unwrap(),
        "beta\n",
        "init stores the name without the profile"
    );
    let leftovers: Vec<String> = std::fs::read_dir(user.config.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["current"], "no temporary files are left");

    let list = user.ok(&["list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("  NAME"), "{list}");
    assert!(lines[1].starts_with("  alpha "), "{list}");
    assert!(
        lines[2].starts_with("* beta ") && lines[2].contains("1GiB"),
        "{list}"
    );
    let listed = user.json(&["list", "--json"]);
    assert_eq!(
        names_and_current(&listed),
        [("alpha", false), ("beta", true)]
    );

    // init of an existing volume just makes it current.
    assert!(user.ok(&["init", "alpha"]).contains("volume alpha exists"));
    assert!(user.ok(&["list"]).contains("* alpha"));

    assert!(user
        .ok(&["switch", "beta"])
        .contains("switched to volume beta"));
    assert!(user.ok(&["list"]).contains("* beta"));
    user.fails(&["switch", "nosuch"], "nosuch");
    assert_eq!(
        std::fs::read_to_string(user.current_file()).unwrap(),
        "beta\n",
        "a failed switch keeps the current volume"
    );

    // -V works on another volume, and without any current volume.
    user.ok(&["rm", "alpha"]);
    assert!(!user.ok(&["list"]).contains("alpha"));
    assert!(
        user.current_file().exists(),
        "removing another volume keeps current"
    );
    let out = user.ok(&["rm", "beta"]);
    assert!(out.contains("no current volume"), "{out}");
    assert!(!user.current_file().exists());
    user.fails(&["log"], "no current volume");
    user.ok(&["init", "gamma"]);
    user.ok(&["rm", "gamma"]);
    user.ok(&["volume", "create", "delta"]);
    assert!(user.ok(&["log", "-V", "delta"]).contains("no commits yet"));
    assert!(user
        .ok(&["status", "--volume", "delta"])
        .contains("no commits yet"));
    user.fails(&["log", "-V", "nosuch"], "nosuch");
}

#[test]
fn commit_status_checkout_and_reset_restore_exact_content() {
    let Some(user) = CliUser::for_root_test() else {
        return;
    };
    user.ok(&["init", "work"]);
    let data = user.data_dir("work");
    let big = blob(7, 3 << 20);
    write(&data, "a.txt", b"hello\n");
    write(&data, "sub/big.bin", &big);

    let status = user.ok(&["status"]);
    assert!(status.contains("no commits yet"), "{status}");
    assert!(status.contains("A a.txt (6B)"), "{status}");
    assert!(status.contains("A sub/\n"), "{status}");
    assert!(status.contains("A sub/big.bin (3MiB)"), "{status}");
    assert!(
        status.contains("3 uncommitted change(s): 3 added"),
        "{status}"
    );

    let out = user.run(&["commit", "-m", "first"]);
    assert!(out.status.success(), "{}", stderr_as_printed(&out));
    assert!(
        stderr_as_printed(&out).contains("committing volume work..."),
        "progress without a terminal is one plain line: {}",
        stderr_as_printed(&out)
    );
    let committed = stdout_as_printed(&out);
    let first = head(&user);
    assert!(
        committed.starts_with(&format!("[master {}] first\n", &first[..12])),
        "{committed}"
    );
    assert!(committed.contains("2 of 2 files read"), "{committed}");

    let log = user.ok(&["log"]);
    assert!(
        log.starts_with(&format!("commit {first} (HEAD -> master)\n")),
        "{log}"
    );
    assert!(
        log.contains("Author: tester@"),
        "default author is $USER@host: {log}"
    );
    assert!(log.contains("Date:   "), "{log}");
    assert!(log.contains("\n    first\n"), "{log}");
    let status = user.ok(&["status"]);
    assert!(
        status.contains("on branch master at") && status.contains("nothing to commit"),
        "{status}"
    );

    // An uncommitted change: status shows it, checkout refuses to overwrite it.
    write(&data, "a.txt", b"hello, changed\n");
    let status = user.ok(&["status"]);
    assert!(status.contains("M a.txt (6B -> 15B)"), "{status}");
    assert_eq!(
        user.json(&["status", "--json"])[0]["kind"],
        "modified",
        "status --json"
    );
    user.fails(&["checkout", "-b", "exp"], "a.txt");
    let err = user.fails(&["checkout", "master"], "uncommitted");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        read(&data, "a.txt").unwrap(),
        b"hello, changed\n",
        "a refused checkout changes nothing"
    );

    // checkout -f -b starts a branch at HEAD and discards the change.
    let out = user.ok(&["checkout", "-f", "-b", "exp"]);
    assert!(out.contains("switched to a new branch exp"), "{out}");
    assert_eq!(read(&data, "a.txt").unwrap(), b"hello\n");
    let branches = user.ok(&["branch"]);
    assert!(
        branches.contains("* exp ") && branches.contains("  master "),
        "{branches}"
    );

    write(&data, "exp-only.txt", b"on exp\n");
    std::fs::remove_file(data.join("sub/big.bin")).unwrap();
    let out = user.ok(&["commit", "-m", "work on exp", "--author", "someone"]);
    assert!(out.starts_with("[exp "), "{out}");
    let on_exp = head(&user);
    assert!(user.ok(&["log", "-n", "1"]).contains("Author: someone\n"));

    // Back to master: exact content of the first commit.
    let out = user.ok(&["checkout", "master"]);
    assert!(out.contains("switched to branch master"), "{out}");
    assert_eq!(read(&data, "a.txt").unwrap(), b"hello\n");
    assert_eq!(read(&data, "sub/big.bin").unwrap(), big);
    assert_eq!(read(&data, "exp-only.txt"), None);

    // A second commit on master, then reset --hard HEAD^ goes back to the first.
    write(&data, "a.txt", b"second\n");
    write(&data, "sub/big.bin", &blob(8, 1 << 20));
    user.ok(&["commit", "-m", "second"]);
    user.fails(&["reset", "HEAD^"], "--hard");
    let out = user.ok(&["reset", "--hard", "HEAD^"]);
    assert!(
        out.contains(&format!("HEAD is now at {} (branch master)", &first[..12])),
        "{out}"
    );
    assert_eq!(head(&user), first);
    assert_eq!(read(&data, "a.txt").unwrap(), b"hello\n");
    assert_eq!(read(&data, "sub/big.bin").unwrap(), big);

    // A commit id prefix detaches HEAD; the branch list says so.
    let out = user.ok(&["checkout", &on_exp[..10]]);
    assert!(out.contains("detached"), "{out}");
    assert_eq!(read(&data, "exp-only.txt").unwrap(), b"on exp\n");
    assert_eq!(read(&data, "sub/big.bin"), None);
    let branches = user.ok(&["branch"]);
    assert!(
        branches.starts_with(&format!("* (HEAD detached at {})", &on_exp[..12])),
        "{branches}"
    );
    let log = user.json(&["log", "--json"]);
    assert_eq!(log["branch"], Value::Null);
    assert_eq!(log["head"], on_exp.as_str());
}

#[test]
fn branches_tags_diff_and_graph() {
    let Some(user) = CliUser::for_root_test() else {
        return;
    };
    user.ok(&["init", "tree"]);
    let data = user.data_dir("tree");
    write(&data, "keep.txt", b"keep\n");
    write(&data, "change.txt", b"v1\n");
    write(&data, "gone.txt", b"bye\n");
    user.ok(&["commit", "-m", "base"]);
    let base = head(&user);

    let out = user.ok(&["branch", "exp"]);
    assert!(
        out.contains(&format!("created branch exp at {}", &base[..12])),
        "{out}"
    );
    user.ok(&["branch", "old", "--at", "HEAD"]);
    let listed = user.json(&["branch", "--json"]);
    assert_eq!(
        names_and_current(&listed),
        [("exp", false), ("master", true), ("old", false)]
    );
    assert!(user
        .ok(&["branch", "-d", "old"])
        .contains("deleted branch old"));
    user.fails(&["branch", "-d", "master"], "checked out");
    user.fails(&["branch", "exp"], "already exists");

    write(&data, "change.txt", b"version two\n");
    std::fs::remove_file(data.join("gone.txt")).unwrap();
    write(&data, "new/file.txt", b"new\n");
    user.ok(&["commit", "-m", "master work"]);
    user.ok(&["checkout", "exp"]);
    write(&data, "exp.txt", b"exp\n");
    user.ok(&["commit", "-m", "exp work"]);

    // diff REF [REF]: from the first to the second (default HEAD).
    let diff = user.ok(&["diff", "exp", "master"]);
    let lines: Vec<&str> = diff.lines().collect();
    assert_eq!(
        lines,
        [
            "M change.txt (3B -> 12B)",
            "D exp.txt",
            "D gone.txt",
            "A new/",
            "A new/file.txt (4B)",
            "5 path(s) differ from exp to master: 2 added, 1 modified, 2 removed",
        ],
        "{diff}"
    );
    let diff = user.ok(&["diff", "HEAD^"]);
    assert!(
        diff.starts_with("A exp.txt (4B)\n") && diff.contains("from HEAD^ to HEAD"),
        "{diff}"
    );
    assert!(user.ok(&["diff", "HEAD"]).contains("no differences"));
    let json = user.json(&["diff", &base[..8], "master", "--json"]);
    assert_eq!(json.as_array().unwrap().len(), 4, "{json}");

    // Tags.
    let out = user.ok(&["tag", "v1", "--at", "master~1"]);
    assert!(
        out.contains(&format!("created tag v1 at {}", &base[..12])),
        "{out}"
    );
    user.ok(&["tag", "latest"]);
    let tags = user.ok(&["tag"]);
    assert!(tags.contains(&format!("v1      {}", &base[..12])), "{tags}");
    assert!(tags.contains("latest  "), "{tags}");
    assert_eq!(user.json(&["tag", "--json"]).as_array().unwrap().len(), 2);
    assert!(user
        .ok(&["diff", "v1", "latest"])
        .contains("A exp.txt (4B)"));

    // The graph: two lanes from the base commit.
    let graph = user.ok(&["log", "--graph"]);
    let lines: Vec<&str> = graph.lines().collect();
    assert_eq!(lines.len(), 4, "{graph}");
    assert!(
        lines[0].starts_with("* ") && lines[0].contains("(HEAD -> exp, tag: latest) exp work"),
        "{graph}"
    );
    assert!(
        lines[1].starts_with("| * ") && lines[1].contains("(master) master work"),
        "{graph}"
    );
    assert_eq!(lines[2], "|/", "{graph}");
    assert_eq!(
        lines[3],
        format!("* {} (tag: v1) base", &base[..12]),
        "{graph}"
    );
    let log = user.ok(&["log"]);
    assert_eq!(log.matches("\ncommit ").count() + 1, 3, "{log}");
    assert_eq!(user.ok(&["log", "-n", "2", "--graph"]).lines().count(), 2);
    assert_eq!(
        user.json(&["log", "-n", "1", "--json"])["commits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Stderr lines that start with `prefix`.
fn lines_starting<'a>(err: &'a str, prefix: &str) -> Vec<&'a str> {
    err.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn long_operations_print_plain_progress_lines_without_a_terminal() {
    let Some(user) = CliUser::for_root_test() else {
        return;
    };
    user.ok(&["init", "bulk"]);
    let data = user.data_dir("bulk");
    for i in 0..160u64 {
        write(&data, &format!("d{}/f{i}", i % 8), &blob(i, 40 << 10));
    }
    let total_mib = 160.0 * 40.0 / 1024.0;

    // Output captured: stderr is a pipe, not a terminal.
    let out = user.run(&["commit", "-m", "bulk"]);
    assert!(out.status.success(), "{}", stderr_as_printed(&out));
    let err = stderr_as_printed(&out);
    assert!(err.contains("committing volume bulk...\n"), "{err}");
    let scan = lines_starting(&err, "commit bulk: scan ");
    assert!(
        scan.first().is_some_and(|l| *l == "commit bulk: scan 0"),
        "{err}"
    );
    assert!(scan.last().is_some_and(|l| l.ends_with(", done")), "{err}");
    let reads = lines_starting(&err, "commit bulk: read ");
    let of_total = format!(" of {total_mib:.2} MiB (");
    assert!(
        reads
            .first()
            .is_some_and(|l| l.starts_with("commit bulk: read 0 B") && l.contains(&of_total)),
        "{err}"
    );
    assert!(
        reads.last().is_some_and(|l| *l
            == format!("commit bulk: read {total_mib:.2} MiB of {total_mib:.2} MiB (100%), done")),
        "{err}"
    );
    assert!(
        reads.len() <= 14,
        "at most one line per tenth besides start and end (and one per 2 s): {err}"
    );
    assert!(
        err.lines()
            .all(|l| l.starts_with("commit bulk: ") || l.ends_with("...")),
        "only progress on stderr: {err}"
    );
    let committed = stdout_as_printed(&out);
    assert!(committed.starts_with("[master "), "{committed}");
    assert!(committed.contains("160 of 160 files read"), "{committed}");

    let out = user.run(&["fsck"]);
    assert!(out.status.success(), "{}", stderr_as_printed(&out));
    let err = stderr_as_printed(&out);
    let verify = lines_starting(&err, "fsck: verify objects ");
    assert!(
        verify.last().is_some_and(|l| l.ends_with("(100%), done")),
        "{err}"
    );
    assert!(
        stdout_as_printed(&out).starts_with("clean: "),
        "{}",
        stdout_as_printed(&out)
    );

    write(&data, "d0/f0", b"small");
    let out = user.run(&["checkout", "--force", "master"]);
    assert!(out.status.success(), "{}", stderr_as_printed(&out));
    let err = stderr_as_printed(&out);
    assert!(
        lines_starting(&err, "checkout bulk: checkout ")
            .last()
            .is_some_and(|l| l.ends_with(", done")),
        "{err}"
    );
    assert_eq!(read(&data, "d0/f0"), Some(blob(0, 40 << 10)));
}

#[test]
fn fsck_gc_and_one_line_errors() {
    let Some(user) = CliUser::for_root_test() else {
        return;
    };
    user.ok(&["init", "store"]);
    let data = user.data_dir("store");
    user.fails(&["diff", "HEAD"], "no commits");
    write(&data, "f", &blob(3, 200_000));
    user.ok(&["commit", "-m", "one"]);
    write(&data, "f", &blob(4, 200_000));
    user.ok(&["commit", "-m", "two"]);

    let out = user.ok(&["fsck"]);
    assert!(out.starts_with("clean: "), "{out}");
    let report = user.json(&["fsck", "--json"]);
    assert_eq!(report["clean"], true, "{report}");
    assert!(report["objects_checked"].as_u64().unwrap() > 0);

    // Nothing is unreferenced yet; after the volume goes, its objects are (removed at once
    // with --prune=now; a plain gc keeps them for the grace period).
    let out = user.ok(&["gc"]);
    assert!(out.starts_with("removed 0 objects"), "{out}");
    user.ok(&["rm", "store"]);
    let removed = user.json(&["gc", "--prune=now", "--json"]);
    assert!(
        removed["objects_removed"].as_u64().unwrap() > 0,
        "gc removes the objects of a removed volume: {removed}"
    );
    assert!(user.ok(&["fsck"]).starts_with("clean: "));

    // Unknown refs: one line each, naming the ref.
    user.ok(&["init", "errs"]);
    write(&user.data_dir("errs"), "x", b"x");
    user.ok(&["commit", "-m", "x"]);
    user.fails(&["diff", "nosuch"], "unknown revision 'nosuch'");
    user.fails(&["diff", "HEAD", "nosuch"], "nosuch");
    user.fails(&["checkout", "nosuch"], "unknown revision 'nosuch'");
    user.fails(&["reset", "--hard", "nosuch"], "unknown revision 'nosuch'");
    user.fails(&["reset", "--hard", "HEAD^"], "HEAD^");
    user.fails(&["branch", "b", "--at", "nosuch"], "nosuch");
    user.fails(&["tag", "t", "--at", "nosuch"], "nosuch");
    user.fails(&["branch", "-d", "nosuch"], "no branch named 'nosuch'");
    user.fails(&["branch", "bad name"], "bad name");
    user.fails(&["init", "bad/name"], "bad/name");
    user.fails(&["init", "opt", "-o", "size"], "KEY=VALUE");
    user.fails(&["rm", "nosuch"], "nosuch");

    // A damaged object: fsck names it and exits non-zero.
    write(&user.data_dir("errs"), "big", &blob(5, 500_000));
    user.ok(&["commit", "-m", "big"]);
    let largest = largest_object(&user.daemon.root.join("history").join("objects"));
    let mut bytes = std::fs::read(&largest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&largest, bytes).unwrap();
    let out = user.run(&["fsck"]);
    assert!(
        !out.status.success(),
        "fsck must fail: {}",
        stdout_as_printed(&out)
    );
    assert!(
        stdout_as_printed(&out).contains("corrupt object "),
        "{}",
        stdout_as_printed(&out)
    );
    let err: Vec<String> = stderr_as_printed(&out)
        .lines()
        .filter(|l| l.starts_with("dvol: "))
        .map(str::to_string)
        .collect();
    assert_eq!(err.len(), 1, "{}", stderr_as_printed(&out));
    assert!(err[0].contains("not clean: 1 corrupt"), "{err:?}");
    let out = user.run(&["fsck", "--json"]);
    assert!(!out.status.success());
    let report: Value = serde_json::from_str(&stdout_as_printed(&out)).unwrap();
    assert_eq!(report["clean"], false, "{report}");

    // A daemon that is not there is one line too.
    let out = Command::new(dvol_bin())
        .args(["--host", "unix:///nonexistent/dvol.sock", "log", "-V", "x"])
        .env("DVOL_CONFIG_DIR", user.config.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        stderr_as_printed(&out).lines().count(),
        1,
        "{}",
        stderr_as_printed(&out)
    );
    assert!(stderr_as_printed(&out).contains("cannot reach the dvol daemon"));
}
