"""tls renew: a new certificate for the node, served without a restart."""

from __future__ import annotations

import ipaddress
import re

import click

from donjon.cli.output import OutputFormat, echo_json, output_option
from donjon.config import load_settings
from donjon.errors import Error

__all__ = ["tls"]

#: A DNS name as a certificate carries it: labels of letters, digits and hyphens.
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


def _hostname(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(value):
        raise click.BadParameter(f"{value!r} is not a host name or an IP address")
    return value.lower()


@click.group()
def tls() -> None:
    """The node's own TLS certificate."""


@tls.command()
@click.option(
    "--hostname",
    "hostnames",
    multiple=True,
    help="Another name or address the certificate covers (repeatable); earlier ones are kept.",
)
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 825))
@output_option
def renew(hostnames: tuple[str, ...], days: int, output: OutputFormat) -> None:
    """Make a new key and self-signed certificate in the data dir; a running node serves it
    within seconds, and the CLI trusts it as before (it reads DATA_DIR/tls/cert.pem)."""
    from donjon.datadir import check_data_dir
    from donjon.gateway.tls import renew_self_signed

    settings = load_settings()
    # As the node's own user, as `serve` checks: a key another user (root) writes, 0600,
    # is one the node cannot read, and it would not start again.
    check_data_dir(settings.data_dir)
    if not settings.tls_cert_path.exists():
        raise Error(
            f"{settings.data_dir} has no node certificate to renew",
            hint="run `donjon init` first (or point DONJON_DATA_DIR at the node's data dir)",
        )
    names = tuple(_hostname(h) for h in hostnames)
    info = renew_self_signed(settings.tls_cert_path, settings.tls_key_path, names, days)
    # The certificate's own names (localhost among them) after the loopback ones, once each.
    every = list(dict.fromkeys(["localhost", "127.0.0.1", "::1", *info.hostnames]))
    if output is OutputFormat.JSON:
        echo_json(
            {
                "cert": str(settings.tls_cert_path),
                "not_after": info.not_after.isoformat(),
                "sha256": info.sha256,
                "hostnames": every,
            }
        )
        return
    click.echo(f"renewed {settings.tls_cert_path}")
    click.echo(f"  valid until  {info.not_after:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  sha256       {info.sha256}")
    click.echo(f"  names        {', '.join(every)}")
    click.echo("a running donjon serve picks it up within seconds; clients that copied the old")
    click.echo("cert.pem (curl --cacert, DONJON_CA_BUNDLE elsewhere) need the new one")
