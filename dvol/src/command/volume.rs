//! `dvol volume create|ls|inspect|resize|rm`: volumes as Docker sees them.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use dvol_api::{CreateVolume, ResizeVolume, VolumeView};

use crate::cli::VolumeLsArgs;
use crate::client::Client;
use crate::render::format::{optional_bytes, yes_no};
use crate::render::json::print_json;
use crate::render::output::Output;
use crate::render::table;
use crate::render::template::Template;

/// `dvol volume create NAME[@PROFILE] [-o KEY=VALUE]... [--json|-q]`: prints the volume's
/// name (as `docker volume create` does), or the volume as JSON.
pub async fn create(client: &Client, name: &str, opts: &[String], output: Output) -> Result<()> {
    let volume = client.create_volume(&create_request(name, opts)?).await?;
    output.result(&volume, Some(&volume.name), || println!("{}", volume.name))
}

/// `dvol volume ls [--json | -q | --format TEMPLATE]`
pub async fn ls(client: &Client, args: VolumeLsArgs) -> Result<()> {
    // A bad template fails before the daemon is asked.
    let template = args.format.as_deref().map(Template::parse).transpose()?;
    let volumes = client.volumes().await?;
    if args.json {
        return print_json(&volumes);
    }
    if args.quiet {
        for v in &volumes {
            println!("{}", v.name);
        }
        return Ok(());
    }
    if let Some(template) = template {
        for v in &volumes {
            println!("{}", template.render(v)?);
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            let mut row = cells(v);
            row.push(v.id.to_string());
            row
        })
        .collect();
    table::print(
        &[
            "NAME", "PROFILE", "BACKEND", "SIZE", "MOUNTED", "STATE", "UUID",
        ],
        &rows,
    );
    Ok(())
}

/// `dvol volume inspect NAME`: the volume as JSON.
pub async fn inspect(client: &Client, name: &str) -> Result<()> {
    print_json(&client.volume(name).await?)
}

/// `dvol volume resize NAME SIZE [--json|-q]`
pub async fn resize(client: &Client, name: &str, size: String, output: Output) -> Result<()> {
    let volume = client.resize_volume(name, &ResizeVolume { size }).await?;
    output.result(&volume, None, || {
        println!("{} {}", volume.name, optional_bytes(volume.size_bytes))
    })
}

/// `dvol volume rm NAME... [--json|-q]`: removes each, printing its name (or, with `--json`,
/// the list of the volumes removed as they were just before), then fails if any could not be
/// removed.
pub async fn rm(client: &Client, names: &[String], output: Output) -> Result<()> {
    let mut failed = Vec::new();
    let mut removed = Vec::new();
    for name in names {
        // Only --json shows the volume as it was: read it first then.
        let outcome = match output {
            Output::Json => match client.volume(name).await {
                Ok(volume) => client
                    .remove_volume(&volume.name)
                    .await
                    .map(|()| Some(volume)),
                Err(e) => Err(e),
            },
            _ => client.remove_volume(name).await.map(|()| None),
        };
        match outcome {
            Ok(volume) => {
                if output == Output::Text {
                    println!("{name}");
                }
                removed.extend(volume);
            }
            Err(e) => {
                eprintln!("dvol: {e:#}");
                failed.push(name.as_str());
            }
        }
    }
    output.json(&removed)?;
    if !failed.is_empty() {
        bail!("could not remove {}", failed.join(", "));
    }
    Ok(())
}

/// The request creating `name` with `-o KEY=VALUE` options.
pub(super) fn create_request(name: &str, opts: &[String]) -> Result<CreateVolume> {
    let mut options = BTreeMap::new();
    for opt in opts {
        let Some((key, value)) = opt.split_once('=') else {
            bail!("option {opt:?} is not KEY=VALUE (e.g. -o size=10G)");
        };
        options.insert(key.to_string(), value.to_string());
    }
    Ok(CreateVolume {
        name: name.to_string(),
        options,
    })
}

/// The cells a volume listing shows: name, profile, backend, size, mounted, state.
pub(super) fn cells(volume: &VolumeView) -> Vec<String> {
    vec![
        volume.name.clone(),
        volume.profile.clone(),
        volume.backend.to_string(),
        optional_bytes(volume.size_bytes),
        yes_no(volume.mounted).into(),
        match &volume.moved_to {
            Some(moved) => format!("moved to {}", moved.remote),
            None => volume.state.to_string(),
        },
    ]
}
