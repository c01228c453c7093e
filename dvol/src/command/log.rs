//! `dvol log`: the commits, newest first, with the branches and tags pointing at them.

use anyhow::Result;

use crate::client::Client;
use crate::current;
use crate::render::json::print_json;
use crate::render::log::{print_commits, print_graph};

/// `dvol log [--graph] [--json] [-n N]`
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    graph: bool,
    max_count: Option<usize>,
    as_json: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let mut log = client.log(&volume).await?;
    if let Some(n) = max_count {
        log.commits.truncate(n);
    }
    if as_json {
        return print_json(&log);
    }
    if log.commits.is_empty() {
        println!("volume {volume} has no commits yet; `dvol commit -m MSG` makes the first");
    } else if graph {
        print_graph(&log);
    } else {
        print_commits(&log);
    }
    Ok(())
}
