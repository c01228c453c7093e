//! Section `transfer`: two hosts `a` and `b` in network namespaces joined by a veth bridge, each
//! with a TLS daemon; a bronze volume on `a` of `--transfer-gib` GiB (default: `--history-gib`)
//! of the `history` section's mixed data, committed. `dvol push` to `b` against `rsync -a
//! --delete` to an rsync daemon in `b`, alternating in the same run: the first full transfer,
//! `--transfer-rounds` rounds after a 1% change (each committed on `a` first, untimed), a push
//! with nothing new, one 1% round with the link shaped to 1 Gbit/s, a push to a third host `c`
//! cut at 50% by a relay and run again, and a move's final round
//! with 20 MiB written since the last round, then a `dvol move`. Wall time, bytes on the wire
//! (the counters of `a`'s veth) and the daemons' memory: their peak VmRSS while the full push
//! and the resumed push run, over their VmRSS just before (what the transfers add), and their
//! VmHWM over the whole section (which includes `a`'s commits), for information.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use dvol_tests::certs::TestCa;
use dvol_tests::netns::{Host, Topology};
use dvol_tests::relay::Relay;
use dvol_tests::{Daemon, HOST_PORT};
use serde_json::{json, Value};

use crate::history::{
    bronze_data, create_bronze, du_bytes, ensure_room, file_bytes, mb, run_ok, sync_host, u64_of,
    write_dataset, Dataset, Mutation,
};
use crate::memory::{rss_kib, RssSampler};
use crate::{api_get, api_timed, median, round1, round3, rounded, Args, Report};

/// After a 1% change, a push takes at most this share of rsync's wall time...
const AIM_CHANGE_WALL_RATIO: f64 = 0.5;
/// ... and puts at most this many bytes on the wire (from `a` to `b`) per byte of the new
/// objects' stored (compressed) size.
const AIM_CHANGE_WIRE_RATIO: f64 = 1.05;
/// The first (full) push takes at most this share of rsync's wall time.
const AIM_FULL_WALL_RATIO: f64 = 1.0;
/// A push with nothing new takes at most this long...
const AIM_NOOP_MS: f64 = 100.0;
/// ... and this many bytes on the wire, both directions.
const AIM_NOOP_WIRE_BYTES: u64 = 4096;
/// Each daemon's resident memory grows by at most this much while the full and the resumed
/// push run.
const AIM_HWM_GROWTH_MIB: f64 = 96.0;

/// The final round of a move, with this much written since the round before it, takes at
/// most this long (its downtime).
const AIM_MOVE_DOWNTIME_S: f64 = 2.0;
/// A push cut at 50% and run again forwards at most this much more than a full push.
const AIM_RESUME_EXTRA_MIB: u64 = 72;
/// Bytes written since the last pre-copy round of a move.
const MOVE_DIRTY_MIB: u64 = 20;

/// The changed share of the volume's bytes per round.
const CHANGE_FRACTION: f64 = 0.01;
/// Pushes (and rsync runs) timed with nothing new.
const NOOP_RUNS: usize = 3;
/// The rate of the shaped round (a `tc` rate).
const SHAPED_RATE: &str = "1gbit";
/// The rsync daemon's port in `b`.
const RSYNC_PORT: u16 = 8730;
/// The rsync daemon's module.
const RSYNC_MODULE: &str = "mod";
/// Free space the section wants, in multiples of the volume: the volume on `a`, its store on
/// `a`, `b` and `c`, the volume on `b` and `c`, and rsync's copy.
const TRANSFER_DISK_FACTOR: f64 = 7.0;

/// An rsync daemon running in a host; killed when dropped.
struct RsyncDaemon {
    child: Child,
    /// The module's directory.
    dest: PathBuf,
}

