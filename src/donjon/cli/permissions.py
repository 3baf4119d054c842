"""permissions unused: the grants a function has not used, from the audit log."""

from __future__ import annotations

import re
from typing import Any

import click

from donjon.audit.unused import DEFAULT_DAYS, MAX_DAYS
from donjon.cli.client import ApiClient
from donjon.cli.output import OutputFormat, echo_text, emit, output_option, print_table, when
from donjon.config import load_settings
from donjon.manifest.model import NAME_RE

__all__ = ["permissions"]

_FUNCTION_NAME = re.compile(NAME_RE)


@click.group()
def permissions() -> None:
    """A function's granted permissions (donjon.yaml `permissions`)."""


@permissions.command("unused")
@click.argument("name")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_DAYS),
    default=DEFAULT_DAYS,
    show_default=True,
    help="The window: the last N days of the audit log.",
)
@output_option
def permissions_unused(name: str, days: int, output: OutputFormat) -> None:
    """List NAME's secret, egress and invoke grants it has not used in the last N days."""
    if not _FUNCTION_NAME.fullmatch(name):
        raise click.BadParameter(
            "a function name is lowercase letters, digits and dashes", param_hint="NAME"
        )
    report = ApiClient(load_settings()).json(
        "GET", f"/v1/functions/{name}/permissions/unused", params={"days": days}
    )
    emit(output, report, lambda: _print(report))


def _print(report: dict[str, Any]) -> None:
    unused = report["unused"]
    rows = [
        [kind, grant, "unused", "-"]
        for kind, key in (("secret", "secrets"), ("egress", "egress"), ("invoke", "invoke"))
        for grant in unused[key]
    ]
    rows += [[u["kind"], u["name"], "used", when(u["last_used"])] for u in report["used"]]
    echo_text(
        f"{report['function']}@{report['version']}: grants unused in the last {report['days']}"
        f" days (since {when(report['since'])} UTC)"
    )
    if rows:
        print_table(["KIND", "GRANT", "STATUS", "LAST USED"], rows)
    else:
        echo_text("the function has no secret, egress or invoke grants")
    for note in report["notes"]:
        echo_text(f"note: {note}")
