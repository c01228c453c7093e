//! `dvol gc`: deletes the stored objects no branch, tag or volume refers to any more.

use anyhow::Result;
use dvol_api::GcRequest;

use crate::client::Client;
use crate::render::format::human_bytes;
use crate::render::json::print_json;
use crate::render::progress::with_progress;

/// `dvol gc [--prune WHEN] [--json]`
pub async fn run(client: &Client, prune: Option<String>, as_json: bool) -> Result<()> {
    let request = GcRequest { prune };
    let report = with_progress("gc".into(), "collecting unreferenced objects", async |p| {
        client.gc(&request, p).await
    })
    .await?;
    if as_json {
        return print_json(&report);
    }
    println!(
        "removed {} objects ({}), kept {}",
        report.objects_removed,
        human_bytes(report.bytes_removed),
        report.objects_kept,
    );
    let grace_kept = report.kept_for_reflog + report.kept_recent;
    if grace_kept > 0 {
        println!(
            " {grace_kept} of them only for the grace period ({}: reflog entries and recent objects); `dvol gc --prune=now` removes them",
            report.grace
        );
    }
    if report.reflog_entries_expired > 0 {
        println!(
            " expired {} reflog entries older than {}",
            report.reflog_entries_expired, report.grace
        );
    }
    Ok(())
}
