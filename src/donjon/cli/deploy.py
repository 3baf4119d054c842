"""`donjon deploy DIR [DIR...]` and `donjon deploy -f stack.yaml`: one command, one summary.

Every bundle is built first (manifest checked, requirements vendored): if
any fails to build, nothing is sent. Then each is uploaded in turn; one the
server refuses (scan gate, route taken, grants) is reported and the others
still deploy, and the command exits 1. A bundle the function already runs
(same digest) is a no-op on the server, reported as `unchanged`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from donjon.cli.client import ApiClient, ApiError
from donjon.cli.files import read_bounded
from donjon.cli.functions import build_for_node, upload_bundle
from donjon.cli.output import (
    OutputFormat,
    echo_json,
    echo_text,
    output_option,
    print_table,
    printable,
)
from donjon.config import load_settings
from donjon.errors import Error

__all__ = ["StackError", "deploy", "read_stack"]

MAX_STACK_BYTES = 64 * 1024
MAX_FUNCTIONS = 200


class StackError(Error):
    """A stack file or the list of directories to deploy is not usable."""

    title = "Bad stack"


class _Stack(BaseModel):
    """A stack file: the function directories to deploy, relative to the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    functions: list[str]


def read_stack(path: Path) -> list[Path]:
    """The directories a stack file lists (`functions: [dir, ...]`), relative to it."""
    raw = read_bounded(path, MAX_STACK_BYTES, "a stack file")
    try:
        stack = _Stack.model_validate(yaml.safe_load(raw))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise StackError(f"{path} is not YAML: {e}") from None
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors()
        )
        raise StackError(
            f"{path}: {problems}", hint="a stack file is `functions: [dir, dir, ...]`"
        ) from None
    return [path.parent / d for d in stack.functions]


def _directories(given: tuple[Path, ...], stack: Path | None) -> list[Path]:
    dirs = [*given, *(read_stack(stack) if stack is not None else [])]
    if not dirs:
        raise StackError("nothing to deploy", hint="name directories, or a stack file with -f")
    if len(dirs) > MAX_FUNCTIONS:
        raise StackError(f"{len(dirs)} directories: at most {MAX_FUNCTIONS} in one deploy")
    seen: set[Path] = set()
    for d in dirs:
        if not d.is_dir():
            raise StackError(f"{d} is not a directory")
        real = d.resolve()
        if real in seen:
            raise StackError(f"{d} is named twice")
        seen.add(real)
    return dirs


@dataclass
class _Built:
    directory: Path
    name: str
    archive: bytes
    manifest: dict[str, Any]


def _build_all(client: ApiClient, dirs: list[Path]) -> list[_Built]:
    """Build every bundle, or raise the first failure (nothing sent yet)."""
    built: list[_Built] = []
    names: dict[str, Path] = {}
    for d in dirs:
        try:
            manifest, archive = build_for_node(client, d)
        except Error as e:
            e.message = f"{d}: {e.message}"
            if len(dirs) > 1:
                e.hint = (e.hint + "; " if e.hint else "") + "nothing was deployed"
            raise
        if manifest.name in names:
            raise StackError(
                f"{d} and {names[manifest.name]} both define function {manifest.name}",
                hint="nothing was deployed",
            )
        names[manifest.name] = d
        dump = manifest.model_dump(mode="json", exclude_none=True)
        built.append(_Built(d, manifest.name, archive, dump))
    return built


