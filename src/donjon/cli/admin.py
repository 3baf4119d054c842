"""key create/ls/rotate/revoke, audit verify (the other audit commands: cli/audit_cmd.py)."""

from __future__ import annotations

from typing import Any

import click

from donjon.cli.client import ApiClient
from donjon.cli.output import (
    OutputFormat,
    echo_json,
    echo_text,
    emit,
    output_option,
    print_table,
    when,
)
from donjon.cli.roles import parse_duration
from donjon.config import load_settings
from donjon.vault import AUDIT_MAC_PURPOSE, MasterKey, VaultError

__all__ = ["audit", "key"]


_SIGV4_HELP = (
    "Also print the key's AWS SigV4 secret (the Lambda Invoke API's secret access key; "
    "the access key id is the key's id)."
)


@click.group()
def key() -> None:
    """Manage API keys."""


@key.command("create")
@click.argument("name")
@click.option("--role", required=True, help="admin, developer, invoker, auditor, or a custom role.")
@click.option("--functions", default=None, help="Only these functions (a,b).")
@click.option("--expires-in", default=None, help="The key stops working after this (30d, 12h).")
@output_option
@click.option("--sigv4", is_flag=True, help=_SIGV4_HELP)
def key_create(
    name: str,
    role: str,
    functions: str | None,
    expires_in: str | None,
    output: OutputFormat,
    sigv4: bool,
) -> None:
    """Create a key; it is printed once and never again (--output json: {"id", "key"})."""
    body: dict[str, object] = {"name": name, "role": role}
    if expires_in is not None:
        body["expires_in_s"] = parse_duration(expires_in, "--expires-in")
    if functions is not None:
        names = [f.strip() for f in functions.split(",") if f.strip()]
        if not names:
            raise click.BadParameter("name at least one function", param_hint="--functions")
        body["functions"] = names
    created = ApiClient(load_settings()).json("POST", "/v1/keys", json=body)
    if output is OutputFormat.JSON:
        echo_json(_shown(created, sigv4))
    else:
        echo_text(
            f"created key {created['id']} ({role}, functions: "
            f"{','.join(created['functions'])}, expires: {when(created.get('expires_at'))}); "
            "it will not be shown again:"
        )
        _echo_sigv4(created, sigv4)
        echo_text(created["key"])


@key.command("ls")
@output_option
def key_ls(output: OutputFormat) -> None:
    """List keys (never the keys themselves); ids in full, whatever the terminal's width."""
    keys = ApiClient(load_settings()).json("GET", "/v1/keys")
    emit(output, keys, lambda: _key_table(keys))


def _key_table(keys: list[dict[str, Any]]) -> None:
    print_table(
        ["ID", "NAME", "ROLE", "FUNCTIONS", "CREATED", "EXPIRES", "LAST USED", "REVOKED"],
        [
            [
                k["id"],
                k["name"],
                k["role"],
                ",".join(k["functions"]),
                when(k["created_at"]),
                when(k.get("expires_at")),
                when(k.get("last_used_at")),
                when(k["revoked_at"]),
            ]
            for k in keys
        ],
    )


@key.command("rotate")
@click.argument("key_id")
@click.option(
    "--overlap", default="1h", show_default=True, help="How long the old secret keeps working."
)
@output_option
@click.option("--sigv4", is_flag=True, help=_SIGV4_HELP)
def key_rotate(key_id: str, overlap: str, output: OutputFormat, sigv4: bool) -> None:
    """A new secret for KEY_ID (same id, role and owner); printed once and never again."""
    body = {"overlap_s": parse_duration(overlap, "--overlap")}
    done = ApiClient(load_settings()).json("POST", f"/v1/keys/{key_id}/rotate", json=body)
    if output is OutputFormat.JSON:
        echo_json(_shown(done, sigv4))
        return
    echo_text(
        f"rotated key {done['id']}; the old secret works until {when(done['previous_until'])}. "
        "The new one will not be shown again:"
    )
    _echo_sigv4(done, sigv4)
    echo_text(done["key"])


def _shown(created: dict[str, str], sigv4: bool) -> dict[str, str]:
    shown = {"id": created["id"], "key": created["key"]}
    if sigv4:
        shown["sigv4_secret"] = created["sigv4_secret"]
    return shown


def _echo_sigv4(created: dict[str, str], sigv4: bool) -> None:
    if sigv4:
        echo_text(
            f"AWS SigV4 (Lambda Invoke API): aws_access_key_id={created['id']} "
            f"aws_secret_access_key={created['sigv4_secret']}"
        )


@key.command("revoke")
@click.argument("key_id")
@output_option
def key_revoke(key_id: str, output: OutputFormat) -> None:
    """Revoke a key; it stops working on the next request."""
    ApiClient(load_settings()).request("DELETE", f"/v1/keys/{key_id}")
    emit(output, {"revoked": key_id}, lambda: echo_text(f"revoked {key_id}"))


@click.group()
def audit() -> None:
    """Read and check the audit log."""


@audit.command("verify")
@output_option
def audit_verify(output: OutputFormat) -> None:
    """Check the whole hash chain and its signed head (reads the data dir directly)."""
    from donjon.audit import verify_log
    from donjon.store import connect

    settings = load_settings()
    if not settings.db_path.exists():
        raise VaultError(f"no database in {settings.data_dir}", hint="run `donjon init`")
    master = MasterKey.load(settings.master_key_path)
    engine = connect(settings.database_url)
    try:
        result = verify_log(engine, master.derive(AUDIT_MAC_PURPOSE))
    finally:
        engine.dispose()
    if output is OutputFormat.JSON:
        echo_json(
            {
                "ok": result.ok,
                "records": result.records,
                "bad_seq": result.bad_seq,
                "reason": result.reason,
            }
        )
    if result.ok:
        if output is OutputFormat.TABLE:
            click.echo(f"audit log intact: {result.records} records")
        return
    if output is OutputFormat.TABLE:
        click.echo(
            f"audit log TAMPERED: first bad record {result.bad_seq}: {result.reason}", err=True
        )
    raise SystemExit(2)
