"""A function cannot make the audit log say it read secrets it was not granted.

The names a call read come from the worker, which runs the function's code:
it can write whatever it likes into the reply. The gateway keeps only names
the function is granted, so a claim never reaches the audit log or the
`grant_uses` index for a secret of someone else's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from donjon.bundle import build_bundle
from harness import LiveNode
from sec_support import Ready

#: Claims reads through the runtime's own bookkeeping, as hostile code would.
FORGER = """
def handler(event, context):
    if event.get("break"):
        context.secrets._read = None
        return {"claimed": 0}
    claims = event.get("claims", [])
    context.secrets._read.update(claims)
    return {"claimed": len(claims)}
"""


@pytest.fixture(scope="module", params=["invocation", "warm"])
def deployed_forger(
    request: pytest.FixtureRequest,
    node: LiveNode,
    tmp_path_factory: pytest.TempPathFactory,
    sources: dict[str, Path],
) -> str:
    """A function granted ga-mine-s (never read) while ga-theirs-s belongs to another."""
    with node.client() as c:
        for name in ("ga-mine-s", "ga-theirs-s"):
            c.post(f"/v1/secrets/{name}", json={"value": f"value-of-{name}"})
    name = f"ga-forger-{request.param}"
    root = tmp_path_factory.mktemp(name)
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nisolation: {request.param}\n"
        "permissions: {secrets: [ga-mine-s]}\n"
    )
    (root / "main.py").write_text(FORGER)
    _, archive = build_bundle(root)
    with node.client() as c:
        assert c.post("/v1/functions", content=archive).status_code == 201
    sources[name] = root
    return name


@pytest.fixture
def forger(deployed_forger: str, started: Ready) -> str:
    """The forger, ready for the test's start."""
    return started(deployed_forger)


def _record(node: LiveNode, request_id: str) -> dict[str, Any]:
    with node.client() as c:
        records = c.get("/v1/audit", params={"n": 500}).json()
    return next(
        r
        for r in records
        if r["action"] == "function.invoke" and r["detail"].get("request_id") == request_id
    )


def test_cannot_claim_reading_an_ungranted_secret(node: LiveNode, forger: str) -> None:
    """A claimed read of another function's secret is dropped from the record."""
    r = node.invoke(forger, {"claims": ["ga-theirs-s", "../etc", "x" * 500]})
    assert r.status_code == 200
    assert "secrets_read" not in _record(node, r.headers["x-request-id"])["detail"]
    with node.client() as c:
        report = c.get(f"/v1/functions/{forger}/permissions/unused").json()
    assert report["unused"]["secrets"] == ["ga-mine-s"] and report["used"] == []


def test_thousands_of_claimed_names_are_dropped(node: LiveNode, forger: str) -> None:
    """A flood of claimed names keeps the call working and adds nothing to the record."""
    r = node.invoke(forger, {"claims": [f"s{i}" for i in range(5000)]})
    assert r.status_code == 200 and r.json() == {"claimed": 5000}
    assert "secrets_read" not in _record(node, r.headers["x-request-id"])["detail"]


@pytest.mark.parametrize("event", [{"break": True}, {"claims": [1, None, 2.5, True]}])
def test_broken_bookkeeping_still_answers(
    node: LiveNode, forger: str, event: dict[str, Any]
) -> None:
    """Replacing the runtime's read set or filling it with non-names breaks nothing."""
    r = node.invoke(forger, event)
    assert r.status_code == 200, r.text
    assert "secrets_read" not in _record(node, r.headers["x-request-id"])["detail"]


def test_cannot_hide_the_runtime_by_rebinding_secrets(
    node: LiveNode, tmp_path: Path, started: Ready
) -> None:
    """A handler that replaces context.secrets still gets a normal reply, its read noted."""
    root = tmp_path / "ga-rebind"
    root.mkdir()
    (root / "donjon.yaml").write_text(
        "name: ga-rebind\nhandler: main.handler\npermissions: {secrets: [ga-mine-s]}\n"
    )
    (root / "main.py").write_text(
        "def handler(event, context):\n"
        "    n = len(context.secrets['ga-mine-s'])\n"
        "    context.secrets = None\n"
        "    return n\n"
    )
    _, archive = build_bundle(root)
    with node.client() as c:
        assert c.post("/v1/functions", content=archive).status_code == 201
    try:
        r = node.invoke(started("ga-rebind", just_deployed=True), {})
        assert r.status_code == 200 and r.json() == len("value-of-ga-mine-s")
        record = _record(node, r.headers["x-request-id"])
        assert record["detail"]["secrets_read"] == ["ga-mine-s"]
    finally:
        with node.client() as c:
            c.delete("/v1/functions/ga-rebind")
