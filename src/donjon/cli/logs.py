"""`donjon logs NAME [-f] [--since 10m]`: each call as START, its output, END and REPORT.

What a call printed (stdout and stderr, in the order written: the worker
line-buffers both into one capture) comes from the function: every such line
is escaped and starts with "| ", so none can pass for one of the CLI's own.
The REPORT line carries the call's wall time at the gateway and the peak
memory its worker reported (resident set, the interpreter included).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from typing import Any

import click

from donjon.cli.client import ApiClient, ApiError
from donjon.cli.output import (
    OutputFormat,
    echo_json,
    output_option,
    printable,
    printable_lines,
    when,
)
from donjon.cli.roles import parse_duration
from donjon.config import load_settings

__all__ = ["fetch_call_log", "format_entry", "log_entries", "log_tail", "logs", "parse_since"]

#: As the Lambda Invoke API's `X-Amz-Log-Type: Tail`: the last 4 KB of the log.
TAIL_BYTES = 4096
#: How often `--follow` asks for new entries, and how many it takes at once.
FOLLOW_INTERVAL_S = 1.0
_FOLLOW_BATCH = 500
#: The most one log entry takes as JSON (see `logs`).
MAX_ENTRY_BYTES = 512 * 1024
#: The last second `when` can print (9999-12-31 23:59:59 UTC).
_LAST_MOMENT = 253_402_300_799


def parse_since(text: str, now: float | None = None) -> float:
    """--since: a duration back from now (90s, 10m, 2h, 1d) or an ISO 8601 time (UTC if bare)."""
    now = time.time() if now is None else now
    if text.strip()[-1:] in ("s", "m", "h", "d") and text.strip()[:1].isdigit():
        return now - parse_duration(text, "--since")
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text[:40]!r} is neither a duration (10m, 2h, 1d) nor an ISO 8601 time",
            param_hint="--since",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _ms(value: object) -> str:
    return f"{value:.2f} ms" if isinstance(value, int | float) else "n/a"


def _mb(kib: object) -> str:
    return f"{math.ceil(kib / 1024)} MB" if isinstance(kib, int) else "n/a"


def _moment(value: object) -> float | None:
    """`value` if it is a time `when` can print (epoch seconds), else None (shown "-")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= _LAST_MOMENT else None


def format_entry(entry: dict[str, Any]) -> list[str]:
    """One call as lines: START, its output (each line "| "-prefixed, escaped), END, REPORT."""
    rid = printable(entry.get("request_id", "?"))
    end = _moment(entry.get("ts"))
    duration = entry.get("duration_ms")
    took = _moment(duration)  # milliseconds, as far as a time can be
    start = end if end is None or took is None else _moment(end - took / 1000)
    lines = [f"{when(start)} START RequestId: {rid} Version: {printable(entry.get('version'))}"]
    output = str(entry.get("output", "")).rstrip("\n")
    if output:
        lines.extend(printable_lines(output).split("\n"))
    lines.append(f"{when(end)} END RequestId: {rid}")
    lines.append(
        f"{when(end)} REPORT RequestId: {rid}\tDuration: {_ms(duration)}\t"
        f"Max Memory Used: {_mb(entry.get('memory_kb'))}\t"
        f"Outcome: {printable(entry.get('outcome', '?'))}"
    )
    return lines


def log_tail(entry: dict[str, Any], most: int = TAIL_BYTES) -> str:
    """The end of one call's formatted log, whole lines, within `most` bytes."""
    lines = format_entry(entry)
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        size += len(line.encode()) + 1
        if size > most:
            kept.append(f"[{len(lines) - len(kept)} earlier lines dropped]")
            break
        kept.append(line)
    return "\n".join(reversed(kept))


def log_entries(answer: Any) -> list[dict[str, Any]]:
    """The node's answer as log entries: a list of objects, each `cursor` a whole number.

    Anything else is one clear error: an answer of another shape must not end the CLI
    in a traceback, nor leave `--follow` polling with a cursor it cannot use. Fields
    only printed are printed as they can be (`format_entry`).
    """
    if not isinstance(answer, list) or not all(isinstance(e, dict) for e in answer):
        raise ApiError(
            "the node's answer is not a list of log entries",
            hint="is DONJON_URL a Donjon node of this version?",
        )
    for entry in answer:
        cursor = entry.get("cursor")
        if cursor is not None and (
            isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0
        ):
            raise ApiError(
                f"a log entry's cursor is not a whole number: {printable(repr(cursor)[:40])}",
                hint="is DONJON_URL a Donjon node of this version?",
            )
    return answer


def _cursor(entries: list[dict[str, Any]], after: int) -> int:
    """The cursor to poll after: never back, whatever the entries say."""
    return max([after, *(int(e.get("cursor") or 0) for e in entries)])


def fetch_call_log(client: ApiClient, name: str, request_id: str) -> dict[str, Any] | None:
    """The log entry of one call (the node writes it before it answers the call)."""
    rows = log_entries(
        client.json("GET", f"/v1/functions/{name}/logs", params={"request_id": request_id, "n": 1})
    )
    return rows[0] if rows else None


def _show(entries: list[dict[str, Any]], output: OutputFormat, *, lines_of_json: bool) -> None:
    if output is OutputFormat.JSON:
        if lines_of_json:  # following: one JSON document per line, as entries come
            for e in entries:
                click.echo(json.dumps(e, sort_keys=True))
        else:
            echo_json(entries)
        return
    for e in entries:
        click.echo("\n".join(format_entry(e)))


@click.command()
@click.argument("name")
@click.option("-n", "count", default=20, show_default=True, help="How many invocations.")
@click.option(
    "-f", "--follow", is_flag=True, help="Keep printing new invocations as they end (Ctrl-C)."
)
@click.option("--since", default=None, help="Only invocations since: 10m, 2h, 1d, or a time.")
@output_option
def logs(name: str, count: int, follow: bool, since: str | None, output: OutputFormat) -> None:
    """Show function NAME's invocations: START, stdout/stderr in order, END, REPORT.

    With --output json: a JSON array, or with --follow one JSON entry per line.
    """
    if not 1 <= count <= _FOLLOW_BATCH:
        raise click.BadParameter(f"from 1 to {_FOLLOW_BATCH}", param_hint="-n")
    params: dict[str, str | int] = {"n": count}
    if since is not None:
        params["since"] = repr(parse_since(since))
    # Each entry is one call's log (at most 64 KiB of output, up to six times that as JSON
    # escapes): the answer is bounded by what was asked for, following or not.
    asked = _FOLLOW_BATCH if follow else count
    client = ApiClient(load_settings(), max_answer_bytes=asked * MAX_ENTRY_BYTES)
    path = f"/v1/functions/{name}/logs"
    entries = log_entries(client.json("GET", path, params=params))
    if not follow:
        if not entries and output is OutputFormat.TABLE:
            click.echo(f"no invocations recorded for {printable(name)}")
        _show(entries, output, lines_of_json=False)
        return
    _show(entries, output, lines_of_json=True)
    # The last `count` entries came back; with none, none match yet: start at 0.
    cursor = _cursor(entries, 0)
    params["n"] = _FOLLOW_BATCH
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL_S)
            fresh = log_entries(client.json("GET", path, params={**params, "after": cursor}))
            _show(fresh, output, lines_of_json=True)
            cursor = _cursor(fresh, cursor)
    except KeyboardInterrupt:
        return
