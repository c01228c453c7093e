//! The `dvol` binary: parses the command line, runs it, and turns an error into one line on
//! stderr and a failing exit status.

use clap::Parser;

/// The exit status when the reader of dvol's output went away (`dvol status | head -1`):
/// 128 + SIGPIPE, what a shell reports for git or ls killed by that signal.
const BROKEN_PIPE_STATUS: i32 = 141;

/// Whether a panic message is the standard library's for a write to a closed pipe
/// (`failed printing to stdout: Broken pipe (os error 32)`).
fn is_broken_pipe_panic(message: &str) -> bool {
    message.starts_with("failed printing to std")
        && (message.contains("Broken pipe") || message.contains("os error 32"))
}

/// Rust ignores SIGPIPE, so a write to a pipe whose reader is gone fails with EPIPE and
/// `println!` panics. A command's output going nowhere is no error: exit quietly with
/// [`BROKEN_PIPE_STATUS`] instead, as tools killed by SIGPIPE do. Every other panic is
/// reported as before. (SIGPIPE itself stays ignored: a write to the daemon's socket that
/// fails must be an error message, not a silent death.)
fn exit_quietly_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The message follows the location line: "panicked at FILE:LINE:COL:\nMESSAGE".
        let shown = info.to_string();
        let message = shown.split_once('\n').map_or(shown.as_str(), |(_, m)| m);
        if is_broken_pipe_panic(message) {
            std::process::exit(BROKEN_PIPE_STATUS);
        }
        report(info)
    }));
}

fn main() -> std::process::ExitCode {
    let cli = dvol::cli::Cli::parse();
    if !matches!(cli.command, dvol::cli::Command::Daemon(_)) {
        exit_quietly_on_broken_pipe();
    }
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
            // One line, and nothing in it (a name the user typed, a daemon's message) can
            // move the cursor or forge another line.
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("dvol: {}", dvol::escape_text(&message));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_closed_pipe_panics_are_quiet() {
        assert!(is_broken_pipe_panic(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(is_broken_pipe_panic(
            "failed printing to stderr: Broken pipe (os error 32)"
        ));
        assert!(!is_broken_pipe_panic(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_broken_pipe_panic("index out of bounds"));
    }
}
