"""The runtime's JSON through `_json` (runtime/jsonwire.py), and what the supervisor's
import leaves out (json, signal, contextlib: each costs every sandbox start)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.sandbox.host import RUNTIME_SOURCE
from donjon.sandbox.runtime import jsonwire

VALUES: list[Any] = [
    {},
    [],
    "",
    "plain",
    'quote " backslash \\ control \x01 tab \t',
    "é ü ∑ \U0001f600 \ud800",
    0,
    -17,
    2**70,
    1.5,
    -0.0,
    1e300,
    True,
    False,
    None,
    {"a": [1, 2.5, None, True, {"b": {"c": []}}], "é": "x"},
    {1: "int key", 2.5: "float key", None: "null key", False: "bool key"},
    [[[[[]]]]],
]
#: What json (and jsonwire) say of a document they refuse.
_REFUSED = "Expecting|Extra data|can't decode"


@pytest.mark.parametrize("value", VALUES)
def test_dumps_writes_what_json_dumps_writes(value: Any) -> None:
    """Default and compact separators give json.dumps's text, byte for byte."""
    assert jsonwire.dumps(value) == json.dumps(value)
    assert jsonwire.dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize("value", VALUES)
def test_loads_reads_what_json_loads_reads(value: Any) -> None:
    """Bytes or text, with surrounding whitespace, read back as json.loads reads them."""
    text = " \n\t" + json.dumps(value) + "\r\n "
    assert jsonwire.loads(text.encode("utf-8", "surrogatepass")) == json.loads(text)
    assert jsonwire.loads(text) == json.loads(text)


ENCODINGS = ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_loads_reads_the_encodings_json_loads_reads(encoding: str) -> None:
    """JSON bytes with a byte order mark, or in UTF-16/32 without one, read as json reads
    them (the gateway reads a request body as json does, and may pass it on as it came)."""
    values: list[Any] = [{"a": ["é", 1]}, [], 7, "x"]
    for value in values:
        data = json.dumps(value).encode(encoding)
        assert jsonwire.loads(data) == json.loads(data) == value


def test_loads_refuses_a_text_byte_order_mark_as_json_does() -> None:
    """A str that starts with U+FEFF is refused by both (bytes with one are read)."""
    with pytest.raises(ValueError, match="BOM"):
        json.loads("\ufeff{}")
    with pytest.raises(ValueError, match="BOM"):
        jsonwire.loads("\ufeff{}")


def test_loads_reads_json_constants() -> None:
    """NaN and the infinities come back as floats, as json.loads gives them."""
    values = jsonwire.loads(b"[NaN, Infinity, -Infinity]")
    assert values[0] != values[0]
    assert values[1:] == [float("inf"), float("-inf")]


@pytest.mark.parametrize(
    "bad", [b"", b"   ", b"{", b"[1,]", b"nul", b"{} x", b"[] []", b'{"a" 1}', b"\xff"]
)
def test_loads_refuses_what_is_not_one_json_document(bad: bytes) -> None:
    """Anything json.loads refuses raises ValueError here too."""
    with pytest.raises(ValueError, match=_REFUSED):
        json.loads(bad)
    with pytest.raises(ValueError, match=_REFUSED):
        jsonwire.loads(bad)


def test_dumps_refuses_values_with_no_json_form() -> None:
    """Objects, circular lists, non-JSON keys and (when asked) NaN fail as in json.dumps."""
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        jsonwire.dumps({"a": object()})
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        jsonwire.dumps(loop)
    with pytest.raises(TypeError, match="keys must be"):
        jsonwire.dumps({(1, 2): 3})
    with pytest.raises(ValueError, match="Out of range float"):
        jsonwire.dumps({"a": float("nan")}, compact=True, allow_nan=False)
    assert jsonwire.dumps([float("nan"), float("inf")]) == "[NaN, Infinity]"


def test_dumps_is_usable_again_after_a_failure() -> None:
    """A failed dump (a circular reference) leaves no state behind for the next one."""
    loop: list[Any] = []
    loop.append(loop)
    shared = [1]
    with pytest.raises(ValueError, match="Circular reference"):
        jsonwire.dumps(loop)
    assert jsonwire.dumps([shared, shared]) == "[[1], [1]]"


