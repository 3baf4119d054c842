"""The egress proxy, driven through a sandbox's unix socket against real servers on loopback."""

from __future__ import annotations

import os
import socket
import stat
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from egress_support import API, OTHER, ProxyRig, connect_head, connect_tls, raw_request, rig


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyRig]:
    with rig(tmp_path) as r:
        yield r


def _opener(r: ProxyRig, port: int) -> urllib.request.OpenerDirector:
    proxy_url = f"http://127.0.0.1:{port}"
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({"https": proxy_url, "http": proxy_url}),
        urllib.request.HTTPSHandler(context=r.client_context()),
    )


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_granted_https_through_urllib(proxy: ProxyRig) -> None:
    """urllib with the standard proxy settings reaches the granted host:port over TLS."""
    sandbox = proxy.open([f"{API}:443"])
    port = proxy.relay(sandbox, proxy.begin(sandbox, "req-ok"))
    with _opener(proxy, port).open(f"https://{API}/hello", timeout=30) as response:
        assert response.status == 200 and response.read() == proxy.upstream.body
    proxy.run(sandbox.end_call(proxy.begin(sandbox)))
    [record] = proxy.records()
    assert record["outcome"] == "allowed" and record["target"] == "fn@3"
    detail = record["detail"]
    assert detail["destination"] == f"{API}:443" and detail["address"] == proxy.address
    assert detail["request_id"] == "req-ok" and detail["grant"] == f"{API}:443"
    assert detail["function"] == "fn" and detail["version"] == 3 and detail["count"] == 1


def test_wildcard_grant_matches_a_subdomain(proxy: ProxyRig) -> None:
    """A `*.` grant allows a name below it (resolved by the proxy, dialled as checked)."""
    proxy.resolver.table["eu.s3.donjon.test"] = [proxy.address]
    sandbox = proxy.open(["*.s3.donjon.test:443"])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    answer, _ = connect_tls(proxy, port, "eu.s3.donjon.test:443", "eu.s3.donjon.test")
    assert _status(answer) == 200
    assert proxy.resolver.asked == ["eu.s3.donjon.test"]


def test_plain_http_is_forwarded_in_origin_form_without_proxy_headers(proxy: ProxyRig) -> None:
    """Absolute-form GET goes upstream as origin form, Proxy-* and hop-by-hop headers gone."""
    sandbox = proxy.open([f"{API}:{proxy.http_port}"])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    target = f"{API}:{proxy.http_port}"
    answer = raw_request(
        port,
        f"GET http://{target}/echo?q=1 HTTP/1.1\r\nHost: {target}\r\n"
        "Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n"
        "Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n".encode(),
    )
    assert _status(answer) == 200 and b"Connection: close" in answer
    [head] = proxy.upstream.heads
    assert head.startswith(b"GET /echo?q=1 HTTP/1.1\r\n")
    assert b"X-Keep: 2" in head and b"Connection: close" in head
    for gone in (b"Proxy-", b"X-Drop", b"keep-alive"):
        assert gone not in head


