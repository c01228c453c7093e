//! Kernel loop devices: which ones serve an image (from `/sys/block`), attaching an open image
//! with autoclear, and detaching what a crash left attached but not mounted.
//!
//! The kernel is the only record: nothing here is remembered between calls.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loopdev::{LoopControl, LoopDevice};
use rustix::io::Errno;
use uuid::Uuid;

use super::configure;
use crate::mount_table::MountTable;
use crate::BackendError;

/// The kernel's loop control device; without it there are no loop devices.
pub const LOOP_CONTROL: &str = "/dev/loop-control";

/// Where the kernel lists block devices, loop devices among them.
const SYS_BLOCK: &str = "/sys/block";

/// How often to try another free loop device when a concurrent attacher took the one the
/// kernel offered.
const ATTACH_ATTEMPTS: usize = 32;

/// How long to wait for the kernel to finish detaching a device that something else still
/// held open when it was told to detach.
const DETACH_WAIT: Duration = Duration::from_secs(2);

/// A loop device bound to a file, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopAttachment {
    /// The device, e.g. `/dev/loop3`.
    pub device: PathBuf,
    /// The file the device serves, as the kernel names it (a deleted file ends in
    /// ` (deleted)`).
    pub backing_file: PathBuf,
    /// The device number as `major:minor`, the form the mount table uses.
    majmin: String,
}

/// Lists every bound loop device on the host, from `/sys/block/loop*/loop/backing_file`.
pub fn loop_attachments() -> Result<Vec<LoopAttachment>, BackendError> {
    let sys_block = Path::new(SYS_BLOCK);
    let entries = fs::read_dir(sys_block)
        .map_err(|e| BackendError::io("list block devices", sys_block, e))?;
    let mut attachments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| BackendError::io("list block devices", sys_block, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| n.starts_with("loop")) else {
            continue;
        };
        let dir = entry.path();
        // Both files vanish when the device is detached (or deleted) under our feet: reading
        // them then fails with ENOENT, or ENODEV while the kernel tears the device down.
        let gone = |e: &std::io::Error| {
            e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(Errno::NODEV.raw_os_error())
        };
        let backing = match fs::read_to_string(dir.join("loop/backing_file")) {
            Ok(backing) => backing,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(BackendError::io("read loop device backing file", &dir, e)),
        };
        let majmin = match fs::read_to_string(dir.join("dev")) {
            Ok(majmin) => majmin,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(BackendError::io("read loop device number", &dir, e)),
        };
        attachments.push(LoopAttachment {
            device: Path::new("/dev").join(name),
            backing_file: PathBuf::from(backing.trim_end_matches('\n')),
            majmin: majmin.trim().to_string(),
        });
    }
    attachments.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(attachments)
}

impl LoopAttachment {
    /// Whether the device serves `image` (also after `image` was deleted).
    fn serves(&self, image: &Path) -> bool {
        let backing = self.backing_file.as_os_str().as_encoded_bytes();
        let image = image.as_os_str().as_encoded_bytes();
        backing == image
            || backing
                .strip_prefix(image)
                .is_some_and(|rest| rest == b" (deleted)")
    }
}

/// The loop devices serving `image`.
pub(super) fn attachments_of(image: &Path) -> Result<Vec<LoopAttachment>, BackendError> {
    Ok(loop_attachments()?
        .into_iter()
        .filter(|a| a.serves(image))
        .collect())
}

/// A loop device this process attached and holds open. Attachments are always made with
/// autoclear, so dropping the last handle (ours, or the mount's) detaches the device.
pub(super) struct Attached {
    device: LoopDevice,
    /// The device node, e.g. `/dev/loop3`.
    pub(super) path: PathBuf,
}

impl Attached {
    /// Attaches the open image `file` (at `image`) to a free loop device, with autoclear.
    pub(super) fn new(file: &File, image: &Path) -> Result<Self, BackendError> {
        let control = LoopControl::open()
            .map_err(|e| BackendError::io("open loop control", Path::new(LOOP_CONTROL), e))?;
        let mut last_error = None;
        for _ in 0..ATTACH_ATTEMPTS {
            let device = match control.next_free() {
                Ok(device) => device,
                // The node of a device the kernel just made may not be there yet.
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    last_error = Some(e);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => {
                    return Err(BackendError::io(
                        "find a free loop device",
                        Path::new(LOOP_CONTROL),
                        e,
                    ))
                }
            };
            match attach(&device, file, image) {
                Ok(()) => {}
                // Someone else attached that device between our asking and our attaching.
                Err(e) if e.raw_os_error() == Some(Errno::BUSY.raw_os_error()) => {
                    last_error = Some(e);
                    continue;
                }
                Err(e) => {
                    return Err(BackendError::io(
                        "attach volume image to a loop device",
                        image,
                        e,
                    ))
                }
            }
            return match device.path() {
                Some(path) => Ok(Attached { device, path }),
                None => {
                    let _ = device.detach();
                    Err(BackendError::io(
                        "name the loop device attached to",
                        image,
                        std::io::Error::other("/proc/self/fd has no link for the device"),
                    ))
                }
            };
        }
        Err(BackendError::io(
            "attach volume image to a loop device (every free device was taken first)",
            image,
            last_error.unwrap_or_else(|| std::io::Error::from(ErrorKind::ResourceBusy)),
        ))
    }

