"""The world of the egress attacks (tests/security/test_attack_egress.py) and bench
(bench/bench_egress.py): a node whose proxy resolves through a test DNS server and may
dial the test origin's address (and nothing else on loopback), and the granted functions.

The origin stands in for the internet: `api.donjon.test` and the `*.s3.donjon.test` names
resolve to it (127.0.0.2, or the next free 127.0.0.x when another run holds its port 443).
Servers on 127.0.0.1 stand in for what must never be reached (the node's own loopback).
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from donjon.bundle import build_bundle
from egress_world import CERT_NAMES, DOMAIN, DnsServer, Origin, TestCA, bind_free
from harness import FUNCTIONS, LiveNode, free_port

#: The functions' sources, in tests/functions without a donjon.yaml (so the session's node
#: does not deploy them): their manifest, with grants naming this world's ports, is
#: written for each deploy by `function_source`.
SOURCES = FUNCTIONS
#: Settings of the test node: small caps, so the tests of the caps stay cheap.
MAX_CONNECTIONS = 4
MAX_BYTES = 1 << 20
MAX_CONNECTION_S = 6
BIG = 4 << 20


@dataclass
class World:
    """The test internet and the names that reach it."""

    ca: TestCA
    address: str  # the origin's address: the one network the node allows
    origin: Origin  # HTTPS on address:443 (granted through api.donjon.test:443)
    side: Origin  # HTTPS on address:another port (never granted)
    plain: Origin  # plain HTTP on address (granted: api.donjon.test:<port>)
    twin: Origin  # HTTPS on address:P, where P is also...
    loopback: Origin  # ...the port of this HTTPS server on 127.0.0.1 (must never be reached)
    dns: DnsServer

    @property
    def grants(self) -> list[str]:
        p = self.twin.port
        return [
            f"api.{DOMAIN}:443",
            f"*.s3.{DOMAIN}:443",
            f"api.{DOMAIN}:{self.plain.port}",
            f"loopback.{DOMAIN}:{p}",
            f"mapped.{DOMAIN}:{p}",
            f"nat64.{DOMAIN}:{p}",
            f"*.rebind.{DOMAIN}:{p}",
            f"metadata.{DOMAIN}:80",
        ]

    def close(self) -> None:
        for server in (self.origin, self.side, self.plain, self.twin, self.loopback):
            server.close()
        self.dns.close()


def _origin_address() -> str:
    for last in range(2, 30):
        address = f"127.0.0.{last}"
        if bind_free(address, 443):
            return address
    raise RuntimeError("port 443 is taken on 127.0.0.2 to 127.0.0.29")


def _twin_port(address: str) -> int:
    for _ in range(50):
        port = free_port()
        if bind_free(address, port):
            return port
    raise RuntimeError("no port free on both 127.0.0.1 and the origin's address")


@contextlib.contextmanager
def build_world(work: Path) -> Iterator[World]:
    """Origins, a CA and a DNS server, up until the block ends."""
    ca = TestCA()
    cert = ca.issue(
        [*CERT_NAMES, f"loopback.{DOMAIN}", f"mapped.{DOMAIN}", f"nat64.{DOMAIN}"], work
    )
    address = _origin_address()
    twin_port = _twin_port(address)
    zone = {f"{n}": [address] for n in CERT_NAMES}
    zone[f"loopback.{DOMAIN}"] = ["127.0.0.1"]
    zone[f"mapped.{DOMAIN}"] = ["::ffff:127.0.0.1"]
    zone[f"nat64.{DOMAIN}"] = ["64:ff9b::7f00:1"]
    zone[f"metadata.{DOMAIN}"] = ["169.254.169.254"]
    built = World(
        ca=ca,
        address=address,
        origin=Origin(address, 443, cert, "origin"),
        side=Origin(address, 0, cert, "side"),
        plain=Origin(address, 0, None, "plain"),
        twin=Origin(address, twin_port, cert, "twin"),
        loopback=Origin("127.0.0.1", twin_port, cert, "loopback"),
        dns=DnsServer(zone, rebind={f"rebind.{DOMAIN}": (address, "127.0.0.1")}),
    )
    try:
        yield built
    finally:
        built.close()


def node_settings(world: World) -> dict[str, str]:
    """A node that resolves through the test DNS and may dial only the origin's address."""
    return {
        "DONJON_EGRESS_DNS": world.dns.address,
        "DONJON_EGRESS_ALLOW_NETWORKS": f"{world.address}/32",
        "DONJON_EGRESS_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "DONJON_EGRESS_MAX_BYTES": str(MAX_BYTES),
        "DONJON_EGRESS_MAX_CONNECTION_S": str(MAX_CONNECTION_S),
    }


