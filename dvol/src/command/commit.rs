//! `dvol commit -m MSG`: records the volume's files as a commit on the checked-out branch.

use anyhow::Result;
use dvol_api::{CommitRequest, CommitResult};

use super::resumed::check_resumed;
use crate::author::default_author;
use crate::client::Client;
use crate::current;
use crate::render::format::{first_line, human_bytes, short_id};
use crate::render::output::Output;
use crate::render::progress::with_progress;

/// What `dvol commit` was asked.
#[derive(Debug)]
pub struct Commit {
    /// The commit message.
    pub message: String,
    /// Who commits, if not `$USER@hostname`.
    pub author: Option<String>,
    /// Pause the containers while committing.
    pub pause: bool,
}

/// `dvol commit -m MSG [--pause] [--author A] [--json|-q]`: under `-q` only the new commit's
/// id is printed.
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    Commit {
        message,
        author,
        pause,
    }: Commit,
    output: Output,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let request = CommitRequest {
        message,
        author: Some(author.unwrap_or_else(default_author)),
        pause,
    };
    let what = format!("committing volume {volume}");
    let result = with_progress(output, format!("commit {volume}"), &what, async |p| {
        client.commit(&volume, &request, p).await
    })
    .await?;
    output.result(&result, Some(&result.commit.id), || {
        print_commit(&volume, &result)
    })?;
    check_resumed(&result.containers_not_resumed, pause)
}

/// The text of a commit's result.
fn print_commit(volume: &str, result: &CommitResult) {
    let branch = result.branch.as_deref().unwrap_or("detached HEAD");
    let id = short_id(&result.commit.id);
    if result.changed {
        println!("[{branch} {id}] {}", first_line(&result.commit.message));
    } else {
        println!("nothing to commit: volume {volume} is as in {id} on {branch}; nothing recorded");
    }
    let by_ranges = match result.files_read_by_ranges {
        0 => String::new(),
        n => format!(", {n} of them by changed ranges"),
    };
    println!(
        " {} of {} files read ({}{by_ranges}), {} new object(s) stored ({})",
        result.files_reread,
        result.files_scanned,
        human_bytes(result.bytes_read),
        result.new_objects,
        human_bytes(result.new_bytes_stored),
    );
}
