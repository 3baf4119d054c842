"""invoke, ls, describe, rm; and `deploy_dir`, which `deploy` and `up` share."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from donjon import boundedjson
from donjon.cli.client import ApiClient, ApiError
from donjon.cli.logs import fetch_call_log, log_tail
from donjon.cli.output import (
    OutputFormat,
    echo_json,
    echo_json_text,
    echo_text,
    emit,
    output_option,
    print_table,
    printable_lines,
    when,
)
from donjon.config import load_settings

if TYPE_CHECKING:
    from donjon.manifest import Manifest

__all__ = [
    "build_for_node",
    "deploy_dir",
    "describe",
    "invoke",
    "ls",
    "read_event",
    "rm",
    "upload_bundle",
]

#: The largest event the gateway takes (gateway/invoke.py's MAX_EVENT_BYTES).
MAX_EVENT_BYTES = 6 * 1024 * 1024


def deploy_dir(
    client: ApiClient,
    directory: Path,
    *,
    unsafe_skip_scan: bool = False,
    unsafe_allow_broad: bool = False,
    unsafe_allow_public: bool = False,
) -> dict[str, object]:
    """Build the bundle locally (validate, vendor) and upload it; the server scans it.

    Dependencies are vendored for the node's sandbox interpreter and platform
    (`build_for_node`), whatever Python runs this command.
    """
    manifest, archive = build_for_node(client, directory)
    return upload_bundle(
        client,
        archive,
        manifest.model_dump(mode="json", exclude_none=True),
        unsafe_skip_scan=unsafe_skip_scan,
        unsafe_allow_broad=unsafe_allow_broad,
        unsafe_allow_public=unsafe_allow_public,
    )


def build_for_node(client: ApiClient, directory: Path) -> tuple[Manifest, bytes]:
    """Validate and build `directory`; its requirements are vendored for the node's
    sandbox interpreter and platform, as the node says (GET /v1/runtime)."""
    from donjon.bundle import build_bundle
    from donjon.bundle.target import RuntimeTarget, marker_mismatch

    target = None
    if (directory / "requirements.txt").is_file():
        answer = client.json("GET", "/v1/runtime")
        target = RuntimeTarget.from_json(answer.get("python") if isinstance(answer, dict) else None)
        mismatch = marker_mismatch(target)
        if mismatch:
            echo_text(f"warning: {mismatch}", err=True)
    return build_bundle(directory, target=target)


def upload_bundle(
    client: ApiClient,
    archive: bytes,
    manifest: dict[str, Any],
    *,
    unsafe_skip_scan: bool = False,
    unsafe_allow_broad: bool = False,
    unsafe_allow_public: bool = False,
) -> dict[str, object]:
    """Send a built bundle; the reply (name, version, digest, scan, warnings, unchanged)."""
    params = {"unsafe_skip_scan": "true"} if unsafe_skip_scan else {}
    if unsafe_allow_broad:
        params["unsafe_allow_broad"] = "true"
    if unsafe_allow_public:
        params["unsafe_allow_public"] = "true"
    result: dict[str, object] = client.json(
        "POST",
        "/v1/functions",
        content=archive,
        params=params,
        headers={"content-type": "application/gzip"},
    )
    result["manifest"] = manifest
    return result


def read_event(data: str) -> bytes:
    """--data: JSON as typed, @FILE for a file's content, - for stdin; checked to be JSON."""
    if data == "-":
        raw = sys.stdin.buffer.read(MAX_EVENT_BYTES + 1)
    elif data.startswith("@"):
        try:
            with Path(data[1:]).open("rb") as f:
                raw = f.read(MAX_EVENT_BYTES + 1)
        except OSError as e:
            raise click.BadParameter(
                f"cannot read {data[1:]}: {e.strerror}", param_hint="--data"
            ) from e
    else:
        raw = data.encode()
    if len(raw) > MAX_EVENT_BYTES:
        raise click.BadParameter(
            f"the event is over {MAX_EVENT_BYTES} bytes, the most the gateway takes",
            param_hint="--data",
        )
    try:
        boundedjson.loads(raw)
    except boundedjson.JSONTooDeep as e:
        raise click.BadParameter(e.message, param_hint="--data") from e
    except ValueError as e:
        raise click.BadParameter(f"not valid JSON: {e}", param_hint="--data") from e
    return raw


