//! `dvol log`: the commits, newest first, with the branches and tags pointing at them.

use anyhow::Result;

use crate::client::Client;
use crate::current;
use crate::render::json::print_json;
use crate::render::log::{print_commits, print_graph, print_oneline};

/// How `dvol log` prints the commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Each commit in full.
    Full,
    /// A line per commit.
    Oneline,
    /// A line per commit beside the graph.
    Graph,
    /// The log as JSON.
    Json,
}

impl Style {
    /// The style the flags ask for: `--json` wins, then `--graph` (whose lines are already one
    /// per commit), then `--oneline`.
    pub fn new(graph: bool, oneline: bool, json: bool) -> Style {
        match (json, graph, oneline) {
            (true, _, _) => Style::Json,
            (false, true, _) => Style::Graph,
            (false, false, true) => Style::Oneline,
            (false, false, false) => Style::Full,
        }
    }
}

/// `dvol log [--graph] [--oneline] [--json] [-n N]`
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    style: Style,
    max_count: Option<usize>,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let mut log = client.log(&volume).await?;
    if let Some(n) = max_count {
        log.commits.truncate(n);
    }
    if style == Style::Json {
        return print_json(&log);
    }
    if log.commits.is_empty() {
        println!("volume {volume} has no commits yet; `dvol commit -m MSG` makes the first");
        return Ok(());
    }
    match style {
        Style::Graph => print_graph(&log),
        Style::Oneline => print_oneline(&log),
        Style::Full | Style::Json => print_commits(&log),
    }
    Ok(())
}
