//! `dvol cluster nodes|volumes`: the cluster's registry as the daemon last read it.

use anyhow::Result;

use crate::client::Client;
use crate::render::format::{optional_bytes, readable_time, yes_no};
use crate::render::json::print_json;
use crate::render::table;

/// `dvol cluster nodes [--json]`
pub async fn nodes(client: &Client, as_json: bool) -> Result<()> {
    let nodes = client.cluster_nodes().await?;
    if as_json {
        return print_json(&nodes);
    }
    let rows: Vec<Vec<String>> = nodes
        .nodes
        .iter()
        .map(|n| {
            let free: Vec<String> = n
                .profiles
                .iter()
                .filter(|p| p.available)
                .map(|p| {
                    let room = p
                        .capacity
                        .as_ref()
                        .map(|c| optional_bytes(Some(c.free_bytes)))
                        .unwrap_or_else(|| "?".into());
                    format!("{}={room}", p.profile)
                })
                .collect();
            let me = if n.name == nodes.this_node { " *" } else { "" };
            vec![
                format!("{}{me}", n.name),
                n.address.clone().unwrap_or_else(|| "-".into()),
                yes_no(n.tls).into(),
                n.version.clone(),
                readable_time(&n.started_at),
                free.join(" "),
            ]
        })
        .collect();
    table::print(
        &["NODE", "ADDRESS", "TLS", "VERSION", "JOINED", "FREE"],
        &rows,
    );
    Ok(())
}

/// `dvol cluster volumes [--json]`
pub async fn volumes(client: &Client, as_json: bool) -> Result<()> {
    let volumes = client.cluster_volumes().await?;
    if as_json {
        return print_json(&volumes);
    }
    let rows: Vec<Vec<String>> = volumes
        .volumes
        .iter()
        .map(|v| {
            let owner = if v.owner_alive {
                v.owner.clone()
            } else {
                format!("{} (unavailable)", v.owner)
            };
            let state = match (&v.state, &v.target) {
                (dvol_api::ClusterVolumeState::Moving, Some(target)) => {
                    format!("moving to {target}")
                }
                (dvol_api::ClusterVolumeState::Moving, None) => "moving".into(),
                (dvol_api::ClusterVolumeState::Ready, _) => "ready".into(),
            };
            vec![
                v.name.clone(),
                owner,
                v.epoch.to_string(),
                v.profile.clone(),
                optional_bytes(v.size_bytes),
                state,
                if v.mounted_on.is_empty() {
                    "-".into()
                } else {
                    v.mounted_on.join(",")
                },
            ]
        })
        .collect();
    table::print(
        &[
            "VOLUME",
            "OWNER",
            "EPOCH",
            "PROFILE",
            "SIZE",
            "STATE",
            "MOUNTED ON",
        ],
        &rows,
    );
    if !volumes.lease_alive {
        eprintln!(
            "node {} cannot reach the cluster's registry now: this is what it last knew (revision {})",
            volumes.this_node, volumes.revision
        );
    }
    Ok(())
}
