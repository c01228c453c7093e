//! `dvol doctor`: checks this host for what the daemon needs, one line each
//! (`ok|warn|fail  CHECK  detail — what to do`), and fails when a check fails.

mod daemon;
mod host;
mod report;
mod socket;

use anyhow::{bail, Result};

use crate::cli::DoctorArgs;
use crate::client::Client;
use report::{Check, Status};

/// `dvol doctor [--root DIR] [--plugin-socket PATH] [--json]`: the checks of this host, and
/// of the daemon at `host` (through `client`, `Err` when it could not be made).
pub async fn run(host: &str, client: Result<Client>, args: DoctorArgs) -> Result<()> {
    let daemon = daemon::checks(host, client).await;
    let mut checks: Vec<Check> = vec![host::privileges(), host::loop_control()];
    checks.extend(host::mkfs());
    checks.extend(daemon.checks);
    checks.extend([
        host::docker(),
        host::plugin_dir(),
        host::plugin_socket(&args.plugin_socket),
        host::root_lock(&args.root, daemon.answered),
        host::root_space(&args.root),
    ]);
    report::print(&checks, args.json)?;
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.check.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} check(s) failed: {}; fix what each says and run `dvol doctor` again",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
