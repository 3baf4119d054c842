"""Evaluating expressions to abstract `Value`s: where event data and exception details go.

Propagation rules: a value derived from a labelled value keeps its label (subscripts,
attributes, string formatting, containers, unknown calls); sanitizers (``int()``,
``shlex.quote()``, comparisons, ``len()``) drop it. Sources are the parameters the
interpreter marks, web-framework request attributes and ``traceback.format_exc()``
(sources.py). Calls are evaluated here (their arguments, what they refer to, the sink
rules); what a call outside the module returns is modelled in call_results.py.
"""

from __future__ import annotations

import ast
from abc import ABC, abstractmethod
from dataclasses import replace

from donjon.scan.errors import ScanError
from donjon.scan.python.call_results import call_result, dotted
from donjon.scan.python.dynamic import Resolver
from donjon.scan.python.frames import Frame
from donjon.scan.python.hits import CallSite, Hits
from donjon.scan.python.imports import ImportMap
from donjon.scan.python.kinds import PATH, PATH_KINDS, names_one_component, refine_result
from donjon.scan.python.leaks import carried_secret, secret_in_subscript
from donjon.scan.python.refs import Ref, attribute, held
from donjon.scan.python.sources import EXC_SAFE_ATTRS, request_source
from donjon.scan.python.values import UNKNOWN, Env, Step, Value, constant, join_all

__all__ = ["Evaluator"]


