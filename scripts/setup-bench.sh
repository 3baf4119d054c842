#!/usr/bin/env bash
# What the bench needs beyond the project's set-up: wrk, the load client that
# costs the servers least CPU on these shared cores (bench/loadgen.py falls back
# to its own asyncio client without it, about 20 % slower at saturating a
# server), and py-spy for `--profile`. Both from Debian and PyPI; nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if ! command -v wrk >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup-bench: installing wrk" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check py-spy
