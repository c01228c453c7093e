//! `dvol commit -m MSG`: records the volume's files as a commit on the checked-out branch.

use anyhow::Result;
use dvol_api::CommitRequest;

use super::resumed::check_resumed;
use crate::author::default_author;
use crate::client::Client;
use crate::current;
use crate::render::format::{first_line, human_bytes, short_id};
use crate::render::progress::with_progress;

/// `dvol commit -m MSG [--pause] [--author A]`
pub async fn run(
    client: &Client,
    volume: Option<&str>,
    message: String,
    author: Option<String>,
    pause: bool,
) -> Result<()> {
    let volume = current::resolve(volume)?;
    let request = CommitRequest {
        message,
        author: Some(author.unwrap_or_else(default_author)),
        pause,
    };
    let what = format!("committing volume {volume}");
    let result = with_progress(format!("commit {volume}"), &what, async |p| {
        client.commit(&volume, &request, p).await
    })
    .await?;
    let branch = result.branch.as_deref().unwrap_or("detached HEAD");
    let id = short_id(&result.commit.id);
    if result.changed {
        println!("[{branch} {id}] {}", first_line(&result.commit.message));
    } else {
        println!("nothing to commit: volume {volume} is as in {id} on {branch}; nothing recorded");
    }
    println!(
        " {} of {} files read ({}), {} new object(s) stored ({})",
        result.files_reread,
        result.files_scanned,
        human_bytes(result.bytes_read),
        result.new_objects,
        human_bytes(result.new_bytes_stored),
    );
    check_resumed(&result.containers_not_resumed, pause)
}
