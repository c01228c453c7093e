#!/usr/bin/env bash
# Builds dvol and the benchmark in release mode, makes sure the Docker Engine answers and the
# test image exists, then runs the benchmark. Arguments go to dvol-bench, e.g.
#   bash scripts/bench.sh --json bench.json
#   bash scripts/bench.sh --volumes 50 --rounds 3      # quick smoke check
#   bash scripts/bench.sh --only backends,throughput   # some sections only
#   bash scripts/bench.sh --only history --history-gib 1
#   bash scripts/bench.sh --only transfer --transfer-gib 0.25 --transfer-rounds 2
# Sections (default all): plugin, docker, memory, backends, throughput, history, readpoint,
# scale, transfer, database. `backends` and `throughput` make loop devices and 1 GiB images; `throughput` drops
# the host's page cache between runs (echo 3 > /proc/sys/vm/drop_caches), which slows other
# work on the host a little.
# `history` writes --history-gib GiB (default 2) of mixed data into a bronze volume and times
# `dvol commit` against `cp -a` + `sync -f` and `restic backup` (restic must be installed), a
# full checkout against `cp -a` + `sync -f`, and ends with the physical limits (disk read and
# durable write, blake3/zstd/FastCDC per core; it drops the page cache once); it wants about
# 5x that much free space under $TMPDIR (default /tmp) and takes several minutes (10-16 at
# 2 GiB on a 2-CPU host, depending on the disk and on what else runs there).
# `readpoint` times 1%-change commits of a loop volume a container keeps writing, dvol's read
# point against `--pause`, and how long the writer is held up by each.
# `scale` commits bronze volumes of --scale-gib sizes (default 2,20) of the history data and
# judges the daemon's peak resident memory during each commit; it wants twice the largest size
# free under $TMPDIR and takes about 4 minutes at 20 GiB.
# `transfer` makes two hosts in network namespaces with TLS daemons and times `dvol push` of a
# bronze volume of --transfer-gib GiB (default: --history-gib) of the history data against
# `rsync -a --delete` to an rsync daemon (rsync must be installed): the full transfer,
# --transfer-rounds (default 3) 1%-change rounds, a push with nothing new and a 1% round over
# a link shaped to 1 Gbit/s, a push to a third host cut at 50% and run again, and a move's
# final round with 20 MiB written since the last; it wants about 7x the volume free under
# $TMPDIR.
# `database` runs PostgreSQL 15 (the image scripts/build-database-image.sh builds; needs
# postgresql-15 and postgresql-client-15 installed) with pgbench at --database-scale (default
# 100, about 1.5 GiB) on a silver volume, on an XFS root it makes (a 24 GiB sparse image under
# $TMPDIR) and on the host's root: --database-rounds rounds (default 5) of --database-seconds
# of pgbench (default 30), each followed by a commit, restic backup and a checkout; about 12
# minutes with the defaults.
# Needs root (the daemon bind-mounts volumes). Exits non-zero if a step fails; a missed aim is
# reported as MISS but does not fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p dvol -p dvol-tests
bash scripts/start-dockerd.sh
bash scripts/build-test-image.sh
DVOL_BIN="$PWD/target/release/dvol" exec target/release/dvol-bench "$@"
