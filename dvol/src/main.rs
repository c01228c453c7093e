//! The `dvol` binary: parses the command line, runs it, and turns an error into one line on
//! stderr and a failing exit status.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = dvol::cli::Cli::parse();
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
    match runtime.block_on(dvol::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("dvol: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
