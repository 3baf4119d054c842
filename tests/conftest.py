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
from trace_scores import SCORES, summary_lines

_NODE_DIRS = frozenset({"security", "cli", "gateway"})
#: Modules that start an egress proxy with TLS, HTTP and DNS servers for each test.
_SLOW_MODULES = frozenset(
    {
        "egress/test_proxy.py",
        "egress/test_proxy_http.py",
        "egress/test_proxy_dns.py",
        "egress/test_node_egress.py",
        "sandbox/test_egress_relay.py",
        # Issue 13's attacks: nodes of their own, killed, restarted and tampered with.
        "security/test_attack_monitor.py",
        "security/test_attack_audit_tamper.py",
        "security/test_audit_crash.py",
        "monitor/test_node_alerts.py",
        # Real nodes and CLI processes (init, serve, verify), and the 43k-call trace.
        "monitor/test_baselines_node.py",
        "monitor/test_trace.py",
        "audit/test_cli_audit.py",
        "audit/test_check_proof_cli.py",
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


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    """The learned detectors' precision and recall on the synthetic trace, if it ran
    (tests/monitor/test_trace.py)."""
    trace = config.stash.get(SCORES, None)
    if trace is None:
        return
    terminalreporter.section("monitor: precision and recall on the synthetic trace")
    for line in summary_lines(trace):
        terminalreporter.write_line(line)
