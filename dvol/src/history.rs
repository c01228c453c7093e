//! The git-like commands: one function per command over the REST client, plus the little
//! formatting they share (refs, changes, the log graph) and the progress indicator.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use dvol_plugin::progress::{ProgressEvent, Unit};
use hyper::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::client::{segment, Client};
use crate::commands::{human_bytes, options_map, print_json, text, volume_path};
use crate::current;
use crate::table;

/// Commit ids are shown with this many hex digits (any unique prefix of 4 or more works as a
/// revision).
const SHORT_ID: usize = 12;

fn short(id: &Value) -> String {
    let id = text(id);
    id.chars().take(SHORT_ID).collect()
}

fn history_path(volume: &str, what: &str) -> String {
    format!("{}/{what}", volume_path(volume))
}

/// Plain progress lines are printed at most this often within a phase (besides its start, its
/// end and every tenth of its total).
const PLAIN_INTERVAL: Duration = Duration::from_secs(2);

/// Shows an operation's progress events on stderr: a bar per phase (a spinner when the total
/// is unknown) when stderr is a terminal, otherwise plain lines like
/// `commit demo: read 120.00 MiB of 2.00 GiB (6%)` at a modest rate.
struct ProgressView {
    /// Names the operation in plain lines, e.g. `commit demo`.
    label: String,
    terminal: bool,
    /// The bar (or spinner) being drawn, on a terminal.
    bar: Option<indicatif::ProgressBar>,
    /// The phase of the last plain line, its tenth of the total, and when it was printed.
    last_line: Option<(String, u64, Instant)>,
}

impl ProgressView {
    /// Starts showing `what` is being done (a spinner, or one plain line).
    fn new(label: String, what: &str) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let mut view = ProgressView {
            label,
            terminal,
            bar: None,
            last_line: None,
        };
        if terminal {
            view.bar = Some(Self::bar(
                what.to_string(),
                None,
                Unit::Items,
                "{spinner} {prefix} [{elapsed}]",
            ));
        } else {
            eprintln!("{what}...");
        }
        view
    }

    /// A bar (a spinner when `total` is unknown) labelled `prefix`; an empty `template` picks
    /// one for the unit.
    fn bar(
        prefix: String,
        total: Option<u64>,
        unit: Unit,
        template: &str,
    ) -> indicatif::ProgressBar {
        let bar = match total {
            Some(total) => indicatif::ProgressBar::new(total),
            None => indicatif::ProgressBar::new_spinner(),
        }
        .with_prefix(prefix);
        let template = match (template.is_empty(), total, unit) {
            (false, ..) => template,
            (true, Some(_), Unit::Bytes) => {
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
            }
            (true, Some(_), Unit::Items) => "{prefix} [{bar:30}] {pos}/{len} ETA {eta}",
            (true, None, Unit::Bytes) => "{spinner} {prefix} {bytes} [{elapsed}]",
            (true, None, Unit::Items) => "{spinner} {prefix} {pos} [{elapsed}]",
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        if total.is_none() {
            bar.enable_steady_tick(Duration::from_millis(100));
        }
        bar
    }

    /// Shows one event.
    fn show(&mut self, event: &ProgressEvent) {
        if self.terminal {
            self.draw(event);
        } else if let Some(line) = self.plain_line(event, Instant::now()) {
            eprintln!("{line}");
        }
    }

    fn draw(&mut self, event: &ProgressEvent) {
        let prefix = format!("{}: {}", self.label, event.phase);
        let current = self.bar.as_ref().filter(|b| b.prefix() == prefix);
        let bar = match current {
            Some(bar) => bar.clone(),
            None => {
                if let Some(old) = self.bar.take() {
                    old.finish_and_clear();
                }
                let bar = Self::bar(prefix, event.total, event.unit, "");
                self.bar = Some(bar.clone());
                bar
            }
        };
        bar.set_position(event.done);
        if event.finished {
            bar.finish();
            self.bar = None;
        }
    }

    /// The plain line for `event`, if one is due at `now`: at a phase's start and end, when
    /// another tenth of the total is done, or [`PLAIN_INTERVAL`] after the previous line.
    fn plain_line(&mut self, event: &ProgressEvent, now: Instant) -> Option<String> {
        let tenth = match event.total {
            Some(total) if total > 0 => event.done.saturating_mul(10) / total,
            _ => 0,
        };
        let due = match &self.last_line {
            Some((phase, last_tenth, at)) if *phase == event.phase => {
                event.finished || tenth > *last_tenth || now.duration_since(*at) >= PLAIN_INTERVAL
            }
            _ => true,
        };
        if !due {
            return None;
        }
        self.last_line = Some((event.phase.clone(), tenth, now));
        let amount = |n: u64| match event.unit {
            Unit::Bytes => indicatif::HumanBytes(n).to_string(),
            Unit::Items => n.to_string(),
        };
        let mut line = format!("{}: {} {}", self.label, event.phase, amount(event.done));
        if let Some(total) = event.total {
            let percent = (event.done.saturating_mul(100))
                .checked_div(total)
                .unwrap_or(100);
            line.push_str(&format!(" of {} ({percent}%)", amount(total)));
        }
        if event.finished {
            line.push_str(", done");
        }
        Some(line)
    }

    /// Stops drawing; an unfinished bar stays visible after a failure.
    fn end(self, succeeded: bool) {
        if let Some(bar) = self.bar {
            if succeeded {
                bar.finish_and_clear();
            } else {
                bar.abandon();
            }
        }
    }
}

