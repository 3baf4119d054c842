"""What a function's response may say on the platform's origin.

Every http trigger is served under /fn/ on the same origin as the API and
every other tenant, so a function's headers could act on all of them. The
gateway owns the framing and the origin; a function owns its status, its body
and its own path:

- Framing and hop-by-hop headers are the gateway's: dropped.
- Headers that act on the whole origin are refused (dropped, and named in the
  call's audit record and log): HSTS, Alt-Svc, Clear-Site-Data, NEL and
  Report-To, Service-Worker-Allowed, Public-Key-Pins, CORS credentials,
  Accept-CH and Critical-CH, Set-Login, a device bound session's registration,
  and a WWW-Authenticate offering Negotiate, NTLM or Kerberos (answered unasked
  with the user's own credentials) or Basic or Digest (whose credentials the
  browser then sends to every tenant).
- Set-Cookie stays on the function's own route: no Domain, no `__Host-` name,
  a Path at or below the route (one is added when missing) and no longer than a
  browser keeps (MAX_COOKIE_PATH), nothing outside ASCII, else refused.
- Every function response carries `X-Content-Type-Options: nosniff` and the
  platform's CSP, which sandboxes documents and allows no script; a
  function's own CSP is sent too and can only narrow it.
- A header the server cannot send (a name that is not a token, a value with
  control characters or outside Latin-1), more than MAX_FIELDS header fields or
  MAX_FIELD_BYTES of them (no client or proxy would read the response), a body
  it cannot encode, or a body with a 204, 205 or 304 status is the function's
  failure: `BadFunctionResponse` (502), audited as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from donjon import boundedjson
from donjon.gateway.calllog import NOTE
from donjon.gateway.errors import BadFunctionResponse
from donjon.sandbox.runtime.httpresult import MARK

__all__ = [
    "MAX_COOKIE_PATH",
    "MAX_FIELDS",
    "MAX_FIELD_BYTES",
    "ORIGIN_WIDE",
    "PLATFORM_CSP",
    "RenderedResponse",
    "function_json_response",
    "http_response",
    "refused_headers",
    "render_http",
    "route_of",
]

#: No subresource, no script, no plugin, no framing, no form target; `sandbox`
#: gives a document an opaque origin of its own, so nothing in it is the platform's.
PLATFORM_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox"
)

_FRAMING = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "keep-alive",
        "te",
        "trailer",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "x-request-id",
        "x-content-type-options",  # always nosniff, set below
        "date",  # the server's, on every response: a second one would go out beside it
    }
)
#: Headers whose effect reaches beyond this response, to the whole origin.
ORIGIN_WIDE = frozenset(
    {
        "strict-transport-security",
        "alt-svc",
        "clear-site-data",
        "nel",
        "report-to",
        "service-worker-allowed",
        "public-key-pins",
        "public-key-pins-report-only",
        "expect-ct",
        "access-control-allow-credentials",
        "set-cookie2",
        # Kept by the browser for the whole origin: client hints it sends on every request
        # (to every tenant), and FedCM's login status.
        "accept-ch",
        "critical-ch",
        "set-login",
        # A device bound session (DBSC), scoped to the origin by default: the browser holds
        # back requests to every route until the registering function's refresh answers.
        "secure-session-registration",
        "sec-session-registration",
    }
)
#: The most header fields, and bytes of them, a function's response may carry: what the
#: gateway itself takes in a request (DONJON_MAX_HEADERS, DONJON_MAX_HEAD_BYTES defaults).
#: Past them clients and proxies refuse the whole response.
MAX_FIELDS = 100
MAX_FIELD_BYTES = 64 * 1024
#: The most of a split proxy response's head (status and headers as JSON) read: twice
#: MAX_FIELD_BYTES, what the worker sends at most (sandbox/runtime/httpresult.py).
MAX_PROXY_HEAD = 2 * MAX_FIELD_BYTES + 1024
#: The longest cookie attribute value a browser keeps (RFC 6265bis 5.6). A longer Path is
#: ignored and the cookie takes the default path, the request path's directory: /fn for a
#: route /fn/x, every tenant's routes.
MAX_COOKIE_PATH = 1024
#: Challenges a browser answers itself. Negotiate, NTLM, Kerberos: unasked, with the user's
#: own (Windows) credentials, on an origin it counts as intranet: the function would get an
#: NTLM exchange to relay. Basic and Digest: with what the user typed, which the browser
#: keeps and sends unasked with every request under the route's directory (/fn/ for /fn/x,
#: RFC 7617 2.2), or the whole origin (Digest without `domain`, RFC 7616 3.3): to every
#: tenant's functions, which a public trigger hands the header.
_BROWSER_AUTH = re.compile(r"\b(?:negotiate|ntlm|kerberos|basic|digest)\b", re.IGNORECASE)
#: Statuses whose responses have no body (RFC 9110 6.4.1, and 15.3.6: a server MUST NOT
#: send content with a 205): a client that frames them so would read a body as the next
#: response on the connection.
_NO_BODY = frozenset({204, 205, 304})
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: What HTTP lets a field value hold and the server can send: tab, visible
#: ASCII, space, and Latin-1 beyond the C1 controls.
_VALUE_OK = frozenset(["\t", *map(chr, range(0x20, 0x7F)), *map(chr, range(0xA0, 0x100))])


@dataclass
class RenderedResponse:
    """The response to send and the function headers the policy refused."""

    response: Response
    refused: list[str] = field(default_factory=list)


def _safe_defaults(response: Response) -> Response:
    response.headers["x-content-type-options"] = "nosniff"
    response.headers.append("content-security-policy", PLATFORM_CSP)
    return response


#: The constant headers of a function's JSON result (after its length), encoded once.
_JSON_RESULT_HEADERS = (
    (b"content-type", b"application/json"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", PLATFORM_CSP.encode("latin-1")),
)
#: Those headers' lines, as uvicorn's `send` writes them (checked_head.py).
_JSON_RESULT_LINES = b"".join(b"%s: %s\r\n" % pair for pair in _JSON_RESULT_HEADERS)


class _JSONResult(Response):
    """A function's JSON result: the headers, in the order and bytes Starlette's `Response`
    and `_safe_defaults` give them (x-request-id, content-length, content-type, nosniff,
    the CSP), put together from their encoded parts. Every warm call's response."""

    media_type = "application/json"

    def __init__(self, body: bytes, request_id: str) -> None:
        self.status_code = 200
        self.background = None
        # (bytes are what `render` returns them as: not called for them)
        self.body = body if type(body) is bytes else self.render(body)
        size = len(self.body)
        rid, length = request_id.encode("latin-1"), b"%d" % size  # (`str(size).encode()`)
        self.raw_headers = [
            (b"x-request-id", rid),
            (b"content-length", length),
            *_JSON_RESULT_HEADERS,
        ]
        #: The head's lines, made checked (checked_head.py): the request id is the gateway's
        #: (letters and digits: anything else is left to uvicorn's checks), the length digits.
        self.checked_head = (
            (
                b"x-request-id: %s\r\ncontent-length: %s\r\n%s" % (rid, length, _JSON_RESULT_LINES),
                size,
            )
            if request_id.isalnum() and request_id.isascii()
            else None
        )


