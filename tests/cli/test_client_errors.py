"""How the CLI words a problem document the API answered (cli/client.py)."""

from __future__ import annotations

import httpx

from donjon.cli.client import _problem


def _answer(status: int, body: dict[str, object]) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("POST", "https://n/x"))


def test_the_request_id_is_named_once() -> None:
    """A detail that names its request id already gets it once, not twice (helper-123's
    review: "the function failed (request X): ... (request X)")."""
    named = _problem(
        _answer(
            504,
            {"detail": "the function failed (request abc123): timed out", "request_id": "abc123"},
        )
    )
    assert str(named.message).count("abc123") == 1
    bare = _problem(_answer(404, {"detail": "no function named 'x'", "request_id": "abc123"}))
    assert bare.message == "404 no function named 'x' (request abc123)"
    # A body from something else (a proxy) whose detail is not text is still worded.
    odd = _problem(_answer(502, {"detail": 502, "request_id": "abc123"}))
    assert odd.message == "502 502 (request abc123)"
