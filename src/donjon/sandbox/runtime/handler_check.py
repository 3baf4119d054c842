"""Whether the handler the manifest names can be called as ``handler(event, context)``.

Checked in the worker, on the imported object, before the first call: at deploy
the new version's sandbox starts and imports the handler (lifecycle's prestart),
so a handler that is missing, not callable or takes the wrong number of
arguments fails the deploy with this message instead of failing every call.
No imports (inspect costs every cold start): the code object says it exactly for
Python functions, methods and callable objects; anything else is given the call.
"""

from __future__ import annotations

#: Not typing's: importing typing costs a sandbox start 3-8 ms (mypy reads this as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_VARARGS = 0x04  # CO_VARARGS


class HandlerNotUsable(TypeError):
    """The manifest's handler cannot be called as handler(event, context)."""


def _code_of(obj: Any) -> tuple[Any, Any, int] | None:
    """(function, code object, arguments already bound) of what `obj(...)` would run."""
    bound = 0
    func = obj
    if hasattr(func, "__func__") and hasattr(func, "__self__"):  # a bound method
        func, bound = func.__func__, 1
    elif not hasattr(func, "__code__") and not isinstance(obj, type):
        try:  # a callable object: its class's __call__ runs, with the object bound
            func, bound = type(obj).__call__, 1
        except AttributeError:
            return None
    code = getattr(func, "__code__", None)
    return None if code is None else (func, code, bound)


def positional_problem(obj: Any, wanted: int = 2) -> str:
    """Why `obj` cannot take `wanted` positional arguments, or "" (also when unknown)."""
    found = _code_of(obj)
    if found is None:
        return ""
    func, code, bound = found
    defaults = len(getattr(func, "__defaults__", None) or ())
    most = code.co_argcount - bound
    least = max(0, most - defaults)
    kw_required = code.co_kwonlyargcount - len(getattr(func, "__kwdefaults__", None) or {})
    if kw_required > 0:
        return f"has {kw_required} keyword-only argument(s) without a default"
    if least > wanted:
        return f"needs {least} positional arguments"
    if most < wanted and not code.co_flags & _VARARGS:
        return f"takes {most} positional argument{'s' if most != 1 else ''}"
    return ""


def check_handler(module: Any, module_name: str, name: str) -> Any:
    """The handler `name` of `module`, or `HandlerNotUsable` saying why it cannot serve."""
    where = f"{module_name}.{name}"
    if not hasattr(module, name):
        raise HandlerNotUsable(
            f"{module_name} defines no {name!r} (the manifest's handler: {where})"
        )
    handler = getattr(module, name)
    if not callable(handler):
        raise HandlerNotUsable(f"{where} is a {type(handler).__name__}, not a function")
    problem = positional_problem(handler)
    if problem:
        raise HandlerNotUsable(f"{where} {problem}; a handler is called as {name}(event, context)")
    return handler
