"""Statements: assignments, returns and the control flow of one function, interpreted.

Flow-sensitive: branches are analysed separately and joined where they meet again
(a branch that returns or raises does not join); loops run twice (once when nested
deeper than `_MAX_LOOP_PASSES_DEPTH`); a test that validates a name (``x in ALLOWED``,
``x.isdigit()``, a path kept under its base, a host checked against an allowlist) leaves
it untainted in the branch where it passed. Calls are the subclass's business (calls.py).
"""

from __future__ import annotations

import ast
import re
from abc import abstractmethod

from donjon.scan.model import Confidence
from donjon.scan.python.bundle import Work
from donjon.scan.python.evaluator import Evaluator
from donjon.scan.python.frames import Frame
from donjon.scan.python.hits import Hit, Hits
from donjon.scan.python.imports import ImportMap
from donjon.scan.python.leaks import check_returned_secret
from donjon.scan.python.misuse import check_assignment
from donjon.scan.python.sinks_files import contained_path
from donjon.scan.python.sinks_net import checked_host
from donjon.scan.python.values import UNKNOWN, Env, Step, Value, constant

__all__ = ["StatementInterpreter"]

#: Loops nested deeper than this are analysed in one pass, not two (2**depth passes
#: otherwise: a bundle must not be able to stall the deploy gate).
_MAX_LOOP_PASSES_DEPTH = 3
#: Names of options that turn certificate checks on or off.
_VERIFY_OPTION = re.compile(r"verif|insecure|ssl|tls|cert", re.IGNORECASE)
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
_CHECK_METHODS = frozenset(
    {"isdigit", "isnumeric", "isdecimal", "isalnum", "isalpha", "isidentifier", "fullmatch"}
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


class StatementInterpreter(Evaluator):
    """Interprets statements; `work` counts them (and the expressions evaluated) against
    the module's, or the bundle's, budget."""

    def __init__(self, imports: ImportMap, hits: Hits, lines: list[str]) -> None:
        super().__init__(imports, hits, lines)
        self.work = Work()
        self._loop_depth = 0
        #: Per frame, the names bound to a call's result (``r = Repo()``): what class an
        #: instance may be of, for ``r.get(x)``. The module's own frame is `_top`.
        self._instances: dict[Frame, dict[str, ast.expr]] = {}
        self._top = Frame(None)
        #: The tests of the ``if`` statements around the statement being interpreted.
        self._guards: list[ast.expr] = []

    @property
    def statements_run(self) -> int:
        return self.work.statements

    def charge(self, work: int, line: int) -> None:
        self.work.charge(work, line)

    @abstractmethod
    def define_function(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, env: Env, frame: Frame
    ) -> None:
        """A function defined inside the one being interpreted (a closure over `env`)."""

    # -- statements --------------------------------------------------------------------------
    def exec_block(self, body: list[ast.stmt], env: Env, frame: Frame) -> bool:
        """Interpret `body` in `env`; False when it never falls through (return, raise...)."""
        return all(self.exec_stmt(stmt, env, frame) for stmt in body)

    def exec_stmt(self, stmt: ast.stmt, env: Env, frame: Frame) -> bool:  # noqa: PLR0912 - one case per statement kind
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
                self.define_function(stmt, env, frame)
            case ast.Assert(test=test):
                self.eval(test, env, frame)
        return True

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
