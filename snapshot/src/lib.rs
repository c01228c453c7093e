//! Volume history for dvol: a content-addressed object store with git-like commits,
//! branches, tags, checkout, diff, fsck and gc.
//!
//! One [`Repository`] per host (the daemon keeps it at `<state root>/history`) holds the
//! history of every volume, keyed by [`VolumeKey`] (the volume's UUID):
//!
//! ```text
//! <dir>/FORMAT                       "dvol-history 1"
//! <dir>/lock                         flock: shared by writers, exclusive for gc
//! <dir>/objects/ab/cdef…             objects, named by the blake3 of their uncompressed content
//! <dir>/refs/<volume>/HEAD           "ref: <branch>" or a commit id (detached)
//! <dir>/refs/<volume>/heads/<branch> commit id
//! <dir>/refs/<volume>/tags/<tag>     commit id
//! <dir>/refs/<volume>/reflog         every move of HEAD and the branches (see [`reflog`])
//! <dir>/index/<volume>               path -> (lstat fields, object id) cache
//! <dir>/locks/<volume>               flock serialising writers of one volume
//! <dir>/trash/                       deleted volumes' refs on their way out
//! <dir>/incoming/<session>           a receive session in progress (see [`receive`])
//! ```
//!
//! Objects: file data is split by content-defined chunking into chunks (zstd-compressed on
//! disk, named by the hash of the uncompressed bytes, so equal data is stored once across
//! commits and volumes); a file of several chunks has a chunk list ([`object::FileObject`]);
//! directories are [`object::Tree`]s (sorted entries with kind, mode, owner, mtime, size and
//! object id; symlink targets are stored, never followed; fifos, sockets and device nodes are
//! recorded with their device number, never opened; a second name of a file is a hard link to
//! its first name, the content stored once); a [`object::Commit`] names a root
//! tree (or, for block volumes, a [`object::BlockMap`]), its parents, message, author and
//! RFC 3339 time. Every encoding is canonical, so equal content gives equal ids on any host,
//! and a transfer needs to send only the objects the receiver lacks
//! ([`Repository::missing_objects`], [`Repository::read_raw_object`],
//! [`Repository::write_raw_object`]).
//!
//! Crash safety: every file is written to a temporary name in its directory, fsynced and
//! renamed, and the directory fsynced. A commit writes all objects durably before moving the
//! ref (one rename), then saves the index. A crash leaves the old or the new state, plus at
//! worst unreachable objects and temporary files that [`Repository::gc`] removes. Each ref
//! move is then appended to the volume's reflog and fsynced; a crash can tear only its last
//! line, which readers skip.
//!
//! Nothing committed is lost silently: a checkout or reset names the commits it leaves
//! unreachable from every branch and tag ([`Repository::left_behind`]), the reflog keeps
//! them, and gc deletes them only once their reflog entries are older than its grace period
//! ([`GcOptions`], two weeks by default).
//!
//! Cost: a commit `lstat`s every path but reads only files whose stat changed since the last
//! commit or checkout (the per-volume index), and of those, where the storage can tell which
//! byte ranges changed ([`ChangedRanges`]), only those ranges; a checkout writes only entries
//! that differ, and a file with one name that the index vouches for is written in place: of
//! a large one only the chunks that differ ([`CheckoutStats::files_patched`]). Such a file
//! is torn if a crash cuts the write, but its change time then no longer matches the index,
//! so the checkout done again (the daemon's journal redoes it at start) writes it whole. A
//! checkout from a verified base ([`Repository::checkout_from`]) looks only at the names
//! whose entries differ.
//!
//! Typical daemon use:
//!
//! ```no_run
//! # use dvol_snapshot::*;
//! # fn main() -> Result<(), Error> {
//! let repo = Repository::open(std::path::Path::new("/var/lib/dvol/history"))?;
//! let vol = VolumeKey(uuid::Uuid::new_v4());
//! let dir = std::path::Path::new("/var/lib/dvol/mounts/x");
//! let c = repo.commit(&vol, dir, CommitInfo::now("first", "me@host"), &NoProgress)?;
//! repo.create_branch(&vol, "experiment", c.id, "HEAD")?;
//! // dvol reset --hard HEAD^
//! let target = repo.resolve(&vol, "HEAD^");
//! # let _ = target;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod block;
pub mod changes;
pub mod checkout;
pub mod chunker;
pub mod codec;
pub mod diff;
mod dirfd;
pub mod fsutil;
pub mod id;
pub mod index;
pub mod maint;
pub mod object;
mod parallel;
pub mod progress;
pub mod receive;
pub mod reflog;
pub mod refs;
pub mod repo;
pub mod send;
pub mod snapshot;
mod sparse;
pub mod store;

#[cfg(test)]
mod tests;

pub use block::{BlockCommitted, BlockStats};
pub use changes::ChangedRanges;
pub use checkout::CheckoutStats;
pub use diff::{Change, ChangeKind};
pub use id::{CommitId, IdError, ObjectId, VolumeKey};
pub use maint::{FsckReport, GcOptions, GcReport, Reachable, DEFAULT_GC_GRACE};
pub use object::{Commit, CommitInfo, Content, DirMeta, EntryKind, SpecialNode, Tree, TreeEntry};
pub use progress::{NoProgress, Phase, Progress, Unit};
pub use receive::{ReceiveError, ReceiveStats, Received, Receiver};
pub use reflog::ReflogEntry;
pub use repo::{Branch, Error, Head, Pin, Repository, Tag};
pub use send::{PlannedObject, SendPlan};
pub use snapshot::{CommitStats, Committed, SkipReason, Skipped};
