"""Where an event source's own connection may go: the egress proxy's address rules.

A `postgres` trigger's DSN and an `sqs` trigger's `endpoint_url` come from a secret,
chosen by whoever may write secrets and deploy (a developer, by default), and the node
dials them itself, outside any sandbox: they made the node open connections to any
address it reaches, internal services and its own machine included (helper-150). So a
source's destination is held to what a function's egress is held to
(egress/addresses.py): a globally routable address, or one in a network the admin
opened (`DONJON_EGRESS_ALLOW_NETWORKS`), never a cloud metadata endpoint nor one of
the node's own addresses (its public one reaches its own services over `lo`). Every address
a name resolves to is checked, at each connection; a DSN's connection is then made to
the address checked (libpq's `hostaddr`), not to a second lookup of the name.

A DSN is read by libpq, which also reads the node's own files and services for some of
its parameters (`service`, `passfile`, `sslkey`, ...). Only the parameters that name a
server and how to talk to it are taken; the node's password file and PGPASSWORD are
never read, its client certificate (libpq's default, ~/.postgresql/postgresql.crt)
never sent, and its Kerberos credentials never offered (no GSSAPI). Nor is a path to
a root certificate taken (only `sslrootcert=system`): libpq read any file named.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from donjon.egress.addresses import (
    IPAddress,
    IPNetwork,
    own_address_refusal,
    parse_ip_literal,
    refusal,
)
from donjon.errors import Error

__all__ = ["DSN_PARAMETERS", "SourceAddressRefused", "allowed_addresses", "check_url", "pin_dsn"]

#: The libpq parameters a trigger's DSN may set.
DSN_PARAMETERS = frozenset(
    {
        "host",
        "port",
        "dbname",
        "user",
        "password",
        "options",
        "application_name",
        "connect_timeout",
        "target_session_attrs",
        "load_balance_hosts",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "sslmode",
        "sslrootcert",
        "sslsni",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "channel_binding",
        "require_auth",
        "gssencmode",
    }
)
_HINT = (
    "an admin may open an internal network to event sources and functions' egress alike "
    "with DONJON_EGRESS_ALLOW_NETWORKS (docs/triggers.md, 'Where a source connects')"
)


#: An endpoint's authority: a name or IPv4 address, or an IPv6 one in brackets, and a port.
_AUTHORITY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")


class SourceAddressRefused(Error):
    """An event source's secret names a destination the node may not dial."""

    title = "Event source destination refused"


async def allowed_addresses(
    host: str, port: int, allow_networks: Sequence[IPNetwork], what: str
) -> list[IPAddress]:
    """Every address `host` resolves to, each allowed; else `SourceAddressRefused`."""
    literal = parse_ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(
            dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)
        )
    for address in addresses:
        why = refusal(address, allow_networks) or own_address_refusal(address, allow_networks)
        if why is not None:
            raise SourceAddressRefused(
                f"{what} names {host[:255]}, at {address}: {why}", hint=_HINT
            )
    return addresses


async def pin_dsn(dsn: str, allow_networks: Sequence[IPNetwork], what: str) -> str:
    """`dsn` with each host's checked address as its `hostaddr`, no password but its own
    (neither the node's password file nor its PGPASSWORD) and no client certificate;
    `SourceAddressRefused` for a parameter outside `DSN_PARAMETERS`, a unix socket, or a
    host at an address the node may not dial."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    other = sorted(set(params) - DSN_PARAMETERS)
    if other:
        raise SourceAddressRefused(
            f"{what} sets {', '.join(other)}, which a trigger's DSN may not set (libpq would "
            "read the node's own files or services for it)",
            hint="keep to host, port, dbname, user, password and the ssl and timeout settings",
        )
    if params.get("sslrootcert") not in (None, "system"):
        # A path on the node's host: libpq opens it on the event loop (a FIFO there held
        # the node for ever), and its errors told which files exist.
        raise SourceAddressRefused(
            f"{what} sets sslrootcert to a path, a file of the node's own host",
            hint="sslrootcert=system checks the server against the host's trusted roots; an "
            "admin adds a private CA to them",
        )
    _refuse_kerberos(params, what)
    hosts = str(params.get("host") or "").split(",")
    if any(not h or h.startswith(("/", "@")) for h in hosts):
        raise SourceAddressRefused(
            f"{what} names no TCP host (a unix socket is the node's own machine)",
            hint="name the server by host and port: " + _HINT,
        )
    ports = str(params.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports *= len(hosts)
    if len(ports) != len(hosts) or not all(p.isdigit() and 0 < int(p) < 65536 for p in ports):
        raise SourceAddressRefused(f"{what} gives ports that do not match its hosts")
    pinned = [
        (await allowed_addresses(h, int(p), allow_networks, what))[0]
        for h, p in zip(hosts, ports, strict=True)
    ]
    params["hostaddr"] = ",".join(str(a) for a in pinned)
    params["passfile"] = os.devnull  # the node's ~/.pgpass answers no trigger's server
    params.setdefault("password", "")  # nor its PGPASSWORD: libpq takes it for a DSN's none
    # Nor does its client certificate (~/.postgresql/postgresql.crt, libpq's default): it
    # may be how the node logs in to its own database, which a DSN could name.
    params["sslcertmode"] = "disable"
    return make_conninfo("", **params)


def _refuse_kerberos(params: dict[str, str | int | None], what: str) -> None:
    """GSSAPI kept out of `params`: libpq answers it with the node's own Kerberos
    credentials (its default ticket cache), so a server that trusts the node's principal
    would take a trigger's connection for the node. `SourceAddressRefused` for a DSN that
    asks for it."""
    gssencmode = str(params.get("gssencmode") or "disable")
    methods = [m for m in str(params.get("require_auth") or "").split(",") if m]
    allowing = any(m in ("gss", "sspi") for m in methods)
    if gssencmode != "disable" or allowing:
        raise SourceAddressRefused(
            f"{what} asks for GSSAPI (Kerberos), which would log in with the node's own "
            "credentials",
            hint="log in with a password (scram-sha-256) or over TLS; leave out gssencmode",
        )
    params["gssencmode"] = "disable"
    if not methods or all(m.startswith("!") for m in methods):
        params["require_auth"] = ",".join(dict.fromkeys([*methods, "!gss", "!sspi"]))


async def check_url(url: str, allow_networks: Sequence[IPNetwork], what: str) -> None:
    """`SourceAddressRefused` unless `url` is a plain http(s) URL whose host every HTTP
    client reads alike and every address of that host may be dialled."""
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or "\\" in url
        or not _AUTHORITY.fullmatch(parts.netloc)
    ):
        # urlsplit and urllib3 (botocore's) end the host at different characters: with a
        # backslash or user information, the host checked here was not the one dialled.
        raise SourceAddressRefused(
            f"{what} is not a plain http(s)://host[:port] URL (no user information, no backslash)",
            hint="write the endpoint as https://host:port/ with nothing before the host",
        )
    port = parts.port or (443 if parts.scheme == "https" else 80)
    await allowed_addresses(parts.hostname or "", port, allow_networks, what)
