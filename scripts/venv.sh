#!/usr/bin/env bash
# Create the virtual environment and install primage into it, on a fresh Debian machine too.
# usage: scripts/venv.sh PYTHON VENV [--constraint FILE]... SPEC...
#   each SPEC installed editable (e.g. ".[test]"), the versions held to each FILE's pins
set -euo pipefail
python=$1 venv=$2
shift 2

if ! "$python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "primage needs Python 3.11 or newer; '$python' is $("$python" --version 2>&1)" >&2
  exit 1
fi
# Debian ships venv and pip separately from python3.
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  else
    echo "Python's venv module is missing: sudo apt-get install python3-venv" >&2
    exit 1
  fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --constraint) args+=(--constraint "$2"); shift 2 ;;
    *) args+=(-e "$1"); shift ;;
  esac
done
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
