//! Changed paths with their bytes, as `dvol diff --stat` and `dvol show` print them: a line
//! per path (kind, path, size change), then `N paths changed, X added, Y removed`.

use dvol_api::{ChangeKind, ChangeView};

use super::format::human_bytes;
use super::quote::quote_name;

/// Prints `none` when there are no `changes`; else [`stat_lines`].
pub fn print_stat(changes: &[ChangeView], none: &str) {
    if changes.is_empty() {
        println!("{none}");
        return;
    }
    for line in stat_lines(changes) {
        println!("{line}");
    }
}

/// A line per change, the paths padded to the longest: `A a.txt  +5B`, `D b  -3B`,
/// `M c  1B -> 2KiB (+2KiB)`, `A dir/`; then the summary line ([`stat_summary`]).
pub fn stat_lines(changes: &[ChangeView]) -> Vec<String> {
    let paths: Vec<String> = changes
        .iter()
        .map(|c| quote_name(&format!("{}{}", c.path, if c.is_dir { "/" } else { "" })).into_owned())
        .collect();
    let width = paths.iter().map(|p| p.chars().count()).max().unwrap_or(0);
    let mut lines: Vec<String> = changes
        .iter()
        .zip(&paths)
        .map(|(change, path)| {
            let kind = match change.kind {
                ChangeKind::Added => 'A',
                ChangeKind::Removed => 'D',
                ChangeKind::Modified => 'M',
            };
            match size_change(change) {
                Some(size) => format!("{kind} {path:<width$}  {size}"),
                None => format!("{kind} {path}"),
            }
        })
        .collect();
    lines.push(stat_summary(changes));
    lines
}

/// `3 paths changed, 2KiB added, 5B removed`: bytes added are the sizes of the added files and
/// what modified files grew by; bytes removed, those of removed files and what modified ones
/// shrank by. Directories count as paths, with no bytes.
pub fn stat_summary(changes: &[ChangeView]) -> String {
    let (added, removed) = changes.iter().fold((0u64, 0u64), |(a, r), c| {
        let (old, new) = (c.old_size.unwrap_or(0), c.new_size.unwrap_or(0));
        (a + new.saturating_sub(old), r + old.saturating_sub(new))
    });
    let n = changes.len();
    format!(
        "{n} path{} changed, {} added, {} removed",
        if n == 1 { "" } else { "s" },
        human_bytes(added),
        human_bytes(removed)
    )
}

/// `+5B` for an added file, `-3B` for a removed one, `1B -> 2KiB (+2KiB)` for a modified one
/// (`(=)` when its size stayed); none for a directory.
fn size_change(change: &ChangeView) -> Option<String> {
    match (change.kind, change.old_size, change.new_size) {
        (ChangeKind::Added, _, Some(new)) => Some(format!("+{}", human_bytes(new))),
        (ChangeKind::Removed, Some(old), _) => Some(format!("-{}", human_bytes(old))),
        (ChangeKind::Modified, Some(old), Some(new)) => {
            let delta = match new.cmp(&old) {
                std::cmp::Ordering::Greater => format!("+{}", human_bytes(new - old)),
                std::cmp::Ordering::Less => format!("-{}", human_bytes(old - new)),
                std::cmp::Ordering::Equal => "=".into(),
            };
            Some(format!(
                "{} -> {} ({delta})",
                human_bytes(old),
                human_bytes(new)
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, kind: ChangeKind, is_dir: bool, sizes: [Option<u64>; 2]) -> ChangeView {
        ChangeView {
            path: path.into(),
            kind,
            is_dir,
            old_size: sizes[0],
            new_size: sizes[1],
        }
    }

    #[test]
    fn stat_lines_show_bytes_per_path_and_in_sum() {
        let changes = [
            change("a.txt", ChangeKind::Added, false, [None, Some(5)]),
            change("dir", ChangeKind::Added, true, [None, None]),
            change(
                "long/name",
                ChangeKind::Modified,
                false,
                [Some(1024), Some(3072)],
            ),
            change("b", ChangeKind::Removed, false, [Some(3), None]),
            change("c", ChangeKind::Modified, false, [Some(10), Some(4)]),
            change("same", ChangeKind::Modified, false, [Some(7), Some(7)]),
        ];
        assert_eq!(
            stat_lines(&changes),
            [
                "A a.txt      +5B",
                "A dir/",
                "M long/name  1KiB -> 3KiB (+2KiB)",
                "D b          -3B",
                "M c          10B -> 4B (-6B)",
                "M same       7B -> 7B (=)",
                "6 paths changed, 2KiB added, 9B removed",
            ]
        );
        assert_eq!(
            stat_summary(&changes[..1]),
            "1 path changed, 5B added, 0B removed"
        );
    }

    #[test]
    fn stat_paths_cannot_forge_lines() {
        let forged = [change(
            "x\nA evil",
            ChangeKind::Added,
            false,
            [None, Some(1)],
        )];
        assert_eq!(stat_lines(&forged)[0], r#"A "x\nA evil"  +1B"#);
    }
}
