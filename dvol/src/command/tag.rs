//! `dvol tag`: lists the tags, creates one, or deletes one with -d.

use anyhow::Result;
use dvol_api::RefRequest;

use crate::client::Client;
use crate::current;
use crate::render::format::{ref_lines, short_id};
use crate::render::output::Output;

/// `dvol tag [NAME [--at REV] | -d NAME] [--json|-q]`: `--json` prints the list, the tag
/// created, or the tag deleted as it was; `-q` prints the list's names only.
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    name: Option<String>,
    at: Option<String>,
    delete: bool,
    output: Output,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    if let (Some(name), true) = (&name, delete) {
        // Only --json shows the tag as it was: read it first then.
        let before = match output {
            Output::Json => client.tags(&volume).await?,
            _ => Vec::new(),
        };
        client.delete_tag(&volume, name).await?;
        let deleted = before.into_iter().find(|t| &t.name == name);
        return output.result(&deleted, None, || println!("deleted tag {name}"));
    }
    if let Some(name) = name {
        let created = client.create_tag(&volume, &RefRequest { name, at }).await?;
        return output.result(&created, None, || {
            println!(
                "created tag {} at {}",
                created.name,
                short_id(&created.commit)
            )
        });
    }
    let tags = client.tags(&volume).await?;
    if output.json(&tags)? {
        return Ok(());
    }
    if output == Output::Quiet {
        tags.iter().for_each(|t| println!("{}", t.name));
        return Ok(());
    }
    for line in ref_lines(&tags, false) {
        println!("{line}");
    }
    Ok(())
}
