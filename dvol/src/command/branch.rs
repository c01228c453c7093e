//! `dvol branch`: lists the branches, creates one, or deletes one with -d.

use anyhow::Result;
use dvol_api::RefRequest;

use crate::client::Client;
use crate::current;
use crate::render::format::{ref_lines, short_id};
use crate::render::output::Output;

/// `dvol branch [NAME [--at REV] | -d NAME] [--json|-q]`: `--json` prints the list, the
/// branch created, or the branch deleted as it was; `-q` prints the list's names only.
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    name: Option<String>,
    at: Option<String>,
    delete: bool,
    output: Output,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    match (name, delete) {
        (Some(name), true) => {
            // Only --json shows the branch as it was: read it first then.
            let before = match output {
                Output::Json => client.branches(&volume).await?,
                _ => Vec::new(),
            };
            client.delete_branch(&volume, &name).await?;
            let deleted = before.into_iter().find(|b| b.name == name);
            output.result(&deleted, None, || println!("deleted branch {name}"))
        }
        (Some(name), false) => {
            let created = client
                .create_branch(&volume, &RefRequest { name, at })
                .await?;
            output.result(&created, None, || {
                println!(
                    "created branch {} at {}",
                    created.name,
                    short_id(&created.commit)
                )
            })
        }
        (None, _) => {
            let branches = client.branches(&volume).await?;
            if output.json(&branches)? {
                return Ok(());
            }
            if output == Output::Quiet {
                branches.iter().for_each(|b| println!("{}", b.name));
                return Ok(());
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
            Ok(())
        }
    }
}
