"""A real node behind the pushed-storage-events handler, over real HTTP on loopback.

`serve(node, exchange)` serves the node's own app (its ``POST /hooks/{path}`` route)
with uvicorn on a free loopback port, puts the trigger's token in its vault, and runs
`exchange(client)`; `node_with`
makes a node with the `on-upload` function deployed (MinIO's format: `minio_record`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import func, select

from donjon.bootstrap import initialize
from donjon.bundle import build_bundle
from donjon.config import Settings
from donjon.gateway.app import create_app
from donjon.gateway.assembly import open_node
from donjon.gateway.node import Node
from donjon.lifecycle import make_deployed, manifest_json
from donjon.manifest import load_manifest
from donjon.secret import Secret
from donjon.store.tables import invocations
from harness import free_port

__all__ = ["TOKEN", "document", "minio_record", "node_with", "outputs", "serve"]

TOKEN = "minio-push-token-4f1c9a"

MANIFEST = """\
name: on-upload
handler: main.handler
memory_mb: 64
timeout_s: 5
limits: {body: 4KiB}
triggers:
  - s3:
      source: push
      path: /minio
      secret: minio-token
      events: ["s3:ObjectCreated:*"]
      suffix: .png
"""
HANDLER = """\
import json


def handler(event, context):
    print("EVENT " + json.dumps(event["Records"][0]["s3"]["object"]["key"]))
"""


def minio_record(key: str, event: str = "s3:ObjectCreated:Put") -> dict[str, Any]:
    """One record as MinIO sends it (its eventName keeps the s3: prefix)."""
    return {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "eventName": event,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": "uploads", "arn": "arn:aws:s3:::uploads"},
            "object": {"key": key, "size": 3, "sequencer": "17A0B2C3D4E5F607"},
        },
    }


def document(*records: dict[str, Any]) -> bytes:
    return json.dumps({"EventName": "s3:ObjectCreated:Put", "Records": list(records)}).encode()


def node_with(tmp_path: Path, manifest_text: str = MANIFEST, handler: str = HANDLER) -> Node:
    fn = tmp_path / "fn"
    fn.mkdir()
    (fn / "donjon.yaml").write_text(manifest_text)
    (fn / "main.py").write_text(handler)
    settings = Settings(data_dir=tmp_path / "data", url="https://127.0.0.1:1", api_key=None)
    initialize(settings)
    node = open_node(settings)
    _, archive = build_bundle(fn)
    digest, manifest = node.bundles.add(archive, load_manifest)
    record = node.functions.add_version("on-upload", 1, digest, manifest_json(manifest), "test")
    node.registry.put(make_deployed(record, node.bundles.path(digest)))
    return node


async def serve(node: Node, exchange: Any) -> None:
    """Serve the node's own app (its POST /hooks/{path} route) on a loopback port
    around `exchange(client)`; the app's lifespan starts and stops the node."""
    port = free_port()
    config = uvicorn.Config(
        create_app(node), host="127.0.0.1", port=port, lifespan="on", log_level="error"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                await task  # it failed to start: say why
            await asyncio.sleep(0.02)
        await node.vault.set("minio-token", Secret(TOKEN), "test")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            await exchange(c)
        await _drained(node)
    finally:
        server.should_exit = True
        await task


async def _drained(node: Node) -> None:
    """Wait (at most 60 s) until the queue holds no event still to run: each accepted
    push is an async invocation, run by the node's workers after its 202."""
    pending = (
        select(func.count())
        .select_from(invocations)
        .where(invocations.c.status.in_(["queued", "running", "failed"]))
    )
    for _ in range(600):
        with node.engine.connect() as conn:
            if not conn.execute(pending).scalar():
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the pushed events' invocations never ran")


def outputs(settings: Settings, function: str = "on-upload") -> list[str]:
    """What the function printed in each call, newest first (after the node stopped)."""
    node = open_node(settings)
    try:
        return [e["output"] for e in node.logs.recent(function, 100)]
    finally:
        node.engine.dispose()
