//! The checks of this host that need no daemon: privileges, loop devices, mkfs tools, the
//! Docker Engine, the plugin directory and socket, the state root's lock and free space.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use dvol_backends::command::{Tool, SEARCH_DIRS};
use dvol_plugin::privileges::{DeviceAccess, Privileges, LOOP_CONTROL};
use rustix::fs::{flock, FlockOperation};

use super::report::Check;
use super::socket;
use crate::render::format::human_bytes;

/// Where the Docker Engine looks for volume plugin sockets.
pub const PLUGIN_DIR: &str = "/run/docker/plugins";

/// The Docker Engine's socket when `DOCKER_HOST` names none.
const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// Free space below which the state root's filesystem is a warning: this much...
const LOW_SPACE_BYTES: u64 = 1 << 30;
/// ... or this share of it, in percent.
const LOW_SPACE_PERCENT: u64 = 10;

/// What a daemon with this process's privileges could not do: the probe and the words of
/// the daemon's own start-up warnings ([`Privileges::limits`]), one line for all of them.
pub fn privileges() -> Check {
    const NAME: &str = "privileges";
    let probed = Privileges::probe();
    let limits = probed.limits();
    if limits.is_empty() {
        return Check::ok(
            NAME,
            format!(
                "uid {} with the capabilities the daemon uses (CAP_SYS_ADMIN, CAP_CHOWN)",
                probed.euid
            ),
        );
    }
    let detail = limits
        .iter()
        .map(|l| format!("cannot {} (missing {})", l.feature, l.missing.join(" and ")))
        .collect::<Vec<_>>()
        .join("; ");
    Check::fail(
        NAME,
        format!("uid {}: {detail}", probed.euid),
        "the daemon mounts volumes and attaches loop devices, so it runs as root: start it with \
         `sudo dvol daemon`, and run `sudo dvol doctor` to check this host as the daemon sees it",
    )
}

/// Whether [`LOOP_CONTROL`] opens for reading and writing, as the loop backend opens it.
pub fn loop_control() -> Check {
    const NAME: &str = "loop-control";
    match DeviceAccess::probe(Path::new(LOOP_CONTROL)) {
        DeviceAccess::Opens => Check::ok(NAME, format!("{LOOP_CONTROL} opens")),
        DeviceAccess::Missing => Check::fail(
            NAME,
            format!("{LOOP_CONTROL} does not exist, so loop profiles are unavailable"),
            "load the loop module with `modprobe loop` (in a container, pass `--device \
             /dev/loop-control` and the /dev/loopN devices)",
        ),
        DeviceAccess::Refused(why) => Check::fail(
            NAME,
            format!("cannot open {LOOP_CONTROL}: {why}"),
            "run the daemon as root (`sudo dvol daemon`); in a container, also allow the loop \
             devices (`--privileged`, or `--device /dev/loop-control`)",
        ),
    }
}

/// Whether `mkfs.ext4` and `mkfs.xfs` are where the daemon looks for them.
pub fn mkfs() -> Vec<Check> {
    [("mkfs.ext4", "e2fsprogs"), ("mkfs.xfs", "xfsprogs")]
        .into_iter()
        .map(|(name, package)| match Tool::find(name, package) {
            Ok(tool) => Check::ok(name, format!("found at {}", tool.path().display())),
            Err(_) => Check::fail(
                name,
                format!(
                    "not found in {} (the daemon looks there, not on $PATH), so volumes of a \
                     block profile with that filesystem cannot be made",
                    SEARCH_DIRS.join(":")
                ),
                format!(
                    "install it: `apt-get install {package}` (dnf and zypper call the package {package} too)"
                ),
            ),
        })
        .collect()
}

/// The Docker Engine's socket, as the daemon finds it: `DOCKER_HOST` if it names a unix
/// socket, else `/var/run/docker.sock`; `Err` with `DOCKER_HOST` when it names something else.
fn docker_socket() -> Result<PathBuf, String> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => Ok(PathBuf::from(path)),
            None => Err(host),
        },
        _ => Ok(PathBuf::from(DOCKER_SOCKET)),
    }
}

