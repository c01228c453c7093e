//! `dvol switch NAME`: makes an existing volume the current volume.

use anyhow::Result;

use crate::client::Client;
use crate::current;

/// `dvol switch NAME`
pub async fn run(client: &Client, name: &str) -> Result<()> {
    let volume = client.volume(name).await?;
    current::write(&volume.name)?;
    println!("switched to volume {}", volume.name);
    Ok(())
}
