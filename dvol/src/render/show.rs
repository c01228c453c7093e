//! A commit as `dvol show` prints it: its header as `dvol log` shows commits, then the paths
//! it changed with their bytes ([`super::stat`]).

use dvol_api::{ChangeView, CommitView, LogView};
use serde::Serialize;

use super::format::{readable_time, short_id};
use super::log::decoration;
use super::quote::escape_text;
use super::stat::stat_lines;

/// `dvol show --json`: the commit with the field names of `GET /v1/volumes/{name}/commits`,
/// and the paths it changed against its first parent with those of `GET
/// /v1/volumes/{name}/diff` (everything it holds, for a root commit).
#[derive(Debug, Serialize)]
pub struct ShowView<'a> {
    /// The commit.
    pub commit: &'a CommitView,
    /// The paths it changed against its first parent (a root commit: all its paths).
    pub changes: &'a [ChangeView],
}

/// The lines of `dvol show`: `commit ID (refs)`, `Parents:`, `Author:`, `Date:`, the indented
/// message, a blank line and the changed paths with their bytes (a root commit's: every path,
/// added).
pub fn show_lines(log: &LogView, shown: &ShowView<'_>) -> Vec<String> {
    let c = shown.commit;
    let parents = if c.parents.is_empty() {
        "none (root commit)".to_string()
    } else {
        c.parents
            .iter()
            .map(|p| short_id(p))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut lines = vec![
        format!("commit {}{}", c.id, decoration(log, c)),
        format!("Parents: {parents}"),
        format!("Author:  {}", escape_text(&c.author)),
        format!("Date:    {}", readable_time(&c.time)),
        String::new(),
    ];
    lines.extend(c.message.lines().map(|l| format!("    {}", escape_text(l))));
    lines.push(String::new());
    match shown.changes {
        [] => lines.push("no paths changed against the first parent".into()),
        changes => lines.extend(stat_lines(changes)),
    }
    lines
}

#[cfg(test)]
mod tests {
    use dvol_api::ChangeKind;

    use super::*;

    fn commit(id: &str, parents: &[&str], refs: &[&str]) -> CommitView {
        CommitView {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            message: "add data\n\nbody line".into(),
            author: "ann".into(),
            time: "2026-11-22T04:08:06.2Z".into(),
            refs: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn show_lists_header_and_paths_with_bytes() {
        let c = commit("aaaa1111bbbb2222", &["cccc3333dddd4444"], &["master"]);
        let log = LogView {
            branch: Some("master".into()),
            head: Some(c.id.clone()),
            commits: vec![c.clone()],
        };
        let changes = [ChangeView {
            path: "a.txt".into(),
            kind: ChangeKind::Added,
            is_dir: false,
            old_size: None,
            new_size: Some(2048),
        }];
        let shown = ShowView {
            commit: &c,
            changes: &changes,
        };
        assert_eq!(
            show_lines(&log, &shown),
            [
                "commit aaaa1111bbbb2222 (HEAD -> master)",
                "Parents: cccc3333dddd",
                "Author:  ann",
                "Date:    2026-11-22 04:08:06 UTC",
                "",
                "    add data",
                "    ",
                "    body line",
                "",
                "A a.txt  +2KiB",
                "1 path changed, 2KiB added, 0B removed",
            ]
        );
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(json["commit"]["id"], "aaaa1111bbbb2222");
        assert_eq!(json["changes"][0]["new_size"], 2048);
    }
}
