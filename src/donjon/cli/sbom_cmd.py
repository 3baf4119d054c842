"""`donjon sbom`, `donjon provenance` (through the admin API) and `donjon
verify-provenance` (offline: the envelope, the node's public key, the bundle)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from donjon.cli.client import ApiClient
from donjon.cli.files import key_text, read_bounded
from donjon.cli.output import (
    OutputFormat,
    echo_json_text,
    echo_text,
    emit,
    output_option,
    printable,
)
from donjon.config import load_settings
from donjon.errors import Error

__all__ = ["provenance", "sbom", "verify_provenance_command"]

_TARGET = re.compile(r"([a-z][a-z0-9-]{0,62})(?:@([1-9][0-9]{0,8}))?")


class TargetError(Error):
    """A NAME[@VERSION] argument that names no function version."""

    title = "Bad argument"


def _target(text: str) -> tuple[str, dict[str, str]]:
    """NAME[@VERSION] as the path's name and the query's version."""
    found = _TARGET.fullmatch(text)
    if found is None:
        raise TargetError(
            f"{printable(text[:80])!r} is not NAME or NAME@VERSION",
            hint="for example: hello, or hello@3",
        )
    name, version = found.groups()
    return name, ({"version": version} if version else {})


def _write(text: str, out: Path | None) -> None:
    """The document to `out` exactly as the node sent it, or to stdout made printable."""
    if out is not None:
        out.write_bytes(text.encode())
        return
    if text.lstrip().startswith("<"):
        click.echo(printable(text, multiline=True))
    else:
        echo_json_text(text)


_OUT = click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the document to this file, byte for byte as the node sent it.",
)


@click.command()
@click.argument("target", metavar="NAME[@VERSION]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "xml"]),
    default="json",
    show_default=True,
    help="CycloneDX JSON (the stored document, whose digest the provenance names) or XML.",
)
@_OUT
def sbom(target: str, fmt: str, out: Path | None) -> None:
    """Print the CycloneDX SBOM of function NAME (default: the version serving)."""
    name, params = _target(target)
    client = ApiClient(load_settings())
    try:
        response = client.request(
            "GET", f"/v1/functions/{name}/sbom", params={**params, "format": fmt}
        )
    finally:
        client.close()
    _write(response.text, out)


@click.command()
@click.argument("target", metavar="NAME[@VERSION]")
@_OUT
def provenance(target: str, out: Path | None) -> None:
    """Print the signed provenance of function NAME (a DSSE envelope; default: the version
    serving)."""
    name, params = _target(target)
    client = ApiClient(load_settings())
    try:
        response = client.request("GET", f"/v1/functions/{name}/provenance", params=params)
    finally:
        client.close()
    _write(response.text, out)


def _summary(statement: dict[str, Any]) -> dict[str, Any]:
    predicate = statement.get("predicate") or {}
    internal = (predicate.get("buildDefinition") or {}).get("internalParameters") or {}
    run = predicate.get("runDetails") or {}
    return {
        "deployed_by": internal.get("deployedBy"),
        "node": (run.get("builder") or {}).get("id"),
        "finished_on": (run.get("metadata") or {}).get("finishedOn"),
        "scan": internal.get("scan"),
        "byproducts": run.get("byproducts"),
    }


@click.command("verify-provenance")
@click.argument("statement_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_given",
    required=True,
    metavar="PUBKEY_FILE",
    help="The node's public key: a file holding what `donjon audit pubkey` prints, or that line.",
)
@click.option(
    "--bundle",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="The bundle deployed (its archive or unpacked tree): its digest must be the subject.",
)
@output_option
def verify_provenance_command(
    statement_file: Path, key_given: str, bundle: Path | None, output: OutputFormat
) -> None:
    """Check a provenance statement offline: its signature, payload type and subject.

    Exits 1, saying what failed, on a tampered payload, another key or another bundle.
    """
    from donjon.audit import VerifierKey
    from donjon.supply import verify_provenance
    from donjon.supply.dsse import MAX_ENVELOPE_BYTES

    key = VerifierKey.parse(key_text(key_given))
    statement = read_bounded(statement_file, MAX_ENVELOPE_BYTES, "a provenance statement")
    checked = verify_provenance(statement, key, bundle)
    result = {
        "ok": True,
        "subject": checked.subject,
        "bundle_digest": checked.bundle_digest,
        "bundle_checked": checked.bundle_checked,
        "statement_digest": checked.statement_digest,
        "key": str(key),
        **_summary(checked.statement),
    }

    def lines() -> None:
        echo_text(f"provenance verified: {checked.subject} sha256:{checked.bundle_digest}")
        echo_text(
            f"signed by:   {key.origin} ({'the bundle matches' if bundle else 'no bundle checked'})"
        )
        echo_text(f"deployed by: {result['deployed_by']} at {result['finished_on']}")
        echo_text(f"statement:   sha256:{checked.statement_digest}")

    emit(output, result, lines)
