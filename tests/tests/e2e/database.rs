//! A real database on dvol volumes, through the real Docker Engine: PostgreSQL 15 from Debian's
//! packages (the local image `scripts/build-database-image.sh` builds) runs pgbench on a
//! volume while the volume is committed three times. Each commit, cloned (`-o from=COMMIT`),
//! starts as a second server, which recovers from the commit's instant as from a crash, and
//! must then pass `pg_amcheck` (heap and every index) and hold pgbench's invariants: every
//! account row there, the balances of accounts, tellers and branches each summing to the
//! deltas of the history, and as many history rows as were committed between just before the
//! commit and just after it.
//!
//! - On an XFS root a silver volume is read at reflinked copies, and the commits after the
//!   first read the database's files by changed ranges (`files_read_by_ranges`).
//! - On this host's ext4 root a gold volume (a loop XFS image here: the host has no volume
//!   group) is read frozen.

use std::time::{Duration, Instant};

use dvol_tests::fixtures::*;
use dvol_tests::postgres::Postgres;
use dvol_tests::{database_image_ready, is_root, require, Daemon};
use serde_json::Value;

use crate::copy_on_write::XfsPool;

/// pgbench's scale: 100,000 accounts per unit, about 15 MiB each; the accounts table is then a
/// file of several chunks.
const SCALE: u64 = 5;

/// Whether the test may go on: it needs root (mounts), the engine and the database image.
fn ready() -> bool {
    require("root", is_root()) && require("PostgreSQL test image", database_image_ready())
}

/// A commit made while pgbench ran, with the history rows counted just before and after it.
struct Taken {
    result: Value,
    rows_before: u64,
    rows_after: u64,
}

/// Commits `volume` three times while pgbench writes to it, then checks every commit as a
/// second server; returns the commit results.
fn commits_while_pgbench_runs_recover_consistent(daemon: &Daemon, volume: &str) -> Vec<Value> {
    let pg = Postgres::start(daemon, volume);
    pg.init_pgbench(daemon, SCALE);
    let bench = pg.pgbench(40);
    let mut taken = Vec::new();
    let started = Instant::now();
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(4));
        let rows_before = pg.history_rows(daemon);
        let result = commit(daemon, volume, &format!("during pgbench, {round}"));
        let rows_after = pg.history_rows(daemon);
        assert!(
            rows_after > rows_before,
            "pgbench did not run during commit {round}"
        );
        eprintln!(
            "commit {round} during pgbench: read {} bytes ({} files by ranges), stored {} bytes",
            result["bytes_read"], result["files_read_by_ranges"], result["new_bytes_stored"]
        );
        taken.push(Taken {
            result,
            rows_before,
            rows_after,
        });
    }
    let commits_took = started.elapsed();
    let out = bench.wait_with_output().expect("wait for pgbench");
    assert!(
        out.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        commits_took < Duration::from_secs(40),
        "the commits took {commits_took:?}, longer than pgbench ran: not all were made during it"
    );
    drop(pg);

    for (i, t) in taken.iter().enumerate() {
        let id = t.result["commit"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{:#}", t.result));
        let copy = docker_volume_create(
            daemon,
            &unique("dvol-e2e-pg-copy"),
            &[&format!("from={}", &id[..12])],
        );
        let second = Postgres::start(daemon, &copy.name);
        second.exec(
            daemon,
            &[
                "pg_amcheck",
                "-h",
                "/tmp",
                "-U",
                "postgres",
                "--install-missing",
                "--heapallindexed",
                "-d",
                "postgres",
            ],
        );
        let accounts = second.query(daemon, "select count(*) from pgbench_accounts");
        assert_eq!(accounts, (SCALE * 100_000).to_string(), "commit {i}");
        let sums = second.query(
            daemon,
            "select (select sum(abalance) from pgbench_accounts) || ' ' || \
             (select sum(tbalance) from pgbench_tellers) || ' ' || \
             (select sum(bbalance) from pgbench_branches) || ' ' || \
             (select coalesce(sum(delta), 0) from pgbench_history)",
        );
        let sums: Vec<&str> = sums.split(' ').collect();
        assert!(
            sums.len() == 4 && sums.iter().all(|s| *s == sums[0]),
            "commit {i}: balances of accounts, tellers, branches and the history's deltas differ: {sums:?}"
        );
        let rows = second.history_rows(daemon);
        assert!(
            (t.rows_before..=t.rows_after).contains(&rows),
            "commit {i} holds {rows} history rows; {} were committed just before it and {} just after",
            t.rows_before,
            t.rows_after
        );
        eprintln!(
            "commit {i}: the clone recovered, passed pg_amcheck and holds {rows} transactions ({}..={})",
            t.rows_before, t.rows_after
        );
    }
    assert_fsck_clean(daemon, "after commits of a database");
    taken.into_iter().map(|t| t.result).collect()
}

#[test]
fn on_a_reflink_root_commits_of_a_running_postgresql_recover_and_read_by_changed_ranges() {
    if !ready() {
        return;
    }
    let pool = XfsPool::mount();
    let daemon = Daemon::start_for_docker_under(&pool.path(), Vec::new());
    let volume = docker_volume_create(
        &daemon,
        &unique("dvol-e2e-pg"),
        &["profile=silver", "size=512M"],
    );
    let results = commits_while_pgbench_runs_recover_consistent(&daemon, &volume.name);
    for r in &results {
        assert_eq!(r["read_from"], "snapshot", "{r:#}");
    }
    for r in &results[1..] {
        assert!(
            r["files_read_by_ranges"].as_u64().is_some_and(|n| n >= 1),
            "a commit after the first read no file by changed ranges: {r:#}"
        );
    }
}

#[test]
fn commits_of_a_running_postgresql_on_gold_read_frozen_recover() {
    if !ready() {
        return;
    }
    let daemon = Daemon::start_for_docker();
    let volume = docker_volume_create(
        &daemon,
        &unique("dvol-e2e-pg-gold"),
        &["profile=gold", "size=512M"],
    );
    let results = commits_while_pgbench_runs_recover_consistent(&daemon, &volume.name);
    for r in &results {
        assert_eq!(r["read_from"], "frozen", "{r:#}");
    }
}
