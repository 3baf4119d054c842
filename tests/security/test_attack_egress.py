"""Egress (issue 12, point 6): a granted host:port is the only way out, through the proxy.

Real functions on a real node call a local HTTPS origin standing in for the internet
(egress_world.py: its own CA, a DNS server the proxy resolves through). The granted
destination works through urllib and requests with nothing but the standard proxy
variables; every other way out fails, is audited, and leaves the servers untouched.
Each attack runs on a cold start (the first call of a freshly deployed version's
sandbox) and on a warm worker (an `isolation: warm` worker that already served a call).

One module past 500 lines, on purpose: one world and one node (module fixtures) serve
every attack here; split, each part would start a node of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from donjon.bundle.archive import pack
from egress_realworld import (
    BIG,
    MAX_BYTES,
    MAX_CONNECTION_S,
    MAX_CONNECTIONS,
    World,
    all_records,
    build_world,
    deploy,
    egress_records,
    fresh_deploy,
    function_source,
    node_settings,
    prime,
)
from egress_world import DOMAIN
from harness import LiveNode, start_node
from sec_support import bundle_dir

API = f"api.{DOMAIN}"
SOCKET = "/run/donjon-egress/proxy.sock"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The test internet: origins, their CA and the DNS server the proxy resolves through."""
    with build_world(tmp_path_factory.mktemp("egress-world")) as built:
        yield built


