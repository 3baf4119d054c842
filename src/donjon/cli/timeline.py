"""`donjon audit timeline`: what happened, in order, each line with its record's seq.

Pages through `GET /v1/audit/timeline` (filters applied by the node) until the
end or `--limit` lines; every line starts with the seq, so any of them can be
proved (`donjon audit prove SEQ`).
"""

from __future__ import annotations

import time
from typing import Any

import click

from donjon.cli.client import MAX_PAGE_BYTES, ApiClient
from donjon.cli.logs import parse_since
from donjon.cli.output import OutputFormat, echo_json, echo_text, output_option, when
from donjon.config import load_settings

__all__ = ["timeline"]

#: Pages asked for at most (each is bounded by the node), so a run always ends.
_MAX_PAGES = 10_000


@click.command("timeline")
@click.option("--since", default=None, help="From this time: 2h, 1d, or an ISO 8601 time.")
@click.option("--until", default=None, help="Up to this time: 10m (ago), or an ISO 8601 time.")
@click.option("--function", "function_", default=None, help="Only records about this function.")
@click.option("--principal", default=None, help="Only this principal (key:ID, a key id, jwt:...).")
@click.option("--request", "request_id", default=None, help="Only this request id.")
@click.option("--source", default=None, help="Only this client address.")
@click.option(
    "--limit", default=10_000, show_default=True, type=click.IntRange(1), help="At most N lines."
)
@output_option
def timeline(
    since: str | None,
    until: str | None,
    function_: str | None,
    principal: str | None,
    request_id: str | None,
    source: str | None,
    limit: int,
    output: OutputFormat,
) -> None:
    """Tell what happened, in order: deploys and their scans, key and role changes,
    calls, denials, egress, alerts and responses, each with its record's seq."""
    now = time.time()
    params: dict[str, Any] = {"n": min(limit, 1000)}
    if since is not None:
        params["since"] = parse_since(since, now)
    if until is not None:
        try:
            params["until"] = parse_since(until, now)
        except click.BadParameter as e:
            raise click.BadParameter(e.message, param_hint="--until") from None
    for name, value in (
        ("function", function_),
        ("principal", principal),
        ("request", request_id),
        ("source", source),
    ):
        if value is not None:
            params[name] = value
    client = ApiClient(load_settings(), max_answer_bytes=MAX_PAGE_BYTES)
    records: list[dict[str, Any]] = []
    for _ in range(_MAX_PAGES):
        page = client.json("GET", "/v1/audit/timeline", params=params)
        for record in page.get("records", []):
            if len(records) >= limit:
                break
            records.append(record)
            if output is OutputFormat.TABLE:
                echo_text(_line(record))
        following = page.get("next")
        if following is None or len(records) >= limit:
            if following is not None and output is OutputFormat.TABLE:
                echo_text(f"(stopped at {limit} lines; --limit shows more)", err=True)
            break
        params["after"] = following
        params["n"] = min(limit - len(records), 1000)
    if output is OutputFormat.JSON:
        echo_json(records)


def _line(record: dict[str, Any]) -> str:
    """`SEQ TIME CATEGORY ACTOR what-it-says` (echo_text escapes what others wrote)."""
    # The audit package imports SQLAlchemy: off `donjon audit`'s start-up path.
    from donjon.audit.timeline import describe

    return (
        f"{record.get('seq', '?'):>7} {when(record.get('ts'))} "
        f"{record.get('category', ''):<9} {record.get('actor', '')!s:<22} {describe(record)}"
    )