/// `POST path` with the operation's progress shown on stderr (see [`ProgressView`]).
async fn with_progress<T: DeserializeOwned>(
    client: &Client,
    label: String,
    what: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<T> {
    let mut view = ProgressView::new(label, what);
    let answer = client
        .call_with_progress(Method::POST, path, body, |event| view.show(event))
        .await;
    view.end(answer.is_ok());
    answer
}

/// Warns about each container that was stopped (or paused, for a commit) for an operation and
/// could not be started again, and fails if there is any, so the exit status shows it.
fn check_resumed(answer: &Value, paused: bool) -> Result<()> {
    let left: Vec<&Value> = answer["containers_not_resumed"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let (done, command) = if paused {
        ("paused", "unpause")
    } else {
        ("stopped", "start")
    };
    for container in &left {
        let name = text(&container["container"]);
        eprintln!(
            "warning: container {name} was {done} for this operation and could not be {}: {}; run `docker {command} {name}`",
            if paused { "unpaused" } else { "started again" },
            text(&container["error"]),
        );
    }
    if !left.is_empty() {
        bail!(
            "{} container(s) using the volume are still {done}; see the warnings above",
            left.len()
        );
    }
    Ok(())
}

/// `dvol init NAME[@PROFILE] [-o KEY=VALUE]...`
pub async fn init(client: &Client, name: &str, opts: &[String]) -> Result<()> {
    let bare = name.split('@').next().unwrap_or(name);
    let existed = client
        .call::<Value>(Method::GET, &volume_path(bare), None)
        .await
        .is_ok();
    let body = json!({ "name": name, "options": options_map(opts)? });
    let volume: Value = client
        .call(Method::POST, "/v1/volumes", Some(&body))
        .await?;
    let name = text(&volume["name"]);
    current::write(&name)?;
    if existed {
        println!("volume {name} exists; it is now the current volume");
    } else {
        println!(
            "created volume {name} ({}, {}); it is now the current volume",
            text(&volume["profile"]),
            text(&volume["backend"])
        );
    }
    Ok(())
}

/// `dvol switch NAME`
pub async fn switch(client: &Client, name: &str) -> Result<()> {
    let volume: Value = client.call(Method::GET, &volume_path(name), None).await?;
    let name = text(&volume["name"]);
    current::write(&name)?;
    println!("switched to volume {name}");
    Ok(())
}

/// `dvol list`
pub async fn list(client: &Client, as_json: bool) -> Result<()> {
    let mut volumes: Vec<Value> = client.call(Method::GET, "/v1/volumes", None).await?;
    let current = current::read()?;
    let is_current = |v: &Value| current.as_deref() == v["name"].as_str();
    if as_json {
        for volume in &mut volumes {
            volume["current"] = Value::Bool(is_current(volume));
        }
        return print_json(&Value::Array(volumes));
    }
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            let mark = if is_current(v) { "*" } else { " " };
            vec![
                format!("{mark} {}", text(&v["name"])),
                text(&v["profile"]),
                text(&v["backend"]),
                human_bytes(&v["size_bytes"]),
                if v["mounted"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
            ]
        })
        .collect();
    table::print(&["  NAME", "PROFILE", "BACKEND", "SIZE", "MOUNTED"], &rows);
    Ok(())
}

/// `dvol rm NAME`
pub async fn rm(client: &Client, name: &str) -> Result<()> {
    let volume: Value = client.call(Method::GET, &volume_path(name), None).await?;
    let name = text(&volume["name"]);
    client
        .call::<Value>(Method::DELETE, &volume_path(&name), None)
        .await?;
    if current::clear_if(&name)? {
        println!("removed volume {name}; there is no current volume now (`dvol switch NAME`)");
    } else {
        println!("removed volume {name}");
    }
    Ok(())
}

fn default_author() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// The effective user's name from /etc/passwd, for when $USER and $LOGNAME are unset.
fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2] == uid).then(|| fields[0].to_string())
    })
}

