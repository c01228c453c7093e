//! `dvol list`: the volumes, the current one marked with `*`.

use anyhow::Result;
use dvol_api::VolumeView;
use serde::Serialize;

use super::volume::cells;
use crate::client::Client;
use crate::current;
use crate::render::json::print_json;
use crate::render::table;

/// A volume as `dvol list --json` prints it: the API's fields and whether it is current.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    volume: &'a VolumeView,
    current: bool,
}

/// `dvol list [--json]`
pub async fn run(client: &Client, as_json: bool) -> Result<()> {
    let volumes = client.volumes().await?;
    let current = current::read()?;
    let is_current = |v: &VolumeView| current.as_deref() == Some(v.name.as_str());
    if as_json {
        let listed: Vec<Listed> = volumes
            .iter()
            .map(|volume| Listed {
                volume,
                current: is_current(volume),
            })
            .collect();
        return print_json(&listed);
    }
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            let mut row = cells(v);
            let mark = if is_current(v) { "*" } else { " " };
            row[0] = format!("{mark} {}", v.name);
            row
        })
        .collect();
    table::print(
        &["  NAME", "PROFILE", "BACKEND", "SIZE", "MOUNTED", "STATE"],
        &rows,
    );
    Ok(())
}