@click.command()
@click.argument(
    "directories", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "-f",
    "--file",
    "stack",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A stack file listing function directories (`functions: [dir, ...]`).",
)
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
@click.option(
    "--unsafe-allow-public",
    is_flag=True,
    help="Admins only: let through triggers open to unauthenticated events (a webhook "
    "without a secret, a public http trigger without limits.rate; audited, warned).",
)
@output_option
def deploy(
    directories: tuple[Path, ...],
    stack: Path | None,
    unsafe_skip_scan: bool,
    unsafe_allow_broad: bool,
    unsafe_allow_public: bool,
    output: OutputFormat,
) -> None:
    """Validate, vendor, scan and deploy the function bundles in DIRECTORIES (or -f STACK).

    With --output json: one directory prints its result object; several (or a
    stack) print a list of them, each with its directory and, if refused, its error.
    """
    if unsafe_skip_scan:
        click.echo("warning: UNSAFE: deploying without the scan gate", err=True)
    if unsafe_allow_broad:
        click.echo("warning: UNSAFE: broad permission grants allowed", err=True)
    if unsafe_allow_public:
        click.echo("warning: UNSAFE: triggers open to unauthenticated events allowed", err=True)
    hatches = _Hatches(unsafe_skip_scan, unsafe_allow_broad, unsafe_allow_public)
    dirs = _directories(directories, stack)
    client = ApiClient(load_settings())
    built = _build_all(client, dirs)
    if len(built) == 1 and stack is None:
        result = _upload(client, built[0], hatches)
        _report_one(result, output)
        return
    results: list[dict[str, Any]] = []
    for b in built:
        try:
            result = _upload(client, b, hatches)
        except ApiError as e:
            echo_text(f"{b.directory}: refused:", err=True)
            click.echo(printable(e.message, multiline=True), err=True)
            results.append({"directory": str(b.directory), "name": b.name, "error": e.message})
            continue
        if output is OutputFormat.TABLE:
            _report_one(result, output)
        results.append({"directory": str(b.directory), **_fields(result)})
    failed = sum(1 for r in results if "error" in r)
    if output is OutputFormat.JSON:
        echo_json(results)
    else:
        _summary(results)
    if failed:
        raise click.exceptions.Exit(1)


@dataclass(frozen=True)
class _Hatches:
    """The escape hatches a deploy asked for (each admin-only, audited and warned)."""

    skip_scan: bool
    allow_broad: bool
    allow_public: bool


def _upload(client: ApiClient, b: _Built, hatches: _Hatches) -> dict[str, Any]:
    return upload_bundle(
        client,
        b.archive,
        b.manifest,
        unsafe_skip_scan=hatches.skip_scan,
        unsafe_allow_broad=hatches.allow_broad,
        unsafe_allow_public=hatches.allow_public,
    )


def _fields(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "version", "digest", "scan", "warnings", "unchanged", "message")
    return {k: result[k] for k in keys if k in result}


def _warnings(result: dict[str, Any]) -> list[str]:
    """The warnings a deploy's reply carries (the unsafe escape hatches it used)."""
    found = result.get("warnings")
    return [str(w) for w in found] if isinstance(found, list) else []


def _report_one(result: dict[str, Any], output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        echo_json(_fields(result))
        for warning in _warnings(result):
            if warning.startswith("UNSAFE"):
                echo_text(f"warning: {warning}", err=True)
        return
    scan = result.get("scan")
    if isinstance(scan, dict) and scan.get("findings"):
        click.echo(printable(str(scan.get("report", "")).rstrip(), multiline=True))
    for warning in _warnings(result):
        echo_text(f"warning: {warning}", err=True)
    if result.get("unchanged"):
        echo_text(f"unchanged: {result.get('message', '')}")
        return
    echo_text(
        f"deployed {result['name']} version {result['version']} digest sha256:{result['digest']}"
    )


def _summary(results: list[dict[str, Any]]) -> None:
    rows = []
    for r in results:
        if "error" in r:
            outcome = "refused: " + str(r["error"]).split("\n", 1)[0]
        elif r.get("unchanged"):
            outcome = f"unchanged (version {r['version']})"
        else:
            outcome = f"deployed version {r['version']}"
        rows.append([r["name"], r["directory"], outcome])
    print_table(["FUNCTION", "DIRECTORY", "RESULT"], rows)
    deployed = sum(1 for r in results if "error" not in r and not r.get("unchanged"))
    unchanged = sum(1 for r in results if r.get("unchanged"))
    failed = len(results) - deployed - unchanged
    echo_text(
        f"{len(results)} functions: {deployed} deployed, {unchanged} unchanged, {failed} refused"
    )
