//! Changed paths as `dvol status` and `dvol diff` print them: a line per path, then a count
//! and a summary by kind.

use std::collections::BTreeMap;

use dvol_api::{ChangeKind, ChangeView};

use super::format::optional_bytes;
use super::quote::quote_name;

/// Prints `none` when there are no `changes`; else a line per change and
/// `N {what}: 1 added, 2 modified` under them.
pub fn print_changes(changes: &[ChangeView], none: &str, what: &str) {
    if changes.is_empty() {
        println!("{none}");
        return;
    }
    for change in changes {
        println!("{}", change_line(change));
    }
    println!("{} {what}: {}", changes.len(), change_summary(changes));
}

/// One changed path, like `A a.txt (5B)`, `D dir/` or `M c (1B -> 2KiB)`; a path with
/// control characters, quotes or backslashes is quoted (`A "x\n M evil" (3B)`).
fn change_line(change: &ChangeView) -> String {
    let dir = change.is_dir;
    let path = format!("{}{}", change.path, if dir { "/" } else { "" });
    let path = quote_name(&path);
    match change.kind {
        ChangeKind::Added if dir => format!("A {path}"),
        ChangeKind::Added => format!("A {path} ({})", optional_bytes(change.new_size)),
        ChangeKind::Removed => format!("D {path}"),
        ChangeKind::Modified if dir => format!("M {path} (mode or owner)"),
        ChangeKind::Modified => format!(
            "M {path} ({} -> {})",
            optional_bytes(change.old_size),
            optional_bytes(change.new_size)
        ),
    }
}

/// `1 added, 2 modified, 1 removed`.
fn change_summary(changes: &[ChangeView]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for change in changes {
        *counts.entry(kind_name(change.kind)).or_default() += 1;
    }
    ["added", "modified", "removed"]
        .iter()
        .filter_map(|kind| counts.get(kind).map(|n| format!("{n} {kind}")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Modified => "modified",
        ChangeKind::Removed => "removed",
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
    fn change_lines() {
        let added = change("a.txt", ChangeKind::Added, false, [None, Some(5)]);
        let removed = change("b", ChangeKind::Removed, true, [None, None]);
        let modified = change("c", ChangeKind::Modified, false, [Some(1), Some(2048)]);
        assert_eq!(change_line(&added), "A a.txt (5B)");
        assert_eq!(change_line(&removed), "D b/");
        assert_eq!(change_line(&modified), "M c (1B -> 2KiB)");
        let forged = change("x\n M evil", ChangeKind::Added, false, [None, Some(3)]);
        assert_eq!(change_line(&forged), r#"A "x\n M evil" (3B)"#);
        let forged_dir = change("d\rD", ChangeKind::Removed, true, [None, None]);
        assert_eq!(change_line(&forged_dir), r#"D "d\rD/""#);
        assert_eq!(
            change_summary(&[added, removed, modified]),
            "1 added, 1 modified, 1 removed"
        );
    }
}
