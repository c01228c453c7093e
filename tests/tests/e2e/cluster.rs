//! Cluster mode: daemons in network namespaces of their own (a host with a Docker Engine of
//! its own where containers matter) share one registry in a real etcd, started by the test on
//! the hub of the topology with a data directory of its own.
//!
//! After each scenario, [`assert_one_writer`] reads etcd's whole history (a watch from
//! revision 1) and checks that every epoch of every volume had one owner, that epochs only
//! grow, and that every mount record was written by the owner of the epoch it names; then it
//! reads every node's mount log (the daemon's `mount log:` lines) and checks that no two nodes
//! could write one volume at the same moment.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use dvol_tests::etcd::Etcd;
use dvol_tests::fixtures::*;
use dvol_tests::host_engine::HostEngine;
use dvol_tests::netns::{Host, Topology};
use dvol_tests::{parse_response, Daemon, HttpResponse, TEST_IMAGE};

/// The registry's prefix in etcd.
const PREFIX: &str = "/dvol/v1/";

/// How long a node's lease lives without renewal (the daemon's `LEASE_TTL`), plus a margin.
const LEASE_GONE: Duration = Duration::from_secs(12);

/// A test cluster: hosts in network namespaces, etcd on their hub, and a daemon in cluster
/// mode on each host (with the Docker Engine given for it, if any), every one a live node.
struct TestCluster {
    /// The daemons, in the order of the hosts (dropped first).
    daemons: Vec<Daemon>,
    /// The token they share.
    token: String,
    etcd: Etcd,
    topology: Topology,
}

impl TestCluster {
    /// Starts hosts `names`, etcd and a daemon per host (`engines[i]` for host `i`, where
    /// given) with `args`; `None` where namespaces, etcd or the engines are missing (skipped,
    /// or failed under `DVOL_REQUIRE_ALL=1`).
    fn start(
        names: &[&str],
        engines: &[Option<&HostEngine>],
        args: Vec<String>,
    ) -> Option<TestCluster> {
        let topology = Topology::for_test(names)?;
        let etcd = Etcd::for_test(&topology)?;
        let token = cluster_token();
        let daemons: Vec<Daemon> = topology
            .hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let engine = engines.get(i).copied().flatten();
                Daemon::start_in_cluster(host, engine, &etcd.url(), &token, args.clone())
            })
            .collect();
        wait_for_nodes(&daemons.iter().collect::<Vec<_>>(), names);
        Some(TestCluster {
            daemons,
            token,
            etcd,
            topology,
        })
    }

    /// Each host's name with its daemon, for [`assert_one_writer`].
    fn nodes(&self) -> Vec<(&str, &Daemon)> {
        let names = self.topology.hosts().iter().map(|h| h.name());
        names.zip(&self.daemons).collect()
    }
}

/// Creates volume `name` (`NAME` or `NAME@PROFILE`) through `daemon`'s plugin socket.
fn create_on(daemon: &Daemon, name: &str) {
    plugin_ok(
        daemon,
        "VolumeDriver.Create",
        &serde_json::json!({ "Name": name }).to_string(),
    );
}

/// A token every node of a test cluster shares.
fn cluster_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `GET /v1/cluster/volumes` of `daemon`.
fn cluster_volumes(daemon: &Daemon) -> Value {
    let answer = daemon.api("GET", "/v1/cluster/volumes", "");
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()
}

/// The registry's record of volume `name` as `daemon` knows it.
fn record(daemon: &Daemon, name: &str) -> Option<Value> {
    cluster_volumes(daemon)["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
}

/// The names of the nodes `daemon` knows.
fn node_names(daemon: &Daemon) -> Vec<String> {
    let answer = daemon.api("GET", "/v1/cluster/nodes", "");
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until every daemon knows all `names` as nodes.
fn wait_for_nodes(daemons: &[&Daemon], names: &[&str]) {
    for daemon in daemons {
        wait_until(daemon, "every node joined", 30, || {
            let known = node_names(daemon);
            names.iter().all(|n| known.iter().any(|k| k == n))
        });
    }
}

/// Whether `daemon` holds volume `name` itself.
fn holds(daemon: &Daemon, name: &str) -> bool {
    daemon.api("GET", &format!("/v1/volumes/{name}"), "").status == 200
}

/// The error a plugin call answered, or an empty string.
fn plugin_error(daemon: &Daemon, method: &str, body: &str) -> String {
    plugin_err(&daemon.plugin(method, body)).unwrap_or_default()
}

/// Follows `GET /v1/cluster/events?since=SINCE` of `daemon` on a thread until `done` says
/// the lines read so far suffice, or 60 s pass; returns the lines.
fn follow_events(
    daemon: &Daemon,
    since: i64,
    done: impl Fn(&[Value]) -> bool + Send + 'static,
) -> std::thread::JoinHandle<Vec<Value>> {
    use std::io::{BufRead, BufReader};
    let socket = daemon.api_socket.clone();
    std::thread::spawn(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "GET /v1/cluster/events?since={since} HTTP/1.1\r\nHost: dvol\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut lines = Vec::new();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            // Chunk sizes and headers are not JSON objects.
            if let Ok(event) = serde_json::from_str::<Value>(line.trim()) {
                if event.is_object() {
                    lines.push(event);
                }
            }
            if done(&lines) {
                break;
            }
        }
        lines
    })
}

