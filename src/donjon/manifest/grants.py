"""Which permission grants are over-broad: one definition for the scanner and the deploy.

The manifest scanner reports these as DJ-MF-002 (on the raw YAML, with lines);
the deploy refuses a manifest that holds one unless an admin asks for it
(`--unsafe-allow-broad`). Both call `broad_reason`, so they never disagree.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from donjon.manifest.model import Permissions

__all__ = ["broad_grants", "broad_reason"]

#: Digits, dots and hex digits only: what inet_aton may read as an IPv4 address.
_IPV4_SHORTHAND = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+)){0,3}")
_SENSITIVE_HOSTS = frozenset(
    {
        "localhost",
        "metadata",
        "metadata.google.internal",
        "metadata.azure.internal",
        "instance-data",
    }
)


def broad_reason(kind: str, item: str) -> str:
    """Why the grant `item` of `permissions.<kind>` is over-broad, or "" if it is not."""
    if "*" in item:
        return "a wildcard"
    if kind != "egress":
        return ""
    host, _, port = item.rpartition(":")
    host = host.strip("[]")
    if port in ("0", "") or "-" in port:
        return "every port"
    if host.lower().rstrip(".") in _SENSITIVE_HOSTS:
        return "the host itself or its cloud metadata service"
    ip = _address(host)
    if ip is None:
        return ""
    if ip.is_unspecified:
        return "every address"
    if ip.is_loopback or ip.is_link_local:
        return "loopback or link-local (the platform's own services, cloud metadata)"
    return ""


def broad_grants(permissions: Permissions) -> list[str]:
    """Each over-broad grant of a validated manifest, said as `permissions.K grants 'X': why`."""
    out = []
    for kind in ("secrets", "egress", "invoke"):
        for item in getattr(permissions, kind):
            reason = broad_reason(kind, item)
            if reason:
                out.append(f"permissions.{kind} grants {item!r}: {reason}")
    return out


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` names if it is an IP literal in any notation a resolver accepts:
    besides the canonical forms, the IPv4 shorthands of inet_aton (``127.1``, the decimal
    ``2130706433``, octal and hex parts such as ``0x7f.1``), which reach the same hosts."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _IPV4_SHORTHAND.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None
