"""Redaction of granted secret values from what a function printed."""

from __future__ import annotations

import json
from typing import SupportsIndex
from urllib.parse import quote, quote_plus, urlencode

import pytest

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


def test_percent_encoded_forms_are_replaced() -> None:
    """The value in a URL's path, as one of its parts, and in a query or form
    (`urlencode`), non-ASCII as UTF-8, is replaced; a value they leave as it is, as itself."""
    value = "Pä+s/s=w&rd x"
    redact = Redactor({"api": value, "plain": "abc-123_XYZ"})
    url = "/" + quote(value) + "/" + quote(value, safe="") + "?" + urlencode({"k": value})
    assert redact(url) == "/[secret:api]/[secret:api]?k=[secret:api]"
    assert redact("?k=abc-123_XYZ") == "?k=[secret:plain]"
    for odd in ("%41~\x00/", "\U0001f600 +", "a\ud800b"):  # as urllib encodes each
        data = odd.encode("utf-8", "surrogatepass")
        for form in (quote(data), quote(data, safe=""), quote_plus(data)):
            assert Redactor({"odd": odd})(form) == "[secret:odd]", (odd, form)


def test_a_value_repeating_itself_near_an_edge_fails_closed() -> None:
    """Past MAX_TRIES places where a piece could start (end), the text from the farthest
    of them to the edge is replaced, instead of trying each one (quadratic)."""
    value = "a" * 100 + "B"
    redact = Redactor({"api": value})
    assert redact("keep " + "a" * (MAX_TRIES + 60) + "c") == "keep [secret:api]"
    backwards = Redactor({"api": value[::-1]})
    assert backwards("c" + "a" * (MAX_TRIES + 60) + " keep") == "[secret:api] keep"
    assert redact("keep " + "a" * 60) == "keep [secret:api]"  # a true piece, found first


class _Tried(str):
    """A value's form that counts the places the search compares it at."""

    tries = 0

    def startswith(self, prefix: str | tuple[str, ...], *bounds: SupportsIndex | None) -> bool:
        _Tried.tries += 1
        return super().startswith(prefix, *bounds)

    def endswith(self, suffix: str | tuple[str, ...], *bounds: SupportsIndex | None) -> bool:
        _Tried.tries += 1
        return super().endswith(suffix, *bounds)


@pytest.mark.parametrize("edge", ["end", "start"])
def test_the_search_for_a_cut_piece_is_bounded_whatever_the_value(edge: str) -> None:
    """A 64 KiB value repeating one letter, and 64 KiB of that letter printed: the search
    for a piece of it cut at an edge compares at most MAX_TRIES places per form and edge.
    Before, every place the piece's first (last) characters occur: about 65,000 copies and
    compares of up to 64 KiB a call, on the node's event loop (a function granted 30 such
    secrets stalled every tenant's requests about 3 s a call)."""
    size = 64 * 1024
    value = "a" * (size - 1) + "B" if edge == "end" else "B" + "a" * (size - 1)
    redact = Redactor({"s": value})
    redact._edges = [(_Tried(f), mark, head, tail) for f, mark, head, tail in redact._edges]
    _Tried.tries = 0
    printed = "a" * (size - 2) + "c" if edge == "end" else "c" + "a" * (size - 2)
    out = redact(printed)
    assert "[secret:s]" in out  # fail closed: the run that could be a piece is taken out
    assert _Tried.tries <= MAX_TRIES * len(redact._edges), _Tried.tries