/// `dvol commit -m MSG [--pause] [--author A]`
pub async fn commit(
    client: &Client,
    volume: Option<&str>,
    message: &str,
    author: Option<&str>,
    pause: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let author = author.map_or_else(default_author, str::to_string);
    let body = json!({ "message": message, "author": author, "pause": pause });
    let path = history_path(&volume, "commits");
    let what = format!("committing volume {volume}");
    let label = format!("commit {volume}");
    let result: Value = with_progress(client, label, &what, &path, Some(&body)).await?;
    let commit = &result["commit"];
    let branch = result["branch"]
        .as_str()
        .map_or_else(|| "detached HEAD".to_string(), str::to_string);
    if result["changed"].as_bool() == Some(false) {
        println!(
            "nothing to commit: volume {volume} is as in {} on {branch}; nothing recorded",
            short(&commit["id"])
        );
    } else {
        println!(
            "[{branch} {}] {}",
            short(&commit["id"]),
            first_line(&text(&commit["message"]))
        );
    }
    println!(
        " {} of {} files read ({}), {} new object(s) stored ({})",
        text(&result["files_reread"]),
        text(&result["files_scanned"]),
        human_bytes(&result["bytes_read"]),
        text(&result["new_objects"]),
        human_bytes(&result["new_bytes_stored"]),
    );
    check_resumed(&result, pause)
}

/// `2026-01-02T03:04:05.123456789Z` as `2026-01-02 03:04:05 UTC`; other forms as they are.
fn readable_time(rfc3339: &str) -> String {
    let Some((date, time)) = rfc3339.split_once('T') else {
        return rfc3339.to_string();
    };
    let Some(clock) = time.strip_suffix('Z') else {
        return rfc3339.to_string();
    };
    let seconds = clock.split('.').next().unwrap_or(clock);
    format!("{date} {seconds} UTC")
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or("")
}

