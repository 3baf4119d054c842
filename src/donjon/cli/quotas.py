"""quota set/show/rm: daily quotas per key, role or function (denial of wallet)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import click

from donjon.cli.client import ApiClient
from donjon.cli.output import OutputFormat, echo_text, emit, output_option, print_table
from donjon.config import load_settings

__all__ = ["parse_per_day", "quota"]

_PER_DAY = re.compile(r"^(\d{1,13}(?:\.\d{1,3})?)(?:/day)?$")


def parse_per_day(text: str, param: str, *, whole: bool) -> float:
    """'100/day' or '100' (a fraction only if not `whole`) as a number, or a clear error."""
    m = _PER_DAY.match(text.strip())
    if m is None or (whole and "." in m.group(1)):
        kind = "a whole number" if whole else "a number"
        raise click.BadParameter(
            f"{text[:40]!r} is not a daily amount: {kind}, optionally followed by /day (100/day)",
            param_hint=param,
        )
    return float(m.group(1))


def _subject(key: str | None, role: str | None, function: str | None) -> str:
    given = [(k, v) for k, v in (("key", key), ("role", role), ("function", function)) if v]
    if len(given) != 1:
        raise click.UsageError("name exactly one subject: --key ID, --role NAME or --function NAME")
    kind, name = given[0]
    return f"{kind}:{name}"


def _subject_options(command: Any) -> Any:
    for option in reversed(
        [
            click.option("--key", "key", metavar="ID", help="An API key's id."),
            click.option("--role", "role", metavar="NAME", help="A role (built in or custom)."),
            click.option("--function", "function", metavar="NAME", help="A deployed function."),
        ]
    ):
        command = option(command)
    return command


@click.group()
def quota() -> None:
    """Daily quotas per key, role or function (denial of wallet), reset at UTC midnight."""


@quota.command("set")
@_subject_options
@click.option("--invocations", metavar="N/day", help="Calls per UTC day (omit: unlimited).")
@click.option("--compute-seconds", metavar="S/day", help="Seconds of calls' wall time per UTC day.")
@output_option
def quota_set(
    key: str | None,
    role: str | None,
    function: str | None,
    invocations: str | None,
    compute_seconds: str | None,
    output: OutputFormat,
) -> None:
    """Set (replace) the daily quota of a key, role or function; a measure left out: unlimited."""
    subject = _subject(key, role, function)
    if invocations is None and compute_seconds is None:
        raise click.UsageError("give --invocations, --compute-seconds or both")
    body: dict[str, Any] = {}
    if invocations is not None:
        body["invocations"] = int(parse_per_day(invocations, "--invocations", whole=True))
    if compute_seconds is not None:
        body["compute_seconds"] = parse_per_day(compute_seconds, "--compute-seconds", whole=False)
    done = ApiClient(load_settings()).json("PUT", f"/v1/quotas/{quote(subject)}", json=body)
    emit(output, done, lambda: echo_text(f"quota of {done['subject']}: {_limits(done)}"))


def _limit(value: Any, unit: str) -> str:
    return "unlimited" if value is None else f"{value:g} {unit}/day"


def _limits(q: dict[str, Any]) -> str:
    return (
        f"{_limit(q['invocations']['limit'], 'invocations')}, "
        f"{_limit(q['compute_seconds']['limit'], 'compute seconds')}"
    )


def _usage(measure: dict[str, Any]) -> str:
    limit = measure["limit"]
    return f"{measure['used']:g} / {'unlimited' if limit is None else format(limit, 'g')}"


@quota.command("show")
@output_option
def quota_show(output: OutputFormat) -> None:
    """Each quota with today's usage against its limits, and when it resets (UTC midnight)."""
    quotas = ApiClient(load_settings()).json("GET", "/v1/quotas")

    def table() -> None:
        if not quotas:
            echo_text("no quotas")
            return
        print_table(
            ["SUBJECT", "INVOCATIONS TODAY", "COMPUTE SECONDS TODAY", "RESETS"],
            [
                [
                    q["subject"],
                    _usage(q["invocations"]),
                    _usage(q["compute_seconds"]),
                    q["resets_at"],
                ]
                for q in quotas
            ],
        )

    emit(output, quotas, table)


@quota.command("rm")
@_subject_options
@output_option
def quota_rm(key: str | None, role: str | None, function: str | None, output: OutputFormat) -> None:
    """Remove the daily quota of one key, role or function."""
    subject = _subject(key, role, function)
    done = ApiClient(load_settings()).json("DELETE", f"/v1/quotas/{quote(subject)}")
    emit(output, done, lambda: echo_text(f"removed the quota of {done['subject']}"))
