"""The hostile requests test_attack_trigger_input_sweep.py sends to the public trigger
routes (/fn/ and /hooks/), and a raw HTTP/1.1 client to send them: what a client library
would refuse to write (duplicate Content-Length or Host, bytes that are not UTF-8, a
50,000-byte request target) is exactly what a hostile caller sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from harness import LiveNode
from triggers.webhook_signing import github_headers, new_whsec, standard_headers, stripe_headers

__all__ = [
    "ECHO_HANDLER",
    "EVENT_HEADERS",
    "INJECTED",
    "ROUTES",
    "FnCase",
    "HookCase",
    "Reply",
    "fn_cases",
    "hook_cases",
    "hostile_records",
    "malformed_notifications",
    "notification",
    "post_raw",
    "record",
    "send_raw",
    "sign",
    "storage_token_cases",
]

#: A function that answers (and returns, for an async call's result) the event it got.
ECHO_HANDLER = """\
import json
def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "request_id": context.request_id,
                                "principal": context.principal})}
"""


@dataclass(frozen=True)
class Reply:
    """A response as it came off the wire: its status, headers (names lower case, in
    order, repeats kept) and body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def problem(self) -> dict[str, Any]:
        """The problem document of a refusal (AssertionError if it is not one)."""
        assert self.header("content-type") == "application/problem+json", self
        body: dict[str, Any] = self.json()
        assert body["status"] == self.status, body
        assert len(body.get("detail", "")) >= 10, body
        return body


Headers = Sequence[tuple[str, str | bytes]] | Mapping[str, str]


def send_raw(
    node: LiveNode,
    method: str | bytes,
    target: str | bytes,
    headers: Headers = (),
    body: bytes = b"",
    *,
    source: str | None = None,
    content_length: bool = True,
) -> Reply:
    """Send one request, byte for byte as given (a Host and, unless `content_length` is
    False, a Content-Length are added), over a fresh TLS connection from `source`."""
    url = urlsplit(node.url)
    host, port = url.hostname or "127.0.0.1", url.port or 443
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    names = {k.lower() for k, _ in pairs}
    if "host" not in names:
        pairs.insert(0, ("host", f"{host}:{port}"))
    if content_length and "content-length" not in names:
        pairs.append(("content-length", str(len(body))))
    pairs.append(("connection", "close"))
    head = _bytes(method) + b" " + _bytes(target) + b" HTTP/1.1\r\n"
    head += b"".join(_bytes(k) + b": " + _bytes(v) + b"\r\n" for k, v in pairs)
    raw = socket.create_connection((host, port), timeout=60, source_address=(source or "", 0))
    with node.tls.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(head + b"\r\n" + body)
        received = b""
        while chunk := tls.recv(65536):
            received += chunk
    return _parse(received)


