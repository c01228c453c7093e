//! Section `cluster`: what cluster mode costs and how far one etcd carries it.
//!
//! 1. **Mount latency**: two daemons in one test host, one alone and one in a cluster (a real
//!    etcd on the topology's hub), each with a bronze volume; `--cluster-mounts` Mount calls
//!    (default 300) alternating between them on kept-alive connections, each followed by an
//!    Unmount. Aim: the cluster's p99 <= 1.05 x the lone daemon's p99 + 5 ms.
//! 2. **Load on one etcd**: `--cluster-nodes` simulated nodes (default 1,000: a lease each,
//!    renewed every 2 s, and a node record with capacity for three profiles) over one
//!    connection, through the daemon's own registry code (`dvol_plugin::cluster`); then
//!    `--cluster-volumes` volumes (default 10,000) claimed 8 at a time, 1,000 owner changes
//!    (a move's two transactions) and 1,000 mount proofs. Reported: p50/p99 of each, the
//!    registry's writes per second at steady state (capacity reports every 30 s per node, as
//!    the daemon sends them; keepalives are not writes), etcd's database size and bytes per
//!    volume, and the projection to 10^6 volumes against etcd's limits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use dvol_api::{ClusterNode, ClusterVolume, ClusterVolumeState, ProfileCapacity};
use dvol_plugin::cluster::{Claim, Cluster};
use dvol_tests::etcd::Etcd;
use dvol_tests::netns::Topology;
use dvol_tests::Daemon;
use serde_json::{json, Value};

use crate::plugin::KeepAlive;
use crate::{round1, round3, stats, Args, Report, Stats};

/// etcd's default database quota, and the largest it suggests (etcd's documentation).
const QUOTA_DEFAULT: f64 = 2.0 * (1u64 << 30) as f64;
const QUOTA_MAX_SUGGESTED: f64 = 8.0 * (1u64 << 30) as f64;
/// etcd's largest request (`--max-request-bytes`, 1.5 MiB).
const MAX_REQUEST: f64 = 1.5 * (1u64 << 20) as f64;

/// Runs the section.
pub fn run(args: &Args, report: &mut Report) -> Result<()> {
    ensure!(
        dvol_tests::etcd::available(),
        "etcd is not installed (scripts/install-deps.sh installs etcd-server and etcd-client)"
    );
    {
        let topology = Topology::new(&["a"]);
        let etcd = Etcd::for_test(&topology).ok_or_else(|| anyhow!("etcd is not installed"))?;
        mount_latency(args, report, &topology, &etcd)?;
    }
    // This process plays the simulated nodes: etcd on its loopback.
    let etcd = Etcd::on_loopback(23_790);
    load(args, report, &etcd)
}