def function_json_response(body: bytes, request_id: str) -> RenderedResponse:
    """A function's plain JSON result, as the body of a 200."""
    return RenderedResponse(_JSONResult(body, request_id))


def http_response(body: bytes, request_id: str, route: str) -> RenderedResponse:
    """The HTTP response for an http trigger's result, after the policy. `route`: /fn/...

    The function's worker split a proxy response into its status and headers (a small
    head, parsed here) and its content (bytes, sent on unparsed): sandbox/runtime/
    httpresult.py. Any other result is a plain JSON result, sent as it came, as the
    invoke route sends one. Nothing of it is trusted: function code can write its own
    reply, and gets no more than a proxy response (or a JSON result) would."""
    if not body.startswith(MARK):
        return function_json_response(body, request_id)
    start = len(MARK) + 4
    size = int.from_bytes(body[len(MARK) : start], "big")
    if size > MAX_PROXY_HEAD or start + size > len(body):
        raise BadFunctionResponse("the function returned a malformed response")
    try:
        head: Any = boundedjson.loads(body[start : start + size])
    except (ValueError, boundedjson.JSONTooDeep) as e:
        raise BadFunctionResponse("the function returned a malformed response") from e
    if not isinstance(head, dict):
        raise BadFunctionResponse("the function returned a malformed response")
    if "error" in head:  # the worker found the proxy response one the policy refuses
        raise BadFunctionResponse(str(head["error"])[:500])
    headers = head.get("headers")
    if not (
        isinstance(headers, list)
        and all(
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[0], str)
            and isinstance(pair[1], str)
            for pair in headers
        )
    ):
        raise BadFunctionResponse("the function returned a malformed http response")
    pairs = [(name, value) for name, value in headers]
    return render_http(head.get("status"), pairs, body[start + size :], request_id, route)


