"""Code injection (DJ-PY-002): text run as Python code, and modules chosen by name.

The sinks are the builtins ``eval``, ``exec`` and ``compile`` under any name the
resolver follows (``builtins.eval``, ``getattr(builtins, "exec")``,
``__builtins__["exec"]``, an alias, ``from builtins import eval as e``...), and the
standard library's other ways of running a string as code: the interactive
interpreters of ``code`` (``InteractiveInterpreter().runsource``,
``InteractiveConsole().push``, ``code.compile_command``), ``codeop.compile_command``,
``timeit`` (its ``stmt`` and ``setup``), the profilers and debuggers (``cProfile.run``,
``profile.run``, ``pdb.run``, ``pdb.runeval`` and their objects' ``run``/``runctx``/
``runeval``, ``trace.Trace().run``) and ``runpy.run_path``; handed to a function that
calls them (``map(eval, lines)``), they are checked by python/callbacks.py.

Grading, per what reaches the code's text:

- event data -> high severity, high confidence, with its path (an error: the caller
  writes code the function runs);
- a value Donjon cannot trace to a literal -> medium severity, medium confidence (a
  warning: no event data is seen reaching it, but nobody can read what it runs), with
  a message of its own;
- a literal, or text folded from literals (``"a" + "b"``, a module's constant, an
  f-string of constants) -> nothing.

A code object made by ``compile()`` is judged where it is compiled: running it later
(``exec(code)``) is reported again only when event data is in it. Modules chosen by
name (``importlib.import_module``, ``__import__``, ``runpy.run_module``) are reported
only when event data picks them (DJ-PY-017 grades the lookups it cannot resolve).
"""

from __future__ import annotations

from collections.abc import Callable

from donjon.scan.model import Confidence, Severity
from donjon.scan.python.hits import CallSite
from donjon.scan.python.kinds import CODE, CODE_RUNNER
from donjon.scan.python.values import Value

__all__ = ["CODE_SINKS", "check_code_method"]

RULE = "DJ-PY-002"
_BUILTINS = frozenset({"eval", "exec", "compile"})
#: Functions that run (or compile) their first argument as code: qualified name -> the
#: argument's keyword. (timeit's ``stmt`` and ``setup`` may be callables, which are
#: not code to read: there only event data is reported.)
_CODE_FUNCTIONS: dict[str, str] = {
    **dict.fromkeys(_BUILTINS, "source"),
    **{f"builtins.{name}": "source" for name in _BUILTINS},
    "code.compile_command": "source",
    "codeop.compile_command": "source",
    **{f"{m}.{f}": "statement" for m in ("cProfile", "profile") for f in ("run", "runctx")},
    "pdb.run": "statement",
    "pdb.runctx": "statement",
    "pdb.runeval": "expression",
}
_TIMEIT = frozenset({"timeit.timeit", "timeit.repeat", "timeit.Timer"})
#: Methods of the objects of kind CODE_RUNNER (python/kinds.py) that run their argument.
_RUNNER_METHODS = {
    "runsource": "source",
    "runcode": "code",
    "push": "line",
    "run": "cmd",
    "runctx": "cmd",
    "runeval": "expr",
}
#: Functions that import or run a module or file the argument names: only event data
#: choosing it is reported.
_CHOSEN = {
    "importlib.import_module": ("name", "imports a chosen module"),
    "__import__": ("name", "imports a chosen module"),
    "builtins.__import__": ("name", "imports a chosen module"),
    "runpy.run_module": ("mod_name", "runs a chosen module"),
    "runpy.run_path": ("path_name", "runs a chosen file"),
}


def _grade(site: CallSite, code: Value | None, what: str, *, untraced: bool = True) -> None:
    """Report `code` reaching `what` (see the module doc for the grades); a value of
    unknown origin only if `untraced`."""
    if code is None or code.const:
        return
    if code.taint is not None:
        site.report(
            RULE,
            Confidence.HIGH,
            f"event data reaches {what}: the caller writes code the function runs",
            value=code,
            severity=Severity.HIGH,
            sink_note=f"reaches {what}",
        )
    elif untraced and code.kind != CODE and not _decoded(code):
        # A code object is judged where it was compiled; decoded text, by dynamic.py.
        site.report(
            RULE,
            Confidence.MEDIUM,
            f"{what} gets code that is not a literal: no event data is seen reaching it, "
            "but what it runs cannot be read",
            severity=Severity.MEDIUM,
        )


def _decoded(value: Value) -> bool:
    return value.ref is not None and value.ref.kind == "decoded"


def _label(qual: str) -> str:
    return f"{qual.removeprefix('builtins.')}()"


def _code_function(site: CallSite, qual: str) -> None:
    _grade(site, site.arg(0, _CODE_FUNCTIONS[qual]), _label(qual))


def _timeit(site: CallSite, qual: str) -> None:
    for position, keyword in enumerate(("stmt", "setup")):
        _grade(site, site.arg(position, keyword), f"{_label(qual)} ({keyword})", untraced=False)


def _chosen(site: CallSite, qual: str) -> None:
    keyword, does = _CHOSEN[qual]
    target = site.arg(0, keyword)
    if target is not None and target.taint is not None and not target.const:
        site.report(
            RULE,
            Confidence.HIGH,
            f"event data reaches {_label(qual)} ({does})",
            value=target,
            sink_note=f"reaches {_label(qual)}",
        )


def check_code_method(site: CallSite) -> None:
    """``console.push(line)`` and the like, on an object of kind CODE_RUNNER."""
    receiver = site.receiver
    if receiver is not None and receiver.kind == CODE_RUNNER and site.method in _RUNNER_METHODS:
        _grade(site, site.arg(0, _RUNNER_METHODS[site.method]), f".{site.method}()")


#: Every function this module checks, by qualified name, and its check.
CODE_SINKS: dict[str, Callable[[CallSite, str], None]] = {
    **dict.fromkeys(_CODE_FUNCTIONS, _code_function),
    **dict.fromkeys(_TIMEIT, _timeit),
    **dict.fromkeys(_CHOSEN, _chosen),
}
