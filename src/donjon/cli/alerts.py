"""`donjon alerts [--since T] [--kind K] [-n N] [--json]`: the monitor's alerts, oldest first.

Pages through `GET /v1/alerts` (`before=SEQ`) for any N, keeping the API's cap
per page. Each line names the alert's seq in the audit log and the seqs it
rests on, so each can be proved (`donjon audit prove SEQ`).
"""

from __future__ import annotations

from typing import Any

import click

from donjon.cli.client import MAX_PAGE_BYTES, ApiClient
from donjon.cli.logs import parse_since
from donjon.cli.output import OutputFormat, emit, output_option, print_table, when
from donjon.config import load_settings

__all__ = ["alerts", "fetch_alerts"]

#: Alerts asked for per request (the API's cap).
PAGE = 1000


def fetch_alerts(
    client: ApiClient, *, since: float | None, kind: str | None, count: int
) -> list[dict[str, Any]]:
    """The newest `count` alerts (since, of kind), oldest first, over as many pages as needed."""
    found: list[dict[str, Any]] = []
    before: int | None = None
    while len(found) < count:
        n = min(PAGE, count - len(found))
        params: dict[str, Any] = {"n": n}
        if since is not None:
            params["since"] = f"{since:.6f}"
        if kind:
            params["kind"] = kind
        if before is not None:
            params["before"] = before
        response = client.request("GET", "/v1/alerts", params=params)
        page: list[dict[str, Any]] = response.json()
        found = page + found
        go_on = response.headers.get("x-donjon-next-before", "")
        if go_on.isascii() and go_on.isdigit():  # a scoped page that ran out of reading
            before = int(go_on)
            continue
        if len(page) < n:
            break
        before = int(page[0]["seq"])
    return found


@click.group(invoke_without_command=True)
@click.option("--since", default=None, help="Only alerts since: 2h, 7d, or an ISO 8601 time.")
@click.option("--kind", default=None, help="Only this finding kind (auth.credential_stuffing).")
@click.option(
    "-n",
    "count",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many, newest.",
)
@output_option
@click.pass_context
def alerts(
    ctx: click.Context, since: str | None, kind: str | None, count: int, output: OutputFormat
) -> None:
    """List the monitor's alerts, oldest first (each with its audit seq and evidence)."""
    if ctx.invoked_subcommand is not None:
        return
    start = parse_since(since) if since is not None else None
    client = ApiClient(load_settings(), max_answer_bytes=MAX_PAGE_BYTES)
    found = fetch_alerts(client, since=start, kind=kind, count=count)
    emit(output, found, lambda: _table(found))


def _table(found: list[dict[str, Any]]) -> None:
    if not found:
        click.echo("no alerts")
        return
    print_table(
        ["SEQ", "TIME", "SEVERITY", "KIND", "SUBJECT", "SUMMARY", "EVIDENCE"],
        [
            [
                str(a["seq"]),
                when(a.get("ts")),
                str(a.get("severity", "")),
                str(a.get("kind", "")),
                str(a.get("subject", "")),
                str(a.get("summary", "")),
                _evidence(a.get("evidence", [])),
            ]
            for a in found
        ],
    )


def _evidence(seqs: list[int]) -> str:
    shown = ",".join(str(s) for s in seqs[:5])
    return shown + (f",... ({len(seqs)})" if len(seqs) > 5 else "")