def render_http(
    status: Any, headers: list[tuple[str, str]], content: bytes, request_id: str, route: str
) -> RenderedResponse:
    """A function's status, headers (in order, repeats kept) and body, after the policy.

    The one place every http trigger's response goes through, whatever the event
    format it came in (Donjon's, or API Gateway's proxy response: apigw.py).
    """
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise BadFunctionResponse("the function returned a malformed http response")
    _check_head_size(headers)
    out, refused = _headers_allowed(headers, route)
    if status in _NO_BODY and content:
        raise BadFunctionResponse(f"a {status} response carries no body; the function sent one")
    response = Response(content, status_code=status)
    for name, value in out:
        response.headers.append(name, value)
    response.headers["x-request-id"] = request_id
    return RenderedResponse(_safe_defaults(response), refused)


def _headers_allowed(
    headers: list[tuple[str, str]], route: str
) -> tuple[list[tuple[str, str]], list[str]]:
    """The function's headers the policy lets through (lower-cased), and those it refused."""
    out: list[tuple[str, str]] = []
    refused: list[str] = []
    for name, value in headers:
        _check_sendable(name, value)
        lower = name.lower()
        if lower in _FRAMING:
            continue
        if lower in ORIGIN_WIDE or (lower == "www-authenticate" and _BROWSER_AUTH.search(value)):
            refused.append(lower)
            continue
        if lower == "set-cookie":
            cookie = _confine_cookie(value, route)
            if cookie is None:
                refused.append(lower)
                continue
            out.append((lower, cookie))
            continue
        out.append((lower, value))
    return out, refused


def _check_head_size(headers: list[tuple[str, str]]) -> None:
    if len(headers) > MAX_FIELDS:
        raise BadFunctionResponse(
            f"the function's response has {len(headers)} header fields, more than {MAX_FIELDS}"
        )
    size = sum(len(name) + len(value) + 4 for name, value in headers)  # ": " and CRLF
    if size > MAX_FIELD_BYTES:
        raise BadFunctionResponse(
            f"the function's response headers are {size} bytes, more than {MAX_FIELD_BYTES}"
        )


def _check_sendable(name: str, value: str) -> None:
    if not name or not set(name) <= _TOKEN:
        raise BadFunctionResponse(
            f"the function returned a header name that is not a token: {name[:64]!r}"
        )
    if not set(value) <= _VALUE_OK:
        raise BadFunctionResponse(
            f"the function's header {name[:64]!r} has a value the server "
            "cannot send (control characters or not Latin-1)"
        )


def _confine_cookie(value: str, route: str) -> str | None:
    """`value` with its Path inside `route` (added if missing), or None to refuse it.

    Read as a browser reads it, or refused: outside ASCII, Python's `strip` takes more
    than a browser trims (spaces and tabs). A no-break space (U+00A0) after `Path` (an
    unknown attribute to a browser) or before its value (a value not starting with "/")
    would pass for the route's Path here, while the browser gives the cookie the default
    path (/fn). Lengths are counted before trimming (a browser may count either way)."""
    if not value.isascii():
        return None
    name, _, _ = value.partition("=")
    parts = [p.strip() for p in value.split(";")]
    if name.strip().lower().startswith("__host-"):
        return None  # a __Host- cookie is the whole host's by definition (Path=/)
    has_path = False
    for attribute in parts[1:]:
        key, _, arg = attribute.partition("=")
        key = key.strip().lower()
        if key == "domain":
            return None  # Domain widens a cookie to the host and its subdomains
        if key == "path":
            has_path = True
            path = arg.strip()
            if len(arg) > MAX_COOKIE_PATH:
                return None  # the browser drops it: the cookie would take the default path
            if path != route and not path.startswith(route.rstrip("/") + "/"):
                return None
    if has_path:
        return value
    return f"{value}; Path={route}" if len(route) <= MAX_COOKIE_PATH else None


def route_of(path: str) -> str:
    """The public path of the http trigger at `path` (as routed: "/x/y")."""
    return "/fn" + (path.rstrip("/") or "/")


def refused_headers(detail: dict[str, Any], rendered: RenderedResponse) -> str:
    """Headers the response policy refused: in the call's record (`detail`), and a line
    for its log."""
    if not rendered.refused:
        return ""
    detail["refused_headers"] = rendered.refused
    return f"{NOTE} headers refused on the platform's origin: {', '.join(rendered.refused)}\n"
