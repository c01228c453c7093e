#!/usr/bin/env bash
# Installs the Debian packages dvol's tests need on a fresh machine. Idempotent and quick when
# everything is present.
set -euo pipefail
packages=(docker.io busybox-static util-linux e2fsprogs)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
