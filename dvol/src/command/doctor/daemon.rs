//! The checks that need the daemon: whether it answers, and, for each profile it reports
//! whose backend is LVM, whether the volume group and thin pool exist on this host.

use std::time::Duration;

use anyhow::Result;
use dvol_api::ProfileView;
use dvol_backends::lvm::LvmBackend;
use dvol_backends::BackendKind;

use super::report::{Check, Status};
use crate::client::{Client, Host};

/// The longest the daemon may take to answer one call.
const DEADLINE: Duration = Duration::from_secs(10);

/// What the daemon answered: the checks, and whether it answered at all.
pub struct DaemonChecks {
    /// The daemon's check and one per LVM profile.
    pub checks: Vec<Check>,
    /// Whether the daemon answered.
    pub answered: bool,
}

/// The daemon's version and profiles, `Err` if it does not answer within the deadline.
async fn ask(client: &Client) -> Result<(String, Vec<ProfileView>)> {
    let within =
        |what| move |_| anyhow::anyhow!("no answer to {what} within {} s", DEADLINE.as_secs());
    let health = tokio::time::timeout(DEADLINE, client.health())
        .await
        .map_err(within("GET /v1/health"))??;
    let profiles = tokio::time::timeout(DEADLINE, client.profiles())
        .await
        .map_err(within("GET /v1/profiles"))??;
    Ok((health.version, profiles))
}

/// Asks the daemon at `host` through `client` (`Err` when it could not be made, e.g. an
/// unreadable token file); checks the LVM profiles it reports, on this host when the daemon
/// is reached over a unix socket (and so runs here).
pub async fn checks(host: &str, client: Result<Client>) -> DaemonChecks {
    const NAME: &str = "daemon";
    let not_checked = Check::warn(
        "lvm",
        "the LVM profiles are not checked: the daemon, which knows the profiles, does not answer",
        "start the daemon, then run `dvol doctor` again",
    );
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            return DaemonChecks {
                checks: vec![
                    Check::fail(
                        NAME,
                        format!("cannot call the daemon at {host}: {e:#}"),
                        "fix --host, --token-file or --ca (or DVOL_HOST, DVOL_TOKEN_FILE, DVOL_CA)",
                    ),
                    not_checked,
                ],
                answered: false,
            }
        }
    };
    let (version, profiles) = match ask(&client).await {
        Ok(answer) => answer,
        Err(e) => {
            let denied = e
                .root_cause()
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
            let fix = if denied {
                "run doctor as the daemon's user: `sudo dvol doctor`"
            } else {
                "start it with `dvol daemon` (or give --host the socket it serves)"
            };
            return DaemonChecks {
                checks: vec![
                    Check::fail(
                        NAME,
                        format!("not answering on {host} ({})", e.root_cause()),
                        fix,
                    ),
                    not_checked,
                ],
                answered: false,
            };
        }
    };
    let local = matches!(Host::parse(host), Ok(Host::Unix(_)));
    let mut checks = vec![Check::ok(NAME, format!("dvol {version} answers on {host}"))];
    let lvm: Vec<&ProfileView> = profiles
        .iter()
        .filter(|p| p.config.backend == BackendKind::Lvm)
        .collect();
    if lvm.is_empty() {
        checks.push(Check::ok("lvm", "no profile uses LVM"));
    }
    for profile in lvm {
        checks.push(if local {
            lvm_here(profile)
        } else {
            lvm_as_reported(profile, host)
        });
    }
    DaemonChecks {
        checks,
        answered: true,
    }
}

/// The name of the check of `profile`: `lvm:NAME`.
fn check_name(profile: &ProfileView) -> String {
    format!("lvm:{}", profile.name)
}

