"""JSON as Terraform's JSON syntax needs it: decoded with the line of every object and
key (`decode_json`), and a value written back as the HCL expression it stands for
(`write_hcl`), to be parsed by python-hcl2 into the tree a ``.tf`` file gives.

`decode_json` measures the nesting first (`donjon.boundedjson.check_depth`: linear, no
recursion) and refuses more than `MAX_DEPTH` levels before the decoder recurses; it
refuses NaN, Infinity and numbers no float holds, as JSON does. An object is a
`JsonObject`: its members in order, a repeated key kept (Terraform's block types may
repeat).

`write_hcl` writes a string as an HCL quoted string: a template (its ``${...}`` and
``%{...}`` as HCL, the rest as text, ``$${`` and ``%%{`` as the text ``${`` and
``%{``), or text throughout (a variable's default, a ``.tfvars.json`` value). Each
object is written from the line of its ``{`` and each key on its own line (line breaks
inside an HCL object or tuple mean nothing), so a key inside a value keeps its line.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from json.decoder import scanstring  # type: ignore[attr-defined]  # not in typeshed
from json.scanner import py_make_scanner  # type: ignore[attr-defined]  # not in typeshed
from typing import Any

from donjon.boundedjson import JSONTooDeep, check_depth, finite_float, refuse_constant
from donjon.scan.iac.interface import IacError
from donjon.scan.iac.terraform.syntax import HclError

__all__ = ["MAX_DEPTH", "JsonObject", "decode_json", "write_hcl"]

#: Levels of JSON arrays and objects read (generated modules nest a dozen or so).
MAX_DEPTH = 64

_SPACE = re.compile(r"[ \t\n\r]*")
#: What a quoted HCL string writes escaped: backslash, quote, control characters.
_ESCAPES = {c: f"\\u{c:04x}" for c in range(0x20)} | {
    ord("\\"): "\\\\",
    ord('"'): '\\"',
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
}
_TEMPLATE_MARK = re.compile(r"\$\$\{|%%\{|\$\{|%\{")


class JsonObject:
    """A JSON object as written: its members in order (a key may repeat, as block types
    do), each with the line of its key, and the line of its ``{``."""

    __slots__ = ("line", "members")

    def __init__(self, line: int, members: list[tuple[str, Any, int]]) -> None:
        self.line = line
        self.members = members


class _Decoder(json.JSONDecoder):
    """`json.JSONDecoder` (pure-Python scanner) whose objects are `JsonObject`s."""

    def __init__(self, text: str) -> None:
        super().__init__(parse_constant=refuse_constant, parse_float=finite_float)
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        self.parse_object = self._object
        self.scan_once = py_make_scanner(self)

    def _line(self, offset: int) -> int:
        return bisect_left(self._newlines, offset) + 1

    def _object(
        self, s_and_end: tuple[str, int], strict: bool, scan_once: Any, *_: object
    ) -> tuple[JsonObject, int]:
        text, end = s_and_end
        found = JsonObject(self._line(end - 1), [])
        end = _skip(text, end)
        if text[end : end + 1] == "}":
            return found, end + 1
        while True:
            if text[end : end + 1] != '"':
                raise json.JSONDecodeError("Expecting property name in double quotes", text, end)
            line = self._line(end)
            key, end = scanstring(text, end + 1, strict)
            end = _skip(text, end)
            if text[end : end + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, end)
            end = _skip(text, end + 1)
            try:
                value, end = scan_once(text, end)
            except StopIteration as e:
                raise json.JSONDecodeError("Expecting value", text, e.value) from None
            found.members.append((key, value, line))
            end = _skip(text, end)
            char, end = text[end : end + 1], end + 1
            if char == "}":
                return found, end
            if char != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, end - 1)
            end = _skip(text, end)


def _skip(text: str, end: int) -> int:
    """The offset of the first character at or after `end` that is not JSON whitespace."""
    space = _SPACE.match(text, end)
    return space.end() if space else end


def decode_json(path: str, text: str) -> JsonObject:
    """The root object of a JSON file; `IacError` naming the file (and line) when it is
    not JSON, is nested too deep or its root is not an object."""
    text = text.removeprefix("\ufeff")
    try:
        check_depth(text.encode("utf-8", "surrogatepass"), MAX_DEPTH)
        root = _Decoder(text).decode(text)
    except JSONTooDeep as e:
        raise IacError(f"{path}: not read, JSON nested deeper than {MAX_DEPTH} levels") from e
    except json.JSONDecodeError as e:
        raise IacError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    except ValueError as e:
        raise IacError(f"{path}: not valid JSON ({str(e)[:200]})") from e
    if not isinstance(root, JsonObject):
        raise IacError(f"{path}: not a Terraform JSON file (its root is not an object)")
    return root


def _interpolation_end(text: str, start: int) -> int | None:
    """The end of the ``${...}`` or ``%{...}`` whose expression starts at `start`: after
    its closing brace, past the braces of objects and of the quoted templates (and their
    own interpolations) inside it; None when it is not closed."""
    stack: list[int | None] = [0]  # an expression's open braces, or None: a quoted string
    i = start
    while i < len(text):
        char, top = text[i], stack[-1]
        if top is None:
            if char == "\\":
                i += 1
            elif char == '"':
                stack.pop()
            elif text.startswith(("$${", "%%{"), i):
                i += 2
            elif text.startswith(("${", "%{"), i):
                stack.append(0)
                i += 1
        elif char == '"':
            stack.append(None)
        elif char == "{":
            stack[-1] = top + 1
        elif char == "}" and top:
            stack[-1] = top - 1
        elif char == "}":
            stack.pop()
            if not stack:
                return i + 1
        i += 1
    return None


def _escape(text: str) -> str:
    """`text` as the characters of an HCL quoted string, all of it text (``${`` and
    ``%{`` written so that HCL does not read them as a template)."""
    return text.translate(_ESCAPES).replace("${", "\\u0024{").replace("%{", "\\u0025{")


def _quoted(text: str, *, template: bool) -> str:
    """`text` as an HCL quoted string: a template (its ``${...}`` and ``%{...}`` kept as
    HCL, ``$${`` and ``%%{`` as text) or, when not `template`, text throughout."""
    if not template:
        return f'"{_escape(text)}"'
    out, done = ['"'], 0
    for mark in _TEMPLATE_MARK.finditer(text):
        if mark.start() < done:
            continue  # inside an interpolation already written
        out.append(_escape(text[done : mark.start()]))
        if len(mark.group()) == 3:  # $${ or %%{: the text ${ or %{
            out.append(_escape(mark.group()[1:]))
            done = mark.end()
            continue
        end = _interpolation_end(text, mark.end())
        if end is None:  # written as is, it would run into the next argument's HCL
            raise HclError(f"{mark.group()} not closed")
        # Spaces and line breaks around the expression mean nothing (Terraform reads the
        # string as a bare template); python-hcl2 refuses a line break there.
        out.append(f"{mark.group()}{text[mark.end() : end - 1].strip()}}}")
        done = end
    out.append(_escape(text[done:]) + '"')
    return "".join(out)


def write_hcl(value: Any, line: int, *, template: bool) -> str:
    """A JSON value written as an HCL expression that starts on `line`, each object and
    key on its line in the JSON file; `HclError` when a template's ``${`` is not closed."""
    out: list[str] = []

    def put(text: str) -> None:
        nonlocal line
        out.append(text)
        line += text.count("\n")

    def reach(wanted: int) -> None:
        if wanted > line:
            put("\n" * (wanted - line))

    def write(value: Any) -> None:
        if isinstance(value, JsonObject):
            put("{")
            for index, (key, inner, at) in enumerate(value.members):
                put(", " if index else "")
                reach(at)
                put(f"{_quoted(key, template=template)} = ")
                write(inner)
            put("}")
        elif isinstance(value, list):
            put("[")
            for index, item in enumerate(value):
                put(", " if index else "")
                if isinstance(item, JsonObject):
                    reach(item.line)
                write(item)
            put("]")
        elif isinstance(value, str):
            put(_quoted(value, template=template))
        elif value is None or isinstance(value, bool):
            put({None: "null", True: "true", False: "false"}[value])
        else:
            put(repr(value))  # int or float (never NaN or infinite: refused when decoded)

    write(value)
    return "".join(out)
