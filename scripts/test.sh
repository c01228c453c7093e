#!/usr/bin/env bash
# The whole test suite: installs what it needs, starts the Docker Engine, builds the test image
# and the binaries, then runs every test. Set DVOL_REQUIRE_ALL=1 to make a missing real
# component (Docker Engine, root for mounts) fail its tests instead of skipping them.
#
# Then it leaves the engine as fast as it found it: the engine keeps every test daemon's volume
# driver in memory until it restarts (see tests/src/engine.rs), so the script restarts it
# (scripts/start-dockerd.sh --restart), and fails if a dead test plugin socket is left in
# /run/docker/plugins, if the engine still records a volume of a dead driver, or if looking up
# an unknown volume name takes longer than 5 s.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/start-dockerd.sh
bash scripts/build-test-image.sh
bash scripts/build-database-image.sh
cargo build --locked --workspace --bins
status=0
cargo test --locked --workspace || status=$?

# Seconds since $1 (an $EPOCHREALTIME), to the millisecond.
since() {
  awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'
}

dead=()
for socket in /run/docker/plugins/dvol-e2e-*.sock; do
  [ -S "$socket" ] || continue
  grep -qF " $socket" /proc/net/unix || dead+=("$socket")
done
if [ ${#dead[@]} -gt 0 ]; then
  echo "test.sh: FAILED: dead test plugin sockets were left (removed now): ${dead[*]}" >&2
  rm -f "${dead[@]}"
  status=1
fi

export DOCKERD_LOG=${DOCKERD_LOG:-/tmp/dockerd.log}
started=$EPOCHREALTIME
bash scripts/start-dockerd.sh --restart
echo "test.sh: the Docker Engine restarted in $(since "$started") s"
# At start the engine looks up the driver of every volume it records; a dead driver's volume
# costs about 15 s and is logged.
if grep -q 'Error restoring volume' "$DOCKERD_LOG"; then
  echo "test.sh: FAILED: the engine still recorded volumes of dead drivers:" >&2
  grep 'Error restoring volume' "$DOCKERD_LOG" >&2
  status=1
fi

name="dvol-no-such-volume-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
started=$EPOCHREALTIME
if docker volume inspect "$name" >/dev/null 2>&1; then
  echo "test.sh: FAILED: docker volume inspect $name found a volume" >&2
  status=1
fi
took=$(since "$started")
echo "test.sh: docker volume inspect $name failed, as it should, after $took s"
if awk -v t="$took" 'BEGIN { exit !(t > 5) }'; then
  echo "test.sh: FAILED: looking up an unknown volume name took $took s (at most 5 s)" >&2
  status=1
fi
exit "$status"
