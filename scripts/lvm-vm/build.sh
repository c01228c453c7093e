#!/usr/bin/env bash
# Builds (once) the small VM the LVM tests run in: a Debian cloud kernel and a base initramfs
# with busybox, lvm2 and dmsetup, the thin-provisioning tools, the filesystem tools, PostgreSQL
# 15, the kernel modules device-mapper thin needs, and an /init that makes a volume group
# "dvoltest" with a thin pool "pool" on /dev/vda, runs the test payload and prints "DVOL-VM-RESULT: PASS|FAIL".
#
#   scripts/lvm-vm/build.sh [CACHE_DIR]     (default /var/cache/dvol-lvm-vm)
#
# Idempotent: the kernel is downloaded once (apt-get download, not installed) and the base
# initramfs is rebuilt only when this script or init changes. Prints `kernel=PATH` and `initrd=PATH`.
# The payload (a test binary) is added per run by payload.sh as a second, appended cpio archive.
# Exit code 3 means a prerequisite is missing on this host (tool not installed, no kernel
# package reachable); anything else non-zero is a real failure.
set -euo pipefail

CACHE=${1:-/var/cache/dvol-lvm-vm}
HERE=$(cd "$(dirname "$0")" && pwd)
MODULES=(virtio_pci virtio_blk virtio_rng crc32c_generic crc32c_intel dm_thin_pool dm_snapshot loop ext4 xfs)

missing() { echo "build.sh: $*" >&2; exit 3; }
for tool in apt-get apt-cache dpkg depmod modprobe cpio gzip flock ldd; do
  command -v "$tool" >/dev/null || missing "$tool not found; run scripts/install-deps.sh"
done
for tool in /usr/lib/postgresql/15/bin/postgres /usr/lib/postgresql/15/bin/pg_amcheck /usr/lib/postgresql/15/bin/pgbench \
  /bin/busybox /usr/sbin/lvm /usr/sbin/dmsetup /usr/sbin/pdata_tools /usr/sbin/mkfs.ext4 /usr/sbin/mkfs.xfs \
  /usr/sbin/resize2fs /usr/sbin/e2fsck /usr/sbin/xfs_growfs /usr/sbin/xfs_admin /usr/sbin/xfs_db /usr/sbin/blkid; do
  [ -x "$tool" ] || missing "$tool not found; run scripts/install-deps.sh (scripts/lvm-vm/packages.txt)"
done

mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9

stamp=$(cat "$0" "$HERE/init" | sha256sum | cut -c1-16)
BASE="$CACHE/base"
if [ -f "$BASE/ready" ] && [ "$(cat "$BASE/ready")" = "$stamp" ]; then
  echo "kernel=$BASE/vmlinuz"
  echo "initrd=$BASE/initrd-base.cpio.gz"
  exit 0
fi

