#!/usr/bin/env bash
# Starts the Docker Engine without networking (this machine has no outside network) unless one
# is already answering on /var/run/docker.sock. Idempotent.
#
# With --restart, first stops the running engine (SIGTERM to the pid in /var/run/docker.pid,
# or to the oldest dockerd process when that file is missing,
# waiting up to 60 s for it to exit), then starts it. The engine (dockerd 20.10) keeps every
# legacy volume plugin it has seen until it restarts, and each one whose socket is gone costs
# about 15 s whenever it looks up a volume name it does not know, so scripts/test.sh restarts
# it after the tests. Before stopping it, waits (up to 10 min) while a test daemon of another
# run still answers on a socket in /run/docker/plugins.
set -euo pipefail
log=${DOCKERD_LOG:-/tmp/dockerd.log}
pid_file=/var/run/docker.pid

# The plugin sockets of dvol test daemons (dvol-e2e-*) that a process still listens on (a dead
# daemon's socket file has no entry in /proc/net/unix).
live_test_daemons() {
  local socket
  for socket in /run/docker/plugins/dvol-e2e-*.sock; do
    [ -S "$socket" ] || continue
    if grep -qF " $socket" /proc/net/unix; then
      echo "$socket"
    fi
  done
}

# Whether process $1 runs (exists and is not a zombie).
running() {
  [ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]
}

case "${1:-}" in
  "") ;;
  --restart)
    for _ in $(seq 1 600); do
      [ -z "$(live_test_daemons)" ] && break
      sleep 1
    done
    if [ -n "$(live_test_daemons)" ]; then
      echo "start-dockerd: restarting although test daemons still answer:" $(live_test_daemons) >&2
    fi
    # The pid file, or, if it went missing, the oldest process named dockerd.
    pid=$(cat "$pid_file" 2>/dev/null || pgrep -xo dockerd || true)
    if [ -n "$pid" ] && running "$pid"; then
      kill -TERM "$pid"
      for _ in $(seq 1 120); do
        running "$pid" || break
        sleep 0.5
      done
      if running "$pid"; then
        echo "start-dockerd: dockerd (pid $pid) did not exit within 60 s" >&2
        exit 1
      fi
    fi
    ;;
  *)
    echo "usage: start-dockerd.sh [--restart]" >&2
    exit 2
    ;;
esac

if docker version >/dev/null 2>&1; then
  exit 0
fi
nohup dockerd --iptables=false --ip6tables=false --bridge=none >"$log" 2>&1 &
for _ in $(seq 1 360); do
  if docker version >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "start-dockerd: dockerd did not answer within 180 s; last lines of $log:" >&2
tail -n 20 "$log" >&2
exit 1
