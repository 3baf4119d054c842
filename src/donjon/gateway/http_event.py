"""The event an http trigger's function gets: the request's method, path, query, body
(base64 when it is not UTF-8) and the headers it may see (never a platform credential)."""

from __future__ import annotations

import base64
import json

from starlette.requests import Request

__all__ = ["function_headers", "http_event"]


def _is_platform_credential(value: str) -> bool:
    scheme, _, token = value.strip().partition(" ")
    return scheme.lower() == "bearer" and token.strip().startswith("dj_")


def function_headers(request: Request, *, strip_auth: bool) -> list[tuple[str, str]]:
    """The request's headers a function may see, in order, repeats kept.

    A platform credential never reaches a function: not the one that
    authenticated the call, nor a Donjon key sent to a public trigger.
    """
    return [
        (k, v)
        for k, v in request.headers.items()
        if k != "authorization" or not (strip_auth or _is_platform_credential(v))
    ]


def http_event(
    request: Request, path: str, body: bytes, principal: str | None, headers: list[tuple[str, str]]
) -> bytes:
    try:
        text: str = body.decode()
        encoded = False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    return json.dumps(
        {
            "method": request.method,
            "path": path,
            "headers": dict(headers),
            "query": dict(request.query_params),
            "body": text,
            "is_base64_encoded": encoded,
            "principal": principal,
        }
    ).encode()
