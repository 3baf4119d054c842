"""A Python file's syntax tree, parsed once per scan and indexed in one walk.

The code scanner and the secret scanner both read a Python file's AST. `SourceFile.syntax`
parses it once (a scanned file is at most project.MAX_FILE_BYTES) and keeps it with the
file for the rest of the scan, together with what either scanner looks for, collected in
one breadth-first walk in `ast.walk`'s order (a faster walk of the same nodes): how many
nodes and statements (the analysis budget), the imports, calls, assignments and bare
string statements. Speed only: what each scanner sees is what it saw with its own parse.
"""

from __future__ import annotations

import ast
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from donjon.scan.errors import ScanError

__all__ = ["Assignment", "Syntax", "compile_warnings_ignored", "parse"]

Assignment = ast.Assign | ast.AnnAssign | ast.AugAssign

_WARNINGS_LOCK = threading.Lock()


@contextmanager
def compile_warnings_ignored() -> Iterator[None]:
    """Silence what compiling the scanned code warns about (invalid escapes and the like:
    its business, not ours). The warnings filters are process-wide, so concurrent scans
    take turns here rather than restore each other's filters."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@dataclass(frozen=True, eq=False)
class Syntax:
    """A parsed module and its nodes of interest, each list in `ast.walk`'s order."""

    tree: ast.Module
    nodes: int
    statements: int
    imports: tuple[ast.Import | ast.ImportFrom, ...]
    calls: tuple[ast.Call, ...]
    assignments: tuple[Assignment, ...]
    #: Bare string statements: docstrings and other documentation.
    strings: tuple[ast.Expr, ...]
    #: Strings the source may write in pieces: every `+`, and string literals not
    #: written whole on one line (implicit concatenation, ``("ab"\n "cd")``), documentation
    #: left out. The secret scanner reads them whole (secret_python.joined_literals).
    joined: tuple[ast.BinOp | ast.Constant, ...] = ()

    @classmethod
    def of(cls, tree: ast.Module) -> Syntax:
        """Index `tree` in one walk."""
        imports: list[ast.Import | ast.ImportFrom] = []
        calls: list[ast.Call] = []
        assignments: list[Assignment] = []
        strings: list[ast.Expr] = []
        joined: list[ast.BinOp | ast.Constant] = []
        documentation: set[int] = set()
        statements = 0
        order: list[ast.AST] = [tree]
        for node in order:  # grows as it goes: breadth first, as ast.walk
            for name in node._fields:
                value = getattr(node, name, None)
                if value.__class__ is list:
                    order.extend(item for item in value if isinstance(item, ast.AST))
                elif isinstance(value, ast.AST):
                    order.append(value)
            if isinstance(node, ast.stmt):
                statements += 1
                if isinstance(node, ast.Import | ast.ImportFrom):
                    imports.append(node)
                elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                    assignments.append(node)
                elif (
                    isinstance(node, ast.Expr)
                    and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)
                ):
                    strings.append(node)
                    documentation.add(id(node.value))
            elif isinstance(node, ast.Call):
                calls.append(node)
            elif (node.__class__ is ast.BinOp and isinstance(node.op, ast.Add)) or (
                node.__class__ is ast.Constant
                and _in_pieces(node)
                and id(node) not in documentation
            ):
                joined.append(node)
        return cls(
            tree,
            len(order),
            statements,
            tuple(imports),
            tuple(calls),
            tuple(assignments),
            tuple(strings),
            tuple(joined),
        )


#: Characters below which a string is not worth reading whole again.
_SHORTEST = 8


def _in_pieces(node: ast.Constant) -> bool:
    """Whether a string literal may not be written whole on one line: over several lines,
    or not simply quoted (implicit concatenation, escapes, a prefix; secret_python checks
    which). Short strings hold no credential."""
    if not isinstance(node.value, str) or len(node.value) < _SHORTEST:
        return False
    if node.end_lineno != node.lineno:
        return True
    written = (node.end_col_offset or 0) - node.col_offset  # in UTF-8 bytes
    return written != len(node.value) + 2


def parse(text: str, rel: str) -> Syntax | str:
    """The module's indexed AST, or why it could not be parsed: a syntax error or a NUL
    byte, which no Python imports either. `ScanError` if it is nested deeper than the
    parse reaches: how deep Python compiles is `sys.setrecursionlimit`'s, which the
    bundle's own code may raise before it imports the module, so a module skipped here
    could run unchecked."""
    try:
        with compile_warnings_ignored():
            tree = ast.parse(text, filename=rel)
    except SyntaxError as e:
        return f"{rel}: not valid Python 3 (line {e.lineno}: {e.msg}); code rules skipped"
    except ValueError as e:
        return f"{rel}: could not be parsed ({e}); code rules skipped"
    except RecursionError as e:
        raise ScanError(
            f"{rel}: too deeply nested to analyse",
            hint="simplify the expression or split the module",
        ) from e
    return Syntax.of(tree)
