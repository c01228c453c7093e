//! The command line, as clap sees it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::render::output::Output;
use dvol_plugin::daemon::{
    DEFAULT_API_SOCKET, DEFAULT_CONFIG, DEFAULT_PLUGIN_SOCKET, DEFAULT_ROOT,
};

/// dvol: Docker volumes with service levels and a history.
#[derive(Debug, Parser)]
#[command(
    name = "dvol",
    version,
    disable_version_flag = true,
    after_help = concat!(
        "History commands (init ... gc) work like git on the current volume, which `dvol init`\n",
        "and `dvol switch` set; -V NAME picks another for one command. For example:\n",
        "  dvol init demo@gold\n",
        "  dvol commit -m \"clean schema\"\n",
        "  dvol checkout -b experiment\n",
        "  dvol log --graph\n",
        "  dvol reset --hard HEAD^",
    )
)]
pub struct Cli {
    /// The volume a history command works on [default: the current volume, see `dvol
    /// switch`]. Anywhere on the command line: `dvol -V db reset --hard HEAD^` and `dvol reset
    /// -V db --hard HEAD^` are the same.
    #[arg(short = 'V', long = "volume", value_name = "NAME", global = true)]
    pub volume: Option<String>,
    /// Print the version (only the long form: -V is --volume).
    #[arg(long, action = clap::ArgAction::Version)]
    pub version: Option<bool>,
    /// The daemon to talk to: unix:///path/to.sock or tcp://HOST:PORT.
    #[arg(long, global = true, env = "DVOL_HOST", default_value = concat!("unix://", "/run/dvol/dvol.sock"))]
    pub host: String,
    /// File holding the bearer token: sent to a TCP daemon, or required by `daemon --listen`.
    #[arg(long, global = true, env = "DVOL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to check a TCP daemon's certificate against: speaks TLS to
    /// tcp://HOST:PORT, trusting only this CA.
    #[arg(long, global = true, env = "DVOL_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the Docker volume plugin and the REST API.
    Daemon(Box<DaemonArgs>),
    /// Create, list, inspect and remove volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Show profiles and the backend each resolves to on this host.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Show this host: id, backends, capacity per profile.
    Node(JsonFlag),
    /// The cluster's registry (a daemon in cluster mode, `dvol daemon --cluster URL`): its
    /// nodes and its volumes.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Show the versions of this CLI, of the REST API it speaks and of the daemon it talks to;
    /// exits non-zero (after printing the CLI's) when the daemon does not answer.
    Version(JsonFlag),

