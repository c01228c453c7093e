//! One function per command; each is a few lines over the REST client or the daemon library.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use hyper::Method;
use serde_json::{json, Value};

use crate::cli::{Cli, Command, DaemonArgs, ProfileCommand, VolumeCommand};
use crate::client::{segment, Client, Host};
use crate::history;
use crate::table;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let token_file = cli.token_file.clone();
    let client = || -> Result<Client> {
        let token = match &token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("read token file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Client::new(Host::parse(&cli.host)?, token))
    };
    match cli.command {
        Command::Daemon(args) => daemon(args, token_file).await,
        Command::Volume(VolumeCommand::Create { name, opts, json }) => {
            volume_create(&client()?, &name, &opts, json).await
        }
        Command::Volume(VolumeCommand::Ls(flag)) => volume_ls(&client()?, flag.json).await,
        Command::Volume(VolumeCommand::Inspect { name }) => {
            let volume: Value = client()?
                .call(Method::GET, &volume_path(&name), None)
                .await?;
            print_json(&volume)
        }
        Command::Volume(VolumeCommand::Resize { name, size }) => {
            let body = json!({ "size": size });
            let path = format!("{}/resize", volume_path(&name));
            let volume: Value = client()?.call(Method::POST, &path, Some(&body)).await?;
            println!(
                "{} {}",
                text(&volume["name"]),
                human_bytes(&volume["size_bytes"])
            );
            Ok(())
        }
        Command::Volume(VolumeCommand::Rm { names }) => volume_rm(&client()?, &names).await,
        Command::Profile(ProfileCommand::Ls(flag)) => profile_ls(&client()?, flag.json).await,
        Command::Node(flag) => node(&client()?, flag.json).await,
        Command::Init { name, opts } => history::init(&client()?, &name, &opts).await,
        Command::Switch { name } => history::switch(&client()?, &name).await,
        Command::List(flag) => history::list(&client()?, flag.json).await,
        Command::Rm { name } => history::rm(&client()?, &name).await,
        Command::Commit {
            volume,
            message,
            author,
            pause,
        } => {
            let author = author.as_deref();
            history::commit(&client()?, volume.get(), &message, author, pause).await
        }
        Command::Log {
            volume,
            graph,
            max_count,
            json,
        } => history::log(&client()?, volume.get(), graph, max_count, json).await,
        Command::Status { volume, json } => history::status(&client()?, volume.get(), json).await,
        Command::Branch {
            volume,
            name,
            at,
            delete,
            json,
        } => {
            let (name, at) = (name.as_deref(), at.as_deref());
            history::branch(&client()?, volume.get(), name, at, delete, json).await
        }
        Command::Tag {
            volume,
            name,
            at,
            json,
        } => {
            let (name, at) = (name.as_deref(), at.as_deref());
            history::tag(&client()?, volume.get(), name, at, json).await
        }
        Command::Checkout {
            volume,
            rev,
            new_branch,
            force,
        } => {
            let (rev, new_branch) = (rev.as_deref(), new_branch.as_deref());
            history::checkout(&client()?, volume.get(), rev, new_branch, force).await
        }
        Command::Reset { volume, hard, rev } => {
            history::reset(&client()?, volume.get(), hard, &rev).await
        }
        Command::Diff {
            volume,
            from,
            to,
            json,
        } => history::diff(&client()?, volume.get(), &from, to.as_deref(), json).await,
        Command::Fsck(flag) => history::fsck(&client()?, flag.json).await,
        Command::Gc(flag) => history::gc(&client()?, flag.json).await,
    }
}

pub(crate) fn volume_path(name: &str) -> String {
    format!("/v1/volumes/{}", segment(name))
}

pub(crate) fn print_json(value: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn human_bytes(value: &Value) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let Some(mut n) = value.as_f64() else {
        return "-".into();
    };
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    format!("{n:.1}{}", UNITS[unit]).replace(".0", "")
}