/// `profile`'s volume group and thin pool, probed here as the daemon probes them at start.
fn lvm_here(profile: &ProfileView) -> Check {
    let vg = profile.config.volume_group.as_deref().unwrap_or_default();
    let pool = profile.config.thin_pool.as_deref().unwrap_or_default();
    let served_by_lvm = profile.backend == Some(BackendKind::Lvm);
    let probed = LvmBackend::probe(vg, pool, 1.0).map(drop).map_err(|e| {
        // The backend's message says what is missing and, after "; ", what to do.
        let message = e.to_string();
        match message.split_once("; ") {
            Some((what, _)) if what.starts_with("volume group") && what.contains("not found") => (
                what.to_string(),
                format!(
                    "create it (`vgcreate {vg} DEVICE`, then `lvcreate --type thin-pool -L SIZE \
                     -n {pool} {vg}`) or point the profile at a volume group that exists"
                ),
            ),
            Some((what, fix)) => (what.to_string(), fix.to_string()),
            None => (
                message,
                "look at the LVM setup with `vgs` and `lvs`".to_string(),
            ),
        }
    });
    lvm_verdict(
        &profile.name,
        vg,
        pool,
        served_by_lvm,
        profile.available,
        probed,
    )
}

/// The verdict on profile `name` (of `vg`/`pool`), from the probe here (`Err(what, fix)`) and
/// what the daemon serves it with.
fn lvm_verdict(
    name: &str,
    vg: &str,
    pool: &str,
    served_by_lvm: bool,
    available: bool,
    probed: Result<(), (String, String)>,
) -> Check {
    let check = format!("lvm:{name}");
    match probed {
        Ok(()) if served_by_lvm => Check::ok(
            check,
            format!("volume group {vg} and thin pool {pool} exist"),
        ),
        Ok(()) => Check::warn(
            check,
            format!(
                "volume group {vg} and thin pool {pool} exist now, but the daemon did not find \
                 them when it started, so it does not serve profile {name} with them"
            ),
            "restart the daemon: it looks for the volume groups at start",
        ),
        Err((what, fix)) if available => Check::warn(
            check,
            format!("{what}; profile {name} falls back to fully allocated loop images"),
            format!("{fix}, then restart the daemon to serve {name} with thin volumes"),
        ),
        Err((what, fix)) => Check::fail(
            check,
            format!("{what}, so volumes of profile {name} cannot be made"),
            format!("{fix}, then restart the daemon"),
        ),
    }
}

/// `profile` as a daemon on another host reports it (nothing of it can be probed here).
fn lvm_as_reported(profile: &ProfileView, host: &str) -> Check {
    let check = check_name(profile);
    let status = match (profile.backend, profile.available) {
        (Some(BackendKind::Lvm), _) => Status::Ok,
        (_, true) => Status::Warn,
        (_, false) => Status::Fail,
    };
    let detail = format!("the daemon at {host} says: {}", profile.reason);
    let fix = "run `dvol doctor` on the daemon's host to check its volume groups";
    match status {
        Status::Ok => Check::ok(check, detail),
        Status::Warn => Check::warn(check, detail, fix),
        Status::Fail => Check::fail(check, detail, fix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing() -> Result<(), (String, String)> {
        Err((
            "volume group vg0 not found (vgs lists: none)".into(),
            "create it or change the profile".into(),
        ))
    }

    #[test]
    fn a_missing_volume_group_fails_unless_the_profile_falls_back() {
        let failed = lvm_verdict("fast", "vg0", "pool", false, false, missing());
        assert_eq!(failed.status, Status::Fail);
        assert!(
            failed.detail.contains("volume group vg0 not found"),
            "{failed:?}"
        );
        assert!(
            failed.fix.as_deref().unwrap().starts_with("create it"),
            "{failed:?}"
        );
        let fallback = lvm_verdict("gold", "vg0", "pool", false, true, missing());
        assert_eq!(fallback.status, Status::Warn);
        assert!(fallback.detail.contains("loop"), "{fallback:?}");
    }

    #[test]
    fn a_pool_the_daemon_missed_at_start_asks_for_a_restart() {
        let ok = lvm_verdict("gold", "vg0", "pool", true, true, Ok(()));
        assert_eq!(ok.status, Status::Ok);
        let stale = lvm_verdict("gold", "vg0", "pool", false, true, Ok(()));
        assert_eq!(stale.status, Status::Warn);
        assert!(
            stale.fix.as_deref().unwrap().contains("restart"),
            "{stale:?}"
        );
    }
}
