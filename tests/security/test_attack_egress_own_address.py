"""Attack: a granted name pointed at the node's own address, to reach its local services.

A host with a public address on its interface (a VPS, bare metal) reaches that
address over `lo`: a service bound to 0.0.0.0 and firewalled from the outside
(a database, Redis, an admin port) answers the host itself, and the egress
proxy runs on the host. A function granted a name whose DNS its author controls
points it at the node's own public address; the address is globally routable,
so the range check alone lets the proxy dial the node's own services.

The node's interfaces here are a network namespace of the test's own (`unshare
--net`, as root): `lo` up and a public address (1.2.3.4) added to it, as a
host's NIC address is routed locally. The real proxy (`ProxyRig`) runs there,
with a service listening on 0.0.0.0 that counts what it accepts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

_CHILD = textwrap.dedent(
    """
    import json, socket, subprocess, sys, threading
    from pathlib import Path

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "1.2.3.4/32", "dev", "lo"], check=True)
    subprocess.run(["ip", "-6", "addr", "add", "2a00:1450::1234/128", "dev", "lo"], check=True)

    from egress_support import raw_request, rig

    accepted = []
    service = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    port = service.getsockname()[1]

    def serve():
        while True:
            conn, peer = service.accept()
            accepted.append(peer[0])
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nsecret")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    out = {}
    with rig(Path(sys.argv[1])) as r:
        r.resolver.table["own.donjon.test"] = ["1.2.3.4"]
        r.resolver.table["own6.donjon.test"] = ["2a00:1450::1234"]
        r.resolver.table["ownmapped.donjon.test"] = ["::ffff:1.2.3.4"]
        for name in ("own", "own6", "ownmapped"):
            host = f"{name}.donjon.test"
            sandbox = r.open([f"{host}:{port}"])
            relay = r.relay(sandbox, r.begin(sandbox, f"req-{name}"))
            answer = raw_request(
                relay,
                f"GET http://{host}:{port}/ HTTP/1.1\\r\\nHost: {host}:{port}\\r\\n\\r\\n".encode(),
            )
            out[name] = answer.decode("latin-1")
        out["records"] = [rec["detail"] for rec in r.records()]

    import asyncio
    from donjon.triggers.source_address import SourceAddressRefused, allowed_addresses

    async def source(host):
        try:
            return [str(a) for a in await allowed_addresses(host, port, (), "the trigger")]
        except SourceAddressRefused as e:
            return e.message

    out["source"] = [asyncio.run(source(h)) for h in ("1.2.3.4", "[2a00:1450::1234]")]

    # An admin opens an internal network for its services; the node has an address in it.
    import ipaddress
    from donjon.egress.addresses import own_address_refusal, parse_networks

    subprocess.run(["ip", "addr", "add", "10.9.8.7/32", "dev", "lo"], check=True)
    cases = [
        ("10.9.8.7", "10.0.0.0/8"),
        ("::ffff:10.9.8.7", "10.0.0.0/8"),
        ("1.2.3.4", "1.2.3.0/24"),
        ("2a00:1450::1234", "2a00:1450::/32"),
        ("10.9.8.7", "10.9.8.7/32"),
        ("2a00:1450::1234", "2a00:1450::1234/128"),
        ("127.0.0.5", "127.0.0.0/8"),
    ]
    out["opened"] = {
        f"{a} in {n}": own_address_refusal(ipaddress.ip_address(a), parse_networks(n))
        for a, n in cases
    }

    async def broad_source():
        try:
            wide = parse_networks("10.0.0.0/8")
            return [str(a) for a in await allowed_addresses("10.9.8.7", port, wide, "the trigger")]
        except SourceAddressRefused as e:
            return e.message

    out["broad_source"] = asyncio.run(broad_source())
    out["accepted"] = accepted
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def attempts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip to give a network namespace a public address")
    tmp = tmp_path_factory.mktemp("own-address")
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    done = subprocess.run(
        [unshare, "--net", sys.executable, "-c", _CHILD, str(tmp)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=TESTS,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("name", ["own", "own6", "ownmapped"])
def test_granted_name_pointed_at_the_nodes_own_address_is_refused(
    attempts: dict[str, object], name: str
) -> None:
    answer = str(attempts[name])
    assert answer.startswith("HTTP/1.1 403"), answer
    assert "secret" not in answer
    assert "this host" in answer


def test_nodes_own_service_saw_nothing_and_the_refusals_are_audited(
    attempts: dict[str, object],
) -> None:
    assert attempts["accepted"] == []
    records = attempts["records"]
    assert isinstance(records, list)
    denied = {r["request_id"]: r for r in records if r["decision"] == "denied"}
    assert set(denied) == {"req-own", "req-own6", "req-ownmapped"}
    for record in denied.values():
        assert "an address of this host" in record["reason"]


def test_event_source_cannot_dial_the_nodes_own_address(attempts: dict[str, object]) -> None:
    """A trigger's DSN or endpoint (from a secret a developer writes) naming the node's
    own public address is refused like a function's egress: the node dials it itself."""
    answers = attempts["source"]
    assert isinstance(answers, list) and len(answers) == 2
    for answer in answers:
        assert "an address of this host" in str(answer), answer
    assert attempts["accepted"] == []


@pytest.mark.parametrize(
    "case",
    [
        "10.9.8.7 in 10.0.0.0/8",
        "::ffff:10.9.8.7 in 10.0.0.0/8",
        "1.2.3.4 in 1.2.3.0/24",
        "2a00:1450::1234 in 2a00:1450::/32",
    ],
)
def test_a_broad_allowed_network_does_not_open_the_nodes_own_address_in_it(
    attempts: dict[str, object], case: str
) -> None:
    """DONJON_EGRESS_ALLOW_NETWORKS=10.0.0.0/8 opens the internal services in it, not the
    node's own 10.9.8.7 there (its services bound to every interface). Before, any
    allowed network holding the address opened it (helper-159's open finding)."""
    opened = attempts["opened"]
    assert isinstance(opened, dict)
    assert "an address of this host" in str(opened[case])


@pytest.mark.parametrize(
    "case",
    [
        "10.9.8.7 in 10.9.8.7/32",
        "2a00:1450::1234 in 2a00:1450::1234/128",
        "127.0.0.5 in 127.0.0.0/8",
    ],
)
def test_the_nodes_own_address_named_alone_or_loopback_opened_is_open(
    attempts: dict[str, object], case: str
) -> None:
    opened = attempts["opened"]
    assert isinstance(opened, dict)
    assert opened[case] is None


def test_an_event_source_in_a_broad_network_cannot_dial_the_nodes_own_address_there(
    attempts: dict[str, object],
) -> None:
    assert "an address of this host" in str(attempts["broad_source"])
