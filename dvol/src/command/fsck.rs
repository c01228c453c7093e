//! `dvol fsck`: verifies every stored object; fails unless all is well.

use anyhow::{bail, Result};

use crate::client::Client;
use crate::render::json::print_json;
use crate::render::progress::with_progress;

/// `dvol fsck [--json]`: fails (non-zero exit) unless the store is clean.
pub async fn run(client: &Client, as_json: bool) -> Result<()> {
    let what = "checking every stored object";
    let report = with_progress("fsck".into(), what, async |p| client.fsck(p).await).await?;
    if as_json {
        print_json(&report)?;
    } else {
        for id in &report.corrupt {
            println!("corrupt object {id}");
        }
        for id in &report.missing {
            println!("missing object {id}");
        }
        for r in &report.bad_refs {
            println!("bad ref {r}");
        }
        println!(
            "{}: {} objects checked, {} unreachable (`dvol gc` removes those)",
            if report.clean { "clean" } else { "NOT CLEAN" },
            report.objects_checked,
            report.unreachable,
        );
    }
    if !report.clean {
        bail!(
            "the object store is not clean: {} corrupt, {} missing, {} bad ref(s)",
            report.corrupt.len(),
            report.missing.len(),
            report.bad_refs.len()
        );
    }
    Ok(())
}
