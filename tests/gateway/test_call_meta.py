"""The call's context, as sent to the sandbox: the JSON of its fields, whatever they hold."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from donjon.gateway.invoke import _meta


def _deployed(name: str) -> Any:
    return SimpleNamespace(
        name=name, record=SimpleNamespace(version=7), manifest=SimpleNamespace(memory_mb=128)
    )


@pytest.mark.parametrize(
    ("name", "label", "secrets"),
    [
        ("fn", "key:abc", {}),
        ("fn-2", None, {"api": 'va"l\\ue\n\u00e9\u2028'}),
        ("f", 'jwt:iss:"sub"\u00ff', {"a": "1", "b": "\x00"}),
    ],
)
def test_meta_is_the_json_of_its_fields(
    name: str, label: str | None, secrets: dict[str, str]
) -> None:
    """The meta frame parses to exactly its fields and is what json.dumps would write."""
    principal = None if label is None else SimpleNamespace(label=label)
    raw = _meta(_deployed(name), "0123456789abcdef", principal, secrets, 5.0)  # type: ignore[arg-type]  # a stand-in Deployed
    meta = json.loads(raw)
    assert set(meta) == {
        "request_id", "function", "version", "memory_mb", "deadline", "principal", "secrets"
    }  # fmt: skip
    expected = {
        "request_id": "0123456789abcdef",
        "function": name,
        "version": 7,
        "memory_mb": 128,
        "deadline": meta["deadline"],
        "principal": label,
        "secrets": secrets,
    }
    assert meta == expected
    assert raw == json.dumps(expected).encode()
