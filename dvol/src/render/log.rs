//! A volume's log as `dvol log` prints it: commits in full, or one line each beside the graph,
//! with the branches and tags pointing at them.

use dvol_api::{CommitView, LogView};

use super::format::{first_line, readable_time, short_id};
use super::graph::{draw_graph, GraphLine};
use super::quote::escape_text;

/// Prints every commit of `log` in full: id, refs, author, date and the indented message,
/// control characters escaped.
pub fn print_commits(log: &LogView) {
    for (i, c) in log.commits.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("commit {}{}", c.id, decoration(log, c));
        println!("Author: {}", escape_text(&c.author));
        println!("Date:   {}", readable_time(&c.time));
        println!();
        for line in c.message.lines() {
            println!("    {}", escape_text(line));
        }
    }
}

/// Prints every commit of `log` on one line: [`oneline`].
pub fn print_oneline(log: &LogView) {
    for c in &log.commits {
        println!("{}", oneline(log, c));
    }
}

/// A commit as `dvol log --oneline` shows it: `SHORTID (HEAD -> master, tag: v1) message`
/// (the first line of the message, control characters escaped).
pub fn oneline(log: &LogView, commit: &CommitView) -> String {
    format!(
        "{}{} {}",
        short_id(&commit.id),
        decoration(log, commit),
        first_line(&commit.message)
    )
}

/// Prints the commit graph of `log`, a line per commit (short id, refs, first line of the
/// message) and the lines where lanes fork and join.
pub fn print_graph(log: &LogView) {
    let nodes: Vec<(String, Vec<String>)> = log
        .commits
        .iter()
        .map(|c| (c.id.clone(), c.parents.clone()))
        .collect();
    for line in draw_graph(&nodes) {
        match line {
            GraphLine::Edges(edges) => println!("{edges}"),
            GraphLine::Commit(prefix, i) => {
                println!("{prefix} {}", oneline(log, &log.commits[i]));
            }
        }
    }
}

/// The refs shown beside a commit, as git does: ` (HEAD -> master, exp, tag: v1)`; empty when
/// none points at it.
pub fn decoration(log: &LogView, commit: &CommitView) -> String {
    let mut refs = commit.refs.clone();
    if log.head.as_deref() == Some(commit.id.as_str()) {
        match &log.branch {
            Some(branch) => {
                refs.retain(|r| r != branch);
                refs.insert(0, format!("HEAD -> {branch}"));
            }
            None => refs.insert(0, "HEAD".into()),
        }
    }
    if refs.is_empty() {
        String::new()
    } else {
        format!(" ({})", escape_text(&refs.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(branch: Option<&str>, head: &str) -> LogView {
        LogView {
            branch: branch.map(str::to_string),
            head: Some(head.into()),
            commits: Vec::new(),
        }
    }

    fn commit(id: &str, refs: &[&str]) -> CommitView {
        CommitView {
            id: id.into(),
            parents: Vec::new(),
            message: String::new(),
            author: String::new(),
            time: String::new(),
            refs: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn decoration_names_head_first() {
        let log_view = log(Some("master"), "c1");
        let c1 = commit("c1", &["exp", "master", "tag: v1"]);
        assert_eq!(
            decoration(&log_view, &c1),
            " (HEAD -> master, exp, tag: v1)"
        );
        let detached = log(None, "c1");
        assert_eq!(decoration(&detached, &c1), " (HEAD, exp, master, tag: v1)");
        let other = commit("c0", &[]);
        assert_eq!(decoration(&log_view, &other), "");
    }

    #[test]
    fn oneline_is_short_id_refs_and_first_line() {
        let log_view = log(Some("master"), "0123456789abcdef0123");
        let mut head = commit("0123456789abcdef0123", &["master", "tag: v1"]);
        head.message = "fix schema\n\nlong text".into();
        assert_eq!(
            oneline(&log_view, &head),
            "0123456789ab (HEAD -> master, tag: v1) fix schema"
        );
        let mut plain = commit("fedcba9876543210", &[]);
        plain.message = "first\rforged".into();
        assert_eq!(oneline(&log_view, &plain), r"fedcba987654 first\rforged");
    }
}
