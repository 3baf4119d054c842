#!/usr/bin/env bash
# Run the whole test suite against the installed package: set-up included.
# Lint, types, bandit and Donjon's own scan first; then pytest under coverage
# (branches, and the `donjon` processes the tests start), which must stay at
# or above the floor in pyproject.toml. pytest runs three workers on the two cores
# (pytest-xdist): whole test files are handed out as workers come free, longest
# first (tests/file_order.py), so no core idles while another still has a queue
# (the suite's files share a node per file). The third worker runs while the
# others' tests wait on kills, timeouts and slow calls: over a whole run the cores
# were 84 % busy with two workers, 93 % with three (docs/performance.md, the
# twentieth round). With arguments, pytest gets them (`-n 0` runs in one process).
# `--fast` (first argument) runs only the fast subset, `pytest -m "not slow"`: set-up,
# then the unit tests, without lint or coverage (under a minute on two cores); any
# further arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# pytest rewrites the test modules' asserts and keeps the result as bytecode, unless
# PYTHONDONTWRITEBYTECODE is set (as on some machines): then every worker rewrites
# every module on every run, 5-6 s of CPU each. The caches go to tests/**/__pycache__.
unset PYTHONDONTWRITEBYTECODE
if [ "${1:-}" = "--fast" ]; then
  shift
  exec .venv/bin/python -m pytest -m "not slow" -n 2 --dist loadfile --no-loadscope-reorder "$@"
fi
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/bandit -q -r src -c pyproject.toml
.venv/bin/donjon scan src/donjon --fail-on high   # the project scans itself
rm -rf .coverage-data && mkdir -p .coverage-data
export COVERAGE_FILE="$PWD/.coverage-data/coverage"
if [ "$#" -eq 0 ]; then set -- tests; fi
status=0
.venv/bin/python -m coverage run -m pytest -p no:cacheprovider -n 3 --dist loadfile \
  --no-loadscope-reorder \
  --durations=25 "$@" || status=$?
.venv/bin/python -m coverage combine -q
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
exec .venv/bin/python -m coverage report