def test_plain_http_through_urllib(proxy: ProxyRig) -> None:
    """urllib's http:// through HTTP_PROXY works for a granted host:port."""
    sandbox = proxy.open([f"{API}:{proxy.http_port}"])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    url = f"http://{API}:{proxy.http_port}/x"
    with _opener(proxy, port).open(url, timeout=30) as response:
        assert response.read() == proxy.upstream.body


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (f"{API}:444", "not granted"),
        (f"{OTHER}:443", "not granted"),
        ("loop.donjon.test:443", "loopback"),
        ("private.donjon.test:443", "private"),
        ("mapped.donjon.test:443", "loopback"),
        ("mixed.donjon.test:443", "loopback"),
        ("meta.donjon.test:443", "metadata"),
    ],
)
def test_connect_refusals(proxy: ProxyRig, target: str, reason: str) -> None:
    """Ungranted ports and hosts, and names resolving to refused addresses: 403, audited."""
    grants = [f"{API}:443"] + [
        f"{h}.donjon.test:443" for h in ("loop", "private", "mapped", "mixed", "meta")
    ]
    sandbox = proxy.open(grants)
    port = proxy.relay(sandbox, proxy.begin(sandbox, "req-no"))
    answer = raw_request(port, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert _status(answer) == 403 and reason.encode() in answer
    [record] = proxy.records()
    assert record["outcome"] == "denied" and reason in record["detail"]["reason"]
    assert record["detail"]["destination"] == target and "address" not in record["detail"]
    assert proxy.upstream.heads == []


def test_metadata_is_refused_inside_an_allowed_network(tmp_path: Path) -> None:
    """169.254.169.254 stays refused even when the admin allows 169.254.0.0/16."""
    from donjon.egress.addresses import parse_networks

    with rig(tmp_path, allow_networks=parse_networks("169.254.0.0/16")) as r:
        sandbox = r.open(["meta.donjon.test:80"])
        port = r.relay(sandbox, r.begin(sandbox))
        answer = raw_request(port, b"CONNECT meta.donjon.test:80 HTTP/1.1\r\n\r\n")
        assert _status(answer) == 403 and b"metadata" in answer


@pytest.mark.parametrize(
    "literal", ["{a}", "2130706433", "0x7f000001", "127.1", "0177.0.0.1", "[::ffff:127.0.0.1]"]
)
def test_ip_literals_are_refused_unless_granted_literally(proxy: ProxyRig, literal: str) -> None:
    """IP literals in every notation are refused when only names are granted."""
    sandbox = proxy.open([f"{API}:443"])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    target = literal.format(a=proxy.address) + ":443"
    answer = raw_request(port, f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    assert _status(answer) == 403 and b"IP literal" in answer


def test_a_literal_grant_allows_that_address_without_sni(proxy: ProxyRig) -> None:
    """A grant of the IP literal itself allows it (TLS to an IP sends no SNI)."""
    sandbox = proxy.open([f"{proxy.address}:443"])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    answer, response = connect_tls(proxy, port, f"{proxy.address}:443", proxy.address)
    assert _status(answer) == 200 and response.startswith(b"HTTP/1.1 200")


def test_a_mismatched_sni_is_refused(proxy: ProxyRig) -> None:
    """CONNECT to the granted name, then TLS naming another server: closed, audited."""
    sandbox = proxy.open([f"{API}:443"])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    answer, response = connect_tls(proxy, port, f"{API}:443", OTHER)
    assert _status(answer) == 200 and response == b""
    assert proxy.upstream.heads == []
    [record] = proxy.records()
    assert record["outcome"] == "denied" and "SNI" in record["detail"]["reason"]


def test_a_tunnel_without_sni_is_refused(proxy: ProxyRig) -> None:
    """TLS to a granted name with no SNI at all is refused too."""
    sandbox = proxy.open([f"{API}:443"])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    _, response = connect_tls(proxy, port, f"{API}:443", None)
    assert response == b"" and proxy.upstream.heads == []
    assert "SNI" in proxy.records()[0]["detail"]["reason"]


def test_a_host_header_differing_from_connect_is_refused(proxy: ProxyRig) -> None:
    """CONNECT api:443 with `Host: other:443`: 403 before any dial."""
    sandbox = proxy.open([f"{API}:443", f"{OTHER}:443"])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    answer = raw_request(port, f"CONNECT {API}:443 HTTP/1.1\r\nHost: {OTHER}:443\r\n\r\n".encode())
    assert _status(answer) == 403 and b"Host header" in answer
    assert proxy.resolver.asked == []
    [record] = proxy.records()
    assert record["detail"]["destination"] == f"{API}:443"


def test_a_plain_http_host_header_differing_from_the_target_is_refused(proxy: ProxyRig) -> None:
    """GET http://api/ with `Host: other`: 403, nothing sent upstream."""
    target = f"{API}:{proxy.http_port}"
    sandbox = proxy.open([target, f"{OTHER}:{proxy.http_port}"])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    answer = raw_request(
        port, f"GET http://{target}/ HTTP/1.1\r\nHost: {OTHER}:{proxy.http_port}\r\n\r\n".encode()
    )
    assert _status(answer) == 403 and proxy.upstream.heads == []
    [record] = proxy.records()
    assert record["detail"]["destination"] == target and "Host" in record["detail"]["reason"]


def test_a_function_without_grants_reaches_nothing(proxy: ProxyRig) -> None:
    """No grant: every destination is refused."""
    sandbox = proxy.open([])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    answer = raw_request(port, f"CONNECT {API}:443 HTTP/1.1\r\n\r\n".encode())
    assert _status(answer) == 403


def test_an_unknown_token_is_refused(proxy: ProxyRig) -> None:
    """A made-up token, another sandbox's token and an ended call's token are all refused."""
    a, b = proxy.open([f"{API}:443"]), proxy.open([f"{API}:443"])
    ended = proxy.begin(a)
    proxy.run(a.end_call(ended))
    for token in ("made-up", proxy.begin(b), ended):
        answer = raw_request(proxy.relay(a, token), f"CONNECT {API}:443 HTTP/1.1\r\n\r\n".encode())
        assert _status(answer) == 403 and b"unknown call token" in answer
    assert proxy.resolver.asked == []
    proxy.run(a.close())
    records = proxy.records()
    assert sum(r["detail"]["count"] for r in records) == 3
    assert all(r["detail"]["reason"] == "unknown call token" for r in records)


def test_connections_per_call_are_capped(tmp_path: Path) -> None:
    """Past max_connections_per_call a call's further connections get 429."""
    with rig(tmp_path, max_connections_per_call=2) as r:
        sandbox = r.open([f"{API}:{r.http_port}"])
        port = r.relay(sandbox, r.begin(sandbox))
        target = f"{API}:{r.http_port}"
        request = f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
        statuses = [_status(raw_request(port, request)) for _ in range(3)]
        assert statuses == [200, 200, 429]
        fresh = r.relay(sandbox, r.begin(sandbox))  # a new call has its own count
        assert _status(raw_request(fresh, request)) == 200


def test_bytes_per_call_are_capped(tmp_path: Path) -> None:
    """A download past max_bytes_per_call is cut short and the refusal audited."""
    with rig(tmp_path, max_bytes_per_call=32 * 1024) as r:
        sandbox = r.open([f"{API}:{r.http_port}"])
        port = r.relay(sandbox, r.begin(sandbox, "req-big"))
        target = f"{API}:{r.http_port}"
        answer = raw_request(
            port, f"GET http://{target}/big HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
        )
        assert 0 < len(answer) <= 32 * 1024
        assert any("byte limit" in rec["detail"]["reason"] for rec in r.records())


def test_a_loop_of_refusals_writes_a_bounded_number_of_records(tmp_path: Path) -> None:
    """100 refused attempts: one record at once, one aggregate at call end, counts exact."""
    with rig(tmp_path, max_connections_per_call=1000) as r:
        _loop_of_refusals(r)


def _loop_of_refusals(proxy: ProxyRig) -> None:
    sandbox = proxy.open([f"{API}:443"])
    token = proxy.begin(sandbox, "req-loop")
    port = proxy.relay(sandbox, token)
    for _ in range(100):
        raw_request(port, f"CONNECT {OTHER}:443 HTTP/1.1\r\n\r\n".encode())
    assert len(proxy.records()) == 1
    proxy.run(sandbox.end_call(token))
    first, aggregate = proxy.records()
    assert first["detail"]["count"] == 1 and aggregate["detail"]["count"] == 99
    assert aggregate["detail"]["aggregated"] is True
    assert len(proxy.records("policy.alert")) == 1


def test_block_mode_ends_the_call_on_a_refused_attempt(proxy: ProxyRig) -> None:
    """egress_attempts: block writes policy.block and calls on_refused with the reason."""
    seen: list[str] = []
    sandbox = proxy.open([f"{API}:443"], attempts="block")
    port = proxy.relay(sandbox, proxy.begin(sandbox, "req-b", seen.append))
    raw_request(port, f"CONNECT {OTHER}:443 HTTP/1.1\r\n\r\n".encode())
    assert len(seen) == 1 and OTHER in seen[0] and "not granted" in seen[0]
    [record] = proxy.records("policy.block")
    assert record["detail"]["policy"] == "egress_attempts"
    assert record["detail"]["request_id"] == "req-b" and proxy.records("policy.alert") == []
    assert record["outcome"] == "blocked" and OTHER in record["detail"]["seen"]


def test_ending_a_call_closes_its_tunnels(proxy: ProxyRig) -> None:
    """A tunnel open when its call ends is closed by the proxy."""
    sandbox = proxy.open([f"{API}:{proxy.http_port}"])
    token = proxy.begin(sandbox)
    port = proxy.relay(sandbox, token)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"CONNECT {API}:{proxy.http_port} HTTP/1.1\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        proxy.run(sandbox.end_call(token))
        assert s.recv(4096) == b""


def test_the_socket_is_private_and_removed_with_the_sandbox(proxy: ProxyRig) -> None:
    """The socket dir is 0700 and the socket 0600; closing the sandbox removes both."""
    sandbox = proxy.open([f"{API}:443"])
    assert stat.S_IMODE(os.stat(sandbox.socket_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(sandbox.socket_path).st_mode) == 0o600
    proxy.run(sandbox.close())
    assert not sandbox.socket_dir.exists()


def test_a_bad_policy_mode_is_refused(proxy: ProxyRig) -> None:
    """egress_attempts other than alert or block is an error, and nothing is opened."""
    from donjon.egress.proxy import EgressProxyError

    with pytest.raises(EgressProxyError, match="alert or block"):
        proxy.open([f"{API}:443"], attempts="allow")
    assert list(proxy.proxy.runtime_dir.iterdir()) == []


def test_a_long_runtime_dir_still_gets_its_socket(tmp_path: Path) -> None:
    """A socket path past sun_path's 108 bytes is bound through the directory's descriptor."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with rig(deep) as r:
        sandbox = r.open([f"{API}:{r.http_port}"])
        assert len(str(sandbox.socket_path)) > 108
        port = r.relay(sandbox, r.begin(sandbox))
        target = f"{API}:{r.http_port}"
        answer = raw_request(
            port, f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
        )
        assert _status(answer) == 200


def test_connections_that_name_no_call_are_bounded(proxy: ProxyRig) -> None:
    """Past MAX_PENDING silent connections on a sandbox's socket, more are refused at once."""
    from donjon.egress.proxy import MAX_PENDING

    sandbox = proxy.open([f"{API}:443"])
    # Through the directory: tmp_path's may take the path past what sun_path holds.
    fd = os.open(sandbox.socket_dir, os.O_RDONLY | os.O_DIRECTORY)
    path = f"/proc/self/fd/{fd}/{sandbox.socket_path.name}"
    silent = []
    try:
        for _ in range(MAX_PENDING):
            s = socket.socket(socket.AF_UNIX)
            silent.append(s)
            s.connect(path)
        answers = []
        for _ in range(50):  # the proxy accepts them in its own time: wait until it has
            with socket.socket(socket.AF_UNIX) as extra:
                extra.settimeout(30)
                extra.connect(path)
                answers.append(extra.recv(4096))
            if b"too many connections" in answers[-1]:
                break
        assert b"403" in answers[-1] and b"too many connections" in answers[-1]
    finally:
        for s in silent:
            s.close()
        os.close(fd)


def test_a_connection_ends_at_its_time_limit(tmp_path: Path) -> None:
    """An idle tunnel is closed at max_connection_s, and the refusal names its destination."""
    with rig(tmp_path, max_connection_s=3.0) as r:
        sandbox = r.open([f"{API}:{r.http_port}"])
        port = r.relay(sandbox, r.begin(sandbox))
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(f"CONNECT {API}:{r.http_port} HTTP/1.1\r\n\r\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            assert s.recv(4096) == b""  # closed by the proxy, well before the 30 s timeout
        allowed, limit = r.records()
        assert allowed["outcome"] == "allowed" and "time limit" in limit["detail"]["reason"]
        assert limit["detail"]["destination"] == f"{API}:{r.http_port}"


def test_a_literal_grant_in_a_network_since_closed_is_refused_at_the_dial(proxy: ProxyRig) -> None:
    """A deployed grant of 10.1.2.3 (its network no longer allowed) opens, and is refused."""
    sandbox = proxy.open(["10.1.2.3:443"])
    port = proxy.relay(sandbox, proxy.begin(sandbox))
    answer = raw_request(port, b"CONNECT 10.1.2.3:443 HTTP/1.1\r\n\r\n")
    assert _status(answer) == 403 and b"private" in answer


def test_a_malformed_grant_opens_nothing(proxy: ProxyRig) -> None:
    """A grant that is not host:port is an EgressGrantError, and no socket is made."""
    from donjon.egress import EgressGrantError

    with pytest.raises(EgressGrantError):
        proxy.open(["api.donjon.test"])
    assert list(proxy.proxy.runtime_dir.iterdir()) == []


def _tunnel(port: int, target: str) -> tuple[socket.socket, bytes]:
    """A CONNECT through the relay on `port`, left open: the socket and the proxy's answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    return s, connect_head(s, target)


def test_open_connections_are_bounded_per_function_and_on_the_node(tmp_path: Path) -> None:
    """One function's calls holding tunnels open take at most its share of the node's
    egress connections, and all functions together at most the node's: past either, a
    connection is refused (503) before it is read, audited, and the budget comes back as
    connections close (helper-122's review: one function's held tunnels took every open
    file of the node, and the node then failed everyone's calls with EMFILE)."""
    with rig(tmp_path, max_connections_node=5, max_connections_per_function=3) as r:
        target = f"{API}:{r.http_port}"
        hog = r.run(r.proxy.open_sandbox("hog", 1, [target]))
        victim = r.run(r.proxy.open_sandbox("victim", 1, [target]))
        # Two calls of the hog: the per-call cap (32) is not what stops them.
        hog_ports = [r.relay(hog, r.begin(hog, f"req-hog-{i}")) for i in range(2)]
        victim_port = r.relay(victim, r.begin(victim, "req-victim"))
        held: list[socket.socket] = []
        try:
            answers = []
            for i in range(5):
                s, answer = _tunnel(hog_ports[i % 2], target)
                held.append(s)
                answers.append(_status(answer))
            assert answers == [200, 200, 200, 503, 503]
            s, answer = _tunnel(hog_ports[0], target)
            held.append(s)
            assert b"function's egress connections" in answer
            # The victim still has the node's other two.
            for _ in range(2):
                s, answer = _tunnel(victim_port, target)
                held.append(s)
                assert _status(answer) == 200
            s, answer = _tunnel(victim_port, target)
            held.append(s)
            assert _status(answer) == 503 and b"node's egress connections (5)" in answer
            assert r.proxy.budget.open == 5
            # A closed tunnel gives its connection back.
            held[-2].close()
            deadline = time.monotonic() + 10
            while r.call_soon(lambda: r.proxy.budget.open) > 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            s, answer = _tunnel(victim_port, target)
            held.append(s)
            assert _status(answer) == 200
        finally:
            for s in held:
                s.close()
        r.run(hog.close())
        r.run(victim.close())
        reasons = [rec["detail"]["reason"] for rec in r.records()]
        assert any("function's egress connections" in reason for reason in reasons), reasons
        assert any("node's egress connections (5)" in reason for reason in reasons), reasons