    /// Create a volume (NAME, NAME@PROFILE or NAME@snapshot-REF) and make it the current volume.
    Init {
        /// NAME, NAME@PROFILE, or NAME@snapshot-REF for a clone.
        name: String,
        /// Options: size=10G, profile=gold, fs=xfs, from=REF.
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Make an existing volume the current volume.
    Switch {
        /// The volume.
        name: String,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List volumes; the current one is marked with `*`.
    List(JsonFlag),
    /// Remove a volume and its data (if it is the current one, no volume is current after).
    Rm {
        /// The volume.
        name: String,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Record the volume's files as a commit on the checked-out branch.
    Commit {
        /// The commit message.
        #[arg(short, long)]
        message: String,
        /// Who commits [default: $USER@hostname].
        #[arg(long)]
        author: Option<String>,
        /// Pause the containers using the volume while committing, for a consistent point.
        #[arg(long)]
        pause: bool,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show the commits, newest first, with the branches and tags pointing at them.
    Log {
        /// Draw the commit graph, one line per commit.
        #[arg(long)]
        graph: bool,
        /// One line per commit: the short id, the refs pointing at it and the first line of
        /// its message (the lines --graph draws beside the graph).
        #[arg(long, conflicts_with = "json")]
        oneline: bool,
        /// Show at most N commits.
        #[arg(short = 'n', long = "max-count", value_name = "N")]
        max_count: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the changes in the volume that are not committed yet.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List branches (`*` marks the checked-out one), create one, or delete one with -d.
    Branch {
        /// The branch to create (or, with -d, to delete).
        name: Option<String>,
        /// Where the new branch points (as --at), e.g. a commit `dvol reflog` lists.
        #[arg(value_name = "START", requires = "name", conflicts_with_all = ["at", "delete"])]
        start: Option<String>,
        /// Where the new branch points: a branch, tag, commit id prefix, HEAD^, HEAD~N.
        #[arg(long, value_name = "REV", requires = "name")]
        at: Option<String>,
        /// Delete the branch NAME (not the checked-out one).
        #[arg(short = 'd', long, requires = "name", conflicts_with = "at")]
        delete: bool,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List tags, create one, or delete one with -d.
    Tag {
        /// The tag to create (or, with -d, to delete).
        name: Option<String>,
        /// Where the tag points: a branch, tag, commit id prefix, HEAD^, HEAD~N.
        #[arg(long, value_name = "REV", requires = "name")]
        at: Option<String>,
        /// Delete the tag NAME.
        #[arg(short = 'd', long, requires = "name", conflicts_with = "at")]
        delete: bool,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show every move of HEAD and the branches, newest first: commits, checkouts, resets,
    /// branches created and deleted.
    ///
    /// A commit left behind by a checkout or reset is found here; `dvol branch NAME ID` keeps
    /// it. gc keeps the commits listed here for its grace period (two weeks by default).
    Reflog {
        /// Show at most N entries.
        #[arg(short = 'n', long = "max-count", value_name = "N")]
        max_count: Option<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put a branch or commit into the volume, or start a branch with -b.
    ///
    /// A branch becomes the checked-out branch; any other REF (tag, commit id prefix, HEAD^)
    /// detaches HEAD. Uncommitted changes are refused unless --force. The running containers
    /// using the volume are stopped meanwhile and started again afterwards; a container run
    /// with `docker run --rm` (which the engine deletes when it stops) is refused, unless
    /// --stop-removable.
    #[command(
        override_usage = "dvol checkout [OPTIONS] REF\n       dvol checkout [OPTIONS] -b NAME [REV]"
    )]
    Checkout {
        /// A branch, tag, commit id prefix, HEAD^, HEAD~N (with -b: where the branch starts,
        /// default HEAD).
        #[arg(value_name = "REF", required_unless_present = "new_branch")]
        rev: Option<String>,
        /// Create the branch NAME at REV and check it out.
        #[arg(short = 'b', value_name = "NAME")]
        new_branch: Option<String>,
        /// Discard uncommitted changes in the volume.
        #[arg(short, long)]
        force: bool,
        /// Also stop the containers run with `docker run --rm` that use the volume: the
        /// engine deletes them when they stop, so they are gone afterwards.
        #[arg(long)]
        stop_removable: bool,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Move the current branch to REF and put REF's files into the volume (--hard).
    ///
    /// Uncommitted changes are discarded. Only hard resets exist, so --hard is required. The
    /// running containers using the volume are stopped meanwhile and started again afterwards;
    /// a container run with `docker run --rm` is refused, unless --stop-removable.
    Reset {
        /// Reset the files too (required: dvol has only hard resets).
        #[arg(long)]
        hard: bool,
        /// A branch, tag, commit id prefix, HEAD^, HEAD~N.
        #[arg(value_name = "REF")]
        rev: String,
        /// Also stop the containers run with `docker run --rm` that use the volume: the
        /// engine deletes them when they stop, so they are gone afterwards.
        #[arg(long)]
        stop_removable: bool,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show the files that differ from REF to the second REF (default HEAD); without REF, the
    /// changes in the volume not committed yet (as `dvol status` lists them).
    Diff {
        /// The older revision [default: the uncommitted changes against HEAD].
        #[arg(value_name = "REF")]
        from: Option<String>,
        /// The newer revision [default: HEAD].
        #[arg(value_name = "REF", requires = "from")]
        to: Option<String>,
        /// Per path the change and its bytes, then the paths changed and the bytes added and
        /// removed.
        #[arg(long, conflicts_with = "json")]
        stat: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a commit (id, parents, author, date, message, refs) and the paths it changed
    /// against its first parent, with their sizes.
    Show {
        /// The commit: a branch, tag, commit id prefix, HEAD^, HEAD~N.
        #[arg(value_name = "REF", default_value = "HEAD")]
        rev: String,
        /// Print JSON: `commit` as `dvol log --json` shows commits, `changes` as `dvol diff
        /// --json` shows paths.
        #[arg(long)]
        json: bool,
    },
    /// Other daemons to push to and clone from: add, list, remove.
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Show the pushes other hosts are sending here, and how much of each arrived so far.
    Incoming(JsonFlag),
    /// Send the volume's branch (the checked-out one unless named) and its history to a remote.
    ///
    /// Creates the volume there, like this one (profile, size, filesystem), if it has none;
    /// otherwise moves the remote's branch forward and, where it is checked out, checks the new
    /// commit out there. Sends only what the remote lacks; a rerun after a failure sends only
    /// the rest.
    Push {
        /// The remote (`dvol remote ls`).
        remote: String,
        /// The branch to send [default: the checked-out branch].
        branch: Option<String>,
        /// The volume's name on the remote [default: the same name].
        #[arg(long = "as", value_name = "NAME")]
        as_name: Option<String>,
        /// When the remote's branch has commits this one lacks: keep them there as a branch
        /// BRANCH-stash-DATE-ID, then move the branch.
        #[arg(long, conflicts_with = "force")]
        stash: bool,
        /// Move the remote's branch whatever it holds (its old commits stay in its reflog).
        #[arg(long)]
        force: bool,
        /// When the branch is checked out on the remote by a volume in use: stop its
        /// containers, check the new commit out and start them again.
        #[arg(long)]
        checkout: bool,
        /// How many times the daemon tries again after a lost connection (waiting 1 s, 2 s,
        /// 4 s... up to 30 s); 0: never, at most 20. Each try sends only what is still missing.
        #[arg(long, value_name = "N", default_value_t = dvol_api::DEFAULT_RETRIES)]
        retries: u32,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Bring a remote volume's branch here: its commits and the remote-tracking ref
    /// REMOTE/BRANCH, which log, diff, checkout and NAME@snapshot-REF accept. No local branch
    /// moves.
    Fetch {
        /// The remote (`dvol remote ls`).
        remote: String,
        /// VOLUME or VOLUME:BRANCH, here and on the remote [default: the current volume, the
        /// remote's checked-out branch].
        #[arg(value_name = "VOLUME[:BRANCH]")]
        source: Option<String>,
        /// How many times the daemon tries again after a lost connection (waiting 1 s, 2 s,
        /// 4 s... up to 30 s); 0: never, at most 20. Each try sends only what is still missing.
        #[arg(long, value_name = "N", default_value_t = dvol_api::DEFAULT_RETRIES)]
        retries: u32,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Fetch a remote volume's branch and move the local branch of the same name to it,
    /// checking it out where it is checked out (stopping and starting the containers that use
    /// the volume, as checkout does).
    Pull {
        /// The remote (`dvol remote ls`).
        remote: String,
        /// VOLUME or VOLUME:BRANCH, here and on the remote [default: the current volume, the
        /// remote's checked-out branch].
        #[arg(value_name = "VOLUME[:BRANCH]")]
        source: Option<String>,
        /// When the local branch has commits the remote's lacks: keep them as a branch
        /// BRANCH-stash-DATE-ID, then move the branch.
        #[arg(long, conflicts_with = "force")]
        stash: bool,
        /// Move the local branch whatever it holds (its old commits stay in the reflog).
        #[arg(long)]
        force: bool,
        /// How many times the daemon tries again after a lost connection (waiting 1 s, 2 s,
        /// 4 s... up to 30 s); 0: never, at most 20. Each try sends only what is still missing.
        #[arg(long, value_name = "N", default_value_t = dvol_api::DEFAULT_RETRIES)]
        retries: u32,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Hand a volume over to a remote with its containers stopped only for the last delta.
    ///
    /// Copies while the containers run, then stops them (or waits for the last unmount), sends
    /// what changed meanwhile, and records the volume as moved: this host then refuses to
    /// mount it, naming the remote, and keeps its data read-only so a move back is
    /// incremental. Start the containers on the remote yourself (or let the orchestrator).
    Move {
        /// The volume.
        #[arg(value_name = "VOLUME")]
        name: String,
        /// The remote (`dvol remote ls`).
        remote: String,
        /// The longest the containers may stay stopped, e.g. 5s, 800ms: the move is refused
        /// before anything stops when the final round is predicted to take longer.
        #[arg(long, value_name = "DURATION", default_value = "5s")]
        max_downtime: String,
        /// Stop the volume's running containers for the final round (the default).
        #[arg(long, conflicts_with = "wait_unmount")]
        stop: bool,
        /// Wait (up to 5 minutes) for the volume's last unmount instead of stopping its
        /// containers (for orchestrators that stop them).
        #[arg(long)]
        wait_unmount: bool,
        /// How many times each pre-copy round is tried again after a lost connection (waiting
        /// 1 s, 2 s, 4 s... up to 30 s); 0: never, at most 20. The final round is not: a
        /// failure there starts the stopped containers again.
        #[arg(long, value_name = "N", default_value_t = dvol_api::DEFAULT_RETRIES)]
        retries: u32,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Make a local volume from a remote's volume, with its whole history.
    Clone {
        /// The remote (`dvol remote ls`).
        remote: String,
        /// VOLUME or VOLUME:BRANCH on the remote.
        #[arg(value_name = "VOLUME[:BRANCH]")]
        source: String,
        /// The local volume's name [default: the remote volume's].
        local: Option<String>,
        /// Options of the new volume: profile=silver, size=20G, fs=xfs [default: the remote
        /// volume's].
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
        /// How many times the daemon tries again after a lost connection (waiting 1 s, 2 s,
        /// 4 s... up to 30 s); 0: never, at most 20. Each try fetches only what is still
        /// missing.
        #[arg(long, value_name = "N", default_value_t = dvol_api::DEFAULT_RETRIES)]
        retries: u32,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Verify every stored object of every volume; exits non-zero unless all is well.
    Fsck(OutputArgs),
    /// Delete stored objects that no branch, tag or volume refers to any more.
    ///
    /// Kept for a grace period (two weeks unless --prune says otherwise): commits a reflog entry
    /// of that age names, and objects written within it. Older reflog entries are deleted.
    Gc {
        /// The grace period: `now` (delete everything unreferenced, empty the reflogs) or a
        /// duration such as 90m, 1h, 14d, 2w.
        #[arg(long, value_name = "WHEN")]
        prune: Option<String>,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Check this host for what the daemon needs; exits non-zero when a check fails.
    ///
    /// The checks: privileges, loop devices, mkfs tools, the LVM volume groups of the profiles,
    /// the daemon, the Docker Engine, the plugin directory and socket, the state root's lock
    /// and free space. One line per check: `ok|warn|fail  CHECK  detail — what to do`. The
    /// profiles come from the daemon (--host); a daemon that does not answer is itself a
    /// failed check, and the checks of this host run all the same. Run it on the daemon's
    /// host, as the daemon's user (root).
    Doctor(DoctorArgs),
    /// Print the shell completion script for bash, zsh or fish to stdout.
    ///
    /// For example: `dvol completions bash > /etc/bash_completion.d/dvol`, or
    /// `dvol completions zsh > "${fpath[1]}/_dvol"`, or
    /// `dvol completions fish > ~/.config/fish/completions/dvol.fish`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Write the manual pages into DIR: dvol.1 and one per subcommand (dvol-commit.1,
    /// dvol-volume-create.1, ...).
    Man {
        /// The directory to write the pages into (created if missing), e.g.
        /// /usr/local/share/man/man1.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `dvol cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The nodes whose lease is alive: name, address, free capacity per profile.
    Nodes(JsonFlag),
    /// Every volume of the cluster: its owner, epoch, profile, size, state and mounts.
    Volumes(JsonFlag),
}

/// `dvol remote` subcommands.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Add a remote: NAME for the daemon at tcp://HOST:PORT. Give its token with
    /// --token-file F and, for TLS, the CA that signs its certificate with --ca F; both are
    /// read now and kept by the daemon.
    Add {
        /// The remote's name here.
        name: String,
        /// Where its daemon listens (its --listen): tcp://HOST:PORT.
        url: String,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the remotes.
    Ls(JsonFlag),
    /// Forget a remote.
    Rm {
        /// The remote.
        name: String,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
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
    /// The volume driver name the Docker Engine knows this daemon by, which finds the
    /// containers using a volume (checkout and reset stop them) [default: the plugin socket's
    /// name without `.sock`]. A managed plugin sets it to the plugin's name and tag, e.g.
    /// `dvol:latest`.
    #[arg(long, env = "DVOL_DOCKER_DRIVER", value_name = "NAME")]
    pub docker_driver: Option<String>,
    /// Also serve the REST API on this TCP address; needs --token-file.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve TLS on the --listen address with this PEM certificate chain (the server's
    /// certificate first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Cluster mode: the etcd endpoints (comma-separated `http://HOST:PORT`) of the registry
    /// this daemon shares with the other nodes. Needs --listen (the address other nodes reach
    /// this one at) and --token-file (a token every node of the cluster shares).
    #[arg(long, value_name = "URLS")]
    pub cluster: Option<String>,
    /// This node's name in the cluster [default: the host name].
    #[arg(long, value_name = "NAME", requires = "cluster")]
    pub node_name: Option<String>,
    /// The PEM CA that signs the other nodes' TLS certificates (their --tls-cert); without
    /// it the nodes call each other over plain TCP.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_ca: Option<PathBuf>,
    /// Log filter: a level (trace, debug, info, warn, error, off) and TARGET=LEVEL
    /// directives, comma-separated, e.g. `info,dvol_plugin=debug`. A directive naming a target
    /// nothing logs under is refused at start, with the list of targets.
    #[arg(long, env = "DVOL_LOG", default_value = "info")]
    pub log: String,
    /// Log format: `text` (colour only on a terminal) or `json` (one JSON object per line,
    /// with timestamp, level, target and fields).
    #[arg(long, env = "DVOL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How the daemon writes its log (`dvol daemon --log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// `dvol doctor` options.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The daemon's state root (its --root): whose lock says whether a daemon runs on it, and
    /// whose filesystem must have room.
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// The daemon's Docker plugin socket (its --plugin-socket).
    #[arg(long, default_value = DEFAULT_PLUGIN_SOCKET)]
    pub plugin_socket: PathBuf,
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The shells `dvol completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// GNU bash.
    Bash,
    /// The Z shell.
    Zsh,
    /// The friendly interactive shell.
    Fish,
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

/// `--json` and `--quiet` for a command that does something and reports what it did.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Print the result as JSON, with the field names of the REST API's answer.
    #[arg(long)]
    pub json: bool,
    /// Print only what a script needs: the id of a commit made, the name of a volume created
    /// (nothing else); no progress. Warnings and errors still go to stderr.
    #[arg(short, long, conflicts_with = "json")]
    pub quiet: bool,
}

impl OutputArgs {
    /// The output these flags ask for.
    pub fn output(self) -> Output {
        match (self.json, self.quiet) {
            (true, _) => Output::Json,
            (_, true) => Output::Quiet,
            _ => Output::Text,
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

/// `dvol volume ls` flags.
#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    /// Print JSON instead of a table.
    #[arg(long, conflicts_with_all = ["quiet", "format"])]
    pub json: bool,
    /// Print only the names, one a line.
    #[arg(short, long, conflicts_with = "format")]
    pub quiet: bool,
    /// Print a line per volume from TEMPLATE: `{{.FIELD}}` is a field of `dvol volume ls
    /// --json` (name, profile, backend, size_bytes, state, ...; Docker's `{{.Name}}` works
    /// too), `\t` a tab. E.g. --format '{{.Name}} {{.Profile}}'.
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

/// `dvol volume ...`
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume: NAME, NAME@PROFILE, or NAME@snapshot-REF for a clone.
    Create {
        /// NAME, NAME@PROFILE, or NAME@snapshot-REF for a clone.
        name: String,
        /// Options: size=10G, profile=gold, fs=xfs, from=REF.
        #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
        opts: Vec<String>,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List volumes.
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
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
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Remove volumes and their data.
    #[command(alias = "remove")]
    Rm {
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
        /// How the result is printed (--json, --quiet).
        #[command(flatten)]
        output: OutputArgs,
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

    /// The full names (`remote add`) of every leaf command.
    fn leaves(command: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in command.get_subcommands() {
            let name = format!("{prefix}{}", sub.get_name()).trim().to_string();
            if sub.has_subcommands() {
                leaves(sub, &format!("{name} "), out);
            } else {
                out.push((name, sub.clone()));
            }
        }
    }

    #[test]
    fn every_command_that_prints_a_result_has_json_and_those_that_act_have_quiet() {
        // What prints no result of its own (a server, generated files) or only JSON.
        const NO_JSON: &[&str] = &["daemon", "completions", "man", "volume inspect"];
        const ACTS: &[&str] = &[
            "init",
            "switch",
            "rm",
            "commit",
            "checkout",
            "reset",
            "branch",
            "tag",
            "push",
            "fetch",
            "pull",
            "move",
            "clone",
            "fsck",
            "gc",
            "remote add",
            "remote rm",
            "volume create",
            "volume resize",
            "volume rm",
            "volume ls",
        ];
        let mut all = Vec::new();
        leaves(&Cli::command(), "", &mut all);
        assert!(all.len() > 30, "{}", all.len());
        let has =
            |command: &clap::Command, id: &str| command.get_arguments().any(|a| a.get_id() == id);
        for (name, command) in &all {
            assert_eq!(
                has(command, "json"),
                !NO_JSON.contains(&name.as_str()),
                "`dvol {name}` and --json"
            );
            assert_eq!(
                has(command, "quiet"),
                ACTS.contains(&name.as_str()),
                "`dvol {name}` and --quiet"
            );
        }
    }

    #[test]
    fn default_host_is_the_api_socket() {
        let cli = Cli::try_parse_from(["dvol", "node"]).unwrap();
        if std::env::var_os("DVOL_HOST").is_none() {
            assert_eq!(cli.host, format!("unix://{DEFAULT_API_SOCKET}"));
        }
    }

    #[test]
    fn dash_capital_v_is_the_volume_wherever_it_stands_and_never_the_version() {
        for args in [
            &["dvol", "-V", "db", "reset", "--hard", "HEAD^"][..],
            &["dvol", "reset", "-V", "db", "--hard", "HEAD^"],
            &["dvol", "reset", "--hard", "HEAD^", "-V", "db"],
            &["dvol", "--volume", "db", "reset", "--hard", "HEAD^"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.volume.as_deref(), Some("db"), "{args:?}");
            assert!(
                matches!(cli.command, Command::Reset { hard: true, .. }),
                "{args:?}"
            );
        }
        let version = Cli::try_parse_from(["dvol", "--version"]).unwrap_err();
        assert_eq!(version.kind(), clap::error::ErrorKind::DisplayVersion);
        let bare = Cli::try_parse_from(["dvol", "-V"]).unwrap_err();
        assert_ne!(
            bare.kind(),
            clap::error::ErrorKind::DisplayVersion,
            "-V needs a volume name"
        );
    }
}