/// Whether the Docker Engine answers `GET /_ping`.
pub fn docker() -> Check {
    const NAME: &str = "docker";
    let path = match docker_socket() {
        Ok(path) => path,
        Err(host) => {
            return Check::warn(
                NAME,
                format!("DOCKER_HOST={host} is not a unix socket, so it is not checked"),
                "check the engine with `docker version`; the daemon uses DOCKER_HOST as given",
            )
        }
    };
    match socket::request(&path, "GET", "/_ping") {
        Ok(answer) if answer.status == 200 && answer.body.contains("OK") => Check::ok(
            NAME,
            format!("the Docker Engine answers on {}", path.display()),
        ),
        Ok(answer) => Check::fail(
            NAME,
            format!(
                "{} answers GET /_ping with status {}, not as the Docker Engine",
                path.display(),
                answer.status
            ),
            "start the Docker Engine (`systemctl start docker`), or set DOCKER_HOST to the socket it serves",
        ),
        Err(e) => Check::fail(
            NAME,
            format!("the Docker Engine does not answer on {}: {e}", path.display()),
            "start it with `systemctl start docker` (or set DOCKER_HOST to the socket it serves)",
        ),
    }
}

/// Whether the directory where the Docker Engine finds plugin sockets exists.
pub fn plugin_dir() -> Check {
    const NAME: &str = "plugin-dir";
    match std::fs::metadata(PLUGIN_DIR) {
        Ok(meta) if meta.is_dir() => Check::ok(NAME, format!("{PLUGIN_DIR} exists")),
        Ok(_) => Check::fail(
            NAME,
            format!("{PLUGIN_DIR} is not a directory, so the Docker Engine finds no plugin there"),
            format!("remove it (`rm {PLUGIN_DIR}`) and restart the Docker Engine and `dvol daemon`"),
        ),
        Err(e) => Check::fail(
            NAME,
            format!("{PLUGIN_DIR}: {e}; the Docker Engine finds volume plugins by their socket there"),
            "start the Docker Engine (`systemctl start docker`), then `dvol daemon`, which puts its socket there",
        ),
    }
}

/// Whether the dvol plugin socket answers `POST /Plugin.Activate` as a volume driver, and
/// lies where the Docker Engine looks.
pub fn plugin_socket(path: &Path) -> Check {
    const NAME: &str = "plugin-socket";
    let shown = path.display();
    match socket::request(path, "POST", "/Plugin.Activate") {
        Ok(answer) if answer.status == 200 && answer.body.contains("VolumeDriver") => {
            if path.parent() == Some(Path::new(PLUGIN_DIR)) {
                Check::ok(NAME, format!("{shown} answers /Plugin.Activate as a volume driver"))
            } else {
                Check::warn(
                    NAME,
                    format!(
                        "{shown} answers /Plugin.Activate, but lies outside {PLUGIN_DIR}, where \
                         the Docker Engine does not look"
                    ),
                    format!(
                        "start the daemon with a --plugin-socket in {PLUGIN_DIR} (the default is \
                         {PLUGIN_DIR}/dvol.sock) so that `docker volume create -d dvol` finds it"
                    ),
                )
            }
        }
        Ok(answer) => Check::fail(
            NAME,
            format!(
                "{shown} answers /Plugin.Activate with status {}, not as a volume driver",
                answer.status
            ),
            "another program holds that socket: stop it, or give `dvol daemon --plugin-socket` another name in the plugin directory",
        ),
        Err(e) => Check::fail(
            NAME,
            format!("nothing answers /Plugin.Activate on {shown}: {e}"),
            "start the daemon with `dvol daemon` (or give doctor the --plugin-socket it was started with)",
        ),
    }
}

