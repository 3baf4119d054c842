"""Server-side request forgery (DJ-PY-011): event data choosing where a request goes.

Sinks are the URL or host of an outbound request: requests and httpx (module
functions and client objects), urllib.request, urllib3, aiohttp, http.client, a
client's ``base_url``, and the ``endpoint_url`` of boto3/botocore clients. Client
objects are known by the kind the evaluator gives them (python/kinds.py), so
``session.get(url)`` is a request and ``cache.get(key)`` is not.

Only the host matters: a URL whose known prefix fixes the scheme and host
(``"https://api.example.com/items/" + event["id"]``, or a path ``"/items/..."``
relative to a client's base URL) sends the event's data to a place the code
chose, which is not SSRF; data in ``params=``, ``json=``, ``data=`` or headers is
not either. A prefix that stops inside the host (``"https://" + event["host"]``)
leaves the host to the caller. URLs of unknown origin are not reported: outbound
calls to configured URLs are the normal case, and the gate needs a reason.
"""

from __future__ import annotations

import ast
import re

from donjon.scan.model import Confidence
from donjon.scan.python.hits import CallSite
from donjon.scan.python.imports import ImportMap
from donjon.scan.python.kinds import HTTP, OBJECT
from donjon.scan.python.values import Value

__all__ = ["check_request", "checked_host"]

_VERBS = ("get", "post", "put", "patch", "delete", "head", "options")
#: Where the URL is: (position, keyword).
_URL_FIRST = (0, "url")
_URL_SECOND = (1, "url")
_HOST_FIRST = (0, "host")
_FUNCTIONS: dict[str, tuple[int, str]] = {
    **{f"{m}.{v}": _URL_FIRST for m in ("requests", "requests.api", "httpx") for v in _VERBS},
    "requests.request": _URL_SECOND,
    "requests.api.request": _URL_SECOND,
    "httpx.request": _URL_SECOND,
    "httpx.stream": _URL_SECOND,
    **{
        f"{m}.{f}": _URL_FIRST
        for m in ("urllib.request", "six.moves.urllib.request", "urllib2")
        for f in ("urlopen", "Request", "urlretrieve")
    },
    "urllib3.request": _URL_SECOND,
    "urllib3.connection_from_url": _URL_FIRST,
    "aiohttp.request": _URL_SECOND,
    "aiohttp.client.request": _URL_SECOND,
    **{
        f"{m}.{c}": _HOST_FIRST
        for m in ("http.client", "httplib")
        for c in ("HTTPConnection", "HTTPSConnection")
    },
    **{
        f"{m}.{c}": _HOST_FIRST
        for m in ("urllib3", "urllib3.connectionpool")
        for c in ("HTTPConnectionPool", "HTTPSConnectionPool")
    },
}
#: Client constructors whose base URL every relative request goes to.
_BASE_URL: dict[str, tuple[int, str]] = {
    "httpx.Client": (-1, "base_url"),
    "httpx.AsyncClient": (-1, "base_url"),
    "aiohttp.ClientSession": (0, "base_url"),
    "aiohttp.client.ClientSession": (0, "base_url"),
}
#: Methods of an HTTP client object (requests/httpx sessions, urllib3 pools, aiohttp).
_CLIENT_METHODS: dict[str, tuple[int, str]] = {
    **dict.fromkeys((*_VERBS, "ws_connect"), _URL_FIRST),
    **dict.fromkeys(("request", "stream", "urlopen", "build_request"), _URL_SECOND),
}
#: A prefix that fixes the host: a scheme and a complete authority (ended by the
#: path, query or fragment), or a path relative to the client's base URL.
_URL_PARSERS = frozenset(
    {"urllib.parse.urlparse", "urllib.parse.urlsplit", "httpx.URL", "yarl.URL", "furl.furl"}
)
_HOST_PARTS = frozenset({"hostname", "netloc", "host"})
_FIXED_HOST = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#\\]*[/?#]|/[^/\\]")


def _url(site: CallSite, where: tuple[int, str]) -> Value | None:
    position, keyword = where
    if position < 0:
        return site.kwargs.get(keyword)
    return site.arg(position, keyword) or site.kwargs.get("str_or_url")


def _grade(site: CallSite, url: Value | None, what: str) -> None:
    # An object a library made from event data (``urlopen(Request(url))``) was judged
    # where it was made, if that is a sink; past it, it is not the URL's text.
    if url is None or url.taint is None or url.kind == OBJECT:
        return
    if url.prefix is not None and _FIXED_HOST.match(url.prefix):
        return
    site.report(
        "DJ-PY-011",
        Confidence.HIGH,
        f"event data chooses where {what} sends its request",
        value=url,
        sink_note=f"reaches {what}",
    )


def check_request(site: CallSite, qual: str) -> None:
    """Run the SSRF rule on one call."""
    if "endpoint_url" in site.kwargs:
        what = f".{site.method}()" if site.method else f"{qual}()"
        _grade(site, site.kwargs["endpoint_url"], f"the client made by {what} (endpoint_url=)")
    if qual in _FUNCTIONS:
        _grade(site, _url(site, _FUNCTIONS[qual]), f"{qual}()")
    elif qual in _BASE_URL:
        _grade(site, _url(site, _BASE_URL[qual]), f"{qual}(base_url=)")
    elif (
        site.method in _CLIENT_METHODS and site.receiver is not None and site.receiver.kind == HTTP
    ):
        _grade(site, _url(site, _CLIENT_METHODS[site.method]), f"the client's .{site.method}()")


def checked_host(test: ast.expr, imports: ImportMap) -> tuple[str, ast.expr, bool] | None:
    """A host allowlist check on a URL variable: ``urlparse(url).hostname in ALLOWED``.

    The variable, the collection it is checked against (the interpreter decides whether
    that is an allowlist), and whether the test is true when the host is *not* in it."""
    match test:
        case ast.Compare(
            left=ast.Attribute(value=ast.Call(func=func, args=[ast.Name(id=name)]), attr=part),
            ops=[ast.In() | ast.NotIn() as op],
            comparators=[allowed],
        ) if part in _HOST_PARTS and imports.qualname(func) in _URL_PARSERS:
            return name, allowed, isinstance(op, ast.NotIn)
    return None
