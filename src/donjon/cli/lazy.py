"""A click group that imports a command's module only when that command is used.

`donjon --help`, `donjon version` and the client commands need neither the
gateway, nor the scanner, nor SQLAlchemy; importing every command's module up
front cost `donjon --help` a second of CPU, and the test suite starts hundreds
of `donjon` processes. Each command is named here by where it lives
("module:attribute") with the line `donjon --help` shows for it, its summary;
the module is imported when click resolves the command (to run it, to show its
own help, or to complete its arguments). tests/cli/test_lazy.py checks that
each summary is the command's own first sentence and each target loads.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

from donjon.errors import Error

__all__ = ["LazyCommand", "LazyGroup"]


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives and the summary `--help` shows for it."""

    target: str  # "package.module:attribute"
    summary: str  # the first sentence of the command's help


class LazyGroup(click.Group):
    """A group whose commands in `lazy` are imported the first time one is resolved."""

    def __init__(self, *args: Any, lazy: Mapping[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(_load(self.lazy[cmd_name].target), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own list of commands, made from the summaries of those not yet imported."""
        summaries: dict[str, click.Command] = {
            name: click.Command(name, help=entry.summary) for name, entry in self.lazy.items()
        }
        listing = click.Group(self.name, commands={**summaries, **self.commands})
        listing.format_commands(ctx, formatter)


def _load(target: str) -> click.Command:
    module, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module), attribute, None)
    if not isinstance(command, click.Command):
        raise Error(
            f"the CLI names {target!r} for a command, and it is not one",
            hint="a defect in donjon.cli: report it",
        )
    return command
