"""Egress grants: `permissions.egress` entries, parsed once, matched by the proxy.

A grant is ``host:port``: one DNS name (lower-cased, IDNA), or ``*.`` and a name
(the ``*`` stands for one or more labels, nothing else is a pattern), or an IP
literal in its canonical form (``93.184.216.34:443``, ``[2001:db8::1]:443``). One
port per grant. The manifest model, the deploy gate, the scanner's DJ-MF-002 and
the proxy all call `parse_grant`, so a grant is accepted at deploy exactly when the
proxy would honour it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import idna

from donjon.egress.addresses import IPAddress, IPNetwork, parse_ip_literal, refusal
from donjon.errors import Error

__all__ = [
    "Allowlist",
    "EgressGrant",
    "EgressGrantError",
    "normalise_host",
    "parse_grant",
    "parse_grant_syntax",
]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")
#: Names that are the host itself or a cloud metadata service, whatever they resolve to.
_SENSITIVE_NAMES = frozenset(
    {
        "localhost",
        "metadata",
        "metadata.google.internal",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
_HINT = (
    'write host:port, e.g. "api.example.com:443", "*.s3.example.com:443" or '
    '"[2001:db8::1]:443" (docs/security.md, "Egress grants and addresses")'
)


class EgressGrantError(Error):
    """An egress grant the proxy would not honour; the message names it and why."""

    title = "Invalid egress grant"

    def __init__(self, grant: str, reason: str, *, hint: str = _HINT) -> None:
        super().__init__(f"egress grant {grant!r}: {reason}", hint=hint)
        self.grant = grant
        self.reason = reason


@dataclass(frozen=True)
class EgressGrant:
    """One parsed `permissions.egress` entry."""

    #: As written in the manifest.
    text: str
    #: Lower-case IDNA (ASCII); for ``*.s3.example.com`` the suffix ``s3.example.com``;
    #: for an IP literal its canonical text (no brackets).
    host: str
    #: ``*.`` prefix: matches one or more labels before the suffix, never the suffix itself.
    wildcard: bool
    port: int
    #: The grant is an IP literal (written in canonical form only).
    address: IPAddress | None = None

    def matches(self, host: str, port: int) -> bool:
        """Does a connection to `host`:`port` (as the client sent it) fall under this grant?

        An IP literal matches only a grant of that literal in the same canonical text
        (``2130706433`` never matches ``127.0.0.1``); a name matches only a name grant.
        """
        if port != self.port:
            return False
        if parse_ip_literal(host) is not None:
            return self.address is not None and _literal_text(host) == self.host
        if self.address is not None:
            return False
        name = normalise_host(host)
        if name is None:
            return False
        if not self.wildcard:
            return name == self.host
        return name.endswith("." + self.host)


def normalise_host(host: str) -> str | None:
    """`host` as a lower-case ASCII DNS name (IDNA 2008, one trailing dot dropped);
    None when it is not a valid name (an IP literal is not a name)."""
    text = host[:-1] if host.endswith(".") else host
    if not text or len(text) > 253 or parse_ip_literal(text) is not None:
        return None
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    text = text.lower()
    if parse_ip_literal(text) is not None:  # fullwidth digits map to an address
        return None
    labels = text.split(".")
    if not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return None
    return text if len(text) <= 253 else None


def parse_grant_syntax(text: str) -> EgressGrant:
    """`text` parsed, without judging the address of an IP literal (the manifest model's
    check: which networks are open is the node's, decided at deploy)."""
    if not isinstance(text, str) or not text:
        raise EgressGrantError(str(text), "empty")
    return _parsed(text)


#: Grants parsed, by their text: a deploy reads each grant about eight times (the manifest
#: model twice, the gate's refusals and broad grants, the audit detail, the warnings) and
#: every sandbox's allowlist again at its start; the same grants recur across a tenant's
#: functions. An EgressGrant is immutable; a refused grant is not kept (raised each time).
_GRANTS_KEPT = 8192


@functools.lru_cache(maxsize=_GRANTS_KEPT)
def _parsed(text: str) -> EgressGrant:
    if text != text.strip() or any(c.isspace() for c in text):
        raise EgressGrantError(text, "contains white space")
    host, port = _split(text)
    if "*" in host:
        if not host.startswith("*.") or "*" in host[2:]:
            raise EgressGrantError(
                text, "only a leading '*.' is a pattern ('*.example.com' matches its subdomains)"
            )
        suffix = normalise_host(host[2:])
        if suffix is None:
            raise EgressGrantError(text, f"{host[2:]!r} is not a DNS name")
        _not_sensitive(text, suffix)
        return EgressGrant(text, suffix, True, port)
    address = parse_ip_literal(host)
    if address is not None:
        canonical = _canonical(address)
        if _literal_text(host) != canonical:
            raise EgressGrantError(
                text, f"IP address in a non-canonical notation; write it as {_bracketed(address)}"
            )
        if isinstance(address, ipaddress.IPv6Address) and not host.startswith("["):
            raise EgressGrantError(text, f"write IPv6 addresses in brackets: {_bracketed(address)}")
        return EgressGrant(text, canonical, False, port, address)
    name = normalise_host(host)
    if name is None:
        raise EgressGrantError(text, f"{host!r} is neither a DNS name nor an IP address")
    _not_sensitive(text, name)
    return EgressGrant(text, name, False, port)


def parse_grant(text: str, allow_networks: Sequence[IPNetwork] = ()) -> EgressGrant:
    """`text` parsed; `EgressGrantError` with the reason if the proxy would refuse it.

    An IP literal must be one the proxy may dial: globally routable, or inside one of
    `allow_networks` (the node's DONJON_EGRESS_ALLOW_NETWORKS); never a metadata address.
    """
    grant = parse_grant_syntax(text)
    if grant.address is not None:
        reason = refusal(grant.address, allow_networks)
        if reason is not None:
            raise EgressGrantError(
                text,
                reason,
                hint="grant a public host:port; an internal network must first be listed "
                "by the node's admin in DONJON_EGRESS_ALLOW_NETWORKS",
            )
    return grant


class Allowlist:
    """A function's grants; `match` is what the proxy asks for each connection."""

    def __init__(self, grants: Iterable[EgressGrant]) -> None:
        self.grants: tuple[EgressGrant, ...] = tuple(grants)

    @classmethod
    def parse(cls, entries: Iterable[str], allow_networks: Sequence[IPNetwork] = ()) -> Allowlist:
        """Every entry through `parse_grant`; the first refused raises `EgressGrantError`.

        For a version already deployed, `Allowlist(parse_grant_syntax(e) for e in ...)`
        keeps it serving if the admin has since closed a network: a grant of an address
        in it then matches, and the proxy's `refusal` of the address refuses the dial.
        """
        return cls(parse_grant(entry, allow_networks) for entry in entries)

    def match(self, host: str, port: int) -> EgressGrant | None:
        """The grant `host`:`port` (as the client sent it) falls under, or None (deny)."""
        return next((g for g in self.grants if g.matches(host, port)), None)

    def __bool__(self) -> bool:
        return bool(self.grants)

    def __len__(self) -> int:
        return len(self.grants)


def _split(text: str) -> tuple[str, int]:
    if text.startswith("["):
        close = text.find("]")
        host, rest = (text[: close + 1], text[close + 1 :]) if close > 0 else (text, "")
        if not rest.startswith(":"):
            raise EgressGrantError(text, "an IPv6 grant is [address]:port")
        port = rest[1:]
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise EgressGrantError(text, "no port: a grant is host:port, one port each")
        if ":" in host:
            raise EgressGrantError(text, "write IPv6 addresses in brackets, e.g. [2001:db8::1]:443")
    if not host:
        raise EgressGrantError(text, "no host")
    if not _PORT.match(port) or int(port) > 65535:
        raise EgressGrantError(text, f"port {port!r} is not one port from 1 to 65535")
    return host, int(port)


def _not_sensitive(text: str, name: str) -> None:
    if name in _SENSITIVE_NAMES or name.endswith(".localhost"):
        raise EgressGrantError(text, "names the host itself or a cloud metadata service")


def _literal_text(host: str) -> str:
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return text.lower()


def _canonical(address: IPAddress) -> str:
    return address.compressed


def _bracketed(address: IPAddress) -> str:
    return f"[{address.compressed}]" if address.version == 6 else address.compressed
