"""What the hot path reads of a request without Starlette's objects: the same as them."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from donjon.gateway.access import _canonical_address, client_address, header
from donjon.gateway.async_invoke import wants_async

HEADER_LISTS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"host", b"x"), (b"authorization", b"Bearer dj_1_2"), (b"content-length", b"12")],
    [(b"authorization", b"first"), (b"authorization", b"second")],
    [(b"Authorization", b"raw case"), (b"content-length", b"")],
    [(b"authorization", "caf\u00e9 \u00ff".encode("latin-1")), (b"content-length", b" 7")],
    [(b"content-length", b"1"), (b"x-authorization", b"no"), (b"authorizatio", b"no")],
]


@pytest.mark.parametrize("headers", HEADER_LISTS)
def test_header_reads_what_starlette_headers_get_reads(headers: list[tuple[bytes, bytes]]) -> None:
    """The first field of a name, latin-1, None if absent: `request.headers.get`'s answer."""
    for name in ("authorization", "content-length", "host", "prefer"):
        request = Request({"type": "http", "headers": list(headers)})
        assert header(request, name.encode()) == request.headers.get(name), (headers, name)


@pytest.mark.parametrize(
    "client",
    [None, ("127.0.0.1", 5), ["::1", 443], ("2001:db8::0:1", 1), ("not an ip", 2), ("", 0)],
)
def test_client_address_is_what_request_client_gives(client: Any) -> None:
    """The peer's address from the scope: what `request.client.host` gave, canonical."""
    request = Request({"type": "http", "headers": [], "client": client})
    expected = _canonical_address(request.client.host if request.client else "")
    assert client_address(request) == expected


def _wanted_async(request: Request) -> bool:
    """`wants_async` as it read the fields through Starlette's `Headers`."""
    for field in request.headers.getlist("prefer"):
        for preference in field.split(","):
            name = preference.split(";", 1)[0].split("=", 1)[0].strip().lower()
            if name == "respond-async":
                return True
    return False


@pytest.mark.parametrize(
    "prefers",
    [
        [],
        [b"respond-async"],
        [b"wait=5, Respond-Async"],
        [b"return=minimal", b" respond-async ; wait=1"],
        [b"respond-asyncx", b"respond-async=1"],
        [b"handling=lenient"],
    ],
)
def test_wants_async_reads_what_starlette_headers_getlist_reads(prefers: list[bytes]) -> None:
    """Every `Prefer` field, in order, read from the scope: the same answer as through
    `request.headers.getlist`."""
    headers = [(b"host", b"x"), *((b"prefer", value) for value in prefers), (b"Prefer", b"raw")]
    request = Request({"type": "http", "headers": headers})
    assert wants_async(request) is _wanted_async(request)
