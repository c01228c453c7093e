#!/usr/bin/env bash
# Builds the local test image dvol-test/busybox:latest from busybox-static (no registry is
# reachable here). Idempotent: does nothing when the image exists.
set -euo pipefail
image=${DVOL_TEST_IMAGE:-dvol-test/busybox:latest}
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/data" "$dir/tmp"
cp /bin/busybox "$dir/bin/busybox"
for applet in sh ls cat echo sleep true false mkdir rm cp mv dd head tail wc sync stat touch \
  find grep sed sha256sum md5sum du df test seq yes mount id printf; do
  ln -s busybox "$dir/bin/$applet"
done
tar -C "$dir" -c . | docker import - "$image" >/dev/null
echo "built $image"
