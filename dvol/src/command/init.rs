//! `dvol init NAME[@PROFILE]`: creates a volume (or takes the one of that name) and makes it
//! the current volume.

use anyhow::Result;

use super::volume::create_request;
use crate::client::Client;
use crate::current;
use crate::render::output::Output;

/// `dvol init NAME[@PROFILE] [-o KEY=VALUE]... [--json|-q]`: under `-q` only the volume's
/// name is printed.
pub async fn run(client: &Client, name: &str, opts: &[String], output: Output) -> Result<()> {
    let bare = name.split('@').next().unwrap_or(name);
    let existed = client.volume(bare).await.is_ok();
    let volume = client.create_volume(&create_request(name, opts)?).await?;
    current::write(&volume.name)?;
    output.result(&volume, Some(&volume.name), || {
        if existed {
            println!(
                "volume {} exists; it is now the current volume",
                volume.name
            );
        } else {
            println!(
                "created volume {} ({}, {}); it is now the current volume",
                volume.name, volume.profile, volume.backend
            );
        }
    })
}
