//! PostgreSQL 15 in containers on dvol volumes, for the database tests and the benchmark:
//! the image [`crate::DATABASE_IMAGE`] (built by `scripts/build-database-image.sh` from the
//! host's Debian packages), a server per volume, and its clients (psql, pgbench, pg_amcheck).

use std::process::{Child, Command, Stdio};

use crate::fixtures::{must, unique, wait_until, Container};
use crate::{Daemon, DATABASE_IMAGE};

/// A PostgreSQL server in a container, on a dvol volume at /data (its cluster in /data/pg,
/// made by `initdb` if the volume holds none); removed when dropped.
pub struct Postgres(pub Container);

impl Postgres {
    /// Starts the server on `volume` and waits until it accepts connections.
    pub fn start(daemon: &Daemon, volume: &str) -> Postgres {
        let mount = format!("{volume}:/data");
        let prepare = "mkdir -p /data/pg && chown 999:999 /data/pg && chmod 700 /data/pg";
        must(daemon, &database_run(daemon, &mount, &["--rm"], prepare));
        let name = unique("dvol-e2e-pg");
        let server = "[ -s /data/pg/PG_VERSION ] || initdb -D /data/pg -E UTF8 --locale=C \
             -A trust -U postgres >/dev/null; exec postgres -D /data/pg -k /tmp \
             -c listen_addresses= -c max_wal_size=256MB";
        must(
            daemon,
            &database_run(
                daemon,
                &mount,
                &["-d", "--name", &name, "--user", "999:999"],
                server,
            ),
        );
        let pg = Postgres(Container(name));
        pg.wait_ready(daemon);
        pg
    }

    /// Runs `args` (a PostgreSQL client) in the server's container; returns stdout.
    pub fn exec(&self, daemon: &Daemon, args: &[&str]) -> String {
        let mut all = vec!["exec", self.0 .0.as_str()];
        all.extend_from_slice(args);
        must(daemon, &all)
    }

    /// The value of the query `sql` (one row, one column).
    pub fn query(&self, daemon: &Daemon, sql: &str) -> String {
        self.exec(
            daemon,
            &[
                "psql", "-h", "/tmp", "-U", "postgres", "-XAtc", sql, "postgres",
            ],
        )
    }

    /// Rows in pgbench's history table: one per transaction committed.
    pub fn history_rows(&self, daemon: &Daemon) -> u64 {
        let rows = self.query(daemon, "select count(*) from pgbench_history");
        rows.parse()
            .unwrap_or_else(|_| panic!("history rows: {rows:?}"))
    }

    /// Starts pgbench (2 clients, `seconds` long, TPC-B-like) against the server, in the
    /// background; its output is piped.
    pub fn pgbench(&self, seconds: u64) -> Child {
        Command::new("docker")
            .args([
                "exec", &self.0 .0, "pgbench", "-h", "/tmp", "-U", "postgres", "-n",
            ])
            .args(["-c", "2", "-T", &seconds.to_string(), "postgres"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pgbench")
    }
}

/// `docker run` arguments for `script` in the database image, without network, with the
/// volume argument `mount` served by `daemon`'s driver and the options `extra`.
pub fn database_run<'a>(
    daemon: &'a Daemon,
    mount: &'a str,
    extra: &[&'a str],
    script: &'a str,
) -> Vec<&'a str> {
    let mut args = vec!["run", "--network", "none", "--volume-driver"];
    args.extend_from_slice(&[&daemon.driver, "-v", mount]);
    args.extend_from_slice(extra);
    args.extend_from_slice(&[DATABASE_IMAGE, "sh", "-c", script]);
    args
}

impl Postgres {
    /// `pgbench -i` at `scale` (100,000 accounts per unit, about 15 MiB).
    pub fn init_pgbench(&self, daemon: &Daemon, scale: u64) {
        let scale = scale.to_string();
        self.exec(
            daemon,
            &[
                "pgbench", "-h", "/tmp", "-U", "postgres", "-i", "-q", "-s", &scale, "postgres",
            ],
        );
    }

    /// Stops the server cleanly (SIGTERM, up to 60 s) and keeps the container.
    pub fn stop(&self, daemon: &Daemon) {
        must(daemon, &["stop", "-t", "60", &self.0 .0]);
    }

    /// Starts the stopped server again and waits until it accepts connections.
    pub fn restart(&self, daemon: &Daemon) {
        must(daemon, &["start", &self.0 .0]);
        self.wait_ready(daemon);
    }

    fn wait_ready(&self, daemon: &Daemon) {
        wait_until(daemon, "PostgreSQL accepts connections", 120, || {
            crate::docker(&["exec", &self.0 .0, "pg_isready", "-q", "-h", "/tmp"])
                .status
                .success()
        });
    }
}
