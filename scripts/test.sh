#!/usr/bin/env bash
# Run the whole test suite against the installed package: set-up included.
# Lint, types, bandit and Donjon's own scan first; then pytest under coverage
# (branches, and the `donjon` processes the tests start), which must stay at
# or above the floor in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/bandit -q -r src -c pyproject.toml
.venv/bin/donjon scan src/donjon --fail-on high   # the project scans itself
rm -rf .coverage-data && mkdir -p .coverage-data
export COVERAGE_FILE="$PWD/.coverage-data/coverage"
status=0
.venv/bin/python -m coverage run -m pytest "$@" || status=$?
.venv/bin/python -m coverage combine -q
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
exec .venv/bin/python -m coverage report
