"""secret set/ls/rm/rotate, vault rekey. Values come from stdin or a file, never argv."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from donjon.cli.client import ApiClient
from donjon.cli.output import OutputFormat, echo_text, emit, output_option, print_table, when
from donjon.config import load_settings
from donjon.vault.names import MAX_VALUE_BYTES, check_name, check_value

__all__ = ["secret", "vault"]


def _read_value(from_file: Path | None) -> str:
    """The value from `from_file`, or stdin (asked for, unechoed, on a terminal).

    One trailing newline is dropped (what `echo` and editors add)."""
    if from_file is not None:
        with from_file.open("rb") as f:
            data = f.read(MAX_VALUE_BYTES + 2)
    elif sys.stdin.isatty():
        data = click.prompt("value", hide_input=True, err=True).encode()
    else:
        data = sys.stdin.buffer.read(MAX_VALUE_BYTES + 2)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter("the value is not UTF-8 text", param_hint="value") from None
    return check_value(text)


_FROM_FILE = click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Read the value from this file (default: stdin).",
)


@click.group()
def secret() -> None:
    """Manage vault secrets (values are write-only: nothing ever shows them)."""


@secret.command("set")
@click.argument("name")
@_FROM_FILE
@output_option
def secret_set(name: str, from_file: Path | None, output: OutputFormat) -> None:
    """Create secret NAME (version 1) from stdin or --from-file."""
    check_name(name)
    value = _read_value(from_file)
    done = ApiClient(load_settings()).json("POST", f"/v1/secrets/{name}", json={"value": value})
    emit(output, done, lambda: echo_text(f"set {done['name']} version {done['version']}"))


@secret.command("rotate")
@click.argument("name")
@_FROM_FILE
@click.option(
    "--no-grace",
    is_flag=True,
    help="Delete the older versions too: webhooks stop accepting them at once (a leaked "
    "value). An admin's or the secret's creator's only.",
)
@output_option
def secret_rotate(name: str, from_file: Path | None, no_grace: bool, output: OutputFormat) -> None:
    """Give NAME a new version; every call from now on gets it. Webhooks accept the older
    versions for DONJON_WEBHOOK_SECRET_GRACE_S more, unless --no-grace."""
    check_name(name)
    value = _read_value(from_file)
    body: dict[str, object] = {"value": value}
    if no_grace:
        body["no_grace"] = True
    done = ApiClient(load_settings()).json("POST", f"/v1/secrets/{name}/versions", json=body)
    emit(output, done, lambda: echo_text(f"rotated {done['name']} to version {done['version']}"))


@secret.command("ls")
@output_option
def secret_ls(output: OutputFormat) -> None:
    """List secrets: names, versions, dates and the functions using each (granted it, or
    whose triggers name it)."""
    rows = ApiClient(load_settings()).json("GET", "/v1/secrets")
    emit(output, rows, lambda: _secret_table(rows))


def _secret_table(rows: list[dict[str, Any]]) -> None:
    print_table(
        ["NAME", "VERSION", "VERSIONS", "CREATED", "UPDATED", "GRANTED TO"],
        [
            [
                r["name"],
                str(r["latest"]),
                str(r["versions"]),
                when(r["created_at"]),
                when(r["updated_at"]),
                ",".join(r["granted_to"]) or "-",
            ]
            for r in rows
        ],
        empty="no secrets",
    )


@secret.command("rm")
@click.argument("name")
@output_option
def secret_rm(name: str, output: OutputFormat) -> None:
    """Delete NAME and all its versions (refused while a deployed function is granted it or
    its triggers name it)."""
    check_name(name)
    ApiClient(load_settings()).request("DELETE", f"/v1/secrets/{name}")
    emit(output, {"removed": name}, lambda: echo_text(f"removed {name}"))


@click.group()
def vault() -> None:
    """The vault's keys."""


@vault.command("rekey")
@output_option
def vault_rekey(output: OutputFormat) -> None:
    """Re-wrap every data key under a new key-encryption key, while the node serves."""
    done = ApiClient(load_settings()).json("POST", "/v1/vault/rekey")
    emit(
        output,
        done,
        lambda: echo_text(f"re-wrapped {done['rewrapped']} data keys under {done['kek_id']}"),
    )
