#!/usr/bin/env bash
# Everything Donjon needs on a fresh Debian machine: system packages when
# missing (bubblewrap, python3-venv, redis-server for the shared-limits tests,
# postgresql for the queue's PostgreSQL tests),
# then the package in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's own interpreter: the sandbox user (nobody) can read it, unlike a
# Python installed under a home directory.
PY=/usr/bin/python3
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
[ -x "$PY" ] || need+=(python3)
"$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || need+=(libseccomp2)
# The Redis backend's tests start their own redis-server (tests/redis_support.py).
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The database events' tests start their own PostgreSQL (tests/postgres_support.py).
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  # Only the binaries are wanted: the system services the packages set up are stopped
  # and disabled if apt started them (tests start theirs on a free loopback port).
  for service in redis-server postgresql; do
    [[ " ${need[*]} " == *" $service "* ]] || continue
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
    else
      $sudo service "$service" stop >/dev/null 2>&1 || true
      $sudo update-rc.d "$service" disable >/dev/null 2>&1 || true
    fi
  done
fi

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: Donjon needs Python 3.11 or newer as $PY" >&2; exit 1; }
# A .venv that a stopped run left half made (no pip, no pyvenv.cfg), or whose
# interpreter is gone, is made again; a whole one is kept.
venv_ok() {
  [ -f .venv/pyvenv.cfg ] && [ -x .venv/bin/python ] &&
    .venv/bin/python -c 'import sys, pip; sys.exit(sys.prefix == sys.base_prefix)' >/dev/null 2>&1
}
if ! venv_ok; then
  if [ -e .venv ] || [ -L .venv ]; then
    echo "setup: .venv is incomplete or broken; making it again" >&2
    rm -rf .venv
  fi
  "$PY" -m venv .venv
fi
# What the package is built from (pyproject.toml, the files at the top it may name, src/,
# not the egg-info the build writes there): its digest is kept in .venv after a whole
# install, and the install (15 s or so) is skipped while it matches and the package is
# still installed as built (not removed, not replaced by an editable install).
source_digest() {
  { find pyproject.toml README.md ./*.py src -type f -not -path '*/__pycache__/*' \
      -not -path '*.egg-info/*' -print0 2>/dev/null || true; } |
    LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1
}
installed_as_built() {
  .venv/bin/python -I - >/dev/null 2>&1 <<'PY'  # -I: not the egg-info a build leaves here
import importlib.metadata, json, sys, tomllib
with open("pyproject.toml", "rb") as f:
    dist = importlib.metadata.distribution(tomllib.load(f)["project"]["name"])
direct = json.loads(dist.read_text("direct_url.json") or "{}")
sys.exit(1 if direct.get("dir_info", {}).get("editable") else 0)
PY
}
stamp=.venv/.installed-source
digest=$(source_digest)
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ] || ! installed_as_built; then
  rm -f "$stamp"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  # Install what was built, not the source tree (tests run against the installed package).
  # setuptools keeps build/ between runs and never prunes it: a moved module would live on.
  rm -rf build
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps .
  .venv/bin/python -m pip install --quiet --disable-pip-version-check '.[dev]'
  echo "$digest" > "$stamp"
fi
