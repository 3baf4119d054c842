"""Shared fixtures: a real node on loopback, started once per test session.

Tests that start real nodes (every test under security/, cli/ and gateway/, and
any test that uses the `node` fixture) and the egress proxy's tests against
real servers (`_SLOW_MODULES`) are marked `slow` here, so the fast
subset, `pytest -m "not slow"`, is the unit tests and runs in well under a
minute; the whole suite runs them all.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import FUNCTIONS, LiveNode, start_node

_NODE_DIRS = frozenset({"security", "cli", "gateway"})
#: Modules that start an egress proxy with TLS, HTTP and DNS servers for each test.
_SLOW_MODULES = frozenset(
    {
        "egress/test_proxy.py",
        "egress/test_proxy_http.py",
        "egress/test_proxy_dns.py",
        "egress/test_node_egress.py",
        "sandbox/test_egress_relay.py",
        "monitor/test_node_alerts.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(here).parts
        uses_node = "node" in getattr(item, "fixturenames", ())
        if parts[0] in _NODE_DIRS or "/".join(parts) in _SLOW_MODULES or uses_node:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A running node (HTTPS, real sandbox) with the test functions deployed."""
    live = start_node(tmp_path_factory.mktemp("node"))
    try:
        for fn in sorted(p for p in FUNCTIONS.iterdir() if (p / "donjon.yaml").exists()):
            live.deploy(fn)
        # The same probe in warm mode: the controls must be the same (invariant 4).
        warm = tmp_path_factory.mktemp("probe-warm")
        shutil.copytree(FUNCTIONS / "probe", warm, dirs_exist_ok=True)
        manifest = (warm / "donjon.yaml").read_text()
        (warm / "donjon.yaml").write_text(
            manifest.replace("name: probe", "name: probe-warm") + "isolation: warm\n"
        )
        live.deploy(warm)
        yield live
    finally:
        live.stop()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
