#!/usr/bin/env bash
# Run the whole test suite against the installed package: set-up included.
# Lint, types, bandit and Donjon's own scan first; then pytest under coverage
# (branches, and the `donjon` processes the tests start), which must stay at
# or above the floor in pyproject.toml. With no arguments the suite runs in two
# shards at once (this machine has two cores); with arguments, pytest gets them.
# `--fast` (first argument) runs only the fast subset, `pytest -m "not slow"`: set-up,
# then the unit tests, without lint or coverage (under a minute on two cores); any
# further arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest -m "not slow" "$@"
fi
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/bandit -q -r src -c pyproject.toml
.venv/bin/donjon scan src/donjon --fail-on high   # the project scans itself
rm -rf .coverage-data && mkdir -p .coverage-data
export COVERAGE_FILE="$PWD/.coverage-data/coverage"
status=0
if [ "$#" -gt 0 ]; then
  .venv/bin/python -m coverage run -m pytest "$@" || status=$?
else
  # The whole suite in two shards, one per core: the attacks (tests/security, about
  # half the time) and everything else. Each shard's output is printed when it ends.
  shard() {
    local name=$1
    shift
    local rc=0
    .venv/bin/python -m coverage run -m pytest -p no:cacheprovider "$@" \
      >".coverage-data/$name.log" 2>&1 || rc=$?
    echo "$rc" >".coverage-data/$name.rc"
  }
  shard attacks tests/security &
  shard rest tests --ignore=tests/security &
  wait
  for name in rest attacks; do
    echo "=== pytest: $name ==="
    cat ".coverage-data/$name.log"
    rc=$(cat ".coverage-data/$name.rc")
    if [ "$rc" -ne 0 ]; then status=$rc; fi
  done
fi
.venv/bin/python -m coverage combine -q
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
exec .venv/bin/python -m coverage report
