//! The reflog: every move of a volume's HEAD and of each of its branches, oldest first, in
//! `refs/<volume uuid>/reflog` beside the refs (so it goes with the volume's history).
//!
//! One line per move: `OLD NEW TIME REF<TAB>MESSAGE`, where `OLD` and `NEW` are commit ids in
//! hex or `-` (none: a branch created, or deleted), `TIME` is RFC 3339 (UTC), `REF` is `HEAD`
//! or a branch name, and the message names the operation (`commit: MSG`,
//! `checkout: moving from master to v1`, `reset: moving to HEAD^`, `branch: created from HEAD`).
//!
//! Crash safety: an entry is appended with one write and fsynced (the directory too when the
//! file is new). A crash can leave a torn last line; readers skip any line that does not
//! parse, and the next append first cuts the file back to its last complete line. Expiry
//! rewrites the file to a temporary name, fsyncs and renames it.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::fsutil::{atomic_write, fsync_dir};
use crate::id::CommitId;

/// The `REF` of an entry that records a move of HEAD itself (a checkout, or a commit or reset
/// on a detached HEAD).
pub const HEAD: &str = "HEAD";

/// One move of a ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReflogEntry {
    /// When it moved.
    pub time: DateTime<Utc>,
    /// [`HEAD`] or the branch that moved.
    pub reference: String,
    /// Where it pointed before (`None`: it did not exist, or HEAD had no commit yet).
    pub old: Option<CommitId>,
    /// Where it points after (`None`: the branch was deleted).
    pub new: Option<CommitId>,
    /// The operation, e.g. `commit: fix schema`.
    pub message: String,
}

impl ReflogEntry {
    /// An entry stamped now. Tabs and line breaks in `message` become spaces.
    pub fn now(
        reference: &str,
        old: Option<CommitId>,
        new: Option<CommitId>,
        message: &str,
    ) -> ReflogEntry {
        ReflogEntry {
            time: Utc::now(),
            reference: reference.to_string(),
            old,
            new,
            message: message.replace(['\n', '\r', '\t'], " "),
        }
    }

    /// The entry as one line of the reflog file, newline included.
    fn encode(&self) -> String {
        let id = |c: &Option<CommitId>| c.map_or_else(|| "-".to_string(), |c| c.to_string());
        format!(
            "{} {} {} {}\t{}\n",
            id(&self.old),
            id(&self.new),
            self.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
            self.reference,
            self.message
        )
    }

    /// Parses one line (without its newline); `None` if it is not a whole entry.
    fn decode(line: &str) -> Option<ReflogEntry> {
        let (head, message) = line.split_once('\t')?;
        let mut fields = head.split(' ');
        let id = |f: &str| -> Option<Option<CommitId>> {
            if f == "-" {
                Some(None)
            } else {
                f.parse().ok().map(Some)
            }
        };
        let old = id(fields.next()?)?;
        let new = id(fields.next()?)?;
        let time = DateTime::parse_from_rfc3339(fields.next()?)
            .ok()?
            .with_timezone(&Utc);
        let reference = fields.next()?.to_string();
        if reference.is_empty() || fields.next().is_some() {
            return None;
        }
        Some(ReflogEntry {
            time,
            reference,
            old,
            new,
            message: message.to_string(),
        })
    }

    /// The commits the entry names.
    pub fn commits(&self) -> impl Iterator<Item = CommitId> {
        self.old.into_iter().chain(self.new)
    }
}

/// Reads the reflog at `path`, oldest first; a missing file is an empty reflog. Lines that
/// do not parse (a torn last line after a crash) are skipped.
pub fn read(path: &Path) -> io::Result<Vec<ReflogEntry>> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(data
        .split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .filter_map(ReflogEntry::decode)
        .collect())
}

