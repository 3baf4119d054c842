"""The abstract values of the taint analysis and the variable environment.

A `Value` says what the analysis knows about what an expression evaluates to:
whether it carries event data (`taint`) or exception details (`exc`), each with
the trace of steps it took; whether it is built only from literals or sanitized
values, so that it cannot carry an injected payload (`const`); whether it is a
string assembled from non-constant parts (`built`); its known
leading text (`prefix`); for sequences, what is known of the first item
(`head`, which tells ``["convert", user_file]`` from ``[user_program, ...]``); and
whether its exception label comes only from exception objects themselves
(`exc_raw`): passing ``e`` to some function is not disclosing it, ``str(e)`` is;
what module or callable it refers to, when known (`ref`); whether it carries a
secret read from the environment, the vault or a secrets service (`secret`, see
`leaks.py`), which only text-preserving operations pass on; what kind of object it
is, where a sink needs to know (`kind`: an HTTP client session, a pathlib path, a
normalised path; see python/kinds.py); and whether its event data is confined to
single file-name components (`confined`: it went through ``os.path.basename``), which
makes it safe as part of a path and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from donjon.scan.python.refs import Ref

__all__ = [
    "HOLDING_BUILTINS",
    "MAX_HEAD_DEPTH",
    "MAX_PREFIX",
    "UNKNOWN",
    "Env",
    "Step",
    "Trace",
    "Value",
    "constant",
    "join_all",
]

#: Builtins whose result holds what their arguments held (the text, the items): a
#: label on an argument stays on the result. The rules extend this with their own.
HOLDING_BUILTINS = frozenset(
    {
        "str",
        "repr",
        "format",
        "bytes",
        "list",
        "tuple",
        "dict",
        "set",
        "frozenset",
        "sorted",
        "reversed",
    }
)
_MAX_TRACE = 24
#: Bounds on what one abstract value may hold. A bundle chooses its own constants, so
#: nothing it writes may make the analysis hold more than this (``x = x + x`` 28 times
#: would otherwise build a 2 GiB prefix). Past a bound the value knows less, never
#: something wrong: a prefix of the known prefix is still a prefix, and a sequence
#: with no known first item is judged by everything it holds (the stricter reading).
MAX_PREFIX = 256
MAX_HEAD_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Step:
    """One hop of tainted data: where, and what happened there."""

    line: int
    col: int
    text: str
    #: On the first step of an exception trace: the exception is a client error by
    #: design (ValueError, a validation error), so returning its message is less likely
    #: to leak internals.
    weak: bool = False
    #: The file the step is in, once its value has crossed into another module of the
    #: bundle (python/bundle.py); "" for the module being analysed.
    path: str = ""


Trace = tuple[Step, ...]


def _extend(trace: Trace | None, step: Step) -> Trace | None:
    if trace is None:
        return None
    if trace and trace[-1] == step:
        return trace
    if len(trace) >= _MAX_TRACE:
        return (*trace[: _MAX_TRACE // 2], *trace[-(_MAX_TRACE // 2) + 1 :], step)
    return (*trace, step)


def _common_prefix(a: str, b: str) -> str | None:
    """The longest text both strings start with (character-wise, not path-wise)."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n] or None


def _shorter(a: Trace | None, b: Trace | None) -> Trace | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if len(a) <= len(b) else b


def _head_depth(value: Value) -> int:
    """How many first items nest below `value`, counting it (at most MAX_HEAD_DEPTH + 1)."""
    depth = 1
    head = value.head
    while head is not None and depth <= MAX_HEAD_DEPTH:
        depth += 1
        head = head.head
    return depth


