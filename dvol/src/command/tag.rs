//! `dvol tag`: lists the tags, creates one, or deletes one with -d.

use anyhow::Result;
use dvol_api::RefRequest;

use crate::client::Client;
use crate::current;
use crate::render::format::{ref_lines, short_id};
use crate::render::json::print_json;

/// `dvol tag [NAME [--at REV] | -d NAME] [--json]`
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    name: Option<String>,
    at: Option<String>,
    delete: bool,
    as_json: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    if let (Some(name), true) = (&name, delete) {
        client.delete_tag(&volume, name).await?;
        println!("deleted tag {name}");
        return Ok(());
    }
    if let Some(name) = name {
        let created = client.create_tag(&volume, &RefRequest { name, at }).await?;
        println!(
            "created tag {} at {}",
            created.name,
            short_id(&created.commit)
        );
        return Ok(());
    }
    let tags = client.tags(&volume).await?;
    if as_json {
        return print_json(&tags);
    }
    for line in ref_lines(&tags, false) {
        println!("{line}");
    }
    Ok(())
}
