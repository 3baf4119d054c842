"""Storage events pushed by an S3-compatible store (MinIO's format), over real HTTP on
loopback to `handle_s3_push` in front of a real node: the bearer token decides, the
body is bounded and parsed, and each matching record runs the function once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from donjon.gateway.assembly import open_node
from donjon.store.tables import audit_log
from hooks_s3_support import MANIFEST, TOKEN, document, minio_record, node_with, serve


@pytest.mark.slow
def test_pushed_events_run_the_function_only_with_the_right_token(tmp_path: Path) -> None:
    """No token or a wrong one: 401, audited, nothing run. The right one: 202, and the
    function runs once per record its filters take (a .txt and a removal are not)."""
    node = node_with(tmp_path)
    answers: dict[str, Any] = {}
    body = document(
        minio_record("cat.png"),
        minio_record("notes.txt"),
        minio_record("old.png", "s3:ObjectRemoved:Delete"),
    )

    async def exchange(c: httpx.AsyncClient) -> None:
        answers["none"] = await c.post("/hooks/minio", content=body)
        answers["wrong"] = await c.post(
            "/hooks/minio", content=body, headers={"authorization": "Bearer " + TOKEN[:-1] + "x"}
        )
        answers["right"] = await c.post(
            "/hooks/minio", content=body, headers={"authorization": f"Bearer {TOKEN}"}
        )

    asyncio.run(serve(node, exchange))
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
    denied = [r for r in records if r["action"] == "auth.denied"]
    assert denied and denied[0]["detail"]["reason"] == "storage hook: missing bearer token"
    assert (denied[0]["detail"]["trigger"], denied[0]["detail"]["function"]) == ("s3", "on-upload")
    assert TOKEN not in json.dumps(records)
    calls = [r for r in records if r["action"] == "function.invoke"]
    assert [r["detail"]["trigger"] for r in calls] == ["s3"]


@pytest.mark.slow
def test_bad_pushes_are_refused_and_run_nothing(tmp_path: Path) -> None:
    """With the right token, a body past the function's limits.body is a 413 and one that
    is not an S3 notification a 400 saying why; an unknown path is not served."""
    node = node_with(tmp_path)
    auth = {"authorization": f"Bearer {TOKEN}"}
    answers: dict[str, httpx.Response] = {}

    async def exchange(c: httpx.AsyncClient) -> None:
        big = document(*[minio_record(f"{i:04}.png") for i in range(40)])
        answers["big"] = await c.post("/hooks/minio", content=big, headers=auth)
        answers["bad"] = await c.post("/hooks/minio", content=b'{"Records": 3}', headers=auth)
        answers["other"] = await c.post("/hooks/other", content=document(), headers=auth)

    asyncio.run(serve(node, exchange))
    assert answers["big"].status_code == 413, answers["big"].text
    assert answers["bad"].status_code == 400
    assert "no `Records` list" in answers["bad"].json()["detail"]
    assert answers["other"].status_code == 404
    node = open_node(node.settings)
    assert node.logs.recent("on-upload", 10) == []
    node.engine.dispose()


#: Object keys the function takes: lower-case letters, then .png.
SCHEMA = """\
input_schema:
  type: object
  required: [Records]
  properties:
    Records:
      type: array
      items:
        type: object
        properties:
          s3:
            type: object
            properties:
              object:
                type: object
                properties:
                  key: {type: string, pattern: "^[a-z]+[.]png$"}
"""


@pytest.mark.slow
def test_a_push_with_one_record_the_schema_refuses_runs_none(tmp_path: Path) -> None:
    """The function's input_schema applies to each record's event: a push whose second
    record it refuses is a 422 naming the field, and its first record does not run
    either (the store sends the whole notification again); a push of good records runs."""
    node = node_with(tmp_path, MANIFEST + SCHEMA)
    auth = {"authorization": f"Bearer {TOKEN}"}
    answers: dict[str, httpx.Response] = {}

    async def exchange(c: httpx.AsyncClient) -> None:
        mixed = document(minio_record("cat.png"), minio_record("Bad Name.png"))
        answers["mixed"] = await c.post("/hooks/minio", content=mixed, headers=auth)
        good = document(minio_record("dog.png"))
        answers["good"] = await c.post("/hooks/minio", content=good, headers=auth)

    asyncio.run(serve(node, exchange))
    assert answers["mixed"].status_code == 422, answers["mixed"].text
    assert "/Records/0/s3/object/key" in answers["mixed"].json()["detail"]
    assert answers["good"].status_code == 202, answers["good"].text
    node = open_node(node.settings)
    outputs = [e["output"] for e in node.logs.recent("on-upload", 10)]
    node.engine.dispose()
    assert len(outputs) == 1 and 'EVENT "dog.png"' in outputs[0], outputs
