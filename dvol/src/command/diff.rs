//! `dvol diff REF [REF]`: the paths that differ between two revisions.

use anyhow::Result;
use dvol_api::DiffQuery;

use crate::client::Client;
use crate::current;
use crate::render::changes::print_changes;
use crate::render::json::print_json;

/// `dvol diff REF [REF] [--json]`
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    from: String,
    to: Option<String>,
    as_json: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let query = DiffQuery { from, to };
    let changes = client.diff(&volume, &query).await?;
    if as_json {
        return print_json(&changes);
    }
    let (from, to) = (&query.from, query.to.as_deref().unwrap_or("HEAD"));
    print_changes(
        &changes,
        &format!("no differences from {from} to {to}"),
        &format!("path(s) differ from {from} to {to}"),
    );
    Ok(())
}
