//! `dvol node`: this host's id, version, backends and room per profile: the free space and
//! size of what backs each profile, what its volumes are promised and have not written yet
//! (sparse loop images, thin volumes), the reserve kept from promises, and what the bases of
//! changed-range commits hold.

use anyhow::Result;

use crate::client::Client;
use crate::render::format::optional_bytes;
use crate::render::json::print_json;
use crate::render::table;

/// `dvol node [--json]`
pub async fn run(client: &Client, as_json: bool) -> Result<()> {
    let node = client.node().await?;
    if as_json {
        return print_json(&node);
    }
    println!("host:     {} ({})", node.hostname, node.id);
    println!("version:  {}", node.version);
    println!("volumes:  {}", node.volumes);
    let backends: Vec<String> = node.backends.iter().map(ToString::to_string).collect();
    println!("backends: {}", backends.join(", "));
    println!();
    let rows: Vec<Vec<String>> = node
        .profiles
        .iter()
        .map(|p| {
            vec![
                p.profile.clone(),
                p.backend.map_or_else(|| "-".into(), |b| b.to_string()),
                optional_bytes(p.capacity.map(|c| c.free_bytes)),
                optional_bytes(p.capacity.map(|c| c.total_bytes)),
                optional_bytes(p.capacity.map(|c| c.promised_bytes)),
                optional_bytes(p.capacity.map(|c| c.reserved_bytes)),
                optional_bytes(p.capacity.map(|c| c.base_bytes)),
            ]
        })
        .collect();
    table::print(
        &[
            "PROFILE", "BACKEND", "FREE", "TOTAL", "PROMISED", "RESERVED", "BASES",
        ],
        &rows,
    );
    Ok(())
}
