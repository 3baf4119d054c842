"""Shared fixtures: a real node on loopback, started once per test session.

Tests that start real nodes (every test under security/, cli/ and gateway/ but
the unit modules in `_UNIT_MODULES`, and any test that uses the `node` fixture)
and the modules slow by nature in `_SLOW_MODULES` (the egress proxy against real
servers, nodes of their own, CLI processes, tampering with real audit files) are
marked `slow` here. The fast subset, `pytest -m "not slow"`, is the unit tests
and is meant to run in under a minute on two cores (76 s in December 2026:
docs/performance.md): in it, the modules that are slow as a
whole are not even imported, hypothesis runs its `fast` profile (fewer examples
per property; the same properties), and every test package keeps at least one
test (the run stops with an error naming a package that has none). The whole
suite runs every test, with each property's own number of examples.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from file_order import Recorder, load_table, longest_first
from harness import FUNCTIONS, LiveNode, start_node
from trace_scores import SCORES, summary_lines

_NODE_DIRS = frozenset({"security", "cli", "gateway"})
#: Modules of those directories that start no node and no process of their own.
_UNIT_MODULES = frozenset(
    {
        "cli/test_output.py",
        "cli/test_lazy.py",
        "gateway/test_calllog.py",
        "gateway/test_problems.py",
    }
)
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
        # Issue 14: a node of its own started in this process (scanner helper, sandbox).
        "triggers/test_schedule_run.py",
        # Issue 14: tampering with real audit files (a log of 35 durable records per test).
        "audit/test_tamper.py",
    }
)
#: The test packages whose tests are all slow by nature: real nodes and attacks.
_SLOW_PACKAGES = frozenset({"security", "functions"})
#: The fast subset's hypothesis profile: at most this many examples per property (the
#: tests' own settings may ask fewer). The whole suite keeps each property's own count.
settings.register_profile("fast", max_examples=10)


def _fast_run(config: pytest.Config) -> bool:
    """True for the fast subset: `-m "not slow"`."""
    return " ".join(str(config.getoption("markexpr", "")).split()) == "not slow"


def _slow_as_a_whole(parts: tuple[str, ...]) -> bool:
    module = "/".join(parts)
    if module in _UNIT_MODULES:
        return False
    return parts[0] in _NODE_DIRS or module in _SLOW_MODULES


def pytest_configure(config: pytest.Config) -> None:
    if _fast_run(config) and config.getoption("hypothesis_profile", None) is None:
        settings.load_profile("fast")
    if Recorder.wanted():
        config.pluginmanager.register(Recorder(config), "donjon-durations")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """In the fast subset, a module whose tests are all slow is not imported at all."""
    if not _fast_run(config):
        return None
    try:
        parts = collection_path.relative_to(Path(__file__).parent).parts
    except ValueError:
        return None
    if len(parts) == 1 and parts[0] in _SLOW_PACKAGES:
        return True
    if len(parts) > 1 and collection_path.suffix == ".py" and _slow_as_a_whole(parts):
        return True
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(here).parts
        uses_node = "node" in getattr(item, "fixturenames", ())
        if _slow_as_a_whole(parts) or uses_node:
            item.add_marker(pytest.mark.slow)
    longest_first(items, load_table())  # the order xdist hands files out in (file_order.py)


def pytest_collection_finish(session: pytest.Session) -> None:
    """The fast subset of the whole tree keeps at least one test of each test package."""
    here = Path(__file__).parent
    asked = {(session.config.invocation_params.dir / a).resolve() for a in session.config.args}
    if not _fast_run(session.config) or asked not in ({here}, {here.parent}):
        return
    packages = {p.name for p in here.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    covered = {item.path.relative_to(here).parts[0] for item in session.items}
    missing = sorted(packages - covered - _SLOW_PACKAGES)
    if missing:
        raise pytest.UsageError(
            f"the fast subset has no test of {', '.join(missing)}: keep a unit test of "
            "each package out of the slow ones (tests/conftest.py)"
        )


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


@pytest.fixture
def parsed_json(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the JSON texts parsed in this thread meanwhile (json's decoder, which
    `json.loads` and `donjon.boundedjson` use): the parsing a test counts, not times."""
    sizes: list[int] = []
    decode = json.JSONDecoder.decode

    def counting(self: json.JSONDecoder, s: str, *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(s))
        return decode(self, s, *args, **kwargs)

    monkeypatch.setattr(json.JSONDecoder, "decode", counting)
    return sizes
