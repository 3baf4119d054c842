"""Large views rendered off the loop are the bytes `render` gives (gateway/stored_views.py,
schemas.rendered_list), and large bodies go out whole in pieces (gateway/body_chunks.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from starlette.types import Message, Receive, Scope, Send

from donjon.gateway.body_chunks import CHUNK, BodyChunks
from donjon.gateway.schemas import render, render_json, rendered_list
from donjon.gateway.stored_views import StoredViews, StoredViewsBusy
from donjon.gateway.views import LogEntry
from donjon.triggers.queue import Status
from queue_support import queued


def _entry(output: str) -> LogEntry:
    return LogEntry(
        function="f",
        version=1,
        request_id="r",
        ts=1.5,
        outcome="ok",
        output=output,
        cursor=3,
        duration_ms=None,
        memory_kb=None,
    )


@pytest.mark.parametrize(
    "outputs",
    [[], ["plain"], ['é\x01"\\\n', "x" * 5000], ["fine", "lone \ud800 surrogate"]],
    ids=["empty", "plain", "escaped", "surrogate"],
)
def test_rendered_list_is_what_render_answers(outputs: list[str]) -> None:
    """An entry at a time, the body is render's, its fallback for a lone surrogate too."""
    entries = [_entry(o) for o in outputs]
    assert rendered_list(entries) == bytes(render(entries).body)


def test_a_large_body_goes_out_whole_in_pieces() -> None:
    """A body past CHUNK is sent as pieces of CHUNK bytes, the last ending the body; a
    small one as it came."""
    body = bytes(range(256)) * (CHUNK // 100)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def small(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def run(inner: object) -> list[Message]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        await BodyChunks(inner)({"type": "http"}, receive, send)  # type: ignore[arg-type]  # a bare scope
        return sent

    sent = asyncio.run(run(app))[1:]
    assert b"".join(m["body"] for m in sent) == body
    assert all(len(m["body"]) <= CHUNK for m in sent) and len(sent) == -(-len(body) // CHUNK)
    assert [m["more_body"] for m in sent] == [True] * (len(sent) - 1) + [False]
    assert asyncio.run(run(small)) == [{"type": "http.response.body", "body": b"{}"}]


@pytest.mark.parametrize(
    "records",
    [[{"seq": 1, "detail": {"path": "/é"}}], [{"seq": 2, "detail": {"path": "/\udcff"}}]],
    ids=["utf8", "surrogate"],
)
def test_rendered_list_of_json_values_is_what_render_json_answers(
    records: list[dict[str, object]],
) -> None:
    """Plain JSON values (the timeline's records) render as render_json renders them."""
    assert rendered_list(records) == bytes(render_json(records).body)


def test_a_view_begun_as_the_node_stops_starts_no_child() -> None:
    """A large view whose thread had begun when `close` ran (the node stopping) is refused
    (503), and no child process is started that nothing would end."""
    views = StoredViews()
    big = replace(queued(), status=Status.SUCCEEDED, result=b"[" + b"1," * 40_000 + b"1]")
    views.close()
    with pytest.raises(StoredViewsBusy):
        views._in_child(big, False, False)  # what that thread does next
    assert views._pool is None
