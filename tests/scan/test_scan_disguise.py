"""Disguised sinks: what a value refers to survives the ways code hides it, at bounded cost."""

from __future__ import annotations

import ast
import textwrap

from donjon.scan.model import Confidence
from donjon.scan.python.hits import Hit
from donjon.scan.python.interpreter import Interpreter


def _hits(code: str) -> list[Hit]:
    code = textwrap.dedent(code)
    return Interpreter(ast.parse(code), code.splitlines(), frozenset({"handler"})).run()


def _found(code: str) -> set[tuple[str, int, Confidence]]:
    return {(h.rule_id, h.line, h.confidence) for h in _hits(code)}


def test_lambdas_calling_lambdas_cost_their_call_sites_not_powers_of_them() -> None:
    """40 lambdas each calling the one before twice (2**40 calls when run) stay in budget."""
    lines = ["import os", "f0 = lambda x: x"]
    lines += [f"f{i} = lambda x: f{i - 1}(f{i - 1}(x))" for i in range(1, 40)]
    lines += ["def handler(event, context):", "    os.system(f39(event['a']))"]
    assert _found("\n".join(lines) + "\n") == {("DJ-PY-001", 43, Confidence.HIGH)}


def test_a_recursive_lambda_is_analysed_once() -> None:
    """A lambda that calls itself ends: its result derives from its arguments."""
    code = """
        import os
        loop = lambda c: loop(c)
        def handler(event, context):
            os.system(loop(event["c"]))
    """
    assert _found(code) == {("DJ-PY-001", 5, Confidence.HIGH)}


def test_an_alias_that_one_branch_points_at_a_sink_is_checked_as_the_sink() -> None:
    """``f = print``, ``if x: f = os.system``, ``f(cmd)``: the stricter reading is checked."""
    code = """
        import os
        def handler(event, context):
            f = print
            if event.get("shell"):
                f = os.system
            f(event["cmd"])
    """
    assert _found(code) == {("DJ-PY-001", 7, Confidence.HIGH)}
    harmless = """
        import json
        def handler(event, context):
            f = print
            if event.get("json"):
                f = json.dumps
            f(event["cmd"])
    """
    assert _found(harmless) == set()


def test_a_parameter_shadowing_a_module_is_not_the_module() -> None:
    """``def run(os): os.system(x)`` calls the argument, whatever it is, not the module."""
    code = """
        import subprocess
        def handler(event, context):
            runner = subprocess.run
            runner = event["runner"]
            runner(event["cmd"], shell=True)
    """
    assert _found(code) == set()


def test_a_chain_of_partials_keeps_a_bounded_reference() -> None:
    """``f = partial(f, 1)`` 500 times binds no more than a bounded number of arguments."""
    code = "import functools, subprocess\nf = subprocess.run\n"
    code += "f = functools.partial(f, 'x')\n" * 500
    code += "def handler(event, context):\n    f(event['cmd'], shell=True)\n"
    interp = Interpreter(ast.parse(code), code.splitlines(), frozenset({"handler"}))
    interp.run()
    f = interp.module_env.get("f")
    assert f is not None and f.ref is None  # past the bound: dropped, never huge
