//! `dvol status`: where HEAD is, and the changes not committed yet.

use anyhow::Result;

use crate::client::Client;
use crate::current;
use crate::render::changes::print_changes;
use crate::render::format::short_id;
use crate::render::json::print_json;

/// `dvol status [--json]`
pub async fn run(client: &Client, volume: Option<&str>, as_json: bool) -> Result<()> {
    let volume = current::resolve(volume)?;
    let changes = client.status(&volume).await?;
    if as_json {
        return print_json(&changes);
    }
    let log = client.log(&volume).await?;
    match (&log.branch, &log.head) {
        (Some(branch), Some(head)) => {
            println!("volume {volume}, on branch {branch} at {}", short_id(head))
        }
        (None, Some(head)) => println!("volume {volume}, HEAD detached at {}", short_id(head)),
        (_, None) => println!("volume {volume}, no commits yet"),
    }
    print_changes(
        &changes,
        "nothing to commit: the files match HEAD",
        "uncommitted change(s)",
    );
    Ok(())
}