@pytest.fixture(scope="module")
def egress_node(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node whose proxy resolves through the test DNS and may dial only the origin."""
    live = start_node(tmp_path_factory.mktemp("egress-node"), node_settings(world))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def warm_attacker(
    egress_node: LiveNode,
    world: World,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    name = "eg-attack-warm"
    root = tmp_path_factory.mktemp("eg-warm")
    deploy(egress_node, function_source(world, root, "eg-attack", name, isolation="warm"))
    prime(egress_node, name)
    return name


@pytest.fixture(params=["cold", "warm"])
def fn(
    request: pytest.FixtureRequest,
    egress_node: LiveNode,
    world: World,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The granted attacker: a fresh version (cold) or the primed warm worker (warm)."""
    if request.param == "warm":
        name: str = request.getfixturevalue("warm_attacker")
        return name
    root = tmp_path_factory.mktemp("eg-cold")
    return fresh_deploy(egress_node, world, root, "eg-attack", "eg-attack")


def call(node: LiveNode, fn: str, op: str, **args: Any) -> tuple[dict[str, Any], str]:
    """One op of the attacker; the call itself must succeed. -> (result, request id)."""
    r = node.invoke(fn, {"op": op, **args})
    assert r.status_code == 200, f"{fn} {op}: {r.status_code} {r.text[:2000]}"
    result: dict[str, Any] = r.json()
    return result, r.headers["x-request-id"]


def marker() -> str:
    return f"/m/{uuid.uuid4().hex}"


def assert_denied(node: LiveNode, fn: str, request_id: str, destination: str) -> dict[str, Any]:
    """The call's refusal of `destination` is an audit record naming the call; returns it."""

    def found(records: list[dict[str, Any]]) -> bool:
        return any(r["detail"].get("destination") == destination for r in records)

    records = egress_records(node, request_id, want=found)
    denied = [r for r in records if r["detail"].get("destination") == destination]
    assert denied, f"no egress.connect record for {destination}: {records}"
    record = denied[0]
    assert record["outcome"] == "denied", record
    detail = record["detail"]
    assert detail["function"] == fn and isinstance(detail["version"], int), detail
    assert detail["decision"] == "denied" and detail["reason"], detail
    return record


def assert_refused(result: dict[str, Any]) -> None:
    """The proxy did not open the tunnel (or the tunnel carried no answer)."""
    assert result["status"] != 200 or result.get("http_status") is None, result


# --- what is granted works ------------------------------------------------------------


def test_granted_host_answers_through_urllib(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """urllib reaches the granted host:port with the standard proxy variables; audited."""
    path = marker()
    result, request_id = call(egress_node, fn, "urllib", url=f"https://{API}{path}")
    assert result["status"] == 200, result
    assert result["reply"] == {"origin": "origin", "path": path, "host": API, "sni": API}
    records = egress_records(
        egress_node, request_id, want=lambda rs: any(r["outcome"] == "allowed" for r in rs)
    )
    allowed = [r for r in records if r["outcome"] == "allowed"]
    assert allowed, records
    detail = allowed[0]["detail"]
    assert detail["destination"] == f"{API}:443"
    assert detail["address"] == world.address
    assert detail["function"] == fn and detail["decision"] == "allowed"


def test_standard_proxy_variables_are_set(egress_node: LiveNode, fn: str) -> None:
    """HTTPS_PROXY/HTTP_PROXY (both cases) point at a local relay; NO_PROXY is unset."""
    result, _ = call(egress_node, fn, "env")
    proxy = result["proxy"]
    assert set(proxy) == {"HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"}, proxy
    assert len(set(proxy.values())) == 1, proxy
    assert next(iter(proxy.values())).startswith("http://127.0.0.1:")


@pytest.fixture(params=["cold", "warm"])
def requests_fn(
    request: pytest.FixtureRequest,
    egress_node: LiveNode,
    world: World,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """A function using requests (vendored from requirements.txt), cold or warm."""
    root = tmp_path_factory.mktemp("eg-requests")
    warm = request.param == "warm"
    name = "eg-requests-warm" if warm else "eg-requests"
    src = function_source(
        world, root, "eg-requests", name, isolation="warm" if warm else "invocation"
    )
    deploy(egress_node, src)
    if warm:
        r = egress_node.invoke(name, {"url": f"https://{API}/prime"})
        assert r.status_code == 200, r.text
    return name


def test_granted_host_answers_through_requests(
    egress_node: LiveNode,
    requests_fn: str,
) -> None:
    """requests, configured by nothing but the environment, reaches the granted host."""
    path = marker()
    r = egress_node.invoke(requests_fn, {"url": f"https://{API}{path}"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": 200,
        "reply": {"origin": "origin", "path": path, "host": API, "sni": API},
    }


def test_plain_http_is_forwarded_to_a_granted_port(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """Plain HTTP goes through HTTP_PROXY (absolute form) to a granted host:port."""
    path = marker()
    url = f"http://{API}:{world.plain.port}{path}"
    result, _ = call(egress_node, fn, "urllib", url=url)
    assert result["status"] == 200, result
    assert result["reply"]["origin"] == "plain" and result["reply"]["path"] == path


@pytest.mark.parametrize("host", [f"a.s3.{DOMAIN}", f"deep.er.s3.{DOMAIN}"])
def test_wildcard_grant_reaches_one_or_more_labels(
    egress_node: LiveNode,
    fn: str,
    host: str,
) -> None:
    """`*.s3.donjon.test:443` reaches names one or more labels under the suffix."""
    path = marker()
    result, _ = call(egress_node, fn, "urllib", url=f"https://{host}{path}")
    assert result["status"] == 200, result
    assert result["reply"]["sni"] == host and result["reply"]["path"] == path


# --- what is not granted fails, reaches nothing and is audited ------------------------


@pytest.mark.parametrize("host", [f"s3.{DOMAIN}", f"xs3.{DOMAIN}"])
def test_wildcard_grant_does_not_reach_its_bare_suffix_or_a_lookalike(
    egress_node: LiveNode,
    world: World,
    fn: str,
    host: str,
) -> None:
    """`*.s3.donjon.test` matches neither `s3.donjon.test` nor `xs3.donjon.test`."""
    path = marker()
    result, request_id = call(egress_node, fn, "connect", target=f"{host}:443", sni=host, path=path)
    assert_refused(result)
    assert not world.origin.log.saw(path)
    assert_denied(egress_node, fn, request_id, f"{host}:443")


def test_cannot_reach_an_ungranted_port(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """The granted host on another port: refused before any connection is made."""
    before = world.side.accepted
    target = f"{API}:{world.side.port}"
    result, request_id = call(egress_node, fn, "connect", target=target, sni=API, path=marker())
    assert_refused(result)
    assert world.side.accepted == before
    assert_denied(egress_node, fn, request_id, target)


def test_cannot_reach_an_ungranted_host(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """Another name of the same origin, on the granted port: refused."""
    host = f"other.{DOMAIN}"
    path = marker()
    result, request_id = call(egress_node, fn, "connect", target=f"{host}:443", sni=host, path=path)
    assert_refused(result)
    assert not world.origin.log.saw(path)
    assert_denied(egress_node, fn, request_id, f"{host}:443")


def test_an_ungranted_name_is_never_resolved(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """Data spelled into an ungranted name never reaches a DNS server (no DNS exfiltration)."""
    host = f"{uuid.uuid4().hex}.exfil.{DOMAIN}"
    result, request_id = call(egress_node, fn, "connect", target=f"{host}:443")
    assert_refused(result)
    assert_denied(egress_node, fn, request_id, f"{host}:443")
    assert world.dns.queried(host) == 0


def _literals(address: str) -> dict[str, str]:
    """The origin's address (in the node's allowed network, never granted literally) and
    loopback, in the notations inet_aton and IPv6 accept."""
    a, b, c, d = (int(x) for x in address.split("."))
    number = (a << 24) | (b << 16) | (c << 8) | d
    return {
        "dotted": address,
        "decimal": str(number),
        "hex": hex(number),
        "octal-dotted": f"0{a:o}.{b}.{c}.{d}",
        "short": f"{a}.{d}" if (b, c) == (0, 0) else f"{a}.{b}.{(c << 8) | d}",
        "hex-dotted": f"{a:#x}.{(b << 16) | (c << 8) | d}",
        "ipv4-mapped": f"[::ffff:{address}]",
        "ipv4-mapped-hex": f"[::ffff:{(a << 8) | b:x}:{(c << 8) | d:x}]",
        "nat64": f"[64:ff9b::{(a << 8) | b:x}:{(c << 8) | d:x}]",
        "loopback-v6": "[::1]",
        "loopback-short": "127.1",
        "zero": "0.0.0.0",  # noqa: S104 - the attack target
    }


LITERALS = list(_literals("127.0.0.2"))


@pytest.mark.parametrize("notation", LITERALS)
def test_cannot_connect_to_an_ip_literal(
    egress_node: LiveNode,
    world: World,
    fn: str,
    notation: str,
) -> None:
    """CONNECT to an IP literal in any notation is refused (not granted literally)."""
    literal = _literals(world.address)[notation]
    target = f"{literal}:443"
    before = world.origin.accepted
    path = marker()
    result, request_id = call(egress_node, fn, "connect", target=target, path=path)
    assert_refused(result)
    assert not world.origin.log.saw(path)
    assert world.origin.accepted == before
    assert_denied(egress_node, fn, request_id, target)


def test_cannot_reach_the_metadata_address(
    egress_node: LiveNode,
    fn: str,
) -> None:
    """A granted name that resolves to 169.254.169.254 is refused: the metadata address."""
    target = f"metadata.{DOMAIN}:80"
    result, request_id = call(egress_node, fn, "plain", url=f"http://{target}/latest/meta-data/")
    assert result["status"] != 200, result
    record = assert_denied(egress_node, fn, request_id, target)
    assert "metadata" in record["detail"]["reason"], record


def test_cannot_reach_the_metadata_address_literally(
    egress_node: LiveNode,
    fn: str,
) -> None:
    """Absolute-form HTTP to http://169.254.169.254/ is refused."""
    result, request_id = call(
        egress_node, fn, "plain", url="http://169.254.169.254/latest/meta-data/"
    )
    assert result["status"] != 200, result
    assert_denied(egress_node, fn, request_id, "169.254.169.254:80")


@pytest.mark.parametrize("name", ["loopback", "mapped", "nat64"])
def test_cannot_reach_loopback_through_a_granted_name(
    egress_node: LiveNode,
    world: World,
    fn: str,
    name: str,
) -> None:
    """A granted name whose answer is 127.0.0.1 (as A, IPv4-mapped or NAT64 AAAA) is refused."""
    host = f"{name}.{DOMAIN}"
    target = f"{host}:{world.twin.port}"
    before = world.loopback.accepted
    result, request_id = call(egress_node, fn, "connect", target=target, sni=host, path=marker())
    assert_refused(result)
    assert world.loopback.accepted == before
    record = assert_denied(egress_node, fn, request_id, target)
    assert "routable" in record["detail"]["reason"] or "loopback" in record["detail"]["reason"]


def test_dns_rebinding_does_not_reach_loopback(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """A name answering the origin first and 127.0.0.1 after: the proxy dials what it checked."""
    host = f"{uuid.uuid4().hex}.rebind.{DOMAIN}"
    before = world.loopback.accepted
    path = marker()
    result, _ = call(
        egress_node, fn, "connect", target=f"{host}:{world.twin.port}", sni=host, path=path
    )
    assert world.loopback.accepted == before
    assert world.dns.queried(host) >= 1  # the proxy did resolve it (through the test DNS)
    assert result.get("http_status") == 200, result
    assert result["reply"]["origin"] == "twin" and world.twin.log.saw(path)


def test_cannot_tunnel_with_a_mismatched_sni(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """CONNECT to the granted host, then a TLS ClientHello naming another: cut, audited."""
    path = marker()
    other = f"other.{DOMAIN}"
    result, request_id = call(egress_node, fn, "connect", target=f"{API}:443", sni=other, path=path)
    assert result.get("http_status") is None, result
    assert not world.origin.log.saw(path)
    assert not any(s.sni == other for s in world.origin.log.requests)
    assert_denied(egress_node, fn, request_id, f"{API}:443")


def test_cannot_tunnel_without_sni(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """CONNECT to the granted host:443, then a ClientHello with no SNI: cut, audited."""
    path = marker()
    result, request_id = call(egress_node, fn, "connect", target=f"{API}:443", path=path)
    assert result.get("http_status") is None, result
    assert not world.origin.log.saw(path)
    assert_denied(egress_node, fn, request_id, f"{API}:443")


def test_cannot_connect_with_a_host_header_naming_another_server(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """CONNECT to a granted host with a Host header naming an ungranted one is refused."""
    path = marker()
    result, _ = call(
        egress_node,
        fn,
        "connect",
        target=f"{API}:443",
        connect_host=f"other.{DOMAIN}:443",
        sni=API,
        path=path,
    )
    assert_refused(result)
    assert not world.origin.log.saw(path)


def test_cannot_send_a_host_header_differing_from_the_target(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """Absolute-form GET to a granted host with another server's Host header: refused."""
    path = marker()
    url = f"http://{API}:{world.plain.port}{path}"
    result, request_id = call(
        egress_node, fn, "plain", url=url, host=f"other.{DOMAIN}:{world.plain.port}"
    )
    assert result["status"] != 200, result
    assert not world.plain.log.saw(path)
    record = assert_denied(egress_node, fn, request_id, f"{API}:{world.plain.port}")
    assert "Host" in record["detail"]["reason"], record


def test_cannot_forward_plain_http_to_an_ungranted_host(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """Absolute-form GET to another name of the origin, on the granted port: refused."""
    path = marker()
    target = f"other.{DOMAIN}:{world.plain.port}"
    result, request_id = call(egress_node, fn, "plain", url=f"http://{target}{path}")
    assert result["status"] != 200, result
    assert not world.plain.log.saw(path)
    assert_denied(egress_node, fn, request_id, target)


# --- the channel: identity, raw sockets, no grant -------------------------------------


FORGED = "DONJON-EGRESS/1 0123456789abcdef0123456789abcdef\n"


@pytest.mark.parametrize(
    ("via", "preamble"),
    [("socket", FORGED), ("socket", ""), ("relay", FORGED)],
    ids=["socket-forged-token", "socket-no-token", "relay-second-token"],
)
def test_cannot_name_a_call_of_its_own_choosing(
    egress_node: LiveNode, world: World, fn: str, via: str, preamble: str
) -> None:
    """The proxy socket with a forged token or none, or a second token line: nothing goes out."""
    path = marker()
    where = {"unix": SOCKET} if via == "socket" else {}
    result, _ = call(
        egress_node,
        fn,
        "connect",
        **where,
        preamble=preamble,
        target=f"{API}:443",
        sni=API,
        path=path,
    )
    assert_refused(result)
    assert not world.origin.log.saw(path)
    if result["status"] is None:  # the socket is not even reachable from the worker
        assert via == "socket", result
        return
    refused = [
        r
        for r in all_records(egress_node, "egress.connect")
        if r["outcome"] == "denied" and r["detail"].get("function") == fn
    ]
    assert refused, "the refusal is not audited"


def test_raw_sockets_still_reach_nothing(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """A granted function's own sockets reach no host address; no raw or packet sockets."""
    before = world.origin.accepted
    result, _ = call(egress_node, fn, "direct", host=world.address, port=443)
    assert result["connected"] is False, result
    assert world.origin.accepted == before
    raw, _ = call(egress_node, fn, "raw")
    assert raw["packet"] != "opened" and raw["raw_ip"] != "opened", raw
    assert raw["net_dev"] == ["lo"], raw


@pytest.fixture(params=["cold", "warm"])
def ungranted(
    request: pytest.FixtureRequest,
    egress_node: LiveNode,
    world: World,
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The same attacker with no grant at all, cold or warm."""
    warm = request.param == "warm"
    name = "eg-none-warm" if warm else "eg-none"
    root = tmp_path_factory.mktemp("eg-none")
    src = function_source(
        world, root, "eg-attack", name, isolation="warm" if warm else "invocation", egress=[]
    )
    deploy(egress_node, src)
    if warm:
        prime(egress_node, name)
    return name


def test_function_without_a_grant_has_no_way_out(
    egress_node: LiveNode,
    world: World,
    ungranted: str,
) -> None:
    """No grant: no proxy variables, no proxy socket, and nothing answers on the relay port."""
    env, _ = call(egress_node, ungranted, "env")
    assert env == {"proxy": {}, "socket_dir": False}
    before = world.origin.accepted
    relay, _ = call(egress_node, ungranted, "direct", host="127.0.0.1", port=3128)
    assert relay["connected"] is False
    fetched, _ = call(egress_node, ungranted, "urllib", url=f"https://{API}/")
    assert fetched["status"] is None, fetched
    tunnel, _ = call(egress_node, ungranted, "connect", unix=SOCKET, target=f"{API}:443")
    assert_refused(tunnel)
    assert world.origin.accepted == before


# --- caps and audit volume ------------------------------------------------------------


def test_refused_attempts_in_a_loop_write_few_records(
    egress_node: LiveNode,
    fn: str,
) -> None:
    """200 refused attempts in one call: a bounded number of records, counting all 200."""
    target = f"other.{DOMAIN}:443"
    result, request_id = call(egress_node, fn, "repeat", n=200, target=target)
    assert result["statuses"] != ["200"], result

    def total(records: list[dict[str, Any]]) -> int:
        return sum(int(r["detail"].get("count", 1)) for r in records)

    records = egress_records(egress_node, request_id, want=lambda rs: total(rs) >= 200)
    assert total(records) == 200, records
    assert len(records) <= 5, records


def test_connections_per_call_are_capped(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """More tunnels than DONJON_EGRESS_MAX_CONNECTIONS in one call: the extra ones fail."""
    path = marker()
    result, _ = call(
        egress_node, fn, "many", n=MAX_CONNECTIONS + 3, target=f"{API}:443", sni=API, path=path
    )
    answered = [s for s in result["statuses"] if s == [200, 200]]
    assert len(answered) == MAX_CONNECTIONS, result


def test_bytes_per_call_are_capped(
    egress_node: LiveNode,
    fn: str,
) -> None:
    """A download larger than DONJON_EGRESS_MAX_BYTES is cut short."""
    result, _ = call(
        egress_node, fn, "connect", target=f"{API}:443", sni=API, path=f"/big/{BIG}", limit=BIG
    )
    assert result.get("http_status") == 200, result
    assert result["bytes"] < MAX_BYTES, result


def test_a_connection_is_cut_at_its_time_cap(egress_node: LiveNode, world: World, fn: str) -> None:
    """A tunnel held open inside a call is closed at DONJON_EGRESS_MAX_CONNECTION_S."""
    path = f"/hold/{uuid.uuid4().hex}"
    give_up_s = MAX_CONNECTION_S + 18  # well past the cap; the call's own timeout is 30 s
    result, _ = call(
        egress_node, fn, "outwait", target=f"{API}:443", sni=API, path=path, give_up_s=give_up_s
    )
    assert result.get("http_status") == 200, result
    assert result["closed"] is True, result


def test_a_connection_does_not_outlive_its_call(
    egress_node: LiveNode,
    world: World,
    fn: str,
) -> None:
    """A tunnel the function keeps open past its call's end is closed by the platform."""
    path = f"/hold/{uuid.uuid4().hex}"
    result, _ = call(egress_node, fn, "connect", target=f"{API}:443", sni=API, path=path, keep=True)
    assert result.get("http_status") == 200, result
    for _ in range(120):  # the origin notices a closed peer within a second or so
        if path in world.origin.log.released:
            break
        time.sleep(0.5)
    assert path in world.origin.log.released


def test_a_refused_attempt_raises_a_policy_alert(
    egress_node: LiveNode,
    fn: str,
) -> None:
    """egress_attempts defaults to alert: a refused attempt is a policy.alert record."""
    _, request_id = call(egress_node, fn, "connect", target=f"other.{DOMAIN}:443")
    alerts: list[dict[str, Any]] = []
    for _ in range(60):
        alerts = [
            r
            for r in all_records(egress_node, "policy.alert")
            if r["detail"].get("request_id") == request_id
        ]
        if alerts:
            break
        time.sleep(0.5)
    assert alerts and alerts[0]["detail"]["policy"] == "egress_attempts", alerts


@pytest.mark.parametrize("isolation", ["invocation", "warm"])
def test_a_refused_attempt_ends_the_call_under_block(
    egress_node: LiveNode,
    world: World,
    tmp_path_factory: pytest.TempPathFactory,
    isolation: str,
) -> None:
    """egress_attempts: block: a refused attempt ends the call (403) with a policy.block record."""
    name = f"eg-block-{isolation}"
    root = tmp_path_factory.mktemp("eg-block")
    extra = "policies: {egress_attempts: block}\n"
    deploy(
        egress_node,
        function_source(world, root, "eg-attack", name, isolation=isolation, extra=extra),
    )
    r = egress_node.invoke(name, {"op": "connect", "target": f"other.{DOMAIN}:443"})
    assert r.status_code == 403, r.text
    assert "PolicyBlocked" in r.text, r.text
    request_id = r.headers["x-request-id"]
    blocks: list[dict[str, Any]] = []
    for _ in range(60):
        blocks = [
            b
            for b in all_records(egress_node, "policy.block")
            if b["detail"].get("request_id") == request_id
        ]
        if blocks:
            break
        time.sleep(0.5)
    assert blocks and blocks[0]["detail"]["policy"] == "egress_attempts", blocks
    # The function keeps serving: the next call, granted, gets through.
    ok, _ = call(egress_node, name, "urllib", url=f"https://{API}{marker()}")
    assert ok["status"] == 200, ok


def _sandboxes(node: LiveNode, name: str) -> dict[int, int]:
    """{bubblewrap pid: supervisor pid} of the running sandboxes of `name`, from the host."""
    digest = bundle_dir(node, name).name.encode()
    out = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if cmdline.startswith(b"bwrap\0") and digest in cmdline:
                children = Path(f"/proc/{entry}/task/{entry}/children").read_text().split()
                if children:
                    out[int(entry)] = int(children[0])
    return out


def test_replying_before_the_block_kill_keeps_no_worker(
    egress_node: LiveNode, world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A warm worker whose reply to a blocked call beats the supervisor's kill (a busy
    machine; made sure here by stopping the supervisor): the call is still 403, its
    sandbox is gone before the answer, and the next call is served by a fresh one."""
    name = "eg-block-race"
    root = tmp_path_factory.mktemp("eg-block-race")
    extra = "policies: {egress_attempts: block}\n"
    deploy(
        egress_node,
        function_source(world, root, "eg-attack", name, isolation="warm", extra=extra),
    )
    prime(egress_node, name)
    ((bwrap, supervisor),) = _sandboxes(egress_node, name).items()
    os.kill(supervisor, signal.SIGSTOP)  # its "end" waits unread: the reply comes first
    try:
        r = egress_node.invoke(name, {"op": "connect", "target": f"other.{DOMAIN}:443"})
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor, signal.SIGCONT)
    assert r.status_code == 403, r.text
    assert "PolicyBlocked" in r.text, r.text
    assert bwrap not in _sandboxes(egress_node, name)
    ok, _ = call(egress_node, name, "urllib", url=f"https://{API}{marker()}")
    assert ok["status"] == 200, ok


# --- the deploy gate agrees with the proxy --------------------------------------------


def _archive(root: Path, name: str, grants: list[str]) -> bytes:
    """A bundle packed as is: the client's own manifest check is not the one under test."""
    root.mkdir(parents=True)
    (root / "main.py").write_text("def handler(event, context):\n    return {}\n")
    listed = ", ".join(f'"{g}"' for g in grants)
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\npermissions:\n  egress: [{listed}]\n"
    )
    return pack(root)


@pytest.mark.parametrize(
    "grant",
    [
        "169.254.169.254:80",
        "[fd00:ec2::254]:80",
        "127.0.0.1:443",
        "[::1]:443",
        "[::ffff:127.0.0.1]:443",
        "10.1.2.3:443",
        "100.64.0.1:443",
        "0.0.0.0:443",
        "metadata.google.internal:80",
        "localhost:80",
    ],
)
def test_deploy_refuses_a_grant_the_proxy_would_refuse(
    egress_node: LiveNode, tmp_path: Path, grant: str
) -> None:
    """A grant the proxy would never honour fails the deploy with the reason; nothing changes."""
    name = f"eg-refused-{uuid.uuid4().hex[:8]}"
    archive = _archive(tmp_path / "fn", name, [f"api.{DOMAIN}:443", grant])
    with egress_node.client() as c:
        r = c.post("/v1/functions", content=archive, headers={"content-type": "application/gzip"})
        assert r.status_code == 422, r.text
        assert grant in r.text, r.text
        assert c.get(f"/v1/functions/{name}").status_code == 404


def test_a_literal_grant_reaches_that_address_in_that_notation_only(
    egress_node: LiveNode, world: World, tmp_path: Path
) -> None:
    """`127.0.0.2:PORT` granted (an allowed network): it works; its decimal form does not."""
    target = f"{world.address}:{world.side.port}"
    name = "eg-literal"
    deploy(egress_node, function_source(world, tmp_path, "eg-attack", name, egress=[target]))
    path = marker()
    # No SNI: on any port, a TLS tunnel to a literal may name no other server.
    result, _ = call(egress_node, name, "connect", target=target, path=path)
    assert result.get("http_status") == 200, result
    assert result["reply"]["origin"] == "side" and world.side.log.saw(path)
    decimal = _literals(world.address)["decimal"]
    other = marker()
    refused, request_id = call(
        egress_node, name, "connect", target=f"{decimal}:{world.side.port}", path=other
    )
    assert_refused(refused)
    assert not world.side.log.saw(other)
    assert_denied(egress_node, name, request_id, f"{decimal}:{world.side.port}")


def test_cannot_smuggle_a_second_request_to_another_host(
    egress_node: LiveNode, world: World, fn: str
) -> None:
    """A request to another host pipelined after a granted one never reaches the origin."""
    port = world.plain.port
    first, second = marker(), marker()
    other = f"other.{DOMAIN}:{port}"
    result, _ = call(
        egress_node,
        fn,
        "plain",
        url=f"http://{API}:{port}{first}",
        then=[[f"http://{other}{second}", other]],
    )
    assert result["status"] == 200, result
    assert world.plain.log.saw(first)
    assert not world.plain.log.saw(second)


@pytest.mark.parametrize(
    "url",
    [
        "http://{api}:{port}@{other}:{port}{path}",  # userinfo naming the granted host
        "http://{other}:{port}#@{api}:{port}{path}",  # a fragment hiding the real authority
        "http://{other}:{port}\\@{api}:{port}{path}",  # a backslash some parsers split on
    ],
)
def test_cannot_confuse_the_proxys_url_parser(
    egress_node: LiveNode, world: World, fn: str, url: str
) -> None:
    """URLs that read as the granted host to a careless parser reach only the granted host."""
    path = marker()
    port = world.plain.port
    full = url.format(api=API, other=f"other.{DOMAIN}", port=port, path=path)
    result, _ = call(egress_node, fn, "plain", url=full, host=f"{API}:{port}")
    hits = [s for s in world.plain.log.requests if path in s.path]
    assert all(s.host == f"{API}:{port}" for s in hits), (hits, result)
    assert result["status"] != 200 or result["reply"]["host"] == f"{API}:{port}", result
