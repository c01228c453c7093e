//! `dvol`: the daemon and the command-line client of its REST API.
//!
//! `dvol daemon` runs the server (see the `dvol-plugin` crate); every other command talks to a
//! running daemon over its REST API.

mod cli;
mod client;
mod commands;
mod current;
mod history;
mod table;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dvol: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("dvol: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