/// Part 1: Mount with and without cluster mode, alternating.
fn mount_latency(args: &Args, report: &mut Report, topology: &Topology, etcd: &Etcd) -> Result<()> {
    let host = topology.host("a");
    let token = uuid::Uuid::new_v4().simple().to_string();
    let alone = Daemon::start_with(Vec::new());
    let clustered = Daemon::start_in_cluster(host, None, &etcd.url(), &token, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !clustered.api("GET", "/v1/cluster/volumes", "").json()["lease_alive"]
        .as_bool()
        .unwrap_or(false)
    {
        ensure!(
            Instant::now() < deadline,
            "the clustered daemon has no lease after 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut samples: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut calls = Vec::new();
    for daemon in [&alone, &clustered] {
        let mut call = KeepAlive::connect(&daemon.plugin_socket)?;
        call.call("/VolumeDriver.Create", br#"{"Name":"mounted@bronze"}"#)?;
        calls.push(call);
    }
    let body = br#"{"Name":"mounted","ID":"bench"}"#;
    for round in 0..args.cluster_mounts + 10 {
        for (i, call) in calls.iter_mut().enumerate() {
            let (took, _) = call.call("/VolumeDriver.Mount", body)?;
            call.call("/VolumeDriver.Unmount", body)?;
            // The first rounds warm both up.
            if round >= 10 {
                samples[i].push(took);
            }
        }
    }
    let (a, c) = (stats(&samples[0]), stats(&samples[1]));
    let bound = 1.05 * a.p99 + 5_000.0;
    let pass = c.p99 <= bound;
    let verdict = report.aim("cluster mount p99", pass);
    report.line(format!(
        "cluster mount: alone p50 {:.0} us p99 {:.0} us; in a cluster p50 {:.0} us p99 {:.0} us ({:.2}x p99); aim p99 <= 1.05x + 5 ms = {:.0} us  {verdict}",
        a.p50, a.p99, c.p50, c.p99, c.p99 / a.p99, bound
    ));
    report.json.insert(
        "cluster_mount".into(),
        json!({
            "alone": crate::stats_json(&a),
            "clustered": crate::stats_json(&c),
            "aim_p99_us": round1(bound),
            "pass": pass,
        }),
    );
    Ok(())
}

/// etcd's database size (bytes allocated, bytes in use) and revision.
fn status(etcd: &Etcd) -> Result<(f64, f64, i64)> {
    let (ok, text) = etcd.etcdctl(&["endpoint", "status", "-w", "json"]);
    ensure!(ok, "etcdctl endpoint status: {text}");
    let value: Value = serde_json::from_str(&text).context("etcdctl endpoint status JSON")?;
    let status = &value[0]["Status"];
    Ok((
        status["dbSize"].as_f64().unwrap_or(0.0),
        status["dbSizeInUse"].as_f64().unwrap_or(0.0),
        status["header"]["revision"].as_i64().unwrap_or(0),
    ))
}

/// A simulated node's record: three profiles with capacity, as a daemon reports them.
fn node_record(i: usize) -> ClusterNode {
    let profiles = ["gold", "silver", "bronze"]
        .into_iter()
        .map(|p| ProfileCapacity {
            profile: p.into(),
            backend: Some(dvol_backends::BackendKind::Loop),
            available: true,
            capacity: Some(dvol_backends::Capacity {
                total_bytes: 1 << 40,
                free_bytes: 1 << 39,
                promised_bytes: 1 << 38,
                reserved_bytes: 1 << 30,
                base_bytes: 0,
            }),
        })
        .collect();
    ClusterNode {
        name: format!("sim-{i:05}"),
        id: uuid::Uuid::new_v4(),
        address: Some(format!(
            "tcp://10.{}.{}.{}:7411",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        )),
        tls: true,
        version: env!("CARGO_PKG_VERSION").into(),
        started_at: "2026-12-03T10:00:00Z".into(),
        profiles,
    }
}

/// Runs `work(i)` for i in 0..n on `threads` threads; the time each took.
fn timed_parallel(
    n: usize,
    threads: usize,
    work: impl Fn(usize) -> Result<()> + Sync,
) -> Result<Vec<Duration>> {
    let next = AtomicUsize::new(0);
    let times = Mutex::new(Vec::with_capacity(n));
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            return Ok(());
                        }
                        let started = Instant::now();
                        work(i)?;
                        times.lock().unwrap().push(started.elapsed());
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow!("a worker panicked"))??;
        }
        Ok(())
    })?;
    Ok(times.into_inner().unwrap())
}

