"""One `--output json|table` on every command that prints; version, --version, completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from donjon.cli import cli
from harness import LiveNode, donjon_env, run_cli

#: Commands that print nothing of their own to choose a form for: `serve` and `up`
#: run a node; `scan` has `--format text|json|sarif` and, since before this flag,
#: `--output FILE` for the report; `sbom` and `provenance` print a standard document
#: (CycloneDX JSON or XML, a DSSE envelope) as it is stored, to stdout or `-o FILE`.
_NOT_PRINTING = {"serve", "up", "scan", "sbom", "provenance"}


def _leaves(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    # list_commands/get_command, not group.commands: the CLI imports a command when
    # it is resolved (cli/lazy.py), so `commands` holds only those already used.
    out: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            out += _leaves(command, f"{prefix}{name} ")
        else:
            out.append((f"{prefix}{name}", command))
    return out


def test_every_printing_command_takes_the_same_output_option() -> None:
    """Each command that prints offers --output with the same choices and default."""
    missing = []
    for path, command in _leaves(cli):
        if path in _NOT_PRINTING:
            continue
        option = next((p for p in command.params if p.name == "output"), None)
        if (
            not isinstance(option, click.Option)
            or option.opts != ["--output"]
            or not isinstance(option.type, click.Choice)
            or list(option.type.choices) != ["table", "json"]
            or option.default != "table"
        ):
            missing.append(path)
    assert missing == []


def test_version_command_and_flag_print_the_version(tmp_path: Path) -> None:
    """`donjon version`, `donjon version --output json` and `donjon --version` agree."""
    from donjon import __version__

    env = donjon_env(tmp_path / "data")
    assert run_cli(env, "--version").stdout.strip() == f"donjon {__version__}"
    assert run_cli(env, "version").stdout.startswith(f"donjon {__version__} (python ")
    info = json.loads(run_cli(env, "version", "--output", "json").stdout)
    assert info["version"] == __version__ and info["python"].count(".") == 2


def test_shell_completion_script_is_available() -> None:
    """click's completion: `_DONJON_COMPLETE=bash_source donjon` prints a bash script."""
    env = {**os.environ, "_DONJON_COMPLETE": "bash_source"}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv[0] = 'donjon'; "
         "from donjon.cli import main; main()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "_donjon_completion()" in done.stdout
    assert "complete -o nosort -F _donjon_completion donjon" in done.stdout


def test_key_ls_shows_whole_key_ids_in_a_narrow_terminal(node: LiveNode) -> None:
    """With a 40-column terminal, every key id and name in `key ls` is printed whole."""
    created = node.create_key("a-rather-long-key-name-for-a-narrow-terminal", "invoker")
    env = {**node.env(), "COLUMNS": "40"}
    table = run_cli(env, "key", "ls").stdout
    row = next(line for line in table.splitlines() if created["id"] in line)
    assert "a-rather-long-key-name-for-a-narrow-terminal" in row
    ids = [k["id"] for k in json.loads(run_cli(env, "key", "ls", "--output", "json").stdout)]
    assert all(any(line.startswith(i) for line in table.splitlines()) for i in ids)


def test_json_output_parses_for_each_listing(node: LiveNode) -> None:
    """--output json prints one JSON document for ls, key ls, role ls, secret ls, audit tail."""
    env = node.env()
    for args in (
        ["ls"],
        ["key", "ls"],
        ["role", "ls"],
        ["secret", "ls"],
        ["issuer", "ls"],
        ["audit", "tail", "-n", "5"],
    ):
        assert isinstance(json.loads(run_cli(env, *args, "--output", "json").stdout), list), args
