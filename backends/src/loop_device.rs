//! The loop backend: an image file per volume, attached to a loop device, formatted ext4 or
//! xfs, and mounted at the volume's mountpoint.
//!
//! The image (`<root>/<uuid>.img`) enforces the volume's size: a full volume fails writes with
//! `ENOSPC` instead of filling the host. Images are sparse unless the spec asks for
//! preallocation, in which case every block is reserved at create time.
//!
//! Loop devices are a shared, leakable kernel resource, so the backend never keeps one
//! attached longer than something uses it:
//! - every attachment sets `LO_FLAGS_AUTOCLEAR`, so the kernel detaches the device when its
//!   last user closes it: the mount, or this process (also when it dies mid-operation);
//! - the kernel is the only record of attachments: `/sys/block/loop*/loop/backing_file` says
//!   which image a device serves and `/proc/self/mountinfo` whether it is mounted. Before
//!   attaching an image, and after unmounting or removing it, leftovers from a crash (attached
//!   but not mounted) are detached.
//!
//! A new image is built under a temporary name (`<uuid>.img.tmp`) and renamed into place once
//! it holds a filesystem, so a crash during `create` leaves only a temporary file that the next
//! `create` or `remove` of the volume cleans up.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loopdev::{LoopControl, LoopDevice};
use rustix::fs::FallocateFlags;
use rustix::io::Errno;
use uuid::Uuid;

use crate::command::{CommandError, Tool};
use crate::filesystem::{minimum_size, FilesystemTools};
use crate::freeze::{freeze, thaw};
use crate::mount::{self, mount_snapshot, WhenBusy};
use crate::mount_table::{is_mount_point, MountTable};
use crate::{
    Backend, BackendError, BackendKind, ByteSize, Capacity, Effect, Filesystem, ReadPoint,
    VolumeSpec,
};

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

/// Volumes as image files on loop devices, under one root directory.
#[derive(Debug, Clone)]
pub struct LoopBackend {
    root: PathBuf,
    tools: FilesystemTools,
    e2fsck: Result<Tool, String>,
}

/// A loop device bound to a file, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopAttachment {
    /// The device, e.g. `/dev/loop3`.
    pub device: PathBuf,
    /// The file the device serves, as the kernel names it (a deleted file ends in
    /// ` (deleted)`).
    pub backing_file: PathBuf,
    /// The device number as `major:minor`, the form `/proc/self/mountinfo` uses.
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
fn attachments_of(image: &Path) -> Result<Vec<LoopAttachment>, BackendError> {
    Ok(loop_attachments()?
        .into_iter()
        .filter(|a| a.serves(image))
        .collect())
}

/// Whether this process has `CAP_SYS_RESOURCE`, which the kernel demands for growing a
/// mounted ext4 filesystem (`EXT4_IOC_RESIZE_FS`). Containers often drop it. When the answer
/// cannot be read, assume yes and let resize2fs report.
fn may_grow_mounted_ext4() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return true;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_none_or(|mask| mask & (1 << CAP_SYS_RESOURCE) != 0)
}

/// A loop device this process attached and holds open. Attachments are always made with
/// autoclear, so dropping the last handle (ours, or the mount's) detaches the device.
struct Attached {
    device: LoopDevice,
    path: PathBuf,
}

impl Attached {
    /// Attaches the open image `file` (at `image`) to a free loop device, with autoclear.
    fn new(file: &File, image: &Path) -> Result<Self, BackendError> {
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
            match device.with().autoclear(true).attach_fd(file.as_fd()) {
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
            // Direct I/O: the volume's filesystem already caches its data; without this flag
            // every write would also sit in the host's page cache for the image file, halving
            // write throughput. A host filesystem without O_DIRECT (tmpfs) keeps buffered I/O.
            if let Err(e) = device.set_direct_io(true) {
                tracing::debug!(image = %image.display(), error = %e, "loop device stays on buffered I/O");
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
    fn detach(self) -> Result<(), BackendError> {
        match self.device.detach() {
            Ok(()) => Ok(()),
            // Already detached.
            Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => Ok(()),
            Err(e) => Err(BackendError::io("detach loop device", &self.path, e)),
        }
    }
}

/// Detaches the loop device at `device`. A device that is already gone is not an error.
fn detach_device(device: &Path) -> Result<(), BackendError> {
    let gone = |e: &std::io::Error| {
        e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(Errno::NXIO.raw_os_error())
    };
    match LoopDevice::open(device).and_then(|d| d.detach()) {
        Ok(()) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(BackendError::io("detach loop device", device, e)),
    }
}

/// What [`LoopBackend::release`] found and did.
#[derive(Debug, Default)]
struct Released {
    /// How many unmounted devices were detached.
    detached: usize,
    /// A device serving the image that is mounted, and where; it was left alone.
    mounted: Option<(PathBuf, PathBuf)>,
}

/// Formats a byte count for messages, in binary units when it is large enough.
fn human(bytes: u64) -> String {
    ByteSize::from_bytes(bytes)
        .map(|size| size.to_string())
        .unwrap_or_else(|_| format!("{bytes} bytes"))
}

impl LoopBackend {
    /// A backend keeping its images under `root`, which is created if missing.
    ///
    /// Fails with [`BackendError::Unavailable`] when the host has no loop devices
    /// (`/dev/loop-control` is missing) or this process may not use them.
    pub fn open(root: PathBuf) -> Result<Self, BackendError> {
        let control = Path::new(LOOP_CONTROL);
        if !control.exists() {
            return Err(BackendError::Unavailable(format!(
                "loop volumes are not available: {LOOP_CONTROL} is missing; load the loop \
                 kernel module (modprobe loop) or use a directory or lvm profile"
            )));
        }
        LoopControl::open().map_err(|e| {
            BackendError::Unavailable(format!(
                "loop volumes are not available: cannot open {LOOP_CONTROL}: {e}; the daemon \
                 needs root (CAP_SYS_ADMIN) for loop devices"
            ))
        })?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| BackendError::io("create loop backend root", &root, e))?;
        // The kernel names backing files by their canonical path; so must we, to find them.
        let root = fs::canonicalize(&root)
            .map_err(|e| BackendError::io("resolve loop backend root", &root, e))?;
        Ok(LoopBackend {
            root,
            tools: FilesystemTools::find(),
            e2fsck: Tool::find("e2fsck", "e2fsprogs").map_err(|e| e.to_string()),
        })
    }

    /// The directory holding the images.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a volume's image lives.
    pub fn image_path(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.img"))
    }

    /// Where a volume's image is built before it is renamed into place.
    fn temp_path(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.img.tmp"))
    }

    /// Detaches every loop device serving `image` that nothing has mounted (leftovers of a
    /// crash), waiting briefly for the kernel to finish. A mounted one is reported, not touched.
    fn release(&self, image: &Path) -> Result<Released, BackendError> {
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
            self.wait_detached(image, &mounted)?;
        }
        Ok(released)
    }

    /// Waits until no unmounted loop device serves `image`. A device someone else still holds
    /// open is detached by the kernel when they close it; that is logged, not an error.
    fn wait_detached(&self, image: &Path, mounted: &MountTable) -> Result<(), BackendError> {
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

    /// Where a read point's copy-on-write copy of a volume's image lives.
    fn point_path(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.img.point"))
    }

    /// Removes a side image (a temporary image left by an interrupted create, a read point's
    /// copy) with the loop devices a crash left serving it.
    fn discard(&self, image: &Path, what: &'static str) -> Result<Effect, BackendError> {
        self.release(image)?;
        match fs::remove_file(image) {
            Ok(()) => Ok(Effect::Changed),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Effect::Unchanged),
            Err(e) => Err(BackendError::io(what, image, e)),
        }
    }

    /// Where a clone's temporary image is mounted once (see [`FilesystemTools::new_identity`]).
    fn clone_scratch(&self, id: Uuid) -> PathBuf {
        self.root.join(format!("{id}.img.tmp.mnt"))
    }

    /// Removes a temporary image left by an interrupted create or clone, with its loop
    /// devices and the clone's scratch mount.
    fn discard_temp(&self, id: Uuid) -> Result<Effect, BackendError> {
        let scratch = self.clone_scratch(id);
        mount::unmount(&scratch, "unmount clone scratch", WhenBusy::Fail)?;
        match fs::remove_dir(&scratch) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(BackendError::io("remove clone scratch", &scratch, e)),
        }
        self.discard(&self.temp_path(id), "remove temporary volume image")
    }

