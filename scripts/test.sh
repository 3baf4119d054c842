#!/usr/bin/env bash
# Run the whole test suite against the installed package: set-up included.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/ruff check src tests $( [ -d bench ] && echo bench )
.venv/bin/mypy
.venv/bin/bandit -q -r src -c pyproject.toml
.venv/bin/donjon scan src/donjon --fail-on high   # the project scans itself
exec .venv/bin/python -m pytest "$@"
