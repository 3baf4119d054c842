"""Attacks on the supervisor through a worker's report: a handler's import runs before the
worker reports ready, with the hand-off socket to the supervisor open at fd 3, and may
send on it whatever it likes. The supervisor reads a worker's report with the runtime's
own JSON reader (runtime/jsonwire.py), in a process where `json` is not imported; a
report it cannot read must fail that worker, never the supervisor."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.bundle import build_bundle
from harness import LiveNode

#: At import, before the runtime's own ready report: one message on the hand-off socket.
_SPEAKS = (
    "import os\n"
    "os.write(3, {report!r})\n"
    "def handler(event, context):\n"
    "    return {{'served': True}}\n"
)


@pytest.mark.parametrize(
    ("what", "report"),
    [("truncated", b'{"op": "ready"'), ("nested", b"[" * 60000)],
)
@pytest.mark.parametrize("isolation", ["warm", "invocation"])
def test_unreadable_report_at_import_fails_the_handler_not_the_sandbox(
    node: LiveNode, tmp_path: Path, isolation: str, what: str, report: bytes
) -> None:
    """A truncated or 60,000-deep report sent at import is the handler's import failure
    (422, "bad report", as any report that is not JSON), not a supervisor that crashed
    (a sandbox that "did not start", with its traceback); the node serves on."""
    name = f"report-{what}-{isolation}"
    (tmp_path / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\nisolation: {isolation}\n"
    )
    (tmp_path / "main.py").write_text(_SPEAKS.format(report=report))
    _, archive = build_bundle(tmp_path)
    with node.client() as c:
        r = c.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
        assert r.status_code == 422, r.text
        assert "failed to import: bad report" in r.json()["detail"], r.text
        assert c.get(f"/v1/functions/{name}").status_code == 404
    assert node.invoke("probe", {"op": "exists", "path": "/fn"}).status_code == 200
