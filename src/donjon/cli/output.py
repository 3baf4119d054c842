"""Printing for the CLI: JSON for scripts, tables for people, and nothing that drives a terminal.

What the CLI prints from the server was written by others: request paths,
key names, a function's output. `printable` (donjon.printable) is the one gate
for all of it, so no escape sequence reaches the terminal and no line of
outside text passes for one of the CLI's own.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
from collections.abc import Callable
from typing import Any

import click

from donjon.printable import printable, printable_json

__all__ = [
    "OutputFormat",
    "echo_json",
    "echo_json_text",
    "echo_text",
    "emit",
    "output_option",
    "print_table",
    "printable",
    "printable_json",
    "printable_lines",
    "when",
]


def printable_lines(text: str, marker: str = "| ") -> str:
    """Multi-line text from outside, escaped, each line prefixed with `marker`.

    Lines of the CLI's own start at the margin; a line that starts with the
    marker came from outside, so none can pass for one of the CLI's.
    """
    return "\n".join(marker + line for line in printable(text, multiline=True).split("\n"))


def echo_text(value: object, *, err: bool = False) -> None:
    """`click.echo` of one line made of outside data."""
    click.echo(printable(value), err=err)


def echo_json(value: Any) -> None:
    # json.dumps escapes C0 (and, with ensure_ascii, everything else); the
    # escape pass is for any caller that turns ensure_ascii off.
    click.echo(printable_json(json.dumps(value, indent=2, sort_keys=True)))


def echo_json_text(text: str) -> None:
    """Print a JSON document received from outside (a function's result)."""
    click.echo(printable_json(text))


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_table(columns: list[str], rows: list[list[str]], empty: str = "") -> None:
    """A table for people: as wide as its cells, whatever the terminal's width.

    No cell is cut or wrapped (a key id, a digest, a name copied from a table
    must be whole): a table wider than the terminal is printed wider, and the
    terminal wraps its lines. With no rows and an `empty` line, that line instead
    (a lone header row reads as a command that failed to print).
    """
    if not rows and empty:
        echo_text(empty)
        return
    # rich is imported here, not on the CLI's start-up path: most commands print no table.
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns, box=None, pad_edge=False, header_style="bold")
    for column in table.columns:
        column.no_wrap = True
        column.overflow = "ignore"
    for row in rows:
        # Text, not str: a cell's "[bold]" is shown as typed, never read as markup.
        table.add_row(*(Text(printable(cell)) for cell in row))
    console = Console(soft_wrap=True)
    wide = Measurement.get(console, console.options.update_width(1 << 20), table).maximum
    console.width = max(console.width, wide)
    console.print(table)


class OutputFormat(enum.StrEnum):
    """How a command prints: `table` (and lines) for people, `json` for scripts."""

    TABLE = "table"
    JSON = "json"


def output_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--output json|table` for a command that prints: one flag, the same everywhere.

    The command receives `output: OutputFormat`. `--json` stays as the short
    form scripts already use (hidden: `--output json` is the documented flag).
    """

    @functools.wraps(command)
    def with_output(*args: Any, output: str, as_json: bool, **kwargs: Any) -> Any:
        chosen = OutputFormat.JSON if as_json else OutputFormat(output)
        return command(*args, output=chosen, **kwargs)

    with_json = click.option(
        "--json", "as_json", is_flag=True, hidden=True, help="The same as --output json."
    )(with_output)
    return click.option(
        "--output",
        "output",
        type=click.Choice([f.value for f in OutputFormat]),
        default=OutputFormat.TABLE.value,
        show_default=True,
        help="Print a table (or lines) for people, or json for scripts.",
    )(with_json)


def emit(output: OutputFormat, data: Any, for_people: Callable[[], None]) -> None:
    """Print `data` as JSON, or call `for_people` to print it as a table or lines."""
    if output is OutputFormat.JSON:
        echo_json(data)
    else:
        for_people()
