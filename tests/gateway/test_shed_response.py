"""The early shed's 503, made from parts built once: a whole, well-formed answer each time."""

from __future__ import annotations

import json
import re

import pytest

from donjon.gateway.early_shed import _DETAIL, _LAG_DETAIL, shed_response


def _parse(answer: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    assert all(b": " in line for line in lines), lines
    fields = [(name, value) for name, _, value in (line.partition(b": ") for line in lines)]
    return status, fields, body


@pytest.mark.parametrize(
    "detail", [_DETAIL, _LAG_DETAIL, 'another detail, "quoted" é', "zeros 0000000000000000000"]
)
@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("retry_after", [1, 7, 120, 86400])
def test_the_answer_is_a_whole_problem_document(
    detail: str, keep_alive: bool, retry_after: int
) -> None:
    status, fields, body = _parse(shed_response(retry_after, keep_alive, detail))
    assert status == b"HTTP/1.1 503 Service Unavailable"
    names = [name for name, _ in fields]
    expected = [b"content-type", b"content-length", b"retry-after", b"x-request-id"]
    expected.append(b"cache-control")
    if not keep_alive:
        expected.append(b"connection")
    assert names == expected
    values = dict(fields)
    assert values[b"content-type"] == b"application/problem+json"
    assert int(values[b"content-length"]) == len(body)
    assert values[b"retry-after"] == str(retry_after).encode()
    assert values[b"cache-control"] == b"no-store"
    assert values.get(b"connection", b"close") == b"close"
    request_id = values[b"x-request-id"].decode()
    assert re.fullmatch(r"[0-9a-f]{20}", request_id)
    assert json.loads(body) == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": detail,
        "request_id": request_id,
    }


def test_every_answer_has_a_fresh_request_id() -> None:
    ids = {dict(_parse(shed_response(1, True))[1])[b"x-request-id"] for _ in range(50)}
    assert len(ids) == 50
