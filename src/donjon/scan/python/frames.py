"""What the analysis knows of the function it is in: `FunctionInfo` and `Frame`."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from donjon.scan.python.values import Env, Value

__all__ = ["Frame", "FunctionInfo"]


@dataclass(eq=False)
class FunctionInfo:
    """A function or method of the module being analysed."""

    node: ast.FunctionDef | ast.AsyncFunctionDef
    qualname: str
    class_name: str | None = None
    closure: Env | None = None
    #: Why its parameters carry event data: "handler", "route", "event" or "".
    entry: str = ""
    calls: int = 0


@dataclass(eq=False)
class Frame:
    """The function being interpreted, in one calling context."""

    info: FunctionInfo | None
    params: frozenset[str] = frozenset()
    returns: list[Value] = field(default_factory=list)
    local_functions: dict[str, FunctionInfo] = field(default_factory=dict)
    depth: int = 0

    @property
    def name(self) -> str:
        return self.info.node.name if self.info else "<module>"
