"""Storage events pushed by an S3-compatible store (MinIO's format), over real HTTP on
loopback to `handle_s3_push` in front of a real node: the bearer token decides, the
body is bounded and parsed, and each matching record runs the function once."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from donjon.bootstrap import initialize
from donjon.bundle import build_bundle
from donjon.config import Settings
from donjon.gateway.deliveries import BackgroundDeliveries
from donjon.gateway.hooks_s3 import handle_s3_push
from donjon.gateway.invoke import run_event
from donjon.gateway.node import Node, open_node
from donjon.lifecycle import make_deployed, manifest_json
from donjon.manifest import load_manifest
from donjon.secret import Secret
from donjon.store.tables import audit_log
from harness import free_port

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


def _minio(key: str, event: str = "s3:ObjectCreated:Put") -> dict[str, Any]:
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


def _document(*records: dict[str, Any]) -> bytes:
    return json.dumps({"EventName": "s3:ObjectCreated:Put", "Records": list(records)}).encode()


async def _route(request: Request) -> Response:
    """What the /hooks route does for an s3 push trigger: find it by path, hand it over."""
    node: Node = request.app.state.node
    path = "/" + request.path_params["path"]
    for deployed in node.registry.all():
        for spec in deployed.manifest.storage_events:
            if spec.source == "push" and spec.path == path:
                return await handle_s3_push(request, node, deployed, spec)
    return Response(status_code=404)


def _node(tmp_path: Path) -> Node:
    fn = tmp_path / "fn"
    fn.mkdir()
    (fn / "donjon.yaml").write_text(MANIFEST)
    (fn / "main.py").write_text(HANDLER)
    settings = Settings(data_dir=tmp_path / "data", url="https://127.0.0.1:1", api_key=None)
    initialize(settings)
    node = open_node(settings)
    _, archive = build_bundle(fn)
    digest, manifest = node.bundles.add(archive, load_manifest)
    record = node.functions.add_version("on-upload", 1, digest, manifest_json(manifest), "test")
    node.registry.put(make_deployed(record, node.bundles.path(digest)))
    return node


async def _serve(node: Node, exchange: Any) -> None:
    """Serve the hook route on a loopback port around `exchange(client)`."""
    await node.start()
    deliveries = BackgroundDeliveries(functools.partial(run_event, node))
    node.submit = deliveries.submit
    try:
        await node.vault.set("minio-token", Secret(TOKEN), "test")
        app = Starlette(routes=[Route("/hooks/{path:path}", _route, methods=["POST"])])
        app.state.node = node
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="error")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
                await exchange(c)
        finally:
            server.should_exit = True
            await task
        await deliveries.stop()
    finally:
        await node.stop()


@pytest.mark.slow
def test_pushed_events_run_the_function_only_with_the_right_token(tmp_path: Path) -> None:
    """No token or a wrong one: 401, audited, nothing run. The right one: 202, and the
    function runs once per record its filters take (a .txt and a removal are not)."""
    node = _node(tmp_path)
    answers: dict[str, Any] = {}
    body = _document(
        _minio("cat.png"), _minio("notes.txt"), _minio("old.png", "s3:ObjectRemoved:Delete")
    )

    async def exchange(c: httpx.AsyncClient) -> None:
        answers["none"] = await c.post("/hooks/minio", content=body)
        answers["wrong"] = await c.post(
            "/hooks/minio", content=body, headers={"authorization": "Bearer " + TOKEN[:-1] + "x"}
        )
        answers["right"] = await c.post(
            "/hooks/minio", content=body, headers={"authorization": f"Bearer {TOKEN}"}
        )

    asyncio.run(_serve(node, exchange))
    assert answers["none"].status_code == 401
    assert answers["none"].headers["content-type"] == "application/problem+json"
    assert answers["wrong"].status_code == 401
    right = answers["right"]
    assert right.status_code == 202, right.text
    assert right.json()["accepted"] == 1
    node = open_node(node.settings)
    outputs = [e["output"] for e in node.logs.recent("on-upload", 10)]
    with node.engine.connect() as conn:
        records = [json.loads(r) for r in conn.execute(select(audit_log.c.record)).scalars()]
    node.engine.dispose()
    assert len(outputs) == 1
    assert 'EVENT "cat.png"' in outputs[0]
    denied = [r for r in records if r["action"] == "hook.denied"]
    assert denied and denied[0]["detail"]["reason"] == "missing bearer token"
    assert TOKEN not in json.dumps(records)
    calls = [r for r in records if r["action"] == "function.invoke"]
    assert [r["detail"]["trigger"] for r in calls] == ["s3"]


@pytest.mark.slow
def test_bad_pushes_are_refused_and_run_nothing(tmp_path: Path) -> None:
    """With the right token, a body past the function's limits.body is a 413 and one that
    is not an S3 notification a 400 saying why; an unknown path is not served."""
    node = _node(tmp_path)
    auth = {"authorization": f"Bearer {TOKEN}"}
    answers: dict[str, httpx.Response] = {}

    async def exchange(c: httpx.AsyncClient) -> None:
        big = _document(*[_minio(f"{i:04}.png") for i in range(40)])
        answers["big"] = await c.post("/hooks/minio", content=big, headers=auth)
        answers["bad"] = await c.post("/hooks/minio", content=b'{"Records": 3}', headers=auth)
        answers["other"] = await c.post("/hooks/other", content=_document(), headers=auth)

    asyncio.run(_serve(node, exchange))
    assert answers["big"].status_code == 413, answers["big"].text
    assert answers["bad"].status_code == 400
    assert "no `Records` list" in answers["bad"].json()["detail"]
    assert answers["other"].status_code == 404
    node = open_node(node.settings)
    assert node.logs.recent("on-upload", 10) == []
    node.engine.dispose()