impl RsyncDaemon {
    /// Starts `rsync --daemon` in `host` on [`RSYNC_PORT`], with a module writing to
    /// `dir/dest` (its config and log in `dir`), and waits until `client` lists its modules.
    fn start(host: &Host, client: &Host, dir: &Path) -> Result<RsyncDaemon> {
        let dest = dir.join("dest");
        std::fs::create_dir_all(&dest).with_context(|| format!("mkdir {}", dest.display()))?;
        let config = dir.join("rsyncd.conf");
        std::fs::write(
            &config,
            format!(
                "use chroot = no\nuid = root\ngid = root\nlog file = {}\n\n[{RSYNC_MODULE}]\npath = {}\nread only = no\n",
                dir.join("rsyncd.log").display(),
                dest.display()
            ),
        )
        .with_context(|| format!("write {}", config.display()))?;
        let child = host
            .command("rsync")
            .arg("--daemon")
            .arg("--no-detach")
            .arg(format!("--config={}", config.display()))
            .arg(format!("--port={RSYNC_PORT}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the rsync daemon")?;
        let mut daemon = RsyncDaemon { child, dest };
        let url = format!("rsync://{}:{RSYNC_PORT}/", host.addr());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = daemon.child.try_wait()? {
                bail!("the rsync daemon exited with {status}");
            }
            let listed = client.command("rsync").arg(&url).output()?;
            if listed.status.success() {
                return Ok(daemon);
            }
            ensure!(
                Instant::now() < deadline,
                "the rsync daemon does not answer at {url}: {}",
                String::from_utf8_lossy(&listed.stderr).trim()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes a host's `eth0` sent and received so far (`ip -s -j link show dev eth0`).
fn wire_bytes(host: &Host) -> Result<(u64, u64)> {
    let out = run_ok(
        host.command("ip")
            .args(["-s", "-j", "link", "show", "dev", "eth0"]),
    )?;
    let links: Value = serde_json::from_slice(&out.stdout).context("ip -j link show")?;
    let stats = &links[0]["stats64"];
    let field = |dir: &str| {
        stats[dir]["bytes"]
            .as_u64()
            .ok_or_else(|| anyhow!("no {dir} bytes in `ip -s -j link show`: {links}"))
    };
    Ok((field("tx")?, field("rx")?))
}

/// One timed transfer (a push or an rsync run).
#[derive(Debug, Clone, Default)]
struct Sample {
    /// Wall time: the push, or rsync followed by `sync -f` of its copy.
    seconds: f64,
    /// rsync's own time (without the `sync -f`); the push's time for dvol.
    command_seconds: f64,
    /// Bytes on the wire from `a` to `b` and back.
    tx: u64,
    rx: u64,
    /// The push's answer (`--json`); null for rsync.
    answer: Value,
}

impl Sample {
    fn json(&self) -> Value {
        json!({
            "s": round3(self.seconds),
            "command_s": round3(self.command_seconds),
            "wire_tx_bytes": self.tx,
            "wire_rx_bytes": self.rx,
            "answer": self.answer,
        })
    }
}

/// A 1% round: the change, its commit on `a`, and each peer's transfer.
struct Round {
    mutation: Mutation,
    /// The changed bytes over the volume's bytes before the change.
    changed: f64,
    /// dvol's `CommitResult` on `a`.
    commit: Value,
    dvol: Sample,
    rsync: Sample,
    /// Whether the link was shaped.
    shaped: bool,
}

impl Round {
    /// The stored size of the commit's new objects on `a`.
    fn new_stored(&self) -> u64 {
        u64_of(&self.commit, "new_bytes_stored")
    }

    fn wall_ratio(&self) -> f64 {
        self.dvol.seconds / self.rsync.seconds
    }

    fn wire_ratio(&self) -> f64 {
        self.dvol.tx as f64 / self.new_stored().max(1) as f64
    }

    fn json(&self) -> Value {
        json!({
            "changed_fraction": round3(self.changed * 100.0) / 100.0,
            "change": self.mutation.json(),
            "shaped": self.shaped,
            "commit": {
                "new_objects": self.commit["new_objects"],
                "new_bytes_stored": self.commit["new_bytes_stored"],
            },
            "dvol": self.dvol.json(),
            "rsync": self.rsync.json(),
            "dvol_over_rsync_wall": round3(self.wall_ratio()),
            "dvol_wire_over_new_stored": round3(self.wire_ratio()),
        })
    }
}

/// The hosts, daemons and peers of the section.
struct TransferBench<'a> {
    topology: &'a Topology,
    a: &'a Daemon,
    name: String,
    /// The volume's data directory on `a`.
    data: PathBuf,
    rsync: &'a RsyncDaemon,
    /// Transfers made so far (the peers' order alternates with it).
    runs: usize,
    /// 1% rounds made so far.
    rounds: usize,
}

impl TransferBench<'_> {
    fn host_a(&self) -> &Host {
        self.topology.host("a")
    }

    /// Times `step` after an untimed `sync`, reading `a`'s veth counters around it.
    fn on_wire(&self, step: impl FnOnce() -> Result<Sample>) -> Result<Sample> {
        sync_host()?;
        let (tx0, rx0) = wire_bytes(self.host_a())?;
        let mut sample = step()?;
        let (tx1, rx1) = wire_bytes(self.host_a())?;
        (sample.tx, sample.rx) = (tx1 - tx0, rx1 - rx0);
        Ok(sample)
    }

    /// `dvol push -V NAME b --json` on `a`; fails unless the outcome is `want`.
    fn push(&self, want: &str) -> Result<Sample> {
        self.on_wire(|| {
            let start = Instant::now();
            let out = self.a.cli(&["push", "-V", &self.name, "b", "--json"]);
            let seconds = start.elapsed().as_secs_f64();
            ensure!(
                out.status.success(),
                "dvol push failed ({}): {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
            let answer: Value = serde_json::from_slice(&out.stdout).context("push --json")?;
            ensure!(
                answer["outcome"] == want,
                "dvol push answered outcome {} (expected {want}): {answer}",
                answer["outcome"]
            );
            Ok(Sample {
                seconds,
                command_seconds: seconds,
                answer,
                ..Sample::default()
            })
        })
    }

    /// `rsync -a --delete DATA/ rsync://B:PORT/mod/` from `a`, then `sync -f` of its copy.
    fn rsync(&self) -> Result<Sample> {
        let b = self.topology.host("b");
        let url = format!("rsync://{}:{RSYNC_PORT}/{RSYNC_MODULE}/", b.addr());
        let source = format!("{}/", self.data.display());
        self.on_wire(|| {
            let start = Instant::now();
            run_ok(
                self.host_a()
                    .command("rsync")
                    .args(["-a", "--delete", &source, &url]),
            )?;
            let command_seconds = start.elapsed().as_secs_f64();
            run_ok(Command::new("sync").arg("-f").arg(&self.rsync.dest))?;
            Ok(Sample {
                seconds: start.elapsed().as_secs_f64(),
                command_seconds,
                ..Sample::default()
            })
        })
    }

    /// A push (outcome `want`) and an rsync run, in an order that alternates from call to call.
    fn both(&mut self, want: &str) -> Result<(Sample, Sample)> {
        let dvol_first = self.runs % 2 == 0;
        self.runs += 1;
        if dvol_first {
            let dvol = self.push(want)?;
            Ok((dvol, self.rsync()?))
        } else {
            let rsync = self.rsync()?;
            Ok((self.push(want)?, rsync))
        }
    }

    /// Writes `mib` MiB of new random data into a new file of the volume on `a`.
    fn write_new(&self, mib: u64, label: &str) -> Result<()> {
        run_ok(
            Command::new("dd")
                .arg("if=/dev/urandom")
                .arg(format!(
                    "of={}",
                    self.data.join(format!("{label}.bin")).display()
                ))
                .args(["bs=1M", &format!("count={mib}"), "status=none"]),
        )?;
        Ok(())
    }

    /// `dvol move NAME b --json` on `a`; its `MoveResult`.
    fn move_to_b(&self) -> Result<Value> {
        let out = self.a.cli(&["move", &self.name, "b", "--json"]);
        ensure!(
            out.status.success(),
            "dvol move failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        serde_json::from_slice(&out.stdout).context("move --json")
    }

    /// A commit on `a` over REST (untimed); its `CommitResult`.
    fn commit(&self, message: &str) -> Result<Value> {
        let (_, result) = api_timed(
            self.a,
            "POST",
            &format!("/v1/volumes/{}/commits", self.name),
            &json!({ "message": message }),
            201,
        )?;
        Ok(result)
    }

    /// Changes 1% of the data, commits it on `a`, then pushes and rsyncs it.
    fn round(&mut self, ds: &mut Dataset, shaped: bool) -> Result<Round> {
        let before = ds.total();
        let mutation = ds.mutate(CHANGE_FRACTION)?;
        self.rounds += 1;
        let n = self.rounds;
        let commit = self.commit(&format!("bench transfer 1% #{n}"))?;
        let (dvol, rsync) = self.both("fast_forward")?;
        let round = Round {
            changed: mutation.changed_bytes() as f64 / before.max(1) as f64,
            mutation,
            commit,
            dvol,
            rsync,
            shaped,
        };
        eprintln!(
            "  transfer 1%{} #{n}: dvol push {:.2} s, {:.1} MB on the wire ({} objects, {:.1} MB stored sent; the commit stored {:.1} MB new)  rsync+sync {:.2} s (rsync {:.2} s), {:.1} MB on the wire",
            if shaped { " shaped" } else { "" },
            round.dvol.seconds,
            mb(round.dvol.tx),
            u64_of(&round.dvol.answer, "objects_sent"),
            mb(u64_of(&round.dvol.answer, "bytes_sent")),
            mb(round.new_stored()),
            round.rsync.seconds,
            round.rsync.command_seconds,
            mb(round.rsync.tx),
        );
        Ok(round)
    }
}

/// Runs the CLI of `daemon`'s host; fails unless it succeeds.
fn dvol_ok(daemon: &Daemon, args: &[&str]) -> Result<()> {
    let out = daemon.cli(args);
    ensure!(
        out.status.success(),
        "dvol {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// VmHWM of each daemon, in KiB.
fn peaks(daemons: [&Daemon; 2]) -> Result<[u64; 2]> {
    Ok([rss_kib(daemons[0].pid())?.1, rss_kib(daemons[1].pid())?.1])
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The median of `f` over `items`.
fn median_of<T>(items: &[T], f: impl Fn(&T) -> f64) -> f64 {
    median(&items.iter().map(f).collect::<Vec<_>>())
}

/// Section `transfer`: see the module documentation and the report's method lines.
pub fn run(args: &Args, report: &mut Report, run_id: &str) -> Result<()> {
    let started = Instant::now();
    let gib = args.transfer_gib.unwrap_or(args.history_gib);
    ensure!(
        dvol_tests::netns::available(),
        "transfer: network namespaces cannot be made here (needs root, ip, nsenter and tc)"
    );
    let rsync_version = String::from_utf8_lossy(
        &run_ok(Command::new("rsync").arg("--version"))
            .context("transfer: rsync is needed (apt-get install rsync)")?
            .stdout,
    )
    .lines()
    .next()
    .unwrap_or_default()
    .split_whitespace()
    .take(3)
    .collect::<Vec<_>>()
    .join(" ");
    let work = tempfile::Builder::new()
        .prefix("dvol-bench-transfer-")
        .tempdir()
        .context("transfer work directory")?;
    ensure_room(
        "transfer",
        work.path(),
        TRANSFER_DISK_FACTOR * gib,
        "--transfer-gib",
        gib,
    )?;

    // Declared in this order, they drop in reverse: the rsync daemon and the daemons before
    // the namespaces they run in.
    let topology = Topology::new(&["a", "b", "c"]);
    let ca = TestCa::new("dvol bench CA");
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs)?;
    let (ha, hb) = (topology.host("a"), topology.host("b"));
    let a = Daemon::start_in_tls(ha, None, &ca, &certs);
    let b = Daemon::start_in_tls(hb, None, &ca, &certs);
    let url = format!("tcp://{}:{HOST_PORT}", hb.addr());
    dvol_ok(
        &a,
        &[
            "remote",
            "add",
            "b",
            &url,
            "--token-file",
            &b.token_file().display().to_string(),
            "--ca",
            &ca.pem_path().display().to_string(),
        ],
    )?;
    let rsync_dir = work.path().join("rsync");
    let rsync = RsyncDaemon::start(hb, ha, &rsync_dir)?;
    let hwm_start = peaks([&a, &b])?;

    let name = format!("bench-transfer-{run_id}");
    let data = create_bronze("transfer", &a, &name)?;
    let (mut ds, build_s, volume_bytes) = write_dataset("transfer", &data, gib)?;
    let mut bench = TransferBench {
        topology: &topology,
        a: &a,
        name: name.clone(),
        data: data.clone(),
        rsync: &rsync,
        runs: 0,
        rounds: 0,
    };
    let first_commit = bench.commit("bench transfer full")?;
    sync_host()?;
    // What the transfers add: VmRSS sampled from here to the end of the resumed push.
    let samplers = [RssSampler::start(a.pid())?, RssSampler::start(b.pid())?];
    let before = [rss_kib(a.pid())?.0, rss_kib(b.pid())?.0];
    let store_a = du_bytes(&a.root.join("history/objects"), true)?;

    // The first full transfer: dvol creates the volume on b; rsync fills an empty module.
    let (full_dvol, full_rsync) = bench.both("created")?;
    let store_b = du_bytes(&b.root.join("history/objects"), true)?;
    eprintln!(
        "  transfer full: dvol push {:.2} s, {:.1} MB on the wire  rsync+sync {:.2} s, {:.1} MB on the wire",
        full_dvol.seconds,
        mb(full_dvol.tx),
        full_rsync.seconds,
        mb(full_rsync.tx)
    );

    // Resume after a cut at 50%: the same commit pushed to a third host c through a relay
    // in c that cuts the connection once half of the stored bytes passed, then pushed again.
    let resume = {
        let hc = topology.host("c");
        let c = Daemon::start_in_tls(hc, None, &ca, &certs);
        let relay = Relay::start(hc, HOST_PORT + 1, (hc.addr(), HOST_PORT).into());
        dvol_ok(
            &a,
            &[
                "remote",
                "add",
                "c",
                &format!("tcp://{}", relay.addr()),
                "--token-file",
                &c.token_file().display().to_string(),
                "--ca",
                &ca.pem_path().display().to_string(),
            ],
        )?;
        let full_sent = u64_of(&full_dvol.answer, "bytes_sent");
        relay.cut_after(Some(full_sent / 2));
        // Not tried again by the daemon: the rerun below is what is measured.
        let cut = a.cli(&["push", "-V", &name, "c", "--json", "--retries", "0"]);
        ensure!(
            !cut.status.success(),
            "the push cut at 50% succeeded: {}",
            String::from_utf8_lossy(&cut.stdout)
        );
        let at_cut = relay.forwarded();
        relay.cut_after(None);
        let out = a.cli(&["push", "-V", &name, "c", "--json"]);
        ensure!(
            out.status.success(),
            "the push resumed after a cut failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let answer: Value = serde_json::from_slice(&out.stdout).context("push --json")?;
        let total = relay.forwarded();
        eprintln!(
            "  transfer resume: cut after {:.1} MB, then {:.1} MB more ({} objects skipped); {:.1} MB in all for {:.1} MB stored",
            mb(at_cut),
            mb(total - at_cut),
            u64_of(&answer, "objects_skipped"),
            mb(total),
            mb(full_sent)
        );
        (full_sent, at_cut, total, answer)
    };
    let [sampled_a, sampled_b] = samplers;
    let peak = [sampled_a.stop()?.0, sampled_b.stop()?.0];

    let mut rounds = Vec::with_capacity(args.transfer_rounds);
    for _ in 0..args.transfer_rounds {
        rounds.push(bench.round(&mut ds, false)?);
    }

    // Nothing new: the push is one round trip; rsync still walks both trees.
    let mut noop = Vec::with_capacity(NOOP_RUNS);
    for _ in 0..NOOP_RUNS {
        noop.push(bench.both("up_to_date")?);
    }

    // The same 1% round over a link shaped to 1 Gbit/s (both ends of a's veth).
    topology.shape("a", SHAPED_RATE);
    let shaped = bench.round(&mut ds, true)?;

    // Untimed: both copies on b hold what a holds.
    let b_data = bronze_data(
        "transfer",
        &b,
        &api_get(&b, &format!("/v1/volumes/{name}"))?,
    )?;
    let sizes = [
        file_bytes(&data)?,
        file_bytes(&b_data)?,
        file_bytes(&rsync.dest)?,
    ];
    // The move's final round with 20 MiB written since the last: what it does while the
    // containers are stopped is a commit on a and a push that b checks out, timed here as
    // such; then a real `dvol move` (no container writes meanwhile, so its pre-copy round
    // takes the 20 MiB written before it and the final round is small).
    bench.write_new(MOVE_DIRTY_MIB, "final-round")?;
    let final_start = Instant::now();
    bench.commit("bench transfer: the move's final round")?;
    let final_push = bench.push("fast_forward")?;
    let final_round_s = final_start.elapsed().as_secs_f64();
    bench.write_new(MOVE_DIRTY_MIB, "moved")?;
    let moved = bench.move_to_b()?;
    let hwm_end = peaks([&a, &b])?;
    let elapsed = started.elapsed().as_secs_f64();

    // --- Report.
    report.line(format!(
        "transfer: hosts a and b in network namespaces (a veth each on a bridge), TLS daemons; a bronze volume on a of {:.0} MB ({gib} GiB asked) of the history section's mixed data, written in {build_s:.1} s; its first commit stored {:.0} MB in {} objects (a's store: du -sb history/objects {:.0} MB = {:.3}x the volume)",
        mb(volume_bytes),
        mb(u64_of(&first_commit, "new_bytes_stored")),
        u64_of(&first_commit, "new_objects"),
        mb(store_a),
        store_a as f64 / volume_bytes.max(1) as f64,
    ));
    report.line(format!(
        "transfer method: dvol = `dvol push -V VOL b --json` on a (wall time of the CLI; the receiver makes the objects durable and checks the commit out into b's volume before answering); rsync = `{rsync_version}` `rsync -a --delete DATA/ rsync://10.77.0.2:{RSYNC_PORT}/{RSYNC_MODULE}/` from a to an rsync daemon in b (use chroot = no), then `sync -f` of its copy, timed together (rsync alone in brackets); rsync's copy is the previous round's, so it is incremental too; order alternating from run to run, each after an untimed `sync`; bytes on the wire = tx/rx counters of a's eth0 (`ip -s -j link show`: frames with their IP and TCP headers, TLS included for dvol); each 1% change committed on a before, untimed; MB = 10^6 bytes"
    ));

    let full_ratio = full_dvol.seconds / full_rsync.seconds;
    let full_pass = full_ratio <= AIM_FULL_WALL_RATIO;
    let verdict = report.aim("transfer full push vs rsync", full_pass);
    report.line(format!(
        "transfer full     dvol {:>7.2} s  rsync+sync {:>7.2} s (rsync {:.2} s)  dvol/rsync {full_ratio:>5.2}x  aim <= {AIM_FULL_WALL_RATIO:.1}x  {verdict}   wire a->b: dvol {:.1} MB ({} objects, {:.1} MB stored sent; {:.0} MB/s of the volume), rsync {:.1} MB; b->a: dvol {:.2} MB, rsync {:.2} MB; b's store {:.0} MB",
        full_dvol.seconds,
        full_rsync.seconds,
        full_rsync.command_seconds,
        mb(full_dvol.tx),
        u64_of(&full_dvol.answer, "objects_sent"),
        mb(u64_of(&full_dvol.answer, "bytes_sent")),
        mb(volume_bytes) / full_dvol.seconds,
        mb(full_rsync.tx),
        mb(full_dvol.rx),
        mb(full_rsync.rx),
        mb(store_b),
    ));

    let wall = |rs: &[Round]| {
        (
            median_of(rs, |r| r.dvol.seconds),
            median_of(rs, |r| r.rsync.seconds),
        )
    };
    let (d, r) = wall(&rounds);
    let change_ratio = d / r;
    let change_pass = change_ratio <= AIM_CHANGE_WALL_RATIO;
    let verdict = report.aim("transfer 1% push vs rsync", change_pass);
    report.line(format!(
        "transfer 1%       n={} changed {:.3}%  dvol {d:>7.2} s  rsync+sync {r:>7.2} s (rsync {:.2} s)  dvol/rsync {change_ratio:>5.2}x of medians (median of ratios {:.2}x)  aim <= {AIM_CHANGE_WALL_RATIO}x  {verdict}",
        rounds.len(),
        median_of(&rounds, |r| r.changed * 100.0),
        median_of(&rounds, |r| r.rsync.command_seconds),
        median_of(&rounds, Round::wall_ratio),
    ));
    let wire_ratio = median_of(&rounds, Round::wire_ratio);
    let wire_pass = wire_ratio <= AIM_CHANGE_WIRE_RATIO;
    let verdict = report.aim("transfer 1% bytes on the wire", wire_pass);
    let dvol_tx = median_of(&rounds, |r| r.dvol.tx as f64);
    let sent = median_of(&rounds, |r| u64_of(&r.dvol.answer, "bytes_sent") as f64);
    report.line(format!(
        "transfer 1%       wire a->b: dvol {:.2} MB = {wire_ratio:.3}x the commit's new objects stored ({:.2} MB, {:.0} objects)  aim <= {AIM_CHANGE_WIRE_RATIO}x  {verdict}   (= {:.3}x the answer's bytes_sent {:.2} MB, {:.0} objects sent, {:.0} skipped); rsync {:.2} MB (dvol/rsync {:.2}x); b->a: dvol {:.2} MB, rsync {:.2} MB (medians)",
        mb(dvol_tx as u64),
        mb(median_of(&rounds, |r| r.new_stored() as f64) as u64),
        median_of(&rounds, |r| u64_of(&r.commit, "new_objects") as f64),
        dvol_tx / sent.max(1.0),
        mb(sent as u64),
        median_of(&rounds, |r| u64_of(&r.dvol.answer, "objects_sent") as f64),
        median_of(&rounds, |r| u64_of(&r.dvol.answer, "objects_skipped") as f64),
        mb(median_of(&rounds, |r| r.rsync.tx as f64) as u64),
        dvol_tx / median_of(&rounds, |r| r.rsync.tx as f64).max(1.0),
        mb(median_of(&rounds, |r| r.dvol.rx as f64) as u64),
        mb(median_of(&rounds, |r| r.rsync.rx as f64) as u64),
    ));

    let noop_ms = median_of(&noop, |(d, _)| d.seconds * 1e3);
    let noop_wire = median_of(&noop, |(d, _)| (d.tx + d.rx) as f64) as u64;
    let noop_pass = noop_ms <= AIM_NOOP_MS;
    let noop_wire_pass = noop_wire <= AIM_NOOP_WIRE_BYTES;
    let verdict = report.aim("transfer no-op push time", noop_pass);
    report.line(format!(
        "transfer nothing new n={NOOP_RUNS}: dvol push {noop_ms:>6.1} ms  aim <= {AIM_NOOP_MS:.0} ms  {verdict}   (rsync+sync {:.0} ms, rsync {:.0} ms; medians)",
        median_of(&noop, |(_, r)| r.seconds * 1e3),
        median_of(&noop, |(_, r)| r.command_seconds * 1e3),
    ));
    let verdict = report.aim("transfer no-op push bytes", noop_wire_pass);
    report.line(format!(
        "transfer nothing new: dvol {noop_wire} bytes on the wire (both directions)  aim <= {AIM_NOOP_WIRE_BYTES}  {verdict}   (rsync {:.0} bytes; medians)",
        median_of(&noop, |(_, r)| (r.tx + r.rx) as f64),
    ));

    report.line(format!(
        "transfer 1% over {SHAPED_RATE} (tbf on both ends of a's veth), n=1: changed {:.3}%  dvol {:.2} s  rsync+sync {:.2} s (rsync {:.2} s)  dvol/rsync {:.2}x; wire a->b dvol {:.2} MB ({:.3}x the new objects stored), rsync {:.2} MB (for information)",
        shaped.changed * 100.0,
        shaped.dvol.seconds,
        shaped.rsync.seconds,
        shaped.rsync.command_seconds,
        shaped.wall_ratio(),
        mb(shaped.dvol.tx),
        shaped.wire_ratio(),
        mb(shaped.rsync.tx),
    ));

    let move_pass = final_round_s <= AIM_MOVE_DOWNTIME_S;
    let verdict = report.aim("transfer move final round", move_pass);
    report.line(format!(
        "transfer move     final round with {MOVE_DIRTY_MIB} MiB written since the last (commit on a + push checked out on b, over {SHAPED_RATE}): {final_round_s:.2} s (push {:.2} s, {:.1} MB sent)  aim <= {AIM_MOVE_DOWNTIME_S:.0} s  {verdict}   `dvol move` after {MOVE_DIRTY_MIB} MiB written, no writer: {} pre-copy round(s), downtime {} ms (stop, final commit, final push, mark moved), final round {:.2} MB sent",
        final_push.seconds,
        mb(u64_of(&final_push.answer, "bytes_sent")),
        moved["rounds"].as_array().map_or(0, Vec::len),
        moved["downtime_ms"],
        mb(moved["transfer"]["bytes_sent"].as_u64().unwrap_or(0)),
    ));

    let (full_sent, at_cut, resume_total, resume_answer) = resume;
    let resume_extra = resume_total.saturating_sub(full_sent);
    let resume_pass = resume_extra <= AIM_RESUME_EXTRA_MIB << 20;
    let verdict = report.aim("transfer resume after a cut at 50%", resume_pass);
    report.line(format!(
        "transfer resume   cut at 50% (after {:.1} MB through a relay in host c), then pushed again: {:.1} MB forwarded in all for {:.1} MB stored = full + {:.1} MiB  aim <= full + {AIM_RESUME_EXTRA_MIB} MiB  {verdict}   (the rerun skipped {} objects)",
        mb(at_cut),
        mb(resume_total),
        mb(full_sent),
        mib(resume_extra >> 10),
        u64_of(&resume_answer, "objects_skipped"),
    ));

    let growth = [
        mib(peak[0].saturating_sub(before[0])),
        mib(peak[1].saturating_sub(before[1])),
    ];
    let hwm_pass = growth.iter().all(|&g| g <= AIM_HWM_GROWTH_MIB);
    let verdict = report.aim("transfer daemon memory growth", hwm_pass);
    report.line(format!(
        "transfer memory: peak VmRSS during the full and the resumed push, over VmRSS before: a's daemon (sender) {:.1} -> {:.1} MiB (+{:.1}), b's (receiver) {:.1} -> {:.1} MiB (+{:.1})  aim growth <= {AIM_HWM_GROWTH_MIB:.0} MiB  {verdict}   (VmHWM over the section, a's commits included: a {:.1} -> {:.1} MiB, b {:.1} -> {:.1} MiB)",
        mib(before[0]),
        mib(peak[0]),
        growth[0],
        mib(before[1]),
        mib(peak[1]),
        growth[1],
        mib(hwm_start[0]),
        mib(hwm_end[0]),
        mib(hwm_start[1]),
        mib(hwm_end[1]),
    ));
    let same = sizes[0] == sizes[1] && sizes[1] == sizes[2];
    report.line(format!(
        "transfer end: bytes in regular files of the volume on a {:.1} MB, on b {:.1} MB, in rsync's copy {:.1} MB ({}); section took {elapsed:.0} s",
        mb(sizes[0]),
        mb(sizes[1]),
        mb(sizes[2]),
        if same { "equal" } else { "NOT EQUAL" },
    ));

    report.json.insert(
        "transfer".into(),
        json!({
            "gib": gib,
            "volume_bytes": volume_bytes,
            "build_s": round3(build_s),
            "rsync_version": rsync_version,
            "first_commit": {
                "new_objects": first_commit["new_objects"],
                "new_bytes_stored": first_commit["new_bytes_stored"],
            },
            "store_a_bytes": store_a,
            "store_b_bytes_after_full": store_b,
            "full": {
                "dvol": full_dvol.json(),
                "rsync": full_rsync.json(),
                "dvol_over_rsync_wall": round3(full_ratio),
                "aim_dvol_over_rsync_max": AIM_FULL_WALL_RATIO,
                "pass": full_pass,
            },
            "one_percent": {
                "rounds": rounds.iter().map(Round::json).collect::<Vec<_>>(),
                "dvol_median_s": round3(d),
                "rsync_median_s": round3(r),
                "dvol_over_rsync_of_medians": round3(change_ratio),
                "aim_dvol_over_rsync_max": AIM_CHANGE_WALL_RATIO,
                "wall_pass": change_pass,
                "dvol_wire_over_new_stored_median": round3(wire_ratio),
                "aim_dvol_wire_over_new_stored_max": AIM_CHANGE_WIRE_RATIO,
                "wire_pass": wire_pass,
            },
            "no_change": {
                "dvol_samples_ms": rounded(&noop.iter().map(|(d, _)| d.seconds * 1e3).collect::<Vec<_>>()),
                "dvol_median_ms": round1(noop_ms),
                "aim_ms_max": AIM_NOOP_MS,
                "pass": noop_pass,
                "dvol_wire_bytes_median": noop_wire,
                "aim_wire_bytes_max": AIM_NOOP_WIRE_BYTES,
                "wire_pass": noop_wire_pass,
                "runs": noop.iter().map(|(d, r)| json!({"dvol": d.json(), "rsync": r.json()})).collect::<Vec<_>>(),
            },
            "shaped": {
                "rate": SHAPED_RATE,
                "round": shaped.json(),
            },
            "resume": {
                "full_bytes_sent": full_sent,
                "forwarded_at_cut": at_cut,
                "forwarded_total": resume_total,
                "aim_extra_mib_max": AIM_RESUME_EXTRA_MIB,
                "pass": resume_pass,
                "rerun": resume_answer,
            },
            "move": {
                "dirty_mib": MOVE_DIRTY_MIB,
                "final_round_s": round3(final_round_s),
                "final_round_push": final_push.json(),
                "aim_s_max": AIM_MOVE_DOWNTIME_S,
                "pass": move_pass,
                "move_result": moved,
            },
            "memory": {
                "a_vmrss_during_transfers_kib": [before[0], peak[0]],
                "b_vmrss_during_transfers_kib": [before[1], peak[1]],
                "a_vmhwm_kib": [hwm_start[0], hwm_end[0]],
                "b_vmhwm_kib": [hwm_start[1], hwm_end[1]],
                "aim_growth_mib_max": AIM_HWM_GROWTH_MIB,
                "pass": hwm_pass,
            },
            "end_sizes_equal": same,
            "end_bytes": {"a": sizes[0], "b": sizes[1], "rsync": sizes[2]},
            "elapsed_s": round1(elapsed),
        }),
    );
    Ok(())
}
