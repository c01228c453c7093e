//! Maintenance of the history repository every volume shares: fsck and gc.

use dvol_api::{FsckView, GcView};
use std::time::Duration;

use dvol_snapshot::{GcOptions, Progress};

use super::VolumeService;
use crate::error::ServiceError;

impl VolumeService {
    /// Re-reads and re-hashes every object of every volume; reports what is corrupt or
    /// missing.
    pub fn fsck(&self, progress: &dyn Progress) -> Result<FsckView, ServiceError> {
        let report = self
            .history
            .fsck(progress)
            .map_err(ServiceError::Repository)?;
        Ok(FsckView {
            clean: report.is_clean(),
            objects_checked: report.objects_checked,
            corrupt: report.corrupt.iter().map(ToString::to_string).collect(),
            missing: report.missing.iter().map(ToString::to_string).collect(),
            bad_refs: report.bad_refs.clone(),
            unreachable: report.unreachable,
        })
    }

    /// Deletes objects no branch, tag, index or young reflog entry refers to, except those
    /// written within the grace period; `prune` (`now`, `1h`, `14d`) sets the grace period
    /// (default [`dvol_snapshot::DEFAULT_GC_GRACE`]).
    pub fn gc(&self, progress: &dyn Progress, prune: Option<&str>) -> Result<GcView, ServiceError> {
        let options = match prune {
            Some(text) => GcOptions {
                grace: parse_prune(text)?,
            },
            None => GcOptions::default(),
        };
        let report = self
            .history
            .gc(progress, &options)
            .map_err(ServiceError::Repository)?;
        Ok(GcView {
            objects_kept: report.objects_kept,
            objects_removed: report.objects_removed,
            bytes_removed: report.bytes_removed,
            kept_for_reflog: report.kept_for_reflog,
            kept_recent: report.kept_recent,
            reflog_entries_expired: report.reflog_entries_expired,
            grace: format_grace(options.grace),
        })
    }
}

/// The units a gc grace period is given in, largest first, with their length in seconds.
const GRACE_UNITS: [(char, u64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// Parses gc's `prune`: `now` or a whole number with a unit (`90m`, `1h`, `14d`, `2w`).
fn parse_prune(text: &str) -> Result<Duration, ServiceError> {
    let bad = || ServiceError::BadPrune {
        value: text.to_string(),
    };
    if text == "now" {
        return Ok(Duration::ZERO);
    }
    let unit = text.chars().last().ok_or_else(bad)?;
    let (_, seconds) = GRACE_UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .ok_or_else(bad)?;
    let count: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
    count
        .checked_mul(*seconds)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// A grace period as `parse_prune` reads it: `now`, or in the largest unit that divides it.
fn format_grace(grace: Duration) -> String {
    let secs = grace.as_secs();
    if secs == 0 {
        return "now".to_string();
    }
    let (unit, len) = GRACE_UNITS
        .iter()
        .find(|(_, len)| secs % len == 0)
        .unwrap_or(&('s', 1));
    format!("{}{unit}", secs / len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_is_now_or_a_duration_with_a_unit() {
        let day = 86_400;
        for (text, secs) in [
            ("now", 0),
            ("90m", 5_400),
            ("1h", 3_600),
            ("14d", 14 * day),
            ("2w", 14 * day),
            ("30s", 30),
        ] {
            assert_eq!(
                parse_prune(text).unwrap(),
                Duration::from_secs(secs),
                "{text}"
            );
        }
        for bad in [
            "",
            "h",
            "1",
            "1y",
            "-1d",
            "1.5d",
            "soon",
            "99999999999999999999w",
        ] {
            let e = parse_prune(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_prune", "{bad}");
        }
        assert_eq!(format_grace(Duration::from_secs(14 * day)), "2w");
        assert_eq!(format_grace(Duration::from_secs(3 * day)), "3d");
        assert_eq!(format_grace(Duration::ZERO), "now");
    }
}
