"""The CLI imports a command's module only when the command is used (cli/lazy.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from donjon.cli import COMMANDS, cli
from donjon.cli.lazy import LazyCommand, LazyGroup
from donjon.errors import Error

#: What `donjon --help` and `donjon version` must not import: the node's and the
#: scanner's code, the database layer, the HTTP client, every command's module.
_HEAVY = ("sqlalchemy", "httpx", "rich", "pydantic_settings", "donjon.gateway", "donjon.scan")


def _imported_after(*args: str) -> list[str]:
    """The modules a fresh `donjon ARGS` process has imported when it is done."""
    script = (
        "import json, sys\n"
        "from donjon.cli import cli\n"
        f"cli.main({list(args)!r}, prog_name='donjon', standalone_mode=False)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    listed: list[str] = json.loads(done.stdout.splitlines()[-1])
    return listed


@pytest.mark.parametrize("args", [("--help",), ("version", "--output", "json")])
def test_help_and_version_import_no_command_module(args: tuple[str, ...]) -> None:
    """`donjon --help` and `donjon version` import none of the commands' modules."""
    modules = _imported_after(*args)
    heavy = [m for m in modules if m.startswith(_HEAVY)]
    commands = [m for m in modules if m.startswith("donjon.cli.") and m != "donjon.cli.lazy"]
    assert heavy == []
    assert sorted(commands) == ["donjon.cli.output"]


@pytest.mark.parametrize("command", ["logs", "audit"])
def test_a_client_command_imports_no_database_layer(command: str) -> None:
    """`donjon logs --help`, `donjon audit --help` load their modules, not SQLAlchemy."""
    modules = _imported_after(command, "--help")
    assert f"donjon.cli.{'audit_group' if command == 'audit' else command}" in modules
    assert [m for m in modules if m.startswith(("sqlalchemy", "donjon.gateway"))] == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_summary_is_the_first_sentence_of_its_command(name: str) -> None:
    """The line `--help` shows for a command is the one its own help starts with."""
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    assert COMMANDS[name].summary == command.get_short_help_str(limit=1000)


def test_help_lists_the_same_lines_as_with_every_command_imported() -> None:
    """`donjon --help` from the summaries is what click prints with all commands loaded."""
    fresh = LazyGroup("donjon", lazy=COMMANDS)
    loaded = click.Group("donjon")
    for name in COMMANDS:
        command = fresh.get_command(click.Context(fresh), name)
        assert command is not None
        loaded.add_command(command, name)
    lazy_help = CliRunner().invoke(
        LazyGroup("donjon", lazy=COMMANDS), ["--help"], terminal_width=80
    )
    full_help = CliRunner().invoke(loaded, ["--help"], terminal_width=80)
    assert lazy_help.exit_code == 0 and full_help.exit_code == 0
    assert "Commands:" in lazy_help.output and "scan " in lazy_help.output
    assert lazy_help.output == full_help.output


def test_an_unknown_command_is_still_refused() -> None:
    """A name in no table is click's usual error, and nothing is imported for it."""
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output


def test_a_target_that_is_not_a_command_is_a_clear_error() -> None:
    """A table entry pointing at something that is not a click command fails loudly."""
    group = LazyGroup("g", lazy={"bad": LazyCommand("donjon.cli.output:printable", "Bad.")})
    with pytest.raises(Error, match="is not one"):
        group.get_command(click.Context(group), "bad")