/// What [`assert_one_writer`] checked.
struct Checked {
    /// Volume records in etcd's history.
    volumes: usize,
    /// Mount records in etcd's history.
    mounts: usize,
    /// Spans of the nodes' mount logs during which a node could write a volume.
    writable_spans: usize,
}

/// Checks etcd's history and the nodes' mount logs (each `(node name, daemon)` of `nodes`):
/// - each epoch of each volume had one owner, epochs only grew while the volume lived, and
///   every mount record was written at an epoch its node owned;
/// - every span during which a node's log says it could write a volume (from `mount log:
///   writable here`, logged once its ownership was proven and before the kernel mount, to
///   `mount log: released here`, logged after the kernel unmount; or to the end of the log)
///   began at an epoch that node owned, and no two spans of one volume overlap in time: the
///   nodes run on one machine and share its clock.
fn assert_one_writer(etcd: &Etcd, nodes: &[(&str, &Daemon)]) -> Checked {
    let (volumes, mounts, owners) = epochs_and_owners(etcd);
    let logs: Vec<(&str, String)> = nodes.iter().map(|(n, d)| (*n, d.log())).collect();
    let writable_spans = writable_spans(&logs, &owners).unwrap_or_else(|e| panic!("{e}"));
    Checked {
        volumes,
        mounts,
        writable_spans,
    }
}

/// The spans of `logs` (each node's daemon log) during which a node could write a volume,
/// checked against each epoch's owner (`owners`): how many there are, or the first breach.
fn writable_spans(
    logs: &[(&str, String)],
    owners: &BTreeMap<(String, u64), String>,
) -> Result<usize, String> {
    let mut spans: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for (node, log) in logs {
        let mut open: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for line in log.lines() {
            let writable = line.contains("mount log: writable here");
            if !writable && !line.contains("mount log: released here") {
                continue;
            }
            let time = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            let volume = log_field(line, "volume")
                .ok_or_else(|| format!("a mount log line without a volume: {line}"))?;
            if writable {
                let epoch: u64 = log_field(line, "epoch")
                    .and_then(|e| e.parse().ok())
                    .ok_or_else(|| format!("a mount log line without an epoch: {line}"))?;
                let owner = owners.get(&(volume.to_string(), epoch));
                if owner.map(String::as_str) != Some(*node) {
                    return Err(format!(
                        "{node} logged {volume} writable at epoch {epoch}, which etcd's history gives {owner:?}"
                    ));
                }
                // A span already open goes on (a mount that outlived a daemon's restart).
                open.entry(volume.to_string()).or_insert((time, epoch));
            } else if let Some((from, epoch)) = open.remove(volume) {
                spans.entry(volume.to_string()).or_default().push(Span {
                    from,
                    to: Some(time),
                    node: node.to_string(),
                    epoch,
                });
            }
        }
        for (volume, (from, epoch)) in open {
            spans.entry(volume).or_default().push(Span {
                from,
                to: None,
                node: node.to_string(),
                epoch,
            });
        }
    }
    let mut count = 0;
    for (volume, mut list) in spans {
        list.sort();
        count += list.len();
        for pair in list.windows(2) {
            let (one, next) = (&pair[0], &pair[1]);
            if one.to.as_ref().is_none_or(|to| *to > next.from) {
                return Err(format!("two writers of {volume}: {one:?} and {next:?}"));
            }
        }
    }
    Ok(count)
}

#[test]
fn the_mount_log_checker_finds_two_writers_and_a_writer_without_the_epoch() {
    let line = |time: &str, what: &str, volume: &str, epoch: Option<u64>| {
        let epoch = epoch.map_or(String::new(), |e| format!(" epoch={e}"));
        format!("{time}  INFO dvol_plugin::service::cluster: mount log: {what} volume={volume}{epoch}\n")
    };
    let owners = BTreeMap::from([
        (("v".to_string(), 1), "a".to_string()),
        (("v".to_string(), 2), "b".to_string()),
    ]);
    let a = line("2026-01-01T00:00:01.000000Z", "writable here", "v", Some(1))
        + &line("2026-01-01T00:00:02.000000Z", "released here", "v", None);
    let b_after = line("2026-01-01T00:00:03.000000Z", "writable here", "v", Some(2));
    assert_eq!(
        writable_spans(&[("a", a.clone()), ("b", b_after)], &owners),
        Ok(2)
    );
    let b_during = line("2026-01-01T00:00:01.500000Z", "writable here", "v", Some(2));
    let e = writable_spans(&[("a", a.clone()), ("b", b_during)], &owners).unwrap_err();
    assert!(e.contains("two writers of v"), "{e}");
    // A span that never ended overlaps every later one.
    let a_open = line("2026-01-01T00:00:01.000000Z", "writable here", "v", Some(1));
    let b_later = line("2026-01-01T00:00:09.000000Z", "writable here", "v", Some(2));
    assert!(writable_spans(&[("a", a_open), ("b", b_later)], &owners).is_err());
    // b writing at a's epoch.
    let b_at_1 = line("2026-01-01T00:00:03.000000Z", "writable here", "v", Some(1));
    let e = writable_spans(&[("a", a), ("b", b_at_1)], &owners).unwrap_err();
    assert!(e.contains("epoch 1"), "{e}");
}

