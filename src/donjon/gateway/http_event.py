"""The event an http trigger's function gets: the request's method, path, query, body
(base64 when it is not UTF-8) and the headers it may see (never a platform credential).

X-Forwarded-For and X-Forwarded-Proto are the gateway's word, as a reverse proxy's (and
API Gateway's) are: the caller's own X-Forwarded-For is kept, with the address the
gateway saw appended unless it is last already (a trusted proxy put it there), and
X-Forwarded-Proto is the scheme the request was served on. A caller's own value never
passes for the last address, which functions and Lambda adapters take as the caller's.
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request

from donjon.gateway.access import client_address
from donjon.identity.issuers import IssuerRegistry
from donjon.identity.jwt_verifier import meant_for_the_platform

__all__ = ["function_headers", "http_event", "joined"]


def _is_platform_credential(value: str, issuers: IssuerRegistry) -> bool:
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    token = token.strip()
    return token.startswith("dj_") or meant_for_the_platform(token, issuers)


def function_headers(
    request: Request, *, strip_auth: bool, issuers: IssuerRegistry
) -> list[tuple[str, str]]:
    """The request's headers a function may see, in order, repeats kept.

    A platform credential never reaches a function: not the one that
    authenticated the call, nor one sent to a public trigger (a Donjon key, or a
    JWT naming a registered issuer and its audience, valid or not: `issuers`).
    """
    kept = [
        (k, v)
        for k, v in request.headers.items()
        # `x_forwarded_for` too: a WSGI adapter reads it as `x-forwarded-for`.
        if k.lower().replace("_", "-") not in _FORWARDED
        and (k != "authorization" or not (strip_auth or _is_platform_credential(v, issuers)))
    ]
    return [*kept, *_forwarded(request)]


#: The headers the gateway writes itself (`_forwarded`), whatever the caller sent.
_FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto"})


def _forwarded(request: Request) -> list[tuple[str, str]]:
    """X-Forwarded-For ending with the caller the gateway saw, and X-Forwarded-Proto."""
    hops = [
        hop.strip()
        for value in request.headers.getlist("x-forwarded-for")
        for hop in value.split(",")
        if hop.strip()
    ]
    caller = client_address(request)
    if not hops or hops[-1] != caller:
        hops.append(caller)
    return [
        ("x-forwarded-for", ", ".join(hops)),
        ("x-forwarded-proto", str(request.scope.get("scheme", "https"))),
    ]


def joined(headers: list[tuple[str, str]]) -> dict[str, str]:
    """One value per header name: a name's repeated lines joined with ", " (RFC 9110
    5.3), "; " for `cookie` (RFC 6265 5.4), as API Gateway's 2.0 event does. Keeping only
    the last line hid the others from the function: what a proxy or a WAF in front saw
    first was not what the handler read."""
    out: dict[str, str] = {}
    for name, value in headers:
        if name in out:
            out[name] += ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    return out


def http_event(
    request: Request, path: str, body: bytes, principal: str | None, headers: list[tuple[str, str]]
) -> dict[str, Any]:
    """The event of `request` to encode (`event_json`): its body as text, or base64 when
    it is not UTF-8."""
    try:
        text: str = body.decode()
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return {
        "method": request.method,
        "path": path,
        "headers": joined(headers),
        "query": dict(request.query_params),
        "body": text,
        "is_base64_encoded": encoded,
        "principal": principal,
    }