@click.command()
@click.argument("name")
@click.option(
    "--data",
    "data",
    default="{}",
    show_default=True,
    help="The event: JSON, @FILE to read it from a file, or - to read it from stdin.",
)
@click.option(
    "--log-type",
    type=click.Choice(["none", "tail"]),
    default="none",
    show_default=True,
    help="tail: print the end of the call's log (START/END/REPORT, output; 4 KiB) "
    "on stderr. Needs the right to read the function's logs.",
)
@click.option(
    "--async",
    "run_async",
    is_flag=True,
    help="Queue the event and print its invocation id at once (Prefer: respond-async); "
    "retried per the function's `retry`; see GET /v1/invocations/ID.",
)
@output_option
def invoke(name: str, data: str, log_type: str, run_async: bool, output: OutputFormat) -> None:
    """Invoke function NAME with an event and print its result.

    With --output json it prints {"request_id", "result"} (and "log" with
    --log-type tail) instead of the bare result. With --async it prints the
    queued invocation's id ({"invocation_id", "status", "location", "request_id"}).
    """
    event = read_event(data)
    client = ApiClient(load_settings())
    if run_async:
        if log_type == "tail":
            raise click.UsageError("--log-type tail needs a sync call: drop --async")
        _invoke_async(client, name, event, output)
        return
    try:
        response = client.request(
            "POST",
            f"/v1/functions/{name}/invoke",
            content=event,
            headers={"content-type": "application/json"},
        )
    except ApiError as e:
        if log_type == "tail" and e.request_id:
            _print_tail(client, name, e.request_id)  # why it failed, for those who may see it
        raise
    request_id = response.headers.get("x-request-id", "")
    tail = _print_tail(client, name, request_id) if log_type == "tail" else None
    if output is OutputFormat.JSON:
        doc: dict[str, Any] = {"request_id": request_id, "result": response.json()}
        if tail is not None:
            doc["log"] = tail
        echo_json(doc)
    else:
        echo_json_text(response.text)


def _invoke_async(client: ApiClient, name: str, event: bytes, output: OutputFormat) -> None:
    response = client.request(
        "POST",
        f"/v1/functions/{name}/invoke",
        content=event,
        headers={"content-type": "application/json", "prefer": "respond-async"},
    )
    if response.status_code != 202:  # a node that ignored the preference answered at once
        raise ApiError(f"the node did not queue the call (HTTP {response.status_code})")
    accepted = response.json()
    doc = {**accepted, "location": response.headers.get("location", "")}
    emit(output, doc, lambda: echo_text(f"queued {doc['invocation_id']}"))


def _print_tail(client: ApiClient, name: str, request_id: str) -> str | None:
    """The call's log tail on stderr (and returned); a note there if it cannot be read."""
    try:
        entry = fetch_call_log(client, name, request_id)
    except ApiError as e:
        echo_text(f"no log tail: {e.message}", err=True)
        return None
    if entry is None:
        echo_text(f"no log tail: nothing recorded for request {request_id}", err=True)
        return None
    tail = log_tail(entry)
    click.echo(printable_lines(tail, marker=""), err=True)
    return tail


@click.command()
@output_option
def ls(output: OutputFormat) -> None:
    """List deployed functions."""
    functions = ApiClient(load_settings()).json("GET", "/v1/functions")

    def table() -> None:
        rows = []
        for f in functions:
            triggers = [_trigger_label(t) for t in f["manifest"].get("triggers", [])]
            rows.append(
                [
                    f["name"],
                    str(f["version"]),
                    f["digest"][:12],
                    f["manifest"].get("isolation", "invocation"),
                    " ".join(triggers) or "-",
                    when(f["deployed_at"]),
                    f"yes ({len(f.get('advisories') or [])})" if f.get("vulnerable") else "no",
                ]
            )
        headers = ["NAME", "VERSION", "DIGEST", "ISOLATION", "TRIGGERS", "DEPLOYED", "VULNERABLE"]
        print_table(headers, rows)

    emit(output, functions, table)


