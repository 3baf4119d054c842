"""Entry points: which functions receive caller data, and in which parameters.

The manifest's handler, any ``def f(event, context)``, web routes (``@app.route``,
``@app.get``...; ``@mock.patch`` is no PATCH route) and functions with a parameter
annotated as an HTTP request (``req: func.HttpRequest``). A handler's, an event
function's first parameter and every parameter of a route carry caller data; of a
typed function, the annotated parameters.
"""

from __future__ import annotations

import ast

from donjon.scan.python.frames import FunctionInfo
from donjon.scan.python.values import Step, Value

__all__ = ["entry_arguments", "entry_kind", "parameters"]

_ROUTE_DECORATORS = frozenset(
    {
        "route",
        "get",
        "post",
        "put",
        "patch",
        "delete",
        "head",
        "options",
        "api_route",
        "websocket",
        "view",
    }
)
_REQUEST_TYPES = frozenset({"HttpRequest", "Request", "APIGatewayProxyEvent", "WebSocket"})
_MOCK_MODULES = frozenset({"mock", "unittest.mock"})


def entry_kind(node: ast.FunctionDef | ast.AsyncFunctionDef, handlers: frozenset[str]) -> str:
    """Why `node`'s parameters carry caller data: "handler", "event", "route", "typed", or
    "" when it is no entry point."""
    params = [a.arg for a in node.args.posonlyargs + node.args.args]
    if params[:1] in (["self"], ["cls"]):
        params = params[1:]
    if node.name in handlers:
        return "handler"
    if params[:2] == ["event", "context"]:
        return "event"
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if (
            isinstance(target, ast.Attribute)
            and target.attr in _ROUTE_DECORATORS
            and ast.unparse(target.value) not in _MOCK_MODULES  # @mock.patch is no PATCH route
        ):
            return "route"
    if any(_is_request_typed(arg) for arg in node.args.args):
        return "typed"
    return ""


def _is_request_typed(arg: ast.arg) -> bool:
    """A parameter annotated as an HTTP request (``req: func.HttpRequest``)."""
    ann = arg.annotation
    name = ann.attr if isinstance(ann, ast.Attribute) else getattr(ann, "id", None)
    return name in _REQUEST_TYPES


def parameters(info: FunctionInfo) -> list[str]:
    """The positional parameters of `info`, without a method's ``self`` or ``cls``."""
    args = info.node.args
    names = [a.arg for a in args.posonlyargs + args.args]
    if info.class_name and names and names[0] in ("self", "cls"):
        names = names[1:]
    return names


def entry_arguments(info: FunctionInfo) -> dict[str, Value]:
    """The labelled values an entry point's parameters start with."""
    typed = {a.arg for a in info.node.args.args if _is_request_typed(a)}
    values: dict[str, Value] = {}
    line, col = info.node.lineno, info.node.col_offset + 1
    for i, name in enumerate(parameters(info)):
        if info.entry == "typed":
            tainted = name in typed
        else:
            tainted = info.entry == "route" or (i == 0 and info.entry != "")
        if tainted:
            note = f"'{name}' of {info.node.name}(): data from the caller ({info.entry})"
            values[name] = Value(taint=(Step(line, col, note),))
    return values