/// Who holds the state root's lock (`ROOT/daemon.lock`, see the daemon's root lock):
/// `daemon_answers` tells whether a daemon answered the REST API, so that a lock nobody holds
/// can say that daemon runs on another root.
///
/// It asks with a shared `flock` that it drops at once: held by a daemon, the lock refuses
/// it; free, it is given back within microseconds, too short to be in a starting daemon's
/// way.
pub fn root_lock(root: &Path, daemon_answers: bool) -> Check {
    const NAME: &str = "root-lock";
    let lock = root.join("daemon.lock");
    let elsewhere = if daemon_answers {
        " (the daemon that answers runs on another state root)"
    } else {
        ""
    };
    let pass_root = format!(
        "start a daemon with `dvol daemon --root {}`, or give doctor --root the state root the \
         daemon was started with",
        root.display()
    );
    let file = match File::open(&lock) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Check::warn(
                NAME,
                format!(
                    "{} does not exist: no daemon has run on {}{elsewhere}",
                    lock.display(),
                    root.display()
                ),
                pass_root,
            )
        }
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot open {}: {e}", lock.display()),
                "run doctor as the daemon's user: `sudo dvol doctor`",
            )
        }
    };
    loop {
        match flock(&file, FlockOperation::NonBlockingLockShared) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let holder = match recorded_pid(file) {
                    Some(pid) => format!("the dvol daemon with pid {pid}"),
                    None => "a dvol daemon (its pid is not recorded yet)".to_string(),
                };
                return Check::ok(NAME, format!("{} is held by {holder}", lock.display()));
            }
            Err(e) => {
                return Check::fail(
                    NAME,
                    format!("cannot test the lock {}: {e}", lock.display()),
                    "run doctor as the daemon's user: `sudo dvol doctor`",
                )
            }
            Ok(()) => {
                drop(file);
                return Check::warn(
                    NAME,
                    format!(
                        "no daemon holds {}, so none runs on {}{elsewhere}",
                        lock.display(),
                        root.display()
                    ),
                    pass_root,
                );
            }
        }
    }
}

/// The pid a lock file records.
fn recorded_pid(mut file: File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Free space on the filesystem of the state root (or, where it does not exist yet, of its
/// nearest existing parent): a warning below 10 % or 1 GiB, a failure when none is left.
pub fn root_space(root: &Path) -> Check {
    const NAME: &str = "root-space";
    let measured = root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let stat = match rustix::fs::statvfs(measured) {
        Ok(stat) => stat,
        Err(e) => {
            return Check::fail(
                NAME,
                format!(
                    "cannot measure the filesystem of {}: {e}",
                    measured.display()
                ),
                "run doctor as the daemon's user: `sudo dvol doctor`",
            )
        }
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let total = stat.f_blocks.saturating_mul(stat.f_frsize);
    space_check(NAME, measured, free, total)
}

/// The verdict on `free` of `total` bytes on the filesystem of `path`.
fn space_check(name: &str, path: &Path, free: u64, total: u64) -> Check {
    let percent = (free as u128 * 100).checked_div(total as u128).unwrap_or(0);
    let detail = format!(
        "{} free of {} ({percent} %) on the filesystem of {}",
        human_bytes(free),
        human_bytes(total),
        path.display()
    );
    let make_room = "make room there: remove volumes no one needs (`dvol volume rm`), delete \
                     unreferenced history (`dvol gc`), or move the state root to a larger \
                     filesystem (`dvol daemon --root`)";
    if free == 0 {
        Check::fail(
            name,
            format!("{detail}: full, so creates and mounts fail"),
            make_room,
        )
    } else if free < LOW_SPACE_BYTES
        || (free as u128 * 100) < (total as u128 * LOW_SPACE_PERCENT as u128)
    {
        Check::warn(
            name,
            format!("{detail}: below {LOW_SPACE_PERCENT} % or 1 GiB"),
            make_room,
        )
    } else {
        Check::ok(name, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::Status;
    use super::*;

    #[test]
    fn little_room_warns_and_none_fails() {
        let path = Path::new("/var/lib/dvol");
        let gib = 1u64 << 30;
        let status = |free, total| space_check("root-space", path, free, total).status;
        assert_eq!(status(50 * gib, 100 * gib), Status::Ok);
        assert_eq!(status(9 * gib, 100 * gib), Status::Warn);
        assert_eq!(status(gib / 2, 2 * gib), Status::Warn);
        assert_eq!(status(0, 100 * gib), Status::Fail);
        assert_eq!(status(0, 0), Status::Fail);
    }

    #[test]
    fn the_root_lock_is_held_while_a_daemon_holds_it_and_free_after() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let missing = root_lock(&root, false);
        assert_eq!(missing.status, Status::Warn, "{missing:?}");
        let held = dvol_plugin::root_lock::RootLock::take(&root).unwrap();
        let check = root_lock(&root, true);
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(
            check
                .detail
                .contains(&format!("pid {}", std::process::id())),
            "{check:?}"
        );
        drop(held);
        let free = root_lock(&root, true);
        assert_eq!(free.status, Status::Warn, "{free:?}");
        assert!(free.detail.contains("another state root"), "{free:?}");
    }
}
