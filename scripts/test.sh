#!/usr/bin/env bash
# The whole test suite: installs what it needs, starts the Docker Engine, builds the test image
# and the binaries, then runs every test. Set DVOL_REQUIRE_ALL=1 to make a missing real
# component (Docker Engine, root for mounts) fail its tests instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/start-dockerd.sh
bash scripts/build-test-image.sh
cargo build --locked --workspace --bins
cargo test --locked --workspace
