"""The proxy's side of HTTP: one request head read, checked and rewritten.

The relay inside a sandbox sends the function's bytes verbatim, so what
arrives is what urllib, requests or httpx send to an HTTP proxy: either
`CONNECT host:port HTTP/1.1` (a TLS tunnel) or a request in absolute form
(`GET http://host:port/path HTTP/1.1`). Only those two shapes are accepted;
anything else is a `BadRequest` with the status to answer.

An absolute-form request is forwarded in origin form (`GET /path`), with the
hop-by-hop headers, every `Proxy-*` header and whatever `Connection` names
removed, and `Connection: close` added: one request per connection, so no
second request can ride on a connection the proxy checked for the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "BadRequest",
    "ProxyRequest",
    "forward_head",
    "parse_request",
    "response_length",
    "rewrite_response_head",
    "split_authority",
    "status_response",
]

#: Request line and headers, both together (what the stream reader is limited to).
MAX_HEAD_BYTES = 32 * 1024
MAX_HEADERS = 100

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_METHOD = re.compile(r"[A-Z]{3,16}")
_PORT = re.compile(r"[0-9]{1,5}")
#: A Content-Length: ASCII digits only (str.isdigit also takes "²", which int() refuses).
_LENGTH = re.compile(r"[0-9]{1,15}")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
#: Headers the proxy checked and forwards as they are: `Connection` may not name them
#: (without Content-Length the body reads as a second request; without Host the
#: origin picks its default virtual host).
_CHECKED = frozenset({"host", "content-length"})
_REASONS = {
    200: "Connection established",
    400: "Bad Request",
    403: "Forbidden",
    411: "Length Required",
    429: "Too Many Requests",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class BadRequest(Exception):
    """The request head is not one the proxy accepts; `status` is the answer."""

    def __init__(self, reason: str, status: int = 400, destination: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        #: The target, when the head named one before it was refused.
        self.destination = destination


@dataclass(frozen=True, slots=True)
class ProxyRequest:
    """One request to the proxy, as checked (host as the client sent it, lower-cased)."""

    method: str
    host: str
    port: int
    #: Origin-form target (absolute-form requests only; "" for CONNECT).
    path: str
    version: str
    headers: tuple[tuple[str, str], ...]

    @property
    def connect(self) -> bool:
        return self.method == "CONNECT"

    @property
    def destination(self) -> str:
        return destination(self.host, self.port)


def destination(host: str, port: int) -> str:
    """`host:port` as the audit records write it (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_authority(text: str, default_port: int | None) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as (host, port); raise BadRequest if malformed."""
    if not text or len(text) > 300 or not text.isascii() or not text.isprintable():
        raise BadRequest("malformed host")  # control characters: never logged or audited
    host, port_text = _bracketed(text) if text.startswith("[") else _plain(text)
    if port_text is None:
        if default_port is None:
            raise BadRequest("the target names no port")
        return host, default_port
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise BadRequest("malformed port")
    return host, int(port_text)


def _bracketed(text: str) -> tuple[str, str | None]:
    end = text.find("]")
    host, rest = text[1:end], text[end + 1 :]
    if end < 0 or ":" not in host or (rest and not rest.startswith(":")):
        raise BadRequest("malformed IPv6 host")
    return host.lower(), rest[1:] if rest else None


def _plain(text: str) -> tuple[str, str | None]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port_text = text, None
    else:
        port_text = port
    if not host or any(c in host for c in ":/@?#[] \t\\%"):
        raise BadRequest("malformed host")
    if host.endswith(".") and host != ".":
        host = host[:-1]
    return host.lower(), port_text


def _headers(lines: list[bytes]) -> tuple[tuple[str, str], ...]:
    if len(lines) > MAX_HEADERS:
        raise BadRequest("too many header fields")
    out: list[tuple[str, str]] = []
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise BadRequest("malformed header field")  # also obs-fold and spaces before ':'
        try:
            text = value.strip(b" \t").decode("latin-1")
        except UnicodeDecodeError as e:  # pragma: no cover - latin-1 decodes every byte
            raise BadRequest("malformed header field") from e
        if any(c in text for c in "\r\n\0"):
            raise BadRequest("malformed header field")
        out.append((name.decode("ascii"), text))
    return tuple(out)


def values(headers: tuple[tuple[str, str], ...], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


def parse_request(head: bytes) -> ProxyRequest:
    """The request in `head` (request line and headers, ending in a blank line)."""
    lines = head.split(b"\r\n")
    if len(lines) < 3 or lines[-1] or lines[-2]:
        raise BadRequest("malformed request head (lines must end in CRLF)")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise BadRequest("malformed request line")
    try:
        method, target, version = (p.decode("ascii") for p in parts)
    except UnicodeDecodeError as e:
        raise BadRequest("malformed request line") from e
    if not _METHOD.fullmatch(method) or version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest("malformed request line")
    headers = _headers(lines[1:-2])
    hosts = values(headers, "host")
    if len(hosts) > 1:
        raise BadRequest("more than one Host header")
    if method == "CONNECT":
        host, port = split_authority(target, None)
        if hosts:
            h_host, h_port = split_authority(hosts[0], port)
            if (h_host, h_port) != (host, port):
                raise BadRequest(
                    "the Host header differs from the CONNECT target", 403, destination(host, port)
                )
        return ProxyRequest(method, host, port, "", version, headers)
    return _absolute(method, target, version, headers, hosts)


def _absolute(
    method: str, target: str, version: str, headers: tuple[tuple[str, str], ...], hosts: list[str]
) -> ProxyRequest:
    if not target.lower().startswith("http://"):
        raise BadRequest(
            "only CONNECT and absolute-form http:// requests are proxied"
            " (HTTPS goes through CONNECT)"
        )
    parts = urlsplit(target)
    authority = parts.netloc
    if "@" in authority:
        raise BadRequest("user information in the target is refused")
    host, port = split_authority(authority, 80)
    if not hosts:
        raise BadRequest("the request has no Host header", 400, destination(host, port))
    if split_authority(hosts[0], 80) != (host, port):
        raise BadRequest(
            "the Host header differs from the request target", 403, destination(host, port)
        )
    if values(headers, "transfer-encoding"):
        raise BadRequest("request bodies must have a Content-Length", 411)
    checked = sorted(_connection_names(headers) & _CHECKED)
    if checked:  # stripped as hop-by-hop, they would leave the checked request upstream
        raise BadRequest(
            f"the Connection header names {', '.join(checked)}, which the proxy forwards",
            400,
            destination(host, port),
        )
    lengths = values(headers, "content-length")
    if len(lengths) > 1 or (lengths and not _LENGTH.fullmatch(lengths[0])):
        raise BadRequest("malformed Content-Length")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(c in path for c in " \t\r\n\0"):
        raise BadRequest("malformed request target")
    return ProxyRequest(method, host, port, path, version, headers)


def content_length(request: ProxyRequest) -> int:
    lengths = values(request.headers, "content-length")
    return int(lengths[0]) if lengths else 0


def _connection_names(headers: tuple[tuple[str, str], ...]) -> set[str]:
    """The header names the `Connection` fields list (hop-by-hop: removed when forwarded)."""
    return {
        token.strip().lower()
        for value in values(headers, "connection")
        for token in value.split(",")
        if token.strip()
    }


def _strip(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    named = _connection_names(headers)
    return [
        (k, v)
        for k, v in headers
        if k.lower() not in _HOP_BY_HOP
        and k.lower() not in named
        and not k.lower().startswith("proxy-")
    ]


def forward_head(request: ProxyRequest) -> bytes:
    """The head sent upstream for an absolute-form request."""
    lines = [f"{request.method} {request.path} {request.version}"]
    lines += [f"{k}: {v}" for k, v in _strip(request.headers)]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def rewrite_response_head(head: bytes) -> bytes:
    """An upstream response head with its hop-by-hop headers replaced by `Connection: close`."""
    lines = head.split(b"\r\n")
    if len(lines) < 3 or not lines[0].startswith(b"HTTP/1."):
        raise BadRequest("the upstream server sent no HTTP response", 502)
    headers = _headers([line for line in lines[1:] if line])
    kept = [f"{k}: {v}".encode("latin-1") for k, v in _strip(headers)]
    return b"\r\n".join([lines[0], *kept, b"Connection: close", b"", b""])


def response_length(request: ProxyRequest, head: bytes) -> int | None:
    """Bytes of body after the response `head` when it says so; None: until the server closes."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return 0 if status >= 200 else None
    headers = _headers([line for line in lines[1:] if line])
    if values(headers, "transfer-encoding"):
        return None
    lengths = {v.strip() for v in values(headers, "content-length")}
    if len(lengths) == 1:
        (length,) = lengths
        if _LENGTH.fullmatch(length):
            return int(length)
    return None


def status_response(status: int, message: str) -> bytes:
    """A short plain-text answer from the proxy itself (never from upstream)."""
    if status == 200:
        return b"HTTP/1.1 200 Connection established\r\n\r\n"
    body = f"donjon egress proxy: {message}\n".encode("utf-8", "replace")
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii") + body