/// Part 2: simulated nodes and volumes on one etcd.
fn load(args: &Args, report: &mut Report, etcd: &Etcd) -> Result<()> {
    let (n_nodes, n_volumes) = (args.cluster_nodes, args.cluster_volumes);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (size0, _, rev0) = status(etcd)?;
    let joined = Instant::now();
    let nodes: Vec<Arc<Cluster>> = runtime.block_on(async {
        Cluster::join_many(&[etcd.url()], (0..n_nodes).map(node_record).collect()).await
    })?;
    for node in &nodes {
        ensure!(
            node.wait_for_lease(Duration::from_secs(60)),
            "simulated node {} got no lease in 60 s",
            node.name()
        );
    }
    let joined_in = joined.elapsed();
    let (size_nodes, _, rev_nodes) = status(etcd)?;

    // Steady state: leases renewed, capacity reported every 30 s per node.
    let window = Duration::from_secs(args.cluster_seconds);
    let every = Duration::from_secs(30).div_f64(n_nodes as f64);
    let started = Instant::now();
    let mut reported = 0usize;
    while started.elapsed() < window {
        let node = &nodes[reported % n_nodes];
        node.report_capacity(node_record(reported % n_nodes).profiles);
        reported += 1;
        let due = every.mul_f64(reported as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let steady_for = started.elapsed();
    let (_, _, rev_steady) = status(etcd)?;
    let steady_writes = (rev_steady - rev_nodes) as f64 / steady_for.as_secs_f64();
    let alive = nodes.iter().filter(|n| n.lease_alive()).count();

    // Creates: each node claims its share.
    let per_node = n_volumes.div_ceil(n_nodes);
    let created = Instant::now();
    let creates = timed_parallel(n_volumes, 8, |i| {
        let owner = &nodes[i / per_node];
        let record = ClusterVolume {
            name: format!("vol-{i:07}"),
            owner: owner.name(),
            profile: "silver".into(),
            size_bytes: Some(20 << 30),
            epoch: 1,
            state: ClusterVolumeState::Ready,
            target: None,
            created_at: "2026-12-03T10:00:00Z".into(),
            owner_alive: false,
            mounted_on: Vec::new(),
        };
        match owner.claim(&record)? {
            Claim::Ours => Ok(()),
            Claim::Taken(t) => Err(anyhow!("vol-{i:07} was taken by {}", t.owner)),
        }
    })?;
    let create_rate = n_volumes as f64 / created.elapsed().as_secs_f64();
    let (size_volumes, in_use_volumes, _) = status(etcd)?;

    // Owner changes: a volume of node k moves to node k+1 (a move's two transactions).
    let moves = n_volumes.min(1_000);
    let changes = timed_parallel(moves, 8, |m| {
        let i = m * (n_volumes / moves);
        let from = &nodes[i / per_node];
        let to = nodes[(i / per_node + 1) % n_nodes].name();
        let name = format!("vol-{i:07}");
        from.begin_move(&name, &to)?;
        from.finish_move(&name, &to)?;
        Ok(())
    })?;
    // Mount proofs on the new owners.
    let mounts = timed_parallel(moves, 8, |m| {
        let i = m * (n_volumes / moves);
        let owner = &nodes[(i / per_node + 1) % n_nodes];
        owner.prove_mount(&format!("vol-{i:07}"), 1)?;
        Ok(())
    })?;
    let (size_end, in_use_end, rev_end) = status(etcd)?;

    let (create, change, mount) = (stats(&creates), stats(&changes), stats(&mounts));
    let per_volume = (in_use_volumes - size_nodes.min(in_use_volumes)).max(0.0) / n_volumes as f64;
    let per_volume_alloc = (size_volumes - size_nodes).max(0.0) / n_volumes as f64;
    let projected = per_volume.max(per_volume_alloc) * 1e6;
    let volume_record = mean_record_bytes(etcd, "/dvol/v1/vols/")?;
    let node_record = mean_record_bytes(etcd, "/dvol/v1/nodes/")?;
    // Every volume record, as a node lists them, at 10^6 volumes.
    let full_list = volume_record * 1e6;
    let ms = |s: &Stats| (s.p50 / 1e3, s.p99 / 1e3);
    report.line(format!(
        "cluster load: {n_nodes} nodes joined in {:.1} s ({alive} leases alive after the steady window); steady state {:.1} writes/s ({reported} capacity reports in {:.0} s); etcd db {:.1} MB with the nodes (from {:.1} MB)",
        joined_in.as_secs_f64(),
        steady_writes,
        steady_for.as_secs_f64(),
        size_nodes / 1e6,
        size0 / 1e6
    ));
    report.line(format!(
        "cluster load: {n_volumes} creates at {:.0}/s (8 at a time): p50 {:.1} ms p99 {:.1} ms; {moves} owner changes p50 {:.1} ms p99 {:.1} ms; {moves} mount proofs p50 {:.1} ms p99 {:.1} ms",
        create_rate,
        ms(&create).0, ms(&create).1, ms(&change).0, ms(&change).1, ms(&mount).0, ms(&mount).1
    ));
    report.line(format!(
        "cluster load: etcd db {:.1} MB allocated, {:.1} MB in use after {n_volumes} volumes ({:.0} B per volume in use, {:.0} B allocated); records: volumes {:.0} B each, node records {:.0} B each",
        size_end / 1e6,
        in_use_end / 1e6,
        per_volume, per_volume_alloc, volume_record, node_record,
    ));
    report.line(format!(
        "cluster projection to 10^6 volumes: db {:.2} GB against etcd's 2 GiB default quota ({:.0}%) and 8 GiB suggested maximum ({:.0}%); a full list of the volume records {:.0} MB (each node lists it at start and after a lost watch); the largest record {:.0} B against the 1.5 MiB request limit ({:.3}%)",
        projected / 1e9,
        100.0 * projected / QUOTA_DEFAULT,
        100.0 * projected / QUOTA_MAX_SUGGESTED,
        full_list / 1e6,
        node_record,
        100.0 * node_record / MAX_REQUEST,
    ));
    report.json.insert(
        "cluster_load".into(),
        json!({
            "nodes": n_nodes,
            "volumes": n_volumes,
            "joined_s": round3(joined_in.as_secs_f64()),
            "leases_alive": alive,
            "steady_writes_per_s": round1(steady_writes),
            "create_per_s": round1(create_rate),
            "create": crate::stats_json(&create),
            "owner_change": crate::stats_json(&change),
            "mount_proof": crate::stats_json(&mount),
            "db_bytes": { "start": size0, "nodes": size_nodes, "volumes": size_volumes, "end": size_end, "in_use_end": in_use_end },
            "revisions": { "start": rev0, "end": rev_end },
            "bytes_per_volume_in_use": round1(per_volume),
            "projected_db_bytes_1e6": projected,
            "volume_record_bytes": volume_record,
            "node_record_bytes": node_record,
        }),
    );
    drop(nodes);
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// The mean size of a record under `prefix`: its key and value.
fn mean_record_bytes(etcd: &Etcd, prefix: &str) -> Result<f64> {
    let (ok, text) = etcd.etcdctl(&["get", "--prefix", prefix]);
    ensure!(ok, "etcdctl get --prefix {prefix}: {text}");
    let lines: Vec<&str> = text.lines().collect();
    let count = lines.len() / 2;
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    Ok(bytes as f64 / count.max(1) as f64)
}
