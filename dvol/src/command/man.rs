//! `dvol man --dir DIR`: the manual pages, generated from the command line's definition:
//! `dvol.1` and one page per subcommand (`dvol-commit.1`, `dvol-volume-create.1`, ...).

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

/// `dvol man --dir DIR`: writes the pages into `dir` (created if missing).
pub fn run(dir: &Path) -> Result<()> {
    let cant_write = || {
        format!(
            "cannot write the manual pages into {}: give --dir a directory you can write",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).with_context(cant_write)?;
    clap_mangen::generate_to(Cli::command(), dir).with_context(cant_write)?;
    println!(
        "wrote {} manual pages into {} (`man -l {}` shows the first)",
        pages(&Cli::command().disable_help_subcommand(true)),
        dir.display(),
        dir.join("dvol.1").display()
    );
    Ok(())
}

/// How many pages `command` has: its own and one per visible subcommand, at every depth.
fn pages(command: &clap::Command) -> usize {
    1 + command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(pages)
        .sum::<usize>()
}
