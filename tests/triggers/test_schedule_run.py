"""A schedule trigger fires a real sandboxed call, audited with actor `schedule`."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

from sqlalchemy import select

from donjon.bootstrap import initialize
from donjon.bundle import build_bundle
from donjon.config import Settings
from donjon.gateway.assembly import open_node
from donjon.gateway.trigger_routes import run_scheduled
from donjon.lifecycle import make_deployed, manifest_json
from donjon.manifest import load_manifest
from donjon.store.tables import audit_log


def test_scheduled_call_runs_in_the_sandbox_and_is_audited(tmp_path: Path) -> None:
    """run_scheduled invokes the function with a schedule event; output and audit follow."""
    fn = tmp_path / "fn"
    fn.mkdir()
    (fn / "donjon.yaml").write_text(
        "name: ticker\nhandler: main.handler\ntriggers:\n  - schedule: '* * * * *'\n"
    )
    (fn / "main.py").write_text(
        "import os\ndef handler(event, context):\n"
        "    print('tick', event['trigger'], event['schedule'], os.getuid())\n"
        "    return None\n"
    )
    settings = Settings(data_dir=tmp_path / "data", url="https://127.0.0.1:1", api_key=None)
    initialize(settings)
    node = open_node(settings)
    _, archive = build_bundle(fn)
    digest, manifest = node.bundles.add(archive, load_manifest)
    record = node.functions.add_version("ticker", 1, digest, manifest_json(manifest), "test")
    node.registry.put(make_deployed(record, node.bundles.path(digest)))
    assert [(n, c.text) for n, c in node.registry.schedules()] == [("ticker", "* * * * *")]

    async def go() -> None:
        await node.start()
        try:
            await run_scheduled(node, "ticker", "* * * * *", dt.datetime.now(dt.UTC))
        finally:
            await node.stop()

    asyncio.run(go())
    node = open_node(settings)
    with node.engine.connect() as conn:
        records = [json.loads(r) for r in conn.execute(select(audit_log.c.record)).scalars()]
    # Sealed at rest: read through the node's log store, which opens them.
    outputs = [e["output"] for e in node.logs.recent("ticker", 10)]
    node.engine.dispose()
    assert any("tick schedule * * * * * 1000" in o for o in outputs)
    assert any(
        r["action"] == "function.invoke"
        and r["actor"] == "schedule"
        and r["detail"]["trigger"] == "schedule"
        for r in records
    )
