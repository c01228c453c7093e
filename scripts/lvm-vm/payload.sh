#!/usr/bin/env bash
# Packs a test binary as the LVM VM's payload: an uncompressed cpio archive (newc) holding
# /payload/dvol-vm-payload and every shared library it needs. The kernel unpacks concatenated
# archives in order, so appending it to the base image from build.sh adds the payload. The base
# must first be padded with zeros to a multiple of 4 bytes (the kernel looks for an uncompressed
# archive only at aligned offsets and skips zeros):
#   cp initrd-base.cpio.gz initrd; truncate -s %512 initrd; cat payload.cpio >> initrd
#
#   scripts/lvm-vm/payload.sh BINARY OUT.cpio
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 BINARY OUT.cpio" >&2; exit 2; }
BINARY=$1
OUT=$2
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

for top in bin sbin lib lib64; do
  if [ -L "/$top" ]; then ln -s "$(readlink "/$top")" "$STAGE/$top"; else mkdir -p "$STAGE/$top"; fi
done
mkdir -p "$STAGE/usr/lib" "$STAGE/usr/lib64" "$STAGE/payload"

copy_in() {
  local path=$1 dir name
  dir=$(readlink -f "$(dirname "$path")")
  name=$(basename "$path")
  mkdir -p "$STAGE$dir"
  if [ -L "$path" ]; then
    local real
    real=$(readlink -f "$path")
    copy_in "$real"
    [ "$dir/$name" = "$real" ] || ln -sfn "$real" "$STAGE$dir/$name"
  elif [ ! -e "$STAGE$dir/$name" ]; then
    cp "$path" "$STAGE$dir/$name"
  fi
}

# Debug info makes test binaries large; the VM only needs the code (backtraces keep symbols).
if command -v strip >/dev/null; then
  strip --strip-debug -o "$STAGE/payload/dvol-vm-payload" "$BINARY"
else
  cp "$BINARY" "$STAGE/payload/dvol-vm-payload"
fi
chmod 755 "$STAGE/payload/dvol-vm-payload"
ldd "$BINARY" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do copy_in "$lib"; done || true

(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) >"$OUT"
