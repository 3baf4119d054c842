"""Taint from the event: paths through assignments, containers, formatting and calls."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from donjon.scan import Confidence, Finding, ScanError, scan_path
from donjon.scan.python.interpreter import Interpreter


def _scan(tmp_path: Path, code: str, name: str = "main.py") -> list[Finding]:
    target = tmp_path / name
    target.write_text(textwrap.dedent(code))
    return list(scan_path(target).findings)


def test_path_through_containers_formatting_and_a_helper(tmp_path: Path) -> None:
    """The reported path names each hop from the event to the sink, across a call."""
    [finding] = _scan(
        tmp_path,
        """
        import subprocess

        def handler(event, context):
            body = event["body"]
            opts = {"file": body["file"]}
            line = "convert {} out.png".format(opts["file"])
            return _run(line)

        def _run(command):
            return subprocess.run(command, shell=True)
    """,
    )
    assert finding.rule_id == "DJ-PY-001"
    assert finding.confidence is Confidence.HIGH
    steps = [(s.location.line, s.description) for s in finding.taint_path]
    assert steps[0][0] == 4 and "'event' of handler()" in steps[0][1]
    assert [line for line, _ in steps] == [4, 5, 6, 7, 8, 11]
    assert steps[3][1] == 'line = "convert {} out.png".format(opts["file"])'
    assert steps[4][1] == "return _run(line)"
    assert finding.location.line == 11


def test_reassigning_a_constant_clears_taint(tmp_path: Path) -> None:
    """Flow-sensitive: a variable overwritten with a constant no longer carries the event."""
    assert (
        _scan(
            tmp_path,
            """
        import os

        def handler(event, context):
            cmd = event["cmd"]
            cmd = "uptime"
            os.system(cmd)
    """,
        )
        == []
    )


def test_a_branch_that_may_taint_is_reported(tmp_path: Path) -> None:
    """Joins at merges: tainted on one path is tainted after the if."""
    [finding] = _scan(
        tmp_path,
        """
        import os

        def handler(event, context):
            cmd = "uptime"
            if event.get("custom"):
                cmd = event["custom"]
            os.system(cmd)
    """,
    )
    assert finding.confidence is Confidence.HIGH


def test_helper_returning_event_data_taints_its_result(tmp_path: Path) -> None:
    """A module function's return value carries what its arguments carried."""
    [finding] = _scan(
        tmp_path,
        """
        def pick(event):
            return event["expr"]

        def handler(event, context):
            return eval(pick(event))
    """,
    )
    assert finding.rule_id == "DJ-PY-002"
    assert any("returned by pick()" in s.description for s in finding.taint_path)


def test_flask_request_data_is_a_source(tmp_path: Path) -> None:
    """HTTP request bodies, headers and query strings are sources in web apps too."""
    [finding] = _scan(
        tmp_path,
        """
        import sqlite3
        from flask import Flask, request

        app = Flask(__name__)

        @app.route("/users")
        def users():
            name = request.args.get("name")
            return sqlite3.connect("x.db").execute(f"SELECT * FROM u WHERE n = '{name}'")
    """,
    )
    assert finding.rule_id == "DJ-PY-003"
    assert finding.confidence is Confidence.HIGH
    assert "request.args" in finding.taint_path[0].description


def test_http_trigger_fields_are_event_data(tmp_path: Path) -> None:
    """Headers, query and body of an http trigger's event all reach sinks as taint."""
    findings = _scan(
        tmp_path,
        """
        import os, pickle

        def handler(event, context):
            os.system("echo " + event["headers"]["x-user"])
            os.system("echo " + event["query"]["q"])
            return pickle.loads(event["body"].encode())
    """,
    )
    assert [(f.rule_id, f.confidence) for f in findings] == [
        ("DJ-PY-001", Confidence.HIGH),
        ("DJ-PY-001", Confidence.HIGH),
        ("DJ-PY-004", Confidence.HIGH),
    ]


def test_allowlist_check_sanitizes(tmp_path: Path) -> None:
    """After ``if x not in ALLOWED: return``, x is one of the allowed constants."""
    assert (
        _scan(
            tmp_path,
            """
        import os
        ALLOWED = ("df", "uptime")

        def handler(event, context):
            tool = event["tool"]
            if tool not in ALLOWED:
                raise ValueError("no")
            os.system(tool)
    """,
        )
        == []
    )


def test_deep_and_recursive_code_terminates(tmp_path: Path) -> None:
    """Recursion and long call chains end; the taint still arrives."""
    [finding] = _scan(
        tmp_path,
        """
        import os

        def a(x, n):
            return x if n == 0 else a(x, n - 1)

        def handler(event, context):
            value = event["v"]
            for _ in range(3):
                value = a(value, 10)
            os.system(value)
    """,
    )
    assert finding.confidence is Confidence.HIGH


def test_nested_loops_are_analysed_in_bounded_work() -> None:
    """Sixty nested loops (2**60 passes if each ran twice) stay a few passes per statement."""
    depth = 60
    src = "\n".join("    " * i + f"for x{i} in event:" for i in range(depth))
    src += "\n" + "    " * depth + "os.system(x59)\n"
    code = "import os\ndef handler(event, context):\n" + textwrap.indent(src, "    ")
    interpreter = Interpreter(ast.parse(code), code.splitlines(), frozenset())
    [hit] = interpreter.run()
    assert hit.rule_id == "DJ-PY-001" and hit.confidence is Confidence.HIGH
    statements = sum(isinstance(n, ast.stmt) for n in ast.walk(interpreter.tree))
    assert interpreter.statements_run < 10 * statements


def test_code_too_deep_to_analyse_fails_closed(tmp_path: Path) -> None:
    """The gate refuses what it cannot analyse instead of passing it unexamined."""
    target = tmp_path / "deep.py"
    target.write_text("import os\nx = " + " + ".join(["a"] * 900) + "\nos.system(x)\n")
    with pytest.raises(ScanError, match=r"deep\.py: too deeply nested to analyse"):
        scan_path(target)


def test_request_typed_parameters_are_sources(tmp_path: Path) -> None:
    """Azure-style ``req: func.HttpRequest`` parameters carry caller data; others do not."""
    findings = _scan(
        tmp_path,
        """
        import os
        import azure.functions as func

        def main(req: func.HttpRequest, setting: str):
            os.system("echo " + req.params.get("name"))
            os.system(setting)
    """,
    )
    assert [(f.location.line, f.confidence) for f in findings] == [
        (6, Confidence.HIGH),
        (7, Confidence.LOW),
    ]
