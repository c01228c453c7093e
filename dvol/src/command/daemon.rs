//! `dvol daemon`: the Docker volume plugin and the REST API, until SIGTERM or Ctrl-C.

use std::path::PathBuf;

mod log_filter;

use anyhow::Result;
use dvol_plugin::daemon::DaemonOptions;

use crate::cli::{DaemonArgs, LogFormat};

/// Runs the daemon with `args`; `token_file` guards the TCP listener, if any.
pub async fn run(args: DaemonArgs, token_file: Option<PathBuf>) -> Result<()> {
    let log = tracing_subscriber::fmt()
        .with_env_filter(log_filter::parse(&args.log)?)
        .with_writer(std::io::stderr);
    match args.log_format {
        // Colour only for a person watching a terminal, never into a log file or journal.
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => log.with_ansi(false).json().init(),
    }
    let (config, config_required) = args.config_file();
    let options = DaemonOptions {
        root: args.root,
        config,
        config_required,
        plugin_socket: args.plugin_socket,
        api_socket: args.api_socket,
        listen: args.listen,
        token_file,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        docker_driver: args.docker_driver,
        cluster: args
            .cluster
            .map(|endpoints| dvol_plugin::daemon::ClusterOptions {
                endpoints: endpoints.split(',').map(str::to_string).collect(),
                node_name: args.node_name,
                peer_ca: args.cluster_ca,
            }),
    };
    // The handlers are installed now, before any socket is bound: a SIGTERM that arrives as
    // soon as the sockets answer (a service manager stopping it right after start) must
    // still stop the daemon cleanly, not kill it with the signal's default action.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    dvol_plugin::daemon::run(options, shutdown).await?;
    Ok(())
}
