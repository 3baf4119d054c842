.PHONY: up test test-fast lint bench bench-scan bench-scan-realworld setup

setup:
	./scripts/setup.sh

up:
	./scripts/up.sh

test:
	./scripts/test.sh

# The unit tests only (no live node): under a minute.
test-fast:
	./scripts/test.sh --fast

lint: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy
	.venv/bin/bandit -q -r src -c pyproject.toml
	.venv/bin/donjon scan src/donjon --fail-on high

bench:
	./scripts/setup-bench.sh
	.venv/bin/python bench/bench_invoke.py

# Donjon's scanner beside Bandit on standard-library modules (speed, corpus recall).
bench-scan: setup
	.venv/bin/python bench/bench_scan.py

# ...and on nine real serverless projects fetched from PyPI into $XDG_CACHE_HOME/donjon-bench
# (network on the first run only): findings per 1,000 lines, gate verdicts, times.
bench-scan-realworld: setup
	.venv/bin/python bench/bench_realworld.py --repeat 3
