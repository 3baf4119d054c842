"""The proxy's request heads: what is accepted, what is refused with which status."""

from __future__ import annotations

import pytest

from donjon.egress.http import (
    BadRequest,
    forward_head,
    parse_request,
    response_length,
    rewrite_response_head,
    split_authority,
)


def test_connect_is_parsed_with_its_host_lower_cased() -> None:
    """CONNECT Api.Example.COM.:443 names api.example.com port 443."""
    r = parse_request(b"CONNECT Api.Example.COM.:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
    assert (r.connect, r.host, r.port) == (True, "api.example.com", 443)
    assert r.destination == "api.example.com:443"


def test_ipv6_authorities_keep_their_brackets_in_the_destination() -> None:
    """[::1]:443 is host ::1; its destination is written back in brackets."""
    r = parse_request(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n")
    assert r.host == "::1" and r.destination == "[::1]:443"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"CONNECT api.example.com HTTP/1.1\r\n\r\n", 400),  # no port
        (b"CONNECT api.example.com:0 HTTP/1.1\r\n\r\n", 400),
        (b"CONNECT api.example.com:65536 HTTP/1.1\r\n\r\n", 400),
        (b"CONNECT api.example.com:+443 HTTP/1.1\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: b:443\r\n\r\n", 403),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nHost: a:443\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/2.0\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/1.1\n\n", 400),  # bare LF
        (b"CONNECT a:443 HTTP/1.1\r\nX: 1\r\n folded\r\n\r\n", 400),  # obs-fold
        (b"CONNECT a:443 HTTP/1.1\r\nBad Name: 1\r\n\r\n", 400),
        (b"GET /relative HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET https://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http://a/ HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", 403),
        (b"GET http://a/ HTTP/1.1\r\nHost: a:81\r\n\r\n", 403),
        (b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        (b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n", 400),
        # Digits to str.isdigit, not to int(): refused before anything is dialled.
        (b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: \xb2\r\n\r\n", 400),
        (b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\xb9\r\n\r\n", 400),
        (b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456\r\n\r\n", 400),
        (b"GET http://a%2e/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ],
)
def test_bad_heads_are_refused(head: bytes, status: int) -> None:
    """Malformed or mismatched heads are refused with the status the proxy answers."""
    with pytest.raises(BadRequest) as caught:
        parse_request(head)
    assert caught.value.status == status


def test_split_authority_defaults_the_port_only_when_asked() -> None:
    """Host headers default to the target's scheme port; CONNECT targets never do."""
    assert split_authority("a.example", 80) == ("a.example", 80)
    with pytest.raises(BadRequest):
        split_authority("a.example", None)


def test_the_forwarded_head_is_origin_form_without_hop_by_hop_headers() -> None:
    """Proxy-*, Connection and what it names, Keep-Alive, TE, Upgrade go; close is added."""
    r = parse_request(
        b"GET http://a:8080/p?q=1 HTTP/1.1\r\nHost: a:8080\r\nProxy-Authorization: x\r\n"
        b"Connection: Upgrade, X-Secret\r\nUpgrade: websocket\r\nX-Secret: s\r\nTE: trailers\r\n"
        b"Keep-Alive: 5\r\nAccept: */*\r\n\r\n"
    )
    assert forward_head(r) == (
        b"GET /p?q=1 HTTP/1.1\r\nHost: a:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )


def test_the_response_head_says_close_and_its_length_bounds_the_body() -> None:
    """Keep-alive headers are replaced; Content-Length says where the response ends."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n\r\n"
    )
    assert rewrite_response_head(head) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    )
    get = parse_request(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n")
    assert response_length(get, head) == 5
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert response_length(get, chunked) is None
    assert response_length(get, b"HTTP/1.1 204 No Content\r\n\r\n") == 0
    # A length only str.isdigit reads as one: no length (the body ends when the server
    # closes, as the proxy's one request per connection allows), never a crash.
    superscript = b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n"
    assert response_length(get, superscript) is None


@pytest.mark.parametrize(
    "target",
    [
        b"evil.example.com\nINFO-forged-line:443",  # a lone LF: the head is split on CRLF only
        b"a\x1b[2Jb.example.com:443",  # a terminal escape
        b"api.example.com\x7f:443",
        b"api.example.com\x0b:443",
    ],
)
def test_control_characters_in_a_target_host_are_malformed(target: bytes) -> None:
    """A host with control characters is a 400, never a destination written to the
    node's log and audit record as sent (the console log view prints it raw)."""
    with pytest.raises(BadRequest, match="malformed host") as info:
        parse_request(b"CONNECT " + target + b" HTTP/1.1\r\n\r\n")
    assert info.value.status == 400
    with pytest.raises(BadRequest, match="malformed"):
        parse_request(b"GET http://a.example.com/ HTTP/1.1\r\nHost: " + target + b"\r\n\r\n")
