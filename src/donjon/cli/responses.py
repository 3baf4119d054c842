"""`donjon function release|quarantine|quarantined` and `donjon throttle ls|rm`: the
monitor's automatic responses, seen and undone by a person (gateway/responses_api.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from donjon.cli.client import ApiClient
from donjon.cli.output import OutputFormat, echo_text, emit, output_option, print_table, when
from donjon.cli.roles import parse_duration
from donjon.config import load_settings

__all__ = ["function", "throttle"]


@click.group()
def function() -> None:
    """Quarantine and release functions (the monitor's automatic responses)."""


@function.command("release")
@click.argument("name")
@output_option
def function_release(name: str, output: OutputFormat) -> None:
    """Serve a quarantined function again (admins; audited function.release)."""
    path = f"/v1/functions/{quote(name, safe='')}/release"
    answer = ApiClient(load_settings()).json("POST", path)
    emit(output, answer, lambda: echo_text(f"released {name}: it serves again"))


@function.command("quarantine")
@click.argument("name")
@click.option("--reason", required=True, help="Why (kept with it, shown to its callers).")
@output_option
def function_quarantine(name: str, reason: str, output: OutputFormat) -> None:
    """Stop serving a function (503) until `donjon function release NAME` (admins; audited)."""
    answer = ApiClient(load_settings()).json(
        "POST", f"/v1/functions/{quote(name, safe='')}/quarantine", json={"reason": reason}
    )
    already = isinstance(answer, dict) and not answer.get("changed", True)
    emit(
        output,
        answer,
        lambda: echo_text(f"{name} {'was already' if already else 'is now'} quarantined"),
    )


@function.command("quarantined")
@output_option
def function_quarantined(output: OutputFormat) -> None:
    """List the quarantined functions, why, and the alert each answers."""
    answer = _responses()
    rows = answer.get("quarantined", [])
    emit(
        output,
        rows,
        lambda: print_table(
            ["FUNCTION", "SINCE", "BY", "ALERT", "REASON"],
            [
                [q["function"], when(q["since"]), q["by"], _seq(q["alert_seq"]), q["reason"]]
                for q in rows
            ],
            empty="no function is quarantined",
        ),
    )


@click.group()
def throttle() -> None:
    """The throttles the monitor set on principals, sources and functions."""


@throttle.command("ls")
@output_option
def throttle_ls(output: OutputFormat) -> None:
    """List the throttles in force."""
    rows = _responses().get("throttles", [])
    emit(
        output,
        rows,
        lambda: print_table(
            ["SUBJECT", "RATE", "UNTIL", "ALERT", "REASON"],
            [
                [t["subject"], t["rate"], when(t["until"]), _seq(t["alert_seq"]), t["reason"]]
                for t in rows
            ],
            empty="no throttles in force",
        ),
    )


@throttle.command("add")
@click.argument("subject")
@click.option("--reason", required=True, help="Why (kept with it).")
@click.option("--for", "duration", default=None, help="How long (1h, 2d); default the node's.")
@output_option
def throttle_add(subject: str, reason: str, duration: str | None, output: OutputFormat) -> None:
    """Throttle a principal (key:ID, a bare key id, jwt:ISSUER:SUB) or a function (function:NAME)
    by hand, at the node's throttle rate. Admins; audited response.throttle."""
    if ":" not in subject:
        subject = f"principal:key:{subject}"
    elif not subject.startswith(("principal:", "function:", "source:")):
        subject = f"principal:{subject}"
    body: dict[str, Any] = {"reason": reason}
    if duration is not None:
        body["duration_s"] = parse_duration(duration, "--for")
    answer = ApiClient(load_settings()).json(
        "PUT", f"/v1/throttles/{quote(subject, safe=':')}", json=body
    )
    emit(
        output,
        answer,
        lambda: echo_text(
            f"throttled {answer['subject']} to {answer['rate']} until {when(answer['until'])}"
        ),
    )


@throttle.command("rm")
@click.argument("subject")
@output_option
def throttle_rm(subject: str, output: OutputFormat) -> None:
    """Lift a throttle: SUBJECT as `throttle ls` shows it (principal:key:ID, source:ADDRESS,
    function:NAME); a bare key id means its principal. Admins; audited response.unthrottle."""
    if ":" not in subject:
        subject = f"principal:key:{subject}"
    elif not subject.startswith(("principal:", "function:", "source:")):
        subject = f"principal:{subject}"
    ApiClient(load_settings()).request("DELETE", f"/v1/throttles/{quote(subject, safe=':')}")
    emit(output, {"lifted": subject}, lambda: echo_text(f"lifted the throttle on {subject}"))


def _responses() -> dict[str, Any]:
    answer = ApiClient(load_settings()).json("GET", "/v1/responses")
    return answer if isinstance(answer, dict) else {}


def _seq(value: object) -> str:
    return "-" if value is None else str(value)
