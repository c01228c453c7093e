//! Mount ids no container holds any more.
//!
//! The engine sends no Unmount for the containers of a crash (its own, or a kill of them), and
//! a failed Unmount leaves its id recorded while the engine forgets the mount; either way the
//! volume would stay "in use" for good. So at start, and when a remove is refused as in use,
//! the engine is asked which containers still use the volume. If none does, and the kernel
//! shows no mount of the volume's data besides its own mountpoint (a container's mount
//! namespace holds one while it runs), the ids are dropped and the volume unmounted. Without
//! a reachable engine nothing is dropped.
//!
//! Only ids the engine made are dropped: Docker names each container mount point with 64 hex
//! digits. An id of another shape comes from a client speaking the plugin protocol by hand,
//! with no container behind it, so the engine's answer says nothing about it; it is kept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use tracing::{info, warn};

use super::VolumeService;
use crate::error::ForVolume;
use crate::names::{Suffix, VolumeRef};
use crate::volume::{Volume, VolumeState};

impl VolumeService {
    /// Drops the mount ids of every volume that no container uses any more; run at start,
    /// once the container engine is known.
    pub fn drop_all_stale_mounts(&self) {
        for volume in self.list() {
            if volume.in_use() && volume.state == VolumeState::Ready {
                let lock = self.locks.get(&volume.name);
                let _guard = lock.hold();
                let reference = VolumeRef {
                    name: volume.name.clone(),
                    suffix: Suffix::None,
                };
                if let Ok(volume) = self.find(&reference) {
                    if let Asked::Unreachable = self.drop_stale_mounts(volume).1 {
                        // Asked once: each further volume would wait as long again.
                        return;
                    }
                }
            }
        }
    }

    /// Drops `volume`'s mount ids if the engine lists no container using it and the kernel
    /// shows no other mount of its data; answers the volume as recorded afterwards, and
    /// whether the engine answered. The caller holds the name lock.
    pub(super) fn drop_stale_mounts(&self, volume: Volume) -> (Volume, Asked) {
        if !volume.mounts.keys().any(|id| engine_made(id)) {
            return (volume, Asked::NotNeeded);
        }
        match self
            .containers
            .running_users_blocking(&self.docker_names(&volume))
        {
            Err(e) => {
                info!(volume = %volume.name, error = %e, "cannot ask the container engine which containers use the volume; keeping its mount ids");
                return (volume, Asked::Unreachable);
            }
            Ok(users) if !users.is_empty() => {
                let names = users.into_iter().map(|c| c.name).collect();
                return (volume, Asked::Answered(names));
            }
            Ok(_) => {}
        }
        (self.drop_unused_mounts(volume), Asked::Answered(Vec::new()))
    }

    /// Drops the engine's mount ids of `volume`, which no container uses, unless the kernel
    /// shows its data mounted elsewhere.
    fn drop_unused_mounts(&self, volume: Volume) -> Volume {
        let mountpoint = self.layout.mountpoint(volume.id);
        match mounted_elsewhere(&mountpoint) {
            Ok(false) => {}
            Ok(true) => {
                info!(volume = %volume.name, "no container uses the volume, but the kernel shows its data mounted elsewhere; keeping its mount ids");
                return volume;
            }
            Err(e) => {
                warn!(volume = %volume.name, error = %e, "cannot read the kernel's mount tables; keeping its mount ids");
                return volume;
            }
        }
        let (stale, kept): (BTreeMap<_, _>, BTreeMap<_, _>) = volume
            .mounts
            .clone()
            .into_iter()
            .partition(|(id, _)| engine_made(id));
        if let Err(e) = self.metadata.set_mounts(volume.id, &kept) {
            warn!(volume = %volume.name, error = %e, "could not drop stale mount ids");
            return volume;
        }
        info!(volume = %volume.name, ids = ?stale.keys().collect::<Vec<_>>(), "no container uses the volume any more: dropped its stale mount ids");
        let volume = Volume {
            mounts: kept,
            ..volume
        };
        if !volume.in_use() {
            let unmounted = self
                .backend(&volume)
                .and_then(|b| b.unmount(volume.id, &mountpoint).for_volume(&volume.name));
            match unmounted {
                Ok(_) => self.log_released(&volume),
                Err(e) => {
                    warn!(volume = %volume.name, error = %e, "could not unmount after dropping stale mount ids; the next start unmounts it")
                }
            }
        }
        self.publish(volume.clone());
        volume
    }
}

