//! `dvol checkout` and `dvol reset --hard`: put a revision's files into the volume, moving
//! HEAD (checkout) or the branch (reset).

use anyhow::{bail, Result};
use dvol_api::{CheckoutRequest, CheckoutView, ResetRequest};

use super::resumed::check_resumed;
use crate::client::Client;
use crate::current;
use crate::render::format::{first_line, human_bytes, short_id};
use crate::render::output::Output;
use crate::render::progress::with_progress;

/// Which containers a checkout or reset may stop.
#[derive(Debug, Clone, Copy)]
pub struct Stopping {
    /// Also those the engine deletes when they stop (`docker run --rm`).
    pub stop_removable: bool,
}

/// `dvol checkout REF [--force] [--stop-removable] [--json|-q]`, `dvol checkout -b NAME
/// [REV]`
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    rev: Option<String>,
    new_branch: Option<String>,
    force: bool,
    how: Stopping,
    output: Output,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let Some(rev) = rev.or(new_branch.as_ref().map(|_| "HEAD".to_string())) else {
        bail!("checkout needs a REF (or -b NAME [REV])");
    };
    let what = match &new_branch {
        Some(name) => format!("checking out {rev} as new branch {name} in volume {volume}"),
        None => format!("checking out {rev} in volume {volume}"),
    };
    let created = new_branch.is_some();
    let request = CheckoutRequest {
        rev,
        new_branch,
        force,
        stop_removable: how.stop_removable,
    };
    let checked_out = with_progress(output, format!("checkout {volume}"), &what, async |p| {
        client.checkout(&volume, &request, p).await
    })
    .await?;
    output.result(&checked_out, None, || {
        let commit = short_id(&checked_out.commit);
        match (&checked_out.branch, created) {
            (Some(branch), true) => println!("switched to a new branch {branch} at {commit}"),
            (Some(branch), false) => println!("switched to branch {branch} at {commit}"),
            (None, _) => println!(
                "HEAD is now at {commit} (detached; `dvol checkout -b NAME` starts a branch here)"
            ),
        }
        print_files_changed(&checked_out);
    })?;
    warn_and_check(&checked_out)
}

/// `dvol reset --hard REF [--stop-removable] [--json|-q]`
pub async fn reset(
    client: &Client,
    volume: Option<&str>,
    hard: bool,
    rev: String,
    how: Stopping,
    output: Output,
) -> Result<()> {
    if !hard {
        bail!("only hard resets exist: `dvol reset --hard {rev}` moves the branch to {rev} and discards the volume's uncommitted changes");
    }
    let volume = current::resolve(volume)?;
    let what = format!("resetting volume {volume} to {rev}");
    let request = ResetRequest {
        rev,
        stop_removable: how.stop_removable,
    };
    let reset = with_progress(output, format!("reset {volume}"), &what, async |p| {
        client.reset(&volume, &request, p).await
    })
    .await?;
    output.result(&reset, None, || {
        let commit = short_id(&reset.commit);
        match &reset.branch {
            Some(branch) => println!("HEAD is now at {commit} (branch {branch})"),
            None => println!("HEAD is now at {commit} (detached)"),
        }
        print_files_changed(&reset);
    })?;
    warn_and_check(&reset)
}

/// How many of the commits left behind the warning names.
const LEFT_BEHIND_SHOWN: usize = 5;

/// The files a checkout or reset wrote, kept and removed.
fn print_files_changed(view: &CheckoutView) {
    let patched = match view.files_patched {
        0 => String::new(),
        n => format!(", {n} of them only where chunks differ"),
    };
    println!(
        " {} file(s) written ({}{patched}), {} unchanged, {} removed",
        view.files_written,
        human_bytes(view.bytes_written),
        view.files_unchanged,
        view.removed,
    );
}

/// On stderr, whatever the output: the commits a checkout or reset left behind and the
/// containers it could not start again (an error).
fn warn_and_check(view: &CheckoutView) -> Result<()> {
    warn_left_behind(view);
    check_resumed(&view.containers_not_resumed, false)
}

/// Warns, as git does, about the commits the move left unreachable from every branch and tag:
/// the reflog keeps them until gc's grace period ends, a branch keeps them for good.
fn warn_left_behind(view: &CheckoutView) {
    let Some(newest) = view.left_behind.first() else {
        return;
    };
    let n = view.left_behind.len();
    let (commits, them) = if n == 1 {
        ("1 commit".to_string(), "it")
    } else {
        (format!("{n} commits"), "them")
    };
    eprintln!(
        "Warning: you are leaving {commits} behind, not connected to any of your branches or tags:"
    );
    for commit in view.left_behind.iter().take(LEFT_BEHIND_SHOWN) {
        eprintln!("  {} {}", short_id(&commit.id), first_line(&commit.message));
    }
    if n > LEFT_BEHIND_SHOWN {
        eprintln!("  ... and {} more", n - LEFT_BEHIND_SHOWN);
    }
    eprintln!(
        "`dvol branch NAME {}` keeps {them}; until then `dvol reflog` lists {them} and gc keeps {them} for its grace period.",
        short_id(&newest.id)
    );
}
