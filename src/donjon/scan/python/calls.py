"""Calls to the module's own functions and methods, analysed in their calling context.

A call with labelled arguments (event data, exception details, constants, secrets)
analyses the callee with its parameters bound to them, memoised per pattern of labels
(and, with labels, per call site, so a returned value's path starts at this call);
recursion and chains deeper than `_MAX_DEPTH` assume the result derives from the
arguments. Methods are found through ``self``/``cls``, the class name, or an instance
the analysis saw created (``r = Repo(); r.get(x)``); a call that names no function of
the module goes to `call_other` (another module of the bundle, interpreter.py).
"""

from __future__ import annotations

import ast
from abc import abstractmethod

from donjon.scan.python.entries import parameters
from donjon.scan.python.frames import Frame, FunctionInfo
from donjon.scan.python.hits import CallSite, Hits
from donjon.scan.python.imports import LOCAL, ImportMap
from donjon.scan.python.statements import StatementInterpreter
from donjon.scan.python.values import UNKNOWN, Env, Step, Value, constant, join_all

__all__ = ["CallInterpreter"]

_MAX_DEPTH = 16
#: (function, label pattern, call site as (calling file, line) when labelled).
_MemoKey = tuple[int, tuple[tuple[str, bool, bool, bool, bool], ...], tuple[str, int] | None]


