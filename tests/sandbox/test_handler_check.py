"""The handler check the worker runs before a version serves: exact for Python callables."""

from __future__ import annotations

import functools
import types
from typing import Any

import pytest

from donjon.sandbox.runtime.handler_check import (
    HandlerNotUsable,
    check_handler,
    positional_problem,
)


def _two(event: Any, context: Any) -> None: ...
def _one(event: Any) -> None: ...
def _three(event: Any, context: Any, extra: Any) -> None: ...
def _defaulted(event: Any, context: Any, extra: Any = None) -> None: ...
def _star(*args: Any) -> None: ...
def _keyword(event: Any, context: Any, *, must: Any) -> None: ...


class _Callable:
    def __call__(self, event: Any, context: Any) -> None: ...


class _Narrow:
    def __call__(self, event: Any) -> None: ...

    def method(self, event: Any, context: Any) -> None: ...


@pytest.mark.parametrize(
    "handler",
    [_two, _defaulted, _star, _Callable(), _Narrow().method, functools.partial(_three, 1), print],
    ids=["two", "defaulted", "star", "object", "method", "partial", "builtin"],
)
def test_callables_taking_event_and_context_pass(handler: Any) -> None:
    """Functions, defaults, *args, callable objects and bound methods; unknown shapes pass."""
    assert positional_problem(handler) == ""


@pytest.mark.parametrize(
    ("handler", "said"),
    [
        (_one, "takes 1 positional argument"),
        (_three, "needs 3 positional arguments"),
        (_keyword, "has 1 keyword-only argument(s) without a default"),
        (_Narrow(), "takes 1 positional argument"),
    ],
    ids=["one", "three", "keyword-only", "narrow-object"],
)
def test_wrong_arity_is_named(handler: Any, said: str) -> None:
    """A callable that handler(event, context) cannot call says why."""
    assert positional_problem(handler) == said


def test_missing_and_not_callable_handlers_are_refused() -> None:
    """A module without the handler, or with a value in its place, is refused with the name."""
    with pytest.raises(HandlerNotUsable, match="main defines no 'handler'"):
        check_handler(types.SimpleNamespace(), "main", "handler")
    with pytest.raises(HandlerNotUsable, match=r"main\.handler is a str, not a function"):
        check_handler(types.SimpleNamespace(handler="x"), "main", "handler")
    with pytest.raises(HandlerNotUsable, match=r"called as handler\(event, context\)"):
        check_handler(types.SimpleNamespace(handler=_one), "main", "handler")
    assert check_handler(types.SimpleNamespace(handler=_two), "main", "handler") is _two
