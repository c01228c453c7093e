#!/usr/bin/env bash
# Builds the local test image dvol-test/postgres:15 from the host's Debian PostgreSQL 15
# packages (postgresql-15, postgresql-client-15; no registry is reachable here): the server,
# initdb, psql, pgbench and pg_amcheck with the shared libraries they load, busybox for a
# shell, and a user `postgres` (uid and gid 999) to run the server as. Idempotent: does
# nothing when the image exists.
set -euo pipefail
image=${DVOL_DATABASE_IMAGE:-dvol-test/postgres:15}
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
pg=/usr/lib/postgresql/15
if [ ! -x "$pg/bin/postgres" ] || [ ! -x "$pg/bin/pg_amcheck" ]; then
  echo "build-database-image: $pg has no postgres or pg_amcheck: install postgresql-15 and postgresql-client-15 (bash scripts/install-deps.sh)" >&2
  exit 1
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/data" "$dir/run/postgresql"
chmod 1777 "$dir/tmp"
cp /bin/busybox "$dir/bin/busybox"
for applet in sh ls cat echo sleep true false mkdir rm cp mv chown chmod test seq sync id \
  printf grep sed; do
  ln -s busybox "$dir/bin/$applet"
done
tar -C / -c "${pg#/}" usr/share/postgresql/15 usr/share/zoneinfo | tar -C "$dir" -x
# Every shared library the binaries and the server's modules load, and the loader.
{
  for f in "$pg"/bin/* "$pg"/lib/*.so; do
    ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
  done
} | sort -u | while read -r lib; do
  mkdir -p "$dir$(dirname "$lib")"
  cp -L "$lib" "$dir$lib"
done
for t in "$pg"/bin/*; do ln -s "$t" "$dir/bin/$(basename "$t")"; done
cat > "$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/:/bin/sh
postgres:x:999:999:PostgreSQL:/data:/bin/sh
PASSWD
cat > "$dir/etc/group" <<'GROUP'
root:x:0:
postgres:x:999:
GROUP
chown 999:999 "$dir/run/postgresql"
tar -C "$dir" -c . | docker import --change 'ENV PATH=/bin:/usr/lib/postgresql/15/bin' \
  --change 'ENV TZ=UTC' - "$image" >/dev/null
echo "built $image"
