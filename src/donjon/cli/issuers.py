"""issuer add/ls/rm: the JWT issuers whose tokens the gateway accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from donjon.cli.client import ApiClient
from donjon.cli.files import InputFileError, read_bounded
from donjon.cli.output import OutputFormat, echo_text, emit, output_option, print_table, when
from donjon.config import load_settings
from donjon.identity.jwks import MAX_JWKS_BYTES

__all__ = ["issuer"]


@click.group()
def issuer() -> None:
    """Manage trusted JWT issuers (OIDC identity providers)."""


def _jwks_field(value: str) -> dict[str, Any]:
    """--jwks: an https:// URL the node fetches, or a local file sent inline."""
    if value.startswith("https://"):
        return {"jwks_url": value}
    if "://" in value:
        raise click.BadParameter("a JWKS URL must be https://", param_hint="--jwks")
    try:
        document = json.loads(read_bounded(Path(value), MAX_JWKS_BYTES, "a JWKS"))
    except InputFileError as e:
        raise click.BadParameter(e.message, param_hint="--jwks") from e
    except ValueError as e:
        raise click.BadParameter(f"{value} is not JSON: {e}", param_hint="--jwks") from e
    return {"jwks": document}


@issuer.command("add")
@click.argument("name")
@click.option("--issuer", "iss", required=True, help="The iss its tokens carry.")
@click.option("--jwks", required=True, help="https:// URL of its JWKS, or a JWKS file.")
@click.option("--audience", required=True, help="The aud its tokens must name.")
@click.option("--roles-claim", default="roles", show_default=True)
@click.option(
    "--allowed-roles",
    default="invoker",
    show_default=True,
    help="Roles it may grant (r1,r2); any other role a token claims is dropped.",
)
@output_option
def issuer_add(
    name: str,
    iss: str,
    jwks: str,
    audience: str,
    roles_claim: str,
    allowed_roles: str,
    output: OutputFormat,
) -> None:
    """Trust NAME's tokens; its keys are read (or fetched) and checked now."""
    body: dict[str, Any] = {
        "name": name,
        "issuer": iss,
        "audience": audience,
        "roles_claim": roles_claim,
        "allowed_roles": [r.strip() for r in allowed_roles.split(",") if r.strip()],
        **_jwks_field(jwks),
    }
    added = ApiClient(load_settings()).json("POST", "/v1/issuers", json=body)
    emit(
        output,
        added,
        lambda: echo_text(
            f"added issuer {added['name']} ({added['issuer']}; roles it may grant: "
            f"{','.join(added['allowed_roles'])}; keys: {','.join(added['key_ids'])})"
        ),
    )


@issuer.command("ls")
@output_option
def issuer_ls(output: OutputFormat) -> None:
    """List trusted issuers."""
    issuers = ApiClient(load_settings()).json("GET", "/v1/issuers")
    emit(output, issuers, lambda: _issuer_table(issuers))


def _issuer_table(issuers: list[dict[str, Any]]) -> None:
    print_table(
        ["NAME", "ISSUER", "AUDIENCE", "JWKS", "ROLES", "KEYS", "REFRESHED"],
        [
            [
                i["name"],
                i["issuer"],
                i["audience"],
                i["jwks"],
                ",".join(i["allowed_roles"]),
                ",".join(i["key_ids"]),
                when(i["refreshed_at"]),
            ]
            for i in issuers
        ],
        empty="no trusted issuers",
    )


@issuer.command("rm")
@click.argument("name")
@output_option
def issuer_rm(name: str, output: OutputFormat) -> None:
    """Stop trusting NAME's tokens (from the next request on)."""
    ApiClient(load_settings()).request("DELETE", f"/v1/issuers/{name}")
    emit(output, {"removed": name}, lambda: echo_text(f"removed issuer {name}"))
