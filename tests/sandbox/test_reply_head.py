"""A call's reply head (runtime/call.py `_invoke`): the usual head written without a dict is
the encoder's text byte for byte, and nothing of one call's head reaches the next."""

from __future__ import annotations

import json
from typing import Any

import pytest

from donjon.sandbox.runtime import call, jsonwire
from donjon.sandbox.runtime.context import Context
from donjon.sandbox.runtime.policy_hooks import CallWatch

META = {"request_id": "r1", "function": "f", "version": 1, "deadline": 0.0}


class _Output:
    """Stands for the memfd capture: what `collect` returns is the call's output."""

    def __init__(self, text: str) -> None:
        self.text = text

    def collect(self) -> str:
        return self.text


class _Alerting(CallWatch):
    """A watch that saw something in the call (as a tmp_write alert would)."""

    def __init__(self) -> None:
        super().__init__({})

    def report(self) -> dict[str, dict[str, str]]:
        return {"policy": {"tmp_write": "open /tmp/x for writing"}}


def _call(
    handler: Any,
    out: str = "",
    meta: dict[str, Any] | None = None,
    watch: CallWatch | None = None,
) -> tuple[bytes, bytes]:
    raw = json.dumps(meta or META).encode()
    watch = watch or CallWatch({})
    return call._invoke(None, None, handler, watch, _Output(out), raw, b"{}", lambda: 4321)  # type: ignore[arg-type]  # no socket; _Output stands for the memfd


OUTPUTS = ["", "hello\n", 'quote " back \\ tab \t nul \x00 é \U0001f600 \ud800\n', "x" * 65536]


@pytest.mark.parametrize("out", OUTPUTS)
def test_the_usual_head_is_the_encoders_text(out: str) -> None:
    """A call that returns, prints `out` and reads no secret: the head is what
    jsonwire.dumps writes for {"ok", "out", "mem_kb"}, byte for byte."""
    head, body = _call(lambda event, context: {"a": 1}, out)
    assert head == jsonwire.dumps({"ok": True, "out": out, "mem_kb": 4321}, compact=True).encode()
    assert json.loads(head) == {"ok": True, "out": out, "mem_kb": 4321}
    assert body == b'{"a":1}'


def test_an_output_that_escapes_past_the_head_limit_is_cut_to_fit() -> None:
    """Output whose JSON escapes are over MAX_HEAD keeps its newest part and says so."""
    head, _ = _call(lambda event, context: None, "\x01" * 65536)
    assert len(head) <= call.MAX_HEAD
    parsed = json.loads(head)
    assert parsed["ok"] is True and parsed["mem_kb"] == 4321
    assert parsed["out"].startswith("[") and "earlier characters dropped" in parsed["out"]
    assert parsed["out"].endswith("\x01" * 100)


def test_a_secret_read_and_an_alert_reach_that_calls_head_only() -> None:
    """The head of a call that read a secret, or that a policy alert saw, says so; the
    next call's head, which did neither, has only ok, out and mem_kb."""

    def reads(event: Any, context: Context) -> int:
        return len(context.secrets["alpha"])

    granted = {**META, "secrets": {"alpha": "one"}}
    first = json.loads(_call(reads, "a", granted, _Alerting())[0])
    assert first == {
        "ok": True,
        "policy": {"tmp_write": "open /tmp/x for writing"},
        "out": "a",
        "secrets_read": ["alpha"],
        "mem_kb": 4321,
    }
    second = json.loads(_call(lambda event, context: 1, "b", granted)[0])
    assert second == {"ok": True, "out": "b", "mem_kb": 4321}
    assert call._OK == {"ok": True}


def test_a_failed_call_keeps_its_kind_error_and_trace() -> None:
    """A handler that raises: kind error, the exception and its trace, then out, mem_kb."""

    def fails(event: Any, context: Context) -> None:
        raise ValueError("no luck")

    head = json.loads(_call(fails, "said\n")[0])
    assert list(head) == ["ok", "kind", "error", "trace", "out", "mem_kb"]
    assert head["ok"] is False and head["error"] == "ValueError: no luck"
    assert "raise ValueError" in head["trace"] and head["out"] == "said\n"
    too_big = json.loads(_call(lambda e, c: "x" * 100, "", {**META, "max_result": 10})[0])
    assert too_big["kind"] == "too_large" and too_big["limit"] == 10
    not_json = json.loads(_call(lambda e, c: object(), "")[0])
    assert not_json["kind"] == "result" and not_json["out"] == ""
