"""The analysis holds bounded values and does bounded work, whatever constants a bundle writes."""

from __future__ import annotations

import ast
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from donjon.scan import ScanError, scan_path
from donjon.scan.python.interpreter import Interpreter
from donjon.scan.python.values import MAX_HEAD_DEPTH, MAX_PREFIX, Value, constant

#: Far above what analysing a few hundred bytes of code should allocate, far below what
#: the attacks below would (2 GiB for the doubling string).
_PEAK_BYTES = 32 << 20


def _analyse(code: str) -> Interpreter:
    tree = ast.parse(code)
    interp = Interpreter(tree, code.splitlines(), frozenset({"handler"}))
    interp.run()
    return interp


def _peak(code: str) -> tuple[Interpreter, int]:
    tracemalloc.start()
    try:
        interp = _analyse(code)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return interp, peak


def test_doubling_a_string_28_times_keeps_the_value_bounded() -> None:
    """``x = x + x`` 28 times (a 2 GiB string at run time) leaves a bounded known prefix."""
    code = 'x = "aaaaaaaa"\n' + "x = x + x\n" * 28
    interp, peak = _peak(code)
    x = interp.module_env.get("x")
    assert x is not None and x.const
    assert x.prefix == "a" * MAX_PREFIX
    assert peak < _PEAK_BYTES, f"peak {peak} bytes"


def test_doubling_through_fstrings_and_paths_is_bounded() -> None:
    """The other ways text is joined (f-strings, os.path.join, /) are bounded the same way."""
    code = (
        textwrap.dedent("""
        import os
        a = "/tmp/x"
        b = "/tmp/y"
        c = "/tmp/z"
    """)
        + 'a = f"{a}{a}"\nb = os.path.join(b, b)\nc = c / c\n' * 40
    )
    interp, peak = _peak(code)
    for name in "abc":
        value = interp.module_env.get(name)
        assert value is not None and value.prefix is not None
        assert len(value.prefix) <= MAX_PREFIX
    assert peak < _PEAK_BYTES, f"peak {peak} bytes"


def test_nesting_a_list_in_itself_keeps_the_value_shallow() -> None:
    """``x = [x]`` repeated keeps at most MAX_HEAD_DEPTH levels of known first items."""
    interp = _analyse('x = "ls"\n' + "x = [x]\n" * 500)
    x = interp.module_env.get("x")
    depth = 0
    while x is not None:
        depth, x = depth + 1, x.head
    assert depth <= MAX_HEAD_DEPTH


def test_a_bounded_value_is_still_judged_soundly(tmp_path: Path) -> None:
    """A command list whose first item fell past the depth bound is judged by its whole taint."""
    deep: Value = constant("ls")
    for _ in range(MAX_HEAD_DEPTH + 3):
        deep = Value(const=True, head=deep)
    assert deep.head is not None  # still some knowledge, bounded
    code = (
        textwrap.dedent("""
        import subprocess

        def handler(event, context):
            cmd = [event["program"]]
    """)
        + "    cmd = [cmd]\n" * (MAX_HEAD_DEPTH + 2)
        + "    subprocess.run(cmd)\n"
    )
    (tmp_path / "main.py").write_text(code)
    [finding] = scan_path(tmp_path / "main.py").findings
    assert finding.rule_id == "DJ-PY-001"


@pytest.mark.slow  # runs the analysis until its work budget is spent
def test_an_expression_heavy_module_fails_closed(tmp_path: Path) -> None:
    """Work is bounded: a helper with a large body analysed from many call sites stops the
    scan with a clear error instead of running for minutes."""
    body = ", ".join(f"v{i}" for i in range(500))
    params = ", ".join(f"v{i}=0" for i in range(500))
    calls = "\n".join(f"    r{i} = _f(event, event, event)" for i in range(1500))
    code = (
        f"def _f(a, b, c, {params}):\n    return [a, b, c, {body}]\n\n"
        f"def handler(event, context):\n{calls}\n"
    )
    (tmp_path / "main.py").write_text(code)
    with pytest.raises(ScanError, match="too complex to analyse"):
        scan_path(tmp_path / "main.py")


_SHELL_HANDLER = 'import os\n\ndef handler(event, context):\n    os.system(event["c"])\n'


def test_python_too_large_to_read_fails_the_scan(tmp_path: Path) -> None:
    """A module padded past the file limit is an error, not a file skipped in silence."""
    (tmp_path / "handler.py").write_text(_SHELL_HANDLER + "#" + "x" * (2 << 20) + "\n")
    with pytest.raises(ScanError, match="more than the scanner reads"):
        scan_path(tmp_path)


def test_python_in_a_declared_encoding_is_analysed(tmp_path: Path) -> None:
    """A latin-1 module with its coding line is read as Python reads it, and checked."""
    source = "# -*- coding: latin-1 -*-\n# caf\xe9\n" + _SHELL_HANDLER
    (tmp_path / "handler.py").write_bytes(source.encode("latin-1"))
    report = scan_path(tmp_path)
    assert [f.rule_id for f in report.findings] == ["DJ-PY-001"]