/// A span of a node's mount log during which it could write a volume.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    /// When it began (RFC 3339, as the log prints it).
    from: String,
    /// When it ended; `None`: not before the log's end.
    to: Option<String>,
    /// The node.
    node: String,
    /// The epoch it began at.
    epoch: u64,
}

/// The value of `key=VALUE` in a text log line.
fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()
}

/// Checks etcd's history: each epoch of each volume had one owner, epochs only grew while the
/// volume lived, and every mount record was written at an epoch its node owned. Returns how
/// many volume and mount records it checked, and each epoch's owner.
fn epochs_and_owners(etcd: &Etcd) -> (usize, usize, BTreeMap<(String, u64), String>) {
    let history = etcd.history(PREFIX);
    assert!(!history.is_empty(), "etcd's history is empty");
    // Per volume: the current (epoch, owner), and every epoch's owner.
    let mut current: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut owners: BTreeMap<(String, u64), String> = BTreeMap::new();
    let (mut volumes, mut mounts) = (0, 0);
    for (revision, key, value) in &history {
        let rest = key.strip_prefix(PREFIX).unwrap_or(key);
        if let Some(name) = rest.strip_prefix("vols/") {
            let Some(value) = value else {
                current.remove(name);
                continue;
            };
            volumes += 1;
            let record: Value = serde_json::from_str(value).expect("a volume record");
            let epoch = record["epoch"].as_u64().expect("epoch");
            let owner = record["owner"].as_str().expect("owner").to_string();
            if let Some((before, _)) = current.get(name) {
                assert!(
                    epoch >= *before,
                    "revision {revision}: volume {name}'s epoch went back from {before} to {epoch}"
                );
            }
            let known = owners
                .entry((name.to_string(), epoch))
                .or_insert(owner.clone());
            assert_eq!(
                *known, owner,
                "revision {revision}: epoch {epoch} of volume {name} had two owners"
            );
            current.insert(name.to_string(), (epoch, owner));
        } else if let Some(path) = rest.strip_prefix("mounts/") {
            let Some(value) = value else { continue };
            mounts += 1;
            let (name, node) = path.split_once('/').expect("mounts/<name>/<node>");
            let mount: Value = serde_json::from_str(value).expect("a mount record");
            let epoch = mount["epoch"].as_u64().expect("epoch");
            let (now, owner) = current.get(name).unwrap_or_else(|| {
                panic!("revision {revision}: {node} mounted {name}, which has no record")
            });
            // A lease renewal after a reconnect rewrites the mount at its epoch; that must
            // still be the owner's.
            assert_eq!(
                owners.get(&(name.to_string(), epoch)),
                Some(&node.to_string()),
                "revision {revision}: {node} recorded a mount of {name} at epoch {epoch}, whose owner is {:?} (now epoch {now}, owner {owner})",
                owners.get(&(name.to_string(), epoch))
            );
        }
    }
    (volumes, mounts, owners)
}

/// A container that appends numbered lines to `/data/log` of its volume and makes each
/// durable (`sync`) before printing its number: what it printed is acknowledged.
struct ContainerWriter<'a> {
    engine: &'a HostEngine,
    id: String,
}

impl<'a> ContainerWriter<'a> {
    /// Starts it on `engine` as container `name`, with `daemon`'s volume `volume` at
    /// `/data`.
    fn start(
        engine: &'a HostEngine,
        daemon: &Daemon,
        volume: &str,
        name: &str,
    ) -> ContainerWriter<'a> {
        let mount = format!("{volume}:/data");
        let id = engine.docker_ok(&[
            "run", "-d", "--name", name, "--volume-driver", &daemon.driver, "-v", &mount, TEST_IMAGE, "sh", "-c",
            "i=0; while true; do i=$((i+1)); echo $i >> /data/log; sync /data/log; echo $i; sleep 0.05; done",
        ]);
        ContainerWriter {
            engine,
            id: id.trim().to_string(),
        }
    }

    /// The last line it acknowledged (0 before the first).
    fn acked(&self) -> u64 {
        self.engine
            .docker_ok(&["logs", &self.id])
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Stops and removes it (the engine unmounts its volume). Returns the last line it
    /// acknowledged.
    fn finish(self) -> u64 {
        self.engine.docker_ok(&["stop", "-t", "1", &self.id]);
        let acked = self.acked();
        self.engine.docker_ok(&["rm", &self.id]);
        acked
    }
}

