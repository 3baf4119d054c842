"""Redaction of granted secret values from what a function printed."""

from __future__ import annotations

import json

from donjon.vault.redact import MAX_TRIES, PIECE, Redactor


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


def test_a_piece_a_cut_left_at_an_edge_is_replaced() -> None:
    """A value's first part ending a text, or its rest beginning one (after a cap's note),
    is replaced; a piece shorter than PIECE, or inside the text, is not a cut's and stays."""
    value = "DJcut-0123456789abcdef"
    redact = Redactor({"api": value})
    assert redact("error: " + value[:10]) == "error: [secret:api]"
    assert redact(value[9:] + "\ntrace") == "[secret:api]\ntrace"
    dropped = "[70000 earlier bytes dropped]\n"
    assert redact(dropped + value[4:] + " end") == dropped + "[secret:api] end"
    assert redact("x " + value[: PIECE - 1]) == "x " + value[: PIECE - 1]
    assert redact(value[1 - PIECE :] + " y") == value[1 - PIECE :] + " y"
    assert redact("a " + value[:10] + " b") == "a " + value[:10] + " b"


def test_unescaped_json_and_bytes_forms_are_replaced() -> None:
    """JSON with ensure_ascii=False and the repr of the value's UTF-8 bytes are replaced."""
    value = 'Pässw"rd\\tail'
    redact = Redactor({"api": value})
    text = json.dumps({"v": value}, ensure_ascii=False) + " " + str(value.encode())
    assert redact(text) == '{"v": "[secret:api]"} b\'[secret:api]\''


def test_a_value_repeating_itself_near_an_edge_fails_closed() -> None:
    """Past MAX_TRIES places where a piece could start (end), the text from the farthest
    of them to the edge is replaced, instead of trying each one (quadratic)."""
    value = "a" * 100 + "B"
    redact = Redactor({"api": value})
    assert redact("keep " + "a" * (MAX_TRIES + 60) + "c") == "keep [secret:api]"
    backwards = Redactor({"api": value[::-1]})
    assert backwards("c" + "a" * (MAX_TRIES + 60) + " keep") == "[secret:api] keep"
    assert redact("keep " + "a" * 60) == "keep [secret:api]"  # a true piece, found first
