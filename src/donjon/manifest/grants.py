"""Which permission grants are refused or over-broad: one definition for the scanner and
the deploy.

Two kinds of problem. An egress grant the egress proxy would never honour (its syntax,
a metadata address, a non-global address outside the node's DONJON_EGRESS_ALLOW_NETWORKS)
is refused at every deploy, whoever asks: `egress_refusals`, which calls the proxy's own
`parse_grant`. A grant that is honoured but wider than a function needs (a `*` in a
secret or invoke name, a wildcard over a whole top-level domain) is over-broad: the
deploy refuses it unless an admin asks for it (`--unsafe-allow-broad`): `broad_grants`.
The manifest scanner reports both as DJ-MF-002 (on the raw YAML, with lines), through
`grant_problem`, so the gate and the scanner never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

from donjon.egress.addresses import IPNetwork
from donjon.egress.grants import EgressGrantError, parse_grant, parse_grant_syntax
from donjon.manifest.model import Permissions

__all__ = ["broad_grants", "broad_reason", "egress_refusals", "grant_problem"]

_KINDS = ("secrets", "egress", "invoke")


def broad_reason(kind: str, item: str) -> str:
    """Why the grant `item` of `permissions.<kind>` is over-broad, or "" if it is not.

    An egress grant the proxy refuses is not "broad" but wrong: see `egress_refusals`.
    """
    if kind != "egress":
        return "a wildcard" if "*" in item else ""
    try:
        grant = parse_grant_syntax(item)
    except EgressGrantError:
        return ""
    if grant.wildcard and "." not in grant.host:
        return f"a wildcard over the whole top-level domain .{grant.host}"
    return ""


def broad_grants(permissions: Permissions) -> list[str]:
    """Each over-broad grant of a validated manifest, said as `permissions.K grants 'X': why`."""
    out = []
    for kind in _KINDS:
        for item in getattr(permissions, kind):
            reason = broad_reason(kind, item)
            if reason:
                out.append(f"permissions.{kind} grants {item!r}: {reason}")
    return out


def egress_refusals(permissions: Permissions, allow_networks: Sequence[IPNetwork]) -> list[str]:
    """Each egress grant the proxy of a node opening `allow_networks` would refuse, with why."""
    out = []
    for item in permissions.egress:
        try:
            parse_grant(item, allow_networks)
        except EgressGrantError as e:
            out.append(f"permissions.egress grants {item!r}: {e.reason}")
    return out


def grant_problem(kind: str, item: str, allow_networks: Sequence[IPNetwork] = ()) -> str:
    """Why `item` of `permissions.<kind>` is refused or over-broad, or "" (the scanner's
    DJ-MF-002, on raw manifest values)."""
    if kind == "egress":
        try:
            parse_grant(item, allow_networks)
        except EgressGrantError as e:
            return e.reason
    return broad_reason(kind, item)
