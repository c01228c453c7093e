//! Several test hosts on one machine, each in a network namespace of its own.
//!
//! A [`Topology`] makes one namespace per host and a hub namespace holding a bridge; a veth
//! pair joins each host to the bridge. The hosts get `10.77.0.1`, `10.77.0.2`, ... (`/24`), in
//! the order named, and the hub's bridge `10.77.0.254`; `lo` is up everywhere. The addresses
//! exist only inside the topology's namespaces: the root namespace cannot reach them, and two
//! topologies (of tests running in parallel) never see each other.
//!
//! Namespaces are named `dvt-<pid>-<n>-hub` and `dvt-<pid>-<n>-<host>`, with the test process's
//! pid and a counter of the topologies it made. Dropping the topology deletes them (and with
//! them the veths); a new topology first deletes those of test processes that are gone.
//!
//! Processes of the test run in a host through [`Host::command`], which uses `nsenter --net`:
//! unlike `ip netns exec`, it changes the network namespace only, so mounts a daemon makes
//! there stay visible to the rest of the machine.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{is_root, require};

/// A command that runs `program` in network namespace `netns` (its `/run/netns/NAME` file),
/// through `nsenter --net=NETNS --`, which execs it (the child's pid is the program's; its
/// mounts stay in the engine's mount namespace, unlike under `ip netns exec`); in this
/// process's namespace where `netns` is `None`.
pub fn command_in(netns: Option<&Path>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match netns {
        Some(netns) => {
            let mut command = Command::new("nsenter");
            command
                .arg(format!("--net={}", netns.display()))
                .arg("--")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Topologies this process made, for unique namespace names.
static MADE: AtomicUsize = AtomicUsize::new(0);

/// The prefix of every namespace a topology makes.
const PREFIX: &str = "dvt-";

/// Whether network namespaces can be made here: root, with `ip`, `nsenter` and `tc`.
pub fn available() -> bool {
    is_root() && runs("ip", "-V") && runs("nsenter", "--version") && runs("tc", "-V")
}

/// Whether `program arg` (e.g. `--version`) runs and succeeds.
pub(crate) fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs `program` (`ip`, `tc`, `mount`, ...) with `args`; panics naming the command and its
/// stderr unless it succeeds. Returns stdout.
pub(crate) fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program} {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespaces `ip netns list` shows.
fn namespaces() -> Vec<String> {
    run("ip", &["netns", "list"])
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Deletes the `dvt-<pid>-*` namespaces whose process is gone.
fn delete_stale() {
    for name in namespaces() {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            // Another test process may be deleting it at the same time.
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}

/// One test host: a network namespace with an address on the topology's bridge.
#[derive(Debug, Clone)]
pub struct Host {
    name: String,
    netns: String,
    addr: Ipv4Addr,
    /// The hub's end of the host's veth pair (in the hub namespace).
    hub_end: String,
}

impl Host {
    /// The name the test gave the host.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's address on the bridge.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The name of the host's namespace (for `ip -n`).
    pub fn netns_name(&self) -> &str {
        &self.netns
    }

    /// The namespace's file, `/run/netns/<name>` (for `nsenter --net=`).
    pub fn netns(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns)
    }

    /// A command that runs `program` in the host's network namespace ([`command_in`]).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        command_in(Some(&self.netns()), program)
    }
}

/// Test hosts joined by a bridge, each in its own network namespace; deleted when dropped.
#[derive(Debug)]
pub struct Topology {
    hub: String,
    hosts: Vec<Host>,
}

impl Topology {
    /// The address of the hub's bridge.
    pub const HUB_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);

    /// Makes the hosts `names` (at most 253), each with an address in `10.77.0.0/24` in the
    /// order named. Panics naming the `ip` command that failed and its stderr.
    pub fn new(names: &[&str]) -> Topology {
        assert!(names.len() <= 253, "at most 253 hosts");
        delete_stale();
        let stem = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::SeqCst)
        );
        let hub = format!("{stem}-hub");
        // Made first, so that a panic below deletes what exists so far.
        let mut topology = Topology {
            hub: hub.clone(),
            hosts: Vec::new(),
        };
        run("ip", &["netns", "add", &hub]);
        run("ip", &["-n", &hub, "link", "set", "lo", "up"]);
        run("ip", &["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        let hub_cidr = format!("{}/24", Self::HUB_ADDR);
        run("ip", &["-n", &hub, "addr", "add", &hub_cidr, "dev", "br0"]);
        run("ip", &["-n", &hub, "link", "set", "br0", "up"]);
        for (index, name) in names.iter().enumerate() {
            let netns = format!("{stem}-{name}");
            let addr = Ipv4Addr::new(10, 77, 0, index as u8 + 1);
            let hub_end = format!("vh{index}");
            run("ip", &["netns", "add", &netns]);
            topology.hosts.push(Host {
                name: name.to_string(),
                netns: netns.clone(),
                addr,
                hub_end: hub_end.clone(),
            });
            run("ip", &["-n", &netns, "link", "set", "lo", "up"]);
            run(
                "ip",
                &[
                    "-n", &hub, "link", "add", &hub_end, "type", "veth", "peer", "name", "eth0",
                    "netns", &netns,
                ],
            );
            run(
                "ip",
                &["-n", &hub, "link", "set", &hub_end, "master", "br0", "up"],
            );
            let cidr = format!("{addr}/24");
            run("ip", &["-n", &netns, "addr", "add", &cidr, "dev", "eth0"]);
            run("ip", &["-n", &netns, "link", "set", "eth0", "up"]);
        }
        topology
    }

    /// For a test: [`Topology::new`], or `None` when the test skips because network
    /// namespaces cannot be made here (see [`require`]).
    pub fn for_test(names: &[&str]) -> Option<Topology> {
        require("network namespaces (root, ip, nsenter, tc)", available())
            .then(|| Topology::new(names))
    }

    /// The host named `name`; panics if there is none.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no test host named {name:?}"))
    }

    /// Every host, in the order named.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The names of the topology's namespaces (the hub's first).
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.hub.clone())
            .chain(self.hosts.iter().map(|h| h.netns.clone()))
            .collect()
    }

    /// A command that runs `program` in the hub's network namespace, which holds the bridge
    /// at [`Topology::HUB_ADDR`] (for a service every host reaches, such as etcd).
    pub fn hub_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        command_in(Some(&Path::new("/run/netns").join(&self.hub)), program)
    }

    /// Cuts `host` off the bridge (its veth down): it reaches no other host, nor the hub.
    pub fn cut(&self, host: &str) {
        let host = self.host(host);
        run("ip", &["-n", &host.netns, "link", "set", "eth0", "down"]);
    }

    /// Joins `host` to the bridge again after [`Topology::cut`].
    pub fn mend(&self, host: &str) {
        let host = self.host(host);
        run("ip", &["-n", &host.netns, "link", "set", "eth0", "up"]);
    }

    /// Limits the traffic to and from `host` to `rate` (a `tc` rate such as `100mbit`) with a
    /// token bucket (`tc qdisc ... tbf`) on both ends of its veth pair.
    pub fn shape(&self, host: &str, rate: &str) {
        let host = self.host(host);
        for (netns, dev) in [(&self.hub, host.hub_end.as_str()), (&host.netns, "eth0")] {
            run(
                "tc",
                &[
                    "-n", netns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
                    "burst", "256kb", "latency", "100ms",
                ],
            );
        }
    }
}

impl Drop for Topology {
    /// Deletes the namespaces; the veths go with them. Reports (on stderr) a namespace that
    /// could not be deleted.
    fn drop(&mut self) {
        for netns in self.namespaces() {
            let out = Command::new("ip").args(["netns", "del", &netns]).output();
            match out {
                Ok(out) if out.status.success() => {}
                Ok(out) => eprintln!(
                    "`ip netns del {netns}` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => eprintln!("cannot run `ip netns del {netns}`: {e}"),
            }
        }
    }
}
