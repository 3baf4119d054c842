"""dlq ls/show/redrive/purge: the dead-letter queue of async invocations (admins)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

import click

from donjon.cli.client import ApiClient
from donjon.cli.output import OutputFormat, echo_json, echo_text, emit, output_option, print_table
from donjon.config import load_settings

__all__ = ["dlq"]


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _query(name: str | None) -> dict[str, str]:
    return {} if name is None else {"function": name}


@click.group()
def dlq() -> None:
    """The dead-letter queue: async invocations whose attempts are used up."""


@dlq.command("ls")
@click.argument("name", required=False)
@output_option
def dlq_ls(name: str | None, output: OutputFormat) -> None:
    """List dead-lettered invocations (of function NAME), oldest first."""
    dead = ApiClient(load_settings()).json("GET", "/v1/dlq", params=_query(name))

    def table() -> None:
        if not dead:
            echo_text("no dead-lettered invocations")
            return
        print_table(
            ["ID", "FUNCTION", "TRIGGER", "ATTEMPTS", "ERROR", "DEAD SINCE"],
            [
                [
                    d["invocation_id"],
                    d["function"],
                    d["trigger"],
                    str(d["attempts"]),
                    (d.get("error") or {}).get("type") or "",
                    _when(d["updated_at"]),
                ]
                for d in dead
            ],
        )

    emit(output, dead, table)


@dlq.command("show")
@click.argument("invocation_id")
@output_option
def dlq_show(invocation_id: str, output: OutputFormat) -> None:
    """Show one dead-lettered invocation: its error, attempts and event."""
    found = ApiClient(load_settings()).json("GET", f"/v1/dlq/{quote(invocation_id, safe='')}")

    def text() -> None:
        error = found.get("error") or {}
        for label, value in (
            ("id", found["invocation_id"]),
            ("function", found["function"]),
            ("trigger", found["trigger"]),
            ("source", found["source"]),
            ("type", found["type"]),
            ("attempts", f"{found['attempts']} of {found['max_attempts']}"),
            ("enqueued", _when(found["enqueued_at"])),
            ("dead since", _when(found["updated_at"])),
            ("last request", found.get("request_id") or "-"),
            ("error", f"{error.get('type', '')}: {error.get('message') or ''}"),
        ):
            echo_text(f"{label:<13}{value}")
        echo_text("event:")
        echo_json(found.get("event"))

    emit(output, found, text)


@dlq.command("redrive")
@click.argument("invocation_id", required=False)
@click.option("--all", "all_of", metavar="NAME", help="Every dead-lettered invocation of NAME.")
@output_option
def dlq_redrive(invocation_id: str | None, all_of: str | None, output: OutputFormat) -> None:
    """Queue dead-lettered invocation ID again (or --all NAME), its attempts afresh."""
    if (invocation_id is None) == (all_of is None):
        raise click.UsageError("give one invocation ID or --all NAME")
    client = ApiClient(load_settings())
    done: Any
    if invocation_id is not None:
        done = client.json("POST", f"/v1/dlq/{quote(invocation_id, safe='')}/redrive")
        emit(output, done, lambda: echo_text(f"queued {done['invocation_id']} again"))
        return
    done = client.json("POST", "/v1/dlq/redrive", json={"function": all_of})
    emit(output, done, lambda: echo_text(f"queued {len(done['redriven'])} invocation(s) again"))


@dlq.command("purge")
@click.argument("name", required=False)
@output_option
def dlq_purge(name: str | None, output: OutputFormat) -> None:
    """Delete the dead-lettered invocations (of function NAME; without NAME, all of them)."""
    done = ApiClient(load_settings()).json("DELETE", "/v1/dlq", params=_query(name))
    emit(output, done, lambda: echo_text(f"purged {done['purged']} invocation(s)"))
