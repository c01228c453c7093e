#!/usr/bin/env bash
# Builds dvol and the benchmark in release mode, makes sure the Docker Engine answers and the
# test image exists, then runs the benchmark. Arguments go to dvol-bench, e.g.
#   bash scripts/bench.sh --json bench.json
#   bash scripts/bench.sh --volumes 50 --rounds 3      # quick smoke check
#   bash scripts/bench.sh --only backends,throughput   # some sections only
# Sections (default all): plugin, docker, memory, backends, throughput. `backends` and
# `throughput` make loop devices and 1 GiB images; `throughput` drops the host's page cache
# between runs (echo 3 > /proc/sys/vm/drop_caches), which slows other work on the host a little.
# Needs root (the daemon bind-mounts volumes). Exits non-zero if a step fails; a missed aim is
# reported as MISS but does not fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p dvol -p dvol-tests
bash scripts/start-dockerd.sh
bash scripts/build-test-image.sh
DVOL_BIN="$PWD/target/release/dvol" exec target/release/dvol-bench "$@"
