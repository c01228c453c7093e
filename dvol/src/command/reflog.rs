//! `dvol reflog`: every move of the volume's HEAD and branches, newest first.

use anyhow::Result;

use crate::client::Client;
use crate::current;
use crate::render::format::{readable_time, short_id};
use crate::render::json::print_json;
use crate::render::quote::escape_text;

/// `dvol reflog [-n N] [--json]`: one line per move, `ID REF TIME MESSAGE`, where `ID` is the
/// commit the ref moved to (`-` for a deleted branch, then the commit it pointed at follows
/// in the message's place).
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    max_count: Option<usize>,
    as_json: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let entries = client.reflog(&volume, max_count).await?;
    if as_json {
        return print_json(&entries);
    }
    if entries.is_empty() {
        println!("volume {volume} has no reflog entries yet (or gc expired them)");
        return Ok(());
    }
    let width = entries.iter().map(|e| e.reference.len()).max().unwrap_or(0);
    for e in &entries {
        let (id, message) = match (&e.new, &e.old) {
            (Some(new), _) => (short_id(new), e.message.clone()),
            (None, Some(old)) => (
                "-".repeat(12),
                format!("{} (was {})", e.message, short_id(old)),
            ),
            (None, None) => ("-".repeat(12), e.message.clone()),
        };
        println!(
            "{id} {:width$} {} {}",
            e.reference,
            readable_time(&e.time),
            escape_text(&message)
        );
    }
    Ok(())
}
