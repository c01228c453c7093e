#!/usr/bin/env bash
# Builds the directory of dvol's managed Docker plugin (plugin API v2): OUT_DIR/config.json and
# OUT_DIR/rootfs, from a dvol binary and the host's own files (no registry, no image pull).
#
#   scripts/managed-plugin/build.sh [--name NAME] [--keep-debug] DVOL_BIN OUT_DIR
#   docker plugin create NAME OUT_DIR
#   mkdir -p /etc/dvol /run/dvol && docker plugin enable NAME
#
# NAME (default `dvol`) must be the name given to `docker plugin create`: the daemon needs the
# name the engine knows it by (see DVOL_DOCKER_DRIVER below). Idempotent: OUT_DIR is rebuilt
# from scratch on every run (a directory that is neither empty nor a plugin directory is
# refused). Prints what it copies. The dvol binary's debug information is left out (objcopy
# --strip-debug; its symbols stay, for backtraces) unless --keep-debug: a debug build is
# 200 MiB with it, 50 MiB without, and `docker plugin create` copies it twice.
#
# The rootfs holds the dvol binary, every external program the daemon's backends run (see
# TOOLS), static busybox for a shell (xfs_admin is a shell script) and the shared libraries
# `ldd` lists for each program, at the paths the host has them (Debian's merged /usr layout).
set -euo pipefail

usage() {
  echo "usage: $0 [--name NAME] [--keep-debug] DVOL_BIN OUT_DIR" >&2
  exit 2
}

name=dvol
keep_debug=false
while [ $# -gt 0 ]; do
  case "$1" in
    --name)
      [ $# -ge 2 ] || usage
      name=$2
      shift 2
      ;;
    --keep-debug)
      keep_debug=true
      shift
      ;;
    -h | --help) usage ;;
    --*) usage ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || usage
dvol_bin=$1
out=$2
[ -x "$dvol_bin" ] || { echo "managed-plugin: $dvol_bin is not an executable" >&2; exit 1; }

# The engine knows a managed plugin as NAME:TAG (`docker plugin create x` makes `x:latest`).
driver=$name
case "${name##*/}" in
  *:*) ;;
  *) driver="$name:latest" ;;
esac

# Programs the daemon runs, found as the backends find them (backends/src/command.rs,
# SEARCH_DIRS): the filesystem tools of backends/src/filesystem.rs (xfs_admin is a script that
# runs xfs_db and xfs_repair) are required; lvm and the thin-pool checkers that lvm itself runs
# are copied when the host has them (the gold profile needs them, and device-mapper).
TOOLS=(mkfs.ext4 resize2fs e2fsck mkfs.xfs xfs_growfs xfs_admin xfs_db xfs_repair)
OPTIONAL_TOOLS=(lvm thin_check thin_repair thin_dump thin_restore)
SEARCH_DIRS=(/usr/sbin /sbin /usr/bin /bin /usr/local/sbin /usr/local/bin)
BUSYBOX=/bin/busybox # static, from Debian's busybox-static

find_tool() {
  local dir
  for dir in "${SEARCH_DIRS[@]}"; do
    if [ -f "$dir/$1" ]; then
      echo "$dir/$1"
      return 0
    fi
  done
  return 1
}

