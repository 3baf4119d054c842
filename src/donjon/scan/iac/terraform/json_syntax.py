"""Terraform's JSON syntax (``*.tf.json``, ``*.tfvars.json``) read into the blocks
`syntax.py` gives for native files, so the module, the resolver and the rules see one
model whichever syntax (or mix of both) a module is written in.

The mapping is Terraform's (https://developer.hashicorp.com/terraform/language/syntax/json):

- the root object's properties are block types; each label is one more level of
  nested object (``resource`` → type → name → body), and at every level the value
  may be an array of such objects instead (repeated blocks, repeated names);
- in a body, a property is an argument, or a nested block when its name is one this
  package reads as a block (`NESTED_BLOCKS`) and its value an object or an array of
  objects (JSON has no schema to tell, so the names the rules look for decide);
- a ``"//"`` property of a body is a comment, ignored;
- an argument's strings are templates: ``"${aws_iam_role.r.arn}"`` is that
  expression, parsed as HCL and resolved as it would be in a ``.tf`` file; numbers,
  booleans, null, arrays and objects are themselves (their strings templates too);
- a variable's ``default`` and every value of a ``.tfvars.json`` file are plain JSON
  values: ``${`` there is text.

Each argument becomes the same `Expr` a ``.tf`` file gives (the JSON value written as
HCL by `json_values.write_hcl` and parsed by python-hcl2, one parse per file when all
parse), with the line of its JSON key. Malformed JSON, JSON nested deeper than
`MAX_DEPTH`, and a block that is not an object are an `IacError` naming the file (a
note of the scan, as a broken ``.tf`` file is); an argument whose template does not
parse is a note and an unknown value, the rest of the file read.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

from lark import Token, Tree

from donjon.scan.iac.interface import IacError
from donjon.scan.iac.terraform.json_values import MAX_DEPTH, JsonObject, decode_json, write_hcl
from donjon.scan.iac.terraform.syntax import (
    Attribute,
    Block,
    Expr,
    HclError,
    parse_values,
    shift_lines,
)

__all__ = ["MAX_DEPTH", "MAX_UNPARSED", "NESTED_BLOCKS", "parse_json_file"]

#: Arguments that do not parse, each unknown, before the file is refused as a whole
#: (each costs one more parse of what is around it).
MAX_UNPARSED = 20

#: Top-level block types and how many labels each takes (others take none).
_LABELS = {"resource": 2, "data": 2, "variable": 1, "output": 1, "module": 1, "provider": 1}

#: Names read as nested blocks inside a body: Terraform's own (``lifecycle``,
#: ``dynamic`` and its ``content``...) and every block the rules of this package look
#: for with `Block.first` or `Block.nested` (tests/scan/iac/test_terraform_json.py keeps
#: this in step with them).
NESTED_BLOCKS = frozenset(
    {
        "lifecycle",
        "provisioner",
        "connection",
        "dynamic",
        "content",
        "precondition",
        "postcondition",
        "validation",
        "access_log_settings",
        "application_stack",
        "apply_server_side_encryption_by_default",
        "auth_settings",
        "auth_settings_v2",
        "build_config",
        "condition",
        "cors",
        "cors_configuration",
        "customer_managed_key",
        "dead_letter_config",
        "destination_config",
        "encryption",
        "environment",
        "event_trigger",
        "identity",
        "inline_policy",
        "lambda_function",
        "logging_config",
        "not_principals",
        "on_failure",
        "password_policy",
        "principals",
        "rule",
        "server_side_encryption_configuration",
        "service_config",
        "site_config",
        "statement",
        "tracing_config",
    }
)
#: Nested blocks with a label (``dynamic "statement"``, ``provisioner "local-exec"``).
_NESTED_LABELS = {"dynamic": 1, "provisioner": 1}

#: Where python-hcl2 stopped, in the HCL written for the argument (not the JSON file).
_AT = re.compile(r",? at line \d+,? column \d+\.?")


class _Reader:
    """The blocks of one file; each argument is written as HCL, to be parsed with the
    rest of the file's (`finish`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._unparsed: list[tuple[int, str]] = []
        self._pending: list[tuple[dict[str, Attribute], str, str, int]] = []

    def blocks(self, kind: str, labels_wanted: int, value: Any, line: int) -> Iterator[Block]:
        """The blocks one ``"kind": value`` property holds, with their labels."""
        pending: list[tuple[Any, tuple[str, ...], int]] = [(value, (), line)]  # a stack
        while pending:
            current, labels, at = pending.pop()
            if isinstance(current, list):
                pending += reversed(
                    [
                        (item, labels, item.line if isinstance(item, JsonObject) else at)
                        for item in current
                    ]
                )
            elif not isinstance(current, JsonObject):
                where = f"{self.path}:{at}"
                raise IacError(f"{where}: a {kind} block must be a JSON object or an array")
            elif len(labels) < labels_wanted:
                pending += reversed(
                    [
                        (inner, (*labels, key), key_line)
                        for key, inner, key_line in current.members
                        if key != "//"
                    ]
                )
            else:
                yield self.body(kind, labels, at, current)

    def body(self, kind: str, labels: tuple[str, ...], line: int, value: JsonObject) -> Block:
        attributes: dict[str, Attribute] = {}
        nested: list[Block] = []
        for name, inner, at in value.members:
            if name == "//":
                continue
            if kind != "locals" and name in NESTED_BLOCKS and _is_blocks(inner):
                nested.extend(self.blocks(name, _NESTED_LABELS.get(name, 0), inner, at))
            else:
                template = not (kind == "variable" and name in ("default", "description"))
                self.argument(attributes, name, inner, at, template=template)
        return Block(kind, labels, line, self.path, attributes, tuple(nested))

    @property
    def notes(self) -> tuple[str, ...]:
        """A note for each argument that does not parse, in the file's order."""
        return tuple(f"{note}; value unknown" for _, note in sorted(self._unparsed))

    def argument(
        self, attributes: dict[str, Attribute], name: str, value: Any, line: int, *, template: bool
    ) -> None:
        """``name: value`` in a body: its strings templates when `template`, else text."""
        try:
            hcl = write_hcl(value, line, template=template)
        except HclError as e:
            written = (
                value if isinstance(value, str) else "[...]" if isinstance(value, list) else "{...}"
            )
            self._unknown((attributes, name, written, line), e.message)
            return
        self._pending.append((attributes, name, hcl, line))

    def finish(self) -> None:
        """Parse the arguments' HCL, as few times as their errors make needed: all at
        once; when that fails, the argument the parser stopped in is unknown (a note), and
        the arguments before and after it are parsed again the same way. Each value must
        span exactly its argument's HCL: one that reads into its neighbours (HCL that
        python-hcl2 splits where Terraform would not) is narrowed down by halves."""
        ranges = [(0, len(self._pending))]
        while ranges:
            low, high = ranges.pop()
            if low >= high:
                continue
            texts = [f"a = {hcl}\n" for _, _, hcl, _ in self._pending[low:high]]
            starts, spans, line, offset = [], [], 1, 0
            for text in texts:
                starts.append(line)
                spans.append((offset + 4, offset + len(text) - 1))
                line, offset = line + text.count("\n"), offset + len(text)
            try:
                values = parse_values("".join(texts), self.path)
            except HclError as e:
                bad = low + max(bisect_right(starts, e.line) - 1, 0)
                self._unknown(self._pending[bad], _AT.sub("", e.message.split(" (", 1)[-1])[:-1])
                ranges += [(low, bad), (bad + 1, high)]
                continue
            if [(v.tree.meta.start_pos, v.tree.meta.end_pos) for v in values] != spans:
                if high - low == 1:
                    self._unknown(self._pending[low], "not one expression")
                else:
                    ranges += [(low, (low + high) // 2), ((low + high) // 2, high)]
                continue
            for index, expr, written in zip(range(low, high), values, starts, strict=True):
                attributes, name, _, line = self._pending[index]
                shift_lines(expr.tree, line - written)
                attributes[name] = Attribute(name, expr, line)

    def _unknown(self, argument: tuple[dict[str, Attribute], str, str, int], why: str) -> None:
        """An argument that does not parse: a note, and its value is unknown (an
        expression the evaluator leaves unresolved, with the template as written)."""
        if len(self._unparsed) >= MAX_UNPARSED:
            raise IacError(f"{self.path}: more than {MAX_UNPARSED} templates do not parse")
        attributes, name, hcl, line = argument
        self._unparsed.append((line, f"{self.path}:{line}: {name} does not parse ({why})"))
        written = hcl[:200]
        tree: Tree[Token] = Tree("unparsed_template", [])
        meta = tree.meta
        meta.empty, meta.line, meta.end_line, meta.column, meta.end_column = False, line, line, 1, 1
        meta.start_pos, meta.end_pos = 0, len(written)
        attributes[name] = Attribute(name, Expr(tree, written), line)


def _is_blocks(value: Any) -> bool:
    return isinstance(value, JsonObject) or (
        isinstance(value, list) and all(isinstance(v, JsonObject) for v in value)
    )


def parse_json_file(path: str, text: str) -> tuple[tuple[Block, ...], tuple[str, ...]]:
    """The top-level blocks of a ``.tf.json`` file (a ``.tfvars.json`` file is one body
    of plain values, returned as a block of type ``tfvars``, as `parse_file` does), and
    a note for each argument that does not parse (its value unknown)."""
    root = decode_json(path, text)
    reader = _Reader(path)
    blocks: list[Block] = []
    if path.endswith(".tfvars.json"):
        attributes: dict[str, Attribute] = {}
        for name, value, line in root.members:
            if name != "//":
                reader.argument(attributes, name, value, line, template=False)
        blocks.append(Block("tfvars", (), 1, path, attributes, ()))
    else:
        for kind, value, line in root.members:
            if kind != "//":
                blocks.extend(reader.blocks(kind, _LABELS.get(kind, 0), value, line))
    reader.finish()
    return tuple(blocks), reader.notes