class Evaluator(ABC):
    """Expression evaluation; the interpreter supplies statements and local calls."""

    def __init__(self, imports: ImportMap, hits: Hits, lines: list[str]) -> None:
        self.imports = imports
        self.hits = hits
        self.lines = lines
        #: Expressions evaluated so far, and how many the module may take (the
        #: interpreter sets it from the module's size): total work is bounded, whatever
        #: the code's shape, and past the bound the scan fails closed.
        self.evaluations = 0
        self.evaluation_budget = 0
        #: What names, attributes and calls refer to (aliases, getattr, __import__...).
        self.resolver = Resolver(imports, hits)

    @abstractmethod
    def check_call(self, site: CallSite, frame: Frame) -> None:
        """Run the sink rules on one call."""

    @abstractmethod
    def call_local(self, site: CallSite, env: Env, frame: Frame) -> Value | None:
        """Analyse a call to a function of this module; None if it is not one."""

    def imported(self, node: ast.Name | ast.Attribute, env: Env) -> Value | None:
        """A constant that another module of the bundle defines and this one imports
        (``from .config import TABLE``, ``config.TABLE``); None if it is not one."""
        return None

    def text(self, line: int) -> str:
        return self.lines[line - 1].strip()[:120] if 0 < line <= len(self.lines) else ""

    def charge(self, work: int, line: int) -> None:
        """Count `work` units (an expression, a parameter bound); fail closed past the budget."""
        self.evaluations += work
        if self.evaluations > self.evaluation_budget:
            raise ScanError(
                f"line {line}: the code is too complex to analyse in bounded time",
                hint="split the module or simplify its expressions; the gate does not pass "
                "code it cannot analyse",
            )

    def eval(self, node: ast.expr, env: Env, frame: Frame) -> Value:  # noqa: PLR0912
        self.charge(1, node.lineno)
        match node:
            case ast.Constant(value=str() as s):
                return constant(s)
            case ast.Constant():
                return constant()
            case ast.Name(id=name):
                return env.get(name) or self.imported(node, env) or self.resolver.name(node)
            case ast.Attribute():
                return self._attribute(node, env, frame)
            case ast.Subscript(value=base, slice=index):
                container, key = self.eval(base, env, frame), self.eval(index, env, frame)
                ref = self.resolver.item(container, key, node) if container.ref else None
                # An item of a constant (``TABLES[event["kind"]]``) is one of its
                # constants, whatever picks it: an allowlist lookup.
                return Value(
                    taint=container.taint,
                    exc=container.exc,
                    const=container.const,
                    secret=secret_in_subscript(node, container, self.imports),
                    ref=ref,
                )
            case ast.Call():
                return self._call(node, env, frame)
            case ast.JoinedStr(values=parts):
                return self._fstring(parts, env, frame)
            case ast.FormattedValue(value=inner):
                return self.eval(inner, env, frame)
            case ast.BinOp():
                return self._binop(node, env, frame)
            case ast.List(elts=elts) | ast.Tuple(elts=elts) | ast.Set(elts=elts):
                values = [self.eval(e, env, frame) for e in elts]
                head = values[0] if values and not isinstance(elts[0], ast.Starred) else None
                out = join_all(values)
                return Value(
                    out.taint,
                    out.exc,
                    out.const,
                    out.built,
                    None,
                    head,
                    out.exc_raw,
                    ref=held(values),
                    secret=out.secret,
                )
            case ast.Dict(keys=keys, values=vals):
                items = [self.eval(k, env, frame) for k in keys if k is not None]
                values = [self.eval(v, env, frame) for v in vals]
                ref = held(values)
                out = join_all(items + values)
                return out if ref is None else replace(out, ref=ref)
            case (
                ast.ListComp(elt=elt, generators=gens)
                | ast.SetComp(elt=elt, generators=gens)
                | (ast.GeneratorExp(elt=elt, generators=gens))
            ):
                return self._comprehension([elt], gens, env, frame)
            case ast.DictComp(key=k, value=v, generators=gens):
                return self._comprehension([k, v], gens, env, frame)
            case ast.IfExp(test=test, body=body, orelse=orelse):
                self.eval(test, env, frame)
                return self.eval(body, env, frame).join(self.eval(orelse, env, frame))
            case ast.BoolOp(values=vals):
                out = self.eval(vals[0], env, frame)
                for v in vals[1:]:
                    out = out.join(self.eval(v, env, frame))
                return out
            case ast.Compare(left=left, comparators=rest):
                for operand in (left, *rest):
                    self.eval(operand, env, frame)
                return constant()
            case ast.UnaryOp(op=op, operand=operand):
                result = self.eval(operand, env, frame)
                return result.untainted() if isinstance(op, ast.Not) else result
            case ast.Await(value=inner) | ast.Starred(value=inner):
                return self.eval(inner, env, frame)
            case ast.NamedExpr(target=ast.Name(id=name), value=inner):
                value = self.eval(inner, env, frame)
                env.set(
                    name, value.step(Step(node.lineno, node.col_offset + 1, self.text(node.lineno)))
                )
                return value
            case ast.Yield(value=inner) | ast.YieldFrom(value=inner):
                if inner is not None:
                    # What a generator yields is what calling it gives (``for x in gen(e)``,
                    # a ``@contextmanager``'s ``as`` value), as a return value is.
                    frame.returns.append(self.eval(inner, env, frame))
                return UNKNOWN
            case ast.Lambda():
                return Value(ref=Ref("<lambda>", "lambda", function=node, scope=env))
            case ast.Slice(lower=lo, upper=hi, step=st):
                return join_all([self.eval(p, env, frame) for p in (lo, hi, st) if p is not None])
        return UNKNOWN

    def _attribute(self, node: ast.Attribute, env: Env, frame: Frame) -> Value:
        source = request_source(node, self.imports, frame.params)
        if source is not None:
            return source
        known = self._known_attribute(node, env, frame) or self.imported(node, env)
        if known is not None:
            return known
        base_value = self.eval(node.value, env, frame)
        if node.attr in EXC_SAFE_ATTRS:
            base_value = base_value.without_exc()
        # An exception's attributes are structured data like the exception itself: they
        # disclose it once made text (str(), f-strings, concatenation), not before.
        return Value(
            taint=base_value.taint,
            exc=base_value.exc,
            exc_raw=base_value.exc_raw,
            secret=base_value.secret,
            ref=attribute(base_value.ref, node.attr),
            confined=names_one_component(base_value, node.attr),
        )

    def _known_attribute(self, node: ast.Attribute, env: Env, frame: Frame) -> Value | None:
        """``x.attr`` as assigned before, or a class attribute read through self/cls."""
        key = dotted(node)
        if key is not None and (known := env.get(key)) is not None:
            return known
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls") and frame.info:
            cls = frame.info.class_name
            return env.get(f"{cls}.{node.attr}") if cls else None
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name):
            return env.get(f"{owner.func.id}.{node.attr}")  # Jobs().call of a class alias
        return None

    def _callee(self, func: ast.expr, receiver: Value | None, env: Env, frame: Frame) -> Ref | None:
        """What the called expression refers to (``run`` after ``run = subprocess.run``)."""
        if isinstance(func, ast.Name):
            return (env.get(func.id) or self.resolver.name(func)).ref
        if isinstance(func, ast.Attribute):
            known = self._known_attribute(func, env, frame)
            if known is not None:
                return known.ref
            return attribute(receiver.ref, func.attr) if receiver is not None else None
        return self.eval(func, env, frame).ref

    def _fstring(self, parts: list[ast.expr], env: Env, frame: Frame) -> Value:
        values = [self.eval(p, env, frame) for p in parts]
        prefix = ""
        for value in values:
            prefix += value.prefix or ""
            if not value.const or value.prefix is None:
                break
        out = join_all(values, empty=constant(""))
        built = out.built or not out.const
        return Value(
            out.taint,
            out.exc,
            out.const,
            built,
            prefix or None,
            secret=out.secret,
            confined=out.confined,
        )

    def _binop(self, node: ast.BinOp, env: Env, frame: Frame) -> Value:
        left, right = self.eval(node.left, env, frame), self.eval(node.right, env, frame)
        out = left.mix(right)
        prefix: str | None = None
        built = out.built
        if isinstance(node.op, ast.Add):
            built = built or not out.const
            if left.prefix is not None:
                prefix = left.prefix + (right.prefix or "") if left.const else left.prefix
            return Value(
                out.taint,
                out.exc,
                out.const,
                built,
                prefix,
                left.head,
                secret=out.secret,
                confined=out.confined,
            )
        if isinstance(node.op, ast.Mod):
            built = built or not out.const
            if left.prefix is not None:
                prefix = left.prefix.split("%")[0]
        elif isinstance(node.op, ast.Div) and left.prefix is not None:
            prefix = left.prefix.rstrip("/") + "/" + (right.prefix or "" if right.const else "")
        kind = PATH if isinstance(node.op, ast.Div) and left.kind in PATH_KINDS else None
        return Value(
            out.taint,
            out.exc,
            out.const,
            built,
            prefix,
            secret=out.secret,
            kind=kind,
            confined=out.confined,
        )

    def _comprehension(
        self, elts: list[ast.expr], gens: list[ast.comprehension], env: Env, frame: Frame
    ) -> Value:
        inner = Env(env)
        for gen in gens:
            source = self.eval(gen.iter, inner, frame)
            for target in ast.walk(gen.target):
                if isinstance(target, ast.Name):
                    inner.set(target.id, Value(taint=source.taint, exc=source.exc))
            for cond in gen.ifs:
                self.eval(cond, inner, frame)
        return join_all([self.eval(e, inner, frame) for e in elts])

    def _call(self, node: ast.Call, env: Env, frame: Frame) -> Value:
        func = node.func
        qual = self.imports.qualname(func)
        method = func.attr if isinstance(func, ast.Attribute) else None
        receiver: Value | None = None
        if isinstance(func, ast.Attribute):
            receiver = request_source(func, self.imports, frame.params)
            receiver = receiver or self.eval(func.value, env, frame)
        callee = self._callee(func, receiver, env, frame)
        args = [self.eval(a, env, frame) for a in node.args]
        kwargs: dict[str, Value] = {}
        for kw in node.keywords:
            value = self.eval(kw.value, env, frame)
            key = kw.arg or "**"
            kwargs[key] = kwargs[key].mix(value) if key in kwargs else value
        context = f"{frame.name} {self.text(node.lineno)}"
        site = CallSite(
            node, qual, method, args, kwargs, self.imports, self.hits, context, receiver
        )
        site.evaluate = lambda part: self.eval(part, env, frame)
        sites = self.resolver.resolve(site, callee)
        for each in sites:
            self.check_call(each, frame)
            self.resolver.check(each)
        site = sites[0]
        local = self.call_local(site, env, frame)
        if local is not None:
            return local
        if callee is not None and callee.function is not None:
            function, scope = callee.function, callee.scope
            return self.resolver.call_lambda(
                function, scope, site, lambda body, inner: self.eval(body, inner, frame)
            )
        result = refine_result(site, call_result(site, env))
        ref = self.resolver.result(site, callee)
        if ref is not None:
            result = replace(result, ref=ref)
        secret = carried_secret(site)
        return result if secret is None else replace(result, const=False, secret=secret)