# --- the kernel: Debian's cloud kernel, downloaded once -------------------------------------
KDIR="$CACHE/kernel"
if [ ! -f "$KDIR/ready" ]; then
  rm -rf "$KDIR" && mkdir -p "$KDIR"
  # Prefer Debian 12's own 6.1 series; any cloud kernel will do.
  candidates=$(apt-cache search --names-only '^linux-image-.*-cloud-amd64-unsigned$' | awk '{print $1}' | sort -V)
  pkg=$(echo "$candidates" | grep '^linux-image-6\.1\.' | tail -n1 || true)
  [ -n "$pkg" ] || pkg=$(echo "$candidates" | tail -n1)
  [ -n "$pkg" ] || missing "no linux-image-*-cloud-amd64-unsigned package in the apt index; run apt-get update"
  echo "build.sh: downloading $pkg" >&2
  (cd "$KDIR" && apt-get download -q "$pkg" >&2) || missing "apt-get download $pkg failed"
  dpkg -x "$KDIR"/*.deb "$KDIR/root"
  kver=$(ls "$KDIR/root/lib/modules" | head -n1)
  depmod -b "$KDIR/root" "$kver"
  echo "$kver" >"$KDIR/kver"
  touch "$KDIR/ready"
fi
kver=$(cat "$KDIR/kver")
KROOT="$KDIR/root"

# --- the base initramfs ----------------------------------------------------------------------
rm -rf "$BASE" && mkdir -p "$BASE"
STAGE="$BASE/stage"
mkdir -p "$STAGE"/{proc,sys,dev,run,tmp,etc/lvm,modules,payload,mnt}
# Mirror the host's merged-/usr layout so every path ldd prints resolves the same way inside.
for top in bin sbin lib lib64; do
  if [ -L "/$top" ]; then ln -s "$(readlink "/$top")" "$STAGE/$top"; else mkdir -p "$STAGE/$top"; fi
done
mkdir -p "$STAGE/usr/bin" "$STAGE/usr/sbin" "$STAGE/usr/lib" "$STAGE/usr/lib64"

# Copies a host file to the same path in the image (symlinks recreated, their targets copied).
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
# Copies a binary and every shared library it needs.
copy_binary() {
  copy_in "$1"
  ldd "$1" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do copy_in "$lib"; done || true
}

cp /bin/busybox "$STAGE/usr/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ -e "$STAGE/usr/bin/$applet" ] || ln -s busybox "$STAGE/usr/bin/$applet"
done
for bin in /usr/sbin/lvm /usr/sbin/dmsetup /usr/sbin/pdata_tools /usr/sbin/mkfs.ext4 /usr/sbin/mke2fs /usr/sbin/mkfs.xfs \
  /usr/sbin/resize2fs /usr/sbin/e2fsck /usr/sbin/xfs_growfs /usr/sbin/xfs_db /usr/sbin/blkid /usr/sbin/dumpe2fs; do
  [ -e "$bin" ] && copy_binary "$bin"
done
# xfs_admin is a shell script over xfs_db.
cp /usr/sbin/xfs_admin "$STAGE/usr/sbin/xfs_admin"
# The thin tools lvm calls (global/thin_*_executable), and thin_delta, which the backend's
# changed ranges use, are links to pdata_tools.
for link in thin_check thin_delta thin_dump thin_repair thin_restore thin_ls thin_trim thin_metadata_size; do
  ln -sfn pdata_tools "$STAGE/usr/sbin/$link"
done
# PostgreSQL 15 from the host's Debian packages, for the database test on gold volumes: the
# server, initdb and the clients with the libraries they load, the server's modules (but the
# JIT, whose LLVM alone is larger than the rest of the image), its share files, the time zone
# the server is told to use, and a user postgres (uid and gid 999, as in the e2e test image)
# to run it as.
PG=/usr/lib/postgresql/15
for bin in postgres initdb psql pgbench pg_amcheck; do
  copy_binary "$PG/bin/$bin"
done
for module in "$PG"/lib/*.so; do
  case "$(basename "$module")" in llvmjit*) continue ;; esac
  copy_binary "$module"
done
mkdir -p "$STAGE/usr/share/postgresql" "$STAGE/usr/share/zoneinfo"
cp -a /usr/share/postgresql/15 "$STAGE/usr/share/postgresql/15"
cp -aL /usr/share/zoneinfo/UTC "$STAGE/usr/share/zoneinfo/UTC"
cat >"$STAGE/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
postgres:x:999:999:PostgreSQL:/tmp:/bin/sh
PASSWD
cat >"$STAGE/etc/group" <<'GROUP'
root:x:0:
postgres:x:999:
GROUP
# mkfs.ext4 reads its defaults from here; without it the image would differ from the host's.
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$STAGE/etc/mke2fs.conf"

# Kernel modules, in dependency order, decompressed (busybox insmod takes plain .ko files).
: >"$STAGE/modules/order"
for module in "${MODULES[@]}"; do
  deps=$(modprobe -d "$KROOT" -S "$kver" --show-depends "$module" 2>/dev/null) || {
    echo "build.sh: module $module not in kernel $kver; skipped" >&2
    continue
  }
  while read -r kind path _; do
    [ "$kind" = insmod ] || continue # builtin
    name=$(basename "$path")
    name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
    grep -qx "$name" "$STAGE/modules/order" && continue
    case "$path" in
      *.xz) xz -dc "$path" >"$STAGE/modules/$name" ;;
      *.zst) zstd -qdc "$path" >"$STAGE/modules/$name" ;;
      *.gz) gzip -dc "$path" >"$STAGE/modules/$name" ;;
      *) cp "$path" "$STAGE/modules/$name" ;;
    esac
    echo "$name" >>"$STAGE/modules/order"
  done <<<"$deps"
done

cp "$HERE/init" "$STAGE/init"
chmod 755 "$STAGE/init"
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$BASE/initrd-base.cpio.gz"
cp "$KROOT/boot/vmlinuz-$kver" "$BASE/vmlinuz"
rm -rf "$STAGE"
echo "$stamp" >"$BASE/ready"
echo "kernel=$BASE/vmlinuz"
echo "initrd=$BASE/initrd-base.cpio.gz"
