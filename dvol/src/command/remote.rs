//! `dvol remote add|ls|rm`: the other daemons this daemon pushes to and clones from. The
//! token and CA are read here and handed to the daemon, which keeps them. `dvol incoming`:
//! what other daemons are pushing here.

use std::path::Path;

use anyhow::{bail, Context, Result};
use dvol_api::AddRemote;

use crate::client::Client;
use crate::render::format::{human_bytes, readable_time, short_id, yes_no};
use crate::render::json::print_json;
use crate::render::output::Output;
use crate::render::table;

/// `dvol remote add NAME tcp://HOST:PORT --token-file F [--ca F] [--json|-q]`
pub async fn add(
    client: &Client,
    name: String,
    url: String,
    (token_file, ca): (Option<&Path>, Option<&Path>),
    output: Output,
) -> Result<()> {
    let Some(token_file) = token_file else {
        bail!("remote {name}: give --token-file F, a file holding the remote daemon's bearer token (its own --token-file)");
    };
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("remote {name}: read token file {}", token_file.display()))?;
    let ca_pem = ca
        .map(|path| {
            std::fs::read_to_string(path)
                .with_context(|| format!("remote {name}: read CA file {}", path.display()))
        })
        .transpose()?;
    let view = client
        .add_remote(&AddRemote {
            name,
            url,
            token: token.trim().to_string(),
            ca_pem,
        })
        .await?;
    output.result(&view, None, || {
        let how = if view.tls { "TLS" } else { "plain TCP, no TLS" };
        println!("remote {} is {} ({how})", view.name, view.url);
    })
}

/// `dvol remote ls [--json]`
pub async fn ls(client: &Client, as_json: bool) -> Result<()> {
    let remotes = client.remotes().await?;
    if as_json {
        return print_json(&remotes);
    }
    let rows: Vec<Vec<String>> = remotes
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.url.clone(),
                yes_no(r.tls).into(),
                readable_time(&r.added_at),
            ]
        })
        .collect();
    table::print(&["NAME", "URL", "TLS", "ADDED"], &rows);
    Ok(())
}

/// `dvol incoming [--json]`
pub async fn incoming(client: &Client, as_json: bool) -> Result<()> {
    let pushes = client.incoming().await?;
    if as_json {
        return print_json(&pushes);
    }
    let rows: Vec<Vec<String>> = pushes
        .iter()
        .map(|p| {
            let received = match (p.receiving, p.bytes_declared) {
                (false, 0) => "-".to_string(),
                (_, 0) => human_bytes(p.bytes_received),
                (_, of) => format!(
                    "{} of {} ({}%)",
                    human_bytes(p.bytes_received),
                    human_bytes(of),
                    p.bytes_received.saturating_mul(100) / of
                ),
            };
            vec![
                p.volume.clone(),
                p.branch.clone(),
                short_id(&p.commit),
                p.sender.to_string(),
                received,
                readable_time(&p.offered_at),
            ]
        })
        .collect();
    table::print(
        &[
            "VOLUME",
            "BRANCH",
            "COMMIT",
            "FROM HOST",
            "RECEIVED",
            "OFFERED",
        ],
        &rows,
    );
    Ok(())
}

/// `dvol remote rm NAME [--json|-q]`: `--json` prints the remote as it was.
pub async fn rm(client: &Client, name: &str, output: Output) -> Result<()> {
    // Only --json shows the remote as it was: read it first then.
    let before = match output {
        Output::Json => client.remotes().await?,
        _ => Vec::new(),
    };
    client.remove_remote(name).await?;
    let removed = before.into_iter().find(|r| r.name == name);
    output.result(&removed, None, || println!("remote {name} removed"))
}
