//! `dvol switch NAME`: makes an existing volume the current volume.

use anyhow::Result;

use crate::client::Client;
use crate::current;
use crate::render::output::Output;

/// `dvol switch NAME [--json|-q]`
pub async fn run(client: &Client, name: &str, output: Output) -> Result<()> {
    let volume = client.volume(name).await?;
    current::write(&volume.name)?;
    output.result(&volume, None, || {
        println!("switched to volume {}", volume.name)
    })
}