#[test]
fn a_create_race_on_one_name_from_three_nodes_makes_one_volume_each_round() {
    let Some(cluster) = TestCluster::start(&["a", "b", "c"], &[], Vec::new()) else {
        return;
    };
    let (daemons, etcd) = (&cluster.daemons, &cluster.etcd);

    let prefix = unique("race");
    let since = cluster_volumes(&daemons[2])["revision"].as_i64().unwrap() + 1;
    let watched = prefix.clone();
    let events = follow_events(&daemons[2], since, move |lines| {
        lines
            .iter()
            .filter(|e| {
                e["kind"] == "volume" && e["name"].as_str().is_some_and(|n| n.starts_with(&watched))
            })
            .count()
            >= 20
    });
    let mut winners = BTreeMap::<String, usize>::new();
    for round in 0..20 {
        let name = format!("{prefix}-{round}");
        let body = serde_json::json!({ "Name": format!("{name}@bronze") }).to_string();
        let answers: Vec<String> = std::thread::scope(|scope| {
            let calls: Vec<_> = daemons
                .iter()
                .map(|d| {
                    let body = body.clone();
                    scope.spawn(move || plugin_error(d, "VolumeDriver.Create", &body))
                })
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        // Every engine was told the volume exists: it does, once, in the cluster.
        assert!(
            answers.iter().all(String::is_empty),
            "round {round}: a create failed: {answers:?}"
        );
        let holders: Vec<&str> = daemons
            .iter()
            .zip(["a", "b", "c"])
            .filter(|(d, _)| holds(d, &name))
            .map(|(_, n)| n)
            .collect();
        assert_eq!(
            holders.len(),
            1,
            "round {round}: {name} is held by {holders:?}"
        );
        for daemon in daemons {
            wait_until(daemon, "the registry lists the volume", 10, || {
                record(daemon, &name).is_some()
            });
            let owner = record(daemon, &name).unwrap()["owner"].clone();
            assert_eq!(
                owner, holders[0],
                "round {round}: the registry names another owner"
            );
            // Docker's Get on any node finds it.
            let got = daemon.plugin(
                "VolumeDriver.Get",
                &serde_json::json!({ "Name": name }).to_string(),
            );
            assert_eq!(plugin_err(&got), None, "round {round}: Get of {name}");
        }
        *winners.entry(holders[0].to_string()).or_default() += 1;
    }
    eprintln!("winners of the 20 rounds: {winners:?}");
    // The change feed reported each create once, with the record's owner.
    let waited = Instant::now();
    let events = events.join().unwrap();
    eprintln!(
        "the change feed's last create came {:?} after the rounds",
        waited.elapsed()
    );
    for round in 0..20 {
        let name = format!("{prefix}-{round}");
        let created: Vec<&Value> = events
            .iter()
            .filter(|e| e["kind"] == "volume" && e["name"] == name.as_str())
            .collect();
        assert_eq!(created.len(), 1, "{name}: {created:?}");
        assert_eq!(created[0]["deleted"], false);
        assert!(created[0]["record"]["owner"].is_string(), "{}", created[0]);
        assert!(created[0]["revision"].as_i64().unwrap() >= since);
    }

    // etcd's history: each name's record was created once, at epoch 1.
    let history = etcd.history(PREFIX);
    for round in 0..20 {
        let key = format!("{PREFIX}vols/{prefix}-{round}");
        let puts: Vec<_> = history
            .iter()
            .filter(|(_, k, v)| *k == key && v.is_some())
            .collect();
        assert_eq!(puts.len(), 1, "{key} was written {} times", puts.len());
    }
    assert_one_writer(etcd, &cluster.nodes());

    // Removing on a node that does not hold it forgets nothing; on the owner, it goes.
    let name = format!("{prefix}-0");
    let owner = daemons.iter().find(|d| holds(d, &name)).expect("an owner");
    plugin_ok(
        owner,
        "VolumeDriver.Remove",
        &serde_json::json!({ "Name": name }).to_string(),
    );
    for daemon in daemons {
        wait_until(daemon, "the registry drops the removed volume", 10, || {
            record(daemon, &name).is_none()
        });
    }
    // A revision etcd compacted away is refused; the scheduler lists again.
    let now = cluster_volumes(&daemons[0])["revision"].as_i64().unwrap();
    let (ok, text) = etcd.etcdctl(&["compact", &now.to_string()]);
    assert!(ok, "etcdctl compact: {text}");
    let answer = daemons[0].api("GET", "/v1/cluster/events?since=1", "");
    assert_eq!(
        answer.status,
        410,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["error"]["code"], "revision_compacted");
}

#[test]
fn without_etcd_or_cut_off_a_node_keeps_its_mounts_makes_no_new_ones_and_never_two_writers() {
    let Some(engine) = HostEngine::for_test() else {
        return;
    };
    let Some(mut cluster) = TestCluster::start(&["a", "b"], &[Some(&engine)], Vec::new()) else {
        return;
    };
    let (a, b) = (&cluster.daemons[0], &cluster.daemons[1]);
    let (etcd, topology) = (&mut cluster.etcd, &cluster.topology);
    let name = unique("held");
    create_on(a, &format!("{name}@silver"));
    // A container on a writes, each line made durable before it is acknowledged.
    let writer = ContainerWriter::start(&engine, a, &name, &format!("writer-{name}"));
    wait_until(a, "the container writes", 30, || writer.acked() > 0);
    wait_until(b, "b knows the volume is mounted on a", 10, || {
        record(b, &name).is_some_and(|r| r["mounted_on"] == serde_json::json!(["a"]))
    });
    let refused = plugin_error(b, "VolumeDriver.Mount", &mount_body(&name, "x"));
    assert_contains_all(&refused, &["in use on node a"]);

    // 1. etcd stops.
    etcd.stop();
    let at_stop = writer.acked();
    std::thread::sleep(LEASE_GONE);
    // Lookups answer from what each node knows.
    for daemon in [&a, &b] {
        let got = daemon.plugin(
            "VolumeDriver.Get",
            &serde_json::json!({ "Name": name }).to_string(),
        );
        assert_eq!(plugin_err(&got), None, "Get without etcd");
        let listed = plugin_ok(daemon, "VolumeDriver.List", "{}");
        assert!(
            listed.to_string().contains(&name),
            "List without etcd: {listed}"
        );
    }
    assert_eq!(cluster_volumes(a)["lease_alive"], false);
    // New read-write mounts and creates are refused, naming the cause.
    let refused = plugin_error(a, "VolumeDriver.Mount", &mount_body(&name, "w2"));
    assert_contains_all(&refused, &["cluster unreachable", "lease"]);
    let refused = plugin_error(a, "VolumeDriver.Create", r#"{"Name":"another-one"}"#);
    assert_contains_all(&refused, &["cluster unreachable"]);
    // The running mount keeps working.
    assert!(writer.acked() > at_stop, "the writer stalled without etcd");

    // 2. etcd is back: the node proves its lease again and mounts.
    etcd.start();
    wait_until(a, "a mounts again once etcd is back", 30, || {
        plugin_err(&a.plugin("VolumeDriver.Mount", &mount_body(&name, "w2"))).is_none()
    });
    plugin_ok(a, "VolumeDriver.Unmount", &mount_body(&name, "w2"));

    // 3. a is cut off from etcd and from b while its writer writes.
    topology.cut("a");
    let at_cut = writer.acked();
    std::thread::sleep(LEASE_GONE);
    wait_until(b, "b sees a's lease end", 20, || {
        record(b, &name).is_some_and(|r| r["owner_alive"] == false)
    });
    let refused = plugin_error(b, "VolumeDriver.Mount", &mount_body(&name, "x"));
    assert_contains_all(&refused, &["belongs to node a", "unavailable"]);
    assert!(!holds(b, &name), "b made a copy of a volume a owns");
    let refused = plugin_error(a, "VolumeDriver.Mount", &mount_body(&name, "w3"));
    assert_contains_all(&refused, &["cluster unreachable"]);
    assert!(
        writer.acked() > at_cut,
        "the writer stalled while a was cut off"
    );

    // 4. a is back: it rejoins with a new lease and holds its mount again.
    topology.mend("a");
    wait_until(b, "b sees a again, with its mount", 30, || {
        record(b, &name).is_some_and(|r| {
            r["owner_alive"] == true && r["mounted_on"] == serde_json::json!(["a"])
        })
    });
    let acked = writer.finish();

    // Every acknowledged write is in the volume.
    let mounted = plugin_ok(a, "VolumeDriver.Mount", &mount_body(&name, "check"));
    let log =
        std::fs::read_to_string(PathBuf::from(mounted["Mountpoint"].as_str().unwrap()).join("log"))
            .expect("read the log");
    let last: u64 = log.lines().last().and_then(|l| l.parse().ok()).unwrap_or(0);
    assert!(
        last >= acked,
        "the volume holds {last} lines, {acked} were acknowledged"
    );
    plugin_ok(a, "VolumeDriver.Unmount", &mount_body(&name, "check"));
    let checked = assert_one_writer(&cluster.etcd, &cluster.nodes());
    assert!(
        checked.mounts >= 3 && checked.writable_spans >= 2,
        "only {} mount records in etcd's history ({} volume records) and {} writable spans in the mount logs",
        checked.mounts,
        checked.volumes,
        checked.writable_spans
    );
}

/// `POST path` with `body` and the bearer `token` to the daemon at `to`, sent from inside
/// `host`'s network namespace (busybox's nc over real TCP), as another node would.
fn post_from(host: &Host, to: SocketAddr, token: &str, path: &str, body: &str) -> HttpResponse {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {to}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut child = host
        .command("busybox")
        .args(["nc", &to.ip().to_string(), &to.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("busybox nc");
    // nc stops at the end of its input: the input stays open until the answer has come
    // (the daemon closes the connection after it).
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut answer = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut answer)
        .expect("read the answer");
    drop(input);
    let _ = child.wait();
    parse_response(&answer).unwrap_or_else(|| {
        panic!(
            "unreadable HTTP answer from {to}: {:?}",
            String::from_utf8_lossy(&answer)
        )
    })
}

/// The output of `docker` on `engine`, and whether it succeeded.
fn docker_on(engine: &HostEngine, args: &[&str]) -> (bool, String) {
    let out = engine.docker(args);
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

/// `docker run --rm --volume-driver DRIVER -v MOUNT IMAGE COMMAND...` on `engine`, with
/// `daemon`'s driver: whether it succeeded, and its output.
fn run_on(engine: &HostEngine, daemon: &Daemon, mount: &str, command: &[&str]) -> (bool, String) {
    let mut args = vec![
        "run",
        "--rm",
        "--volume-driver",
        &daemon.driver,
        "-v",
        mount,
        TEST_IMAGE,
    ];
    args.extend_from_slice(command);
    docker_on(engine, &args)
}

/// [`run_on`], which must succeed: its output.
fn run_ok(engine: &HostEngine, daemon: &Daemon, mount: &str, command: &[&str]) -> String {
    let (ok, text) = run_on(engine, daemon, mount, command);
    assert!(
        ok,
        "docker run {command:?} on {}: {text}\n{}",
        daemon.driver,
        daemon.log()
    );
    text
}

#[test]
fn through_docker_a_volume_is_one_across_the_cluster_and_follows_its_container() {
    let engines: Vec<HostEngine> = (0..3)
        .map(|_| HostEngine::for_test())
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    if engines.len() < 3 {
        return;
    }
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.toml");
    std::fs::write(
        &config,
        "default_profile = \"silver\"\n\
         [profiles.silver]\nbackend = \"loop\"\nsize = \"256M\"\n\
         [profiles.pinned]\nbackend = \"directory\"\nfollow = false\n",
    )
    .unwrap();
    let args = vec!["--config".to_string(), config.display().to_string()];
    let with_engines: Vec<Option<&HostEngine>> = engines.iter().map(Some).collect();
    let Some(cluster) = TestCluster::start(&["a", "b", "c"], &with_engines, args) else {
        return;
    };
    let (a, b, c) = (
        &cluster.daemons[0],
        &cluster.daemons[1],
        &cluster.daemons[2],
    );
    let (ea, eb, ec) = (&engines[0], &engines[1], &engines[2]);

    // Created on a; every node's engine lists it.
    let name = unique("orders");
    ea.docker_ok(&[
        "volume",
        "create",
        "-d",
        &a.driver,
        &format!("{name}@silver"),
    ]);
    for (daemon, engine) in [(b, eb), (c, ec)] {
        wait_until(daemon, "the registry lists the volume", 10, || {
            record(daemon, &name).is_some()
        });
        let listed = engine.docker_ok(&["volume", "ls", "-q"]);
        assert!(
            listed.lines().any(|v| v == name),
            "{} does not list {name}: {listed}",
            daemon.driver
        );
    }

    // A writer on a: every line it reports was made durable first.
    let mount = format!("{name}:/data");
    let writer_name = format!("writer-{name}");
    let writer = ContainerWriter::start(ea, a, &name, &writer_name);
    wait_until(a, "the writer writes", 30, || writer.acked() > 0);
    // On b, a container fails at once, naming the node, the container there and what to do.
    let started = Instant::now();
    let (ok, text) = run_on(eb, b, &mount, &["true"]);
    assert!(!ok, "a container on b got a volume in use on a: {text}");
    assert_contains_all(
        &text,
        &[
            &format!("in use on node a by container {writer_name}"),
            &format!("dvol move {name} b"),
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the refusal took {:?}",
        started.elapsed()
    );

    // The writer stops; a container on b gets the volume, with every acknowledged line.
    let acked = writer.finish();
    assert!(acked > 0, "the writer's last line");
    let started = Instant::now();
    let seen = run_ok(eb, b, &mount, &["tail", "-n", "1", "/data/log"]);
    let followed_in = started.elapsed();
    let last: u64 = seen.trim().parse().expect("a line number");
    assert!(last >= acked, "b sees line {last}, a acknowledged {acked}");
    let moved = record(c, &name).expect("the record");
    assert_eq!(moved["owner"], "b", "{moved}");
    assert_eq!(moved["epoch"], 2, "{moved}");
    assert!(holds(b, &name));
    eprintln!("the volume followed its container to b in {followed_in:?} (container run included)");

    // a refuses it now without the registry's word... and with it, it follows back.
    let back = run_ok(ea, a, &mount, &["tail", "-n", "1", "/data/log"]);
    assert_eq!(back.trim(), seen.trim());
    assert_eq!(record(c, &name).unwrap()["epoch"], 3);

    // On c, which has neither, copies from a's volume: of a commit (by id prefix), with its
    // history, and of the volume's files now (by UUID prefix), uncommitted line included.
    let committed = commit(a, &name, "for copies");
    let commit_id = committed["commit"]["id"]
        .as_str()
        .expect("commit id")
        .to_string();
    run_ok(
        ea,
        a,
        &mount,
        &["sh", "-c", "echo uncommitted >> /data/log"],
    );
    let of_commit = unique("copy");
    let seen_in_copy = run_ok(
        ec,
        c,
        &format!("{of_commit}@snapshot-{}:/d", &commit_id[..12]),
        &["tail", "-n", "1", "/d/log"],
    );
    assert_eq!(seen_in_copy.trim(), seen.trim(), "the copy of the commit");
    assert!(holds(c, &of_commit), "c has no copy {of_commit}");
    let log = commit_log(c, &of_commit);
    assert!(
        log.to_string().contains(&commit_id),
        "the copy's history lacks the commit it was made from: {log}"
    );
    let uuid = volume_id(a, &name).replace('-', "");
    let of_volume = unique("copy");
    let now = run_ok(
        ec,
        c,
        &format!("{of_volume}@snapshot-{}:/d", &uuid[..10]),
        &["tail", "-n", "1", "/d/log"],
    );
    assert_eq!(
        now.trim(),
        "uncommitted",
        "the copy of the volume's files now"
    );
    for copy in [&of_commit, &of_volume] {
        wait_until(a, "the registry names c the copy's owner", 10, || {
            record(a, copy).is_some_and(|r| r["owner"] == "c")
        });
    }
    // A reference that names nothing anywhere: refused, naming the nodes asked.
    let (ok, text) = run_on(ec, c, "nothing@snapshot-0123456789ab:/d", &["true"]);
    assert!(!ok, "a copy of nothing was made: {text}");
    assert_contains_all(
        &text,
        &["matches no volume UUID and no commit", "node(s) a, b"],
    );
    assert!(!holds(c, "nothing"));

    // A profile that does not follow: b's container fails, naming the owner.
    let pinned = unique("pinned");
    ea.docker_ok(&[
        "volume",
        "create",
        "-d",
        &a.driver,
        &format!("{pinned}@pinned"),
    ]);
    wait_until(b, "b knows the pinned volume", 10, || {
        record(b, &pinned).is_some()
    });
    let (ok, text) = run_on(eb, b, &format!("{pinned}:/d"), &["true"]);
    assert!(!ok, "a pinned volume followed its container: {text}");
    assert_contains_all(&text, &["belongs to node a"]);

    // From any node, the scheduler's view: the nodes with their addresses, the volumes with
    // their owners.
    let nodes: Value =
        serde_json::from_str(&stdout(&c.cli(&["cluster", "nodes", "--json"]))).unwrap();
    let addresses: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["address"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (1..=3)
        .map(|i| format!("tcp://10.77.0.{i}:{}", dvol_tests::HOST_PORT))
        .collect();
    assert_eq!(addresses, expected);
    let table = stdout(&c.cli(&["cluster", "volumes"]));
    assert_contains_all(&table, &[&name, &pinned, "OWNER", "EPOCH"]);

    for engine in [ea, eb, ec] {
        for volume in [&name, &pinned, &of_commit, &of_volume] {
            let _ = docker_on(engine, &["volume", "rm", volume]);
        }
    }
    let checked = assert_one_writer(&cluster.etcd, &cluster.nodes());
    // a's writer, b's reader, a's two containers after it, c's two copies.
    assert!(
        checked.writable_spans >= 5,
        "{} writable spans in the mount logs",
        checked.writable_spans
    );
}

/// Fills `daemon`'s volume `name` with enough data (48 MiB) that a target's checkout of it
/// takes a while; returns its digest ([`mounted_digest`]).
fn fill_for_a_move(daemon: &Daemon, name: &str) -> String {
    let mounted = plugin_ok(daemon, "VolumeDriver.Mount", &mount_body(name, "fill"));
    let path = PathBuf::from(mounted["Mountpoint"].as_str().unwrap());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("head -c 48M /dev/urandom > big && echo small > small && sync")
        .current_dir(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = digest_of(&path);
    plugin_ok(daemon, "VolumeDriver.Unmount", &mount_body(name, "fill"));
    digest
}

/// The digest of [`fill_for_a_move`]'s files, read through a Mount with `mount_id` on
/// `daemon`, which stays mounted.
fn mounted_digest(daemon: &Daemon, name: &str, mount_id: &str) -> String {
    let mounted = plugin_ok(daemon, "VolumeDriver.Mount", &mount_body(name, mount_id));
    digest_of(&PathBuf::from(mounted["Mountpoint"].as_str().unwrap()))
}

/// The digest of [`fill_for_a_move`]'s files in `path`.
fn digest_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("sha256sum big small")
        .current_dir(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Runs `dvol move NAME TARGET` on `source` in the background and waits until the registry
/// (as `watcher` knows it) says the volume is moving; returns the move's process and the
/// `(state, owner)` seen last.
fn move_until_moving(
    source: &Daemon,
    watcher: &Daemon,
    name: &str,
    target: &str,
) -> (std::process::Child, (Value, Value)) {
    let mover = source
        .cli_command(&["move", name, target, "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let state = loop {
        let state = record(watcher, name)
            .map(|r| (r["state"].clone(), r["owner"].clone()))
            .unwrap_or_default();
        if state.0 == "moving" || state.1 == target || Instant::now() > deadline {
            break state;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    (mover, state)
}

#[test]
fn a_target_killed_during_a_move_leaves_the_volume_with_its_source() {
    let Some(mut cluster) = TestCluster::start(&["a", "b"], &[], Vec::new()) else {
        return;
    };
    let [a, b] = &mut cluster.daemons[..] else {
        unreachable!("two daemons")
    };
    let name = unique("target");
    create_on(a, &format!("{name}@silver"));
    let digest = fill_for_a_move(a, &name);

    // b dies while the registry says the volume is moving to it.
    let (mut mover, state) = move_until_moving(a, a, &name, "b");
    b.kill9();
    let moved = mover.wait().unwrap();
    assert_eq!(
        state.0, "moving",
        "the move was not caught while moving: {state:?}"
    );
    assert!(!moved.success(), "the move to a killed target succeeded");

    // a called the move off: the volume is a's, ready, at its epoch, and mounts there with
    // its data.
    wait_until(a, "the failed move is called off", 10, || {
        record(a, &name).is_some_and(|r| r["state"] == "ready")
    });
    let now = record(a, &name).expect("the record");
    assert_eq!(
        (now["owner"].clone(), now["epoch"].clone()),
        ("a".into(), 1.into()),
        "{now}"
    );
    assert_eq!(mounted_digest(a, &name, "after"), digest, "a's data");
    plugin_ok(a, "VolumeDriver.Unmount", &mount_body(&name, "after"));

    // b restarts: whatever it received, it claims nothing; the volume stays a's.
    b.spawn();
    wait_until(b, "b is a node again", 30, || {
        record(b, &name).is_some_and(|r| r["owner"] == "a")
            && node_names(a).contains(&"b".to_string())
    });
    assert_eq!(record(a, &name).unwrap()["epoch"], 1);
    // A Mount on b moves it there whole.
    assert_eq!(
        mounted_digest(b, &name, "follow"),
        digest,
        "b's data after the move"
    );
    let now = record(a, &name).unwrap();
    assert_eq!(
        (now["owner"].clone(), now["epoch"].clone()),
        ("b".into(), 2.into()),
        "{now}"
    );
    plugin_ok(b, "VolumeDriver.Unmount", &mount_body(&name, "follow"));
    let checked = assert_one_writer(&cluster.etcd, &cluster.nodes());
    assert!(checked.writable_spans >= 3, "too few writable spans");
}

#[test]
fn a_source_killed_during_a_move_keeps_the_volume_and_moves_it_again_whole() {
    let Some(mut cluster) = TestCluster::start(&["a", "b"], &[], Vec::new()) else {
        return;
    };
    let [a, b] = &mut cluster.daemons[..] else {
        unreachable!("two daemons")
    };
    let name = unique("moving");
    create_on(a, &format!("{name}@silver"));
    let digest = fill_for_a_move(a, &name);

    // The move runs; a dies once the registry says the volume is moving to b.
    let (mut mover, state) = move_until_moving(a, b, &name, "b");
    a.kill9();
    let _ = mover.wait();
    assert_eq!(
        state.0, "moving",
        "the move was not caught while moving: {state:?}"
    );

    // At restart a calls the move off: the volume is a's, ready, at its epoch.
    a.spawn();
    wait_until(a, "the interrupted move is called off", 30, || {
        record(b, &name).is_some_and(|r| r["state"] == "ready" && r["owner"] == "a")
    });
    assert_eq!(record(b, &name).unwrap()["epoch"], 1);
    // b's copy, if the move made one, is not b's to mount: mounting there moves it again.
    assert_eq!(
        mounted_digest(b, &name, "after"),
        digest,
        "b's data after the second move"
    );
    let now = record(b, &name).unwrap();
    assert_eq!(
        (now["owner"].clone(), now["epoch"].clone()),
        ("b".into(), 2.into()),
        "{now}"
    );
    // While b has it mounted, a cannot take it.
    let refused = plugin_error(a, "VolumeDriver.Mount", &mount_body(&name, "old"));
    assert_contains_all(&refused, &["in use on node b"]);
    plugin_ok(b, "VolumeDriver.Unmount", &mount_body(&name, "after"));

    // A push that carries a's old epoch (a stale owner, or a peer that lies) is refused by
    // b, which reads the registry: fenced, nothing changed.
    let tip = commit_log(a, &name)["commits"][0]["id"]
        .as_str()
        .expect("a's last commit")
        .to_string();
    let before = commit_log(b, &name);
    let offer = |epoch: u64| {
        serde_json::json!({
            "protocol": 1,
            "sender": uuid::Uuid::new_v4(),
            "volume": name,
            "branch": "master",
            "tip": tip,
            "like": api_volume(a, &name),
            "mode": "fast_forward",
            "checkout": false,
            "epoch": epoch,
        })
        .to_string()
    };
    let push = |body: String| {
        let to = b.listen_addr().expect("b listens");
        let from = cluster.topology.host("a");
        post_from(from, to, &cluster.token, "/v1/transfer/push", &body)
    };
    let fenced = push(offer(1));
    let text = String::from_utf8_lossy(&fenced.body).into_owned();
    assert_eq!(fenced.status, 409, "{text}");
    assert_contains_all(&text, &["\"fenced\"", "epoch 1", "epoch 2 (owner b)"]);
    assert_eq!(
        commit_log(b, &name),
        before,
        "a fenced push changed b's history"
    );
    // At the registry's epoch the offer gets past the fence (and on to the usual answer).
    let current = push(offer(2));
    assert_eq!(
        current.status,
        200,
        "{}",
        String::from_utf8_lossy(&current.body)
    );

    let checked = assert_one_writer(&cluster.etcd, &cluster.nodes());
    assert!(checked.writable_spans >= 1, "no writable span in the logs");
}
