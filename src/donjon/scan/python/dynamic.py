"""Disguised sinks: aliases, dynamic imports and dynamic attribute access.

The evaluator asks a `Resolver` what a name, an attribute, a subscript or a call
refers to (a `Ref`); a call whose syntax names nothing known (``run(...)`` after
``run = subprocess.run``) is then checked as the call it refers to, with any
arguments ``functools.partial`` or ``operator.methodcaller`` bound. A name looked up
on a dangerous module or namespace that cannot be resolved is DJ-PY-017; code run
from text decoded at run time (``exec(base64.b64decode(...))``) is DJ-PY-002 at
medium confidence, because its content cannot be read.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import replace

from donjon.scan.model import Confidence
from donjon.scan.python.hits import CallSite, Hit, Hits
from donjon.scan.python.imports import LOCAL, ImportMap
from donjon.scan.python.refs import GLOBALS, MODULES, Bound, Ref, grade_member
from donjon.scan.python.refs import grade_module as _grade_module
from donjon.scan.python.values import UNKNOWN, Env, Step, Value, join_all

__all__ = ["Resolver", "plain"]

RULE = "DJ-PY-017"
_IMPORTS = frozenset({"__import__", "importlib.import_module", "importlib.__import__"})
_PARTIALS = frozenset({"functools.partial", "functools.partialmethod"})
_WRAPPERS = frozenset({"staticmethod", "classmethod"})
#: Arguments one reference may have bound (``partial(partial(f, a), b)``...): past
#: this the reference is dropped, so no chain of partials makes the analysis grow.
_MAX_BOUND = 32
_CODE = frozenset({"eval", "exec", "compile"})
_DECODERS = frozenset(
    {
        *(f"base64.{n}" for n in ("b64decode", "b32decode", "b16decode", "b85decode")),
        *(f"base64.{n}" for n in ("a85decode", "urlsafe_b64decode", "standard_b64decode")),
        "base64.decodebytes",
        "codecs.decode",
        "zlib.decompress",
        "gzip.decompress",
        "bz2.decompress",
        "lzma.decompress",
        "binascii.unhexlify",
        "binascii.a2b_base64",
        "binascii.a2b_hex",
        "bytes.fromhex",
        "marshal.loads",
    }
)
#: Calls that keep decoded text decoded (``b64decode(x).decode()``, ``str(...)``).
_KEEP_DECODED = frozenset({"decode", "encode", "strip", "replace", "str", "bytes"})


def plain(qual: str | None) -> str | None:
    """``builtins.eval`` -> ``eval``: builtins by their bare names."""
    if qual is not None and qual.startswith("builtins.") and qual.count(".") == 1:
        return qual[len("builtins.") :]
    return qual


class Resolver:
    """What the names of one module refer to; reports the lookups it cannot resolve."""

    def __init__(self, imports: ImportMap, hits: Hits) -> None:
        self.imports = imports
        self.hits = hits
        self._names: dict[str, Value] = {}
        self._lambdas: set[ast.Lambda] = set()
        self._lambda_results: dict[tuple[object, ...], Value] = {}

    # -- expressions -----------------------------------------------------------------------
    def name(self, node: ast.Name) -> Value:
        """A name the module binds nowhere: an import, a builtin, or unknown."""
        found = self._names.get(node.id)
        if found is None:
            qual = self.imports.qualname(node)
            if node.id == "__builtins__":
                found = Value(ref=Ref("builtins", "namespace"))
            elif qual is None or qual.startswith(LOCAL):
                found = UNKNOWN
            else:
                found = Value(ref=Ref(qual))
            self._names[node.id] = found
        return found

    def item(self, container: Value, key: Value, node: ast.Subscript) -> Ref | None:
        """``namespace[key]``: ``vars(builtins)["eval"]``, ``sys.modules["os"]``..."""
        base = container.ref
        if base is None or not base.items() or not isinstance(node.ctx, ast.Load):
            return None
        return self._member(base, key, node, f"{base.label}[...]")

    def _member(self, base: Ref, key: Value, node: ast.expr, what: str) -> Ref | None:
        if base.kind == "items":  # OPS[key] of {"run": subprocess.run, ...}
            return replace(base, kind="object")
        if base.name == MODULES:
            if key.ref is not None and key.ref.name == "__name__":
                return Ref(GLOBALS)  # sys.modules[__name__]: this module
            return self._module(key, node, "sys.modules[...]", report_taint=True)
        resolved, confidence = grade_member(base, key, self.imports)
        if confidence is not None:
            self._report(node, confidence, key, what, module=False)
        return resolved

    def _module(self, key: Value, node: ast.expr, what: str, *, report_taint: bool) -> Ref | None:
        name, confidence = _grade_module(key)
        if confidence is not None and (report_taint or confidence != Confidence.HIGH):
            self._report(node, confidence, key, what, module=True)
        return Ref(name) if name is not None else None

    def _report(
        self, node: ast.expr, confidence: Confidence, key: Value, what: str, *, module: bool
    ) -> None:
        line, col = node.lineno, node.col_offset + 1
        thing = "module" if module else "name"
        trace: tuple[Step, ...] = ()
        if confidence == Confidence.HIGH:
            message = f"event data picks the {thing} {what} looks up"
            trace = (*(key.taint or ()), Step(line, col, f"picks the {thing} {what} looks up"))
        elif confidence == Confidence.MEDIUM:
            message = (
                f"{what} looks up a {thing} Donjon cannot resolve, which may be a dangerous "
                "one (os.system, eval, subprocess...) no other rule then sees"
            )
        else:
            message = f"{what} loads a module Donjon cannot name"
        self.hits.add(Hit(RULE, line, col, confidence, message, trace=trace))

    # -- calls -----------------------------------------------------------------------------
    def resolve(self, site: CallSite, callee: Ref | None) -> list[CallSite]:
        """The call as the one(s) it disguises: qualified name and bound arguments applied
        (several when the callee may be one of several callables that run something)."""
        if callee is None:
            return [site]
        return [self._resolve(site, ref) for ref in callee.alternatives()]

    def _resolve(self, site: CallSite, callee: Ref) -> CallSite:
        if callee.kind == "methodcaller" and callee.bound is not None:
            target = site.args[0].ref if site.args else None
            if target is None or not callee.bound.values:
                return site
            what = f"methodcaller(...) applied to {target.label}"
            found = self._member(target, callee.bound.values[0], site.node, what)
            if found is None:
                return site
            rest = callee.bound
            bound = Bound(rest.nodes[1:], rest.values[1:], rest.keywords, rest.kw_values)
            return self._bind(site, found.name, bound, drop=len(site.args))
        if callee.kind != "object":
            return site
        # What the value refers to beats what the syntax names: after
        # ``from os import system; system = print``, ``system(x)`` calls print.
        qual = plain(callee.name)
        if callee.bound is None:
            return site if qual == site.qual else replace(site, qual=qual)
        return self._bind(site, qual, callee.bound, drop=0)

    def _bind(self, site: CallSite, qual: str | None, bound: Bound, drop: int) -> CallSite:
        node = site.node
        call = ast.Call(
            func=node.func,
            args=[*bound.nodes, *node.args[drop:]],
            keywords=[*bound.keywords, *node.keywords],
        )
        ast.copy_location(call, node)
        kwargs = dict(bound.kw_values)
        kwargs.update(site.kwargs)
        args = [*bound.values, *site.args[drop:]]
        return replace(site, node=call, qual=qual, method=None, args=args, kwargs=kwargs)

    def result(self, site: CallSite, callee: Ref | None) -> Ref | None:
        """What a call returns, when it is a module, a callable or a namespace."""
        qual = plain(site.qual)
        args, node = site.args, site.node
        first = args[0] if args and not isinstance(node.args[0], ast.Starred) else None
        if callee is not None and callee.kind == "attrgetter" and callee.bound is not None:
            target = first.ref if first is not None else None
            key = callee.bound.values[0] if callee.bound.values else UNKNOWN
            what = f"attrgetter(...) applied to {target.label}" if target else ""
            return self._member(target, key, node, what) if target else None
        if qual == "getattr" and first is not None and first.ref is not None and len(args) > 1:
            return self._member(first.ref, args[1], node, f"getattr({first.ref.label}, ...)")
        if qual in _IMPORTS and first is not None:
            return self._import(site, qual, first)
        if qual in ("vars", "globals", "locals"):
            if qual == "vars" and first is not None:
                return Ref(first.ref.name, "namespace") if first.ref is not None else None
            return Ref(GLOBALS, "namespace")
        if site.method == "get" and site.receiver is not None and site.receiver.ref is not None:
            base = site.receiver.ref
            what = f"{base.label}.get(...)"
            return self._member(base, first, node, what) if first and base.items() else None
        if qual in _PARTIALS and first is not None and first.ref is not None:
            return self._partial(site, first.ref)
        if qual in ("operator.methodcaller", "operator.attrgetter") and first is not None:
            bound = self._bound(site, skip=0)
            if bound is None:
                return None
            if qual == "operator.methodcaller":
                return Ref("", "methodcaller", bound)
            return Ref("", "attrgetter", bound)
        if qual in _WRAPPERS and first is not None:
            return first.ref
        return self._decoded(site, qual, first)

    def _import(self, site: CallSite, qual: str, first: Value) -> Ref | None:
        if _own_package(site.node.args[0] if site.node.args else None):
            return None  # a module of the bundle's own package (f"{__name__}.plugins")
        ref = self._module(first, site.node, f"{qual}()", report_taint=False)
        if ref is None or qual == "importlib.import_module":
            return ref
        fromlist = site.arg(3, "fromlist")
        return ref if fromlist is not None else Ref(ref.name.split(".")[0])

    def _partial(self, site: CallSite, target: Ref) -> Ref | None:
        bound = self._bound(site, skip=1)
        if bound is None or target.kind != "object":
            return None
        if target.bound is not None:
            bound = target.bound.then(bound)
        if len(bound.nodes) + len(bound.keywords) > _MAX_BOUND:
            return None
        return Ref(target.name, bound=bound, others=target.others)

    def _bound(self, site: CallSite, skip: int) -> Bound | None:
        node = site.node
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            kw.arg is None for kw in node.keywords
        ):
            return None
        return Bound(
            tuple(node.args[skip:]),
            tuple(site.args[skip:]),
            tuple(node.keywords),
            tuple(site.kwargs.items()),
        )

    def _decoded(self, site: CallSite, qual: str | None, first: Value | None) -> Ref | None:
        if qual in _DECODERS:
            return Ref("<decoded>", "decoded")
        receiver = site.receiver
        if site.method in _KEEP_DECODED and receiver is not None and _is_decoded(receiver):
            return receiver.ref
        if (qual in _KEEP_DECODED or qual == "compile") and first is not None:
            return first.ref if _is_decoded(first) else None
        return None

    def call_lambda(
        self,
        function: ast.Lambda,
        scope: Env | None,
        site: CallSite,
        evaluate: Callable[[ast.expr, Env], Value],
    ) -> Value:
        """A call to a lambda: its body, with the arguments bound to its parameters."""
        given = [*site.args, *site.kwargs.values()]
        if function in self._lambdas:  # recursion: the result derives from the arguments
            return join_all(given)
        # Memoised per call site and pattern of labels, as the module's functions are:
        # lambdas calling lambdas cost the number of call sites, not its powers.
        key = (id(function), site.line, site.col, tuple((v.taint is None, v.const) for v in given))
        if key in self._lambda_results:
            return self._lambda_results[key]
        inner = Env(scope)
        params = [a.arg for a in function.args.posonlyargs + function.args.args]
        step = Step(site.line, site.col, f"passed to a lambda at line {function.lineno}")
        for i, name in enumerate(params):
            bound = site.args[i] if i < len(site.args) else site.kwargs.get(name, UNKNOWN)
            inner.set(name, bound.step(step))
        self._lambdas.add(function)
        try:
            result = evaluate(function.body, inner)
        finally:
            self._lambdas.discard(function)
        self._lambda_results[key] = result
        return result

    def check(self, site: CallSite) -> None:
        """Code run from text decoded at run time: its content cannot be analysed."""
        if plain(site.qual) not in _CODE:
            return
        code = site.arg(0, "source")
        if code is not None and code.taint is None and _is_decoded(code):
            site.report(
                "DJ-PY-002",
                Confidence.MEDIUM,
                f"{plain(site.qual)}() runs code decoded at run time; Donjon cannot read it",
            )


def _is_decoded(value: Value) -> bool:
    return value.ref is not None and value.ref.kind == "decoded"


def _own_package(node: ast.expr | None) -> bool:
    """A module name that starts with this module's or package's own name."""
    while isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        node = node.left
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        node = first.value if isinstance(first, ast.FormattedValue) else None
    return isinstance(node, ast.Name) and node.id in ("__name__", "__package__")
