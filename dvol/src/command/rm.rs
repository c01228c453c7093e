//! `dvol rm NAME`: removes a volume and its data, and forgets it as the current volume.

use anyhow::Result;

use crate::client::Client;
use crate::current;

/// `dvol rm NAME`
pub async fn run(client: &Client, name: &str) -> Result<()> {
    let name = client.volume(name).await?.name;
    client.remove_volume(&name).await?;
    if current::clear_if(&name)? {
        println!("removed volume {name}; there is no current volume now (`dvol switch NAME`)");
    } else {
        println!("removed volume {name}");
    }
    Ok(())
}
