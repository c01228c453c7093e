//! `dvol fsck`: verifies every stored object; fails unless all is well.

use anyhow::{bail, Result};

use crate::client::Client;
use crate::render::output::Output;
use crate::render::progress::with_progress;

/// `dvol fsck [--json|-q]`: fails (non-zero exit) unless the store is clean.
pub async fn run(client: &Client, output: Output) -> Result<()> {
    let what = "checking every stored object";
    let report = with_progress(output, "fsck".into(), what, async |p| client.fsck(p).await).await?;
    output.result(&report, None, || {
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
    })?;
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