/// Appends `entry` to the reflog at `path` durably, creating the file if needed. A torn last
/// line (no newline) is cut off first, so it cannot swallow the new entry.
pub fn append(path: &Path, entry: &ReflogEntry) -> io::Result<()> {
    let existed = path.exists();
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)?;
    let len = f.metadata()?.len();
    if len > 0 {
        let mut last = [0u8];
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            let mut data = Vec::new();
            f.seek(SeekFrom::Start(0))?;
            f.read_to_end(&mut data)?;
            let keep = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            f.set_len(keep as u64)?;
        }
    }
    f.write_all(entry.encode().as_bytes())?;
    f.sync_all()?;
    if !existed {
        if let Some(dir) = path.parent() {
            fsync_dir(dir)?;
        }
    }
    Ok(())
}

/// Drops the entries made at or before `cutoff` from the reflog at `path` (one atomic rewrite; the
/// file is left alone when nothing expires). Returns how many were dropped.
pub fn expire(path: &Path, cutoff: DateTime<Utc>) -> io::Result<u64> {
    let entries = read(path)?;
    let kept: Vec<&ReflogEntry> = entries.iter().filter(|e| e.time > cutoff).collect();
    let dropped = (entries.len() - kept.len()) as u64;
    if dropped > 0 {
        let text: String = kept.iter().map(|e| e.encode()).collect();
        atomic_write(path, text.as_bytes())?;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ObjectId;

    fn c(s: &str) -> CommitId {
        CommitId(ObjectId::hash(s.as_bytes()))
    }

    #[test]
    fn entries_round_trip_one_line_each() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("reflog");
        assert_eq!(read(&p).unwrap(), vec![]);
        let a = ReflogEntry::now(
            "master",
            None,
            Some(c("a")),
            "commit (initial): first\nline",
        );
        let b = ReflogEntry::now(
            HEAD,
            Some(c("a")),
            Some(c("b")),
            "checkout: moving from master to v1",
        );
        let gone = ReflogEntry::now("exp", Some(c("b")), None, "branch: deleted");
        for e in [&a, &b, &gone] {
            append(&p, e).unwrap();
        }
        assert_eq!(a.message, "commit (initial): first line");
        assert_eq!(read(&p).unwrap(), vec![a.clone(), b, gone]);
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3);
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with(&format!("- {} ", c("a")))
                && first.ends_with(" master\tcommit (initial): first line"),
            "{first}"
        );
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_cut_before_the_next_append() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("reflog");
        let a = ReflogEntry::now("master", None, Some(c("a")), "commit: a");
        append(&p, &a).unwrap();
        let whole = ReflogEntry::now("master", Some(c("a")), Some(c("b")), "commit: b").encode();
        // A crash in the middle of the second append.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&whole.as_bytes()[..whole.len() / 2]).unwrap();
        drop(f);
        assert_eq!(
            read(&p).unwrap(),
            vec![a.clone()],
            "the torn line is ignored"
        );
        // A line of garbage (e.g. zeros a crash left) in the middle is skipped too.
        let next = ReflogEntry::now("master", Some(c("a")), Some(c("c")), "commit: c");
        append(&p, &next).unwrap();
        assert_eq!(read(&p).unwrap(), vec![a.clone(), next.clone()]);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"\0\0\0\0\n").unwrap();
        drop(f);
        let last = ReflogEntry::now(HEAD, Some(c("c")), Some(c("a")), "reset: moving to HEAD^");
        append(&p, &last).unwrap();
        assert_eq!(read(&p).unwrap(), vec![a, next, last]);
    }

    #[test]
    fn expiry_drops_only_old_entries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("reflog");
        let mut old = ReflogEntry::now("master", None, Some(c("a")), "commit: old");
        old.time -= chrono::Duration::days(30);
        let young = ReflogEntry::now("master", Some(c("a")), Some(c("b")), "commit: young");
        append(&p, &old).unwrap();
        append(&p, &young).unwrap();
        let cutoff = Utc::now() - chrono::Duration::days(14);
        assert_eq!(expire(&p, cutoff).unwrap(), 1);
        assert_eq!(read(&p).unwrap(), vec![young]);
        assert_eq!(expire(&p, cutoff).unwrap(), 0);
        assert_eq!(expire(&p, Utc::now()).unwrap(), 1);
        assert_eq!(read(&p).unwrap(), vec![]);
    }
}
