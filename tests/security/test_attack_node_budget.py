"""Invariant 5 across functions: the node's memory and pids budget bounds all its sandboxes.

A node of its own, with a small budget (DONJON_SANDBOX_MEMORY_BUDGET_MB,
DONJON_SANDBOX_PIDS_BUDGET) and a function whose own limits are above it: the
budget, set on the node's cgroup that holds every sandbox, stops it first. Each
attack runs on a cold start and on a warm worker.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import LiveNode, start_node

MEMORY_BUDGET_MB = 192
PIDS_BUDGET = 48
#: The function's own memory limit: well above the budget.
FUNCTION_MEMORY_MB = 512

HANDLER = textwrap.dedent(
    """
    import ctypes
    import threading

    def handler(event, context):
        op = event.get("op")
        if op == "memory":
            held, stopped_by = [], None
            try:
                for _ in range(event["mb"] // 16):
                    chunk = bytearray(16 << 20)
                    chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page
                    held.append(chunk)
            except MemoryError:
                stopped_by = "MemoryError"
            return {"allocated_mb": 16 * len(held), "stopped_by": stopped_by}
        if op == "threads":
            # Small stacks and one malloc arena: the address space (RLIMIT_AS) is not the limit.
            ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX
            threading.stack_size(256 << 10)
            stop, started, stopped_by = threading.Event(), 0, None
            try:
                for _ in range(200):
                    threading.Thread(target=stop.wait, daemon=True).start()
                    started += 1
            except RuntimeError as e:
                stopped_by = str(e)
            stop.set()
            return {"threads": started, "stopped_by": stopped_by}
        return {"ok": True}
    """
)


def _bundle(root: Path, name: str, warm: bool) -> Path:
    d = root / name
    d.mkdir()
    (d / "main.py").write_text(HANDLER)
    (d / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: {FUNCTION_MEMORY_MB}\n"
        "timeout_s: 20\nlimits: {concurrency: 1}\n" + ("isolation: warm\n" if warm else "")
    )
    return d


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = start_node(
        tmp_path_factory.mktemp("budget-node"),
        {
            "DONJON_SANDBOX_MEMORY_BUDGET_MB": str(MEMORY_BUDGET_MB),
            "DONJON_SANDBOX_PIDS_BUDGET": str(PIDS_BUDGET),
        },
    )
    try:
        bundles = tmp_path_factory.mktemp("budget-fns")
        live.deploy(_bundle(bundles, "budget-hog", warm=False))
        live.deploy(_bundle(bundles, "budget-hog-warm", warm=True))
        yield live
    finally:
        live.stop()


def _cold_or_warm(node: LiveNode, fn: str, warm_up: bool) -> None:
    """Warm: the sandbox has served a call already (the attack lands on a warm worker)."""
    if warm_up:
        assert node.invoke(fn, {"op": "noop"}).status_code == 200


def _still_serving(node: LiveNode, fn: str) -> None:
    r = node.invoke(fn, {"op": "noop"})
    assert r.status_code == 200, r.text


CASES = [
    pytest.param("budget-hog", False, id="invocation-cold"),
    pytest.param("budget-hog", True, id="invocation-warm"),
    pytest.param("budget-hog-warm", False, id="warm-cold"),
    pytest.param("budget-hog-warm", True, id="warm-warm"),
]


def _node_cgroups(node: LiveNode) -> dict[str, Path]:
    found = {}
    for controller in ("memory", "pids"):
        base = Path("/sys/fs/cgroup") / controller / "donjon"
        dirs = list(base.glob(f"node-{node.proc.pid}-*"))
        if dirs:
            found[controller] = dirs[0]
    return found


def test_the_budget_is_set_on_the_node_cgroup_holding_every_sandbox(budgeted: LiveNode) -> None:
    """The node's own cgroup carries the budget, and the function's sandbox is inside it."""
    found = _node_cgroups(budgeted)
    if not found:
        pytest.skip("no cgroup v1 memory/pids hierarchy here (see tests/sandbox/test_cgroup_v2.py)")
    assert budgeted.invoke("budget-hog", {"op": "noop"}).status_code == 200
    assert int((found["memory"] / "memory.limit_in_bytes").read_text()) == MEMORY_BUDGET_MB << 20
    assert (found["pids"] / "pids.max").read_text().strip() == str(PIDS_BUDGET)
    assert [d.name for d in found["memory"].iterdir() if d.name.startswith("budget-hog-v")]


@pytest.mark.parametrize(("fn", "warm_up"), CASES)
def test_memory_past_the_node_budget_is_stopped(budgeted: LiveNode, fn: str, warm_up: bool) -> None:
    """A call allowed 512 MB by its own limit cannot hold 320 MB past a 192 MB node budget."""
    _cold_or_warm(budgeted, fn, warm_up)
    r = budgeted.invoke(fn, {"op": "memory", "mb": 320})
    if r.status_code == 200:
        assert r.json()["allocated_mb"] < MEMORY_BUDGET_MB, r.json()
    else:
        assert r.status_code == 507, r.text
        assert "memory budget" in r.json()["detail"]  # the node's, not the function's own
    _still_serving(budgeted, fn)


@pytest.mark.parametrize(("fn", "warm_up"), CASES)
def test_threads_past_the_node_pids_budget_are_refused(
    budgeted: LiveNode, fn: str, warm_up: bool
) -> None:
    """A call whose own share is 64 tasks cannot start more than the node's 48 in all."""
    _cold_or_warm(budgeted, fn, warm_up)
    r = budgeted.invoke(fn, {"op": "threads"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stopped_by"] is not None, out
    # The supervisor, bubblewrap and the worker hold some of the budget too.
    assert out["threads"] < PIDS_BUDGET, out
    _still_serving(budgeted, fn)
