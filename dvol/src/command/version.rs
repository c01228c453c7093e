//! `dvol version`: the CLI's version, the REST API version it speaks, and the daemon's.

use anyhow::{bail, Result};
use serde_json::json;

use crate::client::Client;
use crate::render::json::print_json;

/// The REST API version this CLI speaks (the `/v1/` of its paths).
const API_VERSION: u32 = 1;

/// `dvol version [--json]`: the client's part always; the daemon's if it answers.
pub async fn run(client: Result<Client>, as_json: bool) -> Result<()> {
    let client_version = env!("CARGO_PKG_VERSION");
    let daemon = match client {
        Ok(client) => client.health().await.map(|h| h.version),
        Err(e) => Err(e),
    };
    if as_json {
        let (version, error) = match &daemon {
            Ok(v) => (Some(v.clone()), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        print_json(&json!({
            "client": { "version": client_version, "api": API_VERSION },
            "daemon": version.map(|v| json!({ "version": v, "api": API_VERSION })),
            "daemon_error": error,
        }))?;
    } else {
        println!("client: dvol {client_version} (REST API v{API_VERSION})");
        if let Ok(v) = &daemon {
            println!("daemon: dvol {v} (REST API v{API_VERSION})");
        }
    }
    match daemon {
        Ok(_) => Ok(()),
        Err(e) => bail!("the daemon did not answer: {e:#}"),
    }
}
