//! `dvol branch`: lists the branches, creates one, or deletes one with -d.

use anyhow::Result;
use dvol_api::RefRequest;

use crate::client::Client;
use crate::current;
use crate::render::format::{ref_lines, short_id};
use crate::render::json::print_json;

/// `dvol branch [NAME [--at REV] | -d NAME] [--json]`
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    name: Option<String>,
    at: Option<String>,
    delete: bool,
    as_json: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    match (name, delete) {
        (Some(name), true) => {
            client.delete_branch(&volume, &name).await?;
            println!("deleted branch {name}");
        }
        (Some(name), false) => {
            let created = client
                .create_branch(&volume, &RefRequest { name, at })
                .await?;
            println!(
                "created branch {} at {}",
                created.name,
                short_id(&created.commit)
            );
        }
        (None, _) => {
            let branches = client.branches(&volume).await?;
            if as_json {
                return print_json(&branches);
            }
            if !branches.iter().any(|b| b.current) {
                let log = client.log(&volume).await?;
                if let (None, Some(head)) = (&log.branch, &log.head) {
                    println!("* (HEAD detached at {})", short_id(head));
                }
            }
            for line in ref_lines(&branches, true) {
                println!("{line}");
            }
        }
    }
    Ok(())
}
