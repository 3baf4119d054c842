"""Attacks on pushed storage events (`s3: {source: push}`): forged notifications without
the trigger's bearer token, in every shape a forger might try, run nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from hooks_s3_support import TOKEN, document, minio_record, node_with, outputs, serve

pytestmark = pytest.mark.slow


def test_forged_storage_events_without_the_token_run_nothing(tmp_path: Path) -> None:
    """No token, a token one character off, a prefix of it, the token with another scheme,
    in the query string or in another header: each is a 401 and the function never runs;
    the real token then runs it (the forgeries were refused, not lost to a broken path)."""
    node = node_with(tmp_path)
    body = document(minio_record("forged.png"))
    statuses: list[int] = []
    accepted: list[int] = []
    forgeries = [
        {},
        {"authorization": "Bearer " + TOKEN[:-1] + ("0" if TOKEN[-1] != "0" else "1")},
        {"authorization": "Bearer " + TOKEN[:8]},
        {"authorization": "Bearer"},
        {"authorization": "Basic " + TOKEN},
        {"authorization": TOKEN},
        {"x-minio-token": TOKEN},
    ]

    async def exchange(c: httpx.AsyncClient) -> None:
        for headers in forgeries:
            statuses.append(
                (await c.post("/hooks/minio", content=body, headers=headers)).status_code
            )
        r = await c.post("/hooks/minio", content=body, params={"token": TOKEN})
        statuses.append(r.status_code)
        ok = await c.post(
            "/hooks/minio",
            content=document(minio_record("real.png")),
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        accepted.append(ok.status_code)

    asyncio.run(serve(node, exchange))
    assert statuses == [401] * (len(forgeries) + 1)
    assert accepted == [202]
    printed = outputs(node.settings)
    assert len(printed) == 1
    assert 'EVENT "real.png"' in printed[0]
