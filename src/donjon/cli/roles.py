"""role apply/ls/rm, and the durations `key create --expires-in` and `key rotate --overlap` take."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import yaml

from donjon.cli.client import ApiClient
from donjon.cli.files import read_bounded
from donjon.cli.output import OutputFormat, echo_text, emit, output_option, print_table
from donjon.config import load_settings

__all__ = ["parse_duration", "role"]

_DURATION = re.compile(r"^(\d{1,9})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_ROLE_FILE_BYTES = 64 * 1024


def parse_duration(text: str, param: str) -> int:
    """'90s', '15m', '1h', '30d' as seconds, or a clear error."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise click.BadParameter(
            f"{text[:40]!r} is not a duration: a whole number and s, m, h or d (30d, 1h)",
            param_hint=param,
        )
    return int(m.group(1)) * _UNIT_S[m.group(2)]


@click.group()
def role() -> None:
    """Manage roles: the built-in ones and custom role documents."""


@role.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_option
def role_apply(file: Path, output: OutputFormat) -> None:
    """Create or replace the custom role in FILE (YAML or JSON), checked before it is sent."""
    # identity imports the key store (SQLAlchemy): off the path of the commands that
    # import parse_duration from here (logs, key, throttle).
    from donjon.identity import RoleError, parse_role

    raw = read_bounded(file, MAX_ROLE_FILE_BYTES, "a role document")
    try:
        data = yaml.safe_load(raw)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RoleError(
            f"{file} is not YAML or JSON: {e}",
            hint="fix the document where the message points; see `The policy model` in "
            "docs/security.md",
        ) from None
    doc = parse_role(data)  # the server checks again; this says it before the request
    done = ApiClient(load_settings()).json("POST", "/v1/roles", json=doc.model_dump())
    verb = "created" if done["created"] else "replaced"
    emit(
        output,
        done,
        lambda: echo_text(f"{verb} role {done['name']} ({len(done['statements'])} statements)"),
    )


@role.command("ls")
@output_option
def role_ls(output: OutputFormat) -> None:
    """List roles: built in and custom, with their statements and how many keys hold each."""
    roles = ApiClient(load_settings()).json("GET", "/v1/roles")
    emit(output, roles, lambda: _role_table(roles))


def _role_table(roles: list[dict[str, Any]]) -> None:
    rows = []
    for r in roles:
        for i, s in enumerate(r["statements"]):
            rows.append(
                [
                    r["name"] if i == 0 else "",
                    ("built-in" if r["builtin"] else "custom") if i == 0 else "",
                    str(r["keys"]) if i == 0 else "",
                    f"#{i} {s['effect']}",
                    ",".join(s["actions"]),
                    ",".join(s["resources"]),
                ]
            )
    print_table(["ROLE", "KIND", "KEYS", "STATEMENT", "ACTIONS", "RESOURCES"], rows)


@role.command("rm")
@click.argument("name")
@click.option(
    "--force", is_flag=True, help="Remove it even if keys hold it (they lose all rights)."
)
@output_option
def role_rm(name: str, force: bool, output: OutputFormat) -> None:
    """Remove a custom role (built-in roles cannot be removed)."""
    done = ApiClient(load_settings()).json(
        "DELETE", f"/v1/roles/{name}", params={"force": "true"} if force else {}
    )

    def lines() -> None:
        echo_text(f"removed role {done['name']}")
        if done["keys_left_without_rights"]:
            echo_text(
                "these keys now hold a role that does not exist and are denied everything: "
                + ", ".join(done["keys_left_without_rights"])
            )

    emit(output, done, lines)
