"""Redaction of granted secret values from what a function printed."""

from __future__ import annotations

from donjon.vault.redact import Redactor


def test_values_and_their_escaped_forms_are_replaced() -> None:
    """The value, its repr and its JSON form become [secret:NAME]; other text stays."""
    redact = Redactor({"api": 'k"e\\y-123', "short": "k"})
    text = 'raw k"e\\y-123 json "k\\"e\\\\y-123" repr \'k"e\\\\y-123\''
    out = redact(text)
    assert "e\\y-123" not in out and "y-123" not in out
    assert out.count("[secret:api]") == 3


def test_nothing_granted_changes_nothing() -> None:
    """With no secrets the text is returned as it was."""
    assert Redactor({})("hello") == "hello" and not Redactor({})
