#!/usr/bin/env bash
# Measures `make dev` from a clean clone on a machine where PostgreSQL is
# installed but not running: how long until /healthz and /readyz answer 200.
#
# It clones HEAD into a temporary directory, stops the machine's PostgreSQL
# cluster if one is running (root only; it is restarted on exit), runs
# `make dev` there (which then creates and starts a private cluster under
# .locksmith/pg with the installed binaries), polls the health endpoints, and
# tears everything down. Run it when nothing else needs the system cluster.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
clone="$work/locksmith"
restart_cluster=""
dev_pid=""

cleanup() {
  if [[ -n "$dev_pid" ]]; then
    kill -INT -- "-$dev_pid" 2>/dev/null || kill -INT "$dev_pid" 2>/dev/null || true
    sleep 2
    kill -KILL -- "-$dev_pid" 2>/dev/null || true
  fi
  # Stop the private cluster the clone created.
  for d in "$clone/.locksmith/pg/data" /var/tmp/locksmith-pg-*/data; do
    [[ -f "$d/postmaster.pid" ]] || continue
    bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$bindir/pg_ctl" -D "$d" -m fast stop >/dev/null 2>&1 || true
    else "$bindir/pg_ctl" -D "$d" -m fast stop >/dev/null 2>&1 || true; fi
  done
  if [[ -n "$restart_cluster" ]]; then
    echo "==> restarting the machine's PostgreSQL cluster ($restart_cluster)"
    pg_ctlcluster --skip-systemctl-redirect $restart_cluster start || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> cloning HEAD into $clone"
git clone -q "$repo" "$clone"

if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if [[ "$(id -u)" == 0 ]] && command -v pg_ctlcluster >/dev/null; then
    ver="$(ls /etc/postgresql | sort -V | tail -n1)"
    restart_cluster="$ver main"
    echo "==> stopping the machine's PostgreSQL ($restart_cluster) so PostgreSQL is installed but not running"
    pg_ctlcluster --skip-systemctl-redirect $restart_cluster stop
  else
    echo "error: PostgreSQL is running on 5432 and this script can't stop it (needs root)"; exit 1
  fi
fi

cd "$clone"
start=$(date +%s.%N)
echo "==> make dev (log: $work/dev.log)"
setsid make dev >"$work/dev.log" 2>&1 &
dev_pid=$!

health="" ready=""
for _ in $(seq 1 1200); do
  now=$(date +%s.%N)
  if [[ -z "$health" ]] && curl -fsS -o /dev/null http://127.0.0.1:8080/healthz 2>/dev/null; then
    health=$(awk -v a="$now" -v b="$start" 'BEGIN { print a - b }')
  fi
  if [[ -n "$health" && -z "$ready" ]] && curl -fsS -o /dev/null http://127.0.0.1:8080/readyz 2>/dev/null; then
    ready=$(awk -v a="$now" -v b="$start" 'BEGIN { print a - b }'); break
  fi
  if ! kill -0 "$dev_pid" 2>/dev/null; then echo "make dev exited early:"; tail -n 30 "$work/dev.log"; exit 1; fi
  sleep 0.1
done
grep '^==>' "$work/dev.log" | sed 's/^/    /'
if [[ -z "$ready" ]]; then echo "FAIL: /readyz did not answer 200 within 120 s"; tail -n 30 "$work/dev.log"; exit 1; fi
printf 'healthz 200 after %.1f s, readyz 200 after %.1f s (from a clean clone, including go build)\n' "$health" "$ready"
awk -v r="$ready" 'BEGIN { exit !(r <= 30) }' || { echo "FAIL: slower than 30 s"; exit 1; }
