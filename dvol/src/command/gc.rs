//! `dvol gc`: deletes the stored objects no branch, tag or volume refers to any more.

use anyhow::Result;

use crate::client::Client;
use crate::render::format::human_bytes;
use crate::render::json::print_json;
use crate::render::progress::ProgressView;

/// `dvol gc [--json]`
pub async fn run(client: &Client, as_json: bool) -> Result<()> {
    let mut view = ProgressView::new("gc".into(), "collecting unreferenced objects");
    let answer = client.gc(Some(&mut |e| view.show(e))).await;
    let report = view.end(answer)?;
    if as_json {
        return print_json(&report);
    }
    println!(
        "removed {} objects ({}), kept {}",
        report.objects_removed,
        human_bytes(report.bytes_removed),
        report.objects_kept,
    );
    Ok(())
}
