"""`donjon logs` (START/END/REPORT, -f, --since) and `donjon invoke` (--data @file|-, tail)."""

from __future__ import annotations

import contextlib
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import LiveNode, run_cli

PRINTER = """\
import sys


def handler(event, context):
    for i in range(3):
        print(f"out-{i}")
        print(f"err-{i}", file=sys.stderr)
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"ok": True}
"""
_REPORT = re.compile(
    r"REPORT RequestId: (\w+)\tDuration: ([0-9.]+) ms\tMax Memory Used: (\d+) MB\tOutcome: (\w+)"
)


@pytest.fixture(scope="module")
def printer(node: LiveNode, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A function that prints to stdout and stderr in turn, and fails when asked."""
    fn = tmp_path_factory.mktemp("printer")
    (fn / "donjon.yaml").write_text(
        "name: cli-printer\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
    )
    (fn / "main.py").write_text(PRINTER)
    node.deploy(fn)
    return "cli-printer"


def _call_lines(text: str, request_id: str) -> list[str]:
    """The lines `donjon logs` printed for one call, START to REPORT."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if f"START RequestId: {request_id}" in line)
    end = next(i for i, line in enumerate(lines) if f"REPORT RequestId: {request_id}" in line)
    return lines[start : end + 1]


def test_logs_show_start_output_in_order_end_and_report(node: LiveNode, printer: str) -> None:
    """Each call is START, its stdout and stderr lines in the order written, END, REPORT."""
    r = node.invoke(printer, {})
    assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]
    lines = _call_lines(run_cli(node.env(), "logs", printer).stdout, rid)
    assert lines[0].endswith(f"START RequestId: {rid} Version: 1")
    assert lines[1:7] == ["| out-0", "| err-0", "| out-1", "| err-1", "| out-2", "| err-2"]
    assert lines[7].endswith(f"END RequestId: {rid}")
    report = _REPORT.search(lines[8])
    assert report is not None, lines[8]
    assert report.group(1) == rid and report.group(4) == "ok"
    assert float(report.group(2)) > 0
    assert 1 <= int(report.group(3)) <= 64 + 64  # the worker's peak resident set, in MB


def test_a_call_with_no_output_still_has_its_report(node: LiveNode) -> None:
    """A call that prints nothing is listed too: START, END and REPORT with its figures."""
    r = node.invoke("probe", {"op": "echo"})
    assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]
    entries = json.loads(
        run_cli(node.env(), "logs", "probe", "-n", "50", "--output", "json").stdout
    )
    entry = next(e for e in entries if e["request_id"] == rid)
    assert entry["output"] == "" and entry["outcome"] == "ok"
    assert entry["duration_ms"] > 0 and entry["memory_kb"] > 0


