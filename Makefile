.PHONY: up test test-fast lint bench setup

setup:
	./scripts/setup.sh

up:
	./scripts/up.sh

test:
	./scripts/test.sh

# The unit tests only (no live node): under a minute.
test-fast: setup
	.venv/bin/python -m pytest -m "not slow"

lint: setup
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy
	.venv/bin/bandit -q -r src -c pyproject.toml
	.venv/bin/donjon scan src/donjon --fail-on high

bench: setup
	.venv/bin/python bench/bench_invoke.py
