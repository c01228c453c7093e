//! `dvol diff [REF [REF]]`: the paths that differ between two revisions, or the uncommitted
//! changes.

use anyhow::Result;
use dvol_api::DiffQuery;

use crate::client::Client;
use crate::current;
use crate::render::changes::print_changes;
use crate::render::json::print_json;
use crate::render::stat::print_stat;

/// How `dvol diff` prints the paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A line per path and a count by kind.
    Paths,
    /// A line per path with its bytes, and the bytes added and removed.
    Stat,
    /// The paths as JSON.
    Json,
}

impl Style {
    /// The style the flags ask for (`--json` wins).
    pub fn new(stat: bool, json: bool) -> Style {
        match (json, stat) {
            (true, _) => Style::Json,
            (false, true) => Style::Stat,
            (false, false) => Style::Paths,
        }
    }
}

/// `dvol diff [REF [REF]] [--stat] [--json]`: without REF, the uncommitted changes against
/// HEAD (what `dvol status` lists).
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    from: Option<String>,
    to: Option<String>,
    style: Style,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let (changes, none, what) = match from {
        Some(from) => {
            let query = DiffQuery {
                from: Some(from.clone()),
                to,
            };
            let changes = client.diff(&volume, &query).await?;
            let (from, to) = (&from, query.to.as_deref().unwrap_or("HEAD"));
            let none = format!("no differences from {from} to {to}");
            (changes, none, format!("path(s) differ from {from} to {to}"))
        }
        None => (
            client.status(&volume).await?,
            "nothing to commit: the files match HEAD".to_string(),
            "uncommitted change(s)".to_string(),
        ),
    };
    match style {
        Style::Json => return print_json(&changes),
        Style::Stat => print_stat(&changes, &none),
        Style::Paths => print_changes(&changes, &none, &what),
    }
    Ok(())
}
