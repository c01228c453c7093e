//! `dvol gc`: deletes the stored objects no branch, tag or volume refers to any more.

use anyhow::Result;
use dvol_api::{GcRequest, GcView};

use crate::client::Client;
use crate::render::format::human_bytes;
use crate::render::output::Output;
use crate::render::progress::with_progress;

/// `dvol gc [--prune WHEN] [--json|-q]`
pub async fn run(client: &Client, prune: Option<String>, output: Output) -> Result<()> {
    let request = GcRequest { prune };
    let what = "collecting unreferenced objects";
    let report = with_progress(output, "gc".into(), what, async |p| {
        client.gc(&request, p).await
    })
    .await?;
    output.result(&report, None, || print_gc(&report))
}

/// The text of gc's report.
fn print_gc(report: &GcView) {
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
}
