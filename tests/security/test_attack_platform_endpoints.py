"""Egress to the cloud platform's own endpoints for a VM, beside the metadata service.

The proxy refused 169.254.169.254, fd00:ec2::254, 169.254.170.2 and 100.100.100.200
always, even inside a network the admin opened. Other endpoints that serve a cloud
host's credentials or platform state were judged like any address:

- Azure's WireServer, 168.63.129.16 (ports 80 and 32526: the VM agent's goal state,
  extension settings), is a public address, so any granted name whose DNS the
  function's author controls could be pointed there and dialled from the node (waagent's
  firewall lets only root reach it, and the node runs as root);
- EKS Pod Identity's agent (169.254.170.23, fd00:ec2::23), Google's IPv6 metadata server
  (fd20:ce::254) and OpenStack's (fe80::a9fe:a9fe) were dialled once an admin opened a
  network holding them (an internal IPv6 range, say); until 2026-12-07 so were Tencent
  Cloud's metadata service (169.254.0.23, metadata.tencentyun.com: an instance role's
  credentials), Scaleway's (169.254.42.42, fd00:42::42) and the IPv6 addresses of
  Akamai's (fd00:a9fe:a9fe::1) and Alibaba's (fd00:100::100:200).

Before the fix: each literal grant below deployed (201), and a granted name resolving
to fd00:ec2::23 was dialled (the proxy answered 502 "could not connect" here, where
nothing listens; it was not refused).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from donjon.bundle import build_bundle
from donjon.manifest.model import ManifestError
from egress_world import DnsServer
from harness import LiveNode, start_node

DOMAIN = "platform.test"
#: Networks the node's admin opened, each holding a platform endpoint.
OPENED = (
    "fd00:ec2::/32,fd20:ce::/64,169.254.170.0/24,fe80::/64,"
    "169.254.0.0/24,169.254.42.0/24,fd00:42::/64,fd00:a9fe:a9fe::/64,fd00:100::/64"
)

_HANDLER = """\
import urllib.error
import urllib.request


def handler(event, context):
    try:
        with urllib.request.urlopen(event["url"], timeout=20) as r:
            return {"status": r.status, "body": r.read(300).decode("latin-1")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read(300).decode("latin-1")}
    except OSError as e:
        return {"status": 0, "body": repr(e)[:300]}
"""


@pytest.fixture(scope="module")
def dns() -> Iterator[DnsServer]:
    """A DNS server that points the author's names at platform endpoints."""
    server = DnsServer({f"podid.{DOMAIN}": ["fd00:ec2::23"]}, {})
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def platform_node(dns: DnsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = start_node(
        tmp_path_factory.mktemp("platform-node"),
        {"DONJON_EGRESS_DNS": dns.address, "DONJON_EGRESS_ALLOW_NETWORKS": OPENED},
    )
    try:
        yield live
    finally:
        live.stop()


def _deploy(node: LiveNode, root: Path, name: str, grants: list[str]) -> tuple[int, str]:
    """Deploy a function that fetches the URL its event names, with `grants`."""
    (root / "main.py").write_text(_HANDLER)
    egress = ", ".join(f'"{g}"' for g in grants)
    (root / "donjon.yaml").write_text(
        f"name: {name}\nhandler: main.handler\nmemory_mb: 64\ntimeout_s: 30\n"
        f"permissions:\n  egress: [{egress}]\n"
    )
    _, archive = build_bundle(root)
    with node.client() as c:
        r = c.post(
            "/v1/functions",
            content=archive,
            headers={"content-type": "application/gzip"},
            params={"unsafe_skip_scan": "true"},  # an SSRF by design (DJ-PY-011)
        )
    return r.status_code, r.text


def _denial(node: LiveNode, request_id: str) -> dict[str, Any] | None:
    """The call's refused `egress.connect` record, once written (bounded wait)."""
    for _ in range(40):
        with node.client() as c:
            r = c.get("/v1/audit", params={"n": 2000})
        assert r.status_code == 200, r.text
        for rec in r.json():
            detail = rec["detail"]
            if rec["action"] == "egress.connect" and detail.get("request_id") == request_id:
                return dict(rec)
        time.sleep(0.25)
    return None


@pytest.mark.parametrize(
    "grant",
    [
        "168.63.129.16:80",
        "168.63.129.16:32526",
        "169.254.170.23:80",
        "[fd00:ec2::23]:80",
        "[fd20:ce::254]:80",
        "[fe80::a9fe:a9fe]:80",
        "169.254.0.23:80",  # Tencent Cloud (metadata.tencentyun.com)
        "169.254.42.42:80",  # Scaleway
        "[fd00:42::42]:80",  # Scaleway over IPv6
        "[fd00:a9fe:a9fe::1]:80",  # Akamai (Linode) over IPv6
        "[fd00:100::100:200]:80",  # Alibaba Cloud over IPv6
    ],
)
def test_deploy_refuses_a_grant_of_a_platform_endpoint(
    platform_node: LiveNode, tmp_path: Path, grant: str
) -> None:
    """A literal grant of a platform endpoint is refused at deploy, even inside an opened
    network (168.63.129.16 is public: no network need be opened for it)."""
    status, text = _deploy(platform_node, tmp_path, "platform-literal", [grant])
    assert status == 422, text
    assert "cloud metadata address" in text, text


def test_cannot_reach_a_platform_endpoint_through_a_granted_name(
    platform_node: LiveNode, tmp_path: Path
) -> None:
    """A granted name whose DNS points at EKS Pod Identity's IPv6 agent, inside a network
    the admin opened, is refused by the proxy before any dial, and audited."""
    node = platform_node
    status, text = _deploy(node, tmp_path, "platform-name", [f"podid.{DOMAIN}:80"])
    assert status == 201, text
    r = node.invoke("platform-name", {"url": f"http://podid.{DOMAIN}/v1/credentials"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == 403, result
    assert "cloud metadata address" in result["body"], result
    record = _denial(node, r.headers["x-request-id"])
    assert record is not None
    assert record["detail"]["decision"] == "denied", record
    assert "cloud metadata address" in record["detail"]["reason"], record


def test_a_manifest_cannot_grant_a_platform_metadata_name(
    platform_node: LiveNode, tmp_path: Path
) -> None:
    """Tencent Cloud's metadata name is refused like Google's, whatever it resolves to: the
    manifest does not load (the bundle is never built, nothing reaches the node)."""
    with pytest.raises(ManifestError, match="cloud metadata service"):
        _deploy(platform_node, tmp_path, "platform-named", ["metadata.tencentyun.com:80"])