@dataclass(frozen=True, slots=True)
class Value:
    """What is known about one runtime value."""

    taint: Trace | None = None
    exc: Trace | None = None
    const: bool = False
    built: bool = False
    prefix: str | None = None
    head: Value | None = None
    exc_raw: bool = False
    #: What the value is known to refer to: a module or callable reached through an
    #: alias, getattr, __import__... (``run = subprocess.run``); see refs.py.
    ref: Ref | None = None
    secret: Trace | None = None
    kind: str | None = None
    confined: bool = False

    def __post_init__(self) -> None:
        if self.prefix is not None and len(self.prefix) > MAX_PREFIX:
            object.__setattr__(self, "prefix", self.prefix[:MAX_PREFIX])
        if self.head is not None and _head_depth(self.head) >= MAX_HEAD_DEPTH:
            object.__setattr__(self, "head", None)

    @property
    def interesting(self) -> bool:
        return self.taint is not None or self.exc is not None or self.secret is not None

    def join(self, other: Value) -> Value:
        """The value that may be either `self` or `other` (a merge of paths)."""
        if self is other:
            return self
        prefix = None
        if self.prefix is not None and other.prefix is not None:
            prefix = _common_prefix(self.prefix, other.prefix)
        head = None
        if self.head is not None and other.head is not None:
            head = self.head.join(other.head)
        return Value(
            taint=_shorter(self.taint, other.taint),
            exc=_shorter(self.exc, other.exc),
            const=self.const and other.const,
            built=self.built or other.built,
            prefix=prefix,
            head=head,
            exc_raw=self._raw_with(other),
            ref=_join_refs(self.ref, other.ref),
            secret=_shorter(self.secret, other.secret),
            kind=self.kind if self.kind == other.kind else None,
            confined=self._confined_with(other),
        )

    def _raw_with(self, other: Value) -> bool:
        """Whether a combination's exception label still comes only from exception objects."""
        labelled = [v for v in (self, other) if v.exc is not None]
        return bool(labelled) and all(v.exc_raw for v in labelled)

    def _confined_with(self, other: Value) -> bool:
        """Whether a combination's event data is still all in confined parts."""
        tainted = [v for v in (self, other) if v.taint is not None]
        return bool(tainted) and all(v.confined for v in tainted)

    def mix(self, other: Value) -> Value:
        """A value derived from both (an operation on two operands): labels of either."""
        return Value(
            taint=_shorter(self.taint, other.taint),
            exc=_shorter(self.exc, other.exc),
            const=self.const and other.const,
            built=self.built or other.built,
            exc_raw=self._raw_with(other),
            secret=_shorter(self.secret, other.secret),
            confined=self._confined_with(other),
        )

    def step(self, step: Step) -> Value:
        """The same value, with `step` added to the traces it carries."""
        if not self.interesting:
            return self
        return replace(
            self,
            taint=_extend(self.taint, step),
            exc=_extend(self.exc, step),
            secret=_extend(self.secret, step),
        )

    def untainted(self) -> Value:
        """What a sanitizer (int(), shlex.quote(), an allowlist check...) leaves: a safe value."""
        return Value(const=True)

    def without_exc(self) -> Value:
        return replace(self, exc=None, exc_raw=False)

    def passed_on(self) -> Trace | None:
        """The exception label that survives being passed to an unknown function: text
        made from an exception does, the exception object itself does not."""
        return None if self.exc_raw else self.exc


def _join_refs(a: Ref | None, b: Ref | None) -> Ref | None:
    if a is not None:
        return a.join(b)
    return b.join(a) if b is not None else None


UNKNOWN = Value()


def constant(text: str | None = None) -> Value:
    """A value built only from literals; `text` when it is a known string."""
    return Value(const=True, prefix=text)


def join_all(values: list[Value] | tuple[Value, ...], *, empty: Value | None = None) -> Value:
    """The `mix` of all `values`; `empty` (a constant) if there are none."""
    if not values:
        return empty if empty is not None else constant()
    out = values[0]
    for v in values[1:]:
        out = out.mix(v)
    return out


class Env:
    """Variables of one scope, flow-sensitive, falling back to an enclosing scope."""

    __slots__ = ("parent", "vars")

    def __init__(self, parent: Env | None = None, variables: dict[str, Value] | None = None):
        self.parent = parent
        self.vars: dict[str, Value] = variables if variables is not None else {}

    def get(self, name: str) -> Value | None:
        env: Env | None = self
        while env is not None:
            found = env.vars.get(name)
            if found is not None:
                return found
            env = env.parent
        return None

    def set(self, name: str, value: Value) -> None:
        self.vars[name] = value

    def copy(self) -> Env:
        return Env(self.parent, dict(self.vars))

    def merge(self, other: Env) -> None:
        """Make this env the join of itself and `other` (both from the same starting point)."""
        for name, value in other.vars.items():
            mine = self.vars.get(name)
            self.vars[name] = value if mine is None else mine.join(value)