def _trigger_label(trigger: dict[str, Any]) -> str:
    """One trigger, short: its kind and what it serves (`http:/resize`, `webhook:/hooks/gh`)."""
    kind = next(iter(trigger), "?")
    spec = trigger.get(kind)
    if kind == "http" and isinstance(spec, dict):
        return f"http:{spec.get('path', '?')}"
    if kind in ("webhook", "s3") and isinstance(spec, dict) and spec.get("path"):
        return f"{kind}:/hooks{spec['path']}"
    if kind == "postgres" and isinstance(spec, dict):
        return f"postgres:{spec.get('channel', '?')}"
    return str(kind)


@click.command()
@click.argument("name")
@output_option
def describe(name: str, output: OutputFormat) -> None:
    """Show function NAME: version, digest, who deployed it, limits, triggers, grants.

    Also the advisories that cover its current version (docs/scanning.md).
    """
    view = ApiClient(load_settings()).json("GET", f"/v1/functions/{name}")
    emit(output, view, lambda: _describe_lines(view))


def _describe_lines(view: dict[str, Any]) -> None:
    m: dict[str, Any] = view["manifest"]
    perms: dict[str, Any] = m.get("permissions") or {}
    grants = [f"{k}: {','.join(map(str, v))}" for k, v in sorted(perms.items()) if v]
    limits: dict[str, Any] = m.get("limits") or {}
    fields = [
        ("name", view["name"]),
        ("version", view["version"]),
        ("digest", f"sha256:{view['digest']}"),
        ("deployed", f"{when(view['deployed_at'])} UTC by {view['deployed_by']}"),
        ("owner", view.get("owner") or "-"),
        ("handler", m.get("handler", "-")),
        ("memory", f"{m.get('memory_mb', '-')} MB"),
        ("timeout", f"{m.get('timeout_s', '-')} s"),
        ("isolation", m.get("isolation", "invocation")),
        ("permissions", "; ".join(grants) or "none"),
        ("limits", ", ".join(f"{k} {v}" for k, v in sorted(limits.items()) if v) or "-"),
    ]
    for label, value in fields:
        echo_text(f"{label + ':':<13}{value}")
    queue: dict[str, Any] | None = view.get("queue")
    if queue:
        pending = queue["pending"]
        count = "unknown (the count could not be read)" if pending is None else pending
        echo_text(f"{'queue:':<13}{count} pending of {queue['limit']} (limits.queued)")
    triggers = [_trigger(t) for t in m.get("triggers") or []]
    echo_text(f"{'triggers:':<13}{triggers[0] if triggers else 'none (invoke only)'}")
    for more in triggers[1:]:
        echo_text(f"{'':<13}{more}")
    advisories = [_advisory(a) for a in view.get("advisories") or []]
    echo_text(f"{'advisories:':<13}{advisories[0] if advisories else 'none known'}")
    for more in advisories[1:]:
        echo_text(f"{'':<13}{more}")


def _advisory(found: dict[str, Any]) -> str:
    """One advisory finding: `jinja2 2.10: GHSA-... (CVE-...) high, fixed in 2.10.1`."""
    aliases = f" ({', '.join(found.get('aliases') or [])})" if found.get("aliases") else ""
    fixed = ", ".join(found.get("fixed") or []) or "no fix published"
    return (
        f"{found.get('package')} {found.get('installed')}: {found.get('advisory')}{aliases} "
        f"{found.get('severity')}, fixed in {fixed}"
    )


def _trigger(trigger: dict[str, Any]) -> str:
    kind, spec = next(iter(trigger.items()), ("?", None))
    if kind == "http" and isinstance(spec, dict):
        methods = ",".join(spec.get("methods") or [])
        return f"http {methods} /fn{spec.get('path', '')} (auth: {spec.get('auth', '-')})"
    return f"{kind} {spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True)}"


@click.command()
@click.argument("name")
@output_option
def rm(name: str, output: OutputFormat) -> None:
    """Remove function NAME (its versions stay in the audit trail)."""
    ApiClient(load_settings()).request("DELETE", f"/v1/functions/{name}")
    emit(output, {"removed": name}, lambda: echo_text(f"removed {name}"))
