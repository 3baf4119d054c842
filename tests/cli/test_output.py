"""printable: the one gate for outside text on its way to the terminal."""

from __future__ import annotations

import json

import pytest

from donjon.cli.output import printable, printable_json, printable_lines


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("a\rb", "a\\x0db"),
        ("\x9b31m", "\\x9b31m"),
        ("\x7f", "\\x7f"),
        ("a\u202eb", "a\\u202eb"),
        ("line\u2028break", "line\\u2028break"),
        ("tab\there", "tab\there"),
        ("lone\ud800surrogate", "lone\\ud800surrogate"),
        ("caf\u00e9 \u2603", "caf\u00e9 \u2603"),
    ],
)
def test_controls_are_shown_as_escapes(raw: str, shown: str) -> None:
    """C0, C1, DEL and bidi controls become visible escapes; tab and ordinary text stay."""
    assert printable(raw) == shown


def test_newline_is_kept_only_when_asked() -> None:
    """Single-line fields escape \\n; multi-line output keeps it."""
    assert printable("a\nb") == "a\\x0ab"
    assert printable("a\nb", multiline=True) == "a\nb"


def test_every_output_line_is_marked() -> None:
    """No line of function output can pass for a line of the CLI's own."""
    shown = printable_lines("ok\n--- 2026-01-01 request x v1 ok\r\n")
    assert shown.split("\n") == ["| ok", "| --- 2026-01-01 request x v1 ok\\x0d", "| "]


def test_json_stays_the_same_json() -> None:
    """Escaping a JSON document's controls leaves it the same JSON value."""
    value = {"a": "\x85\u202e\u2028", "b": [1, 2]}
    text = json.dumps(value, ensure_ascii=False).replace(", ", ",\r ")
    shown = printable_json(text)
    assert json.loads(shown) == value
    assert not any(0x7F <= ord(c) <= 0x9F or c in "\r\u202e\u2028" for c in shown)


def test_an_empty_table_says_so_when_told(capsys: pytest.CaptureFixture[str]) -> None:
    """No rows: the `empty` line instead of a lone header; without one, the header; rows
    print as a table either way."""
    from donjon.cli.output import print_table

    print_table(["NAME", "RATE"], [], empty="no throttles in force")
    assert capsys.readouterr().out == "no throttles in force\n"
    print_table(["NAME", "RATE"], [])
    assert capsys.readouterr().out.split() == ["NAME", "RATE"]
    print_table(["NAME", "RATE"], [["a", "1/s"]], empty="no throttles in force")
    assert capsys.readouterr().out.split() == ["NAME", "RATE", "a", "1/s"]


def test_empty_throttle_and_quarantine_lists_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """`throttle ls` and `function quarantined` with nothing in force say so in words,
    and print an empty JSON list with --output json."""
    from click.testing import CliRunner

    from donjon.cli import cli, responses

    monkeypatch.setattr(responses, "_responses", lambda: {"throttles": [], "quarantined": []})
    runner = CliRunner()
    for args, line in (
        (["throttle", "ls"], "no throttles in force"),
        (["function", "quarantined"], "no function is quarantined"),
    ):
        done = runner.invoke(cli, args)
        assert done.exit_code == 0, done.output
        assert done.output == line + "\n"
        done = runner.invoke(cli, [*args, "--output", "json"])
        assert json.loads(done.output) == []
