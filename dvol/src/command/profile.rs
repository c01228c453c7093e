//! `dvol profile ls`: the configured profiles, the backend each resolves to here, and whether
//! commits of its volumes read only the changed ranges of changed files or whole files.

use anyhow::Result;

use crate::client::Client;
use crate::render::format::optional_bytes;
use crate::render::json::print_json;
use crate::render::table;

/// `dvol profile ls [--json]`
pub async fn ls(client: &Client, as_json: bool) -> Result<()> {
    let profiles = client.profiles().await?;
    if as_json {
        return print_json(&profiles);
    }
    let rows: Vec<Vec<String>> = profiles
        .iter()
        .map(|p| {
            vec![
                if p.default {
                    format!("{} (default)", p.name)
                } else {
                    p.name.clone()
                },
                match (p.backend, p.preallocate) {
                    (None, _) => "unavailable".to_string(),
                    (Some(backend), true) => format!("{backend} (preallocated)"),
                    (Some(backend), false) => backend.to_string(),
                },
                optional_bytes(p.config.size),
                if p.changed_ranges {
                    "changed ranges"
                } else {
                    "whole files"
                }
                .to_string(),
                p.reason.clone(),
            ]
        })
        .collect();
    table::print(
        &["PROFILE", "BACKEND", "SIZE", "COMMITS READ", "WHY"],
        &rows,
    );
    Ok(())
}
