"""Code injection (DJ-PY-002) is graded by what reaches the code: event data is an
error, a value of unknown origin a warning, a literal nothing (the corpus checks which
lines are found; these tests check the grades)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from donjon.scan import Confidence, Finding, ScanPolicy, Severity, render_sarif, scan_path

CORPUS = Path(__file__).parent / "corpus"
_WARNING = "gets code that is not a literal"


def _scan(tmp_path: Path, code: str) -> list[Finding]:
    target = tmp_path / "main.py"
    target.write_text(textwrap.dedent(code))
    return [f for f in scan_path(target).findings if f.rule_id == "DJ-PY-002"]


def test_corpus_event_data_is_an_error_and_untraced_code_a_warning() -> None:
    """In the corpus, event data reaching code is high severity with its path, and code
    of unknown origin is medium severity with the warning's own message."""
    report = scan_path(CORPUS / "DJ-PY-002" / "positive")
    by_file: dict[str, list[Finding]] = {}
    for f in report.findings:
        by_file.setdefault(f.location.path, []).append(f)
    tainted, untraced = by_file["formats.py"], by_file["untraced.py"]
    assert len(tainted) == 15 and len(untraced) == 5
    for f in tainted:
        assert (f.severity, f.confidence) == (Severity.HIGH, Confidence.HIGH), f
        assert f.taint_path and f.message.startswith("event data reaches "), f
    for f in untraced:
        assert (f.severity, f.confidence) == (Severity.MEDIUM, Confidence.MEDIUM), f
        assert _WARNING in f.message and not f.taint_path, f


def test_sarif_levels_are_error_for_event_data_and_warning_otherwise(tmp_path: Path) -> None:
    """SARIF shows the tainted eval as an error and the untraced one as a warning; the
    default gate blocks only the first."""
    (tmp_path / "main.py").write_text(
        textwrap.dedent(
            """
            def handler(event, context):
                return eval(event["expr"])

            def helper(expr):
                return eval(expr)
            """
        )
    )
    report = scan_path(tmp_path)
    sarif = json.loads(render_sarif(report))
    levels = {
        r["locations"][0]["physicalLocation"]["region"]["startLine"]: r["level"]
        for r in sarif["runs"][0]["results"]
        if r["ruleId"] == "DJ-PY-002"
    }
    assert levels == {3: "error", 6: "warning"}
    blocking = [f.location.line for f in report.blocking(ScanPolicy())]
    assert blocking == [3]


def test_literal_and_folded_code_is_not_reported(tmp_path: Path) -> None:
    """eval of a literal, of literals added together or of a module constant is nothing."""
    assert not _scan(
        tmp_path,
        """
        PROGRAM = "import math; " + "print(math.pi)"

        def handler(event, context):
            eval("1 + 2")
            exec("x = " + "1")
            exec(PROGRAM)
            exec(compile(PROGRAM, "<const>", "exec"))
        """,
    )


def test_compiled_code_is_judged_where_it_is_compiled(tmp_path: Path) -> None:
    """compile() of untraced text warns once, at compile(); exec of that code object
    adds no second warning, but event data in it is reported at both."""
    findings = _scan(
        tmp_path,
        """
        def helper(source):
            code = compile(source, "<s>", "exec")
            exec(code)

        def handler(event, context):
            code = compile(event["src"], "<s>", "exec")
            exec(code)
        """,
    )
    graded = sorted((f.location.line, f.severity) for f in findings)
    assert graded == [(3, Severity.MEDIUM), (7, Severity.HIGH), (8, Severity.HIGH)]


def test_decoded_code_stays_blocking(tmp_path: Path) -> None:
    """exec of text decoded at run time keeps its gate-level grade (high, medium): the
    untraced warning does not replace it, whichever check runs first."""
    [finding] = _scan(
        tmp_path,
        """
        import base64

        def boot():
            exec(base64.b64decode("cHJpbnQoMSk="))
        """,
    )
    assert (finding.severity, finding.confidence) == (Severity.HIGH, Confidence.MEDIUM)
    assert "decoded" in finding.message


@pytest.mark.parametrize(
    "call",
    [
        'code.InteractiveInterpreter().runcode(event["c"])',
        'code.InteractiveInterpreter().runsource(event["c"])',
        'code.compile_command(event["c"])',
        'codeop.compile_command(event["c"])',
        'cProfile.run(event["c"])',
        'cProfile.Profile().runctx(event["c"], {}, {})',
        'profile.runctx(event["c"], {}, {})',
        'pdb.runctx(event["c"], {}, {})',
        'pdb.Pdb().runeval(event["c"])',
        'bdb.Bdb().run(event["c"])',
        'trace.Trace().run(event["c"])',
        'timeit.Timer(setup=event["c"])',
        'timeit.repeat(event["c"])',
        'list(filter(eval, event["c"]))',
        'functools.reduce(eval, event["c"])',
        'max(event["c"], key=eval)',
        'asyncio.to_thread(exec, event["c"])',
        'multiprocessing.Process(target=exec, args=(event["c"],))',
        'pool.imap(eval, event["c"])',
        'pool.apply_async(exec, (event["c"],))',
        'loop.run_in_executor(None, exec, event["c"])',
        'runpy.run_module(event["c"])',
        'runpy.run_path(event["c"])',
        '__import__(event["c"])',
    ],
)
def test_each_code_runner_is_a_sink(tmp_path: Path, call: str) -> None:
    """Event data reaching each runner of text as code the rule lists is an error."""
    findings = _scan(
        tmp_path,
        f"""
        import asyncio, bdb, code, codeop, cProfile, functools, multiprocessing, pdb
        import profile, runpy, timeit, trace

        def handler(event, context, pool=None, loop=None):
            {call}
        """,
    )
    assert [(f.location.line, f.severity, f.confidence) for f in findings] == [
        (6, Severity.HIGH, Confidence.HIGH)
    ]