/// Whether the Docker Engine made mount id `id`: 64 hex digits, like every container mount
/// point's id.
fn engine_made(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether [`VolumeService::drop_stale_mounts`] reached the container engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Asked {
    /// The volume holds no id the engine made: nothing to ask.
    NotNeeded,
    /// The engine answered: the running containers that use the volume, by name.
    Answered(Vec<String>),
    /// The engine could not be reached.
    Unreachable,
}

/// One line of a `mountinfo` table: the device, the root of the mount within its
/// filesystem, and where it is mounted.
struct MountInfo {
    device: String,
    root: String,
    mount_point: String,
}

/// Parses `/proc/PID/mountinfo`.
fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let device = fields.nth(2)?;
            let root = fields.next()?;
            let mount_point = fields.next()?;
            Some(MountInfo {
                device: device.to_string(),
                root: unescape(root),
                mount_point: unescape(mount_point),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `root` (a mount's root within its filesystem) lies at or below `top`.
fn within(root: &str, top: &str) -> bool {
    top == "/" || root == top || root.strip_prefix(top).is_some_and(|r| r.starts_with('/'))
}

/// Whether the data mounted at `mountpoint` is mounted anywhere else, in any mount namespace
/// of any process: a running container holds the volume's data at its own path. Copies of
/// `mountpoint` itself (a namespace cloned from this one) do not count. `false` when
/// `mountpoint` is not mounted.
pub(super) fn mounted_elsewhere(mountpoint: &Path) -> std::io::Result<bool> {
    let ours = mountpoint.to_string_lossy();
    let own = std::fs::read_to_string("/proc/self/mountinfo")?;
    let Some(volume) = parse_mountinfo(&own)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == ours)
    else {
        return Ok(false);
    };
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let pid = entry.path();
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        // One read per mount namespace; a process that exits meanwhile is skipped.
        let Ok(namespace) = std::fs::read_link(pid.join("ns/mnt")) else {
            continue;
        };
        if !seen.insert(namespace) {
            continue;
        }
        let Ok(table) = std::fs::read_to_string(pid.join("mountinfo")) else {
            continue;
        };
        let other = parse_mountinfo(&table).into_iter().any(|m| {
            m.device == volume.device && within(&m.root, &volume.root) && m.mount_point != ours
        });
        if other {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_and_unescaped() {
        let table = parse_mountinfo(
            "36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n",
        );
        assert_eq!(table.len(), 1);
        assert_eq!(
            (&*table[0].device, &*table[0].root, &*table[0].mount_point),
            ("98:0", "/mnt1", "/mnt two")
        );
        assert!(within("/a/b", "/a") && within("/a", "/a") && within("/x", "/"));
        assert!(!within("/ab", "/a"));
    }

    #[test]
    fn a_second_mount_of_the_same_data_counts_as_a_user() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: bind mounts need root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let [data, mountpoint, other] = ["data", "mnt", "other"].map(|d| tmp.path().join(d));
        for dir in [&data, &mountpoint, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        std::fs::create_dir(data.join("sub")).unwrap();
        assert!(!mounted_elsewhere(&mountpoint).unwrap(), "not mounted yet");
        let run = |args: &[&Path]| {
            let ok = std::process::Command::new(args[0])
                .args(&args[1..])
                .status()
                .unwrap();
            assert!(ok.success(), "{args:?}");
        };
        let bind =
            |from: &Path, to: &Path| run(&[Path::new("mount"), Path::new("--bind"), from, to]);
        let unmount = |at: &Path| run(&[Path::new("umount"), at]);
        bind(&data, &mountpoint);
        assert!(!mounted_elsewhere(&mountpoint).unwrap());
        bind(&data.join("sub"), &other);
        assert!(mounted_elsewhere(&mountpoint).unwrap());
        unmount(&other);
        assert!(!mounted_elsewhere(&mountpoint).unwrap());
        unmount(&mountpoint);
    }
}
