"""`donjon scan PATH`: the deploy gate's engine, for CI and local use.

Exit codes: 0 when nothing reaches the threshold, 1 when a finding does
(``--fail-on`` severity and ``--min-confidence``), 2 when the scan could not run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from donjon.cli.output import printable, printable_json
from donjon.config import load_settings
from donjon.errors import Error
from donjon.scan.format import FORMATS

if TYPE_CHECKING:
    from donjon.scan import AdvisoryDB

__all__ = ["scan_command"]

_SEVERITIES = ["low", "medium", "high", "critical", "none"]
_CONFIDENCES = ["low", "medium", "high"]


@click.command("scan")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Report format.",
)
@click.option(
    "--fail-on",
    type=click.Choice(_SEVERITIES),
    default="high",
    show_default=True,
    help="Exit 1 when a finding has at least this severity ('none': never).",
)
@click.option(
    "--min-confidence",
    type=click.Choice(_CONFIDENCES),
    default="medium",
    show_default=True,
    help="Only findings this sure count for --fail-on.",
)
@click.option(
    "--advisories",
    type=click.Path(path_type=Path),
    help="OSV records: a directory or an export zip (default: the data dir's).",
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    help="Accept the findings recorded in this baseline file.",
)
@click.option(
    "--write-baseline",
    type=click.Path(path_type=Path),
    help="Record every current finding in this baseline file.",
)
@click.option(
    "--update-db", is_flag=True, help="Download OSV's PyPI advisories into the data dir first."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Write the report to this file instead of standard output.",
)
@click.pass_context
def scan_command(
    ctx: click.Context,
    path: Path | None,
    fmt: str,
    fail_on: str,
    min_confidence: str,
    advisories: Path | None,
    baseline: Path | None,
    write_baseline: Path | None,
    update_db: bool,
    output: Path | None,
) -> None:
    """Scan PATH (a function bundle or any Python project) for insecure code, hard-coded
    secrets, vulnerable dependencies and over-broad manifests."""
    try:
        code = _run(
            path,
            fmt,
            fail_on,
            min_confidence,
            advisories,
            baseline,
            write_baseline,
            update_db,
            output,
        )
    except Error as e:
        if (ctx.obj or {}).get("debug"):
            raise
        click.echo(f"error: {printable(e.message, multiline=True)}", err=True)
        if e.hint:
            click.echo(f"hint: {printable(e.hint, multiline=True)}", err=True)
        code = 2
    ctx.exit(code)


def _run(
    path: Path | None,
    fmt: str,
    fail_on: str,
    min_confidence: str,
    advisories: Path | None,
    baseline: Path | None,
    write_baseline: Path | None,
    update_db: bool,
    output: Path | None,
) -> int:
    from donjon import scan  # the scanner's imports stay off the CLI's start-up path

    if update_db:
        saved = scan.update_advisory_db(load_settings().data_dir)
        click.echo(f"advisory database updated: {saved}", err=True)
    if path is None:
        if update_db:
            return 0
        raise scan.ScanError("no PATH to scan", hint="donjon scan PATH (a bundle or project)")
    policy = None if fail_on == "none" else scan.ScanPolicy.from_strings(fail_on, min_confidence)
    renderer = scan.renderer_for(fmt)
    db = _advisories(advisories)
    # Egress grants are judged against this host's DONJON_EGRESS_ALLOW_NETWORKS, as the
    # node's deploy gate judges them against its own.
    networks = load_settings().egress.allow_networks
    report = scan.scan_path(path, advisories=db, baseline=baseline, egress_networks=networks)
    rendered = renderer.render(report)
    if output is not None:
        try:
            output.write_text(rendered, encoding="utf-8")
        except OSError as e:
            raise scan.ScanError(f"cannot write {output}: {e.strerror}") from e
    else:
        # The report quotes the scanned code: escaped for the terminal (JSON stays JSON).
        sys.stdout.write(
            printable_json(rendered) if fmt != "text" else printable(rendered, multiline=True)
        )
    if write_baseline is not None:
        count = scan.write_baseline((*report.findings, *report.suppressed), write_baseline)
        click.echo(f"baseline written: {count} finding(s) accepted in {write_baseline}", err=True)
    blocking = report.blocking(policy) if policy is not None else ()
    if blocking:
        click.echo(
            f"{len(blocking)} finding(s) at or above --fail-on {fail_on} "
            f"(confidence {min_confidence} or more)",
            err=True,
        )
        return 1
    return 0


def _advisories(explicit: Path | None) -> AdvisoryDB | None:
    from donjon import scan

    data_dir = load_settings().data_dir
    # The parsed database is cached in an initialised data dir (never creates one).
    cache = scan.cache_dir_for(data_dir) if data_dir.is_dir() else None
    if explicit is not None:
        return scan.AdvisoryDB.load(explicit, cache_dir=cache)
    default = scan.advisories_dir(data_dir)
    if default.is_dir() and any(default.iterdir()):
        return scan.AdvisoryDB.load(default, cache_dir=cache)
    return None  # the report notes which dependencies went unchecked
