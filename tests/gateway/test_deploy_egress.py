"""Egress grants at deploy on a node that opens an internal network
(DONJON_EGRESS_ALLOW_NETWORKS): the gate and the scan judge them as the proxy does."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import pytest

from harness import LiveNode, start_node

CODE = b"def handler(event, context):\n    return 1\n"


def _archive(name: str, grants: str) -> bytes:
    manifest = f"name: {name}\nhandler: main.handler\npermissions: {{egress: [{grants}]}}\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, data in (("donjon.yaml", manifest.encode()), ("main.py", CODE)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def open_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A node whose admin opened 127.0.0.2/32 and 169.254.0.0/16 to egress."""
    live = start_node(
        tmp_path_factory.mktemp("egress-open"),
        {"DONJON_EGRESS_ALLOW_NETWORKS": "127.0.0.2/32, 169.254.0.0/16"},
    )
    try:
        yield live
    finally:
        live.stop()


def test_a_grant_inside_an_allowed_network_deploys(open_node: LiveNode) -> None:
    """127.0.0.2:8443 passes the gate and the deploy scan (DJ-MF-002) on this node."""
    with open_node.client() as c:
        r = c.post("/v1/functions", content=_archive("internal-api", '"127.0.0.2:8443"'))
        assert r.status_code in (200, 201), r.text
        assert not any("egress" in w for w in r.json().get("warnings", []))
        assert c.get("/v1/functions/internal-api").status_code == 200


def test_a_grant_outside_the_allowed_networks_is_refused(open_node: LiveNode) -> None:
    """127.0.0.3 is loopback outside 127.0.0.2/32: 422 naming the grant and why."""
    with open_node.client() as c:
        r = c.post("/v1/functions", content=_archive("next-door", '"127.0.0.3:8443"'))
        assert r.status_code == 422, r.text
        assert "127.0.0.3:8443" in r.text and "loopback" in r.text
        assert c.get("/v1/functions/next-door").status_code == 404


def test_metadata_stays_refused_inside_an_allowed_network(open_node: LiveNode) -> None:
    """169.254.169.254 is refused although 169.254.0.0/16 is open, even for an admin."""
    with open_node.client() as c:
        r = c.post(
            "/v1/functions",
            content=_archive("imds", '"169.254.169.254:80"'),
            params={"unsafe_allow_broad": "true"},
        )
        assert r.status_code == 422, r.text
        assert "cloud metadata address" in r.text
        assert c.get("/v1/functions/imds").status_code == 404
