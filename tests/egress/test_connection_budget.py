"""The node's bound on open egress connections (egress/budget.py) and the open-file limit
it is a share of (gateway/open_files.py)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from donjon.config import EgressSettings
from donjon.egress.budget import ConnectionBudget, budget_for


def test_the_budget_counts_per_function_and_in_all() -> None:
    budget = ConnectionBudget(total=3, per_function=2)
    assert budget.take("a") is None and budget.take("a") is None
    assert "function's egress connections" in (budget.take("a") or "")
    assert budget.take("b") is None
    assert "node's egress connections (3)" in (budget.take("c") or "")
    budget.give("a")
    assert budget.take("c") is None
    assert (budget.open, budget.by_function) == (3, {"a": 1, "b": 1, "c": 1})
    for name in ("a", "b", "c"):
        budget.give(name)
    assert (budget.open, budget.by_function) == (0, {})


def test_the_default_budget_is_a_share_of_the_open_files() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    budget = budget_for(EgressSettings())
    assert budget.total == max(16, soft // 8)
    assert budget.per_function == budget.total // 2
    set_ = budget_for(EgressSettings(max_connections_node=10, max_connections_per_function=50))
    assert (set_.total, set_.per_function) == (10, 10)  # never more than the node's


def test_serving_raises_the_soft_open_file_limit_to_the_hard_one() -> None:
    """As a service manager leaves it (soft 1,024 under a higher hard limit), the serving
    process raises it before it opens anything (gateway/server.py, `serve`)."""
    code = (
        "import json, resource\n"
        "from donjon.gateway.open_files import raise_open_files\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "print(json.dumps([raise_open_files(), resource.getrlimit(resource.RLIMIT_NOFILE)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    (before, after), (soft, hard) = json.loads(out.stdout)
    assert before == 256
    expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
    assert after == soft == min(expected, 1 << 20)
