//! Progress reporting. The library never prints: long operations report phases and amounts
//! through a [`Progress`] the caller supplies (the CLI draws bars with it).

/// What the amounts of a phase count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes of file or device data.
    Bytes,
    /// Files, objects or references.
    Items,
}

/// One phase of a long operation: its name and what its amounts count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// A short name, e.g. `read`.
    pub name: &'static str,
    /// What [`Progress::advance`] counts in this phase.
    pub unit: Unit,
}

impl Phase {
    /// A commit walks the volume and compares it with the index.
    pub const SCAN: Phase = Phase::items("scan");
    /// A commit reads the files that changed.
    pub const READ: Phase = Phase::bytes("read");
    /// A checkout goes through the commit's files: bytes of file content, whether a file is
    /// written or already right (its total is the content of every file in the commit).
    pub const CHECKOUT: Phase = Phase::bytes("checkout");
    /// A block-device commit reads the device.
    pub const READ_DEVICE: Phase = Phase::bytes("read device");
    /// A block-device checkout writes the device.
    pub const WRITE_DEVICE: Phase = Phase::bytes("write device");
    /// fsck re-hashes every object.
    pub const VERIFY_OBJECTS: Phase = Phase::items("verify objects");
    /// fsck follows every ref.
    pub const CHECK_REFERENCES: Phase = Phase::items("check references");
    /// gc marks what refs reach.
    pub const MARK: Phase = Phase::items("mark");
    /// gc deletes what they do not.
    pub const SWEEP: Phase = Phase::items("sweep");
    /// A transfer asks the receiver which planned objects it holds.
    pub const NEGOTIATE: Phase = Phase::items("negotiate");
    /// A transfer sends objects (stored bytes).
    pub const SEND: Phase = Phase::bytes("send");
    /// A transfer receives objects (stored bytes).
    pub const RECEIVE: Phase = Phase::bytes("receive");

    const fn items(name: &'static str) -> Phase {
        Phase {
            name,
            unit: Unit::Items,
        }
    }

    const fn bytes(name: &'static str) -> Phase {
        Phase {
            name,
            unit: Unit::Bytes,
        }
    }
}

/// Receives progress of a long operation. Calls come from the operation's threads, so
/// implementations must be `Sync`.
pub trait Progress: Sync {
    /// A phase begins; `total` is the amount of work in the phase's unit, if known.
    fn start(&self, phase: Phase, total: Option<u64>);
    /// `n` more units of the current phase are done.
    fn advance(&self, n: u64);
    /// The current phase is done.
    fn finish(&self);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _phase: Phase, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}
