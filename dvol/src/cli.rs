//! The command line, as clap sees it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use dvol_plugin::daemon::{
    DEFAULT_API_SOCKET, DEFAULT_CONFIG, DEFAULT_PLUGIN_SOCKET, DEFAULT_ROOT,
};

/// dvol: Docker volumes with service levels and a history.
#[derive(Debug, Parser)]
#[command(name = "dvol", version, about, propagate_version = true)]
pub struct Cli {
    /// The daemon to talk to: unix:///path/to.sock or tcp://HOST:PORT.
    #[arg(long, global = true, env = "DVOL_HOST", default_value = concat!("unix://", "/run/dvol/dvol.sock"))]
    pub host: String,
    /// File holding the bearer token: sent to a TCP daemon, or required by `daemon --listen`.
    #[arg(long, global = true, env = "DVOL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the Docker volume plugin and the REST API.
    Daemon(DaemonArgs),
    /// Create, list, inspect and remove volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Show profiles and the backend each resolves to on this host.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Show this host: id, backends, capacity per profile.
    Node(JsonFlag),
}

/// `dvol daemon` options.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// State root: metadata database, mountpoints, backend storage.
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Configuration file (TOML). Without this flag a missing /etc/dvol/config.toml means the
    /// built-in gold/silver/bronze profiles.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The Docker plugin socket.
    #[arg(long, default_value = DEFAULT_PLUGIN_SOCKET)]
    pub plugin_socket: PathBuf,
    /// The REST API unix socket.
    #[arg(long, default_value = DEFAULT_API_SOCKET)]
    pub api_socket: PathBuf,
    /// Also serve the REST API on this TCP address; needs --token-file.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Log filter, e.g. info or dvol_plugin=debug.
    #[arg(long, env = "DVOL_LOG", default_value = "info")]
    pub log: String,
}

impl DaemonArgs {
    /// The configuration file and whether it must exist.
    pub fn config_file(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG), false),
        }
    }
}

/// `--json` for listings.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `dvol volume ...`
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume: NAME or NAME@PROFILE.
    Create {
        /// NAME or NAME@PROFILE.
        name: String,
        /// Options: size=10G, profile=gold, fs=xfs.
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
        /// Print the volume as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls(JsonFlag),
    /// Show one volume as JSON.
    Inspect {
        /// The volume.
        name: String,
    },
    /// Grow a volume (loop and lvm), online if it is mounted. Shrinking is refused.
    Resize {
        /// The volume.
        name: String,
        /// The new size, e.g. 20G.
        size: String,
    },
    /// Remove volumes and their data.
    #[command(alias = "remove")]
    Rm {
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `dvol profile ...`
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// List profiles and what they resolve to here.
    Ls(JsonFlag),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn default_host_is_the_api_socket() {
        let cli = Cli::try_parse_from(["dvol", "node"]).unwrap();
        if std::env::var_os("DVOL_HOST").is_none() {
            assert_eq!(cli.host, format!("unix://{DEFAULT_API_SOCKET}"));
        }
    }
}
