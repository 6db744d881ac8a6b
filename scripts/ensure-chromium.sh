#!/usr/bin/env bash
# Makes sure a headless Chromium is available for the browser tests and
# prints its path. Installs Debian's chromium with apt when running as root;
# otherwise prints the install command and fails.
set -euo pipefail
say() { printf '==> %s\n' "$*" >&2; }
for c in chromium chromium-browser google-chrome; do
  if command -v "$c" >/dev/null 2>&1; then command -v "$c"; exit 0; fi
done
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  say "Chromium is not installed: installing Debian's chromium with apt (for the browser tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || true
  apt-get install -y -qq chromium >&2
  command -v chromium && exit 0
fi
printf 'error: Chromium is needed for the browser tests. Install it: sudo apt-get install -y chromium\n' >&2
exit 1
