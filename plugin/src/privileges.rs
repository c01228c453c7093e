//! What the daemon cannot do with the privileges it runs with: probed at start, said in the
//! log ([`Privileges::warn_limits`]), never a reason to refuse to start. A daemon that only
//! serves directory volumes starts as any user; it then creates, lists and commits volumes,
//! and only what needs a privilege it lacks fails (with the reason logged at start).
//!
//! The probes are real: the effective user id (`geteuid`), the effective capability set
//! (`CapEff` in `/proc/self/status`) and opening `/dev/loop-control` and
//! `/dev/mapper/control` read-write as the backends do.

use std::fmt;
use std::path::Path;

use tracing::warn;

/// A Linux capability the daemon needs for something (numbers from `linux/capability.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// `CAP_CHOWN`: give files any owner.
    Chown,
    /// `CAP_SYS_ADMIN`: mount and unmount, device-mapper.
    SysAdmin,
}

impl Capability {
    /// The capability's bit in a capability set.
    fn bit(self) -> u32 {
        match self {
            Capability::Chown => 0,
            Capability::SysAdmin => 21,
        }
    }

    /// Its name as `capabilities(7)` and systemd's `AmbientCapabilities=` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Chown => "CAP_CHOWN",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
        }
    }
}

/// Whether a device node opens read-write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAccess {
    /// It opens.
    Opens,
    /// There is no such node.
    Missing,
    /// It exists and opening it failed, with the error.
    Refused(String),
}

impl DeviceAccess {
    /// Opens `path` read-write (and closes it again).
    pub fn probe(path: &Path) -> DeviceAccess {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(_) => DeviceAccess::Opens,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DeviceAccess::Missing,
            Err(e) => DeviceAccess::Refused(e.to_string()),
        }
    }
}

/// The loop devices' control node.
pub const LOOP_CONTROL: &str = "/dev/loop-control";
/// The device-mapper's control node (LVM thin volumes).
pub const MAPPER_CONTROL: &str = "/dev/mapper/control";

/// The privileges this process runs with, as probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    /// The effective user id.
    pub euid: u32,
    /// The effective capability set, or why it could not be read.
    pub capabilities: Result<u64, String>,
    /// Whether [`LOOP_CONTROL`] opens read-write.
    pub loop_control: DeviceAccess,
    /// Whether [`MAPPER_CONTROL`] opens read-write.
    pub mapper_control: DeviceAccess,
}

/// One thing the daemon cannot do here, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// What cannot be done, e.g. `bind-mount volumes`.
    pub feature: &'static str,
    /// What is missing, as probed, e.g. `CAP_SYS_ADMIN`.
    pub missing: Vec<String>,
    /// What fails because of it, and what still works.
    pub effect: &'static str,
    /// What to do.
    pub remedy: String,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {}: missing {}; {}; {}",
            self.feature,
            self.missing.join(" and "),
            self.effect,
            self.remedy
        )
    }
}

impl Privileges {
    /// Probes this process's privileges.
    pub fn probe() -> Privileges {
        let capabilities = std::fs::read_to_string("/proc/self/status")
            .map_err(|e| format!("/proc/self/status: {e}"))
            .and_then(|status| {
                effective_capabilities(&status)
                    .ok_or_else(|| "/proc/self/status has no readable CapEff line".to_string())
            });
        Privileges {
            euid: rustix::process::geteuid().as_raw(),
            capabilities,
            loop_control: DeviceAccess::probe(Path::new(LOOP_CONTROL)),
            mapper_control: DeviceAccess::probe(Path::new(MAPPER_CONTROL)),
        }
    }

