//! `LOOP_CONFIGURE` (Linux 5.8): attaching an image to a loop device with its flags in one
//! call, which loopdev-3 does not offer.
//!
//! With `backends/src/freeze.rs`, the only `unsafe` in the crate: rustix has the ioctl
//! machinery but no wrapper for this call, and loopdev-3 exposes its device's descriptor only
//! as a raw one.

#![allow(unsafe_code)]

use std::fs::File;

use loopdev::LoopDevice;
use rustix::io::Errno;

/// The logical block size of every loop device dvol attaches: the kernel's default without
/// direct I/O. Left to the kernel (0), direct I/O takes the backing file's direct-I/O
/// alignment, and then a filesystem made with 1 KiB blocks (ext4 under 512 MiB) does not
/// mount ("bad block size 1024"; seen with read-only reflinked read-point copies on XFS).
const BLOCK_SIZE: u32 = 512;

/// `LOOP_CONFIGURE`: attaches `file` to the free `device` with `flags` (`LO_FLAGS_*`) and
/// 512-byte logical blocks.
pub(super) fn configure(device: &LoopDevice, file: &File, flags: u32) -> rustix::io::Result<()> {
    use linux_raw_sys::loop_device::{loop_config, loop_info64, LOOP_CONFIGURE};
    use std::os::fd::{AsRawFd, BorrowedFd};
    let Ok(fd) = u32::try_from(file.as_raw_fd()) else {
        return Err(Errno::BADF);
    };
    let config = loop_config {
        fd,
        block_size: BLOCK_SIZE,
        info: loop_info64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: flags,
            lo_file_name: [0; 64],
            lo_crypt_name: [0; 64],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        __reserved: [0; 8],
    };
    // SAFETY: `device` owns this descriptor and outlives the borrow, which ends with this
    // call.
    let device_fd = unsafe { BorrowedFd::borrow_raw(device.as_raw_fd()) };
    // SAFETY: LOOP_CONFIGURE takes a pointer to a `struct loop_config`, which is what
    // `linux_raw_sys` declares from the kernel's header; the kernel only reads it.
    let call =
        unsafe { rustix::ioctl::Setter::<{ LOOP_CONFIGURE as _ }, loop_config>::new(config) };
    // SAFETY: the opcode and its argument agree (above); the call changes no memory of ours.
    unsafe { rustix::ioctl::ioctl(device_fd, call) }
}
