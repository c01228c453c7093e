//! A real etcd for the cluster tests ([`Etcd`]): Debian's `etcd-server`, on the hub of a test
//! topology (every test host reaches it on the bridge), with a data directory of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::netns::{command_in, runs, Topology};
use crate::require;

/// The client port etcd listens on, at [`Topology::HUB_ADDR`].
pub const CLIENT_PORT: u16 = 2379;

/// Whether etcd and etcdctl are installed.
pub fn available() -> bool {
    runs("etcd", "--version") && runs("etcdctl", "version")
}

/// An etcd server in a topology's hub namespace (or on loopback); stopped (and its data
/// removed) when dropped.
pub struct Etcd {
    dir: tempfile::TempDir,
    /// The network namespace it runs in; `None`: this process's.
    netns: Option<PathBuf>,
    /// Its client address.
    host: std::net::Ipv4Addr,
    port: u16,
    child: Option<Child>,
}

impl Etcd {
    /// For a test: etcd started in `topology`'s hub, or `None` when the test skips because
    /// etcd is not installed (see [`require`]).
    pub fn for_test(topology: &Topology) -> Option<Etcd> {
        if !require("etcd (etcd-server, etcd-client)", available()) {
            return None;
        }
        Some(Etcd::launch(
            Some(hub_netns(topology)),
            Topology::HUB_ADDR,
            CLIENT_PORT,
        ))
    }

    /// etcd on 127.0.0.1:`port` in this process's network namespace (for a benchmark whose
    /// own process plays the nodes).
    pub fn on_loopback(port: u16) -> Etcd {
        Etcd::launch(None, std::net::Ipv4Addr::LOCALHOST, port)
    }

    fn launch(netns: Option<PathBuf>, host: std::net::Ipv4Addr, port: u16) -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("dvol-etcd-")
            .tempdir()
            .expect("tempdir");
        let mut etcd = Etcd {
            dir,
            netns,
            host,
            port,
            child: None,
        };
        etcd.start();
        etcd
    }

    /// The URL the daemons give to `--cluster`.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// `program` in etcd's network namespace.
    fn command(&self, program: &str) -> Command {
        command_in(self.netns.as_deref(), program)
    }

    /// Starts the server (again, on the same data) and waits until it answers (30 s at most).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "etcd runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .expect("etcd log");
        let url = self.url();
        let peer = format!("http://127.0.0.1:{}", self.port + 1);
        let child = self
            .command("etcd")
            .arg("--name")
            .arg("dvol-test")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&url)
            .arg("--advertise-client-urls")
            .arg(&url)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("dvol-test={peer}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.etcdctl(&["endpoint", "health"]).0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not come up within 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGKILL: as a crash or a power cut would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs `etcdctl ARGS` against the server; whether it succeeded, and its stdout and
    /// stderr.
    pub fn etcdctl(&self, args: &[&str]) -> (bool, String) {
        let out = self
            .command("etcdctl")
            .arg("--endpoints")
            .arg(self.url())
            .arg("--command-timeout=10s")
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("run etcdctl");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Every change under `prefix` since revision 1, in order: (revision, key, value; `None`
    /// for a delete), read with a watch from revision 1 (`etcdctl watch --rev 1 -w json`).
    pub fn history(&self, prefix: &str) -> Vec<(i64, String, Option<String>)> {
        // `timeout 5` ends the watch once it has replayed the history.
        let command = self.command("etcdctl");
        let out = Command::new("timeout")
            .arg("5")
            .arg(command.get_program())
            .args(command.get_args())
            .arg("--endpoints")
            .arg(self.url())
            .args(["watch", "--rev", "1", "--prefix", prefix, "-w", "json"])
            .env("ETCDCTL_API", "3")
            .output()
            .expect("run etcdctl watch");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut changes = Vec::new();
        let stream = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
        for answer in stream.flatten() {
            for event in answer["Events"].as_array().into_iter().flatten() {
                let kv = &event["kv"];
                let key = decode64(kv["key"].as_str().unwrap_or_default());
                let deleted = event["type"].as_i64() == Some(1) || event["type"] == "DELETE";
                let value = (!deleted).then(|| decode64(kv["value"].as_str().unwrap_or_default()));
                changes.push((kv["mod_revision"].as_i64().unwrap_or(0), key, value));
            }
        }
        changes
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The hub namespace's file of `topology`.
fn hub_netns(topology: &Topology) -> PathBuf {
    let hub = topology
        .namespaces()
        .into_iter()
        .next()
        .expect("a topology has a hub");
    PathBuf::from("/run/netns").join(hub)
}

/// etcdctl's base64 to text.
fn decode64(text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}
