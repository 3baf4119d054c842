"""Terraform files as blocks and attributes, each with its line.

python-hcl2 parses (`hcl2.parses_to_tree`: the Lark tree of its ``hcl2.lark``
grammar, positions kept); this module keeps the structure Terraform gives it (a
block's type, labels, attributes and nested blocks) and leaves every expression as
its parse tree, to be evaluated later against the module's variables, locals and
resources (`evaluate.py`). python-hcl2's dict serialisation is not used: it drops the
lines (its ``with_meta`` option is declared but not implemented in 8.1) and renders
nested expressions as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedInput

from donjon.scan.iac.interface import IacError

__all__ = [
    "Attribute",
    "Block",
    "Expr",
    "HclError",
    "parse_expression",
    "parse_file",
    "parse_values",
    "shift_lines",
    "string_value",
]


@dataclass(frozen=True)
class Expr:
    """One expression: its parse tree and the text it was parsed from."""

    tree: Tree[Token]
    source: str

    @property
    def line(self) -> int:
        return line_of(self.tree)

    def written(self, node: Tree[Token] | None = None) -> str:
        """The expression (or one of its sub-trees) as written."""
        node = self.tree if node is None else node
        meta = node.meta
        if meta.empty:
            return ""
        return " ".join(self.source[meta.start_pos : meta.end_pos].split())

    def sub(self, node: Tree[Token]) -> Expr:
        return Expr(node, self.source)


@dataclass(frozen=True)
class Attribute:
    name: str
    expr: Expr
    line: int


@dataclass(frozen=True)
class Block:
    """A block (``resource "aws_s3_bucket" "b" {...}``, ``statement {...}``) and what it
    holds, in the file `path`."""

    type: str
    labels: tuple[str, ...]
    line: int
    path: str
    attributes: dict[str, Attribute] = field(default_factory=dict)
    blocks: tuple[Block, ...] = ()

    def nested(self, kind: str) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.type == kind)

    def first(self, kind: str) -> Block | None:
        found = self.nested(kind)
        return found[0] if found else None


def shift_lines(tree: Tree[Token], by: int) -> None:
    """Move a parsed expression's lines by `by` (to where it stands in the module: the
    line of a JSON key, the argument an override replaces)."""
    if by == 0:
        return
    for node in tree.iter_subtrees():
        if not node.meta.empty:
            node.meta.line += by
            node.meta.end_line += by
        for child in node.children:
            if isinstance(child, Token) and child.line is not None:
                child.line += by
                if child.end_line is not None:
                    child.end_line += by


def line_of(node: Tree[Token] | Token) -> int:
    if isinstance(node, Token):
        return node.line or 0
    return 0 if node.meta.empty else node.meta.line


def _trees(node: Tree[Token]) -> list[Tree[Token]]:
    return [c for c in node.children if isinstance(c, Tree)]


def _name(node: Tree[Token]) -> str:
    """An identifier, keyword or literal used as a name or a label."""
    if node.data == "string":
        return string_value(node) or ""
    for token in node.scan_values(lambda v: isinstance(v, Token)):
        return str(token)
    return ""


def string_value(node: Tree[Token]) -> str | None:
    """A quoted string without interpolation (a label, a key), or None."""
    parts: list[str] = []
    for part in _trees(node):
        token = part.children[0] if part.children else None
        if not isinstance(token, Token) or token.type != "STRING_CHARS":
            return None
        parts.append(unescape(str(token)))
    return "".join(parts)


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def unescape(text: str) -> str:
    """HCL's escapes in a quoted string (``\\n``, ``\\"``, ``\\uNNNN``)."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if char == "\\" and nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif char == "\\" and nxt in "uU":
            width = 4 if nxt == "u" else 8
            digits = text[i + 2 : i + 2 + width]
            try:
                out.append(chr(int(digits, 16)))
                i += 2 + width
            except ValueError:
                out.append(char)
                i += 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _body(node: Tree[Token], source: str, path: str) -> tuple[dict[str, Attribute], list[Block]]:
    attributes: dict[str, Attribute] = {}
    blocks: list[Block] = []
    for item in _trees(node):
        if item.data == "attribute":
            name_node, value = _trees(item)[0], _trees(item)[-1]
            name = _name(name_node)
            attributes[name] = Attribute(name, Expr(value, source), line_of(item))
        elif item.data == "block":
            blocks.append(_block(item, source, path))
    return attributes, blocks


def _block(node: Tree[Token], source: str, path: str) -> Block:
    parts = _trees(node)
    body = parts[-1]
    names = [_name(p) for p in parts[:-1] if p.data != "new_line_or_comment"]
    attributes, blocks = _body(body, source, path)
    return Block(names[0], tuple(names[1:]), line_of(node), path, attributes, tuple(blocks))


class HclError(IacError):
    """Text that does not parse as HCL; `line` is where the parser stopped (0: not known)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


def _parse(text: str, what: str) -> Tree[Token]:
    import hcl2

    try:
        return hcl2.parses_to_tree(text)
    except (LarkError, RuntimeError, ValueError, IndexError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        line = getattr(e, "line", 0) if isinstance(e, UnexpectedInput) else 0
        line = line if isinstance(line, int) and line > 0 else 0  # Lark may give "?" or -1
        raise HclError(f"{what}: not valid HCL ({first[:200]})", line) from e


def parse_file(path: str, text: str) -> tuple[Block, ...]:
    """The top-level blocks of a ``.tf`` file; a ``.tfvars`` file is one body of
    attributes, returned as a block of type ``tfvars``."""
    tree = _parse(text, path)
    body = _trees(tree)[0]
    try:
        attributes, blocks = _body(body, text, path)
    except RecursionError as e:
        raise IacError(f"{path}: blocks nested too deeply to read") from e
    if path.endswith(".tfvars"):
        return (Block("tfvars", (), 1, path, attributes, ()),)
    return tuple(blocks)


def parse_values(text: str, what: str) -> list[Expr]:
    """The expressions of a body of ``name = expression`` lines, in order (how
    `json_syntax.py` writes a JSON file's arguments, to parse them at once); `HclError`
    when it does not parse."""
    tree = _parse(text, what)
    items = _trees(_trees(tree)[0])
    return [Expr(_trees(item)[-1], text) for item in items if item.data == "attribute"]


def parse_expression(text: str) -> Expr:
    """One expression written inside a heredoc's ``${...}``."""
    source = f"x = {text}\n"
    tree = _parse(source, "interpolation")
    attribute = _trees(_trees(tree)[0])[0]
    return Expr(_trees(attribute)[-1], source)
