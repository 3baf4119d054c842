#!/usr/bin/env bash
# Run Donjon: set up (first time), then `donjon up`: init, serve, deploy examples/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/donjon up "$@"
