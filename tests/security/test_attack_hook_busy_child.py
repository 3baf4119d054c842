"""One tenant's large events keep the large events' child busy; another tenant's large
webhook delivery, admitted, is then refused (503: the child makes its event) and its
sender sends it again: each refusal spent that tenant's rate and quota.

Since this session a webhook delivery past 64 KiB has its event made in the large
events' child (gateway/hooks.py), after its admission. A refusal there (LargeEventsBusy,
503) kept what the admission spent, though "a call admitted, then refused before it was
run or queued, is given back what `admit` spent" (gateway/admission.py), as a delivery
refused for a full queue is. A tenant filling the child's places (one running, seven
waiting, four a caller: two of its functions' large events) so spent another tenant's
`rate` and daily quota on deliveries that never ran. Now the refused delivery gives them
back: its resend is taken. So does a call whose large event the child checks after its
admission (the invoke route, the Lambda API, http triggers: admission.busy_given_back).

A real node, its own app over real HTTP (hooks_s3_support.serve), the child's places
held by the other tenant's work as its large events would hold them. (The delivery
taken runs once and fails: the support's handler reads an S3 record.)
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from donjon.secret import Secret
from hooks_s3_support import node_with, serve
from triggers.webhook_signing import github_headers

pytestmark = pytest.mark.slow

SECRET = "gh-hook-secret-5d2f"
MANIFEST = """\
name: on-push
handler: main.handler
memory_mb: 64
timeout_s: 5
limits: {rate: 1/minute, body: 1MiB}
retry: {attempts: 1}
triggers:
  - webhook: {path: /gh, scheme: github, secret: gh-hook}
"""


def test_a_delivery_refused_by_the_busy_child_spends_nothing(tmp_path: Path) -> None:
    node = node_with(tmp_path, MANIFEST)
    body = json.dumps({"ref": "main", "items": list(range(20_000))}).encode()  # > 64 KiB
    statuses: list[int] = []

    async def exchange(client: httpx.AsyncClient) -> None:
        await node.vault.set("gh-hook", Secret(SECRET), "test")
        held = await _take_every_place(node)
        first = await client.post(
            "/hooks/gh", content=body, headers=github_headers(SECRET, body, "d-1")
        )
        statuses.append(first.status_code)
        await asyncio.gather(*held)  # the child free again
        again = await client.post(
            "/hooks/gh", content=body, headers=github_headers(SECRET, body, "d-1")
        )
        statuses.append(again.status_code)

    asyncio.run(serve(node, exchange))
    # Refused by the busy child, then taken: its rate (1 a minute) was given back.
    assert statuses == [503, 202]


#: An http trigger whose input_schema has a large body checked in the child, after its
#: admission (trigger_routes.py), as the invoke route's and the Lambda API's are.
HTTP_MANIFEST = """\
name: on-upload
handler: main.handler
memory_mb: 64
timeout_s: 5
limits: {rate: 1/minute, body: 1MiB}
input_schema: {type: object}
triggers:
  - http: {path: /big, methods: [POST], auth: public}
"""
ANSWER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'taken'}\n"


def test_a_call_refused_by_the_busy_child_spends_nothing(tmp_path: Path) -> None:
    """The same for a call (admission.busy_given_back): refused by the busy child (503),
    then taken, not refused by its function's rate (429) the refused one spent."""
    node = node_with(tmp_path, HTTP_MANIFEST, ANSWER)
    body = json.dumps({"items": list(range(20_000))}).encode()  # > 64 KiB
    statuses: list[int] = []

    async def exchange(client: httpx.AsyncClient) -> None:
        held = await _take_every_place(node)
        statuses.append((await client.post("/fn/big", content=body)).status_code)
        await asyncio.gather(*held)  # the child free again
        statuses.append((await client.post("/fn/big", content=body)).status_code)

    asyncio.run(serve(node, exchange))
    assert statuses == [503, 200]


async def _take_every_place(node: Any) -> list[asyncio.Task[None]]:
    """The other tenant's large events: one running (held 3 s), seven waiting, four of
    them each of two of its functions' callers: every place of the child taken."""
    work = node.large_events
    held = [asyncio.create_task(work.made("s3:a1", time.sleep, 3.0))]
    await asyncio.sleep(0.5)  # (running in the child now)
    held += [asyncio.create_task(work.made("s3:a1", time.sleep, 0)) for _ in range(3)]
    held += [asyncio.create_task(work.made("s3:a2", time.sleep, 0)) for _ in range(4)]
    await asyncio.sleep(0.1)
    return held