async fn daemon(args: DaemonArgs, token_file: Option<std::path::PathBuf>) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
        .with_writer(std::io::stderr)
        .init();
    let (config, config_required) = args.config_file();
    let options = dvol_plugin::daemon::DaemonOptions {
        root: args.root,
        config,
        config_required,
        plugin_socket: args.plugin_socket,
        api_socket: args.api_socket,
        listen: args.listen,
        token_file,
    };
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    dvol_plugin::daemon::run(options, shutdown).await?;
    Ok(())
}

/// `-o KEY=VALUE` options as the API takes them.
pub(crate) fn options_map(opts: &[String]) -> Result<BTreeMap<String, String>> {
    let mut options = BTreeMap::new();
    for opt in opts {
        let Some((key, value)) = opt.split_once('=') else {
            bail!("option {opt:?} is not KEY=VALUE (e.g. -o size=10G)");
        };
        options.insert(key.to_string(), value.to_string());
    }
    Ok(options)
}

async fn volume_create(client: &Client, name: &str, opts: &[String], as_json: bool) -> Result<()> {
    let body = json!({ "name": name, "options": options_map(opts)? });
    let volume: Value = client
        .call(Method::POST, "/v1/volumes", Some(&body))
        .await?;
    if as_json {
        return print_json(&volume);
    }
    println!("{}", text(&volume["name"]));
    Ok(())
}

async fn volume_ls(client: &Client, as_json: bool) -> Result<()> {
    let volumes: Vec<Value> = client.call(Method::GET, "/v1/volumes", None).await?;
    if as_json {
        return print_json(&Value::Array(volumes));
    }
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            vec![
                text(&v["name"]),
                text(&v["profile"]),
                text(&v["backend"]),
                human_bytes(&v["size_bytes"]),
                if v["mounted"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                text(&v["id"]),
            ]
        })
        .collect();
    table::print(
        &["NAME", "PROFILE", "BACKEND", "SIZE", "MOUNTED", "UUID"],
        &rows,
    );
    Ok(())
}

async fn volume_rm(client: &Client, names: &[String]) -> Result<()> {
    let mut failed = Vec::new();
    for name in names {
        match client
            .call::<Value>(Method::DELETE, &volume_path(name), None)
            .await
        {
            Ok(_) => println!("{name}"),
            Err(e) => {
                eprintln!("dvol: {e:#}");
                failed.push(name.as_str());
            }
        }
    }
    if !failed.is_empty() {
        bail!("could not remove {}", failed.join(", "));
    }
    Ok(())
}

async fn profile_ls(client: &Client, as_json: bool) -> Result<()> {
    let profiles: Vec<Value> = client.call(Method::GET, "/v1/profiles", None).await?;
    if as_json {
        return print_json(&Value::Array(profiles));
    }
    let rows: Vec<Vec<String>> = profiles
        .iter()
        .map(|p| {
            let name = text(&p["name"]);
            vec![
                if p["default"].as_bool() == Some(true) {
                    format!("{name} (default)")
                } else {
                    name
                },
                match (p["backend"].as_str(), p["preallocate"].as_bool()) {
                    (None, _) => "unavailable".to_string(),
                    (Some(backend), Some(true)) => format!("{backend} (preallocated)"),
                    (Some(backend), _) => backend.to_string(),
                },
                human_bytes(&p["config"]["size"]),
                text(&p["reason"]),
            ]
        })
        .collect();
    table::print(&["PROFILE", "BACKEND", "SIZE", "WHY"], &rows);
    Ok(())
}

async fn node(client: &Client, as_json: bool) -> Result<()> {
    let node: Value = client.call(Method::GET, "/v1/node", None).await?;
    if as_json {
        return print_json(&node);
    }
    println!(
        "host:     {} ({})",
        text(&node["hostname"]),
        text(&node["id"])
    );
    println!("version:  {}", text(&node["version"]));
    println!("volumes:  {}", text(&node["volumes"]));
    let backends: Vec<String> = node["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    println!("backends: {}", backends.join(", "));
    println!();
    let rows: Vec<Vec<String>> = node["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                text(&p["profile"]),
                text(&p["backend"]),
                human_bytes(&p["capacity"]["free_bytes"]),
                human_bytes(&p["capacity"]["total_bytes"]),
            ]
        })
        .collect();
    table::print(&["PROFILE", "BACKEND", "FREE", "TOTAL"], &rows);
    Ok(())
}