    /// Whether the effective set holds `capability` (not when the set could not be read).
    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities
            .as_ref()
            .is_ok_and(|set| set & (1 << capability.bit()) != 0)
    }

    /// `capability` as missing, or nothing when it is there.
    fn lacking(&self, capability: Capability) -> Option<String> {
        if self.has(capability) {
            return None;
        }
        Some(match &self.capabilities {
            Ok(_) => capability.name().to_string(),
            Err(why) => format!(
                "{} (the effective capabilities are unknown: {why})",
                capability.name()
            ),
        })
    }

    /// Who the daemon runs as, for the remedies.
    fn who(&self) -> String {
        if self.euid == 0 {
            "root without all capabilities".to_string()
        } else {
            format!("uid {}, not root", self.euid)
        }
    }

    /// What the daemon cannot do with these privileges; empty for root with every
    /// capability it uses and the device nodes open.
    pub fn limits(&self) -> Vec<Limit> {
        let who = self.who();
        let mut limits = Vec::new();

        if let Some(missing) = self.lacking(Capability::SysAdmin) {
            limits.push(Limit {
                feature: "bind-mount volumes",
                missing: vec![missing],
                effect: "Docker cannot mount dvol volumes into containers (the plugin's Mount \
                         fails), while creating, listing and committing directory volumes \
                         work",
                remedy: format!(
                    "the daemon runs as {who}: run it as root or give it CAP_SYS_ADMIN \
                     (AmbientCapabilities=CAP_SYS_ADMIN in its systemd unit)"
                ),
            });
        }

        let mut loop_missing: Vec<String> =
            self.lacking(Capability::SysAdmin).into_iter().collect();
        match &self.loop_control {
            DeviceAccess::Opens => {}
            DeviceAccess::Missing => {
                loop_missing.push(format!("{LOOP_CONTROL} (no such device; `modprobe loop`)"))
            }
            DeviceAccess::Refused(why) => {
                loop_missing.push(format!("{LOOP_CONTROL} access ({LOOP_CONTROL}: {why})"))
            }
        }
        if !loop_missing.is_empty() {
            limits.push(Limit {
                feature: "attach loop devices",
                missing: loop_missing,
                effect: "the profiles of the loop backend (block volumes in image files) are \
                         unavailable",
                remedy: format!(
                    "the daemon runs as {who}: run it as root, or give it CAP_SYS_ADMIN and \
                     read-write access to {LOOP_CONTROL} and the /dev/loop* devices"
                ),
            });
        }

        let mut lvm_missing = Vec::new();
        if self.euid != 0 {
            lvm_missing.push(format!(
                "root (the lvm tools run as uid {} and need root)",
                self.euid
            ));
        }
        lvm_missing.extend(self.lacking(Capability::SysAdmin));
        if let DeviceAccess::Refused(why) = &self.mapper_control {
            lvm_missing.push(format!("{MAPPER_CONTROL} access ({MAPPER_CONTROL}: {why})"));
        }
        if !lvm_missing.is_empty() {
            limits.push(Limit {
                feature: "use LVM",
                missing: lvm_missing,
                effect: "the profiles of the LVM backend (thin volumes) are unavailable",
                remedy: format!(
                    "the daemon runs as {who}: run it as root with CAP_SYS_ADMIN to use LVM \
                     profiles"
                ),
            });
        }

        if let Some(missing) = self.lacking(Capability::Chown) {
            let effect = if self.euid == 0 {
                "restoring files that belong to other users (checkout, reset, pull, clones \
                 from history) fails"
            } else {
                "restored files (checkout, reset, pull, clones from history) belong to the \
                 daemon's user instead of their recorded owners"
            };
            limits.push(Limit {
                feature: "chown files",
                missing: vec![missing],
                effect,
                remedy: format!(
                    "the daemon runs as {who}: run it as root or give it CAP_CHOWN \
                     (AmbientCapabilities=CAP_CHOWN in its systemd unit)"
                ),
            });
        }
        limits
    }

    /// Logs each of [`Privileges::limits`] as a warning of its own; returns them.
    pub fn warn_limits(&self) -> Vec<Limit> {
        let limits = self.limits();
        for limit in &limits {
            warn!(
                euid = self.euid,
                feature = limit.feature,
                missing = %limit.missing.join(", "),
                "{limit}"
            );
        }
        limits
    }
}

