//! The checks `dvol doctor` makes, and how they are shown: one line each, or JSON.

use anyhow::Result;
use serde::Serialize;

use crate::render::json::print_json;
use crate::render::quote::escape_text;

/// How a check came out, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// All is well.
    Ok,
    /// Works, but not as it should (a fallback, a daemon on another root, little room).
    Warn,
    /// The daemon cannot do its work until this is fixed.
    Fail,
}

impl Status {
    /// `ok`, `warn` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check: what was looked at, how it came out, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The check's name, e.g. `loop-control` or `lvm:gold`.
    pub check: String,
    /// How it came out.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do (absent when all is well).
    pub fix: Option<String>,
}

impl Check {
    /// A check that passed.
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A check that found something to look at, with what to do.
    pub fn warn(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            status: Status::Warn,
            fix: Some(fix.into()),
            ..Check::ok(check, detail)
        }
    }

    /// A check that failed, with what to do.
    pub fn fail(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            status: Status::Fail,
            ..Check::warn(check, detail, fix)
        }
    }
}

/// The lines of `checks`: `STATUS  CHECK  detail — what to do`, the columns aligned. Text
/// from elsewhere (a daemon's reasons, an error) is escaped.
pub fn lines(checks: &[Check]) -> Vec<String> {
    let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
    checks
        .iter()
        .map(|c| {
            let mut line = format!(
                "{:<4}  {:<width$}  {}",
                c.status.as_str(),
                escape_text(&c.check),
                escape_text(&c.detail)
            );
            if let Some(fix) = &c.fix {
                line.push_str(" — ");
                line.push_str(&escape_text(fix));
            }
            line
        })
        .collect()
}

/// Prints `checks` as lines, or as JSON: `{"checks": [...], "failed": N, "warned": N}`.
pub fn print(checks: &[Check], as_json: bool) -> Result<()> {
    if as_json {
        let count = |status| checks.iter().filter(|c| c.status == status).count();
        return print_json(&serde_json::json!({
            "checks": checks,
            "failed": count(Status::Fail),
            "warned": count(Status::Warn),
        }));
    }
    for line in lines(checks) {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_status_the_check_the_detail_and_what_to_do() {
        let checks = [
            Check::ok("docker", "answers"),
            Check::fail("loop-control", "missing", "modprobe loop"),
        ];
        assert_eq!(
            lines(&checks),
            [
                "ok    docker        answers",
                "fail  loop-control  missing — modprobe loop",
            ]
        );
    }

    #[test]
    fn text_from_elsewhere_cannot_forge_a_line() {
        let line = &lines(&[Check::warn("lvm:x", "a\nok    forged", "b")])[0];
        assert!(!line.contains('\n'), "{line:?}");
    }
}
