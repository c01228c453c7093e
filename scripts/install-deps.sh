#!/usr/bin/env bash
# Installs the Debian packages dvol's tests need on a fresh machine: those listed in
# scripts/packages.txt and scripts/*/packages.txt. Idempotent and quick when all are present.
set -euo pipefail
cd "$(dirname "$0")"
mapfile -t packages < <(cat packages.txt */packages.txt 2>/dev/null | sed 's/#.*//' | awk 'NF {print $1}' | sort -u)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
