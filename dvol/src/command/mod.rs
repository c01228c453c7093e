//! The commands: [`run`] hands a parsed command line to the module of its command, each a
//! few lines over the typed client (or, for `dvol daemon`, the daemon library).

mod branch;
mod checkout;
mod cluster;
mod commit;
mod completions;
mod daemon;
mod diff;
mod doctor;
mod fsck;
mod gc;
mod init;
mod list;
mod log;
mod man;
mod node;
mod profile;
mod push;
mod reflog;
mod remote;
mod resumed;
mod rm;
mod show;
mod status;
mod switch;
mod tag;
mod version;
mod volume;

use anyhow::{bail, Context, Result};
use dvol_plugin::tls::TlsClient;

use crate::cli::{Cli, ClusterCommand, Command, ProfileCommand, RemoteCommand, VolumeCommand};
use crate::client::{Client, Host};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let client = || connect(&cli.host, cli.token_file.as_deref(), cli.ca.as_deref());
    let volume = cli.volume.clone();
    let volume = volume.as_deref();
    match cli.command {
        Command::Daemon(args) => daemon::run(*args, cli.token_file).await,
        Command::Volume(VolumeCommand::Create { name, opts, output }) => {
            volume::create(&client()?, &name, &opts, output.output()).await
        }
        Command::Volume(VolumeCommand::Ls(args)) => volume::ls(&client()?, args).await,
        Command::Volume(VolumeCommand::Inspect { name }) => {
            volume::inspect(&client()?, &name).await
        }
        Command::Volume(VolumeCommand::Resize { name, size, output }) => {
            volume::resize(&client()?, &name, size, output.output()).await
        }
        Command::Volume(VolumeCommand::Rm { names, output }) => {
            volume::rm(&client()?, &names, output.output()).await
        }
        Command::Profile(ProfileCommand::Ls(flag)) => profile::ls(&client()?, flag.json).await,
        Command::Node(flag) => node::run(&client()?, flag.json).await,
        Command::Cluster(ClusterCommand::Nodes(flag)) => {
            cluster::nodes(&client()?, flag.json).await
        }
        Command::Cluster(ClusterCommand::Volumes(flag)) => {
            cluster::volumes(&client()?, flag.json).await
        }
        Command::Version(flag) => version::run(client(), flag.json).await,
        Command::Init { name, opts, output } => {
            init::run(&client()?, &name, &opts, output.output()).await
        }
        Command::Switch { name, output } => switch::run(&client()?, &name, output.output()).await,
        Command::List(flag) => list::run(&client()?, flag.json).await,
        Command::Rm { name, output } => rm::run(&client()?, &name, output.output()).await,
        Command::Commit {
            message,
            author,
            pause,
            output,
        } => {
            let commit = commit::Commit {
                message,
                author,
                pause,
            };
            commit::run(&client()?, volume, commit, output.output()).await
        }
        Command::Log {
            graph,
            oneline,
            max_count,
            json,
        } => {
            let style = log::Style::new(graph, oneline, json);
            log::run(&client()?, volume, style, max_count).await
        }
        Command::Status { json } => status::run(&client()?, volume, json).await,
        Command::Branch {
            name,
            start,
            at,
            delete,
            output,
        } => {
            let at = at.or(start);
            branch::run(&client()?, volume, name, at, delete, output.output()).await
        }
        Command::Tag {
            name,
            at,
            delete,
            output,
        } => tag::run(&client()?, volume, name, at, delete, output.output()).await,
        Command::Reflog { max_count, json } => {
            reflog::run(&client()?, volume, max_count, json).await
        }
        Command::Checkout {
            rev,
            new_branch,
            force,
            stop_removable,
            output,
        } => {
            let how = checkout::Stopping { stop_removable };
            let output = output.output();
            checkout::run(&client()?, volume, rev, new_branch, force, how, output).await
        }
        Command::Reset {
            hard,
            rev,
            stop_removable,
            output,
        } => {
            let how = checkout::Stopping { stop_removable };
            checkout::reset(&client()?, volume, hard, rev, how, output.output()).await
        }
        Command::Diff {
            from,
            to,
            stat,
            json,
        } => {
            let style = diff::Style::new(stat, json);
            diff::run(&client()?, volume, from, to, style).await
        }
        Command::Show { rev, json } => show::run(&client()?, volume, &rev, json).await,
        Command::Remote(RemoteCommand::Add { name, url, output }) => {
            // --token-file and --ca name the remote's credentials here, not this host's.
            let own = connect(&cli.host, None, None)?;
            let credentials = (cli.token_file.as_deref(), cli.ca.as_deref());
            remote::add(&own, name, url, credentials, output.output()).await
        }
        Command::Remote(RemoteCommand::Ls(flag)) => remote::ls(&client()?, flag.json).await,
        Command::Incoming(flag) => remote::incoming(&client()?, flag.json).await,
        Command::Remote(RemoteCommand::Rm { name, output }) => {
            remote::rm(&client()?, &name, output.output()).await
        }
        Command::Push {
            remote,
            branch,
            as_name,
            stash,
            force,
            checkout,
            retries,
            output,
        } => {
            let mode = push::mode(stash, force);
            let push = push::Push {
                remote,
                branch,
                as_name,
                mode,
                checkout,
                retries,
            };
            push::push(&client()?, volume, push, output.output()).await
        }
        Command::Fetch {
            remote,
            source,
            retries,
            output,
        } => {
            let how = push::Pull::new(remote, source.as_deref(), volume, false, false, retries)?;
            push::pull(&client()?, "fetch", how, output.output()).await
        }
        Command::Pull {
            remote,
            source,
            stash,
            force,
            retries,
            output,
        } => {
            let how = push::Pull::new(remote, source.as_deref(), volume, stash, force, retries)?;
            push::pull(&client()?, "pull", how, output.output()).await
        }
        Command::Move {
            name,
            remote,
            max_downtime,
            stop: _,
            wait_unmount,
            retries,
            output,
        } => {
            let output = output.output();
            push::move_volume(
                &client()?,
                name,
                remote,
                &max_downtime,
                wait_unmount,
                retries,
                output,
            )
            .await
        }
        Command::Clone {
            remote,
            source,
            local,
            opts,
            retries,
            output,
        } => {
            let target = push::CloneTarget {
                remote,
                source,
                local,
                retries,
            };
            push::clone(&client()?, target, &opts, output.output()).await
        }
        Command::Fsck(output) => fsck::run(&client()?, output.output()).await,
        Command::Gc { prune, output } => gc::run(&client()?, prune, output.output()).await,
        Command::Doctor(args) => doctor::run(&cli.host, client(), args).await,
        Command::Completions { shell } => completions::run(shell),
        Command::Man { dir } => man::run(&dir),
    }
}

/// The client of the daemon at `host`, with the bearer token read from `token_file`, over TLS
/// trusting the CA certificate in `ca` if given.
fn connect(
    host: &str,
    token_file: Option<&std::path::Path>,
    ca: Option<&std::path::Path>,
) -> Result<Client> {
    let token = match token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("read token file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let host = Host::parse(host)?;
    let tls = match (ca, &host) {
        (None, _) => None,
        (Some(_), Host::Unix(_)) => bail!(
            "--ca (or DVOL_CA) is for a daemon reached over TCP with TLS (--host \
             tcp://HOST:PORT); {host} is a unix socket, which needs no TLS: drop --ca"
        ),
        (Some(ca), Host::Tcp(_)) => Some(TlsClient::from_ca_file(ca)?),
    };
    let client = Client::new(host, token);
    Ok(match tls {
        Some(tls) => client.with_tls(tls),
        None => client,
    })
}
