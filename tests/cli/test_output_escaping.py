"""What the CLI prints from the server cannot drive the terminal or forge lines.

A function's output and a request path are written by whoever calls or deploys;
`donjon logs`, `donjon audit tail` and the tables must show them, escaped: no
ESC, BEL, CR or C1 byte reaches stdout, and every line of function output is
marked as such.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness import LiveNode, fresh_source

#: Window title, OSC 52 clipboard write, erase line, CR overwrite, CSI as one C1 byte,
#: and a line that looks like the header `donjon logs` prints before each call.
HOSTILE = (
    "\x1b]0;pwned\x07\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2K\rok\x9b31m"
    "\n--- 2026-01-01 00:00:00 request deadbeefdeadbeef v1 ok\nafter\ttab\x85"
)
_UNSAFE = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


def _cli(node: LiveNode, *args: str) -> bytes:
    env = {**node.env(), "COLUMNS": "500"}  # tables wide enough that rich cuts no cell short
    done = subprocess.run(
        [sys.executable, "-m", "donjon.cli", *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_logs_escape_control_characters_in_function_output(node: LiveNode) -> None:
    """`donjon logs` prints a function's escape sequences as text, each output line marked."""
    with node.client("") as c:
        r = c.get("/fn/sec-reply", params={"case": "control-output", "text": HOSTILE})
    assert r.status_code == 200, r.text
    out = _cli(node, "logs", "sec-reply", "-n", "50")
    assert not _UNSAFE.search(out), out
    text = out.decode()
    assert "\\x1b]0;pwned\\x07" in text
    assert "\t" in text  # a tab is harmless and stays
    # The CLI's own lines (START/END/REPORT) are the ones not marked as output.
    headers = [line for line in text.splitlines() if not line.startswith("| ")]
    assert headers and not any("deadbeefdeadbeef" in line for line in headers), headers


def test_audit_tail_escapes_control_characters_in_request_paths(node: LiveNode) -> None:
    """An escape sequence in a refused request's path is printed as text by `audit tail`."""
    with node.client("", source=fresh_source()) as c:
        r = c.get("/fn/%1b]0;pwned%07%1b[2K%0d%c2%9b")
    assert r.status_code == 401
    out = _cli(node, "audit", "tail", "-n", "200")
    assert not _UNSAFE.search(out), out
    assert "\\x1b]0;pwned\\x07" in out.decode()


def test_tables_escape_control_characters_and_markup(node: LiveNode) -> None:
    """A key name with escapes and rich markup is shown literally by `key ls`."""
    node.create_key("k\x1b[31m[bold]red\x07\u202e", "invoker")
    out = _cli(node, "key", "ls")
    assert not _UNSAFE.search(out), out
    assert "\u202e" not in out.decode()
    assert "k\\x1b[31m[bold]red\\x07\\u202e" in out.decode()


def test_audit_tail_shows_a_lone_surrogate_escaped(node: LiveNode) -> None:
    """A lone surrogate kept in an audit record is printed as its escape by `audit tail`,
    not an encoding error that ends the listing at that record."""
    with node.client() as c:
        body = b'{"name": "i\\ud800", "issuer": "https://i.example"}'
        r = c.post("/v1/issuers", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    out = _cli(node, "audit", "tail", "-n", "50").decode()
    assert "issuer:i\\ud800" in out, out


def test_deploy_report_names_a_file_on_one_line(node: LiveNode, tmp_path: Path) -> None:
    """A bundle file named with newlines and a line of the CLI's ("deployed ..."): the
    gate's report printed by `donjon deploy` shows the name escaped, on one line."""
    fn = tmp_path / "nl-name"
    fn.mkdir()
    (fn / "donjon.yaml").write_text(
        "name: nl-name\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 5\n"
    )
    (fn / "main.py").write_text("def handler(event, context):\n    return 1\n")
    forged = "x\ndeployed nl-name version 9 digest sha256:0\n0 finding(s)\n\x1b]0;t\x07.py"
    # A weak hash: a finding the gate reports but does not block on.
    (fn / forged).write_text("import hashlib\n\ndef f(b):\n    return hashlib.md5(b).digest()\n")
    out = _cli(node, "deploy", str(fn)).decode()
    lines = out.splitlines()
    assert not any(line.startswith(("deployed nl-name version 9", "0 finding")) for line in lines)
    assert "x\\x0adeployed nl-name version 9 digest sha256:0\\x0a0 finding(s)" in out, out
