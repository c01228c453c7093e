//! Progress reporting. The library never prints: long operations report phases and amounts
//! through a [`Progress`] the caller supplies (the CLI draws bars with it).

/// Receives progress of a long operation. Calls come from the operation's threads, so
/// implementations must be `Sync`.
pub trait Progress: Sync {
    /// A phase begins; `total` is the amount of work (items or bytes, per phase) if known.
    fn start(&self, phase: &str, total: Option<u64>);
    /// `n` more units of the current phase are done.
    fn advance(&self, n: u64);
    /// The current phase is done.
    fn finish(&self);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _phase: &str, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}
