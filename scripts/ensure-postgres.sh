#!/usr/bin/env bash
# Finds or starts a PostgreSQL for Locksmith and prints its URL on stdout.
# Everything else goes to stderr, so callers can do
#   DATABASE_URL=$(scripts/ensure-postgres.sh)
#
# Order: $DATABASE_URL if set; a server on 127.0.0.1:5432 that lets the
# postgres user in without a password; otherwise a private cluster under
# .locksmith/pg (git-ignored; LOCKSMITH_PG_PRIVATE=1 goes straight there) made with the installed PostgreSQL binaries on
# a free port; if there are no binaries, install them with apt when running
# as root, else print the install command and fail.
set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -n "${DATABASE_URL:-}" ]]; then
  say "using DATABASE_URL from the environment"
  echo "$DATABASE_URL"
  exit 0
fi

find_bindir() {
  local d
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"; return 0
  fi
  if command -v pg_config >/dev/null 2>&1; then
    d="$(pg_config --bindir 2>/dev/null || true)"
    if [[ -x "$d/pg_ctl" && -x "$d/initdb" ]]; then echo "$d"; return 0; fi
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/pg_ctl" && -x "$d/initdb" ]]; then echo "$d"; return 0; fi
  done
  return 1
}

can_connect() { # url
  local psql_bin="${bindir:-}/psql"
  [[ -x "$psql_bin" ]] || psql_bin="$(command -v psql || true)"
  [[ -n "$psql_bin" ]] || return 1
  PGCONNECT_TIMEOUT=3 "$psql_bin" -w "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

bindir="$(find_bindir || true)"

default_url="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
# LOCKSMITH_PG_PRIVATE=1 skips the shared server and always uses the private cluster.
if [[ "${LOCKSMITH_PG_PRIVATE:-}" != 1 ]] && can_connect "$default_url"; then
  say "using the PostgreSQL answering on 127.0.0.1:5432"
  echo "$default_url"
  exit 0
fi

if [[ -z "$bindir" ]]; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "PostgreSQL is not installed: installing it with apt (apt-get install -y postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    bindir="$(find_bindir)" || die "PostgreSQL was installed but its binaries were not found"
  else
    die "PostgreSQL is not installed. Install it, then run this again:
  Debian/Ubuntu: sudo apt-get install -y postgresql
  macOS:         brew install postgresql@16
or set DATABASE_URL to a server you have."
  fi
fi

# A private cluster. initdb and postgres refuse to run as root: as root, the
# cluster belongs to the postgres user (created by the Debian package).
as_owner=()
data_root="$root_dir/.locksmith/pg"
mkdir -p "$data_root"
if [[ "$(id -u)" == 0 ]]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
  as_owner=(runuser -u postgres --)
  chown postgres "$data_root"
  # The postgres user must be able to reach the data directory.
  if ! runuser -u postgres -- test -w "$data_root" 2>/dev/null; then
    data_root="/var/tmp/locksmith-pg-$(printf '%s' "$root_dir" | cksum | cut -d' ' -f1)"
    say "the checkout is not reachable by the postgres user; keeping the cluster in $data_root"
    mkdir -p "$data_root"
    chown postgres "$data_root"
  fi
fi
data="$data_root/data"

if [[ -f "$data_root/port" ]]; then
  port="$(cat "$data_root/port")"
else
  port=54329
  while ! port_free "$port"; do port=$((port + 1)); done
  echo "$port" >"$data_root/port"
fi
url="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"

if [[ ! -f "$data/PG_VERSION" ]]; then
  say "creating a private PostgreSQL cluster in $data (port $port)"
  "${as_owner[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-instructions >/dev/null
  cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data_root'
max_connections = 200
fsync = on
CONF
fi

if can_connect "$url"; then
  say "using the private PostgreSQL cluster on 127.0.0.1:$port"
  echo "$url"
  exit 0
fi

say "starting the private PostgreSQL cluster (port $port, log $data_root/postgres.log)"
"${as_owner[@]}" "$bindir/pg_ctl" -D "$data" -l "$data_root/postgres.log" -w -t 30 start >/dev/null \
  || die "PostgreSQL did not start; see $data_root/postgres.log"
can_connect "$url" || die "PostgreSQL started but does not accept connections on 127.0.0.1:$port"
echo "$url"