/// The effective capability set from the text of `/proc/<pid>/status` (its `CapEff:` line,
/// in hex).
pub fn effective_capabilities(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = 0x0000_01ff_ffff_ffff;

    fn root() -> Privileges {
        Privileges {
            euid: 0,
            capabilities: Ok(ALL),
            loop_control: DeviceAccess::Opens,
            mapper_control: DeviceAccess::Missing,
        }
    }

    fn features(p: &Privileges) -> Vec<&'static str> {
        p.limits().iter().map(|l| l.feature).collect()
    }

    #[test]
    fn the_effective_set_is_read_from_the_status_text() {
        let status = "Name:\tdvol\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
                      CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(effective_capabilities(status), Some(0x1fffeffffff));
        assert_eq!(
            effective_capabilities("CapEff:\t0000000000000000\n"),
            Some(0)
        );
        assert_eq!(effective_capabilities("CapPrm:\t01\n"), None);
        assert_eq!(effective_capabilities("CapEff:\tzz\n"), None);
    }

    #[test]
    fn root_with_every_capability_has_no_limits() {
        assert!(root().limits().is_empty(), "{:?}", root().limits());
        // Without device-mapper's node LVM is a matter of the host, which its profiles' probe
        // reports, not of privileges.
        let mut p = root();
        p.mapper_control = DeviceAccess::Opens;
        assert!(p.limits().is_empty());
    }

    #[test]
    fn a_plain_user_is_told_each_thing_it_cannot_do_and_what_to_do() {
        let nobody = Privileges {
            euid: 65534,
            capabilities: Ok(0),
            loop_control: DeviceAccess::Refused("Permission denied (os error 13)".into()),
            mapper_control: DeviceAccess::Missing,
        };
        let limits = nobody.limits();
        assert_eq!(
            features(&nobody),
            [
                "bind-mount volumes",
                "attach loop devices",
                "use LVM",
                "chown files"
            ]
        );
        let text: Vec<String> = limits.iter().map(ToString::to_string).collect();
        assert!(text[0].contains("missing CAP_SYS_ADMIN"), "{}", text[0]);
        assert!(text[0].contains("run it as root or give it CAP_SYS_ADMIN"));
        assert!(text[0].contains("uid 65534"));
        assert!(
            text[1].contains("/dev/loop-control: Permission denied"),
            "{}",
            text[1]
        );
        assert!(
            text[2].contains("root (the lvm tools run as uid 65534"),
            "{}",
            text[2]
        );
        assert!(text[3].contains("missing CAP_CHOWN"), "{}", text[3]);
        assert!(
            text[3].contains("instead of their recorded owners"),
            "{}",
            text[3]
        );
    }

    #[test]
    fn each_missing_piece_is_found_on_its_own() {
        let mut p = root();
        p.capabilities = Ok(ALL & !(1 << 21));
        assert_eq!(
            features(&p),
            ["bind-mount volumes", "attach loop devices", "use LVM"]
        );

        let mut p = root();
        p.capabilities = Ok(ALL & !1);
        assert_eq!(features(&p), ["chown files"]);
        assert!(p.limits()[0].effect.contains("fails"));

        let mut p = root();
        p.loop_control = DeviceAccess::Missing;
        assert_eq!(features(&p), ["attach loop devices"]);
        assert!(p.limits()[0].missing[0].contains("modprobe loop"));

        let mut p = root();
        p.mapper_control = DeviceAccess::Refused("Permission denied".into());
        assert_eq!(features(&p), ["use LVM"]);

        // A user with the capabilities given (as AmbientCapabilities= does) still cannot run
        // the lvm tools, and can do the rest.
        let mut p = root();
        p.euid = 1000;
        assert_eq!(features(&p), ["use LVM"]);
    }

    #[test]
    fn unknown_capabilities_count_as_missing_and_say_why() {
        let mut p = root();
        p.capabilities = Err("/proc/self/status: No such file or directory".into());
        assert_eq!(
            features(&p),
            [
                "bind-mount volumes",
                "attach loop devices",
                "use LVM",
                "chown files"
            ]
        );
        assert!(p.limits()[0].missing[0].contains("unknown: /proc/self/status"));
    }

    #[test]
    fn the_probe_reads_this_process() {
        let p = Privileges::probe();
        assert_eq!(p.euid, rustix::process::geteuid().as_raw());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(p.capabilities, Ok(effective_capabilities(&status).unwrap()));
        assert_eq!(
            p.loop_control,
            DeviceAccess::probe(Path::new(LOOP_CONTROL)),
            "the probe is repeatable"
        );
    }
}
