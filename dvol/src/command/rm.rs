//! `dvol rm NAME`: removes a volume and its data, and forgets it as the current volume.

use anyhow::Result;

use crate::client::Client;
use crate::current;
use crate::render::output::Output;

/// `dvol rm NAME [--json|-q]`: `--json` prints the volume as it was just before.
pub async fn run(client: &Client, name: &str, output: Output) -> Result<()> {
    let volume = client.volume(name).await?;
    client.remove_volume(&volume.name).await?;
    let was_current = current::clear_if(&volume.name)?;
    output.result(&volume, None, || {
        if was_current {
            println!(
                "removed volume {}; there is no current volume now (`dvol switch NAME`)",
                volume.name
            );
        } else {
            println!("removed volume {}", volume.name);
        }
    })
}