    /// Detaches the device now (the kernel finishes when the last other user closes it).
    pub(super) fn detach(self) -> Result<(), BackendError> {
        match self.device.detach() {
            Ok(()) => Ok(()),
            // Already detached.
            Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => Ok(()),
            Err(e) => Err(BackendError::io("detach loop device", &self.path, e)),
        }
    }
}

/// Attaches `file` to `device` with autoclear and, where the image's filesystem allows it,
/// direct I/O: the volume's filesystem already caches its data, and without direct I/O every
/// write would also sit in the host's page cache for the image file, halving write
/// throughput (a host filesystem without `O_DIRECT`, tmpfs, keeps buffered I/O).
///
/// One `LOOP_CONFIGURE` call (Linux 5.8) does it all; a kernel without it gets `LOOP_SET_FD`,
/// `LOOP_SET_STATUS64` and `LOOP_SET_DIRECT_IO`, where the status call alone took about
/// 15 ms here (it freezes the device's queue) against 0.4 ms for the one call.
fn attach(device: &LoopDevice, file: &File, image: &Path) -> std::io::Result<()> {
    use linux_raw_sys::loop_device::{LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO};
    let autoclear = LO_FLAGS_AUTOCLEAR as u32;
    let direct = configure::configure(device, file, autoclear | LO_FLAGS_DIRECT_IO as u32);
    let configured = match direct {
        // Another attacher took the device (EBUSY), or it failed in a way buffered I/O
        // would not change.
        Ok(()) => return Ok(()),
        Err(e @ (Errno::BUSY | Errno::BADF | Errno::PERM | Errno::ACCESS)) => Err(e),
        // No LOOP_CONFIGURE in this kernel.
        Err(Errno::NOTTY) => Err(Errno::NOTTY),
        // Direct I/O refused: the image's filesystem has no O_DIRECT (tmpfs: EINVAL) or a
        // block size the device cannot match (a nested loop: ENOSYS seen here).
        Err(e) => {
            tracing::debug!(image = %image.display(), error = %e, "loop device stays on buffered I/O");
            configure::configure(device, file, autoclear)
        }
    };
    match configured {
        Ok(()) => return Ok(()),
        Err(Errno::NOTTY) => {}
        Err(e) => return Err(e.into()),
    }
    device.with().autoclear(true).attach_fd(file.as_fd())?;
    if let Err(e) = device.set_direct_io(true) {
        tracing::debug!(image = %image.display(), error = %e, "loop device stays on buffered I/O");
    }
    Ok(())
}

/// Detaches the loop device at `device`. A device that is already gone is not an error.
pub(super) fn detach_device(device: &Path) -> Result<(), BackendError> {
    let gone = |e: &std::io::Error| {
        e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(Errno::NXIO.raw_os_error())
    };
    match LoopDevice::open(device).and_then(|d| d.detach()) {
        Ok(()) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(BackendError::io("detach loop device", device, e)),
    }
}

/// What [`release`] found and did.
#[derive(Debug, Default)]
pub(super) struct Released {
    /// How many unmounted devices were detached.
    pub(super) detached: usize,
    /// A device serving the image that is mounted, and where; it was left alone.
    pub(super) mounted: Option<(PathBuf, PathBuf)>,
}

/// Detaches every loop device serving `image` that nothing has mounted (leftovers of a
/// crash), waiting briefly for the kernel to finish. A mounted one is reported, not touched.
pub(super) fn release(image: &Path) -> Result<Released, BackendError> {
    let attachments = attachments_of(image)?;
    if attachments.is_empty() {
        return Ok(Released::default());
    }
    let mounted = MountTable::read()?;
    let mut released = Released::default();
    for attachment in attachments {
        if let Some(point) = mounted.mount_points_of(&attachment.majmin).next() {
            released.mounted = Some((attachment.device, point.to_path_buf()));
            continue;
        }
        tracing::info!(
            device = %attachment.device.display(),
            image = %image.display(),
            "detaching leftover loop device"
        );
        detach_device(&attachment.device)?;
        released.detached += 1;
    }
    if released.detached > 0 {
        wait_detached(image, &mounted)?;
    }
    Ok(released)
}

/// Waits until no loop device serves `image` but those `mounted` has mounted. A device
/// someone else still holds open is detached by the kernel when they close it; that is
/// logged, not an error.
pub(super) fn wait_detached(image: &Path, mounted: &MountTable) -> Result<(), BackendError> {
    let deadline = Instant::now() + DETACH_WAIT;
    loop {
        let left: Vec<_> = attachments_of(image)?
            .into_iter()
            .filter(|a| mounted.mount_points_of(&a.majmin).next().is_none())
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            for attachment in left {
                tracing::warn!(
                    device = %attachment.device.display(),
                    image = %image.display(),
                    "loop device still open elsewhere; the kernel detaches it when closed"
                );
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The loop device serving volume `id`'s `image` that is mounted at `target`.
pub(super) fn device_at(image: &Path, target: &Path, id: Uuid) -> Result<PathBuf, BackendError> {
    let table = MountTable::read()?;
    let mounted = table.device_at(target);
    attachments_of(image)?
        .into_iter()
        .find(|a| Some(a.majmin.as_str()) == mounted)
        .map(|a| a.device)
        .ok_or_else(|| {
            BackendError::Refused(format!(
                "{} is mounted, but not from the image of volume {id}; unmount it first",
                target.display()
            ))
        })
}
