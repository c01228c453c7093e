//! The containers an operation stopped (or paused) and could not start again: a warning for
//! each, and a failing exit status.

use anyhow::{bail, Result};
use dvol_api::NotResumed;

/// Warns about each container in `left` (paused for a commit when `paused`, else stopped) and
/// fails if there is any, so the exit status shows it.
pub fn check_resumed(left: &[NotResumed], paused: bool) -> Result<()> {
    let (done, command) = if paused {
        ("paused", "unpause")
    } else {
        ("stopped", "start")
    };
    for container in left {
        let name = &container.container;
        eprintln!(
            "warning: container {name} was {done} for this operation and could not be {}: {}; run `docker {command} {name}`",
            if paused { "unpaused" } else { "started again" },
            container.error,
        );
    }
    if !left.is_empty() {
        bail!(
            "{} container(s) using the volume are still {done}; see the warnings above",
            left.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvol_api::CheckoutView;

    #[test]
    fn containers_left_stopped_fail_the_command() {
        assert!(check_resumed(&[], false).is_ok());
        let answer = serde_json::json!({"commit": "c", "branch": null, "files_written": 0,
            "files_unchanged": 0, "removed": 0, "bytes_written": 0});
        let view: CheckoutView = serde_json::from_value(answer).unwrap();
        assert!(check_resumed(&view.containers_not_resumed, false).is_ok());
        let left = [NotResumed {
            container: "web".into(),
            error: "boom".into(),
        }];
        let e = check_resumed(&left, false).unwrap_err().to_string();
        assert!(
            e.contains("1 container(s)") && e.contains("still stopped"),
            "{e}"
        );
        let e = check_resumed(&left, true).unwrap_err().to_string();
        assert!(e.contains("still paused"), "{e}");
    }
}