    /// Removes a read point's image copy, with its loop devices.
    fn discard_point(&self, id: Uuid) -> Result<Effect, BackendError> {
        self.discard(&self.point_path(id), "remove read point image")
    }

    /// Makes the new file `copy` share the blocks of `image` (FICLONE). `false`, with no copy
    /// left, when the root's filesystem cannot share blocks (ext4, tmpfs).
    fn reflink(&self, image: &Path, copy: &Path) -> Result<bool, BackendError> {
        let source =
            File::open(image).map_err(|e| BackendError::io("open volume image", image, e))?;
        let target = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(copy)
            .map_err(|e| BackendError::io("create image copy", copy, e))?;
        let cloned = rustix::fs::ioctl_ficlone(&target, &source)
            .and_then(|()| rustix::fs::fdatasync(&target));
        drop(target);
        match cloned {
            Ok(()) => Ok(true),
            Err(Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY) => {
                self.discard(copy, "remove image copy")?;
                Ok(false)
            }
            Err(e) => {
                let _ = self.discard(copy, "remove image copy");
                Err(BackendError::io("reflink volume image", copy, e.into()))
            }
        }
    }

    /// Reflinks volume `source`'s image to `copy` with its filesystem (mounted at
    /// `mountpoint`, if it is) frozen for the instant of the copy, and thaws it again.
    fn reflink_frozen(
        &self,
        source: Uuid,
        mountpoint: Option<&Path>,
        copy: &Path,
    ) -> Result<bool, BackendError> {
        if let Some(mountpoint) = mountpoint {
            freeze(mountpoint)?;
        }
        let cloned = self.reflink(&self.image_path(source), copy);
        let thawed = mountpoint.map_or(Ok(Effect::Unchanged), thaw);
        match (cloned, thawed) {
            (Ok(cloned), Ok(_)) => Ok(cloned),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => {
                let _ = self.discard(copy, "remove image copy");
                Err(e)
            }
        }
    }

    /// Mounts the read point's image copy read-only at `scratch`.
    fn mount_point_copy(&self, spec: &VolumeSpec, scratch: &Path) -> Result<(), BackendError> {
        let copy = self.point_path(spec.id);
        let file =
            File::open(&copy).map_err(|e| BackendError::io("open read point image", &copy, e))?;
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        let attached = Attached::new(&file, &copy)?;
        let mounted = mount_snapshot(fs, &attached.path, scratch, "mount read point image");
        if mounted.is_err() {
            let _ = attached.detach();
        }
        mounted
    }

