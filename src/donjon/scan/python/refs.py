"""What a value refers to: a module, a callable, a namespace of names.

``run = subprocess.run``, ``getattr(__import__("os"), "system")``,
``vars(builtins)["ev" + "al"]`` all end in a callable with a qualified name; a `Ref`
carries that name along with the value, so a call through it is checked as the
undisguised call would be. A lookup whose name is not known on a dangerous module or
namespace (os, subprocess, builtins, globals()...) is graded here for DJ-PY-017.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from donjon.scan.model import Confidence
from donjon.scan.python.sinks import SINK_NAMES

if TYPE_CHECKING:
    from donjon.scan.python.imports import ImportMap
    from donjon.scan.python.values import Env, Value

__all__ = [
    "DANGEROUS_MODULES",
    "GLOBALS",
    "MODULES",
    "Bound",
    "Kind",
    "Ref",
    "attribute",
    "grade_member",
    "grade_module",
    "held",
]

#: The module's own namespace (``globals()``, ``vars()``, ``sys.modules[__name__]``).
GLOBALS = "<globals>"
#: ``sys.modules``: a namespace whose keys are module names.
MODULES = "sys.modules"
#: Modules whose members run commands or code, load native code or rewrite the
#: interpreter; looking a name up in one by a name nobody can read is the disguise.
DANGEROUS_MODULES = frozenset(
    {
        "os",
        "posix",
        "nt",
        "subprocess",
        "_posixsubprocess",
        "builtins",
        "pty",
        "ctypes",
        "importlib",
        "pickle",
        "_pickle",
        "cPickle",
        "marshal",
        "shutil",
        "socket",
        "sys",
        "code",
        "codeop",
        "runpy",
        "commands",
        "popen2",
        "dill",
        "shelve",
    }
)
#: Names that run something, or reach something that does (the dynamic-access functions).
_DYNAMIC = frozenset(
    {
        "builtins.getattr",
        "builtins.vars",
        "builtins.globals",
        "builtins.locals",
        "builtins.__import__",
        "builtins.eval",
        "builtins.exec",
        "builtins.compile",
        "importlib.import_module",
        "importlib.__import__",
        "operator.methodcaller",
        "operator.attrgetter",
        "sys.modules",
    }
)
_DANGEROUS_NAMES = SINK_NAMES | _DYNAMIC

#: How many other callables one reference keeps (a dispatch table of 50 commands is
#: checked against the first few; past that, a call through it is checked less).
_MAX_OTHERS = 8

Kind = Literal["object", "namespace", "items", "methodcaller", "attrgetter", "decoded", "lambda"]


@dataclass(frozen=True, slots=True)
class Bound:
    """Arguments bound ahead of the call (``functools.partial``, ``operator.methodcaller``)."""

    nodes: tuple[ast.expr, ...]
    values: tuple[Value, ...]
    keywords: tuple[ast.keyword, ...] = ()
    kw_values: tuple[tuple[str, Value], ...] = ()

    def then(self, other: Bound) -> Bound:
        """These arguments followed by `other`'s (a partial of a partial)."""
        return Bound(
            self.nodes + other.nodes,
            self.values + other.values,
            self.keywords + other.keywords,
            self.kw_values + other.kw_values,
        )


@dataclass(frozen=True, slots=True)
class Ref:
    """A module or callable (`object`) by qualified name, a namespace of names
    (``vars(m)``, ``m.__dict__``, ``globals()``), an ``operator.methodcaller`` or
    ``attrgetter`` waiting for its object, text decoded at run time, a lambda (with
    the scope it was made in), or a container holding a callable that runs something
    (`items`: ``{"run": subprocess.run}``, whose items are that callable)."""

    name: str
    kind: Kind = "object"
    bound: Bound | None = None
    function: ast.Lambda | None = None
    scope: Env | None = None
    #: Other callables that run something the value may refer to instead (a branch, a
    #: dispatch table): each is checked at a call.
    others: tuple[Ref, ...] = ()

    def join(self, other: Ref | None) -> Ref | None:
        """What a value that may refer to either refers to, for the checks: when they
        differ, the one that runs something (the stricter reading), else nothing."""
        if other == self:
            return self
        risky = [r for r in (self, other) if r is not None and r.risky]
        if len(risky) < 2:
            return risky[0] if risky else None
        first, second = risky
        more = [r for r in (second, *first.others, *second.others) if r != first]
        unique = tuple(dict.fromkeys(replace(r, others=()) for r in more))
        return replace(first, others=unique[:_MAX_OTHERS])

    def alternatives(self) -> tuple[Ref, ...]:
        """This reference and the others it may be."""
        return (replace(self, others=()), *self.others) if self.others else (self,)

    @property
    def risky(self) -> bool:
        """Whether calling it or looking names up in it may reach a sink."""
        name = self.name.removeprefix("builtins.")
        return self.kind == "decoded" or self.dangerous or name in _DANGEROUS_NAMES

    @property
    def dangerous(self) -> bool:
        return self.name in (GLOBALS, MODULES) or self.name.split(".")[0] in DANGEROUS_MODULES

    @property
    def label(self) -> str:
        if self.name == GLOBALS:
            return "globals()"
        return f"vars({self.name})" if self.kind == "namespace" else self.name

    def items(self) -> bool:
        """Whether ``ref[key]`` looks a name up (a namespace; ``__builtins__`` may be either)."""
        return self.kind in ("namespace", "items") or self.name in ("builtins", MODULES, GLOBALS)

    def attributes(self) -> bool:
        return self.kind == "object" or self.name in ("builtins", GLOBALS)