_SALT = itertools.count(1)


def function_source(
    world: World,
    root: Path,
    source: str,
    name: str,
    *,
    isolation: str = "invocation",
    egress: list[str] | None = None,
    extra: str = "",
) -> Path:
    """A copy of egress_fns/`source` named `name`, trusting the test CA, with these grants."""
    target = root / f"{name}-{next(_SALT)}"
    shutil.copytree(SOURCES / source, target)
    (target / "ca.pem").write_bytes(world.ca.pem)
    grants = world.grants if egress is None else egress
    lines = [
        f"name: {name}",
        "handler: main.handler",
        "memory_mb: 128",
        "timeout_s: 30",
        f"isolation: {isolation}",
        "limits: {concurrency: 2}",
    ]
    if grants:
        lines.append("permissions:")
        lines.append("  egress: [" + ", ".join(f'"{g}"' for g in grants) + "]")
    (target / "donjon.yaml").write_text("\n".join(lines) + "\n" + extra)
    # A new digest every time: each deploy is a new version, with a fresh sandbox.
    with (target / "main.py").open("a") as f:
        f.write(f"\n# build {target.name}\n")
    return target


def deploy(node: LiveNode, directory: Path) -> None:
    """Deploy `directory` with the admin's unsafe_skip_scan: these functions send requests
    wherever the event says (server-side request forgery by design, DJ-PY-011) and turn
    hostname checks off to choose their SNI (DJ-PY-006), which the deploy gate refuses.
    They test the proxy, not the gate (as harness.GATE_REFUSED_PROBES do the sandbox)."""
    _, archive = build_bundle(directory)
    with node.client() as c:
        r = c.post(
            "/v1/functions",
            content=archive,
            headers={"content-type": "application/gzip"},
            params={"unsafe_skip_scan": "true"},
        )
    if r.status_code != 201:
        raise AssertionError(f"deploy of {directory} failed: {r.status_code} {r.text}")


def fresh_deploy(node: LiveNode, world: World, root: Path, source: str, name: str) -> str:
    """Deploy a new version of `name` (a fresh sandbox: its next call is a cold start)."""
    deploy(node, function_source(world, root, source, name))
    return name


def prime(node: LiveNode, name: str) -> None:
    """One call, so that the next one finds a worker that has already served."""
    r = node.invoke(name, {"op": "env"})
    assert r.status_code == 200, r.text


def egress_records(
    node: LiveNode, request_id: str, *, want: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The `egress.connect` records of one call, once `want` says they are all there.

    The proxy writes the first record of each kind at once and the counts at call end;
    this waits (bounded) for them rather than guessing how long that takes.
    """
    found: list[dict[str, Any]] = []
    for _ in range(60):
        with node.client() as c:
            r = c.get("/v1/audit", params={"n": 5000})
        assert r.status_code == 200, r.text
        found = [
            rec
            for rec in r.json()
            if rec["action"] == "egress.connect" and rec["detail"].get("request_id") == request_id
        ]
        if want(found):
            return found
        time.sleep(0.5)
    return found


def all_records(node: LiveNode, action_prefix: str) -> list[dict[str, Any]]:
    with node.client() as c:
        r = c.get("/v1/audit", params={"n": 5000})
    assert r.status_code == 200, r.text
    return [rec for rec in r.json() if str(rec["action"]).startswith(action_prefix)]