    /// Makes the root's directory entries (a rename, a removal) durable.
    fn sync_root(&self) -> Result<(), BackendError> {
        File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| BackendError::io("sync loop backend root", &self.root, e))
    }

    /// Free bytes in the root's filesystem.
    fn free_bytes(&self) -> Result<u64, BackendError> {
        Ok(self.capacity()?.free_bytes)
    }

    /// Refuses to preallocate `bytes` more than the root's filesystem has free.
    fn check_room(&self, bytes: u64, what: &str) -> Result<(), BackendError> {
        let free = self.free_bytes()?;
        if free < bytes {
            return Err(BackendError::Refused(format!(
                "{what} needs {} of free space in {}, which has only {} free",
                human(bytes),
                self.root.display(),
                human(free)
            )));
        }
        Ok(())
    }

    /// Writes a formatted image at `temp`: sized, attached, formatted, detached, synced.
    fn build_image(
        &self,
        temp: &Path,
        fs: Filesystem,
        size: ByteSize,
        preallocate: bool,
    ) -> Result<(), BackendError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(temp)
            .map_err(|e| BackendError::io("create volume image", temp, e))?;
        let allocate = |file: &File| {
            rustix::fs::fallocate(file, FallocateFlags::empty(), 0, size.bytes())
                .map_err(|e| BackendError::io("allocate volume image", temp, e.into()))
        };
        if preallocate {
            allocate(&file)?;
        } else {
            file.set_len(size.bytes())
                .map_err(|e| BackendError::io("size volume image", temp, e))?;
        }
        let attached = Attached::new(&file, temp)?;
        let made = self.tools.make(fs, &attached.path);
        attached.detach()?;
        made?;
        if preallocate {
            // mkfs discards the whole device first, and a loop device turns discards into
            // holes in the image: allocate them again so the volume keeps its reservation.
            allocate(&file)?;
        }
        file.sync_all()
            .map_err(|e| BackendError::io("sync volume image", temp, e))
    }

    /// The loop device serving `image` that is mounted at `target`.
    fn device_at(&self, image: &Path, target: &Path, id: Uuid) -> Result<PathBuf, BackendError> {
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

    /// Grows the filesystem of a mounted volume to fill its (already grown) image.
    fn grow_online(
        &self,
        fs: Filesystem,
        image: &Path,
        target: &Path,
        id: Uuid,
    ) -> Result<(), BackendError> {
        let device = self.device_at(image, target, id)?;
        LoopDevice::open(&device)
            .and_then(|d| d.set_capacity())
            .map_err(|e| BackendError::io("refresh loop device capacity", &device, e))?;
        self.tools.grow(fs, &device, target)?;
        Ok(())
    }

    /// Grows the filesystem of an unmounted volume to fill its (already grown) image.
    fn grow_offline(
        &self,
        fs: Filesystem,
        image: &Path,
        target: &Path,
        id: Uuid,
    ) -> Result<(), BackendError> {
        if let Some((device, point)) = self.release(image)?.mounted {
            return Err(BackendError::Refused(format!(
                "volume {id} is mounted at {} (from {}), not at {}; unmount it first",
                point.display(),
                device.display(),
                target.display()
            )));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(image)
            .map_err(|e| BackendError::io("open volume image", image, e))?;
        let attached = Attached::new(&file, image)?;
        let grown = match fs {
            Filesystem::Ext4 => self.check_ext4(&attached.path).and_then(|()| {
                self.tools
                    .grow(fs, &attached.path, target)
                    .map_err(BackendError::from)
            }),
            Filesystem::Xfs => self.grow_xfs_offline(&attached.path, target, id),
        };
        let detached = attached.detach();
        grown?;
        detached?;
        self.wait_detached(image, &MountTable::default())
    }

    /// `e2fsck -f -y`, which resize2fs insists on before growing an unmounted filesystem.
    fn check_ext4(&self, device: &Path) -> Result<(), BackendError> {
        let e2fsck = self
            .e2fsck
            .as_ref()
            .map_err(|message| BackendError::Unavailable(message.clone()))?;
        match e2fsck.run(["-f".as_ref(), "-y".as_ref(), device.as_os_str()]) {
            Ok(_) => Ok(()),
            // Exit code 1: errors were found and corrected; the filesystem is fine now.
            Err(CommandError::Failed { code: 1, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// xfs grows only while mounted: mount at `target` (or a scratch directory when `target`
    /// does not exist), grow, unmount.
    fn grow_xfs_offline(&self, device: &Path, target: &Path, id: Uuid) -> Result<(), BackendError> {
        let scratch = self.root.join(format!("{id}.grow"));
        let point = if target.is_dir() {
            target
        } else {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&scratch)
                .or_else(|e| match e.kind() {
                    ErrorKind::AlreadyExists => Ok(()),
                    _ => Err(e),
                })
                .map_err(|e| BackendError::io("create scratch mountpoint", &scratch, e))?;
            &scratch
        };
        mount::mount_device(
            device,
            point,
            Filesystem::Xfs,
            None,
            "mount volume to grow it",
        )?;
        let grown = self.tools.grow(Filesystem::Xfs, device, point);
        let unmounted =
            mount::unmount(point, "unmount volume after growing it", WhenBusy::Fail).map(drop);
        if point == scratch {
            let _ = fs::remove_dir(&scratch);
        }
        grown?;
        unmounted
    }
}

impl Backend for LoopBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Loop
    }

    fn enforces_size(&self) -> bool {
        true
    }

    fn validate(&self, spec: &VolumeSpec) -> Result<(), BackendError> {
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        let size = spec.size.ok_or_else(|| {
            BackendError::Refused(
                "loop volumes need a size: pass one (-o size=10G) or set size in the profile"
                    .into(),
            )
        })?;
        let min = minimum_size(fs);
        if size < min {
            return Err(BackendError::Refused(format!(
                "size {size} is below the {min} minimum for {fs}"
            )));
        }
        self.tools.check(fs).map_err(|message| {
            BackendError::Unavailable(format!("cannot make {fs} volumes: {message}"))
        })?;
        if spec.preallocate {
            self.check_room(size.bytes(), &format!("a fully allocated {size} volume"))?;
        }
        Ok(())
    }

    fn create(&self, spec: &VolumeSpec) -> Result<Effect, BackendError> {
        let image = self.image_path(spec.id);
        if image.is_file() {
            return Ok(Effect::Unchanged);
        }
        // A create interrupted by a crash leaves its temporary image behind, maybe attached.
        self.discard_temp(spec.id)?;
        self.validate(spec)?;
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        let size = spec
            .size
            .ok_or_else(|| BackendError::Refused("loop volumes need a size".into()))?;
        let temp = self.temp_path(spec.id);
        if let Err(e) = self.build_image(&temp, fs, size, spec.preallocate) {
            if let Err(cleanup) = self.discard_temp(spec.id) {
                tracing::warn!(error = %cleanup, "cannot remove a failed volume image");
            }
            return Err(e);
        }
        fs::rename(&temp, &image)
            .map_err(|e| BackendError::io("move volume image into place", &image, e))?;
        self.sync_root()?;
        Ok(Effect::Changed)
    }

    fn remove(&self, id: Uuid) -> Result<Effect, BackendError> {
        let image = self.image_path(id);
        if let Some((device, point)) = self.release(&image)?.mounted {
            return Err(BackendError::Refused(format!(
                "volume {id} is still mounted at {} (from {}); unmount it before removing it",
                point.display(),
                device.display()
            )));
        }
        let mut effect = self.discard_temp(id)?;
        if self.discard_point(id)? == Effect::Changed {
            effect = Effect::Changed;
        }
        match fs::remove_file(&image) {
            Ok(()) => effect = Effect::Changed,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(BackendError::io("remove volume image", &image, e)),
        }
        if effect == Effect::Changed {
            self.sync_root()?;
        }
        Ok(effect)
    }

    fn mount(&self, spec: &VolumeSpec, target: &Path) -> Result<Effect, BackendError> {
        if is_mount_point(target)? {
            return Ok(Effect::Unchanged);
        }
        let image = self.image_path(spec.id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&image)
            .map_err(|e| BackendError::io("open volume image", &image, e))?;
        // Two mounts of one image through two devices would corrupt it; a device left attached
        // by a crash is detached first.
        if let Some((device, point)) = self.release(&image)?.mounted {
            return Err(BackendError::Refused(format!(
                "volume {} is already mounted at {} (from {}); unmount it there first",
                spec.id,
                point.display(),
                device.display()
            )));
        }
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        let attached = Attached::new(&file, &image)?;
        match mount::mount_device(&attached.path, target, fs, None, "mount volume image") {
            // The mount holds the device now; closing ours leaves autoclear to the unmount.
            Ok(()) => Ok(Effect::Changed),
            Err(e) => {
                if let Err(detach) = attached.detach() {
                    tracing::warn!(error = %detach, "cannot detach loop device after failed mount");
                }
                Err(e)
            }
        }
    }

    fn unmount(&self, id: Uuid, target: &Path) -> Result<Effect, BackendError> {
        let image = self.image_path(id);
        // A lazy unmount would keep the loop device and the filesystem alive for as long as
        // that process runs, with no mountpoint left to find it by: refuse instead.
        let busy = WhenBusy::Explain(
            "unmount volume (a process still uses it: stop that process or container, then retry)",
        );
        if mount::unmount(target, "unmount volume", busy)? == Effect::Unchanged {
            // Nothing to unmount; still release a device a crash left attached.
            let released = self.release(&image)?;
            return Ok(if released.detached > 0 {
                Effect::Changed
            } else {
                Effect::Unchanged
            });
        }
        // Autoclear detached the device with the unmount; make sure of it.
        if let Some((device, point)) = self.release(&image)?.mounted {
            tracing::warn!(
                volume = %id,
                device = %device.display(),
                mountpoint = %point.display(),
                "volume image is still mounted elsewhere"
            );
        }
        Ok(Effect::Changed)
    }

    fn resize(
        &self,
        spec: &VolumeSpec,
        new_size: ByteSize,
        target: &Path,
    ) -> Result<Effect, BackendError> {
        let image = self.image_path(spec.id);
        let fs = spec.filesystem.unwrap_or(Filesystem::Ext4);
        let current = fs::metadata(&image)
            .map_err(|e| BackendError::io("read volume image size", &image, e))?
            .len();
        let mounted = is_mount_point(target)?;
        let can_grow = !(mounted && fs == Filesystem::Ext4) || may_grow_mounted_ext4();
        if new_size.bytes() < current {
            return Err(BackendError::Refused(format!(
                "volume {} is {} and cannot shrink to {new_size}; only growing is supported",
                spec.id,
                human(current)
            )));
        }
        if new_size.bytes() == current {
            if mounted && can_grow {
                // Finishes a resize a crash interrupted after the image grew; both steps do
                // nothing when the filesystem already fills the image.
                self.grow_online(fs, &image, target, spec.id)?;
            }
            return Ok(Effect::Unchanged);
        }
        if !can_grow {
            return Err(BackendError::Unavailable(format!(
                "cannot grow volume {} while it is mounted: growing a mounted ext4 filesystem \
                 needs CAP_SYS_RESOURCE, which the daemon lacks; stop the containers using it \
                 (so it is unmounted) and resize again, or give the daemon that capability",
                spec.id
            )));
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&image)
            .map_err(|e| BackendError::io("open volume image", &image, e))?;
        let added = new_size.bytes() - current;
        if spec.preallocate {
            self.check_room(added, &format!("growing volume {} to {new_size}", spec.id))?;
            rustix::fs::fallocate(&file, FallocateFlags::empty(), current, added)
                .map_err(|e| BackendError::io("allocate volume image", &image, e.into()))?;
        } else {
            file.set_len(new_size.bytes())
                .map_err(|e| BackendError::io("grow volume image", &image, e))?;
        }
        file.sync_all()
            .map_err(|e| BackendError::io("sync volume image", &image, e))?;
        drop(file);
        if mounted {
            self.grow_online(fs, &image, target, spec.id)?;
        } else {
            self.grow_offline(fs, &image, target, spec.id)?;
        }
        Ok(Effect::Changed)
    }

    /// Where the root's filesystem can share blocks (XFS with reflink, btrfs), a reflinked
    /// copy of the image, taken frozen and mounted read-only; elsewhere the volume's own
    /// filesystem, frozen until the point is released.
    fn read_point(
        &self,
        spec: &VolumeSpec,
        mountpoint: &Path,
        scratch: &Path,
    ) -> Result<ReadPoint, BackendError> {
        // A copy shares the image's blocks: writers wait only for the clone. Where blocks
        // cannot be shared, the filesystem stays frozen while the caller reads.
        self.discard_point(spec.id)?;
        if !self.reflink_frozen(spec.id, Some(mountpoint), &self.point_path(spec.id))? {
            freeze(mountpoint)?;
            return Ok(ReadPoint::Frozen);
        }
        if let Err(e) = self.mount_point_copy(spec, scratch) {
            let _ = self.discard_point(spec.id);
            return Err(e);
        }
        Ok(ReadPoint::Snapshot(scratch.to_path_buf()))
    }

    fn release_read_point(
        &self,
        id: Uuid,
        mountpoint: &Path,
        scratch: &Path,
    ) -> Result<Effect, BackendError> {
        // Thaw first: whatever fails after, writers must not stay blocked.
        let mut effect = if is_mount_point(mountpoint)? {
            thaw(mountpoint)?
        } else {
            Effect::Unchanged
        };
        if mount::unmount(scratch, "unmount read point", WhenBusy::Fail)? == Effect::Changed {
            effect = Effect::Changed;
        }
        if self.discard_point(id)? == Effect::Changed {
            effect = Effect::Changed;
        }
        Ok(effect)
    }

    /// A reflinked copy of the source's image, given its own filesystem identity, when the
    /// root's filesystem shares blocks and the two volumes agree on filesystem and size.
    fn clone_volume(
        &self,
        source: &VolumeSpec,
        source_mountpoint: Option<&Path>,
        target: &VolumeSpec,
    ) -> Result<Option<Effect>, BackendError> {
        let image = self.image_path(target.id);
        if image.exists() {
            return Ok(Some(Effect::Unchanged));
        }
        if target.preallocate
            || source.filesystem != target.filesystem
            || source.size != target.size
        {
            return Ok(None);
        }
        self.discard_temp(target.id)?;
        let temp = self.temp_path(target.id);
        if !self.reflink_frozen(source.id, source_mountpoint, &temp)? {
            return Ok(None);
        }
        let fs = target.filesystem.unwrap_or(Filesystem::Ext4);
        let renamed = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&temp)
            .map_err(|e| BackendError::io("open volume image", &temp, e))
            .and_then(|file| {
                let scratch = self.clone_scratch(target.id);
                fs::create_dir_all(&scratch)
                    .map_err(|e| BackendError::io("create scratch mountpoint", &scratch, e))?;
                let attached = Attached::new(&file, &temp)?;
                let renamed = self.tools.new_identity(fs, &attached.path, &scratch);
                attached.detach()?;
                let _ = fs::remove_dir(&scratch);
                renamed
            });
        if let Err(e) = renamed {
            self.discard_temp(target.id)?;
            return Err(e);
        }
        fs::rename(&temp, &image)
            .map_err(|e| BackendError::io("move volume image into place", &image, e))?;
        self.sync_root()?;
        Ok(Some(Effect::Changed))
    }

    fn capacity(&self) -> Result<Capacity, BackendError> {
        Capacity::of_filesystem(&self.root)
    }

    fn volumes(&self) -> Result<Vec<Uuid>, BackendError> {
        let entries = fs::read_dir(&self.root)
            .map_err(|e| BackendError::io("list volumes", &self.root, e))?;
        Ok(entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name();
                name.to_str()?.strip_suffix(".img")?.parse().ok()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;
    use std::sync::{Mutex, MutexGuard};

    use super::*;

    /// The tests share the host's loop devices and count them: one at a time.
    static LOOP_TESTS: Mutex<()> = Mutex::new(());

    /// A backend under a fresh temporary directory; on drop, unmounts and detaches whatever a
    /// failed test left under it.
    struct Fixture {
        dir: tempfile::TempDir,
        backend: LoopBackend,
        _serial: MutexGuard<'static, ()>,
    }

    impl Fixture {
        /// `None` (with a note) when this host cannot run loop tests.
        fn new() -> Option<Fixture> {
            if !rustix::process::geteuid().is_root() {
                eprintln!("skipped: loop devices need root");
                return None;
            }
            if !Path::new(LOOP_CONTROL).exists() {
                eprintln!("skipped: {LOOP_CONTROL} is missing");
                return None;
            }
            let serial = LOOP_TESTS.lock().unwrap_or_else(|e| e.into_inner());
            let dir = tempfile::Builder::new()
                .prefix("dvol-loop-test-")
                .tempdir_in("/tmp")
                .unwrap();
            let backend = LoopBackend::open(dir.path().join("images")).unwrap();
            Some(Fixture {
                dir,
                backend,
                _serial: serial,
            })
        }

        /// A fresh, empty mountpoint.
        fn target(&self, name: &str) -> PathBuf {
            let path = fs::canonicalize(self.dir.path()).unwrap().join(name);
            fs::create_dir(&path).unwrap();
            path
        }

        /// Loop devices serving files under this fixture.
        fn attachments(&self) -> Vec<LoopAttachment> {
            let root = fs::canonicalize(self.dir.path()).unwrap();
            loop_attachments()
                .unwrap()
                .into_iter()
                .filter(|a| a.backing_file.starts_with(&root))
                .collect()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let root = fs::canonicalize(self.dir.path()).unwrap();
            if let Ok(table) = MountTable::read() {
                let mut points: Vec<_> = table
                    .mounts()
                    .iter()
                    .map(|m| &m.mount_point)
                    .filter(|p| p.starts_with(&root))
                    .collect();
                points.reverse();
                for point in points {
                    let _ = sys_mount::unmount(point, sys_mount::UnmountFlags::DETACH);
                }
            }
            for attachment in self.attachments() {
                let _ = detach_device(&attachment.device);
            }
        }
    }

    fn spec(fs: Filesystem, size: &str) -> VolumeSpec {
        VolumeSpec {
            id: Uuid::new_v4(),
            size: Some(size.parse().unwrap()),
            filesystem: Some(fs),
            preallocate: false,
        }
    }

    /// Total bytes of the filesystem mounted at `path`.
    fn total_bytes(path: &Path) -> u64 {
        let stat = rustix::fs::statvfs(path).unwrap();
        stat.f_blocks * stat.f_frsize
    }

    fn run(program: &str, args: &[&str]) -> std::process::Output {
        Command::new(program).args(args).output().unwrap()
    }

    fn data_survives_remount(fs: Filesystem, size: &str) {
        let Some(fx) = Fixture::new() else { return };
        let spec = spec(fs, size);
        let target = fx.target("mnt");
        assert_eq!(fx.backend.create(&spec).unwrap(), Effect::Changed);
        assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
        assert!(is_mount_point(&target).unwrap());
        let fstype = MountTable::read()
            .unwrap()
            .mounts()
            .iter()
            .find(|m| m.mount_point == target)
            .unwrap()
            .fs_type
            .clone();
        assert_eq!(fstype, fs.as_str());
        fs::create_dir(target.join("dir")).unwrap();
        fs::write(target.join("dir/data"), b"kept across mounts").unwrap();
        assert_eq!(
            fx.backend.unmount(spec.id, &target).unwrap(),
            Effect::Changed
        );
        assert!(!target.join("dir").exists());
        assert!(fx.attachments().is_empty(), "{:?}", fx.attachments());
        assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
        assert_eq!(
            fs::read(target.join("dir/data")).unwrap(),
            b"kept across mounts"
        );
        assert_eq!(fx.attachments().len(), 1);
        assert_eq!(
            fx.backend.unmount(spec.id, &target).unwrap(),
            Effect::Changed
        );
        assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Changed);
        assert!(fx.attachments().is_empty());
    }

    #[test]
    fn ext4_data_survives_unmount_and_remount() {
        data_survives_remount(Filesystem::Ext4, "32M");
    }

    #[test]
    fn xfs_data_survives_unmount_and_remount() {
        data_survives_remount(Filesystem::Xfs, "300M");
    }

    #[test]
    fn every_operation_is_idempotent() {
        let Some(fx) = Fixture::new() else { return };
        let spec = spec(Filesystem::Ext4, "32M");
        let target = fx.target("mnt");
        assert_eq!(
            fx.backend.unmount(spec.id, &target).unwrap(),
            Effect::Unchanged
        );
        assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Unchanged);
        assert_eq!(fx.backend.create(&spec).unwrap(), Effect::Changed);
        assert_eq!(fx.backend.create(&spec).unwrap(), Effect::Unchanged);
        assert_eq!(fx.backend.volumes().unwrap(), vec![spec.id]);
        assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
        assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Unchanged);
        assert_eq!(fx.attachments().len(), 1, "one device per mounted volume");
        let size: ByteSize = "48M".parse().unwrap();
        if may_grow_mounted_ext4() {
            assert_eq!(
                fx.backend.resize(&spec, size, &target).unwrap(),
                Effect::Changed
            );
            assert_eq!(
                fx.backend.resize(&spec, size, &target).unwrap(),
                Effect::Unchanged
            );
        }
        assert_eq!(
            fx.backend.unmount(spec.id, &target).unwrap(),
            Effect::Changed
        );
        assert_eq!(
            fx.backend.unmount(spec.id, &target).unwrap(),
            Effect::Unchanged
        );
        let bigger: ByteSize = "64M".parse().unwrap();
        assert_eq!(
            fx.backend.resize(&spec, bigger, &target).unwrap(),
            Effect::Changed
        );
        assert_eq!(
            fx.backend.resize(&spec, bigger, &target).unwrap(),
            Effect::Unchanged
        );
        assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Changed);
        assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Unchanged);
        assert!(fx.backend.volumes().unwrap().is_empty());
        assert!(fx.attachments().is_empty());
    }

    #[test]
    fn a_full_volume_fails_writes_with_enospc_and_recovers() {
        let Some(fx) = Fixture::new() else { return };
        let spec = spec(Filesystem::Ext4, "32M");
        let target = fx.target("mnt");
        fx.backend.create(&spec).unwrap();
        fx.backend.mount(&spec, &target).unwrap();
        let big = target.join("big");
        let chunk = vec![0xa5u8; 1 << 20];
        let result = (|| {
            let mut file = File::create(&big)?;
            for _ in 0..64 {
                file.write_all(&chunk)?;
            }
            file.sync_all()
        })();
        let err = result.expect_err("64 MiB must not fit in a 32 MiB volume");
        assert!(
            err.kind() == ErrorKind::StorageFull || err.raw_os_error() == Some(28),
            "{err:?}"
        );
        fs::remove_file(&big).unwrap();
        let mut file = File::create(target.join("small")).unwrap();
        for _ in 0..8 {
            file.write_all(&chunk).unwrap();
        }
        file.sync_all().unwrap();
        drop(file);
        fx.backend.unmount(spec.id, &target).unwrap();
        fx.backend.remove(spec.id).unwrap();
    }

    #[test]
    fn sizes_below_the_filesystem_minimum_are_refused_with_the_minimum() {
        let Some(fx) = Fixture::new() else { return };
        let xfs = spec(Filesystem::Xfs, "100M");
        let err = fx.backend.create(&xfs).unwrap_err();
        assert!(err.is_refusal(), "{err:?}");
        assert_eq!(
            err.to_string(),
            "size 100MiB is below the 300MiB minimum for xfs"
        );
        let ext4 = spec(Filesystem::Ext4, "8M");
        let err = fx.backend.validate(&ext4).unwrap_err();
        assert!(
            err.is_refusal() && err.to_string().contains("16MiB minimum for ext4"),
            "{err}"
        );
        let no_size = VolumeSpec {
            size: None,
            ..spec(Filesystem::Ext4, "1G")
        };
        let err = fx.backend.validate(&no_size).unwrap_err();
        assert!(
            err.is_refusal() && err.to_string().contains("loop volumes need a size"),
            "{err}"
        );
        let huge = VolumeSpec {
            preallocate: true,
            ..spec(Filesystem::Ext4, "1P")
        };
        let err = fx.backend.create(&huge).unwrap_err();
        assert!(err.is_refusal(), "{err:?}");
        assert!(
            err.to_string().contains("needs 1PiB of free space"),
            "{err}"
        );
        assert!(fx.backend.volumes().unwrap().is_empty());
        assert_eq!(fs::read_dir(fx.backend.root()).unwrap().count(), 0);
    }

    fn resize_mounted(fs: Filesystem, from: &str, to: &str) {
        let Some(fx) = Fixture::new() else { return };
        let spec = spec(fs, from);
        let target = fx.target("mnt");
        fx.backend.create(&spec).unwrap();
        fx.backend.mount(&spec, &target).unwrap();
        fs::write(target.join("f"), b"before resize").unwrap();
        let before = total_bytes(&target);
        let to: ByteSize = to.parse().unwrap();
        if fs == Filesystem::Ext4 && !may_grow_mounted_ext4() {
            // This host (a container without CAP_SYS_RESOURCE) cannot grow a mounted ext4
            // filesystem: the refusal must say so and leave the image as it was.
            let err = fx.backend.resize(&spec, to, &target).unwrap_err();
            assert!(err.to_string().contains("CAP_SYS_RESOURCE"), "{err}");
            let image = fs::metadata(fx.backend.image_path(spec.id)).unwrap();
            assert_eq!(image.len(), spec.size.unwrap().bytes());
            let smaller: ByteSize = "16M".parse().unwrap();
            let err = fx.backend.resize(&spec, smaller, &target).unwrap_err();
            assert!(
                err.is_refusal() && err.to_string().contains("cannot shrink"),
                "{err}"
            );
            eprintln!("note: no CAP_SYS_RESOURCE; online ext4 growth checked as refused");
            fx.backend.unmount(spec.id, &target).unwrap();
            fx.backend.remove(spec.id).unwrap();
            return;
        }
        assert_eq!(
            fx.backend.resize(&spec, to, &target).unwrap(),
            Effect::Changed
        );
        let after = total_bytes(&target);
        assert!(after > before, "{fs}: {before} -> {after}");
        let added = to.bytes() - spec.size.unwrap().bytes();
        assert!(
            after - before >= added * 9 / 10,
            "{fs}: grew by too little for {added} more bytes: {before} -> {after}"
        );
        assert_eq!(fs::read(target.join("f")).unwrap(), b"before resize");
        assert_eq!(
            fs::metadata(fx.backend.image_path(spec.id)).unwrap().len(),
            to.bytes()
        );
        let smaller = spec.size.unwrap();
        let err = fx.backend.resize(&spec, smaller, &target).unwrap_err();
        assert!(err.is_refusal(), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&to.to_string()) && message.contains(&smaller.to_string()),
            "{message}"
        );
        assert_eq!(total_bytes(&target), after);
        fx.backend.unmount(spec.id, &target).unwrap();
        fx.backend.remove(spec.id).unwrap();
        assert!(fx.attachments().is_empty());
    }

    #[test]
    fn ext4_resize_while_mounted_grows_the_filesystem_and_shrink_is_refused() {
        resize_mounted(Filesystem::Ext4, "32M", "64M");
    }

    #[test]
    fn xfs_resize_while_mounted_grows_the_filesystem_and_shrink_is_refused() {
        resize_mounted(Filesystem::Xfs, "300M", "400M");
    }

    fn resize_unmounted(fs: Filesystem, from: &str, to: &str) {
        let Some(fx) = Fixture::new() else { return };
        let spec = spec(fs, from);
        let target = fx.target("mnt");
        fx.backend.create(&spec).unwrap();
        fx.backend.mount(&spec, &target).unwrap();
        fs::write(target.join("f"), b"before resize").unwrap();
        let before = total_bytes(&target);
        fx.backend.unmount(spec.id, &target).unwrap();
        let to: ByteSize = to.parse().unwrap();
        assert_eq!(
            fx.backend.resize(&spec, to, &target).unwrap(),
            Effect::Changed
        );
        assert!(!is_mount_point(&target).unwrap());
        assert!(fx.attachments().is_empty(), "{:?}", fx.attachments());
        fx.backend.mount(&spec, &target).unwrap();
        let after = total_bytes(&target);
        assert!(after > before, "{fs}: {before} -> {after}");
        assert_eq!(fs::read(target.join("f")).unwrap(), b"before resize");
        fx.backend.unmount(spec.id, &target).unwrap();
        fx.backend.remove(spec.id).unwrap();
    }

    #[test]
    fn ext4_resize_while_unmounted_checks_and_grows_the_filesystem() {
        resize_unmounted(Filesystem::Ext4, "32M", "48M");
    }

    #[test]
    fn xfs_resize_while_unmounted_grows_the_filesystem() {
        resize_unmounted(Filesystem::Xfs, "300M", "350M");
    }

    #[test]
    fn preallocated_images_are_fully_allocated_and_others_sparse() {
        let Some(fx) = Fixture::new() else { return };
        let full = VolumeSpec {
            preallocate: true,
            ..spec(Filesystem::Ext4, "64M")
        };
        fx.backend.create(&full).unwrap();
        let meta = fs::metadata(fx.backend.image_path(full.id)).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert!(meta.blocks() * 512 >= 64 << 20, "{} blocks", meta.blocks());
        let target = fx.target("mnt");
        let size: ByteSize = "96M".parse().unwrap();
        fx.backend.resize(&full, size, &target).unwrap();
        let meta = fs::metadata(fx.backend.image_path(full.id)).unwrap();
        assert!(
            meta.blocks() * 512 >= 96 << 20,
            "{} blocks after resize",
            meta.blocks()
        );
        fx.backend.mount(&full, &target).unwrap();
        assert!(total_bytes(&target) > 80 << 20);
        fx.backend.unmount(full.id, &target).unwrap();

        let sparse = spec(Filesystem::Ext4, "64M");
        fx.backend.create(&sparse).unwrap();
        let meta = fs::metadata(fx.backend.image_path(sparse.id)).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert!(meta.blocks() * 512 < 32 << 20, "{} blocks", meta.blocks());
        fx.backend.remove(full.id).unwrap();
        fx.backend.remove(sparse.id).unwrap();
    }

    #[test]
    fn two_hundred_cycles_leak_no_loop_device() {
        let Some(fx) = Fixture::new() else { return };
        let before = loop_attachments().unwrap().len();
        let target = fx.target("mnt");
        let started = Instant::now();
        for _ in 0..200 {
            let spec = spec(Filesystem::Ext4, "16M");
            assert_eq!(fx.backend.create(&spec).unwrap(), Effect::Changed);
            assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
            assert_eq!(
                fx.backend.unmount(spec.id, &target).unwrap(),
                Effect::Changed
            );
            assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Changed);
        }
        let elapsed = started.elapsed();
        eprintln!("200 create/mount/unmount/remove cycles took {elapsed:?}");
        assert!(fx.attachments().is_empty(), "{:?}", fx.attachments());
        let after = loop_attachments().unwrap().len();
        // Only this process's devices are known to be quiet; others (a concurrent test run)
        // may attach and detach their own meanwhile, so theirs are reported, not asserted.
        if after != before {
            eprintln!(
                "note: attached loop devices went from {before} to {after} (none of them ours)"
            );
        }
        assert!(fx.backend.volumes().unwrap().is_empty());
    }

    #[test]
    fn mount_recovers_from_devices_a_crash_left_behind() {
        let Some(fx) = Fixture::new() else { return };
        let spec = spec(Filesystem::Ext4, "32M");
        let image = fx.backend.image_path(spec.id);
        let image_arg = image.to_str().unwrap();
        let target = fx.target("mnt");
        fx.backend.create(&spec).unwrap();
        fx.backend.mount(&spec, &target).unwrap();
        fs::write(target.join("f"), b"survives").unwrap();

        // Someone unmounts and detaches behind the backend's back.
        let device = attachments_of(&image).unwrap()[0].device.clone();
        assert!(run("umount", &[target.to_str().unwrap()]).status.success());
        // Autoclear has usually detached it already; losetup may find nothing to do.
        let _ = run("losetup", &["-d", device.to_str().unwrap()]);
        assert_eq!(
            fx.backend.unmount(spec.id, &target).unwrap(),
            Effect::Unchanged
        );
        assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
        assert_eq!(fs::read(target.join("f")).unwrap(), b"survives");
        fx.backend.unmount(spec.id, &target).unwrap();

        // A crash between attaching and mounting leaves a device attached without autoclear.
        let out = run("losetup", &["-f", "--show", image_arg]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(fx.attachments().len(), 1);
        assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
        assert_eq!(
            fx.attachments().len(),
            1,
            "the leftover was replaced, not kept"
        );
        assert_eq!(fs::read(target.join("f")).unwrap(), b"survives");
        assert_eq!(
            fx.backend.unmount(spec.id, &target).unwrap(),
            Effect::Changed
        );
        assert!(fx.attachments().is_empty());

        // The same leftover found by unmount (nothing mounted) and by remove.
        assert!(run("losetup", &["-f", image_arg]).status.success());
        assert_eq!(
            fx.backend.unmount(spec.id, &target).unwrap(),
            Effect::Changed
        );
        assert!(fx.attachments().is_empty());
        assert!(run("losetup", &["-f", image_arg]).status.success());
        assert_eq!(fx.backend.remove(spec.id).unwrap(), Effect::Changed);
        assert!(fx.attachments().is_empty());
        assert!(!image.exists());
    }

    #[test]
    fn create_and_remove_clean_up_an_interrupted_create() {
        let Some(fx) = Fixture::new() else { return };
        let spec = spec(Filesystem::Ext4, "32M");
        let temp = fx.backend.temp_path(spec.id);
        let file = File::create(&temp).unwrap();
        file.set_len(8 << 20).unwrap();
        assert!(run("losetup", &["-f", temp.to_str().unwrap()])
            .status
            .success());
        assert!(
            fx.backend.volumes().unwrap().is_empty(),
            "a temporary image is no volume"
        );
        assert_eq!(fx.backend.create(&spec).unwrap(), Effect::Changed);
        assert!(!temp.exists());
        assert!(fx.attachments().is_empty());
        let target = fx.target("mnt");
        assert_eq!(fx.backend.mount(&spec, &target).unwrap(), Effect::Changed);
        fx.backend.unmount(spec.id, &target).unwrap();

        let other = Uuid::new_v4();
        fs::write(fx.backend.temp_path(other), b"half made").unwrap();
        assert_eq!(fx.backend.remove(other).unwrap(), Effect::Changed);
        assert!(!fx.backend.temp_path(other).exists());
        fx.backend.remove(spec.id).unwrap();
    }

    #[test]
    fn unmounting_a_busy_volume_is_an_error_and_a_failed_mount_detaches() {
        let Some(fx) = Fixture::new() else { return };
        let spec = spec(Filesystem::Ext4, "32M");
        let target = fx.target("mnt");
        fx.backend.create(&spec).unwrap();
        fx.backend.mount(&spec, &target).unwrap();
        let open = File::create(target.join("held-open")).unwrap();
        let err = fx.backend.unmount(spec.id, &target).unwrap_err();
        assert!(err.to_string().contains("a process still uses it"), "{err}");
        assert!(is_mount_point(&target).unwrap());
        drop(open);
        assert_eq!(
            fx.backend.unmount(spec.id, &target).unwrap(),
            Effect::Changed
        );

        // An ext4 image mounted as xfs fails, and must not leave its device attached.
        let wrong = VolumeSpec {
            filesystem: Some(Filesystem::Xfs),
            ..spec.clone()
        };
        assert!(fx.backend.mount(&wrong, &target).is_err());
        assert!(!is_mount_point(&target).unwrap());
        assert!(fx.attachments().is_empty(), "{:?}", fx.attachments());
        // A volume mounted elsewhere is not mounted a second time.
        fx.backend.mount(&spec, &target).unwrap();
        let second = fx.target("mnt2");
        let err = fx.backend.mount(&spec, &second).unwrap_err();
        assert!(
            err.is_refusal() && err.to_string().contains("already mounted"),
            "{err}"
        );
        let err = fx.backend.remove(spec.id).unwrap_err();
        assert!(err.is_refusal(), "{err}");
        fx.backend.unmount(spec.id, &target).unwrap();
        fx.backend.remove(spec.id).unwrap();
    }

    #[test]
    fn reports_capacity_and_lists_only_volume_images() {
        let Some(fx) = Fixture::new() else { return };
        assert_eq!(fx.backend.kind(), BackendKind::Loop);
        assert!(fx.backend.enforces_size());
        let capacity = fx.backend.capacity().unwrap();
        assert!(capacity.total_bytes >= capacity.free_bytes && capacity.free_bytes > 0);
        let a = spec(Filesystem::Ext4, "16M");
        let b = spec(Filesystem::Ext4, "16M");
        fx.backend.create(&a).unwrap();
        fx.backend.create(&b).unwrap();
        fs::write(fx.backend.root().join("notes.txt"), b"x").unwrap();
        fs::write(fx.backend.root().join("not-a-uuid.img"), b"x").unwrap();
        let mut listed = fx.backend.volumes().unwrap();
        listed.sort();
        let mut expected = vec![a.id, b.id];
        expected.sort();
        assert_eq!(listed, expected);
        fx.backend.remove(a.id).unwrap();
        fx.backend.remove(b.id).unwrap();
    }

    /// Starts a writer appending to `file` and reports whether it finished within `wait`.
    fn write_finishes_within(file: PathBuf, wait: Duration) -> (bool, std::thread::JoinHandle<()>) {
        let (done, finished) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            fs::write(&file, b"written during the read point").unwrap();
            let _ = done.send(());
        });
        (finished.recv_timeout(wait).is_ok(), writer)
    }

    #[test]
    fn a_read_point_without_reflink_freezes_writers_until_released() {
        let Some(fx) = Fixture::new() else { return };
        let spec = spec(Filesystem::Ext4, "64M");
        let target = fx.target("mnt");
        let scratch = fx.target("scratch");
        fx.backend.create(&spec).unwrap();
        fx.backend.mount(&spec, &target).unwrap();
        fs::write(target.join("before"), b"committed").unwrap();
        // /tmp is ext4 here: no reflink, so the volume's own filesystem is frozen.
        let point = fx.backend.read_point(&spec, &target, &scratch).unwrap();
        assert_eq!(point, ReadPoint::Frozen);
        assert!(!fx.backend.point_path(spec.id).exists());
        assert_eq!(fs::read(target.join("before")).unwrap(), b"committed");
        let (finished, writer) =
            write_finishes_within(target.join("after"), Duration::from_millis(500));
        assert!(!finished, "a write went through a frozen filesystem");
        assert_eq!(
            fx.backend
                .release_read_point(spec.id, &target, &scratch)
                .unwrap(),
            Effect::Changed
        );
        writer.join().unwrap();
        assert_eq!(
            fs::read(target.join("after")).unwrap(),
            b"written during the read point"
        );
        assert_eq!(
            fx.backend
                .release_read_point(spec.id, &target, &scratch)
                .unwrap(),
            Effect::Unchanged
        );
        fx.backend.unmount(spec.id, &target).unwrap();
        fx.backend.remove(spec.id).unwrap();
    }

    /// A backend whose images live on an XFS filesystem with reflink (mounted under the
    /// fixture, so the fixture unmounts it), and the folder of its images.
    fn backend_on_xfs(fx: &Fixture) -> (LoopBackend, PathBuf) {
        let pool_image = fx.dir.path().join("pool.img");
        File::create(&pool_image).unwrap().set_len(2 << 30).unwrap();
        let mkfs = run(
            "mkfs.xfs",
            &["-q", "-m", "reflink=1", pool_image.to_str().unwrap()],
        );
        assert!(mkfs.status.success(), "{mkfs:?}");
        let pool = fx.target("pool");
        let mounted = run(
            "mount",
            &[
                "-o",
                "loop",
                pool_image.to_str().unwrap(),
                pool.to_str().unwrap(),
            ],
        );
        assert!(mounted.status.success(), "{mounted:?}");
        let backend = LoopBackend::open(pool.join("images")).unwrap();
        let images = backend.root().to_path_buf();
        (backend, images)
    }

    fn sized_spec(fs: Filesystem) -> VolumeSpec {
        spec(fs, if fs == Filesystem::Xfs { "300M" } else { "64M" })
    }

    fn reflinked_read_point_does_not_hold_writers(fs: Filesystem) {
        let Some(fx) = Fixture::new() else { return };
        let (backend, images) = backend_on_xfs(&fx);
        let spec = sized_spec(fs);
        let target = fx.target("mnt");
        let scratch = fx.target("scratch");
        backend.create(&spec).unwrap();
        backend.mount(&spec, &target).unwrap();
        fs::write(target.join("before"), b"committed").unwrap();
        let before = fs::metadata(target.join("before")).unwrap();

        let point = backend.read_point(&spec, &target, &scratch).unwrap();
        assert_eq!(point, ReadPoint::Snapshot(scratch.clone()));
        let (finished, writer) =
            write_finishes_within(target.join("after"), Duration::from_secs(10));
        assert!(finished, "a write waited for a reflinked read point");
        writer.join().unwrap();
        assert_eq!(fs::read(scratch.join("before")).unwrap(), b"committed");
        assert!(
            !scratch.join("after").exists(),
            "the copy saw a later write"
        );
        // A block copy keeps inode numbers and times, so the history index stays valid.
        let copied = fs::metadata(scratch.join("before")).unwrap();
        assert_eq!(
            (copied.ino(), copied.mtime_nsec(), copied.ctime_nsec()),
            (before.ino(), before.mtime_nsec(), before.ctime_nsec())
        );
        assert!(
            fs::write(scratch.join("x"), b"").is_err(),
            "the copy is writable"
        );

        assert_eq!(
            backend
                .release_read_point(spec.id, &target, &scratch)
                .unwrap(),
            Effect::Changed
        );
        assert!(!is_mount_point(&scratch).unwrap());
        assert!(!backend.point_path(spec.id).exists());
        let serving: Vec<_> = loop_attachments()
            .unwrap()
            .into_iter()
            .filter(|a| a.backing_file.starts_with(&images))
            .collect();
        assert_eq!(
            serving.len(),
            1,
            "only the volume's own device: {serving:?}"
        );
        assert_eq!(
            backend
                .release_read_point(spec.id, &target, &scratch)
                .unwrap(),
            Effect::Unchanged
        );
        backend.unmount(spec.id, &target).unwrap();
        backend.remove(spec.id).unwrap();
    }

    #[test]
    fn an_ext4_read_point_on_an_xfs_root_is_a_reflinked_copy() {
        reflinked_read_point_does_not_hold_writers(Filesystem::Ext4);
    }

    #[test]
    fn an_xfs_read_point_on_an_xfs_root_is_a_reflinked_copy() {
        reflinked_read_point_does_not_hold_writers(Filesystem::Xfs);
    }

    fn a_clone_shares_blocks_and_has_its_own_identity(fs: Filesystem) {
        let Some(fx) = Fixture::new() else { return };
        let (backend, _) = backend_on_xfs(&fx);
        let source = sized_spec(fs);
        let source_mnt = fx.target("source");
        backend.create(&source).unwrap();
        backend.mount(&source, &source_mnt).unwrap();
        fs::write(source_mnt.join("data"), b"state at the clone").unwrap();

        let target = VolumeSpec {
            id: Uuid::new_v4(),
            ..source.clone()
        };
        assert_eq!(
            backend
                .clone_volume(&source, Some(&source_mnt), &target)
                .unwrap(),
            Some(Effect::Changed)
        );
        assert_eq!(
            backend
                .clone_volume(&source, Some(&source_mnt), &target)
                .unwrap(),
            Some(Effect::Unchanged)
        );
        assert!(!backend.temp_path(target.id).exists());
        // Mounted beside its source (XFS refuses a second mount of one UUID).
        let target_mnt = fx.target("clone");
        backend.mount(&target, &target_mnt).unwrap();
        assert_eq!(
            fs::read(target_mnt.join("data")).unwrap(),
            b"state at the clone"
        );
        fs::write(target_mnt.join("data"), b"the clone's own").unwrap();
        // The source is thawed, and neither sees the other's writes.
        fs::write(source_mnt.join("later"), b"after the clone").unwrap();
        assert_eq!(
            fs::read(source_mnt.join("data")).unwrap(),
            b"state at the clone"
        );
        assert!(!target_mnt.join("later").exists());
        let mut listed = backend.volumes().unwrap();
        listed.sort();
        let mut expected = vec![source.id, target.id];
        expected.sort();
        assert_eq!(listed, expected);

        backend.unmount(target.id, &target_mnt).unwrap();
        assert_eq!(backend.remove(target.id).unwrap(), Effect::Changed);
        backend.unmount(source.id, &source_mnt).unwrap();
        backend.remove(source.id).unwrap();
    }

    #[test]
    fn an_ext4_clone_on_an_xfs_root_shares_blocks() {
        a_clone_shares_blocks_and_has_its_own_identity(Filesystem::Ext4);
    }

    #[test]
    fn an_xfs_clone_on_an_xfs_root_shares_blocks_and_mounts_beside_its_source() {
        a_clone_shares_blocks_and_has_its_own_identity(Filesystem::Xfs);
    }

    #[test]
    fn a_clone_without_block_sharing_is_left_to_the_caller() {
        let Some(fx) = Fixture::new() else { return };
        let source = spec(Filesystem::Ext4, "64M");
        fx.backend.create(&source).unwrap();
        let target = VolumeSpec {
            id: Uuid::new_v4(),
            ..source.clone()
        };
        // /tmp is ext4: no reflink.
        assert_eq!(
            fx.backend.clone_volume(&source, None, &target).unwrap(),
            None
        );
        let bigger = VolumeSpec {
            size: Some("128M".parse().unwrap()),
            ..target.clone()
        };
        assert_eq!(
            fx.backend.clone_volume(&source, None, &bigger).unwrap(),
            None
        );
        assert_eq!(fx.backend.volumes().unwrap(), vec![source.id]);
        assert!(!fx.backend.temp_path(target.id).exists());
        fx.backend.remove(source.id).unwrap();
    }
}