def post_raw(
    node: LiveNode, path: str, headers: Headers, body: bytes, *, source: str | None = None
) -> Reply:
    return send_raw(node, "POST", path, headers, body, source=source)


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def _parse(received: bytes) -> Reply:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = [
        (k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])
    ]
    if ("transfer-encoding", "chunked") in headers:
        body = _unchunk(body)
    return Reply(status, headers, body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


@dataclass(frozen=True)
class FnCase:
    """One hostile request to an http trigger: `route` names the function (trigger_sweep's
    ROUTES) and `expect` the status it must get; "http" is the HTTP layer's own 400 (a
    request HTTP/1.1 forbids, refused before the app sees it, not a problem document)."""

    what: str
    route: str
    method: str | bytes = "GET"
    target: str | bytes = ""
    headers: tuple[tuple[str, str | bytes], ...] = ()
    body: bytes = b""
    expect: int | str = 200

    def __str__(self) -> str:
        return f"{self.route} [{self.what}]"


#: Each route's path under /fn, and whether it takes a platform credential.
ROUTES = {"key": ("/k", True), "public": ("/p", False), "v1": ("/v1x", True), "v2": ("/v2x", True)}
_JSON = (("content-type", "application/json"),)
_LONG = "x" * 50_000


def fn_cases() -> list[FnCase]:
    """The /fn sweep: odd methods, hostile paths, query strings, headers and bodies."""
    cases: list[FnCase] = []
    for route, (path, keyed) in ROUTES.items():
        missing = 404 if keyed else 401  # an anonymous caller is not told what is missing
        cases += [
            FnCase("plain GET", route),
            FnCase("JSON POST", route, "POST", body=b'{"a": 1}', headers=_JSON),
            FnCase("PROPFIND", route, "PROPFIND", expect=405),
            FnCase("TRACE", route, "TRACE", expect=405),
            FnCase("extension method", route, "M-SEARCH", expect=405),
            FnCase("lower-case method", route, "get", expect="http"),
            FnCase("method with a control byte", route, b"GE\x01T", expect="http"),
            FnCase("trailing encoded slash", route, target=f"/fn{path}%2F"),
            FnCase("encoded first letter", route, target=f"/fn/%{ord(path[1]):02X}{path[2:]}"),
            FnCase("encoded slash inside", route, target=f"/fn{path}%2Fx", expect=missing),
            FnCase("dot-dot", route, target=f"/fn/x/..{path}", expect=missing),
            FnCase("encoded dot-dot", route, target=f"/fn/x/%2E%2E{path}", expect=missing),
            FnCase("NUL", route, target=f"/fn{path}%00", expect=missing),
            FnCase("not UTF-8", route, target=f"/fn{path}/%FF", expect=missing),
            FnCase("encoded surrogate", route, target=f"/fn/%ED%A0%80{path}", expect=missing),
            FnCase("bidi override", route, target=f"/fn{path}%E2%80%AE", expect=missing),
            FnCase("over-long segment", route, target=f"/fn{path}/{_LONG}", expect=missing),
            FnCase("repeated parameter", route, target=f"/fn{path}?a=1&a=2&a=3"),
            FnCase("huge parameter", route, target=f"/fn{path}?a={_LONG}"),
            FnCase("many parameters", route, target=f"/fn{path}?" + "&".join(["b=1"] * 3000)),
            FnCase("parameter not UTF-8", route, target=f"/fn{path}?%FF=%ED%A0%80"),
            FnCase("NUL parameter", route, target=f"/fn{path}?a=%00&%00=b"),
            FnCase("bare and empty parameters", route, target=f"/fn{path}?a&=b&&c="),
            FnCase(
                "two Content-Types",
                route,
                "POST",
                headers=(*_JSON, ("content-type", "text/plain")),
                body=b"{}",
            ),
            FnCase(
                "two Content-Lengths",
                route,
                "POST",
                headers=(("content-length", "2"), ("content-length", "3")),
                body=b"{}x",
                expect="http",
            ),
            FnCase(
                "negative Content-Length",
                route,
                "POST",
                headers=(("content-length", "-1"),),
                expect="http",
            ),
            FnCase(
                "huge Content-Length",
                route,
                "POST",
                headers=(("content-length", "9" * 30),),
                expect="http",
            ),
            FnCase(
                "two Hosts",
                route,
                headers=(("host", "a.example"), ("host", "b.example")),
                expect="http",
            ),
            FnCase("hostile Host", route, headers=(("host", "evil.example:1/../x?y"),)),
            FnCase("header not UTF-8", route, headers=(("x-sweep", b"\xff\xfe\x80"),)),
            FnCase(
                "spoofed forwarding",
                route,
                headers=(
                    ("x-forwarded-for", "10.9.9.9"),
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-for", "10.8.8.8"),
                ),
            ),
            FnCase(
                "caller's request id",
                route,
                headers=(("x-request-id", "sweep-evil"), ("x-amzn-requestid", "sweep-evil")),
            ),
            FnCase("empty body", route, "POST"),
            FnCase("binary body", route, "POST", body=b"\xff\xfe\x00\x01", headers=_JSON),
            FnCase("deep JSON", route, "POST", body=b"[" * 5000 + b"]" * 5000, headers=_JSON),
            FnCase("lone surrogate", route, "POST", body=b'{"\\ud800": "\\udc00"}', headers=_JSON),
            FnCase("NaN", route, "POST", body=b'{"a": NaN}', headers=_JSON),
            FnCase("over limits.body", route, "POST", body=b"x" * 70_000, expect=413),
        ]
    cases += [
        FnCase("HEAD on a public route", "public", "HEAD", expect=405),
        FnCase("DELETE on a public route", "public", "DELETE", expect=405),
        FnCase(
            "the admin's key to a public route",
            "public",
            headers=(("authorization", "Bearer {admin}"),),
        ),
        FnCase(
            "another scheme's credential",
            "public",
            headers=(("authorization", "Basic Zm9vOmJhcg=="),),
        ),
        FnCase(
            "a bad key before the good one",
            "key",
            headers=(("authorization", "Bearer dj_bad"),),
            expect=401,
        ),
        FnCase("no credential", "key", headers=(("authorization", ""),), expect=401),
    ]
    return cases


@dataclass(frozen=True)
class HookCase:
    """One delivery to a signed webhook of `scheme`: taken (202) when `reason` is None,
    else refused 401 and audited as ``webhook SCHEME: reason``."""

    what: str
    scheme: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    reason: str | None = None

    def __str__(self) -> str:
        return f"{self.scheme} [{self.what}]"


def _replace(headers: dict[str, str], **changed: str) -> tuple[tuple[str, str], ...]:
    out = {**headers, **{k.replace("_", "-"): v for k, v in changed.items()}}
    return tuple((k, v) for k, v in out.items() if v != "")


def hook_cases(keys: dict[str, str], tag: str) -> list[HookCase]:
    """Signed deliveries with a hostile twist, for the secrets `keys` (by scheme); every
    refused one's body holds `tag`, which no run may show."""
    now = int(time.time())
    cases: list[HookCase] = []

    def body(what: str) -> bytes:
        return json.dumps(
            {"id": f"evt_{secrets.token_hex(8)}", "type": "sweep", "what": what, "tag": tag}
        ).encode()

    def std(what: str, reason: str | None, sign_body: bytes | None = None, **changed: str) -> None:
        b = body(what)
        h = standard_headers(keys["standard"], sign_body or b)
        cases.append(HookCase(what, "standard", _replace(h, **changed), b, reason))

    std("future timestamp", "timestamp", webhook_timestamp=str(now + 3600))
    std("past timestamp", "timestamp", webhook_timestamp=str(now - 3600))
    std("timestamp in milliseconds", "malformed", webhook_timestamp=str(now * 1000))
    for bad in ("1e9", "-1", " 12a", "\u0661\u0662", "9" * 40):
        std(f"timestamp {bad!r:.12}", "malformed", webhook_timestamp=bad)
    std("hex signature", "signature", webhook_signature="v1," + "ab" * 32)
    std("wrong prefix", "malformed", webhook_signature="v1a,AAAA")
    std("no comma", "malformed", webhook_signature="v1")
    std("not base64", "malformed", webhook_signature="v1,***")
    std("no signature", "malformed", webhook_signature="")
    std("id with a space", "malformed", webhook_id="a b")
    std("id too long", "malformed", webhook_id="m" * 300)
    std("another body's signature", "signature", sign_body=b'{"type": "other"}')
    forged = standard_headers(new_whsec(), b"{}")["webhook-signature"]
    std("a forged signature only", "signature", webhook_signature=forged)
    std("signatures past the eighth", "signature", webhook_signature=" ".join([forged] * 9))

    def gh(what: str, reason: str | None, secret: str | None = None, **changed: str) -> None:
        b = body(what)
        h = github_headers(secret or keys["github"], b)
        cases.append(HookCase(what, "github", _replace(h, **changed), b, reason))

    gh("sha1 prefix", "malformed", x_hub_signature_256="sha1=" + "ab" * 20)
    gh("base64 digest", "malformed", x_hub_signature_256="sha256=" + "q" * 43 + "=")
    gh("empty digest", "signature", x_hub_signature_256="sha256=")
    gh("two values", "malformed", x_hub_signature_256="sha256=ab, sha256=cd")
    gh("no delivery id", "malformed", x_github_delivery="")
    gh("event with a space", "malformed", x_github_event="pu sh")
    gh("another secret", "signature", secret=new_whsec())

    def stripe(what: str, reason: str | None, raw: bytes | None = None, **changed: str) -> None:
        b = raw if raw is not None else body(what)
        h = stripe_headers(keys["stripe"], b)
        cases.append(HookCase(what, "stripe", _replace(h, **changed), b, reason))

    stripe("future t", "timestamp", stripe_signature=f"t={now + 3600},v1=" + "ab" * 32)
    stripe("non-numeric t", "malformed", stripe_signature="t=soon,v1=" + "ab" * 32)
    stripe("two t", "malformed", stripe_signature=f"t={now},t={now},v1=ab")
    stripe("base64 v1", "malformed", stripe_signature=f"t={now},v1=" + "q" * 43 + "=")
    stripe("v0 only", "malformed", stripe_signature=f"t={now},v0=ab")
    stripe("signed, no id", "malformed", raw=json.dumps({"type": "sweep", "tag": tag}).encode())
    stripe("signed, not JSON", "malformed", raw=f"not json {tag}".encode())
    stripe("signed, deep", "malformed", raw=b"[" * 5000 + tag.encode() + b"]" * 5000)
    return cases


#: The names of the headers a webhook's event may carry, by scheme (docs/triggers.md).
EVENT_HEADERS = {
    "standard": {"content-type", "user-agent", "webhook-id", "webhook-timestamp"},
    "github": {
        "content-type",
        "user-agent",
        "x-github-delivery",
        "x-github-event",
        "x-github-hook-id",
    },
    "stripe": {"content-type", "user-agent"},
}
#: What an attacker adds to a signed delivery: none of it may reach the event.
INJECTED = (
    ("authorization", "Bearer dj_stolen"),
    ("x-forwarded-for", "10.9.9.9"),
    ("x-request-id", "sweep-evil"),
    ("x-donjon-principal", "key:admin"),
    ("content-type", "text/plain"),
)


def sign(keys: dict[str, str], scheme: str, body: bytes) -> dict[str, str]:
    """Headers that sign `body` (any bytes) for `scheme` under `keys[scheme]`."""
    if scheme == "github":
        return github_headers(keys[scheme], body)
    if scheme == "stripe":
        return stripe_headers(keys[scheme], body)
    msg_id, ts = f"msg_{secrets.token_hex(8)}", str(int(time.time()))
    key = base64.b64decode(keys[scheme].removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    signature = "v1," + base64.b64encode(mac).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def record(key: str, bucket: str = "sweep", sequencer: str | None = None) -> dict[str, Any]:
    """An S3 ObjectCreated record of `key` (as S3 encodes it) in `bucket`."""
    obj: dict[str, Any] = {"key": key, "size": 1}
    obj["sequencer"] = sequencer if sequencer is not None else secrets.token_hex(8)
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": obj},
    }


def notification(*records: dict[str, Any]) -> bytes:
    return json.dumps({"Records": list(records)}).encode()


def storage_token_cases(token: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """Pushes whose bearer token is missing, wrong or not the first one sent."""
    return [
        ("no token", ()),
        ("empty", (("authorization", "Bearer"),)),
        ("wrong", (("authorization", "Bearer " + secrets.token_hex(16)),)),
        ("prefix of it", (("authorization", f"Bearer {token[:-1]}"),)),
        ("another scheme", (("authorization", f"Basic {token}"),)),
        ("no scheme", (("authorization", token),)),
        ("wrong one first", (("authorization", "Bearer x"), ("authorization", f"Bearer {token}"))),
        ("token and more", (("authorization", f"Bearer {token} {token}"),)),
    ]


def malformed_notifications() -> list[tuple[str, bytes]]:
    """Bodies that are not S3 notifications: none of their records may run."""
    ok = record("fine.jpg")
    surrogate = json.dumps(record("k")).replace('"k"', '"\\ud800"').encode()
    return [
        ("empty", b""),
        ("not JSON", b"{not json"),
        ("binary", b"\xff\xfe\x00"),
        ("a list", b"[]"),
        ("no Records", b'{"records": []}'),
        ("Records not a list", b'{"Records": {}}'),
        ("a record not an object", notification(ok)[:-2] + b", 7]}"),
        (
            "no key",
            json.dumps(
                {"Records": [ok, {**ok, "s3": {"bucket": {"name": "b"}, "object": {}}}]}
            ).encode(),
        ),
        (
            "key not a string",
            notification({**ok, "s3": {"bucket": {"name": "b"}, "object": {"key": 7}}}),
        ),
        ("no eventName", notification({k: v for k, v in ok.items() if k != "eventName"})),
        ("deep", b'{"Records": [' + b"[" * 5000 + b"]" * 5000 + b"]}"),
        ("lone surrogate in a key", b'{"Records": [' + surrogate + b"]}"),
        # A NUL is taken by no PostgreSQL text column: refused whole, as a surrogate is.
        ("an encoded NUL in a key", notification(ok, record("a%00b"))),
        ("a NUL in a key", notification(ok, record("a\x00b"))),
        ("a NUL in a bucket", notification(ok, record("k", bucket="b\x00"))),
        ("a NUL in a sequencer", notification(ok, record("k", sequencer="\x00"))),
        ("a NUL in an event name", notification({**ok, "eventName": "ObjectCreated:\x00"})),
        ("SNS Message not JSON", json.dumps({"Type": "Notification", "Message": "{"}).encode()),
        ("over limits.body", notification(*[record("k" * 1000) for _ in range(80)])),
    ]


def hostile_records() -> list[tuple[str, bytes, list[dict[str, Any]]]]:
    """Notifications a store may send (hostile keys, odd JSON): each record runs once."""
    out: list[tuple[str, bytes, list[dict[str, Any]]]] = []
    for what, key in (
        ("dots", "..%2F..%2Fetc%2Fpasswd"),
        ("1024 bytes", "k" * 1024),
        ("encoded bytes not UTF-8", "%ED%A0%80%FF"),
        ("plus and space", "my+photo%20.jpg"),
        ("bidi and emoji", "\u202eevil\U0001f600.jpg"),
    ):
        r = record(key)
        out.append((what, notification(r), [r]))
    r = record("b.jpg", bucket="b\u202e\x01")
    out.append(("bucket with controls", notification(r), [r]))
    r = record("nan.jpg", sequencer="")
    out.append(("empty sequencer", notification(r), [r]))
    two = [record("same.jpg", sequencer="1"), record("same.jpg", sequencer="1")]
    out.append(("one record twice", notification(*two), two))
    r = record("dup.jpg")
    dup = notification(r)[:-3] + b', "eventName": "ObjectCreated:Put"}]}'
    out.append(("a duplicate key", dup, [r]))
    return out