class CallInterpreter(StatementInterpreter):
    """Statements, and calls into the module's functions (`functions`, by qualified
    name); `module_env` holds the module's globals."""

    def __init__(self, imports: ImportMap, hits: Hits, lines: list[str]) -> None:
        super().__init__(imports, hits, lines)
        self.module_env = Env()
        self.functions: dict[str, FunctionInfo] = {}
        self._memo: dict[_MemoKey, Value] = {}
        self._active: set[_MemoKey] = set()
        #: The module's classes and the names of their bases that the module defines.
        self._bases: dict[str, list[str]] = {}

    @abstractmethod
    def call_other(self, site: CallSite, func: ast.expr, env: Env, frame: Frame) -> Value | None:
        """A labelled call to a function no frame of this module defines; None if unknown."""

    def call_with(
        self,
        info: FunctionInfo,
        values: dict[str, Value],
        depth: int,
        site: tuple[str, int] | None,
    ) -> Value:
        """Analyse `info` with `values` bound to its parameters; its return value.

        Memoised per pattern of labels; with labelled arguments also per call site, so a
        returned value's path starts at this call, not at the first one analysed."""
        names = parameters(info)
        every = [a.arg for a in info.node.args.kwonlyargs]
        for extra in (info.node.args.vararg, info.node.args.kwarg):
            if extra is not None:
                every.append(extra.arg)
        pattern = tuple(
            (n, v.taint is not None, v.exc is not None, v.const, v.secret is not None)
            for n in names + every
            for v in [values.get(n, UNKNOWN)]
        )
        labelled = any(v.interesting for v in values.values())
        key = (id(info), pattern, site if labelled else None)
        self.charge(len(pattern) + 1, info.node.lineno)
        if key in self._memo:
            return self._memo[key]
        if key in self._active or depth > _MAX_DEPTH:
            # Recursion or a very deep chain: assume the result derives from the arguments.
            args = list(values.values())
            return Value(
                taint=next((v.taint for v in args if v.taint), None),
                exc=next((v.exc for v in args if v.exc), None),
                secret=next((v.secret for v in args if v.secret), None),
            )
        self._active.add(key)
        env = Env(info.closure or self.module_env)
        for name in names + every:
            env.set(name, values.get(name, UNKNOWN))
        all_params = frozenset(names + every) | {"self", "cls"}
        frame = Frame(info, all_params, depth=depth)
        try:
            self.exec_block(info.node.body, env, frame)
        finally:
            self._instances.pop(frame, None)
        result = frame.returns[0] if frame.returns else constant()  # no return: None
        for other in frame.returns[1:]:
            result = result.join(other)
        self._active.discard(key)
        self._memo[key] = result
        return result

    def call_local(self, site: CallSite, env: Env, frame: Frame) -> Value | None:
        # Methods of instances and other modules' functions are followed with event data
        # or exception details in hand (what they could change of the verdict); called
        # with nothing labelled, they are unknown calls, and analysed on their own.
        labelled = any(v.interesting for v in (*site.args, *site.kwargs.values()))
        method = self._method_of_instance(site.node.func, env, frame) if labelled else None
        func = method or site.node.func
        info = self._resolve(func, frame)
        if info is None:
            result = self.call_other(site, func, env, frame) if labelled else None
        else:
            values = self.arguments(info, site, Step(site.line, site.col, self.text(site.line)))
            result = self.call_with(info, values, frame.depth + 1, ("", site.line))
            result = result.step(Step(site.line, site.col, f"returned by {info.node.name}()"))
        receiver = site.receiver
        if method is None or result is None or receiver is None or not receiver.interesting:
            return result
        # Instance attributes are not followed: what the object was built from may come
        # back out of its method (as from an unknown call), beside what the method returns.
        return result.mix(Value(taint=receiver.taint, exc=receiver.passed_on()))

    def arguments(self, info: FunctionInfo, site: CallSite, step: Step) -> dict[str, Value]:
        """The values a call binds to `info`'s parameters, each with `step` added."""
        names = parameters(info)
        values: dict[str, Value] = {}
        for i, node in enumerate(site.node.args):
            if isinstance(node, ast.Starred):  # f(*xs): any later parameter may get xs' data
                for name in names[i:]:
                    values[name] = site.args[i].step(step)
                if info.node.args.vararg is not None:
                    values[info.node.args.vararg.arg] = site.args[i].step(step)
                break
            if i < len(names):
                values[names[i]] = site.args[i].step(step)
        args = info.node.args
        if args.vararg is not None and len(site.node.args) > len(names):
            # f(a, b, c) into def f(a, *rest): the extra arguments are in `rest`.
            extra = site.args[len(names) :]
            values[args.vararg.arg] = join_all(extra).step(step)
        known = set(names) | {a.arg for a in args.kwonlyargs}
        for kw, value in site.kwargs.items():
            if kw in known or args.kwarg is None:
                values[kw] = value.step(step)
            else:  # f(x=v) or f(**d) into def f(**kw): `kw` holds them
                old = values.get(args.kwarg.arg)
                values[args.kwarg.arg] = value.step(step) if old is None else old.mix(value)
            if kw == "**":  # f(**d): any parameter may come from `d`
                for name in names:
                    values[name] = values[name].mix(value) if name in values else value.step(step)
        for name, default in self._defaults(info):
            values.setdefault(name, default)
        return values

    def _defaults(self, info: FunctionInfo) -> list[tuple[str, Value]]:
        args = info.node.args
        positional = [a.arg for a in args.posonlyargs + args.args]
        pairs = list(
            zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
        )
        pairs += [
            (a.arg, d)
            for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
            if d is not None
        ]
        # A default is evaluated where the function is defined (``def inner(c=event["c"])``).
        scope = info.closure or self.module_env
        return [
            (n, constant() if isinstance(d, ast.Constant) else self.eval(d, scope, self._top))
            for n, d in pairs
        ]

    def _method_of_instance(self, func: ast.expr, env: Env, frame: Frame) -> ast.expr | None:
        """For ``Repo().get`` or ``r.get`` after ``r = Repo()``: ``Repo.get``, the method
        as named on the class (which `_resolve` and the bundle then look up); None if the
        call is not on an instance the analysis saw created."""
        if not isinstance(func, ast.Attribute):
            return None
        owner = func.value
        cls: ast.expr | None = None
        if isinstance(owner, ast.Call):
            if isinstance(owner.func, ast.Name) and owner.func.id == "super":
                return None  # super().run: `_resolve` looks in the bases
            cls = owner.func
        elif isinstance(owner, ast.Name):
            cls = self._instances.get(frame, {}).get(owner.id)
            if cls is None and owner.id not in env.vars:  # a module-level instance
                cls = self._instances.get(self._top, {}).get(owner.id)
        if not isinstance(cls, ast.Name | ast.Attribute):
            return None
        return ast.Attribute(value=cls, attr=func.attr, ctx=ast.Load())

    def _resolve(self, func: ast.expr, frame: Frame) -> FunctionInfo | None:
        if isinstance(func, ast.Name):
            if func.id in frame.local_functions:
                return frame.local_functions[func.id]
            if self.imports.qualname(func) == LOCAL + func.id:
                return self.functions.get(func.id)
            return None
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name)
            and func.value.func.id == "super"
            and frame.info
            and frame.info.class_name
        ):  # super().run(x): the first base of the module's own that has it
            for base in self._bases.get(frame.info.class_name, []):
                if (info := self.functions.get(f"{base}.{func.attr}")) is not None:
                    return info
            return None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner = func.value.id
            if owner in ("self", "cls") and frame.info and frame.info.class_name:
                return self.functions.get(f"{frame.info.class_name}.{func.attr}")
            return self.functions.get(f"{owner}.{func.attr}")
        return None
