"""Statements, functions and calls: the intra-module taint analysis.

Flow-sensitive over each function (branches are analysed separately and joined;
loops twice), context-sensitive across the module's own functions and, within a
`Bundle`, the functions other modules of the bundle define (a call with event data
analyses the callee, in its own module, with its parameters labelled, memoised per
label pattern). Entry points are the manifest's handler, any ``def f(event, context)``,
and web routes (``@app.route``/``@app.get``...), whose parameters carry caller data.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING

from donjon.scan.errors import ScanError
from donjon.scan.model import Confidence
from donjon.scan.python.bundle import Work, relocate
from donjon.scan.python.evaluator import Evaluator, Frame, FunctionInfo
from donjon.scan.python.hits import CallSite, Hit, Hits
from donjon.scan.python.imports import LOCAL, ImportMap
from donjon.scan.python.leaks import check_returned_secret
from donjon.scan.python.misuse import check_assignment
from donjon.scan.python.modules import bundle_imports
from donjon.scan.python.sinks import check_call
from donjon.scan.python.sinks_files import contained_path
from donjon.scan.python.sinks_net import checked_host
from donjon.scan.python.values import UNKNOWN, Env, Step, Value, constant, join_all

if TYPE_CHECKING:
    from donjon.scan.python.bundle import Bundle

__all__ = ["Interpreter"]

_MAX_DEPTH = 16
#: (function, label pattern, call site as (calling file, line) when labelled).
_MemoKey = tuple[int, tuple[tuple[str, bool, bool, bool, bool], ...], tuple[str, int] | None]
#: Loops nested deeper than this are analysed in one pass, not two (2**depth passes
#: otherwise: a bundle must not be able to stall the deploy gate).
_MAX_LOOP_PASSES_DEPTH = 3
#: Statements interpreted per statement in the module before the analysis gives up.
_BUDGET_PER_STATEMENT = 200
#: Work units (expressions evaluated, parameters bound) per syntax node of the module
#: before the analysis gives up; the standard library needs under 2 per node.
_EVALUATIONS_PER_NODE = 25
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
_CLIENT_ERRORS = frozenset(
    {
        "ValueError",
        "KeyError",
        "TypeError",
        "IndexError",
        "JSONDecodeError",
        "ValidationError",
        "UnicodeDecodeError",
    }
)
_BROAD = frozenset({"Exception", "BaseException"})
_MOCK_MODULES = frozenset({"mock", "unittest.mock"})
#: Calls that never return (they raise or end the process): a guard ending in one is
#: as good as one ending in ``raise`` (``if not ok: abort(403)``).
_NO_RETURN = frozenset(
    {
        "flask.abort",
        "quart.abort",
        "bottle.abort",
        "werkzeug.exceptions.abort",
        "sys.exit",
        "os._exit",
        "os.abort",
    }
)
#: Names of options that turn certificate checks on or off.
_VERIFY_OPTION = re.compile(r"verif|insecure|ssl|tls|cert", re.IGNORECASE)
_CHECK_METHODS = frozenset(
    {"isdigit", "isnumeric", "isdecimal", "isalnum", "isalpha", "isidentifier", "fullmatch"}
)


def _entry_kind(node: ast.FunctionDef | ast.AsyncFunctionDef, handlers: frozenset[str]) -> str:
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


def _handler_aliases(tree: ast.Module, handlers: frozenset[str]) -> frozenset[str]:
    """Functions the manifest's handler names through a module-level alias
    (``handler = _impl``): they are the handler, whatever their parameters are called."""
    return frozenset(
        stmt.value.id
        for stmt in tree.body
        if isinstance(stmt, ast.Assign)
        and isinstance(stmt.value, ast.Name)
        and any(isinstance(t, ast.Name) and t.id in handlers for t in stmt.targets)
    )


def _defaults_to_off(frame: Frame, name: str) -> bool:
    """Whether parameter `name` of the frame's function defaults to False, None or 0."""
    if frame.info is None:
        return False
    args = frame.info.node.args
    positional = args.posonlyargs + args.args
    pairs = list(
        zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
    )
    pairs += [
        (a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None
    ]
    return any(a.arg == name and isinstance(d, ast.Constant) and not d.value for a, d in pairs)


def _is_request_typed(arg: ast.arg) -> bool:
    """A parameter annotated as an HTTP request (``req: func.HttpRequest``)."""
    ann = arg.annotation
    name = ann.attr if isinstance(ann, ast.Attribute) else getattr(ann, "id", None)
    return name in _REQUEST_TYPES


class Interpreter(Evaluator):
    """Analyses one module; findings accumulate in `hits`.

    `rel` is the module's file (relative to the scan root) and `bundle` the bundle it
    belongs to, whose other modules' functions its calls may reach; alone (no bundle),
    calls to other modules are unknown calls."""

    def __init__(
        self,
        tree: ast.Module,
        lines: list[str],
        handlers: frozenset[str],
        *,
        rel: str = "",
        bundle: Bundle | None = None,
    ) -> None:
        super().__init__(ImportMap(tree), Hits(), lines)
        self.tree = tree
        self.handlers = handlers | _handler_aliases(tree, handlers)
        self.rel = rel
        self.bundle = bundle
        self.module_env = Env()
        self.functions: dict[str, FunctionInfo] = {}
        self.call_counts: Counter[str] = Counter()
        self.work = Work()
        self._loop_depth = 0
        #: The tests of the ``if`` statements around the statement being interpreted.
        self._guards: list[ast.expr] = []
        self._memo: dict[_MemoKey, Value] = {}
        self._active: set[_MemoKey] = set()
        self._prepared = False
        #: Per frame, the names bound to a call's result (``r = Repo()``): what class an
        #: instance may be of, for ``r.get(x)``. The module's own frame is `_top`.
        self._instances: dict[Frame, dict[str, ast.expr]] = {}
        self._top = Frame(None)
        imports: list[ast.Import | ast.ImportFrom] = []
        for node in ast.walk(tree):
            self.work.evaluation_limit += _EVALUATIONS_PER_NODE
            if isinstance(node, ast.stmt):
                self.work.statement_limit += _BUDGET_PER_STATEMENT
                if isinstance(node, ast.Import | ast.ImportFrom):
                    imports.append(node)
            elif isinstance(node, ast.Call):
                f = node.func
                self.call_counts[f.id if isinstance(f, ast.Name) else getattr(f, "attr", "")] += 1
        self.bundle_imports = bundle_imports(imports, rel) if bundle is not None else {}
        #: The module's classes and the names of their bases that the module defines.
        self._bases: dict[str, list[str]] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                self._register(stmt, None, self.module_env)
            elif isinstance(stmt, ast.ClassDef):
                for item in stmt.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        self._register(item, stmt.name, self.module_env)
                self._inherit(stmt)

    @property
    def statements_run(self) -> int:
        return self.work.statements

    def charge(self, work: int, line: int) -> None:
        self.work.charge(work, line)

    # -- driving ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Interpret the module's top level once (its globals), before any function of it
        is analysed; a module reached again while it is being prepared (an import cycle)
        is used as far as it got, as Python would."""
        if not self._prepared:
            self._prepared = True
            self.exec_block(self.tree.body, self.module_env, self._top)
            self._class_aliases()

    def run(self) -> list[Hit]:
        """Analyse the module; `ScanError` if it is too complex to analyse in bounded time.

        Within a bundle, other modules' analyses may add findings here later: the
        bundle's findings are read from each module's `hits` once all have run."""
        self.prepare()
        ordered = sorted(self.functions.values(), key=lambda i: (i.entry == "", i.node.lineno))
        for info in ordered:
            if info.entry or not (
                info.node.name.startswith("_") and self.call_counts[info.node.name]
            ):
                self._analyze_entry(info)
        return self.hits.all()

    def instance_class(self, name: str) -> str | None:
        """The class a module-level name is an instance of (``store = Repo()``), by the
        name the class has in this module; None if unknown."""
        self.prepare()
        made = self._instances.get(self._top, {}).get(name)
        return made.id if isinstance(made, ast.Name) else None

    def _class_aliases(self) -> None:
        """Class attributes that refer to a callable (``run = subprocess.run``), kept as
        ``Cls.run`` for ``self.run(...)`` and ``Cls.run(...)``."""
        frame = Frame(None)
        classes = [c for c in self.tree.body if isinstance(c, ast.ClassDef)]
        for cls in classes:
            for stmt in cls.body:
                if isinstance(stmt, ast.Assign) and isinstance(
                    stmt.value, ast.Name | ast.Attribute | ast.Call | ast.Subscript
                ):
                    value = self.eval(stmt.value, self.module_env, frame)
                    for target in stmt.targets:
                        if value.ref is not None and isinstance(target, ast.Name):
                            self.module_env.set(f"{cls.name}.{target.id}", value)

    def _inherit(self, cls: ast.ClassDef) -> None:
        """Methods of the module's own base classes (``class Child(Base)``) that `cls` does
        not override are found as its own: ``Child().run(x)`` analyses ``Base.run``."""
        bases = [b.id for b in cls.bases if isinstance(b, ast.Name) and b.id in self._bases]
        self._bases[cls.name] = bases
        for base in bases:
            for qual, info in list(self.functions.items()):
                owner, _, method = qual.partition(".")
                if owner == base and method:
                    self.functions.setdefault(f"{cls.name}.{method}", info)

    def _register(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, cls: str | None, closure: Env
    ) -> FunctionInfo:
        qual = f"{cls}.{node.name}" if cls else node.name
        info = FunctionInfo(node, qual, cls, closure, _entry_kind(node, self.handlers))
        self.functions.setdefault(qual, info)
        return info

    def _params(self, info: FunctionInfo) -> list[str]:
        args = info.node.args
        names = [a.arg for a in args.posonlyargs + args.args]
        if info.class_name and names and names[0] in ("self", "cls"):
            names = names[1:]
        return names

    def _analyze_entry(self, info: FunctionInfo) -> None:
        names = self._params(info)
        typed = {a.arg for a in info.node.args.args if _is_request_typed(a)}
        values: dict[str, Value] = {}
        line, col = info.node.lineno, info.node.col_offset + 1
        for i, name in enumerate(names):
            if info.entry == "typed":
                tainted = name in typed
            else:
                tainted = info.entry == "route" or (i == 0 and info.entry != "")
            if tainted:
                note = f"'{name}' of {info.node.name}(): data from the caller ({info.entry})"
                values[name] = Value(taint=(Step(line, col, note),))
        self._call_with(info, values, depth=0, site=None)

    def _call_with(
        self,
        info: FunctionInfo,
        values: dict[str, Value],
        depth: int,
        site: tuple[str, int] | None,
    ) -> Value:
        """Analyse `info` with `values` bound to its parameters; its return value.

        Memoised per pattern of labels; with labelled arguments also per call site, so a
        returned value's path starts at this call, not at the first one analysed."""
        names = self._params(info)
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

    # -- the evaluator's hooks ---------------------------------------------------------------
    def check_call(self, site: CallSite, frame: Frame) -> None:
        check_call(site)

    def call_local(self, site: CallSite, env: Env, frame: Frame) -> Value | None:
        # Methods of instances and other modules' functions are followed with event data
        # or exception details in hand (what they could change of the verdict); called
        # with nothing labelled, they are unknown calls, and analysed on their own.
        labelled = any(v.interesting for v in (*site.args, *site.kwargs.values()))
        method = self._method_of_instance(site.node.func, env, frame) if labelled else None
        func = method or site.node.func
        info = self._resolve(func, frame)
        if info is None:
            result = self._call_other(site, func, env, frame) if labelled else None
        else:
            values = self._arguments(info, site, Step(site.line, site.col, self.text(site.line)))
            result = self._call_with(info, values, frame.depth + 1, ("", site.line))
            result = result.step(Step(site.line, site.col, f"returned by {info.node.name}()"))
        receiver = site.receiver
        if method is None or result is None or receiver is None or not receiver.interesting:
            return result
        # Instance attributes are not followed: what the object was built from may come
        # back out of its method (as from an unknown call), beside what the method returns.
        return result.mix(Value(taint=receiver.taint, exc=receiver.passed_on()))

    def _call_other(self, site: CallSite, func: ast.expr, env: Env, frame: Frame) -> Value | None:
        """A call to a function another module of the bundle defines, analysed there."""
        found = self.bundle.resolve(self, func, env) if self.bundle else None
        if found is None:
            return None
        callee, info = found
        moved = replace(
            site,
            args=[relocate(v, self.rel) for v in site.args],
            kwargs={k: relocate(v, self.rel) for k, v in site.kwargs.items()},
        )
        step = Step(site.line, site.col, self.text(site.line), path=self.rel)
        values = callee._arguments(info, moved, step)
        try:
            callee.prepare()
            result = callee._call_with(info, values, frame.depth + 1, (self.rel, site.line))
        except ScanError as e:
            if e.message.startswith(callee.rel + ": "):
                raise
            raise ScanError(f"{callee.rel}: {e.message}", hint=e.hint) from e
        result = relocate(result, callee.rel)
        note = f"returned by {info.node.name}() of {callee.rel}"
        return result.step(Step(site.line, site.col, note))

    def _arguments(self, info: FunctionInfo, site: CallSite, step: Step) -> dict[str, Value]:
        """The values a call binds to `info`'s parameters, each with `step` added."""
        names = self._params(info)
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

    # -- statements --------------------------------------------------------------------------
    def exec_block(self, body: list[ast.stmt], env: Env, frame: Frame) -> bool:
        """Interpret `body` in `env`; False when it never falls through (return, raise...)."""
        return all(self.exec_stmt(stmt, env, frame) for stmt in body)

    def exec_stmt(self, stmt: ast.stmt, env: Env, frame: Frame) -> bool:  # noqa: PLR0912
        self.work.statement(stmt.lineno)
        match stmt:
            case ast.Expr(value=value):
                self.eval(value, env, frame)
                if isinstance(value, ast.Call) and self.imports.qualname(value.func) in _NO_RETURN:
                    return False
            case ast.Assign(targets=targets, value=value):
                for target in targets:
                    check_assignment(
                        target, value, self.imports, self.hits, optional=self._optional(frame)
                    )
                self._assign(targets, value, env, frame)
            case ast.AnnAssign(target=target, value=value) if value is not None:
                self._assign([target], value, env, frame)
            case ast.AugAssign(target=target, op=op, value=value):
                old = self.eval(target, env, frame)
                new = old.mix(self.eval(value, env, frame))
                if isinstance(op, ast.Add | ast.Mod) and not new.const:
                    new = Value(
                        new.taint, new.exc, False, True, old.prefix, old.head, secret=new.secret
                    )
                self.bind(target, new, env, stmt)
            case ast.Return(value=value):
                result = self.eval(value, env, frame) if value is not None else constant()
                frame.returns.append(result)
                self._check_return(result, stmt, frame)
                return False
            case ast.Raise(exc=exc):
                if exc is not None:
                    self.eval(exc, env, frame)
                return False
            case ast.Continue() | ast.Break():
                return False
            case ast.If(test=test, body=body, orelse=orelse):
                return self._if(test, body, orelse, env, frame)
            case (
                ast.For(target=target, iter=source, body=body, orelse=orelse)
                | ast.AsyncFor(target=target, iter=source, body=body, orelse=orelse)
            ):
                items = self.eval(source, env, frame)
                self._loop(body, env, frame, target, Value(items.taint, items.exc, items.const))
                return self.exec_block(orelse, env, frame)
            case ast.While(test=test, body=body, orelse=orelse):
                self.eval(test, env, frame)
                self._loop(body, env, frame, None, UNKNOWN)
                return self.exec_block(orelse, env, frame)
            case ast.With(items=managers, body=body) | ast.AsyncWith(items=managers, body=body):
                for item in managers:
                    entered = self.eval(item.context_expr, env, frame)
                    if item.optional_vars is not None:
                        self.bind(item.optional_vars, entered, env, stmt)
                return self.exec_block(body, env, frame)
            case ast.Try() | ast.TryStar():
                return self._try(stmt, env, frame)
            case ast.Match():
                return self._match(stmt, env, frame)
            case ast.FunctionDef() | ast.AsyncFunctionDef() if frame.info is not None:
                info = FunctionInfo(stmt, stmt.name, None, env, _entry_kind(stmt, self.handlers))
                frame.local_functions[stmt.name] = info
                if info.entry or not self.call_counts[stmt.name]:
                    self._analyze_entry(info)
            case ast.Assert(test=test):
                self.eval(test, env, frame)
        return True

    def _assign(self, targets: list[ast.expr], value: ast.expr, env: Env, frame: Frame) -> None:
        for target in targets:
            if (
                isinstance(target, ast.Tuple | ast.List)
                and isinstance(value, ast.Tuple | ast.List)
                and len(target.elts) == len(value.elts)
                and not any(isinstance(e, ast.Starred) for e in target.elts + value.elts)
            ):
                for t, v in zip(target.elts, value.elts, strict=True):
                    self.bind(t, self.eval(v, env, frame), env, v)
                continue
            self.bind(target, self.eval(value, env, frame), env, value)
            if isinstance(target, ast.Name):
                made = self._instances.setdefault(frame, {})
                if isinstance(value, ast.Call):
                    made[target.id] = value.func
                else:
                    made.pop(target.id, None)

    def _match(self, stmt: ast.Match, env: Env, frame: Frame) -> bool:
        matched = self.eval(stmt.subject, env, frame)
        branches = [(env.copy(), True)]
        for case in stmt.cases:
            branch = env.copy()
            self._capture(case.pattern, matched, branch, stmt)
            if case.guard is not None:
                self.eval(case.guard, branch, frame)
            branches.append((branch, self.exec_block(case.body, branch, frame)))
        return self._merge(branches, env)

    def _capture(self, pattern: ast.pattern, subject: Value, env: Env, at: ast.stmt) -> None:
        """The names a ``case`` pattern captures carry what the matched subject carries."""
        part = Value(subject.taint, subject.exc, subject.const, secret=subject.secret)
        for node in ast.walk(pattern):
            name = None
            if isinstance(node, ast.MatchAs | ast.MatchStar):
                name = node.name
            elif isinstance(node, ast.MatchMapping):
                name = node.rest
            if name is not None:
                env.set(name, part.step(Step(at.lineno, at.col_offset + 1, self.text(at.lineno))))

    def bind(self, target: ast.expr, value: Value, env: Env, at: ast.stmt | ast.expr) -> None:
        """Store `value` into an assignment target."""
        value = value.step(Step(at.lineno, at.col_offset + 1, self.text(at.lineno)))
        match target:
            case ast.Name(id=name):
                env.set(name, value)
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                for elt in elts:
                    self.bind(
                        elt,
                        Value(value.taint, value.exc, value.const, secret=value.secret),
                        env,
                        at,
                    )
            case ast.Starred(value=inner):
                self.bind(inner, value, env, at)
            case ast.Attribute():
                key = ast.unparse(target)
                env.set(key, value)
            case ast.Subscript(value=container):
                key = ast.unparse(container)
                old = env.get(key)
                env.set(key, value if old is None else old.mix(value))

    def _check_return(self, result: Value, stmt: ast.Return, frame: Frame) -> None:
        if frame.info is None or not frame.info.entry:
            return
        check_returned_secret(result, stmt, frame.info.node.name, self.hits)
        if result.exc is None:
            return
        weak = result.exc[0].weak
        step = Step(stmt.lineno, stmt.col_offset + 1, "returned to the caller")
        self.hits.add(
            Hit(
                "DJ-PY-010",
                stmt.lineno,
                stmt.col_offset + 1,
                Confidence.LOW if weak else Confidence.HIGH,
                f"{frame.info.node.name}() returns exception details to its caller",
                trace=(*result.exc, step),
            )
        )

    # -- control flow -------------------------------------------------------------------------
    def _merge(self, branches: list[tuple[Env, bool]], target: Env) -> bool:
        live = [e for e, falls in branches if falls]
        if not live:
            return False
        target.vars = dict(live[0].vars)
        for other in live[1:]:
            target.merge(other)
        return True

    def _if(
        self, test: ast.expr, body: list[ast.stmt], orelse: list[ast.stmt], env: Env, frame: Frame
    ) -> bool:
        self.eval(test, env, frame)
        yes, no = env.copy(), env.copy()
        checked, negated = self._checked_name(test, env)
        if checked is not None:
            safe = no if negated else yes
            safe.set(checked, (safe.get(checked) or UNKNOWN).untainted())
        self._guards.append(test)
        try:
            falls_yes = self.exec_block(body, yes, frame)
            falls_no = self.exec_block(orelse, no, frame)
        finally:
            self._guards.pop()
        return self._merge([(yes, falls_yes), (no, falls_no)], env)

    def _optional(self, frame: Frame) -> str | None:
        """The caller's option a TLS setting here depends on: a parameter of the function
        (or an attribute of ``self``) named for verification that an enclosing ``if``
        tests (``elif verify is False: ctx.check_hostname = False``); None otherwise."""
        for test in self._guards:
            for node in ast.walk(test):
                name = None
                if isinstance(node, ast.Name) and node.id in frame.params:
                    if _defaults_to_off(frame, node.id):
                        continue  # ``def f(verify=False)``: off unless the caller says
                    name = node.id
                elif (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                ):
                    name = node.attr
                if name is not None and _VERIFY_OPTION.search(name):
                    return name
        return None

    def _checked_name(self, test: ast.expr, env: Env) -> tuple[str | None, bool]:
        """A name the test validates (``x in ALLOWED``, ``x.isdigit()``), and if negated."""
        negated = False
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            test, negated = test.operand, True
        if (contained := contained_path(test, env, self.imports)) is not None:
            return contained[0], negated != contained[1]
        if (host := checked_host(test, self.imports)) is not None and self._is_allowlist(
            host[1], env
        ):
            return host[0], negated != host[2]
        match test:
            case ast.Compare(
                left=ast.Name(id=name), ops=[ast.In() | ast.NotIn() as op], comparators=[allowed]
            ):
                if self._is_allowlist(allowed, env):
                    return name, negated != isinstance(op, ast.NotIn)
            case ast.Call(func=ast.Attribute(value=ast.Name(id=name), attr=attr)) if (
                attr in _CHECK_METHODS
            ):
                return name, negated
            case ast.Call(func=ast.Attribute(attr="fullmatch"), args=[*_, ast.Name(id=name)]):
                return name, negated
        return None, False

    def _is_allowlist(self, node: ast.expr, env: Env) -> bool:
        """A fixed collection: a literal of constants, or a name bound to one (or UPPER_CASE)."""
        if isinstance(node, ast.Name):
            known = env.get(node.id)
            return node.id.isupper() or (known is not None and known.const)
        if isinstance(node, ast.Set | ast.List | ast.Tuple):
            return all(isinstance(e, ast.Constant) for e in node.elts)
        if isinstance(node, ast.Dict):
            return all(isinstance(k, ast.Constant) for k in node.keys)
        return False

    def _loop(
        self, body: list[ast.stmt], env: Env, frame: Frame, target: ast.expr | None, item: Value
    ) -> None:
        inner = env.copy()
        self._loop_depth += 1
        try:
            for _ in range(2 if self._loop_depth <= _MAX_LOOP_PASSES_DEPTH else 1):
                if target is not None:
                    self.bind(target, item, inner, target)
                looped = inner.copy()
                self.exec_block(body, looped, frame)
                inner.merge(looped)
        finally:
            self._loop_depth -= 1
        env.merge(inner)

    def _try(self, stmt: ast.Try | ast.TryStar, env: Env, frame: Frame) -> bool:
        before = env.copy()
        falls = self.exec_block(stmt.body, env, frame)
        if falls:
            falls = self.exec_block(stmt.orelse, env, frame)
        branches = [(env.copy(), falls)]
        for handler in stmt.handlers:
            branch = before.copy()
            branch.merge(env)
            if handler.name:
                branch.set(handler.name, self._caught(handler))
            branches.append((branch, self.exec_block(handler.body, branch, frame)))
        falls = self._merge(branches, env)
        if stmt.finalbody:
            return self.exec_block(stmt.finalbody, env, frame) and falls
        return falls

    def _caught(self, handler: ast.ExceptHandler) -> Value:
        kinds = handler.type
        names = [
            n.attr if isinstance(n, ast.Attribute) else getattr(n, "id", "")
            for n in (kinds.elts if isinstance(kinds, ast.Tuple) else [kinds])
        ]
        weak = bool(names) and all(n in _CLIENT_ERRORS for n in names)
        label = "any exception" if not names or _BROAD & set(names) else ", ".join(names)
        note = f"exception '{handler.name}' ({label}) caught"
        step = Step(handler.lineno, handler.col_offset + 1, note, weak=weak)
        return Value(exc=(step,), exc_raw=True)
