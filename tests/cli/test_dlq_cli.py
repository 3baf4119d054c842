"""`donjon invoke --async` and `donjon dlq ls/show/redrive/purge` against a real node."""

from __future__ import annotations

import json
from pathlib import Path

from async_support import bundle, wait_for
from harness import LiveNode, run_cli

FAILS = "def handler(event, context):\n    raise RuntimeError('cli says no')\n"
ONCE = "retry: {attempts: 1, backoff_s: 0.1}\n"


def _dead_via_cli(node: LiveNode, name: str, n: int) -> str:
    done = run_cli(
        node.env(), "invoke", name, "--async", "--data", json.dumps({"n": n}), "--output", "json"
    )
    accepted = json.loads(done.stdout)
    assert accepted["status"] == "queued"
    assert accepted["location"] == f"/v1/invocations/{accepted['invocation_id']}"
    assert wait_for(node, accepted["invocation_id"])["status"] == "dead"
    return str(accepted["invocation_id"])


def test_invoke_async_prints_the_invocation_id(node: LiveNode, tmp_path: Path) -> None:
    """The text form prints `queued ID`; the invocation then succeeds."""
    node.deploy(bundle(tmp_path, "cli-async", "def handler(event, context):\n    return event\n"))
    done = run_cli(node.env(), "invoke", "cli-async", "--async", "--data", '{"a": 1}')
    line = done.stdout.strip()
    assert line.startswith("queued ")
    finished = wait_for(node, line.split()[1])
    assert finished["result"] == {"a": 1}


def test_dlq_ls_show_redrive_and_purge(node: LiveNode, tmp_path: Path) -> None:
    """Dead invocations are listed, shown with their event, redriven and purged by the CLI."""
    node.deploy(bundle(tmp_path, "cli-dead", FAILS, ONCE))
    first = _dead_via_cli(node, "cli-dead", 1)
    second = _dead_via_cli(node, "cli-dead", 2)

    listed = json.loads(run_cli(node.env(), "dlq", "ls", "cli-dead", "--output", "json").stdout)
    assert {d["invocation_id"] for d in listed} == {first, second}
    table = run_cli(node.env(), "dlq", "ls", "cli-dead").stdout
    assert first in table
    assert "RuntimeError" in table

    shown = run_cli(node.env(), "dlq", "show", first).stdout
    assert '"n": 1' in shown
    assert "cli says no" in shown

    again = json.loads(run_cli(node.env(), "dlq", "redrive", first, "--output", "json").stdout)
    assert again["invocation_id"] == first
    assert wait_for(node, first)["status"] == "dead"  # still broken: dead again, one attempt
    redriven = json.loads(
        run_cli(node.env(), "dlq", "redrive", "--all", "cli-dead", "--output", "json").stdout
    )
    assert set(redriven["redriven"]) == {first, second}
    for invocation_id in (first, second):
        assert wait_for(node, invocation_id)["status"] == "dead"

    purged = run_cli(node.env(), "dlq", "purge", "cli-dead").stdout
    assert "purged 2 invocation(s)" in purged
    assert json.loads(run_cli(node.env(), "dlq", "ls", "cli-dead", "--output", "json").stdout) == []


def test_dlq_redrive_needs_one_target(node: LiveNode) -> None:
    """Neither an id nor --all (or both) is a usage error, and nothing is sent."""
    assert run_cli(node.env(), "dlq", "redrive", check=False).returncode == 2
    both = run_cli(node.env(), "dlq", "redrive", "x", "--all", "y", check=False)
    assert both.returncode == 2


def test_dlq_is_refused_to_a_developer(node: LiveNode) -> None:
    """Only admins (dlq:manage) read the dead-letter queue."""
    key = node.create_key("cli-dlq-dev", "developer")["key"]
    done = run_cli(node.env(key), "dlq", "ls", check=False)
    assert done.returncode == 1
    assert "403" in done.stderr
