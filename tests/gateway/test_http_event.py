"""The headers an http trigger's event carries: X-Forwarded-For/-Proto are the gateway's."""

from __future__ import annotations

from starlette.requests import Request

from donjon.gateway.http_event import function_headers, joined
from donjon.identity.issuers import IssuerRegistry


def _request(client: str, scheme: str, headers: list[tuple[str, str]]) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": scheme,
            "path": "/fn/x",
            "headers": [(k.encode(), v.encode()) for k, v in headers],
            "client": (client, 443),
        }
    )


def _forwarded(request: Request) -> dict[str, str]:
    seen = function_headers(request, strip_auth=True, issuers=IssuerRegistry())
    return {k: v for k, v in seen if k.startswith("x-forwarded-")}


def test_a_trusted_proxys_forwarded_for_is_kept_as_it_is() -> None:
    """Behind a trusted proxy (uvicorn took the caller from its header), nothing is added."""
    request = _request("198.51.100.4", "http", [("x-forwarded-for", "10.1.1.1, 198.51.100.4")])
    assert _forwarded(request) == {
        "x-forwarded-for": "10.1.1.1, 198.51.100.4",
        "x-forwarded-proto": "http",
    }


def test_repeated_forwarded_headers_become_one_ending_with_the_caller() -> None:
    """Several X-Forwarded-For lines from a caller are one list, the peer appended; its
    own X-Forwarded-Proto is dropped."""
    request = _request(
        "192.0.2.1",
        "https",
        [
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "http"),
        ],
    )
    assert _forwarded(request) == {
        "x-forwarded-for": "1.1.1.1, 2.2.2.2, 192.0.2.1",
        "x-forwarded-proto": "https",
    }


def test_no_forwarded_for_names_the_peer() -> None:
    """A caller that sends none gets one naming its own address."""
    assert _forwarded(_request("192.0.2.1", "https", [])) == {
        "x-forwarded-for": "192.0.2.1",
        "x-forwarded-proto": "https",
    }


def test_an_underscore_spelling_of_a_gateway_header_does_not_reach_the_function() -> None:
    """`x_forwarded_for` is the same variable as `x-forwarded-for` to a WSGI adapter
    (HTTP_X_FORWARDED_FOR): a caller's, beside the gateway's, was one an adapter keeping
    the first value would take for the caller's address."""
    request = _request(
        "192.0.2.1",
        "https",
        [("x_forwarded_for", "6.6.6.6"), ("X_Forwarded_Proto", "http"), ("x_other", "kept")],
    )
    seen = function_headers(request, strip_auth=True, issuers=IssuerRegistry())
    assert seen == [
        ("x_other", "kept"),
        ("x-forwarded-for", "192.0.2.1"),
        ("x-forwarded-proto", "https"),
    ]


def test_a_headers_repeated_lines_are_joined_not_the_last_kept() -> None:
    """The native event holds one value per name: repeats joined with ", ", cookies with
    "; " (before, only the last line reached the function)."""
    request = _request(
        "198.51.100.4",
        "https",
        [("x-tag", "first"), ("cookie", "a=1"), ("x-tag", "second"), ("cookie", "b=2")],
    )
    seen = joined(function_headers(request, strip_auth=True, issuers=IssuerRegistry()))
    assert seen["x-tag"] == "first, second"
    assert seen["cookie"] == "a=1; b=2"