def _bare_run(code: str) -> str:
    """What `code` prints in an interpreter started as the sandbox starts one (isolated,
    no site), with the runtime's package importable as `runtime`."""
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", code, str(RUNTIME_SOURCE.parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_supervisor_imports_no_json_signal_or_contextlib() -> None:
    """Importing the supervisor as the sandbox does brings neither `json` (six regular
    expressions), `signal` (three enums) nor `contextlib`/`collections`, nor what they
    import (`re`, `enum`): together half of the supervisor's import."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import runtime.supervisor; "
        "print(sorted({'json', 're', 'signal', 'enum', 'contextlib', 'collections'}"
        " & set(sys.modules)))"
    )
    assert _bare_run(code) == "[]"


def test_loads_refuses_bad_documents_where_json_was_never_imported() -> None:
    """In the sandbox `json` is not imported: a malformed or too deeply nested document
    is still a ValueError (the scanner looks json.decoder's error up in sys.modules, and
    without it returned NULL, a SystemError; the nesting a RecursionError), which the
    supervisor's readers of a worker's report catch."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from runtime import jsonwire\n"
        "for bad in (b'{\"op\": \"ready\"', b'{\"a\" 1}', b'[1 2]', b'\"\\\\x\"', b'[' * 60000):\n"
        "    try:\n"
        "        jsonwire.loads(bad)\n"
        "    except ValueError:\n"
        "        continue\n"
        "    raise SystemExit(f'{bad[:20]!r} was read')\n"
        "print(sorted({'json', 'json.decoder'} & set(sys.modules)))"
    )
    assert _bare_run(code) == "[]"


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**4400), max_value=10**4400)  # past int's 4,300 digits
    | st.floats()  # NaN and the infinities too
    | st.text()  # lone surrogates too
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers() | st.floats() | st.none(), inner)
    ),
    max_leaves=20,
)
#: Numbers about int's 4,300 digits (json refuses what int refuses to read).
_LONG_NUMBERS = st.integers(min_value=4290, max_value=4310).map(lambda n: "7" * n)
#: Fragments of JSON, most of them no document at all.
_FRAGMENTS = (
    st.text(alphabet='[]{}",:0123456789.eE+-truefalsnNIaiy \\u\t', max_size=30) | _LONG_NUMBERS
)


def _text_of(value: Any) -> str:
    """json's text of `value`, or "" where json has none (an int past 4,300 digits)."""
    try:
        return json.dumps(value)
    except ValueError:
        return ""


def _outcome(read: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    """What a call gives: its value as JSON text, or the kind of error it raises."""
    try:
        value = read(*args, **kwargs)
    except (TypeError, ValueError) as e:
        return ("error", "TypeError" if isinstance(e, TypeError) else "ValueError")
    return ("value", value if isinstance(value, str) else json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(_VALUES, st.booleans())
@pytest.mark.slow
def test_dumps_agrees_with_json_on_any_value(value: Any, allow_nan: bool) -> None:
    """Any nesting of JSON's types (huge ints, NaN, surrogates, non-string keys): the
    same text, or the same kind of error, as json.dumps, in both separators."""
    assert _outcome(jsonwire.dumps, value, allow_nan=allow_nan) == _outcome(
        json.dumps, value, allow_nan=allow_nan
    )
    assert _outcome(jsonwire.dumps, value, compact=True, allow_nan=allow_nan) == _outcome(
        json.dumps, value, separators=(",", ":"), allow_nan=allow_nan
    )


@settings(max_examples=300, deadline=None)
@given(_FRAGMENTS | _VALUES.map(_text_of).filter(bool), st.sampled_from([*ENCODINGS, "utf-8"]))
@pytest.mark.slow
def test_loads_agrees_with_json_on_any_text(text: str, encoding: str) -> None:
    """Documents and fragments, as text and as bytes in each encoding json detects: the
    same value, or a ValueError where json raises one."""
    assert _outcome(jsonwire.loads, text) == _outcome(json.loads, text)
    data = text.encode(encoding, "surrogatepass")
    assert _outcome(jsonwire.loads, data) == _outcome(json.loads, data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_loads_agrees_with_json_on_any_bytes(data: bytes) -> None:
    """Arbitrary bytes (BOMs, zero bytes, invalid UTF-8): what json.loads reads or refuses."""
    assert _outcome(jsonwire.loads, data) == _outcome(json.loads, data)


def test_a_failed_dump_leaves_no_marker_behind() -> None:
    """A container left half-written by a failure (a value with no JSON form inside it)
    is written whole once fixed: the encoders are kept, their markers are not."""
    nested = [1]
    broken: list[Any] = [nested, object()]
    for compact in (False, True):
        with pytest.raises(TypeError, match="not JSON serializable"):
            jsonwire.dumps(broken, compact=compact)
    broken.pop()
    assert jsonwire.dumps(broken) == "[[1]]"
    assert jsonwire.dumps(broken, compact=True) == "[[1]]"


class _Reentrant(dict[str, Any]):
    """A dict whose items are read by running code that writes JSON itself."""

    def items(self) -> Any:
        self["inner"] = jsonwire.dumps({"x": [1, 2]}, compact=True)
        return super().items()


def test_a_dump_within_a_dump_gets_its_own_encoder() -> None:
    """Function code that runs during an encoding (a dict subclass's items) and encodes
    with the same settings meanwhile: both texts are json's."""
    value = _Reentrant(a=[1])
    text = jsonwire.dumps({"outer": value}, compact=True)
    assert json.loads(text) == {"outer": {"a": [1], "inner": '{"x":[1,2]}'}}
    assert text == json.dumps({"outer": value}, separators=(",", ":"))
