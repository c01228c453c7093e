//! Values as the commands print them: sizes, commit ids, times, messages and refs.

use std::borrow::Cow;

use dvol_api::RefView;

use super::quote::{escape_text, quote_name};

/// Commit ids are shown with this many hex digits (any unique prefix of 4 or more works as a
/// revision).
const SHORT_ID: usize = 12;

/// A size like `1.5GiB`, `2KiB` or `5B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut n = bytes as f64;
    let mut unit = 0;
    while n >= 1024.0 && unit + 1 < UNITS.len() {
        n /= 1024.0;
        unit += 1;
    }
    format!("{n:.1}{}", UNITS[unit]).replace(".0", "")
}

/// A size as [`human_bytes`] shows it, or `-` when it is not known.
pub fn optional_bytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), human_bytes)
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// A commit id cut to its first [`SHORT_ID`] digits.
pub fn short_id(id: &str) -> String {
    id.chars().take(SHORT_ID).collect()
}

/// `2026-01-02T03:04:05.123456789Z` as `2026-01-02 03:04:05 UTC`; other forms as they are.
pub fn readable_time(rfc3339: &str) -> String {
    let Some((date, time)) = rfc3339.split_once('T') else {
        return rfc3339.to_string();
    };
    let Some(clock) = time.strip_suffix('Z') else {
        return rfc3339.to_string();
    };
    let seconds = clock.split('.').next().unwrap_or(clock);
    format!("{date} {seconds} UTC")
}

/// The first line of a commit message, its control characters escaped.
pub fn first_line(message: &str) -> Cow<'_, str> {
    escape_text(message.lines().next().unwrap_or(""))
}

/// Branches or tags, one line each (a name quoted if it needs it): the name padded to the longest, then the short commit
/// id; with `mark_current`, prefixed by `*` for the checked-out branch.
pub fn ref_lines(refs: &[RefView], mark_current: bool) -> Vec<String> {
    let names: Vec<Cow<'_, str>> = refs.iter().map(|r| quote_name(&r.name)).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    refs.iter()
        .zip(&names)
        .map(|(r, name)| {
            let line = format!("{name:<width$}  {}", short_id(&r.commit));
            match (mark_current, r.current) {
                (false, _) => line,
                (true, true) => format!("* {line}"),
                (true, false) => format!("  {line}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_like_git() {
        assert_eq!(
            readable_time("2026-11-22T04:08:06.215950686Z"),
            "2026-11-22 04:08:06 UTC"
        );
        assert_eq!(
            readable_time("2026-11-22T04:08:06Z"),
            "2026-11-22 04:08:06 UTC"
        );
        assert_eq!(readable_time("yesterday"), "yesterday");
    }

    #[test]
    fn first_lines_cannot_forge_output() {
        assert_eq!(
            first_line("ok\rforged\u{1b}[1A\nsecond"),
            r"ok\rforged\033[1A"
        );
        assert_eq!(first_line("plain\nsecond"), "plain");
    }
}
