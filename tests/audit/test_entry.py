"""The record's canonical bytes before the writer fills in its seq and time (audit/entry.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from donjon.audit import AuditEvent
from donjon.audit.entry import canonical, encode_entry, fill, ts_tail

DETAILS: list[Any] = [
    {},
    {"request_id": "r1", "duration_ms": 0.512, "trigger": "invoke"},
    {"z": [1, 2.5, None, True], "a": {"b": "é\u2028\x01", "a": -0.0}, "n": float("nan")},
    {"big": 10**30, "inf": float("inf"), "nested": [[{"k": "v"}]]},
]


@pytest.mark.parametrize("detail", DETAILS)
def test_a_record_is_exactly_json_dumps_sorted_and_compact(detail: Any) -> None:
    """The filled template equals json.dumps(record, separators, sort_keys) byte for byte."""
    event = AuditEvent("key:a", "function.invoke", "f@1", "ok", detail)
    record = fill(encode_entry(event).template, 7, ts_tail(1.25))
    expected = {"action": event.action, "actor": event.actor, "detail": detail}
    expected |= {"outcome": "ok", "seq": 7, "target": "f@1", "ts": 1.25}
    assert record == json.dumps(expected, separators=(",", ":"), sort_keys=True).encode()
    assert canonical(detail) == json.dumps(detail, separators=(",", ":"), sort_keys=True)


def test_a_detail_that_is_not_json_is_refused_clearly() -> None:
    """A circular detail or one holding a non-JSON object raises ValueError/TypeError."""
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="circular"):
        encode_entry(AuditEvent("key:a", "x", "t", "ok", circular))
    with pytest.raises(TypeError, match="not JSON serializable"):
        encode_entry(AuditEvent("key:a", "x", "t", "ok", {"o": object()}))
