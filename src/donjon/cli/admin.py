"""key create/ls/rotate/revoke, audit verify (the other audit commands: cli/audit_cmd.py)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

import click

from donjon.cli.client import ApiClient
from donjon.cli.files import key_text
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
from donjon.config import Settings, load_settings
from donjon.cpus import usable_cpus
from donjon.vault import VaultError

if TYPE_CHECKING:
    from donjon.audit import VerifierKey

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
@click.option(
    "--role",
    required=True,
    help="admin, developer, invoker, auditor, metrics (metrics:read only), or a custom role.",
)
@click.option("--functions", default=None, help="Only these functions (a,b).")
@click.option("--expires-in", default=None, help="The key stops working after this (30d, 12h).")
@click.option(
    "--rate", default=None, help="Its own token bucket's refill, e.g. 50/second (default: role's)."
)
@click.option("--burst", type=click.IntRange(min=1), default=None, help="Its bucket's size.")
@click.option(
    "--concurrency", type=click.IntRange(min=1), default=None, help="Its calls in flight at once."
)
@output_option
@click.option("--sigv4", is_flag=True, help=_SIGV4_HELP)
def key_create(
    name: str,
    role: str,
    functions: str | None,
    expires_in: str | None,
    rate: str | None,
    burst: int | None,
    concurrency: int | None,
    output: OutputFormat,
    sigv4: bool,
) -> None:
    """Create a key; it is printed once and never again (--output json: {"id", "key"}).

    --rate, --burst and --concurrency set the key's own limits (docs/limits.md); what
    they leave unset comes from the role's document, else the server's defaults."""
    body: dict[str, object] = {"name": name, "role": role}
    for field, value in (("rate", rate), ("burst", burst), ("concurrency", concurrency)):
        if value is not None:
            body[field] = value
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
        ["ID", "NAME", "ROLE", "FUNCTIONS", "LIMITS", "CREATED", "EXPIRES", "LAST USED", "REVOKED"],
        [
            [
                k["id"],
                k["name"],
                k["role"],
                ",".join(k["functions"]),
                _limits_text(k),
                when(k["created_at"]),
                when(k.get("expires_at")),
                when(k.get("last_used_at")),
                when(k["revoked_at"]),
            ]
            for k in keys
        ],
    )


def _limits_text(k: dict[str, Any]) -> str:
    """`rate=50/second burst=100 concurrency=4`, or `-` (the role's, else the default)."""
    parts = [f"{f}={k[f]}" for f in ("rate", "burst", "concurrency") if k.get(f) is not None]
    return " ".join(parts) or "-"


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


def _verifier_key(settings: Settings, given: str | None) -> VerifierKey:
    """--key (a verifier key string or a file holding one), else the data dir's."""
    from donjon.audit import SigningKey, VerifierKey

    if given is not None:
        return VerifierKey.parse(key_text(given))
    pub = settings.audit_signing_pub_path
    if pub.is_file():
        return VerifierKey.parse(pub.read_text())
    if settings.audit_signing_key_path.is_file():
        return SigningKey.load(settings.audit_signing_key_path).verifier
    raise VaultError(
        f"no audit signing key in {settings.data_dir}",
        hint="run `donjon init` (or `donjon serve` once, for a data dir made before log v2)",
    )


def _verify_processes(asked: int | None) -> int:
    """How many processes may read the records: as asked, or one per CPU this command may
    use (its affinity, bounded by its cgroups' CPU quota: donjon.cpus). Its forked
    readers' ends are waited for, so an inherited SIG_IGN for SIGCHLD (which would have
    the kernel reap them unseen) is undone."""
    processes = usable_cpus() if asked is None else asked
    if processes > 1:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    return processes


@audit.command("verify")
@click.option(
    "--incremental",
    is_flag=True,
    help="Only the records after the last checkpoint a verify passed (audit-verified.json).",
)
@click.option(
    "--key",
    "key_text",
    default=None,
    metavar="VKEY_OR_FILE",
    help="The verifier key to trust (`donjon audit pubkey`); default: the data dir's.",
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Read and hash a long log's records in up to N processes (default: one per "
    "CPU this command may use, its cgroup's CPU quota included; at most 4; 1: this "
    "process alone).",
)
@output_option
def audit_verify(
    incremental: bool, key_text: str | None, processes: int | None, output: OutputFormat
) -> None:
    """Check every record, every signed checkpoint (database and checkpoint file) and the
    signed head (reads the data dir directly). Exits 1 naming the first bad record."""
    from sqlalchemy.exc import SQLAlchemyError

    from donjon.audit import verify_log
    from donjon.store import StoreError, connect

    settings = load_settings()
    if not settings.initialised:
        raise VaultError(f"no database in {settings.data_dir}", hint="run `donjon init`")
    vkey = _verifier_key(settings, key_text)
    processes = _verify_processes(processes)
    engine = connect(settings.database_url)
    try:
        try:  # a database server that does not answer: one clear line, not a traceback
            engine.connect().close()
        except SQLAlchemyError as e:
            raise StoreError(f"cannot read the database {settings.database_shown}: {e}") from e
        result = verify_log(
            engine,
            vkey,
            checkpoint_file=settings.audit_checkpoints_path,
            state_file=settings.audit_verified_path,
            incremental=incremental,
            processes=processes,
        )
    finally:
        engine.dispose()
    if output is OutputFormat.JSON:
        echo_json(
            {
                "ok": result.ok,
                "records": result.records,
                "bad_seq": result.bad_seq,
                "bad_range": list(result.bad_range) if result.bad_range else None,
                "reason": result.reason,
                "checkpoints": result.checkpoints,
                "since": result.since,
                "processes": result.processes,
                "warnings": list(result.warnings),
            }
        )
    else:
        # A reason or a warning may quote what the database holds: whoever edited it.
        for warning in result.warnings:
            echo_text(f"warning: {warning}", err=True)
    if result.ok:
        if output is OutputFormat.TABLE:
            since = f", from record {result.since + 1}" if result.since else ""
            split = f" (read by {result.processes} processes)" if result.processes > 1 else ""
            click.echo(
                f"audit log intact: {result.records} records{since}, "
                f"{result.checkpoints} signed checkpoints matched{split}"
            )
        return
    if output is OutputFormat.TABLE:
        if result.bad_seq is not None:
            where = f"first bad record {result.bad_seq}"
        elif result.bad_range is not None:
            where = f"first bad record within {result.bad_range[0]}..{result.bad_range[1]}"
        else:
            where = "no record named"
        echo_text(f"audit log TAMPERED: {where}: {result.reason}", err=True)
    raise SystemExit(1)


@audit.command("pubkey")
@output_option
def audit_pubkey(output: OutputFormat) -> None:
    """Print the audit log's verifier key (keep a copy elsewhere: proofs and checkpoints
    are checked against it)."""
    from donjon.audit import SigningKey, VerifierKey

    settings = load_settings()
    vkey = _verifier_key(settings, None)
    if settings.audit_signing_key_path.is_file():  # the private key is the authority
        vkey = SigningKey.load(settings.audit_signing_key_path).verifier
        pub = settings.audit_signing_pub_path
        if pub.is_file() and VerifierKey.parse(pub.read_text()) != vkey:
            click.echo(f"warning: {pub} does not match the signing key", err=True)
    emit(output, {"verifier_key": str(vkey)}, lambda: click.echo(str(vkey)))
