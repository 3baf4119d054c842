"""`context.secrets` notes which granted secrets a handler read; the host keeps a bounded list."""

from __future__ import annotations

from typing import Any

import pytest

from donjon.sandbox import FunctionFailed
from donjon.sandbox.replies import reply_result, secrets_read
from donjon.sandbox.runtime.context import Context, Secrets


def _secrets() -> Secrets:
    return Secrets({"alpha": "va", "beta": "vb", "gamma": "vg"})


def test_names_alone_are_not_reads() -> None:
    """`in`, keys(), iteration, len() and repr() read no value."""
    s = _secrets()
    assert "alpha" in s and "zeta" not in s
    assert list(s) == ["alpha", "beta", "gamma"] and list(s.keys()) == list(s)
    assert len(s) == 3
    assert "va" not in repr(s) and "alpha" in repr(s)
    assert s.read_names() == []


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (lambda s: s["alpha"], ["alpha"]),
        (lambda s: s.get("beta"), ["beta"]),
        (lambda s: s.get("zeta", "default"), []),
        (lambda s: list(s.values()), ["alpha", "beta", "gamma"]),
        (lambda s: list(s.items()), ["alpha", "beta", "gamma"]),
        (dict, ["alpha", "beta", "gamma"]),
        (lambda s: s.copy(), ["alpha", "beta", "gamma"]),
    ],
)
def test_each_way_of_reading_a_value_is_noted(read: Any, expected: list[str]) -> None:
    """Subscript, get, values, items, dict() and copy() mark what they read."""
    s = _secrets()
    read(s)
    assert s.read_names() == expected


def test_a_missing_name_is_a_key_error_and_no_read() -> None:
    """A name that was not granted raises KeyError, as a dict would, and is not noted."""
    s = _secrets()
    with pytest.raises(KeyError):
        s["zeta"]
    assert s.read_names() == []


def test_secrets_are_read_only() -> None:
    """No item can be set or removed."""
    s: Any = _secrets()
    with pytest.raises(TypeError):
        s["alpha"] = "x"
    with pytest.raises(TypeError):
        del s["alpha"]


def test_context_holds_only_what_the_frame_grants() -> None:
    """The context's secrets are the frame's, and a fresh context has read nothing."""
    ctx = Context(
        {"request_id": "r", "function": "f", "version": 1, "deadline": 0.0, "secrets": {"a": "1"}}
    )
    assert dict(ctx.secrets) == {"a": "1"}
    assert (
        Context(
            {"request_id": "r", "function": "f", "version": 1, "deadline": 0.0}
        ).secrets.read_names()
        == []
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ()),
        ("alpha", ()),
        ({"alpha": 1}, ()),
        (["beta", "alpha", "alpha"], ("alpha", "beta")),
        (["alpha", 7, None, ["x"], "", "n" * 64], ("alpha",)),
        ([f"s{i}" for i in range(10_000)], tuple(sorted(f"s{i}" for i in range(256)))),
    ],
)
def test_reply_heads_claims_are_bounded(value: Any, expected: tuple[str, ...]) -> None:
    """Only strings of a name's length, at most 256 of them, are kept from a reply head."""
    assert secrets_read({"ok": True, "secrets_read": value}) == expected


def test_reads_are_kept_on_a_failed_call() -> None:
    """A call that read a secret and then raised still reports the read."""
    head = {"ok": False, "kind": "error", "error": "ValueError: x", "secrets_read": ["alpha"]}
    with pytest.raises(FunctionFailed) as failed:
        reply_result(head, b"")
    assert failed.value.secrets_read == ("alpha",)
    assert reply_result({"ok": True, "secrets_read": ["beta"]}, b"1").secrets_read == ("beta",)