/// The refs shown beside a commit, as git does: `HEAD -> master, exp, tag: v1`.
fn decoration(log: &Value, commit: &Value) -> String {
    let mut refs: Vec<String> = commit["refs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if log["head"].is_string() && log["head"] == commit["id"] {
        match log["branch"].as_str() {
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
        format!(" ({})", refs.join(", "))
    }
}

/// `dvol log [--graph] [--json] [-n N]`
pub async fn log(
    client: &Client,
    volume: Option<&str>,
    graph: bool,
    max_count: Option<usize>,
    as_json: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let mut log: Value = client
        .call(Method::GET, &history_path(&volume, "commits"), None)
        .await?;
    if let (Some(n), Some(commits)) = (max_count, log["commits"].as_array_mut()) {
        commits.truncate(n);
    }
    if as_json {
        return print_json(&log);
    }
    let commits: &[Value] = log["commits"].as_array().map_or(&[], Vec::as_slice);
    if commits.is_empty() {
        println!("volume {volume} has no commits yet; `dvol commit -m MSG` makes the first");
        return Ok(());
    }
    if graph {
        let nodes: Vec<(String, Vec<String>)> = commits
            .iter()
            .map(|c| {
                let parents = c["parents"].as_array().into_iter().flatten().map(text);
                (text(&c["id"]), parents.collect())
            })
            .collect();
        for line in draw_graph(&nodes) {
            match line {
                GraphLine::Edges(edges) => println!("{edges}"),
                GraphLine::Commit(prefix, i) => {
                    let c = &commits[i];
                    println!(
                        "{prefix} {}{} {}",
                        short(&c["id"]),
                        decoration(&log, c),
                        first_line(&text(&c["message"]))
                    );
                }
            }
        }
        return Ok(());
    }
    for (i, c) in commits.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("commit {}{}", text(&c["id"]), decoration(&log, c));
        println!("Author: {}", text(&c["author"]));
        println!("Date:   {}", readable_time(&text(&c["time"])));
        println!();
        for line in text(&c["message"]).lines() {
            println!("    {line}");
        }
    }
    Ok(())
}

/// One line of a drawn commit graph.
#[derive(Debug, PartialEq)]
enum GraphLine {
    /// Lanes joining or forking between two commits, e.g. `|/`.
    Edges(String),
    /// A commit's row: the lanes with `*` in the commit's lane, and the commit's index.
    Commit(String, usize),
}

/// Draws `commits` (id and parent ids, children before parents) as lanes, like
/// `git log --graph --oneline`: each lane waits for a commit; a commit takes the lane that
/// waits for it (merging others that wait for it too, drawn `|/`), and its lane then waits for
/// its first parent; further parents fork new lanes (drawn `|\`).
fn draw_graph(commits: &[(String, Vec<String>)]) -> Vec<GraphLine> {
    fn edges(width: usize, marks: impl IntoIterator<Item = (usize, char)>) -> GraphLine {
        let mut line = vec![' '; width * 2 + 1];
        for (at, ch) in marks {
            if at < line.len() {
                line[at] = ch;
            }
        }
        GraphLine::Edges(line.into_iter().collect::<String>().trim_end().to_string())
    }
    let mut lanes: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (index, (id, parents)) in commits.iter().enumerate() {
        let hits: Vec<usize> = (0..lanes.len()).filter(|&j| &lanes[j] == id).collect();
        let col = match hits.first() {
            Some(&col) => col,
            None => {
                lanes.push(id.clone());
                lanes.len() - 1
            }
        };
        if hits.len() > 1 {
            // Lanes waiting for this commit join its lane; lanes right of them move left.
            let first_gone = hits[1];
            let marks = (0..lanes.len()).map(|j| {
                if j < first_gone && !hits[1..].contains(&j) {
                    (2 * j, '|')
                } else {
                    (2 * j - 1, '/')
                }
            });
            out.push(edges(lanes.len(), marks));
            for &j in hits[1..].iter().rev() {
                lanes.remove(j);
            }
        }
        let row: Vec<&str> = (0..lanes.len())
            .map(|j| if j == col { "*" } else { "|" })
            .collect();
        out.push(GraphLine::Commit(row.join(" "), index));
        match parents.split_first() {
            None => {
                lanes.remove(col);
                if col < lanes.len() {
                    let marks = (0..lanes.len()).map(|j| {
                        if j < col {
                            (2 * j, '|')
                        } else {
                            (2 * j + 1, '/')
                        }
                    });
                    out.push(edges(lanes.len() + 1, marks));
                }
            }
            Some((first, rest)) => {
                lanes[col] = first.clone();
                let new: Vec<String> = rest
                    .iter()
                    .filter(|p| !lanes.contains(p))
                    .cloned()
                    .collect();
                if !new.is_empty() {
                    for (k, parent) in new.iter().enumerate() {
                        lanes.insert(col + 1 + k, parent.clone());
                    }
                    let marks = (0..lanes.len()).map(|j| {
                        if j <= col {
                            (2 * j, '|')
                        } else {
                            (2 * j - 1, '\\')
                        }
                    });
                    out.push(edges(lanes.len(), marks));
                }
            }
        }
    }
    out
}

