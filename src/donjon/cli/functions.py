"""deploy, invoke, ls, logs, rm."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from donjon import boundedjson
from donjon.cli.client import ApiClient
from donjon.cli.output import (
    echo_json,
    echo_json_text,
    echo_text,
    print_table,
    printable,
    printable_lines,
    when,
)
from donjon.config import load_settings

__all__ = ["deploy", "deploy_dir", "invoke", "logs", "ls", "rm"]


def deploy_dir(
    client: ApiClient,
    directory: Path,
    *,
    unsafe_skip_scan: bool = False,
    unsafe_allow_broad: bool = False,
) -> dict[str, object]:
    """Build the bundle locally (validate, vendor) and upload it; the server scans it.

    Dependencies are vendored for the node's sandbox interpreter and platform, as
    the node says (GET /v1/runtime), whatever Python runs this command.
    """
    from donjon.bundle import build_bundle
    from donjon.bundle.target import RuntimeTarget, marker_mismatch

    target = None
    if (directory / "requirements.txt").is_file():
        answer = client.json("GET", "/v1/runtime")
        target = RuntimeTarget.from_json(answer.get("python") if isinstance(answer, dict) else None)
        mismatch = marker_mismatch(target)
        if mismatch:
            echo_text(f"warning: {mismatch}", err=True)
    manifest, archive = build_bundle(directory, target=target)
    params = {"unsafe_skip_scan": "true"} if unsafe_skip_scan else {}
    if unsafe_allow_broad:
        params["unsafe_allow_broad"] = "true"
    result: dict[str, object] = client.json(
        "POST",
        "/v1/functions",
        content=archive,
        params=params,
        headers={"content-type": "application/gzip"},
    )
    result["manifest"] = manifest.model_dump(mode="json", exclude_none=True)
    return result


def _warnings(result: dict[str, object]) -> list[str]:
    """The warnings a deploy's reply carries (the unsafe escape hatches it used)."""
    found = result.get("warnings")
    return [str(w) for w in found] if isinstance(found, list) else []


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--unsafe-skip-scan",
    is_flag=True,
    help="Admins only: deploy without the scan gate (audited, logged).",
)
@click.option(
    "--unsafe-allow-broad",
    is_flag=True,
    help="Admins only: let wildcard and over-broad permission grants through (audited, warned).",
)
def deploy(
    directory: Path, as_json: bool, unsafe_skip_scan: bool, unsafe_allow_broad: bool
) -> None:
    """Validate, vendor, scan and deploy the function bundle in DIRECTORY."""
    if unsafe_skip_scan:
        click.echo("warning: UNSAFE: deploying without the scan gate", err=True)
    if unsafe_allow_broad:
        click.echo("warning: UNSAFE: broad permission grants allowed", err=True)
    result = deploy_dir(
        ApiClient(load_settings()),
        directory,
        unsafe_skip_scan=unsafe_skip_scan,
        unsafe_allow_broad=unsafe_allow_broad,
    )
    if as_json:
        echo_json({k: result[k] for k in ("name", "version", "digest", "scan", "warnings")})
        for warning in _warnings(result):
            if warning.startswith("UNSAFE"):
                echo_text(f"warning: {warning}", err=True)
        return
    scan = result.get("scan")
    if isinstance(scan, dict) and scan.get("findings"):
        click.echo(printable(str(scan.get("report", "")).rstrip(), multiline=True))
    for warning in _warnings(result):
        echo_text(f"warning: {warning}", err=True)
    echo_text(
        f"deployed {result['name']} version {result['version']} digest sha256:{result['digest']}"
    )


@click.command()
@click.argument("name")
@click.option(
    "--data",
    "data",
    default="{}",
    show_default=True,
    help="The event as JSON, or - to read it from stdin.",
)
def invoke(name: str, data: str) -> None:
    """Invoke function NAME with an event and print its result."""
    raw = sys.stdin.read() if data == "-" else data
    try:
        boundedjson.loads(raw)
    except boundedjson.JSONTooDeep as e:
        raise click.BadParameter(e.message, param_hint="--data") from e
    except ValueError as e:
        raise click.BadParameter(f"not valid JSON: {e}", param_hint="--data") from e
    client = ApiClient(load_settings())
    response = client.request(
        "POST",
        f"/v1/functions/{name}/invoke",
        content=raw.encode(),
        headers={"content-type": "application/json"},
    )
    echo_json_text(response.text)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls(as_json: bool) -> None:
    """List deployed functions."""
    functions = ApiClient(load_settings()).json("GET", "/v1/functions")
    if as_json:
        echo_json(functions)
        return
    rows = []
    for f in functions:
        triggers = [t["http"]["path"] for t in f["manifest"].get("triggers", []) if "http" in t]
        rows.append(
            [
                f["name"],
                str(f["version"]),
                f["digest"][:12],
                f["manifest"].get("isolation", "invocation"),
                " ".join(triggers) or "-",
                when(f["deployed_at"]),
            ]
        )
    print_table(["NAME", "VERSION", "DIGEST", "ISOLATION", "HTTP", "DEPLOYED"], rows)


@click.command()
@click.argument("name")
@click.option("-n", "count", default=20, show_default=True, help="How many invocations.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def logs(name: str, count: int, as_json: bool) -> None:
    """Show function NAME's output and errors, per invocation."""
    entries = ApiClient(load_settings()).json(
        "GET", f"/v1/functions/{name}/logs", params={"n": count}
    )
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo(f"no output recorded for {name}")
    for e in entries:
        # Header lines start at the margin; every line of output starts with "| ".
        echo_text(f"--- {when(e['ts'])} request {e['request_id']} v{e['version']} {e['outcome']}")
        click.echo(printable_lines(e["output"].rstrip("\n")))


@click.command()
@click.argument("name")
def rm(name: str) -> None:
    """Remove function NAME (its versions stay in the audit trail)."""
    ApiClient(load_settings()).request("DELETE", f"/v1/functions/{name}")
    click.echo(f"removed {name}")