def test_logs_since_keeps_only_recent_calls(node: LiveNode, printer: str) -> None:
    """--since 10m lists a call just made; --since a time to come lists nothing."""
    rid = node.invoke(printer, {}).headers["x-request-id"]
    env = node.env()
    recent = json.loads(run_cli(env, "logs", printer, "--since", "10m", "--json").stdout)
    assert rid in [e["request_id"] for e in recent]
    later = run_cli(env, "logs", printer, "--since", "2999-01-01T00:00:00").stdout
    assert later.strip() == f"no invocations recorded for {printer}"
    bad = run_cli(env, "logs", printer, "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_logs_of_a_name_never_deployed_is_an_error(node: LiveNode) -> None:
    """A misspelt name is not a function without calls: a clear error and a non-zero
    exit, not "no invocations recorded"."""
    done = run_cli(node.env(), "logs", "cli-printr", check=False)
    assert done.returncode == 1, done
    assert "no function named 'cli-printr' was ever deployed" in done.stderr
    assert done.stdout == ""


def test_logs_follow_prints_calls_as_they_end(node: LiveNode, printer: str) -> None:
    """`logs -f` keeps running and prints a call made after it started; Ctrl-C ends it cleanly."""
    # Started as a terminal would start it, with SIGINT at its default: a suite run in the
    # background of a shell without job control (scripts/test.sh's shards) inherits SIGINT
    # ignored, and a child exec'd from here would inherit that too. A handler of Python's
    # own here is reset to the default in the child at exec.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "donjon.cli", "logs", printer, "-f", "-n", "1"],
            env=node.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, before)
    with proc:
        lines: queue.Queue[str] = queue.Queue()
        out, err = proc.stdout, proc.stderr
        assert out is not None and err is not None

        def read() -> None:
            for line in out:
                lines.put(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        seen = ""
        try:
            # The first batch (the newest call before it started) shows it is following.
            deadline = time.monotonic() + 60
            while "REPORT" not in seen and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    seen += lines.get(timeout=1)
            rid = node.invoke(printer, {"fail": True}).headers["x-request-id"]
            deadline = time.monotonic() + 60
            while f"REPORT RequestId: {rid}" not in seen and time.monotonic() < deadline:
                assert proc.poll() is None, "logs -f ended on its own"
                with contextlib.suppress(queue.Empty):
                    seen += lines.get(timeout=1)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:  # never hang the suite: fail instead
                proc.kill()
                proc.wait()
                raise AssertionError(
                    "logs -f did not end on SIGINT (was it started with SIGINT ignored?)"
                ) from None
            finally:
                reader.join(timeout=10)
        errors = err.read()
    call = _call_lines(seen, rid)
    assert "| RuntimeError: asked to fail" in call
    assert call[-1].endswith("Outcome: FunctionFailed")
    assert code == 0, errors
    assert "Traceback" not in errors


def test_invoke_reads_the_event_from_a_file_or_stdin(node: LiveNode, tmp_path: Path) -> None:
    """--data @FILE and --data - send the file's or stdin's JSON as the event."""
    event = tmp_path / "event.json"
    event.write_text('{"op": "echo", "name": "from-file"}')
    env = node.env()
    out = json.loads(run_cli(env, "invoke", "probe", "--data", f"@{event}").stdout)
    assert out["name"] == "from-file"
    piped = run_cli(env, "invoke", "probe", "--data", "-", input='{"op": "echo", "name": "in"}')
    assert json.loads(piped.stdout)["name"] == "in"
    missing = run_cli(env, "invoke", "probe", "--data", f"@{tmp_path / 'none.json'}", check=False)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    event.write_text("{not json")
    bad = run_cli(env, "invoke", "probe", "--data", f"@{event}", check=False)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr


def test_invoke_log_type_tail_prints_the_calls_log(node: LiveNode, printer: str) -> None:
    """--log-type tail prints the call's START..REPORT on stderr, its result on stdout."""
    done = run_cli(node.env(), "invoke", printer, "--log-type", "tail")
    assert json.loads(done.stdout) == {"ok": True}
    assert "| out-2" in done.stderr and "REPORT RequestId: " in done.stderr
    as_json = json.loads(
        run_cli(node.env(), "invoke", printer, "--log-type", "tail", "--output", "json").stdout
    )
    assert as_json["result"] == {"ok": True}
    assert f"END RequestId: {as_json['request_id']}" in as_json["log"]
    assert len(as_json["log"].encode()) <= 4096


def test_invoke_log_tail_of_a_failed_call_says_why(node: LiveNode, printer: str) -> None:
    """A failed call's tail shows the error to a caller who may read logs; the exit is 1."""
    done = run_cli(
        node.env(), "invoke", printer, "--data", '{"fail": true}', "--log-type", "tail", check=False
    )
    assert done.returncode == 1
    assert "| RuntimeError: asked to fail" in done.stderr
    assert "Outcome: FunctionFailed" in done.stderr


def test_invoke_log_tail_needs_the_right_to_read_logs(node: LiveNode, printer: str) -> None:
    """An invoker key gets its result, and no log: the tail is for those who may read logs."""
    key = node.create_key("tail-invoker", "invoker", [printer])["key"]
    done = run_cli(node.env(key), "invoke", printer, "--log-type", "tail")
    assert json.loads(done.stdout) == {"ok": True}
    assert "no log tail: 403" in done.stderr
    assert "out-0" not in done.stderr