def held(values: list[Value]) -> Ref | None:
    """What a container of `values` holds that runs something, if anything."""
    found: Ref | None = None
    for value in values:
        ref = value.ref
        if ref is not None and ref.kind == "object" and ref.risky:
            found = ref if found is None else found.join(ref)
    return replace(found, kind="items") if found is not None else None


def attribute(base: Ref | None, attr: str) -> Ref | None:
    """What ``base.attr`` refers to."""
    if base is None or not base.attributes():
        return None
    if attr == "__call__":  # eval.__call__(code) is eval(code)
        return base
    return _child(base.name, attr, None)


def _child(namespace: str, text: str, imports: ImportMap | None) -> Ref | None:
    if text == "__dict__":
        return Ref(namespace, "namespace")
    if namespace == GLOBALS:
        if text == "__builtins__":
            return Ref("builtins", "namespace")
        target = imports.aliases.get(text) if imports is not None else None
        return Ref(target) if target is not None else None
    if namespace == MODULES:
        return None if text.startswith(".") else Ref(text)
    return Ref(f"{namespace}.{text}")


def _dangerous_names(namespace: str, imports: ImportMap) -> set[str]:
    """The names in `namespace` that run or reach something dangerous."""
    if namespace == MODULES:
        return set(DANGEROUS_MODULES)
    if namespace == GLOBALS:
        names = {"__builtins__"}
        for alias, target in imports.aliases.items():
            if target.split(".")[0] in DANGEROUS_MODULES or target in _DANGEROUS_NAMES:
                names.add(alias)
        return names
    head = namespace + "."
    found = {q[len(head) :] for q in _DANGEROUS_NAMES if q.startswith(head)}
    if namespace == "builtins":
        found |= {q for q in SINK_NAMES if "." not in q}
    return found


def grade_member(base: Ref, key: Value, imports: ImportMap) -> tuple[Ref | None, Confidence | None]:
    """``getattr(base, key)`` or ``base[key]``: what it resolves to, and the DJ-PY-017
    confidence when the name cannot be resolved on a dangerous module or namespace."""
    text = key.prefix if key.const and key.taint is None else None
    if not base.dangerous:
        return (_child(base.name, text, imports) if text is not None else None), None
    names = _dangerous_names(base.name, imports)
    if key.prefix and not any(n.startswith(key.prefix) for n in names):
        # No dangerous member's name starts so, whatever follows (even event data).
        return (_child(base.name, text, imports) if text is not None else None), None
    if key.taint is not None:
        return None, Confidence.HIGH
    if text is not None:
        # A constant's known text may be only its start ("%s" % x): it resolves when it
        # names a dangerous member exactly, or cannot begin the name of any.
        if text in names or not any(n.startswith(text) for n in names):
            return _child(base.name, text, imports), None
        return None, Confidence.MEDIUM
    return None, Confidence.MEDIUM


def grade_module(key: Value) -> tuple[str | None, Confidence | None]:
    """A module looked up by name (``import_module``, ``__import__``, ``sys.modules[...]``):
    its name when known, and the DJ-PY-017 confidence when it is not."""
    if key.taint is not None:
        return None, Confidence.HIGH
    if key.const and key.prefix is not None:
        text = key.prefix
        if text.startswith("."):
            return None, None  # relative to a package of the bundle: not a dangerous module
        if text.split(".")[0] in DANGEROUS_MODULES or not any(
            m.startswith(text) for m in DANGEROUS_MODULES
        ):
            return text, None
        return None, Confidence.MEDIUM
    if key.prefix:
        risky = any(m.startswith(key.prefix) for m in DANGEROUS_MODULES)
        return None, (Confidence.MEDIUM if risky else None)
    return None, Confidence.LOW
