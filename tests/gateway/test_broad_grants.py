"""Broad permission grants fail the deploy unless an admin asks for them (--unsafe-allow-broad);
an egress grant the egress proxy would refuse (cloud metadata) fails it whoever asks."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from harness import LiveNode, run_cli

CODE = "def handler(event, context):\n    return 1\n"
METADATA = 'permissions: {egress: ["169.254.169.254:80"]}\n'
#: Honoured by the proxy, but every site under .com: broad.
TLD_WILDCARD = 'permissions: {egress: ["*.com:443"]}\n'


def _bundle(root: Path, name: str, grants: str = METADATA) -> Path:
    root.mkdir(parents=True)
    (root / "donjon.yaml").write_text(f"name: {name}\nhandler: main.handler\n{grants}")
    (root / "main.py").write_text(CODE)
    return root


def _archive(manifest: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("donjon.yaml", manifest.encode()), ("main.py", CODE.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _audit(node: LiveNode) -> list[dict[str, Any]]:
    with node.client() as c:
        records: list[dict[str, Any]] = c.get("/v1/audit", params={"n": 300}).json()
    return records


def test_developer_deploy_of_metadata_egress_is_refused(node: LiveNode, tmp_path: Path) -> None:
    """A developer's deploy granting egress to cloud metadata is refused, naming the grant."""
    fn = _bundle(tmp_path / "meta", "broad-meta")
    developer = node.create_key("broad-dev", "developer")["key"]
    done = run_cli(node.env(developer), "deploy", str(fn), check=False)
    assert done.returncode == 1
    assert "422" in done.stderr and "169.254.169.254:80" in done.stderr
    assert "cloud metadata address" in done.stderr
    with node.client() as c:
        assert c.get("/v1/functions/broad-meta").status_code == 404


def test_admin_cannot_allow_metadata_egress(node: LiveNode, tmp_path: Path) -> None:
    """--unsafe-allow-broad does not open cloud metadata: the proxy never would (422)."""
    fn = _bundle(tmp_path / "meta-admin", "meta-admin")
    done = run_cli(node.env(), "deploy", str(fn), "--unsafe-allow-broad", check=False)
    assert done.returncode == 1
    assert "422" in done.stderr and "cloud metadata address" in done.stderr
    with node.client() as c:
        assert c.get("/v1/functions/meta-admin").status_code == 404


def test_developer_deploy_of_tld_wildcard_is_refused(node: LiveNode, tmp_path: Path) -> None:
    """A developer's `*.com:443` grant is refused as broad, naming the escape hatch."""
    fn = _bundle(tmp_path / "tld", "broad-tld", TLD_WILDCARD)
    developer = node.create_key("broad-tld-dev", "developer")["key"]
    done = run_cli(node.env(developer), "deploy", str(fn), check=False)
    assert done.returncode == 1
    assert "422" in done.stderr and "*.com:443" in done.stderr
    assert "--unsafe-allow-broad" in done.stderr
    with node.client() as c:
        assert c.get("/v1/functions/broad-tld").status_code == 404


def test_wildcard_invoke_grant_is_refused(node: LiveNode) -> None:
    """A `*` in permissions.invoke is refused with 4xx and nothing is deployed."""
    manifest = 'name: broad-wild\nhandler: main.handler\npermissions: {invoke: ["billing-*"]}\n'
    developer = node.create_key("broad-wild-dev", "developer")["key"]
    with node.client(developer) as c:
        r = c.post("/v1/functions", content=_archive(manifest))
        assert 400 <= r.status_code < 500, r.text
        assert "permissions.invoke" in r.text
    with node.client() as c:
        assert c.get("/v1/functions/broad-wild").status_code == 404


def test_developer_may_not_allow_broad(node: LiveNode, tmp_path: Path) -> None:
    """--unsafe-allow-broad from a developer gets 403, audited; nothing is deployed."""
    fn = _bundle(tmp_path / "dev", "broad-dev-flag")
    developer = node.create_key("broad-dev-flag", "developer")["key"]
    done = run_cli(node.env(developer), "deploy", str(fn), "--unsafe-allow-broad", check=False)
    assert done.returncode == 1 and "403" in done.stderr
    assert any(
        r["action"] == "authz.denied" and "unsafe_allow_broad" in str(r["detail"])
        for r in _audit(node)
    )
    with node.client() as c:
        assert c.get("/v1/functions/broad-dev-flag").status_code == 404


def test_admin_may_allow_broad_audited_and_warned(node: LiveNode, tmp_path: Path) -> None:
    """An admin's --unsafe-allow-broad deploys, warns in the response and CLI, and is audited."""
    fn = _bundle(tmp_path / "admin", "broad-admin", TLD_WILDCARD)
    done = run_cli(node.env(), "deploy", str(fn), "--unsafe-allow-broad")
    assert "deployed broad-admin" in done.stdout
    assert "UNSAFE" in done.stderr and "*.com:443" in done.stderr
    again = run_cli(node.env(), "deploy", str(fn), "--unsafe-allow-broad", "--json")
    result = json.loads(again.stdout)
    assert any("unsafe-allow-broad" in w and "*.com:443" in w for w in result["warnings"])
    assert "UNSAFE" in again.stderr
    deploys = [
        r
        for r in _audit(node)
        if r["action"] == "function.deploy" and r["target"].startswith("broad-admin@")
    ]
    assert len(deploys) == 2
    for r in deploys:
        assert r["detail"]["unsafe_allow_broad"] is True
        assert any("*.com:443" in g for g in r["detail"]["broad_grants"])
