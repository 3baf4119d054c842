"""Where labels come from and where they end: taint sources and sanitizers.

Sources are web-framework request attributes (``request.args``, Chalice's
``app.current_request``) and the calls that format an exception's traceback; the
interpreter adds the parameters of entry points (entries.py). Sanitizers are the calls
whose result carries no injected payload (``int()``, ``shlex.quote()``, ``len()``...), as
functions and as methods; a few attributes of an exception disclose nothing of it.
"""

from __future__ import annotations

import ast

from donjon.scan.python.imports import ImportMap
from donjon.scan.python.values import Step, Value

__all__ = [
    "EXC_SAFE_ATTRS",
    "EXC_SOURCES",
    "METHOD_SANITIZERS",
    "REQUEST_ATTRS",
    "REQUEST_OBJECTS",
    "SANITIZERS",
    "request_source",
]

REQUEST_OBJECTS = frozenset({"flask.request", "quart.request", "bottle.request", "sanic.request"})
REQUEST_ATTRS = frozenset(
    {
        "args",
        "form",
        "values",
        "json",
        "data",
        "files",
        "headers",
        "cookies",
        "get_json",
        "get_data",
        "query_string",
        "GET",
        "POST",
        "body",
        "META",
        "COOKIES",
        "FILES",
        "query_params",
        "path_params",
        "stream",
        "params",
        "text",
        "content",
        "path",
        "url",
        "full_path",
        "environ",
        "query",
    }
)
EXC_SOURCES = frozenset(
    {
        "traceback.format_exc",
        "traceback.format_exception",
        "traceback.format_tb",
        "traceback.format_exception_only",
        "traceback.format_stack",
        "sys.exc_info",
    }
)
EXC_SAFE_ATTRS = frozenset(
    {"__name__", "__class__", "__qualname__", "errno", "code", "status_code", "status"}
)
SANITIZERS = frozenset(
    {
        "int",
        "float",
        "bool",
        "len",
        "abs",
        "round",
        "ord",
        "hash",
        "id",
        "isinstance",
        "issubclass",
        "callable",
        "type",
        "shlex.quote",
        "pipes.quote",
        "uuid.UUID",
        "ipaddress.ip_address",
        "ipaddress.ip_network",
        "decimal.Decimal",
        "math.floor",
        "math.ceil",
        "hmac.compare_digest",
        "secrets.compare_digest",
        "os.path.exists",
        "os.path.isfile",
        "os.path.isdir",
        # Letters, digits, "_", "." and "-" only: safe in a path and anywhere else.
        "werkzeug.utils.secure_filename",
        "werkzeug.secure_filename",
    }
)
METHOD_SANITIZERS = frozenset(
    {
        "isdigit",
        "isnumeric",
        "isdecimal",
        "isalnum",
        "isalpha",
        "isidentifier",
        "startswith",
        "endswith",
        "count",
        "find",
        "rfind",
        "index",
        "rindex",
        "__len__",
        "isupper",
        "islower",
    }
)


def request_source(node: ast.Attribute, imports: ImportMap, params: frozenset[str]) -> Value | None:
    """``request.args`` and friends of a web framework's request object (imported, or a
    parameter named ``request``); Chalice's ``app.current_request``."""
    base = node.value
    if node.attr == "current_request" and isinstance(base, ast.Name):
        step = Step(node.lineno, node.col_offset + 1, "current_request: the HTTP request")
        return Value(taint=(step,))
    if (
        node.attr in REQUEST_ATTRS
        and isinstance(base, ast.Name)
        and base.id == "request"
        and (imports.qualname(base) in REQUEST_OBJECTS or base.id in params)
    ):
        step = Step(
            node.lineno, node.col_offset + 1, f"request.{node.attr}: data from the HTTP request"
        )
        return Value(taint=(step,))
    return None
