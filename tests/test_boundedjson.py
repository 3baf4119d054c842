"""JSON from outside: nesting is bounded before json.loads recurses."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from donjon.boundedjson import MAX_DEPTH, JSONTooDeep, loads

DEEP = 100_000


@pytest.mark.parametrize(
    "text",
    [
        "[" * DEEP + "]" * DEEP,
        '{"a":' * DEEP + "1" + "}" * DEEP,
        "[" * DEEP,  # unterminated: json would still recurse all the way down
        "[" * DEEP + '"unterminated',
        '[{"a": [' * (MAX_DEPTH // 3 + 1) + "]}]" * (MAX_DEPTH // 3 + 1),
    ],
)
def test_too_deep_is_refused_before_parsing(text: str) -> None:
    """Deep arrays and objects, closed or not, raise JSONTooDeep, never RecursionError."""
    with pytest.raises(JSONTooDeep):
        loads(text)
    with pytest.raises(JSONTooDeep):
        loads(text.encode())


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16", "utf-32", "utf-8-sig"])
def test_other_encodings_cannot_hide_brackets(encoding: str) -> None:
    """U+2200 is the bytes 00 22 in UTF-16: a quote to a byte scanner, not to this one."""
    text = '["\u2200\u2222",' + "[" * DEEP + "]" * DEEP + "]"
    with pytest.raises(JSONTooDeep):
        loads(text.encode(encoding))


@pytest.mark.parametrize(
    "value",
    [
        {"s": "[" * DEEP + '\\"{' + "{" * 500},
        {"s": '"[[[[', "t": "\\", "u": "]]]]"},
        [1, [2, [3]], {"a": [4, {"b": None}]}],
        "plain",
        [[]] * 10_000,
    ],
)
def test_shallow_values_parse_as_json_does(value: object) -> None:
    """Brackets in strings and many shallow brackets are fine, with json.loads' result."""
    text = json.dumps(value)
    assert loads(text) == json.loads(text)
    assert loads(text.encode("utf-16")) == value


def test_the_limit_itself_is_accepted() -> None:
    """MAX_DEPTH levels parse; one more does not."""
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(JSONTooDeep):
        loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


@pytest.mark.parametrize("text", ["{nope", "", '"\\', "[1,]", "\xff"])
def test_malformed_json_raises_value_error(text: str) -> None:
    """Malformed input raises ValueError, as json.loads does."""
    with pytest.raises(ValueError):  # noqa: PT011 - json's own errors vary by input
        loads(text)


@pytest.mark.parametrize(
    "data",
    [
        b'\xef\xbb\xbf{"a": 1}',
        b'\xef\xbb\xbf\xef\xbb\xbf{"a": 1}',
        '\ufeff{"a": 1}'.encode("utf-16"),
        '\ufeff{"a": 1}'.encode("utf-32"),
    ],
)
def test_byte_order_marks_are_taken_as_json_loads_takes_them(data: bytes) -> None:
    """One byte order mark is dropped, as json.loads(bytes) drops it; a second one (which
    json.loads, and so a function's runtime, refuses) is refused too."""
    try:
        expected = json.loads(data)
    except json.JSONDecodeError as e:
        with pytest.raises(json.JSONDecodeError, match=e.msg):
            loads(data)
    else:
        assert loads(data) == expected


@pytest.mark.parametrize(
    "text", ['{"a": NaN}', "[Infinity]", "-Infinity", "1e999", '{"a": [-1E400]}']
)
def test_finite_refuses_what_json_takes_and_json_has_not(text: str) -> None:
    """NaN, Infinity and a number past a float are refused when `finite` (the events an
    input_schema checks: NaN passes every numeric bound), taken otherwise as json does."""
    with pytest.raises(ValueError, match=r"JSON number|out of range"):
        loads(text, finite=True)
    with pytest.raises(ValueError, match=r"JSON number|out of range"):
        loads(text.encode(), finite=True)
    assert json.dumps(loads(text)) == json.dumps(json.loads(text))


def test_finite_takes_large_and_precise_numbers() -> None:
    """Numbers a float holds, and integers of any size json takes, are read as json reads them."""
    text = "[1e308, -1.5e-320, 0.1, 12345678901234567890123456789, 1E2]"
    assert loads(text, finite=True) == json.loads(text)


def _outcome(parse: Callable[[bytes], object], data: bytes) -> object:
    try:
        return ("value", json.dumps(parse(data)))
    except ValueError as e:
        return (type(e), str(e))


def test_bytes_read_as_json_loads_reads_them_whatever_their_first_two_bytes() -> None:
    """`loads` takes bytes that start with an ASCII byte and no NUL straight as UTF-8 (what
    `json.detect_encoding` answers for them); every first two bytes, before tails that read
    differently in UTF-8, UTF-16 and UTF-32, give what `json.loads` gives."""
    tails = [b"", b"1", "2".encode("utf-16-le"), "2".encode("utf-16-be"), b' , "x"]']
    for first in range(256):
        for second in range(256):
            for tail in tails:
                data = bytes((first, second)) + tail
                assert _outcome(loads, data) == _outcome(json.loads, data), data
