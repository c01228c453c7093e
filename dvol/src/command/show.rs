//! `dvol show REF`: a commit and the paths it changed against its first parent.

use anyhow::{bail, Result};
use dvol_api::{CommitView, DiffQuery, LogView};

use crate::client::Client;
use crate::current;
use crate::render::json::print_json;
use crate::render::show::{show_lines, ShowView};

/// `dvol show [REF] [--json]`
pub async fn run(client: &Client, volume: Option<&str>, rev: &str, as_json: bool) -> Result<()> {
    let volume = current::resolve(volume)?;
    // The daemon's own answer for a revision it cannot resolve (with the refs it has).
    let made = DiffQuery {
        from: None,
        to: Some(rev.to_string()),
    };
    let changes = client.diff(&volume, &made).await?;
    let log = client.log(&volume).await?;
    let Some(commit) = find_in_log(&log, rev) else {
        bail!(
            "{rev} names no commit that `dvol log -V {volume}` lists; \
             give a branch, tag or commit id from it"
        );
    };
    let shown = ShowView {
        commit,
        changes: &changes,
    };
    if as_json {
        return print_json(&shown);
    }
    for line in show_lines(&log, &shown) {
        println!("{line}");
    }
    Ok(())
}

/// The commit of `log` that `rev` names, read as the daemon reads revisions: `HEAD` (or `@`),
/// a branch, a tag, or a unique commit id prefix, then any number of `^`, `^N`, `~`, `~N`.
/// `None` when it names none of the log's commits.
fn find_in_log<'a>(log: &'a LogView, rev: &str) -> Option<&'a CommitView> {
    let by_id = |id: &str| log.commits.iter().find(|c| c.id == id);
    let split = rev.find(['^', '~']).unwrap_or(rev.len());
    let (base, mut suffix) = rev.split_at(split);
    let with_ref = |name: &str| {
        log.commits
            .iter()
            .find(|c| c.refs.iter().any(|r| r == name))
    };
    let mut commit = match base {
        "HEAD" | "@" => by_id(log.head.as_deref()?),
        _ => with_ref(base)
            .or_else(|| with_ref(&format!("tag: {base}")))
            .or_else(|| {
                let hex = base.len() >= 4 && base.bytes().all(|b| b.is_ascii_hexdigit());
                let base = base.to_ascii_lowercase();
                let mut found = log.commits.iter().filter(|c| c.id.starts_with(&base));
                match (hex, found.next(), found.next()) {
                    (true, Some(c), None) => Some(c),
                    _ => None,
                }
            }),
    }?;
    while let Some(op) = suffix.chars().next() {
        let rest = &suffix[1..];
        let end = rest.find(['^', '~']).unwrap_or(rest.len());
        let n: usize = if end == 0 {
            1
        } else {
            rest[..end].parse().ok()?
        };
        suffix = &rest[end..];
        if op == '^' {
            if n > 0 {
                commit = by_id(commit.parents.get(n - 1)?)?;
            }
        } else {
            for _ in 0..n {
                commit = by_id(commit.parents.first()?)?;
            }
        }
    }
    Some(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(id: &str, parents: &[&str], refs: &[&str]) -> CommitView {
        CommitView {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            message: String::new(),
            author: String::new(),
            time: String::new(),
            refs: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn revisions_resolve_in_the_log_as_the_daemon_reads_them() {
        let log = LogView {
            branch: Some("master".into()),
            head: Some("d0d0".into()),
            commits: vec![
                commit("d0d0", &["c0c0", "b1b1"], &["master"]),
                commit("c0c0", &["a0a0"], &["tag: v1"]),
                commit("b1b1", &["a0a0"], &["exp"]),
                commit("a0a0", &[], &[]),
            ],
        };
        let id = |rev: &str| find_in_log(&log, rev).map(|c| c.id.as_str());
        assert_eq!(id("HEAD"), Some("d0d0"));
        assert_eq!(id("@"), Some("d0d0"));
        assert_eq!(id("master"), Some("d0d0"));
        assert_eq!(id("v1"), Some("c0c0"));
        assert_eq!(id("exp~"), Some("a0a0"));
        assert_eq!(id("HEAD^2"), Some("b1b1"));
        assert_eq!(id("HEAD~2"), Some("a0a0"));
        assert_eq!(id("HEAD^^"), Some("a0a0"));
        assert_eq!(id("HEAD^0"), Some("d0d0"));
        assert_eq!(id("B1B1"), Some("b1b1"));
        assert_eq!(id("HEAD~3"), None, "past the root");
        assert_eq!(id("HEAD^3"), None, "no third parent");
        assert_eq!(id("nosuch"), None);
        assert_eq!(id("a0"), None, "prefixes need 4 digits");
        assert_eq!(id("HEAD^x"), None);
    }
}
