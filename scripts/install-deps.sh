#!/usr/bin/env bash
# Installs the Debian packages dvol's tests need on a fresh machine: those listed in
# scripts/packages.txt and scripts/*/packages.txt, then schemathesis (PyPI, pinned) in the
# virtual environment /opt/dvol-test-venv. Idempotent and quick when all are present.
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

# schemathesis (PyPI), the API fuzzer of tests/tests/e2e/api_schema.rs, pinned, in a virtual
# environment of its own; the test finds it there.
schemathesis_version=4.32.5
venv=/opt/dvol-test-venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "version $schemathesis_version"; then
  echo "install-deps: installing schemathesis $schemathesis_version in $venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$schemathesis_version"
fi
