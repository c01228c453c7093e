//! dvol's inspection verbs against a real daemon: `log --oneline`, `diff --stat` (between
//! commits and of the uncommitted changes), `diff` without REF, and `show REF`.

use std::path::Path;

use dvol_tests::fixtures::*;
use serde_json::Value;

fn write(dir: &Path, rel: &str, len: usize) -> u64 {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, content).unwrap();
    std::fs::metadata(&path).unwrap().len()
}

/// `(path, new_size)` of each change of a `--json` list of changes.
fn paths_and_new_sizes(changes: &Value) -> Vec<(String, Option<u64>)> {
    changes
        .as_array()
        .expect("a JSON list of changes")
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["new_size"].as_u64(),
            )
        })
        .collect()
}

#[test]
fn log_oneline_diff_stat_and_show_report_commits_and_real_sizes() {
    let Some(user) = CliUser::for_root_test() else {
        return;
    };
    user.ok(&["init", "insp"]);
    let data = user.data_dir("insp");
    let a_first = write(&data, "a.txt", 5);
    let big = write(&data, "sub/big.bin", 3072);
    user.ok(&["commit", "-m", "first"]);
    let a = write(&data, "a.txt", 2048);
    let c = write(&data, "c.txt", 10);
    std::fs::remove_file(data.join("sub/big.bin")).unwrap();
    user.ok(&["commit", "-m", "second\n\nwith a body"]);
    user.ok(&["tag", "v1"]);

    // log --oneline: a line per commit, the ids of log --json.
    let log = user.json(&["log", "--json"]);
    let ids: Vec<&str> = log["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{log}");
    let (second, first) = (ids[0].to_string(), ids[1].to_string());
    let oneline = user.ok(&["log", "--oneline"]);
    assert_eq!(
        oneline.lines().collect::<Vec<_>>(),
        [
            format!("{} (HEAD -> master, tag: v1) second", &second[..12]),
            format!("{} first", &first[..12]),
        ],
        "{oneline}"
    );
    assert_eq!(
        user.ok(&["log", "--oneline", "-n", "1"]),
        format!("{} (HEAD -> master, tag: v1) second\n", &second[..12])
    );
    let graph = user.ok(&["log", "--oneline", "--graph"]);
    assert!(
        graph.contains(&format!("* {} first", &first[..12])),
        "{graph}"
    );

    // diff --stat: per path the bytes, then the sums.
    let stat = user.ok(&["diff", "--stat", "HEAD^", "HEAD"]);
    assert_eq!(
        stat.lines().collect::<Vec<_>>(),
        [
            "M a.txt        5B -> 2KiB (+2KiB)",
            "A c.txt        +10B",
            "D sub/big.bin  -3KiB",
            "3 paths changed, 2KiB added, 3KiB removed",
        ],
        "{stat}"
    );
    let json = user.json(&["diff", &first[..8], "v1", "--json"]);
    assert_eq!(
        paths_and_new_sizes(&json),
        [
            ("a.txt".to_string(), Some(a)),
            ("c.txt".to_string(), Some(c)),
            ("sub/big.bin".to_string(), None),
        ]
    );
    assert_eq!(json[0]["old_size"].as_u64(), Some(a_first), "{json}");
    assert_eq!(json[2]["old_size"].as_u64(), Some(big), "{json}");
    assert_eq!(
        user.ok(&["diff", "--stat", "HEAD", "v1"]),
        "no differences from HEAD to v1\n"
    );

    // diff without REF: the uncommitted changes, as status reports them.
    assert_eq!(
        user.ok(&["diff"]),
        "nothing to commit: the files match HEAD\n"
    );
    let d = write(&data, "d.txt", 7);
    let c_now = write(&data, "c.txt", 20);
    let diff = user.ok(&["diff"]);
    assert_eq!(
        diff.lines().collect::<Vec<_>>(),
        [
            "M c.txt (10B -> 20B)",
            "A d.txt (7B)",
            "2 uncommitted change(s): 1 added, 1 modified",
        ],
        "{diff}"
    );
    let stat = user.ok(&["diff", "--stat"]);
    assert_eq!(
        stat.lines().collect::<Vec<_>>(),
        [
            "M c.txt  10B -> 20B (+10B)",
            "A d.txt  +7B",
            "2 paths changed, 17B added, 0B removed",
        ],
        "{stat}"
    );
    let json = user.json(&["diff", "--json"]);
    assert_eq!(json, user.json(&["status", "--json"]));
    assert_eq!(
        paths_and_new_sizes(&json),
        [
            ("c.txt".to_string(), Some(c_now)),
            ("d.txt".to_string(), Some(d)),
        ]
    );

    // show: the commit and exactly the paths it changed, with their sizes.
    let show = user.ok(&["show"]);
    let lines: Vec<&str> = show.lines().collect();
    assert_eq!(
        lines[..2],
        [
            format!("commit {second} (HEAD -> master, tag: v1)"),
            format!("Parents: {}", &first[..12]),
        ],
        "{show}"
    );
    assert!(lines[2].starts_with("Author:  tester@"), "{show}");
    assert!(lines[3].starts_with("Date:    20"), "{show}");
    assert!(
        show.contains("\n    second\n    \n    with a body\n"),
        "{show}"
    );
    let changed: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.is_empty())
        .skip(1)
        .skip_while(|l| !l.is_empty())
        .skip(1)
        .copied()
        .collect();
    assert_eq!(
        changed,
        [
            "M a.txt        5B -> 2KiB (+2KiB)",
            "A c.txt        +10B",
            "D sub/big.bin  -3KiB",
            "3 paths changed, 2KiB added, 3KiB removed",
        ],
        "{show}"
    );
    assert_eq!(
        user.ok(&["show", "v1"]),
        show,
        "a tag names the same commit"
    );

    let json = user.json(&["show", "HEAD", "--json"]);
    assert_eq!(json["commit"]["id"], second.as_str(), "{json}");
    assert_eq!(json["commit"]["parents"], serde_json::json!([first]));
    assert_eq!(json["commit"]["message"], "second\n\nwith a body");
    assert_eq!(
        json["commit"]["refs"],
        serde_json::json!(["master", "tag: v1"])
    );
    assert!(json["commit"]["time"].is_string() && json["commit"]["author"].is_string());
    assert_eq!(
        paths_and_new_sizes(&json["changes"]),
        [
            ("a.txt".to_string(), Some(a)),
            ("c.txt".to_string(), Some(c)),
            ("sub/big.bin".to_string(), None),
        ]
    );
    assert_eq!(json["changes"][2]["kind"], "removed");
    assert_eq!(json["changes"][2]["old_size"].as_u64(), Some(big));

    // A root commit: every path it holds, added.
    let root = user.ok(&["show", "HEAD~1"]);
    assert!(root.starts_with(&format!("commit {first}\n")), "{root}");
    assert!(root.contains("Parents: none (root commit)"), "{root}");
    let json = user.json(&["show", &first[..8], "--json"]);
    assert_eq!(json["commit"]["id"], first.as_str());
    let files: Vec<(String, Option<u64>)> = paths_and_new_sizes(&json["changes"])
        .into_iter()
        .filter(|(path, _)| path != "sub")
        .collect();
    assert_eq!(
        files,
        [
            ("a.txt".to_string(), Some(a_first)),
            ("sub/big.bin".to_string(), Some(big)),
        ],
        "{json}"
    );
    assert!(
        json["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["kind"] == "added"),
        "{json}"
    );

    // A revision the daemon cannot resolve: its one-line error.
    let out = user.run(&["show", "nosuch"]);
    assert_failed(&user.daemon, "dvol show nosuch", &out);
    let err = stderr_as_printed(&out);
    assert!(err.starts_with("dvol: ") && err.contains("nosuch"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn inspection_of_a_volume_without_commits_says_so() {
    let Some(user) = CliUser::for_root_test() else {
        return;
    };
    user.ok(&["init", "fresh"]);
    assert!(user.ok(&["log", "--oneline"]).contains("no commits yet"));
    let data = user.data_dir("fresh");
    let size = write(&data, "new.bin", 1536);
    let stat = user.ok(&["diff", "--stat"]);
    assert_eq!(
        stat,
        "A new.bin  +1.5KiB\n1 path changed, 1.5KiB added, 0B removed\n"
    );
    assert_eq!(
        paths_and_new_sizes(&user.json(&["diff", "--json"])),
        [("new.bin".to_string(), Some(size))]
    );
    let out = user.run(&["show"]);
    assert_failed(&user.daemon, "dvol show", &out);
    assert!(
        stderr_as_printed(&out).contains("no commits"),
        "{}",
        stderr_as_printed(&out)
    );
}

#[test]
fn volume_ls_prints_names_or_a_template_per_volume() {
    let Some(user) = CliUser::for_root_test() else {
        return;
    };
    user.ok(&["volume", "create", "inspq-b"]);
    user.ok(&["volume", "create", "inspq-a@bronze"]);
    let listed = user.json(&["volume", "ls", "--json"]);
    let mut names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let quiet = user.ok(&["volume", "ls", "-q"]);
    assert_eq!(quiet.lines().collect::<Vec<_>>(), names, "{quiet}");
    names.sort();
    assert_eq!(names, ["inspq-a", "inspq-b"]);

    let formatted = user.ok(&[
        "volume",
        "ls",
        "--format",
        "{{.Name}} {{.Profile}}:{{.backend}}",
    ]);
    let mut lines: Vec<&str> = formatted.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["inspq-a bronze:directory", "inspq-b bronze:directory"],
        "{formatted}"
    );
    let out = user.run(&["volume", "ls", "--format", "{{.nosuch}}"]);
    assert_failed(&user.daemon, "dvol volume ls --format {{.nosuch}}", &out);
    let err = stderr_as_printed(&out);
    assert!(
        err.contains("no field nosuch") && err.contains("profile"),
        "{err}"
    );
}
