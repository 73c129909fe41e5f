#!/usr/bin/env bash
# Install the system packages the tests start for real (PostgreSQL), when missing.
# The tests themselves start and stop their own cluster; nothing here starts a service.
set -euo pipefail
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} (Debian packages) for the tests" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's package starts a cluster of its own; the tests use their own, so stop it.
  command -v pg_ctlcluster >/dev/null && service postgresql stop >/dev/null 2>&1 || true
else
  echo "not root: tests needing ${missing[*]} will skip (install: sudo apt-get install ${missing[*]})" >&2
fi