if [ -e "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -f "$out/config.json" ]; then
  echo "managed-plugin: $out is neither empty nor a plugin directory; refusing to replace it" >&2
  exit 1
fi
[ -x "$BUSYBOX" ] || { echo "managed-plugin: $BUSYBOX not found; install busybox-static" >&2; exit 1; }
for tool in "${TOOLS[@]}"; do
  find_tool "$tool" >/dev/null || { echo "managed-plugin: $tool not found; install e2fsprogs and xfsprogs" >&2; exit 1; }
done

mkdir -p "$out"
rootfs="$out/rootfs"
rm -rf "$rootfs" "$out/config.json"
mkdir -p "$rootfs"/usr/{bin,sbin,lib,lib64}
# Debian 12's merged /usr: /bin, /sbin, /lib, /lib64 are links into /usr, so every path ldd
# prints lands in one place.
for dir in bin sbin lib lib64; do
  ln -s "usr/$dir" "$rootfs/$dir"
done
mkdir -p "$rootfs"/{dev,proc,sys,etc/lvm,run/dvol,run/docker/plugins,run/lock/lvm,run/lvm,var/lib/dvol,etc/dvol}
mkdir -m 1777 -p "$rootfs/tmp"
ln -s ../run "$rootfs/var/run"

copied=()
# Copies the file $1 (following links) to the same path in the rootfs, unless already there.
copy_file() {
  local dest="$rootfs$1"
  [ -e "$dest" ] && return 0
  mkdir -p "$(dirname "$dest")"
  cp -L --preserve=mode "$1" "$dest"
  copied+=("$1")
}

# Copies program $1 to the rootfs at its path, with the shared libraries ldd lists (none for a
# script or a static binary). A link is kept as a link beside a copy of its target, since
# some programs pick what they do by the name they are run as (mkfs.ext4 -> mke2fs,
# thin_check -> pdata_tools).
copy_program() {
  local path=$1 real lib
  real=$(readlink -f "$path")
  if [ "$real" != "$path" ] && [ ! -e "$rootfs$path" ]; then
    mkdir -p "$(dirname "$rootfs$path")"
    ln -s "$real" "$rootfs$path"
  fi
  copy_file "$real"
  # ldd prints `name => /path (addr)` for libraries and `/path (addr)` for the loader.
  while read -r lib; do
    copy_file "$lib"
  done < <(ldd "$real" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}

if $keep_debug; then
  cp --preserve=mode "$dvol_bin" "$rootfs/usr/bin/dvol"
  echo "managed-plugin: dvol from $dvol_bin"
else
  command -v objcopy >/dev/null || { echo "managed-plugin: objcopy not found; install binutils or pass --keep-debug" >&2; exit 1; }
  objcopy --strip-debug "$dvol_bin" "$rootfs/usr/bin/dvol"
  echo "managed-plugin: dvol from $dvol_bin, without its debug information"
fi
while read -r lib; do
  copy_file "$lib"
done < <(ldd "$dvol_bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')

for tool in "${TOOLS[@]}"; do
  copy_program "$(find_tool "$tool")"
done
for tool in "${OPTIONAL_TOOLS[@]}"; do
  if path=$(find_tool "$tool"); then
    copy_program "$path"
  else
    echo "managed-plugin: $tool not on this host, left out (the gold profile needs lvm2 and thin-provisioning-tools)"
  fi
done

# busybox: a shell and the small tools scripts use, as links to the static binary.
cp --preserve=mode "$BUSYBOX" "$rootfs/usr/bin/busybox"
applets=0
while read -r applet; do
  [ "$applet" = linuxrc ] && continue
  [ -e "$rootfs/$applet" ] || [ -L "$rootfs/$applet" ] && continue
  mkdir -p "$(dirname "$rootfs/$applet")"
  ln -s /usr/bin/busybox "$rootfs/$applet"
  applets=$((applets + 1))
done < <("$BUSYBOX" --list-full)
echo "managed-plugin: busybox from $BUSYBOX with $applets applet links"

[ -f /etc/mke2fs.conf ] && copy_file /etc/mke2fs.conf
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
# No udev in the plugin: lvm must neither wait for it nor ask it for devices.
cat >"$rootfs/etc/lvm/lvm.conf" <<'EOF'
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
devices {
	obtain_device_list_from_udev = 0
}
EOF
printf 'managed-plugin: copied %s\n' "${copied[@]}"

# The plugin's configuration (Docker's plugin config v1 format). What each part is for:
# - entrypoint: a shell that execs the daemon (so the daemon gets the engine's SIGTERM) with
#   its log on stdout (the engine logs a plugin's stderr at level error, stdout at info), and
#   with its plugin socket at /run/docker/plugins/dvol.sock, the name
#   interface.socket gives (the engine binds its per-plugin directory on /run/docker/plugins
#   and connects to dvol.sock there); its state root /var/lib/dvol, which is propagatedMount;
#   and its REST API on /run/dvol/dvol.sock, inside the `api` mount. `args` (settable) adds
#   daemon options, e.g. `docker plugin set NAME args="--log-format json"`.
# - propagatedMount /var/lib/dvol: the engine binds /var/lib/docker/plugins/ID/propagated-mount
#   there, shared, so the daemon's mounts under /var/lib/dvol/mounts reach the engine; it maps
#   a Mountpoint under /var/lib/dvol to that host directory. All state (metadata, commits,
#   volume data) lives there too: kept across disable/enable and `docker plugin upgrade`,
#   deleted with `docker plugin rm`.
# - mounts: /dev (rbind) so that loop devices the kernel creates on demand (silver) and
#   device-mapper nodes (gold) appear; the host's /run/dvol, so that the host's `dvol` CLI
#   reaches the REST API at its default address; the host's /etc/dvol (read-only), where the
#   daemon reads config.toml (none there: the built-in profiles); the engine's socket, with
#   which the daemon stops, starts and pauses the containers using a volume (checkout, reset,
#   commit --pause). The sources of `api` and `config` are settable
#   (`docker plugin set NAME api.source=/DIR`), and must exist when the plugin is enabled.
# - linux: CAP_SYS_ADMIN for mount, loop devices and device-mapper; allowAllDevices so the
#   device cgroup lets it use the loop and mapper devices, which are made on demand.
# - network host: remotes (push, pull) and the optional TCP listener are the host's.
# - env (settable): DVOL_LOG, DVOL_LOG_FORMAT, and DVOL_DOCKER_DRIVER, the volume driver
#   name the engine knows the plugin by (NAME:TAG), which picks out the containers using a
#   volume; change it with `docker plugin set` if the plugin is created under another name.
cat >"$out/config.json" <<EOF
{
  "description": "dvol: Docker volumes with service levels (gold, silver, bronze) and a history",
  "documentation": "README.md, Operations: As a managed Docker plugin",
  "entrypoint": [
    "/bin/sh", "-c",
    "exec /usr/bin/dvol daemon --root /var/lib/dvol --plugin-socket /run/docker/plugins/dvol.sock --api-socket /run/dvol/dvol.sock \"\$@\" 2>&1",
    "dvol"
  ],
  "workdir": "/",
  "args": {
    "name": "args",
    "description": "more dvol daemon options",
    "settable": ["value"],
    "value": []
  },
  "interface": {
    "types": ["docker.volumedriver/1.0"],
    "socket": "dvol.sock"
  },
  "network": { "type": "host" },
  "propagatedMount": "/var/lib/dvol",
  "linux": {
    "capabilities": ["CAP_SYS_ADMIN"],
    "allowAllDevices": true,
    "devices": []
  },
  "mounts": [
    {
      "name": "dev",
      "description": "the host's devices: loop and device-mapper nodes made on demand",
      "source": "/dev",
      "destination": "/dev",
      "type": "bind",
      "options": ["rbind"]
    },
    {
      "name": "api",
      "description": "host directory for the REST API socket dvol.sock (the CLI's default: /run/dvol)",
      "source": "/run/dvol",
      "destination": "/run/dvol",
      "type": "bind",
      "options": ["rbind"],
      "settable": ["source"]
    },
    {
      "name": "config",
      "description": "host directory holding config.toml (none: the built-in profiles)",
      "source": "/etc/dvol",
      "destination": "/etc/dvol",
      "type": "bind",
      "options": ["rbind", "ro"],
      "settable": ["source"]
    },
    {
      "name": "docker",
      "description": "the Docker Engine's socket: stopping and pausing the containers using a volume",
      "source": "/var/run/docker.sock",
      "destination": "/var/run/docker.sock",
      "type": "bind",
      "options": ["rbind"]
    }
  ],
  "env": [
    {
      "name": "DVOL_LOG",
      "description": "log filter, e.g. info or info,dvol_plugin=debug",
      "settable": ["value"],
      "value": "info"
    },
    {
      "name": "DVOL_LOG_FORMAT",
      "description": "log format: text or json",
      "settable": ["value"],
      "value": "text"
    },
    {
      "name": "DVOL_DOCKER_DRIVER",
      "description": "the name the engine knows this plugin by (NAME:TAG)",
      "settable": ["value"],
      "value": "$driver"
    }
  ]
}
EOF
echo "managed-plugin: wrote $out/config.json for plugin $driver ($(du -sh "$rootfs" | cut -f1) rootfs)"