fn change_line(change: &Value) -> String {
    let dir = change["is_dir"].as_bool() == Some(true);
    let path = format!("{}{}", text(&change["path"]), if dir { "/" } else { "" });
    match change["kind"].as_str() {
        Some("added") if dir => format!("A {path}"),
        Some("added") => format!("A {path} ({})", human_bytes(&change["new_size"])),
        Some("removed") => format!("D {path}"),
        Some("modified") if dir => format!("M {path} (mode or owner)"),
        Some("modified") => format!(
            "M {path} ({} -> {})",
            human_bytes(&change["old_size"]),
            human_bytes(&change["new_size"])
        ),
        _ => format!("? {path}"),
    }
}

/// `1 added, 2 modified, 1 removed`.
fn change_summary(changes: &[Value]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for change in changes {
        *counts
            .entry(change["kind"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    ["added", "modified", "removed"]
        .iter()
        .filter_map(|kind| counts.get(kind).map(|n| format!("{n} {kind}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `dvol status`
pub async fn status(client: &Client, volume: Option<&str>, as_json: bool) -> Result<()> {
    let volume = current::resolve(volume)?;
    let changes: Vec<Value> = client
        .call(Method::GET, &history_path(&volume, "status"), None)
        .await?;
    if as_json {
        return print_json(&Value::Array(changes));
    }
    let log: Value = client
        .call(Method::GET, &history_path(&volume, "commits"), None)
        .await?;
    match (log["branch"].as_str(), log["head"].is_string()) {
        (Some(branch), true) => println!(
            "volume {volume}, on branch {branch} at {}",
            short(&log["head"])
        ),
        (None, true) => println!("volume {volume}, HEAD detached at {}", short(&log["head"])),
        (_, false) => println!("volume {volume}, no commits yet"),
    }
    if changes.is_empty() {
        println!("nothing to commit: the files match HEAD");
        return Ok(());
    }
    for change in &changes {
        println!("{}", change_line(change));
    }
    println!(
        "{} uncommitted change(s): {}",
        changes.len(),
        change_summary(&changes)
    );
    Ok(())
}

/// `dvol branch [NAME [--at REV] | -d NAME]`
pub async fn branch(
    client: &Client,
    volume: Option<&str>,
    name: Option<&str>,
    at: Option<&str>,
    delete: bool,
    as_json: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let path = history_path(&volume, "branches");
    match (name, delete) {
        (Some(name), true) => {
            let path = format!("{path}/{}", segment(name));
            client.call::<Value>(Method::DELETE, &path, None).await?;
            println!("deleted branch {name}");
        }
        (Some(name), false) => {
            let body = json!({ "name": name, "at": at });
            let created: Value = client.call(Method::POST, &path, Some(&body)).await?;
            println!("created branch {name} at {}", short(&created["commit"]));
        }
        (None, _) => {
            let branches: Vec<Value> = client.call(Method::GET, &path, None).await?;
            if as_json {
                return print_json(&Value::Array(branches));
            }
            if !branches
                .iter()
                .any(|b| b["current"].as_bool() == Some(true))
            {
                let log: Value = client
                    .call(Method::GET, &history_path(&volume, "commits"), None)
                    .await?;
                if log["branch"].is_null() && log["head"].is_string() {
                    println!("* (HEAD detached at {})", short(&log["head"]));
                }
            }
            let width = branches
                .iter()
                .map(|b| text(&b["name"]).chars().count())
                .max()
                .unwrap_or(0);
            for b in &branches {
                let mark = if b["current"].as_bool() == Some(true) {
                    "*"
                } else {
                    " "
                };
                println!(
                    "{mark} {:<width$}  {}",
                    text(&b["name"]),
                    short(&b["commit"])
                );
            }
        }
    }
    Ok(())
}

/// `dvol tag [NAME [--at REV]]`
pub async fn tag(
    client: &Client,
    volume: Option<&str>,
    name: Option<&str>,
    at: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let path = history_path(&volume, "tags");
    if let Some(name) = name {
        let body = json!({ "name": name, "at": at });
        let created: Value = client.call(Method::POST, &path, Some(&body)).await?;
        println!("created tag {name} at {}", short(&created["commit"]));
        return Ok(());
    }
    let tags: Vec<Value> = client.call(Method::GET, &path, None).await?;
    if as_json {
        return print_json(&Value::Array(tags));
    }
    let width = tags
        .iter()
        .map(|t| text(&t["name"]).chars().count())
        .max()
        .unwrap_or(0);
    for t in &tags {
        println!("{:<width$}  {}", text(&t["name"]), short(&t["commit"]));
    }
    Ok(())
}

fn print_files_changed(view: &Value) {
    println!(
        " {} file(s) written ({}), {} unchanged, {} removed",
        text(&view["files_written"]),
        human_bytes(&view["bytes_written"]),
        text(&view["files_unchanged"]),
        text(&view["removed"]),
    );
}

/// `dvol checkout REF [--force]`, `dvol checkout -b NAME [REV]`
pub async fn checkout(
    client: &Client,
    volume: Option<&str>,
    rev: Option<&str>,
    new_branch: Option<&str>,
    force: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let Some(rev) = rev.or(new_branch.map(|_| "HEAD")) else {
        bail!("checkout needs a REF (or -b NAME [REV])");
    };
    let body = json!({ "ref": rev, "new_branch": new_branch, "force": force });
    let what = match new_branch {
        Some(name) => format!("checking out {rev} as new branch {name} in volume {volume}"),
        None => format!("checking out {rev} in volume {volume}"),
    };
    let (label, path) = (
        format!("checkout {volume}"),
        history_path(&volume, "checkout"),
    );
    let view: Value = with_progress(client, label, &what, &path, Some(&body)).await?;
    let commit = short(&view["commit"]);
    match (view["branch"].as_str(), new_branch) {
        (Some(branch), Some(_)) => println!("switched to a new branch {branch} at {commit}"),
        (Some(branch), None) => println!("switched to branch {branch} at {commit}"),
        (None, _) => println!(
            "HEAD is now at {commit} (detached; `dvol checkout -b NAME` starts a branch here)"
        ),
    }
    print_files_changed(&view);
    check_resumed(&view, false)
}

/// `dvol reset --hard REF`
pub async fn reset(client: &Client, volume: Option<&str>, hard: bool, rev: &str) -> Result<()> {
    if !hard {
        bail!("only hard resets exist: `dvol reset --hard {rev}` moves the branch to {rev} and discards the volume's uncommitted changes");
    }
    let volume = current::resolve(volume)?;
    let body = json!({ "ref": rev });
    let what = format!("resetting volume {volume} to {rev}");
    let (label, path) = (format!("reset {volume}"), history_path(&volume, "reset"));
    let view: Value = with_progress(client, label, &what, &path, Some(&body)).await?;
    let commit = short(&view["commit"]);
    match view["branch"].as_str() {
        Some(branch) => println!("HEAD is now at {commit} (branch {branch})"),
        None => println!("HEAD is now at {commit} (detached)"),
    }
    print_files_changed(&view);
    check_resumed(&view, false)
}

/// `dvol diff REF [REF]`
pub async fn diff(
    client: &Client,
    volume: Option<&str>,
    from: &str,
    to: Option<&str>,
    as_json: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let mut path = format!("{}?from={}", history_path(&volume, "diff"), segment(from));
    if let Some(to) = to {
        path.push_str(&format!("&to={}", segment(to)));
    }
    let changes: Vec<Value> = client.call(Method::GET, &path, None).await?;
    if as_json {
        return print_json(&Value::Array(changes));
    }
    let to = to.unwrap_or("HEAD");
    if changes.is_empty() {
        println!("no differences from {from} to {to}");
        return Ok(());
    }
    for change in &changes {
        println!("{}", change_line(change));
    }
    println!(
        "{} path(s) differ from {from} to {to}: {}",
        changes.len(),
        change_summary(&changes)
    );
    Ok(())
}

/// `dvol fsck`: fails (non-zero exit) unless the store is clean.
pub async fn fsck(client: &Client, as_json: bool) -> Result<()> {
    let what = "checking every stored object";
    let report: Value = with_progress(client, "fsck".into(), what, "/v1/fsck", None).await?;
    let clean = report["clean"].as_bool() == Some(true);
    let list = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect()
    };
    let (corrupt, missing, bad_refs) = (list("corrupt"), list("missing"), list("bad_refs"));
    if as_json {
        print_json(&report)?;
    } else {
        for id in &corrupt {
            println!("corrupt object {id}");
        }
        for id in &missing {
            println!("missing object {id}");
        }
        for r in &bad_refs {
            println!("bad ref {r}");
        }
        println!(
            "{}: {} objects checked, {} unreachable (`dvol gc` removes those)",
            if clean { "clean" } else { "NOT CLEAN" },
            text(&report["objects_checked"]),
            text(&report["unreachable"]),
        );
    }
    if !clean {
        bail!(
            "the object store is not clean: {} corrupt, {} missing, {} bad ref(s)",
            corrupt.len(),
            missing.len(),
            bad_refs.len()
        );
    }
    Ok(())
}

/// `dvol gc`
pub async fn gc(client: &Client, as_json: bool) -> Result<()> {
    let what = "collecting unreferenced objects";
    let report: Value = with_progress(client, "gc".into(), what, "/v1/gc", None).await?;
    if as_json {
        return print_json(&report);
    }
    println!(
        "removed {} objects ({}), kept {}",
        text(&report["objects_removed"]),
        human_bytes(&report["bytes_removed"]),
        text(&report["objects_kept"]),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, parents: &[&str]) -> (String, Vec<String>) {
        (
            id.to_string(),
            parents.iter().map(|p| p.to_string()).collect(),
        )
    }

    fn render(commits: &[(String, Vec<String>)]) -> Vec<String> {
        draw_graph(commits)
            .into_iter()
            .map(|line| match line {
                GraphLine::Edges(e) => e,
                GraphLine::Commit(prefix, i) => format!("{prefix} {}", commits[i].0),
            })
            .collect()
    }

    #[test]
    fn linear_history_is_one_lane() {
        let commits = [node("c", &["b"]), node("b", &["a"]), node("a", &[])];
        assert_eq!(render(&commits), ["* c", "* b", "* a"]);
    }

    #[test]
    fn a_branch_forks_and_joins() {
        let commits = [
            node("e2", &["e1"]),
            node("m2", &["b"]),
            node("e1", &["b"]),
            node("b", &["a"]),
            node("a", &[]),
        ];
        assert_eq!(
            render(&commits),
            ["* e2", "| * m2", "* | e1", "|/", "* b", "* a"]
        );
    }

    #[test]
    fn a_merge_opens_a_lane() {
        let commits = [
            node("m", &["x", "y"]),
            node("x", &["a"]),
            node("y", &["a"]),
            node("a", &[]),
        ];
        assert_eq!(
            render(&commits),
            ["* m", "|\\", "* | x", "| * y", "|/", "* a"]
        );
    }

    #[test]
    fn decoration_names_head_first() {
        let log = json!({ "branch": "master", "head": "c1" });
        let commit = json!({ "id": "c1", "refs": ["exp", "master", "tag: v1"] });
        assert_eq!(decoration(&log, &commit), " (HEAD -> master, exp, tag: v1)");
        let detached = json!({ "branch": null, "head": "c1" });
        assert_eq!(
            decoration(&detached, &commit),
            " (HEAD, exp, master, tag: v1)"
        );
        let other = json!({ "id": "c0", "refs": [] });
        assert_eq!(decoration(&log, &other), "");
    }

    #[test]
    fn times_read_like_git() {
        assert_eq!(
            readable_time("2026-11-22T04:08:06.215950686Z"),
            "2026-11-22 04:08:06 UTC"
        );
        assert_eq!(
            readable_time("2026-11-22T04:08:06Z"),
            "2026-11-22 04:08:06 UTC"
        );
        assert_eq!(readable_time("yesterday"), "yesterday");
    }

    fn event(
        phase: &str,
        done: u64,
        total: Option<u64>,
        unit: Unit,
        finished: bool,
    ) -> ProgressEvent {
        ProgressEvent {
            phase: phase.into(),
            done,
            total,
            unit,
            finished,
        }
    }

    #[test]
    fn plain_progress_lines_come_at_a_modest_rate() {
        let mut view = ProgressView {
            label: "commit demo".into(),
            terminal: false,
            bar: None,
            last_line: None,
        };
        let t0 = Instant::now();
        let gib = 2u64 << 30;
        let mut line = |done, finished, secs| {
            let e = event("read", done, Some(gib), Unit::Bytes, finished);
            view.plain_line(&e, t0 + Duration::from_secs(secs))
        };
        assert_eq!(
            line(0, false, 0).as_deref(),
            Some("commit demo: read 0 B of 2.00 GiB (0%)")
        );
        assert_eq!(line(100 << 20, false, 1), None, "under a tenth, under 2 s");
        assert_eq!(
            line(120 << 20, false, 3).as_deref(),
            Some("commit demo: read 120.00 MiB of 2.00 GiB (5%)")
        );
        assert_eq!(
            line(gib / 4, false, 3).as_deref(),
            Some("commit demo: read 512.00 MiB of 2.00 GiB (25%)"),
            "another tenth"
        );
        assert_eq!(line(gib / 4 + (1 << 20), false, 4), None);
        assert_eq!(
            line(gib, true, 4).as_deref(),
            Some("commit demo: read 2.00 GiB of 2.00 GiB (100%), done")
        );
        let scan = event("scan", 7, None, Unit::Items, false);
        assert_eq!(
            view.plain_line(&scan, t0).as_deref(),
            Some("commit demo: scan 7"),
            "a new phase always gets a line"
        );
    }

    #[test]
    fn containers_left_stopped_fail_the_command() {
        assert!(check_resumed(&json!({"containers_not_resumed": []}), false).is_ok());
        assert!(check_resumed(&json!({"commit": "c"}), false).is_ok());
        let left = json!({"containers_not_resumed": [{"container": "web", "error": "boom"}]});
        let e = check_resumed(&left, false).unwrap_err().to_string();
        assert!(
            e.contains("1 container(s)") && e.contains("still stopped"),
            "{e}"
        );
        let e = check_resumed(&left, true).unwrap_err().to_string();
        assert!(e.contains("still paused"), "{e}");
    }

    #[test]
    fn change_lines() {
        let added = json!({"path": "a.txt", "kind": "added", "is_dir": false, "new_size": 5});
        let removed = json!({"path": "b", "kind": "removed", "is_dir": true});
        let modified = json!({"path": "c", "kind": "modified", "is_dir": false, "old_size": 1, "new_size": 2048});
        assert_eq!(change_line(&added), "A a.txt (5B)");
        assert_eq!(change_line(&removed), "D b/");
        assert_eq!(change_line(&modified), "M c (1B -> 2KiB)");
        assert_eq!(
            change_summary(&[added, removed, modified]),
            "1 added, 1 modified, 1 removed"
        );
    }
}
