//! What the loop backend has promised: a sparse image takes room only as its volume writes,
//! so every sparse volume is a promise of the part of its size its image does not occupy
//! yet. Promises are accounted against the free space of the filesystem holding the images,
//! less a [`Reserve`] kept for the daemon's metadata database and history store, so a volume
//! that was accepted can always write its whole size: a write that would fail on the host
//! with `ENOSPC` aborts the volume's journal, and what it wrote is lost.
//!
//! Creating or growing a sparse volume is refused when the promises would exceed the room
//! left for volumes times the profile's overprovision ratio (1.0 by default: never more than
//! the room); a fully allocated image must fit in the room the promises leave. The check and
//! the step that makes the promise visible (sizing the image) run under one lock, so two
//! volumes made at once cannot both take the last room.

use std::fs;
use std::os::unix::fs::MetadataExt;

use super::image::human;
use super::LoopBackend;
use crate::{BackendError, Capacity};

/// Space on the filesystem holding the images that promises to volumes may not use: the
/// larger of `min_bytes` and `percent` percent of the filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reserve {
    /// The reserve's floor, in bytes.
    pub min_bytes: u64,
    /// The reserve as a share of the filesystem's size, in percent.
    pub percent: f64,
}

impl Reserve {
    /// The default: the larger of 256 MiB and 2% of the filesystem.
    pub const DEFAULT: Reserve = Reserve {
        min_bytes: 256 << 20,
        percent: 2.0,
    };

    /// No reserve at all (tests).
    pub const NONE: Reserve = Reserve {
        min_bytes: 0,
        percent: 0.0,
    };

    /// The reserve on a filesystem of `total` bytes.
    pub fn of(&self, total: u64) -> u64 {
        let share = (total as f64 * self.percent / 100.0) as u64;
        self.min_bytes.max(share).min(total)
    }
}

impl Default for Reserve {
    fn default() -> Self {
        Reserve::DEFAULT
    }
}

/// The overprovision ratio used when a volume's profile sets none.
pub const DEFAULT_OVERPROVISION: f64 = 1.0;

/// The room of the images' filesystem, as promises see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Room {
    /// Size, free space, promises and reserve of the filesystem.
    pub(super) capacity: Capacity,
}

impl Room {
    /// Free space that promises may use: free less the reserve.
    fn for_volumes(&self) -> u64 {
        self.capacity
            .free_bytes
            .saturating_sub(self.capacity.reserved_bytes)
    }

    /// The common tail of a refusal: what the numbers are.
    fn numbers(&self, root: &std::path::Path) -> String {
        format!(
            "{} holds {} free, of which {} is kept in reserve for dvol's database and history, \
             and sparse loop volumes there are already promised {} they have not written yet",
            root.display(),
            human(self.capacity.free_bytes),
            human(self.capacity.reserved_bytes),
            human(self.capacity.promised_bytes),
        )
    }

    /// Refuses to promise `requested` more bytes to a sparse volume (`what`) when the promises
    /// would exceed `ratio` times the room for volumes.
    pub(super) fn check_sparse(
        &self,
        root: &std::path::Path,
        requested: u64,
        ratio: f64,
        what: &str,
    ) -> Result<(), BackendError> {
        let limit = (self.for_volumes() as f64 * ratio) as u64;
        let total = self.capacity.promised_bytes.saturating_add(requested);
        if total <= limit {
            return Ok(());
        }
        let ratio_text = if ratio == 1.0 {
            "the room left for volumes".to_string()
        } else {
            format!(
                "{ratio}x the room left for volumes ({} allowed)",
                human(limit)
            )
        };
        Err(BackendError::Refused(format!(
            "not enough disk space for {what}: it may write {} it has not written, but {}; \
             {} promised in all would exceed {ratio_text}, so a write could fail and lose data \
             when the disk fills. Free space on that filesystem (remove volumes, `dvol gc` old \
             history), ask for a smaller size, or raise the profile's max_overprovision if \
             you accept that risk",
            human(requested),
            self.numbers(root),
            human(total),
        )))
    }

    /// Refuses to allocate `bytes` now for `what` when they do not fit in the room for volumes
    /// that the promises leave.
    pub(super) fn check_allocated(
        &self,
        root: &std::path::Path,
        bytes: u64,
        what: &str,
    ) -> Result<(), BackendError> {
        let left = self
            .for_volumes()
            .saturating_sub(self.capacity.promised_bytes);
        if bytes <= left {
            return Ok(());
        }
        Err(BackendError::Refused(format!(
            "not enough disk space for {what}: it needs {} allocated now, but {}, which leaves \
             {} for it; free space on that filesystem (remove volumes, `dvol gc` old history) \
             or ask for a smaller size",
            human(bytes),
            self.numbers(root),
            human(left),
        )))
    }
}

/// What an image promises: the part of its size it does not occupy yet.
fn promise_of(metadata: &fs::Metadata) -> u64 {
    metadata
        .len()
        .saturating_sub(metadata.blocks().saturating_mul(512))
}

impl LoopBackend {
    /// What the images under the root promise in all: every volume's image and every image
    /// being built (read point copies are left out: they live for one commit).
    pub(super) fn promised(&self) -> Result<u64, BackendError> {
        let entries = fs::read_dir(&self.root)
            .map_err(|e| BackendError::io("list volume images", &self.root, e))?;
        let mut promised = 0u64;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(name.ends_with(".img") || name.ends_with(".img.tmp")) {
                continue;
            }
            match entry.metadata() {
                Ok(metadata) if metadata.is_file() => {
                    promised = promised.saturating_add(promise_of(&metadata))
                }
                Ok(_) => {}
                // Removed while listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(BackendError::io("size volume image", &entry.path(), e)),
            }
        }
        Ok(promised)
    }

    /// The images' filesystem: size, free space, the reserve and what is promised.
    pub(super) fn room(&self) -> Result<Room, BackendError> {
        let fs = Capacity::of_filesystem(&self.root)?;
        Ok(Room {
            capacity: Capacity {
                promised_bytes: self.promised()?,
                reserved_bytes: self.reserve.of(fs.total_bytes),
                ..fs
            },
        })
    }

    /// Holds the lock under which room is checked and then taken, so concurrent creates and
    /// grows see each other's promises.
    pub(super) fn hold_space(&self) -> std::sync::MutexGuard<'_, ()> {
        self.space.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses `requested` more bytes for `what` (a sparse image's growth, or an allocation
    /// when `allocated`): see [`Room::check_sparse`] and [`Room::check_allocated`].
    pub(super) fn check_promise(
        &self,
        requested: u64,
        allocated: bool,
        ratio: Option<f64>,
        what: &str,
    ) -> Result<(), BackendError> {
        let room = self.room()?;
        if allocated {
            room.check_allocated(&self.root, requested, what)
        } else {
            room.check_sparse(
                &self.root,
                requested,
                ratio.unwrap_or(DEFAULT_OVERPROVISION),
                what,
            )
        }
    }
}
